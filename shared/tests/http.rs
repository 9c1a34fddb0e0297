//! The common HTTP stack, served for real on port 0: every status carries the
//! security headers and a problem body; tokens are verified strictly.
#![expect(clippy::unwrap_used, reason = "a panic is the assertion in tests")]

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::dev::ServiceResponse;
use actix_web::{web, HttpResponse};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Deserialize;
use shared::auth::{Authenticated, Claims, TokenType, TokenVerifier};
use shared::client_ip::TrustedProxies;
use shared::health::Readiness;
use shared::http::{ValidJson, SECURITY_HEADERS};
use shared::metrics::Metrics;
use shared::server::{serve, HttpParts};
use shared::ApiError;
use validator::Validate;

const PRIVATE: &str = include_str!("fixtures/test-ed25519-private.pem");
const PUBLIC: &str = include_str!("fixtures/test-ed25519-public.pem");

#[derive(Deserialize, Validate)]
#[serde(deny_unknown_fields)]
struct Echo {
    #[validate(length(min = 1, max = 10))]
    name: String,
}

async fn echo(body: ValidJson<Echo>) -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "name": body.name }))
}

async fn boom() -> Result<HttpResponse, ApiError> {
    Err(ApiError::Unexpected(anyhow::anyhow!("internal detail xyz")))
}

async fn whoami(user: Authenticated) -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "user": user.user_id }))
}

async fn start() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let metrics = Metrics::new("test");
    let uri = secrecy::SecretString::from("mongodb://127.0.0.1:1".to_owned());
    let mongo = shared::storage::mongo(&uri, "unused", "test", None)
        .await
        .unwrap();
    let redis = shared::storage::redis(&secrecy::SecretString::from(
        "redis://127.0.0.1:1".to_owned(),
    ))
    .unwrap();
    let parts = HttpParts {
        metrics: metrics.clone(),
        readiness: Readiness {
            mongo,
            redis,
            broker: Arc::new(|| false),
            metrics,
        },
        verifier: TokenVerifier::new(&[("k1".into(), PUBLIC.into())], "auth-svc", "chat-app")
            .unwrap(),
        allowed_origins: vec!["http://127.0.0.1:8080".into()],
        trusted_proxies: TrustedProxies::default(),
        shutdown_timeout_secs: 1,
    };
    let server = serve(listener, parts, |cfg| {
        // `web::resource` (not `cfg.route`) so a wrong method is a 405.
        cfg.service(web::resource("/echo").post(echo))
            .service(web::resource("/boom").get(boom))
            .service(web::resource("/me").get(whoami))
            // A layer that refuses before the handler, as a rate limit does.
            .service(
                web::resource("/limited")
                    .wrap_fn(|_, _| {
                        std::future::ready(Err::<ServiceResponse, _>(
                            ApiError::RateLimited {
                                retry_after_secs: 7,
                            }
                            .into(),
                        ))
                    })
                    .get(echo),
            );
    })
    .unwrap();
    tokio::spawn(server);
    format!("http://127.0.0.1:{port}")
}

fn assert_hardened(resp: &reqwest::Response, what: &str) {
    for (name, value) in SECURITY_HEADERS {
        assert_eq!(
            resp.headers().get(*name).map(|v| v.to_str().unwrap()),
            Some(*value),
            "{what}: header {name}"
        );
    }
    assert!(
        resp.headers().get("server").is_none(),
        "{what}: no server banner"
    );
}

async fn problem(resp: reqwest::Response, status: u16, what: &str) -> serde_json::Value {
    assert_eq!(resp.status().as_u16(), status, "{what}");
    assert_hardened(&resp, what);
    assert_eq!(
        resp.headers().get("content-type").unwrap(),
        "application/problem+json",
        "{what}: problem+json"
    );
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["status"], status, "{what}: status in body");
    body
}

#[tokio::test]
async fn every_status_carries_the_security_headers_and_a_problem_body() {
    let base = start().await;
    let c = reqwest::Client::new();

    let ok = c
        .post(format!("{base}/echo"))
        .json(&serde_json::json!({"name": "ann"}))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    assert_hardened(&ok, "200");
    assert_eq!(ok.headers().get("cache-control").unwrap(), "no-store");

    problem(
        c.get(format!("{base}/nope")).send().await.unwrap(),
        404,
        "unknown route",
    )
    .await;
    problem(
        c.get(format!("{base}/echo")).send().await.unwrap(),
        405,
        "wrong method",
    )
    .await;
    problem(
        c.post(format!("{base}/echo"))
            .body("{\"name\":\"a\"}")
            .send()
            .await
            .unwrap(),
        415,
        "no content type",
    )
    .await;
    let big = format!("{{\"name\":\"{}\"}}", "x".repeat(70 * 1024));
    problem(
        c.post(format!("{base}/echo"))
            .header("content-type", "application/json")
            .body(big)
            .send()
            .await
            .unwrap(),
        413,
        "oversized",
    )
    .await;
    problem(
        c.post(format!("{base}/echo"))
            .header("content-type", "application/json")
            .body("{\"name\":")
            .send()
            .await
            .unwrap(),
        400,
        "malformed",
    )
    .await;
    let body = problem(
        c.post(format!("{base}/echo"))
            .json(&serde_json::json!({"name": {"$ne": ""}}))
            .send()
            .await
            .unwrap(),
        422,
        "operator object",
    )
    .await;
    assert_eq!(body["errors"][0]["field"], "name");
    let body = problem(
        c.post(format!("{base}/echo"))
            .json(&serde_json::json!({"name": "a", "admin": true}))
            .send()
            .await
            .unwrap(),
        422,
        "unknown field",
    )
    .await;
    assert_eq!(body["errors"][0]["field"], "admin");
    let body = problem(
        c.post(format!("{base}/echo"))
            .json(&serde_json::json!({"name": "much too long a name"}))
            .send()
            .await
            .unwrap(),
        422,
        "validation",
    )
    .await;
    assert_eq!(body["errors"][0]["field"], "name");
    let body = problem(
        c.get(format!("{base}/boom")).send().await.unwrap(),
        500,
        "internal error",
    )
    .await;
    assert!(!body.to_string().contains("xyz"), "500 hides internals");
    problem(
        c.get(format!("{base}/me")).send().await.unwrap(),
        401,
        "no token",
    )
    .await;
    let limited = c.get(format!("{base}/limited")).send().await.unwrap();
    assert_eq!(limited.headers().get("retry-after").unwrap(), "7");
    problem(limited, 429, "a middleware's refusal").await;
    let unready = c.get(format!("{base}/health/ready")).send().await.unwrap();
    assert_eq!(unready.status(), 503);
    assert_hardened(&unready, "503");
}

#[tokio::test]
async fn readiness_reports_each_dependency() {
    let base = start().await;
    let resp = reqwest::get(format!("{base}/health/ready")).await.unwrap();
    assert_eq!(resp.status(), 503);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["status"], "down");
    assert_eq!(body["checks"]["mongodb"], "down");
    assert_eq!(body["checks"]["rabbitmq"], "down");
    let live = reqwest::get(format!("{base}/health/live")).await.unwrap();
    assert_eq!(live.status(), 200);
    assert_hardened(&live, "live");
    let metrics = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("http_request_duration_seconds_bucket"),
        "latency histogram exported"
    );
    // Process metrics; CPU may still read 0 this early, the others cannot.
    let value = |name: &str| -> f64 {
        let line = metrics
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{name} exported"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    assert!(value("process_cpu_seconds_total") >= 0.0);
    assert!(value("process_resident_memory_bytes") > 1e6);
    assert!(value("process_open_fds") > 2.0);
}

#[tokio::test]
async fn cors_answers_only_the_configured_origins() {
    let base = start().await;
    let c = reqwest::Client::new();
    let allowed = c
        .request(reqwest::Method::OPTIONS, format!("{base}/echo"))
        .header("origin", "http://127.0.0.1:8080")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert_eq!(
        allowed
            .headers()
            .get("access-control-allow-origin")
            .unwrap(),
        "http://127.0.0.1:8080"
    );
    let foreign = c
        .request(reqwest::Method::OPTIONS, format!("{base}/echo"))
        .header("origin", "http://evil.example")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert!(foreign
        .headers()
        .get("access-control-allow-origin")
        .is_none());
    assert_hardened(&foreign, "refused preflight");
}

fn claims(typ: TokenType, aud: &str, exp_offset: i64) -> Claims {
    let now = chrono::Utc::now().timestamp();
    Claims {
        sub: "user-1".into(),
        sid: Some("session-1".into()),
        iss: "auth-svc".into(),
        aud: aud.into(),
        exp: now + exp_offset,
        nbf: now - 1,
        iat: now,
        jti: "j".into(),
        typ,
    }
}

fn sign(header: Header, claims: &Claims) -> String {
    let key = EncodingKey::from_ed_pem(PRIVATE.as_bytes()).unwrap();
    jsonwebtoken::encode(&header, claims, &key).unwrap()
}

fn ed_header(kid: &str) -> Header {
    let mut h = Header::new(Algorithm::EdDSA);
    h.kid = Some(kid.into());
    h
}

#[tokio::test]
async fn token_attacks_are_refused() {
    let verifier =
        TokenVerifier::new(&[("k1".into(), PUBLIC.into())], "auth-svc", "chat-app").unwrap();
    let good = sign(ed_header("k1"), &claims(TokenType::Access, "chat-app", 900));
    assert_eq!(
        verifier.verify(&good, TokenType::Access).unwrap().sub,
        "user-1"
    );

    let unknown_kid = sign(ed_header("k2"), &claims(TokenType::Access, "chat-app", 900));
    assert!(
        verifier.verify(&unknown_kid, TokenType::Access).is_err(),
        "unknown kid"
    );
    let expired = sign(ed_header("k1"), &claims(TokenType::Access, "chat-app", -60));
    assert!(
        verifier.verify(&expired, TokenType::Access).is_err(),
        "expired"
    );
    let wrong_aud = sign(ed_header("k1"), &claims(TokenType::Access, "other", 900));
    assert!(
        verifier.verify(&wrong_aud, TokenType::Access).is_err(),
        "wrong aud"
    );
    let mfa = sign(ed_header("k1"), &claims(TokenType::Mfa, "chat-app", 900));
    assert!(
        verifier.verify(&mfa, TokenType::Access).is_err(),
        "mfa token as access token"
    );

    // alg none: header and payload, no signature.
    use base64::Engine;
    let b64 = |v: &serde_json::Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let payload = serde_json::to_value(claims(TokenType::Access, "chat-app", 900)).unwrap();
    let none = format!(
        "{}.{}.",
        b64(&serde_json::json!({"alg": "none", "kid": "k1"})),
        b64(&payload)
    );
    assert!(
        verifier.verify(&none, TokenType::Access).is_err(),
        "alg none"
    );

    // HS256 keyed with the public key (algorithm confusion).
    let mut hs = Header::new(Algorithm::HS256);
    hs.kid = Some("k1".into());
    let confused = jsonwebtoken::encode(
        &hs,
        &claims(TokenType::Access, "chat-app", 900),
        &EncodingKey::from_secret(PUBLIC.as_bytes()),
    )
    .unwrap();
    assert!(
        verifier.verify(&confused, TokenType::Access).is_err(),
        "HS256 with the public key"
    );

    // Tampered payload keeps the old signature.
    let parts: Vec<&str> = good.split('.').collect();
    let mut evil = payload.clone();
    evil["sub"] = "admin".into();
    let tampered = format!("{}.{}.{}", parts[0], b64(&evil), parts[2]);
    assert!(
        verifier.verify(&tampered, TokenType::Access).is_err(),
        "tampered payload"
    );
}

/// A revocation list the test can change.
struct Revoked(std::sync::Mutex<Vec<String>>);

impl shared::auth::RevocationCheck for Revoked {
    fn is_revoked<'a>(
        &'a self,
        session_id: &'a str,
    ) -> futures_util::future::BoxFuture<'a, Result<bool, ApiError>> {
        let revoked = self.0.lock().unwrap().iter().any(|s| s == session_id);
        Box::pin(async move { Ok(revoked) })
    }
}

/// Access tokens verified once are remembered by their exact text; that
/// must not weaken anything: revocation, tampering and expiry still refuse.
#[tokio::test]
async fn remembered_tokens_are_still_revoked_tampered_and_expired() {
    let revoked = Arc::new(Revoked(std::sync::Mutex::new(Vec::new())));
    let verifier = TokenVerifier::new(&[("k1".into(), PUBLIC.into())], "auth-svc", "chat-app")
        .unwrap()
        .with_revocations(revoked.clone());
    let good = sign(ed_header("k1"), &claims(TokenType::Access, "chat-app", 900));
    for _ in 0..2 {
        assert_eq!(verifier.verify_access(&good).await.unwrap().sub, "user-1");
    }

    // Same signature, another payload: not the remembered text.
    use base64::Engine;
    let parts: Vec<&str> = good.split('.').collect();
    let mut evil = serde_json::to_value(claims(TokenType::Access, "chat-app", 900)).unwrap();
    evil["sub"] = "admin".into();
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(evil.to_string()),
        parts[2]
    );
    assert!(verifier.verify_access(&tampered).await.is_err(), "tampered");

    // An MFA token is never an access token, remembered or not.
    let mfa = sign(ed_header("k1"), &claims(TokenType::Mfa, "chat-app", 900));
    assert!(verifier.verify_access(&mfa).await.is_err(), "mfa");

    revoked.0.lock().unwrap().push("session-1".into());
    assert!(
        verifier.verify_access(&good).await.is_err(),
        "a remembered token of a revoked session"
    );
    revoked.0.lock().unwrap().clear();

    // Expiry: valid for one more second (plus the 5 s leeway), remembered,
    // then refused once that has passed.
    let short = sign(ed_header("k1"), &claims(TokenType::Access, "chat-app", 1));
    assert!(verifier.verify_access(&short).await.is_ok());
    tokio::time::sleep(std::time::Duration::from_millis(7100)).await;
    assert!(
        verifier.verify_access(&short).await.is_err(),
        "a remembered token past its expiry"
    );
}

#[tokio::test]
async fn dependency_up_is_kept_current_without_a_readiness_poll() {
    let metrics = Metrics::new("watch");
    let uri = secrecy::SecretString::from("mongodb://127.0.0.1:1".to_owned());
    let mongo = shared::storage::mongo(&uri, "unused", "test", None)
        .await
        .unwrap();
    let redis_url =
        std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let readiness = Readiness {
        mongo,
        redis: shared::storage::redis(&secrecy::SecretString::from(redis_url)).unwrap(),
        broker: Arc::new(|| true),
        metrics: metrics.clone(),
    };
    let stop = tokio_util::sync::CancellationToken::new();
    let watcher = tokio::spawn(readiness.watch(stop.clone()));
    let up = |name: &str| metrics.dependency_up.with_label_values(&[name]).get();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    while (up("redis"), up("rabbitmq")) != (1, 1) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "dependency_up not set by the watcher"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(up("mongodb"), 0, "the unreachable MongoDB is down");
    stop.cancel();
    watcher.await.unwrap();
}
