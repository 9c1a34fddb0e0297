//! Listing and revoking one's sessions.

use actix_web::{web, HttpResponse};
use shared::auth::Authenticated;
use shared::http::RequestId;
use shared::openapi::Problem;
use shared::ApiError;

use crate::events::{self, Carried};
use crate::state::AppState;
use crate::storage::sessions::{SessionDoc, SessionView, Sessions};

/// Revokes `session` with its `auth.session.revoked` in the same write;
/// `true` when this call revoked it.
pub async fn revoke(
    state: &AppState,
    rid: &RequestId,
    session: &SessionDoc,
    reason: &str,
) -> Result<bool, ApiError> {
    let carried = Carried::new(&state.outbox, &rid.0)
        .with(&session.user_id, events::session_revoked(session, reason))?;
    let revoked = state
        .sessions
        .revoke(session, reason, carried.entries()?, carried.marker())
        .await?;
    if revoked {
        carried.committed(Sessions::COLLECTION, &session.id);
    }
    Ok(revoked)
}

/// Revokes every active session of `user_id` but `keep`, each with its
/// event; returns how many this call revoked.
pub async fn revoke_others(
    state: &AppState,
    rid: &RequestId,
    user_id: &str,
    keep: Option<&str>,
    reason: &str,
) -> Result<usize, ApiError> {
    let mut revoked = 0;
    for session in state.sessions.list_active(user_id).await? {
        if Some(session.id.as_str()) != keep && revoke(state, rid, &session, reason).await? {
            revoked += 1;
        }
    }
    Ok(revoked)
}

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
    let session = state
        .sessions
        .get(&id)
        .await?
        .filter(|s| s.user_id == caller.user_id)
        .ok_or(ApiError::NotFound)?;
    revoke(&state, &rid, &session, "revoked_by_user").await?;
    Ok(HttpResponse::NoContent().finish())
}
