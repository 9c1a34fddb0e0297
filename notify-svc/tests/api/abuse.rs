//! Issue 20 on notify-svc's side: mail only to addresses their owner proved
//! (the verification mail being the one exception, with its token kept out
//! of logs and storage), devices named by the parser rather than by the
//! header an attacker sent, and push endpoints that cannot reach private
//! addresses through their IPv6 forms, other ports or a proxy.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use broker::events::auth::{
    EmailVerificationRequested, LoginSucceeded, MfaDisabled, MfaEnabled, UserRegistered,
    UserUpdated,
};
use mongodb::bson::doc;
use serde_json::json;

use crate::helpers::{new_test_id, settings_env, spawn_with, token_for, TestApp};
use crate::world::{
    eventually, feed, html_part, mails_to, subject, subscribe, Behaviour, Person, PushService,
    World,
};

const WAIT: Duration = Duration::from_secs(15);

/// A user whose address is not verified yet, as auth-svc announces one
/// right after registration.
async fn unverified(world: &World, name: &str) -> Person {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let email = format!("{name}-{}@example.com", &id[..10]);
    world
        .publish(
            "auth-svc",
            UserRegistered {
                user_id: id.clone(),
                username: name.to_owned(),
                display_name: format!("{name} display"),
                avatar_url: None,
                email: email.clone(),
                profile_version: 1,
                email_verified: false,
            },
        )
        .await;
    Person {
        token: token_for(&id),
        id,
        username: name.to_owned(),
        email,
    }
}

fn profile(who: &Person, version: i64, verified: bool) -> UserUpdated {
    UserUpdated {
        user_id: who.id.clone(),
        username: who.username.clone(),
        display_name: format!("{} display", who.username),
        avatar_url: None,
        email: who.email.clone(),
        profile_version: version,
        email_verified: verified,
    }
}

async fn database(id: &str) -> mongodb::Database {
    let uri =
        std::env::var("TEST_MONGODB_URI").unwrap_or_else(|_| "mongodb://127.0.0.1:27017".into());
    mongodb::Client::with_uri_str(uri)
        .await
        .expect("MongoDB client")
        .database(&format!("notify_test_{id}"))
}

async fn put_preferences(app: &TestApp, who: &Person, body: serde_json::Value) {
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

/// `n` mails to `address`, waiting for them; then checks no more follow.
async fn exactly_mails(address: &str, n: usize) -> Vec<String> {
    let mails = eventually(WAIT, || async {
        let m = mails_to(address);
        (m.len() >= n).then_some(m)
    })
    .await
    .unwrap_or_else(|| panic!("{n} mails to {address}, got {}", mails_to(address).len()));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let after = mails_to(address);
    assert_eq!(
        after.len(),
        n,
        "subjects: {:?}",
        after.iter().map(|m| subject(m)).collect::<Vec<_>>()
    );
    mails
}

/// notify-svc as a process of its own, its output (both streams) in
/// `log`. Returns the process and its base URL once it is ready.
async fn process(
    id: &str,
    overrides: serde_json::Value,
    env: &[(&str, String)],
    log: &Path,
) -> (tokio::process::Child, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("free port")
        .local_addr()
        .expect("addr")
        .port();
    let mut overrides = overrides;
    overrides["http_port"] = json!(port);
    let out = std::fs::File::create(log).expect("log file");
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_notify-svc"));
    command
        .envs(settings_env(id, overrides))
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(out.try_clone().expect("log file"))
        .stderr(out)
        .kill_on_drop(true);
    for key in ["NO_PROXY", "no_proxy"] {
        command.env_remove(key);
    }
    let child = command.spawn().expect("notify-svc starts");
    let base = format!("http://127.0.0.1:{port}");
    let ready = format!("{base}/health/ready");
    eventually(WAIT, || async {
        let ok = reqwest::get(&ready).await.is_ok_and(|r| r.status() == 200);
        ok.then_some(())
    })
    .await
    .expect("notify-svc process ready");
    (child, base)
}

fn log_file(id: &str, name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("notify-{name}-{id}.log"))
}

#[tokio::test]
async fn the_verification_mail_reaches_an_unverified_address_once_and_its_token_is_never_logged() {
    let id = new_test_id();
    let world = World::new(&id).await;
    let log = log_file(&id, "verification");
    // Debug level everywhere: the token must not appear in any log line.
    let (mut app, _) = process(&id, json!({}), &[("RUST_LOG", "debug".into())], &log).await;
    let erin = unverified(&world, "erin").await;
    let token = format!("{}-{}_Zz", new_test_id(), uuid::Uuid::new_v4().simple());
    let expires = chrono::Utc::now() + chrono::Duration::hours(24);
    let request = world
        .publish(
            "auth-svc",
            EmailVerificationRequested {
                user_id: erin.id.clone(),
                email: erin.email.clone(),
                display_name: "Erin <b>display</b>".into(),
                token: token.clone(),
                expires_at: expires.to_rfc3339(),
            },
        )
        .await;
    // An expired request (a late replay) mails nothing.
    let late = unverified(&world, "late").await;
    world
        .publish(
            "auth-svc",
            EmailVerificationRequested {
                user_id: late.id.clone(),
                email: late.email.clone(),
                display_name: "late".into(),
                token: format!("{}{}", new_test_id(), new_test_id()),
                expires_at: (chrono::Utc::now() - chrono::Duration::minutes(1)).to_rfc3339(),
            },
        )
        .await;
    world.publish_envelope(&request).await; // redelivered: still one mail

    let mails = exactly_mails(&erin.email, 1).await;
    let raw = &mails[0];
    assert_eq!(subject(raw), "Confirm your email address");
    // PUBLIC_URL defaults to the first allowed origin.
    let link = format!("http://127.0.0.1:8080/verify-email?token={token}");
    assert!(raw.contains(&format!("token={token}")), "{raw}");
    assert!(raw.contains(&link), "{raw}");
    assert!(raw.contains("24 hours"), "{raw}");
    let html = html_part(raw);
    assert!(html.contains(&format!("href=\"{link}\"")), "{html}");
    assert!(html.contains("Erin &lt;b&gt;display&lt;/b&gt;"), "{html}");
    assert!(
        mails_to(&late.email).is_empty(),
        "an expired link was mailed"
    );

    // Sent: the job keeps no copy of the link.
    let job = database(&id)
        .await
        .collection::<mongodb::bson::Document>("mail_jobs")
        .find_one(doc! { "_id": format!("verify-{}", request.id.simple()) })
        .await
        .expect("mail_jobs")
        .expect("the verification job");
    assert_eq!(job.get_str("status"), Ok("sent"));
    assert!(
        !job.to_string().contains(&token),
        "the token is kept: {job}"
    );

    app.start_kill().expect("stop");
    app.wait().await.expect("reaped");
    let logs = std::fs::read_to_string(&log).expect("log");
    assert!(
        logs.contains("consuming"),
        "the log was not captured: {logs}"
    );
    assert!(!logs.contains(&token), "the token is in the log");
    let _ = std::fs::remove_file(&log);
}

#[tokio::test]
async fn the_verification_link_starts_with_the_configured_public_url() {
    let id = new_test_id();
    let world = World::new(&id).await;
    let app = spawn_with(&id, json!({"public_url": "https://chat.example.com/"})).await;
    app.wait_ready().await;
    let fay = unverified(&world, "fay").await;
    let token = format!("{}{}", new_test_id(), new_test_id());
    world
        .publish(
            "auth-svc",
            EmailVerificationRequested {
                user_id: fay.id.clone(),
                email: fay.email.clone(),
                display_name: "fay".into(),
                token: token.clone(),
                expires_at: (chrono::Utc::now() + chrono::Duration::hours(24)).to_rfc3339(),
            },
        )
        .await;
    let mails = exactly_mails(&fay.email, 1).await;
    assert!(
        mails[0].contains(&format!(
            "https://chat.example.com/verify-email?token={token}"
        )),
        "{}",
        mails[0]
    );
}

#[tokio::test]
async fn digests_and_security_mail_wait_for_a_verified_address() {
    let id = new_test_id();
    let world = World::new(&id).await;
    let app = world.app().await;
    let alice = world.person("alice").await;
    let carol = world.person("carol").await; // verified: the control
    let bob = unverified(&world, "bob").await;
    // A replica document from before verification existed: unverified.
    let dave = Person {
        id: uuid::Uuid::new_v4().simple().to_string(),
        username: "dave".into(),
        email: format!("dave-{id}@example.com"),
        token: String::new(),
    };
    let dave = Person {
        token: token_for(&dave.id),
        ..dave
    };
    database(&id)
        .await
        .collection::<mongodb::bson::Document>("users")
        .insert_one(doc! {
            "_id": &dave.id, "username": "dave", "displayName": "dave display",
            "email": &dave.email, "profileVersion": 1,
        })
        .await
        .expect("old replica document");
    for who in [&bob, &carol] {
        put_preferences(
            &app,
            who,
            json!({"push": false, "email": true, "emailDelaySeconds": 1, "mutedChatIds": []}),
        )
        .await;
    }
    let members = [&alice, &bob, &carol];
    let chat = world.group("Team", &members).await;
    world.send(&chat, &alice, &members, "first").await;
    for who in [&bob, &carol, &dave] {
        world
            .publish(
                "auth-svc",
                MfaEnabled {
                    user_id: who.id.clone(),
                },
            )
            .await;
    }
    // Carol's digest and notice show both were made and mailed; bob's and
    // dave's were decided at the same moment.
    exactly_mails(&carol.email, 2).await;
    assert!(
        mails_to(&bob.email).is_empty(),
        "an unverified address got mail"
    );
    assert!(mails_to(&dave.email).is_empty(), "an old replica got mail");
    assert_eq!(
        feed(&app, &bob, "").await.len(),
        2,
        "the feed still has both"
    );
    assert_eq!(feed(&app, &dave, "").await.len(), 1);

    // Bob verifies; a late copy of an older profile changes nothing.
    world.publish("auth-svc", profile(&bob, 2, true)).await;
    world.publish("auth-svc", profile(&bob, 1, false)).await;
    world
        .publish(
            "auth-svc",
            MfaDisabled {
                user_id: bob.id.clone(),
            },
        )
        .await;
    world.send(&chat, &alice, &members, "second").await;
    let mails = exactly_mails(&bob.email, 2).await;
    let mut subjects: Vec<String> = mails.iter().map(|m| subject(m)).collect();
    subjects.sort();
    // The skipped digest was dropped, not kept for later: one message.
    assert_eq!(
        subjects,
        [
            "1 unread message in Team",
            "Security notice: two-factor authentication turned off",
        ]
    );
}

#[tokio::test]
async fn a_new_device_is_named_by_its_parsed_browser_never_by_its_header() {
    let world = World::new(&new_test_id()).await;
    let app = world.app().await;
    let gil = world.person("gil").await;
    let agents = [
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0"
            .to_owned(),
        "<script>alert(1)</script>".to_owned(),
        "Mozilla/5.0 (Windows NT 10.0) Firefox/133.0 http://evil.example/login <a href=x>"
            .to_owned(),
        format!("http://evil.example/{}", "A".repeat(10 * 1024)),
    ];
    for agent in &agents {
        world
            .publish(
                "auth-svc",
                LoginSucceeded {
                    user_id: gil.id.clone(),
                    session_id: new_test_id(),
                    ip: Some("203.0.113.9".into()),
                    user_agent: Some(agent.clone()),
                    new_device: true,
                },
            )
            .await;
    }
    let mails = exactly_mails(&gil.email, agents.len()).await;
    let mut devices = Vec::new();
    for raw in &mails {
        for bad in [
            "evil.example",
            "<script",
            "&lt;script",
            "http://",
            "AAAA",
            "<a href=x",
        ] {
            assert!(!raw.contains(bad), "{bad} quoted in {raw}");
        }
        let html = html_part(raw);
        let start = html.find("new device: ").expect("the device sentence") + 12;
        let device = &html[start..html[start..].find(", from").expect("the address") + start];
        assert!(device.chars().count() <= 64, "{device}");
        devices.push(device.to_owned());
    }
    devices.sort();
    assert_eq!(
        devices,
        [
            "Firefox 133 on Windows 10",
            "Firefox 133 on Windows 10",
            "an unknown device",
            "an unknown device",
        ]
    );
    let feed = feed(&app, &gil, "").await;
    assert!(feed
        .iter()
        .all(|n| !n["body"].as_str().unwrap_or("").contains("evil.example")));
}

#[tokio::test]
async fn push_endpoints_on_other_ports_or_in_nat64_and_6to4_forms_are_refused() {
    let id = new_test_id();
    let world = World::new(&id).await;
    let app = spawn_with(&id, json!({"dev_allow_loopback_push": false})).await;
    app.wait_ready().await;
    let bob = world.person("bob").await;
    let keys = json!({"p256dh": "BNcRdreALRFXTkOOUHK1EtK2wtaz5Ry4YfYCA_0QTpQtUbVlUls0VJXg7A8u-Ts1XbjhazAkj7I99e8QcYP7DkM", "auth": "tBHItJI5svbpez7KI4CCXg"});
    for endpoint in [
        "https://8.8.8.8:8443/push",
        "https://8.8.8.8:80/push",
        "https://[64:ff9b::a9fe:a9fe]/latest/meta-data", // 169.254.169.254
        "https://[64:ff9b::7f00:1]/push",                // 127.0.0.1
        "https://[64:ff9b::a00:1]/push",                 // 10.0.0.1
        "https://[64:ff9b:1::808:808]/push",             // local-use NAT64
        "https://[2002:a00:1::1]/push",                  // 6to4 of 10.0.0.1
        "https://[2002:7f00:1::]/push",                  // 6to4 of 127.0.0.1
        "https://[2002:c0a8:101::1]/push",               // 6to4 of 192.168.1.1
        "https://[::ffff:0:a00:1]/push",                 // IPv4-translated 10.0.0.1
    ] {
        let r = subscribe(&app, &bob, &json!({"endpoint": endpoint, "keys": keys})).await;
        assert_eq!(r.status(), 422, "{endpoint} accepted");
        let body = r.text().await.expect("problem");
        assert!(body.contains("endpoint"), "{endpoint}: {body}");
    }
    for endpoint in [
        "https://8.8.8.8:443/push",
        "https://[64:ff9b::808:808]/push",
    ] {
        let r = subscribe(&app, &bob, &json!({"endpoint": endpoint, "keys": keys})).await;
        assert_eq!(r.status(), 201, "{endpoint} refused");
    }
}

/// A proxy from the environment would connect wherever it likes, past the
/// resolver that filters addresses: pushes never go through one.
#[tokio::test]
async fn pushes_ignore_a_proxy_set_in_the_environment() {
    let id = new_test_id();
    let world = World::new(&id).await;
    let push = PushService::start().await;
    let proxy = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("proxy");
    let proxy_url = format!("http://{}", proxy.local_addr().expect("addr"));
    let proxied = Arc::new(AtomicUsize::new(0));
    let counter = proxied.clone();
    tokio::spawn(async move {
        while let Ok((connection, _)) = proxy.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            drop(connection);
        }
    });
    let env: Vec<(&str, String)> = [
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
    ]
    .into_iter()
    .map(|k| (k, proxy_url.clone()))
    .collect();
    let log = log_file(&id, "proxy");
    let (_app, base) = process(&id, json!({}), &env, &log).await;
    let alice = world.person("alice").await;
    let bob = world.person("bob").await;
    let r = reqwest::Client::new()
        .post(format!("{base}/api/notifications/push-subscriptions"))
        .bearer_auth(&bob.token)
        .json(&push.device("bob", Behaviour::Accept))
        .send()
        .await
        .expect("subscribe");
    assert_eq!(r.status(), 201);
    let members = [&alice, &bob];
    let chat = world.group("Pair", &members).await;
    world.send(&chat, &alice, &members, "direct, please").await;
    eventually(WAIT, || async {
        (!push.received("bob").is_empty()).then_some(())
    })
    .await
    .unwrap_or_else(|| {
        panic!(
            "no push; {} connection(s) went to the proxy",
            proxied.load(Ordering::SeqCst)
        )
    });
    assert_eq!(
        proxied.load(Ordering::SeqCst),
        0,
        "a push went through the proxy"
    );
    let _ = std::fs::remove_file(&log);
}
