//! Starts real chat-svc instances on port 0 against the real servers, with a
//! fresh database, Redis prefix and RabbitMQ name prefix per test (shared by
//! the instances of one test, as in production). Users come into being the
//! way they do in production: a `user.registered` event on `auth.events`.

use std::time::Duration;

use broker::events::auth::{SessionRevoked, UserRegistered, UserUpdated};
use broker::{Broker, Envelope, EventPayload, Publisher, Topology};
use chat_svc::config::Config;
use chat_svc::startup::Application;
use futures_util::{SinkExt, StreamExt};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use shared::auth::{Claims, TokenType};
use shared::metrics::Metrics;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

fn env_or(key: &str, default: &str) -> String {
    std::env::var(key).unwrap_or_else(|_| default.to_owned())
}

fn keys_dir() -> String {
    std::env::var("TEST_KEYS_DIR")
        .unwrap_or_else(|_| format!("{}/../.dev/keys", env!("CARGO_MANIFEST_DIR")))
}

pub struct Instance {
    pub address: String,
    pub shutdown: CancellationToken,
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

pub struct Process {
    pub child: tokio::process::Child,
    pub address: String,
}

/// One test's system: its instances and the auth events it can publish.
pub struct TestChat {
    pub instances: Vec<Instance>,
    pub client: reqwest::Client,
    /// The settings every instance of this test shares.
    settings: Value,
    publisher: Publisher,
    key: EncodingKey,
}

pub struct User {
    pub id: String,
    pub username: String,
    pub session: String,
    pub token: String,
}

pub async fn spawn(instances: usize) -> TestChat {
    spawn_with(instances, json!({})).await
}

/// As [`spawn`], with settings of the test's own on top.
pub async fn spawn_with(instances: usize, overrides: Value) -> TestChat {
    let id = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
    let keys = keys_dir();
    let amqp = env_or("TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2f");
    let mut started = Vec::new();
    let mut shared = Value::Null;
    for n in 0..instances {
        let mut settings = json!({
            "http_port": 0,
            "mongodb_uri": env_or("TEST_MONGODB_URI", "mongodb://127.0.0.1:27017"),
            "mongodb_database": format!("chat_test_{id}"),
            "redis_url": env_or("TEST_REDIS_URL", "redis://127.0.0.1:6379"),
            "redis_prefix": format!("test-{id}:"),
            "amqp_url": amqp,
            "amqp_prefix": format!("test-{id}."),
            "instance_id": format!("chat-test-{id}-{n}"),
            "jwt_public_key_file": format!("{keys}/jwt-public.pem"),
            "shutdown_timeout_secs": 2,
            "amqp_queue_type": "classic",
            "amqp_queue_expires_secs": 600,
        });
        if let (Some(settings), Some(extra)) = (settings.as_object_mut(), overrides.as_object()) {
            settings.extend(extra.clone());
        }
        shared = settings.clone();
        let config = Config::load_with(settings).expect("test config is valid");
        let app = Application::build(config).await.expect("app builds");
        let address = format!("http://127.0.0.1:{}", app.port());
        let shutdown = app.shutdown_token();
        tokio::spawn(app.run_until_stopped());
        started.push(Instance { address, shutdown });
    }
    let topology = Topology::new(format!("test-{id}.")).with_queues(
        broker::topology::QueueType::Classic,
        Some(Duration::from_secs(600)),
    );
    let broker = Broker::new(&amqp, topology, "chat-tests");
    let pem = std::fs::read(format!("{keys}/jwt-private.pem")).expect("dev private key");
    let chat = TestChat {
        instances: started,
        client: reqwest::Client::new(),
        settings: shared,
        publisher: Publisher::new(broker, Metrics::new("chat-tests")),
        key: EncodingKey::from_ed_pem(&pem).expect("Ed25519 key"),
    };
    for i in 0..instances {
        chat.wait_ready(i).await;
    }
    chat
}

/// The events a test's spy queue received, each acked once read (manual
/// acks, as every consumer of the project uses).
pub struct Spy(lapin::Consumer);

impl Spy {
    /// The next event's JSON, or `None` once the consumer is gone.
    /// Cancel-safe (tests `select!` on it): the only await is the stream's;
    /// the ack goes out on its own task.
    pub async fn next(&mut self) -> Option<Value> {
        let delivery = self.0.next().await?.expect("spy delivery");
        let acker = delivery.acker.clone();
        tokio::spawn(async move {
            acker
                .ack(lapin::options::BasicAckOptions::default())
                .await
                .expect("spy ack")
        });
        Some(serde_json::from_slice(&delivery.data).expect("event JSON"))
    }
}

impl TestChat {
    /// One more instance as a separate `chat-svc` process (which a test can
    /// kill outright), configured through the environment like production.
    pub async fn process(&self, overrides: Value) -> Process {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("free port")
            .local_addr()
            .expect("address")
            .port();
        let mut settings = self.settings.clone();
        let map = settings.as_object_mut().expect("settings object");
        if let Some(extra) = overrides.as_object() {
            map.extend(extra.clone());
        }
        map.insert("http_port".into(), port.into());
        map.insert(
            "instance_id".into(),
            format!("chat-process-{}", uuid::Uuid::new_v4().simple()).into(),
        );
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_chat-svc"));
        for (key, value) in map.iter() {
            let value = match value {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            command.env(key.to_uppercase(), value);
        }
        let child = command
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("chat-svc binary starts");
        let address = format!("http://127.0.0.1:{port}");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while self
            .client
            .get(format!("{address}/health/ready"))
            .send()
            .await
            .map(|r| r.status() != 200)
            .unwrap_or(true)
        {
            assert!(tokio::time::Instant::now() < deadline, "process not ready");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Process { child, address }
    }

    /// A queue of the test's own on `chat.events`, bound to `routing_key`:
    /// what the instances published from then on (notify-svc's view).
    pub async fn spy(&self, routing_key: &str) -> Spy {
        use lapin::options::{BasicConsumeOptions, QueueBindOptions, QueueDeclareOptions};
        use lapin::types::FieldTable;
        let prefix = self.settings["amqp_prefix"].as_str().unwrap_or_default();
        let url = env_or("TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2f");
        let topology = Topology::new(prefix).with_queues(
            broker::topology::QueueType::Classic,
            Some(Duration::from_secs(600)),
        );
        let broker = Broker::new(&url, topology, "chat-tests-spy");
        let channel = broker.channel().await.expect("spy channel");
        let queue = channel
            .queue_declare(
                "",
                QueueDeclareOptions {
                    exclusive: true,
                    auto_delete: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .expect("spy queue");
        channel
            .queue_bind(
                queue.name().as_str(),
                &format!("{prefix}chat.events"),
                routing_key,
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect("spy bound");
        let consumer = channel
            .basic_consume(
                queue.name().as_str(),
                "spy",
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect("spy consumes");
        // The connection lives as long as the consumer uses it.
        std::mem::forget(broker);
        Spy(consumer)
    }

    /// The Redis key prefix this test's instances share.
    pub fn redis_prefix(&self) -> String {
        self.settings["redis_prefix"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    pub fn url(&self, instance: usize, path: &str) -> String {
        format!("{}{}", self.instances[instance].address, path)
    }

    async fn wait_ready(&self, instance: usize) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = self
                .client
                .get(self.url(instance, "/health/ready"))
                .send()
                .await
            {
                if r.json::<Value>()
                    .await
                    .map(|b| b["status"] == "ok")
                    .unwrap_or(false)
                {
                    return;
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "instance {instance} not ready"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn publish<E: EventPayload>(&self, event: E) {
        let envelope = Envelope::new("auth-svc", None, event);
        for _ in 0..50 {
            if self.publisher.publish(&envelope).await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("could not publish {}", E::TYPE);
    }

    pub fn token(&self, user_id: &str, session: &str) -> String {
        let now = chrono::Utc::now().timestamp();
        let claims = Claims {
            sub: user_id.to_owned(),
            sid: Some(session.to_owned()),
            iss: "auth-svc".into(),
            aud: "chat-app".into(),
            exp: now + 900,
            nbf: now - 1,
            iat: now,
            jti: uuid::Uuid::new_v4().to_string(),
            typ: TokenType::Access,
        };
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some("dev-1".into());
        jsonwebtoken::encode(&header, &claims, &self.key).expect("sign")
    }

    /// A user known to chat-svc (registered through the event).
    pub async fn user(&self, name: &str) -> User {
        let id = uuid::Uuid::new_v4().simple().to_string();
        self.publish(UserRegistered {
            user_id: id.clone(),
            username: name.to_owned(),
            display_name: name.to_uppercase(),
            avatar_url: None,
            email: format!("{name}@example.com"),
            profile_version: 1,
            email_verified: true,
        })
        .await;
        let session = uuid::Uuid::new_v4().simple().to_string();
        let token = self.token(&id, &session);
        let user = User {
            id,
            username: name.to_owned(),
            session,
            token,
        };
        // Known once a direct chat with oneself is refused for the right reason.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let r = self
                .post(0, "/api/chat", &user, json!({"userId": user.id}))
                .await;
            let body: Value = r.json().await.unwrap_or_default();
            if body["errors"][0]["message"] == "must be another user" {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "user {name} never replicated"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        user
    }

    pub async fn rename_user(&self, user: &User, display_name: &str, version: i64) {
        self.publish(UserUpdated {
            user_id: user.id.clone(),
            username: user.username.clone(),
            display_name: display_name.to_owned(),
            avatar_url: None,
            email: format!("{}@example.com", user.username),
            profile_version: version,
            email_verified: true,
        })
        .await;
    }

    pub async fn revoke(&self, user: &User) {
        self.publish(SessionRevoked {
            user_id: user.id.clone(),
            session_id: user.session.clone(),
            reason: "logout".into(),
        })
        .await;
    }

    /// The sum of a Prometheus counter's series whose labels contain every
    /// one of `label_filters` (`collection="chats"`...) or, with several
    /// alternatives, any of them.
    pub async fn counter(&self, instance: usize, name: &str, any_of: &[&str]) -> f64 {
        let text = self
            .client
            .get(self.url(instance, "/metrics"))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics text");
        text.lines()
            .filter(|l| l.starts_with(&format!("{name}{{")))
            .filter(|l| any_of.is_empty() || any_of.iter().any(|f| l.contains(f)))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// MongoDB commands an instance sent for chat data (background work
    /// such as the outbox relay and the revocation poll is left out).
    pub async fn chat_data_reads(&self, instance: usize) -> f64 {
        self.counter(
            instance,
            "db_operations_total",
            &[
                "collection=\"chats\"",
                "collection=\"messages\"",
                "collection=\"read_markers\"",
                "collection=\"users\"",
            ],
        )
        .await
    }

    pub async fn post(
        &self,
        instance: usize,
        path: &str,
        user: &User,
        body: Value,
    ) -> reqwest::Response {
        self.client
            .post(self.url(instance, path))
            .bearer_auth(&user.token)
            .json(&body)
            .send()
            .await
            .expect("sent")
    }

    pub async fn get(&self, instance: usize, path: &str, user: &User) -> reqwest::Response {
        self.client
            .get(self.url(instance, path))
            .bearer_auth(&user.token)
            .send()
            .await
            .expect("sent")
    }

    pub async fn group(&self, owner: &User, name: &str, members: &[&User]) -> String {
        let ids: Vec<&str> = members.iter().map(|m| m.id.as_str()).collect();
        let r = self
            .post(
                0,
                "/api/chat/group",
                owner,
                json!({"name": name, "memberIds": ids}),
            )
            .await;
        assert_eq!(r.status(), 201);
        r.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    pub async fn send(&self, instance: usize, user: &User, chat: &str, content: &str) -> Value {
        let r = self
            .post(
                instance,
                &format!("/api/chat/{chat}/messages"),
                user,
                json!({"content": content}),
            )
            .await;
        assert_eq!(r.status(), 201, "send");
        r.json().await.unwrap()
    }

    /// A socket authenticated by header, after its `ready` frame.
    pub async fn socket(&self, instance: usize, user: &User) -> Socket {
        self.socket_at(&self.instances[instance].address, user)
            .await
    }

    /// As [`TestChat::socket`], on the instance at `address`.
    pub async fn socket_at(&self, address: &str, user: &User) -> Socket {
        let url = format!("{address}/ws").replacen("http", "ws", 1);
        let mut req = url.into_client_request().unwrap();
        req.headers_mut().insert(
            "authorization",
            format!("Bearer {}", user.token).parse().unwrap(),
        );
        let (ws, _) = tokio_tungstenite::connect_async(req)
            .await
            .expect("upgrade");
        let mut socket = Socket { ws };
        let ready = socket.next_frame().await.expect("ready frame");
        assert_eq!(ready["type"], "ready");
        assert_eq!(ready["userId"], user.id.as_str());
        socket
    }
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub struct Socket {
    pub ws: Ws,
}

impl Socket {
    /// The next JSON frame within 5 s (`None` on close or timeout).
    pub async fn next_frame(&mut self) -> Option<Value> {
        self.next_frame_within(Duration::from_secs(5)).await
    }

    pub async fn next_frame_within(&mut self, wait: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match tokio::time::timeout(left, self.ws.next()).await {
                Ok(Some(Ok(Message::Text(t)))) => return serde_json::from_str(&t).ok(),
                Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
                _ => return None,
            }
        }
    }

    /// The next frame of one type within 5 s, skipping others.
    pub async fn next_of(&mut self, kind: &str) -> Option<Value> {
        self.next_of_within(kind, Duration::from_secs(5)).await
    }

    pub async fn next_of_within(&mut self, kind: &str, wait: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let f = self.next_frame_within(left).await?;
            if f["type"] == kind {
                return Some(f);
            }
        }
    }

    /// Every frame until `wait` passes with nothing more.
    pub async fn collect_all(&mut self, wait: Duration) -> Vec<Value> {
        let mut out = Vec::new();
        while let Some(f) = self.next_frame_within(wait).await {
            out.push(f);
        }
        out
    }

    /// Frames of one type until `wait` passes with nothing more.
    pub async fn collect(&mut self, kind: &str, wait: Duration) -> Vec<Value> {
        let mut out = Vec::new();
        while let Some(f) = self.next_frame_within(wait).await {
            if f["type"] == kind {
                out.push(f);
            }
        }
        out
    }

    pub async fn send(&mut self, frame: Value) {
        self.ws
            .send(Message::Text(frame.to_string().into()))
            .await
            .expect("send frame");
    }

    /// The close code the server sent, waiting up to `wait`.
    pub async fn close_code(&mut self, wait: Duration) -> Option<u16> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match tokio::time::timeout(left, self.ws.next()).await {
                Ok(Some(Ok(Message::Close(frame)))) => return frame.map(|f| u16::from(f.code)),
                Ok(Some(Ok(_))) => continue,
                _ => return None,
            }
        }
    }
}
