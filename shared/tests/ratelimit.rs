//! The failure limiter against a real Redis: the window starts with the first
//! failure, the limit holds across instances sharing Redis, and a key's
//! window ends with its expiry.
#![expect(clippy::unwrap_used, reason = "a panic is the assertion in tests")]

use std::time::Duration;

use deadpool_redis::redis;
use shared::ratelimit::FailureLimiter;

fn pool() -> deadpool_redis::Pool {
    let url = std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    deadpool_redis::Config::from_url(url)
        .create_pool(Some(deadpool_redis::Runtime::Tokio1))
        .unwrap()
}

fn prefix() -> String {
    format!("test-ratelimit-{}:", uuid::Uuid::new_v4().simple())
}

#[tokio::test]
async fn the_limit_holds_across_instances_and_the_window_starts_with_the_first_failure() {
    let pool = pool();
    let prefix = prefix();
    let one = FailureLimiter::new(pool.clone(), &prefix, "send", 3, Duration::from_secs(60));
    let other = FailureLimiter::new(pool.clone(), &prefix, "send", 3, Duration::from_secs(60));

    assert_eq!(one.blocked("alice").await, None);
    one.record("alice").await;
    other.record("alice").await;
    assert_eq!(one.blocked("alice").await, None, "two of three used");
    other.record("alice").await;

    // A fresh instance (no local count) sees the shared count and the
    // seconds left in the window.
    let fresh = FailureLimiter::new(pool.clone(), &prefix, "send", 3, Duration::from_secs(60));
    let wait = fresh.blocked("alice").await.unwrap();
    assert!((55..=60).contains(&wait), "{wait} s left");
    assert_eq!(fresh.blocked("bob").await, None, "other keys are untouched");

    // The expiry was set once, by the first failure: later ones keep it.
    let mut conn = pool.get().await.unwrap();
    let key = format!("{prefix}fail:send:alice");
    let (count, ttl): (u32, i64) = redis::pipe()
        .get(&key)
        .ttl(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(count, 3);
    assert!((55..=60).contains(&ttl), "ttl {ttl}");
    let _: () = redis::cmd("DEL")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
}

#[tokio::test]
async fn the_window_ends_with_its_expiry() {
    let pool = pool();
    let prefix = prefix();
    let limiter = FailureLimiter::new(pool.clone(), &prefix, "login", 1, Duration::from_secs(1));
    limiter.record("carol").await;
    assert_eq!(limiter.blocked("carol").await, Some(1));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(limiter.blocked("carol").await, None);
    limiter.record("carol").await;
    assert_eq!(limiter.blocked("carol").await, Some(1), "a new window");
}
