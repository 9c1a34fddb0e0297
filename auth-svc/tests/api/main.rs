//! auth-svc's HTTP API against the real servers.
#![expect(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "test helpers fail loudly; a panic is the assertion"
)]

mod accounts;
mod crash;
mod devices;
mod email;
mod health;
mod helpers;
mod limits;
mod logs;
mod mfa;
mod passwords;
mod tokens;
