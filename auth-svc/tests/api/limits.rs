use std::net::IpAddr;

use serde_json::json;

use crate::helpers::{spawn_app, spawn_app_with};

fn client_from(ip: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(ip.parse::<IpAddr>().ok())
        .build()
        .unwrap()
}

#[tokio::test]
async fn logins_are_limited_per_client_ip_and_forwarded_for_is_not_trusted_from_clients() {
    let app = spawn_app_with(json!({"login_per_minute_per_ip": 10})).await;
    let url = app.url("/api/auth/login");
    let attacker = client_from("127.0.0.7");
    let mut last = None;
    for i in 0..11 {
        let r = attacker
            .post(&url)
            .header("x-forwarded-for", format!("10.0.0.{i}"))
            // A different name each time, so only the IP limit can trip.
            .json(&json!({"login": format!("nobody{i}"), "password": "not the password"}))
            .send()
            .await
            .unwrap();
        last = Some(r);
    }
    let last = last.unwrap();
    assert_eq!(
        last.status(),
        429,
        "spoofed X-Forwarded-For from an untrusted peer does not reset the limit"
    );
    assert!(last.headers().get("retry-after").is_some());
    assert_eq!(last.headers()["content-type"], "application/problem+json");
    let body = json!({"login": "someone", "password": "not the password"});
    let other = client_from("127.0.0.8")
        .post(&url)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(
        other.status(),
        401,
        "another client address has its own budget"
    );
    assert_eq!(refusals(&app.url("/metrics"), "login_ip").await, 1.0);
}

/// `rate_limit_refusals_total{limit}` as the service exports it.
async fn refusals(metrics_url: &str, limit: &str) -> f64 {
    let text = reqwest::get(metrics_url)
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let label = format!("limit=\"{limit}\"");
    text.lines()
        .filter(|l| l.starts_with("rate_limit_refusals_total{") && l.contains(&label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn failed_logins_are_limited_per_account_across_addresses() {
    let app = spawn_app().await;
    let sam = app.register("sam").await;
    for i in 0..10 {
        let client = client_from(&format!("127.0.1.{}", i + 1));
        let r = client
            .post(app.url("/api/auth/login"))
            .json(&json!({"login": "sam", "password": "wrong password here"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
    }
    let r = client_from("127.0.2.1")
        .post(app.url("/api/auth/login"))
        .json(&json!({"login": "sam", "password": sam.password}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        429,
        "even the right password waits once the account is throttled"
    );
    assert_eq!(refusals(&app.url("/metrics"), "login").await, 1.0);
}
