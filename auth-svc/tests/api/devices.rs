//! Device tokens: a stranger's guesses lock the account, not the devices its
//! owner already uses; a known device has its own limit.

use futures_util::future::join_all;
use serde_json::{json, Value};

use crate::helpers::{now, spawn_app, totp, TestApp};

async fn login_on(app: &TestApp, login: &str, password: &str, device: &str) -> reqwest::Response {
    app.post(
        "/api/auth/login",
        None,
        json!({"login": login, "password": password, "deviceToken": device}),
    )
    .await
}

async fn lock_account(app: &TestApp, login: &str) {
    for _ in 0..10 {
        let r = app.login(login, "a stranger's guess").await;
        assert_eq!(r.status(), 401);
    }
    assert_eq!(app.login(login, "a stranger's guess").await.status(), 429);
}

#[tokio::test]
async fn a_strangers_guesses_do_not_lock_the_owner_out_of_a_known_device() {
    let app = spawn_app().await;
    let owner = app.register("owner").await;
    let other = app.register("other").await;
    // A login hands out a device token too; a device keeps the one it shows.
    let first: Value = app
        .login("owner", &owner.password)
        .await
        .json()
        .await
        .unwrap();
    let device = first["deviceToken"].as_str().unwrap().to_owned();
    assert!(device.len() >= 32, "{device}");
    assert_ne!(
        device, owner.device,
        "a new device without a token gets a new one"
    );

    lock_account(&app, "owner").await;
    assert_eq!(
        app.login("owner", &owner.password).await.status(),
        429,
        "without a device token the lockout holds, even for the owner"
    );
    let r = login_on(&app, "owner", &owner.password, &device).await;
    assert_eq!(r.status(), 200, "the owner's known device still gets in");
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body["deviceToken"],
        device.as_str(),
        "the device keeps its token"
    );
    assert!(body["accessToken"].is_string());
    let registered = login_on(&app, "owner", &owner.password, &owner.device).await;
    assert_eq!(
        registered.status(),
        200,
        "the token from registration works too"
    );

    // Someone else's token, or a made-up one, does not lift the lockout.
    for token in [other.device.as_str(), "made-up-device-token"] {
        let r = login_on(&app, "owner", &owner.password, token).await;
        assert_eq!(r.status(), 429, "{token}");
    }
}

#[tokio::test]
async fn a_known_device_has_its_own_limit_of_ten_even_when_racing() {
    let app = spawn_app().await;
    let dee = app.register("dee").await;
    let burst = join_all((0..40).map(|_| async {
        login_on(&app, "dee", "wrong from the device", &dee.device)
            .await
            .status()
            .as_u16()
    }))
    .await;
    let checked = burst.iter().filter(|s| **s == 401).count();
    assert_eq!(
        checked + burst.iter().filter(|s| **s == 429).count(),
        40,
        "{burst:?}"
    );
    assert!((1..=10).contains(&checked), "{burst:?}");
    let mut total = checked;
    loop {
        match login_on(&app, "dee", "wrong from the device", &dee.device)
            .await
            .status()
            .as_u16()
        {
            401 => total += 1,
            429 => break,
            other => panic!("unexpected {other}"),
        }
        assert!(total <= 10);
    }
    assert_eq!(total, 10, "exactly 10 wrong per device");
    let r = login_on(&app, "dee", &dee.password, &dee.device).await;
    assert_eq!(r.status(), 429, "the device is limited now");
    // Its guesses were not the account's: a login without it still works.
    let plain = app.login("dee", &dee.password).await;
    assert_eq!(plain.status(), 200);
}

#[tokio::test]
async fn the_mfa_login_hands_out_or_keeps_the_device_token() {
    let app = spawn_app().await;
    let eve = app.register("eve").await;
    let (secret, _) = crate::mfa::enable_mfa(&app, &eve).await;
    let challenge: Value = login_on(&app, "eve", &eve.password, &eve.device)
        .await
        .json()
        .await
        .unwrap();
    assert!(
        challenge.get("deviceToken").is_none(),
        "no tokens before the code"
    );
    let r = app
        .post(
            "/api/auth/login/mfa",
            None,
            json!({
                "mfaToken": challenge["mfaToken"],
                "code": totp(&secret, now()),
                "deviceToken": eve.device,
            }),
        )
        .await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["deviceToken"], eve.device.as_str());
}

#[tokio::test]
async fn a_strangers_burst_does_not_refuse_the_owners_device_login_meanwhile() {
    let app = spawn_app().await;
    let fay = app.register("fay").await;
    let burst = join_all((0..40).map(|_| app.login("fay", "a stranger's guess")));
    let owner = async {
        // Let the burst reach the hasher first.
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        login_on(&app, "fay", &fay.password, &fay.device).await
    };
    let (_, owner) = tokio::join!(burst, owner);
    assert_eq!(
        owner.status(),
        200,
        "the device has its own places and limit"
    );
}
