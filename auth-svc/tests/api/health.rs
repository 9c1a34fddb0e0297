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
async fn the_openapi_document_covers_every_endpoint() {
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
    let paths = doc["paths"].as_object().unwrap();
    for (path, method) in [
        ("/api/auth/register", "post"),
        ("/api/auth/login", "post"),
        ("/api/auth/login/mfa", "post"),
        ("/api/auth/refresh", "post"),
        ("/api/auth/logout", "post"),
        ("/api/auth/password", "post"),
        ("/api/auth/email/verify", "post"),
        ("/api/auth/email/verify/resend", "post"),
        ("/api/auth/sessions", "get"),
        ("/api/auth/sessions/{id}", "delete"),
        ("/api/auth/mfa", "get"),
        ("/api/auth/mfa/totp/setup", "post"),
        ("/api/auth/mfa/totp/enable", "post"),
        ("/api/auth/mfa/disable", "post"),
        ("/api/auth/mfa/recovery-codes", "post"),
        ("/api/users/me", "get"),
        ("/api/users/me", "patch"),
        ("/api/users/{id}", "get"),
        ("/api/users", "get"),
        ("/.well-known/jwks.json", "get"),
    ] {
        assert!(
            paths.get(path).and_then(|p| p.get(method)).is_some(),
            "{method} {path} documented"
        );
    }
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    // The fields issue 20 added are documented too.
    let schemas = &doc["components"]["schemas"];
    for (schema, field) in [
        ("LoginBody", "deviceToken"),
        ("MfaLoginBody", "deviceToken"),
        ("Tokens", "deviceToken"),
        ("SetupBody", "password"),
        ("EnableBody", "password"),
        ("VerifyBody", "token"),
        ("OwnUser", "emailVerified"),
    ] {
        assert!(
            schemas[schema]["properties"][field].is_object(),
            "{schema}.{field} documented: {}",
            schemas[schema]
        );
    }
}
