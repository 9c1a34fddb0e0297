//! HTTP routes of auth-svc (spec/api.md, "Users and sessions" and
//! "Multi-factor authentication"). Handlers are thin: extract, call storage
//! and domain, map the result.

pub mod auth;
pub mod email;
pub mod jwks;
pub mod limits;
pub mod mfa;
pub mod openapi;
pub mod sessions;
pub mod users;

use actix_web::{web, HttpRequest};

use crate::config::AuthSettings;
use crate::state::AppState;
use shared::client_ip::client_ip;

/// The per-IP limits of product.md, shared by all workers.
#[derive(Clone)]
pub struct IpLimits {
    login: limits::IpLimit,
    register: limits::IpLimit,
    refresh: limits::IpLimit,
}

impl IpLimits {
    pub fn new(
        state: &AppState,
        settings: &AuthSettings,
        metrics: &shared::metrics::Metrics,
    ) -> anyhow::Result<Self> {
        let minute = std::time::Duration::from_secs(60);
        let hour = std::time::Duration::from_secs(3600);
        let trusted = &state.trusted_proxies;
        let bad = || anyhow::anyhow!("invalid rate limit settings");
        Ok(Self {
            login: limits::per_ip(trusted, settings.login_per_minute_per_ip, minute)
                .ok_or_else(bad)?
                .counted(metrics, "login_ip"),
            register: limits::per_ip(trusted, settings.register_per_hour_per_ip, hour)
                .ok_or_else(bad)?
                .counted(metrics, "register_ip"),
            refresh: limits::per_ip(trusted, settings.refresh_per_minute_per_ip, minute)
                .ok_or_else(bad)?
                .counted(metrics, "refresh_ip"),
        })
    }
}

pub fn configure(cfg: &mut web::ServiceConfig, state: &AppState, ip_limits: &IpLimits) {
    let IpLimits {
        login,
        register,
        refresh,
    } = ip_limits;
    shared::openapi::document_route(cfg, <openapi::ApiDoc as utoipa::OpenApi>::openapi());
    cfg.app_data(web::Data::new(state.clone()))
        .service(web::resource("/.well-known/jwks.json").get(jwks::jwks))
        .service(
            web::resource("/api/auth/register")
                .wrap_fn({
                    let limit = register.clone();
                    move |req, srv| limits::limited(&limit, req, srv)
                })
                .post(auth::register),
        )
        .service(
            web::resource("/api/auth/login")
                .wrap_fn({
                    let limit = login.clone();
                    move |req, srv| limits::limited(&limit, req, srv)
                })
                .post(auth::login),
        )
        .service(
            web::resource("/api/auth/login/mfa")
                .wrap_fn({
                    let limit = login.clone();
                    move |req, srv| limits::limited(&limit, req, srv)
                })
                .post(auth::login_mfa),
        )
        .service(
            web::resource("/api/auth/refresh")
                .wrap_fn({
                    let limit = refresh.clone();
                    move |req, srv| limits::limited(&limit, req, srv)
                })
                .post(auth::refresh),
        )
        .service(web::resource("/api/auth/email/verify").post(email::verify_email))
        .service(web::resource("/api/auth/email/verify/resend").post(email::resend_verification))
        .service(web::resource("/api/auth/logout").post(auth::logout))
        .service(web::resource("/api/auth/password").post(auth::change_password))
        .service(web::resource("/api/auth/sessions").get(sessions::list_sessions))
        .service(web::resource("/api/auth/sessions/{id}").delete(sessions::revoke_session))
        .service(web::resource("/api/auth/mfa").get(mfa::mfa_status))
        .service(web::resource("/api/auth/mfa/totp/setup").post(mfa::setup_totp))
        .service(web::resource("/api/auth/mfa/totp/enable").post(mfa::enable_totp))
        .service(web::resource("/api/auth/mfa/disable").post(mfa::disable_mfa))
        .service(web::resource("/api/auth/mfa/recovery-codes").post(mfa::regenerate_recovery_codes))
        .service(
            web::resource("/api/users/me")
                .get(users::get_me)
                .patch(users::update_me),
        )
        .service(web::resource("/api/users").get(users::search_users))
        .service(web::resource("/api/users/{id}").get(users::get_user));
}

/// The client's user agent, bounded and without control characters.
pub fn user_agent(req: &HttpRequest) -> Option<String> {
    let ua = req
        .headers()
        .get(actix_web::http::header::USER_AGENT)?
        .to_str()
        .ok()?;
    let clean: String = ua.chars().filter(|c| !c.is_control()).take(256).collect();
    (!clean.is_empty()).then_some(clean)
}

pub fn ip(req: &HttpRequest, state: &AppState) -> Option<String> {
    client_ip(req, &state.trusted_proxies).map(|ip| ip.to_string())
}
