//! Starts the real notify-svc on port 0 against the real servers, with a fresh
//! database, Redis prefix and RabbitMQ name prefix per test.

use notify_svc::config::Config;
use notify_svc::startup::Application;
use tokio_util::sync::CancellationToken;

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub shutdown: CancellationToken,
}

fn env_or(key: &str, default: &str) -> String {
    std::env::var(key).unwrap_or_else(|_| default.to_owned())
}

fn keys_dir() -> String {
    std::env::var("TEST_KEYS_DIR")
        .unwrap_or_else(|_| format!("{}/../.dev/keys", env!("CARGO_MANIFEST_DIR")))
}

pub async fn spawn_app() -> TestApp {
    spawn_with(&new_test_id(), serde_json::json!({})).await
}

pub fn new_test_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_owned()
}

/// An instance for test `id` (instances of one test share its database,
/// Redis prefix and queues), with settings of the test's own on top.
pub async fn spawn_with(id: &str, overrides: serde_json::Value) -> TestApp {
    let config = Config::load_with(settings(id, overrides)).expect("test config is valid");
    start(config).await
}

fn settings(id: &str, overrides: serde_json::Value) -> serde_json::Value {
    let mut settings = base_settings(id, &keys_dir());
    if let (Some(s), Some(extra)) = (settings.as_object_mut(), overrides.as_object()) {
        s.extend(extra.clone());
    }
    settings
}

fn base_settings(id: &str, keys: &str) -> serde_json::Value {
    serde_json::json!({
        "http_port": 0,
        "mongodb_uri": env_or("TEST_MONGODB_URI", "mongodb://127.0.0.1:27017"),
        "mongodb_database": format!("notify_test_{id}"),
        "redis_url": env_or("TEST_REDIS_URL", "redis://127.0.0.1:6379"),
        "redis_prefix": format!("test-{id}:"),
        "amqp_url": env_or("TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2f"),
        "amqp_prefix": format!("test-{id}."),
        "instance_id": format!("notify-test-{id}-{}", new_test_id()),
        "jwt_public_key_file": format!("{keys}/jwt-public.pem"),
        "smtp_url": env_or("TEST_SMTP_URL", "smtp://127.0.0.1:2525"),
        "vapid_private_key_file": format!("{keys}/vapid-private.pem"),
        "dev_allow_loopback_push": true,
        "shutdown_timeout_secs": 2,
        "amqp_queue_type": "classic",
        "amqp_queue_expires_secs": 600,
        "retry_schedule": "fast",
        "digest_poll_ms": 200,
    })
}

/// The settings of [`spawn_with`], as environment variables for a
/// `notify-svc` process.
pub fn settings_env(id: &str, overrides: serde_json::Value) -> Vec<(String, String)> {
    settings(id, overrides)
        .as_object()
        .expect("object")
        .iter()
        .map(|(k, v)| {
            let v = match v {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (k.to_uppercase(), v)
        })
        .collect()
}

async fn start(config: Config) -> TestApp {
    let app = Application::build(config).await.expect("app builds");
    let address = format!("http://127.0.0.1:{}", app.port());
    let shutdown = app.shutdown_token();
    tokio::spawn(app.run_until_stopped());
    TestApp {
        address,
        client: reqwest::Client::new(),
        shutdown,
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    /// Waits until MongoDB, Redis and RabbitMQ all answer.
    pub async fn wait_ready(&self) -> serde_json::Value {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(15);
        loop {
            let resp = self
                .client
                .get(self.url("/health/ready"))
                .send()
                .await
                .expect("reachable");
            let body: serde_json::Value = resp.json().await.expect("json");
            if body["status"] == "ok" || tokio::time::Instant::now() > deadline {
                return body;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// An access token for a fresh user, signed with the dev key as auth-svc would.
pub fn token_for(user_id: &str) -> String {
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    use shared::auth::{Claims, TokenType};
    let pem = std::fs::read(format!("{}/jwt-private.pem", keys_dir())).expect("dev private key");
    let key = EncodingKey::from_ed_pem(&pem).expect("Ed25519 key");
    let now = chrono::Utc::now().timestamp();
    let claims = Claims {
        sub: user_id.to_owned(),
        sid: Some(uuid::Uuid::new_v4().to_string()),
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
    jsonwebtoken::encode(&header, &claims, &key).expect("sign")
}
