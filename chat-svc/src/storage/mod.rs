//! MongoDB collections of chat-svc, its Redis timeline and caches.
//!
//! - [`users`]: the replica of public profiles learned from auth events.
//! - [`blocks`]: who blocked whom, and who may add whom to groups.
//! - [`chats`]: chats, members, admins, read markers.
//! - [`messages`]: message history with send idempotency.
//! - [`timeline`]: per-user Redis streams that order what a user receives
//!   (the WebSocket resume cursor).

pub mod blocks;
pub mod chats;
pub mod messages;
pub mod timeline;
pub mod users;

use mongodb::bson::DateTime;

/// RFC 3339 UTC with milliseconds.
pub fn rfc3339(t: DateTime) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(t.timestamp_millis())
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// A new time-ordered id (UUID v7, hex): sorts by creation time.
pub fn new_id() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}
