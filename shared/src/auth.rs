//! Access-token verification. auth-svc signs with Ed25519; every service
//! verifies locally with the public key: `kid` must be known, `alg` must be
//! EdDSA (so `none` and HS256-with-the-public-key are refused), and `exp`,
//! `nbf`, `iss`, `aud` and the token type are checked. A revocation check
//! supplied by the service then refuses revoked sessions.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use actix_web::dev::Payload;
use actix_web::{web, FromRequest, HttpRequest};
use base64::Engine;
use futures_util::future::{BoxFuture, LocalBoxFuture};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};

use crate::error::ApiError;

/// What a token is for. Only `Access` tokens authenticate API calls; an
/// `Mfa` token only continues a login at auth-svc.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum TokenType {
    Access,
    Mfa,
}

/// Claims of the tokens auth-svc mints.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// User id.
    pub sub: String,
    /// Session id (absent from `Mfa` tokens, which precede a session).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    pub iss: String,
    pub aud: String,
    pub exp: i64,
    pub nbf: i64,
    pub iat: i64,
    pub jti: String,
    pub typ: TokenType,
}

/// Why a token was refused. Every reason is a 401 to the client; the reason
/// is only for logs and tests.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("malformed token")]
    Malformed,
    #[error("unknown key id")]
    UnknownKey,
    #[error("algorithm not allowed")]
    Algorithm,
    #[error("invalid token: {0}")]
    Invalid(String),
    #[error("wrong token type")]
    WrongType,
    #[error("session revoked")]
    Revoked,
}

/// Tells whether a session has been revoked; each service answers from its
/// own replica of `auth.session.revoked` events.
pub trait RevocationCheck: Send + Sync + 'static {
    fn is_revoked<'a>(&'a self, session_id: &'a str) -> BoxFuture<'a, Result<bool, ApiError>>;
}

/// Verifies tokens; installed as app data.
#[derive(Clone)]
pub struct TokenVerifier {
    keys: Arc<HashMap<String, DecodingKey>>,
    validation: Validation,
    revocations: Option<Arc<dyn RevocationCheck>>,
    verified: Arc<Mutex<HashMap<Box<str>, Claims>>>,
}

/// Access tokens whose signature this process has checked, by their exact
/// text: a client sends the same token for up to 15 minutes, and the
/// Ed25519 check is most of a cached read's CPU. Bounded; expiry, type and
/// revocation are still checked on every use.
const VERIFIED_CAPACITY: usize = 4096;

/// Raw 32-byte Ed25519 public key from a SubjectPublicKeyInfo PEM (what
/// `openssl genpkey -algorithm ed25519` writes).
pub fn ed25519_public_key_from_pem(pem: &str) -> Result<[u8; 32], TokenError> {
    let b64: String = pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect::<String>();
    let der = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .map_err(|_| TokenError::Malformed)?;
    // SPKI for Ed25519 is a fixed 12-byte prefix followed by the key.
    const PREFIX: [u8; 12] = [
        0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
    ];
    if der.len() != 44 || der[..12] != PREFIX {
        return Err(TokenError::Malformed);
    }
    let mut key = [0u8; 32];
    key.copy_from_slice(&der[12..]);
    Ok(key)
}

impl TokenVerifier {
    /// `keys`: `(kid, public key PEM)` pairs; several allow key rotation.
    pub fn new(
        keys: &[(String, String)],
        issuer: &str,
        audience: &str,
    ) -> Result<Self, TokenError> {
        let mut map = HashMap::new();
        for (kid, pem) in keys {
            let raw = ed25519_public_key_from_pem(pem)?;
            map.insert(kid.clone(), DecodingKey::from_ed_der(&raw));
        }
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.algorithms = vec![Algorithm::EdDSA];
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = 5;
        Ok(Self {
            keys: Arc::new(map),
            validation,
            revocations: None,
            verified: Arc::default(),
        })
    }

    pub fn with_revocations(mut self, check: Arc<dyn RevocationCheck>) -> Self {
        self.revocations = Some(check);
        self
    }

    /// Signature and claims only (no revocation check).
    pub fn verify(&self, token: &str, expected: TokenType) -> Result<Claims, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
        if header.alg != Algorithm::EdDSA {
            return Err(TokenError::Algorithm);
        }
        let kid = header.kid.ok_or(TokenError::UnknownKey)?;
        let key = self.keys.get(&kid).ok_or(TokenError::UnknownKey)?;
        let data = jsonwebtoken::decode::<Claims>(token, key, &self.validation)
            .map_err(|e| TokenError::Invalid(e.to_string()))?;
        if data.claims.typ != expected {
            return Err(TokenError::WrongType);
        }
        Ok(data.claims)
    }

    /// An access token verified earlier by this process and not expired
    /// since.
    fn verified_before(&self, token: &str) -> Option<Claims> {
        let now = i64::try_from(jsonwebtoken::get_current_timestamp()).unwrap_or(i64::MAX);
        let leeway = i64::try_from(self.validation.leeway).unwrap_or(0);
        let verified = self.verified.lock().ok()?;
        verified
            .get(token)
            .filter(|c| c.exp + leeway > now)
            .cloned()
    }

    fn remember_verified(&self, token: &str, claims: &Claims) {
        let Ok(mut verified) = self.verified.lock() else {
            return;
        };
        if verified.len() >= VERIFIED_CAPACITY {
            let now = i64::try_from(jsonwebtoken::get_current_timestamp()).unwrap_or(i64::MAX);
            verified.retain(|_, c| c.exp > now);
            if verified.len() >= VERIFIED_CAPACITY {
                verified.clear();
            }
        }
        verified.insert(token.into(), claims.clone());
    }

    /// Signature, claims, and that the session is not revoked.
    pub async fn verify_access(&self, token: &str) -> Result<Claims, ApiError> {
        let claims = match self.verified_before(token) {
            Some(claims) => claims,
            None => {
                let claims = self.verify(token, TokenType::Access).map_err(|e| {
                    tracing::debug!(reason = %e, "access token refused");
                    ApiError::Unauthorized
                })?;
                self.remember_verified(token, &claims);
                claims
            }
        };
        let sid = claims.sid.as_deref().ok_or(ApiError::Unauthorized)?;
        if let Some(check) = &self.revocations {
            if check.is_revoked(sid).await? {
                return Err(ApiError::Unauthorized);
            }
        }
        Ok(claims)
    }
}

/// An authenticated caller: a valid, unrevoked access token.
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub user_id: String,
    pub session_id: String,
    pub claims: Claims,
}

/// The bearer token of a request, if any.
pub fn bearer_token(req: &HttpRequest) -> Option<&str> {
    let value = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

impl FromRequest for Authenticated {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let verifier = req.app_data::<web::Data<TokenVerifier>>().cloned();
        let token = bearer_token(req).map(str::to_owned);
        Box::pin(async move {
            let verifier = verifier.ok_or_else(|| {
                ApiError::Unexpected(anyhow::anyhow!("TokenVerifier is not installed"))
            })?;
            let token = token.ok_or(ApiError::Unauthorized)?;
            let claims = verifier.verify_access(&token).await?;
            Ok(Authenticated {
                user_id: claims.sub.clone(),
                session_id: claims.sid.clone().unwrap_or_default(),
                claims,
            })
        })
    }
}
