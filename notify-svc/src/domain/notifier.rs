//! Who is notified of what. Every effect is keyed by the event id (a
//! notification `<event>:<user>`, a digest item `<user>:<message>`, a push
//! delivery `<event>:<subscription>`, a mail job `security-<event>` or
//! `verify-<event>`), so an event handled twice (redelivery, retry after a
//! partial failure, a crash before the ack) has each effect once.
//!
//! Mail goes only to verified addresses, so that nobody can have us mail
//! an address they do not own; the one exception is the mail that verifies
//! it.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use anyhow::anyhow;
use broker::consumer::HandlerError;
use broker::events::auth::EmailVerificationRequested;
use broker::events::chat::{ChatSnapshot, MessageCreated};
use futures_util::future::join_all;
use mongodb::bson::DateTime;
use tokio::sync::Notify;

use super::mail::{self, preview};
use super::push::{Outcome, PushSender, SubscriptionKeys};
use crate::storage::digests::{DigestItem, Digests};
use crate::storage::mail_jobs::MailJobs;
use crate::storage::notifications::{NotificationDoc, Notifications};
use crate::storage::preferences::PreferencesStore;
use crate::storage::replica::{ChatDoc, Replica};
use crate::storage::subscriptions::Subscriptions;

#[derive(Clone)]
pub struct Notifier {
    pub replica: Replica,
    pub preferences: PreferencesStore,
    pub notifications: Notifications,
    pub subscriptions: Subscriptions,
    pub digests: Digests,
    pub mail_jobs: MailJobs,
    pub push: PushSender,
    /// Wakes the mail worker when a mail job is enqueued.
    pub mail_wakeup: Arc<Notify>,
    /// Base of the links in mail (no trailing slash).
    pub public_url: String,
    pub metrics: shared::metrics::Metrics,
}

/// A verification token as it may appear in a link: base64url or hex, so
/// it needs no escaping and the mail shows `token=<token>` literally.
fn is_url_safe_token(token: &str) -> bool {
    (16..=256).contains(&token.len())
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A message younger than this, for a chat the replica does not know, is
/// retried rather than notified under the sender's name. Older ones (a
/// chat from before this replica's first event) are notified as they are.
const CHAT_IN_FLIGHT_MS: i64 = 30_000;

fn transient(e: impl Into<anyhow::Error>) -> HandlerError {
    HandlerError::Transient(e.into())
}

/// Lower-cased usernames mentioned as `@username` (at the start or after a
/// non-word character).
pub fn mentions(content: &str) -> HashSet<String> {
    let is_name = |c: char| c.is_alphanumeric() || c == '_' || c == '.' || c == '-';
    let mut found = HashSet::new();
    let mut previous: Option<char> = None;
    for (i, c) in content.char_indices() {
        if c == '@' && !previous.is_some_and(|p| p.is_alphanumeric() || p == '_') {
            let rest = &content[i + 1..];
            let end = rest.find(|ch: char| !is_name(ch)).unwrap_or(rest.len());
            let name = rest[..end].trim_end_matches(['.', '-']);
            if !name.is_empty() {
                found.insert(name.to_lowercase());
            }
        }
        previous = Some(c);
    }
    found
}

struct PushTarget {
    user: String,
    payload: Vec<u8>,
}

impl Notifier {
    pub async fn chat_changed(&self, chat: &ChatSnapshot) -> Result<(), HandlerError> {
        self.replica
            .upsert_chat(&ChatDoc {
                id: chat.id.clone(),
                name: chat.name.clone(),
                is_group: chat.is_group,
                version: chat.version,
            })
            .await
            .map_err(transient)
    }

    /// In-app notifications, digest items and pushes for a new message.
    pub async fn message_created(
        &self,
        event_id: &str,
        e: &MessageCreated,
    ) -> Result<(), HandlerError> {
        let message = &e.message;
        let recipients: Vec<String> = e
            .member_ids
            .iter()
            .filter(|m| **m != message.sender_id)
            .cloned()
            .collect();
        if recipients.is_empty() || message.deleted {
            return Ok(());
        }
        let users = self.replica.users(&recipients).await.map_err(transient)?;
        let chat = self.replica.chat(&e.chat_id).await.map_err(transient)?;
        let arrived = chrono::DateTime::parse_from_rfc3339(&message.created_at)
            .map(|t| t.timestamp_millis())
            .unwrap_or_else(|_| chrono::Utc::now().timestamp_millis());
        if chat.is_none() && chrono::Utc::now().timestamp_millis() - arrived < CHAT_IN_FLIGHT_MS {
            // Chat events are handled concurrently, so a new chat's first
            // messages can overtake its chat.created: retried (in 1 s) so that
            // the notification and the digest name the group, not the sender.
            return Err(transient(anyhow::anyhow!(
                "chat {} not known yet; its chat.created is in flight",
                e.chat_id
            )));
        }
        let sender = mail::clean_line(&message.sender.display_name);
        let chat_title = match &chat {
            Some(c) if c.is_group => c.name.clone().unwrap_or_else(|| "Group chat".into()),
            _ => sender.clone(),
        };
        let mentioned = mentions(&message.content);
        let text = preview(&message.content, 140);

        // Decide per recipient, then write in batches: a few round trips
        // per event whatever the size of the group.
        // Everyone's preferences at once (cache reads, misses from MongoDB),
        // not one round trip after another.
        let all_prefs = join_all(recipients.iter().map(|u| self.preferences.get(u)))
            .await
            .into_iter()
            .collect::<Result<Vec<_>, _>>()
            .map_err(transient)?;
        let mut pushes = Vec::new();
        let mut notifications = Vec::new();
        let mut digest_items = Vec::new();
        for (user, prefs) in recipients.iter().zip(all_prefs) {
            let is_mention = users
                .get(user)
                .is_some_and(|u| mentioned.contains(&u.username.to_lowercase()));
            if prefs.muted(&e.chat_id) && !is_mention {
                continue;
            }
            let (kind, title) = if is_mention {
                ("mention", format!("{sender} mentioned you in {chat_title}"))
            } else {
                ("message", chat_title.clone())
            };
            notifications.push(NotificationDoc {
                id: format!("{event_id}:{user}"),
                user_id: user.clone(),
                kind: kind.into(),
                chat_id: Some(e.chat_id.clone()),
                message_id: Some(message.id.clone()),
                title: title.clone(),
                body: format!("{sender}: {text}"),
                created_at: DateTime::from_millis(arrived),
                read_at: None,
            });
            if prefs.email {
                let due = arrived + i64::from(prefs.email_delay_seconds) * 1000;
                digest_items.push(DigestItem {
                    id: format!("{user}:{}", message.id),
                    user_id: user.clone(),
                    chat_id: e.chat_id.clone(),
                    chat_title: chat_title.clone(),
                    message_id: message.id.clone(),
                    sender: sender.clone(),
                    preview: text.clone(),
                    due_at: DateTime::from_millis(due),
                    batch: None,
                });
            }
            if prefs.push {
                let body = if prefs.push_previews {
                    format!("{sender}: {}", preview(&message.content, 80))
                } else {
                    format!("New message from {sender}")
                };
                let payload = serde_json::json!({
                    "kind": kind,
                    "title": title,
                    "body": body,
                    "chatId": e.chat_id,
                    "messageId": message.id,
                });
                pushes.push(PushTarget {
                    user: user.clone(),
                    payload: payload.to_string().into_bytes(),
                });
            }
        }
        self.notifications
            .insert_all(&notifications)
            .await
            .map_err(transient)?;
        self.digests
            .add_all(&digest_items)
            .await
            .map_err(transient)?;
        // Events reach competing consumers in any order: a read marker
        // already past this message cancels its digest item. (The read
        // handler sets the marker before deleting items, this adds the items
        // before reading the markers, so either way round one of them
        // removes it.)
        if !digest_items.is_empty() {
            let emailed: Vec<String> = digest_items.iter().map(|i| i.user_id.clone()).collect();
            let markers = self
                .digests
                .markers(&emailed, &e.chat_id)
                .await
                .map_err(transient)?;
            for (user, marker) in markers {
                if marker >= message.id {
                    self.digests
                        .read_up_to(&user, &e.chat_id, &marker)
                        .await
                        .map_err(transient)?;
                }
            }
        }
        self.push_all(event_id, pushes).await
    }

    /// Pushes to every subscription of every target, concurrently; a
    /// subscription already reached for this event is skipped. Fails
    /// (transiently, for the retry schedule) if any push should be retried.
    async fn push_all(&self, event_id: &str, targets: Vec<PushTarget>) -> Result<(), HandlerError> {
        let users: Vec<String> = targets.iter().map(|t| t.user.clone()).collect();
        let subs = self
            .subscriptions
            .of_users(&users)
            .await
            .map_err(transient)?;
        let keys: Vec<String> = subs
            .iter()
            .map(|sub| format!("{event_id}:{}", sub.id))
            .collect();
        let delivered = self
            .subscriptions
            .delivered_of(&keys)
            .await
            .map_err(transient)?;
        let payloads: HashMap<&str, &[u8]> = targets
            .iter()
            .map(|t| (t.user.as_str(), t.payload.as_slice()))
            .collect();
        let mut jobs = Vec::new();
        for (sub, key) in subs.into_iter().zip(keys) {
            if delivered.contains(&key) {
                continue;
            }
            let Some(payload) = payloads.get(sub.user_id.as_str()).copied() else {
                continue;
            };
            jobs.push(async move {
                let keys = match SubscriptionKeys::parse(&sub.p256dh, &sub.auth) {
                    Ok(k) => k,
                    Err(_) => return (key, sub.id, Outcome::Rejected(0)),
                };
                let outcome = self.push.send(&sub.endpoint, &keys, payload).await;
                (key, sub.id, outcome)
            });
        }
        let mut retry = None;
        for (key, sub_id, outcome) in join_all(jobs).await {
            let result = match &outcome {
                Outcome::Delivered => "delivered",
                Outcome::Gone => "gone",
                Outcome::Rejected(_) => "rejected",
                Outcome::Retry(_) => "retry",
            };
            self.metrics
                .push_attempts
                .with_label_values(&[result])
                .inc();
            match outcome {
                Outcome::Delivered => {
                    self.subscriptions
                        .record_delivery(&key)
                        .await
                        .map_err(transient)?;
                }
                Outcome::Gone => {
                    tracing::info!(subscription = %sub_id, "push subscription gone; deleted");
                    self.subscriptions
                        .forget(&sub_id)
                        .await
                        .map_err(transient)?;
                }
                Outcome::Rejected(status) => {
                    tracing::warn!(subscription = %sub_id, status, "push refused; not retried");
                    self.subscriptions
                        .record_delivery(&key)
                        .await
                        .map_err(transient)?;
                }
                Outcome::Retry(why) => {
                    tracing::warn!(subscription = %sub_id, reason = %why, "push failed; will retry");
                    retry = Some(why);
                }
            }
        }
        match retry {
            Some(why) => Err(transient(anyhow!("push to be retried: {why}"))),
            None => Ok(()),
        }
    }

    pub async fn read(&self, user: &str, chat: &str, message_id: &str) -> Result<(), HandlerError> {
        self.digests
            .set_marker(user, chat, message_id)
            .await
            .map_err(transient)?;
        self.digests
            .read_up_to(user, chat, message_id)
            .await
            .map(|_| ())
            .map_err(transient)
    }

    pub async fn left(&self, user: &str, chat: &str) -> Result<(), HandlerError> {
        self.digests.left(user, chat).await.map_err(transient)
    }

    /// A security notice: in the feed and by email, whatever the preferences.
    pub async fn security(
        &self,
        event_id: &str,
        user_id: &str,
        what: &str,
        detail: &str,
    ) -> Result<(), HandlerError> {
        let Some(user) = self.replica.user(user_id).await.map_err(transient)? else {
            // user.registered comes first on the same queue; a retry finds it.
            return Err(transient(anyhow!("user {user_id} not known yet")));
        };
        self.notifications
            .insert(&NotificationDoc {
                id: format!("{event_id}:{user_id}"),
                user_id: user_id.to_owned(),
                kind: "security".into(),
                chat_id: None,
                message_id: None,
                title: format!("Security notice: {what}"),
                body: detail.to_owned(),
                created_at: DateTime::now(),
                read_at: None,
            })
            .await
            .map_err(transient)?;
        if !user.email_verified {
            // Not retried: a later verification does not resend old notices
            // (the feed above has it).
            tracing::info!(user.id = %user_id, "security email not sent: the address is not verified");
            return Ok(());
        }
        self.mail_jobs
            .enqueue(
                &format!("security-{event_id}"),
                mail::security(&user.email, &user.display_name, what, detail),
            )
            .await
            .map_err(transient)?;
        self.mail_wakeup.notify_one();
        Ok(())
    }

    /// Mails the link that proves `e.email`, verified or not (the one mail
    /// that goes to an unverified address). The token is never logged.
    pub async fn email_verification(
        &self,
        event_id: &str,
        e: &EmailVerificationRequested,
    ) -> Result<(), HandlerError> {
        if !is_url_safe_token(&e.token) {
            return Err(HandlerError::Permanent(anyhow!(
                "verification token for user {} is not 16-256 URL-safe characters",
                e.user_id
            )));
        }
        if e.email.parse::<lettre::Address>().is_err() {
            return Err(HandlerError::Permanent(anyhow!(
                "verification address of user {} is not an email address",
                e.user_id
            )));
        }
        let expires = chrono::DateTime::parse_from_rfc3339(&e.expires_at).ok();
        if expires.is_some_and(|t| t <= chrono::Utc::now()) {
            // A replay from the dead-letter queue, or a long outage: the
            // link would not work, and the user can ask for a new one.
            tracing::info!(user.id = %e.user_id, "verification mail not sent: the token has expired");
            return Ok(());
        }
        let expires = expires.map(|t| {
            t.with_timezone(&chrono::Utc)
                .format("%Y-%m-%d %H:%M UTC")
                .to_string()
        });
        let link = format!("{}/verify-email?token={}", self.public_url, e.token);
        self.mail_jobs
            .enqueue(
                &format!("verify-{event_id}"),
                mail::email_verification(&e.email, &e.display_name, &link, expires.as_deref()),
            )
            .await
            .map_err(transient)?;
        self.mail_wakeup.notify_one();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::{is_url_safe_token, mentions};

    #[test]
    fn only_url_safe_tokens_go_into_links() {
        assert!(is_url_safe_token(
            "Zm9vYmFyYmF6cXV4_-0123456789abcdefABCDEF"
        ));
        for bad in [
            "short",
            "abc&next=https://evil.example/",
            "abcdefghijklmnop<script>",
            "abcdefghijklmnop qrs",
            "abcdefghijklmnop%0d%0a",
        ] {
            assert!(!is_url_safe_token(bad), "{bad}");
        }
        assert!(!is_url_safe_token(&"a".repeat(257)));
    }

    #[test]
    fn mentions_are_found_at_word_starts_only() {
        let m = mentions("hi @Alice and @bob_2, mail me at carol@example.com; @dave.");
        assert!(m.contains("alice"));
        assert!(m.contains("bob_2"));
        assert!(m.contains("dave"));
        assert!(!m.contains("example.com"));
        assert_eq!(m.len(), 3);
    }
}
