//! Turns due digest items into one digest mail per user. Any number of
//! instances may run it: a user's digest is built under a lease, and the
//! batch protocol of [`crate::storage::digests`] mails each item once.
//! Only verified addresses get one; an unverified user's due items are
//! dropped.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use mongodb::bson::DateTime;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::domain::mail::{self, DigestChat};
use crate::storage::digests::Digests;
use crate::storage::mail_jobs::MailJobs;
use crate::storage::new_id;
use crate::storage::preferences::PreferencesStore;
use crate::storage::replica::Replica;

const LEASE_MS: i64 = 60_000;
const SAMPLES_PER_CHAT: usize = 3;

pub struct DigestWorker {
    pub digests: Digests,
    pub mail_jobs: MailJobs,
    pub replica: Replica,
    pub preferences: PreferencesStore,
    pub instance: String,
    pub poll: Duration,
    pub mail_wakeup: Arc<Notify>,
}

impl DigestWorker {
    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            if let Err(e) = self.tick().await {
                tracing::warn!(error = %e, "digest run failed; retrying");
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(self.poll) => {}
            }
        }
    }

    async fn tick(&self) -> Result<(), mongodb::error::Error> {
        let now = DateTime::now();
        for user in self.digests.due_users(now, 200).await? {
            if !self.digests.lease(&user, &self.instance, LEASE_MS).await? {
                continue;
            }
            let result = self.digest_for(&user, now).await;
            self.digests.release(&user, &self.instance).await?;
            result?;
        }
        Ok(())
    }

    async fn digest_for(&self, user: &str, now: DateTime) -> Result<(), mongodb::error::Error> {
        let Some((batch, items)) = self.digests.take_batch(user, now, &new_id()).await? else {
            return Ok(());
        };
        let Some(recipient) = self.replica.user(user).await? else {
            tracing::warn!(%user, "digest postponed a minute: the user is not known yet");
            return self.digests.postpone_batch(&batch, 60_000).await;
        };
        if !recipient.email_verified {
            // Dropped, not postponed: a digest is about now, and an address
            // nobody proved is never mailed.
            tracing::info!(user.id = %user, items = items.len(), "digest not sent: the address is not verified");
        } else if self.preferences.get(user).await?.email {
            let mut chats: BTreeMap<&str, DigestChat> = BTreeMap::new();
            for item in &items {
                let chat = chats.entry(&item.chat_id).or_insert_with(|| DigestChat {
                    title: item.chat_title.clone(),
                    count: 0,
                    samples: Vec::new(),
                });
                chat.count += 1;
                if chat.samples.len() < SAMPLES_PER_CHAT {
                    chat.samples
                        .push((item.sender.clone(), item.preview.clone()));
                }
            }
            let chats: Vec<DigestChat> = chats.into_values().collect();
            let mail = mail::digest(&recipient.email, &recipient.display_name, &chats);
            self.mail_jobs
                .enqueue(&format!("digest-{batch}"), mail)
                .await?;
            self.mail_wakeup.notify_one();
        }
        self.digests.finish_batch(&batch).await
    }
}
