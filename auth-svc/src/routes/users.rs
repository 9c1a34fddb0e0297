//! Own profile, public profiles and user search.

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use shared::auth::Authenticated;
use shared::error::FieldError;
use shared::http::{RequestId, ValidJson};
use shared::openapi::Problem;
use shared::ApiError;
use utoipa::{IntoParams, ToSchema};
use validator::Validate;

use crate::storage::users::{OwnUser, PublicProfile};

use crate::domain::credentials::{check_avatar_url, check_bio, check_display_name};
use crate::events::{self, Carried, CHANGE_ATTEMPTS};
use crate::state::AppState;
use crate::storage::users::{ProfileChange, Users};

/// Absent fields stay; `null` clears `avatarUrl` and `bio`.
#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ProfileBody {
    display_name: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    avatar_url: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    bio: Option<Option<String>>,
}

/// Distinguishes "absent" (`None`) from `null` (`Some(None)`).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Ok(Some(Option::deserialize(d)?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct SearchQuery {
    /// Part of a username or display name (case-insensitive), at most 64 characters.
    #[serde(default)]
    #[param(max_length = 64)]
    search: String,
    /// 1-50, default 20.
    #[param(minimum = 1, maximum = 50)]
    limit: Option<i64>,
}

/// `GET /api/users/me`.
#[utoipa::path(get, path = "/api/users/me", tag = "users", responses((status = 200, body = OwnUser), (status = 401, body = Problem)), security(("bearer" = [])))]
pub async fn get_me(
    state: web::Data<AppState>,
    caller: Authenticated,
) -> Result<HttpResponse, ApiError> {
    let user = state
        .users
        .by_id(&caller.user_id)
        .await?
        .ok_or(ApiError::Unauthorized)?;
    Ok(HttpResponse::Ok().json(user.own()))
}

/// `PATCH /api/users/me`: publishes `user.updated`.
#[utoipa::path(patch, path = "/api/users/me", tag = "users", request_body = ProfileBody, responses((status = 200, body = OwnUser), (status = 401, body = Problem), (status = 422, body = Problem)), security(("bearer" = [])))]
pub async fn update_me(
    state: web::Data<AppState>,
    rid: RequestId,
    caller: Authenticated,
    body: ValidJson<ProfileBody>,
) -> Result<HttpResponse, ApiError> {
    let body = body.0;
    let mut errors = Vec::new();
    if let Some(Err(m)) = body.display_name.as_deref().map(check_display_name) {
        errors.push(FieldError::new("displayName", m));
    }
    if let Some(Some(Err(m))) = body
        .avatar_url
        .as_ref()
        .map(|u| u.as_deref().map(check_avatar_url))
    {
        errors.push(FieldError::new("avatarUrl", m));
    }
    if let Some(Some(Err(m))) = body.bio.as_ref().map(|b| b.as_deref().map(check_bio)) {
        errors.push(FieldError::new("bio", m));
    }
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let blank_to_none = |v: Option<Option<String>>| v.map(|inner| inner.filter(|s| !s.is_empty()));
    let change = ProfileChange {
        display_name: body.display_name.map(|n| n.trim().to_owned()),
        avatar_url: blank_to_none(body.avatar_url),
        bio: blank_to_none(body.bio),
    };
    // Read, then one write conditional on the version read (so the event
    // says exactly what was stored); a racing change means reading again.
    for _ in 0..CHANGE_ATTEMPTS {
        let user = state
            .users
            .by_id(&caller.user_id)
            .await?
            .ok_or(ApiError::Unauthorized)?;
        let after = change.apply(&user);
        let carried =
            Carried::new(&state.outbox, &rid.0).with(&user.id, events::user_updated(&after))?;
        if state
            .users
            .store_profile(&after, carried.entries()?, carried.marker())
            .await?
        {
            carried.committed(Users::COLLECTION, &user.id);
            return Ok(HttpResponse::Ok().json(after.own()));
        }
    }
    Err(ApiError::Conflict(
        "the profile kept changing meanwhile; try again".into(),
    ))
}

/// `GET /api/users/{id}`: the public profile.
#[utoipa::path(get, path = "/api/users/{id}", tag = "users", params(("id" = String, Path)), responses((status = 200, body = PublicProfile), (status = 401, body = Problem), (status = 404, body = Problem)), security(("bearer" = [])))]
pub async fn get_user(
    state: web::Data<AppState>,
    _caller: Authenticated,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let profile = state.users.profile(&id).await?.ok_or(ApiError::NotFound)?;
    Ok(HttpResponse::Ok().json(profile))
}

/// `GET /api/users?search=q&limit=20`.
#[utoipa::path(get, path = "/api/users", tag = "users", params(SearchQuery), responses((status = 200, body = [PublicProfile]), (status = 401, body = Problem), (status = 422, body = Problem)), security(("bearer" = [])))]
pub async fn search_users(
    state: web::Data<AppState>,
    _caller: Authenticated,
    query: web::Query<SearchQuery>,
) -> Result<HttpResponse, ApiError> {
    let q = query.search.trim();
    if q.chars().count() > 64 || q.chars().any(char::is_control) {
        return Err(ApiError::validation(
            "search",
            "must be at most 64 characters",
        ));
    }
    let limit = query.limit.unwrap_or(20);
    if !(1..=50).contains(&limit) {
        return Err(ApiError::validation("limit", "must be between 1 and 50"));
    }
    if q.is_empty() {
        return Ok(HttpResponse::Ok().json(Vec::<()>::new()));
    }
    let results = state.users.search(q, limit).await?;
    Ok(HttpResponse::Ok().json(results))
}
