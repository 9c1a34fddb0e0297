//! MongoDB collections of auth-svc and their Redis cache.
//!
//! - [`users`]: accounts, profiles and MFA state (`users`).
//! - [`sessions`]: sessions, refresh tokens, MFA challenges and known
//!   devices (`sessions`, `refresh_tokens`, `mfa_challenges`, `devices`).
//! - [`devices`]: device tokens, which exempt a known device from its
//!   account's lockout (`device_tokens`).

pub mod devices;
pub mod sessions;
pub mod users;

use mongodb::bson::DateTime;

pub fn now() -> DateTime {
    DateTime::now()
}

pub fn after_secs(secs: i64) -> DateTime {
    DateTime::from_millis(DateTime::now().timestamp_millis() + secs * 1000)
}

/// RFC 3339 UTC with milliseconds, as api.md wants times.
pub fn rfc3339(t: DateTime) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(t.timestamp_millis())
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
