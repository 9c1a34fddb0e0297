//! Blocking and group privacy: `/api/chat/blocks`, `/api/chat/privacy`.

use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};
use shared::auth::Authenticated;
use shared::http::ValidJson;
use shared::openapi::Problem;
use shared::ApiError;
use utoipa::ToSchema;
use validator::Validate;

use crate::domain::blocks::BlockError;
use crate::domain::views::ProfileView;
use crate::routes::AppState;
use crate::storage::blocks::GroupAdds;

impl From<BlockError> for ApiError {
    fn from(e: BlockError) -> Self {
        match e {
            BlockError::SelfBlock => ApiError::validation("userId", "must be another user"),
            BlockError::UnknownUser => ApiError::NotFound,
            BlockError::Store(db) => ApiError::from(db),
        }
    }
}

/// `{groupAdds}`: who may add the caller to groups.
#[derive(Debug, Serialize, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Privacy {
    group_adds: GroupAdds,
}

/// `GET /api/chat/blocks`: the users the caller blocked, most recent first.
#[utoipa::path(get, path = "/api/chat/blocks", tag = "blocks", responses((status = 200, body = [ProfileView]), (status = 401, body = Problem)), security(("bearer" = [])))]
pub async fn list_blocks(
    state: web::Data<AppState>,
    caller: Authenticated,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(state.service.blocked_users(&caller.user_id).await?))
}

/// `PUT /api/chat/blocks/{userId}`: idempotent. The blocked user can no
/// longer open a 1:1 chat with the caller, post in theirs, or add the caller
/// to a group.
#[utoipa::path(put, path = "/api/chat/blocks/{userId}", tag = "blocks", params(("userId" = String, Path, description = "the user to block")), responses((status = 204), (status = 401, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)), security(("bearer" = [])))]
pub async fn block_user(
    state: web::Data<AppState>,
    caller: Authenticated,
    user_id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    state.service.block(&caller.user_id, &user_id).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// `DELETE /api/chat/blocks/{userId}`: idempotent.
#[utoipa::path(delete, path = "/api/chat/blocks/{userId}", tag = "blocks", params(("userId" = String, Path, description = "the user to unblock")), responses((status = 204), (status = 401, body = Problem)), security(("bearer" = [])))]
pub async fn unblock_user(
    state: web::Data<AppState>,
    caller: Authenticated,
    user_id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    state.service.unblock(&caller.user_id, &user_id).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// `GET /api/chat/privacy` (default `everyone`).
#[utoipa::path(get, path = "/api/chat/privacy", tag = "blocks", responses((status = 200, body = Privacy), (status = 401, body = Problem)), security(("bearer" = [])))]
pub async fn get_privacy(
    state: web::Data<AppState>,
    caller: Authenticated,
) -> Result<HttpResponse, ApiError> {
    let group_adds = state.service.group_adds(&caller.user_id).await?;
    Ok(HttpResponse::Ok().json(Privacy { group_adds }))
}

/// `PUT /api/chat/privacy`: `contacts` are the users one shares a 1:1 chat with.
#[utoipa::path(put, path = "/api/chat/privacy", tag = "blocks", request_body = Privacy, responses((status = 200, body = Privacy), (status = 400, body = Problem), (status = 401, body = Problem), (status = 422, body = Problem)), security(("bearer" = [])))]
pub async fn set_privacy(
    state: web::Data<AppState>,
    caller: Authenticated,
    body: ValidJson<Privacy>,
) -> Result<HttpResponse, ApiError> {
    let group_adds = state
        .service
        .set_group_adds(&caller.user_id, body.group_adds)
        .await?;
    Ok(HttpResponse::Ok().json(Privacy { group_adds }))
}
