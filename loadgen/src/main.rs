//! Load generator for the chat backend. Drives the real stack on loopback
//! (directly or through the gateway) and reports latency, throughput, lost
//! and duplicated deliveries, database operations per request and server
//! CPU seconds per operation (read from /proc, since the generator shares
//! the machine's cores with the services).
//!
//!   loadgen baseline [--duration 5] [--concurrency 32] [--sockets 50]
//!   loadgen fanout   [--members 50] [--groups 1] [--rate 20] [--duration 10]
//!   loadgen reads    [--chats 20] [--concurrency 32] [--duration 5] [--nocache URL]
//!   loadgen idle     [--sockets 1000]
//!   loadgen storm    [--members 50] [--rate 20] [--duration 10] [--concurrency 16]
//!   loadgen reconnect [--clients 2000] [--window 10] [--members 50] [--rate 10] [--duration 30]
//!                    (fan-out to every client; a third of the way in, every
//!                    client drops and resumes, spread over the window)
//!   loadgen abuse    [--clients 40] [--concurrency 200]
//!                    (racing wrong logins against one account; a bystander's
//!                    login alone and during another account's flood of wrong
//!                    passwords)
//!   loadgen quick    (all of the above at a small scale, a couple of minutes)
//!
//! Common options: --auth URL (auth-svc, default $LOADGEN_AUTH or
//! http://127.0.0.1:8081), --chat URL (chat-svc or the gateway, default
//! $LOADGEN_CHAT or http://127.0.0.1:8082), --nocache URL (a chat-svc with
//! the read cache off, default $LOADGEN_NOCACHE), --pids a,b (service
//! processes to account CPU and memory to; default the chat-svc pids in
//! $LOADGEN_RUN or .dev/run). Every URL must be loopback. `./dev bench`
//! sets the variables for its own stack.

mod abuse;
mod baseline;
mod scenarios;
mod stats;
mod users;

use std::time::Duration;

use anyhow::{bail, Context};

pub struct Common {
    pub auth: String,
    pub chat: String,
    pub pids: Vec<u32>,
}

fn loopback(url: &str) -> anyhow::Result<String> {
    let parsed = reqwest::Url::parse(url).with_context(|| format!("not a URL: {url}"))?;
    let host = parsed.host_str().unwrap_or("");
    let is_loopback = host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if !is_loopback {
        bail!("{url}: the load generator only targets loopback addresses");
    }
    Ok(url.trim_end_matches('/').to_owned())
}

/// Where ./dev keeps the pid files of the stack under test.
pub fn run_dir() -> std::path::PathBuf {
    std::env::var_os("LOADGEN_RUN").map_or_else(
        || concat!(env!("CARGO_MANIFEST_DIR"), "/../.dev/run").into(),
        Into::into,
    )
}

/// chat-svc processes started by ./dev (release or dev profile).
fn default_pids() -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir(run_dir()) else {
        return Vec::new();
    };
    let mut pids: Vec<u32> = entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("chat-svc-"))
        .filter_map(|e| std::fs::read_to_string(e.path()).ok()?.trim().parse().ok())
        .collect();
    pids.sort_unstable();
    pids
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = pico_args::Arguments::from_env();
    let scenario: String = args.free_from_str().unwrap_or_else(|_| "help".into());
    let common = Common {
        auth: loopback(
            &args
                .opt_value_from_str("--auth")?
                .unwrap_or_else(|| env_or("LOADGEN_AUTH", "http://127.0.0.1:8081")),
        )?,
        chat: loopback(
            &args
                .opt_value_from_str("--chat")?
                .unwrap_or_else(|| env_or("LOADGEN_CHAT", "http://127.0.0.1:8082")),
        )?,
        pids: match args.opt_value_from_str::<_, String>("--pids")? {
            Some(list) => list
                .split(',')
                .filter_map(|p| p.trim().parse().ok())
                .collect(),
            None => default_pids(),
        },
    };
    let duration = args
        .opt_value_from_str::<_, u64>("--duration")?
        .map(Duration::from_secs);
    let concurrency: Option<usize> = args.opt_value_from_str("--concurrency")?;
    let sockets: Option<usize> = args.opt_value_from_str("--sockets")?;
    let members: usize = args.opt_value_from_str("--members")?.unwrap_or(50);
    let groups: usize = args.opt_value_from_str("--groups")?.unwrap_or(1);
    let rate: f64 = args.opt_value_from_str("--rate")?.unwrap_or(20.0);
    let chats: usize = args.opt_value_from_str("--chats")?.unwrap_or(20);
    let clients: Option<usize> = args.opt_value_from_str("--clients")?;
    let window: u64 = args.opt_value_from_str("--window")?.unwrap_or(10);
    let nocache = args
        .opt_value_from_str::<_, String>("--nocache")?
        .or_else(|| std::env::var("LOADGEN_NOCACHE").ok())
        .map(|u| loopback(&u))
        .transpose()?;
    let rest = args.finish();
    if !rest.is_empty() {
        bail!("unknown arguments: {rest:?}");
    }
    let secs = |default: u64| duration.unwrap_or(Duration::from_secs(default));
    match scenario.as_str() {
        "baseline" => {
            scenarios::baseline(secs(5), concurrency.unwrap_or(32), sockets.unwrap_or(50)).await?;
        }
        "fanout" => scenarios::fanout(&common, members, groups, rate, secs(10), None).await?,
        "reconnect" => {
            let clients = clients.unwrap_or(2000);
            let groups = clients.div_ceil(members);
            let run = secs(30);
            let reconnect = scenarios::Reconnect {
                clients,
                window: Duration::from_secs(window),
                after: run / 3,
            };
            scenarios::fanout(&common, members, groups, rate, run, Some(reconnect)).await?
        }
        "reads" => {
            scenarios::reads(
                &common,
                chats,
                concurrency.unwrap_or(32),
                secs(5),
                nocache.as_deref(),
            )
            .await?
        }
        "idle" => scenarios::idle(&common, sockets.unwrap_or(1000)).await?,
        "storm" => {
            scenarios::storm(&common, members, rate, secs(10), concurrency.unwrap_or(16)).await?
        }
        "abuse" => {
            abuse::abuse(
                &common.auth,
                clients.unwrap_or(40),
                concurrency.unwrap_or(200),
            )
            .await?
        }
        "quick" => {
            scenarios::baseline(Duration::from_secs(3), 32, 50).await?;
            scenarios::fanout(&common, 10, 2, 20.0, Duration::from_secs(5), None).await?;
            scenarios::fanout(&common, 50, 1, 20.0, Duration::from_secs(5), None).await?;
            scenarios::reads(&common, 10, 16, Duration::from_secs(3), nocache.as_deref()).await?;
            scenarios::idle(&common, 500).await?;
        }
        _ => {
            let usage: Vec<&str> = include_str!("main.rs")
                .lines()
                .take_while(|l| l.starts_with("//!"))
                .map(|l| l.trim_start_matches("//!").trim_start())
                .collect();
            println!("{}", usage.join("\n"));
        }
    }
    Ok(())
}
