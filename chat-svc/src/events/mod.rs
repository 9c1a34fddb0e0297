//! Events chat-svc publishes and consumes.
//!
//! - [`frames`]: the WebSocket frame each event becomes, and who gets it.
//! - [`replica`]: the `chat-svc.users` consumer (profiles, revocations).
//! - [`fanout`]: this instance's fan-out consumer, delivering to local sockets.

pub mod fanout;
pub mod frames;
pub mod replica;
