//! Start-up: storage, the two event consumers, the digest and mail workers,
//! HTTP. `Application::build` binds (port 0 picks a free port, for tests);
//! `run_until_stopped` serves until the shutdown token is cancelled, then
//! drains.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use broker::bootstrap::Infra;
use broker::consumer::Source;
use broker::topology::{NOTIFY_SVC_AUTH, NOTIFY_SVC_CHAT};
use broker::{Consumer, ProcessedEvents, RetrySchedule};
use shared::cache::Cache;
use shared::revocations::Revocations;
use shared::server::Running;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::domain::mail::Mailer;
use crate::domain::notifier::Notifier;
use crate::domain::push::{EndpointPolicy, PushSender};
use crate::events::NotifyHandler;
use crate::routes::{self, AppState};
use crate::storage::digests::Digests;
use crate::storage::mail_jobs::MailJobs;
use crate::storage::notifications::Notifications;
use crate::storage::preferences::PreferencesStore;
use crate::storage::replica::Replica;
use crate::storage::subscriptions::Subscriptions;
use crate::workers::digest::DigestWorker;
use crate::workers::mailer::MailWorker;

/// Chat events each notify-svc instance handles at once (of its prefetch
/// of 32): a push endpoint that takes its whole 10 s timeout holds one
/// slot, and everyone else's notifications go on. Chat events are handled
/// in any order (competing consumers see them so anyway). Auth events stay
/// one at a time: a user's verification and the security event right
/// after it must be seen in that order by one instance.
pub const CHAT_CONCURRENCY: usize = 16;

pub struct Application(Running);

impl Application {
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let common = &config.common;
        let settings = &config.notify;
        let mut infra = Infra::start(common, crate::SERVICE).await?;
        let db = infra.db.clone();
        let cache = Cache::new(
            infra.redis.clone(),
            &common.redis_prefix,
            infra.metrics.clone(),
        );
        let vapid_pem = std::fs::read_to_string(&settings.vapid_private_key_file)
            .context("read vapid_private_key_file")?;
        let push = PushSender::new(
            &vapid_pem,
            &settings.vapid_subject,
            EndpointPolicy {
                allow_loopback_http: settings.dev_allow_loopback_push,
            },
        )?;
        let mailer = Mailer::new(&settings.smtp_url, &settings.mail_from)?;
        let mail_wakeup = Arc::new(Notify::new());
        let notifier = Notifier {
            replica: Replica::new(&db),
            preferences: PreferencesStore::new(&db, cache),
            notifications: Notifications::new(&db),
            subscriptions: Subscriptions::new(&db),
            digests: Digests::new(&db),
            mail_jobs: MailJobs::new(&db),
            push: push.clone(),
            mail_wakeup: mail_wakeup.clone(),
            public_url: settings.public_url.clone(),
            metrics: infra.metrics.clone(),
        };
        let shutdown = infra.shutdown.clone();
        infra.tasks.push(tokio::spawn(ensure_indexes(
            notifier.clone(),
            shutdown.clone(),
        )));

        // Sessions revoked at auth-svc: refused here within seconds, even
        // without Redis (recorded by the auth consumer, polled every 2 s).
        let revocations = Revocations::new(&db);
        infra
            .tasks
            .push(tokio::spawn(revocations.clone().run_sync(shutdown.clone())));

        let schedule = if settings.retry_schedule == "fast" {
            RetrySchedule::fast()
        } else {
            RetrySchedule::standard()
        };
        for queue in [NOTIFY_SVC_CHAT, NOTIFY_SVC_AUTH] {
            let consumer = Consumer::new(
                infra.messaging.broker.clone(),
                infra.messaging.publisher.clone(),
                Source::Durable(queue),
                Arc::new(NotifyHandler {
                    notifier: notifier.clone(),
                    revocations: revocations.clone(),
                }),
                infra.metrics.clone(),
            )
            .with_schedule(schedule.clone())
            .with_concurrency(if queue.base_name == NOTIFY_SVC_CHAT.base_name {
                CHAT_CONCURRENCY
            } else {
                1
            })
            .with_idempotency(ProcessedEvents::new(&db));
            infra
                .tasks
                .push(tokio::spawn(consumer.run(shutdown.clone())));
        }
        let digests = DigestWorker {
            digests: notifier.digests.clone(),
            mail_jobs: notifier.mail_jobs.clone(),
            replica: notifier.replica.clone(),
            preferences: notifier.preferences.clone(),
            instance: common.instance_id.clone(),
            poll: Duration::from_millis(settings.digest_poll_ms),
            mail_wakeup: mail_wakeup.clone(),
        };
        infra
            .tasks
            .push(tokio::spawn(digests.run(shutdown.clone())));
        let mail = MailWorker {
            jobs: notifier.mail_jobs.clone(),
            mailer,
            wakeup: mail_wakeup,
            metrics: infra.metrics.clone(),
        };
        infra.tasks.push(tokio::spawn(mail.run(shutdown.clone())));

        let verifier = infra
            .verifier(common)?
            .with_revocations(Arc::new(revocations));
        let state = AppState {
            preferences: notifier.preferences.clone(),
            notifications: notifier.notifications.clone(),
            subscriptions: notifier.subscriptions.clone(),
            push,
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

async fn ensure_indexes(n: Notifier, shutdown: CancellationToken) {
    loop {
        let result = async {
            n.notifications.ensure_indexes().await?;
            n.subscriptions.ensure_indexes().await?;
            n.digests.ensure_indexes().await?;
            n.mail_jobs.ensure_indexes().await
        }
        .await;
        match result {
            Ok(()) => return,
            Err(e) => tracing::warn!(error = %e, "indexes not created yet; retrying"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
    }
}
