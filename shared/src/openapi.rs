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

/// Serves a generated document at `/api-docs/openapi.json`.
pub fn document_route(cfg: &mut actix_web::web::ServiceConfig, doc: utoipa::openapi::OpenApi) {
    let json = doc.to_json().unwrap_or_default();
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
