//! chat-svc: one-to-one and group chats, messages, read markers, and the
//! WebSocket gateway with typing and presence. Delivers live events to its
//! own sockets from a per-instance fan-out queue, so any number of instances
//! behave as one.
//!
//! - [`config`]: settings (common ones plus the message rate).
//! - [`startup`]: [`startup::Application`] wires storage, consumers, the hub and HTTP.
//! - [`routes`]: thin REST handlers and the OpenAPI document.
//! - [`realtime`]: the WebSocket hub, presence and connections.
//! - [`domain`]: the chat service (rules, validation, events) and JSON views.
//! - [`storage`]: MongoDB collections, the user timelines in Redis.
//! - [`events`]: frames, the users replica consumer, the fan-out consumer.

pub mod config;
pub mod domain;
pub mod events;
pub mod realtime;
pub mod routes;
pub mod startup;
pub mod storage;

/// Name in logs, metrics, events and the default database.
pub const SERVICE: &str = "chat-svc";
