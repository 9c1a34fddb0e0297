//! Start-up: storage, messaging, HTTP. `Application::build` binds (port 0
//! picks a free port, for tests); `run_until_stopped` serves until the
//! shutdown token is cancelled, then drains.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use broker::bootstrap::Infra;
use shared::cache::Cache;
use shared::ratelimit::FailureLimiter;
use shared::server::Running;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::domain::password::PasswordHasher;
use crate::domain::secrets::SecretBox;
use crate::domain::tokens::TokenIssuer;
use crate::routes::{self, IpLimits};
use crate::state::AppState;
use crate::storage::devices::DeviceTokens;
use crate::storage::sessions::Sessions;
use crate::storage::users::Users;

pub struct Application(Running);

impl Application {
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let common = &config.common;
        let settings = &config.auth;
        let mut infra = Infra::start(common, crate::SERVICE).await?;
        let private_pem = std::fs::read_to_string(&settings.jwt_private_key_file)
            .context("read jwt_private_key_file")?;
        let totp_key = std::fs::read_to_string(&settings.totp_encryption_key_file)
            .context("read totp_encryption_key_file")?;

        let cache = Cache::new(
            infra.redis.clone(),
            &common.redis_prefix,
            infra.metrics.clone(),
        );
        for carrier in crate::events::CARRIERS {
            infra.messaging.outbox.embed_in(carrier);
        }
        let users = Users::new(&infra.db, cache.clone());
        let sessions = Sessions::new(&infra.db, cache);
        infra
            .messaging
            .outbox
            .recover_with(Arc::new(crate::events::CacheRecovery {
                users: users.clone(),
                sessions: sessions.clone(),
            }));
        let devices = DeviceTokens::new(&infra.db);
        infra.tasks.push(tokio::spawn(ensure_indexes(
            users.clone(),
            sessions.clone(),
            devices.clone(),
            infra.shutdown.clone(),
        )));
        let verifier = infra
            .verifier(common)?
            .with_revocations(Arc::new(sessions.clone()));

        let window = Duration::from_secs(15 * 60);
        let redis = &infra.redis;
        let state = AppState {
            users,
            sessions,
            devices,
            hasher: PasswordHasher::new(settings.hash_concurrency, Duration::from_secs(2))?,
            issuer: TokenIssuer::new(
                &private_pem,
                &infra.public_pem,
                &common.jwt_key_id,
                &common.jwt_issuer,
                &common.jwt_audience,
            )?,
            secrets: SecretBox::from_base64_key(&totp_key).context("totp_encryption_key_file")?,
            outbox: infra.messaging.outbox.clone(),
            login_failures: FailureLimiter::new(
                redis.clone(),
                &common.redis_prefix,
                "login",
                settings.login_failures_per_account,
                window,
            )
            .counted(&infra.metrics),
            device_failures: FailureLimiter::new(
                redis.clone(),
                &common.redis_prefix,
                "device",
                settings.login_failures_per_device,
                window,
            )
            .counted(&infra.metrics),
            mfa_failures: FailureLimiter::new(
                redis.clone(),
                &common.redis_prefix,
                "mfa",
                settings.mfa_failures_per_account,
                window,
            )
            .counted(&infra.metrics),
            verification_resends: FailureLimiter::new(
                redis.clone(),
                &common.redis_prefix,
                "verify-resend",
                settings.verification_resends_per_hour,
                Duration::from_secs(3600),
            )
            .counted(&infra.metrics),
            trusted_proxies: common.trusted_proxies(),
        };
        let ip_limits = IpLimits::new(&state, settings, &infra.metrics)?;
        let running = infra.serve(common, verifier, move |cfg| {
            routes::configure(cfg, &state, &ip_limits)
        })?;
        Ok(Self(running))
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

/// Unique indexes must exist before two registrations can race; MongoDB may
/// still be starting, so keep trying.
async fn ensure_indexes(
    users: Users,
    sessions: Sessions,
    devices: DeviceTokens,
    shutdown: CancellationToken,
) {
    loop {
        match (
            users.ensure_indexes().await,
            sessions.ensure_indexes().await,
            devices.ensure_indexes().await,
        ) {
            (Ok(()), Ok(()), Ok(())) => return,
            (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
                tracing::warn!(error = %e, "indexes not created yet; retrying")
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
    }
}
