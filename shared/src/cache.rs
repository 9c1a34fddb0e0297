//! Typed Redis read cache: cache-aside reads, write-through updates, a TTL on
//! every entry, and versioned writes so a slow reader can never put an older
//! value over a newer one (a read-miss racing a write leaves no stale entry).
//! Every failure degrades to a miss: Redis down makes reads slower, not wrong.

use std::time::Duration;

use crate::redis_link::Redis;
use redis::AsyncCommands;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::metrics::{CacheResult, Metrics};

const OP_TIMEOUT: Duration = Duration::from_millis(300);

/// Sets KEYS[1] to ARGV[1] (JSON `{"v":..,"d":..}`) with TTL ARGV[3] unless
/// the stored entry already has a version >= ARGV[2].
const SET_IF_NEWER: &str = r#"
local cur = redis.call('GET', KEYS[1])
if cur then
  local ok, decoded = pcall(cjson.decode, cur)
  if ok and type(decoded) == 'table' and decoded.v and tonumber(decoded.v) >= tonumber(ARGV[2]) then
    return 0
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[3])
return 1
"#;

/// How long a generation counter outlives its last bump. Far longer than any
/// entry's TTL, so a counter never expires (and restarts at 0) while an entry
/// computed under it is still stored.
const GENERATION_TTL: Duration = Duration::from_secs(24 * 3600);

/// A failed bump is retried this long: past it every entry that could have
/// been computed before the write has expired anyway.
const MAX_ENTRY_TTL: Duration = Duration::from_secs(300);

fn push_bump(pipe: &mut redis::Pipeline, key: &str) {
    pipe.incr(key, 1)
        .ignore()
        .expire(key, GENERATION_TTL.as_secs() as i64)
        .ignore();
}

#[derive(Serialize, Deserialize)]
struct Versioned<T> {
    v: i64,
    d: T,
}

#[derive(Serialize, Deserialize)]
struct Generational<T> {
    g: Vec<i64>,
    d: T,
}

/// What a generation-checked lookup found.
pub enum Lookup<T> {
    Hit(T),
    /// Compute the value, then hand this to [`Cache::put_checked`]. `None`
    /// when Redis could not be read: the value must not be stored then.
    Miss(Option<Generations>),
}

/// The generations read by a missed lookup, in order.
pub struct Generations(Vec<i64>);

/// One service's cache; keys are `<redis_prefix><kind>:<id>`.
#[derive(Clone)]
pub struct Cache {
    redis: Redis,
    prefix: String,
    metrics: Metrics,
    enabled: bool,
}

impl Cache {
    pub fn new(redis: Redis, prefix: &str, metrics: Metrics) -> Self {
        Self {
            redis,
            prefix: prefix.to_owned(),
            metrics,
            enabled: true,
        }
    }

    /// A cache that always misses (benchmarks compare against it).
    pub fn disabled(mut self) -> Self {
        self.enabled = false;
        self
    }

    fn key(&self, kind: &str, id: &str) -> String {
        format!("{}{kind}:{id}", self.prefix)
    }

    async fn with_conn<T>(
        &self,
        f: impl AsyncFnOnce(&mut redis::aio::ConnectionManager) -> redis::RedisResult<T>,
    ) -> Option<T> {
        if !self.enabled {
            return None;
        }
        let op = async {
            let mut conn = self.redis.get().await.ok()?;
            f(&mut conn).await.ok()
        };
        tokio::time::timeout(OP_TIMEOUT, op).await.ok().flatten()
    }

    /// A versioned entry, or `None` on a miss or any failure.
    pub async fn get<T: DeserializeOwned>(&self, kind: &'static str, id: &str) -> Option<T> {
        if !self.enabled {
            return None;
        }
        let key = self.key(kind, id);
        let raw: Option<Option<String>> = self.with_conn(async |c| c.get(&key).await).await;
        match raw {
            None => {
                self.metrics.cache(kind, CacheResult::Error);
                None
            }
            Some(None) => {
                self.metrics.cache(kind, CacheResult::Miss);
                None
            }
            Some(Some(s)) => match serde_json::from_str::<Versioned<T>>(&s) {
                Ok(entry) => {
                    self.metrics.cache(kind, CacheResult::Hit);
                    Some(entry.d)
                }
                Err(_) => {
                    self.metrics.cache(kind, CacheResult::Miss);
                    None
                }
            },
        }
    }

    /// Stores `value` at `version` unless a newer version is stored.
    pub async fn put<T: Serialize>(
        &self,
        kind: &'static str,
        id: &str,
        version: i64,
        value: &T,
        ttl: Duration,
    ) {
        let Ok(json) = serde_json::to_string(&Versioned {
            v: version,
            d: value,
        }) else {
            return;
        };
        let key = self.key(kind, id);
        let script = redis::Script::new(SET_IF_NEWER);
        let ttl = ttl.as_secs().max(1);
        let _: Option<i64> = self
            .with_conn(async |c| {
                script
                    .key(&key)
                    .arg(&json)
                    .arg(version)
                    .arg(ttl)
                    .invoke_async(c)
                    .await
            })
            .await;
    }

    /// Removes an entry (write-through invalidation when no new value is at hand).
    pub async fn delete(&self, kind: &'static str, id: &str) {
        let key = self.key(kind, id);
        let _: Option<i64> = self.with_conn(async |c| c.del(&key).await).await;
    }

    /// A plain flag with a TTL, set only if absent (`NX`).
    pub async fn set_flag_nx(&self, kind: &'static str, id: &str, value: &str, ttl: Duration) {
        let key = self.key(kind, id);
        let opts = redis::SetOptions::default()
            .conditional_set(redis::ExistenceCheck::NX)
            .with_expiration(redis::SetExpiry::EX(ttl.as_secs().max(1)));
        let _: Option<Option<String>> = self
            .with_conn(async |c| c.set_options(&key, value, opts).await)
            .await;
    }

    /// A plain flag with a TTL, overwriting.
    pub async fn set_flag(&self, kind: &'static str, id: &str, value: &str, ttl: Duration) {
        let key = self.key(kind, id);
        let _: Option<()> = self
            .with_conn(async |c| c.set_ex(&key, value, ttl.as_secs().max(1)).await)
            .await;
    }

    pub async fn get_flag(&self, kind: &'static str, id: &str) -> Option<String> {
        if !self.enabled {
            return None;
        }
        let key = self.key(kind, id);
        let raw: Option<Option<String>> = self.with_conn(async |c| c.get(&key).await).await;
        let result = match &raw {
            None => CacheResult::Error,
            Some(None) => CacheResult::Miss,
            Some(Some(_)) => CacheResult::Hit,
        };
        self.metrics.cache(kind, result);
        raw.flatten()
    }

    fn generation_key(&self, name: &str) -> String {
        format!("{}gen:{name}", self.prefix)
    }

    /// Generation-checked read: the entry counts only if every generation
    /// named in `generations` still has the value it had when the entry was
    /// computed. Writers bump the generations after their database write
    /// commits; a reader reads them before it reads the database. So an entry
    /// computed from data older than a finished write always carries an older
    /// generation and is never served again, whatever the interleaving.
    /// One Redis round trip (`MGET`).
    pub async fn get_checked<T: DeserializeOwned>(
        &self,
        kind: &'static str,
        id: &str,
        generations: &[String],
    ) -> Lookup<T> {
        if !self.enabled {
            return Lookup::Miss(None);
        }
        let mut keys: Vec<String> = generations.iter().map(|g| self.generation_key(g)).collect();
        keys.push(self.key(kind, id));
        let raw: Option<Vec<Option<String>>> = self.with_conn(async |c| c.mget(&keys).await).await;
        let Some(mut values) = raw.filter(|v| v.len() == keys.len()) else {
            self.metrics.cache(kind, CacheResult::Error);
            return Lookup::Miss(None);
        };
        let entry = values.pop().flatten();
        let current = Generations(
            values
                .iter()
                .map(|v| v.as_deref().and_then(|s| s.parse().ok()).unwrap_or(0))
                .collect(),
        );
        match entry.and_then(|s| serde_json::from_str::<Generational<T>>(&s).ok()) {
            Some(entry) if entry.g == current.0 => {
                self.metrics.cache(kind, CacheResult::Hit);
                Lookup::Hit(entry.d)
            }
            _ => {
                self.metrics.cache(kind, CacheResult::Miss);
                Lookup::Miss(Some(current))
            }
        }
    }

    /// Stores a value computed after the lookup that returned `generations`.
    pub async fn put_checked<T: Serialize>(
        &self,
        kind: &'static str,
        id: &str,
        generations: Option<Generations>,
        value: &T,
        ttl: Duration,
    ) {
        let Some(Generations(g)) = generations else {
            return;
        };
        let Ok(json) = serde_json::to_string(&Generational { g, d: value }) else {
            return;
        };
        let key = self.key(kind, id);
        let ttl = ttl.min(MAX_ENTRY_TTL).as_secs().max(1);
        let _: Option<()> = self
            .with_conn(async |c| c.set_ex(&key, json, ttl).await)
            .await;
    }

    /// Invalidates every entry computed under these generations. Call it
    /// after the database write and before answering. If Redis cannot be
    /// reached the bump is retried in the background until it lands or every
    /// entry it guards has expired, so an outage cannot leave a stale entry
    /// to be served once Redis is back.
    pub async fn bump(&self, generations: &[String]) {
        if generations.is_empty() {
            return;
        }
        let keys: Vec<String> = generations.iter().map(|g| self.generation_key(g)).collect();
        if self.try_bump(&keys).await {
            return;
        }
        let cache = self.clone();
        tokio::spawn(async move {
            let deadline = tokio::time::Instant::now() + MAX_ENTRY_TTL;
            while tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(250)).await;
                if cache.try_bump(&keys).await {
                    return;
                }
            }
            tracing::warn!("cache generations not bumped; their entries expired instead");
        });
    }

    /// Adds the bump of `generations` to `pipe` (its replies ignored), for a
    /// writer that has other Redis commands to send in the same round trip.
    /// If that round trip fails, call [`Cache::bump`] to get the retries.
    pub fn bump_in(&self, pipe: &mut redis::Pipeline, generations: &[String]) {
        for g in generations {
            push_bump(pipe, &self.generation_key(g));
        }
    }

    async fn try_bump(&self, keys: &[String]) -> bool {
        let mut pipe = redis::pipe();
        for key in keys {
            push_bump(&mut pipe, key);
        }
        // Bumps happen even when reads are disabled: another instance may
        // have the cache on.
        let op = async {
            let mut conn = self.redis.get().await.ok()?;
            pipe.query_async::<()>(&mut conn).await.ok()
        };
        tokio::time::timeout(OP_TIMEOUT, op)
            .await
            .ok()
            .flatten()
            .is_some()
    }
}
