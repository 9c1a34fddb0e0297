//! Socket abuse limits (issue 20, "Sockets"): 16 sockets per user across
//! instances, token expiry (4001) and re-authentication with an `auth`
//! frame, one `resume` per socket, and a socket that stops reading.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use shared::auth::{Claims, TokenType};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::{spawn, spawn_with, Socket, User};

/// An access token for `user_id`/`session` that expires `secs` from now,
/// signed with the dev key as auth-svc signs.
fn token_expiring(user_id: &str, session: &str, secs: i64) -> String {
    let dir = std::env::var("TEST_KEYS_DIR")
        .unwrap_or_else(|_| format!("{}/../.dev/keys", env!("CARGO_MANIFEST_DIR")));
    let pem = std::fs::read(format!("{dir}/jwt-private.pem")).expect("dev private key");
    let key = EncodingKey::from_ed_pem(&pem).expect("Ed25519 key");
    let now = chrono::Utc::now().timestamp();
    let claims = Claims {
        sub: user_id.to_owned(),
        sid: Some(session.to_owned()),
        iss: "auth-svc".into(),
        aud: "chat-app".into(),
        exp: now + secs,
        nbf: now - 1,
        iat: now,
        jti: uuid::Uuid::new_v4().to_string(),
        typ: TokenType::Access,
    };
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some("dev-1".into());
    jsonwebtoken::encode(&header, &claims, &key).expect("sign")
}

fn ws_url(address: &str) -> String {
    format!("{address}/ws").replacen("http", "ws", 1)
}

/// A socket authenticated by header with `token`, after its `ready`.
async fn socket_with_token(address: &str, token: &str) -> Socket {
    let mut req = ws_url(address).into_client_request().unwrap();
    req.headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let (ws, _) = tokio_tungstenite::connect_async(req)
        .await
        .expect("upgrade");
    let mut socket = Socket { ws };
    assert_eq!(socket.next_frame().await.unwrap()["type"], "ready");
    socket
}

/// The status, `Retry-After` and body of a header-authenticated upgrade
/// that was refused.
async fn refused_upgrade(address: &str, user: &User) -> (u16, Option<String>, Value) {
    let mut req = ws_url(address).into_client_request().unwrap();
    req.headers_mut().insert(
        "authorization",
        format!("Bearer {}", user.token).parse().unwrap(),
    );
    match tokio_tungstenite::connect_async(req).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            let retry = response
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_owned());
            let content_type = response.headers()["content-type"].to_str().unwrap();
            assert_eq!(content_type, "application/problem+json");
            let body = serde_json::from_slice(response.body().as_deref().unwrap_or(b"{}")).unwrap();
            (response.status().as_u16(), retry, body)
        }
        Ok(_) => panic!("upgrade accepted"),
        Err(e) => panic!("upgrade failed otherwise: {e}"),
    }
}

/// Waits until the user may open a socket on `address` again (a closed
/// socket gives its slot back asynchronously).
async fn socket_when_admitted(address: &str, user: &User, within: Duration) -> Socket {
    let deadline = Instant::now() + within;
    loop {
        let mut req = ws_url(address).into_client_request().unwrap();
        req.headers_mut().insert(
            "authorization",
            format!("Bearer {}", user.token).parse().unwrap(),
        );
        if let Ok((ws, _)) = tokio_tungstenite::connect_async(req).await {
            let mut socket = Socket { ws };
            assert_eq!(socket.next_frame().await.unwrap()["type"], "ready");
            return socket;
        }
        assert!(Instant::now() < deadline, "never admitted again");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Sends a ping and waits for its pong: every frame sent before it has
/// then been handled.
async fn round_trip(socket: &mut Socket) {
    socket.send(json!({"type": "ping"})).await;
    assert!(socket.next_of("pong").await.is_some(), "no pong");
}

#[tokio::test]
async fn the_17th_socket_of_a_user_is_refused_across_instances_and_a_closed_one_frees_a_slot() {
    let chat = spawn(2).await;
    let ada = chat.user("ada").await;
    let ben = chat.user("ben").await;
    let mut open = Vec::new();
    for i in 0..16 {
        open.push(chat.socket(i % 2, &ada).await);
    }

    // Header authentication: refused before the upgrade, on either instance.
    for instance in 0..2 {
        let (status, retry, body) = refused_upgrade(&chat.instances[instance].address, &ada).await;
        assert_eq!(status, 429, "instance {instance}");
        assert!(retry.is_some_and(|s| s.parse::<u64>().unwrap() >= 1));
        assert_eq!(body["status"], 429);
    }

    // First-frame authentication (browsers): already upgraded, so an error
    // frame and close code 4029.
    let (ws, _) = tokio_tungstenite::connect_async(ws_url(&chat.instances[1].address))
        .await
        .unwrap();
    let mut browser = Socket { ws };
    browser
        .send(json!({"type": "auth", "token": ada.token}))
        .await;
    let refusal = browser.next_frame().await.expect("error frame");
    assert_eq!(refusal["type"], "error");
    assert_eq!(refusal["code"], "too_many_sockets");
    assert_eq!(browser.close_code(Duration::from_secs(5)).await, Some(4029));

    // Another user is not affected.
    let _ben = chat.socket(0, &ben).await;

    // The 16 open sockets still work.
    for socket in &mut open {
        round_trip(socket).await;
    }

    // Closing one frees its slot for a new socket, on the other instance.
    let mut closing = open.remove(0);
    closing.ws.close(None).await.unwrap();
    drop(closing);
    let mut again =
        socket_when_admitted(&chat.instances[1].address, &ada, Duration::from_secs(5)).await;
    round_trip(&mut again).await;
    let (status, _, _) = refused_upgrade(&chat.instances[0].address, &ada).await;
    assert_eq!(status, 429, "sixteen again");
}

#[tokio::test]
async fn the_slots_of_a_killed_instance_expire_with_its_presence() {
    let chat = spawn_with(1, json!({"presence_ttl_secs": 3})).await;
    let cyd = chat.user("cyd").await;
    let mut process = chat.process(json!({})).await;
    let mut held = Vec::new();
    for _ in 0..16 {
        held.push(chat.socket_at(&process.address, &cyd).await);
    }
    let (status, _, _) = refused_upgrade(&chat.instances[0].address, &cyd).await;
    assert_eq!(status, 429);

    process.child.start_kill().expect("SIGKILL");
    process.child.wait().await.expect("reaped");
    let killed = Instant::now();
    let mut socket =
        socket_when_admitted(&chat.instances[0].address, &cyd, Duration::from_secs(15)).await;
    let took = killed.elapsed();
    assert!(took < Duration::from_secs(10), "took {took:?}");
    round_trip(&mut socket).await;
    drop(held);
}

#[tokio::test]
async fn a_socket_is_closed_with_4001_when_its_token_expires() {
    let chat = spawn(1).await;
    let dee = chat.user("dee").await;
    let token = token_expiring(&dee.id, &dee.session, 3);
    let mut socket = socket_with_token(&chat.instances[0].address, &token).await;
    let opened = Instant::now();
    round_trip(&mut socket).await;
    assert_eq!(socket.close_code(Duration::from_secs(8)).await, Some(4001));
    let took = opened.elapsed();
    assert!(
        took > Duration::from_millis(1500) && took < Duration::from_secs(5),
        "closed after {took:?}"
    );
}

#[tokio::test]
async fn a_fresh_token_for_the_same_user_moves_the_expiry_to_its_own() {
    let chat = spawn(1).await;
    let eve = chat.user("eve").await;
    let mut socket = socket_with_token(
        &chat.instances[0].address,
        &token_expiring(&eve.id, &eve.session, 2),
    )
    .await;
    let opened = Instant::now();
    // A fresh token of another session of the same user (as after a
    // sign-in elsewhere) is accepted too; it expires 6 s from now.
    let other_session = uuid::Uuid::new_v4().simple().to_string();
    socket
        .send(json!({"type": "auth", "token": token_expiring(&eve.id, &other_session, 6)}))
        .await;
    round_trip(&mut socket).await;
    // Past the first token's expiry (and the verifier's 5 s leeway would not
    // matter: the socket closes at `exp` exactly), still open.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    round_trip(&mut socket).await;
    assert_eq!(socket.close_code(Duration::from_secs(6)).await, Some(4001));
    let took = opened.elapsed();
    assert!(
        took > Duration::from_secs(5) && took < Duration::from_secs(8),
        "closed after {took:?}: the new token's expiry"
    );
}

#[tokio::test]
async fn a_token_of_another_user_or_an_invalid_or_revoked_one_is_refused_and_moves_nothing() {
    let chat = spawn(1).await;
    let fay = chat.user("fay").await;
    let gus = chat.user("gus").await;
    let mut socket = socket_with_token(
        &chat.instances[0].address,
        &token_expiring(&fay.id, &fay.session, 4),
    )
    .await;
    let opened = Instant::now();

    // A revoked session of the same user: revoke it, and wait until
    // chat-svc refuses it over REST.
    let revoked_session = uuid::Uuid::new_v4().simple().to_string();
    let revoked = token_expiring(&fay.id, &revoked_session, 900);
    chat.publish(broker::events::auth::SessionRevoked {
        user_id: fay.id.clone(),
        session_id: revoked_session.clone(),
        reason: "logout".into(),
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while chat
        .client
        .get(chat.url(0, "/api/chat"))
        .bearer_auth(&revoked)
        .send()
        .await
        .unwrap()
        .status()
        != 401
    {
        assert!(Instant::now() < deadline, "revocation never arrived");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let expired = token_expiring(&fay.id, &fay.session, -60);
    for (what, token) in [
        ("another user's", gus.token.clone()),
        ("a malformed", "not-a-token".to_owned()),
        ("an expired", expired),
        ("a revoked session's", revoked),
    ] {
        socket.send(json!({"type": "auth", "token": token})).await;
        let answer = socket.next_frame().await.expect("an answer");
        assert_eq!(answer["type"], "error", "{what} token");
        assert_eq!(answer["code"], "unauthorized", "{what} token");
    }
    assert_eq!(socket.close_code(Duration::from_secs(6)).await, Some(4001));
    let took = opened.elapsed();
    assert!(
        took < Duration::from_secs(6),
        "closed after {took:?}: the first token's expiry still held"
    );
}

#[tokio::test]
async fn resume_is_accepted_once_per_socket() {
    let chat = spawn(1).await;
    let hal = chat.user("hal").await;
    let ivy = chat.user("ivy").await;
    let id = chat.group(&hal, "once", &[&ivy]).await;
    let mut first = chat.socket(0, &ivy).await;
    round_trip(&mut first).await;
    chat.send(0, &hal, &id, "seen").await;
    let cursor = first.next_of("message.created").await.unwrap()["cursor"]
        .as_str()
        .unwrap()
        .to_owned();
    drop(first);
    for i in 0..3 {
        chat.send(0, &hal, &id, &format!("missed {i}")).await;
    }

    let mut second = chat.socket(0, &ivy).await;
    second
        .send(json!({"type": "resume", "cursor": cursor}))
        .await;
    let mut replayed = Vec::new();
    for _ in 0..3 {
        let f = second.next_of("message.created").await.expect("replayed");
        replayed.push(f["message"]["content"].as_str().unwrap().to_owned());
    }
    assert_eq!(replayed, ["missed 0", "missed 1", "missed 2"]);

    second
        .send(json!({"type": "resume", "cursor": cursor}))
        .await;
    let answer = second.next_frame().await.expect("an answer");
    assert_eq!(answer["type"], "error");
    assert_eq!(answer["code"], "invalid");
    assert!(
        second
            .collect("message.created", Duration::from_millis(1500))
            .await
            .is_empty(),
        "a second resume replayed"
    );
    // The socket still delivers live frames.
    chat.send(0, &hal, &id, "live").await;
    let live = second.next_of("message.created").await.expect("live");
    assert_eq!(live["message"]["content"], "live");
}

#[tokio::test]
async fn a_socket_that_stops_reading_is_closed_within_30_s_and_a_reader_gets_every_frame() {
    let chat = spawn_with(1, json!({"message_rate_per_10s": 10000})).await;
    let jon = chat.user("jon").await;
    let kim = chat.user("kim").await;
    let lou = chat.user("lou").await;
    let id = chat.group(&jon, "flood", &[&kim, &lou]).await;
    let mut stalled = chat.socket(0, &kim).await;
    let mut reader = chat.socket(0, &lou).await;
    round_trip(&mut stalled).await;
    round_trip(&mut reader).await;
    // From here on `stalled` is never read (tungstenite answers pings only
    // when read), while `reader` reads everything.
    let stopped = Instant::now();
    let gauge = |text: String| {
        text.lines()
            .find(|l| {
                l.starts_with("websocket_connections ") || l.starts_with("websocket_connections{")
            })
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .unwrap_or(-1.0)
    };
    let body = "x".repeat(3900);
    let mut sent = 0usize;
    let mut got = 0usize;
    let mut worst = Duration::ZERO;
    let mut closed_after = None;
    while stopped.elapsed() < Duration::from_secs(35) {
        chat.send(0, &jon, &id, &format!("{sent} {body}")).await;
        // From the 201: the frame is published after the write, so this is
        // the delivery's own delay (zero when it came first).
        let answered = Instant::now();
        sent += 1;
        let frame = reader
            .next_of("message.created")
            .await
            .expect("the reader got the frame");
        worst = worst.max(answered.elapsed());
        got += 1;
        assert!(frame["message"]["content"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{} ", got - 1)));
        if closed_after.is_none() {
            let text = chat
                .client
                .get(chat.url(0, "/metrics"))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            let open = gauge(text);
            assert!(open >= 1.0, "the reader was closed");
            if open == 1.0 {
                closed_after = Some(stopped.elapsed());
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let closed_after = closed_after.expect("the stalled socket was never closed");
    assert!(
        closed_after < Duration::from_secs(30),
        "closed after {closed_after:?}"
    );
    assert_eq!(got, sent);
    assert!(
        worst < Duration::from_secs(1),
        "the reader waited {worst:?}"
    );
    println!(
        "stalled socket closed after {closed_after:?}; {sent} frames, reader's worst delay {worst:?}"
    );

    // What the stalled socket finally reads ends there: it never got the
    // frames sent after it was given up.
    let mut last = None;
    let mut end = None;
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_secs(5), stalled.ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => {
                let f: Value = serde_json::from_str(&t).unwrap();
                if f["type"] == "message.created" {
                    last = f["message"]["content"]
                        .as_str()
                        .and_then(|c| c.split(' ').next())
                        .and_then(|n| n.parse::<usize>().ok());
                }
            }
            Ok(Some(Ok(Message::Close(frame)))) => {
                end = Some(frame.map(|f| u16::from(f.code)));
                break;
            }
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(_)) | None) => {
                end = Some(None);
                break;
            }
            Err(_) => break,
        }
    }
    assert!(end.is_some(), "the stalled socket was still open");
    assert!(
        last.is_none_or(|n| n + 1 < sent),
        "the stalled socket got every frame ({last:?} of {sent})"
    );
}

#[tokio::test]
async fn without_redis_an_instance_still_allows_16_sockets_per_user() {
    let chat = spawn(1).await;
    let max = chat.user("max").await;
    // A second instance whose Redis is unreachable (nothing listens on
    // port 1): the count falls back to its own sockets, never to no limit.
    let process = chat
        .process(json!({"redis_url": "redis://127.0.0.1:1"}))
        .await;
    let mut held = Vec::new();
    for _ in 0..16 {
        held.push(chat.socket_at(&process.address, &max).await);
    }
    let (status, _, _) = refused_upgrade(&process.address, &max).await;
    assert_eq!(status, 429);
    for socket in &mut held {
        round_trip(socket).await;
    }
}

#[tokio::test]
async fn a_frame_flood_is_refused_once_with_an_error_and_counted() {
    let chat = spawn(1).await;
    let ned = chat.user("ned").await;
    let mut socket = chat.socket(0, &ned).await;
    round_trip(&mut socket).await;
    let metric = |name: &'static str, filter: &'static str| {
        let chat = &chat;
        async move { chat.counter(0, name, &[filter]).await }
    };
    let frames_in = metric("websocket_frames_total", "direction=\"in\"").await;
    let frames_out = metric("websocket_frames_total", "direction=\"out\"").await;
    // The bucket holds 30 frames (the round trip took one); 45 at once
    // overflow it.
    for _ in 0..45 {
        socket.send(json!({"type": "ping"})).await;
    }
    let frames = socket.collect_all(Duration::from_millis(800)).await;
    let errors: Vec<&Value> = frames.iter().filter(|f| f["type"] == "error").collect();
    assert_eq!(
        errors.len(),
        1,
        "one error for the run of refusals: {frames:?}"
    );
    assert_eq!(errors[0]["code"], "rate_limited");
    let pongs = frames.iter().filter(|f| f["type"] == "pong").count();
    assert!((25..45).contains(&pongs), "{pongs} pongs");

    let refused = 45 - pongs;
    let dropped = metric("websocket_drops_total", "reason=\"rate_limited\"").await;
    assert_eq!(dropped, refused as f64);
    let refusals = metric("rate_limit_refusals_total", "limit=\"ws_frames\"").await;
    assert_eq!(refusals, refused as f64);
    assert_eq!(
        metric("websocket_frames_total", "direction=\"in\"").await - frames_in,
        45.0
    );
    assert_eq!(
        metric("websocket_frames_total", "direction=\"out\"").await - frames_out,
        (pongs + 1) as f64
    );
}
