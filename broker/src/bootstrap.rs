//! What every service starts with, in one place: metrics, MongoDB, Redis,
//! messaging (connection keeper, publisher, outbox relay), the token
//! verifier, and the HTTP server with the common stack. A service's own
//! `startup` adds its state and routes.

use std::net::TcpListener;

use anyhow::Context;
use mongodb::Database;
use secrecy::ExposeSecret;
use shared::auth::TokenVerifier;
use shared::config::CommonConfig;
use shared::health::Readiness;
use shared::metrics::Metrics;
use shared::redis_link::Redis;
use shared::server::{serve, HttpParts, Running};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::messaging::{Messaging, MessagingConfig};

pub struct Infra {
    pub service: &'static str,
    pub shutdown: CancellationToken,
    pub metrics: Metrics,
    pub db: Database,
    pub redis: Redis,
    pub messaging: Messaging,
    /// Background work (relay, keeper, consumers) awaited on shutdown.
    pub tasks: Vec<JoinHandle<()>>,
    /// PEM of the token public key.
    pub public_pem: String,
}

impl Infra {
    pub async fn start(common: &CommonConfig, service: &'static str) -> anyhow::Result<Self> {
        let shutdown = CancellationToken::new();
        let metrics = Metrics::new(service);
        let db = shared::storage::mongo(
            &common.mongodb_uri,
            &common.mongodb_database,
            service,
            Some(metrics.clone()),
        )
        .await?;
        let redis = shared::storage::redis(&common.redis_url)?;
        let (messaging, tasks) = Messaging::start(
            &db,
            MessagingConfig {
                amqp_url: common.amqp_url.expose_secret(),
                prefix: &common.amqp_prefix,
                instance_id: &common.instance_id,
                producer: service,
                queue_type: crate::topology::QueueType::parse(&common.amqp_queue_type)
                    .unwrap_or_default(),
                queue_expires: (common.amqp_queue_expires_secs > 0)
                    .then(|| std::time::Duration::from_secs(common.amqp_queue_expires_secs)),
            },
            metrics.clone(),
            &shutdown,
        )
        .await;
        let public_pem = std::fs::read_to_string(&common.jwt_public_key_file)
            .context("read jwt_public_key_file")?;
        Ok(Self {
            service,
            shutdown,
            metrics,
            db,
            redis,
            messaging,
            tasks,
            public_pem,
        })
    }

    /// Verifies access tokens with the configured public key.
    pub fn verifier(&self, common: &CommonConfig) -> anyhow::Result<TokenVerifier> {
        TokenVerifier::new(
            &[(common.jwt_key_id.clone(), self.public_pem.clone())],
            &common.jwt_issuer,
            &common.jwt_audience,
        )
        .context("jwt_public_key_file is not an Ed25519 public key")
    }

    /// Binds and starts serving; the service's `routes` come after the common ones.
    pub fn serve<F>(
        self,
        common: &CommonConfig,
        verifier: TokenVerifier,
        routes: F,
    ) -> anyhow::Result<Running>
    where
        F: Fn(&mut actix_web::web::ServiceConfig) + Send + Clone + 'static,
    {
        let listener = TcpListener::bind((common.http_host.as_str(), common.http_port))
            .with_context(|| format!("bind {}:{}", common.http_host, common.http_port))?;
        let port = listener.local_addr()?.port();
        let readiness = Readiness {
            mongo: self.db.clone(),
            redis: self.redis.clone(),
            broker: self.messaging.broker.probe(),
            metrics: self.metrics.clone(),
        };
        let mut tasks = self.tasks;
        tasks.push(tokio::spawn(readiness.clone().watch(self.shutdown.clone())));
        let parts = HttpParts {
            metrics: self.metrics.clone(),
            readiness,
            verifier,
            allowed_origins: common.allowed_origins.clone(),
            trusted_proxies: common.trusted_proxies(),
            shutdown_timeout_secs: common.shutdown_timeout_secs,
        };
        let server = serve(listener, parts, routes)?;
        tracing::info!(service = self.service, port, instance = %common.instance_id, "listening");
        Ok(Running {
            port,
            server,
            shutdown: self.shutdown,
            tasks,
        })
    }
}
