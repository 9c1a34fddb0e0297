//! A chat-svc process killed between storing a message and handing its
//! event to the relay (the `chat.event.stored` failpoint aborts it
//! there, as SIGKILL would). The message and its event were one write, so
//! the survivor's relay sweep publishes it: exactly once on the broker and
//! on a member's socket, whether the client retried or not. The sweep also
//! redoes the dead writer's cache invalidation, so the survivor serves no
//! stale chat.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::time::Instant;

use crate::helpers::{spawn, Socket, Spy, TestChat, User};

/// The dead process may hold the sweep's lease (10 s), and the sweep waits
/// 2 s for the fast path before it takes a record.
const RECOVERY: Duration = Duration::from_secs(30);

/// Posts to an instance that aborts after the insert; the request fails.
async fn post_and_crash(t: &TestChat, alice: &User, chat: &str, client_msg_id: &str) {
    let mut process = t.process(json!({"failpoint": "chat.event.stored"})).await;
    let sent = t
        .client
        .post(format!("{}/api/chat/{chat}/messages", process.address))
        .bearer_auth(&alice.token)
        .json(&json!({"content": client_msg_id, "clientMsgId": client_msg_id}))
        .send()
        .await;
    assert!(
        sent.is_err(),
        "the process answered instead of crashing: {sent:?}"
    );
    let status = process.child.wait().await.expect("reaped");
    assert!(!status.success(), "the process stopped at the failpoint");
}

/// Counts events and frames of `kind` (`message.created`, ...) per message
/// id, on the broker and on a socket, until `ids` all arrived and 3 s more
/// passed (for duplicates).
async fn count(
    spy: &mut Spy,
    socket: &mut Socket,
    kind: &str,
    ids: &[String],
) -> (HashMap<String, usize>, HashMap<String, usize>) {
    let (mut on_broker, mut on_socket) = (HashMap::new(), HashMap::new());
    let deadline = Instant::now() + RECOVERY;
    let mut settled: Option<Instant> = None;
    while Instant::now() < deadline && settled.is_none_or(|s| Instant::now() < s) {
        tokio::select! {
            Some(event) = spy.next() => {
                let id = event["data"]["message"]["id"].as_str().unwrap_or_default().to_owned();
                *on_broker.entry(id).or_insert(0) += 1;
            }
            Some(frame) = socket.next_of_within(kind, Duration::from_millis(200)) => {
                let id = frame["message"]["id"].as_str().unwrap_or_default().to_owned();
                *on_socket.entry(id).or_insert(0) += 1;
            }
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
        let all = |m: &HashMap<String, usize>| ids.iter().all(|i| m.contains_key(i));
        if settled.is_none() && all(&on_broker) && all(&on_socket) {
            settled = Some(Instant::now() + Duration::from_secs(3));
        }
    }
    (on_broker, on_socket)
}

#[tokio::test]
async fn a_message_stored_by_a_crashed_instance_is_published_once_with_or_without_a_retry() {
    let t = spawn(1).await;
    let alice = t.user("alice").await;
    let bob = t.user("bob").await;
    let chat = t.group(&alice, "crash", &[&bob]).await;
    let mut bob_socket = t.socket(0, &bob).await;
    let mut spy = t.spy("chat.message.created").await;

    // Crashed, then retried by the client on the surviving instance.
    post_and_crash(&t, &alice, &chat, "retried").await;
    let retry = t
        .post(
            0,
            &format!("/api/chat/{chat}/messages"),
            &alice,
            json!({"content": "retried", "clientMsgId": "retried"}),
        )
        .await;
    assert_eq!(retry.status(), 200, "the retry finds the stored message");
    let retried = retry.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // Crashed, never retried: the message is in the history all the same.
    post_and_crash(&t, &alice, &chat, "abandoned").await;
    let history: Value = t
        .get(0, &format!("/api/chat/{chat}/messages"), &alice)
        .await
        .json()
        .await
        .unwrap();
    let stored: Vec<&Value> = history["messages"].as_array().unwrap().iter().collect();
    let abandoned = stored
        .iter()
        .find(|m| m["content"] == "abandoned")
        .expect("the abandoned message was stored")["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(stored.len(), 2, "each message exists once: {history}");

    let ids = [retried, abandoned];
    let (on_broker, on_socket) = count(&mut spy, &mut bob_socket, "message.created", &ids).await;
    for id in &ids {
        assert_eq!(on_broker.get(id), Some(&1), "published once: {on_broker:?}");
        assert_eq!(on_socket.get(id), Some(&1), "delivered once: {on_socket:?}");
    }
}

#[tokio::test]
async fn an_edit_stored_by_a_crashed_instance_is_published_once() {
    let t = spawn(1).await;
    let alice = t.user("alice").await;
    let bob = t.user("bob").await;
    let chat = t.group(&alice, "crash", &[&bob]).await;
    let sent = t.send(0, &alice, &chat, "first text").await;
    let id = sent["id"].as_str().unwrap().to_owned();
    let mut bob_socket = t.socket(0, &bob).await;
    let mut spy = t.spy("chat.message.updated").await;

    let mut process = t.process(json!({"failpoint": "chat.event.stored"})).await;
    let edited = t
        .client
        .patch(format!("{}/api/chat/{chat}/messages/{id}", process.address))
        .bearer_auth(&alice.token)
        .json(&json!({"content": "second text"}))
        .send()
        .await;
    assert!(edited.is_err(), "the process answered instead of crashing");
    assert!(!process.child.wait().await.expect("reaped").success());

    let ids = [id];
    let (on_broker, on_socket) = count(&mut spy, &mut bob_socket, "message.updated", &ids).await;
    assert_eq!(
        on_broker.get(&ids[0]),
        Some(&1),
        "the edit's event published once: {on_broker:?}"
    );
    assert_eq!(
        on_socket.get(&ids[0]),
        Some(&1),
        "delivered once: {on_socket:?}"
    );
    let history: Value = t
        .get(0, &format!("/api/chat/{chat}/messages"), &alice)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(history["messages"][0]["content"], "second text");
}

/// Every event on `spy` until 3 s pass without one, or [`RECOVERY`] ends.
async fn drain(spy: &mut Spy) -> Vec<Value> {
    let mut events = Vec::new();
    let deadline = Instant::now() + RECOVERY;
    while Instant::now() < deadline {
        let wait = if events.is_empty() {
            deadline.saturating_duration_since(Instant::now())
        } else {
            Duration::from_secs(3)
        };
        match tokio::time::timeout(wait, spy.next()).await {
            Ok(Some(event)) => events.push(event),
            _ => break,
        }
    }
    events
}

/// A request to a process that aborts once the change is stored.
async fn crash_on(t: &TestChat, user: &User, path: &str, body: Value) {
    crash_with(t, user, reqwest::Method::POST, path, body).await;
}

async fn crash_with(t: &TestChat, user: &User, method: reqwest::Method, path: &str, body: Value) {
    let mut process = t.process(json!({"failpoint": "chat.event.stored"})).await;
    let sent = t
        .client
        .request(method, format!("{}{path}", process.address))
        .bearer_auth(&user.token)
        .json(&body)
        .send()
        .await;
    assert!(
        sent.is_err(),
        "the process answered instead of crashing: {sent:?}"
    );
    assert!(!process.child.wait().await.expect("reaped").success());
}

#[tokio::test]
async fn a_read_marker_and_a_new_group_stored_by_a_crashed_instance_are_published_once() {
    let t = spawn(1).await;
    let alice = t.user("alice").await;
    let bob = t.user("bob").await;
    let chat = t.group(&alice, "crash", &[&bob]).await;
    let sent = t.send(0, &alice, &chat, "read me").await;
    let message = sent["id"].as_str().unwrap().to_owned();

    let mut reads = t.spy("chat.read").await;
    crash_on(
        &t,
        &bob,
        &format!("/api/chat/{chat}/read"),
        json!({"messageId": message}),
    )
    .await;
    let events = drain(&mut reads).await;
    assert_eq!(events.len(), 1, "one chat.read: {events:?}");
    assert_eq!(events[0]["data"]["messageId"], message.as_str());

    let mut created = t.spy("chat.created").await;
    crash_on(
        &t,
        &alice,
        "/api/chat/group",
        json!({"name": "after the crash", "memberIds": [bob.id]}),
    )
    .await;
    let events = drain(&mut created).await;
    assert_eq!(events.len(), 1, "one chat.created: {events:?}");
    let list: Value = t.get(0, "/api/chat", &bob).await.json().await.unwrap();
    let named = list
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["name"] == "after the crash")
        .count();
    assert_eq!(named, 1, "the group exists once: {list}");
}

#[tokio::test]
async fn a_rename_and_a_new_member_stored_by_a_crashed_instance_are_published_once() {
    let t = spawn(1).await;
    let alice = t.user("alice").await;
    let bob = t.user("bob").await;
    let carl = t.user("carl").await;
    let chat = t.group(&alice, "crash", &[&bob]).await;
    // The survivor caches the chat and the lists as they are before.
    let path = format!("/api/chat/{chat}");
    let before: Value = t.get(0, &path, &bob).await.json().await.unwrap();
    assert_eq!(before["name"], "crash");
    assert_eq!(t.get(0, "/api/chat", &carl).await.status(), 200);

    let mut updated = t.spy("chat.updated").await;
    crash_with(
        &t,
        &alice,
        reqwest::Method::PATCH,
        &format!("/api/chat/{chat}"),
        json!({"name": "renamed in a crash"}),
    )
    .await;
    let events = drain(&mut updated).await;
    assert_eq!(events.len(), 1, "one chat.updated: {events:?}");
    assert_eq!(events[0]["data"]["chat"]["name"], "renamed in a crash");

    let mut added = t.spy("chat.member.added").await;
    crash_on(
        &t,
        &alice,
        &format!("/api/chat/{chat}/members"),
        json!({"userId": carl.id}),
    )
    .await;
    let events = drain(&mut added).await;
    assert_eq!(events.len(), 1, "one chat.member.added: {events:?}");
    assert_eq!(events[0]["data"]["userId"], carl.id.as_str());

    // The dead writer never invalidated the survivor's cache; the sweep did,
    // before it published: the survivor serves the chat as it is now.
    let after: Value = t.get(0, &path, &bob).await.json().await.unwrap();
    assert_eq!(
        after["name"], "renamed in a crash",
        "no stale chat: {after}"
    );
    let members: Vec<&str> = after["members"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["id"].as_str())
        .collect();
    assert!(
        members.contains(&carl.id.as_str()),
        "carl is a member: {after}"
    );
    let carls: Value = t.get(0, "/api/chat", &carl).await.json().await.unwrap();
    assert!(
        carls
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["id"] == chat.as_str()),
        "carl's cached list shows the group: {carls}"
    );
}

/// A cursor's place in its timeline (`ms-seq`).
fn order(cursor: &str) -> (u64, u64) {
    let (ms, seq) = cursor.split_once('-').expect("ms-seq");
    (ms.parse().expect("ms"), seq.parse().expect("seq"))
}

/// The message a crashed instance stored is published late, by the sweep,
/// after a later message that its recipient has already had. The late one
/// reaches, exactly once, a socket that stayed connected, one that resumed
/// after the later message before the sweep, and one that resumed after it
/// once the sweep was done (the replay of the first cursors would skip it:
/// they are older than the cursor the client resumes from).
#[tokio::test]
async fn a_message_published_late_reaches_sockets_that_resumed_after_a_later_one() {
    let t = spawn(1).await;
    let alice = t.user("alice").await;
    let bob = t.user("bob").await;
    let chat = t.group(&alice, "crash", &[&bob]).await;
    let mut stayed = t.socket(0, &bob).await;
    let mut spy = t.spy("chat.message.created").await;

    post_and_crash(&t, &alice, &chat, "late").await;
    let later = t.send(0, &alice, &chat, "later").await;
    let seen = stayed
        .next_of("message.created")
        .await
        .expect("the later message, live");
    assert_eq!(seen["message"]["id"], later["id"]);
    let cursor = seen["cursor"].as_str().expect("a cursor").to_owned();
    let resume = json!({"type": "resume", "cursor": cursor});

    let mut before_sweep = t.socket(0, &bob).await;
    before_sweep.send(resume.clone()).await;
    let deadline = Instant::now() + RECOVERY;
    loop {
        let event = tokio::time::timeout_at(deadline, spy.next())
            .await
            .expect("the sweep published the late message")
            .expect("the spy is open");
        if event["data"]["message"]["content"] == "late" {
            break;
        }
    }
    let mut after_sweep = t.socket(0, &bob).await;
    after_sweep.send(resume).await;

    for (name, socket) in [
        ("stayed connected", &mut stayed),
        ("resumed before the sweep", &mut before_sweep),
        ("resumed after the sweep", &mut after_sweep),
    ] {
        let frames = socket
            .collect("message.created", Duration::from_secs(2))
            .await;
        let contents: Vec<&str> = frames
            .iter()
            .map(|f| f["message"]["content"].as_str().unwrap_or_default())
            .collect();
        assert_eq!(contents, ["late"], "{name}: {frames:?}");
        assert!(
            frames[0]["cursor"].as_str().map(order) > Some(order(&cursor)),
            "{name}: the late message has a cursor after the later one: {frames:?}"
        );
    }
}
