//! Consuming with manual acks. Per delivery: decode, skip if this queue has
//! already processed the event id, run the handler, record the id, ack.
//! A failure goes to the next step of the queue's [`RetrySchedule`]
//! (`<queue>.retry.<delay>`, which returns it to the queue after the delay);
//! after the last step it is parked in `<queue>.dead` and the consumer goes on.
//! Shutdown stops taking deliveries, finishes the one in hand, and closes the
//! channel so unacked prefetched messages go back to the queue.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::BasicProperties;
use mongodb::bson::{doc, DateTime, Document};
use mongodb::{Collection, Database};
use shared::metrics::Metrics;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::connection::Broker;
use crate::events::{self, DecodedEnvelope};
use crate::outbox::is_duplicate_key;
use crate::publisher::Publisher;
use crate::topology::{QueueSpec, Topology};

const RETRY_HEADER: &str = "x-retry-count";
/// Declaring a queue and subscribing, on a channel that may need a new connection.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(15);
const ERROR_HEADER: &str = "x-last-error";

/// A named, bounded list of delays between attempts.
#[derive(Debug, Clone)]
pub struct RetrySchedule {
    pub name: &'static str,
    pub delays: Vec<Duration>,
}

impl RetrySchedule {
    /// Production: 1 s, 10 s, 1 min, 5 min, then dead.
    pub fn standard() -> Self {
        Self {
            name: "standard",
            delays: [1, 10, 60, 300].map(Duration::from_secs).to_vec(),
        }
    }

    /// Tests: the same shape, in milliseconds.
    pub fn fast() -> Self {
        Self {
            name: "fast",
            delays: [50, 100, 200].map(Duration::from_millis).to_vec(),
        }
    }
}

/// Why a handler failed.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// Worth retrying later (a dependency hiccup, a push endpoint's 5xx).
    #[error("transient: {0}")]
    Transient(anyhow::Error),
    /// Will never succeed: park it now.
    #[error("permanent: {0}")]
    Permanent(anyhow::Error),
}

/// Applies events. Effects must be idempotent by event id (e.g. a document
/// whose `_id` derives from it): the processed-id record is written after
/// the effect, so a crash in between replays the event.
pub trait Handler: Send + Sync + 'static {
    fn handle(
        &self,
        event: &DecodedEnvelope,
    ) -> impl Future<Output = Result<(), HandlerError>> + Send;

    /// The consumer lost its channel or connection (it will reconnect).
    fn interrupted(&self) {}

    /// The consumer is (again) subscribed to its queue.
    fn subscribed(&self) {}
}

/// Ids of events a queue has processed, in the consumer's own database, so
/// deduplication survives restarts.
#[derive(Clone)]
pub struct ProcessedEvents {
    coll: Collection<Document>,
}

impl ProcessedEvents {
    pub fn new(db: &Database) -> Self {
        Self {
            coll: db.collection("processed_events"),
        }
    }

    fn key(queue: &str, id: &uuid::Uuid) -> String {
        format!("{queue}/{id}")
    }

    pub async fn seen(&self, queue: &str, id: &uuid::Uuid) -> Result<bool, mongodb::error::Error> {
        Ok(self
            .coll
            .find_one(doc! { "_id": Self::key(queue, id) })
            .await?
            .is_some())
    }

    pub async fn mark(&self, queue: &str, id: &uuid::Uuid) -> Result<(), mongodb::error::Error> {
        match self
            .coll
            .insert_one(doc! { "_id": Self::key(queue, id), "at": DateTime::now() })
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_duplicate_key(&e) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// Which queue to consume.
#[derive(Debug, Clone)]
pub enum Source {
    /// A durable competing-consumer queue, with retries and dead-lettering.
    Durable(QueueSpec),
    /// A chat-svc instance's live fan-out queue: at most once, no retries.
    Fanout { instance_id: String },
}

pub struct Consumer<H> {
    broker: Broker,
    publisher: Publisher,
    source: Source,
    handler: Arc<H>,
    schedule: RetrySchedule,
    prefetch: u16,
    /// Deliveries handled at once (1: one after another, in queue order).
    concurrency: usize,
    processed: Option<ProcessedEvents>,
    metrics: Metrics,
    tag: String,
}

enum Failure {
    Retry(String),
    Dead(String),
    /// This service's own database did not answer: no fault of the event,
    /// so it waits without using up an attempt (an outage longer than the
    /// schedule must not park every event in flight).
    Unavailable(String),
}

/// How long a delivery that met an unavailable database holds its slot
/// before it goes to wait in the first retry queue: the consumer slows
/// down while the database is away instead of spinning.
const UNAVAILABLE_PAUSE: Duration = Duration::from_secs(1);

/// True when `e` is, or wraps, "MongoDB is unreachable".
fn database_unavailable(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<mongodb::error::Error>()
            .is_some_and(shared::storage::is_unavailable)
    })
}

impl<H: Handler> Consumer<H> {
    pub fn new(
        broker: Broker,
        publisher: Publisher,
        source: Source,
        handler: Arc<H>,
        metrics: Metrics,
    ) -> Self {
        let tag = format!(
            "{}-{}",
            match &source {
                Source::Durable(spec) => spec.base_name.to_owned(),
                Source::Fanout { instance_id } => format!("fanout-{instance_id}"),
            },
            uuid::Uuid::new_v4().simple()
        );
        Self {
            broker,
            publisher,
            source,
            handler,
            schedule: RetrySchedule::standard(),
            prefetch: 32,
            concurrency: 1,
            processed: None,
            metrics,
            tag,
        }
    }

    pub fn with_schedule(mut self, schedule: RetrySchedule) -> Self {
        self.schedule = schedule;
        self
    }

    /// Handles up to `n` deliveries at once, each acked when its own
    /// handling is done: one slow delivery (a push endpoint that takes its
    /// full timeout) no longer holds up those behind it. Only for handlers
    /// that do not depend on the order of deliveries.
    pub fn with_concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }

    pub fn with_prefetch(mut self, prefetch: u16) -> Self {
        self.prefetch = prefetch.max(1);
        self
    }

    /// Enables deduplication by event id.
    pub fn with_idempotency(mut self, processed: ProcessedEvents) -> Self {
        self.processed = Some(processed);
        self
    }

    /// Consumes until `shutdown`, reconnecting with backoff whenever the
    /// channel or connection dies.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut backoff = Duration::from_millis(250);
        while !shutdown.is_cancelled() {
            match self.consume(&shutdown).await {
                Ok(()) => break,
                Err(e) => {
                    self.handler.interrupted();
                    tracing::warn!(consumer = %self.tag, error = %e, retry_in_ms = backoff.as_millis() as u64, "consumer interrupted; reconnecting");
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
        tracing::info!(consumer = %self.tag, "consumer stopped");
    }

    async fn consume(&self, shutdown: &CancellationToken) -> anyhow::Result<()> {
        // A broker that is still booting may leave a declaration unanswered:
        // give up and reconnect rather than wait for it forever.
        let (channel, queue, mut deliveries) =
            tokio::time::timeout(SUBSCRIBE_TIMEOUT, self.subscribe())
                .await
                .map_err(|_| anyhow::anyhow!("subscribing timed out"))??;
        tracing::info!(queue = %queue, prefetch = self.prefetch, concurrency = self.concurrency, "consuming");
        self.handler.subscribed();
        let mut in_hand = futures_util::stream::FuturesUnordered::new();
        loop {
            tokio::select! {
                biased;
                Some(done) = in_hand.next(), if !in_hand.is_empty() => done?,
                d = deliveries.next(), if in_hand.len() < self.concurrency => match d {
                    None => anyhow::bail!("delivery stream ended"),
                    Some(Err(e)) => return Err(e.into()),
                    Some(Ok(delivery)) => in_hand.push(self.process(&queue, delivery)),
                },
                _ = shutdown.cancelled() => {
                    // The deliveries in hand are finished and settled first.
                    while let Some(done) = in_hand.next().await {
                        done?;
                    }
                    let _ = channel.close(200, "shutdown").await;
                    return Ok(());
                }
            }
        }
    }

    /// A channel with the queue declared and a consumer on it.
    async fn subscribe(&self) -> anyhow::Result<(lapin::Channel, String, lapin::Consumer)> {
        let channel = self.broker.channel().await?;
        channel
            .basic_qos(self.prefetch, BasicQosOptions::default())
            .await?;
        let topology = self.broker.topology();
        let queue = match &self.source {
            Source::Durable(spec) => {
                let queue = topology.declare_durable_queue(&channel, spec).await?;
                for delay in &self.schedule.delays {
                    topology
                        .declare_retry_queue(&channel, &queue, *delay)
                        .await?;
                }
                queue
            }
            Source::Fanout { instance_id } => {
                topology.declare_fanout_queue(&channel, instance_id).await?
            }
        };
        let deliveries = channel
            .basic_consume(
                &queue,
                &self.tag,
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        Ok((channel, queue, deliveries))
    }

    /// Handles one delivery and settles it. An error means the channel is
    /// gone (the delivery will come back).
    async fn process(&self, queue: &str, delivery: Delivery) -> anyhow::Result<()> {
        let outcome = match events::decode(&delivery.data) {
            // No retry can make it decodable, nor teach this consumer a type
            // or version it does not know: straight to the dead queue.
            Err(e) => Err(Failure::Dead(format!("undecodable: {e}"))),
            Ok(envelope) => {
                let lag = chrono::Utc::now() - envelope.occurred_at;
                self.metrics
                    .consumer_lag
                    .with_label_values(&[queue])
                    .observe(lag.num_microseconds().unwrap_or(i64::MAX).max(0) as f64 / 1e6);
                self.apply(queue, &envelope).await
            }
        };
        let live = matches!(self.source, Source::Fanout { .. });
        match outcome {
            Ok(label) => {
                self.metrics
                    .events_consumed
                    .with_label_values(&[queue, label])
                    .inc();
            }
            Err(failure) if live => {
                let reason = match failure {
                    Failure::Retry(r) | Failure::Dead(r) | Failure::Unavailable(r) => r,
                };
                tracing::warn!(queue, reason = %reason, "live event dropped");
                self.metrics
                    .events_consumed
                    .with_label_values(&[queue, "dropped"])
                    .inc();
            }
            Err(failure) => {
                let attempt = retry_count(&delivery.properties);
                // (target, reason, label, attempts counted after it, step waited)
                let (target, reason, label, counted, step) = match failure {
                    // A deferral does not count as an attempt.
                    Failure::Unavailable(reason) if !self.schedule.delays.is_empty() => {
                        tokio::time::sleep(UNAVAILABLE_PAUSE).await;
                        let target = Topology::retry_queue(queue, self.schedule.delays[0]);
                        (target, reason, "deferred", attempt, Some(0))
                    }
                    Failure::Retry(reason) if (attempt as usize) < self.schedule.delays.len() => {
                        let step = attempt as usize;
                        let target = Topology::retry_queue(queue, self.schedule.delays[step]);
                        (target, reason, "retried", attempt + 1, Some(step))
                    }
                    Failure::Retry(reason)
                    | Failure::Dead(reason)
                    | Failure::Unavailable(reason) => {
                        let target = Topology::dead_queue(queue);
                        (target, reason, "dead_lettered", attempt + 1, None)
                    }
                };
                let mut props = with_retry_headers(&delivery.properties, counted, &reason);
                if let Some(step) = step {
                    props = with_jittered_delay(props, self.schedule.delays[step]);
                }
                if let Err(e) = self
                    .publisher
                    .send_to_queue(&target, &delivery.data, props)
                    .await
                {
                    // Could not park it: give it back to the queue and slow down.
                    tracing::warn!(queue, error = %e, "could not move a failed delivery; requeueing");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    delivery
                        .nack(BasicNackOptions {
                            requeue: true,
                            ..Default::default()
                        })
                        .await?;
                    return Ok(());
                }
                tracing::warn!(queue, attempt = counted, schedule = self.schedule.name, to = %target, reason = %reason, "delivery failed");
                self.metrics
                    .events_consumed
                    .with_label_values(&[queue, label])
                    .inc();
            }
        }
        delivery.ack(BasicAckOptions::default()).await?;
        Ok(())
    }

    async fn apply(
        &self,
        queue: &str,
        envelope: &DecodedEnvelope,
    ) -> Result<&'static str, Failure> {
        let span = tracing::info_span!("consume", queue, event.id = %envelope.id, event.type = %envelope.kind,
            correlation_id = envelope.correlation_id.as_deref().unwrap_or(""));
        self.apply_inner(queue, envelope).instrument(span).await
    }

    async fn apply_inner(
        &self,
        queue: &str,
        envelope: &DecodedEnvelope,
    ) -> Result<&'static str, Failure> {
        if let Some(processed) = &self.processed {
            match processed.seen(queue, &envelope.id).await {
                Ok(true) => return Ok("duplicate"),
                Ok(false) => {}
                Err(e) if shared::storage::is_unavailable(&e) => {
                    return Err(Failure::Unavailable(format!("idempotency store: {e}")))
                }
                Err(e) => return Err(Failure::Retry(format!("idempotency store: {e}"))),
            }
        }
        match self.handler.handle(envelope).await {
            Ok(()) => {}
            Err(HandlerError::Transient(e)) if database_unavailable(&e) => {
                return Err(Failure::Unavailable(format!("{e:#}")))
            }
            Err(HandlerError::Transient(e)) => return Err(Failure::Retry(format!("{e:#}"))),
            Err(HandlerError::Permanent(e)) => return Err(Failure::Dead(format!("{e:#}"))),
        }
        if let Some(processed) = &self.processed {
            if let Err(e) = processed.mark(queue, &envelope.id).await {
                // The effect happened; a replay is harmless (idempotent handlers).
                tracing::warn!(error = %e, "could not record the processed event id");
            }
        }
        Ok("ok")
    }
}

fn retry_count(props: &BasicProperties) -> u32 {
    let value = props
        .headers()
        .as_ref()
        .and_then(|h| h.inner().get(RETRY_HEADER).cloned());
    match value {
        Some(AMQPValue::LongInt(n)) => u32::try_from(n).unwrap_or(0),
        Some(AMQPValue::LongLongInt(n)) => u32::try_from(n).unwrap_or(0),
        Some(AMQPValue::ShortInt(n)) => u32::try_from(n).unwrap_or(0),
        Some(AMQPValue::LongUInt(n)) => n,
        _ => 0,
    }
}

/// Waits 80-100% of the step's delay (the retry queue's TTL is the upper
/// bound), so that deliveries that failed together do not all come back
/// in the same instant.
fn with_jittered_delay(props: BasicProperties, delay: Duration) -> BasicProperties {
    use rand::Rng;
    let max = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
    let ms = rand::thread_rng().gen_range(max - max / 5..=max);
    props.with_expiration(ShortString::from(ms.to_string()))
}

fn with_retry_headers(props: &BasicProperties, attempt: u32, reason: &str) -> BasicProperties {
    let mut headers = props.headers().clone().unwrap_or_default();
    headers.insert(
        ShortString::from(RETRY_HEADER),
        AMQPValue::LongLongInt(i64::from(attempt)),
    );
    let reason: String = reason
        .chars()
        .filter(|c| !c.is_control())
        .take(500)
        .collect();
    headers.insert(
        ShortString::from(ERROR_HEADER),
        AMQPValue::LongString(LongString::from(reason)),
    );
    props.clone().with_headers(headers)
}
