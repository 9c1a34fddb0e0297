//! Blocking and group privacy (api.md, "Blocking and privacy"): every
//! refusal is a 403 that changes nothing, which the tests check in storage
//! (lists, history, members) and on the blocker's socket (no event).

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{spawn, TestChat, User};

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

async fn block(t: &TestChat, instance: usize, blocker: &User, blocked: &User) {
    let r = call(
        t,
        Method::PUT,
        instance,
        &format!("/api/chat/blocks/{}", blocked.id),
        blocker,
        None,
    )
    .await;
    assert_eq!(r.status(), 204, "block");
}

async fn unblock(t: &TestChat, instance: usize, blocker: &User, blocked: &User) {
    let r = call(
        t,
        Method::DELETE,
        instance,
        &format!("/api/chat/blocks/{}", blocked.id),
        blocker,
        None,
    )
    .await;
    assert_eq!(r.status(), 204, "unblock");
}

async fn set_privacy(t: &TestChat, user: &User, group_adds: &str) {
    let r = call(
        t,
        Method::PUT,
        0,
        "/api/chat/privacy",
        user,
        Some(json!({"groupAdds": group_adds})),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"groupAdds": group_adds})
    );
}

async fn chat_ids(t: &TestChat, user: &User) -> Vec<String> {
    let list: Value = t.get(0, "/api/chat", user).await.json().await.unwrap();
    list.as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_owned())
        .collect()
}

async fn member_ids(t: &TestChat, user: &User, chat: &str) -> Vec<String> {
    let c: Value = t
        .get(0, &format!("/api/chat/{chat}"), user)
        .await
        .json()
        .await
        .unwrap();
    let mut ids: Vec<String> = c["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

async fn contents(t: &TestChat, user: &User, chat: &str) -> Vec<String> {
    let page: Value = t
        .get(0, &format!("/api/chat/{chat}/messages"), user)
        .await
        .json()
        .await
        .unwrap();
    page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap().to_owned())
        .collect()
}

fn assert_forbidden_problem(status: reqwest::StatusCode, body: &Value, what: &str) {
    assert_eq!(status, 403, "{what}: {body}");
    assert_eq!(body["status"], 403, "{what}: a problem document");
}

#[tokio::test]
async fn blocks_are_idempotent_listed_as_profiles_and_undone_by_unblocking() {
    let t = spawn(1).await;
    let ann = t.user("ann").await;
    let ben = t.user("ben").await;
    let cat = t.user("cat").await;
    block(&t, 0, &ann, &ben).await;
    block(&t, 0, &ann, &ben).await;
    block(&t, 0, &ann, &cat).await;
    let list: Value = t
        .get(0, "/api/chat/blocks", &ann)
        .await
        .json()
        .await
        .unwrap();
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 2, "{list:?}");
    let mut ids: Vec<&str> = list.iter().map(|p| p["id"].as_str().unwrap()).collect();
    ids.sort();
    let mut want = vec![ben.id.as_str(), cat.id.as_str()];
    want.sort();
    assert_eq!(ids, want);
    let ben_profile = list.iter().find(|p| p["id"] == ben.id.as_str()).unwrap();
    assert_eq!(ben_profile["username"], "ben");
    assert_eq!(ben_profile["displayName"], "BEN");

    let own = call(
        &t,
        Method::PUT,
        0,
        &format!("/api/chat/blocks/{}", ann.id),
        &ann,
        None,
    )
    .await;
    assert_eq!(own.status(), 422, "blocking yourself");
    let body: Value = own.json().await.unwrap();
    assert_eq!(body["errors"][0]["field"], "userId");
    let unknown = call(
        &t,
        Method::PUT,
        0,
        "/api/chat/blocks/nobody-at-all",
        &ann,
        None,
    )
    .await;
    assert_eq!(unknown.status(), 404, "blocking an unknown id");

    unblock(&t, 0, &ann, &ben).await;
    unblock(&t, 0, &ann, &ben).await;
    let list: Value = t
        .get(0, "/api/chat/blocks", &ann)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["id"], cat.id.as_str());
    let theirs: Value = t
        .get(0, "/api/chat/blocks", &ben)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(theirs, json!([]), "blocks are the blocker's own");
}

#[tokio::test]
async fn a_blocked_user_cannot_open_a_direct_chat_with_the_blocker() {
    let t = spawn(1).await;
    let ann = t.user("ann").await;
    let ben = t.user("ben").await;
    let cat = t.user("cat").await;
    let mut ann_socket = t.socket(0, &ann).await;
    block(&t, 0, &ann, &ben).await;

    let r = t
        .post(0, "/api/chat", &ben, json!({"userId": ann.id}))
        .await;
    let status = r.status();
    assert_forbidden_problem(status, &r.json().await.unwrap(), "open a 1:1 chat");
    assert!(chat_ids(&t, &ben).await.is_empty(), "no chat for ben");
    assert!(chat_ids(&t, &ann).await.is_empty(), "no chat for ann");
    // The blocker may still open it, and ben and cat are unaffected.
    let ok = t
        .post(0, "/api/chat", &ben, json!({"userId": cat.id}))
        .await;
    assert_eq!(ok.status(), 201);

    unblock(&t, 0, &ann, &ben).await;
    let r = t
        .post(0, "/api/chat", &ben, json!({"userId": ann.id}))
        .await;
    assert_eq!(r.status(), 201, "unblocking restores");
    let chat: Value = r.json().await.unwrap();
    // The first event ann hears of is the chat made after the unblock: the
    // refused attempt emitted nothing.
    let first = ann_socket.next_frame().await.expect("a frame");
    assert_eq!(first["type"], "chat.created", "{first}");
    assert_eq!(first["chat"]["id"], chat["id"]);
}

#[tokio::test]
async fn a_blocked_user_cannot_post_or_edit_in_the_direct_chat_on_any_instance() {
    let t = spawn(2).await;
    let ann = t.user("ann").await;
    let ben = t.user("ben").await;
    let r = t
        .post(0, "/api/chat", &ben, json!({"userId": ann.id}))
        .await;
    let chat = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut ann_socket = t.socket(0, &ann).await;
    let mut ben_socket = t.socket(1, &ben).await;
    // Warm both instances' cached membership of the chat.
    let first = t.send(0, &ben, &chat, "hello").await;
    t.send(1, &ben, &chat, "hello again").await;
    let mid = first["id"].as_str().unwrap().to_owned();
    for _ in 0..2 {
        ann_socket.next_of("message.created").await.expect("frame");
    }

    block(&t, 0, &ann, &ben).await;
    for instance in [0, 1] {
        let r = t
            .post(
                instance,
                &format!("/api/chat/{chat}/messages"),
                &ben,
                json!({"content": "are you there?"}),
            )
            .await;
        let status = r.status();
        assert_forbidden_problem(status, &r.json().await.unwrap(), "post");
        let r = call(
            &t,
            Method::PATCH,
            instance,
            &format!("/api/chat/{chat}/messages/{mid}"),
            &ben,
            Some(json!({"content": "rewritten"})),
        )
        .await;
        let status = r.status();
        assert_forbidden_problem(status, &r.json().await.unwrap(), "edit");
    }
    ben_socket
        .send(json!({"type": "message.send", "chatId": chat, "content": "over the socket", "clientMsgId": "s1"}))
        .await;
    let error = ben_socket.next_of("error").await.expect("an error frame");
    assert_eq!(error["code"], "forbidden", "{error}");
    assert_eq!(error["clientMsgId"], "s1");
    assert_eq!(
        contents(&t, &ann, &chat).await,
        ["hello again", "hello"],
        "nothing was posted or changed"
    );

    // The blocker still posts; it is the first message event ann's socket
    // sees, so none of the refused ones emitted anything.
    t.send(1, &ann, &chat, "I blocked you").await;
    let frame = ann_socket.next_of("message.created").await.expect("frame");
    assert_eq!(frame["message"]["content"], "I blocked you");
    assert!(ann_socket
        .next_frame_within(Duration::from_millis(500))
        .await
        .is_none_or(|f| f["type"] != "message.created" && f["type"] != "message.updated"));

    unblock(&t, 1, &ann, &ben).await;
    for instance in [0, 1] {
        t.send(instance, &ben, &chat, "thanks").await;
    }
    let r = call(
        &t,
        Method::PATCH,
        0,
        &format!("/api/chat/{chat}/messages/{mid}"),
        &ben,
        Some(json!({"content": "hello, edited"})),
    )
    .await;
    assert_eq!(r.status(), 200, "unblocking restores edits");
}

#[tokio::test]
async fn nobody_can_put_a_user_into_a_group_they_blocked_them_from() {
    let t = spawn(1).await;
    let ann = t.user("ann").await;
    let ben = t.user("ben").await;
    let cat = t.user("cat").await;
    block(&t, 0, &ann, &ben).await;

    let r = t
        .post(
            0,
            "/api/chat/group",
            &ben,
            json!({"name": "trap", "memberIds": [cat.id, ann.id]}),
        )
        .await;
    let status = r.status();
    assert_forbidden_problem(status, &r.json().await.unwrap(), "group naming the blocker");
    assert!(chat_ids(&t, &ben).await.is_empty(), "no group was created");
    assert!(chat_ids(&t, &cat).await.is_empty());

    let group = t.group(&ben, "plain", &[&cat]).await;
    let mut ann_socket = t.socket(0, &ann).await;
    let r = t
        .post(
            0,
            &format!("/api/chat/{group}/members"),
            &ben,
            json!({"userId": ann.id}),
        )
        .await;
    let status = r.status();
    assert_forbidden_problem(status, &r.json().await.unwrap(), "adding the blocker");
    let mut want = vec![ben.id.clone(), cat.id.clone()];
    want.sort();
    assert_eq!(member_ids(&t, &ben, &group).await, want);
    assert!(chat_ids(&t, &ann).await.is_empty());

    unblock(&t, 0, &ann, &ben).await;
    let r = t
        .post(
            0,
            &format!("/api/chat/{group}/members"),
            &ben,
            json!({"userId": ann.id}),
        )
        .await;
    assert_eq!(r.status(), 200, "unblocking restores");
    let first = ann_socket.next_frame().await.expect("a frame");
    assert_eq!(first["type"], "chat.member.added", "{first}");
}

#[tokio::test]
async fn group_adds_everyone_contacts_and_nobody() {
    let t = spawn(1).await;
    let dan = t.user("dan").await;
    let eve = t.user("eve").await;
    let fay = t.user("fay").await;
    let default: Value = t
        .get(0, "/api/chat/privacy", &dan)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(default, json!({"groupAdds": "everyone"}));
    let bad = call(
        &t,
        Method::PUT,
        0,
        "/api/chat/privacy",
        &dan,
        Some(json!({"groupAdds": "friends"})),
    )
    .await;
    assert_eq!(bad.status(), 422);
    let body: Value = bad.json().await.unwrap();
    assert_eq!(body["errors"][0]["field"], "groupAdds", "{body}");

    set_privacy(&t, &dan, "nobody").await;
    let stored: Value = t
        .get(0, "/api/chat/privacy", &dan)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(stored, json!({"groupAdds": "nobody"}));
    // A 1:1 chat makes eve a contact, which "nobody" does not care about.
    let r = t
        .post(0, "/api/chat", &eve, json!({"userId": dan.id}))
        .await;
    assert_eq!(r.status(), 201, "privacy is about groups only");
    let r = t
        .post(
            0,
            "/api/chat/group",
            &eve,
            json!({"name": "g", "memberIds": [dan.id, fay.id]}),
        )
        .await;
    let status = r.status();
    assert_forbidden_problem(status, &r.json().await.unwrap(), "nobody: create");
    let group = t.group(&eve, "g", &[&fay]).await;
    let members_path = format!("/api/chat/{group}/members");
    let add = || t.post(0, &members_path, &eve, json!({"userId": dan.id}));
    let r = add().await;
    let status = r.status();
    assert_forbidden_problem(status, &r.json().await.unwrap(), "nobody: add");
    assert_eq!(chat_ids(&t, &dan).await.len(), 1, "only the 1:1 chat");

    set_privacy(&t, &dan, "contacts").await;
    let r = t
        .post(
            0,
            "/api/chat/group",
            &fay,
            json!({"name": "h", "memberIds": [dan.id]}),
        )
        .await;
    let status = r.status();
    assert_forbidden_problem(status, &r.json().await.unwrap(), "contacts: a stranger");
    assert_eq!(chat_ids(&t, &dan).await.len(), 1);
    let r = add().await;
    assert_eq!(r.status(), 200, "contacts: eve shares a 1:1 chat with dan");
    let mut want = vec![dan.id.clone(), eve.id.clone(), fay.id.clone()];
    want.sort();
    assert_eq!(member_ids(&t, &eve, &group).await, want);

    set_privacy(&t, &dan, "everyone").await;
    let r = t
        .post(
            0,
            "/api/chat/group",
            &fay,
            json!({"name": "h", "memberIds": [dan.id]}),
        )
        .await;
    assert_eq!(r.status(), 201, "everyone");
}

#[tokio::test]
async fn leaving_a_group_always_works() {
    let t = spawn(1).await;
    let gus = t.user("gus").await;
    let hal = t.user("hal").await;
    let group = t.group(&gus, "team", &[&hal]).await;
    set_privacy(&t, &hal, "nobody").await;
    block(&t, 0, &hal, &gus).await;
    let r = call(
        &t,
        Method::DELETE,
        0,
        &format!("/api/chat/{group}/members/{}", hal.id),
        &hal,
        None,
    )
    .await;
    assert_eq!(r.status(), 204);
    assert!(chat_ids(&t, &hal).await.is_empty());
    assert_eq!(member_ids(&t, &gus, &group).await, vec![gus.id.clone()]);
}

#[tokio::test]
async fn the_block_check_of_a_warm_direct_chat_send_reads_no_database() {
    let t = spawn(1).await;
    let kim = t.user("kim").await;
    let lee = t.user("lee").await;
    let chat = t
        .post(0, "/api/chat", &kim, json!({"userId": lee.id}))
        .await
        .json::<Value>()
        .await
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    t.send(0, &kim, &chat, "warm-up").await;
    let blocks = ["collection=\"blocks\""];
    let before = t.counter(0, "db_operations_total", &blocks).await;
    for n in 0..5 {
        t.send(0, &kim, &chat, &format!("m{n}")).await;
    }
    let after = t.counter(0, "db_operations_total", &blocks).await;
    assert_eq!(after, before, "warm sends read no blocks from MongoDB");
}
