//! chat-svc: one-to-one and group chats, messages, read markers, and the
//! WebSocket gateway with typing and presence. Delivers live events to its
//! own sockets from a per-instance fan-out queue, so any number of instances
//! behave as one.
//!
pub mod config;
pub mod domain;
pub mod events;
pub mod realtime;
pub mod routes;
pub mod startup;
pub mod storage;

/// Name in logs, metrics, events and the default database.
pub const SERVICE: &str = "chat-svc";
