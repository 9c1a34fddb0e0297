//! Publishing with `mandatory` and publisher confirms: `publish` returns Ok
//! only once the broker has taken responsibility for the message.

use std::time::Duration;

use lapin::options::BasicPublishOptions;
use lapin::publisher_confirm::{Confirmation, PublisherConfirm};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::BasicProperties;
use shared::metrics::Metrics;

use crate::connection::{Broker, ConnectError};

impl From<ConnectError> for PublishError {
    fn from(e: ConnectError) -> Self {
        Self::Unavailable(e.to_string())
    }
}
use crate::envelope::Envelope;
use crate::events::EventPayload;
use crate::topology::Exchange;

const CONFIRM_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("broker unavailable: {0}")]
    Unavailable(String),
    #[error("cannot encode the event: {0}")]
    Encode(#[from] serde_json::Error),
    #[error("publish failed: {0}")]
    Amqp(#[from] lapin::Error),
    #[error("no queue is bound for routing key {0}")]
    Unroutable(String),
    #[error("broker refused the message")]
    Nacked,
    #[error("no confirm from the broker in time")]
    Timeout,
}

/// One message ready to go: exchange, routing key, serialized envelope.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub exchange: Exchange,
    pub routing_key: String,
    pub message_id: String,
    pub correlation_id: Option<String>,
    pub body: Vec<u8>,
    /// Extra routing keys (RabbitMQ's `BCC` header, which the broker strips
    /// before delivery): the recipients' keys ([`crate::topology::recipient_key`]),
    /// which route the event to the fan-out queues of the instances where
    /// they are connected, in the same publish.
    pub bcc: Vec<String>,
}

impl Outgoing {
    pub fn from_envelope<E: EventPayload>(
        envelope: &Envelope<E>,
    ) -> Result<Self, serde_json::Error> {
        Ok(Self {
            exchange: E::EXCHANGE,
            routing_key: E::TYPE.to_owned(),
            message_id: envelope.id.to_string(),
            correlation_id: envelope.correlation_id.clone(),
            body: serde_json::to_vec(envelope)?,
            bcc: Vec::new(),
        })
    }
}

#[derive(Clone)]
pub struct Publisher {
    broker: Broker,
    metrics: Metrics,
}

impl Publisher {
    pub fn new(broker: Broker, metrics: Metrics) -> Self {
        Self { broker, metrics }
    }

    pub fn broker(&self) -> &Broker {
        &self.broker
    }

    /// Publishes one event and waits for the broker's confirm.
    pub async fn publish<E: EventPayload>(
        &self,
        envelope: &Envelope<E>,
    ) -> Result<(), PublishError> {
        self.publish_to(envelope, &[]).await
    }

    /// Publishes one event for `recipients` (user ids): it also reaches the
    /// fan-out queues bound to their keys. A live-only event (`chat.realtime`)
    /// that no connected recipient's instance takes is dropped by the broker,
    /// and that is no error.
    pub async fn publish_to<E: EventPayload>(
        &self,
        envelope: &Envelope<E>,
        recipients: &[String],
    ) -> Result<(), PublishError> {
        let mut outgoing = Outgoing::from_envelope(envelope)?;
        outgoing.bcc = recipients
            .iter()
            .map(|r| crate::topology::recipient_key(r))
            .collect();
        self.publish_batch(std::slice::from_ref(&outgoing))
            .await
            .pop()
            .unwrap_or(Err(PublishError::Nacked))
    }

    /// Publishes messages in order on one channel, pipelined, then collects
    /// each confirm. Results are in input order.
    pub async fn publish_batch(&self, messages: &[Outgoing]) -> Vec<Result<(), PublishError>> {
        let channel = match self.broker.publish_channel().await {
            Ok(ch) => ch,
            Err(e) => {
                let reason = e.to_string();
                return messages
                    .iter()
                    .map(|_| Err(PublishError::Unavailable(reason.clone())))
                    .collect();
            }
        };
        let topology = self.broker.topology().clone();
        let mut pending: Vec<Result<PublisherConfirm, PublishError>> =
            Vec::with_capacity(messages.len());
        for m in messages {
            let mut props = properties(&m.message_id, &m.routing_key, m.correlation_id.as_deref());
            if !m.bcc.is_empty() {
                props = with_bcc(props, &m.bcc);
            }
            let sent = channel
                .basic_publish(
                    &topology.exchange(m.exchange),
                    &m.routing_key,
                    BasicPublishOptions {
                        // An event a durable queue takes must reach it; one
                        // only sockets want may find nobody connected.
                        mandatory: crate::topology::has_durable_consumer(
                            m.exchange,
                            &m.routing_key,
                        ),
                        ..Default::default()
                    },
                    &m.body,
                    props,
                )
                .await
                .map_err(PublishError::from);
            pending.push(sent);
        }
        let mut results = Vec::with_capacity(messages.len());
        for (m, sent) in messages.iter().zip(pending) {
            let result = match sent {
                Err(e) => Err(e),
                Ok(confirm) => match tokio::time::timeout(CONFIRM_TIMEOUT, confirm).await {
                    Err(_) => Err(PublishError::Timeout),
                    Ok(Err(e)) => Err(PublishError::Amqp(e)),
                    Ok(Ok(confirmation)) => check_confirmation(confirmation, &m.routing_key),
                },
            };
            if result.is_ok() {
                self.metrics
                    .events_published
                    .with_label_values(&[&m.routing_key])
                    .inc();
            }
            results.push(result);
        }
        results
    }

    /// Sends a raw message straight to a queue (default exchange): retries
    /// and dead-lettering.
    pub async fn send_to_queue(
        &self,
        queue: &str,
        body: &[u8],
        props: BasicProperties,
    ) -> Result<(), PublishError> {
        let channel = self.broker.publish_channel().await?;
        let confirm = channel
            .basic_publish(
                "",
                queue,
                BasicPublishOptions {
                    mandatory: true,
                    ..Default::default()
                },
                body,
                props,
            )
            .await?;
        match tokio::time::timeout(CONFIRM_TIMEOUT, confirm).await {
            Err(_) => Err(PublishError::Timeout),
            Ok(Err(e)) => Err(PublishError::Amqp(e)),
            Ok(Ok(c)) => check_confirmation(c, queue),
        }
    }
}

fn check_confirmation(confirmation: Confirmation, routing_key: &str) -> Result<(), PublishError> {
    match confirmation {
        Confirmation::Ack(Some(_returned)) => Err(PublishError::Unroutable(routing_key.to_owned())),
        Confirmation::Ack(None) => Ok(()),
        Confirmation::Nack(_) => Err(PublishError::Nacked),
        Confirmation::NotRequested => Err(PublishError::Nacked),
    }
}

/// `props` with a `BCC` header of `keys` (sender-selected distribution:
/// the exchange routes the message by each key as well, and each queue gets
/// one copy, however many of its bindings match).
fn with_bcc(props: BasicProperties, keys: &[String]) -> BasicProperties {
    let mut headers = props.headers().clone().unwrap_or_default();
    headers.insert(
        ShortString::from("BCC"),
        AMQPValue::FieldArray(
            keys.iter()
                .map(|k| AMQPValue::LongString(LongString::from(k.clone())))
                .collect::<Vec<_>>()
                .into(),
        ),
    );
    props.with_headers(headers)
}

/// AMQP properties of spec/events.md.
pub fn properties(message_id: &str, kind: &str, correlation_id: Option<&str>) -> BasicProperties {
    let mut headers = FieldTable::default();
    if let Some(cid) = correlation_id {
        headers.insert(
            ShortString::from("correlation-id"),
            AMQPValue::LongString(LongString::from(cid.to_owned())),
        );
    }
    let now = u64::try_from(chrono::Utc::now().timestamp()).unwrap_or_default();
    BasicProperties::default()
        .with_message_id(message_id.into())
        .with_type(kind.into())
        .with_content_type("application/json".into())
        .with_delivery_mode(2)
        .with_timestamp(now)
        .with_headers(headers)
}
