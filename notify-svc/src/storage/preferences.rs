//! Per-user preferences (`preferences`), with the defaults of api.md for a
//! user who never saved any. Read on every message for every recipient, so
//! they are cached in Redis: a save bumps the document's version and writes
//! the new value through; the versioned cache never lets an older read put
//! an older value over it.

use std::time::Duration;

use mongodb::bson::doc;
use mongodb::options::ReturnDocument;
use mongodb::{Collection, Database};
use serde::{Deserialize, Serialize};
use shared::cache::Cache;
use utoipa::ToSchema;

const CACHE_KIND: &str = "prefs";
const CACHE_TTL: Duration = Duration::from_secs(600);

/// `{push, email, emailDelaySeconds, mutedChatIds, pushPreviews}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Preferences {
    pub push: bool,
    pub email: bool,
    /// 0 to 86400; default 600.
    pub email_delay_seconds: u32,
    pub muted_chat_ids: Vec<String>,
    /// Whether pushes show a preview of the message text (default true;
    /// shown only when false, so the object of api.md is unchanged for
    /// everyone who never turns it off).
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub push_previews: bool,
}

fn yes() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
}

impl Default for Preferences {
    fn default() -> Self {
        Self {
            push: true,
            email: true,
            email_delay_seconds: 600,
            muted_chat_ids: Vec::new(),
            push_previews: true,
        }
    }
}

impl Preferences {
    pub fn muted(&self, chat_id: &str) -> bool {
        self.muted_chat_ids.iter().any(|m| m == chat_id)
    }
}

#[derive(Serialize, Deserialize)]
struct PreferencesDoc {
    #[serde(rename = "_id")]
    user_id: String,
    #[serde(default)]
    version: i64,
    #[serde(flatten)]
    preferences: Preferences,
}

#[derive(Clone)]
pub struct PreferencesStore {
    coll: Collection<PreferencesDoc>,
    cache: Cache,
}

impl PreferencesStore {
    pub fn new(db: &Database, cache: Cache) -> Self {
        Self {
            coll: db.collection("preferences"),
            cache,
        }
    }

    pub async fn get(&self, user_id: &str) -> Result<Preferences, mongodb::error::Error> {
        if let Some(p) = self.cache.get::<Preferences>(CACHE_KIND, user_id).await {
            return Ok(p);
        }
        let (version, preferences) = match self.coll.find_one(doc! { "_id": user_id }).await? {
            Some(d) => (d.version, d.preferences),
            None => (0, Preferences::default()),
        };
        self.cache
            .put(CACHE_KIND, user_id, version, &preferences, CACHE_TTL)
            .await;
        Ok(preferences)
    }

    pub async fn put(
        &self,
        user_id: &str,
        preferences: &Preferences,
    ) -> Result<(), mongodb::error::Error> {
        let mut set = mongodb::bson::to_document(preferences)?;
        set.remove("version");
        // Skipped by serde when true; stored always.
        set.insert("pushPreviews", preferences.push_previews);
        let saved = self
            .coll
            .find_one_and_update(
                doc! { "_id": user_id },
                doc! { "$set": set, "$inc": { "version": 1 } },
            )
            .upsert(true)
            .return_document(ReturnDocument::After)
            .await?;
        let version = saved.map(|d| d.version).unwrap_or(1);
        self.cache
            .put(CACHE_KIND, user_id, version, preferences, CACHE_TTL)
            .await;
        Ok(())
    }
}
