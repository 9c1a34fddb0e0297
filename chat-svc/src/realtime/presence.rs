//! Presence across instances: `presence:<user>` is a sorted set of the
//! instances holding a socket of the user, scored by an expiry time that
//! each instance refreshes every third of the TTL. Online while any entry is
//! unexpired, so a dead instance's users go offline by themselves.
//!
//! Someone must also *say* so: every instance heartbeats into
//! `presence-instances` and lists its users in `presence-users:<instance>`.
//! Each refresh also looks for instances whose heartbeat has expired; the
//! one that removes a dead instance from the registry (`ZREM` returns 1 to
//! exactly one caller) announces `online: false` for each of its users who
//! has no socket left anywhere.

use std::sync::Arc;
use std::time::Duration;

use broker::events::chat::Presence;
use broker::{Envelope, Publisher};
use shared::redis_link::Redis;
use tokio_util::sync::CancellationToken;

use super::hub::Hub;
use super::slots::SocketSlots;
use crate::storage::chats::Chats;

#[derive(Clone)]
pub struct PresenceTracker {
    redis: Redis,
    prefix: String,
    registry: String,
    instance_users: String,
    instance: String,
    ttl_secs: i64,
    /// Serialises this instance's presence changes and refreshes, so a quick
    /// reconnect or a refresh racing a disconnect cannot leave Redis
    /// disagreeing with the sockets actually open here.
    transitions: Arc<tokio::sync::Mutex<()>>,
    publisher: Publisher,
    chats: Chats,
    /// The per-user socket count, refreshed by the same heartbeat.
    slots: SocketSlots,
}

fn now_secs() -> i64 {
    chrono::Utc::now().timestamp()
}

impl PresenceTracker {
    pub fn new(
        redis: Redis,
        redis_prefix: &str,
        instance: &str,
        publisher: Publisher,
        chats: Chats,
        ttl: Duration,
    ) -> Self {
        let ttl_secs = i64::try_from(ttl.as_secs()).unwrap_or(30).max(3);
        Self {
            slots: SocketSlots::new(redis.clone(), redis_prefix, instance, ttl_secs),
            redis,
            prefix: format!("{redis_prefix}presence:"),
            registry: format!("{redis_prefix}presence-instances"),
            instance_users: format!("{redis_prefix}presence-users:"),
            instance: instance.to_owned(),
            ttl_secs,
            transitions: Arc::new(tokio::sync::Mutex::new(())),
            publisher,
            chats,
        }
    }

    pub fn slots(&self) -> &SocketSlots {
        &self.slots
    }

    /// Gives a closed socket's slot back. Serialised with the heartbeat, so
    /// a refresh that listed the socket just before it closed cannot put
    /// its slot back afterwards.
    pub async fn release_slot(&self, user: &str, socket: u64) {
        let _serial = self.transitions.lock().await;
        self.slots.release(user, socket).await;
    }

    /// Brings Redis in line with the sockets `user` has open here now
    /// (call after a socket registers or unregisters): present, and
    /// announced online if nobody had them online; or absent, and announced
    /// offline if no instance has them any more.
    pub async fn sync(&self, user: &str, hub: &Hub) {
        let _serial = self.transitions.lock().await;
        if hub.has_user(user) {
            self.connected(user).await;
        } else {
            self.disconnected(user).await;
        }
    }

    async fn connected(&self, user: &str) {
        let key = format!("{}{user}", self.prefix);
        let now = now_secs();
        let op = async {
            let mut conn = self.redis.get().await.ok()?;
            let (online_before, _, _): (i64, i64, i64) = redis::pipe()
                .cmd("ZCOUNT")
                .arg(&key)
                .arg(now)
                .arg("+inf")
                .cmd("ZADD")
                .arg(&key)
                .arg(now + self.ttl_secs)
                .arg(&self.instance)
                .cmd("SADD")
                .arg(format!("{}{}", self.instance_users, self.instance))
                .arg(user)
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

    async fn disconnected(&self, user: &str) {
        let key = format!("{}{user}", self.prefix);
        let now = now_secs();
        let op = async {
            let mut conn = self.redis.get().await.ok()?;
            let (_, _, online): (i64, i64, i64) = redis::pipe()
                .cmd("ZREM")
                .arg(&key)
                .arg(&self.instance)
                .cmd("SREM")
                .arg(format!("{}{}", self.instance_users, self.instance))
                .arg(user)
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
            contact_ids: contacts.clone(),
        };
        if let Err(e) = self
            .publisher
            .publish_to(&Envelope::new(crate::SERVICE, None, event), &contacts)
            .await
        {
            tracing::debug!(error = %e, "presence not relayed");
        }
    }

    /// Heartbeats this instance, refreshes its users' entries and reaps
    /// dead instances, every third of the TTL.
    pub async fn run_refresh(self, hub: Arc<Hub>, shutdown: CancellationToken) {
        let period = Duration::from_secs(u64::try_from(self.ttl_secs / 3).unwrap_or(1).max(1));
        loop {
            if let Err(e) = self.refresh(&hub).await {
                tracing::debug!(error = %e, "presence refresh failed");
            }
            if let Err(e) = self.reap().await {
                tracing::debug!(error = %e, "presence reaping failed");
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(period) => {}
            }
        }
    }

    async fn conn(&self) -> redis::RedisResult<redis::aio::ConnectionManager> {
        self.redis.get().await.map_err(|e| {
            redis::RedisError::from((redis::ErrorKind::IoError, "redis redis", e.to_string()))
        })
    }

    async fn refresh(&self, hub: &Hub) -> redis::RedisResult<()> {
        let _serial = self.transitions.lock().await;
        let expiry = now_secs() + self.ttl_secs;
        let mut conn = self.conn().await?;
        let mut pipe = redis::pipe();
        pipe.cmd("ZADD")
            .arg(&self.registry)
            .arg(expiry)
            .arg(&self.instance)
            .ignore();
        let own = format!("{}{}", self.instance_users, self.instance);
        pipe.cmd("EXPIRE").arg(&own).arg(3600).ignore();
        for user in hub.local_users() {
            // Re-listed each time: a stalled instance that was reaped by
            // mistake lists its users again when it wakes up.
            pipe.cmd("SADD").arg(&own).arg(&user).ignore();
            let key = format!("{}{user}", self.prefix);
            pipe.cmd("ZADD")
                .arg(&key)
                .arg(expiry)
                .arg(&self.instance)
                .ignore();
            pipe.cmd("EXPIRE").arg(&key).arg(self.ttl_secs * 2).ignore();
        }
        self.slots.refresh_into(&mut pipe, &hub.local_sockets());
        pipe.query_async(&mut conn).await
    }

    /// Announces the users of instances whose heartbeat expired as offline
    /// (unless they are connected elsewhere).
    async fn reap(&self) -> redis::RedisResult<()> {
        let now = now_secs();
        let mut conn = self.conn().await?;
        let dead: Vec<String> = redis::cmd("ZRANGEBYSCORE")
            .arg(&self.registry)
            .arg("-inf")
            .arg(now)
            .query_async(&mut conn)
            .await?;
        for instance in dead {
            let claimed: i64 = redis::cmd("ZREM")
                .arg(&self.registry)
                .arg(&instance)
                .query_async(&mut conn)
                .await?;
            if claimed == 0 {
                continue; // another instance is reaping it
            }
            let users_key = format!("{}{instance}", self.instance_users);
            let users: Vec<String> = redis::cmd("SMEMBERS")
                .arg(&users_key)
                .query_async(&mut conn)
                .await?;
            for user in users {
                let key = format!("{}{user}", self.prefix);
                let (_, online): (i64, i64) = redis::pipe()
                    .cmd("ZREM")
                    .arg(&key)
                    .arg(&instance)
                    .cmd("ZCOUNT")
                    .arg(&key)
                    .arg(now)
                    .arg("+inf")
                    .query_async(&mut conn)
                    .await?;
                if online == 0 {
                    self.announce(&user, false).await;
                }
            }
            let _: i64 = redis::cmd("DEL")
                .arg(&users_key)
                .query_async(&mut conn)
                .await?;
            tracing::info!(%instance, "announced the users of a dead instance offline");
        }
        Ok(())
    }
}
