//! Pieces every service's OpenAPI document shares: the problem schema and
//! the bearer security scheme.

use serde::Serialize;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, ToSchema};

/// An RFC 9457 problem document (`application/problem+json`).
#[derive(Serialize, ToSchema)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// For 422: the invalid fields.
    pub errors: Option<Vec<ProblemField>>,
}

#[derive(Serialize, ToSchema)]
pub struct ProblemField {
    pub field: String,
    pub message: String,
}

/// Adds the `bearer` scheme (an access token from auth-svc).
pub struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// Answers every operation may give besides its own: the shared middleware
/// and extractors produce them (body checks, token checks, dependencies).
const COMMON: [(&str, &str, Applies); 8] = [
    (
        "400",
        "Malformed request (body not JSON or not UTF-8, unknown query parameter)",
        Applies::WithInput,
    ),
    (
        "401",
        "Missing, invalid, expired or revoked access token",
        Applies::Secured,
    ),
    ("413", "Body larger than 64 KiB", Applies::WithBody),
    (
        "415",
        "Body not sent as application/json",
        Applies::WithBody,
    ),
    (
        "422",
        "Invalid fields, named in `errors`",
        Applies::WithInput,
    ),
    ("429", "Rate limited; see Retry-After", Applies::Always),
    (
        "500",
        "Unexpected error (details only in the logs)",
        Applies::Always,
    ),
    ("503", "A dependency (MongoDB) is down", Applies::Always),
];

#[derive(Clone, Copy)]
enum Applies {
    Always,
    WithBody,
    WithInput,
    Secured,
}

/// Completes the generated document: every error answer is documented as
/// the problem document it is (`application/problem+json`), and every
/// operation lists the answers the common layers may give.
pub fn complete(doc: &utoipa::openapi::OpenApi) -> serde_json::Value {
    let mut doc = serde_json::to_value(doc).unwrap_or_default();
    let global_security = doc
        .get("security")
        .and_then(|s| s.as_array())
        .is_some_and(|s| !s.is_empty());
    let Some(paths) = doc.get_mut("paths").and_then(|p| p.as_object_mut()) else {
        return doc;
    };
    for item in paths.values_mut() {
        for method in ["get", "put", "post", "delete", "patch"] {
            let Some(op) = item.get_mut(method).and_then(|o| o.as_object_mut()) else {
                continue;
            };
            let has_body = op.contains_key("requestBody");
            let has_input = has_body
                || op
                    .get("parameters")
                    .and_then(|p| p.as_array())
                    .is_some_and(|p| !p.is_empty());
            let secured =
                op.get("security")
                    .and_then(|s| s.as_array())
                    .map_or(global_security, |s| {
                        s.iter()
                            .any(|r| r.as_object().is_some_and(|r| !r.is_empty()))
                    });
            let responses = op
                .entry("responses")
                .or_insert_with(|| serde_json::json!({}));
            let Some(responses) = responses.as_object_mut() else {
                continue;
            };
            for (code, response) in responses.iter_mut() {
                if code.as_str() >= "400" {
                    if let Some(content) =
                        response.get_mut("content").and_then(|c| c.as_object_mut())
                    {
                        if let Some(body) = content.remove("application/json") {
                            content.insert(crate::error::PROBLEM_JSON.to_owned(), body);
                        }
                    }
                }
            }
            for (code, description, applies) in COMMON {
                let wanted = match applies {
                    Applies::Always => true,
                    Applies::WithBody => has_body,
                    Applies::WithInput => has_input,
                    Applies::Secured => secured,
                };
                if wanted && !responses.contains_key(code) {
                    responses.insert(
                        code.to_owned(),
                        serde_json::json!({
                            "description": description,
                            "content": {crate::error::PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}
                        }),
                    );
                }
            }
        }
    }
    doc
}

/// Serves a generated document, completed, at `/api-docs/openapi.json`.
pub fn document_route(cfg: &mut actix_web::web::ServiceConfig, doc: utoipa::openapi::OpenApi) {
    let json = complete(&doc).to_string();
    cfg.service(
        actix_web::web::resource("/api-docs/openapi.json").get(move || {
            let json = json.clone();
            async move {
                actix_web::HttpResponse::Ok()
                    .content_type("application/json")
                    .body(json)
            }
        }),
    );
}
