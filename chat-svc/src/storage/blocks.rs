//! Who blocked whom, and who may add a user to groups. One document per
//! (blocker, blocked) pair whose `_id` is the pair itself, so blocking twice
//! is a no-op and "has B blocked A?" is a point lookup.

use futures_util::TryStreamExt;
use mongodb::bson::{doc, DateTime};
use mongodb::{Collection, Database, IndexModel};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BlockDoc {
    /// `<blocker>:<blocked>`.
    #[serde(rename = "_id")]
    pub id: String,
    pub blocker_id: String,
    pub blocked_id: String,
    pub created_at: DateTime,
}

/// Who may add a user to a group (`groupAdds` of api.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum GroupAdds {
    #[default]
    Everyone,
    /// Users who share a 1:1 chat with them.
    Contacts,
    Nobody,
}

impl GroupAdds {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Everyone => "everyone",
            Self::Contacts => "contacts",
            Self::Nobody => "nobody",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PrivacyDoc {
    #[serde(rename = "_id")]
    user_id: String,
    group_adds: GroupAdds,
    updated_at: DateTime,
}

/// Most blocks one listing returns.
const LIST_LIMIT: i64 = 1000;

fn pair_id(blocker: &str, blocked: &str) -> String {
    format!("{blocker}:{blocked}")
}

#[derive(Clone)]
pub struct Blocks {
    blocks: Collection<BlockDoc>,
    privacy: Collection<PrivacyDoc>,
}

impl Blocks {
    pub fn new(db: &Database) -> Self {
        Self {
            blocks: db.collection("blocks"),
            privacy: db.collection("privacy"),
        }
    }

    /// The listing reads by blocker, newest first; the checks read by `_id`,
    /// as do the privacy documents (keyed by user).
    pub async fn ensure_indexes(&self) -> Result<(), mongodb::error::Error> {
        self.blocks
            .create_index(
                IndexModel::builder()
                    .keys(doc! { "blockerId": 1, "createdAt": -1 })
                    .build(),
            )
            .await?;
        Ok(())
    }

    /// Idempotent: a second block keeps the first one's time.
    pub async fn block(&self, blocker: &str, blocked: &str) -> Result<(), mongodb::error::Error> {
        let id = pair_id(blocker, blocked);
        self.blocks
            .update_one(
                doc! { "_id": &id },
                doc! { "$setOnInsert": {
                    "blockerId": blocker,
                    "blockedId": blocked,
                    "createdAt": DateTime::now(),
                } },
            )
            .upsert(true)
            .await
            .map(|_| ())
            .or_else(|e| {
                // Two racing upserts of one pair: the other one inserted it.
                if broker::outbox::is_duplicate_key(&e) {
                    Ok(())
                } else {
                    Err(e)
                }
            })
    }

    pub async fn unblock(&self, blocker: &str, blocked: &str) -> Result<(), mongodb::error::Error> {
        self.blocks
            // The blocker named too: an `_id` alone could be forged from
            // ids containing the separator.
            .delete_one(doc! { "_id": pair_id(blocker, blocked), "blockerId": blocker })
            .await
            .map(|_| ())
    }

    /// Ids `blocker` blocked, most recent first.
    pub async fn blocked_by(&self, blocker: &str) -> Result<Vec<String>, mongodb::error::Error> {
        let docs: Vec<BlockDoc> = self
            .blocks
            .find(doc! { "blockerId": blocker })
            .sort(doc! { "createdAt": -1 })
            .limit(LIST_LIMIT)
            .await?
            .try_collect()
            .await?;
        Ok(docs.into_iter().map(|d| d.blocked_id).collect())
    }

    /// Which of `blockers` blocked `target`.
    pub async fn who_blocked(
        &self,
        blockers: &[String],
        target: &str,
    ) -> Result<Vec<String>, mongodb::error::Error> {
        if blockers.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<String> = blockers.iter().map(|b| pair_id(b, target)).collect();
        let docs: Vec<BlockDoc> = self
            .blocks
            .find(doc! { "_id": { "$in": ids }, "blockedId": target })
            .await?
            .try_collect()
            .await?;
        Ok(docs.into_iter().map(|d| d.blocker_id).collect())
    }

    /// Of the pair `a`, `b`, who blocked the other (none, one or both).
    pub async fn who_blocked_in_pair(
        &self,
        a: &str,
        b: &str,
    ) -> Result<Vec<String>, mongodb::error::Error> {
        let docs: Vec<BlockDoc> = self
            .blocks
            .find(doc! {
                "_id": { "$in": [pair_id(a, b), pair_id(b, a)] },
                "blockerId": { "$in": [a, b] },
            })
            .await?
            .try_collect()
            .await?;
        Ok(docs.into_iter().map(|d| d.blocker_id).collect())
    }

    pub async fn has_blocked(
        &self,
        blocker: &str,
        blocked: &str,
    ) -> Result<bool, mongodb::error::Error> {
        Ok(self
            .blocks
            .find_one(doc! { "_id": pair_id(blocker, blocked), "blockerId": blocker })
            .await?
            .is_some())
    }

    pub async fn group_adds(&self, user: &str) -> Result<GroupAdds, mongodb::error::Error> {
        Ok(self
            .privacy
            .find_one(doc! { "_id": user })
            .await?
            .map(|p| p.group_adds)
            .unwrap_or_default())
    }

    /// The users among `users` whose setting is not `everyone`, with it.
    pub async fn restricted(
        &self,
        users: &[String],
    ) -> Result<Vec<(String, GroupAdds)>, mongodb::error::Error> {
        if users.is_empty() {
            return Ok(Vec::new());
        }
        let docs: Vec<PrivacyDoc> = self
            .privacy
            .find(doc! { "_id": { "$in": users }, "groupAdds": { "$ne": "everyone" } })
            .await?
            .try_collect()
            .await?;
        Ok(docs
            .into_iter()
            .map(|p| (p.user_id, p.group_adds))
            .collect())
    }

    pub async fn set_group_adds(
        &self,
        user: &str,
        group_adds: GroupAdds,
    ) -> Result<(), mongodb::error::Error> {
        let filter = doc! { "_id": user };
        let update =
            doc! { "$set": { "groupAdds": group_adds.as_str(), "updatedAt": DateTime::now() } };
        match self
            .privacy
            .update_one(filter.clone(), update.clone())
            .upsert(true)
            .await
        {
            Ok(_) => Ok(()),
            // A racing first save inserted the document: set ours over it.
            Err(e) if broker::outbox::is_duplicate_key(&e) => {
                self.privacy.update_one(filter, update).await.map(|_| ())
            }
            Err(e) => Err(e),
        }
    }
}
