use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::spawn;

#[tokio::test]
async fn a_direct_chat_is_created_once_from_either_side() {
    let chat = spawn(1).await;
    let ann = chat.user("ann").await;
    let ben = chat.user("ben").await;
    let first = chat
        .post(0, "/api/chat", &ann, json!({"userId": ben.id}))
        .await;
    assert_eq!(first.status(), 201);
    let first: Value = first.json().await.unwrap();
    assert_eq!(first["isGroup"], false);
    assert_eq!(first["name"], Value::Null);
    assert_eq!(first["members"].as_array().unwrap().len(), 2);
    let again = chat
        .post(0, "/api/chat", &ann, json!({"userId": ben.id}))
        .await;
    assert_eq!(again.status(), 200);
    let other_side: Value = chat
        .post(0, "/api/chat", &ben, json!({"userId": ann.id}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(other_side["id"], first["id"]);
    let unknown = chat
        .post(0, "/api/chat", &ann, json!({"userId": "nobody"}))
        .await;
    assert_eq!(unknown.status(), 422);
}

#[tokio::test]
async fn racing_direct_chat_creation_gives_one_chat() {
    let chat = spawn(2).await;
    let cat = chat.user("cat").await;
    let dan = chat.user("dan").await;
    let a = chat.post(0, "/api/chat", &cat, json!({"userId": dan.id}));
    let b = chat.post(1, "/api/chat", &dan, json!({"userId": cat.id}));
    let (a, b) = tokio::join!(a, b);
    let a: Value = a.json().await.unwrap();
    let b: Value = b.json().await.unwrap();
    assert_eq!(a["id"], b["id"]);
}

#[tokio::test]
async fn non_members_get_404_on_every_chat_and_message_endpoint() {
    let chat = spawn(1).await;
    let eve = chat.user("eve").await;
    let fay = chat.user("fay").await;
    let mallory = chat.user("mallory").await;
    let id = chat.group(&eve, "secret", &[&fay]).await;
    let msg = chat.send(0, &eve, &id, "for members only").await;
    let mid = msg["id"].as_str().unwrap();
    let c = &chat.client;
    let t = &mallory.token;
    let checks = [
        c.get(chat.url(0, &format!("/api/chat/{id}")))
            .bearer_auth(t),
        c.patch(chat.url(0, &format!("/api/chat/{id}")))
            .bearer_auth(t)
            .json(&json!({"name": "pwned"})),
        c.get(chat.url(0, &format!("/api/chat/{id}/messages")))
            .bearer_auth(t),
        c.post(chat.url(0, &format!("/api/chat/{id}/messages")))
            .bearer_auth(t)
            .json(&json!({"content": "hi"})),
        c.patch(chat.url(0, &format!("/api/chat/{id}/messages/{mid}")))
            .bearer_auth(t)
            .json(&json!({"content": "x"})),
        c.delete(chat.url(0, &format!("/api/chat/{id}/messages/{mid}")))
            .bearer_auth(t),
        c.post(chat.url(0, &format!("/api/chat/{id}/read")))
            .bearer_auth(t)
            .json(&json!({"messageId": mid})),
        c.post(chat.url(0, &format!("/api/chat/{id}/members")))
            .bearer_auth(t)
            .json(&json!({"userId": mallory.id})),
        c.delete(chat.url(0, &format!("/api/chat/{id}/members/{}", fay.id)))
            .bearer_auth(t),
    ];
    for req in checks {
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 404, "{:?}", r.url());
    }
    let list: Value = chat
        .get(0, "/api/chat", &mallory)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list, json!([]));
}

#[tokio::test]
async fn admin_rules_and_leaving() {
    let chat = spawn(1).await;
    let gus = chat.user("gus").await;
    let hal = chat.user("hal").await;
    let ida = chat.user("ida").await;
    let id = chat.group(&gus, "team", &[&hal]).await;
    let rename = chat
        .client
        .patch(chat.url(0, &format!("/api/chat/{id}")))
        .bearer_auth(&hal.token)
        .json(&json!({"name": "mine"}))
        .send()
        .await
        .unwrap();
    assert_eq!(rename.status(), 403, "only admins rename");
    let add = chat
        .post(
            0,
            &format!("/api/chat/{id}/members"),
            &hal,
            json!({"userId": ida.id}),
        )
        .await;
    assert_eq!(add.status(), 403, "only admins add");
    let add: Value = chat
        .post(
            0,
            &format!("/api/chat/{id}/members"),
            &gus,
            json!({"userId": ida.id}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(add["members"].as_array().unwrap().len(), 3);
    let renamed: Value = chat
        .client
        .patch(chat.url(0, &format!("/api/chat/{id}")))
        .bearer_auth(&gus.token)
        .json(&json!({"name": "crew"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(renamed["name"], "crew");
    let leave = chat
        .client
        .delete(chat.url(0, &format!("/api/chat/{id}/members/{}", hal.id)))
        .bearer_auth(&hal.token)
        .send()
        .await
        .unwrap();
    assert_eq!(leave.status(), 204);
    let removed = chat
        .client
        .delete(chat.url(0, &format!("/api/chat/{id}/members/{}", ida.id)))
        .bearer_auth(&gus.token)
        .send()
        .await
        .unwrap();
    assert_eq!(removed.status(), 200);
    assert_eq!(
        chat.get(0, &format!("/api/chat/{id}"), &ida).await.status(),
        404
    );
}

#[tokio::test]
async fn history_pages_newest_first_and_sends_are_idempotent() {
    let chat = spawn(2).await;
    let jan = chat.user("jan").await;
    let kai = chat.user("kai").await;
    let id = chat.group(&jan, "log", &[&kai]).await;
    for i in 0..5 {
        chat.send(0, &jan, &id, &format!("m{i}")).await;
    }
    let page: Value = chat
        .get(0, &format!("/api/chat/{id}/messages?limit=3"), &kai)
        .await
        .json()
        .await
        .unwrap();
    let contents: Vec<&str> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(contents, ["m4", "m3", "m2"]);
    assert_eq!(page["hasMore"], true);
    let before = page["messages"][2]["id"].as_str().unwrap();
    let rest: Value = chat
        .get(
            0,
            &format!("/api/chat/{id}/messages?limit=3&before={before}"),
            &kai,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(rest["messages"].as_array().unwrap().len(), 2);
    assert_eq!(rest["hasMore"], false);
    assert_eq!(
        chat.get(0, &format!("/api/chat/{id}/messages?limit=101"), &kai)
            .await
            .status(),
        422
    );

    // The same clientMsgId, retried concurrently on both instances: one message.
    let body = json!({"content": "only once <b>", "clientMsgId": "retry-1"});
    let path = format!("/api/chat/{id}/messages");
    let sends = (0..6).map(|i| chat.post(i % 2, &path, &kai, body.clone()));
    let results = futures_util::future::join_all(sends).await;
    let mut statuses: Vec<u16> = results.iter().map(|r| r.status().as_u16()).collect();
    statuses.sort();
    assert_eq!(statuses, [200, 200, 200, 200, 200, 201]);
    let page: Value = chat
        .get(0, &format!("/api/chat/{id}/messages?limit=100"), &jan)
        .await
        .json()
        .await
        .unwrap();
    let copies = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["clientMsgId"] == "retry-1")
        .count();
    assert_eq!(copies, 1);
    assert_eq!(
        page["messages"][0]["content"], "only once <b>",
        "stored verbatim"
    );

    for bad in [
        json!({"content": "   "}),
        json!({"content": "x".repeat(4001)}),
        json!({"content": {"$gt": ""}}),
        json!({"content": "a", "extra": 1}),
    ] {
        let r = chat
            .post(0, &format!("/api/chat/{id}/messages"), &jan, bad.clone())
            .await;
        assert_eq!(r.status(), 422, "{bad}");
    }
}

#[tokio::test]
async fn edits_deletes_and_read_markers_follow_the_rules() {
    let chat = spawn(1).await;
    let lou = chat.user("lou").await;
    let max = chat.user("max").await;
    let id = chat.group(&lou, "edits", &[&max]).await;
    let m1 = chat.send(0, &max, &id, "first").await;
    let m2 = chat.send(0, &max, &id, "second").await;
    let list: Value = chat.get(0, "/api/chat", &lou).await.json().await.unwrap();
    assert_eq!(list[0]["unreadCount"], 2);
    assert_eq!(list[0]["latestMessage"]["content"], "second");
    let r = chat
        .post(
            0,
            &format!("/api/chat/{id}/read"),
            &lou,
            json!({"messageId": m1["id"]}),
        )
        .await;
    assert_eq!(r.status(), 204);
    let list: Value = chat.get(0, "/api/chat", &lou).await.json().await.unwrap();
    assert_eq!(
        list[0]["unreadCount"], 1,
        "a write is visible in the next read"
    );

    let m2id = m2["id"].as_str().unwrap();
    let not_sender = chat
        .client
        .patch(chat.url(0, &format!("/api/chat/{id}/messages/{m2id}")))
        .bearer_auth(&lou.token)
        .json(&json!({"content": "hijack"}))
        .send()
        .await
        .unwrap();
    assert_eq!(not_sender.status(), 403);
    let edited: Value = chat
        .client
        .patch(chat.url(0, &format!("/api/chat/{id}/messages/{m2id}")))
        .bearer_auth(&max.token)
        .json(&json!({"content": "second, edited"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(edited["content"], "second, edited");
    assert!(edited["editedAt"].is_string());
    // The admin may delete someone else's message.
    let deleted: Value = chat
        .client
        .delete(chat.url(0, &format!("/api/chat/{id}/messages/{m2id}")))
        .bearer_auth(&lou.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(deleted["deleted"], true);
    assert_eq!(deleted["content"], "");
    assert_eq!(deleted["id"], m2id);
}

#[tokio::test]
async fn a_profile_change_shows_in_chat_responses_within_two_seconds() {
    let chat = spawn(2).await;
    let ned = chat.user("ned").await;
    let ola = chat.user("ola").await;
    let id = chat.group(&ned, "names", &[&ola]).await;
    chat.rename_user(&ola, "Ola Renamed", 2).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    loop {
        let c: Value = chat
            .get(1, &format!("/api/chat/{id}"), &ned)
            .await
            .json()
            .await
            .unwrap();
        if c["members"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["displayName"] == "Ola Renamed")
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "profile change not visible in 2 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // An older version arriving late changes nothing.
    chat.rename_user(&ola, "Stale Name", 1).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let c: Value = chat
        .get(0, &format!("/api/chat/{id}"), &ned)
        .await
        .json()
        .await
        .unwrap();
    assert!(c["members"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["displayName"] == "Ola Renamed"));
}

#[tokio::test]
async fn in_a_direct_chat_only_the_sender_deletes_a_message() {
    let chat = spawn(1).await;
    let ned = chat.user("ned").await;
    let ola = chat.user("ola").await;
    let r = chat
        .post(0, "/api/chat", &ned, json!({"userId": ola.id}))
        .await;
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let m = chat.send(0, &ned, &id, "mine").await;
    let path = format!("/api/chat/{id}/messages/{}", m["id"].as_str().unwrap());
    let by_other = chat
        .client
        .delete(chat.url(0, &path))
        .bearer_auth(&ola.token)
        .send()
        .await
        .unwrap();
    assert_eq!(by_other.status(), 403);
    let by_sender = chat
        .client
        .delete(chat.url(0, &path))
        .bearer_auth(&ned.token)
        .send()
        .await
        .unwrap();
    assert_eq!(by_sender.status(), 200);
}

/// Concurrent changes of one group, across instances: every one lands, and
/// each event describes the group as its own change left it (versions
/// distinct, each member list the one before it plus its new member).
#[tokio::test]
async fn concurrent_changes_of_a_group_all_land_with_events_that_agree() {
    let chat = spawn(2).await;
    let boss = chat.user("boss").await;
    let first = chat.user("first").await;
    let id = chat.group(&boss, "busy", &[&first]).await;
    let mut joiners = Vec::new();
    for i in 0..8 {
        joiners.push(chat.user(&format!("joiner{i}")).await);
    }
    let mut spy = chat.spy("chat.member.added").await;
    let members = format!("/api/chat/{id}/members");
    let adds = joiners
        .iter()
        .enumerate()
        .map(|(i, j)| chat.post(i % 2, &members, &boss, json!({"userId": j.id})));
    let rename = chat
        .client
        .patch(chat.url(1, &format!("/api/chat/{id}")))
        .bearer_auth(&boss.token)
        .json(&json!({"name": "busier"}))
        .send();
    let (added, renamed) = tokio::join!(futures_util::future::join_all(adds), rename);
    for a in &added {
        assert_eq!(a.status(), 200);
    }
    assert_eq!(renamed.unwrap().status(), 200);

    let group: Value = chat
        .get(0, &format!("/api/chat/{id}"), &boss)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(group["name"], "busier");
    assert_eq!(group["members"].as_array().unwrap().len(), 10, "{group}");

    let mut events = Vec::new();
    while events.len() < 8 {
        let next = tokio::time::timeout(Duration::from_secs(10), spy.next()).await;
        let Ok(Some(event)) = next else {
            panic!("{} of 8 chat.member.added events", events.len());
        };
        events.push(event["data"].clone());
    }
    let mut sizes: Vec<usize> = events
        .iter()
        .map(|e| {
            let members = e["memberIds"].as_array().unwrap();
            assert!(members.contains(&e["userId"]), "{e}");
            members.len()
        })
        .collect();
    sizes.sort_unstable();
    assert_eq!(sizes, (3..=10).collect::<Vec<_>>(), "one member more each");
}

/// The chat list a page at a time: every chat once, in the order of the
/// whole list, the next page named by the `Link` header; a message moving a
/// chat to the top while paging does not shift the pages after it; bad
/// cursors and limits are refused.
#[tokio::test]
async fn the_chat_list_pages_by_cursor_in_the_order_of_the_whole_list() {
    let t = spawn(1).await;
    let pam = t.user("pam").await;
    let mut others = Vec::new();
    for i in 0..5 {
        let other = t.user(&format!("p{i}")).await;
        t.group(&pam, &format!("g{i}"), &[&other]).await;
        others.push(other);
    }
    let ids = |v: &Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|c| c["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let whole = ids(&t.get(0, "/api/chat", &pam).await.json().await.unwrap());
    assert_eq!(whole.len(), 5);

    let mut seen = Vec::new();
    let mut path = "/api/chat?limit=2".to_owned();
    for round in 0.. {
        assert!(round < 5, "paging does not end: {seen:?}");
        let r = t.get(0, &path, &pam).await;
        assert_eq!(r.status(), 200);
        let next = r
            .headers()
            .get("link")
            .map(|l| l.to_str().unwrap().to_owned());
        seen.extend(ids(&r.json().await.unwrap()));
        if round == 0 {
            // The last chat of the list becomes the most recent: it is on a
            // page already read, or on the top one, never on a later page.
            let last = whole.last().unwrap();
            t.send(0, &pam, last, "to the top").await;
        }
        let Some(next) = next else { break };
        let url = next
            .strip_prefix('<')
            .and_then(|l| l.split_once(">; rel=\"next\""))
            .map(|(url, _)| url.to_owned())
            .expect("a next link");
        path = url;
    }
    assert_eq!(seen, whole[..4], "the pages after the move: {seen:?}");

    for bad in ["?limit=0", "?limit=101", "?before=nope", "?before=MTIz"] {
        let r = t.get(0, &format!("/api/chat{bad}"), &pam).await;
        assert_eq!(r.status(), 422, "{bad}");
    }
}
