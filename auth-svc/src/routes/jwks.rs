use actix_web::{web, HttpResponse};

use crate::state::AppState;

/// `GET /.well-known/jwks.json`: the public keys that verify access tokens.
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "auth", responses((status = 200, description = "JSON Web Key Set (OKP / Ed25519)")))]
pub async fn jwks(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header(("cache-control", "public, max-age=300"))
        .json(state.issuer.jwks())
}
