//! Listing and revoking one's sessions.

use actix_web::{web, HttpResponse};
use shared::auth::Authenticated;
use shared::http::RequestId;
use shared::openapi::Problem;
use shared::ApiError;

use crate::storage::sessions::SessionView;

use crate::events;
use crate::state::AppState;
use crate::storage::sessions::Sessions;

/// `GET /api/auth/sessions`.
#[utoipa::path(get, path = "/api/auth/sessions", tag = "sessions", responses((status = 200, body = [SessionView]), (status = 401, body = Problem)), security(("bearer" = [])))]
pub async fn list_sessions(
    state: web::Data<AppState>,
    caller: Authenticated,
) -> Result<HttpResponse, ApiError> {
    let sessions = state.sessions.list_active(&caller.user_id).await?;
    let views: Vec<_> = sessions
        .iter()
        .map(|s| Sessions::view(s, &caller.session_id))
        .collect();
    Ok(HttpResponse::Ok().json(views))
}

/// `DELETE /api/auth/sessions/{id}`: only one's own; others are 404.
#[utoipa::path(delete, path = "/api/auth/sessions/{id}", tag = "sessions", params(("id" = String, Path)), responses((status = 204), (status = 401, body = Problem), (status = 404, body = Problem)), security(("bearer" = [])))]
pub async fn revoke_session(
    state: web::Data<AppState>,
    rid: RequestId,
    caller: Authenticated,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let session = state.sessions.get(&id).await?;
    if session.is_none_or(|s| s.user_id != caller.user_id) {
        return Err(ApiError::NotFound);
    }
    if let Some(revoked) = state.sessions.revoke(&id, "revoked_by_user").await? {
        events::sessions_revoked(&state.outbox, &rid.0, &[revoked], "revoked_by_user").await?;
    }
    Ok(HttpResponse::NoContent().finish())
}
