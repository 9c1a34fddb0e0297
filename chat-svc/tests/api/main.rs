//! chat-svc against the real servers, with two instances where it matters.
#![expect(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "test helpers fail loudly; a panic is the assertion"
)]

mod blocks;
mod cache;
mod chats;
mod crash;
mod health;
mod helpers;
mod limits;
mod presence;
mod realtime;
mod sockets;
