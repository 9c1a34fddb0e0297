//! notify-svc settings: the common ones (see `shared::config`) plus its own.

use std::path::PathBuf;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use shared::config::{self, CommonConfig, ConfigError};

#[derive(Debug, Clone, Deserialize)]
pub struct NotifySettings {
    /// Where mail goes, e.g. `smtp://127.0.0.1:2525`.
    pub smtp_url: SecretString,
    /// PEM of the VAPID P-256 private key (RFC 8292).
    pub vapid_private_key_file: PathBuf,
    /// Lets push subscriptions point at http://127.0.0.1 (dev stack only).
    #[serde(deserialize_with = "shared::config::flag")]
    pub dev_allow_loopback_push: bool,
    /// The From of every email, e.g. `Chat <no-reply@example.com>`.
    pub mail_from: String,
    /// The VAPID `sub` claim: a `mailto:` or `https:` contact for push services.
    pub vapid_subject: String,
    /// How often due digests are looked for (milliseconds).
    pub digest_poll_ms: u64,
    /// Delays between attempts of a failing event: `standard` (1 s, 10 s,
    /// 1 min, 5 min) or `fast` (tests).
    pub retry_schedule: String,
    /// Where users open the web client, e.g. `https://chat.example.com`:
    /// links in mail point there. Empty: the first of `allowed_origins`.
    pub public_url: String,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub common: CommonConfig,
    pub notify: NotifySettings,
}

const KEYS: &[&str] = &[
    "smtp_url",
    "vapid_private_key_file",
    "dev_allow_loopback_push",
    "mail_from",
    "vapid_subject",
    "digest_poll_ms",
    "retry_schedule",
    "public_url",
];

/// The public URL when neither `public_url` nor `allowed_origins` gives one.
const FALLBACK_PUBLIC_URL: &str = "http://127.0.0.1:8080";

impl Config {
    fn defaults() -> serde_json::Value {
        let mut d = config::common_defaults(crate::SERVICE, 8083);
        d["smtp_url"] = "smtp://127.0.0.1:2525".into();
        d["vapid_private_key_file"] = ".dev/keys/vapid-private.pem".into();
        d["dev_allow_loopback_push"] = false.into();
        d["mail_from"] = "Chat <no-reply@chat.localhost>".into();
        d["vapid_subject"] = "mailto:admin@chat.localhost".into();
        d["digest_poll_ms"] = 1000.into();
        d["retry_schedule"] = "standard".into();
        d["public_url"] = "".into();
        d
    }

    /// From defaults, `CONFIG_FILE` and the environment.
    pub fn load() -> Result<Self, ConfigError> {
        Self::load_with(serde_json::Value::Null)
    }

    /// As [`Config::load`], then `overrides` on top (tests).
    pub fn load_with(overrides: serde_json::Value) -> Result<Self, ConfigError> {
        let (common, mut notify): (CommonConfig, NotifySettings) =
            config::load_service(Self::defaults(), KEYS, overrides)?;
        if notify.public_url.trim().is_empty() {
            notify.public_url = common
                .allowed_origins
                .first()
                .cloned()
                .unwrap_or_else(|| FALLBACK_PUBLIC_URL.to_owned());
        }
        // Links are `<public_url>/verify-email?...`: no trailing slash.
        notify.public_url = notify.public_url.trim().trim_end_matches('/').to_owned();
        let cfg = Self { common, notify };
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if !self.notify.smtp_url.expose_secret().starts_with("smtp://")
            && !self.notify.smtp_url.expose_secret().starts_with("smtps://")
        {
            return Err(ConfigError::key(
                "smtp_url",
                "must start with smtp:// or smtps://",
            ));
        }
        if self
            .notify
            .mail_from
            .parse::<lettre::message::Mailbox>()
            .is_err()
        {
            return Err(ConfigError::key(
                "mail_from",
                "must be an address like `Chat <no-reply@example.com>`",
            ));
        }
        if !self.notify.vapid_subject.starts_with("mailto:")
            && !self.notify.vapid_subject.starts_with("https://")
        {
            return Err(ConfigError::key(
                "vapid_subject",
                "must be a mailto: or https: URL",
            ));
        }
        if !(100..=60_000).contains(&self.notify.digest_poll_ms) {
            return Err(ConfigError::key("digest_poll_ms", "must be 100-60000"));
        }
        if !["standard", "fast"].contains(&self.notify.retry_schedule.as_str()) {
            return Err(ConfigError::key(
                "retry_schedule",
                "must be standard or fast",
            ));
        }
        let public_url = reqwest::Url::parse(&self.notify.public_url);
        if !public_url.is_ok_and(|u| {
            matches!(u.scheme(), "http" | "https")
                && u.host_str().is_some()
                && u.query().is_none()
                && u.fragment().is_none()
                && u.username().is_empty()
                && u.password().is_none()
        }) {
            return Err(ConfigError::key(
                "public_url",
                "must be an http(s) URL without query, fragment or credentials",
            ));
        }
        if !self.notify.vapid_private_key_file.is_file() {
            return Err(ConfigError::key(
                "vapid_private_key_file",
                format!(
                    "`{}` is not a readable file",
                    self.notify.vapid_private_key_file.display()
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(extra: serde_json::Value) -> Result<Config, ConfigError> {
        let keys = std::env::var("TEST_KEYS_DIR")
            .unwrap_or_else(|_| format!("{}/../.dev/keys", env!("CARGO_MANIFEST_DIR")));
        let mut overrides = serde_json::json!({
            "vapid_private_key_file": format!("{keys}/vapid-private.pem"),
            "jwt_public_key_file": format!("{keys}/jwt-public.pem"),
        });
        if let (Some(o), Some(e)) = (overrides.as_object_mut(), extra.as_object()) {
            o.extend(e.clone());
        }
        Config::load_with(overrides)
    }

    #[test]
    fn the_public_url_defaults_to_the_first_allowed_origin() {
        let cfg = load(serde_json::json!({
            "allowed_origins": ["https://chat.example.com", "http://localhost:8080"],
        }))
        .unwrap();
        assert_eq!(cfg.notify.public_url, "https://chat.example.com");
        let cfg = load(serde_json::json!({"allowed_origins": []})).unwrap();
        assert_eq!(cfg.notify.public_url, "http://127.0.0.1:8080");
        let cfg =
            load(serde_json::json!({"public_url": "https://mail.example.com/chat/"})).unwrap();
        assert_eq!(cfg.notify.public_url, "https://mail.example.com/chat");
    }

    #[test]
    fn a_public_url_that_is_no_web_address_stops_the_start() {
        for bad in [
            "javascript:alert(1)",
            "chat.example.com",
            "https://chat.example.com/?next=x",
            "https://user:pw@chat.example.com",
        ] {
            let err = load(serde_json::json!({"public_url": bad})).unwrap_err();
            assert!(err.to_string().contains("public_url"), "{bad}: {err}");
        }
    }
}
