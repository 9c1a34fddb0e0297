//! The rules of chats and messages, shared by the REST handlers and the
//! WebSocket: membership and admin checks, validation, idempotent sends,
//! read markers; each write records its event in the user timelines and the
//! outbox. Blocking and group privacy in [`blocks`].

pub mod blocks;
pub mod service;
pub mod views;
