//! Per-user timelines in Redis streams: every durable event a user receives
//! is appended to `timeline:<user>` (at least the last 1,000 are kept, and a
//! day of inactivity expires the stream); the stream id is the event's
//! resume cursor for that user. Appending is pipelined across all members
//! in one round trip. Without Redis, events carry no cursor and a resume
//! gets `resync`.
//!
//! Each entry holds the frame (`f`) and the id of its event (`e`): an event
//! the outbox sweep relays late is appended again under a new cursor
//! ([`Timeline::reissue`]), so that a client which resumed after a later
//! cursor still gets it, and a socket sends each event id once.

use std::time::Duration;

use broker::events::chat::Cursors;
use shared::redis_link::Redis;
use uuid::Uuid;

const KEEP: usize = 1000;
const EXPIRE_SECS: i64 = 24 * 3600;
const OP_TIMEOUT: Duration = Duration::from_millis(500);

#[derive(Clone)]
pub struct Timeline {
    redis: Redis,
    prefix: String,
}

/// One frame of a timeline.
pub struct Entry {
    pub cursor: String,
    /// The frame without `cursor`.
    pub frame: String,
    /// Its event (absent in entries written before events were recorded).
    pub event: Option<Uuid>,
}

/// What a resume finds.
pub enum Replay {
    /// Frames after the cursor, in order.
    Frames(Vec<Entry>),
    /// The cursor is unknown or too old: refetch over REST.
    Resync,
}

pub fn valid_cursor(c: &str) -> bool {
    let mut parts = c.split('-');
    matches!((parts.next(), parts.next(), parts.next()), (Some(a), Some(b), None)
        if !a.is_empty() && !b.is_empty() && a.len() <= 20 && b.len() <= 20
            && a.bytes().all(|x| x.is_ascii_digit()) && b.bytes().all(|x| x.is_ascii_digit()))
}

/// Orders cursors numerically (`ms-seq`).
pub fn cursor_key(c: &str) -> (u64, u64) {
    let mut parts = c.split('-');
    let a = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    let b = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    (a, b)
}

impl Timeline {
    pub fn new(redis: Redis, redis_prefix: &str) -> Self {
        Self {
            redis,
            prefix: format!("{redis_prefix}timeline:"),
        }
    }

    /// Appends `frame` (a JSON object without `cursor`) of `event` for every
    /// user, in one round trip with whatever `pipe` already holds (commands
    /// whose replies are ignored). `None` when Redis did not answer in time:
    /// the events then go out without cursors, and the caller must assume
    /// `pipe`'s commands did not run (they may have).
    pub async fn append(
        &self,
        mut pipe: redis::Pipeline,
        users: &[String],
        frame: &str,
        event: Uuid,
    ) -> Option<Cursors> {
        let event = event.to_string();
        let op = async {
            let mut conn = self.redis.get().await.ok()?;
            for user in users {
                let key = format!("{}{user}", self.prefix);
                pipe.cmd("XADD")
                    .arg(&key)
                    .arg("MAXLEN")
                    .arg("~")
                    .arg(KEEP)
                    .arg("*")
                    .arg("f")
                    .arg(frame)
                    .arg("e")
                    .arg(&event);
                pipe.cmd("EXPIRE").arg(&key).arg(EXPIRE_SECS).ignore();
            }
            let ids: Vec<String> = pipe.query_async(&mut conn).await.ok()?;
            Some(users.iter().cloned().zip(ids).collect::<Cursors>())
        };
        let cursors = tokio::time::timeout(OP_TIMEOUT, op).await.ok().flatten();
        if cursors.is_none() {
            tracing::warn!("timeline unavailable; events go out without cursors");
        }
        cursors
    }

    /// Appends an event that is published late (its writer died before
    /// publishing it) once more, under new cursors. Its first cursors may be
    /// older than ones its recipients have had since, and a resume starts
    /// after the cursor a client last had: without new ones it would never
    /// be replayed. The first entries stay (a client may hold one as its
    /// cursor); a socket that meets both sends the event once. `None` when
    /// Redis did not answer: the event goes out with its first cursors.
    pub async fn reissue(&self, users: &[String], frame: &str, event: Uuid) -> Option<Cursors> {
        let cursors = self.append(redis::pipe(), users, frame, event).await;
        if cursors.is_some() {
            tracing::info!(event.id = %event, recipients = users.len(), "late event appended to the timelines again");
        }
        cursors
    }

    /// Takes back frames appended for a write that did not happen (best
    /// effort: a frame left behind is replayed by a resume).
    pub async fn retract(&self, cursors: &Cursors) {
        if cursors.is_empty() {
            return;
        }
        let op = async {
            let mut conn = self.redis.get().await.ok()?;
            let mut pipe = redis::pipe();
            for (user, cursor) in cursors {
                pipe.cmd("XDEL")
                    .arg(format!("{}{user}", self.prefix))
                    .arg(cursor)
                    .ignore();
            }
            pipe.query_async::<()>(&mut conn).await.ok()
        };
        if tokio::time::timeout(OP_TIMEOUT, op)
            .await
            .ok()
            .flatten()
            .is_none()
        {
            tracing::warn!("could not take back timeline frames of a failed write");
        }
    }

    /// Everything after `cursor`, or `Resync` when it cannot be served.
    pub async fn after(&self, user: &str, cursor: &str) -> Replay {
        if !valid_cursor(cursor) {
            return Replay::Resync;
        }
        let key = format!("{}{user}", self.prefix);
        let op = async {
            let mut conn = self.redis.get().await.ok()?;
            // The cursor itself must still be there, else events were trimmed.
            let anchor: Vec<(String, Vec<String>)> = redis::cmd("XRANGE")
                .arg(&key)
                .arg(cursor)
                .arg(cursor)
                .query_async(&mut conn)
                .await
                .ok()?;
            if anchor.is_empty() {
                return Some(Replay::Resync);
            }
            let frames = frames_from(&mut conn, &key, &format!("({cursor}")).await?;
            Some(Replay::Frames(frames))
        };
        match tokio::time::timeout(OP_TIMEOUT * 4, op).await {
            Ok(Some(r)) => r,
            _ => Replay::Resync,
        }
    }
}

/// The entries of `key` from `start` (an XRANGE bound) on, at most twice
/// what a timeline keeps.
async fn frames_from(
    conn: &mut redis::aio::ConnectionManager,
    key: &str,
    start: &str,
) -> Option<Vec<Entry>> {
    let entries: Vec<(String, Vec<String>)> = redis::cmd("XRANGE")
        .arg(key)
        .arg(start)
        .arg("+")
        .arg("COUNT")
        .arg(KEEP * 2)
        .query_async(conn)
        .await
        .ok()?;
    Some(
        entries
            .into_iter()
            .filter_map(|(cursor, fields)| entry(cursor, fields))
            .collect(),
    )
}

/// An entry from its stream fields (`f`, then `e` when recorded).
fn entry(cursor: String, fields: Vec<String>) -> Option<Entry> {
    let mut frame = None;
    let mut event = None;
    let mut pairs = fields.into_iter();
    while let (Some(name), Some(value)) = (pairs.next(), pairs.next()) {
        match name.as_str() {
            "f" => frame = Some(value),
            "e" => event = Uuid::parse_str(&value).ok(),
            _ => {}
        }
    }
    Some(Entry {
        cursor,
        frame: frame?,
        event,
    })
}

impl Timeline {
    /// Everything of `user`'s timeline from `from_ms` (Redis time, ms) on,
    /// for a socket catching up after its instance lost the broker; `None`
    /// when Redis does not answer.
    pub async fn since(&self, user: &str, from_ms: u64) -> Option<Vec<Entry>> {
        let key = format!("{}{user}", self.prefix);
        let op = async {
            let mut conn = self.redis.get().await.ok()?;
            frames_from(&mut conn, &key, &format!("{from_ms}-0")).await
        };
        tokio::time::timeout(OP_TIMEOUT * 4, op)
            .await
            .ok()
            .flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_are_validated_and_ordered_numerically() {
        assert!(valid_cursor("1700000000000-0"));
        assert!(!valid_cursor("abc"));
        assert!(!valid_cursor("1-2-3"));
        assert!(!valid_cursor("-"));
        assert!(cursor_key("999-5") < cursor_key("1000-0"));
        assert!(cursor_key("1000-2") < cursor_key("1000-10"));
    }

    #[test]
    fn entries_read_their_frame_and_event_in_any_field_order() {
        let id = Uuid::now_v7();
        let fields = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let e = entry("1-0".into(), fields(&["e", &id.to_string(), "f", "{}"])).unwrap();
        assert_eq!((e.frame.as_str(), e.event), ("{}", Some(id)));
        let old = entry("1-1".into(), fields(&["f", "{\"a\":1}"])).unwrap();
        assert_eq!((old.frame.as_str(), old.event), ("{\"a\":1}", None));
        assert!(entry("1-2".into(), fields(&["e", &id.to_string()])).is_none());
    }
}
