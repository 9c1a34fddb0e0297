use std::time::Duration;

use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::helpers::spawn;

#[tokio::test]
async fn each_message_reaches_every_member_socket_once_whichever_instance() {
    let chat = spawn(2).await;
    let pia = chat.user("pia").await;
    let quy = chat.user("quy").await;
    let rob = chat.user("rob").await;
    let id = chat.group(&pia, "fanout", &[&quy, &rob]).await;
    let mut pia_a = chat.socket(0, &pia).await;
    let mut quy_b = chat.socket(1, &quy).await;
    let mut rob_a = chat.socket(0, &rob).await;
    let mut rob_b = chat.socket(1, &rob).await;
    tokio::time::sleep(Duration::from_millis(1200)).await; // past the resume window
    let mut sent = Vec::new();
    for i in 0..5 {
        sent.push(
            chat.send(i % 2, &pia, &id, &format!("hello {i}")).await["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    for (name, socket) in [
        ("pia@A", &mut pia_a),
        ("quy@B", &mut quy_b),
        ("rob@A", &mut rob_a),
        ("rob@B", &mut rob_b),
    ] {
        let got = socket
            .collect("message.created", Duration::from_millis(1500))
            .await;
        let ids: Vec<&str> = got
            .iter()
            .map(|f| f["message"]["id"].as_str().unwrap())
            .collect();
        assert_eq!(
            ids,
            sent.iter().map(String::as_str).collect::<Vec<_>>(),
            "{name}: each once, in order"
        );
        assert!(
            got.iter()
                .all(|f| f["cursor"].is_string() && f["chatId"] == id.as_str()),
            "{name}: cursors"
        );
        assert_eq!(got[0]["message"]["sender"]["displayName"], "PIA");
    }
}

/// Events consumed by an instance's fan-out queue.
async fn fanout_consumed(chat: &crate::helpers::TestChat, instance: usize) -> f64 {
    chat.counter(instance, "events_consumed_total", &["chat-svc.fanout."])
        .await
}

/// Live events go only to the instances where a recipient is connected:
/// with 3 instances and the only connected member on one, the other two
/// consume nothing; once the member also connects to a second instance,
/// that one consumes the chat's events too. The sender's own instance gets
/// nothing for a sender who has no socket.
#[tokio::test]
async fn an_event_is_consumed_only_by_the_instances_where_a_recipient_is_connected() {
    let chat = spawn(3).await;
    let sam = chat.user("sam").await;
    let tia = chat.user("tia").await;
    let id = chat.group(&sam, "routed", &[&tia]).await;
    let mut tia_a = chat.socket(0, &tia).await;
    tia_a.send(json!({"type": "ping"})).await;
    tokio::time::sleep(Duration::from_millis(500)).await; // earlier events settle
    let consumed = || async {
        let mut n = [0.0; 3];
        for (i, slot) in n.iter_mut().enumerate() {
            *slot = fanout_consumed(&chat, i).await;
        }
        n
    };
    let before = consumed().await;
    for i in 0..4 {
        chat.send(1, &sam, &id, &format!("routed {i}")).await;
    }
    let got = tia_a
        .collect("message.created", Duration::from_millis(1000))
        .await;
    assert_eq!(got.len(), 4, "tia gets each once");
    let after = consumed().await;
    assert_eq!(
        after[0] - before[0],
        4.0,
        "tia's instance: {before:?} -> {after:?}"
    );
    assert_eq!(
        after[1], before[1],
        "the sender's instance: {before:?} -> {after:?}"
    );
    assert_eq!(
        after[2], before[2],
        "an instance without members: {before:?} -> {after:?}"
    );

    let mut tia_c = chat.socket(2, &tia).await;
    tia_c.send(json!({"type": "ping"})).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = consumed().await;
    chat.send(1, &sam, &id, "routed to two").await;
    for socket in [&mut tia_a, &mut tia_c] {
        let got = socket
            .collect("message.created", Duration::from_millis(1000))
            .await;
        assert_eq!(got.len(), 1);
    }
    let after = consumed().await;
    assert_eq!(
        [
            after[0] - before[0],
            after[1] - before[1],
            after[2] - before[2]
        ],
        [1.0, 0.0, 1.0],
        "{before:?} -> {after:?}"
    );
}

#[tokio::test]
async fn resume_on_the_other_instance_replays_exactly_the_missed_events_in_order() {
    let chat = spawn(2).await;
    let sue = chat.user("sue").await;
    let tom = chat.user("tom").await;
    let id = chat.group(&sue, "resume", &[&tom]).await;
    let mut first = chat.socket(0, &tom).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    chat.send(0, &sue, &id, "seen").await;
    let seen = first.next_of("message.created").await.unwrap();
    let cursor = seen["cursor"].as_str().unwrap().to_owned();
    drop(first);

    let mut missed = Vec::new();
    for i in 0..3 {
        missed.push(
            chat.send(0, &sue, &id, &format!("missed {i}")).await["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let mut second = chat.socket(1, &tom).await;
    second
        .send(json!({"type": "resume", "cursor": cursor}))
        .await;
    chat.send(1, &sue, &id, "live after").await;
    let frames = second
        .collect("message.created", Duration::from_millis(1500))
        .await;
    let contents: Vec<&str> = frames
        .iter()
        .map(|f| f["message"]["content"].as_str().unwrap())
        .collect();
    assert_eq!(
        contents,
        ["missed 0", "missed 1", "missed 2", "live after"],
        "no gap, no duplicate, in order"
    );
    let ids: Vec<&str> = frames[..3]
        .iter()
        .map(|f| f["message"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, missed.iter().map(String::as_str).collect::<Vec<_>>());

    let mut third = chat.socket(0, &tom).await;
    third
        .send(json!({"type": "resume", "cursor": "not-a-cursor"}))
        .await;
    assert!(third.next_of("resync").await.is_some());
}

#[tokio::test]
async fn removed_members_and_revoked_sessions_stop_receiving() {
    let chat = spawn(2).await;
    let una = chat.user("una").await;
    let vic = chat.user("vic").await;
    let wes = chat.user("wes").await;
    let id = chat.group(&una, "exits", &[&vic, &wes]).await;
    let mut vic_b = chat.socket(1, &vic).await;
    let mut wes_a = chat.socket(0, &wes).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;

    let r = chat
        .client
        .delete(chat.url(0, &format!("/api/chat/{id}/members/{}", vic.id)))
        .bearer_auth(&una.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let removal = vic_b.next_of("chat.member.removed").await.unwrap();
    assert_eq!(removal["userId"], vic.id.as_str());
    chat.send(0, &una, &id, "after removal").await;
    assert!(
        vic_b
            .collect("message.created", Duration::from_millis(1000))
            .await
            .is_empty(),
        "a removed member receives nothing"
    );

    chat.revoke(&wes).await;
    assert_eq!(
        wes_a.close_code(Duration::from_secs(5)).await,
        Some(1008),
        "socket closed within 5 s"
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    for instance in 0..2 {
        loop {
            if chat.get(instance, "/api/chat", &wes).await.status() == 401 {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "revoked token still accepted on {instance}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[tokio::test]
async fn websocket_auth_origin_frames_and_limits() {
    let chat = spawn(1).await;
    let xia = chat.user("xia").await;
    let yan = chat.user("yan").await;
    let id = chat.group(&xia, "ws", &[&yan]).await;
    let url = chat.url(0, "/ws").replacen("http", "ws", 1);

    // A foreign Origin is refused before the upgrade.
    let mut req = url.clone().into_client_request().unwrap();
    req.headers_mut()
        .insert("origin", "http://evil.example".parse().unwrap());
    req.headers_mut().insert(
        "authorization",
        format!("Bearer {}", xia.token).parse().unwrap(),
    );
    assert!(tokio_tungstenite::connect_async(req).await.is_err());

    // A bad header token is refused; no token means first-frame auth.
    let mut req = url.clone().into_client_request().unwrap();
    req.headers_mut()
        .insert("authorization", "Bearer nope".parse().unwrap());
    assert!(tokio_tungstenite::connect_async(req).await.is_err());
    let mut req = url.clone().into_client_request().unwrap();
    req.headers_mut()
        .insert("origin", "http://127.0.0.1:8080".parse().unwrap());
    let (ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    let mut s = crate::helpers::Socket { ws };
    s.send(json!({"type": "ping"})).await;
    assert!(s.next_of("error").await.is_some(), "nothing before auth");
    s.send(json!({"type": "auth", "token": xia.token})).await;
    assert!(s.next_of("ready").await.is_some());

    // Malformed frames get an error and the socket stays open.
    s.send(json!({"type": "explode"})).await;
    assert!(s.next_of("error").await.is_some());
    s.ws.send_text_raw("{not json").await;
    assert!(s.next_of("error").await.is_some());
    s.send(json!({"type": "ping"})).await;
    assert_eq!(s.next_of("pong").await.unwrap(), json!({"type": "pong"}));

    // message.send with an ack; the other member receives it; a retry is idempotent.
    let mut yan_s = chat.socket(0, &yan).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let frame =
        json!({"type": "message.send", "chatId": id, "content": "via ws", "clientMsgId": "c-1"});
    s.send(frame.clone()).await;
    let ack = s.next_of("ack").await.unwrap();
    assert_eq!(ack["clientMsgId"], "c-1");
    assert_eq!(ack["message"]["content"], "via ws");
    s.send(frame).await;
    let got = yan_s
        .collect("message.created", Duration::from_millis(1000))
        .await;
    assert_eq!(got.len(), 1, "the retried send created nothing new");
    s.send(json!({"type": "message.send", "chatId": "nope", "content": "x", "clientMsgId": "c-2"}))
        .await;
    let err = s.next_of("error").await.unwrap();
    assert_eq!(err["clientMsgId"], "c-2");
    assert_eq!(err["code"], "not_found");

    // Typing is relayed live to the others.
    s.send(json!({"type": "typing", "chatId": id, "state": "start"}))
        .await;
    let typing = yan_s.collect("typing", Duration::from_millis(800)).await;
    assert_eq!(typing.len(), 1);
    assert_eq!(typing[0]["userId"], xia.id.as_str());

    // Over 64 KiB: closed with 1009, and counted.
    s.ws.send_text_raw(&"x".repeat(70 * 1024)).await;
    assert_eq!(s.close_code(Duration::from_secs(5)).await, Some(1009));
    let oversized = chat
        .counter(0, "websocket_drops_total", &["reason=\"oversized\""])
        .await;
    assert_eq!(oversized, 1.0);
    // The fan-out consumer timed each event from its commit.
    let lagged = chat.counter(0, "consumer_lag_seconds_count", &[]).await;
    assert!(lagged >= 2.0, "{lagged} events timed");
}

#[tokio::test]
async fn an_unauthenticated_socket_is_closed_after_the_auth_window() {
    let chat = spawn(1).await;
    let url = chat.url(0, "/ws").replacen("http", "ws", 1);
    let (ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let mut s = crate::helpers::Socket { ws };
    assert_eq!(s.close_code(Duration::from_secs(12)).await, Some(1008));
}

trait RawText {
    async fn send_text_raw(&mut self, text: &str);
}

impl RawText
    for tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>
{
    async fn send_text_raw(&mut self, text: &str) {
        use futures_util::SinkExt;
        self.send(tokio_tungstenite::tungstenite::Message::Text(
            text.to_owned().into(),
        ))
        .await
        .unwrap();
    }
}

#[tokio::test]
async fn membership_is_checked_on_chat_reads_for_sockets_too() {
    let chat = spawn(1).await;
    let zed = chat.user("zed").await;
    let amy = chat.user("amy").await;
    let outsider = chat.user("outsider").await;
    let id = chat.group(&zed, "private", &[&amy]).await;
    let mut s = chat.socket(0, &outsider).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    chat.send(0, &zed, &id, "not for you").await;
    assert!(s
        .collect("message.created", Duration::from_millis(800))
        .await
        .is_empty());
    s.send(json!({"type": "read", "chatId": id, "messageId": "x"}))
        .await;
    let f: Value = s.next_of("error").await.unwrap();
    assert_eq!(f["code"], "not_found");
}

/// An edit and a delete when no member has a socket anywhere: their events
/// only sockets want, and the broker routes them to nobody. That is no
/// failure: they leave the outbox (instead of being retried by the sweep,
/// and appended to the timelines again, every half second).
#[tokio::test]
async fn events_for_nobody_connected_leave_the_outbox() {
    let chat = spawn(1).await;
    let uma = chat.user("uma").await;
    let vic = chat.user("vic").await;
    let id = chat.group(&uma, "offline", &[&vic]).await;
    let sent = chat.send(0, &uma, &id, "first").await;
    let message = sent["id"].as_str().unwrap().to_owned();
    let path = format!("/api/chat/{id}/messages/{message}");
    let r = chat
        .client
        .patch(chat.url(0, &path))
        .bearer_auth(&uma.token)
        .json(&json!({"content": "edited"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = chat
        .client
        .delete(chat.url(0, &path))
        .bearer_auth(&uma.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "the delete answers the deleted message");
    let published = |kind: &'static str| {
        let chat = &chat;
        async move { chat.counter(0, "events_published_total", &[kind]).await }
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let edits = published("type=\"chat.message.updated\"").await;
        let deletes = published("type=\"chat.message.deleted\"").await;
        if edits == 1.0 && deletes == 1.0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not published: {edits} edits, {deletes} deletes"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The sweep (2 s grace, every 0.5 s) finds nothing left to relay.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(published("type=\"chat.message.updated\"").await, 1.0);
    assert_eq!(chat.counter(0, "outbox_backlog", &[]).await, 0.0);
}
