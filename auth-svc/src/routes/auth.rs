//! Register, login (with and without MFA), refresh, logout, password change.

use actix_web::{web, HttpRequest, HttpResponse};
use broker::events::auth::{LoginSucceeded, RecoveryCodeUsed};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use shared::auth::{Authenticated, TokenType};
use shared::http::{RequestId, ValidJson};
use shared::openapi::Problem;
use shared::ApiError;
use utoipa::ToSchema;
use validator::Validate;

use crate::checks::{self, account_key, check_own_password, unknown_login_key, PasswordLimit};
use crate::domain::credentials::{check_display_name, check_password, Email, Username};
use crate::domain::password::HashKey;
use crate::domain::tokens::{ACCESS_TTL_SECS, MFA_TTL_SECS};
use crate::domain::totp;
use crate::events::{self, Carried};
use crate::routes::{ip, sessions, user_agent};
use crate::state::{hash_error, issuer_error, user_error, AppState};
use crate::storage::now;
use crate::storage::sessions::{Rotation, Sessions};
use crate::storage::users::{EmailVerification, MfaState, OwnUser, UserDoc, Users};

#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RegisterBody {
    username: String,
    email: String,
    #[schema(value_type = String, format = Password)]
    password: SecretString,
    display_name: Option<String>,
}

#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginBody {
    /// Username or email.
    #[validate(length(min = 1, max = 254))]
    login: String,
    #[schema(value_type = String, format = Password)]
    password: SecretString,
    /// The `deviceToken` this device got at an earlier login: a valid one
    /// is not blocked by the account's lockout (it has its own limit).
    #[serde(rename = "deviceToken")]
    #[validate(length(min = 1, max = 256))]
    device_token: Option<String>,
}

#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MfaLoginBody {
    #[validate(length(min = 1, max = 4096))]
    mfa_token: String,
    /// As in `login`: handed back when valid, so the device keeps its token.
    #[validate(length(min = 1, max = 256))]
    device_token: Option<String>,
    #[validate(length(min = 1, max = 16))]
    code: Option<String>,
    #[validate(length(min = 1, max = 32))]
    recovery_code: Option<String>,
}

#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RefreshBody {
    #[validate(length(min = 1, max = 256))]
    refresh_token: String,
}

#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PasswordBody {
    #[schema(value_type = String, format = Password)]
    current_password: SecretString,
    #[schema(value_type = String, format = Password)]
    new_password: SecretString,
}

/// Tokens of a session (`user` on login and registration).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Tokens {
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<OwnUser>,
    access_token: String,
    refresh_token: String,
    token_type: &'static str,
    expires_in: i64,
    /// Opaque, bound to the account and this device, valid 90 days: send it
    /// with later logins (on register, login and login/mfa; not on refresh).
    #[serde(skip_serializing_if = "Option::is_none")]
    device_token: Option<String>,
}

/// The answer to a password login on an account with MFA: no tokens yet.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MfaChallenge {
    mfa_required: bool,
    /// Valid 5 minutes, single use; only `/api/auth/login/mfa` takes it.
    mfa_token: String,
    methods: [&'static str; 2],
}

/// Same body for an unknown account and a wrong password.
fn bad_credentials() -> ApiError {
    ApiError::Unauthorized
}

fn password_len_ok(p: &SecretString) -> bool {
    (1..=128).contains(&p.expose_secret().chars().count())
}

/// Opens a session for `user` and mints its tokens, with the device token
/// the client presented (when valid) or a new one.
async fn open_session(
    state: &AppState,
    req: &HttpRequest,
    rid: &RequestId,
    user: &UserDoc,
    announce_login: bool,
    device_token: Option<&str>,
) -> Result<Tokens, ApiError> {
    let ua = user_agent(req);
    let ip = ip(req, state);
    let session = Sessions::open(&user.id, ua.clone(), ip.clone());
    let mut carried = Carried::new(&state.outbox, &rid.0);
    // Recorded on every session (registration too), announced on logins.
    let new_device = state
        .sessions
        .is_new_device(&user.id, ua.as_deref(), ip.as_deref())
        .await?;
    if announce_login {
        let event = LoginSucceeded {
            user_id: user.id.clone(),
            session_id: session.id.clone(),
            ip,
            user_agent: ua,
            new_device,
        };
        carried = carried.with(&user.id, event)?;
    }
    let refresh_token = state.sessions.create(&session, carried.entries()?).await?;
    carried.committed(Sessions::COLLECTION, &session.id);
    let access_token = state
        .issuer
        .access(&user.id, &session.id)
        .map_err(issuer_error)?;
    let device_token = state.devices.keep_or_issue(&user.id, device_token).await?;
    tracing::info!(user.id = %user.id, session.id = %session.id, "session opened");
    Ok(Tokens {
        user: Some(user.own()),
        access_token,
        refresh_token,
        token_type: "Bearer",
        expires_in: ACCESS_TTL_SECS,
        device_token: Some(device_token),
    })
}

/// `POST /api/auth/register`.
#[utoipa::path(post, path = "/api/auth/register", tag = "auth", request_body = RegisterBody, responses((status = 201, body = Tokens), (status = 409, body = Problem), (status = 429, body = Problem), (status = 422, body = Problem)))]
pub async fn register(
    state: web::Data<AppState>,
    req: HttpRequest,
    rid: RequestId,
    body: ValidJson<RegisterBody>,
) -> Result<HttpResponse, ApiError> {
    let body = body.0;
    let mut errors = Vec::new();
    let username = Username::parse(&body.username)
        .map_err(|m| errors.push(("username", m)))
        .ok();
    let email = Email::parse(&body.email)
        .map_err(|m| errors.push(("email", m)))
        .ok();
    let display_name = body
        .display_name
        .clone()
        .unwrap_or_else(|| body.username.clone());
    if let Err(m) = check_display_name(&display_name) {
        errors.push(("displayName", m));
    }
    let inputs = [
        body.username.as_str(),
        body.email.as_str(),
        display_name.as_str(),
    ];
    if let Err(m) = check_password(body.password.expose_secret(), &inputs) {
        errors.push(("password", m));
    }
    let (Some(username), Some(email), true) = (username, email, errors.is_empty()) else {
        return Err(ApiError::Validation(
            errors
                .into_iter()
                .map(|(f, m)| shared::error::FieldError::new(f, m))
                .collect(),
        ));
    };
    let password_hash = state
        .hasher
        .hash(&HashKey::login(&username.normalized()), &body.password)
        .await
        .map_err(hash_error)?;
    let (verification, verification_token) = EmailVerification::issue();
    let user = UserDoc {
        id: uuid::Uuid::now_v7().simple().to_string(),
        username: username.as_str().to_owned(),
        username_norm: username.normalized(),
        email: email.as_str().to_owned(),
        email_norm: email.normalized(),
        display_name: display_name.trim().to_owned(),
        avatar_url: None,
        bio: None,
        password_hash,
        created_at: now(),
        profile_version: 1,
        mfa: MfaState::default(),
        email_verified: false,
        email_verification: Some(verification),
    };
    let carried = Carried::new(&state.outbox, &rid.0)
        .with(&user.id, events::user_registered(&user))?
        .with(
            &user.id,
            events::verification_requested(&user, verification_token),
        )?;
    state
        .users
        .insert(&user, carried.entries()?)
        .await
        .map_err(user_error)?;
    carried.committed(Users::COLLECTION, &user.id);
    tracing::info!(user.id = %user.id, "account registered");
    let tokens = open_session(&state, &req, &rid, &user, false, None).await?;
    Ok(HttpResponse::Created().json(tokens))
}

/// `POST /api/auth/login`: tokens, or an MFA challenge.
#[utoipa::path(post, path = "/api/auth/login", tag = "auth", request_body = LoginBody, responses((status = 200, description = "tokens, or an MFA challenge", body = Tokens), (status = 401, body = Problem), (status = 429, body = Problem), (status = 422, body = Problem)))]
pub async fn login(
    state: web::Data<AppState>,
    req: HttpRequest,
    rid: RequestId,
    body: ValidJson<LoginBody>,
) -> Result<HttpResponse, ApiError> {
    let login = body.login.trim().to_lowercase();
    if !password_len_ok(&body.password) {
        return Err(bad_credentials());
    }
    let user = state.users.by_login(&login).await?;
    let device = match (&user, body.device_token.as_deref()) {
        (Some(u), Some(token)) => state.devices.find_valid(&u.id, token).await?,
        _ => None,
    };
    let (limit_key, hash_key) = match (&user, &device) {
        (Some(u), Some(d)) => (format!("{}:{}", u.id, d.hash), HashKey::device(&d.hash)),
        (Some(u), None) => (account_key(&u.id), HashKey::user(&u.id)),
        (None, _) => (unknown_login_key(&login), HashKey::login(&login)),
    };
    let limit = match device {
        Some(_) => PasswordLimit::Device(&limit_key),
        None => PasswordLimit::Account(&limit_key),
    };
    let ok = checks::check_password(
        &state,
        limit,
        &hash_key,
        &body.password,
        user.as_ref().map(|u| u.password_hash.as_str()),
    )
    .await?;
    let Some(user) = user.filter(|_| ok) else {
        tracing::info!("login refused");
        return Err(bad_credentials());
    };
    if user.mfa.enabled {
        let (mfa_token, jti) = state.issuer.mfa(&user.id).map_err(issuer_error)?;
        state
            .sessions
            .create_challenge(&jti, &user.id, MFA_TTL_SECS)
            .await?;
        return Ok(HttpResponse::Ok().json(MfaChallenge {
            mfa_required: true,
            mfa_token,
            methods: ["totp", "recoveryCode"],
        }));
    }
    let tokens = open_session(
        &state,
        &req,
        &rid,
        &user,
        true,
        body.device_token.as_deref(),
    )
    .await?;
    Ok(HttpResponse::Ok().json(tokens))
}

/// The second factor, checked and consumed atomically. `Ok(Some(n))` when a
/// recovery code was used (n left), `Ok(None)` for a TOTP code.
/// Checks a TOTP code or a recovery code against the account's limit. A
/// recovery code is used up by the same write that carries its
/// `auth.recovery_code.used`.
pub async fn check_second_factor(
    state: &AppState,
    rid: &RequestId,
    user: &UserDoc,
    code: Option<&str>,
    recovery_code: Option<&str>,
) -> Result<(), ApiError> {
    if code.is_some() == recovery_code.is_some() {
        return Err(ApiError::validation(
            "code",
            "send exactly one of code and recoveryCode",
        ));
    }
    let attempt = checks::reserve(&state.mfa_failures, &account_key(&user.id)).await?;
    let accepted = match (code, recovery_code) {
        (Some(code), None) => {
            let secret = user
                .mfa
                .secret
                .as_deref()
                .and_then(|sealed| state.secrets.open(sealed, &user.id).ok());
            let now_secs = u64::try_from(chrono::Utc::now().timestamp()).unwrap_or_default();
            match secret.and_then(|s| totp::matching_step(&s, code, now_secs)) {
                Some(step) => {
                    state
                        .users
                        .consume_step(&user.id, i64::try_from(step).unwrap_or(i64::MAX))
                        .await?
                }
                None => false,
            }
        }
        (None, Some(recovery)) => {
            // As read with the account: two codes used at the same moment
            // may both report the same count.
            let remaining =
                u32::try_from(user.mfa.recovery_codes.len().saturating_sub(1)).unwrap_or(u32::MAX);
            let event = RecoveryCodeUsed {
                user_id: user.id.clone(),
                remaining,
            };
            let carried = Carried::new(&state.outbox, &rid.0).with(&user.id, event)?;
            let used = state
                .users
                .consume_recovery_code(
                    &user.id,
                    &state.secrets.code_hash(recovery),
                    carried.entries()?,
                    carried.marker(),
                )
                .await?;
            if used {
                carried.committed(Users::COLLECTION, &user.id);
            }
            used
        }
        _ => {
            return Err(ApiError::validation(
                "code",
                "send exactly one of code and recoveryCode",
            ));
        }
    };
    if accepted {
        attempt.refund().await;
        Ok(())
    } else {
        // The attempt stays counted.
        Err(ApiError::Unauthorized)
    }
}

/// `POST /api/auth/login/mfa`.
#[utoipa::path(post, path = "/api/auth/login/mfa", tag = "auth", request_body = MfaLoginBody, responses((status = 200, body = Tokens), (status = 401, body = Problem), (status = 429, body = Problem), (status = 422, body = Problem)))]
pub async fn login_mfa(
    state: web::Data<AppState>,
    req: HttpRequest,
    rid: RequestId,
    body: ValidJson<MfaLoginBody>,
    verifier: web::Data<shared::auth::TokenVerifier>,
) -> Result<HttpResponse, ApiError> {
    let claims = verifier
        .verify(&body.mfa_token, TokenType::Mfa)
        .map_err(|_| ApiError::Unauthorized)?;
    let user = state
        .users
        .by_id(&claims.sub)
        .await?
        .ok_or(ApiError::Unauthorized)?;
    // One of the token's attempts is taken before the code is checked (one
    // conditional update), so racing codes get no more than five checks.
    if !state
        .sessions
        .reserve_challenge_attempt(&claims.jti)
        .await?
    {
        return Err(ApiError::Unauthorized);
    }
    match check_second_factor(
        &state,
        &rid,
        &user,
        body.code.as_deref(),
        body.recovery_code.as_deref(),
    )
    .await
    {
        Ok(()) => {}
        // A wrong code keeps the token's attempt; anything that was not a
        // check (the account's limit, a malformed body) gives it back.
        Err(ApiError::Unauthorized) => return Err(ApiError::Unauthorized),
        Err(e) => {
            state
                .sessions
                .release_challenge_attempt(&claims.jti)
                .await?;
            return Err(e);
        }
    };
    if !state.sessions.consume_challenge(&claims.jti).await? {
        return Err(ApiError::Unauthorized);
    }
    let tokens = open_session(
        &state,
        &req,
        &rid,
        &user,
        true,
        body.device_token.as_deref(),
    )
    .await?;
    Ok(HttpResponse::Ok().json(tokens))
}

/// `POST /api/auth/refresh`: single use, rotated; reuse kills the session.
#[utoipa::path(post, path = "/api/auth/refresh", tag = "auth", request_body = RefreshBody, responses((status = 200, body = Tokens), (status = 401, body = Problem), (status = 429, body = Problem), (status = 422, body = Problem)))]
pub async fn refresh(
    state: web::Data<AppState>,
    rid: RequestId,
    body: ValidJson<RefreshBody>,
) -> Result<HttpResponse, ApiError> {
    match state.sessions.rotate(&body.refresh_token).await? {
        Rotation::Rotated {
            session,
            refresh_token,
        } => {
            let access_token = state
                .issuer
                .access(&session.user_id, &session.id)
                .map_err(issuer_error)?;
            Ok(HttpResponse::Ok().json(Tokens {
                user: None,
                access_token,
                refresh_token,
                token_type: "Bearer",
                expires_in: ACCESS_TTL_SECS,
                device_token: None,
            }))
        }
        Rotation::Reused { session } => {
            if let Some(session) = session {
                if sessions::revoke(&state, &rid, &session, "refresh_token_reused").await? {
                    tracing::warn!(user.id = %session.user_id, session.id = %session.id, "refresh token reused; session revoked");
                }
            }
            Err(ApiError::Unauthorized)
        }
        Rotation::Invalid => Err(ApiError::Unauthorized),
    }
}

/// `POST /api/auth/logout`.
#[utoipa::path(post, path = "/api/auth/logout", tag = "auth", responses((status = 204), (status = 401, body = Problem)), security(("bearer" = [])))]
pub async fn logout(
    state: web::Data<AppState>,
    rid: RequestId,
    caller: Authenticated,
) -> Result<HttpResponse, ApiError> {
    if let Some(session) = state.sessions.get(&caller.session_id).await? {
        sessions::revoke(&state, &rid, &session, "logout").await?;
    }
    Ok(HttpResponse::NoContent().finish())
}

/// `POST /api/auth/password`: every other session is revoked. A wrong
/// current password counts toward the account's limit (429 once used up).
#[utoipa::path(post, path = "/api/auth/password", tag = "auth", request_body = PasswordBody, responses((status = 204), (status = 401, body = Problem), (status = 422, body = Problem), (status = 429, body = Problem)), security(("bearer" = [])))]
pub async fn change_password(
    state: web::Data<AppState>,
    rid: RequestId,
    caller: Authenticated,
    body: ValidJson<PasswordBody>,
) -> Result<HttpResponse, ApiError> {
    let user = state
        .users
        .by_id(&caller.user_id)
        .await?
        .ok_or(ApiError::Unauthorized)?;
    if !password_len_ok(&body.current_password)
        || !check_own_password(&state, &user, &body.current_password).await?
    {
        return Err(ApiError::validation(
            "currentPassword",
            "is not your current password",
        ));
    }
    let inputs = [
        user.username.as_str(),
        user.email.as_str(),
        user.display_name.as_str(),
    ];
    check_password(body.new_password.expose_secret(), &inputs)
        .map_err(|m| ApiError::validation("newPassword", m))?;
    let hash = state
        .hasher
        .hash(&HashKey::user(&user.id), &body.new_password)
        .await
        .map_err(hash_error)?;
    // The other sessions go first, each with its event: a crash in
    // between leaves them revoked and the old password working, which a
    // retry completes, never a new password with the old sessions alive.
    let revoked = sessions::revoke_others(
        &state,
        &rid,
        &user.id,
        Some(&caller.session_id),
        "password_changed",
    )
    .await?;
    state.users.set_password(&user.id, &hash).await?;
    tracing::info!(user.id = %user.id, revoked, "password changed");
    Ok(HttpResponse::NoContent().finish())
}
