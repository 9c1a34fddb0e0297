//! Chats (members, admins, activity) and read markers. Every query that
//! reads a chat for a user filters on membership, so a non-member simply
//! finds nothing (404).

use broker::outbox::EMBEDDED_FIELD;
use futures_util::TryStreamExt;
use mongodb::bson::{doc, DateTime, Document};
use mongodb::options::IndexOptions;
use mongodb::{Collection, Database, IndexModel};
use serde::{Deserialize, Serialize};
use shared::page::Place;

use super::messages::InsertError;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChatDoc {
    #[serde(rename = "_id")]
    pub id: String,
    pub is_group: bool,
    pub name: Option<String>,
    pub member_ids: Vec<String>,
    pub admin_ids: Vec<String>,
    /// `direct:<a>:<b>` (sorted ids) for 1:1 chats, `group:<id>` otherwise;
    /// unique, so one pair gets one chat even under racing requests.
    pub pair_key: String,
    pub created_at: DateTime,
    pub updated_at: DateTime,
    pub last_activity_at: DateTime,
    pub latest_message_id: Option<String>,
    /// Increases with every change; events carry it.
    pub version: i64,
}

impl ChatDoc {
    pub fn is_admin(&self, user: &str) -> bool {
        self.admin_ids.iter().any(|a| a == user)
    }

    pub fn snapshot(&self) -> broker::events::chat::ChatSnapshot {
        broker::events::chat::ChatSnapshot {
            id: self.id.clone(),
            name: self.name.clone(),
            member_ids: self.member_ids.clone(),
            admin_ids: self.admin_ids.clone(),
            is_group: self.is_group,
            version: self.version,
        }
    }
}

#[derive(Clone)]
pub struct Chats {
    chats: Collection<ChatDoc>,
    markers: Collection<Document>,
}

pub fn direct_key(a: &str, b: &str) -> String {
    let (x, y) = if a <= b { (a, b) } else { (b, a) };
    format!("direct:{x}:{y}")
}

impl Chats {
    /// Both collections also carry the events of their changes.
    pub const COLLECTION: &'static str = "chats";
    pub const MARKERS: &'static str = "read_markers";

    pub fn new(db: &Database) -> Self {
        Self {
            chats: db.collection(Self::COLLECTION),
            markers: db.collection(Self::MARKERS),
        }
    }

    pub async fn ensure_indexes(&self) -> Result<(), mongodb::error::Error> {
        self.chats
            .create_index(
                IndexModel::builder()
                    .keys(doc! { "pairKey": 1 })
                    .options(IndexOptions::builder().unique(true).build())
                    .build(),
            )
            .await?;
        self.chats
            .create_index(
                IndexModel::builder()
                    .keys(doc! { "memberIds": 1, "lastActivityAt": -1 })
                    .build(),
            )
            .await?;
        self.chats
            .create_index(broker::outbox::carrier_index())
            .await?;
        self.markers
            .create_index(broker::outbox::carrier_index())
            .await?;
        Ok(())
    }

    /// The one chat of a pair, if it exists.
    pub async fn find_direct(
        &self,
        a: &str,
        b: &str,
    ) -> Result<Option<ChatDoc>, mongodb::error::Error> {
        self.chats
            .find_one(doc! { "pairKey": direct_key(a, b) })
            .await
    }

    /// A new 1:1 chat document (not stored yet).
    pub fn new_direct(a: &str, b: &str, id: String) -> ChatDoc {
        let now = DateTime::now();
        let mut members = vec![a.to_owned(), b.to_owned()];
        members.dedup();
        ChatDoc {
            id,
            is_group: false,
            name: None,
            member_ids: members.clone(),
            admin_ids: members,
            pair_key: direct_key(a, b),
            created_at: now,
            updated_at: now,
            last_activity_at: now,
            latest_message_id: None,
            version: 1,
        }
    }

    /// A new group document (not stored yet); the creator is its admin.
    pub fn new_group(id: String, name: String, creator: &str, mut members: Vec<String>) -> ChatDoc {
        if !members.iter().any(|m| m == creator) {
            members.insert(0, creator.to_owned());
        }
        let now = DateTime::now();
        ChatDoc {
            pair_key: format!("group:{id}"),
            id,
            is_group: true,
            name: Some(name),
            member_ids: members,
            admin_ids: vec![creator.to_owned()],
            created_at: now,
            updated_at: now,
            last_activity_at: now,
            latest_message_id: None,
            version: 1,
        }
    }

    /// Stores a new chat carrying `event` (a staged outbox entry) in one
    /// write: `(chat, created)`. The pair key is unique, so of two racing
    /// 1:1 creations the first wins and the other gets its chat.
    pub async fn insert(
        &self,
        chat: ChatDoc,
        event: Document,
    ) -> Result<(ChatDoc, bool), InsertError> {
        let mut carrying = mongodb::bson::to_document(&chat)?;
        carrying.insert(EMBEDDED_FIELD, vec![event]);
        let inserted = self
            .chats
            .clone_with_type::<Document>()
            .insert_one(carrying)
            .await;
        match inserted {
            Ok(_) => Ok((chat, true)),
            Err(e) if broker::outbox::is_duplicate_key(&e) => {
                let existing = self
                    .chats
                    .find_one(doc! { "pairKey": &chat.pair_key })
                    .await?;
                match existing {
                    // Our own insert, applied by a retried attempt.
                    Some(c) if c.id == chat.id => Ok((chat, true)),
                    Some(c) => Ok((c, false)),
                    None => Err(e.into()),
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The chat; callers check membership on it.
    pub async fn get(&self, chat_id: &str) -> Result<Option<ChatDoc>, mongodb::error::Error> {
        self.chats.find_one(doc! { "_id": chat_id }).await
    }

    /// Up to `limit` of the user's chats after `before`, most recently active
    /// first (`lastActivityAt`, then `_id`, descending).
    pub async fn page_for_user(
        &self,
        user: &str,
        before: Option<&Place>,
        limit: i64,
    ) -> Result<Vec<ChatDoc>, mongodb::error::Error> {
        let mut filter = doc! { "memberIds": user };
        if let Some(place) = before {
            filter.extend(place.after("lastActivityAt"));
        }
        self.chats
            .find(filter)
            .sort(doc! { "lastActivityAt": -1, "_id": -1 })
            .limit(limit)
            .await?
            .try_collect()
            .await
    }

    pub async fn list_for_user(&self, user: &str) -> Result<Vec<ChatDoc>, mongodb::error::Error> {
        self.chats
            .find(doc! { "memberIds": user })
            .sort(doc! { "lastActivityAt": -1, "_id": -1 })
            .limit(500)
            .await?
            .try_collect()
            .await
    }

    /// Stores `after`, the next version of a group, carrying `event` (a
    /// staged outbox entry) in the same write, unless someone changed the
    /// group since the version `after` was made from. `false`: it changed
    /// meanwhile; the caller starts again from what is there now.
    pub async fn change(&self, after: &ChatDoc, event: Document) -> Result<bool, InsertError> {
        let event_id = event.get_str("_id").unwrap_or_default().to_owned();
        let written = self
            .chats
            .update_one(
                doc! { "_id": &after.id, "isGroup": true, "version": after.version - 1 },
                doc! {
                    "$set": {
                        "name": after.name.clone(),
                        "memberIds": after.member_ids.clone(),
                        "adminIds": after.admin_ids.clone(),
                        "updatedAt": after.updated_at,
                        "version": after.version,
                    },
                    "$push": { EMBEDDED_FIELD: event },
                },
            )
            .await?;
        if written.matched_count == 1 {
            return Ok(true);
        }
        // A retried write whose first attempt went in also matches nothing:
        // the event it carries says whether it was ours.
        let ours = self
            .chats
            .find_one(doc! { "_id": &after.id, "outbox._id": event_id })
            .await?;
        Ok(ours.is_some())
    }

    /// Records the latest message (for ordering the chat list).
    pub async fn touch(
        &self,
        chat_id: &str,
        message_id: &str,
    ) -> Result<(), mongodb::error::Error> {
        // Forward only (ids are time-ordered): concurrent sends, and a
        // retry that repeats the touch of an older message, never move the
        // chat's latest message back.
        self.chats
            .update_one(
                doc! { "_id": chat_id, "$or": [
                    { "latestMessageId": { "$lt": message_id } },
                    { "latestMessageId": null },
                ] },
                doc! { "$set": { "lastActivityAt": DateTime::now(), "latestMessageId": message_id } },
            )
            .await?;
        Ok(())
    }

    pub fn marker_key(chat_id: &str, user: &str) -> String {
        format!("{chat_id}:{user}")
    }

    /// Moves the read marker forward only (ids are time-ordered); the
    /// marker carries `event` (a staged outbox entry) in the same write.
    /// `false`: the marker was already there or further.
    pub async fn set_read(
        &self,
        chat_id: &str,
        user: &str,
        message_id: &str,
        event: Document,
    ) -> Result<bool, mongodb::error::Error> {
        let key = Self::marker_key(chat_id, user);
        let result = self
            .markers
            .update_one(
                doc! { "_id": &key, "messageId": { "$lt": message_id } },
                doc! {
                    "$set": { "messageId": message_id, "chatId": chat_id, "userId": user, "at": DateTime::now() },
                    "$push": { EMBEDDED_FIELD: event },
                },
            )
            .upsert(true)
            .await;
        match result {
            Ok(r) => Ok(r.modified_count == 1 || r.upserted_id.is_some()),
            Err(e) if broker::outbox::is_duplicate_key(&e) => Ok(false),
            Err(e) => Err(e),
        }
    }

    pub async fn read_marker(
        &self,
        chat_id: &str,
        user: &str,
    ) -> Result<Option<String>, mongodb::error::Error> {
        let doc = self
            .markers
            .find_one(doc! { "_id": Self::marker_key(chat_id, user) })
            .await?;
        Ok(doc.and_then(|d| d.get_str("messageId").ok().map(str::to_owned)))
    }

    /// The id of the 1:1 chat of a pair, if they have one.
    pub async fn direct_id(
        &self,
        a: &str,
        b: &str,
    ) -> Result<Option<String>, mongodb::error::Error> {
        Ok(self
            .chats
            .find_one(doc! { "pairKey": direct_key(a, b) })
            .await?
            .map(|c| c.id))
    }

    /// Which of `others` share a 1:1 chat with `user`.
    pub async fn direct_partners(
        &self,
        user: &str,
        others: &[String],
    ) -> Result<Vec<String>, mongodb::error::Error> {
        if others.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = others.iter().map(|o| direct_key(user, o)).collect();
        let chats: Vec<ChatDoc> = self
            .chats
            .find(doc! { "pairKey": { "$in": keys } })
            .await?
            .try_collect()
            .await?;
        Ok(chats
            .into_iter()
            .flat_map(|c| c.member_ids)
            .filter(|m| m != user)
            .collect())
    }

    /// Ids of users sharing a chat with `user` (presence recipients).
    pub async fn contacts(&self, user: &str) -> Result<Vec<String>, mongodb::error::Error> {
        let chats = self.list_for_user(user).await?;
        let mut ids: Vec<String> = chats
            .into_iter()
            .flat_map(|c| c.member_ids)
            .filter(|m| m != user)
            .collect();
        ids.sort();
        ids.dedup();
        Ok(ids)
    }
}
