//! Sessions revoked at auth-svc, as a service other than auth-svc knows
//! them (chat-svc, notify-svc). The service's durable consumer records each
//! `auth.session.revoked` in its own MongoDB; every instance keeps the recent
//! ones in memory (loaded at start, fed by its consumers, and polled from
//! MongoDB every 2 s for what another instance consumed), so checking a token
//! costs no I/O and a revocation takes effect within seconds everywhere, even
//! without Redis.
//!
//! The collection stays small: each record carries `expiresAt`, the moment
//! no access token of that session can still be valid (they live 15 minutes,
//! so [`HORIZON`] after the revocation), and a TTL index on it lets MongoDB
//! remove it then. The poll reads by `at`, which has its own index.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::auth::RevocationCheck;
use crate::ApiError;
use futures_util::future::BoxFuture;
use futures_util::TryStreamExt;
use mongodb::bson::{doc, DateTime, Document};
use mongodb::options::IndexOptions;
use mongodb::{Collection, Database, IndexModel};
use tokio_util::sync::CancellationToken;

/// Access tokens live 15 minutes; older revocations cannot matter.
pub const HORIZON: Duration = Duration::from_secs(20 * 60);

#[derive(Clone)]
pub struct Revocations {
    coll: Collection<Document>,
    revoked: Arc<RwLock<HashMap<String, DateTime>>>,
}

impl Revocations {
    pub fn new(db: &Database) -> Self {
        Self {
            coll: db.collection("revoked_sessions"),
            revoked: Arc::new(RwLock::new(HashMap::new())),
        }
    }

    /// The lookup index of the poll (`at`) and the TTL index that removes a
    /// record once its session's tokens have all expired (`expiresAt`).
    /// Idempotent; [`Revocations::run_sync`] calls it until it succeeds.
    pub async fn ensure_indexes(&self) -> Result<(), mongodb::error::Error> {
        self.coll
            .create_index(IndexModel::builder().keys(doc! { "at": 1 }).build())
            .await?;
        self.coll
            .create_index(
                IndexModel::builder()
                    .keys(doc! { "expiresAt": 1 })
                    .options(IndexOptions::builder().expire_after(Duration::ZERO).build())
                    .build(),
            )
            .await?;
        Ok(())
    }

    /// Durable record (from the service's durable consumer), idempotent.
    pub async fn record(
        &self,
        session_id: &str,
        user_id: &str,
    ) -> Result<(), mongodb::error::Error> {
        let at = DateTime::now();
        let expires_at = DateTime::from_millis(at.timestamp_millis() + HORIZON.as_millis() as i64);
        self.coll
            .update_one(
                doc! { "_id": session_id },
                doc! { "$setOnInsert": { "userId": user_id, "at": at, "expiresAt": expires_at } },
            )
            .upsert(true)
            .await?;
        self.remember(session_id);
        Ok(())
    }

    /// In memory only (chat-svc's fan-out queue).
    pub fn remember(&self, session_id: &str) {
        if let Ok(mut map) = self.revoked.write() {
            map.insert(session_id.to_owned(), DateTime::now());
        }
    }

    pub fn contains(&self, session_id: &str) -> bool {
        self.revoked
            .read()
            .map(|m| m.contains_key(session_id))
            .unwrap_or(false)
    }

    async fn load_since(&self, since: DateTime) -> Result<DateTime, mongodb::error::Error> {
        let docs: Vec<Document> = self
            .coll
            .find(doc! { "at": { "$gte": since } })
            .await?
            .try_collect()
            .await?;
        let mut latest = since;
        if let Ok(mut map) = self.revoked.write() {
            for d in docs {
                if let (Ok(id), Ok(at)) = (d.get_str("_id"), d.get_datetime("at")) {
                    map.insert(id.to_owned(), *at);
                    if *at > latest {
                        latest = *at;
                    }
                }
            }
            let cutoff = DateTime::from_millis(
                DateTime::now().timestamp_millis() - HORIZON.as_millis() as i64,
            );
            map.retain(|_, at| *at >= cutoff);
        }
        Ok(latest)
    }

    /// Loads recent revocations, then polls for new ones until shutdown.
    pub async fn run_sync(self, shutdown: CancellationToken) {
        let mut since =
            DateTime::from_millis(DateTime::now().timestamp_millis() - HORIZON.as_millis() as i64);
        let mut indexed = false;
        loop {
            if !indexed {
                match self.ensure_indexes().await {
                    Ok(()) => indexed = true,
                    Err(e) => tracing::debug!(error = %e, "revocation indexes not created yet"),
                }
            }
            match self.load_since(since).await {
                // Re-read a little overlap: clocks of writers differ slightly.
                Ok(latest) => since = DateTime::from_millis(latest.timestamp_millis() - 5_000),
                Err(e) => tracing::debug!(error = %e, "revocation poll failed"),
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            }
        }
    }
}

impl RevocationCheck for Revocations {
    fn is_revoked<'a>(&'a self, session_id: &'a str) -> BoxFuture<'a, Result<bool, ApiError>> {
        Box::pin(async move { Ok(self.contains(session_id)) })
    }
}
