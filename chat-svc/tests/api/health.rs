use crate::helpers::spawn;

#[tokio::test]
async fn unknown_routes_get_a_problem_with_every_security_header() {
    let chat = spawn(1).await;
    let resp = chat
        .client
        .get(chat.url(0, "/api/nothing-here"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(resp.headers()["content-type"], "application/problem+json");
    for (name, value) in shared::http::SECURITY_HEADERS {
        assert_eq!(resp.headers()[*name], *value, "{name}");
    }
}

#[tokio::test]
async fn the_openapi_document_lists_the_rest_endpoints() {
    let chat = spawn(1).await;
    let doc: serde_json::Value = chat
        .client
        .get(chat.url(0, "/api-docs/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    for path in [
        "/api/chat",
        "/api/chat/group",
        "/api/chat/{id}",
        "/api/chat/{id}/members",
        "/api/chat/{id}/members/{userId}",
        "/api/chat/{id}/messages",
        "/api/chat/{id}/messages/{messageId}",
        "/api/chat/{id}/read",
        "/api/chat/blocks",
        "/api/chat/blocks/{userId}",
        "/api/chat/privacy",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path}");
    }
}
