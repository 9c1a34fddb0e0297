//! The scenarios. Each prints one block: what ran, latency, throughput, and
//! where it applies lost/duplicated deliveries, MongoDB operations per
//! request and server CPU seconds.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use crate::stats::{counter_sum, cpu_total, rss_kib, Latencies};
use crate::users::{connect, register, wait_known, User};
use crate::{baseline, Common};

/// Per socket: (message number, arrival time, connection number).
type Arrivals = Arc<Mutex<Vec<Vec<(u64, Instant, u32)>>>>;

/// Scenario 6 riding on scenario 2: the first `clients` sockets drop their
/// connection and reconnect, resuming from the last cursor they processed,
/// spread evenly over `window`, starting `after` into the run.
#[derive(Clone, Copy)]
pub struct Reconnect {
    pub clients: usize,
    pub window: Duration,
    pub after: Duration,
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap_or_default()
}

/// Closed loop: `concurrency` workers repeat `GET url` for `duration`.
async fn hammer(
    url: &str,
    token: Option<&str>,
    concurrency: usize,
    duration: Duration,
) -> (Latencies, u64, u64) {
    let client = http();
    let end = Instant::now() + duration;
    let errors = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (client, url, token, errors) = (
                client.clone(),
                url.to_owned(),
                token.map(str::to_owned),
                errors.clone(),
            );
            tokio::spawn(async move {
                let mut lat = Latencies::new();
                while Instant::now() < end {
                    let t = Instant::now();
                    let mut req = client.get(&url);
                    if let Some(tok) = &token {
                        req = req.bearer_auth(tok);
                    }
                    match req.send().await {
                        Ok(r) if r.status().is_success() => {
                            let _ = r.bytes().await;
                            lat.record(t.elapsed());
                        }
                        _ => {
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                lat
            })
        })
        .collect();
    let mut all = Latencies::new();
    for w in workers {
        if let Ok(l) = w.await {
            all.merge(&l);
        }
    }
    let n = all.count();
    (all, n, errors.load(Ordering::Relaxed))
}

/// Scenario 1: the ceilings.
pub async fn baseline(
    duration: Duration,
    concurrency: usize,
    sockets: usize,
) -> anyhow::Result<f64> {
    let base = baseline::start(2)?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (lat, n, _) = hammer(&format!("{base}/ok"), None, concurrency, duration).await;
    let rps = n as f64 / duration.as_secs_f64();
    println!(
        "== baseline: trivial actix-web handler, {concurrency} clients, {}s",
        duration.as_secs()
    );
    println!("   {rps:.0} req/s; {}", lat.summary());

    // actix-ws echo: one socket per client, send and await the echo.
    let ws_base = base.replacen("http", "ws", 1);
    let end = Instant::now() + duration;
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let url = format!("{ws_base}/echo");
            tokio::spawn(async move {
                let mut lat = Latencies::new();
                let Ok((mut ws, _)) = tokio_tungstenite::connect_async(url).await else {
                    return lat;
                };
                while Instant::now() < end {
                    let t = Instant::now();
                    if ws.send(Message::Text("ping".into())).await.is_err() {
                        break;
                    }
                    match ws.next().await {
                        Some(Ok(Message::Text(_))) => lat.record(t.elapsed()),
                        _ => break,
                    }
                }
                lat
            })
        })
        .collect();
    let mut echo = Latencies::new();
    for t in tasks {
        if let Ok(l) = t.await {
            echo.merge(&l);
        }
    }
    println!("== baseline: actix-ws echo, {concurrency} sockets");
    println!(
        "   {:.0} round trips/s; {}",
        echo.count() as f64 / duration.as_secs_f64(),
        echo.summary()
    );

    // In-process broadcast to N sockets: deliveries per second.
    let received = Arc::new(AtomicU64::new(0));
    let lat = Arc::new(Mutex::new(Latencies::new()));
    let mut readers = Vec::new();
    for _ in 0..sockets {
        let (mut ws, _) = tokio_tungstenite::connect_async(format!("{ws_base}/room")).await?;
        let (received, lat) = (received.clone(), lat.clone());
        readers.push(tokio::spawn(async move {
            while let Some(Ok(Message::Text(t))) = ws.next().await {
                if let Ok(sent) = t.parse::<u128>() {
                    let now = now_micros();
                    if let Ok(mut l) = lat.lock() {
                        l.record(Duration::from_micros(
                            u64::try_from(now.saturating_sub(sent)).unwrap_or(0),
                        ));
                    }
                }
                received.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let client = http();
    let start = Instant::now();
    let mut sent = 0u64;
    while start.elapsed() < duration {
        let _ = client
            .post(format!("{base}/room"))
            .body(now_micros().to_string())
            .send()
            .await;
        sent += 1;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let per_sec = received.load(Ordering::Relaxed) as f64 / duration.as_secs_f64();
    println!("== baseline: in-process broadcast to {sockets} sockets ({sent} messages)");
    println!(
        "   {per_sec:.0} deliveries/s; {}",
        lat.lock().map(|l| l.summary()).unwrap_or_default()
    );
    for r in readers {
        r.abort();
    }
    Ok(rps)
}

fn now_micros() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros())
        .unwrap_or(0)
}

/// Scenario 2: fan-out. `groups` groups of `members`, every member
/// connected; `rate` messages per second in total, open loop: each POST
/// starts at its intended time whatever happened to the previous ones, and
/// latency runs from that intended time to receipt on each member socket.
pub async fn fanout(
    c: &Common,
    members: usize,
    groups: usize,
    rate: f64,
    duration: Duration,
    reconnect: Option<Reconnect>,
) -> anyhow::Result<()> {
    let client = http();
    let users = register(&c.auth, members * groups).await?;
    wait_known(&client, &c.chat, &users).await?;
    let mut chat_ids = Vec::new();
    for g in 0..groups {
        let group = &users[g * members..(g + 1) * members];
        let ids: Vec<String> = group[1..].iter().map(|u| u.id.clone()).collect();
        // chat-svc learns users from events: retry while some are not there yet.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let r = client
                .post(format!("{}/api/chat/group", c.chat))
                .bearer_auth(&group[0].token)
                .json(&json!({"name": format!("bench {g}"), "memberIds": ids}))
                .send()
                .await?;
            let status = r.status();
            let body: Value = r.json().await.unwrap_or_default();
            if status.is_success() {
                chat_ids.push(body["id"].as_str().context("group id")?.to_owned());
                break;
            }
            if Instant::now() > deadline {
                anyhow::bail!("creating the group: {status} {body}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    // Every member's socket records (message number, arrival, connection).
    let arrivals: Arrivals = Arc::new(Mutex::new(vec![Vec::new(); users.len()]));
    let reconnect_latency = Arc::new(Mutex::new(Latencies::new()));
    let reconnect_failed = Arc::new(AtomicU64::new(0));
    // Set when the measured run starts; the storm is timed from it.
    let run_start: Arc<std::sync::OnceLock<Instant>> = Arc::default();
    let mut readers = Vec::new();
    for (i, u) in users.iter().enumerate() {
        let mut ws = connect(&c.chat, &u.token).await?;
        // A fresh client has no cursor to resume from: any frame ends the
        // resume window, so live frames are not held for it (docs/websocket.md).
        ws.send(Message::text(json!({"type": "ping"}).to_string()))
            .await?;
        let arrivals = arrivals.clone();
        let (chat, token) = (c.chat.clone(), u.token.clone());
        let (reconnect_latency, reconnect_failed) =
            (reconnect_latency.clone(), reconnect_failed.clone());
        let run_start = run_start.clone();
        let mut pending = reconnect
            .filter(|r| i < r.clients)
            .map(|r| r.after + r.window.mul_f64(i as f64 / r.clients.max(1) as f64));
        readers.push(tokio::spawn(async move {
            let mut conn = 0u32;
            let mut cursor: Option<String> = None;
            loop {
                let next = match pending {
                    Some(offset) => tokio::select! {
                        m = ws.next() => m,
                        _ = tokio::time::sleep_until(
                            run_start.get().map_or(Instant::now() + Duration::from_millis(100), |s| *s + offset).into()
                        ) => {
                            if run_start.get().is_none_or(|s| Instant::now() < *s + offset) {
                                continue;
                            }
                            pending = None;
                            let _ = ws.close(None).await;
                            let t0 = Instant::now();
                            match connect(&chat, &token).await {
                                Ok(mut fresh) => {
                                    if let Some(c) = &cursor {
                                        let resume = json!({"type": "resume", "cursor": c}).to_string();
                                        let _ = fresh.send(Message::text(resume)).await;
                                    }
                                    ws = fresh;
                                    conn += 1;
                                    if let Ok(mut l) = reconnect_latency.lock() {
                                        l.record(t0.elapsed());
                                    }
                                }
                                Err(_) => {
                                    reconnect_failed.fetch_add(1, Ordering::Relaxed);
                                    return;
                                }
                            }
                            continue;
                        }
                    },
                    None => ws.next().await,
                };
                let Some(Ok(Message::Text(t))) = next else {
                    if matches!(next, Some(Ok(_))) {
                        continue;
                    }
                    return;
                };
                if let Some(c) = t
                    .split("\"cursor\":\"")
                    .nth(1)
                    .and_then(|r| r.split('"').next())
                {
                    cursor = Some(c.to_owned());
                }
                if !t.contains("\"message.created\"") {
                    continue;
                }
                if let Some(k) = t
                    .split("bench#")
                    .nth(1)
                    .and_then(|r| r.split('"').next())
                    .and_then(|k| k.parse().ok())
                {
                    let at = Instant::now();
                    if let Ok(mut a) = arrivals.lock() {
                        a[i].push((k, at, conn));
                    }
                }
            }
        }));
    }
    // Warm-up (connection pools, first-use paths), not counted.
    for (g, chat) in chat_ids.iter().enumerate() {
        for n in 0..3 {
            let _ = client
                .post(format!("{}/api/chat/{chat}/messages", c.chat))
                .bearer_auth(&users[g * members + n % members].token)
                .json(&json!({"content": format!("warm-up {n}")}))
                .send()
                .await;
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let total = (rate * duration.as_secs_f64()).round() as u64;
    let cpu_before = cpu_total(&c.pids);
    let start = Instant::now() + Duration::from_millis(100);
    let _ = run_start.set(start);
    let intended: Arc<Vec<Instant>> = Arc::new(
        (0..total)
            .map(|k| start + Duration::from_secs_f64(k as f64 / rate))
            .collect(),
    );
    let failed = Arc::new(AtomicU64::new(0));
    let post_latency = Arc::new(Mutex::new(Latencies::new()));
    // When each POST's response arrived, to split delivery latency into the
    // POST and what follows it (relay, broker, fan-out, socket).
    let posted: Arc<Mutex<Vec<Option<Instant>>>> = Arc::new(Mutex::new(vec![None; total as usize]));
    let mut posts = Vec::new();
    let users = Arc::new(users);
    for k in 0..total {
        let g = (k as usize) % groups;
        let sender = g * members + (k as usize / groups) % members;
        let (client, users, chat, failed, at) = (
            client.clone(),
            users.clone(),
            format!("{}/api/chat/{}/messages", c.chat, chat_ids[g]),
            failed.clone(),
            intended[k as usize],
        );
        let (post_latency, posted) = (post_latency.clone(), posted.clone());
        posts.push(tokio::spawn(async move {
            tokio::time::sleep_until(at.into()).await;
            let r = client
                .post(&chat)
                .bearer_auth(&users[sender].token)
                .json(&json!({"content": format!("bench#{k}"), "clientMsgId": format!("b{k}")}))
                .send()
                .await;
            if r.is_ok_and(|r| r.status().is_success()) {
                if let Ok(mut l) = post_latency.lock() {
                    l.record(at.elapsed());
                }
                if let Ok(mut p) = posted.lock() {
                    p[k as usize] = Some(Instant::now());
                }
            } else {
                failed.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for p in posts {
        let _ = p.await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let elapsed = start.elapsed().saturating_sub(Duration::from_secs(2));
    let cpu = cpu_total(&c.pids) - cpu_before;
    for r in readers {
        r.abort();
    }
    let arrivals = arrivals.lock().map(|a| a.clone()).unwrap_or_default();
    let posted = posted.lock().map(|p| p.clone()).unwrap_or_default();
    let mut lat = Latencies::new();
    let mut after_post = Latencies::new();
    // Per message: first and last arrival over its members' sockets.
    let mut span: HashMap<u64, (Instant, Instant)> = HashMap::new();
    let (mut delivered, mut duplicates, mut resume_repeats) = (0u64, 0u64, 0u64);
    for (i, got) in arrivals.iter().enumerate() {
        let g = i / members;
        let mut seen: HashMap<u64, Vec<u32>> = HashMap::new();
        for (k, at, conn) in got {
            if (*k as usize) % groups != g || *k >= total {
                continue;
            }
            let conns = seen.entry(*k).or_default();
            if conns.is_empty() {
                delivered += 1;
                lat.record(at.saturating_duration_since(intended[*k as usize]));
                if let Some(done) = posted[*k as usize] {
                    after_post.record(at.saturating_duration_since(done));
                }
                let e = span.entry(*k).or_insert((*at, *at));
                e.0 = e.0.min(*at);
                e.1 = e.1.max(*at);
            } else if conns.contains(conn) {
                duplicates += 1;
            } else {
                // Delivered before the reconnect and replayed after it: the
                // documented out-of-order case (docs/websocket.md).
                resume_repeats += 1;
            }
            conns.push(*conn);
        }
    }
    let expected = total * members as u64;
    let per_sec = delivered as f64 / elapsed.as_secs_f64();
    println!(
        "== fan-out: {groups} group(s) of {members}, {rate} messages/s for {}s via {}",
        duration.as_secs(),
        c.chat
    );
    println!(
        "   {delivered} of {expected} deliveries, lost {}, duplicated {duplicates}, failed posts {}",
        expected.saturating_sub(delivered),
        failed.load(Ordering::Relaxed)
    );
    if let Some(r) = reconnect {
        println!(
            "   reconnect storm: {} sockets reconnected and resumed over {:.0} s ({} failed); time to `ready`: {}",
            reconnect_latency.lock().map(|l| l.count()).unwrap_or(0),
            r.window.as_secs_f64(),
            reconnect_failed.load(Ordering::Relaxed),
            reconnect_latency.lock().map(|l| l.summary()).unwrap_or_default()
        );
        println!("   frames repeated by a resume (already delivered before the reconnect): {resume_repeats}");
    }
    println!("   latency from intended send: {}", lat.summary());
    println!(
        "   of which the POST (write, timeline, outbox) until its response: {}",
        post_latency.lock().map(|l| l.summary()).unwrap_or_default()
    );
    println!(
        "   after the POST's response until receipt (relay, broker, fan-out, socket; 0 when the frame came first): {}",
        after_post.summary()
    );
    let mut spread = Latencies::new();
    for (first, last) in span.values() {
        spread.record(last.saturating_duration_since(*first));
    }
    println!(
        "   first to last member socket of each message: {}",
        spread.summary()
    );
    if cpu > 0.0 {
        println!(
            "   {per_sec:.0} deliveries/s; chat-svc CPU {cpu:.2} s = {:.0} deliveries per CPU-second",
            delivered as f64 / cpu
        );
    } else {
        println!("   {per_sec:.0} deliveries/s (no chat-svc pid to account CPU to)");
    }
    Ok(())
}

/// Scenario 3: reads with a warm cache, and against a cache-less instance.
pub async fn reads(
    c: &Common,
    chats: usize,
    concurrency: usize,
    duration: Duration,
    nocache: Option<&str>,
) -> anyhow::Result<()> {
    let client = http();
    let users = register(&c.auth, chats + 1).await?;
    wait_known(&client, &c.chat, &users).await?;
    let reader: &User = &users[0];
    let mut first_chat = String::new();
    for other in &users[1..] {
        let r = client
            .post(format!("{}/api/chat", c.chat))
            .bearer_auth(&reader.token)
            .json(&json!({"userId": other.id}))
            .send()
            .await?;
        let id = r.json::<Value>().await?["id"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        for n in 0..3 {
            client
                .post(format!("{}/api/chat/{id}/messages", c.chat))
                .bearer_auth(&other.token)
                .json(&json!({"content": format!("hello {n}")}))
                .send()
                .await?;
        }
        if first_chat.is_empty() {
            first_chat = id;
        }
    }
    let base = baseline::start(2)?;
    let (_, trivial, _) = hammer(&format!("{base}/ok"), None, concurrency, duration).await;
    let trivial_rps = trivial as f64 / duration.as_secs_f64();
    let mut targets = vec![("cache on", c.chat.clone(), c.pids.clone())];
    if let Some(n) = nocache {
        targets.push((
            "cache off",
            n.to_owned(),
            nocache_pid().into_iter().collect(),
        ));
    }
    for (label, target, pids) in targets {
        // The service's own trivial handler, through the same path.
        let (_, live, _) = hammer(
            &format!("{target}/health/live"),
            None,
            concurrency,
            duration,
        )
        .await;
        let live_rps = live as f64 / duration.as_secs_f64();
        for (what, path) in [
            ("GET /api/chat", "/api/chat".to_owned()),
            ("first page", format!("/api/chat/{first_chat}/messages")),
        ] {
            let url = format!("{target}{path}");
            // Warm up (fills the cache), then measure.
            let _ = client.get(&url).bearer_auth(&reader.token).send().await;
            let ops_before = db_reads(&client, &target).await;
            let cpu_before = cpu_total(&pids);
            let (lat, n, errors) = hammer(&url, Some(&reader.token), concurrency, duration).await;
            let cpu = cpu_total(&pids) - cpu_before;
            let ops = db_reads(&client, &target).await - ops_before;
            let rps = n as f64 / duration.as_secs_f64();
            println!(
                "== reads, {label}: {what}, {concurrency} clients, {}s",
                duration.as_secs()
            );
            println!(
                "   {rps:.0} req/s ({:.2}x the service's /health/live at {live_rps:.0}, {:.2}x the trivial handler's {trivial_rps:.0}); {}; {errors} errors",
                rps / live_rps.max(1.0),
                rps / trivial_rps.max(1.0),
                lat.summary()
            );
            let cpu = if pids.is_empty() {
                "n/a (no pid)".to_owned()
            } else {
                format!("{:.0} µs", cpu * 1e6 / (n.max(1) as f64))
            };
            println!(
                "   MongoDB commands per request {:.3}; chat-svc CPU {cpu} per request",
                ops / (n.max(1) as f64),
            );
        }
    }
    Ok(())
}

/// The cache-less chat-svc that `./dev bench` starts.
fn nocache_pid() -> Option<u32> {
    std::fs::read_to_string(crate::run_dir().join("bench-nocache.pid"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

async fn db_reads(client: &reqwest::Client, base: &str) -> f64 {
    let Ok(r) = client.get(format!("{base}/metrics")).send().await else {
        return 0.0;
    };
    let text = r.text().await.unwrap_or_default();
    counter_sum(
        &text,
        "db_operations_total",
        &[
            "collection=\"chats\"",
            "collection=\"messages\"",
            "collection=\"read_markers\"",
            "collection=\"users\"",
        ],
    )
}

/// Scenario 5: resident memory per idle authenticated socket.
pub async fn idle(c: &Common, sockets: usize) -> anyhow::Result<()> {
    let Some(pid) = c.pids.first().copied() else {
        anyhow::bail!("idle: no chat-svc pid (pass --pids)");
    };
    raise_open_files(sockets as u64 + 1024);
    // chat-svc admits at most 16 sockets per user; 10 per user stays clear of it.
    let users = register(&c.auth, sockets.div_ceil(10).max(20)).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = rss_kib(pid).unwrap_or(0);
    let mut open = Vec::with_capacity(sockets);
    let started = Instant::now();
    for k in 0..sockets {
        open.push(connect(&c.chat, &users[k % users.len()].token).await?);
        if k % 2000 == 1999 {
            eprintln!("   {} sockets open", k + 1);
        }
    }
    let opened_in = started.elapsed();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = rss_kib(pid).unwrap_or(0);
    println!(
        "== idle sockets: {sockets} authenticated sockets to {} (opened in {:.1}s)",
        c.chat,
        opened_in.as_secs_f64()
    );
    println!(
        "   chat-svc RSS {before} KiB -> {after} KiB: {:.1} KiB per socket",
        after.saturating_sub(before) as f64 / sockets as f64
    );
    drop(open);
    Ok(())
}

/// The soft open-file limit up to `want` (the hard limit caps it), via
/// `prlimit` on this process, so thousands of sockets can be open.
fn raise_open_files(want: u64) {
    let pid = std::process::id().to_string();
    let _ = std::process::Command::new("prlimit")
        .args(["--pid", &pid, &format!("--nofile={want}:{want}")])
        .status();
}

/// Scenario 4: argon2 logins at the highest rate the clients can drive,
/// each from its own loopback address (so the per-IP limit does not turn
/// them all into 429s), while fan-out runs at `rate` messages/s. Run once
/// without the storm first for the comparison.
pub async fn storm(
    c: &Common,
    members: usize,
    rate: f64,
    duration: Duration,
    clients: usize,
) -> anyhow::Result<()> {
    println!("-- without the login storm:");
    fanout(c, members, 1, rate, duration, None).await?;
    let accounts = register(&c.auth, clients).await?;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let counts: Arc<Mutex<HashMap<String, u64>>> = Arc::new(Mutex::new(HashMap::new()));
    let latency = Arc::new(Mutex::new(Latencies::new()));
    let run = crate::users::rand_u32();
    let attempt = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for account in accounts {
        let (stop, counts, latency, attempt, auth) = (
            stop.clone(),
            counts.clone(),
            latency.clone(),
            attempt.clone(),
            c.auth.clone(),
        );
        workers.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let n = attempt.fetch_add(1, Ordering::Relaxed) as usize;
                // A fresh source address per attempt (8 attempts share one).
                let Ok(client) = reqwest::Client::builder()
                    .local_address(crate::users::source_address(run, n))
                    .timeout(Duration::from_secs(10))
                    .build()
                else {
                    continue;
                };
                let t = Instant::now();
                let outcome = match client
                    .post(format!("{auth}/api/auth/login"))
                    .json(&json!({"login": account.username, "password": crate::users::password(&account.username)}))
                    .send()
                    .await
                {
                    Ok(r) => r.status().as_u16().to_string(),
                    Err(e) if e.is_timeout() => "timeout".to_owned(),
                    Err(_) => "error".to_owned(),
                };
                if outcome == "200" {
                    if let Ok(mut l) = latency.lock() {
                        l.record(t.elapsed());
                    }
                }
                if let Ok(mut m) = counts.lock() {
                    *m.entry(outcome).or_insert(0) += 1;
                }
            }
        }));
    }
    println!("-- with {clients} clients logging in as fast as they can:");
    let started = Instant::now();
    fanout(c, members, 1, rate, duration, None).await?;
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        let _ = w.await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let counts = counts.lock().map(|m| m.clone()).unwrap_or_default();
    let ok = counts.get("200").copied().unwrap_or(0);
    let mut statuses: Vec<_> = counts.into_iter().collect();
    statuses.sort();
    println!(
        "== login storm: {:.1} successful logins/s over {elapsed:.0}s; outcomes {statuses:?}",
        ok as f64 / elapsed
    );
    println!(
        "   successful login latency: {}",
        latency.lock().map(|l| l.summary()).unwrap_or_default()
    );
    Ok(())
}
