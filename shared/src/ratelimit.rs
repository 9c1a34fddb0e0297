//! Counting failures per key (an account, a login name) across all instances
//! in Redis, with a per-instance in-memory fallback so the limit still holds
//! (per instance) when Redis is down.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use deadpool_redis::redis;
use deadpool_redis::Pool;

/// "At most `limit` failures per `window` per key."
#[derive(Clone)]
pub struct FailureLimiter {
    pool: Pool,
    prefix: String,
    limit: u32,
    window: Duration,
    local: Arc<Mutex<HashMap<String, (u32, Instant)>>>,
}

impl FailureLimiter {
    /// `name` separates limiters in the Redis key space.
    pub fn new(pool: Pool, redis_prefix: &str, name: &str, limit: u32, window: Duration) -> Self {
        Self {
            pool,
            prefix: format!("{redis_prefix}fail:{name}:"),
            limit,
            window,
            local: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// `Some(seconds)` to wait when the key has used up its failures.
    pub async fn blocked(&self, key: &str) -> Option<u64> {
        let redis_key = format!("{}{key}", self.prefix);
        let remote = async {
            let mut conn = self.pool.get().await.ok()?;
            let (count, ttl): (Option<u32>, i64) = redis::pipe()
                .get(&redis_key)
                .ttl(&redis_key)
                .query_async(&mut conn)
                .await
                .ok()?;
            Some((count.unwrap_or(0), ttl))
        };
        let local = self.local_state(key);
        match tokio::time::timeout(Duration::from_millis(500), remote).await {
            Ok(Some((count, ttl))) => {
                let (count, ttl) = match local {
                    Some((lc, lt)) if lc > count => (lc, lt as i64),
                    _ => (count, ttl),
                };
                (count >= self.limit).then(|| ttl.max(1) as u64)
            }
            _ => local.and_then(|(count, left)| (count >= self.limit).then_some(left.max(1))),
        }
    }

    /// Records one failure.
    pub async fn record(&self, key: &str) {
        let redis_key = format!("{}{key}", self.prefix);
        let window = self.window.as_secs().max(1);
        let remote = async {
            let mut conn = self.pool.get().await.ok()?;
            // One round trip: the window starts with the first failure (SET
            // NX with its expiry), later ones only count.
            let (n,): (u32,) = redis::pipe()
                .cmd("SET")
                .arg(&redis_key)
                .arg(0)
                .arg("EX")
                .arg(window)
                .arg("NX")
                .ignore()
                .incr(&redis_key, 1)
                .query_async(&mut conn)
                .await
                .ok()?;
            Some(n)
        };
        // The local count is kept either way, so a Redis outage mid-attack
        // does not hand out a fresh budget.
        self.record_local(key);
        if tokio::time::timeout(Duration::from_millis(500), remote)
            .await
            .ok()
            .flatten()
            .is_none()
        {
            tracing::warn!(limiter = %self.prefix, "Redis unavailable; failure counted on this instance only");
        }
    }

    fn local_state(&self, key: &str) -> Option<(u32, u64)> {
        let map = self.local.lock().ok()?;
        let (count, started) = map.get(key)?;
        let elapsed = started.elapsed();
        (elapsed < self.window).then(|| (*count, (self.window - elapsed).as_secs()))
    }

    fn record_local(&self, key: &str) {
        if let Ok(mut map) = self.local.lock() {
            let now = Instant::now();
            if map.len() > 100_000 {
                let window = self.window;
                map.retain(|_, (_, t)| now.duration_since(*t) < window);
            }
            let entry = map.entry(key.to_owned()).or_insert((0, now));
            if now.duration_since(entry.1) >= self.window {
                *entry = (0, now);
            }
            entry.0 += 1;
        }
    }
}
