//! MongoDB collections of notify-svc.
//!
//! - [`replica`]: users and chats as learnt from events.
//! - [`preferences`]: per-user notification preferences and muted chats.
//! - [`notifications`]: the in-app feed.
//! - [`subscriptions`]: Web Push subscriptions and the pushes made.
//! - [`digests`]: unread messages waiting for a digest email.
//! - [`mail_jobs`]: outgoing mail.

pub mod digests;
pub mod mail_jobs;
pub mod notifications;
pub mod preferences;
pub mod replica;
pub mod subscriptions;

/// A new random id (UUIDv7, hex).
pub fn new_id() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}
