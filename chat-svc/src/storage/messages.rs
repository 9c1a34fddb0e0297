//! Messages. Ids are UUID v7 (time-ordered), so "newest first" and "before
//! <id>" are index scans. A send with a `clientMsgId` is idempotent per
//! (chat, sender, clientMsgId) through a unique key, also across instances.

use broker::outbox::EMBEDDED_FIELD;
use futures_util::TryStreamExt;
use mongodb::bson::{doc, DateTime, Document};
use mongodb::options::{IndexOptions, ReturnDocument};
use mongodb::{Collection, Database, IndexModel};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageDoc {
    #[serde(rename = "_id")]
    pub id: String,
    pub chat_id: String,
    pub sender_id: String,
    pub content: String,
    pub client_msg_id: Option<String>,
    /// `chat:sender:clientMsgId`, or the id itself when there is none.
    pub idem_key: String,
    pub created_at: DateTime,
    pub edited_at: Option<DateTime>,
    pub deleted: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum InsertError {
    #[error(transparent)]
    Store(#[from] mongodb::error::Error),
    #[error("cannot encode the message: {0}")]
    Encode(#[from] mongodb::bson::ser::Error),
}

#[derive(Clone)]
pub struct Messages {
    coll: Collection<MessageDoc>,
}

impl Messages {
    /// The collection, which also carries the events of new messages.
    pub const COLLECTION: &'static str = "messages";

    pub fn new(db: &Database) -> Self {
        Self {
            coll: db.collection(Self::COLLECTION),
        }
    }

    pub async fn ensure_indexes(&self) -> Result<(), mongodb::error::Error> {
        self.coll
            .create_index(
                IndexModel::builder()
                    .keys(doc! { "chatId": 1, "_id": -1 })
                    .build(),
            )
            .await?;
        self.coll
            .create_index(
                IndexModel::builder()
                    .keys(doc! { "idemKey": 1 })
                    .options(IndexOptions::builder().unique(true).build())
                    .build(),
            )
            .await?;
        self.coll
            .create_index(broker::outbox::carrier_index())
            .await?;
        Ok(())
    }

    pub fn idem_key(chat_id: &str, sender: &str, client_msg_id: Option<&str>, id: &str) -> String {
        match client_msg_id {
            Some(c) => format!("{chat_id}:{sender}:{c}"),
            None => id.to_owned(),
        }
    }

    /// `(message, created)`: an earlier message with the same key wins.
    /// The message carries `event`, a staged outbox entry (see
    /// `broker::outbox`): both are stored
    /// by one single-document insert, or neither is.
    pub async fn insert(
        &self,
        msg: MessageDoc,
        event: Document,
    ) -> Result<(MessageDoc, bool), InsertError> {
        let mut carrying = mongodb::bson::to_document(&msg)?;
        carrying.insert(EMBEDDED_FIELD, vec![event]);
        let inserted = self
            .coll
            .clone_with_type::<Document>()
            .insert_one(carrying)
            .await;
        Ok(self.settle(msg, inserted).await?)
    }

    async fn settle(
        &self,
        msg: MessageDoc,
        inserted: mongodb::error::Result<mongodb::results::InsertOneResult>,
    ) -> Result<(MessageDoc, bool), mongodb::error::Error> {
        match inserted {
            Ok(_) => Ok((msg, true)),
            Err(e) if broker::outbox::is_duplicate_key(&e) => {
                let existing = self
                    .coll
                    .find_one(doc! { "idemKey": &msg.idem_key })
                    .await?;
                match existing {
                    // Our own insert, applied by an attempt the driver
                    // retried: it is new, and its event must be recorded.
                    Some(m) if m.id == msg.id => Ok((msg, true)),
                    Some(m) => Ok((m, false)),
                    None => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    }

    /// Newest first, before `before` if given; `(page, has_more)`.
    pub async fn page(
        &self,
        chat_id: &str,
        before: Option<&str>,
        limit: i64,
    ) -> Result<(Vec<MessageDoc>, bool), mongodb::error::Error> {
        let mut filter = doc! { "chatId": chat_id };
        if let Some(b) = before {
            filter.insert("_id", doc! { "$lt": b });
        }
        let mut page: Vec<MessageDoc> = self
            .coll
            .find(filter)
            .sort(doc! { "_id": -1 })
            .limit(limit + 1)
            .await?
            .try_collect()
            .await?;
        let has_more = page.len() as i64 > limit;
        page.truncate(usize::try_from(limit).unwrap_or(0));
        Ok((page, has_more))
    }

    pub async fn get(
        &self,
        chat_id: &str,
        id: &str,
    ) -> Result<Option<MessageDoc>, mongodb::error::Error> {
        self.coll
            .find_one(doc! { "_id": id, "chatId": chat_id })
            .await
    }

    pub async fn by_ids(&self, ids: &[String]) -> Result<Vec<MessageDoc>, mongodb::error::Error> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        self.coll
            .find(doc! { "_id": { "$in": ids } })
            .await?
            .try_collect()
            .await
    }

    /// Sets the new text; the message carries `event` (one write).
    pub async fn edit(
        &self,
        chat_id: &str,
        id: &str,
        sender: &str,
        content: &str,
        edited_at: Option<DateTime>,
        event: Document,
    ) -> Result<Option<MessageDoc>, InsertError> {
        Ok(self
            .coll
            .find_one_and_update(
                doc! { "_id": id, "chatId": chat_id, "senderId": sender, "deleted": false },
                doc! {
                    "$set": { "content": content, "editedAt": edited_at },
                    "$push": { EMBEDDED_FIELD: event },
                },
            )
            .return_document(ReturnDocument::After)
            .await?)
    }

    /// Blanks the message; it carries `event` (one write).
    pub async fn delete(
        &self,
        chat_id: &str,
        id: &str,
        event: Document,
    ) -> Result<Option<MessageDoc>, InsertError> {
        Ok(self
            .coll
            .find_one_and_update(
                doc! { "_id": id, "chatId": chat_id },
                doc! {
                    "$set": { "content": "", "deleted": true },
                    "$push": { EMBEDDED_FIELD: event },
                },
            )
            .return_document(ReturnDocument::After)
            .await?)
    }

    /// Messages from others after the marker.
    pub async fn unread_count(
        &self,
        chat_id: &str,
        user: &str,
        after: Option<&str>,
    ) -> Result<u64, mongodb::error::Error> {
        let mut filter = doc! { "chatId": chat_id, "senderId": { "$ne": user }, "deleted": false };
        if let Some(a) = after {
            filter.insert("_id", doc! { "$gt": a });
        }
        self.coll.count_documents(filter).await
    }
}
