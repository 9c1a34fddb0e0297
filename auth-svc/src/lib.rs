//! auth-svc: accounts, passwords, sessions and tokens, TOTP multi-factor
//! authentication and recovery codes. The only service that mints tokens;
//! the others verify them with its public key.
//!
//! - [`config`]: settings (common ones plus signing and encryption keys).
//! - [`startup`]: [`startup::Application`] wires storage, messaging and HTTP.
//! - [`state`]: what handlers share, and the mapping of domain errors.
//! - [`routes`]: thin HTTP handlers, one file per resource.
//! - [`domain`]: validated values and rules.
//! - [`storage`]: MongoDB collections and Redis cache.
//! - [`checks`]: password and code checks under the per-account limits.
//! - [`events`]: what auth-svc publishes (through the outbox).

pub mod checks;
pub mod config;
pub mod domain;
pub mod events;
pub mod routes;
pub mod startup;
pub mod state;
pub mod storage;

/// Name in logs, metrics, events and the default database.
pub const SERVICE: &str = "auth-svc";
