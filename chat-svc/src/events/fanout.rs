//! This instance's fan-out consumer: the chat and realtime events that have
//! a recipient connected here (see `realtime::routes`), and every session
//! revocation, delivered to the sockets connected here.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use broker::consumer::HandlerError;
use broker::events::DecodedEnvelope;
use broker::{Event, Handler};

use super::frames::{frame_for, with_cursor};
use crate::realtime::hub::Hub;
use crate::realtime::routes::Routes;
use crate::storage::users::Users;
use shared::revocations::Revocations;

/// How far before the loss of the fan-out queue a catch-up reaches back:
/// events already routed to the old queue but not yet consumed were lost
/// with it (their timeline entries were written before they were published).
const CATCH_UP_MARGIN: Duration = Duration::from_secs(10);

pub struct FanoutHandler {
    pub hub: Arc<Hub>,
    pub routes: Arc<Routes>,
    pub users: Users,
    pub revocations: Revocations,
    /// When the fan-out queue was lost (it is exclusive: it goes with the
    /// connection, and so do the events routed to it meanwhile), or when
    /// the process started, until the first subscription.
    lost_at: Mutex<Option<SystemTime>>,
}

impl FanoutHandler {
    pub fn new(hub: Arc<Hub>, routes: Arc<Routes>, users: Users, revocations: Revocations) -> Self {
        Self {
            hub,
            routes,
            users,
            revocations,
            // Sockets may connect before the first subscription is bound
            // (a restart right after a crash, while clients reconnect at
            // once): the first subscription catches them up like a return.
            lost_at: Mutex::new(Some(SystemTime::now())),
        }
    }
}

impl Handler for FanoutHandler {
    fn interrupted(&self) {
        if let Ok(mut lost) = self.lost_at.lock() {
            lost.get_or_insert_with(SystemTime::now);
        }
    }

    /// Back on a new queue: it is bound to the keys of every user connected
    /// here, then every socket here catches up from its user's timeline, so
    /// an outage of the broker loses no live event.
    fn subscribed(&self) {
        let lost = self.lost_at.lock().ok().and_then(|mut l| l.take());
        let (hub, routes) = (self.hub.clone(), self.routes.clone());
        tokio::spawn(async move {
            routes.rebind_all().await;
            if let Some(at) = lost {
                let from = at
                    .checked_sub(CATCH_UP_MARGIN)
                    .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                    .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
                tracing::info!(
                    from_ms = from,
                    "fan-out queue back; sockets catch up from the timelines"
                );
                hub.catch_up_all(from);
            }
        });
    }

    async fn handle(&self, event: &DecodedEnvelope) -> Result<(), HandlerError> {
        if let Event::SessionRevoked(s) = &event.data {
            self.revocations.remember(&s.session_id);
            self.hub.close_session(&s.session_id);
            return Ok(());
        }
        let Some(frame) = frame_for(&event.data, &self.users).await else {
            return Ok(());
        };
        // Serialised once per event; per recipient only the cursor is spliced in.
        let body = frame.body.to_string();
        let shared: Arc<str> = Arc::from(body.as_str());
        for user in &frame.recipients {
            if !self.hub.has_user(user) {
                continue;
            }
            let text = match frame.cursors.get(user) {
                Some(cursor) => Arc::from(with_cursor(&body, cursor)),
                None => shared.clone(),
            };
            self.hub.deliver(user, event.id, text);
        }
        Ok(())
    }
}
