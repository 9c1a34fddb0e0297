//! Start-up: storage, messaging, HTTP. `Application::build` binds (port 0
//! picks a free port, for tests); `run_until_stopped` serves until the
//! shutdown token is cancelled, then drains.

use broker::bootstrap::Infra;
use shared::server::Running;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::routes::{self, AppState};
use crate::storage::preferences::PreferencesStore;

pub struct Application(Running);

impl Application {
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let common = &config.common;
        let infra = Infra::start(common, crate::SERVICE).await?;
        let verifier = infra.verifier(common)?;
        let state = AppState {
            preferences: PreferencesStore::new(&infra.db, infra.metrics.clone()),
        };
        Ok(Self(infra.serve(common, verifier, move |cfg| {
            routes::configure(cfg, &state)
        })?))
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
