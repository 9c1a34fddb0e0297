//! Events chat-svc publishes: durable ones on `chat.events`, live-only ones
//! (`typing`, `presence`) on `chat.realtime`.

use serde::{Deserialize, Serialize};

use super::EventPayload;
use crate::topology::Exchange;

macro_rules! chat_event {
    ($ty:ident, $key:literal, $exchange:expr) => {
        impl EventPayload for $ty {
            const TYPE: &'static str = $key;
            const VERSION: u32 = 1;
            const EXCHANGE: Exchange = $exchange;
        }
    };
}

/// The replicated shape of a chat.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ChatSnapshot {
    pub id: String,
    pub name: Option<String>,
    pub member_ids: Vec<String>,
    pub admin_ids: Vec<String>,
    pub is_group: bool,
    /// Increases with every change of the chat; replicas ignore older ones.
    #[serde(default)]
    pub version: i64,
}

/// Per-recipient resume cursors (`userId -> cursor`) of a durable chat
/// event; empty when the timeline store was unavailable.
pub type Cursors = std::collections::BTreeMap<String, String>;

/// A user's public profile as chat-svc knew it when the event happened.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ProfileSnapshot {
    pub id: String,
    pub username: String,
    pub display_name: String,
    pub avatar_url: Option<String>,
}

/// A message as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MessageSnapshot {
    pub id: String,
    pub chat_id: String,
    pub sender_id: String,
    pub sender: ProfileSnapshot,
    pub content: String,
    pub client_msg_id: Option<String>,
    pub created_at: String,
    pub edited_at: Option<String>,
    pub deleted: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ChatCreated {
    pub chat: ChatSnapshot,
    #[serde(default)]
    pub cursors: Cursors,
}
chat_event!(ChatCreated, "chat.created", Exchange::Chat);

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ChatUpdated {
    pub chat: ChatSnapshot,
    #[serde(default)]
    pub cursors: Cursors,
}
chat_event!(ChatUpdated, "chat.updated", Exchange::Chat);

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MemberAdded {
    pub chat_id: String,
    pub user_id: String,
    pub by_user_id: String,
    /// Members after the change (plus the removed user, for a removal).
    #[serde(default)]
    pub member_ids: Vec<String>,
    #[serde(default)]
    pub cursors: Cursors,
}
chat_event!(MemberAdded, "chat.member.added", Exchange::Chat);

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MemberRemoved {
    pub chat_id: String,
    pub user_id: String,
    pub by_user_id: String,
    /// Members after the change (plus the removed user, for a removal).
    #[serde(default)]
    pub member_ids: Vec<String>,
    #[serde(default)]
    pub cursors: Cursors,
}
chat_event!(MemberRemoved, "chat.member.removed", Exchange::Chat);

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MessageCreated {
    pub chat_id: String,
    pub member_ids: Vec<String>,
    pub message: MessageSnapshot,
    #[serde(default)]
    pub cursors: Cursors,
}
chat_event!(MessageCreated, "chat.message.created", Exchange::Chat);

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MessageUpdated {
    pub chat_id: String,
    pub member_ids: Vec<String>,
    pub message: MessageSnapshot,
    #[serde(default)]
    pub cursors: Cursors,
}
chat_event!(MessageUpdated, "chat.message.updated", Exchange::Chat);

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MessageDeleted {
    pub chat_id: String,
    pub member_ids: Vec<String>,
    pub message: MessageSnapshot,
    #[serde(default)]
    pub cursors: Cursors,
}
chat_event!(MessageDeleted, "chat.message.deleted", Exchange::Chat);

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ReadMarked {
    pub chat_id: String,
    pub user_id: String,
    pub message_id: String,
    #[serde(default)]
    pub member_ids: Vec<String>,
    #[serde(default)]
    pub cursors: Cursors,
}
chat_event!(ReadMarked, "chat.read", Exchange::Chat);

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Typing {
    pub chat_id: String,
    pub user_id: String,
    pub state: String,
    pub member_ids: Vec<String>,
}
chat_event!(Typing, "typing", Exchange::Realtime);

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Presence {
    pub user_id: String,
    pub online: bool,
    pub contact_ids: Vec<String>,
}
chat_event!(Presence, "presence", Exchange::Realtime);
