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
