//! auth-svc settings: the common ones (see `shared::config`) plus its own.

use std::path::PathBuf;

use serde::Deserialize;
use shared::config::{self, CommonConfig, ConfigError};

#[derive(Debug, Clone, Deserialize)]
pub struct AuthSettings {
    /// PEM of the Ed25519 private key that signs access tokens.
    pub jwt_private_key_file: PathBuf,
    /// File holding the base64 AES-256 key that encrypts TOTP secrets.
    pub totp_encryption_key_file: PathBuf,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub common: CommonConfig,
    pub auth: AuthSettings,
}

const KEYS: &[&str] = &["jwt_private_key_file", "totp_encryption_key_file"];

impl Config {
    fn defaults() -> serde_json::Value {
        let mut d = config::common_defaults(crate::SERVICE, 8081);
        d["jwt_private_key_file"] = ".dev/keys/jwt-private.pem".into();
        d["totp_encryption_key_file"] = ".dev/keys/totp-encryption.key".into();
        d
    }

    /// From defaults, `CONFIG_FILE` and the environment.
    pub fn load() -> Result<Self, ConfigError> {
        Self::load_with(serde_json::Value::Null)
    }

    /// As [`Config::load`], then `overrides` on top (tests).
    pub fn load_with(overrides: serde_json::Value) -> Result<Self, ConfigError> {
        let keys: Vec<&str> = config::COMMON_KEYS.iter().chain(KEYS).copied().collect();
        let mut sources = config::sources(Self::defaults(), &keys);
        if !overrides.is_null() {
            sources = sources.merge(figment::providers::Serialized::defaults(overrides));
        }
        let cfg = Self {
            common: config::extract(&sources)?,
            auth: config::extract(&sources)?,
        };
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        self.common.validate()?;
        for (key, path) in [
            ("jwt_private_key_file", &self.auth.jwt_private_key_file),
            (
                "totp_encryption_key_file",
                &self.auth.totp_encryption_key_file,
            ),
        ] {
            if !path.is_file() {
                return Err(ConfigError::key(
                    key,
                    format!("`{}` is not a readable file", path.display()),
                ));
            }
        }
        Ok(())
    }
}
