//! Every check of a secret a user types (a password, a TOTP or recovery
//! code) runs under a per-account limit, in one order: take an attempt
//! from the limit first (one atomic step in Redis, see
//! `shared::ratelimit`), then check. N racing requests are therefore
//! checked at most as often as the allowance left; a refused one never
//! reaches the hasher. A correct secret hands its attempt back (a success
//! does not count, and, as before, it clears nothing), a wrong one stays
//! counted, and a check that could not run (the hasher was busy) is handed
//! back too, since nothing was guessed.

use secrecy::SecretString;
use shared::ratelimit::{Attempt, FailureLimiter};
use shared::ApiError;

use crate::domain::password::{HashError, HashKey};
use crate::state::{hash_error, AppState};
use crate::storage::users::UserDoc;

/// Why a guarded check did not give a verdict.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// The key has used up its wrong attempts; nothing was checked.
    #[error("too many wrong attempts")]
    Limited { retry_after_secs: u64 },
    #[error(transparent)]
    Hash(#[from] HashError),
}

impl From<CheckError> for ApiError {
    fn from(e: CheckError) -> Self {
        match e {
            CheckError::Limited { retry_after_secs } => ApiError::RateLimited { retry_after_secs },
            CheckError::Hash(e) => hash_error(e),
        }
    }
}

/// Which allowance a password check draws on.
pub enum PasswordLimit<'a> {
    /// The account's (or, for a name no account has, the name's) shared one.
    Account(&'a str),
    /// A known device of the account (a valid device token): its own budget,
    /// so strangers' guesses against the account cannot lock it out.
    Device(&'a str),
}

/// Limiter key of an account.
pub fn account_key(user_id: &str) -> String {
    format!("user:{user_id}")
}

/// Limiter key of a login name that matches no account.
pub fn unknown_login_key(login_norm: &str) -> String {
    format!("login:{login_norm}")
}

/// Takes one attempt from `limiter` for `key`, or says when to retry.
pub async fn reserve(limiter: &FailureLimiter, key: &str) -> Result<Attempt, CheckError> {
    limiter.acquire(key).await.map_err(|e| CheckError::Limited {
        retry_after_secs: e.retry_after_secs,
    })
}

/// Checks `password` against `hash` (`None`: no such account, checked
/// against the dummy hash and always wrong) under `limit`.
pub async fn check_password(
    state: &AppState,
    limit: PasswordLimit<'_>,
    hash_key: &HashKey,
    password: &SecretString,
    hash: Option<&str>,
) -> Result<bool, CheckError> {
    let attempt = match limit {
        PasswordLimit::Account(key) => reserve(&state.login_failures, key).await?,
        PasswordLimit::Device(key) => reserve(&state.device_failures, key).await?,
    };
    match state.hasher.verify(hash_key, password, hash).await {
        Ok(true) => {
            attempt.refund().await;
            Ok(true)
        }
        // Dropping the attempt keeps the wrong guess counted.
        Ok(false) => Ok(false),
        Err(e) => {
            attempt.refund().await;
            Err(e.into())
        }
    }
}

/// The signed-in user's own password, for re-authentication: the account's
/// allowance, shared with logins.
pub async fn check_own_password(
    state: &AppState,
    user: &UserDoc,
    password: &SecretString,
) -> Result<bool, CheckError> {
    let key = account_key(&user.id);
    check_password(
        state,
        PasswordLimit::Account(&key),
        &HashKey::user(&user.id),
        password,
        Some(&user.password_hash),
    )
    .await
}
