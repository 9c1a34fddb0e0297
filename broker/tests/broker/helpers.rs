//! Per-test isolation: a fresh MongoDB database and a unique exchange/queue
//! prefix, against the real servers `./dev test` points at.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use broker::consumer::{HandlerError, Source};
use broker::events::DecodedEnvelope;
use broker::topology::CHAT_SVC_USERS;
use broker::{Broker, Consumer, Handler, Publisher, RetrySchedule, Topology};
use lapin::options::{BasicGetOptions, QueueDeleteOptions};
use mongodb::Database;
use shared::metrics::Metrics;

pub fn amqp_url() -> String {
    std::env::var("TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

pub fn mongo_url() -> String {
    std::env::var("TEST_MONGODB_URI").unwrap_or_else(|_| "mongodb://127.0.0.1:27017".into())
}

pub struct TestEnv {
    pub prefix: String,
    pub db: Database,
    pub metrics: Metrics,
}

impl TestEnv {
    pub async fn new() -> Self {
        // Logs show up with `--nocapture` and RUST_LOG.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let id = uuid::Uuid::new_v4().simple().to_string();
        let prefix = format!("test-{}.", &id[..12]);
        let uri = secrecy::SecretString::from(mongo_url());
        let db = shared::storage::mongo(
            &uri,
            &format!("broker_test_{}", &id[..12]),
            "broker-tests",
            None,
        )
        .await
        .expect("mongo client");
        Self {
            prefix,
            db,
            metrics: Metrics::new("broker-tests"),
        }
    }

    pub fn broker(&self) -> Broker {
        self.broker_at(&amqp_url())
    }

    /// A broker handle on `url` (one URL or a comma-separated node list).
    pub fn broker_at(&self, url: &str) -> Broker {
        Broker::new(
            url,
            Topology::new(self.prefix.clone()).with_queues(
                broker::topology::QueueType::Classic,
                Some(std::time::Duration::from_secs(600)),
            ),
            "broker-tests",
        )
    }

    /// A `chat-svc.users` consumer handing deliveries to `recorder`, on
    /// the fast retry schedule.
    pub fn users_consumer(
        &self,
        broker: &Broker,
        publisher: Publisher,
        recorder: &Recorder,
    ) -> Consumer<Recorder> {
        Consumer::new(
            broker.clone(),
            publisher,
            durable(CHAT_SVC_USERS),
            Arc::new(recorder.clone()),
            self.metrics.clone(),
        )
        .with_schedule(RetrySchedule::fast())
    }

    pub fn publisher(&self, broker: &Broker) -> Publisher {
        Publisher::new(broker.clone(), self.metrics.clone())
    }

    /// Messages waiting in a queue, drained with basic.get.
    pub async fn drain(
        &self,
        broker: &Broker,
        queue: &str,
    ) -> Vec<lapin::message::BasicGetMessage> {
        let ch = broker.channel().await.expect("channel");
        let mut out = Vec::new();
        while let Ok(Some(m)) = ch.basic_get(queue, BasicGetOptions::default()).await {
            m.delivery
                .ack(lapin::options::BasicAckOptions::default())
                .await
                .expect("ack");
            out.push(m);
        }
        out
    }

    /// Deletes this test's queues and database.
    pub async fn cleanup(&self, broker: &Broker, extra_queues: &[String]) {
        if let Ok(ch) = broker.channel().await {
            let mut queues: Vec<String> = broker::topology::DURABLE_QUEUES
                .iter()
                .flat_map(|q| {
                    let name = format!("{}{}", self.prefix, q.base_name);
                    let mut v = vec![Topology::dead_queue(&name)];
                    v.extend(
                        broker::RetrySchedule::fast()
                            .delays
                            .iter()
                            .map(|d| Topology::retry_queue(&name, *d)),
                    );
                    v.push(name);
                    v
                })
                .collect();
            queues.extend_from_slice(extra_queues);
            for q in queues {
                let _ = ch.queue_delete(&q, QueueDeleteOptions::default()).await;
            }
            for e in broker::Exchange::ALL {
                let _ = ch
                    .exchange_delete(
                        &broker.topology().exchange(e),
                        lapin::options::ExchangeDeleteOptions::default(),
                    )
                    .await;
            }
        }
        broker.close().await;
        let _ = self.db.drop().await;
    }
}

/// Records every event it sees; can be told to fail or to hang.
#[derive(Default, Clone)]
pub struct Recorder {
    pub seen: Arc<Mutex<Vec<DecodedEnvelope>>>,
    pub hang: bool,
    pub effects: Option<Database>,
    /// A `auth.session.revoked` for this session fails (transiently) every time.
    pub fail_session: Option<String>,
    /// A `auth.session.revoked` for this session meets an unreachable
    /// MongoDB (a real driver error) as many times as the counter says.
    pub unavailable: Option<(String, Arc<std::sync::atomic::AtomicUsize>)>,
}

/// A real "MongoDB is unreachable" error from the driver.
pub async fn unreachable_database_error() -> mongodb::error::Error {
    let client = mongodb::Client::with_uri_str(
        "mongodb://127.0.0.1:1/?serverSelectionTimeoutMS=100&connectTimeoutMS=100",
    )
    .await
    .unwrap();
    client
        .database("x")
        .collection::<mongodb::bson::Document>("y")
        .find_one(mongodb::bson::doc! {})
        .await
        .unwrap_err()
}

impl Handler for Recorder {
    async fn handle(&self, event: &DecodedEnvelope) -> Result<(), HandlerError> {
        if let broker::Event::SessionRevoked(e) = &event.data {
            if self.fail_session.as_deref() == Some(e.session_id.as_str()) {
                return Err(HandlerError::Transient(anyhow::anyhow!("told to fail")));
            }
            if let Some((session, left)) = &self.unavailable {
                let ordering = std::sync::atomic::Ordering::SeqCst;
                if session == &e.session_id && left.load(ordering) > 0 {
                    left.fetch_sub(1, ordering);
                    let e = anyhow::Error::from(unreachable_database_error().await);
                    return Err(HandlerError::Transient(e.context("notifications store")));
                }
            }
        }
        if let Some(db) = &self.effects {
            // The idempotent effect: one document per event id.
            let coll = db.collection::<mongodb::bson::Document>("effects");
            let doc = mongodb::bson::doc! { "_id": event.id.to_string() };
            if let Err(e) = coll.insert_one(doc).await {
                if !broker::outbox::is_duplicate_key(&e) {
                    return Err(HandlerError::Transient(e.into()));
                }
            }
        }
        self.seen.lock().unwrap().push(event.clone());
        if self.hang {
            futures_util::future::pending::<()>().await;
        }
        Ok(())
    }
}

impl Recorder {
    pub fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    pub fn ids(&self) -> Vec<uuid::Uuid> {
        self.seen.lock().unwrap().iter().map(|e| e.id).collect()
    }
}

pub async fn eventually(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + timeout;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

pub fn durable(spec: broker::QueueSpec) -> Source {
    Source::Durable(spec)
}
