//! Presence across instances, including an instance that dies without a
//! word (SIGKILL of a separate chat-svc process).

use std::time::{Duration, Instant};

use serde_json::json;

use crate::helpers::spawn_with;

#[tokio::test]
async fn presence_follows_sockets_across_instances_and_instance_death() {
    let t = spawn_with(1, json!({"presence_ttl_secs": 3})).await;
    let alice = t.user("alice").await;
    let bob = t.user("bob").await;
    let loner = t.user("loner").await;
    t.group(&alice, "team", &[&bob]).await;
    let mut watcher = t.socket(0, &alice).await;
    let mut stranger = t.socket(0, &loner).await;
    let mut process = t.process(json!({})).await;

    let mut bob_socket = t.socket_at(&process.address, &bob).await;
    let online = watcher.next_of("presence").await.expect("online frame");
    assert_eq!(online["userId"], bob.id.as_str());
    assert_eq!(online["online"], true);

    bob_socket.ws.close(None).await.expect("close");
    let offline = watcher.next_of("presence").await.expect("offline frame");
    assert_eq!(offline["userId"], bob.id.as_str());
    assert_eq!(offline["online"], false);

    // Online again, then the instance holding the socket is killed outright.
    let _bob_socket = t.socket_at(&process.address, &bob).await;
    let online = watcher.next_of("presence").await.expect("online again");
    assert_eq!(online["online"], true);
    process.child.start_kill().expect("SIGKILL");
    process.child.wait().await.expect("reaped");
    let killed = Instant::now();
    let offline = watcher
        .next_of_within("presence", Duration::from_secs(15))
        .await
        .expect("offline announced after the instance died");
    assert_eq!(offline["userId"], bob.id.as_str());
    assert_eq!(offline["online"], false);
    let took = killed.elapsed();
    assert!(took < Duration::from_secs(10), "took {took:?}");

    // Presence goes only to users sharing a chat.
    assert!(
        stranger
            .next_of_within("presence", Duration::from_millis(500))
            .await
            .is_none(),
        "a stranger heard about bob"
    );
}
