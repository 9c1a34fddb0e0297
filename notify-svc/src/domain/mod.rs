//! What notify-svc decides and sends: who is notified of what
//! ([`notifier`]), Web Push ([`push`]), email ([`mail`]) and how a
//! security email names a device ([`device`]).

pub mod device;
pub mod mail;
pub mod notifier;
pub mod push;
