//! What the outbox sweep redoes for an event it relays, whose writer may
//! have died between the write and the publish:
//! - the read-cache invalidation the writer does right after the write
//!   (without it, another instance would serve the chat as it was before the
//!   change until the cache entry expired);
//! - new timeline cursors. The event's first ones were taken before the
//!   write, and its recipients may since have had later ones (a concurrent
//!   post that was published): a client that reconnects resumes after the
//!   last cursor it had, so a replay would never reach the late event. It is
//!   appended once more and goes out with the new cursors (see
//!   [`Timeline::reissue`]).

use broker::events::chat::Cursors;
use broker::events::DecodedEnvelope;
use broker::outbox::Recovery;
use broker::Event;
use futures_util::future::BoxFuture;
use shared::cache::Cache;

use super::frames::frame_for;
use crate::domain::service::stale_generations;
use crate::storage::timeline::Timeline;
use crate::storage::users::Users;

pub struct SweepRecovery {
    pub cache: Cache,
    pub timeline: Timeline,
    pub users: Users,
}

impl Recovery for SweepRecovery {
    fn recover<'a>(&'a self, event: &'a DecodedEnvelope) -> BoxFuture<'a, Option<Event>> {
        Box::pin(async move {
            let generations = stale_generations(&event.data);
            if !generations.is_empty() {
                self.cache.bump(&generations).await;
            }
            let mut data = event.data.clone();
            cursors_of(&mut data)?;
            let frame = frame_for(&data, &self.users).await?;
            let cursors = self
                .timeline
                .reissue(&frame.recipients, &frame.body.to_string(), event.id)
                .await?;
            *cursors_of(&mut data)? = cursors;
            Some(data)
        })
    }
}

/// The timeline cursors an event carries, for the kinds that have them.
fn cursors_of(event: &mut Event) -> Option<&mut Cursors> {
    match event {
        Event::MessageCreated(e) => Some(&mut e.cursors),
        Event::MessageUpdated(e) => Some(&mut e.cursors),
        Event::MessageDeleted(e) => Some(&mut e.cursors),
        Event::ChatCreated(e) => Some(&mut e.cursors),
        Event::ChatUpdated(e) => Some(&mut e.cursors),
        Event::MemberAdded(e) => Some(&mut e.cursors),
        Event::MemberRemoved(e) => Some(&mut e.cursors),
        Event::ReadMarked(e) => Some(&mut e.cursors),
        _ => None,
    }
}
