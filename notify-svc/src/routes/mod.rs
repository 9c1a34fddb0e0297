//! HTTP routes of notify-svc (spec/api.md, "Notifications"). So far:
//! preferences and muted chats.

pub mod preferences;

use actix_web::web;
use shared::openapi::BearerAuth;
use utoipa::OpenApi;

use crate::storage::preferences::PreferencesStore;

#[derive(Clone)]
pub struct AppState {
    pub preferences: PreferencesStore,
}

#[derive(OpenApi)]
#[openapi(
    info(title = "notify-svc", description = "Notification preferences and muted chats."),
    paths(preferences::get_preferences, preferences::put_preferences),
    components(schemas(shared::openapi::Problem, shared::openapi::ProblemField)),
    modifiers(&BearerAuth),
)]
pub struct ApiDoc;

pub fn configure(cfg: &mut web::ServiceConfig, state: &AppState) {
    shared::openapi::document_route(cfg, ApiDoc::openapi());
    cfg.app_data(web::Data::new(state.clone())).service(
        web::resource("/api/notifications/preferences")
            .get(preferences::get_preferences)
            .put(preferences::put_preferences),
    );
}
