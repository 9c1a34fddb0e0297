//! Everything that crosses a service boundary goes through this crate.
//!
//! - [`bootstrap`]: the infrastructure every service starts with (storage, messaging, HTTP).
//! - [`topology`]: exchanges, queues, retry and dead-letter routes of
//!   spec/events.md, declared idempotently in one place.
//! - [`envelope`]: the JSON envelope every event travels in.
//! - [`events`]: the closed, versioned set of event types, one module per producer.
//! - [`connection`]: one AMQP connection per process with its own
//!   reconnect-and-redeclare logic (lapin's auto-recovery does not survive a
//!   broker restart: amqp-rs/lapin#450).
//! - [`publisher`]: publishes with `mandatory` and returns only after the
//!   broker's confirm; an unroutable message is an error.
//! - [`outbox`]: events are written to the producer's MongoDB before the
//!   response and relayed in order, so none is lost while RabbitMQ is down.
//! - [`messaging`]: what a service starts with: connection keeper, publisher, outbox relay.
//! - [`consumer`]: manual acks, bounded prefetch, a named retry schedule,
//!   dead-lettering to `<queue>.dead`, idempotency by event id.

pub mod bootstrap;
pub mod connection;
pub mod consumer;
pub mod envelope;
pub mod events;
pub mod messaging;
pub mod outbox;
pub mod publisher;
pub mod topology;

pub use connection::Broker;
pub use consumer::{Consumer, Handler, HandlerError, ProcessedEvents, RetrySchedule};
pub use envelope::Envelope;
pub use events::{Event, EventPayload};
pub use messaging::{Messaging, MessagingConfig};
pub use outbox::{Outbox, OutboxRelay};
pub use publisher::{PublishError, Publisher};
pub use topology::{Exchange, QueueSpec, Topology};
