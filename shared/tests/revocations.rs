//! `revoked_sessions` against a real MongoDB: the poll's lookup index and
//! the TTL index exist, and every record carries the `expiresAt` that TTL
//! index removes it at (once no access token of the session can be valid).
//! Whether the server actually runs TTL deletion, and when, is the server's
//! business; this checks what the service declares and writes.
#![expect(clippy::unwrap_used, reason = "a panic is the assertion in tests")]

use futures_util::TryStreamExt;
use mongodb::bson::{doc, Document};
use shared::revocations::{Revocations, HORIZON};

async fn database() -> mongodb::Database {
    let uri =
        std::env::var("TEST_MONGODB_URI").unwrap_or_else(|_| "mongodb://127.0.0.1:27017".into());
    let client = mongodb::Client::with_uri_str(uri).await.unwrap();
    client.database(&format!(
        "revocations_test_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    ))
}

#[tokio::test]
async fn revoked_sessions_have_a_lookup_index_and_expire_with_their_tokens() {
    let db = database().await;
    let revocations = Revocations::new(&db);
    revocations.ensure_indexes().await.unwrap();
    revocations.ensure_indexes().await.unwrap();
    revocations.record("session-1", "user-1").await.unwrap();
    // Recording again (a redelivered event) keeps the first times.
    let coll = db.collection::<Document>("revoked_sessions");
    let first = coll
        .find_one(doc! { "_id": "session-1" })
        .await
        .unwrap()
        .unwrap();
    revocations.record("session-1", "user-1").await.unwrap();
    let stored = coll
        .find_one(doc! { "_id": "session-1" })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first, stored, "idempotent");

    let at = stored.get_datetime("at").unwrap().timestamp_millis();
    let expires = stored.get_datetime("expiresAt").unwrap().timestamp_millis();
    assert_eq!(expires - at, HORIZON.as_millis() as i64);
    assert!(
        HORIZON.as_secs() >= 15 * 60,
        "kept at least as long as an access token lives"
    );
    assert!(revocations.contains("session-1"));

    let indexes: Vec<_> = coll
        .list_indexes()
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    let ttl = indexes
        .iter()
        .find(|i| i.keys == doc! { "expiresAt": 1 })
        .unwrap_or_else(|| panic!("no TTL index on expiresAt: {indexes:?}"));
    let after = ttl
        .options
        .as_ref()
        .and_then(|o| o.expire_after)
        .unwrap_or_else(|| panic!("the expiresAt index has no expireAfterSeconds: {ttl:?}"));
    assert_eq!(after.as_secs(), 0, "removed at expiresAt itself");
    assert!(
        indexes.iter().any(|i| i.keys == doc! { "at": 1 }),
        "the poll's lookup by `at` is indexed: {indexes:?}"
    );
    db.drop().await.unwrap();
}
