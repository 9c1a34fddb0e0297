//! Outgoing mail (`mail_jobs`): written when the decision to mail is made,
//! sent by the mail worker under a lease, retried with backoff while the
//! SMTP server fails. The `_id` is derived from what caused the mail (the
//! event, or the digest batch), so it is enqueued once.

use mongodb::bson::{doc, DateTime};
use mongodb::options::{IndexOptions, ReturnDocument};
use mongodb::{Collection, Database, IndexModel};
use serde::{Deserialize, Serialize};

use crate::domain::mail::Mail;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MailJob {
    #[serde(rename = "_id")]
    pub id: String,
    #[serde(flatten)]
    pub mail: Mail,
    /// `pending`, `sent` or `failed`.
    pub status: String,
    pub attempts: u32,
    pub next_attempt_at: DateTime,
    pub lease_until: DateTime,
    pub created_at: DateTime,
}

#[derive(Clone)]
pub struct MailJobs {
    coll: Collection<MailJob>,
}

impl MailJobs {
    pub fn new(db: &Database) -> Self {
        Self {
            coll: db.collection("mail_jobs"),
        }
    }

    pub async fn ensure_indexes(&self) -> Result<(), mongodb::error::Error> {
        self.coll
            .create_index(
                IndexModel::builder()
                    .keys(doc! { "status": 1, "nextAttemptAt": 1 })
                    .options(IndexOptions::builder().name("due".to_owned()).build())
                    .build(),
            )
            .await?;
        Ok(())
    }

    /// Enqueues once per id.
    pub async fn enqueue(&self, id: &str, mail: Mail) -> Result<(), mongodb::error::Error> {
        let now = DateTime::now();
        let job = MailJob {
            id: id.to_owned(),
            mail,
            status: "pending".into(),
            attempts: 0,
            next_attempt_at: now,
            lease_until: DateTime::from_millis(0),
            created_at: now,
        };
        match self.coll.insert_one(&job).await {
            Ok(_) => Ok(()),
            Err(e) if broker::outbox::is_duplicate_key(&e) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Takes the next due job for `lease_ms`.
    pub async fn claim(&self, lease_ms: i64) -> Result<Option<MailJob>, mongodb::error::Error> {
        let now = DateTime::now();
        self.coll
            .find_one_and_update(
                doc! {
                    "status": "pending",
                    "nextAttemptAt": { "$lte": now },
                    "leaseUntil": { "$lte": now },
                },
                doc! { "$set": { "leaseUntil": DateTime::from_millis(now.timestamp_millis() + lease_ms) } },
            )
            .sort(doc! { "nextAttemptAt": 1 })
            .return_document(ReturnDocument::After)
            .await
    }

    pub async fn sent(&self, id: &str) -> Result<(), mongodb::error::Error> {
        self.coll
            .update_one(
                doc! { "_id": id },
                // The body is not needed once sent, and it holds message
                // previews or a verification link: keep only the envelope.
                doc! { "$set": { "status": "sent", "sentAt": DateTime::now(), "text": "", "html": "" } },
            )
            .await?;
        Ok(())
    }

    /// Schedules another attempt, or gives up after `max_attempts`.
    pub async fn failed(
        &self,
        job: &MailJob,
        retry_in_ms: i64,
        max_attempts: u32,
        error: &str,
    ) -> Result<(), mongodb::error::Error> {
        let attempts = job.attempts + 1;
        let status = if attempts >= max_attempts {
            "failed"
        } else {
            "pending"
        };
        let next = DateTime::from_millis(DateTime::now().timestamp_millis() + retry_in_ms);
        self.coll
            .update_one(
                doc! { "_id": &job.id },
                doc! { "$set": {
                    "status": status,
                    "attempts": attempts,
                    "nextAttemptAt": next,
                    "leaseUntil": DateTime::from_millis(0),
                    "lastError": error,
                } },
            )
            .await?;
        Ok(())
    }
}
