//! The two queues notify-svc consumes, one handler for both:
//! `notify-svc.chat` (messages, read markers, membership, chat names) and
//! `notify-svc.auth` (users, security events, verification mails and
//! session revocations).

use std::net::IpAddr;

use broker::consumer::HandlerError;
use broker::events::DecodedEnvelope;
use broker::{Event, Handler};

use shared::revocations::Revocations;

use crate::domain::device;
use crate::domain::notifier::Notifier;
use crate::storage::replica::UserDoc;

/// The replica's user from `user.registered` or `user.updated` (the same
/// fields, two event types).
macro_rules! user_doc {
    ($u:expr) => {
        UserDoc {
            id: $u.user_id.clone(),
            username: $u.username.clone(),
            display_name: $u.display_name.clone(),
            email: $u.email.clone(),
            profile_version: $u.profile_version,
            email_verified: $u.email_verified,
        }
    };
}

pub struct NotifyHandler {
    pub notifier: Notifier,
    pub revocations: Revocations,
}

impl Handler for NotifyHandler {
    async fn handle(&self, event: &DecodedEnvelope) -> Result<(), HandlerError> {
        let n = &self.notifier;
        let id = event.id.simple().to_string();
        match &event.data {
            Event::MessageCreated(e) => n.message_created(&id, e).await,
            Event::ReadMarked(e) => n.read(&e.user_id, &e.chat_id, &e.message_id).await,
            Event::MemberRemoved(e) => n.left(&e.user_id, &e.chat_id).await,
            Event::ChatCreated(e) => n.chat_changed(&e.chat).await,
            Event::ChatUpdated(e) => n.chat_changed(&e.chat).await,
            Event::UserRegistered(u) => user(n, user_doc!(u)).await,
            Event::UserUpdated(u) => user(n, user_doc!(u)).await,
            Event::MfaEnabled(e) => {
                n.security(
                    &id,
                    &e.user_id,
                    "two-factor authentication turned on",
                    "Two-factor authentication was turned on for your account.",
                )
                .await
            }
            Event::MfaDisabled(e) => {
                n.security(
                    &id,
                    &e.user_id,
                    "two-factor authentication turned off",
                    "Two-factor authentication was turned off for your account.",
                )
                .await
            }
            Event::RecoveryCodeUsed(e) => {
                let detail = format!(
                    "A recovery code was used to sign in to your account. {} recovery code{} left.",
                    e.remaining,
                    if e.remaining == 1 { " is" } else { "s are" }
                );
                n.security(&id, &e.user_id, "recovery code used", &detail)
                    .await
            }
            Event::LoginSucceeded(e) if e.new_device => {
                // Both come from the client: the device is named from the
                // parser's vocabulary, the address only if it is one.
                let device = device::describe(e.user_agent.as_deref());
                let address = client_address(e.ip.as_deref());
                let detail = format!(
                    "Your account was signed in from a new device: {device}, from {address}."
                );
                n.security(&id, &e.user_id, "sign-in from a new device", &detail)
                    .await
            }
            Event::EmailVerificationRequested(e) => n.email_verification(&id, e).await,
            Event::SessionRevoked(s) => self
                .revocations
                .record(&s.session_id, &s.user_id)
                .await
                .map_err(|e| HandlerError::Transient(e.into())),
            _ => Ok(()),
        }
    }
}

/// "address 203.0.113.9", or "an unknown address" for anything that is not
/// an IP address.
fn client_address(ip: Option<&str>) -> String {
    match ip.and_then(|ip| ip.parse::<IpAddr>().ok()) {
        Some(ip) => format!("address {ip}"),
        None => "an unknown address".to_owned(),
    }
}

async fn user(n: &Notifier, user: UserDoc) -> Result<(), HandlerError> {
    n.replica
        .upsert_user(&user)
        .await
        .map_err(|e| HandlerError::Transient(e.into()))
}

#[cfg(test)]
mod tests {
    use super::client_address;

    #[test]
    fn only_ip_addresses_are_quoted() {
        assert_eq!(client_address(Some("203.0.113.9")), "address 203.0.113.9");
        assert_eq!(client_address(Some("2001:db8::1")), "address 2001:db8::1");
        for bad in [None, Some("evil.example"), Some("<b>1.2.3.4</b>"), Some("")] {
            assert_eq!(client_address(bad), "an unknown address");
        }
    }
}
