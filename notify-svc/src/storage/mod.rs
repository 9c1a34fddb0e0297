//! MongoDB collections of notify-svc.
//!
//! - [`preferences`]: per-user notification preferences and muted chats.

pub mod preferences;
