//! In-app notifications (`notifications`). The `_id` of one made for an
//! event is `<event id>:<user id>`, so a redelivered event makes none twice.

use futures_util::TryStreamExt;
use mongodb::bson::{doc, DateTime};
use mongodb::options::IndexOptions;
use mongodb::{Collection, Database, IndexModel};
use serde::{Deserialize, Serialize};
use shared::page::Place;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NotificationDoc {
    #[serde(rename = "_id")]
    pub id: String,
    pub user_id: String,
    /// `message`, `mention` or `security`.
    pub kind: String,
    pub chat_id: Option<String>,
    pub message_id: Option<String>,
    pub title: String,
    pub body: String,
    pub created_at: DateTime,
    pub read_at: Option<DateTime>,
}

#[derive(Clone)]
pub struct Notifications {
    coll: Collection<NotificationDoc>,
}

impl Notifications {
    pub fn new(db: &Database) -> Self {
        Self {
            coll: db.collection("notifications"),
        }
    }

    pub async fn ensure_indexes(&self) -> Result<(), mongodb::error::Error> {
        self.coll
            .create_index(
                IndexModel::builder()
                    .keys(doc! { "userId": 1, "createdAt": -1 })
                    .options(IndexOptions::builder().name("by_user".to_owned()).build())
                    .build(),
            )
            .await?;
        Ok(())
    }

    /// Stores it unless it exists; true when stored now.
    pub async fn insert(&self, n: &NotificationDoc) -> Result<bool, mongodb::error::Error> {
        match self.coll.insert_one(n).await {
            Ok(_) => Ok(true),
            Err(e) if broker::outbox::is_duplicate_key(&e) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Stores those that do not exist yet, in one round trip.
    pub async fn insert_all(&self, all: &[NotificationDoc]) -> Result<(), mongodb::error::Error> {
        if all.is_empty() {
            return Ok(());
        }
        match self.coll.insert_many(all).ordered(false).await {
            Ok(_) => Ok(()),
            Err(e) if broker::outbox::only_duplicates(&e) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Newest first.
    /// Up to `limit` of the user's notifications, newest first, older than
    /// `before` (the place of the last one of the previous page).
    pub async fn list(
        &self,
        user: &str,
        unread_only: bool,
        before: Option<&Place>,
        limit: i64,
    ) -> Result<Vec<NotificationDoc>, mongodb::error::Error> {
        let mut filter = doc! { "userId": user };
        if unread_only {
            filter.insert("readAt", mongodb::bson::Bson::Null);
        }
        if let Some(place) = before {
            filter.extend(place.after("createdAt"));
        }
        self.coll
            .find(filter)
            .sort(doc! { "createdAt": -1, "_id": -1 })
            .limit(limit)
            .await?
            .try_collect()
            .await
    }

    /// Marks the user's notification read (idempotent); false if it is not theirs.
    pub async fn mark_read(&self, user: &str, id: &str) -> Result<bool, mongodb::error::Error> {
        let found = self
            .coll
            .find_one(doc! { "_id": id, "userId": user })
            .await?;
        let Some(found) = found else {
            return Ok(false);
        };
        if found.read_at.is_none() {
            self.coll
                .update_one(
                    doc! { "_id": id, "userId": user, "readAt": mongodb::bson::Bson::Null },
                    doc! { "$set": { "readAt": DateTime::now() } },
                )
                .await?;
        }
        Ok(true)
    }
}
