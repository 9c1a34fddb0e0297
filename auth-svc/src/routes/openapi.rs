//! The OpenAPI 3.1 document of auth-svc, generated from the handlers.

use shared::openapi::BearerAuth;
use utoipa::OpenApi;

use super::{auth, email, jwks, mfa, sessions, users};

#[derive(OpenApi)]
#[openapi(
    info(title = "auth-svc", description = "Accounts, sessions, tokens and multi-factor authentication."),
    paths(
        auth::register, auth::login, auth::login_mfa, auth::refresh, auth::logout, auth::change_password,
        email::verify_email, email::resend_verification,
        sessions::list_sessions, sessions::revoke_session,
        mfa::mfa_status, mfa::setup_totp, mfa::enable_totp, mfa::disable_mfa, mfa::regenerate_recovery_codes,
        users::get_me, users::update_me, users::get_user, users::search_users,
        jwks::jwks,
    ),
    components(schemas(shared::openapi::Problem, shared::openapi::ProblemField, auth::MfaChallenge)),
    modifiers(&BearerAuth),
)]
pub struct ApiDoc;
