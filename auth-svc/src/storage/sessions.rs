//! Sessions and what hangs off them. A session lives at most
//! [`SESSION_LIFETIME_SECS`]; its refresh tokens are stored as SHA-256
//! hashes, each usable once (`used` flips atomically). Presenting a used one
//! means it was stolen or replayed, and the whole session is revoked.
//!
//! Revocation is monotonic, which makes its cache simple and race-free: a
//! reader may only *add* "active" (`SET NX`), a revocation overwrites with
//! "revoked", and "revoked" never goes back.

use broker::outbox::fresh_insert;
use std::time::Duration;

use broker::outbox::EMBEDDED_FIELD;
use futures_util::future::BoxFuture;
use futures_util::TryStreamExt;
use mongodb::bson::{doc, DateTime, Document};
use mongodb::{Collection, Database};
use serde::{Deserialize, Serialize};
use shared::auth::RevocationCheck;
use shared::cache::Cache;
use shared::ApiError;

use super::{after_secs, carrier_of, carrying, now, rfc3339};
use crate::domain::secrets::{random_token, token_hash};

/// Absolute lifetime of a session, however often it is refreshed.
pub const SESSION_LIFETIME_SECS: i64 = 30 * 24 * 3600;
const ACTIVE_FLAG_TTL: Duration = Duration::from_secs(60);
const REVOKED_FLAG_TTL: Duration = Duration::from_secs(16 * 60);

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionDoc {
    #[serde(rename = "_id")]
    pub id: String,
    pub user_id: String,
    pub created_at: DateTime,
    pub last_seen_at: DateTime,
    pub expires_at: DateTime,
    pub user_agent: Option<String>,
    pub ip: Option<String>,
    pub revoked_at: Option<DateTime>,
    pub revoked_reason: Option<String>,
}

impl SessionDoc {
    pub fn is_active(&self) -> bool {
        self.revoked_at.is_none() && self.expires_at > now()
    }
}

/// A session as `GET /api/auth/sessions` lists it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionView {
    pub id: String,
    pub created_at: String,
    pub last_seen_at: String,
    pub user_agent: Option<String>,
    pub ip: Option<String>,
    pub current: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RefreshDoc {
    /// SHA-256 of the token.
    #[serde(rename = "_id")]
    hash: String,
    session_id: String,
    used: bool,
    created_at: DateTime,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ChallengeDoc {
    #[serde(rename = "_id")]
    jti: String,
    user_id: String,
    /// Codes checked against it so far (each reserved before its check).
    failures: i32,
    consumed: bool,
    expires_at: DateTime,
}

/// Outcome of presenting a refresh token.
pub enum Rotation {
    Rotated {
        session: SessionDoc,
        refresh_token: String,
    },
    /// A used token: the session it belongs to (when still active) must
    /// be revoked.
    Reused {
        session: Option<SessionDoc>,
    },
    Invalid,
}

/// Codes checked per MFA token (a correct one ends it, so: wrong ones).
pub const MFA_TOKEN_FAILURES: i32 = 5;

#[derive(Clone)]
pub struct Sessions {
    sessions: Collection<SessionDoc>,
    refresh: Collection<RefreshDoc>,
    challenges: Collection<ChallengeDoc>,
    devices: Collection<mongodb::bson::Document>,
    cache: Cache,
}

impl Sessions {
    /// Also carries the events of its changes.
    pub const COLLECTION: &'static str = "sessions";

    pub fn new(db: &Database, cache: Cache) -> Self {
        Self {
            sessions: db.collection(Self::COLLECTION),
            refresh: db.collection("refresh_tokens"),
            challenges: db.collection("mfa_challenges"),
            devices: db.collection("devices"),
            cache,
        }
    }

    pub async fn ensure_indexes(&self) -> Result<(), mongodb::error::Error> {
        use mongodb::IndexModel;
        self.sessions
            .create_index(IndexModel::builder().keys(doc! { "userId": 1 }).build())
            .await?;
        self.sessions
            .create_index(broker::outbox::carrier_index())
            .await?;
        self.refresh
            .create_index(IndexModel::builder().keys(doc! { "sessionId": 1 }).build())
            .await?;
        Ok(())
    }

    async fn new_refresh_token(&self, session_id: &str) -> Result<String, mongodb::error::Error> {
        let token = random_token();
        let inserted = self
            .refresh
            .insert_one(RefreshDoc {
                hash: token_hash(&token),
                session_id: session_id.to_owned(),
                used: false,
                created_at: now(),
            })
            .await;
        fresh_insert(inserted)?;
        Ok(token)
    }

    /// A new session (not stored yet).
    pub fn open(user_id: &str, user_agent: Option<String>, ip: Option<String>) -> SessionDoc {
        SessionDoc {
            id: uuid::Uuid::now_v7().simple().to_string(),
            user_id: user_id.to_owned(),
            created_at: now(),
            last_seen_at: now(),
            expires_at: after_secs(SESSION_LIFETIME_SECS),
            user_agent,
            ip,
            revoked_at: None,
            revoked_reason: None,
        }
    }

    /// Stores a new session carrying `events`; returns its first refresh token.
    pub async fn create(
        &self,
        session: &SessionDoc,
        events: Vec<Document>,
    ) -> Result<String, mongodb::error::Error> {
        let mut carrying = mongodb::bson::to_document(session)?;
        carrying.insert(EMBEDDED_FIELD, events);
        fresh_insert(
            self.sessions
                .clone_with_type::<Document>()
                .insert_one(carrying)
                .await,
        )?;
        self.new_refresh_token(&session.id).await
    }

    pub async fn get(&self, id: &str) -> Result<Option<SessionDoc>, mongodb::error::Error> {
        self.sessions.find_one(doc! { "_id": id }).await
    }

    /// Uses a refresh token once; see [`Rotation`].
    pub async fn rotate(&self, token: &str) -> Result<Rotation, mongodb::error::Error> {
        let hash = token_hash(token);
        let claimed = self
            .refresh
            .find_one_and_update(
                doc! { "_id": &hash, "used": false },
                doc! { "$set": { "used": true } },
            )
            .await?;
        let Some(claimed) = claimed else {
            return match self.refresh.find_one(doc! { "_id": &hash }).await? {
                Some(used) => {
                    let session = self.get(&used.session_id).await?;
                    Ok(Rotation::Reused {
                        session: session.filter(|s| s.revoked_at.is_none()),
                    })
                }
                None => Ok(Rotation::Invalid),
            };
        };
        let Some(session) = self.get(&claimed.session_id).await? else {
            return Ok(Rotation::Invalid);
        };
        if !session.is_active() {
            return Ok(Rotation::Invalid);
        }
        let refresh_token = self.new_refresh_token(&session.id).await?;
        self.sessions
            .update_one(
                doc! { "_id": &session.id },
                doc! { "$set": { "lastSeenAt": now() } },
            )
            .await?;
        Ok(Rotation::Rotated {
            session,
            refresh_token,
        })
    }

    /// Revokes `session` if it is still active, carrying `events`; `true`
    /// when this call revoked it.
    pub async fn revoke(
        &self,
        session: &SessionDoc,
        reason: &str,
        events: Vec<Document>,
        marker: Option<&str>,
    ) -> Result<bool, mongodb::error::Error> {
        let r = self
            .sessions
            .update_one(
                doc! { "_id": &session.id, "revokedAt": null },
                carrying(
                    doc! { "$set": { "revokedAt": now(), "revokedReason": reason } },
                    events,
                ),
            )
            .await?;
        // Before the cache learns of it: the sweep's recovery must cover it.
        broker::outbox::failpoint("auth.event.stored");
        let revoked = r.matched_count == 1
            || match marker {
                Some(m) => self
                    .sessions
                    .find_one(carrier_of(&session.id, m))
                    .await?
                    .is_some(),
                None => false,
            };
        // Written through even if someone else revoked it first.
        self.remember_revoked(&session.id).await;
        Ok(revoked)
    }

    /// Marks session `id` revoked in the cache, over an `active` flag that
    /// would otherwise let its access tokens through for up to a minute.
    pub async fn remember_revoked(&self, id: &str) {
        self.cache
            .set_flag("session", id, "revoked", REVOKED_FLAG_TTL)
            .await;
    }

    pub async fn list_active(
        &self,
        user_id: &str,
    ) -> Result<Vec<SessionDoc>, mongodb::error::Error> {
        let cursor = self
            .sessions
            .find(doc! { "userId": user_id, "revokedAt": null, "expiresAt": { "$gt": now() } })
            .sort(doc! { "createdAt": -1 })
            .await?;
        cursor.try_collect().await
    }

    pub fn view(session: &SessionDoc, current: &str) -> SessionView {
        SessionView {
            id: session.id.clone(),
            created_at: rfc3339(session.created_at),
            last_seen_at: rfc3339(session.last_seen_at),
            user_agent: session.user_agent.clone(),
            ip: session.ip.clone(),
            current: session.id == current,
        }
    }

    /// Revoked or expired (or unknown): cache first, MongoDB on a miss.
    pub async fn is_revoked(&self, id: &str) -> Result<bool, mongodb::error::Error> {
        match self.cache.get_flag("session", id).await.as_deref() {
            Some("revoked") => return Ok(true),
            Some("active") => return Ok(false),
            _ => {}
        }
        let active = self.get(id).await?.is_some_and(|s| s.is_active());
        if active {
            self.cache
                .set_flag_nx("session", id, "active", ACTIVE_FLAG_TTL)
                .await;
        }
        Ok(!active)
    }

    // --- MFA challenges (one per mfaToken).

    pub async fn create_challenge(
        &self,
        jti: &str,
        user_id: &str,
        ttl_secs: i64,
    ) -> Result<(), mongodb::error::Error> {
        self.challenges
            .insert_one(ChallengeDoc {
                jti: jti.to_owned(),
                user_id: user_id.to_owned(),
                failures: 0,
                consumed: false,
                expires_at: after_secs(ttl_secs),
            })
            .await?;
        Ok(())
    }

    /// Takes one of the challenge's [`MFA_TOKEN_FAILURES`] attempts before
    /// its code is checked (one conditional update, so racing requests
    /// cannot share an attempt); false when the challenge is dead, used up
    /// or unknown. A correct code then consumes the challenge.
    pub async fn reserve_challenge_attempt(
        &self,
        jti: &str,
    ) -> Result<bool, mongodb::error::Error> {
        let r = self
            .challenges
            .update_one(
                doc! { "_id": jti, "consumed": false, "failures": { "$lt": MFA_TOKEN_FAILURES }, "expiresAt": { "$gt": now() } },
                doc! { "$inc": { "failures": 1 } },
            )
            .await?;
        Ok(r.modified_count == 1)
    }

    /// Gives back an attempt that checked nothing (refused by another limit).
    pub async fn release_challenge_attempt(&self, jti: &str) -> Result<(), mongodb::error::Error> {
        self.challenges
            .update_one(
                doc! { "_id": jti, "failures": { "$gt": 0 } },
                doc! { "$inc": { "failures": -1 } },
            )
            .await?;
        Ok(())
    }

    /// Uses the challenge up after a correct code (its attempt was reserved);
    /// false if it expired or was already used.
    pub async fn consume_challenge(&self, jti: &str) -> Result<bool, mongodb::error::Error> {
        let r = self
            .challenges
            .update_one(
                doc! { "_id": jti, "consumed": false, "expiresAt": { "$gt": now() } },
                doc! { "$set": { "consumed": true } },
            )
            .await?;
        Ok(r.modified_count == 1)
    }

    /// Records the (user agent, IP) pair; true when the account has not used it before.
    pub async fn is_new_device(
        &self,
        user_id: &str,
        user_agent: Option<&str>,
        ip: Option<&str>,
    ) -> Result<bool, mongodb::error::Error> {
        let id = token_hash(&format!(
            "{user_id}\n{}\n{}",
            user_agent.unwrap_or(""),
            ip.unwrap_or("")
        ));
        let r = self
            .devices
            .update_one(
                doc! { "_id": &id },
                doc! { "$set": { "userId": user_id, "lastSeenAt": now() } },
            )
            .upsert(true)
            .await?;
        Ok(r.upserted_id.is_some())
    }
}

impl RevocationCheck for Sessions {
    fn is_revoked<'a>(&'a self, session_id: &'a str) -> BoxFuture<'a, Result<bool, ApiError>> {
        Box::pin(async move {
            Sessions::is_revoked(self, session_id)
                .await
                .map_err(ApiError::from)
        })
    }
}
