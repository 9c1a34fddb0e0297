//! Typed Redis read cache: cache-aside reads, write-through updates, a TTL on
//! every entry, and versioned writes so a slow reader can never put an older
//! value over a newer one (a read-miss racing a write leaves no stale entry).
//! Every failure degrades to a miss: Redis down makes reads slower, not wrong.

use std::time::Duration;

use deadpool_redis::redis::{self, AsyncCommands};
use deadpool_redis::Pool;
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

#[derive(Serialize, Deserialize)]
struct Versioned<T> {
    v: i64,
    d: T,
}

/// One service's cache; keys are `<redis_prefix><kind>:<id>`.
#[derive(Clone)]
pub struct Cache {
    pool: Pool,
    prefix: String,
    metrics: Metrics,
    enabled: bool,
}

impl Cache {
    pub fn new(pool: Pool, prefix: &str, metrics: Metrics) -> Self {
        Self {
            pool,
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
        f: impl AsyncFnOnce(&mut deadpool_redis::Connection) -> redis::RedisResult<T>,
    ) -> Option<T> {
        if !self.enabled {
            return None;
        }
        let op = async {
            let mut conn = self.pool.get().await.ok()?;
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
}
