//! The attempt limiter against a real Redis: the window starts with the first
//! attempt, the limit holds across instances sharing Redis, and a key's
//! window ends with its expiry.
#![expect(clippy::unwrap_used, reason = "a panic is the assertion in tests")]

use std::time::Duration;

use shared::ratelimit::FailureLimiter;
use shared::redis_link::Redis;

fn pool() -> Redis {
    let url = std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    Redis::new(&url).unwrap()
}

fn prefix() -> String {
    format!("test-ratelimit-{}:", uuid::Uuid::new_v4().simple())
}

#[tokio::test]
async fn the_limit_holds_across_instances_and_the_window_starts_with_the_first_attempt() {
    let pool = pool();
    let prefix = prefix();
    let one = FailureLimiter::new(pool.clone(), &prefix, "send", 3, Duration::from_secs(60));
    let other = FailureLimiter::new(pool.clone(), &prefix, "send", 3, Duration::from_secs(60));

    let _a = one.acquire("alice").await.unwrap();
    let _b = other.acquire("alice").await.unwrap();
    let _c = other.acquire("alice").await.unwrap();

    // A fresh instance (no local count) sees the shared count and the
    // seconds left in the window.
    let fresh = FailureLimiter::new(pool.clone(), &prefix, "send", 3, Duration::from_secs(60));
    let wait = fresh.acquire("alice").await.err().unwrap().retry_after_secs;
    assert!((55..=60).contains(&wait), "{wait} s left");
    assert!(
        fresh.acquire("bob").await.is_ok(),
        "other keys are untouched"
    );

    // The expiry was set once, by the first attempt; a refused one did not
    // stay counted.
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
}

#[tokio::test]
async fn the_window_ends_with_its_expiry() {
    let pool = pool();
    let prefix = prefix();
    let limiter = FailureLimiter::new(pool.clone(), &prefix, "login", 1, Duration::from_secs(1));
    let _kept = limiter.acquire("carol").await.unwrap();
    assert_eq!(
        limiter
            .acquire("carol")
            .await
            .err()
            .unwrap()
            .retry_after_secs,
        1
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let _again = limiter.acquire("carol").await.unwrap();
    assert!(limiter.acquire("carol").await.is_err(), "a new window");
}

#[tokio::test]
async fn concurrent_attempts_get_no_more_than_the_allowance() {
    let pool = pool();
    let prefix = prefix();
    // Two instances sharing Redis, 40 racing attempts against a limit of 10.
    let one = FailureLimiter::new(pool.clone(), &prefix, "pw", 10, Duration::from_secs(60));
    let other = FailureLimiter::new(pool.clone(), &prefix, "pw", 10, Duration::from_secs(60));
    let tries = (0..40).map(|i| {
        let limiter = if i % 2 == 0 {
            one.clone()
        } else {
            other.clone()
        };
        async move { limiter.acquire("alice").await.is_ok() }
    });
    let granted = futures_util::future::join_all(tries).await;
    assert_eq!(granted.iter().filter(|ok| **ok).count(), 10);
    let refused = one.acquire("alice").await.err().unwrap();
    assert!((55..=60).contains(&refused.retry_after_secs), "{refused:?}");
}

#[tokio::test]
async fn a_refunded_attempt_is_given_back_and_reset_clears_the_key() {
    let pool = pool();
    let prefix = prefix();
    let limiter = FailureLimiter::new(pool.clone(), &prefix, "pw", 2, Duration::from_secs(60));
    limiter.acquire("bob").await.unwrap().refund().await;
    let _kept = limiter.acquire("bob").await.unwrap();
    let _kept2 = limiter.acquire("bob").await.unwrap();
    assert!(limiter.acquire("bob").await.is_err(), "two kept of two");
    limiter.reset("bob").await;
    assert!(
        limiter.acquire("bob").await.is_ok(),
        "reset gives a fresh window"
    );
}

#[tokio::test]
async fn without_redis_the_limit_holds_on_this_instance() {
    let dead = Redis::new("redis://127.0.0.1:1").unwrap();
    let limiter = FailureLimiter::new(dead, &prefix(), "pw", 3, Duration::from_secs(60));
    for _ in 0..3 {
        let _kept = limiter.acquire("carol").await.unwrap();
    }
    assert!(limiter.acquire("carol").await.is_err(), "never falls open");
}
