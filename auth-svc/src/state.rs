//! What handlers share: storage, crypto, limits, the outbox.

use broker::Outbox;
use shared::client_ip::TrustedProxies;
use shared::ratelimit::FailureLimiter;
use shared::ApiError;

use crate::domain::password::{HashError, PasswordHasher};
use crate::domain::secrets::SecretBox;
use crate::domain::tokens::{IssuerError, TokenIssuer};
use crate::storage::devices::DeviceTokens;
use crate::storage::sessions::Sessions;
use crate::storage::users::{UserError, Users};

#[derive(Clone)]
pub struct AppState {
    pub users: Users,
    pub sessions: Sessions,
    pub devices: DeviceTokens,
    pub hasher: PasswordHasher,
    pub issuer: TokenIssuer,
    pub secrets: SecretBox,
    pub outbox: Outbox,
    /// Wrong passwords per account (or per unknown login name), from every
    /// endpoint that checks one.
    pub login_failures: FailureLimiter,
    /// Wrong passwords per known device (login with a valid device token).
    pub device_failures: FailureLimiter,
    /// Wrong MFA codes per account; a fresh password login does not reset it.
    pub mfa_failures: FailureLimiter,
    /// Verification mails asked for again, per account.
    pub verification_resends: FailureLimiter,
    pub trusted_proxies: TrustedProxies,
}

/// Domain errors mapped to what the client sees, in one place.
pub fn hash_error(e: HashError) -> ApiError {
    match e {
        HashError::Busy => ApiError::RateLimited {
            retry_after_secs: 1,
        },
        HashError::Internal(m) => ApiError::Unexpected(anyhow::anyhow!(m)),
    }
}

pub fn user_error(e: UserError) -> ApiError {
    match e {
        UserError::Taken(field) => ApiError::Conflict(format!("this {field} is already taken")),
        UserError::Db(e) => e.into(),
        UserError::Encode(e) => ApiError::Unexpected(e.into()),
    }
}

pub fn issuer_error(e: IssuerError) -> ApiError {
    ApiError::Unexpected(e.into())
}
