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
    /// Whether the owner proved they read `email` (absent in older events:
    /// unverified). Digests and security emails go only to verified addresses.
    #[serde(default)]
    pub email_verified: bool,
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
    #[serde(default)]
    pub email_verified: bool,
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

/// Mail this single-use link to `email` so its owner can prove they read it.
/// auth-svc owns the token (it stores only its hash); notify-svc only mails
/// it, to this address whether or not it is verified yet, and never logs it.
#[derive(Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EmailVerificationRequested {
    pub user_id: String,
    pub email: String,
    pub display_name: String,
    /// The secret the link carries (`token=<token>`).
    pub token: String,
    /// When the token stops working (RFC 3339).
    pub expires_at: String,
}
auth_event!(
    EmailVerificationRequested,
    "auth.email.verification_requested"
);

impl std::fmt::Debug for EmailVerificationRequested {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmailVerificationRequested")
            .field("user_id", &self.user_id)
            .field("token", &"[redacted]")
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}
