//! The JSON shapes of api.md: chat and message objects.

use std::collections::HashMap;

use broker::events::chat::{MessageSnapshot, ProfileSnapshot};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::storage::chats::ChatDoc;
use crate::storage::messages::MessageDoc;
use crate::storage::rfc3339;

/// A public profile (`{id, username, displayName, avatarUrl}`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProfileView {
    pub id: String,
    pub username: String,
    pub display_name: String,
    pub avatar_url: Option<String>,
}

impl From<&ProfileSnapshot> for ProfileView {
    fn from(p: &ProfileSnapshot) -> Self {
        Self {
            id: p.id.clone(),
            username: p.username.clone(),
            display_name: p.display_name.clone(),
            avatar_url: p.avatar_url.clone(),
        }
    }
}

/// A profile for an id the replica does not know (yet).
pub fn unknown_profile(id: &str) -> ProfileSnapshot {
    ProfileSnapshot {
        id: id.to_owned(),
        username: String::new(),
        display_name: "Unknown user".to_owned(),
        avatar_url: None,
    }
}

/// Message object of api.md (`senderId` added for convenience).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MessageView {
    pub id: String,
    pub chat_id: String,
    pub sender: ProfileView,
    pub sender_id: String,
    pub content: String,
    pub client_msg_id: Option<String>,
    pub created_at: String,
    pub edited_at: Option<String>,
    pub deleted: bool,
}

pub fn snapshot(m: &MessageDoc, sender: ProfileSnapshot) -> MessageSnapshot {
    MessageSnapshot {
        id: m.id.clone(),
        chat_id: m.chat_id.clone(),
        sender_id: m.sender_id.clone(),
        sender,
        content: if m.deleted {
            String::new()
        } else {
            m.content.clone()
        },
        client_msg_id: m.client_msg_id.clone(),
        created_at: rfc3339(m.created_at),
        edited_at: m.edited_at.map(rfc3339),
        deleted: m.deleted,
    }
}

impl From<&MessageSnapshot> for MessageView {
    fn from(m: &MessageSnapshot) -> Self {
        Self {
            id: m.id.clone(),
            chat_id: m.chat_id.clone(),
            sender: ProfileView::from(&m.sender),
            sender_id: m.sender_id.clone(),
            content: m.content.clone(),
            client_msg_id: m.client_msg_id.clone(),
            created_at: m.created_at.clone(),
            edited_at: m.edited_at.clone(),
            deleted: m.deleted,
        }
    }
}

/// Chat object of api.md.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChatView {
    pub id: String,
    pub is_group: bool,
    pub name: Option<String>,
    pub members: Vec<ProfileView>,
    pub admins: Vec<String>,
    pub latest_message: Option<MessageView>,
    pub unread_count: u64,
    pub created_at: String,
    pub updated_at: String,
}

pub fn chat_view(
    chat: &ChatDoc,
    profiles: &HashMap<String, ProfileSnapshot>,
    latest: Option<MessageView>,
    unread: u64,
) -> ChatView {
    ChatView {
        id: chat.id.clone(),
        is_group: chat.is_group,
        name: chat.name.clone(),
        members: chat
            .member_ids
            .iter()
            .map(|id| ProfileView::from(profiles.get(id).unwrap_or(&unknown_profile(id))))
            .collect(),
        admins: chat.admin_ids.clone(),
        latest_message: latest,
        unread_count: unread,
        created_at: rfc3339(chat.created_at),
        updated_at: rfc3339(chat.updated_at),
    }
}
