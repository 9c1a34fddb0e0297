//! This instance's fan-out consumer: every chat and realtime event, and
//! every session revocation, delivered to the sockets connected here.

use std::sync::Arc;

use broker::consumer::HandlerError;
use broker::events::DecodedEnvelope;
use broker::{Event, Handler};

use super::frames::{frame_for, with_cursor};
use crate::realtime::hub::Hub;
use crate::storage::revocations::Revocations;
use crate::storage::users::Users;

pub struct FanoutHandler {
    pub hub: Arc<Hub>,
    pub users: Users,
    pub revocations: Revocations,
}

impl Handler for FanoutHandler {
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
            self.hub.deliver(user, text);
        }
        Ok(())
    }
}
