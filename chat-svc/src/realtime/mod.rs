//! The WebSocket side of chat-svc.
//!
//! - [`hub`]: the sockets connected to this instance, by user and session.
//! - [`presence`]: online while any socket of the user is open anywhere.
//! - [`socket`]: one connection: auth, frames, limits, heartbeat, resume.

pub mod hub;
pub mod presence;
pub mod socket;
