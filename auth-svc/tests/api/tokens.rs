use serde_json::{json, Value};

use crate::helpers::spawn_app;

#[tokio::test]
async fn refresh_tokens_rotate_and_reuse_kills_the_session() {
    let app = spawn_app().await;
    let jo = app.register("joe").await;
    let mut events = app.capture_events().await;
    let first: Value = app
        .post(
            "/api/auth/refresh",
            None,
            json!({"refreshToken": jo.refresh}),
        )
        .await
        .json()
        .await
        .unwrap();
    let rotated = first["refreshToken"].as_str().unwrap().to_owned();
    assert_ne!(rotated, jo.refresh);
    let new_access = first["accessToken"].as_str().unwrap().to_owned();
    assert_eq!(app.get("/api/users/me", &new_access).await.status(), 200);

    // The old token again: theft. The whole session dies.
    let reuse = app
        .post(
            "/api/auth/refresh",
            None,
            json!({"refreshToken": jo.refresh}),
        )
        .await;
    assert_eq!(reuse.status(), 401);
    let event = events.next_of("auth.session.revoked").await;
    assert_eq!(event["data"]["reason"], "refresh_token_reused");
    assert_eq!(
        app.post("/api/auth/refresh", None, json!({"refreshToken": rotated}))
            .await
            .status(),
        401
    );
    assert_eq!(app.get("/api/users/me", &new_access).await.status(), 401);
    assert_eq!(app.get("/api/users/me", &jo.access).await.status(), 401);
}

#[tokio::test]
async fn logout_and_session_revocation_refuse_the_access_token() {
    let app = spawn_app().await;
    let kim = app.register("kim").await;
    let lee = app.register("lee").await;
    let second: Value = app.login("kim", &kim.password).await.json().await.unwrap();
    let second_token = second["accessToken"].as_str().unwrap().to_owned();

    let sessions: Value = app
        .get("/api/auth/sessions", &kim.access)
        .await
        .json()
        .await
        .unwrap();
    let list = sessions.as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list.iter().filter(|s| s["current"] == true).count(), 1);
    let other_id = list.iter().find(|s| s["current"] == false).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // Another user cannot see or revoke it.
    let foreign = app
        .client
        .delete(app.url(&format!("/api/auth/sessions/{other_id}")))
        .bearer_auth(&lee.access)
        .send()
        .await
        .unwrap();
    assert_eq!(foreign.status(), 404);
    assert_eq!(app.get("/api/users/me", &second_token).await.status(), 200);

    let mut events = app.capture_events().await;
    let revoke = app
        .client
        .delete(app.url(&format!("/api/auth/sessions/{other_id}")))
        .bearer_auth(&kim.access)
        .send()
        .await
        .unwrap();
    assert_eq!(revoke.status(), 204);
    assert_eq!(app.get("/api/users/me", &second_token).await.status(), 401);
    let event = events.next_of("auth.session.revoked").await;
    assert_eq!(event["data"]["sessionId"], other_id.as_str());

    assert_eq!(
        app.post("/api/auth/logout", Some(&kim.access), json!({}))
            .await
            .status(),
        204
    );
    assert_eq!(app.get("/api/users/me", &kim.access).await.status(), 401);
}

#[tokio::test]
async fn the_jwks_publishes_the_verification_key() {
    let app = spawn_app().await;
    let jwks: Value = app
        .client
        .get(app.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = &jwks["keys"][0];
    assert_eq!(key["kty"], "OKP");
    assert_eq!(key["crv"], "Ed25519");
    assert_eq!(key["alg"], "EdDSA");
    assert_eq!(key["x"].as_str().unwrap().len(), 43);
    assert!(key["kid"].is_string());
}

#[tokio::test]
async fn garbage_and_missing_tokens_are_401_problems() {
    let app = spawn_app().await;
    for token in ["", "abc", "a.b.c", "eyJhbGciOiJub25lIn0.e30."] {
        let resp = app.get("/api/users/me", token).await;
        assert_eq!(resp.status(), 401, "{token:?}");
        assert_eq!(resp.headers()["content-type"], "application/problem+json");
    }
}
