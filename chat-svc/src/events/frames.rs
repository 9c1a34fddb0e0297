//! One function decides, for any event, the frame and its recipients; the
//! timeline writer and the live fan-out both use it, so a replayed frame is
//! byte for byte the live one.

use broker::events::chat::Cursors;
use broker::Event;
use serde_json::{json, Value};

use crate::domain::views::{chat_view, MessageView};
use crate::storage::users::Users;

pub struct Frame {
    pub recipients: Vec<String>,
    /// The frame without `cursor`.
    pub body: Value,
    pub cursors: Cursors,
}

pub async fn frame_for(event: &Event, users: &Users) -> Option<Frame> {
    let (recipients, body, cursors) = match event {
        Event::MessageCreated(e) => (
            e.member_ids.clone(),
            message_frame("message.created", &e.chat_id, &e.message),
            e.cursors.clone(),
        ),
        Event::MessageUpdated(e) => (
            e.member_ids.clone(),
            message_frame("message.updated", &e.chat_id, &e.message),
            e.cursors.clone(),
        ),
        Event::MessageDeleted(e) => (
            e.member_ids.clone(),
            message_frame("message.deleted", &e.chat_id, &e.message),
            e.cursors.clone(),
        ),
        Event::ChatCreated(e) => (
            e.chat.member_ids.clone(),
            chat_frame("chat.created", &e.chat, users).await,
            e.cursors.clone(),
        ),
        Event::ChatUpdated(e) => (
            e.chat.member_ids.clone(),
            chat_frame("chat.updated", &e.chat, users).await,
            e.cursors.clone(),
        ),
        Event::MemberAdded(e) => (
            e.member_ids.clone(),
            json!({"type": "chat.member.added", "chatId": e.chat_id, "userId": e.user_id}),
            e.cursors.clone(),
        ),
        Event::MemberRemoved(e) => (
            e.member_ids.clone(),
            json!({"type": "chat.member.removed", "chatId": e.chat_id, "userId": e.user_id}),
            e.cursors.clone(),
        ),
        Event::ReadMarked(e) => (
            e.member_ids.clone(),
            json!({"type": "read", "chatId": e.chat_id, "userId": e.user_id, "messageId": e.message_id}),
            e.cursors.clone(),
        ),
        Event::Typing(e) => (
            e.member_ids
                .iter()
                .filter(|m| **m != e.user_id)
                .cloned()
                .collect(),
            json!({"type": "typing", "chatId": e.chat_id, "userId": e.user_id, "state": e.state}),
            Cursors::new(),
        ),
        Event::Presence(e) => (
            e.contact_ids.clone(),
            json!({"type": "presence", "userId": e.user_id, "online": e.online}),
            Cursors::new(),
        ),
        _ => return None,
    };
    Some(Frame {
        recipients,
        body,
        cursors,
    })
}

fn message_frame(
    kind: &str,
    chat_id: &str,
    message: &broker::events::chat::MessageSnapshot,
) -> Value {
    json!({"type": kind, "chatId": chat_id, "message": MessageView::from(message)})
}

async fn chat_frame(kind: &str, chat: &broker::events::chat::ChatSnapshot, users: &Users) -> Value {
    let profiles = users.profiles(&chat.member_ids).await.unwrap_or_default();
    let now = mongodb::bson::DateTime::now();
    let doc = crate::storage::chats::ChatDoc {
        id: chat.id.clone(),
        is_group: chat.is_group,
        name: chat.name.clone(),
        member_ids: chat.member_ids.clone(),
        admin_ids: chat.admin_ids.clone(),
        pair_key: String::new(),
        created_at: now,
        updated_at: now,
        last_activity_at: now,
        latest_message_id: None,
        version: chat.version,
    };
    json!({"type": kind, "chat": chat_view(&doc, &profiles, None, 0)})
}
