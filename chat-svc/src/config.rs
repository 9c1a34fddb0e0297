//! chat-svc settings: the common ones (see `shared::config`) plus its own.

use serde::Deserialize;
use shared::config::{self, CommonConfig, ConfigError};

#[derive(Debug, Clone, Deserialize)]
pub struct ChatSettings {
    /// Message sends allowed per user per 10 seconds.
    pub message_rate_per_10s: u32,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub common: CommonConfig,
    pub chat: ChatSettings,
}

const KEYS: &[&str] = &["message_rate_per_10s"];

impl Config {
    fn defaults() -> serde_json::Value {
        let mut d = config::common_defaults(crate::SERVICE, 8082);
        d["message_rate_per_10s"] = 30.into();
        d
    }

    /// From defaults, `CONFIG_FILE` and the environment.
    pub fn load() -> Result<Self, ConfigError> {
        Self::load_with(serde_json::Value::Null)
    }

    /// As [`Config::load`], then `overrides` on top (tests).
    pub fn load_with(overrides: serde_json::Value) -> Result<Self, ConfigError> {
        let (common, chat) = config::load_service(Self::defaults(), KEYS, overrides)?;
        let cfg = Self { common, chat };
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.chat.message_rate_per_10s == 0 {
            return Err(ConfigError::key(
                "message_rate_per_10s",
                "must be at least 1",
            ));
        }
        Ok(())
    }
}
