//! The transactional outbox. A service writes its state change, then
//! [`Outbox::enqueue`] writes the event into the same MongoDB before the
//! HTTP response goes out (no multi-document transaction needed, so it works
//! on a standalone server). The [`OutboxRelay`] then publishes it:
//!
//! - fast path: records enqueued by this process are handed to the relay in
//!   memory and published within milliseconds, in enqueue order, pipelined on
//!   one confirm channel, and deleted once confirmed;
//! - sweep: whatever is still in the collection after a grace period (broker
//!   down, process killed between commit and publish) is published by the one
//!   relay holding the lease, in `seq` order, with retries until it goes.
//!
//! Atomic with the write: [`Outbox::enqueue`] is a second write, so a crash
//! between the state change and it loses the event. Where that matters (the
//! message a user sent), the event travels inside the changed document
//! instead: [`Outbox::stage`] builds the record, the caller's one write
//! stores it in the document's `outbox` array (a single-document write is
//! atomic on any MongoDB, standalone or replica set, and costs no extra
//! round trip), and [`Outbox::committed`] hands it to the relay, which
//! `$pull`s it once published. The sweep reads the collections registered
//! with [`Outbox::embed_in`] as well as `outbox`.
//!
//! After a crash: the steps a process takes after its write (invalidating
//! read caches) die with it. The sweep hands every event it relays to the
//! service's [`Recovery`] (registered with [`Outbox::recover_with`]) before
//! publishing it, so those steps happen anyway, a few seconds late.
//!
//! Order: per aggregate, records are published in `seq` order. `seq` is the
//! aggregate's own version when the caller has one, else a per-process
//! monotonic clock. Delivery is at least once; consumers deduplicate by id.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::TryStreamExt;
use mongodb::bson::{doc, DateTime, Document};
use mongodb::options::IndexOptions;
use mongodb::{Collection, Database, IndexModel};
use serde::{Deserialize, Serialize};
use shared::metrics::Metrics;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::envelope::Envelope;
use crate::events::{decode, encode, DecodedEnvelope, Event, EventPayload};
use crate::publisher::{Outgoing, Publisher};
use crate::topology::Exchange;

/// How long a record may wait for the fast path before the sweep takes it.
const SWEEP_GRACE: Duration = Duration::from_secs(2);
const SWEEP_INTERVAL: Duration = Duration::from_millis(500);
const LEASE: Duration = Duration::from_secs(10);
const BATCH: usize = 256;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct OutboxRecord {
    /// The event id.
    #[serde(rename = "_id")]
    id: String,
    aggregate: String,
    seq: i64,
    exchange: String,
    routing_key: String,
    correlation_id: Option<String>,
    /// The serialized envelope, published byte for byte.
    body: String,
    created_at: DateTime,
    /// The recipients' routing keys, published in the `BCC` header (see
    /// [`Outgoing::bcc`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    bcc: Vec<String>,
}

/// Where a record waits until it is published.
#[derive(Debug, Clone)]
enum Home {
    /// A document of its own in `outbox`.
    Outbox,
    /// An entry of the `outbox` array of document `doc_id` in `collection`.
    Embedded { collection: String, doc_id: String },
}

/// A record on its way to the relay.
#[derive(Debug, Clone)]
struct Relayed {
    record: OutboxRecord,
    home: Home,
}

/// An event built for a write that stores it in the changed document; see
/// the module docs.
#[derive(Debug, Clone)]
pub struct Staged {
    record: OutboxRecord,
}

impl Staged {
    pub fn id(&self) -> &str {
        &self.record.id
    }

    /// Also routes the event to the fan-out queues of the instances where
    /// these users are connected (see [`Outgoing::bcc`]).
    #[must_use]
    pub fn for_recipients(mut self, users: &[String]) -> Self {
        self.record.bcc = users
            .iter()
            .map(|u| crate::topology::recipient_key(u))
            .collect();
        self
    }

    /// The entry for the document's `outbox` array (`$push` it, or set
    /// `outbox: [entry]` on insert).
    pub fn entry(&self) -> Result<Document, OutboxError> {
        Ok(mongodb::bson::to_document(&self.record)?)
    }
}

/// A crash point for tests: when the environment variable `FAILPOINT`
/// names `point`, the process aborts there (as a SIGKILL would stop it).
/// Unset, this is one cached comparison.
pub fn failpoint(point: &str) {
    static ARMED: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    let armed = ARMED.get_or_init(|| std::env::var("FAILPOINT").ok().filter(|p| !p.is_empty()));
    if armed.as_deref() == Some(point) {
        tracing::error!(point, "failpoint reached: aborting");
        std::process::abort();
    }
}

/// A fresh event id (UUID v7: unique and time-ordered).
pub fn new_event_id() -> Uuid {
    Uuid::now_v7()
}

/// The field of a document that carries its unpublished events.
pub const EMBEDDED_FIELD: &str = "outbox";

impl OutboxRecord {
    fn outgoing(&self) -> Option<Outgoing> {
        Some(Outgoing {
            exchange: Exchange::from_base_name(&self.exchange)?,
            routing_key: self.routing_key.clone(),
            message_id: self.id.clone(),
            correlation_id: self.correlation_id.clone(),
            body: self.body.clone().into_bytes(),
            bcc: self.bcc.clone(),
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error("cannot encode the event: {0}")]
    Encode(#[from] serde_json::Error),
    #[error("cannot store the event: {0}")]
    Store(#[from] mongodb::error::Error),
    #[error("cannot encode the event for its document: {0}")]
    Bson(#[from] mongodb::bson::ser::Error),
}

/// What a service redoes for an event the sweep relays. The sweep takes the
/// events the fast path did not publish within its grace period, mostly
/// because the process that wrote them stopped right after the write, before
/// its own follow-up steps (cache invalidation). Those steps must be
/// idempotent: the writer may have done them already.
///
/// `Some(data)` publishes the event with that data instead of what was
/// stored (same id, type and envelope): for a late event that must carry
/// something only known now, such as chat-svc's timeline cursors.
pub trait Recovery: Send + Sync + 'static {
    fn recover<'a>(&'a self, event: &'a DecodedEnvelope) -> BoxFuture<'a, Option<Event>>;
}

type SharedRecovery = Arc<RwLock<Option<Arc<dyn Recovery>>>>;

/// Writes events to the producer's database; cheap to clone.
#[derive(Clone)]
pub struct Outbox {
    db: Database,
    records: Collection<OutboxRecord>,
    producer: Arc<str>,
    fast_path: mpsc::Sender<Relayed>,
    clock: Arc<AtomicI64>,
    /// Collections whose documents carry events (see the module docs).
    embedded: Arc<RwLock<Vec<String>>>,
    recovery: SharedRecovery,
}

/// One event to enqueue, with its aggregate and optional version.
pub struct Pending<E> {
    pub aggregate: String,
    pub seq: Option<i64>,
    pub data: E,
}

impl Outbox {
    /// The outbox and the relay that drains it; run the relay with
    /// [`OutboxRelay::run`].
    pub fn new(
        db: &Database,
        producer: &str,
        publisher: Publisher,
        instance_id: &str,
        metrics: Metrics,
    ) -> (Self, OutboxRelay) {
        let (tx, rx) = mpsc::channel(4096);
        let records = db.collection::<OutboxRecord>("outbox");
        let embedded = Arc::new(RwLock::new(Vec::new()));
        let recovery: SharedRecovery = Arc::new(RwLock::new(None));
        let outbox = Self {
            db: db.clone(),
            records: records.clone(),
            producer: producer.into(),
            fast_path: tx,
            clock: Arc::new(AtomicI64::new(0)),
            embedded: embedded.clone(),
            recovery: recovery.clone(),
        };
        let relay = OutboxRelay {
            db: db.clone(),
            embedded,
            recovery,
            records,
            leases: db.collection("outbox_lease"),
            publisher,
            instance_id: instance_id.to_owned(),
            fast_path: rx,
            metrics,
        };
        (outbox, relay)
    }

    pub async fn ensure_indexes(&self) -> Result<(), mongodb::error::Error> {
        self.records
            .create_index(IndexModel::builder().keys(doc! { "seq": 1 }).build())
            .await?;
        self.records
            .create_index(
                IndexModel::builder()
                    .keys(doc! { "createdAt": 1 })
                    .options(IndexOptions::builder().build())
                    .build(),
            )
            .await?;
        Ok(())
    }

    /// Registers `collection` as one whose documents carry events, so the
    /// sweep reads it; call at start-up, before any write stages an event
    /// into it. The collection needs [`carrier_index`].
    pub fn embed_in(&self, collection: &str) {
        let mut names = self.embedded.write().unwrap_or_else(|p| p.into_inner());
        if !names.iter().any(|n| n == collection) {
            names.push(collection.to_owned());
        }
    }

    /// Sets what the sweep redoes for each event it relays (see [`Recovery`]).
    pub fn recover_with(&self, recovery: Arc<dyn Recovery>) {
        *self.recovery.write().unwrap_or_else(|p| p.into_inner()) = Some(recovery);
    }

    /// Builds the record of an event that the caller's own write will store
    /// in a document of a collection registered with [`Self::embed_in`].
    pub fn stage<E: EventPayload>(
        &self,
        aggregate: &str,
        correlation_id: Option<&str>,
        data: E,
    ) -> Result<Staged, OutboxError> {
        self.stage_as(new_event_id(), aggregate, correlation_id, data)
    }

    /// [`Self::stage`] for an event whose id the caller took from
    /// [`new_event_id`] beforehand (to record it elsewhere first).
    pub fn stage_as<E: EventPayload>(
        &self,
        id: Uuid,
        aggregate: &str,
        correlation_id: Option<&str>,
        data: E,
    ) -> Result<Staged, OutboxError> {
        let pending = Pending {
            aggregate: aggregate.to_owned(),
            seq: None,
            data,
        };
        Ok(Staged {
            record: self.record_as(id, correlation_id, pending)?,
        })
    }

    /// The write that stored `staged` in document `doc_id` of `collection`
    /// is done: relay it now (or, if this process dies first, the sweep does).
    pub fn committed(&self, staged: Staged, collection: &str, doc_id: &str) {
        self.hand_over(Relayed {
            record: staged.record,
            home: Home::Embedded {
                collection: collection.to_owned(),
                doc_id: doc_id.to_owned(),
            },
        });
    }

    fn next_seq(&self) -> i64 {
        let now = chrono::Utc::now().timestamp_micros();
        let prev = self.clock.fetch_max(now, Ordering::SeqCst);
        if prev >= now {
            self.clock.fetch_add(1, Ordering::SeqCst) + 1
        } else {
            now
        }
    }

    fn record<E: EventPayload>(
        &self,
        correlation_id: Option<&str>,
        p: Pending<E>,
    ) -> Result<OutboxRecord, OutboxError> {
        self.record_as(new_event_id(), correlation_id, p)
    }

    fn record_as<E: EventPayload>(
        &self,
        id: Uuid,
        correlation_id: Option<&str>,
        p: Pending<E>,
    ) -> Result<OutboxRecord, OutboxError> {
        let envelope = Envelope::with_id(
            id,
            &self.producer,
            correlation_id.map(str::to_owned),
            p.data,
        );
        Ok(OutboxRecord {
            id: envelope.id.to_string(),
            aggregate: p.aggregate,
            seq: p.seq.unwrap_or_else(|| self.next_seq()),
            exchange: E::EXCHANGE.base_name().to_owned(),
            routing_key: E::TYPE.to_owned(),
            correlation_id: envelope.correlation_id.clone(),
            body: serde_json::to_string(&envelope)?,
            created_at: DateTime::now(),
            bcc: Vec::new(),
        })
    }

    /// Stores one event; returns its id. Call after the state change is
    /// written and before answering the request.
    pub async fn enqueue<E: EventPayload>(
        &self,
        aggregate: &str,
        correlation_id: Option<&str>,
        data: E,
    ) -> Result<Uuid, OutboxError> {
        let pending = Pending {
            aggregate: aggregate.to_owned(),
            seq: None,
            data,
        };
        let record = self.record(correlation_id, pending)?;
        let id = Uuid::parse_str(&record.id).unwrap_or_default();
        fresh_insert(self.records.insert_one(&record).await)?;
        self.hand_over(Relayed {
            record,
            home: Home::Outbox,
        });
        Ok(id)
    }

    /// Stores one event with the aggregate's version as its order key.
    pub async fn enqueue_versioned<E: EventPayload>(
        &self,
        pending: Pending<E>,
        correlation_id: Option<&str>,
    ) -> Result<Uuid, OutboxError> {
        let record = self.record(correlation_id, pending)?;
        let id = Uuid::parse_str(&record.id).unwrap_or_default();
        fresh_insert(self.records.insert_one(&record).await)?;
        self.hand_over(Relayed {
            record,
            home: Home::Outbox,
        });
        Ok(id)
    }

    fn hand_over(&self, relayed: Relayed) {
        // A full or closed channel only delays the event until the sweep.
        let _ = self.fast_path.try_send(relayed);
    }

    /// Events not yet confirmed by the broker (documents carrying events
    /// count once each).
    pub async fn backlog(&self) -> Result<u64, mongodb::error::Error> {
        let names = embedded_names(&self.embedded);
        backlog(&self.db, &self.records, &names).await
    }
}

/// The index the sweep reads a collection that carries events by (sparse:
/// only documents with unpublished events are in it).
pub fn carrier_index() -> IndexModel {
    IndexModel::builder()
        .keys(doc! { format!("{EMBEDDED_FIELD}.createdAt"): 1 })
        .options(IndexOptions::builder().sparse(true).build())
        .build()
}

fn embedded_names(embedded: &RwLock<Vec<String>>) -> Vec<String> {
    embedded.read().unwrap_or_else(|p| p.into_inner()).clone()
}

/// Marks the relay's commands on other collections (see
/// `shared::storage::RELAY_COMMENT`).
fn relay_comment() -> mongodb::bson::Bson {
    mongodb::bson::Bson::String(shared::storage::RELAY_COMMENT.to_owned())
}

/// `outbox.createdAt` exists: served by the sparse index.
fn carrying() -> Document {
    doc! { format!("{EMBEDDED_FIELD}.createdAt"): { "$gte": DateTime::MIN } }
}

async fn backlog(
    db: &Database,
    records: &Collection<OutboxRecord>,
    embedded: &[String],
) -> Result<u64, mongodb::error::Error> {
    let mut n = records.count_documents(doc! {}).await?;
    for name in embedded {
        n += db
            .collection::<Document>(name)
            .count_documents(carrying())
            .comment(relay_comment())
            .await?;
    }
    Ok(n)
}

/// Publishes what the outbox holds; see the module docs.
pub struct OutboxRelay {
    db: Database,
    embedded: Arc<RwLock<Vec<String>>>,
    recovery: SharedRecovery,
    records: Collection<OutboxRecord>,
    leases: Collection<mongodb::bson::Document>,
    publisher: Publisher,
    instance_id: String,
    fast_path: mpsc::Receiver<Relayed>,
    metrics: Metrics,
}

impl OutboxRelay {
    /// The fast path and the sweep run as two tasks: a sweep (a lease
    /// update and a query) never delays a fresh event. They cannot both
    /// publish a record unless the fast path takes longer than the sweep's
    /// grace period (2 s) over it; consumers deduplicate by event id anyway.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let (_, idle) = mpsc::channel(1);
        let mut fast_path = std::mem::replace(&mut self.fast_path, idle);
        let relay = Arc::new(self);
        let sweeper = {
            let (relay, shutdown) = (relay.clone(), shutdown.clone());
            tokio::spawn(async move {
                let mut sweep = tokio::time::interval(SWEEP_INTERVAL);
                sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        _ = sweep.tick() => relay.sweep().await,
                        _ = shutdown.cancelled() => break,
                    }
                }
            })
        };
        let mut buf = Vec::with_capacity(BATCH);
        loop {
            tokio::select! {
                biased;
                n = fast_path.recv_many(&mut buf, BATCH) => {
                    if n == 0 { break; }
                    let batch = std::mem::take(&mut buf);
                    relay.publish_and_delete(&batch, false).await;
                }
                _ = shutdown.cancelled() => break,
            }
        }
        let _ = sweeper.await;
        // Whatever is left stays in MongoDB for the next sweep (here or on
        // another instance): nothing is lost by stopping.
        tracing::info!("outbox relay stopped");
    }

    /// Publishes in order; deletes what the broker confirmed. Returns
    /// whether everything went.
    /// `wait_for_delete`: the sweep must see its deletes before it queries
    /// again; the fast path need not wait for them.
    async fn publish_and_delete(&self, batch: &[Relayed], wait_for_delete: bool) -> bool {
        let (valid, invalid): (Vec<_>, Vec<_>) =
            batch.iter().partition(|r| r.record.outgoing().is_some());
        for r in invalid {
            tracing::error!(event.id = %r.record.id, exchange = %r.record.exchange, "outbox record names an unknown exchange; left in place");
        }
        let outgoing: Vec<Outgoing> = valid.iter().filter_map(|r| r.record.outgoing()).collect();
        let results = self.publisher.publish_batch(&outgoing).await;
        let mut done = Vec::new();
        let mut all_ok = true;
        for (relayed, result) in valid.iter().zip(results) {
            match result {
                Ok(()) => done.push((*relayed).clone()),
                Err(e) => {
                    all_ok = false;
                    tracing::warn!(event.id = %relayed.record.id, event.type = %relayed.record.routing_key, error = %e, "publish failed; the outbox keeps it");
                }
            }
        }
        if !done.is_empty() {
            let (db, records) = (self.db.clone(), self.records.clone());
            let delete = async move {
                if let Err(e) = forget(&db, &records, &done).await {
                    // Published but still stored: republished later, and consumers deduplicate.
                    tracing::warn!(error = %e, "could not delete published outbox records");
                }
            };
            if wait_for_delete {
                delete.await;
            } else {
                tokio::spawn(delete);
            }
        }
        all_ok
    }

    async fn sweep(&self) {
        if !self.hold_lease().await {
            return;
        }
        loop {
            let cutoff = DateTime::from_millis(
                DateTime::now().timestamp_millis() - SWEEP_GRACE.as_millis() as i64,
            );
            let embedded = embedded_names(&self.embedded);
            let (batch, full) = match self.overdue(cutoff, &embedded).await {
                Ok(found) => found,
                Err(e) => {
                    tracing::warn!(error = %e, "outbox sweep query failed");
                    return;
                }
            };
            if let Ok(n) = backlog(&self.db, &self.records, &embedded).await {
                self.metrics
                    .outbox_backlog
                    .set(i64::try_from(n).unwrap_or(i64::MAX));
            }
            if batch.is_empty() {
                return;
            }
            tracing::info!(count = batch.len(), "relaying outbox backlog");
            let mut batch = batch;
            self.recover(&mut batch).await;
            if !self.publish_and_delete(&batch, true).await || !full {
                return;
            }
        }
    }

    /// Runs the service's [`Recovery`] for each record before it is
    /// published, and puts in the data it replaces. The stored record keeps
    /// its first body: if this publish fails, the next sweep recovers it
    /// again.
    async fn recover(&self, batch: &mut [Relayed]) {
        let recovery = self
            .recovery
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let Some(recovery) = recovery else { return };
        for relayed in batch {
            let mut event = match decode(relayed.record.body.as_bytes()) {
                Ok(event) => event,
                // Published as it is; its consumers park it.
                Err(e) => {
                    tracing::warn!(event.id = %relayed.record.id, error = %e, "outbox record does not decode");
                    continue;
                }
            };
            let Some(data) = recovery.recover(&event).await else {
                continue;
            };
            event.data = data;
            match encode(&event) {
                Ok(body) => relayed.record.body = body,
                Err(e) => {
                    tracing::warn!(event.id = %relayed.record.id, error = %e, "recovered event does not encode; published as stored")
                }
            }
        }
    }

    /// Up to [`BATCH`] records per home older than `cutoff`, merged in `seq`
    /// order; `true` when some home had more.
    async fn overdue(
        &self,
        cutoff: DateTime,
        embedded: &[String],
    ) -> Result<(Vec<Relayed>, bool), mongodb::error::Error> {
        let own: Vec<OutboxRecord> = self
            .records
            .find(doc! { "createdAt": { "$lt": cutoff } })
            .sort(doc! { "seq": 1 })
            .limit(BATCH as i64)
            .await?
            .try_collect()
            .await?;
        let mut full = own.len() == BATCH;
        let mut batch: Vec<Relayed> = own
            .into_iter()
            .map(|record| Relayed {
                record,
                home: Home::Outbox,
            })
            .collect();
        for name in embedded {
            let docs: Vec<Document> = self
                .db
                .collection::<Document>(name)
                .find(doc! { format!("{EMBEDDED_FIELD}.createdAt"): { "$lt": cutoff } })
                .projection(doc! { EMBEDDED_FIELD: 1 })
                .comment(relay_comment())
                .limit(BATCH as i64)
                .await?
                .try_collect()
                .await?;
            full |= docs.len() == BATCH;
            for d in docs {
                batch.extend(
                    carried(name, &d)
                        .into_iter()
                        .filter(|r| r.record.created_at < cutoff),
                );
            }
        }
        batch.sort_by_key(|r| r.record.seq);
        Ok((batch, full))
    }

    /// One relay sweeps at a time, so the backlog goes out in one order.
    async fn hold_lease(&self) -> bool {
        let now = DateTime::now();
        let until = DateTime::from_millis(now.timestamp_millis() + LEASE.as_millis() as i64);
        let result = self
            .leases
            .update_one(
                doc! { "_id": "relay", "$or": [ { "holder": &self.instance_id }, { "expiresAt": { "$lt": now } } ] },
                doc! { "$set": { "holder": &self.instance_id, "expiresAt": until } },
            )
            .upsert(true)
            .await;
        match result {
            Ok(_) => true,
            Err(e) if is_duplicate_key(&e) => false,
            Err(e) => {
                tracing::debug!(error = %e, "outbox lease unavailable");
                false
            }
        }
    }
}

/// The records that document `d` of `collection` carries.
fn carried(collection: &str, d: &Document) -> Vec<Relayed> {
    let Ok(doc_id) = d.get_str("_id") else {
        tracing::error!(
            collection,
            "a document carrying events has no string _id; left in place"
        );
        return Vec::new();
    };
    let entries = d
        .get_array(EMBEDDED_FIELD)
        .map(|a| a.as_slice())
        .unwrap_or_default();
    entries
        .iter()
        .filter_map(|entry| match mongodb::bson::from_bson::<OutboxRecord>(entry.clone()) {
            Ok(record) => Some(Relayed {
                record,
                home: Home::Embedded {
                    collection: collection.to_owned(),
                    doc_id: doc_id.to_owned(),
                },
            }),
            Err(e) => {
                tracing::error!(collection, doc_id, error = %e, "unreadable embedded outbox entry; left in place");
                None
            }
        })
        .collect()
}

/// Removes published records from wherever they wait.
async fn forget(
    db: &Database,
    records: &Collection<OutboxRecord>,
    done: &[Relayed],
) -> Result<(), mongodb::error::Error> {
    let own: Vec<&str> = done
        .iter()
        .filter(|r| matches!(r.home, Home::Outbox))
        .map(|r| r.record.id.as_str())
        .collect();
    if !own.is_empty() {
        records.delete_many(doc! { "_id": { "$in": own } }).await?;
    }
    let mut by_collection: std::collections::BTreeMap<&str, (Vec<&str>, Vec<&str>)> =
        std::collections::BTreeMap::new();
    for r in done {
        if let Home::Embedded { collection, doc_id } = &r.home {
            let (docs, events) = by_collection.entry(collection).or_default();
            docs.push(doc_id);
            events.push(&r.record.id);
        }
    }
    for (collection, (docs, events)) in by_collection {
        db.collection::<Document>(collection)
            .update_many(
                doc! { "_id": { "$in": docs } },
                doc! { "$pull": { EMBEDDED_FIELD: { "_id": { "$in": events } } } },
            )
            .comment(relay_comment())
            .await?;
    }
    Ok(())
}

/// E11000: the write lost a race on a unique key.
/// An unordered `insert_many` that failed only because some documents
/// existed already (a replayed event): every other document went in.
pub fn only_duplicates(e: &mongodb::error::Error) -> bool {
    use mongodb::error::ErrorKind;
    match &*e.kind {
        ErrorKind::InsertMany(m) => {
            m.write_concern_error.is_none()
                && m.write_errors
                    .as_ref()
                    .is_some_and(|errs| errs.iter().all(|w| w.code == 11000))
        }
        _ => is_duplicate_key(e),
    }
}

/// A duplicate key on `_id` itself. When the `_id` was generated just
/// before the insert, this can only be the same insert applied twice: the
/// driver retried a write whose first attempt had succeeded, against a
/// server that does not deduplicate retried writes.
pub fn is_duplicate_id(e: &mongodb::error::Error) -> bool {
    is_duplicate_key(e) && e.to_string().contains("index: _id_ ")
}

/// The result of inserting a document with a freshly generated `_id`: a
/// duplicate on `_id` is our own earlier attempt, so the insert is done.
pub fn fresh_insert<T>(result: mongodb::error::Result<T>) -> mongodb::error::Result<()> {
    match result {
        Ok(_) => Ok(()),
        Err(e) if is_duplicate_id(&e) => {
            tracing::debug!("insert retried by the driver had already been applied");
            Ok(())
        }
        Err(e) => Err(e),
    }
}

pub fn is_duplicate_key(e: &mongodb::error::Error) -> bool {
    use mongodb::error::{ErrorKind, WriteFailure};
    match &*e.kind {
        ErrorKind::Write(WriteFailure::WriteError(w)) => w.code == 11000,
        ErrorKind::Command(c) => c.code == 11000,
        ErrorKind::InsertMany(m) => m
            .write_errors
            .as_ref()
            .is_some_and(|errs| errs.iter().any(|w| w.code == 11000)),
        _ => e.to_string().contains("E11000"),
    }
}
