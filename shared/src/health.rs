//! `/health/live` (the process answers) and `/health/ready` (per-dependency
//! checks). MongoDB down makes a service not ready (503); Redis or RabbitMQ
//! down only degrades it, since it still answers correctly without them.

use std::sync::Arc;
use std::time::Duration;

use crate::redis_link::Redis;
use actix_web::{web, HttpResponse};
use mongodb::bson::doc;
use mongodb::Database;
use serde::Serialize;

use crate::metrics::Metrics;

/// Reports whether the broker connection is up; supplied by the `broker` crate.
pub type BrokerProbe = Arc<dyn Fn() -> bool + Send + Sync>;

/// What `/health/ready` checks.
#[derive(Clone)]
pub struct Readiness {
    pub mongo: Database,
    pub redis: Redis,
    pub broker: BrokerProbe,
    pub metrics: Metrics,
}

#[derive(Serialize, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "lowercase")]
pub enum Check {
    Ok,
    Down,
}

#[derive(Serialize)]
struct Checks {
    mongodb: Check,
    redis: Check,
    rabbitmq: Check,
}

#[derive(Serialize)]
struct ReadyBody {
    status: &'static str,
    checks: Checks,
}

const CHECK_TIMEOUT: Duration = Duration::from_millis(1500);

impl Readiness {
    pub async fn check_mongo(&self) -> Check {
        let ping = self.mongo.run_command(doc! { "ping": 1 });
        match tokio::time::timeout(CHECK_TIMEOUT, ping).await {
            Ok(Ok(_)) => Check::Ok,
            _ => Check::Down,
        }
    }

    pub async fn check_redis(&self) -> Check {
        let ping = async {
            let mut conn = self.redis.get().await.ok()?;
            redis::cmd("PING")
                .query_async::<String>(&mut conn)
                .await
                .ok()
        };
        match tokio::time::timeout(CHECK_TIMEOUT, ping).await {
            Ok(Some(_)) => Check::Ok,
            _ => Check::Down,
        }
    }
}

pub async fn live() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "status": "ok" }))
}

/// How often `dependency_up` is refreshed without anyone asking.
const WATCH_INTERVAL: Duration = Duration::from_secs(5);

impl Readiness {
    /// Checks every dependency and records the result in `dependency_up`.
    async fn check_all(&self) -> Checks {
        let (mongodb, redis) = tokio::join!(self.check_mongo(), self.check_redis());
        let rabbitmq = if (self.broker)() {
            Check::Ok
        } else {
            Check::Down
        };
        for (name, check) in [
            ("mongodb", mongodb),
            ("redis", redis),
            ("rabbitmq", rabbitmq),
        ] {
            self.metrics
                .dependency_up
                .with_label_values(&[name])
                .set(i64::from(check == Check::Ok));
        }
        Checks {
            mongodb,
            redis,
            rabbitmq,
        }
    }

    /// Keeps `dependency_up` current (every 5 s) until `shutdown`, so that an
    /// outage shows in the metrics whether or not anything polls readiness.
    pub async fn watch(self, shutdown: tokio_util::sync::CancellationToken) {
        let mut tick = tokio::time::interval(WATCH_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => { self.check_all().await; }
                _ = shutdown.cancelled() => return,
            }
        }
    }
}

pub async fn ready(readiness: web::Data<Readiness>) -> HttpResponse {
    let Checks {
        mongodb,
        redis,
        rabbitmq,
    } = readiness.check_all().await;
    let status = match (mongodb, redis, rabbitmq) {
        (Check::Down, _, _) => "down",
        (Check::Ok, Check::Ok, Check::Ok) => "ok",
        _ => "degraded",
    };
    let body = ReadyBody {
        status,
        checks: Checks {
            mongodb,
            redis,
            rabbitmq,
        },
    };
    if status == "down" {
        HttpResponse::ServiceUnavailable().json(body)
    } else {
        HttpResponse::Ok().json(body)
    }
}

/// Registers the health and metrics routes every service exposes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/health/live", web::get().to(live))
        .route("/health/ready", web::get().to(ready))
        .route("/metrics", web::get().to(crate::metrics::metrics_endpoint));
}
