use serde_json::{json, Value};

use crate::helpers::{now, spawn_app, totp, TestApp, User};

/// Sets up and enables TOTP; returns the secret and the recovery codes.
pub async fn enable_mfa(app: &TestApp, user: &User) -> (String, Vec<String>) {
    let setup = app
        .post(
            "/api/auth/mfa/totp/setup",
            Some(&user.access),
            json!({"password": user.password}),
        )
        .await;
    assert_eq!(setup.status(), 200);
    let setup: Value = setup.json().await.unwrap();
    let secret = setup["secret"].as_str().unwrap().to_owned();
    assert_eq!(secret.len(), 32, "160 bits in base32 without padding");
    assert!(!secret.contains('='));
    let uri = setup["otpauthUri"].as_str().unwrap();
    assert!(
        uri.starts_with(&format!(
            "otpauth://totp/Chat:{}?secret={secret}&issuer=Chat",
            user.username
        )),
        "{uri}"
    );
    assert!(setup["qrSvg"].as_str().unwrap().contains("<svg"));
    // A code from an independent implementation, one step old (network delay).
    let code = totp(&secret, now() - 30);
    let enable = app
        .post(
            "/api/auth/mfa/totp/enable",
            Some(&user.access),
            json!({"code": code, "password": user.password}),
        )
        .await;
    assert_eq!(enable.status(), 200);
    let codes: Vec<String> =
        serde_json::from_value(enable.json::<Value>().await.unwrap()["recoveryCodes"].clone())
            .unwrap();
    assert_eq!(codes.len(), 10);
    (secret, codes)
}

pub async fn mfa_token(app: &TestApp, user: &User) -> String {
    let resp: Value = app
        .login(&user.username, &user.password)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(resp["mfaRequired"], true, "{resp}");
    assert!(resp.get("accessToken").is_none());
    assert_eq!(resp["methods"], json!(["totp", "recoveryCode"]));
    resp["mfaToken"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_full_mfa_login_with_a_totp_code_and_no_replay() {
    let app = spawn_app().await;
    let mia = app.register("mia").await;
    let mut events = app.capture_events().await;
    let (secret, _) = enable_mfa(&app, &mia).await;
    assert_eq!(
        events.next_of("auth.mfa.enabled").await["data"]["userId"],
        mia.id.as_str()
    );
    let status: Value = app
        .get("/api/auth/mfa", &mia.access)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        status,
        json!({"enabled": true, "recoveryCodesRemaining": 10})
    );

    let token = mfa_token(&app, &mia).await;
    // The MFA token is not an access token anywhere.
    assert_eq!(app.get("/api/users/me", &token).await.status(), 401);
    // The step used to enable is spent; the current step works once.
    let current = totp(&secret, now());
    let ok = app
        .post(
            "/api/auth/login/mfa",
            None,
            json!({"mfaToken": token, "code": current}),
        )
        .await;
    assert_eq!(ok.status(), 200);
    let body: Value = ok.json().await.unwrap();
    assert_eq!(
        app.get("/api/users/me", body["accessToken"].as_str().unwrap())
            .await
            .status(),
        200
    );
    assert_eq!(
        events.next_of("auth.login.succeeded").await["data"]["userId"],
        mia.id.as_str()
    );

    // The token was single use; a new login cannot replay the code either.
    let again = app
        .post(
            "/api/auth/login/mfa",
            None,
            json!({"mfaToken": token, "code": current}),
        )
        .await;
    assert_eq!(again.status(), 401);
    let token2 = mfa_token(&app, &mia).await;
    let replay = app
        .post(
            "/api/auth/login/mfa",
            None,
            json!({"mfaToken": token2, "code": current}),
        )
        .await;
    assert_eq!(replay.status(), 401, "a used code is never accepted twice");
    let old = app
        .post(
            "/api/auth/login/mfa",
            None,
            json!({"mfaToken": token2, "code": totp(&secret, now() - 60)}),
        )
        .await;
    assert_eq!(old.status(), 401, "T-2 is too old");
}

#[tokio::test]
async fn ten_parallel_uses_of_one_code_give_exactly_one_success() {
    let app = spawn_app().await;
    let ned = app.register("ned").await;
    let (secret, _) = enable_mfa(&app, &ned).await;
    let mut tokens = Vec::new();
    for _ in 0..10 {
        tokens.push(mfa_token(&app, &ned).await);
    }
    let code = totp(&secret, now());
    let attempts = tokens.iter().map(|t| {
        app.post(
            "/api/auth/login/mfa",
            None,
            json!({"mfaToken": t, "code": code}),
        )
    });
    let results = futures_util::future::join_all(attempts).await;
    let ok = results.iter().filter(|r| r.status() == 200).count();
    assert_eq!(
        ok,
        1,
        "{:?}",
        results.iter().map(|r| r.status()).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn a_recovery_code_works_once_even_under_racing_requests() {
    let app = spawn_app().await;
    let oli = app.register("oli").await;
    let (_, codes) = enable_mfa(&app, &oli).await;
    let mut events = app.capture_events().await;
    let mut tokens = Vec::new();
    for _ in 0..5 {
        tokens.push(mfa_token(&app, &oli).await);
    }
    let attempts = tokens.iter().map(|t| {
        app.post(
            "/api/auth/login/mfa",
            None,
            json!({"mfaToken": t, "recoveryCode": codes[0]}),
        )
    });
    let results = futures_util::future::join_all(attempts).await;
    assert_eq!(results.iter().filter(|r| r.status() == 200).count(), 1);
    let event = events.next_of("auth.recovery_code.used").await;
    assert_eq!(event["data"]["remaining"], 9);
    // Another code, typed in capitals without the dash, still works.
    let token = mfa_token(&app, &oli).await;
    let typed = codes[1].to_uppercase().replace('-', "");
    let ok = app
        .post(
            "/api/auth/login/mfa",
            None,
            json!({"mfaToken": token, "recoveryCode": typed}),
        )
        .await;
    assert_eq!(ok.status(), 200);
}

#[tokio::test]
async fn five_wrong_codes_kill_the_mfa_token() {
    let app = spawn_app().await;
    let pam = app.register("pam").await;
    let (secret, _) = enable_mfa(&app, &pam).await;
    let token = mfa_token(&app, &pam).await;
    for _ in 0..5 {
        let r = app
            .post(
                "/api/auth/login/mfa",
                None,
                json!({"mfaToken": token, "code": "000000"}),
            )
            .await;
        assert_eq!(r.status(), 401);
    }
    let right = app
        .post(
            "/api/auth/login/mfa",
            None,
            json!({"mfaToken": token, "code": totp(&secret, now())}),
        )
        .await;
    assert_eq!(right.status(), 401, "the token is dead after 5 wrong codes");
}

#[tokio::test]
async fn wrong_codes_are_throttled_per_account_across_fresh_logins() {
    let app = spawn_app().await;
    let quinn = app.register("quinn").await;
    let (secret, _) = enable_mfa(&app, &quinn).await;
    // 10 wrong codes over several mfa tokens (fresh password logins).
    for _ in 0..2 {
        let token = mfa_token(&app, &quinn).await;
        for _ in 0..5 {
            app.post(
                "/api/auth/login/mfa",
                None,
                json!({"mfaToken": token, "code": "000000"}),
            )
            .await;
        }
    }
    let token = mfa_token(&app, &quinn).await;
    let r = app
        .post(
            "/api/auth/login/mfa",
            None,
            json!({"mfaToken": token, "code": totp(&secret, now())}),
        )
        .await;
    assert_eq!(r.status(), 429);
    assert!(r.headers().get("retry-after").is_some());
}

#[tokio::test]
async fn disabling_and_regenerating_need_the_password_and_a_code() {
    let app = spawn_app().await;
    let rex = app.register("rex").await;
    let (_, codes) = enable_mfa(&app, &rex).await;
    let wrong_pw = app
        .post(
            "/api/auth/mfa/recovery-codes",
            Some(&rex.access),
            json!({"password": "wrong password here", "recoveryCode": codes[0]}),
        )
        .await;
    assert_eq!(wrong_pw.status(), 422);
    let regen = app
        .post(
            "/api/auth/mfa/recovery-codes",
            Some(&rex.access),
            json!({"password": rex.password, "recoveryCode": codes[0]}),
        )
        .await;
    assert_eq!(regen.status(), 200);
    let new_codes: Vec<String> =
        serde_json::from_value(regen.json::<Value>().await.unwrap()["recoveryCodes"].clone())
            .unwrap();
    let old = app
        .post(
            "/api/auth/mfa/disable",
            Some(&rex.access),
            json!({"password": rex.password, "recoveryCode": codes[1]}),
        )
        .await;
    assert_eq!(old.status(), 422, "the old set stopped working");
    let mut events = app.capture_events().await;
    let disable = app
        .post(
            "/api/auth/mfa/disable",
            Some(&rex.access),
            json!({"password": rex.password, "recoveryCode": new_codes[0]}),
        )
        .await;
    assert_eq!(disable.status(), 204);
    assert_eq!(
        events.next_of("auth.mfa.disabled").await["data"]["userId"],
        rex.id.as_str()
    );
    let login: Value = app.login("rex", &rex.password).await.json().await.unwrap();
    assert!(login["accessToken"].is_string(), "no MFA any more");
}
