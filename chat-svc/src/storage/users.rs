//! Public profiles replicated from `user.registered` / `user.updated`.
//! A profile is only replaced by a newer `profileVersion`, so redelivered or
//! reordered events never roll it back.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use broker::events::chat::ProfileSnapshot;
use futures_util::TryStreamExt;
use mongodb::bson::doc;
use mongodb::{Collection, Database};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserDoc {
    #[serde(rename = "_id")]
    pub id: String,
    pub username: String,
    pub display_name: String,
    pub avatar_url: Option<String>,
    pub profile_version: i64,
}

impl UserDoc {
    pub fn profile(&self) -> ProfileSnapshot {
        ProfileSnapshot {
            id: self.id.clone(),
            username: self.username.clone(),
            display_name: self.display_name.clone(),
            avatar_url: self.avatar_url.clone(),
        }
    }
}

/// Profiles with an in-process cache that the replica consumer keeps fresh
/// on the instance that applies an update; other instances refresh entries
/// older than [`LOCAL_TTL`].
#[derive(Clone)]
pub struct Users {
    coll: Collection<UserDoc>,
    local: Arc<RwLock<HashMap<String, (UserDoc, std::time::Instant)>>>,
}

const LOCAL_TTL: std::time::Duration = std::time::Duration::from_secs(1);

impl Users {
    pub fn new(db: &Database) -> Self {
        Self {
            coll: db.collection("users"),
            local: Arc::new(RwLock::new(HashMap::new())),
        }
    }

    /// Inserts or replaces by version.
    pub async fn upsert(&self, user: &UserDoc) -> Result<(), mongodb::error::Error> {
        let result = self
            .coll
            .replace_one(
                doc! { "_id": &user.id, "profileVersion": { "$lt": user.profile_version } },
                user,
            )
            .await?;
        if result.matched_count == 0 {
            if let Err(e) = self.coll.insert_one(user).await {
                // Exists with a newer or equal version: nothing to do.
                if !broker::outbox::is_duplicate_key(&e) {
                    return Err(e);
                }
            }
        }
        if let Ok(mut local) = self.local.write() {
            local.remove(&user.id);
        }
        Ok(())
    }

    /// Profiles by id, from this process's copy when under a second old;
    /// unknown ids are absent from the map. For event snapshots and live
    /// frames, where a second of lag is harmless.
    pub async fn profiles(
        &self,
        ids: &[String],
    ) -> Result<HashMap<String, ProfileSnapshot>, mongodb::error::Error> {
        self.lookup(ids, true).await
    }

    /// Profiles read from MongoDB. Whatever goes into the shared read cache
    /// is computed from these: another instance may have applied a profile
    /// change (and bumped the cache generation) that this process's copy
    /// has not seen yet.
    pub async fn profiles_fresh(
        &self,
        ids: &[String],
    ) -> Result<HashMap<String, ProfileSnapshot>, mongodb::error::Error> {
        self.lookup(ids, false).await
    }

    async fn lookup(
        &self,
        ids: &[String],
        use_local: bool,
    ) -> Result<HashMap<String, ProfileSnapshot>, mongodb::error::Error> {
        let mut found = HashMap::new();
        let mut missing = Vec::new();
        match self.local.read() {
            Ok(local) if use_local => {
                for id in ids {
                    match local.get(id) {
                        Some((u, at)) if at.elapsed() < LOCAL_TTL => {
                            found.insert(id.clone(), u.profile());
                        }
                        _ => missing.push(id.clone()),
                    }
                }
            }
            _ => missing.extend(ids.iter().cloned()),
        }
        if !missing.is_empty() {
            let docs: Vec<UserDoc> = self
                .coll
                .find(doc! { "_id": { "$in": &missing } })
                .await?
                .try_collect()
                .await?;
            if let Ok(mut local) = self.local.write() {
                if local.len() > 100_000 {
                    local.clear();
                }
                for u in &docs {
                    local.insert(u.id.clone(), (u.clone(), std::time::Instant::now()));
                }
            }
            for u in docs {
                found.insert(u.id.clone(), u.profile());
            }
        }
        Ok(found)
    }

    pub async fn exists(&self, id: &str) -> Result<bool, mongodb::error::Error> {
        Ok(self.profiles(&[id.to_owned()]).await?.contains_key(id))
    }
}
