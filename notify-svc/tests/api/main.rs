//! notify-svc's HTTP API against the real servers.
#![expect(clippy::expect_used, reason = "test helpers fail loudly")]

mod abuse;
mod health;
mod helpers;
mod notify;
mod preferences;
mod world;
