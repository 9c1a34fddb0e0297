//! Validated values and rules of accounts, sessions and MFA.
