//! The WebSocket side of chat-svc.
//!
//! - [`hub`]: the sockets connected to this instance, by user and session.
//! - [`presence`]: online while any socket of the user is open anywhere.
//! - [`routes`]: this instance's fan-out queue is bound to its users' keys.
//! - [`slots`]: at most 16 open sockets per user, counted across instances.
//! - [`socket`]: one connection: auth, frames, limits, heartbeat, resume.

pub mod hub;
pub mod presence;
pub mod routes;
pub mod slots;
pub mod socket;
