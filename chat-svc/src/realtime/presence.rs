//! Presence across instances: `presence:<user>` is a sorted set of the
//! instances holding a socket of the user, scored by an expiry time that
//! each instance refreshes every 10 s. Online while any entry is unexpired,
//! so a dead instance's users go offline by themselves within 30 s.

use std::sync::Arc;
use std::time::Duration;

use broker::events::chat::Presence;
use broker::{Envelope, Publisher};
use deadpool_redis::redis;
use deadpool_redis::Pool;
use tokio_util::sync::CancellationToken;

use super::hub::Hub;
use crate::storage::chats::Chats;

const TTL_SECS: i64 = 30;

#[derive(Clone)]
pub struct PresenceTracker {
    pool: Pool,
    prefix: String,
    instance: String,
    publisher: Publisher,
    chats: Chats,
}

fn now_secs() -> i64 {
    chrono::Utc::now().timestamp()
}

impl PresenceTracker {
    pub fn new(
        pool: Pool,
        redis_prefix: &str,
        instance: &str,
        publisher: Publisher,
        chats: Chats,
    ) -> Self {
        Self {
            pool,
            prefix: format!("{redis_prefix}presence:"),
            instance: instance.to_owned(),
            publisher,
            chats,
        }
    }

    /// Marks the user present here; announces it if nobody else had them online.
    pub async fn connected(&self, user: &str) {
        let key = format!("{}{user}", self.prefix);
        let now = now_secs();
        let op = async {
            let mut conn = self.pool.get().await.ok()?;
            let (online_before, _): (i64, i64) = redis::pipe()
                .cmd("ZCOUNT")
                .arg(&key)
                .arg(now)
                .arg("+inf")
                .cmd("ZADD")
                .arg(&key)
                .arg(now + TTL_SECS)
                .arg(&self.instance)
                .query_async(&mut conn)
                .await
                .ok()?;
            Some(online_before == 0)
        };
        if tokio::time::timeout(Duration::from_millis(500), op)
            .await
            .ok()
            .flatten()
            .unwrap_or(true)
        {
            self.announce(user, true).await;
        }
    }

    /// The user's last socket here closed; announces offline if none remain anywhere.
    pub async fn disconnected(&self, user: &str) {
        let key = format!("{}{user}", self.prefix);
        let now = now_secs();
        let op = async {
            let mut conn = self.pool.get().await.ok()?;
            let (_, online): (i64, i64) = redis::pipe()
                .cmd("ZREM")
                .arg(&key)
                .arg(&self.instance)
                .cmd("ZCOUNT")
                .arg(&key)
                .arg(now)
                .arg("+inf")
                .query_async(&mut conn)
                .await
                .ok()?;
            Some(online == 0)
        };
        if tokio::time::timeout(Duration::from_millis(500), op)
            .await
            .ok()
            .flatten()
            .unwrap_or(true)
        {
            self.announce(user, false).await;
        }
    }

    async fn announce(&self, user: &str, online: bool) {
        let contacts = match self.chats.contacts(user).await {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(error = %e, "presence contacts unavailable");
                return;
            }
        };
        if contacts.is_empty() {
            return;
        }
        let event = Presence {
            user_id: user.to_owned(),
            online,
            contact_ids: contacts,
        };
        if let Err(e) = self
            .publisher
            .publish(&Envelope::new(crate::SERVICE, None, event))
            .await
        {
            tracing::debug!(error = %e, "presence not relayed");
        }
    }

    /// Refreshes this instance's entries for its connected users.
    pub async fn run_refresh(self, hub: Arc<Hub>, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(10)) => {}
            }
            let users = hub.local_users();
            if users.is_empty() {
                continue;
            }
            let expiry = now_secs() + TTL_SECS;
            let Ok(mut conn) = self.pool.get().await else {
                continue;
            };
            let mut pipe = redis::pipe();
            for user in users {
                let key = format!("{}{user}", self.prefix);
                pipe.cmd("ZADD")
                    .arg(&key)
                    .arg(expiry)
                    .arg(&self.instance)
                    .ignore();
                pipe.cmd("EXPIRE").arg(&key).arg(TTL_SECS * 2).ignore();
            }
            let _: Result<(), _> = pipe.query_async(&mut conn).await;
        }
    }
}
