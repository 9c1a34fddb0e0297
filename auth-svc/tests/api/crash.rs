//! An auth-svc process killed between a write and handing its events to
//! the relay (the `auth.event.stored` failpoint aborts it there, as SIGKILL
//! would). Each event was stored in the changed document by the same
//! write, so the surviving instance's relay sweep publishes it, once.

use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::{spawn_app, TestApp};

/// The dead process may hold the sweep's lease (10 s), and the sweep waits
/// 2 s for the fast path before it takes a record.
const RECOVERY: Duration = Duration::from_secs(30);

/// Sends `body` to `path` on a process that aborts once the change is
/// stored; the request gets no answer.
async fn crash_on(app: &TestApp, path: &str, token: Option<&str>, body: Value) {
    let mut process = app.process(json!({"failpoint": "auth.event.stored"})).await;
    let mut request = app
        .client
        .post(format!("{}{path}", process.address))
        .json(&body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let sent = request.send().await;
    assert!(
        sent.is_err(),
        "the process answered instead of crashing: {sent:?}"
    );
    let status = process.child.wait().await.expect("reaped");
    assert!(!status.success(), "the process stopped at the failpoint");
}

fn of_type<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["type"] == kind).collect()
}

#[tokio::test]
async fn a_registration_stored_by_a_crashed_instance_is_announced_once() {
    let app = spawn_app().await;
    let mut events = app.capture_events().await;
    let password = "Tangerine-crashy-Harbor-93";
    crash_on(
        &app,
        "/api/auth/register",
        None,
        json!({"username": "crashy", "email": "crashy@example.com", "password": password}),
    )
    .await;
    let seen = events.drain(RECOVERY, Duration::from_secs(3)).await;
    let registered = of_type(&seen, "user.registered");
    assert_eq!(registered.len(), 1, "one user.registered: {seen:?}");
    assert_eq!(registered[0]["data"]["username"], "crashy");
    let mails = of_type(&seen, "auth.email.verification_requested");
    assert_eq!(mails.len(), 1, "one verification mail asked for: {seen:?}");
    // The account itself was stored: its owner signs in on the survivor.
    assert_eq!(app.login("crashy", password).await.status(), 200);
}

#[tokio::test]
async fn a_logout_stored_by_a_crashed_instance_is_announced_once_and_holds() {
    let app = spawn_app().await;
    let user = app.register("leaver").await;
    // The survivor has seen the session active (and cached that).
    let me = app.get("/api/users/me", &user.access).await;
    assert_eq!(me.status(), 200);
    let mut events = app.capture_events().await;
    crash_on(&app, "/api/auth/logout", Some(&user.access), json!({})).await;
    let seen = events.drain(RECOVERY, Duration::from_secs(3)).await;
    let revoked = of_type(&seen, "auth.session.revoked");
    assert_eq!(revoked.len(), 1, "one auth.session.revoked: {seen:?}");
    assert_eq!(revoked[0]["data"]["reason"], "logout");
    let refreshed = app
        .post(
            "/api/auth/refresh",
            None,
            json!({"refreshToken": user.refresh}),
        )
        .await;
    assert_eq!(refreshed.status(), 401, "the session stays revoked");
    // The dead process never marked the session revoked in the cache; the
    // sweep did before it published, so the access token is refused now,
    // not once the cached `active` flag expires.
    let me = app.get("/api/users/me", &user.access).await;
    assert_eq!(me.status(), 401, "the access token of the revoked session");
}
