//! notify-svc: in-app notifications, Web Push, email digests of unread
//! messages, security emails, per-user preferences and muted chats. Learns
//! everything it needs from events; never calls another service.
//!
pub mod config;
pub mod domain;
pub mod events;
pub mod routes;
pub mod startup;
pub mod storage;
pub mod workers;

/// Name in logs, metrics, events and the default database.
pub const SERVICE: &str = "notify-svc";
