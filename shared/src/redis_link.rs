//! The process's link to Redis: one multiplexed connection shared by every
//! task (redis-rs' `ConnectionManager`: commands from all tasks are
//! pipelined on it, and it reconnects by itself after a loss).
//!
//! It replaced a deadpool-redis pool. Each connection that pool handed out
//! was already a multiplexed one, so pooling them added nothing but the
//! `PING` deadpool-redis sends on every checkout (it cannot be turned off):
//! two round trips for every cached read instead of one.
//!
//! Every wait is bounded, so a Redis outage costs a request milliseconds:
//! connecting and each reply time out after 500 ms; callers that arrive
//! while a connection is being made wait for that one attempt, and after a
//! failed attempt they fail at once for a second instead of each trying
//! again.

use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{ErrorKind, RedisError, RedisResult};

/// Bound of a connection attempt and of each reply.
const TIMEOUT: Duration = Duration::from_millis(500);
/// After a failed connection attempt, how long callers fail without trying.
const BACKOFF: Duration = Duration::from_secs(1);

/// Cheap to clone; all clones share the one connection.
#[derive(Clone)]
pub struct Redis {
    inner: Arc<Inner>,
}

struct Inner {
    client: redis::Client,
    conn: RwLock<Option<ConnectionManager>>,
    /// Held while connecting.
    connecting: tokio::sync::Mutex<()>,
    /// When the last connection attempt failed.
    failed_at: Mutex<Option<Instant>>,
}

impl Redis {
    /// Parses `url`; connects on first use, so a service starts (and says
    /// it is degraded) while Redis is down.
    pub fn new(url: &str) -> RedisResult<Self> {
        Ok(Self {
            inner: Arc::new(Inner {
                client: redis::Client::open(url)?,
                conn: RwLock::new(None),
                connecting: tokio::sync::Mutex::new(()),
                failed_at: Mutex::new(None),
            }),
        })
    }

    /// The shared connection (a cheap handle to it).
    pub async fn get(&self) -> RedisResult<ConnectionManager> {
        if let Some(conn) = self.current() {
            return Ok(conn);
        }
        // One task connects; the others wait for its outcome (one attempt,
        // at most about 1 s) instead of each connecting.
        let guard = self.inner.connecting.lock().await;
        if let Some(conn) = self.current() {
            return Ok(conn);
        }
        let recently_failed = self
            .inner
            .failed_at
            .lock()
            .ok()
            .and_then(|f| *f)
            .is_some_and(|at| at.elapsed() < BACKOFF);
        if recently_failed {
            return Err(unavailable());
        }
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(TIMEOUT)
            .set_response_timeout(TIMEOUT)
            // A reconnect after a loss: two tries, then the next command
            // starts another (requests never wait more than about 1 s).
            .set_number_of_retries(1)
            .set_factor(100)
            .set_max_delay(1_000);
        let connected = tokio::time::timeout(
            TIMEOUT * 2,
            ConnectionManager::new_with_config(self.inner.client.clone(), config),
        )
        .await
        .unwrap_or_else(|_| Err(unavailable()));
        drop(guard);
        match connected {
            Ok(conn) => {
                if let Ok(mut slot) = self.inner.conn.write() {
                    *slot = Some(conn.clone());
                }
                Ok(conn)
            }
            Err(e) => {
                if let Ok(mut f) = self.inner.failed_at.lock() {
                    *f = Some(Instant::now());
                }
                Err(e)
            }
        }
    }

    fn current(&self) -> Option<ConnectionManager> {
        self.inner.conn.read().ok().and_then(|c| c.clone())
    }
}

fn unavailable() -> RedisError {
    RedisError::from((ErrorKind::IoError, "Redis is not reachable"))
}
