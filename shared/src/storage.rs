//! Connections to MongoDB and Redis, tuned to fail fast: a request must get
//! a 503 within seconds when a dependency is down, never hang.

use std::time::Duration;

use anyhow::Context;
use mongodb::bson::Document;
use mongodb::event::command::CommandEvent;
use mongodb::event::EventHandler;
use mongodb::options::ClientOptions;
use mongodb::{Client, Database};
use secrecy::{ExposeSecret, SecretString};

use crate::metrics::Metrics;
use crate::redis_link::Redis;

/// Connects lazily: the driver retries in the background, so a service can
/// start while MongoDB is still coming up and report itself not ready.
/// With `metrics`, every command sent is counted in
/// `db_operations_total{collection, operation}` by the driver's command
/// monitor: nothing to forget at call sites, and what is counted is what
/// reached the server.
pub async fn mongo(
    uri: &SecretString,
    database: &str,
    app_name: &str,
    metrics: Option<Metrics>,
) -> anyhow::Result<Database> {
    let mut options = ClientOptions::parse(uri.expose_secret())
        .await
        .context("parse MONGODB_URI")?;
    options.app_name = Some(app_name.to_owned());
    if let Some(metrics) = metrics {
        options.command_event_handler = Some(EventHandler::callback(move |event| {
            if let CommandEvent::Started(started) = event {
                count_command(&metrics, &started.command_name, &started.command);
            }
        }));
    }
    options.server_selection_timeout = Some(Duration::from_secs(2));
    options.connect_timeout = Some(Duration::from_secs(2));
    options.max_pool_size = Some(50);
    let client = Client::with_options(options).context("create MongoDB client")?;
    Ok(client.database(database))
}

/// Handshakes, heartbeats and session bookkeeping are not data operations.
fn count_command(metrics: &Metrics, name: &str, command: &Document) {
    const IGNORED: &[&str] = &[
        "hello",
        "isMaster",
        "ismaster",
        "ping",
        "endSessions",
        "killCursors",
        "saslStart",
        "saslContinue",
        "buildInfo",
    ];
    if IGNORED.contains(&name) {
        return;
    }
    // The first field of a data command names its collection (`find: "chats"`);
    // the outbox relay's reads and clean-ups of documents that carry events
    // count as `outbox` work, not as reads of those collections.
    let collection = if command.get_str("comment") == Ok(RELAY_COMMENT) {
        "outbox"
    } else {
        command
            .iter()
            .next()
            .and_then(|(_, v)| v.as_str())
            .unwrap_or("-")
    };
    metrics.db(collection, name);
}

/// The `comment` the outbox relay puts on its commands, so that metrics
/// tell its background work from the requests' reads.
pub const RELAY_COMMENT: &str = "outbox relay";

/// True when the error means "MongoDB is unreachable" (503), not a bug (500).
pub fn is_unavailable(e: &mongodb::error::Error) -> bool {
    use mongodb::error::ErrorKind;
    matches!(
        *e.kind,
        ErrorKind::ServerSelection { .. }
            | ErrorKind::Io(_)
            | ErrorKind::ConnectionPoolCleared { .. }
    ) || e.contains_label("RetryableWriteError")
}

/// The Redis link (see [`crate::redis_link`]): every wait bounded, so a
/// Redis outage costs milliseconds per request instead of a timeout.
pub fn redis(url: &SecretString) -> anyhow::Result<Redis> {
    Redis::new(url.expose_secret()).context("parse the Redis URL")
}
