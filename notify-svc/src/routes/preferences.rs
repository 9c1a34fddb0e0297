//! `GET` / `PUT /api/notifications/preferences`.

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use shared::auth::Authenticated;
use shared::http::ValidJson;
use shared::openapi::Problem;
use shared::ApiError;
use utoipa::ToSchema;
use validator::Validate;

use super::AppState;
use crate::storage::preferences::Preferences;

/// The whole set, replaced at once.
#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PreferencesBody {
    push: bool,
    email: bool,
    #[validate(range(min = 0, max = 86400, message = "must be between 0 and 86400"))]
    email_delay_seconds: u32,
    #[validate(length(max = 1000, message = "at most 1000 muted chats"))]
    muted_chat_ids: Vec<String>,
    /// Whether pushes show a preview of the message (default true).
    push_previews: Option<bool>,
}

/// The caller's preferences (defaults until saved).
#[utoipa::path(get, path = "/api/notifications/preferences", tag = "preferences",
    responses((status = 200, body = Preferences), (status = 401, body = Problem)), security(("bearer" = [])))]
pub async fn get_preferences(
    state: web::Data<AppState>,
    caller: Authenticated,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(state.preferences.get(&caller.user_id).await?))
}

/// Replaces the caller's preferences.
#[utoipa::path(put, path = "/api/notifications/preferences", tag = "preferences", request_body = PreferencesBody,
    responses((status = 200, body = Preferences), (status = 401, body = Problem), (status = 422, body = Problem)), security(("bearer" = [])))]
pub async fn put_preferences(
    state: web::Data<AppState>,
    caller: Authenticated,
    body: ValidJson<PreferencesBody>,
) -> Result<HttpResponse, ApiError> {
    let body = body.0;
    if body
        .muted_chat_ids
        .iter()
        .any(|id| id.is_empty() || id.len() > 64 || id.chars().any(char::is_control))
    {
        return Err(ApiError::validation(
            "mutedChatIds",
            "each must be a chat id of 1-64 characters",
        ));
    }
    let mut muted = body.muted_chat_ids;
    muted.sort();
    muted.dedup();
    let preferences = Preferences {
        push: body.push,
        email: body.email,
        email_delay_seconds: body.email_delay_seconds,
        muted_chat_ids: muted,
        push_previews: body.push_previews.unwrap_or(true),
    };
    state.preferences.put(&caller.user_id, &preferences).await?;
    Ok(HttpResponse::Ok().json(preferences))
}
