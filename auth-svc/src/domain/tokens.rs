//! Minting tokens: Ed25519-signed JWTs with a `kid`, 15-minute access tokens
//! and 5-minute MFA tokens (typed, so no service takes one for the other).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use shared::auth::{ed25519_public_key_from_pem, Claims, TokenType};

pub const ACCESS_TTL_SECS: i64 = 15 * 60;
pub const MFA_TTL_SECS: i64 = 5 * 60;

#[derive(Clone)]
pub struct TokenIssuer {
    key: EncodingKey,
    kid: String,
    issuer: String,
    audience: String,
    jwks: serde_json::Value,
}

#[derive(Debug, thiserror::Error)]
pub enum IssuerError {
    #[error("the private key is not an Ed25519 PEM")]
    PrivateKey,
    #[error("the public key is not an Ed25519 PEM")]
    PublicKey,
    #[error("signing failed")]
    Sign,
}

impl TokenIssuer {
    pub fn new(
        private_pem: &str,
        public_pem: &str,
        kid: &str,
        issuer: &str,
        audience: &str,
    ) -> Result<Self, IssuerError> {
        let key = EncodingKey::from_ed_pem(private_pem.as_bytes())
            .map_err(|_| IssuerError::PrivateKey)?;
        let public = ed25519_public_key_from_pem(public_pem).map_err(|_| IssuerError::PublicKey)?;
        let jwks = serde_json::json!({
            "keys": [{
                "kty": "OKP",
                "crv": "Ed25519",
                "x": URL_SAFE_NO_PAD.encode(public),
                "kid": kid,
                "alg": "EdDSA",
                "use": "sig",
            }]
        });
        Ok(Self {
            key,
            kid: kid.to_owned(),
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            jwks,
        })
    }

    fn sign(
        &self,
        user_id: &str,
        session_id: Option<&str>,
        typ: TokenType,
        ttl: i64,
    ) -> Result<(String, String), IssuerError> {
        let now = chrono::Utc::now().timestamp();
        let jti = uuid::Uuid::new_v4().to_string();
        let claims = Claims {
            sub: user_id.to_owned(),
            sid: session_id.map(str::to_owned),
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            exp: now + ttl,
            nbf: now,
            iat: now,
            jti: jti.clone(),
            typ,
        };
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        let token =
            jsonwebtoken::encode(&header, &claims, &self.key).map_err(|_| IssuerError::Sign)?;
        Ok((token, jti))
    }

    /// An access token for a session.
    pub fn access(&self, user_id: &str, session_id: &str) -> Result<String, IssuerError> {
        self.sign(
            user_id,
            Some(session_id),
            TokenType::Access,
            ACCESS_TTL_SECS,
        )
        .map(|(t, _)| t)
    }

    /// An MFA token and its id (`jti`), which the challenge is stored under.
    pub fn mfa(&self, user_id: &str) -> Result<(String, String), IssuerError> {
        self.sign(user_id, None, TokenType::Mfa, MFA_TTL_SECS)
    }

    pub fn jwks(&self) -> &serde_json::Value {
        &self.jwks
    }
}
