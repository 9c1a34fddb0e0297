//! Starts the real auth-svc on port 0 against the real servers, with a fresh
//! database, Redis prefix and RabbitMQ name prefix per test.

use std::time::Duration;

use auth_svc::config::Config;
use auth_svc::startup::Application;
use futures_util::StreamExt;
use lapin::options::{BasicConsumeOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub shutdown: CancellationToken,
    pub amqp_prefix: String,
    /// This test's own MongoDB database (for tests that age or strip documents).
    pub db: mongodb::Database,
    /// The settings the app was built with.
    pub settings: Value,
}

/// A separate `auth-svc` process beside the test's app (which a test can
/// let crash), on the same database, Redis and broker prefixes.
pub struct Process {
    pub child: tokio::process::Child,
    pub address: String,
}

fn env_or(key: &str, default: &str) -> String {
    std::env::var(key).unwrap_or_else(|_| default.to_owned())
}

fn keys_dir() -> String {
    std::env::var("TEST_KEYS_DIR")
        .unwrap_or_else(|_| format!("{}/../.dev/keys", env!("CARGO_MANIFEST_DIR")))
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(json!({})).await
}

/// With settings overridden (e.g. tighter rate limits).
pub async fn spawn_app_with(extra: Value) -> TestApp {
    let id = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
    let keys = keys_dir();
    let amqp_prefix = format!("test-{id}.");
    let mongodb_uri = env_or("TEST_MONGODB_URI", "mongodb://127.0.0.1:27017");
    let db = mongodb::Client::with_uri_str(&mongodb_uri)
        .await
        .expect("mongodb client")
        .database(&format!("auth_test_{id}"));
    let mut settings = json!({
        "http_port": 0,
        "mongodb_uri": env_or("TEST_MONGODB_URI", "mongodb://127.0.0.1:27017"),
        "mongodb_database": format!("auth_test_{id}"),
        "redis_url": env_or("TEST_REDIS_URL", "redis://127.0.0.1:6379"),
        "redis_prefix": format!("test-{id}:"),
        "amqp_url": env_or("TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2f"),
        "amqp_prefix": amqp_prefix,
        "instance_id": format!("auth-test-{id}"),
        "jwt_public_key_file": format!("{keys}/jwt-public.pem"),
        "jwt_private_key_file": format!("{keys}/jwt-private.pem"),
        "totp_encryption_key_file": format!("{keys}/totp-encryption.key"),
        "shutdown_timeout_secs": 2,
        "amqp_queue_type": "classic",
        "amqp_queue_expires_secs": 600,
        // Tests log in a lot from one address; the IP limits have their own test.
        "login_per_minute_per_ip": 1000,
        "register_per_hour_per_ip": 1000,
    });
    for (k, v) in extra.as_object().into_iter().flatten() {
        settings[k] = v.clone();
    }
    let config = Config::load_with(settings.clone()).expect("test config is valid");
    let app = Application::build(config).await.expect("app builds");
    let address = format!("http://127.0.0.1:{}", app.port());
    let shutdown = app.shutdown_token();
    tokio::spawn(app.run_until_stopped());
    TestApp {
        address,
        client: reqwest::Client::new(),
        shutdown,
        amqp_prefix,
        db,
        settings,
    }
}

/// A registered user and the password it was registered with.
pub struct User {
    pub id: String,
    /// The device token registration handed out.
    pub device: String,
    pub username: String,
    pub email: String,
    pub password: String,
    pub access: String,
    pub refresh: String,
}

impl TestApp {
    /// One more instance as its own process, configured through the
    /// environment like production, with `overrides` on top.
    pub async fn process(&self, overrides: Value) -> Process {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("free port")
            .local_addr()
            .expect("address")
            .port();
        let mut settings = self.settings.clone();
        let map = settings.as_object_mut().expect("settings object");
        map.extend(overrides.as_object().cloned().unwrap_or_default());
        map.insert("http_port".into(), port.into());
        map.insert(
            "instance_id".into(),
            format!("auth-process-{}", uuid::Uuid::new_v4().simple()).into(),
        );
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_auth-svc"));
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
            .expect("auth-svc binary starts");
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

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    /// Waits until MongoDB, Redis and RabbitMQ all answer.
    pub async fn wait_ready(&self) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            let resp = self
                .client
                .get(self.url("/health/ready"))
                .send()
                .await
                .expect("reachable");
            let body: Value = resp.json().await.expect("json");
            if body["status"] == "ok" || tokio::time::Instant::now() > deadline {
                return body;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> reqwest::Response {
        let mut req = self.client.post(self.url(path)).json(&body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send().await.expect("request sent")
    }

    pub async fn get(&self, path: &str, token: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("request sent")
    }

    pub async fn register(&self, name: &str) -> User {
        let password = format!("Tangerine-{name}-Harbor-93");
        let email = format!("{name}@example.com");
        let resp = self
            .post(
                "/api/auth/register",
                None,
                json!({ "username": name, "email": email, "password": password }),
            )
            .await;
        assert_eq!(resp.status(), 201, "register {name}");
        let body: Value = resp.json().await.expect("json");
        User {
            id: body["user"]["id"].as_str().expect("id").to_owned(),
            device: body["deviceToken"]
                .as_str()
                .expect("device token")
                .to_owned(),
            username: name.to_owned(),
            email,
            password,
            access: body["accessToken"].as_str().expect("token").to_owned(),
            refresh: body["refreshToken"].as_str().expect("refresh").to_owned(),
        }
    }

    pub async fn login(&self, login: &str, password: &str) -> reqwest::Response {
        self.post(
            "/api/auth/login",
            None,
            json!({ "login": login, "password": password }),
        )
        .await
    }

    /// Starts collecting every event this app publishes on `auth.events`.
    pub async fn capture_events(&self) -> EventCapture {
        let url = env_or("TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2f");
        let props = lapin::ConnectionProperties::default()
            .with_executor(tokio_executor_trait::Tokio::current())
            .with_reactor(tokio_reactor_trait::Tokio::current());
        let conn = lapin::Connection::connect(&url, props).await.expect("amqp");
        let ch = conn.create_channel().await.expect("channel");
        let exchange = format!("{}auth.events", self.amqp_prefix);
        // The app declares the exchange on connect; wait for it.
        self.wait_ready().await;
        let q = ch
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
            .expect("queue");
        ch.queue_bind(
            q.name().as_str(),
            &exchange,
            "#",
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("bind");
        let consumer = ch
            .basic_consume(
                q.name().as_str(),
                "capture",
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect("consume");
        EventCapture {
            consumer,
            _conn: conn,
        }
    }
}

pub struct EventCapture {
    consumer: lapin::Consumer,
    _conn: lapin::Connection,
}

impl EventCapture {
    /// The next event of any kind within 10 seconds.
    pub async fn next_any(&mut self) -> Value {
        let delivery = tokio::time::timeout(Duration::from_secs(10), self.consumer.next())
            .await
            .unwrap_or_else(|_| panic!("no event within 10 s"))
            .expect("stream open")
            .expect("delivery");
        delivery
            .ack(lapin::options::BasicAckOptions::default())
            .await
            .expect("ack");
        serde_json::from_slice(&delivery.data).expect("json envelope")
    }

    /// Every event until `quiet` passes without one, or `within` ends.
    pub async fn drain(&mut self, within: Duration, quiet: Duration) -> Vec<Value> {
        let mut events = Vec::new();
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let wait = if events.is_empty() {
                left
            } else {
                quiet.min(left)
            };
            match tokio::time::timeout(wait, self.consumer.next()).await {
                Ok(Some(Ok(delivery))) => {
                    delivery
                        .ack(lapin::options::BasicAckOptions::default())
                        .await
                        .expect("ack");
                    events.push(serde_json::from_slice(&delivery.data).expect("json envelope"));
                }
                _ => return events,
            }
        }
    }

    /// The next event of `kind` within 10 seconds (skipping others).
    pub async fn next_of(&mut self, kind: &str) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let delivery = tokio::time::timeout(left, self.consumer.next())
                .await
                .unwrap_or_else(|_| panic!("no {kind} event within 10 s"))
                .expect("stream open")
                .expect("delivery");
            delivery
                .ack(lapin::options::BasicAckOptions::default())
                .await
                .expect("ack");
            let event: Value = serde_json::from_slice(&delivery.data).expect("json envelope");
            if event["type"] == kind {
                return event;
            }
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// An independent RFC 6238 implementation (HMAC-SHA1 by hand), to check the
/// service against something other than its own code.
pub fn totp(secret_b32: &str, unix: u64) -> String {
    use hmac::{Hmac, Mac};
    let secret = data_encoding::BASE32_NOPAD
        .decode(secret_b32.as_bytes())
        .expect("base32");
    let counter = (unix / 30).to_be_bytes();
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(&secret).expect("key");
    mac.update(&counter);
    let hash = mac.finalize().into_bytes();
    let offset = (hash[19] & 0x0f) as usize;
    let bin = u32::from_be_bytes([
        hash[offset] & 0x7f,
        hash[offset + 1],
        hash[offset + 2],
        hash[offset + 3],
    ]);
    format!("{:06}", bin % 1_000_000)
}

pub fn now() -> u64 {
    u64::try_from(chrono::Utc::now().timestamp()).expect("after 1970")
}
