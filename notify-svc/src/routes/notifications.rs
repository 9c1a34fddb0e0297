//! The in-app feed, Web Push subscriptions and the VAPID public key.

use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};
use shared::auth::Authenticated;
use shared::http::ValidJson;
use shared::openapi::Problem;
use shared::ApiError;
use utoipa::{IntoParams, ToSchema};
use validator::Validate;

use super::AppState;
use crate::domain::push::SubscriptionKeys;
use crate::storage::new_id;
use crate::storage::notifications::NotificationDoc;
use crate::storage::subscriptions::{AddError, SubscriptionDoc, MAX_PER_USER};
use shared::page::{self, Place};

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FeedQuery {
    /// Only notifications not marked read.
    unread_only: Option<bool>,
    /// 1-100, default 50.
    #[param(minimum = 1, maximum = 100)]
    limit: Option<i64>,
    /// The `nextCursor` of the previous page: the notifications after it.
    before: Option<String>,
}

/// A notification (`kind`: `message`, `mention` or `security`).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NotificationView {
    id: String,
    kind: String,
    chat_id: Option<String>,
    message_id: Option<String>,
    title: String,
    body: String,
    created_at: String,
    read_at: Option<String>,
}

fn rfc3339(d: mongodb::bson::DateTime) -> String {
    chrono::DateTime::from_timestamp_millis(d.timestamp_millis())
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

impl From<NotificationDoc> for NotificationView {
    fn from(n: NotificationDoc) -> Self {
        Self {
            id: n.id,
            kind: n.kind,
            chat_id: n.chat_id,
            message_id: n.message_id,
            title: n.title,
            body: n.body,
            created_at: rfc3339(n.created_at),
            read_at: n.read_at.map(rfc3339),
        }
    }
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Feed {
    notifications: Vec<NotificationView>,
    /// More notifications follow this page.
    has_more: bool,
    /// Pass as `before` for the next page; null on the last one.
    next_cursor: Option<String>,
}

/// The caller's notifications, newest first, a page at a time: a page ends
/// with `nextCursor`, which `before` takes to get the next one (stable while
/// notifications arrive: new ones go before the first page).
#[utoipa::path(get, path = "/api/notifications", tag = "notifications", params(FeedQuery),
    responses((status = 200, body = Feed), (status = 401, body = Problem), (status = 422, body = Problem)), security(("bearer" = [])))]
pub async fn feed(
    state: web::Data<AppState>,
    caller: Authenticated,
    query: web::Query<FeedQuery>,
) -> Result<HttpResponse, ApiError> {
    let (limit, before) = page::request(query.limit, query.before.as_deref())?;
    let found = state
        .notifications
        .list(
            &caller.user_id,
            query.unread_only.unwrap_or(false),
            before.as_ref(),
            i64::try_from(limit).unwrap_or(50) + 1,
        )
        .await?;
    let (found, next_cursor) = page::split(found, limit, |n| Place::new(n.created_at, &n.id));
    Ok(HttpResponse::Ok().json(Feed {
        notifications: found.into_iter().map(NotificationView::from).collect(),
        has_more: next_cursor.is_some(),
        next_cursor,
    }))
}

/// Marks one of the caller's notifications read (idempotent).
#[utoipa::path(post, path = "/api/notifications/{id}/read", tag = "notifications",
    params(("id" = String, Path, description = "notification id")),
    responses((status = 204), (status = 401, body = Problem), (status = 404, body = Problem)), security(("bearer" = [])))]
pub async fn mark_read(
    state: web::Data<AppState>,
    caller: Authenticated,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    if state.notifications.mark_read(&caller.user_id, &id).await? {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(ApiError::NotFound)
    }
}

#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KeysBody {
    #[validate(length(min = 1, max = 200))]
    p256dh: String,
    #[validate(length(min = 1, max = 100))]
    auth: String,
}

/// A browser `PushSubscription` (`expirationTime` is accepted and ignored).
#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SubscriptionBody {
    #[validate(length(min = 1, max = 2048))]
    endpoint: String,
    #[validate(nested)]
    keys: KeysBody,
    #[expect(
        dead_code,
        reason = "accepted as browsers send it (PushSubscription.toJSON); not used"
    )]
    expiration_time: Option<serde_json::Value>,
}

#[derive(Serialize, ToSchema)]
pub struct Created {
    id: String,
}

/// Saves a push subscription of the caller (the same endpoint again keeps its id).
#[utoipa::path(post, path = "/api/notifications/push-subscriptions", tag = "push", request_body = SubscriptionBody,
    responses((status = 201, body = Created), (status = 401, body = Problem), (status = 422, body = Problem)), security(("bearer" = [])))]
pub async fn subscribe(
    state: web::Data<AppState>,
    caller: Authenticated,
    body: ValidJson<SubscriptionBody>,
) -> Result<HttpResponse, ApiError> {
    let body = body.0;
    let url = state
        .push
        .policy()
        .check(&body.endpoint)
        .await
        .map_err(|e| ApiError::validation("endpoint", e.to_string()))?;
    SubscriptionKeys::parse(&body.keys.p256dh, &body.keys.auth)
        .map_err(|e| ApiError::validation("keys", e))?;
    let id = state
        .subscriptions
        .add(SubscriptionDoc {
            id: new_id(),
            user_id: caller.user_id.clone(),
            endpoint: url.to_string(),
            p256dh: body.keys.p256dh,
            auth: body.keys.auth,
            created_at: mongodb::bson::DateTime::now(),
        })
        .await
        .map_err(|e| match e {
            AddError::TooMany => ApiError::validation(
                "endpoint",
                format!("at most {MAX_PER_USER} subscriptions per user; delete one first"),
            ),
            AddError::Db(db) => ApiError::from(db),
        })?;
    Ok(HttpResponse::Created().json(Created { id }))
}

/// Deletes one of the caller's push subscriptions.
#[utoipa::path(delete, path = "/api/notifications/push-subscriptions/{id}", tag = "push",
    params(("id" = String, Path, description = "subscription id")),
    responses((status = 204), (status = 401, body = Problem), (status = 404, body = Problem)), security(("bearer" = [])))]
pub async fn unsubscribe(
    state: web::Data<AppState>,
    caller: Authenticated,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    if state.subscriptions.remove(&caller.user_id, &id).await? {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(ApiError::NotFound)
    }
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VapidKey {
    /// base64url of the uncompressed P-256 point.
    public_key: String,
}

/// The application server key for `pushManager.subscribe`.
#[utoipa::path(get, path = "/api/notifications/vapid-public-key", tag = "push",
    responses((status = 200, body = VapidKey)))]
pub async fn vapid_public_key(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(VapidKey {
        public_key: state.push.public_key().to_owned(),
    })
}
