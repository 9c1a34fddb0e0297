//! Start-up: storage, messaging, HTTP. `Application::build` binds (port 0
//! picks a free port, for tests); `run_until_stopped` serves until the
//! shutdown token is cancelled, then drains.

use std::net::TcpListener;

use anyhow::Context;
use secrecy::ExposeSecret;
use shared::auth::TokenVerifier;
use shared::health::Readiness;
use shared::metrics::Metrics;
use shared::server::{serve, HttpParts, Running};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::routes;

pub struct Application(Running);

impl Application {
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let common = &config.common;
        let shutdown = CancellationToken::new();
        let metrics = Metrics::new(crate::SERVICE);
        let db = shared::storage::mongo(
            &common.mongodb_uri,
            &common.mongodb_database,
            crate::SERVICE,
        )
        .await?;
        let redis = shared::storage::redis(&common.redis_url)?;
        let (messaging, tasks) = broker::Messaging::start(
            &db,
            broker::MessagingConfig {
                amqp_url: common.amqp_url.expose_secret(),
                prefix: &common.amqp_prefix,
                instance_id: &common.instance_id,
                producer: crate::SERVICE,
            },
            metrics.clone(),
            &shutdown,
        )
        .await;
        let public_pem = std::fs::read_to_string(&common.jwt_public_key_file)
            .context("read jwt_public_key_file")?;
        let verifier = TokenVerifier::new(
            &[(common.jwt_key_id.clone(), public_pem)],
            &common.jwt_issuer,
            &common.jwt_audience,
        )
        .context("jwt_public_key_file is not an Ed25519 public key")?;

        let listener = TcpListener::bind((common.http_host.as_str(), common.http_port))
            .with_context(|| format!("bind {}:{}", common.http_host, common.http_port))?;
        let port = listener.local_addr()?.port();
        let parts = HttpParts {
            metrics: metrics.clone(),
            readiness: Readiness {
                mongo: db.clone(),
                redis: redis.clone(),
                broker: messaging.broker.probe(),
                metrics,
            },
            verifier,
            allowed_origins: common.allowed_origins.clone(),
            trusted_proxies: common.trusted_proxies(),
            shutdown_timeout_secs: common.shutdown_timeout_secs,
        };
        let server = serve(listener, parts, routes::configure)?;
        tracing::info!(port, instance = %common.instance_id, "listening");
        Ok(Self(Running {
            port,
            server,
            shutdown,
            tasks,
        }))
    }

    pub fn port(&self) -> u16 {
        self.0.port
    }

    /// Cancelling it stops the service gracefully.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.0.shutdown.clone()
    }

    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.0.run_until_stopped().await
    }
}
