//! HTTP routes of chat-svc (spec/api.md, "Chats and messages", "Blocking
//! and privacy" and "WebSocket"). Handlers are thin: extract, call the service, map.

pub mod blocks;
pub mod chats;
pub mod messages;

use actix_web::web;
use shared::openapi::BearerAuth;
use utoipa::OpenApi;

use crate::domain::service::ChatService;
use crate::realtime::socket::{self, Realtime};

#[derive(Clone)]
pub struct AppState {
    pub service: ChatService,
}

#[derive(OpenApi)]
#[openapi(
    info(title = "chat-svc", description = "Chats, messages and read markers. The WebSocket protocol at /ws is described in docs/websocket.md."),
    paths(
        chats::list_chats, chats::open_direct, chats::create_group, chats::get_chat, chats::rename_chat,
        chats::add_member, chats::remove_member,
        messages::list_messages, messages::send_message, messages::edit_message, messages::delete_message, messages::mark_read,
        blocks::list_blocks, blocks::block_user, blocks::unblock_user, blocks::get_privacy, blocks::set_privacy,
    ),
    components(schemas(shared::openapi::Problem, shared::openapi::ProblemField)),
    modifiers(&BearerAuth),
)]
pub struct ApiDoc;

pub fn configure(cfg: &mut web::ServiceConfig, state: &AppState, realtime: &Realtime) {
    shared::openapi::document_route(cfg, ApiDoc::openapi());
    cfg.app_data(web::Data::new(state.clone()))
        .app_data(web::Data::new(realtime.clone()))
        .service(web::resource("/ws").get(socket::upgrade))
        .service(
            web::resource("/api/chat")
                .get(chats::list_chats)
                .post(chats::open_direct),
        )
        .service(web::resource("/api/chat/group").post(chats::create_group))
        // Before `/api/chat/{id}`, which would otherwise take these names as ids.
        .service(web::resource("/api/chat/blocks").get(blocks::list_blocks))
        .service(
            web::resource("/api/chat/blocks/{userId}")
                .put(blocks::block_user)
                .delete(blocks::unblock_user),
        )
        .service(
            web::resource("/api/chat/privacy")
                .get(blocks::get_privacy)
                .put(blocks::set_privacy),
        )
        .service(
            web::resource("/api/chat/{id}")
                .get(chats::get_chat)
                .patch(chats::rename_chat),
        )
        .service(web::resource("/api/chat/{id}/members").post(chats::add_member))
        .service(web::resource("/api/chat/{id}/members/{userId}").delete(chats::remove_member))
        .service(
            web::resource("/api/chat/{id}/messages")
                .get(messages::list_messages)
                .post(messages::send_message),
        )
        .service(
            web::resource("/api/chat/{id}/messages/{messageId}")
                .patch(messages::edit_message)
                .delete(messages::delete_message),
        )
        .service(web::resource("/api/chat/{id}/read").post(messages::mark_read));
}
