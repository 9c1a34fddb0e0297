//! One WebSocket connection (protocol in docs/websocket.md): authentication
//! by header or first frame, then client frames in, events out. Limits:
//! 64 KiB frames (1009 beyond), a per-connection frame rate (a client that
//! keeps flooding past it is closed, 1008), at most 16 sockets per user
//! (429 before the upgrade, 4029 after a first-frame `auth`), the access
//! token's expiry (4001 unless a fresh `auth` frame moved it), one `resume`
//! per socket. A client that stops reading is closed (1008) within
//! [`PONG_TIMEOUT`]: a bounded outbound queue, a deadline on every write
//! and a ping that must be answered; malformed frames get an `error` frame
//! and the socket stays open.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use actix_ws::{
    AggregatedMessage, AggregatedMessageStream, CloseCode, CloseReason, ProtocolError, Session,
};
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::json;
use shared::auth::{bearer_token, Claims, TokenVerifier};
use shared::ApiError;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::hub::{Hub, Outbound, OUTBOUND_QUEUE};
use super::presence::PresenceTracker;
use super::routes::Routes;
use super::slots::{Admission, MAX_SOCKETS_PER_USER};
use crate::domain::service::ChatService;
use crate::events::frames::{cursor_of, with_cursor};
use crate::storage::timeline::{cursor_key, Entry, Replay, Timeline};
use shared::revocations::Revocations;

pub const MAX_FRAME: usize = 64 * 1024;
const AUTH_TIMEOUT: Duration = Duration::from_secs(10);
const PING_EVERY: Duration = Duration::from_secs(10);
/// A socket whose last pong is older than this has stopped reading (a
/// client answers a ping only once it has read everything queued before
/// it) and is closed. A reading client answers every [`PING_EVERY`], so it
/// keeps a margin of 15 s; one that stops reading is closed within 25 s.
pub const PONG_TIMEOUT: Duration = Duration::from_secs(25);
/// Longest a single write may wait for room towards the client. Writes
/// also never wait past the pong deadline, so a stuck write cannot keep a
/// dead socket open longer than [`PONG_TIMEOUT`].
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// A close frame that cannot be queued within this is given up: the
/// connection is dropped without it.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);
/// `Retry-After` of the 429 for a user's 17th socket.
const SOCKETS_RETRY_AFTER_SECS: u64 = 5;
/// Live frames wait this long after `ready` for a `resume`, so a replay
/// never arrives after newer live frames.
const RESUME_WINDOW: Duration = Duration::from_millis(1000);
const FRAMES_PER_SEC: f64 = 10.0;
const FRAME_BURST: f64 = 30.0;
/// Frames refused in a row (over the rate) before a flooding client is
/// closed (1008). Only the first refusal of a run is answered, so a flood
/// is never amplified into as many error frames.
const FLOOD_CLOSE_AFTER: u32 = 100;

/// The close codes this server sends (docs/websocket.md).
mod close_code {
    pub const NORMAL: u16 = 1000;
    pub const GOING_AWAY: u16 = 1001;
    pub const PROTOCOL: u16 = 1002;
    /// Policy: no or bad authentication, revoked session, flooding, too slow.
    pub const POLICY: u16 = 1008;
    pub const TOO_BIG: u16 = 1009;
    /// The access token expired and no fresh `auth` frame came before.
    pub const TOKEN_EXPIRED: u16 = 4001;
    /// The user already had 16 open sockets (first-frame `auth` only: a
    /// header-authenticated upgrade gets a 429 instead).
    pub const TOO_MANY_SOCKETS: u16 = 4029;
}
use close_code::*;

/// A socket's place in its user's socket count; given back when dropped,
/// however the connection ends. Also when it was admitted while Redis was
/// down: the heartbeat has counted it there since.
struct Slot {
    presence: PresenceTracker,
    user: String,
    id: u64,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let (presence, user, id) = (self.presence.clone(), self.user.clone(), self.id);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move { presence.release_slot(&user, id).await });
        }
    }
}

impl Realtime {
    /// A slot for one more socket of `user`, or `None` when they have
    /// [`MAX_SOCKETS_PER_USER`] open (across instances; on this instance
    /// only while Redis does not answer).
    async fn admit(&self, user: &str) -> Option<Slot> {
        let id = self.hub.next_id();
        match self.presence.slots().take(user, id).await {
            Admission::Full => return None,
            Admission::LocalOnly if self.hub.count(user) >= MAX_SOCKETS_PER_USER => return None,
            Admission::Counted | Admission::LocalOnly => {}
        }
        Some(Slot {
            presence: self.presence.clone(),
            user: user.to_owned(),
            id,
        })
    }
}

/// When a token that expires at `exp` (seconds since the epoch) stops
/// being valid, on this process's clock.
fn expiry_of(exp: i64) -> tokio::time::Instant {
    let left_ms = exp
        .saturating_mul(1000)
        .saturating_sub(chrono::Utc::now().timestamp_millis());
    tokio::time::Instant::now() + Duration::from_millis(u64::try_from(left_ms).unwrap_or(0))
}

/// What the WebSocket handler needs.
#[derive(Clone)]
pub struct Realtime {
    pub service: ChatService,
    pub hub: Arc<Hub>,
    pub routes: Arc<Routes>,
    pub timeline: Timeline,
    pub presence: PresenceTracker,
    pub revocations: Revocations,
    pub allowed_origins: Vec<String>,
    pub shutdown: CancellationToken,
}

#[derive(Deserialize)]
#[serde(tag = "type")]
enum ClientFrame {
    #[serde(rename = "auth")]
    Auth { token: String },
    #[serde(rename = "message.send", rename_all = "camelCase")]
    Send {
        chat_id: String,
        content: String,
        client_msg_id: Option<String>,
    },
    #[serde(rename = "typing", rename_all = "camelCase")]
    Typing { chat_id: String, state: String },
    #[serde(rename = "read", rename_all = "camelCase")]
    Read { chat_id: String, message_id: String },
    #[serde(rename = "ping")]
    Ping,
    #[serde(rename = "resume")]
    Resume { cursor: String },
}

/// `GET /ws`: checks the Origin and an optional bearer token, then upgrades.
pub async fn upgrade(
    req: HttpRequest,
    body: web::Payload,
    rt: web::Data<Realtime>,
    verifier: web::Data<TokenVerifier>,
) -> Result<HttpResponse, ApiError> {
    if let Some(origin) = req.headers().get(header::ORIGIN) {
        let allowed = origin
            .to_str()
            .is_ok_and(|o| rt.allowed_origins.iter().any(|a| a == o));
        if !allowed {
            return Err(ApiError::Forbidden);
        }
    }
    let pre_auth = match bearer_token(&req) {
        Some(token) => {
            let claims = verifier.verify_access(token).await?;
            let slot = rt.admit(&claims.sub).await.ok_or(ApiError::RateLimited {
                retry_after_secs: SOCKETS_RETRY_AFTER_SECS,
            })?;
            Some((claims, slot))
        }
        None => None,
    };
    let (response, session, stream) = actix_ws::handle(&req, body)
        .map_err(|_| ApiError::BadRequest("expected a WebSocket upgrade".into()))?;
    let stream = stream
        .max_frame_size(MAX_FRAME)
        .aggregate_continuations()
        .max_continuation_size(MAX_FRAME);
    let rt = rt.get_ref().clone();
    let verifier = verifier.get_ref().clone();
    actix_web::rt::spawn(async move {
        Connection::run(rt, verifier, session, stream, pre_auth).await;
    });
    Ok(response)
}

/// Sends a close frame if it can be queued soon; a client too slow to take
/// it is dropped without one.
async fn close(session: Session, code: u16, why: &str) {
    let reason = CloseReason {
        code: CloseCode::from(code),
        description: Some(why.to_owned()),
    };
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, session.close(Some(reason))).await;
}

fn error_frame(code: &str, message: &str, client_msg_id: Option<&str>) -> String {
    let mut f = json!({"type": "error", "code": code, "message": message});
    if let Some(id) = client_msg_id {
        f["clientMsgId"] = id.into();
    }
    f.to_string()
}

/// The `code` of the `error` frame answering a refused frame (a block is
/// `Forbidden`: "forbidden"). Exhaustive, so a new variant needs a code.
fn api_error_code(e: &ApiError) -> &'static str {
    match e {
        ApiError::NotFound => "not_found",
        ApiError::Forbidden => "forbidden",
        ApiError::Unauthorized => "unauthorized",
        ApiError::Validation(_)
        | ApiError::BadRequest(_)
        | ApiError::MethodNotAllowed
        | ApiError::PayloadTooLarge
        | ApiError::UnsupportedMediaType => "invalid",
        ApiError::RateLimited { .. } => "rate_limited",
        ApiError::Conflict(_) => "conflict",
        ApiError::Unavailable(_) => "unavailable",
        ApiError::Unexpected(_) => "internal",
    }
}

fn api_error_message(e: &ApiError) -> String {
    match e {
        ApiError::Validation(fields) => fields
            .iter()
            .map(|f| format!("{}: {}", f.field, f.message))
            .collect::<Vec<_>>()
            .join("; "),
        ApiError::Unexpected(_) => "unexpected error".into(),
        other => other.to_string(),
    }
}

struct Connection {
    rt: Realtime,
    verifier: TokenVerifier,
    session: Session,
    /// This socket's id in the hub and in the user's socket count.
    id: u64,
    user: String,
    session_id: String,
    /// When the access token that authenticated this socket (or the last
    /// accepted `auth` frame) expires: the socket closes then (4001).
    token_expires: tokio::time::Instant,
    /// The last pong (or the connection's start): see [`PONG_TIMEOUT`].
    last_pong: Instant,
    /// Cancelled by the hub when this socket's outbound queue overflows.
    too_slow: CancellationToken,
    /// A `resume` has been handled: a second one is refused, so a client
    /// cannot make the server replay its timeline over and over.
    resumed: bool,
    /// Token bucket for client frames.
    tokens: f64,
    /// Frames refused in a row by the rate limit.
    refused: u32,
    refilled: Instant,
    /// Live frames (and their events) held during the resume window.
    held: Option<VecDeque<(Uuid, Arc<str>)>>,
    held_until: Instant,
    /// After a replay: live frames at or before this cursor were replayed.
    replayed_up_to: Option<(u64, u64)>,
    /// Events recently sent, so that neither a catch-up nor a late event
    /// appended again under a new cursor repeats a frame.
    sent: Sent,
}

/// The last [`SENT_REMEMBERED`] events sent on a socket, by event id (by
/// cursor for timeline entries that do not name their event).
#[derive(Default)]
struct Sent {
    order: VecDeque<u128>,
    set: std::collections::HashSet<u128>,
}

/// Enough for the catch-up window of a busy socket, small enough that a
/// socket stays cheap (16 bytes an event, twice).
const SENT_REMEMBERED: usize = 512;

/// What [`Sent`] knows a timeline entry by.
fn sent_key(entry: &Entry) -> u128 {
    entry.event.map_or_else(
        || {
            let (ms, seq) = cursor_key(&entry.cursor);
            (u128::from(ms) << 64) | u128::from(seq)
        },
        |id| id.as_u128(),
    )
}

impl Sent {
    fn contains(&self, key: u128) -> bool {
        self.set.contains(&key)
    }

    fn insert(&mut self, key: u128) {
        if self.set.insert(key) {
            self.order.push_back(key);
            if self.order.len() > SENT_REMEMBERED {
                if let Some(old) = self.order.pop_front() {
                    self.set.remove(&old);
                }
            }
        }
    }
}

enum Flow {
    Continue,
    Close(u16, &'static str),
}

impl Connection {
    async fn authenticate(
        verifier: &TokenVerifier,
        session: &mut Session,
        stream: &mut AggregatedMessageStream,
    ) -> Option<Claims> {
        let deadline = tokio::time::sleep(AUTH_TIMEOUT);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                _ = &mut deadline => return None,
                msg = stream.next() => match msg {
                    Some(Ok(AggregatedMessage::Text(text))) => {
                        if let Ok(ClientFrame::Auth { token }) = serde_json::from_str::<ClientFrame>(&text) {
                            return verifier.verify_access(&token).await.ok();
                        }
                        let _ = session.text(error_frame("unauthorized", "send {\"type\":\"auth\",\"token\":...} first", None)).await;
                    }
                    Some(Ok(AggregatedMessage::Ping(b))) => { let _ = session.pong(&b).await; }
                    Some(Ok(_)) => {}
                    _ => return None,
                },
            }
        }
    }

    async fn run(
        rt: Realtime,
        verifier: TokenVerifier,
        mut session: Session,
        mut stream: AggregatedMessageStream,
        pre_auth: Option<(Claims, Slot)>,
    ) {
        let (claims, slot) = match pre_auth {
            Some(admitted) => admitted,
            None => {
                let Some(claims) = Self::authenticate(&verifier, &mut session, &mut stream).await
                else {
                    close(session, POLICY, "authentication required").await;
                    return;
                };
                let Some(slot) = rt.admit(&claims.sub).await else {
                    Self::refuse_too_many(session).await;
                    return;
                };
                (claims, slot)
            }
        };
        let user = claims.sub.clone();
        let session_id = claims.sid.clone().unwrap_or_default();
        let (tx, mut rx) = mpsc::channel(OUTBOUND_QUEUE);
        let Some((first, too_slow)) =
            rt.hub
                .register(&user, &session_id, slot.id, tx, MAX_SOCKETS_PER_USER)
        else {
            Self::refuse_too_many(session).await;
            return;
        };
        // Before `ready`: what is published from then on comes here.
        rt.routes.join(&user).await;
        if first {
            let (presence, hub, u) = (rt.presence.clone(), rt.hub.clone(), user.clone());
            actix_web::rt::spawn(async move { presence.sync(&u, &hub).await });
        }
        let ready = json!({"type": "ready", "userId": user, "sessionId": session_id}).to_string();
        let mut conn = Connection {
            rt: rt.clone(),
            verifier,
            session: session.clone(),
            id: slot.id,
            user: user.clone(),
            session_id,
            token_expires: expiry_of(claims.exp),
            last_pong: Instant::now(),
            too_slow,
            resumed: false,
            tokens: FRAME_BURST,
            refused: 0,
            refilled: Instant::now(),
            held: Some(VecDeque::new()),
            held_until: Instant::now() + RESUME_WINDOW,
            replayed_up_to: None,
            sent: Sent::default(),
        };
        let outcome = match conn.send_text(&ready).await {
            Flow::Continue => conn.serve(&mut rx, &mut stream).await,
            closed => closed,
        };
        if let Flow::Close(code, why) = &outcome {
            if *code == POLICY && why.starts_with("too slow") {
                tracing::info!(user.id = %user, reason = why, "closed a socket that stopped reading");
            }
        }
        if rt.hub.unregister(&user, slot.id) {
            rt.routes.leave(user.clone());
            let (presence, hub) = (rt.presence.clone(), rt.hub.clone());
            actix_web::rt::spawn(async move { presence.sync(&user, &hub).await });
        }
        drop(slot);
        drop(conn);
        if let Flow::Close(code, why) = outcome {
            close(session, code, why).await;
        }
    }

    /// The first-frame path found the user's sockets all taken: the
    /// upgrade has already happened, so an error frame and a close code
    /// say what the 429 says to a header-authenticated upgrade.
    async fn refuse_too_many(mut session: Session) {
        let frame = error_frame(
            "too_many_sockets",
            "at most 16 open sockets per user; close one first",
            None,
        );
        let _ = tokio::time::timeout(WRITE_TIMEOUT, session.text(frame)).await;
        close(session, TOO_MANY_SOCKETS, "too many sockets").await;
    }

    async fn serve(
        &mut self,
        rx: &mut mpsc::Receiver<Outbound>,
        stream: &mut AggregatedMessageStream,
    ) -> Flow {
        let mut heartbeat = tokio::time::interval(PING_EVERY);
        heartbeat.tick().await;
        let shutdown = self.rt.shutdown.clone();
        let too_slow = self.too_slow.clone();
        loop {
            let window = tokio::time::sleep_until(tokio::time::Instant::from_std(self.held_until));
            let expired = tokio::time::sleep_until(self.token_expires);
            let unanswered = tokio::time::sleep_until(self.pong_deadline());
            let flow = tokio::select! {
                _ = shutdown.cancelled() => Flow::Close(GOING_AWAY, "server going away"),
                _ = too_slow.cancelled() => Flow::Close(POLICY, "too slow: outbound queue full"),
                _ = expired => Flow::Close(TOKEN_EXPIRED, "token expired"),
                _ = unanswered => Flow::Close(POLICY, "too slow: ping not answered"),
                _ = window, if self.held.is_some() => self.release_held(None).await,
                out = rx.recv() => match out {
                    Some(Outbound::Frame(event, f)) => self.send_live(event, f).await,
                    Some(Outbound::Close(code, why)) => Flow::Close(code, why),
                    Some(Outbound::CatchUp(from_ms)) => self.catch_up(from_ms).await,
                    None => Flow::Close(POLICY, "too slow: outbound queue full"),
                },
                msg = stream.next() => self.on_message(msg).await,
                _ = heartbeat.tick() => {
                    if self.rt.revocations.contains(&self.session_id) {
                        Flow::Close(POLICY, "session revoked")
                    } else {
                        let mut session = self.session.clone();
                        self.written(session.ping(b"hb")).await
                    }
                }
            };
            if let Flow::Close(..) = flow {
                return flow;
            }
        }
    }

    fn pong_deadline(&self) -> tokio::time::Instant {
        tokio::time::Instant::from_std(self.last_pong + PONG_TIMEOUT)
    }

    /// Awaits a write towards the client within its deadline: a client
    /// that does not take it in time is too slow and is closed.
    async fn written(
        &self,
        write: impl std::future::Future<Output = Result<(), actix_ws::Closed>>,
    ) -> Flow {
        let deadline = (tokio::time::Instant::now() + WRITE_TIMEOUT).min(self.pong_deadline());
        match tokio::time::timeout_at(deadline, write).await {
            Ok(Ok(())) => Flow::Continue,
            Ok(Err(_)) => Flow::Close(NORMAL, "closed"),
            Err(_) => Flow::Close(POLICY, "too slow: write timed out"),
        }
    }

    async fn send_text(&mut self, text: &str) -> Flow {
        let mut session = self.session.clone();
        let flow = self.written(session.text(text.to_owned())).await;
        if let Flow::Continue = flow {
            self.rt.hub.metrics().ws_frames_out.inc();
        }
        flow
    }

    async fn send_live(&mut self, event: Uuid, frame: Arc<str>) -> Flow {
        if let Some(held) = self.held.as_mut() {
            held.push_back((event, frame));
            if held.len() >= OUTBOUND_QUEUE {
                return Flow::Close(POLICY, "too slow: outbound queue full");
            }
            return Flow::Continue;
        }
        if let Some(cursor) = cursor_of(&frame).map(cursor_key) {
            if self.replayed_up_to.is_some_and(|limit| cursor <= limit)
                || self.sent.contains(event.as_u128())
            {
                return Flow::Continue;
            }
            self.sent.insert(event.as_u128());
        }
        self.send_text(&frame).await
    }

    /// Sends a timeline entry unless this socket had its event already.
    async fn send_entry(&mut self, entry: &Entry) -> Flow {
        let key = sent_key(entry);
        if self.sent.contains(key) {
            return Flow::Continue;
        }
        self.sent.insert(key);
        self.send_text(&with_cursor(&entry.frame, &entry.cursor))
            .await
    }

    /// Sends what the user's timeline holds from `from_ms` on that this
    /// socket has not had (its instance lost the broker meanwhile). A
    /// socket still in its resume window gets it from the resume instead.
    async fn catch_up(&mut self, from_ms: u64) -> Flow {
        if self.held.is_some() {
            return Flow::Continue;
        }
        let Some(frames) = self.rt.timeline.since(&self.user, from_ms).await else {
            return Flow::Continue;
        };
        for entry in frames {
            if let Flow::Close(c, w) = self.send_entry(&entry).await {
                return Flow::Close(c, w);
            }
        }
        Flow::Continue
    }

    /// Ends the resume window: replays after `cursor` (if any), then the
    /// held live frames minus what the replay already covered.
    async fn release_held(&mut self, cursor: Option<String>) -> Flow {
        let held = self.held.take().unwrap_or_default();
        if let Some(cursor) = cursor {
            match self.rt.timeline.after(&self.user, &cursor).await {
                Replay::Resync => {
                    if let Flow::Close(c, w) =
                        self.send_text(&json!({"type": "resync"}).to_string()).await
                    {
                        return Flow::Close(c, w);
                    }
                }
                Replay::Frames(frames) => {
                    for entry in frames {
                        if let Flow::Close(c, w) = self.send_entry(&entry).await {
                            return Flow::Close(c, w);
                        }
                        self.replayed_up_to = Some(cursor_key(&entry.cursor));
                    }
                }
            }
        }
        for (event, frame) in held {
            if let Flow::Close(c, w) = self.send_live(event, frame).await {
                return Flow::Close(c, w);
            }
        }
        Flow::Continue
    }

    /// A fresh access token for the same user moves the expiry deadline to
    /// its own (and the socket to its session, which must be unrevoked:
    /// `verify_access` checks). Anything else is refused and changes
    /// nothing.
    async fn reauthenticate(&mut self, token: &str) -> Flow {
        let refusal = match self.verifier.verify_access(token).await {
            Ok(claims) if claims.sub == self.user => {
                let session_id = claims.sid.unwrap_or_default();
                if session_id != self.session_id {
                    self.rt.hub.rebind(&self.user, self.id, &session_id);
                    self.session_id = session_id;
                }
                self.token_expires = expiry_of(claims.exp);
                return Flow::Continue;
            }
            Ok(_) => "the token is for another user",
            Err(_) => "invalid, expired or revoked token",
        };
        self.send_text(&error_frame("unauthorized", refusal, None))
            .await
    }

    fn drop_counted(&self, reason: &str) {
        self.rt
            .hub
            .metrics()
            .ws_drops
            .with_label_values(&[reason])
            .inc();
    }

    fn take_token(&mut self) -> bool {
        let now = Instant::now();
        let elapsed = now.duration_since(self.refilled).as_secs_f64();
        self.refilled = now;
        self.tokens = (self.tokens + elapsed * FRAMES_PER_SEC).min(FRAME_BURST);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    async fn on_message(&mut self, msg: Option<Result<AggregatedMessage, ProtocolError>>) -> Flow {
        match msg {
            None => Flow::Close(NORMAL, "closed"),
            Some(Err(ProtocolError::Overflow)) => {
                self.drop_counted("oversized");
                Flow::Close(TOO_BIG, "frame too large")
            }
            Some(Err(_)) => Flow::Close(PROTOCOL, "protocol error"),
            Some(Ok(AggregatedMessage::Close(_))) => Flow::Close(NORMAL, "bye"),
            Some(Ok(AggregatedMessage::Ping(b))) => {
                let mut session = self.session.clone();
                self.written(session.pong(&b)).await
            }
            Some(Ok(AggregatedMessage::Pong(_))) => {
                // Only a pong proves the client reads: any other frame shows
                // it writes, which a client that stopped reading still can.
                self.last_pong = Instant::now();
                Flow::Continue
            }
            Some(Ok(AggregatedMessage::Binary(_))) => {
                self.send_text(&error_frame("invalid", "frames are JSON text", None))
                    .await
            }
            Some(Ok(AggregatedMessage::Text(text))) => {
                self.rt.hub.metrics().ws_frames_in.inc();
                if self.rt.revocations.contains(&self.session_id) {
                    return Flow::Close(POLICY, "session revoked");
                }
                if !self.take_token() {
                    self.drop_counted("rate_limited");
                    self.rt.hub.metrics().refused("ws_frames");
                    self.refused += 1;
                    if self.refused > FLOOD_CLOSE_AFTER {
                        return Flow::Close(POLICY, "too many frames");
                    }
                    if self.refused > 1 {
                        return Flow::Continue;
                    }
                    return self
                        .send_text(&error_frame(
                            "rate_limited",
                            "too many frames; slow down",
                            None,
                        ))
                        .await;
                }
                self.refused = 0;
                match serde_json::from_str::<ClientFrame>(&text) {
                    Ok(frame) => self.on_frame(frame).await,
                    Err(_) => {
                        self.send_text(&error_frame("invalid", "malformed or unknown frame", None))
                            .await
                    }
                }
            }
        }
    }

    async fn on_frame(&mut self, frame: ClientFrame) -> Flow {
        if let ClientFrame::Resume { cursor } = frame {
            if self.resumed {
                return self
                    .send_text(&error_frame(
                        "invalid",
                        "resume is accepted once per socket",
                        None,
                    ))
                    .await;
            }
            self.resumed = true;
            if self.held.is_none() && self.replayed_up_to.is_none() {
                // Too late for a gap-free replay: the client must refetch.
                self.held = Some(VecDeque::new());
                let _ = self.send_text(&json!({"type": "resync"}).to_string()).await;
                return self.release_held(None).await;
            }
            return self.release_held(Some(cursor)).await;
        }
        // Any other frame ends the resume window.
        if self.held.is_some() {
            if let Flow::Close(c, w) = self.release_held(None).await {
                return Flow::Close(c, w);
            }
        }
        let rid = uuid::Uuid::now_v7().to_string();
        let service = self.rt.service.clone();
        match frame {
            ClientFrame::Ping => self.send_text(r#"{"type":"pong"}"#).await,
            ClientFrame::Auth { token } => self.reauthenticate(&token).await,
            ClientFrame::Send {
                chat_id,
                content,
                client_msg_id,
            } => {
                match service
                    .send(
                        &self.user,
                        &chat_id,
                        &content,
                        client_msg_id.as_deref(),
                        &rid,
                    )
                    .await
                {
                    Ok((message, _)) => {
                        let ack = json!({"type": "ack", "clientMsgId": client_msg_id, "message": message});
                        self.send_text(&ack.to_string()).await
                    }
                    Err(e) => {
                        self.send_text(&error_frame(
                            api_error_code(&e),
                            &api_error_message(&e),
                            client_msg_id.as_deref(),
                        ))
                        .await
                    }
                }
            }
            ClientFrame::Typing { chat_id, state } => {
                match service.typing(&self.user, &chat_id, &state).await {
                    Ok(()) => Flow::Continue,
                    Err(e) => {
                        self.send_text(&error_frame(
                            api_error_code(&e),
                            &api_error_message(&e),
                            None,
                        ))
                        .await
                    }
                }
            }
            ClientFrame::Read {
                chat_id,
                message_id,
            } => match service
                .mark_read(&self.user, &chat_id, &message_id, &rid)
                .await
            {
                Ok(()) => Flow::Continue,
                Err(e) => {
                    self.send_text(&error_frame(
                        api_error_code(&e),
                        &api_error_message(&e),
                        None,
                    ))
                    .await
                }
            },
            ClientFrame::Resume { .. } => Flow::Continue,
        }
    }
}
