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
    /// Per client IP, per instance (product.md defaults).
    pub login_per_minute_per_ip: u32,
    pub register_per_hour_per_ip: u32,
    pub refresh_per_minute_per_ip: u32,
    /// Failed password logins per account per 15 minutes, across instances.
    pub login_failures_per_account: u32,
    /// Wrong passwords per known device (device token) per 15 minutes.
    pub login_failures_per_device: u32,
    /// Wrong MFA codes per account per 15 minutes, across instances.
    pub mfa_failures_per_account: u32,
    /// Verification mails re-sent per account per hour.
    pub verification_resends_per_hour: u32,
    /// Password hashes computed at once (about one per core).
    pub hash_concurrency: usize,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub common: CommonConfig,
    pub auth: AuthSettings,
}

const KEYS: &[&str] = &[
    "jwt_private_key_file",
    "totp_encryption_key_file",
    "login_per_minute_per_ip",
    "register_per_hour_per_ip",
    "refresh_per_minute_per_ip",
    "login_failures_per_account",
    "login_failures_per_device",
    "mfa_failures_per_account",
    "verification_resends_per_hour",
    "hash_concurrency",
];

impl Config {
    fn defaults() -> serde_json::Value {
        let mut d = config::common_defaults(crate::SERVICE, 8081);
        d["jwt_private_key_file"] = ".dev/keys/jwt-private.pem".into();
        d["totp_encryption_key_file"] = ".dev/keys/totp-encryption.key".into();
        d["login_per_minute_per_ip"] = 10.into();
        d["register_per_hour_per_ip"] = 10.into();
        d["refresh_per_minute_per_ip"] = 60.into();
        d["login_failures_per_account"] = 10.into();
        d["login_failures_per_device"] = 10.into();
        d["mfa_failures_per_account"] = 10.into();
        d["verification_resends_per_hour"] = 3.into();
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);
        d["hash_concurrency"] = cores.into();
        d
    }

    /// From defaults, `CONFIG_FILE` and the environment.
    pub fn load() -> Result<Self, ConfigError> {
        Self::load_with(serde_json::Value::Null)
    }

    /// As [`Config::load`], then `overrides` on top (tests).
    pub fn load_with(overrides: serde_json::Value) -> Result<Self, ConfigError> {
        let (common, auth) = config::load_service(Self::defaults(), KEYS, overrides)?;
        let cfg = Self { common, auth };
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<(), ConfigError> {
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
        let limits = [
            ("login_per_minute_per_ip", self.auth.login_per_minute_per_ip),
            (
                "register_per_hour_per_ip",
                self.auth.register_per_hour_per_ip,
            ),
            (
                "refresh_per_minute_per_ip",
                self.auth.refresh_per_minute_per_ip,
            ),
            (
                "login_failures_per_account",
                self.auth.login_failures_per_account,
            ),
            (
                "login_failures_per_device",
                self.auth.login_failures_per_device,
            ),
            (
                "mfa_failures_per_account",
                self.auth.mfa_failures_per_account,
            ),
            (
                "verification_resends_per_hour",
                self.auth.verification_resends_per_hour,
            ),
        ];
        for (key, value) in limits {
            if value == 0 {
                return Err(ConfigError::key(key, "must be at least 1"));
            }
        }
        if self.auth.hash_concurrency == 0 {
            return Err(ConfigError::key("hash_concurrency", "must be at least 1"));
        }
        Ok(())
    }
}
