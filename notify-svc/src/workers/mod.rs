//! Background work: the digest builder and the mail sender.

pub mod digest;
pub mod mailer;
