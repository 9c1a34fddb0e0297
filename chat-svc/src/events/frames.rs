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

/// `body` (a serialised JSON object) with `"cursor"` as its first member:
/// one serialisation per event, then a string splice per recipient, instead
/// of a clone and a serialisation per recipient. Live frames and replayed
/// ones are both made here, so they are byte for byte the same.
pub fn with_cursor(body: &str, cursor: &str) -> String {
    let Some(rest) = body.strip_prefix('{') else {
        return body.to_owned();
    };
    let cursor = serde_json::Value::from(cursor).to_string();
    let separator = if rest.trim_start().starts_with('}') {
        ""
    } else {
        ","
    };
    format!("{{\"cursor\":{cursor}{separator}{rest}")
}

/// The cursor of a frame made by [`with_cursor`], without parsing it.
pub fn cursor_of(frame: &str) -> Option<&str> {
    let rest = frame.strip_prefix("{\"cursor\":\"")?;
    rest.split('"').next()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_are_spliced_in_as_valid_json() {
        let framed = with_cursor(r#"{"type":"read","chatId":"c"}"#, "17-0");
        let v: serde_json::Value = serde_json::from_str(&framed).unwrap();
        assert_eq!(v["cursor"], "17-0");
        assert_eq!(v["type"], "read");
        assert_eq!(cursor_of(&framed), Some("17-0"));
        assert_eq!(with_cursor("{}", "1-0"), r#"{"cursor":"1-0"}"#);
        assert_eq!(cursor_of(r#"{"type":"typing"}"#), None);
    }
}
