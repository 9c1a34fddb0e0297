//! Prometheus metrics, one registry per application so tests that run
//! several apps in one process read their own numbers.

use std::sync::Arc;

use actix_web::{http::header, HttpResponse};
pub use prometheus::IntCounter;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

/// Every metric a service exports. Cheap to clone.
#[derive(Clone)]
pub struct Metrics(Arc<Inner>);

pub struct Inner {
    pub registry: Registry,
    /// `http_request_duration_seconds{method, route, status}`.
    pub http_duration: HistogramVec,
    /// `cache_requests_total{cache, result="hit"|"miss"|"error"}`.
    pub cache_requests: IntCounterVec,
    /// `db_operations_total{collection, operation}`.
    pub db_operations: IntCounterVec,
    /// `events_published_total{type}`.
    pub events_published: IntCounterVec,
    /// `events_consumed_total{queue, outcome="ok"|"duplicate"|"retried"|"deferred"|"dead_lettered"|"dropped"}`.
    pub events_consumed: IntCounterVec,
    /// `outbox_backlog`: events committed but not yet confirmed by the broker.
    pub outbox_backlog: IntGauge,
    /// `websocket_connections`.
    pub ws_connections: IntGauge,
    /// `push_attempts_total{result="delivered"|"gone"|"rejected"|"retry"}`.
    pub push_attempts: IntCounterVec,
    /// `mail_total{result="sent"|"failed"}` (a failed send is retried later).
    pub mail: IntCounterVec,
    /// `dependency_up{dependency}`: 1 when the last check reached it (every
    /// 5 s in the background, and on each readiness request).
    pub dependency_up: IntGaugeVec,
    /// `websocket_frames_total{direction="in"|"out"}`: text frames, read
    /// and written (resolved once: counted per frame).
    pub ws_frames_in: IntCounter,
    pub ws_frames_out: IntCounter,
    /// `websocket_drops_total{reason}`: `slow_consumer` (a socket closed
    /// because its outbound queue overflowed: what it held is not sent),
    /// `rate_limited` (a client frame refused), `oversized` (a frame over
    /// 64 KiB closed its socket).
    pub ws_drops: IntCounterVec,
    /// `rate_limit_refusals_total{limit}`: requests and frames refused by a
    /// named limit (`login_ip`, `message_send`, `ws_frames`, ...).
    pub rate_limit_refusals: IntCounterVec,
    /// `consumer_lag_seconds{queue}`: from an event's `occurredAt` (its
    /// commit) to the start of its handling by a consumer.
    pub consumer_lag: HistogramVec,
}

impl std::ops::Deref for Metrics {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl Metrics {
    pub fn new(service: &str) -> Self {
        let registry = Registry::new_custom(
            None,
            Some([("service".to_string(), service.to_string())].into()),
        )
        .unwrap_or_default();
        let http_duration = HistogramVec::new(
            HistogramOpts::new("http_request_duration_seconds", "HTTP request latency").buckets(
                vec![
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                ],
            ),
            &["method", "route", "status"],
        );
        let counter = |name: &str, help: &str, labels: &[&str]| {
            IntCounterVec::new(Opts::new(name, help), labels)
        };
        let build = || -> prometheus::Result<Inner> {
            let ws_frames = counter(
                "websocket_frames_total",
                "WebSocket text frames, by direction",
                &["direction"],
            )?;
            let inner = Inner {
                http_duration: http_duration?,
                cache_requests: counter(
                    "cache_requests_total",
                    "Cache lookups",
                    &["cache", "result"],
                )?,
                db_operations: counter(
                    "db_operations_total",
                    "MongoDB operations",
                    &["collection", "operation"],
                )?,
                events_published: counter(
                    "events_published_total",
                    "Events confirmed by the broker",
                    &["type"],
                )?,
                events_consumed: counter(
                    "events_consumed_total",
                    "Deliveries handled, by outcome",
                    &["queue", "outcome"],
                )?,
                outbox_backlog: IntGauge::new("outbox_backlog", "Events waiting in the outbox")?,
                push_attempts: counter(
                    "push_attempts_total",
                    "Web Push sends, by result",
                    &["result"],
                )?,
                mail: counter("mail_total", "SMTP sends, by result", &["result"])?,
                ws_connections: IntGauge::new(
                    "websocket_connections",
                    "Open WebSocket connections",
                )?,
                dependency_up: IntGaugeVec::new(
                    Opts::new(
                        "dependency_up",
                        "1 when the dependency answered the last check",
                    ),
                    &["dependency"],
                )?,
                ws_frames_in: ws_frames.with_label_values(&["in"]),
                ws_frames_out: ws_frames.with_label_values(&["out"]),
                ws_drops: counter(
                    "websocket_drops_total",
                    "WebSocket frames dropped or sockets closed for load, by reason",
                    &["reason"],
                )?,
                rate_limit_refusals: counter(
                    "rate_limit_refusals_total",
                    "Requests and frames refused by a rate limit, by limit",
                    &["limit"],
                )?,
                consumer_lag: HistogramVec::new(
                    HistogramOpts::new(
                        "consumer_lag_seconds",
                        "From an event's commit to the start of its handling",
                    )
                    .buckets(vec![
                        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                        300.0,
                    ]),
                    &["queue"],
                )?,
                registry,
            };
            inner.registry.register(Box::new(ws_frames.clone()))?;
            inner.registry.register(Box::new(inner.ws_drops.clone()))?;
            inner
                .registry
                .register(Box::new(inner.rate_limit_refusals.clone()))?;
            inner
                .registry
                .register(Box::new(inner.consumer_lag.clone()))?;
            inner
                .registry
                .register(Box::new(inner.http_duration.clone()))?;
            inner
                .registry
                .register(Box::new(inner.cache_requests.clone()))?;
            inner
                .registry
                .register(Box::new(inner.db_operations.clone()))?;
            inner
                .registry
                .register(Box::new(inner.events_published.clone()))?;
            inner
                .registry
                .register(Box::new(inner.events_consumed.clone()))?;
            inner
                .registry
                .register(Box::new(inner.outbox_backlog.clone()))?;
            inner
                .registry
                .register(Box::new(inner.ws_connections.clone()))?;
            inner
                .registry
                .register(Box::new(inner.dependency_up.clone()))?;
            inner
                .registry
                .register(Box::new(inner.push_attempts.clone()))?;
            inner.registry.register(Box::new(inner.mail.clone()))?;
            // process_cpu_seconds_total, process_resident_memory_bytes,
            // process_open_fds, process_max_fds, process_threads, ... (Linux).
            inner.registry.register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ))?;
            Ok(inner)
        };
        match build() {
            Ok(inner) => Self(Arc::new(inner)),
            // Metric names are constants: failing here is a programming error
            // caught by the first test run.
            Err(e) => panic!("metric registration failed: {e}"),
        }
    }

    pub fn db(&self, collection: &str, operation: &str) {
        self.db_operations
            .with_label_values(&[collection, operation])
            .inc();
    }

    /// A request or frame refused by the limit named `limit`.
    pub fn refused(&self, limit: &str) {
        self.rate_limit_refusals.with_label_values(&[limit]).inc();
    }

    pub fn cache(&self, cache: &str, result: CacheResult) {
        self.cache_requests
            .with_label_values(&[cache, result.as_str()])
            .inc();
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let encoder = TextEncoder::new();
        if let Err(e) = encoder.encode(&self.registry.gather(), &mut buf) {
            tracing::error!(error = %e, "encoding metrics failed");
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

#[derive(Debug, Clone, Copy)]
pub enum CacheResult {
    Hit,
    Miss,
    Error,
}

impl CacheResult {
    fn as_str(self) -> &'static str {
        match self {
            Self::Hit => "hit",
            Self::Miss => "miss",
            Self::Error => "error",
        }
    }
}

/// `GET /metrics`.
pub async fn metrics_endpoint(metrics: actix_web::web::Data<Metrics>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        ))
        .body(metrics.render())
}
