//! What notify-svc knows of users and chats, learnt from events only:
//! `users` (names, email address and whether it is verified, for mentions
//! and mail) and `chats` (names, for titles). Each keeps the highest
//! version it has seen, so a late or replayed event never overwrites a
//! newer one.

use std::collections::HashMap;

use futures_util::TryStreamExt;
use mongodb::bson::{doc, to_document};
use mongodb::{Collection, Database};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserDoc {
    #[serde(rename = "_id")]
    pub id: String,
    pub username: String,
    pub display_name: String,
    pub email: String,
    pub profile_version: i64,
    /// Whether the owner proved they read `email`; documents written before
    /// it existed read as unverified. Only verified addresses get digests
    /// and security emails.
    #[serde(default)]
    pub email_verified: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChatDoc {
    #[serde(rename = "_id")]
    pub id: String,
    pub name: Option<String>,
    pub is_group: bool,
    pub version: i64,
}

#[derive(Clone)]
pub struct Replica {
    users: Collection<UserDoc>,
    chats: Collection<ChatDoc>,
}

/// Upserts `doc` unless a version >= `version` is stored. A duplicate-key
/// error means a newer version won the race: nothing to do.
async fn upsert_newer<T: Serialize + Send + Sync>(
    coll: &Collection<T>,
    id: &str,
    version_field: &str,
    version: i64,
    value: &T,
) -> Result<(), mongodb::error::Error> {
    let set = to_document(value)?;
    match coll
        .update_one(
            doc! { "_id": id, version_field: { "$lt": version } },
            doc! { "$set": set },
        )
        .upsert(true)
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if broker::outbox::is_duplicate_key(&e) => Ok(()),
        Err(e) => Err(e),
    }
}

impl Replica {
    pub fn new(db: &Database) -> Self {
        Self {
            users: db.collection("users"),
            chats: db.collection("chats"),
        }
    }

    pub async fn upsert_user(&self, user: &UserDoc) -> Result<(), mongodb::error::Error> {
        upsert_newer(
            &self.users,
            &user.id,
            "profileVersion",
            user.profile_version,
            user,
        )
        .await
    }

    pub async fn upsert_chat(&self, chat: &ChatDoc) -> Result<(), mongodb::error::Error> {
        upsert_newer(&self.chats, &chat.id, "version", chat.version, chat).await
    }

    pub async fn user(&self, id: &str) -> Result<Option<UserDoc>, mongodb::error::Error> {
        self.users.find_one(doc! { "_id": id }).await
    }

    pub async fn users(
        &self,
        ids: &[String],
    ) -> Result<HashMap<String, UserDoc>, mongodb::error::Error> {
        let found: Vec<UserDoc> = self
            .users
            .find(doc! { "_id": { "$in": ids } })
            .await?
            .try_collect()
            .await?;
        Ok(found.into_iter().map(|u| (u.id.clone(), u)).collect())
    }

    pub async fn chat(&self, id: &str) -> Result<Option<ChatDoc>, mongodb::error::Error> {
        self.chats.find_one(doc! { "_id": id }).await
    }
}
