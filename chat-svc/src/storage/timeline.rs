//! Per-user timelines in Redis streams: every durable event a user receives
//! is appended to `timeline:<user>` (at least the last 1,000 are kept, and a
//! day of inactivity expires the stream); the stream id is the event's
//! resume cursor for that user. Appending is pipelined across all members
//! in one round trip. Without Redis, events carry no cursor and a resume
//! gets `resync`.

use std::time::Duration;

use broker::events::chat::Cursors;
use shared::redis_link::Redis;

const KEEP: usize = 1000;
const EXPIRE_SECS: i64 = 24 * 3600;
const OP_TIMEOUT: Duration = Duration::from_millis(500);

#[derive(Clone)]
pub struct Timeline {
    redis: Redis,
    prefix: String,
}

/// What a resume finds.
pub enum Replay {
    /// Frames after the cursor, in order, with their cursors.
    Frames(Vec<(String, String)>),
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

    /// Appends `frame` (a JSON object without `cursor`) for every user, in
    /// one round trip with whatever `pipe` already holds (commands whose
    /// replies are ignored). `None` when Redis did not answer in time: the
    /// events then go out without cursors, and the caller must assume
    /// `pipe`'s commands did not run (they may have).
    pub async fn append(
        &self,
        mut pipe: redis::Pipeline,
        users: &[String],
        frame: &str,
    ) -> Option<Cursors> {
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
                    .arg(frame);
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

/// `(cursor, frame)` of the entries of `key` from `start` (an XRANGE bound)
/// on, at most twice what a timeline keeps.
async fn frames_from(
    conn: &mut redis::aio::ConnectionManager,
    key: &str,
    start: &str,
) -> Option<Vec<(String, String)>> {
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
            .filter_map(|(id, fields)| fields.get(1).cloned().map(|f| (id, f)))
            .collect(),
    )
}

impl Timeline {
    /// Everything of `user`'s timeline from `from_ms` (Redis time, ms) on,
    /// for a socket catching up after its instance lost the broker; `None`
    /// when Redis does not answer.
    pub async fn since(&self, user: &str, from_ms: u64) -> Option<Vec<(String, String)>> {
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
}
