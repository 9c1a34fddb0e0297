//! Web Push subscriptions (`push_subscriptions`, one per user and
//! endpoint) and the record of pushes made (`push_deliveries`, `_id`
//! `<event id>:<subscription id>`), so a retried event pushes only to the
//! subscriptions it has not reached yet.

use futures_util::TryStreamExt;
use mongodb::bson::{doc, DateTime};
use mongodb::options::IndexOptions;
use mongodb::{Collection, Database, IndexModel};
use serde::{Deserialize, Serialize};

/// Subscriptions one user may keep (devices and browsers).
pub const MAX_PER_USER: u64 = 20;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionDoc {
    #[serde(rename = "_id")]
    pub id: String,
    pub user_id: String,
    pub endpoint: String,
    pub p256dh: String,
    pub auth: String,
    pub created_at: DateTime,
}

#[derive(Debug, thiserror::Error)]
pub enum AddError {
    #[error("too many subscriptions")]
    TooMany,
    #[error(transparent)]
    Db(#[from] mongodb::error::Error),
}

#[derive(Clone)]
pub struct Subscriptions {
    coll: Collection<SubscriptionDoc>,
    deliveries: Collection<mongodb::bson::Document>,
}

impl Subscriptions {
    pub fn new(db: &Database) -> Self {
        Self {
            coll: db.collection("push_subscriptions"),
            deliveries: db.collection("push_deliveries"),
        }
    }

    pub async fn ensure_indexes(&self) -> Result<(), mongodb::error::Error> {
        self.coll
            .create_index(
                IndexModel::builder()
                    .keys(doc! { "userId": 1, "endpoint": 1 })
                    .options(
                        IndexOptions::builder()
                            .name("user_endpoint".to_owned())
                            .unique(true)
                            .build(),
                    )
                    .build(),
            )
            .await?;
        Ok(())
    }

    /// Saves a subscription (the same endpoint again updates its keys and
    /// keeps its id).
    pub async fn add(&self, sub: SubscriptionDoc) -> Result<String, AddError> {
        let filter = doc! { "userId": &sub.user_id, "endpoint": &sub.endpoint };
        if let Some(existing) = self.coll.find_one(filter.clone()).await? {
            self.coll
                .update_one(
                    doc! { "_id": &existing.id },
                    doc! { "$set": { "p256dh": &sub.p256dh, "auth": &sub.auth } },
                )
                .await?;
            return Ok(existing.id);
        }
        if self
            .coll
            .count_documents(doc! { "userId": &sub.user_id })
            .await?
            >= MAX_PER_USER
        {
            return Err(AddError::TooMany);
        }
        match self.coll.insert_one(&sub).await {
            Ok(_) => Ok(sub.id),
            // The same endpoint saved concurrently: the other insert won.
            Err(e) if broker::outbox::is_duplicate_key(&e) => Ok(self
                .coll
                .find_one(filter)
                .await?
                .map(|s| s.id)
                .unwrap_or(sub.id)),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn remove(&self, user: &str, id: &str) -> Result<bool, mongodb::error::Error> {
        Ok(self
            .coll
            .delete_one(doc! { "_id": id, "userId": user })
            .await?
            .deleted_count
            == 1)
    }

    /// The push service says the subscription is gone.
    pub async fn forget(&self, id: &str) -> Result<(), mongodb::error::Error> {
        self.coll.delete_one(doc! { "_id": id }).await?;
        Ok(())
    }

    pub async fn of_users(
        &self,
        users: &[String],
    ) -> Result<Vec<SubscriptionDoc>, mongodb::error::Error> {
        if users.is_empty() {
            return Ok(Vec::new());
        }
        self.coll
            .find(doc! { "userId": { "$in": users } })
            .await?
            .try_collect()
            .await
    }

    /// Which of `keys` have been delivered already, in one query.
    pub async fn delivered_of(
        &self,
        keys: &[String],
    ) -> Result<std::collections::HashSet<String>, mongodb::error::Error> {
        if keys.is_empty() {
            return Ok(Default::default());
        }
        let found: Vec<mongodb::bson::Document> = self
            .deliveries
            .find(doc! { "_id": { "$in": keys } })
            .await?
            .try_collect()
            .await?;
        Ok(found
            .into_iter()
            .filter_map(|d| d.get_str("_id").ok().map(str::to_owned))
            .collect())
    }

    pub async fn record_delivery(&self, key: &str) -> Result<(), mongodb::error::Error> {
        match self
            .deliveries
            .insert_one(doc! { "_id": key, "at": DateTime::now() })
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if broker::outbox::is_duplicate_key(&e) => Ok(()),
            Err(e) => Err(e),
        }
    }
}
