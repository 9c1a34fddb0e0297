//! The abuse figures of docs/security.md, on the stack as it runs: how many
//! password checks a burst of racing wrong logins gets, and what one
//! account's flood of wrong passwords does to another account's login.
//! auth-svc's `/health/live` is timed in the same run as the baseline.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use serde_json::json;

use crate::stats::Latencies;
use crate::users::{password, rand_u32, register, source_address, User};

/// Each request from its own loopback address, so that the per-address
/// limits of the gateway and auth-svc do not hide the per-account one
/// (slots 100-749: registration uses the first ones).
fn client_from(run: u32, n: usize) -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        // source_address puts 8 consecutive numbers on one address.
        .local_address(source_address(run, n * 8))
        .timeout(Duration::from_secs(30))
        .build()?)
}

fn tally(statuses: &[String]) -> String {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for s in statuses {
        *counts.entry(s.as_str()).or_insert(0) += 1;
    }
    counts
        .iter()
        .map(|(s, n)| format!("{n}x {s}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn outcome(r: Result<reqwest::Response, reqwest::Error>) -> String {
    match r {
        Ok(r) => r.status().as_u16().to_string(),
        Err(e) if e.is_timeout() => "timeout".into(),
        Err(_) => "error".into(),
    }
}

async fn login(client: &reqwest::Client, auth: &str, user: &User) -> (String, Duration) {
    let t = Instant::now();
    let r = client
        .post(format!("{auth}/api/auth/login"))
        .json(&json!({"login": user.username, "password": password(&user.username)}))
        .send()
        .await;
    (outcome(r), t.elapsed())
}

/// `count` sequential correct logins of `user`, each from its own address.
async fn logins(
    run: u32,
    from: usize,
    auth: &str,
    user: &User,
    count: usize,
) -> anyhow::Result<(Latencies, Vec<String>)> {
    let mut latency = Latencies::new();
    let mut statuses = Vec::new();
    for i in 0..count {
        let (status, took) = login(&client_from(run, from + i)?, auth, user).await;
        if status == "200" {
            latency.record(took);
        }
        statuses.push(status);
    }
    Ok((latency, statuses))
}

pub async fn abuse(auth: &str, racers: usize, flood: usize) -> anyhow::Result<()> {
    let run = rand_u32();
    let plain = reqwest::Client::new();
    let mut live = Latencies::new();
    for _ in 0..50 {
        let t = Instant::now();
        plain.get(format!("{auth}/health/live")).send().await?;
        live.record(t.elapsed());
    }
    println!("== abuse (auth-svc at {auth})");
    println!("baseline: GET /health/live, sequential: {}", live.summary());

    let users = register(auth, 3).await?;
    let (victim, flooder, bystander) = (&users[0], &users[1], &users[2]);

    // 1. Racing wrong logins against one account, from as many addresses.
    let clients: Vec<reqwest::Client> = (0..racers)
        .map(|i| client_from(run, 100 + i))
        .collect::<anyhow::Result<_>>()?;
    let statuses: Vec<String> = join_all(clients.iter().map(|c| async {
        outcome(
            c.post(format!("{auth}/api/auth/login"))
                .json(&json!({"login": victim.username, "password": "not the password at all"}))
                .send()
                .await,
        )
    }))
    .await;
    let checked = statuses.iter().filter(|s| *s == "401").count();
    println!(
        "{racers} concurrent wrong logins against one account: {checked} checked (401), {} (limit 10 per 15 min)",
        tally(&statuses)
    );

    // 2. A bystander's login, alone and during another account's flood.
    let (alone, alone_statuses) = logins(run, 400, auth, bystander, 5).await?;
    println!(
        "bystander's login alone (5 in a row): {} [{}]",
        alone.summary(),
        tally(&alone_statuses)
    );
    let clients: Vec<reqwest::Client> = (0..flood)
        .map(|i| client_from(run, 450 + i))
        .collect::<anyhow::Result<_>>()?;
    let (token, url) = (flooder.token.clone(), format!("{auth}/api/auth/password"));
    let flooding = tokio::spawn(async move {
        join_all(clients.iter().map(|c| async {
            outcome(
                c.post(&url)
                    .bearer_auth(&token)
                    .json(&json!({"currentPassword": "a wrong guess of it", "newPassword": "a brand new passphrase 1"}))
                    .send()
                    .await,
            )
        }))
        .await
    });
    // Let the flood reach the server before the bystander starts.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let (during, during_statuses) = logins(run, 420, auth, bystander, 5).await?;
    let flood_statuses = flooding.await?;
    println!(
        "bystander's login during {flood} concurrent wrong passwords to POST /api/auth/password from one account: {} [{}]",
        during.summary(),
        tally(&during_statuses)
    );
    println!("the flood's answers: {}", tally(&flood_statuses));
    Ok(())
}
