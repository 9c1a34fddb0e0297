//! HTTP routes of notify-svc (spec/api.md, "Notifications").

pub mod notifications;
pub mod preferences;

use actix_web::web;
use shared::openapi::BearerAuth;
use utoipa::OpenApi;

use crate::domain::push::PushSender;
use crate::storage::notifications::Notifications;
use crate::storage::preferences::PreferencesStore;
use crate::storage::subscriptions::Subscriptions;

#[derive(Clone)]
pub struct AppState {
    pub preferences: PreferencesStore,
    pub notifications: Notifications,
    pub subscriptions: Subscriptions,
    pub push: PushSender,
}

#[derive(OpenApi)]
#[openapi(
    info(title = "notify-svc", description = "In-app notifications, Web Push subscriptions, preferences and muted chats."),
    paths(
        notifications::feed,
        notifications::mark_read,
        notifications::subscribe,
        notifications::unsubscribe,
        notifications::vapid_public_key,
        preferences::get_preferences,
        preferences::put_preferences,
    ),
    components(schemas(shared::openapi::Problem, shared::openapi::ProblemField)),
    modifiers(&BearerAuth),
)]
pub struct ApiDoc;

pub fn configure(cfg: &mut web::ServiceConfig, state: &AppState) {
    shared::openapi::document_route(cfg, ApiDoc::openapi());
    cfg.app_data(web::Data::new(state.clone()))
        .service(web::resource("/api/notifications").get(notifications::feed))
        .service(
            web::resource("/api/notifications/preferences")
                .get(preferences::get_preferences)
                .put(preferences::put_preferences),
        )
        .service(
            web::resource("/api/notifications/vapid-public-key")
                .get(notifications::vapid_public_key),
        )
        .service(
            web::resource("/api/notifications/push-subscriptions").post(notifications::subscribe),
        )
        .service(
            web::resource("/api/notifications/push-subscriptions/{id}")
                .delete(notifications::unsubscribe),
        )
        .service(web::resource("/api/notifications/{id}/read").post(notifications::mark_read));
}
