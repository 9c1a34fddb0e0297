//! Which live events reach this instance. Chat and realtime events carry
//! their recipients' keys (`r.<userId>`, RabbitMQ's `BCC` header), and this
//! instance's fan-out queue is bound to the keys of the users connected
//! here, so it consumes only events that have a recipient here: its cost
//! grows with its own sockets, not with the number of instances.
//!
//! - A socket's user has its key bound before the socket gets `ready` (the
//!   first socket binds it, the others wait for that), so no event
//!   published after `ready` misses it (earlier ones come from the resume).
//! - The last socket's close unbinds it [`LINGER`] later, unless a socket
//!   came back meanwhile (a reconnect costs no binding churn).
//! - A new fan-out queue (after a broker outage) has none of these
//!   bindings: [`Routes::rebind_all`] binds every connected user again, and
//!   only then do the sockets catch up from their timelines.
//!
//! Binds and unbinds run one at a time, each checking the hub right before
//! it acts, so an unbind can never remove the key of a user who has just
//! connected.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use broker::topology::{recipient_key, FANOUT_RECIPIENT_EXCHANGES};
use broker::Broker;
use lapin::options::QueueBindOptions;
use lapin::types::FieldTable;
use lapin::Channel;
use tokio::sync::Mutex;

use super::hub::Hub;

/// How long a key stays bound after its user's last socket here closed.
pub const LINGER: Duration = Duration::from_secs(30);

/// A bind or unbind slower than this is given up (and logged): the broker
/// is away, and the next queue gets every binding anyway.
const OP_TIMEOUT: Duration = Duration::from_secs(2);

pub struct Routes {
    broker: Broker,
    queue: String,
    hub: Arc<Hub>,
    /// Binds and unbinds hold it, one at a time.
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// The channel binds go through, opened on first use.
    channel: Option<Channel>,
    /// The users whose key this queue has.
    bound: HashSet<String>,
}

impl Routes {
    /// Routes for this instance's fan-out queue `queue`.
    pub fn new(broker: Broker, queue: String, hub: Arc<Hub>) -> Arc<Self> {
        Arc::new(Self {
            broker,
            queue,
            hub,
            state: Mutex::new(State::default()),
        })
    }

    /// A socket of `user` is in the hub: returns once its key is bound.
    /// Without the broker this only logs: the queue that comes back is
    /// bound by [`Self::rebind_all`].
    pub async fn join(&self, user: &str) {
        if !self.broker.is_connected() {
            // Nothing to wait for: the queue that comes back is bound in full.
            return;
        }
        let mut state = self.state.lock().await;
        if !state.bound.contains(user) && self.hub.has_user(user) {
            self.bind(&mut state, user).await;
        }
    }

    /// `user`'s last socket here closed: unbind its key after [`LINGER`],
    /// unless it has a socket here again by then.
    pub fn leave(self: &Arc<Self>, user: String) {
        let routes = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(LINGER).await;
            let mut state = routes.state.lock().await;
            if state.bound.contains(&user) && !routes.hub.has_user(&user) {
                routes.unbind(&mut state, &user).await;
            }
        });
    }

    /// Binds the key of every user connected here (a new fan-out queue has
    /// none of them).
    pub async fn rebind_all(&self) {
        let mut state = self.state.lock().await;
        state.bound.clear();
        let users = self.hub.users();
        for user in &users {
            self.bind(&mut state, user).await;
        }
        tracing::info!(
            users = users.len(),
            "fan-out queue bound to the connected users"
        );
    }

    async fn bind(&self, state: &mut State, user: &str) {
        if self.set_binding(state, user, true).await {
            state.bound.insert(user.to_owned());
        }
    }

    async fn unbind(&self, state: &mut State, user: &str) {
        self.set_binding(state, user, false).await;
        // Unbound or not, it is no longer counted: at worst the queue keeps
        // a key it does not need until it is replaced.
        state.bound.remove(user);
    }

    /// Binds (or unbinds) `user`'s key on every recipient exchange, within
    /// [`OP_TIMEOUT`]; whether it went through. A failed or timed-out one
    /// drops the channel (a refused operation closes it), to be opened
    /// again next time.
    async fn set_binding(&self, state: &mut State, user: &str, bind: bool) -> bool {
        let key = recipient_key(user);
        let topology = self.broker.topology().clone();
        let op = async {
            let ch = self.channel(&mut state.channel).await?;
            for exchange in FANOUT_RECIPIENT_EXCHANGES {
                let exchange = topology.exchange(exchange);
                let done = if bind {
                    ch.queue_bind(
                        &self.queue,
                        &exchange,
                        &key,
                        QueueBindOptions::default(),
                        FieldTable::default(),
                    )
                    .await
                } else {
                    ch.queue_unbind(&self.queue, &exchange, &key, FieldTable::default())
                        .await
                };
                done.map_err(|e| e.to_string())?;
            }
            Ok::<_, String>(())
        };
        let failed = match tokio::time::timeout(OP_TIMEOUT, op).await {
            Ok(Ok(())) => return true,
            Ok(Err(e)) => e,
            Err(_) => "timed out".to_owned(),
        };
        let what = if bind { "bind" } else { "unbind" };
        tracing::debug!(queue = %self.queue, error = %failed, "fan-out {what} failed; the next queue is bound in full");
        state.channel = None;
        false
    }

    async fn channel(&self, slot: &mut Option<Channel>) -> Result<Channel, String> {
        if let Some(ch) = slot.as_ref() {
            if ch.status().connected() {
                return Ok(ch.clone());
            }
        }
        let ch = self.broker.channel().await.map_err(|e| e.to_string())?;
        *slot = Some(ch.clone());
        Ok(ch)
    }
}
