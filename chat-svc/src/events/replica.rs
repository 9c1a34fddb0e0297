//! `chat-svc.users`: profiles from `user.registered` / `user.updated`, and
//! revoked sessions from `auth.session.revoked`, into chat-svc's own database.

use broker::consumer::HandlerError;
use broker::events::DecodedEnvelope;
use broker::{Event, Handler};
use shared::cache::Cache;

use crate::domain::service::PROFILES_GENERATION;

use crate::storage::users::{UserDoc, Users};
use shared::revocations::Revocations;

pub struct ReplicaHandler {
    pub cache: Cache,
    pub users: Users,
    pub revocations: Revocations,
}

impl Handler for ReplicaHandler {
    async fn handle(&self, event: &DecodedEnvelope) -> Result<(), HandlerError> {
        let result = match &event.data {
            Event::UserRegistered(u) => {
                let doc = UserDoc {
                    id: u.user_id.clone(),
                    username: u.username.clone(),
                    display_name: u.display_name.clone(),
                    avatar_url: u.avatar_url.clone(),
                    profile_version: u.profile_version,
                };
                self.users.upsert(&doc).await
            }
            Event::UserUpdated(u) => {
                let doc = UserDoc {
                    id: u.user_id.clone(),
                    username: u.username.clone(),
                    display_name: u.display_name.clone(),
                    avatar_url: u.avatar_url.clone(),
                    profile_version: u.profile_version,
                };
                let stored = self.users.upsert(&doc).await;
                if stored.is_ok() {
                    // Profiles are embedded in cached chat lists and pages.
                    self.cache.bump(&[PROFILES_GENERATION.to_owned()]).await;
                }
                stored
            }
            Event::SessionRevoked(s) => self.revocations.record(&s.session_id, &s.user_id).await,
            _ => Ok(()),
        };
        result.map_err(|e| HandlerError::Transient(e.into()))
    }
}
