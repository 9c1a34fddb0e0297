//! The broker crate against the real RabbitMQ and MongoDB-wire server.
#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers fail loudly; a panic is the assertion"
)]

mod helpers;

use std::sync::Arc;
use std::time::Duration;

use broker::events::auth::{SessionRevoked, UserRegistered};
use broker::events::chat::Typing;
use broker::publisher::Outgoing;
use broker::topology::{recipient_key, CHAT_SVC_USERS, NOTIFY_SVC_CHAT};
use broker::{Envelope, Exchange, Outbox, ProcessedEvents, PublishError, Topology};
use helpers::{amqp_url, eventually, Recorder, TestEnv};
use lapin::types::AMQPValue;
use tokio_util::sync::CancellationToken;

fn user_registered(n: usize) -> UserRegistered {
    UserRegistered {
        user_id: format!("u{n}"),
        username: format!("user{n}"),
        display_name: format!("User {n}"),
        avatar_url: None,
        email: format!("user{n}@example.com"),
        profile_version: 1,
        email_verified: true,
    }
}

#[tokio::test]
async fn a_published_event_reaches_the_consumer_once_even_when_published_twice() {
    let env = TestEnv::new().await;
    let broker = env.broker();
    let publisher = env.publisher(&broker);
    let recorder = Recorder::default();
    let shutdown = CancellationToken::new();
    let consumer = env
        .users_consumer(&broker, publisher.clone(), &recorder)
        .with_idempotency(ProcessedEvents::new(&env.db));
    let task = tokio::spawn(consumer.run(shutdown.clone()));

    let event = Envelope::new("auth-svc", Some("req-1".into()), user_registered(1));
    publisher
        .publish(&event)
        .await
        .expect("first publish confirmed");
    publisher
        .publish(&event)
        .await
        .expect("second publish confirmed");
    let other = Envelope::new(
        "auth-svc",
        None,
        SessionRevoked {
            user_id: "u1".into(),
            session_id: "s1".into(),
            reason: "logout".into(),
        },
    );
    publisher.publish(&other).await.expect("publish confirmed");

    eventually("both events consumed", Duration::from_secs(10), || {
        recorder.count() >= 2
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        recorder.ids(),
        vec![event.id, other.id],
        "each event once, in publish order"
    );
    let consumed = env
        .metrics
        .events_consumed
        .with_label_values(&[&broker.topology().queue(&CHAT_SVC_USERS), "duplicate"])
        .get();
    assert_eq!(consumed, 1, "the second copy was recognised as a duplicate");

    shutdown.cancel();
    task.await.unwrap();
    env.cleanup(&broker, &[]).await;
}

#[tokio::test]
async fn an_unroutable_publish_is_reported_as_an_error() {
    let env = TestEnv::new().await;
    let broker = env.broker();
    let publisher = env.publisher(&broker);
    // The queue that takes it is gone (an operator deleted it).
    let channel = broker.channel().await.expect("a channel");
    channel
        .queue_delete(
            &broker.topology().queue(&NOTIFY_SVC_CHAT),
            lapin::options::QueueDeleteOptions::default(),
        )
        .await
        .expect("queue deleted");
    let event = |key: &str| Outgoing {
        exchange: Exchange::Chat,
        routing_key: key.into(),
        message_id: "m1".into(),
        correlation_id: None,
        body: b"{}".to_vec(),
        bcc: vec![recipient_key("nobody-connected")],
    };
    let result = publisher
        .publish_batch(&[event("chat.message.created")])
        .await
        .pop()
        .expect("one result");
    assert!(
        matches!(result, Err(PublishError::Unroutable(ref key)) if key == "chat.message.created"),
        "{result:?}"
    );
    // An event only sockets want, with none of its recipients connected,
    // reaches nobody, and that is fine (an edit nobody is online for).
    let edit = publisher
        .publish_batch(&[event("chat.message.updated")])
        .await
        .pop()
        .expect("one result");
    assert!(edit.is_ok(), "{edit:?}");
    // A live-only event that no instance takes (no chat-svc instance runs,
    // so no recipient's key is bound) is no error: there was nobody to tell.
    let typing = Envelope::new(
        "chat-svc",
        None,
        Typing {
            chat_id: "c".into(),
            user_id: "u".into(),
            state: "start".into(),
            member_ids: vec!["u".into(), "v".into()],
        },
    );
    publisher
        .publish_to(&typing, &["v".to_owned()])
        .await
        .expect("a live event for nobody connected");
    // The channel stays usable for routable messages.
    publisher
        .publish(&Envelope::new("auth-svc", None, user_registered(2)))
        .await
        .expect("routable publish");
    env.cleanup(&broker, &[]).await;
}

#[tokio::test]
async fn poison_is_dead_lettered_at_once_and_a_failing_handler_gets_the_retry_schedule() {
    let env = TestEnv::new().await;
    let broker = env.broker();
    let publisher = env.publisher(&broker);
    let recorder = Recorder {
        fail_session: Some("s-fails".into()),
        ..Recorder::default()
    };
    let shutdown = CancellationToken::new();
    let consumer = env
        .users_consumer(&broker, publisher.clone(), &recorder)
        .with_idempotency(ProcessedEvents::new(&env.db));
    let task = tokio::spawn(consumer.run(shutdown.clone()));
    broker.channel().await.unwrap();
    let queue = broker.topology().queue(&CHAT_SVC_USERS);

    // Two poison messages (not an envelope; a type nobody knows), one event
    // whose handler always fails, then a good one behind them.
    eventually_declared(&broker, &queue).await;
    let poison: [&[u8]; 2] = [
        b"{not an envelope",
        br#"{"id":"00000000-0000-0000-0000-000000000001","type":"user.teleported","version":1,"occurredAt":"2026-01-01T00:00:00Z","producer":"x","data":{}}"#,
    ];
    for (n, body) in poison.iter().enumerate() {
        let props = broker::publisher::properties(&format!("poison-{n}"), "user.registered", None);
        publisher
            .send_to_queue(&queue, body, props)
            .await
            .expect("poison sent");
    }
    let revoked = |session: &str| {
        Envelope::new(
            "auth-svc",
            None,
            SessionRevoked {
                user_id: "u9".into(),
                session_id: session.into(),
                reason: "logout".into(),
            },
        )
    };
    publisher.publish(&revoked("s-fails")).await.unwrap();
    publisher.publish(&revoked("s-good")).await.unwrap();

    eventually("the good event is handled", Duration::from_secs(10), || {
        recorder.count() == 1
    })
    .await;
    let dead_queue = Topology::dead_queue(&queue);
    let mut dead = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while dead.len() < 3 && tokio::time::Instant::now() < deadline {
        dead.extend(env.drain(&broker, &dead_queue).await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        dead.len(),
        3,
        "two poison messages and the failing event parked in {dead_queue}"
    );
    let header = |d: &lapin::message::BasicGetMessage, name: &str| {
        d.delivery
            .properties
            .headers()
            .clone()
            .unwrap()
            .inner()
            .get(name)
            .cloned()
    };
    for d in &dead[..2] {
        assert!(poison.contains(&d.delivery.data.as_slice()));
        assert_eq!(
            header(d, "x-retry-count"),
            Some(AMQPValue::LongLongInt(1)),
            "no retry for poison"
        );
        let Some(AMQPValue::LongString(reason)) = header(d, "x-last-error") else {
            panic!("the reason is in a header");
        };
        assert!(reason.to_string().contains("undecodable"), "{reason}");
    }
    assert_eq!(
        header(&dead[2], "x-retry-count"),
        Some(AMQPValue::LongLongInt(4)),
        "the failing event: 1 try + 3 retries of the fast schedule"
    );
    let count = |label: &str| {
        env.metrics
            .events_consumed
            .with_label_values(&[&queue, label])
            .get()
    };
    assert_eq!(count("retried"), 3, "only the handler failure was retried");
    assert_eq!(count("dead_lettered"), 3);

    shutdown.cancel();
    task.await.unwrap();
    env.cleanup(&broker, &[]).await;
}

/// A node list whose first node is down: the connection goes to the next,
/// and an event published through it arrives.
#[tokio::test]
async fn a_dead_first_node_of_the_list_is_skipped() {
    let env = TestEnv::new().await;
    // Port 1 refuses connections: a node that is down.
    let dead = "amqp://guest:guest@127.0.0.1:1/%2f";
    let broker = env.broker_at(&format!("{dead}, {}", amqp_url()));
    let publisher = env.publisher(&broker);
    let recorder = Recorder::default();
    let shutdown = CancellationToken::new();
    let consumer = env.users_consumer(&broker, publisher.clone(), &recorder);
    let task = tokio::spawn(consumer.run(shutdown.clone()));
    broker
        .channel()
        .await
        .expect("connected through the second node");
    assert!(broker.is_connected());
    eventually_declared(&broker, &broker.topology().queue(&CHAT_SVC_USERS)).await;
    publisher
        .publish(&Envelope::new("auth-svc", None, user_registered(7)))
        .await
        .expect("published");
    eventually("the event arrives", Duration::from_secs(10), || {
        recorder.count() == 1
    })
    .await;
    shutdown.cancel();
    task.await.unwrap();
    env.cleanup(&broker, &[]).await;
}

/// An outage of the consumer's own database longer than the retry
/// schedule parks nothing: those failures wait without using attempts.
#[tokio::test]
async fn an_unreachable_database_defers_an_event_without_using_up_its_retries() {
    let env = TestEnv::new().await;
    let broker = env.broker();
    let publisher = env.publisher(&broker);
    // Six failures in a row, against a schedule of three retries.
    let left = Arc::new(std::sync::atomic::AtomicUsize::new(6));
    let recorder = Recorder {
        unavailable: Some(("s-outage".into(), left.clone())),
        ..Recorder::default()
    };
    let shutdown = CancellationToken::new();
    let consumer = env.users_consumer(&broker, publisher.clone(), &recorder);
    let task = tokio::spawn(consumer.run(shutdown.clone()));
    broker.channel().await.unwrap();
    let queue = broker.topology().queue(&CHAT_SVC_USERS);
    eventually_declared(&broker, &queue).await;
    let event = Envelope::new(
        "auth-svc",
        None,
        SessionRevoked {
            user_id: "u9".into(),
            session_id: "s-outage".into(),
            reason: "logout".into(),
        },
    );
    publisher.publish(&event).await.unwrap();

    eventually(
        "handled once the database is back",
        Duration::from_secs(30),
        || recorder.count() == 1,
    )
    .await;
    assert_eq!(left.load(std::sync::atomic::Ordering::SeqCst), 0);
    let count = |label: &str| {
        env.metrics
            .events_consumed
            .with_label_values(&[&queue, label])
            .get()
    };
    assert_eq!(
        count("deferred"),
        6,
        "each unreachable-database failure waited"
    );
    assert_eq!(count("retried"), 0, "no attempt was used");
    assert_eq!(count("dead_lettered"), 0);
    assert!(
        env.drain(&broker, &Topology::dead_queue(&queue))
            .await
            .is_empty(),
        "nothing parked"
    );

    shutdown.cancel();
    task.await.unwrap();
    env.cleanup(&broker, &[]).await;
}

async fn eventually_declared(broker: &broker::Broker, queue: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let ch = broker.channel().await.unwrap();
        let passive = lapin::options::QueueDeclareOptions {
            passive: true,
            ..Default::default()
        };
        if ch
            .queue_declare(queue, passive, Default::default())
            .await
            .is_ok()
        {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "queue {queue} never declared"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_consumer_killed_before_acking_gets_the_message_redelivered_and_the_effect_happens_once()
{
    let env = TestEnv::new().await;
    // The doomed consumer has its own connection, as a separate process would.
    let doomed_broker = env.broker();
    let doomed = Recorder {
        hang: true,
        effects: Some(env.db.clone()),
        ..Default::default()
    };
    let consumer = env
        .users_consumer(&doomed_broker, env.publisher(&doomed_broker), &doomed)
        .with_idempotency(ProcessedEvents::new(&env.db));
    let doomed_task = tokio::spawn(consumer.run(CancellationToken::new()));

    let broker = env.broker();
    let publisher = env.publisher(&broker);
    eventually_declared(&broker, &broker.topology().queue(&CHAT_SVC_USERS)).await;
    let event = Envelope::new("auth-svc", None, user_registered(3));
    publisher.publish(&event).await.unwrap();
    eventually(
        "the doomed consumer applied the effect",
        Duration::from_secs(10),
        || doomed.count() == 1,
    )
    .await;

    // Kill it mid-delivery: the task dies and its connection drops unacked.
    doomed_task.abort();
    doomed_broker.close().await;

    let survivor = Recorder {
        effects: Some(env.db.clone()),
        ..Default::default()
    };
    let shutdown = CancellationToken::new();
    let consumer = env
        .users_consumer(&broker, publisher.clone(), &survivor)
        .with_idempotency(ProcessedEvents::new(&env.db));
    let task = tokio::spawn(consumer.run(shutdown.clone()));
    eventually(
        "the message is redelivered",
        Duration::from_secs(10),
        || survivor.count() == 1,
    )
    .await;
    assert_eq!(survivor.ids(), vec![event.id]);
    let effects = env
        .db
        .collection::<mongodb::bson::Document>("effects")
        .count_documents(mongodb::bson::doc! {})
        .await
        .unwrap();
    assert_eq!(effects, 1, "the effect happened once");

    shutdown.cancel();
    task.await.unwrap();
    env.cleanup(&broker, &[]).await;
}

#[tokio::test]
async fn events_left_in_the_outbox_by_a_crashed_producer_are_relayed_on_restart() {
    let env = TestEnv::new().await;
    let broker = env.broker();
    let publisher = env.publisher(&broker);
    // "Crash": events committed to the outbox, relay never ran.
    let (outbox, relay) = Outbox::new(
        &env.db,
        "auth-svc",
        publisher.clone(),
        "crashed",
        env.metrics.clone(),
    );
    outbox.ensure_indexes().await.unwrap();
    let mut ids = Vec::new();
    for n in 0..20 {
        ids.push(
            outbox
                .enqueue(&format!("user:{n}"), Some("req"), user_registered(n))
                .await
                .unwrap(),
        );
    }
    drop(relay);
    drop(outbox);

    let recorder = Recorder::default();
    let shutdown = CancellationToken::new();
    let consumer = env
        .users_consumer(&broker, publisher.clone(), &recorder)
        .with_idempotency(ProcessedEvents::new(&env.db));
    let consumer_task = tokio::spawn(consumer.run(shutdown.clone()));
    let (restarted, relay) = Outbox::new(
        &env.db,
        "auth-svc",
        publisher.clone(),
        "restarted",
        env.metrics.clone(),
    );
    let relay_task = tokio::spawn(relay.run(shutdown.clone()));

    eventually("all 20 relayed", Duration::from_secs(15), || {
        recorder.count() == 20
    })
    .await;
    assert_eq!(recorder.ids(), ids, "relayed in commit order");
    eventually_async_zero(&restarted).await;

    shutdown.cancel();
    consumer_task.await.unwrap();
    relay_task.await.unwrap();
    env.cleanup(&broker, &[]).await;
}

async fn eventually_async_zero(outbox: &Outbox) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while outbox.backlog().await.unwrap() != 0 {
        assert!(tokio::time::Instant::now() < deadline, "outbox not emptied");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Stops and restarts the shared RabbitMQ: run alone (`./dev test` runs
/// ignored tests serially after the rest).
#[tokio::test]
#[ignore = "disruptive: restarts RabbitMQ; run by ./dev test serially"]
async fn disruptive_rabbitmq_restarted_mid_stream_loses_no_event() {
    let env = TestEnv::new().await;
    let broker = env.broker();
    let publisher = env.publisher(&broker);
    let shutdown = CancellationToken::new();
    let keeper = broker.spawn_keeper(shutdown.clone());
    let (outbox, relay) = Outbox::new(
        &env.db,
        "auth-svc",
        publisher.clone(),
        "relay",
        env.metrics.clone(),
    );
    outbox.ensure_indexes().await.unwrap();
    let relay_task = tokio::spawn(relay.run(shutdown.clone()));
    let consumer_broker = env.broker();
    let recorder = Recorder::default();
    let consumer = env
        .users_consumer(&consumer_broker, env.publisher(&consumer_broker), &recorder)
        .with_idempotency(ProcessedEvents::new(&env.db));
    let consumer_task = tokio::spawn(consumer.run(shutdown.clone()));
    eventually_declared(&broker, &broker.topology().queue(&CHAT_SVC_USERS)).await;

    let total = 300;
    let mut ids = Vec::new();
    for n in 0..total {
        if n == 100 {
            rabbitmqctl("stop_app").await;
        }
        if n == 200 {
            rabbitmqctl("start_app").await;
        }
        ids.push(
            outbox
                .enqueue(&format!("user:{n}"), None, user_registered(n))
                .await
                .unwrap(),
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    eventually(
        "every event delivered after the restart",
        Duration::from_secs(60),
        || {
            let mut seen = recorder.ids();
            seen.sort();
            seen.dedup();
            seen.len() == total
        },
    )
    .await;
    let mut seen = recorder.ids();
    let received = seen.len();
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), total, "no event lost");
    assert_eq!(received, total, "no event handled twice");
    assert!(broker.is_connected(), "the publisher reconnected by itself");

    shutdown.cancel();
    let _ = tokio::join!(keeper, relay_task, consumer_task);
    consumer_broker.close().await;
    env.cleanup(&broker, &[]).await;
}

async fn rabbitmqctl(cmd: &str) {
    let status = tokio::process::Command::new("rabbitmqctl")
        .args(["-q", cmd])
        .status()
        .await
        .expect("rabbitmqctl runs");
    assert!(status.success(), "rabbitmqctl {cmd}");
    if cmd == "start_app" {
        let _ = tokio::process::Command::new("rabbitmqctl")
            .args(["-q", "await_startup"])
            .status()
            .await;
    }
}

/// A retried insert of a fresh `_id` is recognised as already applied; a
/// conflict on another unique index stays a conflict.
#[tokio::test]
async fn a_duplicate_on_the_fresh_id_counts_as_done_but_other_conflicts_do_not() {
    use mongodb::bson::{doc, Document};
    let env = TestEnv::new().await;
    let plain = env.db.collection::<Document>("fresh");
    let first = doc! { "_id": "a", "name": "one" };
    broker::outbox::fresh_insert(plain.insert_one(&first).await).expect("first insert");
    let again = plain
        .insert_one(&first)
        .await
        .expect_err("a second insert of _id a");
    assert!(broker::outbox::is_duplicate_id(&again), "{again}");
    broker::outbox::fresh_insert(plain.insert_one(&first).await).expect("counts as done");
    assert_eq!(plain.count_documents(doc! {}).await.expect("count"), 1);

    let named = env.db.collection::<Document>("named");
    named
        .create_index(
            mongodb::IndexModel::builder()
                .keys(doc! { "name": 1 })
                .options(
                    mongodb::options::IndexOptions::builder()
                        .unique(true)
                        .build(),
                )
                .build(),
        )
        .await
        .expect("index");
    named
        .insert_one(doc! { "_id": "a", "name": "one" })
        .await
        .expect("insert");
    let other = named
        .insert_one(doc! { "_id": "b", "name": "one" })
        .await
        .expect_err("a name conflict");
    assert!(
        broker::outbox::is_duplicate_key(&other) && !broker::outbox::is_duplicate_id(&other),
        "{other}"
    );
    assert!(broker::outbox::fresh_insert(Err::<(), _>(other)).is_err());
}
