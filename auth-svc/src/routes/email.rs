//! Email verification: redeeming the mailed token, and asking for a new one.

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use shared::auth::Authenticated;
use shared::http::{RequestId, ValidJson};
use shared::openapi::Problem;
use shared::ApiError;
use utoipa::ToSchema;
use validator::Validate;

use crate::checks::{self, account_key};
use crate::domain::secrets::token_hash;
use crate::events::{self, Carried, CHANGE_ATTEMPTS};
use crate::state::AppState;
use crate::storage::users::{EmailVerification, Users};

#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyBody {
    /// The `token=` of the mailed link.
    #[validate(length(min = 1, max = 256))]
    token: String,
}

fn bad_token() -> ApiError {
    ApiError::BadRequest("this verification link is invalid, used or expired".into())
}

/// `POST /api/auth/email/verify`: single use (also under racing requests),
/// 24 hours; publishes `user.updated` with `emailVerified: true`.
#[utoipa::path(post, path = "/api/auth/email/verify", tag = "auth", request_body = VerifyBody, responses((status = 204, description = "the address is verified"), (status = 400, description = "unknown, used, replaced or expired token", body = Problem), (status = 422, body = Problem)))]
pub async fn verify_email(
    state: web::Data<AppState>,
    rid: RequestId,
    body: ValidJson<VerifyBody>,
) -> Result<HttpResponse, ApiError> {
    let hash = token_hash(&body.token);
    // Read, then one write conditional on the token and the version read:
    // a racing redeem wins once; a racing profile change means reading again.
    for _ in 0..CHANGE_ATTEMPTS {
        let user = state
            .users
            .by_verification_token(&hash)
            .await?
            .ok_or_else(bad_token)?;
        let mut after = user.clone();
        after.email_verified = true;
        after.email_verification = None;
        after.profile_version += 1;
        let carried =
            Carried::new(&state.outbox, &rid.0).with(&user.id, events::user_updated(&after))?;
        if state
            .users
            .redeem_verification(&after, &hash, carried.entries()?, carried.marker())
            .await?
        {
            carried.committed(Users::COLLECTION, &user.id);
            tracing::info!(user.id = %user.id, "email verified");
            return Ok(HttpResponse::NoContent().finish());
        }
    }
    Err(bad_token())
}

/// `POST /api/auth/email/verify/resend`: a fresh token (earlier ones stop
/// working), mailed again; at most 3 per hour per account (429 after). An
/// account already verified gets 204 and no mail.
#[utoipa::path(post, path = "/api/auth/email/verify/resend", tag = "auth", responses((status = 204, description = "mailed, or already verified"), (status = 401, body = Problem), (status = 429, body = Problem)), security(("bearer" = [])))]
pub async fn resend_verification(
    state: web::Data<AppState>,
    rid: RequestId,
    caller: Authenticated,
) -> Result<HttpResponse, ApiError> {
    let user = state
        .users
        .by_id(&caller.user_id)
        .await?
        .ok_or(ApiError::Unauthorized)?;
    if user.email_verified {
        return Ok(HttpResponse::NoContent().finish());
    }
    // Taken before the mail is queued and never given back: each one mails.
    let _sent = checks::reserve(&state.verification_resends, &account_key(&user.id)).await?;
    let (pending, token) = EmailVerification::issue();
    let mut after = user.clone();
    after.email_verification = Some(pending.clone());
    let carried = Carried::new(&state.outbox, &rid.0)
        .with(&user.id, events::verification_requested(&after, token))?;
    // `false`: verified meanwhile (a racing redeem), nothing to mail.
    if state
        .users
        .renew_verification(&user.id, &pending, carried.entries()?, carried.marker())
        .await?
    {
        carried.committed(Users::COLLECTION, &user.id);
    }
    Ok(HttpResponse::NoContent().finish())
}
