//! Chat operations. Each write: check membership/role, write MongoDB, then
//! record the event: the frame goes into every recipient's timeline (which
//! assigns the resume cursors) and the event, with those cursors, into the
//! outbox.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use broker::events::chat::{
    ChatCreated, ChatUpdated, Cursors, MemberAdded, MemberRemoved, MessageCreated, MessageDeleted,
    MessageUpdated, ReadMarked, Typing,
};
use broker::{Envelope, Event, EventPayload, Outbox, Publisher};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::value::RawValue;
use shared::cache::{Cache, Lookup};
use shared::page::{self, Place};
use shared::ratelimit::{Exhausted, FailureLimiter};
use shared::ApiError;
use uuid::Uuid;

use super::views::{chat_view, snapshot, unknown_profile, ChatView, MessageView};
use crate::events::frames;
use crate::storage::blocks::{Blocks, GroupAdds};
use crate::storage::chats::{ChatDoc, Chats};
use crate::storage::messages::{InsertError, MessageDoc, Messages};
use crate::storage::new_id;
use crate::storage::timeline::Timeline;
use crate::storage::users::Users;

#[derive(Clone)]
pub struct ChatService {
    pub chats: Chats,
    pub messages: Messages,
    pub users: Users,
    pub blocks: Blocks,
    pub timeline: Timeline,
    pub outbox: Outbox,
    pub publisher: Publisher,
    /// Message sends, edits and deletes together, per user.
    pub message_limit: FailureLimiter,
    /// Group creations and member additions together, per user.
    pub group_limit: FailureLimiter,
    pub cache: Cache,
    pub cache_ttl: Duration,
}

/// The longest a cached "no such chat" lives: ids that do not exist are
/// unbounded in number, so a scan of random ids must not pile up entries.
const NEGATIVE_TTL: Duration = Duration::from_secs(30);

/// Takes one attempt from `limiter` for `user`. It stays counted whatever
/// the request's outcome (a refusal, a no-op, a retried send): each costs
/// the database work the limit is there to bound.
async fn take(limiter: &FailureLimiter, user: &str) -> Result<(), ApiError> {
    match limiter.acquire(user).await {
        Ok(_kept) => Ok(()),
        Err(Exhausted { retry_after_secs }) => Err(ApiError::RateLimited { retry_after_secs }),
    }
}

/// The first page of history is cached at this size; smaller pages are cut
/// from it.
const FIRST_PAGE: i64 = 50;

/// A group holds at most this many members, its creator included.
const MAX_GROUP_MEMBERS: usize = 256;

/// Tries of a group change that keeps meeting someone else's change.
const CHANGE_ATTEMPTS: usize = 20;

/// Cache generations (see [`Cache::get_checked`]): one per user (their chat
/// list), one per chat (the chat document and its first page), one per
/// chat's membership (who may post; bumped by every change but messages and
/// read marks, so the send path stays cached while a chat is busy), one for
/// all profiles (they are embedded in both and change rarely).
fn user_generation(user: &str) -> String {
    format!("u:{user}")
}

fn chat_generation(chat: &str) -> String {
    format!("c:{chat}")
}

pub(super) fn members_generation(chat: &str) -> String {
    format!("m:{chat}")
}

/// What a change of a chat's documents or membership makes stale.
fn chat_change_generations<S: AsRef<str>>(chat_id: &str, recipients: &[S]) -> Vec<String> {
    let mut generations = vec![chat_generation(chat_id), members_generation(chat_id)];
    generations.extend(recipients.iter().map(|u| user_generation(u.as_ref())));
    generations
}

/// What a new, edited or deleted message, or a moved read mark, makes stale.
fn message_generations<S: AsRef<str>>(chat_id: &str, recipients: &[S]) -> Vec<String> {
    let mut generations = vec![chat_generation(chat_id)];
    generations.extend(recipients.iter().map(|u| user_generation(u.as_ref())));
    generations
}

/// The generations that the change `event` announces makes stale: what its
/// writer bumps after the write, redone by the outbox sweep when the writer
/// may have died first (see `broker::outbox::Recovery`).
pub fn stale_generations(event: &Event) -> Vec<String> {
    let with = |members: &[String], user: &str| {
        let mut all = members.to_vec();
        all.push(user.to_owned());
        all
    };
    match event {
        Event::ChatCreated(e) => chat_change_generations(&e.chat.id, &e.chat.member_ids),
        Event::ChatUpdated(e) => chat_change_generations(&e.chat.id, &e.chat.member_ids),
        Event::MemberAdded(e) => {
            chat_change_generations(&e.chat_id, &with(&e.member_ids, &e.user_id))
        }
        Event::MemberRemoved(e) => {
            chat_change_generations(&e.chat_id, &with(&e.member_ids, &e.user_id))
        }
        Event::MessageCreated(e) => message_generations(&e.chat_id, &e.member_ids),
        Event::MessageUpdated(e) => message_generations(&e.chat_id, &e.member_ids),
        Event::MessageDeleted(e) => message_generations(&e.chat_id, &e.member_ids),
        Event::ReadMarked(e) => message_generations(&e.chat_id, &e.member_ids),
        _ => Vec::new(),
    }
}

/// Who belongs to a chat and who runs it: all that sending, editing,
/// deleting, read marks, typing and history need to know.
/// Cached, so the block check of a 1:1 send costs nothing more: blocking
/// bumps the chat's membership generation.
#[derive(Serialize, serde::Deserialize)]
struct Membership {
    is_group: bool,
    member_ids: Vec<String>,
    admin_ids: Vec<String>,
    /// Members of a 1:1 chat whom the other member blocked: they may not post.
    #[serde(default)]
    silenced: Vec<String>,
}

impl Membership {
    fn is_admin(&self, user: &str) -> bool {
        self.admin_ids.iter().any(|a| a == user)
    }

    fn may_post(&self, user: &str) -> Result<(), ApiError> {
        if self.silenced.iter().any(|s| s == user) {
            return Err(ApiError::Forbidden);
        }
        Ok(())
    }
}

pub const PROFILES_GENERATION: &str = "p";

/// Result of removing a member.
pub enum Removal {
    /// An admin removed someone: the chat as it is now.
    Removed(Box<ChatView>),
    /// The caller left.
    Left,
}

fn check_content(content: &str) -> Result<(), ApiError> {
    let len = content.trim().chars().count();
    if (1..=4000).contains(&len) {
        Ok(())
    } else {
        Err(ApiError::validation(
            "content",
            "must be 1-4000 characters after trimming",
        ))
    }
}

fn check_client_msg_id(id: Option<&str>) -> Result<(), ApiError> {
    match id {
        Some(c) if c.is_empty() || c.chars().count() > 64 || c.chars().any(char::is_control) => {
            Err(ApiError::validation(
                "clientMsgId",
                "must be 1-64 characters without control characters",
            ))
        }
        _ => Ok(()),
    }
}

/// Only a group's admins rename it and add to it.
fn admin_of(chat: &ChatDoc, user: &str) -> Result<(), ApiError> {
    if chat.is_group && chat.is_admin(user) {
        Ok(())
    } else {
        Err(ApiError::Forbidden)
    }
}

fn check_name(name: &str) -> Result<String, ApiError> {
    let trimmed = name.trim();
    let len = trimmed.chars().count();
    if (1..=100).contains(&len) && shared::text::is_clean_name(trimmed) {
        Ok(trimmed.to_owned())
    } else {
        Err(ApiError::validation(
            "name",
            "must be 1-100 characters without control or invisible formatting characters",
        ))
    }
}

fn outbox_error(e: broker::outbox::OutboxError) -> ApiError {
    match e {
        broker::outbox::OutboxError::Store(db) => ApiError::from(db),
        other => ApiError::Unexpected(other.into()),
    }
}

fn insert_error(e: InsertError) -> ApiError {
    match e {
        InsertError::Store(db) => ApiError::from(db),
        other => ApiError::Unexpected(other.into()),
    }
}

impl ChatService {
    /// Cache-aside read of `kind:id`, valid while `generations` stand still.
    async fn cached<T, F>(
        &self,
        kind: &'static str,
        id: &str,
        generations: &[String],
        compute: F,
    ) -> Result<T, ApiError>
    where
        T: Serialize + DeserializeOwned,
        F: Future<Output = Result<T, ApiError>>,
    {
        self.cached_for(kind, id, generations, compute, |_| self.cache_ttl)
            .await
    }

    /// As [`Self::cached`] for a lookup by id: "not found" lives at most
    /// [`NEGATIVE_TTL`].
    async fn cached_lookup<T, F>(
        &self,
        kind: &'static str,
        id: &str,
        generations: &[String],
        compute: F,
    ) -> Result<Option<T>, ApiError>
    where
        T: Serialize + DeserializeOwned,
        F: Future<Output = Result<Option<T>, ApiError>>,
    {
        self.cached_for(kind, id, generations, compute, |found| match found {
            Some(_) => self.cache_ttl,
            None => self.cache_ttl.min(NEGATIVE_TTL),
        })
        .await
    }

    async fn cached_for<T, F>(
        &self,
        kind: &'static str,
        id: &str,
        generations: &[String],
        compute: F,
        ttl: impl Fn(&T) -> Duration,
    ) -> Result<T, ApiError>
    where
        T: Serialize + DeserializeOwned,
        F: Future<Output = Result<T, ApiError>>,
    {
        match self.cache.get_checked(kind, id, generations).await {
            Lookup::Hit(value) => Ok(value),
            Lookup::Miss(seen) => {
                let value = compute.await?;
                self.cache
                    .put_checked(kind, id, seen, &value, ttl(&value))
                    .await;
                Ok(value)
            }
        }
    }

    /// The chat if `user` is a member, else 404 (whether or not it exists).
    async fn member_chat(&self, chat_id: &str, user: &str) -> Result<ChatDoc, ApiError> {
        let chat: Option<ChatDoc> = self
            .cached_lookup("chat", chat_id, &[chat_generation(chat_id)], async {
                Ok(self.chats.get(chat_id).await?)
            })
            .await?;
        chat.filter(|c| c.member_ids.iter().any(|m| m == user))
            .ok_or(ApiError::NotFound)
    }

    /// The chat's membership if `user` is a member, else 404.
    async fn membership(&self, chat_id: &str, user: &str) -> Result<Membership, ApiError> {
        let members: Option<Membership> = self
            .cached_lookup("members", chat_id, &[members_generation(chat_id)], async {
                let Some(c) = self.chats.get(chat_id).await? else {
                    return Ok(None);
                };
                // Read after the chat: a block written before this read is
                // seen, one written after bumps the generation read before.
                let silenced = if c.is_group {
                    Vec::new()
                } else {
                    self.silenced(&c.member_ids).await?
                };
                Ok(Some(Membership {
                    is_group: c.is_group,
                    member_ids: c.member_ids,
                    admin_ids: c.admin_ids,
                    silenced,
                }))
            })
            .await?;
        members
            .filter(|m| m.member_ids.iter().any(|id| id == user))
            .ok_or(ApiError::NotFound)
    }

    /// Of a 1:1 chat's two members, those the other one blocked.
    async fn silenced(&self, members: &[String]) -> Result<Vec<String>, ApiError> {
        let [a, b] = members else {
            return Ok(Vec::new());
        };
        let mut silenced = Vec::new();
        for blocker in self.blocks.who_blocked_in_pair(a, b).await? {
            silenced.push(if &blocker == a { b.clone() } else { a.clone() });
        }
        Ok(silenced)
    }

    /// 403 unless `adder` may add each of `targets` to a group: none of them
    /// blocked `adder`, and each one's `groupAdds` lets `adder` in.
    async fn check_group_adds(&self, adder: &str, targets: &[String]) -> Result<(), ApiError> {
        if !self.blocks.who_blocked(targets, adder).await?.is_empty() {
            return Err(ApiError::Forbidden);
        }
        let mut contacts_only = Vec::new();
        for (target, setting) in self.blocks.restricted(targets).await? {
            match setting {
                GroupAdds::Everyone => {}
                GroupAdds::Nobody => return Err(ApiError::Forbidden),
                GroupAdds::Contacts => contacts_only.push(target),
            }
        }
        let partners = self.chats.direct_partners(adder, &contacts_only).await?;
        if contacts_only.iter().any(|t| !partners.contains(t)) {
            return Err(ApiError::Forbidden);
        }
        Ok(())
    }

    async fn profiles(
        &self,
        ids: &[String],
    ) -> Result<HashMap<String, broker::events::chat::ProfileSnapshot>, ApiError> {
        Ok(self.users.profiles(ids).await?)
    }

    async fn view(&self, chat: &ChatDoc, user: &str) -> Result<ChatView, ApiError> {
        let mut views = self.views(std::slice::from_ref(chat), user).await?;
        views.pop().ok_or(ApiError::NotFound)
    }

    /// Chat objects for `user`: profiles, latest messages and unread counts.
    pub async fn views(&self, chats: &[ChatDoc], user: &str) -> Result<Vec<ChatView>, ApiError> {
        let mut ids: Vec<String> = chats
            .iter()
            .flat_map(|c| c.member_ids.iter().cloned())
            .collect();
        let latest_ids: Vec<String> = chats
            .iter()
            .filter_map(|c| c.latest_message_id.clone())
            .collect();
        let latest_docs = self.messages.by_ids(&latest_ids).await?;
        ids.extend(latest_docs.iter().map(|m| m.sender_id.clone()));
        ids.sort();
        ids.dedup();
        let profiles = self.users.profiles_fresh(&ids).await?;
        let latest: HashMap<&str, &MessageDoc> =
            latest_docs.iter().map(|m| (m.id.as_str(), m)).collect();
        let mut out = Vec::with_capacity(chats.len());
        for chat in chats {
            let latest_view = chat
                .latest_message_id
                .as_deref()
                .and_then(|id| latest.get(id))
                .map(|m| {
                    MessageView::from(&snapshot(
                        m,
                        profiles
                            .get(&m.sender_id)
                            .cloned()
                            .unwrap_or_else(|| unknown_profile(&m.sender_id)),
                    ))
                });
            let unread = match &chat.latest_message_id {
                None => 0,
                Some(_) => {
                    let marker = self.chats.read_marker(&chat.id, user).await?;
                    self.messages
                        .unread_count(&chat.id, user, marker.as_deref())
                        .await?
                }
            };
            out.push(chat_view(chat, &profiles, latest_view, unread));
        }
        Ok(out)
    }

    /// The caller's chat list as JSON. Cached as the response body itself:
    /// a warm read is one Redis round trip and no (de)serialisation of the
    /// chats, only a scan of the stored JSON.
    pub async fn list(&self, user: &str) -> Result<Box<RawValue>, ApiError> {
        let generations = [user_generation(user), PROFILES_GENERATION.to_owned()];
        self.cached("chats", user, &generations, async {
            let chats = self.chats.list_for_user(user).await?;
            let views = self.views(&chats, user).await?;
            serde_json::value::to_raw_value(&views).map_err(|e| ApiError::Unexpected(e.into()))
        })
        .await
    }

    /// One page of the caller's chat list (uncached: the first page of the
    /// whole list is [`Self::list`]) and the cursor of the next.
    pub async fn list_page(
        &self,
        user: &str,
        before: Option<&Place>,
        limit: usize,
    ) -> Result<(Vec<ChatView>, Option<String>), ApiError> {
        let found = self
            .chats
            .page_for_user(user, before, i64::try_from(limit).unwrap_or(100) + 1)
            .await?;
        let (chats, next) = page::split(found, limit, |c| Place::new(c.last_activity_at, &c.id));
        Ok((self.views(&chats, user).await?, next))
    }

    pub async fn get(&self, user: &str, chat_id: &str) -> Result<ChatView, ApiError> {
        let chat = self.member_chat(chat_id, user).await?;
        self.view(&chat, user).await
    }

    pub async fn direct(
        &self,
        user: &str,
        other: &str,
        rid: &str,
    ) -> Result<(ChatView, bool), ApiError> {
        if !self.users.exists(other).await? {
            return Err(ApiError::validation("userId", "no such user"));
        }
        if user == other {
            return Err(ApiError::validation("userId", "must be another user"));
        }
        // Refused whether or not the chat exists: a blocked user has no way
        // back into the conversation through this endpoint.
        if self.blocks.has_blocked(other, user).await? {
            return Err(ApiError::Forbidden);
        }
        let (chat, created) = match self.chats.find_direct(user, other).await? {
            Some(chat) => (chat, false),
            None => {
                self.store_new_chat(Chats::new_direct(user, other, new_id()), rid)
                    .await?
            }
        };
        Ok((self.view(&chat, user).await?, created))
    }

    pub async fn create_group(
        &self,
        user: &str,
        name: &str,
        member_ids: Vec<String>,
        rid: &str,
    ) -> Result<ChatView, ApiError> {
        let name = check_name(name)?;
        let mut members: Vec<String> = member_ids.into_iter().filter(|m| m != user).collect();
        members.sort();
        members.dedup();
        if members.is_empty() || members.len() > 255 {
            return Err(ApiError::validation(
                "memberIds",
                "a group has 2-256 members including you",
            ));
        }
        take(&self.group_limit, user).await?;
        let known = self.profiles(&members).await?;
        if let Some(unknown) = members.iter().find(|m| !known.contains_key(*m)) {
            return Err(ApiError::validation(
                "memberIds",
                format!("no such user: {unknown}"),
            ));
        }
        self.check_group_adds(user, &members).await?;
        let (chat, _) = self
            .store_new_chat(Chats::new_group(new_id(), name, user, members), rid)
            .await?;
        self.view(&chat, user).await
    }

    async fn admin_chat(&self, chat_id: &str, user: &str) -> Result<ChatDoc, ApiError> {
        let chat = self.member_chat(chat_id, user).await?;
        admin_of(&chat, user)?;
        Ok(chat)
    }

    pub async fn rename(
        &self,
        user: &str,
        chat_id: &str,
        name: &str,
        rid: &str,
    ) -> Result<ChatView, ApiError> {
        let name = check_name(name)?;
        let (chat, _) = self
            .change_group(
                chat_id,
                user,
                rid,
                |chat| {
                    admin_of(chat, user)?;
                    let mut after = chat.clone();
                    after.name = Some(name.clone());
                    Ok(Some(after))
                },
                |after, cursors| ChatUpdated {
                    chat: after.snapshot(),
                    cursors,
                },
                Event::ChatUpdated,
            )
            .await?;
        self.view(&chat, user).await
    }

    pub async fn add_member(
        &self,
        user: &str,
        chat_id: &str,
        new_member: &str,
        rid: &str,
    ) -> Result<ChatView, ApiError> {
        take(&self.group_limit, user).await?;
        let before = self.admin_chat(chat_id, user).await?;
        if before.member_ids.iter().any(|m| m == new_member) {
            return self.view(&before, user).await;
        }
        if !self.users.exists(new_member).await? {
            return Err(ApiError::validation("userId", "no such user"));
        }
        self.check_group_adds(user, std::slice::from_ref(&new_member.to_owned()))
            .await?;
        let (chat, _) = self
            .change_group(
                chat_id,
                user,
                rid,
                |chat| {
                    admin_of(chat, user)?;
                    if chat.member_ids.iter().any(|m| m == new_member) {
                        return Ok(None);
                    }
                    if chat.member_ids.len() >= MAX_GROUP_MEMBERS {
                        return Err(ApiError::validation(
                            "userId",
                            "the group is full (256 members)",
                        ));
                    }
                    let mut after = chat.clone();
                    after.member_ids.push(new_member.to_owned());
                    Ok(Some(after))
                },
                |after, cursors| MemberAdded {
                    chat_id: after.id.clone(),
                    user_id: new_member.to_owned(),
                    by_user_id: user.to_owned(),
                    member_ids: after.member_ids.clone(),
                    cursors,
                },
                Event::MemberAdded,
            )
            .await?;
        self.view(&chat, user).await
    }

    pub async fn remove_member(
        &self,
        user: &str,
        chat_id: &str,
        target: &str,
        rid: &str,
    ) -> Result<Removal, ApiError> {
        let leaving = user == target;
        let (after, _) = self
            .change_group(
                chat_id,
                user,
                rid,
                |chat| {
                    if !chat.is_group {
                        return Err(ApiError::validation(
                            "userId",
                            "nobody leaves a direct chat",
                        ));
                    }
                    if !leaving && !chat.is_admin(user) {
                        return Err(ApiError::Forbidden);
                    }
                    if !chat.member_ids.iter().any(|m| m == target) {
                        return Err(ApiError::NotFound);
                    }
                    let mut after = chat.clone();
                    after.member_ids.retain(|m| m != target);
                    after.admin_ids.retain(|m| m != target);
                    Ok(Some(after))
                },
                // The removed user hears of the removal itself, then nothing more.
                |after, cursors| MemberRemoved {
                    chat_id: after.id.clone(),
                    user_id: target.to_owned(),
                    by_user_id: user.to_owned(),
                    member_ids: after
                        .member_ids
                        .iter()
                        .cloned()
                        .chain(std::iter::once(target.to_owned()))
                        .collect(),
                    cursors,
                },
                Event::MemberRemoved,
            )
            .await?;
        if leaving {
            Ok(Removal::Left)
        } else {
            Ok(Removal::Removed(Box::new(self.view(&after, user).await?)))
        }
    }

    /// Changes a chat `user` is a member of, with its event in the same
    /// write, by optimistic concurrency: `next` makes the chat's next state
    /// from its current one (`None`: nothing to change), and that state is
    /// stored only if the chat is still at the version it was made from.
    /// When someone changed it in between, `next` runs again on a fresh
    /// read. Returns the chat as it now is and whether this call changed it.
    async fn change_group<E, N, V>(
        &self,
        chat_id: &str,
        user: &str,
        rid: &str,
        next: N,
        event: V,
        wrap: fn(E) -> Event,
    ) -> Result<(ChatDoc, bool), ApiError>
    where
        E: EventPayload,
        N: Fn(&ChatDoc) -> Result<Option<ChatDoc>, ApiError>,
        V: Fn(&ChatDoc, Cursors) -> E,
    {
        let mut current = self.member_chat(chat_id, user).await?;
        for _ in 0..CHANGE_ATTEMPTS {
            let Some(mut after) = next(&current)? else {
                return Ok((current, false));
            };
            after.version = current.version + 1;
            after.updated_at = mongodb::bson::DateTime::now();
            let (stored, recipients) = self
                .write_with_event(
                    chat_id,
                    rid,
                    Chats::COLLECTION,
                    |cursors| event(&after, cursors),
                    wrap,
                    |entry| async {
                        let stored = self.chats.change(&after, entry).await?;
                        Ok((stored, stored.then(|| after.id.clone())))
                    },
                )
                .await?;
            if stored {
                self.bump_for_chat(chat_id, &recipients).await;
                return Ok((after, true));
            }
            // Someone else's change came first (or the cached copy was old).
            current = self
                .chats
                .get(chat_id)
                .await?
                .filter(|c| c.member_ids.iter().any(|m| m == user))
                .ok_or(ApiError::NotFound)?;
        }
        Err(ApiError::Conflict(
            "the group kept changing meanwhile; try again".into(),
        ))
    }

    pub async fn history(
        &self,
        user: &str,
        chat_id: &str,
        before: Option<&str>,
        limit: i64,
    ) -> Result<(Vec<MessageView>, bool), ApiError> {
        self.membership(chat_id, user).await?;
        if before.is_some() || limit > FIRST_PAGE {
            return self.page(chat_id, before, limit).await;
        }
        let generations = [chat_generation(chat_id), PROFILES_GENERATION.to_owned()];
        let (mut page, has_more) = self
            .cached(
                "page",
                chat_id,
                &generations,
                self.page(chat_id, None, FIRST_PAGE),
            )
            .await?;
        let has_more = has_more || page.len() as i64 > limit;
        page.truncate(usize::try_from(limit).unwrap_or(0));
        Ok((page, has_more))
    }

    async fn page(
        &self,
        chat_id: &str,
        before: Option<&str>,
        limit: i64,
    ) -> Result<(Vec<MessageView>, bool), ApiError> {
        let (page, has_more) = self.messages.page(chat_id, before, limit).await?;
        let mut senders: Vec<String> = page.iter().map(|m| m.sender_id.clone()).collect();
        senders.sort();
        senders.dedup();
        let profiles = self.users.profiles_fresh(&senders).await?;
        let views = page
            .iter()
            .map(|m| {
                MessageView::from(&snapshot(
                    m,
                    profiles
                        .get(&m.sender_id)
                        .cloned()
                        .unwrap_or_else(|| unknown_profile(&m.sender_id)),
                ))
            })
            .collect();
        Ok((views, has_more))
    }

    /// Sends a message; a repeated `clientMsgId` returns the original
    /// (`created` false) and records nothing.
    pub async fn send(
        &self,
        user: &str,
        chat_id: &str,
        content: &str,
        client_msg_id: Option<&str>,
        rid: &str,
    ) -> Result<(MessageView, bool), ApiError> {
        check_content(content)?;
        check_client_msg_id(client_msg_id)?;
        // A retry with a known clientMsgId counts too: it costs an insert
        // attempt and a read, so an uncounted one would be an unmetered
        // write path. An honest client retries a handful of pending sends.
        take(&self.message_limit, user).await?;
        let chat = self.membership(chat_id, user).await?;
        chat.may_post(user)?;
        let id = new_id();
        let doc = MessageDoc {
            idem_key: Messages::idem_key(chat_id, user, client_msg_id, &id),
            id,
            chat_id: chat_id.to_owned(),
            sender_id: user.to_owned(),
            content: content.to_owned(),
            client_msg_id: client_msg_id.map(str::to_owned),
            created_at: mongodb::bson::DateTime::now(),
            edited_at: None,
            deleted: false,
        };
        let sender = self
            .profiles(&[user.to_owned()])
            .await?
            .remove(user)
            .unwrap_or_else(|| unknown_profile(user));
        let snap = snapshot(&doc, sender.clone());
        let event = |cursors| MessageCreated {
            chat_id: chat_id.to_owned(),
            member_ids: chat.member_ids.clone(),
            message: snap.clone(),
            cursors,
        };
        let ((message, created), recipients) = self
            .write_with_event(
                chat_id,
                rid,
                Messages::COLLECTION,
                event,
                Event::MessageCreated,
                |entry| async {
                    // On a retry the first attempt stored the message and its event.
                    let (message, created) = self.messages.insert(doc, entry).await?;
                    let carrier = created.then(|| message.id.clone());
                    Ok(((message, created), carrier))
                },
            )
            .await?;
        // Also on a retry, whose first attempt may have stopped before it.
        self.chats.touch(chat_id, &message.id).await?;
        self.bump_for_message(chat_id, &recipients).await;
        Ok((MessageView::from(&snapshot(&message, sender)), created))
    }

    /// Writes a change and its event as one document write (see
    /// `broker::outbox`). The frames go into the timelines first, so that the
    /// event can carry their cursors; `write` stores the staged event in the
    /// changed document of `collection` and says which document carries it
    /// (`None`: it stored nothing new, and the frames are taken back).
    /// Returns what `write` returned and the frames' recipients.
    async fn write_with_event<E, T, W, Fut>(
        &self,
        chat_id: &str,
        rid: &str,
        collection: &str,
        event: impl Fn(Cursors) -> E,
        wrap: fn(E) -> Event,
        write: W,
    ) -> Result<(T, Vec<String>), ApiError>
    where
        E: EventPayload,
        W: FnOnce(mongodb::bson::Document) -> Fut,
        Fut: Future<Output = Result<(T, Option<String>), InsertError>>,
    {
        let event_id = broker::outbox::new_event_id();
        let (cursors, recipients) = self
            .append_frames(&wrap(event(Cursors::new())), event_id)
            .await;
        let staged = self
            .outbox
            .stage_as(event_id, chat_id, Some(rid), event(cursors.clone()))
            .map_err(outbox_error)?
            .for_recipients(&recipients);
        let entry = staged.entry().map_err(outbox_error)?;
        let (out, carrier) = match write(entry).await {
            Ok(written) => written,
            Err(e) => {
                self.timeline.retract(&cursors).await;
                return Err(insert_error(e));
            }
        };
        match carrier {
            Some(doc_id) => {
                broker::outbox::failpoint("chat.event.stored");
                self.outbox.committed(staged, collection, &doc_id);
            }
            None => self.timeline.retract(&cursors).await,
        }
        Ok((out, recipients))
    }

    /// A new or changed chat: its documents and the recipients' chat lists are stale.
    async fn bump_for_chat(&self, chat_id: &str, recipients: &[String]) {
        self.cache
            .bump(&chat_change_generations(chat_id, recipients))
            .await;
    }

    /// Stores a new chat with its `chat.created` event in one write:
    /// `(chat, created)`.
    async fn store_new_chat(&self, chat: ChatDoc, rid: &str) -> Result<(ChatDoc, bool), ApiError> {
        let snap = chat.snapshot();
        let id = chat.id.clone();
        let event = |cursors| ChatCreated {
            chat: snap.clone(),
            cursors,
        };
        let ((chat, created), recipients) = self
            .write_with_event(
                &id,
                rid,
                Chats::COLLECTION,
                event,
                Event::ChatCreated,
                |entry| async {
                    let (chat, created) = self.chats.insert(chat, entry).await?;
                    let carrier = created.then(|| chat.id.clone());
                    Ok(((chat, created), carrier))
                },
            )
            .await?;
        if created {
            self.bump_for_chat(&chat.id, &recipients).await;
        }
        Ok((chat, created))
    }

    /// A message changed: the chat and the recipients' chat lists are stale.
    async fn bump_for_message(&self, chat_id: &str, recipients: &[String]) {
        self.cache
            .bump(&message_generations(chat_id, recipients))
            .await;
    }

    /// Appends the frame of `draft` (event `event_id` without cursors) to
    /// its recipients' timelines: their cursors (empty when Redis did not
    /// answer) and the recipients.
    async fn append_frames(&self, draft: &Event, event_id: Uuid) -> (Cursors, Vec<String>) {
        let Some(frame) = frames::frame_for(draft, &self.users).await else {
            return (Cursors::new(), Vec::new());
        };
        let cursors = self
            .timeline
            .append(
                redis::pipe(),
                &frame.recipients,
                &frame.body.to_string(),
                event_id,
            )
            .await
            .unwrap_or_default();
        (cursors, frame.recipients)
    }

    pub async fn edit(
        &self,
        user: &str,
        chat_id: &str,
        message_id: &str,
        content: &str,
        rid: &str,
    ) -> Result<MessageView, ApiError> {
        check_content(content)?;
        take(&self.message_limit, user).await?;
        let chat = self.membership(chat_id, user).await?;
        // New text in the chat is a post, whichever message carries it.
        chat.may_post(user)?;
        let existing = self
            .messages
            .get(chat_id, message_id)
            .await?
            .ok_or(ApiError::NotFound)?;
        if existing.sender_id != user {
            return Err(ApiError::Forbidden);
        }
        if existing.deleted {
            return Err(ApiError::Conflict(
                "a deleted message cannot be edited".into(),
            ));
        }
        let mut after = existing;
        after.content = content.to_owned();
        after.edited_at = Some(mongodb::bson::DateTime::now());
        let edited_at = after.edited_at;
        self.changed(chat_id, &chat, after, rid, true, |entry| async move {
            let stored = self
                .messages
                .edit(chat_id, message_id, user, content, edited_at, entry)
                .await?;
            Ok(stored.is_some())
        })
        .await
    }

    pub async fn delete(
        &self,
        user: &str,
        chat_id: &str,
        message_id: &str,
        rid: &str,
    ) -> Result<MessageView, ApiError> {
        take(&self.message_limit, user).await?;
        let chat = self.membership(chat_id, user).await?;
        let existing = self
            .messages
            .get(chat_id, message_id)
            .await?
            .ok_or(ApiError::NotFound)?;
        // A group admin may delete anyone's message; in a 1:1 chat (whose
        // two members are both recorded as admins) only the sender may.
        if existing.sender_id != user && !(chat.is_group && chat.is_admin(user)) {
            return Err(ApiError::Forbidden);
        }
        let mut after = existing;
        after.content = String::new();
        after.deleted = true;
        self.changed(chat_id, &chat, after, rid, false, |entry| async move {
            Ok(self
                .messages
                .delete(chat_id, message_id, entry)
                .await?
                .is_some())
        })
        .await
    }

    /// Stores `after` (the message as the change leaves it) through
    /// `write` together with its `message.updated` or `message.deleted`
    /// event; `write` says whether the message was there to change.
    async fn changed<W, Fut>(
        &self,
        chat_id: &str,
        chat: &Membership,
        after: MessageDoc,
        rid: &str,
        edited: bool,
        write: W,
    ) -> Result<MessageView, ApiError>
    where
        W: FnOnce(mongodb::bson::Document) -> Fut,
        Fut: Future<Output = Result<bool, InsertError>>,
    {
        let sender = self
            .profiles(std::slice::from_ref(&after.sender_id))
            .await?
            .remove(&after.sender_id)
            .unwrap_or_else(|| unknown_profile(&after.sender_id));
        let snap = snapshot(&after, sender);
        let members = chat.member_ids.clone();
        let id = after.id.clone();
        let stored = |entry| {
            let written = write(entry);
            async move {
                let found = written.await?;
                Ok((found, found.then_some(id)))
            }
        };
        let (found, recipients) = if edited {
            let event = |cursors| MessageUpdated {
                chat_id: chat_id.to_owned(),
                member_ids: members.clone(),
                message: snap.clone(),
                cursors,
            };
            self.write_with_event(
                chat_id,
                rid,
                Messages::COLLECTION,
                event,
                Event::MessageUpdated,
                stored,
            )
            .await?
        } else {
            let event = |cursors| MessageDeleted {
                chat_id: chat_id.to_owned(),
                member_ids: members.clone(),
                message: snap.clone(),
                cursors,
            };
            self.write_with_event(
                chat_id,
                rid,
                Messages::COLLECTION,
                event,
                Event::MessageDeleted,
                stored,
            )
            .await?
        };
        if !found {
            return Err(ApiError::NotFound);
        }
        self.bump_for_message(chat_id, &recipients).await;
        Ok(MessageView::from(&snap))
    }

    pub async fn mark_read(
        &self,
        user: &str,
        chat_id: &str,
        message_id: &str,
        rid: &str,
    ) -> Result<(), ApiError> {
        let chat = self.membership(chat_id, user).await?;
        self.messages
            .get(chat_id, message_id)
            .await?
            .ok_or(ApiError::NotFound)?;
        let event = |cursors| ReadMarked {
            chat_id: chat_id.to_owned(),
            user_id: user.to_owned(),
            message_id: message_id.to_owned(),
            member_ids: chat.member_ids.clone(),
            cursors,
        };
        let (moved, recipients) = self
            .write_with_event(
                chat_id,
                rid,
                Chats::MARKERS,
                event,
                Event::ReadMarked,
                |entry| async {
                    let moved = self
                        .chats
                        .set_read(chat_id, user, message_id, entry)
                        .await?;
                    Ok((moved, moved.then(|| Chats::marker_key(chat_id, user))))
                },
            )
            .await?;
        if moved {
            self.bump_for_message(chat_id, &recipients).await;
        }
        Ok(())
    }

    /// Live only: published straight to `chat.realtime`, never stored.
    pub async fn typing(&self, user: &str, chat_id: &str, state: &str) -> Result<(), ApiError> {
        if state != "start" && state != "stop" {
            return Err(ApiError::validation("state", "must be start or stop"));
        }
        let chat = self.membership(chat_id, user).await?;
        if chat.may_post(user).is_err() {
            // The blocker does not see them type; nothing to tell the typist.
            return Ok(());
        }
        let others: Vec<String> = chat
            .member_ids
            .iter()
            .filter(|m| *m != user)
            .cloned()
            .collect();
        let event = Typing {
            chat_id: chat_id.to_owned(),
            user_id: user.to_owned(),
            state: state.to_owned(),
            member_ids: chat.member_ids,
        };
        if let Err(e) = self
            .publisher
            .publish_to(&Envelope::new(crate::SERVICE, None, event), &others)
            .await
        {
            tracing::debug!(error = %e, "typing not relayed");
        }
        Ok(())
    }
}
