//! The `users` collection: one document per account, with its MFA state.
//! Uniqueness of usernames and emails is enforced by unique indexes on their
//! lower-cased forms, so two racing registrations give one winner.

use std::time::Duration;

use futures_util::TryStreamExt;
use mongodb::bson::{doc, DateTime, Document};
use mongodb::options::IndexOptions;
use mongodb::{Collection, Database, IndexModel};
use serde::{Deserialize, Serialize};
use shared::cache::Cache;

use super::{after_secs, carrier_of, carrying, rfc3339};
use crate::domain::secrets::{random_token, token_hash};
use broker::outbox::EMBEDDED_FIELD;

const PROFILE_TTL: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MfaState {
    pub enabled: bool,
    /// The active TOTP secret, sealed.
    pub secret: Option<String>,
    /// A secret from setup, not yet confirmed with a code, sealed.
    pub pending_secret: Option<String>,
    /// The last accepted time step; only later steps are accepted.
    pub last_step: i64,
    /// Keyed hashes of the unused recovery codes.
    pub recovery_codes: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserDoc {
    #[serde(rename = "_id")]
    pub id: String,
    pub username: String,
    pub username_norm: String,
    pub email: String,
    pub email_norm: String,
    pub display_name: String,
    pub avatar_url: Option<String>,
    pub bio: Option<String>,
    pub password_hash: String,
    pub created_at: DateTime,
    pub profile_version: i64,
    #[serde(default)]
    pub mfa: MfaState,
    /// The owner redeemed a verification token mailed to `email`. Accounts
    /// stored before verification existed read as unverified.
    #[serde(default)]
    pub email_verified: bool,
    /// The one verification token that works now (a new one replaces it).
    #[serde(default)]
    pub email_verification: Option<EmailVerification>,
}

/// A pending verification of the address: only the token's hash is stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EmailVerification {
    /// SHA-256 of the token (256 random bits).
    pub token_hash: String,
    pub expires_at: DateTime,
}

/// Verification tokens work 24 hours.
pub const EMAIL_VERIFICATION_TTL_SECS: i64 = 24 * 3600;

impl EmailVerification {
    /// A fresh token (to mail) and what is stored of it.
    pub fn issue() -> (Self, String) {
        let token = random_token();
        let pending = Self {
            token_hash: token_hash(&token),
            expires_at: after_secs(EMAIL_VERIFICATION_TTL_SECS),
        };
        (pending, token)
    }
}

/// What anyone may see of a user.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PublicProfile {
    pub id: String,
    pub username: String,
    pub display_name: String,
    pub avatar_url: Option<String>,
    pub bio: Option<String>,
}

/// What the user sees of themself.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OwnUser {
    pub id: String,
    pub username: String,
    pub email: String,
    pub email_verified: bool,
    pub display_name: String,
    pub avatar_url: Option<String>,
    pub bio: Option<String>,
    pub mfa_enabled: bool,
    pub created_at: String,
}

impl UserDoc {
    pub fn public(&self) -> PublicProfile {
        PublicProfile {
            id: self.id.clone(),
            username: self.username.clone(),
            display_name: self.display_name.clone(),
            avatar_url: self.avatar_url.clone(),
            bio: self.bio.clone(),
        }
    }

    pub fn own(&self) -> OwnUser {
        OwnUser {
            id: self.id.clone(),
            username: self.username.clone(),
            email: self.email.clone(),
            email_verified: self.email_verified,
            display_name: self.display_name.clone(),
            avatar_url: self.avatar_url.clone(),
            bio: self.bio.clone(),
            mfa_enabled: self.mfa.enabled,
            created_at: rfc3339(self.created_at),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("{0} is taken")]
    Taken(&'static str),
    #[error(transparent)]
    Db(#[from] mongodb::error::Error),
    #[error(transparent)]
    Encode(#[from] mongodb::bson::ser::Error),
}

/// Profile fields a user may change; `None` leaves a field as it is.
#[derive(Debug, Default)]
pub struct ProfileChange {
    pub display_name: Option<String>,
    pub avatar_url: Option<Option<String>>,
    pub bio: Option<Option<String>>,
}

impl ProfileChange {
    /// `user` with the change applied, at the next profile version.
    pub fn apply(&self, user: &UserDoc) -> UserDoc {
        let mut after = user.clone();
        if let Some(name) = &self.display_name {
            after.display_name.clone_from(name);
        }
        if let Some(url) = &self.avatar_url {
            after.avatar_url.clone_from(url);
        }
        if let Some(bio) = &self.bio {
            after.bio.clone_from(bio);
        }
        after.profile_version += 1;
        after
    }
}

#[derive(Clone)]
pub struct Users {
    coll: Collection<UserDoc>,
    cache: Cache,
}

impl Users {
    /// Also carries the events of its changes.
    pub const COLLECTION: &'static str = "users";

    pub fn new(db: &Database, cache: Cache) -> Self {
        Self {
            coll: db.collection(Self::COLLECTION),
            cache,
        }
    }

    pub async fn ensure_indexes(&self) -> Result<(), mongodb::error::Error> {
        for key in ["usernameNorm", "emailNorm"] {
            self.coll
                .create_index(
                    IndexModel::builder()
                        .keys(doc! { key: 1 })
                        .options(IndexOptions::builder().unique(true).build())
                        .build(),
                )
                .await?;
        }
        self.coll
            .create_index(
                IndexModel::builder()
                    .keys(doc! { "emailVerification.tokenHash": 1 })
                    .build(),
            )
            .await?;
        self.coll
            .create_index(broker::outbox::carrier_index())
            .await?;
        Ok(())
    }

    /// Stores a new account carrying `events` (staged outbox entries).
    pub async fn insert(&self, user: &UserDoc, events: Vec<Document>) -> Result<(), UserError> {
        let mut carrying = mongodb::bson::to_document(user)?;
        carrying.insert(EMBEDDED_FIELD, events);
        let inserted = self
            .coll
            .clone_with_type::<Document>()
            .insert_one(carrying)
            .await;
        match inserted {
            Ok(_) => Ok(()),
            Err(e) if broker::outbox::is_duplicate_key(&e) => {
                // Our own insert, applied by an attempt the driver retried
                // (a server that does not deduplicate retried writes)?
                if self
                    .coll
                    .find_one(doc! { "_id": &user.id })
                    .await?
                    .is_some()
                {
                    return Ok(());
                }
                // Which one? Ask, rather than parse the server's message.
                let name_taken = self
                    .coll
                    .find_one(doc! { "usernameNorm": &user.username_norm })
                    .await?
                    .is_some();
                Err(UserError::Taken(if name_taken {
                    "username"
                } else {
                    "email"
                }))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// By lower-cased username or email.
    pub async fn by_login(
        &self,
        login_norm: &str,
    ) -> Result<Option<UserDoc>, mongodb::error::Error> {
        self.coll
            .find_one(
                doc! { "$or": [ { "usernameNorm": login_norm }, { "emailNorm": login_norm } ] },
            )
            .await
    }

    pub async fn by_id(&self, id: &str) -> Result<Option<UserDoc>, mongodb::error::Error> {
        self.coll.find_one(doc! { "_id": id }).await
    }

    /// Public profile, cache-aside.
    pub async fn profile(&self, id: &str) -> Result<Option<PublicProfile>, mongodb::error::Error> {
        if let Some(p) = self.cache.get::<PublicProfile>("profile", id).await {
            return Ok(Some(p));
        }
        let Some(user) = self.by_id(id).await? else {
            return Ok(None);
        };
        let profile = user.public();
        self.cache
            .put("profile", id, user.profile_version, &profile, PROFILE_TTL)
            .await;
        Ok(Some(profile))
    }

    /// Drops the cached profile of `id`: the next read takes MongoDB's.
    pub async fn forget_profile(&self, id: &str) {
        self.cache.delete("profile", id).await;
    }

    /// Stores `after`'s profile, carrying `events`, if the account is still
    /// at the version before it; the cache is written through. `false`:
    /// someone changed the profile meanwhile.
    pub async fn store_profile(
        &self,
        after: &UserDoc,
        events: Vec<Document>,
        marker: Option<&str>,
    ) -> Result<bool, mongodb::error::Error> {
        let update = carrying(
            doc! { "$set": {
                "displayName": &after.display_name,
                "avatarUrl": after.avatar_url.clone(),
                "bio": after.bio.clone(),
                "profileVersion": after.profile_version,
            } },
            events,
        );
        let filter = doc! { "_id": &after.id, "profileVersion": after.profile_version - 1 };
        let stored = self.coll.update_one(filter, update).await?.matched_count == 1
            || self.carries(&after.id, marker).await?;
        if stored {
            self.cache
                .put(
                    "profile",
                    &after.id,
                    after.profile_version,
                    &after.public(),
                    PROFILE_TTL,
                )
                .await;
        }
        Ok(stored)
    }

    /// Whether account `id` carries the event `marker` (see [`carrier_of`]).
    async fn carries(&self, id: &str, marker: Option<&str>) -> Result<bool, mongodb::error::Error> {
        let Some(marker) = marker else {
            return Ok(false);
        };
        Ok(self.coll.find_one(carrier_of(id, marker)).await?.is_some())
    }

    /// The unverified account whose pending token has this hash, while it
    /// is valid.
    pub async fn by_verification_token(
        &self,
        token_hash: &str,
    ) -> Result<Option<UserDoc>, mongodb::error::Error> {
        self.coll
            .find_one(doc! {
                "emailVerification.tokenHash": token_hash,
                "emailVerification.expiresAt": { "$gt": DateTime::now() },
            })
            .await
    }

    /// Redeems a verification token: exactly one caller wins (one
    /// conditional update on the token and the version it was read at),
    /// and the token stops working. `after` is the verified account, its
    /// profile version bumped so that replicas take the `user.updated` it
    /// carries in `events`.
    pub async fn redeem_verification(
        &self,
        after: &UserDoc,
        token_hash: &str,
        events: Vec<Document>,
        marker: Option<&str>,
    ) -> Result<bool, mongodb::error::Error> {
        let filter = doc! {
            "_id": &after.id,
            "profileVersion": after.profile_version - 1,
            "emailVerification.tokenHash": token_hash,
            "emailVerification.expiresAt": { "$gt": DateTime::now() },
        };
        let update = carrying(
            doc! { "$set": {
                "emailVerified": true,
                "emailVerification": null,
                "profileVersion": after.profile_version,
            } },
            events,
        );
        let stored = self.coll.update_one(filter, update).await?.matched_count == 1
            || self.carries(&after.id, marker).await?;
        if stored {
            self.cache
                .put(
                    "profile",
                    &after.id,
                    after.profile_version,
                    &after.public(),
                    PROFILE_TTL,
                )
                .await;
        }
        Ok(stored)
    }

    /// Replaces the pending verification token of an unverified account
    /// (older ones stop working), carrying `events`; `false` when the
    /// account is verified.
    pub async fn renew_verification(
        &self,
        id: &str,
        pending: &EmailVerification,
        events: Vec<Document>,
        marker: Option<&str>,
    ) -> Result<bool, mongodb::error::Error> {
        let pending = mongodb::bson::to_bson(pending)?;
        let r = self
            .coll
            .update_one(
                doc! { "_id": id, "emailVerified": { "$ne": true } },
                carrying(doc! { "$set": { "emailVerification": pending } }, events),
            )
            .await?;
        Ok(r.matched_count == 1 || self.carries(id, marker).await?)
    }

    pub async fn set_password(&self, id: &str, hash: &str) -> Result<(), mongodb::error::Error> {
        self.coll
            .update_one(
                doc! { "_id": id },
                doc! { "$set": { "passwordHash": hash } },
            )
            .await?;
        Ok(())
    }

    /// Usernames or display names containing `query`, case-insensitively.
    pub async fn search(
        &self,
        query: &str,
        limit: i64,
    ) -> Result<Vec<PublicProfile>, mongodb::error::Error> {
        let pattern = regex_escape(query);
        let cursor = self
            .coll
            .find(doc! { "$or": [
                { "usernameNorm": { "$regex": &pattern, "$options": "i" } },
                { "displayName": { "$regex": &pattern, "$options": "i" } },
            ] })
            .sort(doc! { "usernameNorm": 1 })
            .limit(limit)
            .await?;
        let users: Vec<UserDoc> = cursor.try_collect().await?;
        Ok(users.iter().map(UserDoc::public).collect())
    }

    // --- MFA: every transition is one conditional update, so racing
    // requests cannot both win.

    pub async fn set_pending_secret(
        &self,
        id: &str,
        sealed: &str,
    ) -> Result<bool, mongodb::error::Error> {
        let r = self
            .coll
            .update_one(
                doc! { "_id": id, "mfa.enabled": { "$ne": true } },
                doc! { "$set": { "mfa.pendingSecret": sealed } },
            )
            .await?;
        Ok(r.matched_count == 1)
    }

    /// Turns the pending secret on, if it is still the one the code was checked against.
    pub async fn enable_mfa(
        &self,
        id: &str,
        pending: &str,
        step: i64,
        code_hashes: &[String],
        events: Vec<Document>,
        marker: Option<&str>,
    ) -> Result<bool, mongodb::error::Error> {
        let r = self
            .coll
            .update_one(
                doc! { "_id": id, "mfa.enabled": { "$ne": true }, "mfa.pendingSecret": pending },
                carrying(
                    doc! { "$set": {
                        "mfa.enabled": true,
                        "mfa.secret": pending,
                        "mfa.pendingSecret": null,
                        "mfa.lastStep": step,
                        "mfa.recoveryCodes": code_hashes,
                    } },
                    events,
                ),
            )
            .await?;
        Ok(r.matched_count == 1 || self.carries(id, marker).await?)
    }

    /// Turns MFA off, carrying `events`; `false` when it was not on.
    pub async fn disable_mfa(
        &self,
        id: &str,
        events: Vec<Document>,
        marker: Option<&str>,
    ) -> Result<bool, mongodb::error::Error> {
        let r = self
            .coll
            .update_one(
                doc! { "_id": id, "mfa.enabled": true },
                carrying(
                    doc! { "$set": { "mfa": { "enabled": false, "secret": null, "pendingSecret": null, "lastStep": 0_i64, "recoveryCodes": [] } } },
                    events,
                ),
            )
            .await?;
        Ok(r.matched_count == 1 || self.carries(id, marker).await?)
    }

    pub async fn replace_recovery_codes(
        &self,
        id: &str,
        code_hashes: &[String],
    ) -> Result<bool, mongodb::error::Error> {
        let r = self
            .coll
            .update_one(
                doc! { "_id": id, "mfa.enabled": true },
                doc! { "$set": { "mfa.recoveryCodes": code_hashes } },
            )
            .await?;
        Ok(r.matched_count == 1)
    }

    /// Accepts time step `step` only if it is later than the last accepted one.
    pub async fn consume_step(&self, id: &str, step: i64) -> Result<bool, mongodb::error::Error> {
        let r = self
            .coll
            .update_one(
                doc! { "_id": id, "mfa.enabled": true, "mfa.lastStep": { "$lt": step } },
                doc! { "$set": { "mfa.lastStep": step } },
            )
            .await?;
        Ok(r.modified_count == 1)
    }

    /// Removes one recovery code if present, carrying `events` (which say
    /// how many remain); `false` when it was not there (wrong, or used).
    pub async fn consume_recovery_code(
        &self,
        id: &str,
        code_hash: &str,
        events: Vec<Document>,
        marker: Option<&str>,
    ) -> Result<bool, mongodb::error::Error> {
        let r = self
            .coll
            .update_one(
                doc! { "_id": id, "mfa.enabled": true, "mfa.recoveryCodes": code_hash },
                carrying(doc! { "$pull": { "mfa.recoveryCodes": code_hash } }, events),
            )
            .await?;
        Ok(r.matched_count == 1 || self.carries(id, marker).await?)
    }
}

/// Escapes regex metacharacters: user input is matched literally.
fn regex_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 2);
    for c in s.chars() {
        if "\\^$.|?*+()[]{}-/".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn search_input_is_matched_literally() {
        assert_eq!(super::regex_escape("a.b*(c)"), r"a\.b\*\(c\)");
    }
}
