//! Parsing of what users type: each value has a `parse` constructor, so an
//! unvalidated value cannot reach storage.

use validator::ValidateEmail;

/// 3-32 characters of `[a-zA-Z0-9_.-]`, unique case-insensitively.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Username(String);

impl Username {
    pub fn parse(s: &str) -> Result<Self, &'static str> {
        let ok_len = (3..=32).contains(&s.chars().count());
        let ok_chars = s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
        if ok_len && ok_chars {
            Ok(Self(s.to_owned()))
        } else {
            Err("must be 3-32 characters of letters, digits, '_', '.' or '-'")
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The form uniqueness is checked on.
    pub fn normalized(&self) -> String {
        self.0.to_ascii_lowercase()
    }
}

/// A syntactically valid address, unique case-insensitively.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub fn parse(s: &str) -> Result<Self, &'static str> {
        let s = s.trim();
        if s.len() <= 254 && s.validate_email() && !s.chars().any(char::is_control) {
            Ok(Self(s.to_owned()))
        } else {
            Err("must be a valid email address")
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn normalized(&self) -> String {
        self.0.to_lowercase()
    }
}

/// 8-128 characters, no composition rules, no truncation, and not weak or
/// common (zxcvbn score of at least 3, judged with the user's own name and
/// email as known words).
pub fn check_password(password: &str, user_inputs: &[&str]) -> Result<(), &'static str> {
    let len = password.chars().count();
    if !(8..=128).contains(&len) {
        return Err("must be 8-128 characters");
    }
    let estimate = zxcvbn::zxcvbn(password, user_inputs);
    if estimate.score() < zxcvbn::Score::Three {
        return Err("is too weak or too common; try a longer passphrase");
    }
    Ok(())
}

/// 1-64 characters, no control characters (no log or header injection) and
/// no invisible formatting characters (no spoofed or reversed names).
pub fn check_display_name(s: &str) -> Result<(), &'static str> {
    let len = s.trim().chars().count();
    if (1..=64).contains(&len) && shared::text::is_clean_name(s) {
        Ok(())
    } else {
        Err("must be 1-64 characters without control or invisible formatting characters")
    }
}

/// Up to 500 characters; line breaks allowed, other control characters not.
pub fn check_bio(s: &str) -> Result<(), &'static str> {
    if s.chars().count() <= 500
        && !s
            .chars()
            .any(|c| c != '\n' && shared::text::is_forbidden_in_name(c))
    {
        Ok(())
    } else {
        Err("must be at most 500 characters without control or invisible formatting characters")
    }
}

/// An http(s) URL of at most 2048 characters, or empty to clear it.
pub fn check_avatar_url(s: &str) -> Result<(), &'static str> {
    let ok = s.is_empty()
        || (s.len() <= 2048
            && (s.starts_with("https://") || s.starts_with("http://"))
            && !s.chars().any(|c| c.is_control() || c.is_whitespace()));
    if ok {
        Ok(())
    } else {
        Err("must be an http(s) URL of at most 2048 characters")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_follow_the_contract() {
        assert!(Username::parse("alice_1.b-c").is_ok());
        assert!(Username::parse("ab").is_err());
        assert!(Username::parse(&"a".repeat(33)).is_err());
        assert!(Username::parse("al ice").is_err());
        assert!(Username::parse("al\r\nice").is_err());
        assert_eq!(Username::parse("Alice").unwrap().normalized(), "alice");
    }

    #[test]
    fn weak_and_common_passwords_are_refused_strong_ones_accepted() {
        assert!(check_password("password", &[]).is_err());
        assert!(check_password("12345678", &[]).is_err());
        assert!(check_password("alice2024", &["alice"]).is_err());
        assert!(check_password("short", &[]).is_err());
        assert!(check_password(&"x".repeat(129), &[]).is_err());
        assert!(check_password("correct horse battery staple", &[]).is_ok());
        // No truncation: a long passphrase is taken whole.
        assert!(check_password(
            "The quiet violet harbor hums beneath seventeen copper lanterns at dawn",
            &[]
        )
        .is_ok());
    }

    #[test]
    fn profile_fields_refuse_control_characters() {
        assert!(check_display_name("Ann\r\nSet-Cookie: x").is_err());
        assert!(check_display_name("Ann Lee").is_ok());
        assert!(check_bio("line one\nline two").is_ok());
        assert!(check_bio("bell\u{7}").is_err());
        assert!(check_avatar_url("javascript:alert(1)").is_err());
        assert!(check_avatar_url("https://cdn.example/a.png").is_ok());
    }
}
