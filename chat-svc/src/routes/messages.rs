//! Messages: history, send, edit, delete, read markers.

use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};
use shared::auth::Authenticated;
use shared::http::{RequestId, ValidJson};
use shared::openapi::Problem;
use shared::ApiError;
use utoipa::{IntoParams, ToSchema};
use validator::Validate;

use crate::domain::views::MessageView;
use crate::routes::AppState;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct HistoryQuery {
    /// A message id: only older messages.
    before: Option<String>,
    /// 1-100, default 50.
    #[param(minimum = 1, maximum = 100)]
    limit: Option<i64>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct History {
    messages: Vec<MessageView>,
    has_more: bool,
}

#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SendBody {
    content: String,
    client_msg_id: Option<String>,
}

#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EditBody {
    content: String,
}

#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ReadBody {
    #[validate(length(min = 1, max = 64))]
    message_id: String,
}

/// `GET /api/chat/{id}/messages?before=&limit=`: newest first.
#[utoipa::path(get, path = "/api/chat/{id}/messages", tag = "messages", params(("id" = String, Path, description = "chat id"), HistoryQuery), responses((status = 200, body = History), (status = 401, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)), security(("bearer" = [])))]
pub async fn list_messages(
    state: web::Data<AppState>,
    caller: Authenticated,
    id: web::Path<String>,
    query: web::Query<HistoryQuery>,
) -> Result<HttpResponse, ApiError> {
    let limit = query.limit.unwrap_or(50);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::validation("limit", "must be between 1 and 100"));
    }
    let (messages, has_more) = state
        .service
        .history(&caller.user_id, &id, query.before.as_deref(), limit)
        .await?;
    Ok(HttpResponse::Ok().json(History { messages, has_more }))
}

/// `POST /api/chat/{id}/messages`: 201 new, 200 for a repeated `clientMsgId`.
#[utoipa::path(post, path = "/api/chat/{id}/messages", tag = "messages", params(("id" = String, Path, description = "chat id")), request_body = SendBody, responses((status = 201, body = MessageView), (status = 401, body = Problem), (status = 200, body = MessageView), (status = 403, body = Problem), (status = 404, body = Problem), (status = 429, body = Problem), (status = 422, body = Problem)), security(("bearer" = [])))]
pub async fn send_message(
    state: web::Data<AppState>,
    rid: RequestId,
    caller: Authenticated,
    id: web::Path<String>,
    body: ValidJson<SendBody>,
) -> Result<HttpResponse, ApiError> {
    let (message, created) = state
        .service
        .send(
            &caller.user_id,
            &id,
            &body.content,
            body.client_msg_id.as_deref(),
            &rid.0,
        )
        .await?;
    Ok(if created {
        HttpResponse::Created().json(message)
    } else {
        HttpResponse::Ok().json(message)
    })
}

/// `PATCH /api/chat/{id}/messages/{messageId}` (sender only).
#[utoipa::path(patch, path = "/api/chat/{id}/messages/{messageId}", tag = "messages", params(("id" = String, Path, description = "chat id"), ("messageId" = String, Path)), request_body = EditBody, responses((status = 200, body = MessageView), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem), (status = 429, body = Problem)), security(("bearer" = [])))]
pub async fn edit_message(
    state: web::Data<AppState>,
    rid: RequestId,
    caller: Authenticated,
    path: web::Path<(String, String)>,
    body: ValidJson<EditBody>,
) -> Result<HttpResponse, ApiError> {
    let (chat_id, message_id) = path.into_inner();
    Ok(HttpResponse::Ok().json(
        state
            .service
            .edit(
                &caller.user_id,
                &chat_id,
                &message_id,
                &body.content,
                &rid.0,
            )
            .await?,
    ))
}

/// `DELETE /api/chat/{id}/messages/{messageId}` (sender or admin).
#[utoipa::path(delete, path = "/api/chat/{id}/messages/{messageId}", tag = "messages", params(("id" = String, Path, description = "chat id"), ("messageId" = String, Path)), responses((status = 200, body = MessageView), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 429, body = Problem)), security(("bearer" = [])))]
pub async fn delete_message(
    state: web::Data<AppState>,
    rid: RequestId,
    caller: Authenticated,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (chat_id, message_id) = path.into_inner();
    Ok(HttpResponse::Ok().json(
        state
            .service
            .delete(&caller.user_id, &chat_id, &message_id, &rid.0)
            .await?,
    ))
}

/// `POST /api/chat/{id}/read`: moves the caller's read marker forward.
#[utoipa::path(post, path = "/api/chat/{id}/read", tag = "messages", params(("id" = String, Path, description = "chat id")), request_body = ReadBody, responses((status = 204), (status = 401, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)), security(("bearer" = [])))]
pub async fn mark_read(
    state: web::Data<AppState>,
    rid: RequestId,
    caller: Authenticated,
    id: web::Path<String>,
    body: ValidJson<ReadBody>,
) -> Result<HttpResponse, ApiError> {
    state
        .service
        .mark_read(&caller.user_id, &id, &body.message_id, &rid.0)
        .await?;
    Ok(HttpResponse::NoContent().finish())
}
