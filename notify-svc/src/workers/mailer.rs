//! Sends pending mail jobs, one at a time per instance, each under a lease;
//! SMTP failures back off exponentially (2 s doubling, at most 10 min) and
//! give up after 10 attempts.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::domain::mail::Mailer;
use crate::storage::mail_jobs::MailJobs;

const LEASE_MS: i64 = 60_000;
const MAX_ATTEMPTS: u32 = 10;

pub struct MailWorker {
    pub jobs: MailJobs,
    pub mailer: Mailer,
    pub wakeup: Arc<Notify>,
    pub metrics: shared::metrics::Metrics,
}

impl MailWorker {
    pub async fn run(self, shutdown: CancellationToken) {
        while !shutdown.is_cancelled() {
            match self.jobs.claim(LEASE_MS).await {
                Ok(Some(job)) => {
                    let sent = self.mailer.send(&job.mail, &job.id).await;
                    let result = if sent.is_ok() { "sent" } else { "failed" };
                    self.metrics.mail.with_label_values(&[result]).inc();
                    match sent {
                        Ok(()) => {
                            if let Err(e) = self.jobs.sent(&job.id).await {
                                tracing::warn!(error = %e, job = %job.id, "sent mail not recorded");
                            }
                        }
                        Err(e) => {
                            let backoff = 2_000i64
                                .saturating_mul(1 << job.attempts.min(9))
                                .min(600_000);
                            tracing::warn!(error = %e, job = %job.id, "mail not sent; will retry");
                            if let Err(e) = self
                                .jobs
                                .failed(&job, backoff, MAX_ATTEMPTS, &e.to_string())
                                .await
                            {
                                tracing::warn!(error = %e, "mail failure not recorded");
                            }
                        }
                    }
                    continue;
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "mail jobs unavailable"),
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = self.wakeup.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }
}
