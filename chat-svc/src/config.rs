//! chat-svc settings: the common ones (see `shared::config`) plus its own.

use serde::Deserialize;
use shared::config::{self, CommonConfig, ConfigError};

#[derive(Debug, Clone, Deserialize)]
pub struct ChatSettings {
    /// Message sends, edits and deletes together allowed per user per 10 seconds.
    pub message_rate_per_10s: u32,
    /// Group creations and member additions together allowed per user per hour.
    pub group_rate_per_hour: u32,
    /// The Redis read cache of chat lists, chats and first pages (off only
    /// to measure what it saves).
    #[serde(deserialize_with = "config::flag")]
    pub read_cache: bool,
    /// How long a cache entry lives at most (writes invalidate it sooner).
    pub cache_ttl_secs: u64,
    /// A dead instance's users are announced offline within about this.
    pub presence_ttl_secs: u64,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub common: CommonConfig,
    pub chat: ChatSettings,
}

const KEYS: &[&str] = &[
    "message_rate_per_10s",
    "group_rate_per_hour",
    "read_cache",
    "cache_ttl_secs",
    "presence_ttl_secs",
];

impl Config {
    fn defaults() -> serde_json::Value {
        let mut d = config::common_defaults(crate::SERVICE, 8082);
        d["message_rate_per_10s"] = 30.into();
        d["group_rate_per_hour"] = 30.into();
        d["read_cache"] = true.into();
        d["cache_ttl_secs"] = 60.into();
        d["presence_ttl_secs"] = 30.into();
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
        if self.chat.group_rate_per_hour == 0 {
            return Err(ConfigError::key(
                "group_rate_per_hour",
                "must be at least 1",
            ));
        }
        if !(1..=300).contains(&self.chat.cache_ttl_secs) {
            return Err(ConfigError::key("cache_ttl_secs", "must be 1-300"));
        }
        if !(3..=600).contains(&self.chat.presence_ttl_secs) {
            return Err(ConfigError::key("presence_ttl_secs", "must be 3-600"));
        }
        Ok(())
    }
}
