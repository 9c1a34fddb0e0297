//! Events auth-svc publishes. Each is written to the outbox right after the
//! state change it describes and before the response, then relayed to
//! `auth.events` (see `broker::outbox`).

use broker::events::auth::{
    EmailVerificationRequested, SessionRevoked, UserRegistered, UserUpdated,
};
use broker::{EventPayload, Outbox};
use shared::ApiError;

use crate::storage::rfc3339;
use crate::storage::sessions::SessionDoc;
use crate::storage::users::UserDoc;

/// Writes one event for `aggregate` (a user id) to the outbox.
pub async fn record<E: EventPayload>(
    outbox: &Outbox,
    aggregate: &str,
    correlation_id: &str,
    event: E,
) -> Result<(), ApiError> {
    outbox
        .enqueue(aggregate, Some(correlation_id), event)
        .await
        .map(|_| ())
        .map_err(|e| match e {
            broker::outbox::OutboxError::Store(db) => ApiError::from(db),
            other => ApiError::Unexpected(other.into()),
        })
}

pub fn user_registered(user: &UserDoc) -> UserRegistered {
    UserRegistered {
        user_id: user.id.clone(),
        username: user.username.clone(),
        display_name: user.display_name.clone(),
        avatar_url: user.avatar_url.clone(),
        email: user.email.clone(),
        profile_version: user.profile_version,
        email_verified: user.email_verified,
    }
}

pub fn user_updated(user: &UserDoc) -> UserUpdated {
    UserUpdated {
        user_id: user.id.clone(),
        username: user.username.clone(),
        display_name: user.display_name.clone(),
        avatar_url: user.avatar_url.clone(),
        email: user.email.clone(),
        profile_version: user.profile_version,
        email_verified: user.email_verified,
    }
}

/// Asks notify-svc to mail `token` to the account's address. `user` carries
/// the pending verification the token belongs to (its expiry is mailed).
pub fn verification_requested(user: &UserDoc, token: String) -> EmailVerificationRequested {
    let expires_at = user
        .email_verification
        .as_ref()
        .map(|v| rfc3339(v.expires_at))
        .unwrap_or_default();
    EmailVerificationRequested {
        user_id: user.id.clone(),
        email: user.email.clone(),
        display_name: user.display_name.clone(),
        token,
        expires_at,
    }
}

/// One `auth.session.revoked` per session this request revoked.
pub async fn sessions_revoked(
    outbox: &Outbox,
    correlation_id: &str,
    sessions: &[SessionDoc],
    reason: &str,
) -> Result<(), ApiError> {
    for s in sessions {
        let event = SessionRevoked {
            user_id: s.user_id.clone(),
            session_id: s.id.clone(),
            reason: reason.to_owned(),
        };
        record(outbox, &s.user_id, correlation_id, event).await?;
    }
    Ok(())
}
