//! Per-user write limits (product.md, "Rate limits"): message sends, edits
//! and deletes together 30 per 10 s; group creations and member additions
//! together 30 per hour. Counted atomically across instances, so bursts get
//! exactly the allowance. Also the life of a cached "not found".

use std::time::Duration;

use futures_util::future::join_all;
use futures_util::FutureExt;
use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{spawn, spawn_with, TestChat, User};

async fn call(
    t: &TestChat,
    method: Method,
    instance: usize,
    path: &str,
    user: &User,
    body: Option<Value>,
) -> reqwest::Response {
    let mut req = t
        .client
        .request(method, t.url(instance, path))
        .bearer_auth(&user.token);
    if let Some(body) = body {
        req = req.json(&body);
    }
    req.send().await.expect("sent")
}

/// A 429 problem whose `Retry-After` is within `1..=max` seconds.
async fn assert_limited(r: reqwest::Response, max: u64, what: &str) {
    assert_eq!(r.status(), 429, "{what}");
    let retry: u64 = r
        .headers()
        .get("retry-after")
        .unwrap_or_else(|| panic!("{what}: Retry-After"))
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=max).contains(&retry), "{what}: Retry-After {retry}");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["status"], 429, "{what}: a problem document");
}

async fn message_count(t: &TestChat, user: &User, chat: &str) -> usize {
    let page: Value = t
        .get(0, &format!("/api/chat/{chat}/messages?limit=100"), user)
        .await
        .json()
        .await
        .unwrap();
    page["messages"].as_array().unwrap().len()
}

#[tokio::test]
async fn the_31st_send_edit_or_delete_in_10_s_is_429_with_retry_after() {
    let t = spawn(2).await;
    let ann = t.user("ann").await;
    let ben = t.user("ben").await;
    let chat = t.group(&ann, "busy", &[&ben]).await;
    // Ben's messages, for ann to delete as the group's admin.
    let mut ben_paths = Vec::new();
    for n in 0..3 {
        let m = t.send(0, &ben, &chat, &format!("ben{n}")).await;
        ben_paths.push(format!(
            "/api/chat/{chat}/messages/{}",
            m["id"].as_str().unwrap()
        ));
    }
    // Ann: 20 sends, 5 edits and 5 deletes (three of them repeats), 30 in
    // all over both instances, the last 25 in one concurrent batch so that
    // a loaded machine still does them well inside one window.
    let started = std::time::Instant::now();
    let path = format!("/api/chat/{chat}/messages");
    let mut own_paths = Vec::new();
    for r in
        join_all((0..5).map(|n| t.post(n % 2, &path, &ann, json!({"content": format!("m{n}")}))))
            .await
    {
        assert_eq!(r.status(), 201, "send");
        let id = r.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        own_paths.push(format!("/api/chat/{chat}/messages/{id}"));
    }
    let mut batch = Vec::new();
    for n in 5..20 {
        batch.push(
            t.post(n % 2, &path, &ann, json!({"content": format!("m{n}")}))
                .boxed_local(),
        );
    }
    for (n, p) in own_paths.iter().enumerate() {
        batch.push(
            call(
                &t,
                Method::PATCH,
                n % 2,
                p,
                &ann,
                Some(json!({"content": "edited"})),
            )
            .boxed_local(),
        );
    }
    for (n, i) in [0, 1, 2, 2, 2].into_iter().enumerate() {
        batch.push(call(&t, Method::DELETE, n % 2, &ben_paths[i], &ann, None).boxed_local());
    }
    let statuses: Vec<u16> = join_all(batch)
        .await
        .iter()
        .map(|r| r.status().as_u16())
        .collect();
    assert_eq!(statuses[..15], [201; 15], "sends: {statuses:?}");
    assert_eq!(statuses[15..], [200; 10], "edits and deletes: {statuses:?}");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "the 30 took {:?}: too slow to test a 10 s window",
        started.elapsed()
    );

    let send = t
        .post(
            1,
            &format!("/api/chat/{chat}/messages"),
            &ann,
            json!({"content": "one too many"}),
        )
        .await;
    assert_limited(send, 10, "31st: a send").await;
    let edit = call(
        &t,
        Method::PATCH,
        0,
        &own_paths[0],
        &ann,
        Some(json!({"content": "again"})),
    )
    .await;
    assert_limited(edit, 10, "31st: an edit").await;
    let delete = call(&t, Method::DELETE, 1, &ben_paths[2], &ann, None).await;
    assert_limited(delete, 10, "31st: a repeated delete").await;
    let mut socket = t.socket(0, &ann).await;
    socket
        .send(json!({"type": "message.send", "chatId": chat, "content": "via socket", "clientMsgId": "c1"}))
        .await;
    let error = socket.next_of("error").await.expect("an error frame");
    assert_eq!(error["code"], "rate_limited", "{error}");
    assert_eq!(error["clientMsgId"], "c1");
    let refused = t
        .counter(0, "rate_limit_refusals_total", &["limit=\"messages\""])
        .await
        + t.counter(1, "rate_limit_refusals_total", &["limit=\"messages\""])
            .await;
    assert_eq!(
        refused, 4.0,
        "the 3 requests and the frame refused are counted"
    );

    assert_eq!(message_count(&t, &ann, &chat).await, 23, "nothing more");
    let first: Value = t
        .get(0, &format!("/api/chat/{chat}/messages?limit=100"), &ann)
        .await
        .json()
        .await
        .unwrap();
    let edited = own_paths[0].rsplit('/').next().unwrap();
    let by_id = |id: &str| {
        first["messages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["id"] == id)
            .cloned()
            .unwrap()
    };
    assert_eq!(
        by_id(edited)["content"],
        "edited",
        "the refused edit changed nothing"
    );

    // The limit is the sender's: another member is unaffected.
    t.send(1, &ben, &chat, "my turn").await;
}

#[tokio::test]
async fn a_concurrent_burst_of_40_sends_gets_exactly_30_accepted() {
    let t = spawn(2).await;
    let cat = t.user("cat").await;
    let dan = t.user("dan").await;
    let chat = t.group(&cat, "burst", &[&dan]).await;
    let path = format!("/api/chat/{chat}/messages");
    let sends = (0..40).map(|n| t.post(n % 2, &path, &cat, json!({"content": format!("b{n}")})));
    let statuses: Vec<u16> = join_all(sends)
        .await
        .into_iter()
        .map(|r| r.status().as_u16())
        .collect();
    let created = statuses.iter().filter(|s| **s == 201).count();
    let limited = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!((created, limited), (30, 10), "{statuses:?}");
    assert_eq!(message_count(&t, &cat, &chat).await, 30);
}

/// The choice made for idempotent retries: a retry that only returns the
/// original message still takes an attempt (it costs an insert attempt and
/// a read), and over the limit it is a 429 like any send.
#[tokio::test]
async fn a_retried_send_counts_toward_the_limit() {
    // A small allowance keeps the test well inside one window.
    let t = spawn_with(1, json!({"message_rate_per_10s": 5})).await;
    let eve = t.user("eve").await;
    let fay = t.user("fay").await;
    let chat = t.group(&eve, "retries", &[&fay]).await;
    let path = format!("/api/chat/{chat}/messages");
    let first = t
        .post(0, &path, &eve, json!({"content": "x", "clientMsgId": "k1"}))
        .await;
    assert_eq!(first.status(), 201);
    let original: Value = first.json().await.unwrap();
    for n in 0..3 {
        t.send(0, &eve, &chat, &format!("n{n}")).await;
    }
    let retry = t
        .post(0, &path, &eve, json!({"content": "x", "clientMsgId": "k1"}))
        .await;
    assert_eq!(retry.status(), 200, "the 5th: a retry returns the original");
    assert_eq!(retry.json::<Value>().await.unwrap()["id"], original["id"]);
    let again = t
        .post(0, &path, &eve, json!({"content": "x", "clientMsgId": "k1"}))
        .await;
    assert_limited(again, 10, "the 6th: a retry").await;
    assert_eq!(message_count(&t, &eve, &chat).await, 4);
}

#[tokio::test]
async fn the_31st_group_creation_or_member_addition_in_an_hour_is_429() {
    let t = spawn(2).await;
    let gus = t.user("gus").await;
    let hal = t.user("hal").await;
    let mut extra = Vec::new();
    for n in 0..10 {
        extra.push(t.user(&format!("u{n}")).await);
    }
    // One creation and nine additions use 10 of the 30.
    let base = t.group(&gus, "base", &[&hal]).await;
    for (n, u) in extra.iter().enumerate().take(9) {
        let r = t
            .post(
                n % 2,
                &format!("/api/chat/{base}/members"),
                &gus,
                json!({"userId": u.id}),
            )
            .await;
        assert_eq!(r.status(), 200, "add {n}");
    }
    // A concurrent burst of 30 creations over both instances gets the 20 left.
    let creations = (0..30).map(|n| {
        t.post(
            n % 2,
            "/api/chat/group",
            &gus,
            json!({"name": format!("g{n}"), "memberIds": [hal.id]}),
        )
    });
    let statuses: Vec<u16> = join_all(creations)
        .await
        .into_iter()
        .map(|r| r.status().as_u16())
        .collect();
    let created = statuses.iter().filter(|s| **s == 201).count();
    let limited = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!((created, limited), (20, 10), "{statuses:?}");

    let add = t
        .post(
            0,
            &format!("/api/chat/{base}/members"),
            &gus,
            json!({"userId": extra[9].id}),
        )
        .await;
    assert_limited(add, 3600, "31st: a member addition").await;
    let create = t
        .post(
            1,
            "/api/chat/group",
            &gus,
            json!({"name": "late", "memberIds": [hal.id]}),
        )
        .await;
    assert_limited(create, 3600, "31st: a group creation").await;
    let list: Value = t.get(0, "/api/chat", &hal).await.json().await.unwrap();
    assert_eq!(list.as_array().unwrap().len(), 21, "base and 20 more");
    let base_chat: Value = t
        .get(0, &format!("/api/chat/{base}"), &gus)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(base_chat["members"].as_array().unwrap().len(), 11);
    // Another user's allowance is untouched.
    t.group(&hal, "mine", &[&gus]).await;
}

#[tokio::test]
async fn a_cached_not_found_lives_at_most_30_s() {
    let t = spawn(1).await;
    let ivy = t.user("ivy").await;
    let jon = t.user("jon").await;
    let real = t.group(&ivy, "real", &[&jon]).await;
    let missing = uuid::Uuid::now_v7().simple().to_string();
    assert_eq!(
        t.get(0, &format!("/api/chat/{missing}"), &ivy)
            .await
            .status(),
        404
    );
    let r = t
        .post(
            0,
            &format!("/api/chat/{missing}/messages"),
            &ivy,
            json!({"content": "into the void"}),
        )
        .await;
    assert_eq!(r.status(), 404);
    assert_eq!(
        t.get(0, &format!("/api/chat/{real}"), &ivy).await.status(),
        200
    );
    t.send(0, &ivy, &real, "warm").await;

    let pool = shared::redis_link::Redis::new(
        &std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into()),
    )
    .unwrap();
    let mut conn = pool.get().await.unwrap();
    let prefix = t.redis_prefix();
    for kind in ["chat", "members"] {
        let left: i64 = redis::cmd("TTL")
            .arg(format!("{prefix}{kind}:{missing}"))
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!(
            (1..=30).contains(&left),
            "{kind} of a missing chat: TTL {left}"
        );
        // The same entry of a chat that exists lives the configured 60 s, so
        // the bound above is the negative rule, not the general TTL.
        let found: i64 = redis::cmd("TTL")
            .arg(format!("{prefix}{kind}:{real}"))
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!(found > 30, "{kind} of a real chat: TTL {found}");
    }
}
