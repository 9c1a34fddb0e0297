//! The body and CORS contract of the common stack (spec/api.md, product.md),
//! on an app wired exactly as `server::serve` wires it: malformed JSON is a
//! 400 whatever the target type would have said first; a foreign origin gets
//! no `Access-Control-Allow-*` header at all, allowed origins keep theirs.
#![expect(clippy::unwrap_used, reason = "a panic is the assertion in tests")]

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::HeaderMap;
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::from_fn;
use actix_web::{test, web, App, HttpResponse};
use serde::Deserialize;
use shared::http::{cors, harden, parse_json, request_context, ValidJson};
use shared::ApiError;
use validator::Validate;

const ALLOWED: &str = "http://127.0.0.1:8080";
const ALSO_ALLOWED: &str = "http://localhost:8080";
const FOREIGN: &[&str] = &[
    "https://evil.example",
    "http://127.0.0.1:8080.evil.example",
    "http://127.0.0.1:8081",
    "null",
];

/// A chat-svc-like body: no `login` field, unknown fields refused.
#[derive(Debug, Deserialize, Validate)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct SendBody {
    #[validate(length(min = 1, max = 10))]
    content: String,
    client_msg_id: Option<String>,
}

async fn send(body: ValidJson<SendBody>) -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({
        "content": body.content,
        "clientMsgId": body.client_msg_id,
    }))
}

async fn list() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!([]))
}

/// The production stack (`server::serve`): CORS innermost, then the request
/// context, hardening outermost; plus a layer that fails with an error (as a
/// rate limit does) so the error path is covered too.
macro_rules! app {
    () => {
        test::init_service(
            App::new()
                .wrap(cors(&[ALLOWED.to_owned(), ALSO_ALLOWED.to_owned()]))
                .wrap(from_fn(request_context))
                .wrap(from_fn(harden))
                .service(web::resource("/api/chat/messages").post(send).get(list))
                .service(
                    web::resource("/limited")
                        .wrap_fn(|_req: ServiceRequest, _| {
                            std::future::ready(Err::<ServiceResponse, _>(
                                ApiError::RateLimited {
                                    retry_after_secs: 7,
                                }
                                .into(),
                            ))
                        })
                        .get(list),
                ),
        )
        .await
    };
}

/// Posts `body` as JSON and returns status, content type and JSON answer.
macro_rules! post {
    ($app:expr, $body:expr $(,)?) => {
        answer(test::call_service(&$app, json_post($body).to_request()).await).await
    };
}

fn json_post(body: &'static [u8]) -> test::TestRequest {
    test::TestRequest::post()
        .uri("/api/chat/messages")
        .insert_header(("content-type", "application/json"))
        .set_payload(body)
}

/// Status, content type and JSON body of an answer.
async fn answer(res: ServiceResponse<impl MessageBody>) -> (StatusCode, String, serde_json::Value) {
    let status = res.status();
    let content_type = res
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let bytes = test::read_body(res).await;
    let json = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
    (status, content_type, json)
}

/// Status and headers as the client gets them, also when a layer failed with
/// an error (which the server renders and `test::call_service` would not).
struct Seen {
    status: StatusCode,
    headers: HeaderMap,
}

impl Seen {
    fn of(res: Result<ServiceResponse<impl MessageBody>, actix_web::Error>) -> Self {
        match res {
            Ok(res) => Seen {
                status: res.status(),
                headers: res.headers().clone(),
            },
            Err(e) => {
                let res = e.error_response();
                Seen {
                    status: res.status(),
                    headers: res.headers().clone(),
                }
            }
        }
    }

    fn allow_headers(&self) -> Vec<String> {
        self.headers
            .keys()
            .map(|name| name.as_str().to_owned())
            .filter(|name| name.starts_with("access-control-allow"))
            .collect()
    }

    fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    }
}

/// Sends a request to the app and returns what the client sees.
macro_rules! call {
    ($app:expr, $req:expr $(,)?) => {
        Seen::of(test::try_call_service(&$app, $req).await)
    };
}

fn preflight(origin: &str, method: &str, headers: &str) -> test::TestRequest {
    test::TestRequest::default()
        .method(Method::OPTIONS)
        .uri("/api/chat/messages")
        .insert_header(("origin", origin))
        .insert_header(("access-control-request-method", method))
        .insert_header(("access-control-request-headers", headers))
}

fn simple(origin: &str, uri: &str) -> test::TestRequest {
    test::TestRequest::get()
        .uri(uri)
        .insert_header(("origin", origin))
}

#[actix_web::test]
async fn truncated_json_is_a_400_problem_even_when_a_field_is_unknown_or_mistyped() {
    let app = app!();
    for body in [
        // The first field is one the type does not know: the old decoder
        // stopped there with a 422 "unknown field" before noticing the EOF.
        &b"{\"login\": \"x\", "[..],
        b"{\"login\": \"x\"",
        // A wrong type before the syntax error: still malformed as a whole.
        b"{\"content\": 5, ",
        b"{\"content\": {\"$ne\": \"\"}, \"clientMsgId\": ",
        b"{\"content\": \"hi\", \"admin\": tru",
        b"{\"admin\": true} trailing",
        b"{\"admin\": true}}",
        b"{",
        b"[",
    ] {
        let what = String::from_utf8_lossy(body);
        let (status, content_type, json) = post!(app, body);
        assert_eq!(status, StatusCode::BAD_REQUEST, "{what}: {json}");
        assert_eq!(content_type, "application/problem+json", "{what}");
        assert_eq!(json["status"], 400, "{what}: {json}");
        assert_eq!(json["detail"], "the body is not valid JSON", "{what}");
        assert!(json.get("errors").is_none(), "{what}: no field errors");
    }
}

#[actix_web::test]
async fn field_errors_on_valid_json_stay_422_naming_the_field() {
    let app = app!();
    for (body, field, message) in [
        (
            &br#"{"login": "x", "content": "hi"}"#[..],
            "login",
            "unknown field `login`, expected `content` or `clientMsgId`",
        ),
        (
            br#"{"content": "hi", "admin": true}"#,
            "admin",
            "unknown field `admin`, expected `content` or `clientMsgId`",
        ),
        (
            br#"{"content": {"$ne": ""}}"#,
            "content",
            "invalid type: map, expected a string",
        ),
        (
            br#"{"clientMsgId": "a"}"#,
            "content",
            "missing field `content`",
        ),
        (b"[\"hi\", null]", "body", "must be a JSON object"),
    ] {
        let what = String::from_utf8_lossy(body);
        let (status, content_type, json) = post!(app, body);
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{what}: {json}");
        assert_eq!(content_type, "application/problem+json", "{what}");
        assert_eq!(json["errors"][0]["field"], field, "{what}: {json}");
        assert_eq!(json["errors"][0]["message"], message, "{what}: {json}");
    }
    // Validation after a clean decode is also a 422.
    let (status, _, json) = answer(
        test::call_service(
            &app,
            json_post(br#"{"content": "much too long a text"}"#).to_request(),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{json}");
    assert_eq!(json["errors"][0]["field"], "content");
    // And a good body still goes through.
    let (status, _, json) = answer(
        test::call_service(
            &app,
            json_post(br#"{"content": "hi", "clientMsgId": "c1"}"#).to_request(),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{json}");
    assert_eq!(json["clientMsgId"], "c1");
}

#[actix_web::test]
async fn empty_and_non_json_bodies_keep_their_answers() {
    let app = app!();
    for body in [&b""[..], b"   \n"] {
        let (status, content_type, json) = post!(app, body);
        assert_eq!(status, StatusCode::BAD_REQUEST, "{json}");
        assert_eq!(content_type, "application/problem+json");
        assert_eq!(json["detail"], "the body is empty");
    }
    let (status, _, json) = answer(
        test::call_service(&app, json_post(b"{\"content\": \"\xff\xfe\"}").to_request()).await,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{json}");
    assert_eq!(json["detail"], "the body is not valid UTF-8");
    let req = test::TestRequest::post()
        .uri("/api/chat/messages")
        .set_payload(&br#"{"content": "hi"}"#[..])
        .to_request();
    let res = test::call_service(&app, req).await;
    assert_eq!(res.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
}

#[actix_web::test]
async fn parse_json_checks_syntax_before_fields() {
    // The extractor's decoder on its own, as the services call it.
    let err = parse_json::<SendBody>(b"{\"login\": \"x\", ").unwrap_err();
    assert!(matches!(err, ApiError::BadRequest(_)), "{err:?}");
    let err = parse_json::<SendBody>(br#"{"login": "x"}"#).unwrap_err();
    assert!(matches!(err, ApiError::Validation(_)), "{err:?}");
}

#[actix_web::test]
async fn a_foreign_origin_gets_no_allow_headers_on_a_simple_request() {
    let app = app!();
    for origin in FOREIGN {
        for uri in ["/api/chat/messages", "/nope", "/limited"] {
            let res = call!(app, simple(origin, uri).to_request());
            assert!(
                res.allow_headers().is_empty(),
                "{origin} {uri} ({}): {:?}",
                res.status,
                res.headers
            );
            assert!(
                res.header("access-control-expose-headers").is_none(),
                "{origin} {uri}: nothing exposed"
            );
        }
    }
    // Without any Origin (same-origin or not a browser): no CORS grant either.
    let req = test::TestRequest::get()
        .uri("/api/chat/messages")
        .to_request();
    let res = call!(app, req);
    assert_eq!(res.status, StatusCode::OK);
    assert!(res.allow_headers().is_empty(), "{:?}", res.headers);
}

#[actix_web::test]
async fn a_foreign_preflight_is_refused_without_allow_headers() {
    let app = app!();
    for origin in FOREIGN {
        for (method, headers) in [("POST", "authorization, content-type"), ("GET", "x-evil")] {
            let res = call!(app, preflight(origin, method, headers).to_request());
            assert!(
                res.status.is_client_error(),
                "{origin} {method}: {}",
                res.status
            );
            assert!(
                res.allow_headers().is_empty(),
                "{origin} {method}: {:?}",
                res.headers
            );
            assert_eq!(
                res.header("content-type").as_deref(),
                Some("application/problem+json"),
                "{origin}: the refusal is a problem document"
            );
            assert_eq!(
                res.header("x-content-type-options").as_deref(),
                Some("nosniff"),
                "{origin}: hardened"
            );
        }
    }
}

#[actix_web::test]
async fn allowed_origins_keep_their_cors_headers() {
    let app = app!();
    for origin in [ALLOWED, ALSO_ALLOWED] {
        let res = call!(
            app,
            preflight(origin, "POST", "authorization, content-type, x-request-id").to_request(),
        );
        assert_eq!(res.status, StatusCode::OK, "{origin}");
        assert_eq!(
            res.header("access-control-allow-origin").as_deref(),
            Some(origin)
        );
        assert_eq!(
            res.header("access-control-allow-credentials").as_deref(),
            Some("true")
        );
        let methods = res.header("access-control-allow-methods").unwrap();
        for m in ["GET", "POST", "PUT", "PATCH", "DELETE"] {
            assert!(methods.split(", ").any(|x| x == m), "{m} in {methods}");
        }
        let headers = res.header("access-control-allow-headers").unwrap();
        for h in ["authorization", "content-type", "x-request-id"] {
            assert!(headers.split(", ").any(|x| x == h), "{h} in {headers}");
        }
        assert_eq!(res.header("access-control-max-age").as_deref(), Some("600"));
        assert!(res.header("vary").unwrap().contains("Origin"));

        // (A router 404/405 is rebuilt as a problem by `harden`, which keeps
        // no CORS header today; only answers that are JSON already are
        // checked here.)
        for (uri, status) in [
            ("/api/chat/messages", StatusCode::OK),
            ("/limited", StatusCode::TOO_MANY_REQUESTS),
        ] {
            let res = call!(app, simple(origin, uri).to_request());
            assert_eq!(res.status, status, "{origin} {uri}");
            assert_eq!(
                res.header("access-control-allow-origin").as_deref(),
                Some(origin),
                "{origin} {uri}"
            );
            assert_eq!(
                res.header("access-control-allow-credentials").as_deref(),
                Some("true"),
                "{origin} {uri}"
            );
            let exposed = res.header("access-control-expose-headers").unwrap();
            for name in ["retry-after", "link", "x-request-id"] {
                assert!(exposed.contains(name), "{name} not in {exposed}");
            }
            assert!(res.header("vary").unwrap().contains("Origin"), "{uri}");
        }
    }
    // A preflight for a method or header outside the lists is refused.
    for (method, headers) in [("TRACE", "content-type"), ("POST", "x-evil")] {
        let res = call!(app, preflight(ALLOWED, method, headers).to_request());
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{method} {headers}");
    }
}
