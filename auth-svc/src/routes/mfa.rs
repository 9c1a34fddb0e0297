//! TOTP set-up, enabling, disabling and recovery codes.

use actix_web::{web, HttpRequest, HttpResponse};
use broker::events::auth::{MfaDisabled, MfaEnabled};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use shared::auth::Authenticated;
use shared::http::{RequestId, ValidJson};
use shared::openapi::Problem;
use shared::ApiError;
use utoipa::ToSchema;
use validator::Validate;

use crate::checks::{self, account_key, check_own_password};
use crate::domain::{secrets, totp};
use crate::events::Carried;
use crate::routes::auth::check_second_factor;
use crate::state::AppState;
use crate::storage::users::{UserDoc, Users};

const RECOVERY_CODES: usize = 10;

/// The account's password again (a stolen access token alone cannot enrol
/// an authenticator).
#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetupBody {
    #[schema(value_type = String, format = Password)]
    password: SecretString,
}

/// The code from the new authenticator, and the password again.
#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnableBody {
    #[validate(length(min = 1, max = 16))]
    code: String,
    #[schema(value_type = String, format = Password)]
    password: SecretString,
}

/// The password plus a TOTP `code` or a `recoveryCode`.
#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ProtectedBody {
    #[schema(value_type = String, format = Password)]
    password: SecretString,
    #[validate(length(min = 1, max = 16))]
    code: Option<String>,
    #[validate(length(min = 1, max = 32))]
    recovery_code: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MfaStatus {
    enabled: bool,
    recovery_codes_remaining: usize,
}

/// Shown once: the secret to type or scan.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TotpSetup {
    /// Base32 (RFC 4648), no padding, 160 bits.
    secret: String,
    otpauth_uri: String,
    /// An SVG document of the URI as a QR code.
    qr_svg: String,
}

/// Shown once; only hashes are stored.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RecoveryCodes {
    recovery_codes: Vec<String>,
}

async fn current_user(state: &AppState, caller: &Authenticated) -> Result<UserDoc, ApiError> {
    state
        .users
        .by_id(&caller.user_id)
        .await?
        .ok_or(ApiError::Unauthorized)
}

fn new_recovery_codes(state: &AppState) -> (Vec<String>, Vec<String>) {
    let codes: Vec<String> = (0..RECOVERY_CODES)
        .map(|_| secrets::recovery_code())
        .collect();
    let hashes = codes.iter().map(|c| state.secrets.code_hash(c)).collect();
    (codes, hashes)
}

/// The password again, under the account's limit: 422 naming `password`
/// when wrong (and counted), 429 once the limit is used up.
async fn confirm_password(
    state: &AppState,
    user: &UserDoc,
    password: &SecretString,
) -> Result<(), ApiError> {
    if !check_own_password(state, user, password).await? {
        return Err(ApiError::validation(
            "password",
            "is not your current password",
        ));
    }
    Ok(())
}

/// A body that must name the password: a request without one (no body at
/// all, as before the password was required) is a 422 naming `password`.
fn password_body<T>(
    req: &HttpRequest,
    body: Result<ValidJson<T>, ApiError>,
) -> Result<T, ApiError> {
    let empty = req
        .headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .is_none_or(|v| v.as_bytes() == b"0");
    match body {
        Ok(body) => Ok(body.0),
        Err(ApiError::UnsupportedMediaType | ApiError::BadRequest(_)) if empty => {
            Err(ApiError::validation("password", "is required"))
        }
        Err(e) => Err(e),
    }
}

/// Password plus a second factor, for changes to MFA itself.
async fn reauthenticate(
    state: &AppState,
    rid: &RequestId,
    user: &UserDoc,
    body: &ProtectedBody,
) -> Result<(), ApiError> {
    confirm_password(state, user, &body.password).await?;
    match check_second_factor(
        state,
        rid,
        user,
        body.code.as_deref(),
        body.recovery_code.as_deref(),
    )
    .await
    {
        Ok(()) => Ok(()),
        Err(ApiError::Unauthorized) => {
            Err(ApiError::validation("code", "is wrong or already used"))
        }
        Err(e) => Err(e),
    }
}

/// `GET /api/auth/mfa`.
#[utoipa::path(get, path = "/api/auth/mfa", tag = "mfa", responses((status = 200, body = MfaStatus), (status = 401, body = Problem)), security(("bearer" = [])))]
pub async fn mfa_status(
    state: web::Data<AppState>,
    caller: Authenticated,
) -> Result<HttpResponse, ApiError> {
    let user = current_user(&state, &caller).await?;
    Ok(HttpResponse::Ok().json(MfaStatus {
        enabled: user.mfa.enabled,
        recovery_codes_remaining: user.mfa.recovery_codes.len(),
    }))
}

/// `POST /api/auth/mfa/totp/setup`: a new pending secret (replacing any
/// earlier pending one), shown once. Needs the password (422 naming
/// `password` when missing or wrong; wrong ones count toward the account's
/// limit, 429 once it is used up).
#[utoipa::path(post, path = "/api/auth/mfa/totp/setup", tag = "mfa", request_body = SetupBody, responses((status = 200, body = TotpSetup), (status = 401, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem), (status = 429, body = Problem)), security(("bearer" = [])))]
pub async fn setup_totp(
    state: web::Data<AppState>,
    req: HttpRequest,
    caller: Authenticated,
    body: Result<ValidJson<SetupBody>, ApiError>,
) -> Result<HttpResponse, ApiError> {
    let body = password_body(&req, body)?;
    let user = current_user(&state, &caller).await?;
    if user.mfa.enabled {
        return Err(ApiError::Conflict(
            "multi-factor authentication is already enabled".into(),
        ));
    }
    confirm_password(&state, &user, &body.password).await?;
    let secret = totp::generate_secret();
    let encoded = totp::encode_secret(&secret);
    let sealed = state.secrets.seal(&secret, &user.id);
    if !state.users.set_pending_secret(&user.id, &sealed).await? {
        return Err(ApiError::Conflict(
            "multi-factor authentication is already enabled".into(),
        ));
    }
    let uri = totp::otpauth_uri(&user.username, &encoded);
    let svg = totp::qr_svg(&uri)
        .ok_or_else(|| ApiError::Unexpected(anyhow::anyhow!("QR encoding failed")))?;
    Ok(HttpResponse::Ok().json(TotpSetup {
        secret: encoded,
        otpauth_uri: uri,
        qr_svg: svg,
    }))
}

/// `POST /api/auth/mfa/totp/enable`: confirms the pending secret with a
/// code, and the password (as for setup). Wrong codes count toward the
/// account's MFA limit.
#[utoipa::path(post, path = "/api/auth/mfa/totp/enable", tag = "mfa", request_body = EnableBody, responses((status = 200, body = RecoveryCodes), (status = 401, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem), (status = 429, body = Problem)), security(("bearer" = [])))]
pub async fn enable_totp(
    state: web::Data<AppState>,
    req: HttpRequest,
    rid: RequestId,
    caller: Authenticated,
    body: Result<ValidJson<EnableBody>, ApiError>,
) -> Result<HttpResponse, ApiError> {
    let body = password_body(&req, body)?;
    let user = current_user(&state, &caller).await?;
    if user.mfa.enabled {
        return Err(ApiError::Conflict(
            "multi-factor authentication is already enabled".into(),
        ));
    }
    let pending = user
        .mfa
        .pending_secret
        .clone()
        .ok_or_else(|| ApiError::Conflict("call /api/auth/mfa/totp/setup first".into()))?;
    confirm_password(&state, &user, &body.password).await?;
    let secret = state
        .secrets
        .open(&pending, &user.id)
        .map_err(|e| ApiError::Unexpected(e.into()))?;
    let attempt = checks::reserve(&state.mfa_failures, &account_key(&user.id)).await?;
    let now_secs = u64::try_from(chrono::Utc::now().timestamp()).unwrap_or_default();
    let Some(step) = totp::matching_step(&secret, &body.code, now_secs) else {
        // The attempt stays counted.
        return Err(ApiError::validation("code", "is wrong or expired"));
    };
    attempt.refund().await;
    let (codes, hashes) = new_recovery_codes(&state);
    let step = i64::try_from(step).unwrap_or(i64::MAX);
    let carried = Carried::new(&state.outbox, &rid.0).with(
        &user.id,
        MfaEnabled {
            user_id: user.id.clone(),
        },
    )?;
    if !state
        .users
        .enable_mfa(
            &user.id,
            &pending,
            step,
            &hashes,
            carried.entries()?,
            carried.marker(),
        )
        .await?
    {
        return Err(ApiError::Conflict(
            "the pending secret changed; set up again".into(),
        ));
    }
    carried.committed(Users::COLLECTION, &user.id);
    tracing::info!(user.id = %user.id, "MFA enabled");
    Ok(HttpResponse::Ok().json(RecoveryCodes {
        recovery_codes: codes,
    }))
}

/// `POST /api/auth/mfa/disable`.
#[utoipa::path(post, path = "/api/auth/mfa/disable", tag = "mfa", request_body = ProtectedBody, responses((status = 204), (status = 401, body = Problem), (status = 409, body = Problem), (status = 429, body = Problem), (status = 422, body = Problem)), security(("bearer" = [])))]
pub async fn disable_mfa(
    state: web::Data<AppState>,
    rid: RequestId,
    caller: Authenticated,
    body: ValidJson<ProtectedBody>,
) -> Result<HttpResponse, ApiError> {
    let user = current_user(&state, &caller).await?;
    if !user.mfa.enabled {
        return Err(ApiError::Conflict(
            "multi-factor authentication is not enabled".into(),
        ));
    }
    reauthenticate(&state, &rid, &user, &body).await?;
    let carried = Carried::new(&state.outbox, &rid.0).with(
        &user.id,
        MfaDisabled {
            user_id: user.id.clone(),
        },
    )?;
    if state
        .users
        .disable_mfa(&user.id, carried.entries()?, carried.marker())
        .await?
    {
        carried.committed(Users::COLLECTION, &user.id);
        tracing::info!(user.id = %user.id, "MFA disabled");
    }
    Ok(HttpResponse::NoContent().finish())
}

/// `POST /api/auth/mfa/recovery-codes`: a new set; the old one stops working.
#[utoipa::path(post, path = "/api/auth/mfa/recovery-codes", tag = "mfa", request_body = ProtectedBody, responses((status = 200, body = RecoveryCodes), (status = 401, body = Problem), (status = 409, body = Problem), (status = 429, body = Problem), (status = 422, body = Problem)), security(("bearer" = [])))]
pub async fn regenerate_recovery_codes(
    state: web::Data<AppState>,
    rid: RequestId,
    caller: Authenticated,
    body: ValidJson<ProtectedBody>,
) -> Result<HttpResponse, ApiError> {
    let user = current_user(&state, &caller).await?;
    if !user.mfa.enabled {
        return Err(ApiError::Conflict(
            "multi-factor authentication is not enabled".into(),
        ));
    }
    reauthenticate(&state, &rid, &user, &body).await?;
    let (codes, hashes) = new_recovery_codes(&state);
    if !state
        .users
        .replace_recovery_codes(&user.id, &hashes)
        .await?
    {
        return Err(ApiError::Conflict(
            "multi-factor authentication is not enabled".into(),
        ));
    }
    Ok(HttpResponse::Ok().json(RecoveryCodes {
        recovery_codes: codes,
    }))
}
