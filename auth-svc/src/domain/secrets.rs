//! Secrets at rest and random tokens. TOTP secrets are sealed with
//! AES-256-GCM (random 96-bit nonce, the user id as associated data so a
//! sealed secret cannot be moved to another account); recovery codes are
//! stored as HMAC-SHA256 under a key derived from the same config key, so a
//! database leak alone does not allow guessing them offline.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("the key file must hold 32 bytes in base64")]
    BadKey,
    #[error("sealed value is corrupt or was sealed for another account")]
    Corrupt,
}

#[derive(Clone)]
pub struct SecretBox {
    cipher: Aes256Gcm,
    mac_key: [u8; 32],
}

impl SecretBox {
    pub fn from_base64_key(text: &str) -> Result<Self, SecretError> {
        let key = STANDARD
            .decode(text.trim())
            .map_err(|_| SecretError::BadKey)?;
        if key.len() != 32 {
            return Err(SecretError::BadKey);
        }
        let cipher = Aes256Gcm::new_from_slice(&key).map_err(|_| SecretError::BadKey)?;
        let mac_key: [u8; 32] = Sha256::new()
            .chain_update(b"recovery-code-mac")
            .chain_update(&key)
            .finalize()
            .into();
        Ok(Self { cipher, mac_key })
    }

    /// `base64(nonce || ciphertext)`.
    pub fn seal(&self, plaintext: &[u8], context: &str) -> String {
        let mut nonce = [0u8; 12];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let sealed = self
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: context.as_bytes(),
                },
            )
            .unwrap_or_default();
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        STANDARD.encode(out)
    }

    pub fn open(&self, sealed: &str, context: &str) -> Result<Vec<u8>, SecretError> {
        let raw = STANDARD.decode(sealed).map_err(|_| SecretError::Corrupt)?;
        if raw.len() < 12 + 16 {
            return Err(SecretError::Corrupt);
        }
        let (nonce, ciphertext) = raw.split_at(12);
        self.cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| SecretError::Corrupt)
    }

    /// Keyed hash of a recovery code (normalised: case and dashes ignored).
    pub fn code_hash(&self, code: &str) -> String {
        let normalized: String = code
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .map(|c| c.to_ascii_lowercase())
            .collect();
        let mut mac = match <Hmac<Sha256> as Mac>::new_from_slice(&self.mac_key) {
            Ok(mac) => mac,
            Err(_) => unreachable!("HMAC accepts keys of any length"),
        };
        mac.update(normalized.as_bytes());
        hex(&mac.finalize().into_bytes())
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A 256-bit random token, base64url.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// SHA-256 of a high-entropy token: how refresh tokens are stored.
pub fn token_hash(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

/// `xxxxx-xxxxx` from a 32-letter alphabet: 50 random bits.
pub fn recovery_code() -> String {
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyz23456789";
    let mut bytes = [0u8; 10];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let chars: Vec<char> = bytes
        .iter()
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect();
    format!(
        "{}-{}",
        chars[..5].iter().collect::<String>(),
        chars[5..].iter().collect::<String>()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sbox() -> SecretBox {
        SecretBox::from_base64_key(&STANDARD.encode([7u8; 32])).unwrap()
    }

    #[test]
    fn sealed_secrets_open_only_in_their_context() {
        let b = sbox();
        let sealed = b.seal(b"JBSWY3DPEHPK3PXP", "user-1");
        assert!(!sealed.contains("JBSWY3DP"));
        assert_eq!(b.open(&sealed, "user-1").unwrap(), b"JBSWY3DPEHPK3PXP");
        assert!(b.open(&sealed, "user-2").is_err());
        assert_ne!(
            sealed,
            b.seal(b"JBSWY3DPEHPK3PXP", "user-1"),
            "fresh nonce each time"
        );
    }

    #[test]
    fn recovery_codes_hash_the_same_however_typed() {
        let b = sbox();
        let code = recovery_code();
        assert_eq!(code.len(), 11);
        assert_eq!(
            b.code_hash(&code),
            b.code_hash(&code.to_uppercase().replace('-', ""))
        );
        assert_ne!(b.code_hash(&code), b.code_hash(&recovery_code()));
    }
}
