//! One AMQP connection per process, reopened by us when it drops. lapin's
//! own recovery does not survive a broker restart (amqp-rs/lapin#450), so
//! every user asks [`Broker`] for a channel and gets a fresh one on a fresh
//! connection (with the topology declared again) whenever the old one died.
//!
//! The URL may list several nodes of a cluster, comma-separated: each
//! (re)connection tries them in turn, starting with the node after the one
//! it last used, so the loss of a node moves the process to the next.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use lapin::options::ConfirmSelectOptions;
use lapin::{Channel, Connection, ConnectionProperties};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use crate::topology::Topology;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the keeper's liveness probe (a channel opened and closed) may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Handle to the broker; cheap to clone.
#[derive(Clone)]
pub struct Broker(Arc<Inner>);

struct Inner {
    /// The cluster's nodes, tried in turn.
    urls: Vec<String>,
    /// The node to try first on the next connection.
    next: AtomicUsize,
    name: String,
    topology: Topology,
    connection: Mutex<Option<Connection>>,
    /// The confirm-mode channel publishers share (lapin channels are
    /// thread-safe; confirms are matched by delivery tag).
    publish_channel: Mutex<Option<Channel>>,
    connected: Arc<AtomicBool>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("broker unreachable: {0}")]
    Amqp(#[from] lapin::Error),
    #[error("broker connection timed out")]
    Timeout,
}

impl Broker {
    /// Does not connect yet: the first use (or [`Broker::spawn_keeper`]) does.
    /// `url`: one AMQP URL, or several (the nodes of a cluster) separated
    /// by commas.
    pub fn new(url: &str, topology: Topology, connection_name: &str) -> Self {
        Self(Arc::new(Inner {
            urls: node_urls(url),
            next: AtomicUsize::new(0),
            name: connection_name.to_owned(),
            topology,
            connection: Mutex::new(None),
            publish_channel: Mutex::new(None),
            connected: Arc::new(AtomicBool::new(false)),
        }))
    }

    pub fn topology(&self) -> &Topology {
        &self.0.topology
    }

    pub fn is_connected(&self) -> bool {
        self.0.connected.load(Ordering::Relaxed)
    }

    /// For `/health/ready`.
    pub fn probe(&self) -> Arc<dyn Fn() -> bool + Send + Sync> {
        let connected = self.0.connected.clone();
        Arc::new(move || connected.load(Ordering::Relaxed))
    }

    /// A new channel on a live connection (consumers own theirs).
    pub async fn channel(&self) -> Result<Channel, ConnectError> {
        let mut guard = self.0.connection.lock().await;
        if let Some(conn) = guard.as_ref() {
            if conn.status().connected() {
                match tokio::time::timeout(CONNECT_TIMEOUT, conn.create_channel()).await {
                    Ok(Ok(ch)) => return Ok(ch),
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "channel creation failed; reconnecting")
                    }
                    Err(_) => tracing::warn!("channel creation timed out; reconnecting"),
                }
            }
        }
        let conn = self.connect().await?;
        let channel = tokio::time::timeout(CONNECT_TIMEOUT, conn.create_channel())
            .await
            .map_err(|_| ConnectError::Timeout)??;
        *guard = Some(conn);
        Ok(channel)
    }

    /// The shared confirm-mode channel for publishing.
    pub async fn publish_channel(&self) -> Result<Channel, ConnectError> {
        let mut guard = self.0.publish_channel.lock().await;
        if let Some(ch) = guard.as_ref() {
            if ch.status().connected() {
                return Ok(ch.clone());
            }
        }
        let ch = self.channel().await?;
        ch.confirm_select(ConfirmSelectOptions::default()).await?;
        *guard = Some(ch.clone());
        Ok(ch)
    }

    /// Tries every node once, from the one after the last used; each
    /// attempt has the whole deadline of a connection.
    async fn connect(&self) -> Result<Connection, ConnectError> {
        self.0.connected.store(false, Ordering::Relaxed);
        let n = self.0.urls.len();
        let first = self.0.next.load(Ordering::Relaxed);
        let mut last = ConnectError::Timeout;
        for i in 0..n {
            let node = (first + i) % n;
            let attempt = self.connect_and_declare(&self.0.urls[node]);
            match tokio::time::timeout(CONNECT_TIMEOUT, attempt).await {
                Ok(Ok(conn)) => {
                    // A later loss starts with the next node.
                    self.0.next.store((node + 1) % n, Ordering::Relaxed);
                    return Ok(conn);
                }
                Ok(Err(e)) => last = e,
                Err(_) => last = ConnectError::Timeout,
            }
            if n > 1 {
                tracing::warn!(node, error = %last, "broker node unreachable; trying the next");
            }
        }
        Err(last)
    }

    /// Connects and declares the topology, under the caller's deadline: a
    /// broker that accepts TCP while it boots can leave a handshake or a
    /// queue declaration unanswered, and the caller holds the connection lock.
    async fn connect_and_declare(&self, url: &str) -> Result<Connection, ConnectError> {
        let properties = ConnectionProperties::default()
            .with_connection_name(self.0.name.clone().into())
            .with_executor(tokio_executor_trait::Tokio::current())
            .with_reactor(tokio_reactor_trait::Tokio::current());
        let conn = Connection::connect(url, properties).await?;
        let flag = self.0.connected.clone();
        let mut events = conn.events_listener();
        tokio::spawn(async move {
            use futures_util::StreamExt;
            while let Some(event) = events.next().await {
                if let lapin::Event::Error(e) = event {
                    tracing::warn!(error = %e, "broker connection lost");
                    flag.store(false, Ordering::Relaxed);
                }
            }
        });
        let channel = conn.create_channel().await?;
        self.0.topology.declare(&channel).await?;
        let _ = channel.close(200, "topology declared").await;
        self.0.connected.store(true, Ordering::Relaxed);
        tracing::info!(connection = %self.0.name, "broker connected, topology declared");
        Ok(conn)
    }

    /// Keeps the connection up in the background so readiness recovers and
    /// the topology is redeclared even when nothing is being published.
    /// Every second it opens (and closes) a channel under [`PROBE_TIMEOUT`]:
    /// a broker that hangs with its socket open is reported down within
    /// seconds, not when heartbeats give up a minute later.
    pub fn spawn_keeper(&self, shutdown: CancellationToken) -> tokio::task::JoinHandle<()> {
        let broker = self.clone();
        tokio::spawn(async move {
            let mut backoff = Duration::from_millis(250);
            loop {
                let answered = match tokio::time::timeout(PROBE_TIMEOUT, broker.channel()).await {
                    Ok(Ok(ch)) => {
                        let _ = tokio::time::timeout(PROBE_TIMEOUT, ch.close(200, "probe")).await;
                        true
                    }
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "broker reconnect failed");
                        false
                    }
                    Err(_) => {
                        tracing::warn!(
                            retry_in_ms = backoff.as_millis() as u64,
                            "broker did not answer in time"
                        );
                        false
                    }
                };
                broker.0.connected.store(answered, Ordering::Relaxed);
                let pause = if answered {
                    backoff = Duration::from_millis(250);
                    Duration::from_secs(1)
                } else {
                    let pause = backoff;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    pause
                };
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(pause) => {}
                }
            }
        })
    }

    /// Closes the connection (shutdown, tests that simulate a crash).
    pub async fn close(&self) {
        *self.0.publish_channel.lock().await = None;
        if let Some(conn) = self.0.connection.lock().await.take() {
            let _ = conn.close(200, "shutdown").await;
        }
        self.0.connected.store(false, Ordering::Relaxed);
    }
}

/// The nodes of a comma-separated list of AMQP URLs.
pub fn node_urls(list: &str) -> Vec<String> {
    list.split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(str::to_owned)
        .collect()
}
