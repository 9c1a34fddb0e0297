//! Test users, registered through auth-svc the way clients do. auth-svc
//! limits registrations per client address, so registrations come from
//! many loopback addresses (127.x.y.z all reach the same server on Linux);
//! nothing has to be reconfigured for a run.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use anyhow::{bail, Context};
use futures_util::stream::{self, StreamExt, TryStreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

pub struct User {
    pub id: String,
    pub token: String,
    pub username: String,
}

/// Every generated user's password.
pub fn password(username: &str) -> String {
    format!("violet harbor lantern {username}")
}

/// Users registered per source address (auth-svc allows 10 per hour).
const PER_ADDRESS: usize = 8;

/// Source address of the `n`th registration of run `run`: 127.A.B.C, A and
/// a band of B from the run (16,000 bands, so two runs within the hour
/// share addresses about once in 16,000 pairs; with A alone it was once in
/// 200, and a system test's registrations ran into the per-address limit).
/// Up to 750 slots (6,000 numbers) per run.
pub fn source_address(run: u32, n: usize) -> IpAddr {
    let slot = n / PER_ADDRESS;
    let a = 10 + (run % 200) as u8;
    let band = ((run / 200) % 80) as usize * 3;
    IpAddr::V4(Ipv4Addr::new(
        127,
        a,
        (band + (slot / 250).min(2)) as u8,
        (slot % 250) as u8 + 2,
    ))
}

pub async fn register(auth: &str, count: usize) -> anyhow::Result<Vec<User>> {
    let run: u32 = rand_u32();
    let tag = format!("{:08x}", run);
    let clients: Vec<reqwest::Client> = (0..count.div_ceil(PER_ADDRESS))
        .map(|slot| {
            reqwest::Client::builder()
                .local_address(source_address(run, slot * PER_ADDRESS))
                .timeout(Duration::from_secs(30))
                .build()
        })
        .collect::<Result<_, _>>()?;
    stream::iter(0..count)
        .map(|i| {
            let client = clients[i / PER_ADDRESS].clone();
            let name = format!("lg{tag}{i}");
            let url = format!("{auth}/api/auth/register");
            async move {
                let r = client
                    .post(&url)
                    .json(&json!({"username": name, "email": format!("{name}@example.com"), "password": password(&name)}))
                    .send()
                    .await
                    .context("register")?;
                if !r.status().is_success() {
                    bail!("register {name}: {} {}", r.status(), r.text().await.unwrap_or_default());
                }
                let body: Value = r.json().await?;
                Ok(User {
                    id: body["user"]["id"].as_str().unwrap_or_default().to_owned(),
                    token: body["accessToken"].as_str().unwrap_or_default().to_owned(),
                    username: name,
                })
            }
        })
        .buffered(4)
        .try_collect()
        .await
}

pub fn rand_u32() -> u32 {
    let bytes = uuid::Uuid::new_v4().into_bytes();
    u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
}

pub type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// An authenticated socket, after its `ready` frame.
pub async fn connect(chat: &str, token: &str) -> anyhow::Result<Socket> {
    let url = format!("{}/ws", chat.replacen("http", "ws", 1));
    let mut req = url.into_client_request()?;
    req.headers_mut()
        .insert("authorization", format!("Bearer {token}").parse()?);
    let (mut ws, _) = tokio_tungstenite::connect_async(req)
        .await
        .context("upgrade")?;
    loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
            Ok(Some(Ok(tokio_tungstenite::tungstenite::Message::Text(t))))
                if t.contains("\"ready\"") =>
            {
                return Ok(ws)
            }
            Ok(Some(Ok(_))) => continue,
            _ => bail!("no ready frame"),
        }
    }
}

/// Waits until chat-svc knows every user (it learns them from events).
pub async fn wait_known(
    client: &reqwest::Client,
    chat: &str,
    users: &[User],
) -> anyhow::Result<()> {
    let Some(probe) = users.first() else {
        return Ok(());
    };
    for other in users.iter().skip(1).take(1).chain(users.last()) {
        // chat-svc consumes user.registered in order; after a large batch
        // of registrations the last ones can take a while.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(180);
        loop {
            let r = client
                .post(format!("{chat}/api/chat"))
                .bearer_auth(&probe.token)
                .json(&json!({"userId": other.id}))
                .send()
                .await?;
            if r.status().is_success() {
                break;
            }
            if tokio::time::Instant::now() > deadline {
                bail!("chat-svc never learnt the users: {}", r.status());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(())
}
