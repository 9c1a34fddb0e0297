use serde_json::{json, Value};

use crate::helpers::{spawn_app, token_for};

#[tokio::test]
async fn preferences_default_then_round_trip_and_are_validated() {
    let app = spawn_app().await;
    let token = token_for("user-1");
    let url = app.url("/api/notifications/preferences");
    let defaults: Value = app
        .client
        .get(&url)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        defaults,
        json!({"push": true, "email": true, "emailDelaySeconds": 600, "mutedChatIds": []})
    );

    let wanted = json!({"push": false, "email": true, "emailDelaySeconds": 5, "mutedChatIds": ["c2", "c1", "c1"]});
    let put = app
        .client
        .put(&url)
        .bearer_auth(&token)
        .json(&wanted)
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 200);
    let saved: Value = app
        .client
        .get(&url)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        saved,
        json!({"push": false, "email": true, "emailDelaySeconds": 5, "mutedChatIds": ["c1", "c2"]})
    );
    let other: Value = app
        .client
        .get(&url)
        .bearer_auth(token_for("user-2"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(other["push"], true, "preferences are per user");

    for bad in [
        json!({"push": true, "email": true, "emailDelaySeconds": 86401, "mutedChatIds": []}),
        json!({"push": "yes", "email": true, "emailDelaySeconds": 1, "mutedChatIds": []}),
        json!({"push": true, "email": true, "emailDelaySeconds": 1, "mutedChatIds": [{"$ne": 1}]}),
        json!({"push": true, "email": true, "emailDelaySeconds": 1}),
    ] {
        let r = app
            .client
            .put(&url)
            .bearer_auth(&token)
            .json(&bad)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 422, "{bad}");
    }
    assert_eq!(app.client.get(&url).send().await.unwrap().status(), 401);
}
