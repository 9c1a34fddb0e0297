//! What notify-svc decides and sends: who is notified of what
//! ([`notifier`]), Web Push ([`push`]) and email ([`mail`]).

pub mod mail;
pub mod notifier;
pub mod push;
