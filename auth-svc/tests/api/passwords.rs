//! Issue 20, section 1: every password check is limited per account,
//! atomically (racing guesses get no more checks than sequential ones), and
//! one account's flood cannot starve another account's login.

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use serde_json::{json, Value};

use crate::helpers::{now, spawn_app, totp, TestApp, User};

/// Statuses of a burst, sorted.
fn tally(statuses: &[u16]) -> std::collections::BTreeMap<u16, usize> {
    let mut map = std::collections::BTreeMap::new();
    for s in statuses {
        *map.entry(*s).or_insert(0) += 1;
    }
    map
}

async fn wrong_login(app: &TestApp, login: &str) -> u16 {
    app.login(login, "wrong password, not it")
        .await
        .status()
        .as_u16()
}

/// Sends wrong passwords one by one until the account answers 429; how many
/// were checked (answered 401) on the way.
async fn wrong_logins_until_limited(app: &TestApp, login: &str) -> usize {
    let mut checked = 0;
    loop {
        match wrong_login(app, login).await {
            401 => checked += 1,
            429 => return checked,
            other => panic!("unexpected {other}"),
        }
        assert!(checked <= 20, "never limited");
    }
}

#[tokio::test]
async fn forty_racing_wrong_logins_get_at_most_ten_checks() {
    let app = spawn_app().await;
    let vic = app.register("vic").await;
    let burst = join_all((0..40).map(|_| wrong_login(&app, "vic"))).await;
    let counts = tally(&burst);
    let checked = counts.get(&401).copied().unwrap_or(0);
    let refused = counts.get(&429).copied().unwrap_or(0);
    eprintln!("burst of 40 wrong logins: {checked} checked (401), {refused} refused (429)");
    assert_eq!(checked + refused, 40, "{counts:?}");
    assert!((1..=10).contains(&checked), "{counts:?}");
    // What the burst did not use is still there: busy refusals were given
    // back, and the allowance is 10 in all. Never more; on a loaded machine
    // it can be less: an attempt whose Redis reply missed its 500 ms
    // deadline may have been counted there all the same, and stays counted
    // (the limiter fails closed). One full run saw 2 + 0.
    let later = wrong_logins_until_limited(&app, "vic").await;
    assert!(
        checked + later <= 10,
        "burst {checked} + sequential {later}"
    );
    let right = app.login("vic", &vic.password).await;
    assert_eq!(right.status(), 429, "the right password waits too");
    assert!(right.headers().get("retry-after").is_some());
    assert_eq!(right.headers()["content-type"], "application/problem+json");
}

#[tokio::test]
async fn unknown_names_are_limited_like_accounts() {
    let app = spawn_app().await;
    let burst = join_all((0..40).map(|_| wrong_login(&app, "nobody-here"))).await;
    let checked = tally(&burst).get(&401).copied().unwrap_or(0);
    assert!((1..=10).contains(&checked), "{burst:?}");
    // At most the allowance (less on a loaded machine, as above).
    let later = wrong_logins_until_limited(&app, "nobody-here").await;
    assert!(
        checked + later <= 10,
        "burst {checked} + sequential {later}"
    );
}

#[tokio::test]
async fn a_correct_password_is_not_counted_and_clears_nothing() {
    let app = spawn_app().await;
    let una = app.register("una").await;
    for _ in 0..9 {
        assert_eq!(wrong_login(&app, "una").await, 401);
    }
    assert_eq!(app.login("una", &una.password).await.status(), 200);
    assert_eq!(wrong_login(&app, "una").await, 401, "the 10th wrong one");
    assert_eq!(app.login("una", &una.password).await.status(), 429);
}

async fn change_password(app: &TestApp, user: &User, current: &str) -> reqwest::Response {
    app.post(
        "/api/auth/password",
        Some(&user.access),
        json!({"currentPassword": current, "newPassword": "Another-Quite-Long-Passphrase-77"}),
    )
    .await
}

#[tokio::test]
async fn password_change_and_totp_setup_share_the_account_limit_with_login() {
    let app = spawn_app().await;
    let wes = app.register("wes").await;
    for _ in 0..4 {
        let r = change_password(&app, &wes, "not my password at all").await;
        assert_eq!(r.status(), 422);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["errors"][0]["field"], "currentPassword");
    }
    for _ in 0..3 {
        let r = app
            .post(
                "/api/auth/mfa/totp/setup",
                Some(&wes.access),
                json!({"password": "not my password at all"}),
            )
            .await;
        assert_eq!(r.status(), 422);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["errors"][0]["field"], "password");
    }
    for _ in 0..3 {
        assert_eq!(wrong_login(&app, "wes").await, 401);
    }
    // 10 wrong in all: every password check now answers 429, right or not.
    assert_eq!(app.login("wes", &wes.password).await.status(), 429);
    let r = change_password(&app, &wes, &wes.password).await;
    assert_eq!(r.status(), 429);
    assert!(r.headers().get("retry-after").is_some());
    let r = app
        .post(
            "/api/auth/mfa/totp/setup",
            Some(&wes.access),
            json!({"password": wes.password}),
        )
        .await;
    assert_eq!(r.status(), 429);
}

#[tokio::test]
async fn mfa_disable_and_recovery_codes_count_wrong_passwords() {
    let app = spawn_app().await;
    let xia = app.register("xia").await;
    let secret = crate::mfa::enable_mfa(&app, &xia).await.0;
    for path in ["/api/auth/mfa/disable", "/api/auth/mfa/recovery-codes"] {
        for _ in 0..5 {
            let r = app
                .post(
                    path,
                    Some(&xia.access),
                    json!({"password": "not my password at all", "code": "123456"}),
                )
                .await;
            assert_eq!(r.status(), 422, "{path}");
        }
    }
    let r = app
        .post(
            "/api/auth/mfa/disable",
            Some(&xia.access),
            json!({"password": xia.password, "code": totp(&secret, now())}),
        )
        .await;
    assert_eq!(
        r.status(),
        429,
        "10 wrong passwords from those two endpoints"
    );
    assert_eq!(app.login("xia", &xia.password).await.status(), 429);
}

#[tokio::test]
async fn forty_racing_wrong_current_passwords_get_at_most_ten_checks() {
    let app = spawn_app().await;
    let yan = app.register("yan").await;
    let burst = join_all((0..40).map(|_| async {
        change_password(&app, &yan, "not my password at all")
            .await
            .status()
            .as_u16()
    }))
    .await;
    let counts = tally(&burst);
    let checked = counts.get(&422).copied().unwrap_or(0);
    assert_eq!(
        checked + counts.get(&429).copied().unwrap_or(0),
        40,
        "{counts:?}"
    );
    assert!((1..=10).contains(&checked), "{counts:?}");
}

#[tokio::test]
async fn setup_and_enable_need_the_password() {
    let app = spawn_app().await;
    let zed = app.register("zed").await;
    // No body at all (what clients sent before), an empty object, a wrong one.
    let bare = app
        .client
        .post(app.url("/api/auth/mfa/totp/setup"))
        .bearer_auth(&zed.access)
        .send()
        .await
        .unwrap();
    assert_eq!(bare.status(), 422);
    let body: Value = bare.json().await.unwrap();
    assert_eq!(body["errors"][0]["field"], "password", "{body}");
    for (path, body) in [
        ("/api/auth/mfa/totp/setup", json!({})),
        ("/api/auth/mfa/totp/enable", json!({"code": "123456"})),
    ] {
        let r = app.post(path, Some(&zed.access), body).await;
        assert_eq!(r.status(), 422, "{path}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["errors"][0]["field"], "password", "{path}: {body}");
    }
    let setup = app
        .post(
            "/api/auth/mfa/totp/setup",
            Some(&zed.access),
            json!({"password": zed.password}),
        )
        .await;
    assert_eq!(setup.status(), 200);
    let secret = setup.json::<Value>().await.unwrap()["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    let no_password = app
        .post(
            "/api/auth/mfa/totp/enable",
            Some(&zed.access),
            json!({"code": totp(&secret, now())}),
        )
        .await;
    assert_eq!(no_password.status(), 422);
    let body: Value = no_password.json().await.unwrap();
    assert_eq!(body["errors"][0]["field"], "password", "{body}");
    let wrong = app
        .post(
            "/api/auth/mfa/totp/enable",
            Some(&zed.access),
            json!({"code": totp(&secret, now()), "password": "not my password at all"}),
        )
        .await;
    assert_eq!(wrong.status(), 422);
    let body: Value = wrong.json().await.unwrap();
    assert_eq!(body["errors"][0]["field"], "password", "{body}");
    let status: Value = app
        .get("/api/auth/mfa", &zed.access)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        status["enabled"], false,
        "nothing enabled without the password"
    );
    let right = app
        .post(
            "/api/auth/mfa/totp/enable",
            Some(&zed.access),
            json!({"code": totp(&secret, now()), "password": zed.password}),
        )
        .await;
    assert_eq!(right.status(), 200);
}

/// Racing wrong codes on one mfaToken: at most 5 are checked, which the
/// account's MFA allowance (10) shows afterwards.
#[tokio::test]
async fn forty_racing_wrong_codes_on_one_mfa_token_get_at_most_five_checks() {
    let app = spawn_app().await;
    let ada = app.register("ada").await;
    let (secret, _) = crate::mfa::enable_mfa(&app, &ada).await;
    let token = crate::mfa::mfa_token(&app, &ada).await;
    let burst = join_all((0..40).map(|_| async {
        app.post(
            "/api/auth/login/mfa",
            None,
            json!({"mfaToken": token, "code": "000000"}),
        )
        .await
        .status()
        .as_u16()
    }))
    .await;
    assert!(burst.iter().all(|s| *s == 401), "{:?}", tally(&burst));
    // If the burst had been checked more than 5 times, these 4 plus the
    // right code would exceed the account's 10.
    let second = crate::mfa::mfa_token(&app, &ada).await;
    for _ in 0..4 {
        let r = app
            .post(
                "/api/auth/login/mfa",
                None,
                json!({"mfaToken": second, "code": "000000"}),
            )
            .await;
        assert_eq!(r.status(), 401);
    }
    let third = crate::mfa::mfa_token(&app, &ada).await;
    let r = app
        .post(
            "/api/auth/login/mfa",
            None,
            json!({"mfaToken": third, "code": totp(&secret, now())}),
        )
        .await;
    assert_eq!(r.status(), 200, "5 + 4 wrong codes counted, not more");
}

/// The 200-request flood of issue 20 from one signed-in account, while
/// another account logs in: the bystander is never refused, and (recorded
/// for the report) waits about as long as alone.
#[tokio::test]
async fn one_accounts_flood_does_not_refuse_or_stall_another_accounts_login() {
    let app = spawn_app().await;
    let flooder = app.register("flooder").await;
    let bystander = app.register("bystander").await;
    let timed_login = || async {
        let started = Instant::now();
        let status = app.login("bystander", &bystander.password).await.status();
        (status.as_u16(), started.elapsed())
    };
    let mut alone = Vec::new();
    for _ in 0..3 {
        let (status, took) = timed_login().await;
        assert_eq!(status, 200);
        alone.push(took);
    }
    let flood = join_all((0..200).map(|_| async {
        change_password(&app, &flooder, "not my password at all")
            .await
            .status()
            .as_u16()
    }));
    let during = async {
        // Let the flood reach the server first.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut times = Vec::new();
        for _ in 0..3 {
            times.push(timed_login().await);
        }
        times
    };
    let (flood, during) = tokio::join!(flood, during);
    let counts = tally(&flood);
    alone.sort();
    eprintln!(
        "bystander login alone (median of 3): {:?}; during a 200-request flood: {:?}; flood answers: {counts:?}",
        alone[1],
        during.iter().map(|(_, t)| *t).collect::<Vec<_>>()
    );
    for (status, _) in &during {
        assert_eq!(*status, 200, "the bystander is never refused");
    }
    let checked = counts.get(&422).copied().unwrap_or(0);
    assert!(checked <= 10, "{counts:?}");
    assert_eq!(
        checked + counts.get(&429).copied().unwrap_or(0),
        200,
        "{counts:?}"
    );
}
