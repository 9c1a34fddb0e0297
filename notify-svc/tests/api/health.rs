use crate::helpers::spawn_app;

#[tokio::test]
async fn the_service_is_ready_when_its_dependencies_answer() {
    let app = spawn_app().await;
    let body = app.wait_ready().await;
    assert_eq!(body["status"], "ok", "{body}");
    assert_eq!(body["checks"]["mongodb"], "ok");
    assert_eq!(body["checks"]["redis"], "ok");
    assert_eq!(body["checks"]["rabbitmq"], "ok");
}

#[tokio::test]
async fn unknown_routes_get_a_problem_with_every_security_header() {
    let app = spawn_app().await;
    let resp = app
        .client
        .get(app.url("/api/nothing-here"))
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
async fn the_openapi_document_lists_every_endpoint() {
    let app = spawn_app().await;
    let doc: serde_json::Value = app
        .client
        .get(app.url("/api-docs/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    for (path, method) in [
        ("/api/notifications", "get"),
        ("/api/notifications/{id}/read", "post"),
        ("/api/notifications/push-subscriptions", "post"),
        ("/api/notifications/push-subscriptions/{id}", "delete"),
        ("/api/notifications/vapid-public-key", "get"),
        ("/api/notifications/preferences", "get"),
        ("/api/notifications/preferences", "put"),
    ] {
        assert!(
            doc["paths"][path][method].is_object(),
            "{method} {path} missing"
        );
    }
}
