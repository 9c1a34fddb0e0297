//! notify-svc's HTTP API against the real servers.
#![expect(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "test helpers fail loudly; a panic is the assertion"
)]

mod health;
mod helpers;
mod preferences;
