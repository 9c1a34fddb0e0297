//! Events auth-svc publishes on `auth.events`.

use serde::{Deserialize, Serialize};

use super::EventPayload;
use crate::topology::Exchange;

macro_rules! auth_event {
    ($ty:ident, $key:literal) => {
        impl EventPayload for $ty {
            const TYPE: &'static str = $key;
            const VERSION: u32 = 1;
            const EXCHANGE: Exchange = Exchange::Auth;
        }
    };
}

/// A new account. `email` is for notify-svc only and is never re-exposed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct UserRegistered {
    pub user_id: String,
    pub username: String,
    pub display_name: String,
    pub avatar_url: Option<String>,
    pub email: String,
    /// Increases with every change of the profile; replicas ignore older ones.
    #[serde(default)]
    pub profile_version: i64,
}
auth_event!(UserRegistered, "user.registered");

/// A changed public profile (same shape as [`UserRegistered`]).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct UserUpdated {
    pub user_id: String,
    pub username: String,
    pub display_name: String,
    pub avatar_url: Option<String>,
    pub email: String,
    #[serde(default)]
    pub profile_version: i64,
}
auth_event!(UserUpdated, "user.updated");

/// A session ended (logout, revoke, refresh-token reuse, password change).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SessionRevoked {
    pub user_id: String,
    pub session_id: String,
    pub reason: String,
}
auth_event!(SessionRevoked, "auth.session.revoked");

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LoginSucceeded {
    pub user_id: String,
    pub session_id: String,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub new_device: bool,
}
auth_event!(LoginSucceeded, "auth.login.succeeded");

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MfaEnabled {
    pub user_id: String,
}
auth_event!(MfaEnabled, "auth.mfa.enabled");

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MfaDisabled {
    pub user_id: String,
}
auth_event!(MfaDisabled, "auth.mfa.disabled");

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RecoveryCodeUsed {
    pub user_id: String,
    pub remaining: u32,
}
auth_event!(RecoveryCodeUsed, "auth.recovery_code.used");
