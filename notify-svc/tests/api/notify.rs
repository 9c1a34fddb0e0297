//! Notifications end to end: events in from RabbitMQ, effects out to
//! MongoDB (the feed), a push service on loopback that decrypts, and the
//! SMTP sink.

use std::collections::HashSet;
use std::time::Duration;

use broker::events::auth::{LoginSucceeded, MfaDisabled, MfaEnabled, RecoveryCodeUsed};
use serde_json::json;

use crate::helpers::{new_test_id, settings_env, spawn_with};
use crate::world::{
    eventually, feed, feed_soon, mails_to, metric, subject, subscribe, Behaviour, PushService,
    World,
};

const WAIT: Duration = Duration::from_secs(10);

async fn put_preferences(
    app: &crate::helpers::TestApp,
    who: &crate::world::Person,
    body: serde_json::Value,
) {
    let r = app
        .client
        .put(app.url("/api/notifications/preferences"))
        .bearer_auth(&who.token)
        .json(&body)
        .send()
        .await
        .expect("put");
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn a_message_notifies_each_other_member_once_in_app_and_by_decryptable_push() {
    let world = World::new(&new_test_id()).await;
    let app = world.app().await;
    let push = PushService::start().await;
    let alice = world.person("alice").await;
    let bob = world.person("bob").await;
    let carol = world.person("carol").await;
    for (who, device) in [
        (&bob, "bob-phone"),
        (&bob, "bob-laptop"),
        (&carol, "carol"),
        (&alice, "alice"),
    ] {
        let r = subscribe(&app, who, &push.device(device, Behaviour::Accept)).await;
        assert_eq!(r.status(), 201, "{device}");
    }
    let members = [&alice, &bob, &carol];
    let chat = world.group("Team", &members).await;
    let message = world.message(&chat, &alice, &members, "Lunch at noon?");
    world.publish_envelope(&message).await;

    for who in [&bob, &carol] {
        let got = feed_soon(&app, who).await.expect("notified");
        assert_eq!(got.len(), 1);
        assert_eq!(got[0]["kind"], "message");
        assert_eq!(got[0]["title"], "Team");
        assert_eq!(got[0]["chatId"], chat.as_str());
        assert_eq!(got[0]["messageId"], message.data.message.id.as_str());
        assert!(got[0]["body"].as_str().unwrap().contains("Lunch at noon?"));
        assert!(got[0]["readAt"].is_null());
    }
    for device in ["bob-phone", "bob-laptop", "carol"] {
        let got = eventually(WAIT, || async {
            let r = push.received(device);
            (!r.is_empty()).then_some(r)
        })
        .await
        .expect("pushed");
        assert_eq!(got[0].payload["title"], "Team");
        assert_eq!(got[0].payload["chatId"], chat.as_str());
        assert!(got[0].payload["body"]
            .as_str()
            .unwrap()
            .contains("Lunch at noon?"));
        assert_eq!(got[0].vapid_aud, push.base);
    }

    // The same event again (a redelivery): no second effect anywhere.
    world.publish_envelope(&message).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(feed(&app, &bob, "").await.len(), 1);
    assert_eq!(feed(&app, &carol, "").await.len(), 1);
    assert!(
        feed(&app, &alice, "").await.is_empty(),
        "the sender is not notified"
    );
    for device in ["bob-phone", "bob-laptop", "carol"] {
        assert_eq!(push.received(device).len(), 1, "{device}");
    }
    assert!(push.received("alice").is_empty());
    assert!(push.refused().is_empty(), "{:?}", push.refused());
    let delivered = metric(&app, "push_attempts_total{result=\"delivered\"").await;
    assert_eq!(delivered, 3.0, "three pushes counted as delivered");

    // Mark read: gone from the unread filter; someone else's id is a 404.
    let id = feed(&app, &bob, "").await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let read = |who: &crate::world::Person| {
        app.client
            .post(app.url(&format!("/api/notifications/{id}/read")))
            .bearer_auth(&who.token)
            .send()
    };
    assert_eq!(read(&carol).await.unwrap().status(), 404);
    assert_eq!(read(&bob).await.unwrap().status(), 204);
    assert_eq!(read(&bob).await.unwrap().status(), 204);
    assert!(feed(&app, &bob, "?unreadOnly=true").await.is_empty());
    assert_eq!(feed(&app, &bob, "").await.len(), 1);
}

#[tokio::test]
async fn a_muted_chat_stays_quiet_but_a_mention_gets_through() {
    let world = World::new(&new_test_id()).await;
    let app = world.app().await;
    let push = PushService::start().await;
    let alice = world.person("alice").await;
    let bob = world.person("bob").await;
    let carol = world.person("carol").await;
    let members = [&alice, &bob, &carol];
    let chat = world.group("Team", &members).await;
    assert_eq!(
        subscribe(&app, &carol, &push.device("carol", Behaviour::Accept))
            .await
            .status(),
        201
    );
    put_preferences(
        &app,
        &bob,
        json!({"push": true, "email": false, "emailDelaySeconds": 600, "mutedChatIds": [chat]}),
    )
    .await;
    put_preferences(&app, &carol, json!({"push": true, "email": false, "emailDelaySeconds": 600, "mutedChatIds": [], "pushPreviews": false})).await;

    world.send(&chat, &alice, &members, "secret plans").await;
    let carol_feed = feed_soon(&app, &carol).await.expect("carol notified");
    assert_eq!(carol_feed.len(), 1);
    assert!(feed(&app, &bob, "").await.is_empty(), "muted chat notified");
    let pushed = eventually(WAIT, || async {
        let r = push.received("carol");
        (!r.is_empty()).then_some(r)
    })
    .await
    .expect("carol pushed");
    let body = pushed[0].payload["body"].as_str().unwrap();
    assert!(
        !body.contains("secret"),
        "preview shown with previews off: {body}"
    );

    world.send(&chat, &alice, &members, "hey @BOB, look").await;
    let bob_feed = feed_soon(&app, &bob)
        .await
        .expect("mention notified in a muted chat");
    assert_eq!(bob_feed.len(), 1);
    assert_eq!(bob_feed[0]["kind"], "mention");
}

#[tokio::test]
async fn gone_subscriptions_are_deleted_and_failing_pushes_retried_without_duplicates() {
    let world = World::new(&new_test_id()).await;
    let app = world.app().await;
    let push = PushService::start().await;
    let alice = world.person("alice").await;
    let bob = world.person("bob").await;
    let members = [&alice, &bob];
    let chat = world.group("Pair", &members).await;
    for (device, behaviour) in [
        ("ok", Behaviour::Accept),
        ("gone", Behaviour::Always(410)),
        ("flaky", Behaviour::FailFirst(503, 2)),
        ("busy", Behaviour::FailFirst(429, 1)),
    ] {
        assert_eq!(
            subscribe(&app, &bob, &push.device(device, behaviour))
                .await
                .status(),
            201
        );
    }
    world.send(&chat, &alice, &members, "first").await;
    for device in ["flaky", "busy"] {
        eventually(WAIT, || async {
            (!push.received(device).is_empty()).then_some(())
        })
        .await
        .unwrap_or_else(|| panic!("{device} never received its push"));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        push.received("ok").len(),
        1,
        "retries re-pushed to a reached device"
    );
    assert_eq!(push.received("flaky").len(), 1);
    assert_eq!(push.received("busy").len(), 1);
    assert_eq!(push.attempts("flaky"), 3);
    assert_eq!(push.attempts("gone"), 1, "a gone endpoint was tried again");
    assert_eq!(
        feed(&app, &bob, "").await.len(),
        1,
        "retries duplicated the notification"
    );

    world.send(&chat, &alice, &members, "second").await;
    eventually(WAIT, || async {
        (push.received("ok").len() == 2).then_some(())
    })
    .await
    .expect("second push");
    assert_eq!(
        push.attempts("gone"),
        1,
        "the 410 subscription was not deleted"
    );
}

#[tokio::test]
async fn push_endpoints_must_be_public_https_and_keys_valid() {
    let id = new_test_id();
    let world = World::new(&id).await;
    let app = spawn_with(&id, json!({"dev_allow_loopback_push": false})).await;
    app.wait_ready().await;
    let bob = world.person("bob").await;
    let keys = json!({"p256dh": "BNcRdreALRFXTkOOUHK1EtK2wtaz5Ry4YfYCA_0QTpQtUbVlUls0VJXg7A8u-Ts1XbjhazAkj7I99e8QcYP7DkM", "auth": "tBHItJI5svbpez7KI4CCXg"});
    for endpoint in [
        "https://10.0.0.1/push",
        "https://192.168.1.20/push",
        "https://169.254.169.254/latest/meta-data",
        "https://[::1]/push",
        "https://127.0.0.1/push",
        "https://localhost/push",
        "http://127.0.0.1:8080/push",
        "http://8.8.8.8/push",
        "https://user:pass@8.8.8.8/push",
        "javascript:alert(1)",
    ] {
        let r = subscribe(&app, &bob, &json!({"endpoint": endpoint, "keys": keys})).await;
        assert_eq!(r.status(), 422, "{endpoint} accepted");
    }
    let r = subscribe(
        &app,
        &bob,
        &json!({"endpoint": "https://8.8.8.8/push/x", "keys": keys}),
    )
    .await;
    assert_eq!(r.status(), 201, "a public https endpoint is refused");
    let id = r.json::<serde_json::Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for bad_keys in [
        json!({"p256dh": "not-a-key", "auth": "tBHItJI5svbpez7KI4CCXg"}),
        json!({"p256dh": keys["p256dh"], "auth": "c2hvcnQ"}),
    ] {
        let r = subscribe(
            &app,
            &bob,
            &json!({"endpoint": "https://8.8.8.8/push/y", "keys": bad_keys}),
        )
        .await;
        assert_eq!(r.status(), 422);
    }
    let eve = world.person("eve").await;
    let delete = |who: &crate::world::Person| {
        app.client
            .delete(app.url(&format!("/api/notifications/push-subscriptions/{id}")))
            .bearer_auth(&who.token)
            .send()
    };
    assert_eq!(delete(&eve).await.unwrap().status(), 404);
    assert_eq!(delete(&bob).await.unwrap().status(), 204);
    assert_eq!(delete(&bob).await.unwrap().status(), 404);
    let key: serde_json::Value = app
        .client
        .get(app.url("/api/notifications/vapid-public-key"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let raw = data_encoding::BASE64URL_NOPAD
        .decode(key["publicKey"].as_str().unwrap().as_bytes())
        .unwrap();
    assert_eq!((raw.len(), raw[0]), (65, 4), "uncompressed P-256 point");
}

/// Chat events are handled concurrently: a new group's first message can
/// be handled before its chat.created. It waits for it (a retry), so the
/// notification names the group, not the sender.
#[tokio::test]
async fn a_message_that_overtakes_its_new_group_is_notified_under_the_group_name() {
    let world = World::new(&new_test_id()).await;
    let app = world.app().await;
    let alice = world.person("alice").await;
    let bob = world.person("bob").await;
    let members = [&alice, &bob];
    let chat = uuid::Uuid::now_v7().simple().to_string();
    let message = world.message(&chat, &alice, &members, "first!");
    world.publish_envelope(&message).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    world.group_with_id(&chat, "Late group", &members).await;

    let got = eventually(Duration::from_secs(10), || async {
        let f = feed(&app, &bob, "").await;
        (!f.is_empty()).then_some(f)
    })
    .await
    .expect("bob is notified");
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["title"], "Late group", "{got:?}");
    assert_eq!(got[0]["messageId"], message.data.message.id.as_str());
}

/// Two instances share the queues and the digest work: still one digest.
#[tokio::test]
async fn one_digest_after_the_delay_and_none_when_read_first() {
    let world = World::new(&new_test_id()).await;
    let app = world.app().await;
    let _second = world.app().await;
    let alice = world.person("alice").await;
    let bob = world.person("bob").await;
    let carol = world.person("carol").await;
    let dave = world.person("dave").await;
    for who in [&bob, &carol, &dave] {
        put_preferences(
            &app,
            who,
            json!({"push": false, "email": true, "emailDelaySeconds": 2, "mutedChatIds": []}),
        )
        .await;
    }
    let members = [&alice, &bob, &carol, &dave];
    let team = world.group("Team <b>", &members).await;
    let side = world.group("Side", &[&alice, &bob]).await;
    let first = world.message(&team, &alice, &members, "one");
    let last = world.message(&team, &alice, &members, "two <script>");
    let last_id = last.data.message.id.clone();
    // Dave's read marker overtakes the messages it covers (competing
    // consumers and retries reorder events): still no digest for him.
    world.read(&team, &dave, &last_id, &members).await;
    world.publish_envelope(&first).await;
    world.publish_envelope(&last).await;
    world.send(&side, &alice, &[&alice, &bob], "three").await;
    // Carol reads everything at once: her digest is cancelled.
    world.read(&team, &carol, &last_id, &members).await;

    let bob_mail = eventually(Duration::from_secs(15), || async {
        let m = mails_to(&bob.email);
        (!m.is_empty()).then_some(m)
    })
    .await
    .expect("bob's digest");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let bob_mail_after = mails_to(&bob.email);
    assert_eq!(
        bob_mail_after.len(),
        1,
        "one digest, not {}",
        bob_mail_after.len()
    );
    assert_eq!(subject(&bob_mail[0]), "3 unread messages in 2 chats");
    assert!(
        mails_to(&carol.email).is_empty(),
        "carol read first but got a digest"
    );
    assert!(mails_to(&alice.email).is_empty(), "the sender got a digest");
    let raw = &bob_mail[0];
    assert!(raw.contains("multipart/alternative"));
    assert!(
        raw.contains("two <script>"),
        "the text part keeps the text as written"
    );
    let html = crate::world::html_part(raw);
    assert!(html.contains("two &lt;script&gt;"), "{html}");
    assert!(html.contains("Team &lt;b&gt;"), "{html}");
    assert!(
        !html.contains("<script>") && !html.contains("<b> ("),
        "unescaped: {html}"
    );
}

#[tokio::test]
async fn security_emails_for_each_auth_event_once() {
    let world = World::new(&new_test_id()).await;
    let app = world.app().await;
    let dana = world.person("dana").await;
    let enabled = world
        .publish(
            "auth-svc",
            MfaEnabled {
                user_id: dana.id.clone(),
            },
        )
        .await;
    world
        .publish(
            "auth-svc",
            MfaDisabled {
                user_id: dana.id.clone(),
            },
        )
        .await;
    world
        .publish(
            "auth-svc",
            RecoveryCodeUsed {
                user_id: dana.id.clone(),
                remaining: 7,
            },
        )
        .await;
    for new_device in [true, false] {
        world
            .publish(
                "auth-svc",
                LoginSucceeded {
                    user_id: dana.id.clone(),
                    session_id: "s1".into(),
                    ip: Some("203.0.113.9".into()),
                    user_agent: Some("Evil\r\nBcc: x@example.com".into()),
                    new_device,
                },
            )
            .await;
    }
    world.publish_envelope(&enabled).await; // redelivered
    let mails = eventually(Duration::from_secs(15), || async {
        let m = mails_to(&dana.email);
        (m.len() >= 4).then_some(m)
    })
    .await
    .expect("four security emails");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        mails_to(&dana.email).len(),
        mails.len(),
        "more mail kept coming"
    );
    let subjects: HashSet<String> = mails.iter().map(|m| subject(m)).collect();
    assert_eq!(mails.len(), 4, "subjects: {subjects:?}");
    let sent = metric(&app, "mail_total{result=\"sent\"").await;
    assert!(sent >= 4.0, "the four mails counted as sent: {sent}");
    for expected in [
        "Security notice: two-factor authentication turned on",
        "Security notice: two-factor authentication turned off",
        "Security notice: recovery code used",
        "Security notice: sign-in from a new device",
    ] {
        assert!(
            subjects.contains(expected),
            "{expected} missing from {subjects:?}"
        );
    }
    assert!(
        mails.iter().all(|m| !m.contains("\nBcc:")),
        "header injected"
    );
    let recovery = mails
        .iter()
        .find(|m| subject(m).contains("recovery"))
        .unwrap();
    assert!(recovery.contains("7 recovery codes are left"));
    let feed = feed(&app, &dana, "").await;
    assert_eq!(feed.len(), 4);
    assert!(feed.iter().all(|n| n["kind"] == "security"));
}

/// SIGKILL of a notify-svc process in the middle of a burst, then a restart:
/// every message notified exactly once, every push made.
#[tokio::test]
async fn killed_mid_burst_and_restarted_loses_nothing_and_notifies_in_app_once() {
    let id = new_test_id();
    let world = World::new(&id).await;
    let push = PushService::start().await;
    let spawn = || {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_notify-svc"));
        command
            .envs(settings_env(&id, json!({"http_port": port})))
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true);
        let child = command.spawn().expect("notify-svc starts");
        (child, format!("http://127.0.0.1:{port}/health/ready"))
    };
    let ready = |url: String| async move {
        eventually(WAIT, || async {
            let ok = reqwest::get(&url)
                .await
                .map(|r| r.status() == 200)
                .unwrap_or(false);
            ok.then_some(())
        })
        .await
        .expect("notify-svc process ready");
    };
    // The API of an in-process instance is only used to read the feed.
    let reader = spawn_with(&id, json!({"amqp_prefix": format!("reader-{id}.")})).await;
    reader.wait_ready().await;
    let (mut first, url) = spawn();
    ready(url).await;
    let alice = world.person("alice").await;
    let bob = world.person("bob").await;
    assert_eq!(
        subscribe(&reader, &bob, &push.device("bob", Behaviour::Accept))
            .await
            .status(),
        201
    );
    let members = [&alice, &bob];
    let chat = world.group("Burst", &members).await;

    let total = 60;
    let mut ids = Vec::new();
    for i in 0..total {
        ids.push(
            world
                .send(&chat, &alice, &members, &format!("burst {i}"))
                .await,
        );
        if i == total / 3 {
            // Let it get going, then kill it mid-stream.
            eventually(WAIT, || async {
                (!feed(&reader, &bob, "?limit=100").await.is_empty()).then_some(())
            })
            .await
            .expect("first instance working");
            first.start_kill().expect("SIGKILL");
            first.wait().await.expect("reaped");
        }
    }
    let (_second, url) = spawn();
    ready(url).await;
    let got = eventually(Duration::from_secs(30), || async {
        let f = feed(&reader, &bob, "?limit=100").await;
        (f.len() >= total).then_some(f)
    })
    .await
    .expect("every message notified after the restart");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let got = feed(&reader, &bob, "?limit=100").await.len().max(got.len());
    assert_eq!(got, total, "duplicated notifications");
    let pushed: Vec<String> = push
        .received("bob")
        .iter()
        .map(|r| r.payload["messageId"].as_str().unwrap().to_owned())
        .collect();
    let distinct: HashSet<&String> = pushed.iter().collect();
    assert_eq!(distinct.len(), total, "pushes lost");
    let duplicates = pushed.len() - distinct.len();
    // A push the service accepted just before the kill, not yet recorded,
    // is the one case Web Push cannot deduplicate (it has no idempotency
    // key): at most one per chat event in flight at the kill.
    let in_flight = notify_svc::startup::CHAT_CONCURRENCY;
    assert!(
        duplicates <= in_flight,
        "{duplicates} duplicate pushes (more than the {in_flight} in flight)"
    );
}

#[tokio::test]
async fn a_hanging_push_endpoint_does_not_hold_up_anyone_elses_notifications() {
    let world = World::new(&new_test_id()).await;
    let app = world.app().await;
    let push = PushService::start().await;
    let alice = world.person("alice").await;
    let bob = world.person("bob").await;
    let carol = world.person("carol").await;
    let team = world.group("Team", &[&alice, &bob]).await;
    let other = world.group("Other", &[&alice, &carol]).await;
    let r = subscribe(&app, &bob, &push.device("bob", Behaviour::Hang)).await;
    assert_eq!(r.status(), 201);

    // Bob's endpoint takes the whole push timeout for each of these.
    for n in 0..3 {
        world
            .send(&team, &alice, &[&alice, &bob], &format!("to bob {n}"))
            .await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sent = std::time::Instant::now();
    world
        .send(&other, &alice, &[&alice, &carol], "to carol")
        .await;
    let carol_feed = eventually(Duration::from_secs(5), || async {
        let f = feed(&app, &carol, "").await;
        (!f.is_empty()).then_some(f)
    })
    .await
    .expect("carol notified");
    let took = sent.elapsed();
    assert_eq!(carol_feed.len(), 1);
    assert!(
        took < Duration::from_secs(2),
        "carol's notification took {took:?}"
    );
    // Bob's in-app notifications do not wait for his pushes either.
    let bob_feed = feed_soon(&app, &bob).await.expect("bob notified");
    assert!(!bob_feed.is_empty());
}

/// The feed a page at a time: every notification once, newest first, across
/// pages, while new ones arrive; a cursor from elsewhere is refused.
#[tokio::test]
async fn the_feed_pages_by_cursor_without_gaps_or_repeats() {
    let world = World::new(&new_test_id()).await;
    let app = world.app().await;
    let ann = world.person("ann").await;
    let ben = world.person("ben").await;
    let members = [&ann, &ben];
    let chat = world.group("Pages", &members).await;
    for i in 0..7 {
        world.send(&chat, &ann, &members, &format!("m{i}")).await;
    }
    let whole = eventually(WAIT, || async {
        let f = feed(&app, &ben, "").await;
        (f.len() == 7).then_some(f)
    })
    .await
    .expect("7 notifications");
    let whole: Vec<String> = whole
        .iter()
        .map(|n| n["messageId"].as_str().unwrap().to_owned())
        .collect();

    let page = |query: String| {
        let (app, ben) = (&app, &ben);
        async move {
            let r = app
                .client
                .get(app.url(&format!("/api/notifications?{query}")))
                .bearer_auth(&ben.token)
                .send()
                .await
                .expect("feed");
            (
                r.status().as_u16(),
                r.json::<serde_json::Value>().await.expect("json"),
            )
        }
    };
    let mut seen = Vec::new();
    let mut query = "limit=3".to_owned();
    for round in 0.. {
        assert!(round < 10, "paging does not end: {seen:?}");
        let (status, body) = page(query.clone()).await;
        assert_eq!(status, 200, "{body}");
        let items = body["notifications"].as_array().unwrap();
        seen.extend(
            items
                .iter()
                .map(|n| n["messageId"].as_str().unwrap().to_owned()),
        );
        if round == 0 {
            // Arrives after the first page: it goes before it, not into a later one.
            world.send(&chat, &ann, &members, "late").await;
            tokio::time::sleep(Duration::from_millis(800)).await;
        }
        if body["hasMore"] == false {
            assert!(body["nextCursor"].is_null(), "{body}");
            break;
        }
        let cursor = body["nextCursor"].as_str().expect("a cursor").to_owned();
        query = format!("limit=3&before={cursor}");
    }
    assert_eq!(
        seen, whole,
        "the pages are the feed, each once, in its order"
    );

    for junk in ["nope", "MTIz", "a.b"] {
        let (status, body) = page(format!("before={junk}")).await;
        assert_eq!(status, 422, "{junk}: {body}");
    }
}
