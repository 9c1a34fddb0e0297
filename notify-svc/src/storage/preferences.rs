//! Per-user preferences (`preferences`), with the defaults of api.md for a
//! user who never saved any.

use mongodb::bson::doc;
use mongodb::{Collection, Database};
use serde::{Deserialize, Serialize};
use shared::metrics::Metrics;
use utoipa::ToSchema;

/// `{push, email, emailDelaySeconds, mutedChatIds}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Preferences {
    pub push: bool,
    pub email: bool,
    /// 0 to 86400; default 600.
    pub email_delay_seconds: u32,
    pub muted_chat_ids: Vec<String>,
}

impl Default for Preferences {
    fn default() -> Self {
        Self {
            push: true,
            email: true,
            email_delay_seconds: 600,
            muted_chat_ids: Vec::new(),
        }
    }
}

#[derive(Serialize, Deserialize)]
struct PreferencesDoc {
    #[serde(rename = "_id")]
    user_id: String,
    #[serde(flatten)]
    preferences: Preferences,
}

#[derive(Clone)]
pub struct PreferencesStore {
    coll: Collection<PreferencesDoc>,
    metrics: Metrics,
}

impl PreferencesStore {
    pub fn new(db: &Database, metrics: Metrics) -> Self {
        Self {
            coll: db.collection("preferences"),
            metrics,
        }
    }

    pub async fn get(&self, user_id: &str) -> Result<Preferences, mongodb::error::Error> {
        self.metrics.db("preferences", "find");
        Ok(self
            .coll
            .find_one(doc! { "_id": user_id })
            .await?
            .map(|d| d.preferences)
            .unwrap_or_default())
    }

    pub async fn put(
        &self,
        user_id: &str,
        preferences: &Preferences,
    ) -> Result<(), mongodb::error::Error> {
        self.metrics.db("preferences", "update");
        let doc = PreferencesDoc {
            user_id: user_id.to_owned(),
            preferences: preferences.clone(),
        };
        self.coll
            .replace_one(doc! { "_id": user_id }, doc)
            .upsert(true)
            .await?;
        Ok(())
    }
}
