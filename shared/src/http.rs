//! HTTP plumbing every service installs: hardening (security headers, problem
//! bodies for bare errors), request context (request id, span, latency
//! metric), CORS, and the validated JSON extractor with its 64 KiB limit.

use std::rc::Rc;
use std::time::Instant;

use actix_web::body::{BoxBody, EitherBody, MessageBody};
use actix_web::dev::{forward_ready, Payload, Service, ServiceRequest, ServiceResponse, Transform};
use actix_web::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::web::{self, BytesMut};
use actix_web::{Error, FromRequest, HttpMessage, HttpRequest, ResponseError};
use futures_util::future::LocalBoxFuture;
use futures_util::StreamExt;
use serde::de::DeserializeOwned;
use tracing::Instrument;
use validator::Validate;

use crate::error::{ApiError, FieldError, PROBLEM_JSON};
use crate::metrics::Metrics;

/// Largest JSON request body accepted.
pub const JSON_LIMIT: usize = 64 * 1024;

/// Content-Security-Policy for API responses (never rendered as a page).
pub const API_CSP: &str =
    "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// Headers on every response, exactly as spec/product.md lists them.
pub const SECURITY_HEADERS: &[(&str, &str)] = &[
    (
        "strict-transport-security",
        "max-age=63072000; includeSubDomains",
    ),
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "no-referrer"),
    ("cross-origin-opener-policy", "same-origin"),
    ("cross-origin-resource-policy", "same-origin"),
    (
        "permissions-policy",
        "camera=(), microphone=(), geolocation=()",
    ),
    ("content-security-policy", API_CSP),
];

/// Outermost middleware: whatever happened inside (a handler error, a router
/// 404/405, a CORS refusal, a layer that fails with an error such as a rate
/// limit), the client gets a problem document and the security headers.
pub async fn harden(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    match next.call(req).await {
        Ok(res) => {
            let (req, res) = res.map_into_boxed_body().into_parts();
            Ok(ServiceResponse::new(req, hardened(res)))
        }
        // The request is gone with the error; the error itself answers,
        // hardened (cloning the request up front would break routing).
        Err(e) => Err(Hardened(e).into()),
    }
}

/// An error from an inner layer whose answer carries the hardening.
#[derive(Debug)]
struct Hardened(Error);

impl std::fmt::Display for Hardened {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl ResponseError for Hardened {
    fn status_code(&self) -> actix_web::http::StatusCode {
        self.0.as_response_error().status_code()
    }

    fn error_response(&self) -> actix_web::HttpResponse {
        hardened(self.0.error_response())
    }
}

/// A problem document for a bare error, then the security headers.
fn hardened(mut res: actix_web::HttpResponse) -> actix_web::HttpResponse {
    let status = res.status();
    let is_json = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with(PROBLEM_JSON) || v.starts_with("application/json"));
    if (status.is_client_error() || status.is_server_error()) && !is_json {
        let allow = res.headers().get(header::ALLOW).cloned();
        res = ApiError::from_status(status).error_response();
        if let Some(allow) = allow {
            res.headers_mut().insert(header::ALLOW, allow);
        }
    }
    let headers = res.headers_mut();
    for (name, value) in SECURITY_HEADERS {
        headers.insert(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    headers.remove(header::SERVER);
    res
}

/// The id of the request, from a well-formed `X-Request-Id` or fresh.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

impl FromRequest for RequestId {
    type Error = Error;
    type Future = std::future::Ready<Result<Self, Error>>;
    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let id = req
            .extensions()
            .get::<RequestId>()
            .cloned()
            .unwrap_or_else(|| RequestId(uuid::Uuid::now_v7().to_string()));
        std::future::ready(Ok(id))
    }
}

fn acceptable_request_id(v: &HeaderValue) -> Option<String> {
    let s = v.to_str().ok()?;
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    ok.then(|| s.to_owned())
}

/// Request id, a span that carries it into every log line, one access-log
/// line and the latency histogram.
pub async fn request_context(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let request_id = req
        .headers()
        .get("x-request-id")
        .and_then(acceptable_request_id)
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    req.extensions_mut().insert(RequestId(request_id.clone()));
    let metrics = req.app_data::<web::Data<Metrics>>().cloned();
    let method = req.method().to_string();
    let span = tracing::info_span!("request", request_id = %request_id, method = %method);
    let started = Instant::now();
    let result = next.call(req).instrument(span.clone()).await;
    let elapsed = started.elapsed();
    let (status, route) = match &result {
        Ok(res) => (
            res.status(),
            res.request()
                .match_pattern()
                .unwrap_or_else(|| "<unmatched>".into()),
        ),
        Err(e) => (e.as_response_error().status_code(), "<error>".into()),
    };
    if let Some(metrics) = metrics {
        metrics
            .http_duration
            .with_label_values(&[&method, &route, status.as_str()])
            .observe(elapsed.as_secs_f64());
    }
    span.in_scope(|| {
        tracing::info!(
            http.route = %route,
            http.status = status.as_u16(),
            latency_ms = elapsed.as_secs_f64() * 1000.0,
            "request finished"
        )
    });
    let mut res = result?;
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        res.headers_mut()
            .insert(HeaderName::from_static("x-request-id"), value);
    }
    Ok(res)
}

/// CORS for the configured origins only; credentials only for them.
///
/// actix-cors answers the allowed origins (the `Origin` echoed, credentials,
/// methods, headers, `Vary`). For every other request it still adds
/// `Access-Control-Allow-Credentials: true` and the exposed headers, so
/// [`Cors`] takes every `Access-Control-*` header off the answer to a request
/// whose `Origin` is foreign or absent. A preflight from a foreign origin is
/// refused (400) by actix-cors, which `harden` turns into a problem document.
pub fn cors(allowed_origins: &[String]) -> Cors {
    let mut inner = actix_cors::Cors::default()
        .allowed_methods(["GET", "POST", "PUT", "PATCH", "DELETE"])
        .allowed_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            HeaderName::from_static("x-request-id"),
        ])
        .expose_headers([
            header::RETRY_AFTER,
            header::LINK,
            HeaderName::from_static("x-request-id"),
        ])
        .supports_credentials()
        .max_age(600);
    for origin in allowed_origins {
        inner = inner.allowed_origin(origin);
    }
    // The same exact comparison actix-cors makes (`Origin` bytes equal to a
    // configured origin).
    let allowed = allowed_origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    Cors { inner, allowed }
}

/// The CORS layer from [`cors`].
pub struct Cors {
    inner: actix_cors::Cors,
    allowed: Rc<[HeaderValue]>,
}

impl<S, B> Transform<S, ServiceRequest> for Cors
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error> + 'static,
    S::Future: 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = Error;
    type InitError = ();
    type Transform = CorsMiddleware<<actix_cors::Cors as Transform<S, ServiceRequest>>::Transform>;
    type Future = LocalBoxFuture<'static, Result<Self::Transform, ()>>;

    fn new_transform(&self, service: S) -> Self::Future {
        let inner = self.inner.new_transform(service);
        let allowed = Rc::clone(&self.allowed);
        Box::pin(async move {
            Ok(CorsMiddleware {
                service: inner.await?,
                allowed,
            })
        })
    }
}

/// The running [`Cors`] layer around actix-cors.
pub struct CorsMiddleware<S> {
    service: S,
    allowed: Rc<[HeaderValue]>,
}

impl<S, B> Service<ServiceRequest> for CorsMiddleware<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error>,
    S::Future: 'static,
{
    type Response = ServiceResponse<B>;
    type Error = Error;
    type Future = LocalBoxFuture<'static, Result<ServiceResponse<B>, Error>>;

    forward_ready!(service);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        let granted = req
            .headers()
            .get(header::ORIGIN)
            .is_some_and(|origin| self.allowed.contains(origin));
        let fut = self.service.call(req);
        if granted {
            return Box::pin(fut);
        }
        Box::pin(async move {
            match fut.await {
                Ok(mut res) => {
                    strip_cors(res.headers_mut());
                    Ok(res)
                }
                // An inner layer's refusal (a rate limit) is rendered later;
                // its answer loses the CORS headers then.
                Err(mut e) => {
                    e.add_response_mapper(|mut res| {
                        strip_cors(res.headers_mut());
                        res
                    });
                    Err(e)
                }
            }
        })
    }
}

/// Removes every `Access-Control-*` header (`Vary` stays: the answer does
/// depend on the `Origin`).
fn strip_cors(headers: &mut HeaderMap) {
    let names: Vec<HeaderName> = headers
        .keys()
        .filter(|name| name.as_str().starts_with("access-control-"))
        .cloned()
        .collect();
    for name in names {
        headers.remove(name);
    }
}

/// Query strings that do not parse are a 400 problem, not a text body.
pub fn query_config() -> web::QueryConfig {
    web::QueryConfig::default()
        .error_handler(|e, _| ApiError::BadRequest(format!("invalid query string: {e}")).into())
}

/// A path segment that does not parse names nothing that exists.
pub fn path_config() -> web::PathConfig {
    web::PathConfig::default().error_handler(|_, _| ApiError::NotFound.into())
}

/// A JSON body, typed and validated: 415 unless `application/json`, 413 over
/// [`JSON_LIMIT`], 400 for malformed JSON, 422 naming the field for wrong
/// types, unknown fields (with `deny_unknown_fields`) and failed validation.
#[derive(Debug)]
pub struct ValidJson<T>(pub T);

impl<T> std::ops::Deref for ValidJson<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: DeserializeOwned + Validate + 'static> FromRequest for ValidJson<T> {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|m| m.trim().to_ascii_lowercase())
            .is_some_and(|m| {
                m == "application/json" || (m.starts_with("application/") && m.ends_with("+json"))
            });
        let declared_len = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        let mut payload = payload.take();
        Box::pin(async move {
            if declared_len.is_some_and(|n| n > JSON_LIMIT) {
                return Err(ApiError::PayloadTooLarge);
            }
            if !is_json {
                return Err(ApiError::UnsupportedMediaType);
            }
            let mut body = BytesMut::new();
            while let Some(chunk) = payload.next().await {
                let chunk =
                    chunk.map_err(|_| ApiError::BadRequest("could not read the body".into()))?;
                if body.len() + chunk.len() > JSON_LIMIT {
                    return Err(ApiError::PayloadTooLarge);
                }
                body.extend_from_slice(&chunk);
            }
            let value: T = parse_json(&body)?;
            value.validate()?;
            Ok(ValidJson(value))
        })
    }
}

/// Deserialises with the failing field's path in the error. A body that is
/// not valid JSON anywhere is a 400 before any field is looked at; only a
/// well-formed body can be a 422 (wrong type, unknown or missing field).
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    // JSON is UTF-8 (RFC 8259): a body that is not is malformed as a whole,
    // whatever field the parser would have stumbled on first.
    if std::str::from_utf8(body).is_err() {
        return Err(ApiError::BadRequest("the body is not valid UTF-8".into()));
    }
    let Some(first) = body.iter().find(|b| !b.is_ascii_whitespace()) else {
        return Err(ApiError::BadRequest("the body is empty".into()));
    };
    // Syntax first, for the whole body: the typed decode stops at the first
    // field it dislikes (an unknown field, a wrong type) and would answer 422
    // for a body that is malformed further on (`{"login": "x", `).
    if serde_json::from_slice::<serde::de::IgnoredAny>(body).is_err() {
        return Err(ApiError::BadRequest("the body is not valid JSON".into()));
    }
    // Every body is an object; serde would also take a struct from an array
    // (`[null, null]`), which no client means.
    if *first != b'{' {
        return Err(ApiError::validation("body", "must be a JSON object"));
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() || inner.is_io() {
            return ApiError::BadRequest("the body is not valid JSON".into());
        }
        let message = inner.to_string();
        let message = message
            .split(" at line ")
            .next()
            .unwrap_or_default()
            .to_owned();
        // A missing field is reported at its parent's path; name it.
        let missing = message
            .strip_prefix("missing field `")
            .and_then(|rest| rest.split('`').next());
        let field = match (missing, path.as_str()) {
            (Some(name), "." | "") => name.to_owned(),
            (Some(name), parent) => format!("{parent}.{name}"),
            (None, "." | "") => "body".to_owned(),
            (None, p) => p.to_owned(),
        };
        ApiError::Validation(vec![FieldError::new(field, message)])
    })?;
    de.end()
        .map_err(|_| ApiError::BadRequest("the body is not valid JSON".into()))?;
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[expect(
        dead_code,
        reason = "only deserialised: the test checks which bodies parse"
    )]
    struct Login {
        login: String,
        password: String,
    }

    #[test]
    fn invalid_utf8_is_a_bad_request_even_after_an_unknown_field() {
        let err = parse_json::<Login>(b"{\"x\": \"\xff\xfe\"}").unwrap_err();
        assert!(matches!(err, ApiError::BadRequest(_)), "{err:?}");
    }

    #[test]
    fn only_an_object_is_a_body() {
        for body in [
            &b"[null, null]"[..],
            b"  [\"a\", \"b\"]",
            b"\"text\"",
            b"null",
            b"7",
        ] {
            let err = parse_json::<Login>(body).unwrap_err();
            assert_eq!(field_of(err), "body", "{}", String::from_utf8_lossy(body));
        }
        let err = parse_json::<Login>(b"[").unwrap_err();
        assert!(
            matches!(err, ApiError::BadRequest(_)),
            "malformed stays 400: {err:?}"
        );
    }

    fn field_of(err: ApiError) -> String {
        match err {
            ApiError::Validation(f) => f[0].field.clone(),
            other => panic!("expected validation, got {other:?}"),
        }
    }

    #[test]
    fn an_operator_object_in_a_string_field_is_a_422_naming_the_field() {
        let err = parse_json::<Login>(br#"{"login":"a","password":{"$ne":""}}"#).unwrap_err();
        assert_eq!(field_of(err), "password");
    }

    #[test]
    fn unknown_and_missing_fields_are_named() {
        let err = parse_json::<Login>(br#"{"login":"a","password":"b","admin":true}"#).unwrap_err();
        assert_eq!(field_of(err), "admin");
        let err = parse_json::<Login>(br#"{"login":"a"}"#).unwrap_err();
        assert_eq!(field_of(err), "password");
    }

    #[test]
    fn malformed_json_is_a_400() {
        assert!(matches!(
            parse_json::<Login>(b"{\"login\":"),
            Err(ApiError::BadRequest(_))
        ));
        assert!(matches!(
            parse_json::<Login>(b"\xff\xfe"),
            Err(ApiError::BadRequest(_))
        ));
    }
}
