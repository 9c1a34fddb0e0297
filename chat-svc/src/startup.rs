//! Start-up: storage, messaging, consumers, the WebSocket hub, HTTP.
//! `Application::build` binds (port 0 picks a free port, for tests);
//! `run_until_stopped` serves until the shutdown token is cancelled, then
//! closes sockets with 1001 and drains.

use std::sync::Arc;
use std::time::Duration;

use broker::bootstrap::Infra;
use broker::consumer::Source;
use broker::topology::CHAT_SVC_USERS;
use broker::{Consumer, ProcessedEvents};
use shared::cache::Cache;
use shared::ratelimit::FailureLimiter;
use shared::server::Running;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::domain::service::ChatService;
use crate::events::fanout::FanoutHandler;
use crate::events::recovery::SweepRecovery;
use crate::events::replica::ReplicaHandler;
use crate::realtime::hub::Hub;
use crate::realtime::presence::PresenceTracker;
use crate::realtime::routes::Routes;
use crate::realtime::socket::Realtime;
use crate::routes::{self, AppState};
use crate::storage::blocks::Blocks;
use crate::storage::chats::Chats;
use crate::storage::messages::Messages;
use crate::storage::timeline::Timeline;
use crate::storage::users::Users;
use shared::revocations::Revocations;

pub struct Application(Running);

impl Application {
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let common = &config.common;
        let mut infra = Infra::start(common, crate::SERVICE).await?;
        let metrics = infra.metrics.clone();
        let db = infra.db.clone();
        let users = Users::new(&db);
        let chats = Chats::new(&db);
        let messages = Messages::new(&db);
        for carrier in [Messages::COLLECTION, Chats::COLLECTION, Chats::MARKERS] {
            infra.messaging.outbox.embed_in(carrier);
        }
        let blocks = Blocks::new(&db);
        let revocations = Revocations::new(&db);
        let timeline = Timeline::new(infra.redis.clone(), &common.redis_prefix);
        let shutdown = infra.shutdown.clone();
        infra.tasks.push(tokio::spawn(ensure_indexes(
            chats.clone(),
            messages.clone(),
            blocks.clone(),
            shutdown.clone(),
        )));
        infra
            .tasks
            .push(tokio::spawn(revocations.clone().run_sync(shutdown.clone())));

        let cache = Cache::new(infra.redis.clone(), &common.redis_prefix, metrics.clone());
        let cache = if config.chat.read_cache {
            cache
        } else {
            cache.disabled()
        };
        infra.messaging.outbox.recover_with(Arc::new(SweepRecovery {
            cache: cache.clone(),
            timeline: timeline.clone(),
            users: users.clone(),
        }));
        let service = ChatService {
            chats: chats.clone(),
            messages,
            users: users.clone(),
            blocks: blocks.clone(),
            timeline: timeline.clone(),
            outbox: infra.messaging.outbox.clone(),
            publisher: infra.messaging.publisher.clone(),
            message_limit: FailureLimiter::new(
                infra.redis.clone(),
                &common.redis_prefix,
                "messages",
                config.chat.message_rate_per_10s,
                Duration::from_secs(10),
            )
            .counted(&metrics),
            group_limit: FailureLimiter::new(
                infra.redis.clone(),
                &common.redis_prefix,
                "groups",
                config.chat.group_rate_per_hour,
                Duration::from_secs(3600),
            )
            .counted(&metrics),
            cache: cache.clone(),
            cache_ttl: Duration::from_secs(config.chat.cache_ttl_secs),
        };
        let hub = Arc::new(Hub::new(metrics.clone()));
        let presence = PresenceTracker::new(
            infra.redis.clone(),
            &common.redis_prefix,
            &common.instance_id,
            infra.messaging.publisher.clone(),
            chats,
            Duration::from_secs(config.chat.presence_ttl_secs),
        );
        infra.tasks.push(tokio::spawn(
            presence.clone().run_refresh(hub.clone(), shutdown.clone()),
        ));

        let broker = infra.messaging.broker.clone();
        let publisher = infra.messaging.publisher.clone();
        let routes = Routes::new(
            broker.clone(),
            broker.topology().fanout_queue(&common.instance_id),
            hub.clone(),
        );
        let replica = Consumer::new(
            broker.clone(),
            publisher.clone(),
            Source::Durable(CHAT_SVC_USERS),
            Arc::new(ReplicaHandler {
                cache,
                users: users.clone(),
                revocations: revocations.clone(),
            }),
            metrics.clone(),
        )
        .with_idempotency(ProcessedEvents::new(&db));
        infra
            .tasks
            .push(tokio::spawn(replica.run(shutdown.clone())));
        let fanout = Consumer::new(
            broker,
            publisher,
            Source::Fanout {
                instance_id: common.instance_id.clone(),
            },
            Arc::new(FanoutHandler::new(
                hub.clone(),
                routes.clone(),
                users,
                revocations.clone(),
            )),
            metrics,
        )
        .with_prefetch(512);
        infra.tasks.push(tokio::spawn(fanout.run(shutdown.clone())));

        let verifier = infra
            .verifier(common)?
            .with_revocations(Arc::new(revocations.clone()));
        let realtime = Realtime {
            service: service.clone(),
            hub,
            routes,
            timeline,
            presence,
            revocations,
            allowed_origins: common.allowed_origins.clone(),
            shutdown: shutdown.clone(),
        };
        let state = AppState { service };
        let running = infra.serve(common, verifier, move |cfg| {
            routes::configure(cfg, &state, &realtime)
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

async fn ensure_indexes(
    chats: Chats,
    messages: Messages,
    blocks: Blocks,
    shutdown: CancellationToken,
) {
    loop {
        match (
            chats.ensure_indexes().await,
            messages.ensure_indexes().await,
            blocks.ensure_indexes().await,
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
