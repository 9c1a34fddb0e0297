//! The producer-side plumbing a service starts with: one broker connection
//! kept alive, a confirmed publisher, the outbox and its relay.

use mongodb::Database;
use shared::metrics::Metrics;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::connection::Broker;
use crate::outbox::Outbox;
use crate::publisher::Publisher;
use crate::topology::Topology;

#[derive(Clone)]
pub struct Messaging {
    pub broker: Broker,
    pub publisher: Publisher,
    pub outbox: Outbox,
}

pub struct MessagingConfig<'a> {
    pub amqp_url: &'a str,
    pub prefix: &'a str,
    pub instance_id: &'a str,
    pub producer: &'a str,
    pub queue_type: crate::topology::QueueType,
    pub queue_expires: Option<std::time::Duration>,
}

impl Messaging {
    /// Starts the connection keeper and the outbox relay; their handles end
    /// after `shutdown`.
    pub async fn start(
        db: &Database,
        config: MessagingConfig<'_>,
        metrics: Metrics,
        shutdown: &CancellationToken,
    ) -> (Self, Vec<JoinHandle<()>>) {
        let broker = Broker::new(
            config.amqp_url,
            Topology::new(config.prefix).with_queues(config.queue_type, config.queue_expires),
            config.instance_id,
        );
        let publisher = Publisher::new(broker.clone(), metrics.clone());
        let (outbox, relay) = Outbox::new(
            db,
            config.producer,
            publisher.clone(),
            config.instance_id,
            metrics,
        );
        if let Err(e) = outbox.ensure_indexes().await {
            tracing::warn!(error = %e, "outbox indexes not created yet (MongoDB unreachable?)");
        }
        let tasks = vec![
            broker.spawn_keeper(shutdown.clone()),
            tokio::spawn(relay.run(shutdown.clone())),
        ];
        (
            Self {
                broker,
                publisher,
                outbox,
            },
            tasks,
        )
    }
}
