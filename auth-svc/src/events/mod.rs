//! Events auth-svc publishes. Each travels inside the document whose change
//! it describes, stored by the same single-document write ([`Carried`]),
//! and is relayed from there to `auth.events` (see `broker::outbox`): a
//! crash after the write cannot lose it, and no event goes out for a
//! change that was not stored.

use broker::events::auth::{
    EmailVerificationRequested, SessionRevoked, UserRegistered, UserUpdated,
};
use broker::events::DecodedEnvelope;
use broker::outbox::{OutboxError, Recovery, Staged};
use broker::{Event, EventPayload, Outbox};
use futures_util::future::BoxFuture;
use mongodb::bson::Document;
use shared::ApiError;

use crate::storage::rfc3339;
use crate::storage::sessions::{SessionDoc, Sessions};
use crate::storage::users::{UserDoc, Users};

/// The collections whose documents carry their events; registered with
/// the relay at start-up.
pub const CARRIERS: [&str; 2] = [
    crate::storage::users::Users::COLLECTION,
    crate::storage::sessions::Sessions::COLLECTION,
];

/// What the outbox sweep redoes for an event it relays (its writer may
/// have died right after the write): the cache updates that follow it, so
/// a revoked session is not served from an `active` flag, nor a changed
/// profile from the old entry, until they expire.
pub struct CacheRecovery {
    pub users: Users,
    pub sessions: Sessions,
}

impl Recovery for CacheRecovery {
    fn recover<'a>(&'a self, event: &'a DecodedEnvelope) -> BoxFuture<'a, Option<Event>> {
        Box::pin(async move {
            match &event.data {
                Event::SessionRevoked(e) => self.sessions.remember_revoked(&e.session_id).await,
                Event::UserUpdated(e) => self.users.forget_profile(&e.user_id).await,
                _ => {}
            }
            None
        })
    }
}

/// Tries of a read-then-conditional-write that keeps meeting another change.
pub const CHANGE_ATTEMPTS: usize = 5;

fn outbox_error(e: OutboxError) -> ApiError {
    match e {
        OutboxError::Store(db) => ApiError::from(db),
        other => ApiError::Unexpected(other.into()),
    }
}

/// The events one write stores in the document it changes: staged before
/// the write, whose update carries [`Carried::entries`], and handed to the
/// relay by [`Carried::committed`] once it is done.
pub struct Carried<'a> {
    outbox: &'a Outbox,
    correlation_id: &'a str,
    staged: Vec<Staged>,
}

impl<'a> Carried<'a> {
    pub fn new(outbox: &'a Outbox, correlation_id: &'a str) -> Self {
        Self {
            outbox,
            correlation_id,
            staged: Vec::new(),
        }
    }

    /// Adds one event for `aggregate` (a user id); published in the order added.
    pub fn with<E: EventPayload>(mut self, aggregate: &str, event: E) -> Result<Self, ApiError> {
        let staged = self
            .outbox
            .stage(aggregate, Some(self.correlation_id), event)
            .map_err(outbox_error)?;
        self.staged.push(staged);
        Ok(self)
    }

    /// The entries for the document's `outbox` array.
    pub fn entries(&self) -> Result<Vec<Document>, ApiError> {
        self.staged
            .iter()
            .map(|s| s.entry().map_err(outbox_error))
            .collect()
    }

    /// The id of the first event: finding it in a document proves that a
    /// write which matched nothing on its retry had gone in the first time.
    pub fn marker(&self) -> Option<&str> {
        self.staged.first().map(Staged::id)
    }

    /// The write stored the events in document `doc_id` of `collection`:
    /// relay them now (or, if this process dies first, the sweep does).
    pub fn committed(self, collection: &str, doc_id: &str) {
        broker::outbox::failpoint("auth.event.stored");
        for staged in self.staged {
            self.outbox.committed(staged, collection, doc_id);
        }
    }
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

pub fn session_revoked(session: &SessionDoc, reason: &str) -> SessionRevoked {
    SessionRevoked {
        user_id: session.user_id.clone(),
        session_id: session.id.clone(),
        reason: reason.to_owned(),
    }
}
