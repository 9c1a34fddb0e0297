//! Secrets never reach the logs: a full scenario with known secrets, and
//! every captured line scanned for them.

use std::io::Write;
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

use crate::helpers::{now, spawn_app, totp};

#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn no_password_token_secret_or_code_appears_in_the_logs() {
    let buffer = Buffer::default();
    let writer = buffer.clone();
    tracing_subscriber::fmt()
        .json()
        .with_env_filter("debug,lapin=info,mongodb=info,h2=info,hyper=info")
        .with_writer(move || writer.clone())
        .try_init()
        .ok();

    let app = spawn_app().await;
    let user = app.register("tess").await;
    let setup: Value = app
        .post(
            "/api/auth/mfa/totp/setup",
            Some(&user.access),
            json!({"password": user.password}),
        )
        .await
        .json()
        .await
        .unwrap();
    let secret = setup["secret"].as_str().unwrap().to_owned();
    let enable_code = totp(&secret, now());
    let enabled: Value = app
        .post(
            "/api/auth/mfa/totp/enable",
            Some(&user.access),
            json!({"code": enable_code, "password": user.password}),
        )
        .await
        .json()
        .await
        .unwrap();
    let codes: Vec<String> = serde_json::from_value(enabled["recoveryCodes"].clone()).unwrap();
    let login: Value = app
        .login("tess", &user.password)
        .await
        .json()
        .await
        .unwrap();
    let mfa_token = login["mfaToken"].as_str().unwrap().to_owned();
    let done: Value = app
        .post(
            "/api/auth/login/mfa",
            None,
            json!({"mfaToken": mfa_token, "recoveryCode": codes[0]}),
        )
        .await
        .json()
        .await
        .unwrap();
    let refreshed: Value = app
        .post(
            "/api/auth/refresh",
            None,
            json!({"refreshToken": done["refreshToken"]}),
        )
        .await
        .json()
        .await
        .unwrap();
    app.login("tess", "a wrong password 123").await;

    let logs = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("session opened"),
        "the scenario was logged at all"
    );
    let secrets = [
        user.password.as_str(),
        "a wrong password 123",
        secret.as_str(),
        enable_code.as_str(),
        codes[0].as_str(),
        codes[1].as_str(),
        user.access.as_str(),
        user.refresh.as_str(),
        mfa_token.as_str(),
        done["accessToken"].as_str().unwrap(),
        done["refreshToken"].as_str().unwrap(),
        refreshed["refreshToken"].as_str().unwrap(),
    ];
    for s in secrets {
        assert!(
            !logs.contains(s),
            "a secret leaked into the logs: {}…",
            &s[..4.min(s.len())]
        );
    }
}
