//! The world around notify-svc in a test: the events other services would
//! publish, a local push service that checks VAPID and decrypts what it
//! receives with the subscription's private key, and the SMTP sink's
//! Maildir.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use broker::events::auth::UserRegistered;
use broker::events::chat::{
    ChatCreated, ChatSnapshot, Cursors, MessageCreated, MessageSnapshot, ProfileSnapshot,
    ReadMarked,
};
use broker::{Broker, Envelope, EventPayload, Publisher, Topology};
use data_encoding::BASE64URL_NOPAD;
use p256::ecdsa::signature::Verifier;
use p256::elliptic_curve::rand_core::OsRng;
use p256::elliptic_curve::sec1::ToEncodedPoint;
use serde_json::{json, Value};
use shared::metrics::Metrics;

use crate::helpers::{spawn_with, token_for, TestApp};

pub struct World {
    pub id: String,
    pub publisher: Publisher,
}

#[derive(Clone)]
pub struct Person {
    pub id: String,
    pub username: String,
    pub email: String,
    pub token: String,
}

impl World {
    pub async fn new(id: &str) -> Self {
        let amqp = std::env::var("TEST_AMQP_URL")
            .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into());
        let topology = Topology::new(format!("test-{id}.")).with_queues(
            broker::topology::QueueType::Classic,
            Some(Duration::from_secs(600)),
        );
        let broker = Broker::new(&amqp, topology, "notify-tests");
        Self {
            id: id.to_owned(),
            publisher: Publisher::new(broker, Metrics::new("notify-tests")),
        }
    }

    pub async fn app(&self) -> TestApp {
        let app = spawn_with(&self.id, json!({})).await;
        app.wait_ready().await;
        app
    }

    pub async fn publish<E: EventPayload>(&self, producer: &str, event: E) -> Envelope<E> {
        let envelope = Envelope::new(producer, None, event);
        self.publish_envelope(&envelope).await;
        envelope
    }

    pub async fn publish_envelope<E: EventPayload>(&self, envelope: &Envelope<E>) {
        for _ in 0..50 {
            if self.publisher.publish(envelope).await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("could not publish {}", E::TYPE);
    }

    /// A user, registered the way auth-svc announces one.
    pub async fn person(&self, name: &str) -> Person {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let email = format!("{name}-{}@example.com", &id[..10]);
        self.publish(
            "auth-svc",
            UserRegistered {
                user_id: id.clone(),
                username: name.to_owned(),
                display_name: format!("{name} display"),
                avatar_url: None,
                email: email.clone(),
                profile_version: 1,
                email_verified: true,
            },
        )
        .await;
        Person {
            token: token_for(&id),
            id,
            username: name.to_owned(),
            email,
        }
    }

    pub async fn group(&self, name: &str, members: &[&Person]) -> String {
        let id = uuid::Uuid::now_v7().simple().to_string();
        self.group_with_id(&id, name, members).await;
        id
    }

    /// Announces group `id` (a chat.created, published now).
    pub async fn group_with_id(&self, id: &str, name: &str, members: &[&Person]) {
        self.publish(
            "chat-svc",
            ChatCreated {
                chat: ChatSnapshot {
                    id: id.to_owned(),
                    name: Some(name.to_owned()),
                    member_ids: members.iter().map(|m| m.id.clone()).collect(),
                    admin_ids: vec![members[0].id.clone()],
                    is_group: true,
                    version: 1,
                },
                cursors: Cursors::new(),
            },
        )
        .await;
    }

    pub fn message(
        &self,
        chat: &str,
        from: &Person,
        members: &[&Person],
        content: &str,
    ) -> Envelope<MessageCreated> {
        let id = uuid::Uuid::now_v7().simple().to_string();
        Envelope::new(
            "chat-svc",
            None,
            MessageCreated {
                chat_id: chat.to_owned(),
                member_ids: members.iter().map(|m| m.id.clone()).collect(),
                message: MessageSnapshot {
                    id,
                    chat_id: chat.to_owned(),
                    sender_id: from.id.clone(),
                    sender: ProfileSnapshot {
                        id: from.id.clone(),
                        username: from.username.clone(),
                        display_name: format!("{} display", from.username),
                        avatar_url: None,
                    },
                    content: content.to_owned(),
                    client_msg_id: None,
                    created_at: chrono::Utc::now()
                        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                    edited_at: None,
                    deleted: false,
                },
                cursors: Cursors::new(),
            },
        )
    }

    pub async fn send(
        &self,
        chat: &str,
        from: &Person,
        members: &[&Person],
        content: &str,
    ) -> String {
        let envelope = self.message(chat, from, members, content);
        self.publish_envelope(&envelope).await;
        envelope.data.message.id.clone()
    }

    pub async fn read(&self, chat: &str, who: &Person, message_id: &str, members: &[&Person]) {
        self.publish(
            "chat-svc",
            ReadMarked {
                chat_id: chat.to_owned(),
                user_id: who.id.clone(),
                message_id: message_id.to_owned(),
                member_ids: members.iter().map(|m| m.id.clone()).collect(),
                cursors: Cursors::new(),
            },
        )
        .await;
    }
}

/// The value of the first metric line of `app` that starts with `prefix`
/// (`name{first_label="value"`), or 0.
pub async fn metric(app: &TestApp, prefix: &str) -> f64 {
    let text = app
        .client
        .get(format!("{}/metrics", app.address))
        .send()
        .await
        .expect("metrics answered")
        .text()
        .await
        .expect("metrics text");
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0)
}

/// The caller's feed.
pub async fn feed(app: &TestApp, who: &Person, query: &str) -> Vec<Value> {
    let r = app
        .client
        .get(app.url(&format!("/api/notifications{query}")))
        .bearer_auth(&who.token)
        .send()
        .await
        .expect("feed");
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.expect("json");
    body["notifications"].as_array().expect("list").clone()
}

/// The caller's feed once it has something (within 10 s).
pub async fn feed_soon(app: &TestApp, who: &Person) -> Option<Vec<Value>> {
    eventually(Duration::from_secs(10), || async {
        let f = feed(app, who, "").await;
        (!f.is_empty()).then_some(f)
    })
    .await
}

/// Polls `f` until it returns `Some` or `wait` passes.
pub async fn eventually<T, F, Fut>(wait: Duration, mut f: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        if let Some(v) = f().await {
            return Some(v);
        }
        if tokio::time::Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One push as the push service saw it, decrypted.
#[derive(Debug, Clone)]
pub struct Received {
    pub device: String,
    pub payload: Value,
    pub vapid_aud: String,
}

/// What the push service answers for a device: a fixed status, or a
/// status for the first `n` requests and then 201.
#[derive(Clone, Copy)]
pub enum Behaviour {
    Accept,
    Always(u16),
    FailFirst(u16, usize),
    /// Answers nothing for a minute (longer than any push timeout).
    Hang,
}

#[derive(Default)]
struct PushState {
    devices: HashMap<String, (p256::SecretKey, [u8; 16], Behaviour, usize)>,
    received: Vec<Received>,
    refused: Vec<String>,
}

/// A push service on 127.0.0.1 standing in for FCM / Mozilla autopush.
#[derive(Clone)]
pub struct PushService {
    pub base: String,
    state: Arc<Mutex<PushState>>,
}

fn verify_vapid(req: &HttpRequest, origin: &str) -> Result<String, String> {
    let header = req
        .headers()
        .get("authorization")
        .and_then(|h| h.to_str().ok())
        .ok_or("no Authorization")?;
    let rest = header.strip_prefix("vapid ").ok_or("not vapid")?;
    let mut t = None;
    let mut k = None;
    for part in rest.split(',') {
        let part = part.trim();
        if let Some(v) = part.strip_prefix("t=") {
            t = Some(v.to_owned());
        } else if let Some(v) = part.strip_prefix("k=") {
            k = Some(v.to_owned());
        }
    }
    let (t, k) = (t.ok_or("no t")?, k.ok_or("no k")?);
    let key = BASE64URL_NOPAD
        .decode(k.as_bytes())
        .map_err(|_| "k not base64url")?;
    let key = p256::ecdsa::VerifyingKey::from_sec1_bytes(&key).map_err(|_| "k not a P-256 key")?;
    let (signing_input, signature) = t.rsplit_once('.').ok_or("jwt shape")?;
    let signature = BASE64URL_NOPAD
        .decode(signature.as_bytes())
        .map_err(|_| "signature encoding")?;
    let signature =
        p256::ecdsa::Signature::from_slice(&signature).map_err(|_| "signature length")?;
    key.verify(signing_input.as_bytes(), &signature)
        .map_err(|_| "bad VAPID signature")?;
    let claims = signing_input.split('.').nth(1).ok_or("jwt shape")?;
    let claims: Value = serde_json::from_slice(
        &BASE64URL_NOPAD
            .decode(claims.as_bytes())
            .map_err(|_| "claims encoding")?,
    )
    .map_err(|_| "claims json")?;
    let aud = claims["aud"].as_str().ok_or("no aud")?.to_owned();
    if aud != origin {
        return Err(format!("aud {aud} is not {origin}"));
    }
    if claims["exp"].as_i64().unwrap_or(0) <= chrono::Utc::now().timestamp() {
        return Err("expired".into());
    }
    if !claims["sub"].as_str().unwrap_or("").starts_with("mailto:") {
        return Err("no sub".into());
    }
    Ok(aud)
}

async fn receive(
    req: HttpRequest,
    device: web::Path<String>,
    body: web::Bytes,
    service: web::Data<(Arc<Mutex<PushState>>, String)>,
) -> HttpResponse {
    let (state, origin) = service.get_ref();
    let aud = match verify_vapid(&req, origin) {
        Ok(aud) => aud,
        Err(why) => {
            state.lock().expect("state").refused.push(why);
            return HttpResponse::Unauthorized().finish();
        }
    };
    if req
        .headers()
        .get("content-encoding")
        .and_then(|h| h.to_str().ok())
        != Some("aes128gcm")
    {
        return HttpResponse::BadRequest().finish();
    }
    let hangs = matches!(
        state.lock().expect("state").devices.get(device.as_str()),
        Some((_, _, Behaviour::Hang, _))
    );
    if hangs {
        tokio::time::sleep(std::time::Duration::from_secs(60)).await;
        return HttpResponse::ServiceUnavailable().finish();
    }
    let mut state = state.lock().expect("state");
    let Some((secret, auth, behaviour, seen)) = state.devices.get_mut(device.as_str()) else {
        return HttpResponse::NotFound().finish();
    };
    *seen += 1;
    let status = match *behaviour {
        Behaviour::Accept => 201,
        Behaviour::Always(s) => s,
        Behaviour::FailFirst(s, n) if *seen <= n => s,
        Behaviour::FailFirst(..) | Behaviour::Hang => 201,
    };
    if status != 201 {
        return HttpResponse::build(actix_web::http::StatusCode::from_u16(status).expect("status"))
            .finish();
    }
    let auth = web_push_native::Auth::clone_from_slice(auth);
    let plain = web_push_native::decrypt(body.to_vec(), secret, &auth).expect("decrypts");
    let payload: Value = serde_json::from_slice(&plain).expect("JSON payload");
    state.received.push(Received {
        device: device.into_inner(),
        payload,
        vapid_aud: aud,
    });
    HttpResponse::Created().finish()
}

impl PushService {
    pub async fn start() -> Self {
        let state = Arc::new(Mutex::new(PushState::default()));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let origin = format!("http://127.0.0.1:{port}");
        let data = web::Data::new((state.clone(), origin.clone()));
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .route("/push/{device}", web::post().to(receive))
        })
        .workers(1)
        .listen(listener)
        .expect("listen")
        .run();
        tokio::spawn(server);
        Self {
            base: origin,
            state,
        }
    }

    /// A browser subscription: its endpoint and keys, as the browser would
    /// post them.
    pub fn device(&self, name: &str, behaviour: Behaviour) -> Value {
        let secret = p256::SecretKey::random(&mut OsRng);
        let mut auth = [0u8; 16];
        auth.copy_from_slice(&uuid::Uuid::new_v4().as_bytes()[..]);
        let p256dh = BASE64URL_NOPAD.encode(secret.public_key().to_encoded_point(false).as_bytes());
        self.state
            .lock()
            .expect("state")
            .devices
            .insert(name.to_owned(), (secret, auth, behaviour, 0));
        json!({
            "endpoint": format!("{}/push/{name}", self.base),
            "keys": {"p256dh": p256dh, "auth": BASE64URL_NOPAD.encode(&auth)},
        })
    }

    pub fn received(&self, device: &str) -> Vec<Received> {
        self.state
            .lock()
            .expect("state")
            .received
            .iter()
            .filter(|r| r.device == device)
            .cloned()
            .collect()
    }

    pub fn attempts(&self, device: &str) -> usize {
        self.state
            .lock()
            .expect("state")
            .devices
            .get(device)
            .map_or(0, |d| d.3)
    }

    pub fn refused(&self) -> Vec<String> {
        self.state.lock().expect("state").refused.clone()
    }
}

pub async fn subscribe(app: &TestApp, who: &Person, subscription: &Value) -> reqwest::Response {
    app.client
        .post(app.url("/api/notifications/push-subscriptions"))
        .bearer_auth(&who.token)
        .json(subscription)
        .send()
        .await
        .expect("subscribe")
}

/// Mails the SMTP sink stored for `address` (raw RFC 5322 text).
pub fn mails_to(address: &str) -> Vec<String> {
    let dir = std::env::var("TEST_MAILDIR")
        .unwrap_or_else(|_| format!("{}/../.dev/mail", env!("CARGO_MANIFEST_DIR")));
    let mut found = Vec::new();
    for sub in ["new", "cur"] {
        let Ok(entries) = std::fs::read_dir(format!("{dir}/{sub}")) else {
            continue;
        };
        for entry in entries.flatten() {
            if let Ok(text) = std::fs::read_to_string(entry.path()) {
                let to_line = text
                    .lines()
                    .find(|l| l.to_ascii_lowercase().starts_with("to:"))
                    .unwrap_or("");
                if to_line.contains(address) {
                    found.push(text);
                }
            }
        }
    }
    found
}

pub fn subject(mail: &str) -> String {
    mail.lines()
        .find(|l| l.starts_with("Subject:"))
        .unwrap_or("")
        .trim_start_matches("Subject:")
        .trim()
        .to_owned()
}

/// The HTML part of a raw mail, quoted-printable decoded.
pub fn html_part(raw: &str) -> String {
    let start = raw.find("Content-Type: text/html").expect("an HTML part");
    let part = &raw[start..];
    let body_start = part.find("\n\n").map_or(0, |i| i + 2);
    let body = &part[body_start..];
    let body = body.split("\n--").next().unwrap_or(body);
    let joined = body.replace("=\r\n", "").replace("=\n", "");
    let mut out = String::new();
    let mut chars = joined.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '=' {
            let hex: String = chars.by_ref().take(2).collect();
            if let Ok(b) = u8::from_str_radix(&hex, 16) {
                out.push(char::from(b));
                continue;
            }
            out.push('=');
            out.push_str(&hex);
        } else {
            out.push(c);
        }
    }
    out
}
