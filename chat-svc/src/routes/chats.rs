//! Chats: list, 1:1, groups, members.

use actix_web::http::header;
use actix_web::{web, HttpResponse};
use serde::Deserialize;
use shared::auth::Authenticated;
use shared::http::{RequestId, ValidJson};
use shared::openapi::Problem;
use shared::page;
use shared::ApiError;
use utoipa::{IntoParams, ToSchema};
use validator::Validate;

use crate::domain::service::Removal;
use crate::domain::views::ChatView;
use crate::routes::AppState;

#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DirectBody {
    #[validate(length(min = 1, max = 64))]
    user_id: String,
}

#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GroupBody {
    #[validate(length(min = 1, max = 100))]
    name: String,
    #[validate(length(min = 1, max = 255))]
    member_ids: Vec<String>,
}

#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RenameBody {
    #[validate(length(min = 1, max = 100))]
    name: String,
}

#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MemberBody {
    #[validate(length(min = 1, max = 64))]
    user_id: String,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Page size, 1-100. Without `limit` and `before`: the whole list (up to
    /// 500 chats) in one answer.
    #[param(minimum = 1, maximum = 100)]
    limit: Option<i64>,
    /// The cursor of the `Link: <...>; rel="next"` header of the previous page.
    before: Option<String>,
}

/// `GET /api/chat`: the caller's chats, most recently active first; paged
/// when asked (`limit`, `before`), with the next page in a `Link` header.
#[utoipa::path(get, path = "/api/chat", tag = "chats", params(ListQuery), responses((status = 200, body = [ChatView], headers(("Link" = String, description = "rel=\"next\": the next page, when there is one"))), (status = 401, body = Problem), (status = 422, body = Problem)), security(("bearer" = [])))]
pub async fn list_chats(
    state: web::Data<AppState>,
    caller: Authenticated,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    if query.limit.is_none() && query.before.is_none() {
        let body = state.service.list(&caller.user_id).await?;
        return Ok(HttpResponse::Ok()
            .content_type("application/json")
            .body(body.get().to_owned()));
    }
    let (limit, before) = page::request(query.limit, query.before.as_deref())?;
    let (chats, next) = state
        .service
        .list_page(&caller.user_id, before.as_ref(), limit)
        .await?;
    let mut response = HttpResponse::Ok();
    if let Some(next) = next {
        response.insert_header((
            header::LINK,
            format!("</api/chat?limit={limit}&before={next}>; rel=\"next\""),
        ));
    }
    Ok(response.json(chats))
}

/// `POST /api/chat`: the 1:1 chat with a user (200 existing, 201 new; 403
/// when that user blocked the caller).
#[utoipa::path(post, path = "/api/chat", tag = "chats", request_body = DirectBody, responses((status = 201, body = ChatView), (status = 401, body = Problem), (status = 200, body = ChatView), (status = 403, body = Problem), (status = 422, body = Problem)), security(("bearer" = [])))]
pub async fn open_direct(
    state: web::Data<AppState>,
    rid: RequestId,
    caller: Authenticated,
    body: ValidJson<DirectBody>,
) -> Result<HttpResponse, ApiError> {
    let (chat, created) = state
        .service
        .direct(&caller.user_id, &body.user_id, &rid.0)
        .await?;
    Ok(if created {
        HttpResponse::Created().json(chat)
    } else {
        HttpResponse::Ok().json(chat)
    })
}

/// `POST /api/chat/group`: the creator is a member and admin. 403 when a
/// member blocked the caller or does not take group additions from them.
#[utoipa::path(post, path = "/api/chat/group", tag = "chats", request_body = GroupBody, responses((status = 201, body = ChatView), (status = 401, body = Problem), (status = 403, body = Problem), (status = 422, body = Problem), (status = 429, body = Problem)), security(("bearer" = [])))]
pub async fn create_group(
    state: web::Data<AppState>,
    rid: RequestId,
    caller: Authenticated,
    body: ValidJson<GroupBody>,
) -> Result<HttpResponse, ApiError> {
    let body = body.0;
    let chat = state
        .service
        .create_group(&caller.user_id, &body.name, body.member_ids, &rid.0)
        .await?;
    Ok(HttpResponse::Created().json(chat))
}

/// `GET /api/chat/{id}` (404 for non-members).
#[utoipa::path(get, path = "/api/chat/{id}", tag = "chats", params(("id" = String, Path, description = "chat id")), responses((status = 200, body = ChatView), (status = 401, body = Problem), (status = 404, body = Problem)), security(("bearer" = [])))]
pub async fn get_chat(
    state: web::Data<AppState>,
    caller: Authenticated,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(state.service.get(&caller.user_id, &id).await?))
}

/// `PATCH /api/chat/{id}`: rename (admins only).
#[utoipa::path(patch, path = "/api/chat/{id}", tag = "chats", params(("id" = String, Path, description = "chat id")), request_body = RenameBody, responses((status = 200, body = ChatView), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)), security(("bearer" = [])))]
pub async fn rename_chat(
    state: web::Data<AppState>,
    rid: RequestId,
    caller: Authenticated,
    id: web::Path<String>,
    body: ValidJson<RenameBody>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(
        state
            .service
            .rename(&caller.user_id, &id, &body.name, &rid.0)
            .await?,
    ))
}

/// `POST /api/chat/{id}/members` (admins only).
#[utoipa::path(post, path = "/api/chat/{id}/members", tag = "chats", params(("id" = String, Path, description = "chat id")), request_body = MemberBody, responses((status = 200, body = ChatView), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem), (status = 429, body = Problem)), security(("bearer" = [])))]
pub async fn add_member(
    state: web::Data<AppState>,
    rid: RequestId,
    caller: Authenticated,
    id: web::Path<String>,
    body: ValidJson<MemberBody>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(
        state
            .service
            .add_member(&caller.user_id, &id, &body.user_id, &rid.0)
            .await?,
    ))
}

/// `DELETE /api/chat/{id}/members/{userId}`: an admin removes (200 chat) or
/// a member leaves (204).
#[utoipa::path(delete, path = "/api/chat/{id}/members/{userId}", tag = "chats", params(("id" = String, Path, description = "chat id"), ("userId" = String, Path)), responses((status = 200, body = ChatView), (status = 401, body = Problem), (status = 204), (status = 403, body = Problem), (status = 404, body = Problem)), security(("bearer" = [])))]
pub async fn remove_member(
    state: web::Data<AppState>,
    rid: RequestId,
    caller: Authenticated,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (chat_id, user_id) = path.into_inner();
    Ok(
        match state
            .service
            .remove_member(&caller.user_id, &chat_id, &user_id, &rid.0)
            .await?
        {
            Removal::Removed(chat) => HttpResponse::Ok().json(chat),
            Removal::Left => HttpResponse::NoContent().finish(),
        },
    )
}
