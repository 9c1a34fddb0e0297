//! Email verification: the token travels in `auth.email.verification_requested`,
//! is single use (also racing), and resends are limited to 3 per hour.

use futures_util::future::join_all;
use mongodb::bson::doc;
use serde_json::{json, Value};

use crate::helpers::{spawn_app, TestApp};

async fn verify(app: &TestApp, token: &str) -> u16 {
    app.post("/api/auth/email/verify", None, json!({"token": token}))
        .await
        .status()
        .as_u16()
}

async fn me(app: &TestApp, access: &str) -> Value {
    app.get("/api/users/me", access).await.json().await.unwrap()
}

#[tokio::test]
async fn registration_mails_a_single_use_token_that_verifies_the_address() {
    let app = spawn_app().await;
    let mut events = app.capture_events().await;
    let resp = app
        .post(
            "/api/auth/register",
            None,
            json!({"username": "vera", "email": "vera@example.com", "password": "Tangerine-vera-Harbor-93"}),
        )
        .await;
    assert_eq!(resp.status(), 201);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["user"]["emailVerified"], false);
    let access = body["accessToken"].as_str().unwrap();
    let registered = events.next_of("user.registered").await;
    assert_eq!(registered["data"]["emailVerified"], false);
    let requested = events.next_of("auth.email.verification_requested").await;
    let data = &requested["data"];
    assert_eq!(data["email"], "vera@example.com");
    assert_eq!(data["userId"], body["user"]["id"]);
    let token = data["token"].as_str().unwrap().to_owned();
    assert!(token.len() >= 22, "at least 128 bits: {token}");
    let expires =
        chrono::DateTime::parse_from_rfc3339(data["expiresAt"].as_str().unwrap()).unwrap();
    let hours = (expires.with_timezone(&chrono::Utc) - chrono::Utc::now()).num_minutes();
    assert!((23 * 60..=24 * 60).contains(&hours), "{hours} minutes");
    assert_eq!(me(&app, access).await["emailVerified"], false);

    assert_eq!(verify(&app, "not-the-token").await, 400);
    assert_eq!(verify(&app, &token).await, 204);
    let updated = events.next_of("user.updated").await;
    assert_eq!(updated["data"]["emailVerified"], true);
    assert!(
        updated["data"]["profileVersion"].as_i64().unwrap() >= 2,
        "replicas take it"
    );
    assert_eq!(me(&app, access).await["emailVerified"], true);
    let login: Value = app
        .login("vera", "Tangerine-vera-Harbor-93")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(login["user"]["emailVerified"], true);
    assert_eq!(verify(&app, &token).await, 400, "single use");
    // Verified: resending answers 204 and mails nothing.
    let r = app
        .post("/api/auth/email/verify/resend", Some(access), json!({}))
        .await;
    assert_eq!(r.status(), 204);
    // A later event proves the queue is read; no verification mail came before it.
    let patched = app
        .client
        .patch(app.url("/api/users/me"))
        .bearer_auth(access)
        .json(&json!({"bio": "hi"}))
        .send()
        .await
        .unwrap();
    assert_eq!(patched.status(), 200);
    loop {
        let next = events.next_any().await;
        assert_ne!(
            next["type"], "auth.email.verification_requested",
            "no mail for a verified address"
        );
        if next["type"] == "user.updated" && next["data"]["profileVersion"].as_i64() >= Some(3) {
            break;
        }
    }
}

#[tokio::test]
async fn forty_racing_redemptions_of_one_token_give_exactly_one_success() {
    let app = spawn_app().await;
    let mut events = app.capture_events().await;
    let user = app.register("rita").await;
    let token = events.next_of("auth.email.verification_requested").await["data"]["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let results = join_all((0..40).map(|_| verify(&app, &token))).await;
    assert_eq!(
        results.iter().filter(|s| **s == 204).count(),
        1,
        "{results:?}"
    );
    assert_eq!(
        results.iter().filter(|s| **s == 400).count(),
        39,
        "{results:?}"
    );
    assert_eq!(me(&app, &user.access).await["emailVerified"], true);
}

#[tokio::test]
async fn resends_issue_fresh_tokens_three_times_an_hour() {
    let app = spawn_app().await;
    let mut events = app.capture_events().await;
    let user = app.register("rosa").await;
    let mut tokens = vec![
        events.next_of("auth.email.verification_requested").await["data"]["token"]
            .as_str()
            .unwrap()
            .to_owned(),
    ];
    for _ in 0..3 {
        let r = app
            .post(
                "/api/auth/email/verify/resend",
                Some(&user.access),
                json!({}),
            )
            .await;
        assert_eq!(r.status(), 204);
        let token = events.next_of("auth.email.verification_requested").await["data"]["token"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(!tokens.contains(&token));
        tokens.push(token);
    }
    let r = app
        .post(
            "/api/auth/email/verify/resend",
            Some(&user.access),
            json!({}),
        )
        .await;
    assert_eq!(r.status(), 429);
    assert!(r.headers().get("retry-after").is_some());
    let unauthenticated = app
        .post("/api/auth/email/verify/resend", None, json!({}))
        .await;
    assert_eq!(unauthenticated.status(), 401);
    for old in &tokens[..3] {
        assert_eq!(verify(&app, old).await, 400, "replaced tokens stop working");
    }
    assert_eq!(verify(&app, &tokens[3]).await, 204);
}

#[tokio::test]
async fn accounts_stored_without_the_field_read_as_unverified() {
    let app = spawn_app().await;
    let user = app.register("olga").await;
    app.db
        .collection::<mongodb::bson::Document>("users")
        .update_one(
            doc! { "_id": &user.id },
            doc! { "$unset": { "emailVerified": "", "emailVerification": "" } },
        )
        .await
        .unwrap();
    assert_eq!(me(&app, &user.access).await["emailVerified"], false);
    let r = app.login("olga", &user.password).await;
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn an_expired_token_does_not_verify() {
    let app = spawn_app().await;
    let mut events = app.capture_events().await;
    let user = app.register("ivy").await;
    let token = events.next_of("auth.email.verification_requested").await["data"]["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let past = mongodb::bson::DateTime::from_millis(
        mongodb::bson::DateTime::now().timestamp_millis() - 1000,
    );
    app.db
        .collection::<mongodb::bson::Document>("users")
        .update_one(
            doc! { "_id": &user.id },
            doc! { "$set": { "emailVerification.expiresAt": past } },
        )
        .await
        .unwrap();
    assert_eq!(verify(&app, &token).await, 400);
    assert_eq!(me(&app, &user.access).await["emailVerified"], false);
}
