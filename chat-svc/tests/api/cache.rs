//! The Redis read cache: warm reads reach no database, and a write that has
//! returned is visible in the very next read, on any instance.

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{spawn, spawn_with, TestChat, User};

async fn call(t: &TestChat, method: Method, instance: usize, path: &str, user: &User) -> Value {
    call_with(t, method, instance, path, user, None).await
}

async fn call_with(
    t: &TestChat,
    method: Method,
    instance: usize,
    path: &str,
    user: &User,
    body: Option<Value>,
) -> Value {
    let mut req = t
        .client
        .request(method.clone(), t.url(instance, path))
        .bearer_auth(&user.token);
    if let Some(body) = body {
        req = req.json(&body);
    }
    let r = req.send().await.expect("sent");
    assert!(r.status().is_success(), "{method} {path}: {}", r.status());
    if r.status() == 204 {
        return Value::Null;
    }
    r.json().await.expect("json")
}

fn chat_in<'a>(list: &'a Value, chat: &str) -> Option<&'a Value> {
    list.as_array()
        .expect("a list of chats")
        .iter()
        .find(|c| c["id"] == chat)
}

#[tokio::test]
async fn warm_reads_touch_no_database_and_every_write_shows_in_the_next_read() {
    let t = spawn(2).await;
    let alice = t.user("alice").await;
    let bob = t.user("bob").await;
    let chat = t.group(&alice, "team", &[&bob]).await;
    t.send(1, &bob, &chat, "first").await;
    let messages = format!("/api/chat/{chat}/messages");

    // Cold: computed from MongoDB (so the counter below can move).
    let before_cold = t.chat_data_reads(0).await;
    call(&t, Method::GET, 0, "/api/chat", &alice).await;
    call(&t, Method::GET, 0, &messages, &alice).await;
    assert!(
        t.chat_data_reads(0).await > before_cold,
        "cold reads use MongoDB"
    );

    // Warm: five lists and five first pages, not one MongoDB command.
    let hits_before = t
        .counter(0, "cache_requests_total", &["result=\"hit\""])
        .await;
    let before_warm = t.chat_data_reads(0).await;
    for _ in 0..5 {
        let list = call(&t, Method::GET, 0, "/api/chat", &alice).await;
        assert_eq!(
            chat_in(&list, &chat).expect("listed")["latestMessage"]["content"],
            "first"
        );
        let page = call(&t, Method::GET, 0, &messages, &alice).await;
        assert_eq!(page["messages"][0]["content"], "first");
    }
    assert_eq!(
        t.chat_data_reads(0).await,
        before_warm,
        "warm reads use no MongoDB"
    );
    let hits = t
        .counter(0, "cache_requests_total", &["result=\"hit\""])
        .await;
    assert!(
        hits - hits_before >= 10.0,
        "hits counted: {hits_before} -> {hits}"
    );

    // Each write on instance 1 shows in the next read on instance 0.
    let sent = t.send(1, &bob, &chat, "second").await;
    let list = call(&t, Method::GET, 0, "/api/chat", &alice).await;
    let entry = chat_in(&list, &chat).expect("listed");
    assert_eq!(entry["latestMessage"]["content"], "second");
    assert_eq!(entry["unreadCount"], 2);
    let page = call(&t, Method::GET, 0, &format!("{messages}?limit=1"), &alice).await;
    assert_eq!(page["messages"][0]["content"], "second");
    assert_eq!(page["hasMore"], true);

    let message_path = format!("{messages}/{}", sent["id"].as_str().expect("id"));
    call_with(
        &t,
        Method::PATCH,
        1,
        &message_path,
        &bob,
        Some(json!({"content": "edited"})),
    )
    .await;
    let page = call(&t, Method::GET, 0, &messages, &alice).await;
    assert_eq!(page["messages"][0]["content"], "edited");
    assert!(page["messages"][0]["editedAt"].is_string());

    call_with(
        &t,
        Method::POST,
        1,
        &format!("/api/chat/{chat}/read"),
        &alice,
        Some(json!({"messageId": sent["id"]})),
    )
    .await;
    let list = call(&t, Method::GET, 0, "/api/chat", &alice).await;
    assert_eq!(chat_in(&list, &chat).expect("listed")["unreadCount"], 0);

    call_with(
        &t,
        Method::PATCH,
        1,
        &format!("/api/chat/{chat}"),
        &alice,
        Some(json!({"name": "renamed"})),
    )
    .await;
    let list = call(&t, Method::GET, 0, "/api/chat", &bob).await;
    assert_eq!(chat_in(&list, &chat).expect("listed")["name"], "renamed");

    call(&t, Method::DELETE, 1, &message_path, &bob).await;
    let page = call(&t, Method::GET, 0, &messages, &alice).await;
    assert_eq!(page["messages"][0]["deleted"], true);

    // Profiles embedded in cached lists follow profile changes.
    t.rename_user(&bob, "Robert", 2).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    loop {
        let page = call(&t, Method::GET, 0, &messages, &alice).await;
        if page["messages"][1]["sender"]["displayName"] == "Robert" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "profile change not shown in 2 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_removed_member_loses_access_at_once_despite_warm_entries() {
    let t = spawn(2).await;
    let alice = t.user("alice").await;
    let carol = t.user("carol").await;
    let chat = t.group(&alice, "team", &[&carol]).await;
    t.send(0, &alice, &chat, "hello").await;
    let messages = format!("/api/chat/{chat}/messages");
    // Carol's view of the chat is warm on instance 0.
    call(&t, Method::GET, 0, &messages, &carol).await;
    call(&t, Method::GET, 0, &messages, &carol).await;
    call(&t, Method::GET, 0, "/api/chat", &carol).await;

    call(
        &t,
        Method::DELETE,
        1,
        &format!("/api/chat/{chat}/members/{}", carol.id),
        &alice,
    )
    .await;
    let r = t.get(0, &messages, &carol).await;
    assert_eq!(r.status(), 404, "history after removal");
    let r = t
        .post(0, &messages, &carol, json!({"content": "still here?"}))
        .await;
    assert_eq!(r.status(), 404, "send after removal");
    let list = call(&t, Method::GET, 0, "/api/chat", &carol).await;
    assert!(chat_in(&list, &chat).is_none(), "chat still listed: {list}");
}

/// Reads hammer instance 0 while writes land on instance 1: whenever a write
/// has returned, the next read shows it, whatever the interleaving of a
/// read-miss with the write.
#[tokio::test]
async fn reads_racing_writes_never_leave_a_stale_entry() {
    let t = spawn(2).await;
    let alice = t.user("alice").await;
    let bob = t.user("bob").await;
    let chat = t.group(&alice, "race", &[&bob]).await;
    let stop = tokio_util::sync::CancellationToken::new();
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let client = t.client.clone();
            let url = t.url(0, "/api/chat");
            let token = alice.token.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                while !stop.is_cancelled() {
                    let _ = client.get(&url).bearer_auth(&token).send().await;
                }
            })
        })
        .collect();
    for i in 0..30 {
        let content = format!("message {i}");
        t.send(1, &bob, &chat, &content).await;
        let list = call(&t, Method::GET, 0, "/api/chat", &alice).await;
        let entry = chat_in(&list, &chat).expect("listed");
        assert_eq!(
            entry["latestMessage"]["content"],
            content.as_str(),
            "stale at {i}"
        );
        assert_eq!(entry["unreadCount"], i + 1, "stale count at {i}");
    }
    stop.cancel();
    for r in readers {
        r.await.expect("reader");
    }
}

/// With the cache switched off every read goes to MongoDB: the baseline
/// the benchmarks compare against, and proof the counter above is live.
#[tokio::test]
async fn with_the_cache_off_every_read_goes_to_the_database() {
    let t = spawn_with(1, json!({"read_cache": false})).await;
    let alice = t.user("alice").await;
    let bob = t.user("bob").await;
    t.group(&alice, "plain", &[&bob]).await;
    let before = t.chat_data_reads(0).await;
    for _ in 0..3 {
        call(&t, Method::GET, 0, "/api/chat", &alice).await;
    }
    let per_read = (t.chat_data_reads(0).await - before) / 3.0;
    assert!(
        per_read >= 1.0,
        "MongoDB commands per list read: {per_read}"
    );
}
