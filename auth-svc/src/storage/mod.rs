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

use broker::outbox::EMBEDDED_FIELD;
use mongodb::bson::{doc, DateTime, Document};

/// `update` that also appends `events` (staged outbox entries, see
/// `crate::events::Carried`) to the document's `outbox` array.
pub fn carrying(mut update: Document, events: Vec<Document>) -> Document {
    if !events.is_empty() {
        update.insert("$push", doc! { EMBEDDED_FIELD: { "$each": events } });
    }
    update
}

/// The filter of the document that carries event `marker`: a conditional
/// write that matched nothing may have gone in on an attempt the driver
/// retried (a server that does not deduplicate retried writes).
pub fn carrier_of(id: &str, marker: &str) -> Document {
    doc! { "_id": id, format!("{EMBEDDED_FIELD}._id"): marker }
}

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
