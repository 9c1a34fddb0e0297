//! Sockets on this instance. Each has a bounded outbound queue: a client
//! that stops reading fills it and is told to close (its connection task
//! then cleans up), so memory never grows without bound and delivery never
//! waits for a slow socket.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use shared::metrics::Metrics;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Frames a socket may have queued before it counts as too slow.
pub const OUTBOUND_QUEUE: usize = 256;

#[derive(Debug)]
pub enum Outbound {
    /// A live frame and the event it comes from.
    Frame(Uuid, Arc<str>),
    /// Close with a code (1008 revoked session, 1001 going away).
    Close(u16, &'static str),
    /// This instance lost its fan-out queue for a while: send what the
    /// user's timeline holds from this time (ms since the epoch) on that
    /// the socket has not had yet.
    CatchUp(u64),
}

struct Conn {
    id: u64,
    session_id: String,
    tx: mpsc::Sender<Outbound>,
    /// Cancelled when the queue overflows: the connection task may be stuck
    /// in a write, so it is told out of band rather than through the queue.
    too_slow: CancellationToken,
}

pub struct Hub {
    users: RwLock<HashMap<String, Vec<Conn>>>,
    next_id: AtomicU64,
    metrics: Metrics,
}

impl Hub {
    /// The metrics its sockets count their frames in.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    pub fn new(metrics: Metrics) -> Self {
        // Every reason exported from the start (at 0), so that a rate over
        // the first drop is seen.
        for reason in ["slow_consumer", "rate_limited", "oversized"] {
            metrics.ws_drops.with_label_values(&[reason]);
        }
        Self {
            users: RwLock::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            metrics,
        }
    }

    /// A fresh socket id (unique on this instance).
    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Registers socket `id` unless the user already has `limit` sockets
    /// here (the limit when Redis cannot count across instances). Returns
    /// whether it is the user's first socket on this instance, and the token
    /// cancelled when the socket's queue overflows.
    pub fn register(
        &self,
        user: &str,
        session_id: &str,
        id: u64,
        tx: mpsc::Sender<Outbound>,
        limit: usize,
    ) -> Option<(bool, CancellationToken)> {
        let too_slow = CancellationToken::new();
        let mut users = self.users.write().ok()?;
        let conns = users.entry(user.to_owned()).or_default();
        if conns.len() >= limit {
            return None;
        }
        let first = conns.is_empty();
        conns.push(Conn {
            id,
            session_id: session_id.to_owned(),
            tx,
            too_slow: too_slow.clone(),
        });
        self.metrics.ws_connections.inc();
        Some((first, too_slow))
    }

    /// Moves a socket to another session of its user (after an `auth`
    /// frame), so revoking that session closes it.
    pub fn rebind(&self, user: &str, id: u64, session_id: &str) {
        if let Ok(mut users) = self.users.write() {
            for conn in users.get_mut(user).into_iter().flatten() {
                if conn.id == id {
                    session_id.clone_into(&mut conn.session_id);
                }
            }
        }
    }

    /// Removes a socket; true when it was the user's last one here.
    pub fn unregister(&self, user: &str, id: u64) -> bool {
        let Ok(mut users) = self.users.write() else {
            return false;
        };
        let Some(conns) = users.get_mut(user) else {
            return false;
        };
        let before = conns.len();
        conns.retain(|c| c.id != id);
        if conns.len() < before {
            self.metrics.ws_connections.dec();
        }
        let last = conns.is_empty();
        if last {
            users.remove(user);
        }
        last
    }

    /// The user's sockets on this instance.
    pub fn count(&self, user: &str) -> usize {
        self.users
            .read()
            .map(|u| u.get(user).map_or(0, Vec::len))
            .unwrap_or(0)
    }

    pub fn has_user(&self, user: &str) -> bool {
        self.users
            .read()
            .map(|u| u.contains_key(user))
            .unwrap_or(false)
    }

    /// Every user with a socket here.
    pub fn users(&self) -> Vec<String> {
        self.users
            .read()
            .map(|u| u.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Every socket here, as `(user, socket id)`.
    pub fn local_sockets(&self) -> Vec<(String, u64)> {
        self.users
            .read()
            .map(|u| {
                u.iter()
                    .flat_map(|(user, conns)| conns.iter().map(|c| (user.clone(), c.id)))
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn local_users(&self) -> Vec<String> {
        self.users
            .read()
            .map(|u| u.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Queues a frame on every socket of the user without waiting; a socket
    /// whose queue is full is told to close and gets nothing more.
    pub fn deliver(&self, user: &str, event: Uuid, frame: Arc<str>) {
        if let Ok(users) = self.users.read() {
            for conn in users.get(user).into_iter().flatten() {
                if conn.too_slow.is_cancelled() {
                    continue;
                }
                if conn
                    .tx
                    .try_send(Outbound::Frame(event, frame.clone()))
                    .is_err()
                {
                    tracing::warn!(user.id = %user, "socket too slow; disconnecting");
                    self.metrics
                        .ws_drops
                        .with_label_values(&["slow_consumer"])
                        .inc();
                    conn.too_slow.cancel();
                }
            }
        }
    }

    /// Closes every socket of a revoked session with 1008.
    pub fn close_session(&self, session_id: &str) {
        if let Ok(users) = self.users.read() {
            for conn in users
                .values()
                .flatten()
                .filter(|c| c.session_id == session_id)
            {
                let _ = conn.tx.try_send(Outbound::Close(1008, "session revoked"));
            }
        }
    }

    /// Asks every socket to catch up from `from_ms` (see [`Outbound::CatchUp`]).
    pub fn catch_up_all(&self, from_ms: u64) {
        if let Ok(users) = self.users.read() {
            for conn in users.values().flatten() {
                let _ = conn.tx.try_send(Outbound::CatchUp(from_ms));
            }
        }
    }

    /// Closes every socket with 1001 (shutdown).
    pub fn close_all(&self) {
        if let Ok(users) = self.users.read() {
            for conn in users.values().flatten() {
                let _ = conn.tx.try_send(Outbound::Close(1001, "server going away"));
            }
        }
    }
}
