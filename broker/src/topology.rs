//! The broker topology of spec/events.md, declared in one place. Declaring is
//! idempotent, so every service declares all of it on every (re)connect and
//! start-up order does not matter.
//!
//! Per durable queue `q`:
//! - `q` is a quorum queue with `x-delivery-limit`, dead-lettering to `q.dead`
//!   through the default exchange (covers consumers that crash on a message);
//! - `q.retry.<delay>`: one queue per step of a [`RetrySchedule`](crate::RetrySchedule),
//!   whose TTL sends a message back to `q` after the delay;
//! - `q.dead`: where messages park after the last retry, for an operator.

use std::time::Duration;

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{Channel, ExchangeKind};

/// The exchanges; names get the configured prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Exchange {
    /// `auth.events`: durable auth-svc events.
    Auth,
    /// `chat.events`: durable chat-svc events.
    Chat,
    /// `chat.realtime`: typing and presence, transient.
    Realtime,
}

impl Exchange {
    pub const ALL: [Exchange; 3] = [Exchange::Auth, Exchange::Chat, Exchange::Realtime];

    pub fn from_base_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|e| e.base_name() == name)
    }

    pub fn base_name(self) -> &'static str {
        match self {
            Self::Auth => "auth.events",
            Self::Chat => "chat.events",
            Self::Realtime => "chat.realtime",
        }
    }
}

/// A durable, competing-consumer queue and its bindings.
#[derive(Debug, Clone, Copy)]
pub struct QueueSpec {
    pub base_name: &'static str,
    pub bindings: &'static [(Exchange, &'static str)],
}

pub const CHAT_SVC_USERS: QueueSpec = QueueSpec {
    base_name: "chat-svc.users",
    bindings: &[
        (Exchange::Auth, "user.*"),
        (Exchange::Auth, "auth.session.revoked"),
    ],
};

pub const NOTIFY_SVC_CHAT: QueueSpec = QueueSpec {
    base_name: "notify-svc.chat",
    bindings: &[
        (Exchange::Chat, "chat.message.created"),
        (Exchange::Chat, "chat.read"),
        (Exchange::Chat, "chat.member.*"),
        (Exchange::Chat, "chat.created"),
        (Exchange::Chat, "chat.updated"),
    ],
};

pub const NOTIFY_SVC_AUTH: QueueSpec = QueueSpec {
    base_name: "notify-svc.auth",
    bindings: &[(Exchange::Auth, "user.*"), (Exchange::Auth, "auth.#")],
};

/// Every durable queue of the system.
pub const DURABLE_QUEUES: [QueueSpec; 3] = [CHAT_SVC_USERS, NOTIFY_SVC_CHAT, NOTIFY_SVC_AUTH];

/// A fan-out queue's own bindings. Chat and realtime events reach it by
/// their recipients' keys, bound and unbound by the instance as its sockets
/// come and go ([`FANOUT_RECIPIENT_EXCHANGES`], [`recipient_key`]).
pub const FANOUT_BINDINGS: &[(Exchange, &str)] = &[(Exchange::Auth, "auth.session.revoked")];

/// The exchanges on which a fan-out queue binds the keys of the users
/// connected to its instance.
pub const FANOUT_RECIPIENT_EXCHANGES: [Exchange; 2] = [Exchange::Chat, Exchange::Realtime];

/// Whether a durable queue of the system binds `key` on `exchange`: such an
/// event must reach it, so it is published `mandatory` (an unroutable one
/// is an error, kept in the outbox). Others (`chat.message.updated`, say,
/// which only sockets want) may reach nobody when no recipient is connected.
pub fn has_durable_consumer(exchange: Exchange, key: &str) -> bool {
    DURABLE_QUEUES.iter().any(|spec| {
        spec.bindings
            .iter()
            .any(|(e, pattern)| *e == exchange && topic_matches(pattern, key))
    })
}

/// AMQP topic matching: words split on `.`, `*` is one word, `#` zero or more.
fn topic_matches(pattern: &str, key: &str) -> bool {
    fn go(p: &[&str], k: &[&str]) -> bool {
        match (p.first(), k.first()) {
            (None, None) => true,
            (Some(&"#"), _) => go(&p[1..], k) || (!k.is_empty() && go(p, &k[1..])),
            (Some(&"*"), Some(_)) => go(&p[1..], &k[1..]),
            (Some(w), Some(x)) if w == x => go(&p[1..], &k[1..]),
            _ => false,
        }
    }
    let p: Vec<&str> = pattern.split('.').collect();
    let k: Vec<&str> = key.split('.').collect();
    go(&p, &k)
}

/// The routing key of a recipient (`r.<userId>`), which a chat or realtime
/// event carries in its `BCC` header for each of its recipients. No event's
/// own routing key starts with `r.`, so no durable queue's binding matches it.
pub fn recipient_key(user_id: &str) -> String {
    format!("r.{user_id}")
}

/// Deliveries of one message before a quorum queue dead-letters it by
/// itself (a consumer that crashes on it every time).
pub const DELIVERY_LIMIT: i64 = 20;

/// The kind of the durable queues.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum QueueType {
    /// Replicated, with a delivery limit (production).
    #[default]
    Quorum,
    /// Lighter; what the tests use, since each test declares its own set.
    Classic,
}

impl QueueType {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "quorum" => Some(Self::Quorum),
            "classic" => Some(Self::Classic),
            _ => None,
        }
    }
}

/// Names with a prefix (empty in production, unique per test) and the
/// declarations.
#[derive(Debug, Clone, Default)]
pub struct Topology {
    prefix: String,
    queue_type: QueueType,
    /// Delete durable queues unused this long (tests clean up after themselves).
    expires: Option<Duration>,
}

fn s(v: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(v.to_owned()))
}

impl Topology {
    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
            ..Self::default()
        }
    }

    pub fn with_queues(mut self, queue_type: QueueType, expires: Option<Duration>) -> Self {
        self.queue_type = queue_type;
        self.expires = expires;
        self
    }

    /// Arguments every durable queue of this topology gets.
    fn base_args(&self, with_delivery_limit: bool) -> FieldTable {
        let mut args = FieldTable::default();
        if self.queue_type == QueueType::Quorum {
            args.insert(ShortString::from("x-queue-type"), s("quorum"));
            if with_delivery_limit {
                args.insert(
                    ShortString::from("x-delivery-limit"),
                    AMQPValue::LongLongInt(DELIVERY_LIMIT),
                );
            }
        }
        if let Some(expires) = self.expires {
            let ms = i64::try_from(expires.as_millis()).unwrap_or(i64::MAX);
            args.insert(ShortString::from("x-expires"), AMQPValue::LongLongInt(ms));
        }
        args
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn exchange(&self, e: Exchange) -> String {
        format!("{}{}", self.prefix, e.base_name())
    }

    pub fn queue(&self, spec: &QueueSpec) -> String {
        format!("{}{}", self.prefix, spec.base_name)
    }

    pub fn dead_queue(queue: &str) -> String {
        format!("{queue}.dead")
    }

    pub fn retry_queue(queue: &str, delay: Duration) -> String {
        format!("{queue}.retry.{}ms", delay.as_millis())
    }

    pub fn fanout_queue(&self, instance_id: &str) -> String {
        format!("{}chat-svc.fanout.{instance_id}", self.prefix)
    }

    /// Exchanges and the system's durable queues with their dead-letter queues.
    pub async fn declare(&self, channel: &Channel) -> lapin::Result<()> {
        for exchange in Exchange::ALL {
            channel
                .exchange_declare(
                    &self.exchange(exchange),
                    ExchangeKind::Topic,
                    ExchangeDeclareOptions {
                        durable: true,
                        ..Default::default()
                    },
                    FieldTable::default(),
                )
                .await?;
        }
        for spec in DURABLE_QUEUES {
            self.declare_durable_queue(channel, &spec).await?;
        }
        Ok(())
    }

    /// A durable queue `q` (quorum, delivery limit), its `q.dead`, and its bindings.
    pub async fn declare_durable_queue(
        &self,
        channel: &Channel,
        spec: &QueueSpec,
    ) -> lapin::Result<String> {
        let queue = self.queue(spec);
        let dead = Self::dead_queue(&queue);
        let durable = QueueDeclareOptions {
            durable: true,
            ..Default::default()
        };
        channel
            .queue_declare(&dead, durable, self.base_args(false))
            .await?;

        let mut args = self.base_args(true);
        args.insert(ShortString::from("x-dead-letter-exchange"), s(""));
        args.insert(ShortString::from("x-dead-letter-routing-key"), s(&dead));
        channel.queue_declare(&queue, durable, args).await?;
        for (exchange, key) in spec.bindings {
            channel
                .queue_bind(
                    &queue,
                    &self.exchange(*exchange),
                    key,
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await?;
        }
        Ok(queue)
    }

    /// `q.retry.<delay>`: holds a message for `delay`, then returns it to `q`.
    pub async fn declare_retry_queue(
        &self,
        channel: &Channel,
        queue: &str,
        delay: Duration,
    ) -> lapin::Result<String> {
        let name = Self::retry_queue(queue, delay);
        let mut args = self.base_args(false);
        let ttl = i64::try_from(delay.as_millis()).unwrap_or(i64::MAX);
        args.insert(
            ShortString::from("x-message-ttl"),
            AMQPValue::LongLongInt(ttl),
        );
        args.insert(ShortString::from("x-dead-letter-exchange"), s(""));
        args.insert(ShortString::from("x-dead-letter-routing-key"), s(queue));
        channel
            .queue_declare(
                &name,
                QueueDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                args,
            )
            .await?;
        Ok(name)
    }

    /// A chat-svc instance's exclusive, auto-delete fan-out queue.
    pub async fn declare_fanout_queue(
        &self,
        channel: &Channel,
        instance_id: &str,
    ) -> lapin::Result<String> {
        let name = self.fanout_queue(instance_id);
        channel
            .queue_declare(
                &name,
                QueueDeclareOptions {
                    exclusive: true,
                    auto_delete: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await?;
        for (exchange, key) in FANOUT_BINDINGS {
            channel
                .queue_bind(
                    &name,
                    &self.exchange(*exchange),
                    key,
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await?;
        }
        Ok(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_patterns_match_as_amqp_does() {
        assert!(topic_matches("user.*", "user.registered"));
        assert!(!topic_matches("user.*", "user.a.b"));
        assert!(topic_matches("auth.#", "auth.recovery_code.used"));
        assert!(topic_matches("auth.#", "auth"));
        assert!(topic_matches("chat.member.*", "chat.member.added"));
        assert!(!topic_matches("chat.member.*", "chat.message.created"));
    }

    #[test]
    fn only_events_a_durable_queue_takes_must_be_routable() {
        assert!(has_durable_consumer(Exchange::Chat, "chat.message.created"));
        assert!(has_durable_consumer(Exchange::Auth, "auth.session.revoked"));
        assert!(!has_durable_consumer(
            Exchange::Chat,
            "chat.message.updated"
        ));
        assert!(!has_durable_consumer(
            Exchange::Chat,
            "chat.message.deleted"
        ));
        assert!(!has_durable_consumer(Exchange::Realtime, "typing"));
    }
}
