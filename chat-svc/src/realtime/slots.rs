//! At most [`MAX_SOCKETS_PER_USER`] open sockets per user, across
//! instances. `ws-sockets:<user>` in Redis is a sorted set of
//! `<instance>:<socket>` scored by an expiry that the presence heartbeat
//! refreshes, so the sockets of an instance that died stop counting within
//! the presence TTL without anyone cleaning up after it. Taking a slot is
//! one Lua script (drop expired entries, count, add), so concurrent
//! upgrades cannot overshoot. When Redis is unreachable the limit is kept
//! per instance by the hub instead (never no limit).

use std::time::Duration;

use shared::redis_link::Redis;

/// From the contract (product.md, "Security requirements").
pub const MAX_SOCKETS_PER_USER: usize = 16;

/// A Redis call that does not answer within this counts as Redis down: an
/// upgrade must not hang on it.
const REDIS_TIMEOUT: Duration = Duration::from_millis(500);

/// KEYS[1] the user's set; ARGV: now, expiry, member, limit, key TTL.
const TAKE: &str = r"
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZSCORE', KEYS[1], ARGV[3]) then return 1 end
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[4]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[5])
return 1
";

/// Whether a socket may open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Counted in Redis; give it back with [`SocketSlots::release`].
    Counted,
    /// Redis did not answer: only the instance's own count applies (the
    /// heartbeat counts the socket in Redis once it answers again).
    LocalOnly,
    /// The user already has [`MAX_SOCKETS_PER_USER`] open sockets.
    Full,
}

#[derive(Clone)]
pub struct SocketSlots {
    redis: Redis,
    prefix: String,
    instance: String,
    ttl_secs: i64,
}

fn now_secs() -> i64 {
    chrono::Utc::now().timestamp()
}

impl SocketSlots {
    pub fn new(redis: Redis, redis_prefix: &str, instance: &str, ttl_secs: i64) -> Self {
        Self {
            redis,
            prefix: format!("{redis_prefix}ws-sockets:"),
            instance: instance.to_owned(),
            ttl_secs,
        }
    }

    fn key(&self, user: &str) -> String {
        format!("{}{user}", self.prefix)
    }

    fn member(&self, socket: u64) -> String {
        format!("{}:{socket}", self.instance)
    }

    /// Takes a slot for socket `socket` of `user`.
    pub async fn take(&self, user: &str, socket: u64) -> Admission {
        let now = now_secs();
        let op = async {
            let mut conn = self.redis.get().await.ok()?;
            redis::Script::new(TAKE)
                .key(self.key(user))
                .arg(now)
                .arg(now + self.ttl_secs)
                .arg(self.member(socket))
                .arg(MAX_SOCKETS_PER_USER)
                .arg(self.ttl_secs * 2)
                .invoke_async::<i64>(&mut conn)
                .await
                .ok()
        };
        match tokio::time::timeout(REDIS_TIMEOUT, op).await {
            Ok(Some(1)) => Admission::Counted,
            Ok(Some(_)) => Admission::Full,
            _ => Admission::LocalOnly,
        }
    }

    /// Gives the slot back (a failure only leaves it to expire).
    pub async fn release(&self, user: &str, socket: u64) {
        let op = async {
            let mut conn = self.redis.get().await.ok()?;
            redis::cmd("ZREM")
                .arg(self.key(user))
                .arg(self.member(socket))
                .query_async::<i64>(&mut conn)
                .await
                .ok()
        };
        if tokio::time::timeout(REDIS_TIMEOUT, op).await.is_err() {
            tracing::debug!(user.id = %user, "socket slot left to expire");
        }
    }

    /// Adds the refresh of these sockets' slots to a heartbeat pipeline.
    /// Plain `ZADD`, so sockets admitted while Redis was down are counted
    /// once it is back.
    pub fn refresh_into(&self, pipe: &mut redis::Pipeline, sockets: &[(String, u64)]) {
        let expiry = now_secs() + self.ttl_secs;
        for (user, socket) in sockets {
            let key = self.key(user);
            pipe.cmd("ZADD")
                .arg(&key)
                .arg(expiry)
                .arg(self.member(*socket))
                .ignore();
            pipe.cmd("EXPIRE").arg(&key).arg(self.ttl_secs * 2).ignore();
        }
    }
}
