//! Counting attempts per key (an account, a user's sends) across all
//! instances in Redis, with a per-instance in-memory fallback so the limit
//! still holds (per instance) when Redis is down, never falling open.
//!
//! [`FailureLimiter::acquire`] takes one attempt from the allowance in a
//! single atomic step (a Lua script: `INCR`, the expiry set with the first
//! attempt), before the work it guards. N racing requests therefore get at
//! most the allowance left, never N checks. A guarded check that turns out
//! fine can hand its attempt back ([`Attempt::refund`]) or clear the key
//! ([`FailureLimiter::reset`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::metrics::Metrics;
use crate::redis_link::Redis;

/// Takes one attempt and answers the count and the window's milliseconds left.
/// `PTTL` is -1 only if a key lost its expiry (it never should); it gets one.
const ACQUIRE: &str = r"
local n = redis.call('INCR', KEYS[1])
local ttl = redis.call('PTTL', KEYS[1])
if n == 1 or ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return {n, ttl}
";

/// Gives back an attempt without touching the window (never below zero).
const REFUND: &str = r"
local n = tonumber(redis.call('GET', KEYS[1]) or '0')
if n > 0 then redis.call('DECR', KEYS[1]) end
return 0
";

/// How long Redis may take before the limiter counts on this instance only.
const REDIS_DEADLINE: Duration = Duration::from_millis(500);

/// Refused: the key used up its allowance; retry after this many seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exhausted {
    pub retry_after_secs: u64,
}

/// One attempt taken from a key's allowance. Dropping it keeps it counted
/// (a wrong password, a message sent); [`Attempt::refund`] hands it back.
#[must_use = "an attempt is either kept (dropped) or refunded"]
pub struct Attempt {
    limiter: FailureLimiter,
    key: String,
    /// The attempt also reached Redis, so the refund must too.
    remote: bool,
}

impl Attempt {
    /// The guarded check succeeded and must not count.
    pub async fn refund(self) {
        self.limiter.refund_local(&self.key);
        if self.remote {
            let redis_key = self.limiter.redis_key(&self.key);
            let redis = self.limiter.redis.clone();
            let done = async move {
                let mut conn = redis.get().await.ok()?;
                redis::Script::new(REFUND)
                    .key(&redis_key)
                    .invoke_async::<i64>(&mut conn)
                    .await
                    .ok()
            };
            // A lost refund only leaves one attempt counted until the window ends.
            let _ = tokio::time::timeout(REDIS_DEADLINE, done).await;
        }
    }
}

/// "At most `limit` attempts (or failures) per `window` per key."
#[derive(Clone)]
pub struct FailureLimiter {
    redis: Redis,
    prefix: String,
    limit: u32,
    window: Duration,
    local: Arc<Mutex<HashMap<String, (u32, Instant)>>>,
    /// `rate_limit_refusals_total{limit=<name>}`, once [`Self::counted`].
    refusals: Option<crate::metrics::IntCounter>,
    name: Arc<str>,
}

impl FailureLimiter {
    /// `name` separates limiters in the Redis key space.
    pub fn new(redis: Redis, redis_prefix: &str, name: &str, limit: u32, window: Duration) -> Self {
        Self {
            redis,
            prefix: format!("{redis_prefix}fail:{name}:"),
            limit,
            window,
            local: Arc::new(Mutex::new(HashMap::new())),
            refusals: None,
            name: name.into(),
        }
    }

    /// Counts its refusals in `rate_limit_refusals_total{limit=<name>}`.
    #[must_use]
    pub fn counted(mut self, metrics: &Metrics) -> Self {
        self.refusals = Some(
            metrics
                .rate_limit_refusals
                .with_label_values(&[&*self.name]),
        );
        self
    }

    /// Takes one attempt atomically, before the guarded work: `Err` when the
    /// key has none left (then nothing was counted and the work must not run).
    /// Redis is the shared count; this instance's own count is kept beside it
    /// and the higher of the two decides, so an outage never resets a budget.
    pub async fn acquire(&self, key: &str) -> Result<Attempt, Exhausted> {
        let local = self.acquire_local(key);
        let redis_key = self.redis_key(key);
        let window_ms = self.window.as_millis().max(1) as u64;
        let remote = async {
            let mut conn = self.redis.get().await.ok()?;
            redis::Script::new(ACQUIRE)
                .key(&redis_key)
                .arg(window_ms)
                .invoke_async::<(u32, i64)>(&mut conn)
                .await
                .ok()
        };
        let remote = tokio::time::timeout(REDIS_DEADLINE, remote)
            .await
            .ok()
            .flatten();
        if remote.is_none() {
            tracing::warn!(limiter = %self.prefix, "Redis unavailable; attempt counted on this instance only");
        }
        let (count, left_ms) = match remote {
            Some((count, left)) if count >= local.0 => (count, left),
            _ => local,
        };
        let left_ms = left_ms.max(0) as u64;
        let attempt = Attempt {
            limiter: self.clone(),
            key: key.to_owned(),
            remote: remote.is_some(),
        };
        if count > self.limit {
            // Over the limit: this attempt must not stay counted, or a flood
            // would keep extending nothing but the count. The window is fixed.
            attempt.refund().await;
            if let Some(refusals) = &self.refusals {
                refusals.inc();
            }
            return Err(Exhausted {
                retry_after_secs: left_ms.div_ceil(1000).max(1),
            });
        }
        Ok(attempt)
    }

    /// Clears the key's count (a success that resets the rule's window).
    pub async fn reset(&self, key: &str) {
        if let Ok(mut map) = self.local.lock() {
            map.remove(key);
        }
        let redis_key = self.redis_key(key);
        let done = async {
            let mut conn = self.redis.get().await.ok()?;
            redis::cmd("DEL")
                .arg(&redis_key)
                .query_async::<i64>(&mut conn)
                .await
                .ok()
        };
        let _ = tokio::time::timeout(REDIS_DEADLINE, done).await;
    }

    fn redis_key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    /// Counts one attempt on this instance: (count, milliseconds left).
    fn acquire_local(&self, key: &str) -> (u32, i64) {
        let Ok(mut map) = self.local.lock() else {
            return (0, 0);
        };
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
        let left = self.window.saturating_sub(now.duration_since(entry.1));
        (entry.0, left.as_millis() as i64)
    }

    fn refund_local(&self, key: &str) {
        if let Ok(mut map) = self.local.lock() {
            if let Some(entry) = map.get_mut(key) {
                entry.0 = entry.0.saturating_sub(1);
            }
        }
    }
}
