//! Device tokens (`device_tokens`): an opaque random token handed to a
//! client at login, bound to the account, stored only as its SHA-256, valid
//! [`DEVICE_TOKEN_TTL_SECS`] from issue. A login that presents a valid one
//! draws on the device's own allowance of wrong passwords instead of the
//! account's, so a stranger's guesses cannot lock the owner out of the
//! devices they already use. MongoDB's TTL index removes expired ones.

use mongodb::bson::{doc, DateTime};
use mongodb::options::IndexOptions;
use mongodb::{Collection, Database, IndexModel};
use serde::{Deserialize, Serialize};

use super::{after_secs, now};
use crate::domain::secrets::{random_token, token_hash};

/// 90 days (api.md, `login`).
pub const DEVICE_TOKEN_TTL_SECS: i64 = 90 * 24 * 3600;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeviceTokenDoc {
    /// SHA-256 of the token.
    #[serde(rename = "_id")]
    hash: String,
    user_id: String,
    created_at: DateTime,
    expires_at: DateTime,
}

/// A device token presented by a client and found valid for the account.
pub struct KnownDevice {
    /// What the client sent (handed back, so the device keeps one token).
    pub token: String,
    /// Its stored hash: the key of the device's own limit.
    pub hash: String,
}

#[derive(Clone)]
pub struct DeviceTokens {
    coll: Collection<DeviceTokenDoc>,
}

impl DeviceTokens {
    pub fn new(db: &Database) -> Self {
        Self {
            coll: db.collection("device_tokens"),
        }
    }

    pub async fn ensure_indexes(&self) -> Result<(), mongodb::error::Error> {
        self.coll
            .create_index(
                IndexModel::builder()
                    .keys(doc! { "expiresAt": 1 })
                    .options(
                        IndexOptions::builder()
                            .expire_after(std::time::Duration::ZERO)
                            .build(),
                    )
                    .build(),
            )
            .await?;
        Ok(())
    }

    /// A fresh token for `user_id`.
    pub async fn issue(&self, user_id: &str) -> Result<String, mongodb::error::Error> {
        let token = random_token();
        self.coll
            .insert_one(DeviceTokenDoc {
                hash: token_hash(&token),
                user_id: user_id.to_owned(),
                created_at: now(),
                expires_at: after_secs(DEVICE_TOKEN_TTL_SECS),
            })
            .await?;
        Ok(token)
    }

    /// `Some` when `token` is an unexpired device token of `user_id`.
    pub async fn find_valid(
        &self,
        user_id: &str,
        token: &str,
    ) -> Result<Option<KnownDevice>, mongodb::error::Error> {
        let hash = token_hash(token);
        let found = self
            .coll
            .find_one(doc! { "_id": &hash, "userId": user_id, "expiresAt": { "$gt": now() } })
            .await?;
        Ok(found.map(|_| KnownDevice {
            token: token.to_owned(),
            hash,
        }))
    }

    /// The presented token when it is valid for `user_id`, else a new one.
    pub async fn keep_or_issue(
        &self,
        user_id: &str,
        presented: Option<&str>,
    ) -> Result<String, mongodb::error::Error> {
        if let Some(token) = presented {
            if let Some(known) = self.find_valid(user_id, token).await? {
                return Ok(known.token);
            }
        }
        self.issue(user_id).await
    }
}
