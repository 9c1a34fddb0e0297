//! Events chat-svc publishes and consumes.
//!
//! - [`frames`]: the WebSocket frame each event becomes, and who gets it.
//! - [`replica`]: the `chat-svc.users` consumer (profiles, revocations).
//! - [`fanout`]: this instance's fan-out consumer, delivering to local sockets.
//! - [`recovery`]: the cache invalidation the outbox sweep redoes after a crash.

pub mod fanout;
pub mod frames;
pub mod recovery;
pub mod replica;
