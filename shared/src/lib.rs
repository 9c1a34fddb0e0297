//! Cross-cutting building blocks shared by auth-svc, chat-svc and notify-svc.
//!
//! Nothing here knows about routes or business rules; each service composes
//! these pieces in its own `startup` module.
//!
//! - [`config`]: layered configuration (defaults, optional TOML file, environment),
//!   validated at start, secrets wrapped.
//! - [`error`]: the one problem+json (RFC 9457) error type every service answers with.
//! - [`http`]: middleware (security headers, request ids, metrics, problem bodies
//!   for bare errors), body limits and content-type enforcement.
//! - [`telemetry`]: `tracing` set-up (JSON in production, readable locally).
//! - [`metrics`]: the per-application Prometheus registry and `/metrics`.
//! - [`openapi`]: the problem schema and bearer scheme of every OpenAPI document.
//! - [`health`]: `/health/live` and `/health/ready` with per-dependency checks.
//! - [`auth`]: access-token verification (Ed25519 JWT) as an actix extractor.
//! - [`cache`]: the typed, versioned Redis read cache.
//! - [`ratelimit`]: failure counters per key in Redis with a local fallback.
//! - [`revocations`]: sessions revoked at auth-svc, as the other services know them.
//! - [`client_ip`]: the client address, trusting `X-Forwarded-For` only from proxies.
//! - [`text`]: what a name users show to others may contain.
//! - [`storage`]: MongoDB and Redis connection set-up with fail-fast timeouts.
//! - [`server`]: the HTTP server with the common middleware stack, and graceful shutdown.
//! - [`shutdown`]: the process-wide shutdown signal.

pub mod auth;
pub mod cache;
pub mod client_ip;
pub mod config;
pub mod error;
pub mod health;
pub mod http;
pub mod metrics;
pub mod openapi;
pub mod page;
pub mod ratelimit;
pub mod redis_link;
pub mod revocations;
pub mod server;
pub mod shutdown;
pub mod storage;
pub mod telemetry;
pub mod text;

pub use error::ApiError;
