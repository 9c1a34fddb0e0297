//! Validated values and rules of accounts, sessions and MFA.
//!
//! - [`credentials`]: usernames, emails, passwords, profile fields.
//! - [`password`]: argon2id hashing off the async runtime, bounded.
//! - [`secrets`]: encryption at rest, random tokens, keyed hashes.
//! - [`tokens`]: signing access and MFA tokens; the JWKS.
//! - [`totp`]: RFC 6238 codes, otpauth URIs, QR codes.

pub mod credentials;
pub mod password;
pub mod secrets;
pub mod tokens;
pub mod totp;
