//! Sockets on this instance. Each has a bounded outbound queue: a client
//! that stops reading fills it and is disconnected, so memory never grows
//! without bound.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use shared::metrics::Metrics;
use tokio::sync::mpsc;

/// Frames a socket may have queued before it counts as too slow.
pub const OUTBOUND_QUEUE: usize = 256;

#[derive(Debug)]
pub enum Outbound {
    Frame(Arc<str>),
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
}

pub struct Hub {
    users: RwLock<HashMap<String, Vec<Conn>>>,
    next_id: AtomicU64,
    metrics: Metrics,
}

impl Hub {
    pub fn new(metrics: Metrics) -> Self {
        Self {
            users: RwLock::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            metrics,
        }
    }

    /// Registers a socket; returns its id and whether it is the user's
    /// first socket on this instance.
    pub fn register(
        &self,
        user: &str,
        session_id: &str,
        tx: mpsc::Sender<Outbound>,
    ) -> (u64, bool) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut first = false;
        if let Ok(mut users) = self.users.write() {
            let conns = users.entry(user.to_owned()).or_default();
            first = conns.is_empty();
            conns.push(Conn {
                id,
                session_id: session_id.to_owned(),
                tx,
            });
        }
        self.metrics.ws_connections.inc();
        (id, first)
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

    pub fn has_user(&self, user: &str) -> bool {
        self.users
            .read()
            .map(|u| u.contains_key(user))
            .unwrap_or(false)
    }

    pub fn local_users(&self) -> Vec<String> {
        self.users
            .read()
            .map(|u| u.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Queues a frame on every socket of the user; a full queue disconnects
    /// that socket.
    pub fn deliver(&self, user: &str, frame: Arc<str>) {
        let mut slow = Vec::new();
        if let Ok(users) = self.users.read() {
            for conn in users.get(user).into_iter().flatten() {
                if conn.tx.try_send(Outbound::Frame(frame.clone())).is_err() {
                    slow.push(conn.id);
                }
            }
        }
        for id in slow {
            tracing::warn!(user.id = %user, "socket too slow; disconnecting");
            self.unregister(user, id);
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
