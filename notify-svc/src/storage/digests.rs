//! Pending email digests. Each unread message a member may be emailed
//! about is an item (`digest_items`, `_id` `<user>:<message id>`) due
//! `emailDelaySeconds` after it arrived; a read marker that passes it
//! deletes it. A worker takes a user with due items under a lease
//! (`digest_leases`), so one instance at a time builds that user's digest.
//!
//! Building a digest is crash-safe without transactions: the due items are
//! first tagged with a batch id, the mail job is inserted under that id,
//! then the tagged items are deleted. A run interrupted anywhere is resumed
//! by the next one with the same batch id, and the job insert is a no-op the
//! second time, so each item is mailed once.

use futures_util::TryStreamExt;
use mongodb::bson::{doc, Bson, DateTime};
use mongodb::options::IndexOptions;
use mongodb::{Collection, Database, IndexModel};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DigestItem {
    #[serde(rename = "_id")]
    pub id: String,
    pub user_id: String,
    pub chat_id: String,
    pub chat_title: String,
    pub message_id: String,
    pub sender: String,
    pub preview: String,
    pub due_at: DateTime,
    #[serde(default)]
    pub batch: Option<String>,
}

#[derive(Clone)]
pub struct Digests {
    items: Collection<DigestItem>,
    leases: Collection<mongodb::bson::Document>,
    markers: Collection<mongodb::bson::Document>,
}

impl Digests {
    pub fn new(db: &Database) -> Self {
        Self {
            items: db.collection("digest_items"),
            leases: db.collection("digest_leases"),
            markers: db.collection("read_markers"),
        }
    }

    pub async fn ensure_indexes(&self) -> Result<(), mongodb::error::Error> {
        for (keys, name) in [
            (doc! { "dueAt": 1 }, "due"),
            (
                doc! { "userId": 1, "chatId": 1, "messageId": 1 },
                "user_chat",
            ),
        ] {
            self.items
                .create_index(
                    IndexModel::builder()
                        .keys(keys)
                        .options(IndexOptions::builder().name(name.to_owned()).build())
                        .build(),
                )
                .await?;
        }
        Ok(())
    }

    /// Adds those not added yet, in one round trip.
    pub async fn add_all(&self, items: &[DigestItem]) -> Result<(), mongodb::error::Error> {
        if items.is_empty() {
            return Ok(());
        }
        match self.items.insert_many(items).ordered(false).await {
            Ok(_) => Ok(()),
            Err(e) if broker::outbox::only_duplicates(&e) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Read markers of `users` in `chat`, in one query.
    pub async fn markers(
        &self,
        users: &[String],
        chat: &str,
    ) -> Result<std::collections::HashMap<String, String>, mongodb::error::Error> {
        let ids: Vec<String> = users.iter().map(|u| format!("{u}:{chat}")).collect();
        let found: Vec<mongodb::bson::Document> = self
            .markers
            .find(doc! { "_id": { "$in": ids } })
            .await?
            .try_collect()
            .await?;
        Ok(found
            .into_iter()
            .filter_map(|d| {
                let id = d.get_str("_id").ok()?;
                let user = id.strip_suffix(&format!(":{chat}"))?.to_owned();
                Some((user, d.get_str("messageId").ok()?.to_owned()))
            })
            .collect())
    }

    /// The read marker of `user` in `chat` reached `message_id`: everything
    /// up to it is read. Message ids are UUIDv7, ordered by time.
    pub async fn read_up_to(
        &self,
        user: &str,
        chat: &str,
        message_id: &str,
    ) -> Result<u64, mongodb::error::Error> {
        Ok(self
            .items
            .delete_many(
                doc! { "userId": user, "chatId": chat, "messageId": { "$lte": message_id } },
            )
            .await?
            .deleted_count)
    }

    /// Records how far `user` has read in `chat` (only ever forward).
    pub async fn set_marker(
        &self,
        user: &str,
        chat: &str,
        message_id: &str,
    ) -> Result<(), mongodb::error::Error> {
        self.markers
            .update_one(
                doc! { "_id": format!("{user}:{chat}") },
                doc! { "$max": { "messageId": message_id } },
            )
            .upsert(true)
            .await?;
        Ok(())
    }

    /// The user left the chat: no digest about it.
    pub async fn left(&self, user: &str, chat: &str) -> Result<(), mongodb::error::Error> {
        self.items
            .delete_many(doc! { "userId": user, "chatId": chat })
            .await?;
        Ok(())
    }

    /// Some users with items due by `now`.
    pub async fn due_users(
        &self,
        now: DateTime,
        limit: i64,
    ) -> Result<Vec<String>, mongodb::error::Error> {
        let items: Vec<DigestItem> = self
            .items
            .find(doc! { "dueAt": { "$lte": now } })
            .sort(doc! { "dueAt": 1 })
            .limit(limit)
            .await?
            .try_collect()
            .await?;
        let mut users: Vec<String> = items.into_iter().map(|i| i.user_id).collect();
        users.sort();
        users.dedup();
        Ok(users)
    }

    /// Takes `user` for `lease_ms` unless another holder's lease is live.
    pub async fn lease(
        &self,
        user: &str,
        holder: &str,
        lease_ms: i64,
    ) -> Result<bool, mongodb::error::Error> {
        let now = DateTime::now();
        let until = DateTime::from_millis(now.timestamp_millis() + lease_ms);
        match self
            .leases
            .update_one(
                doc! { "_id": user, "$or": [ { "until": { "$lt": now } }, { "holder": holder } ] },
                doc! { "$set": { "until": until, "holder": holder } },
            )
            .upsert(true)
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if broker::outbox::is_duplicate_key(&e) => Ok(false),
            Err(e) => Err(e),
        }
    }

    pub async fn release(&self, user: &str, holder: &str) -> Result<(), mongodb::error::Error> {
        self.leases
            .delete_one(doc! { "_id": user, "holder": holder })
            .await?;
        Ok(())
    }

    /// The batch to mail for `user`: one left unfinished by an earlier run,
    /// else the items due now, tagged with `new_batch`.
    pub async fn take_batch(
        &self,
        user: &str,
        now: DateTime,
        new_batch: &str,
    ) -> Result<Option<(String, Vec<DigestItem>)>, mongodb::error::Error> {
        let unfinished = self
            .items
            .find_one(doc! { "userId": user, "batch": { "$type": "string" } })
            .await?;
        let batch = match unfinished.and_then(|i| i.batch) {
            Some(b) => b,
            None => {
                self.items
                    .update_many(
                        doc! { "userId": user, "dueAt": { "$lte": now }, "batch": Bson::Null },
                        doc! { "$set": { "batch": new_batch } },
                    )
                    .await?;
                new_batch.to_owned()
            }
        };
        let items: Vec<DigestItem> = self
            .items
            .find(doc! { "userId": user, "batch": &batch })
            .sort(doc! { "chatId": 1, "messageId": 1 })
            .await?
            .try_collect()
            .await?;
        Ok((!items.is_empty()).then_some((batch, items)))
    }

    /// Looks at a batch again in `ms` (its recipient is not known yet).
    pub async fn postpone_batch(&self, batch: &str, ms: i64) -> Result<(), mongodb::error::Error> {
        let later = DateTime::from_millis(DateTime::now().timestamp_millis() + ms);
        self.items
            .update_many(doc! { "batch": batch }, doc! { "$set": { "dueAt": later } })
            .await?;
        Ok(())
    }

    pub async fn finish_batch(&self, batch: &str) -> Result<(), mongodb::error::Error> {
        self.items.delete_many(doc! { "batch": batch }).await?;
        Ok(())
    }
}
