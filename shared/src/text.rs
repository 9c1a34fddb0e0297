//! Rules for the text users choose to show to others (names, bios).

/// Characters a shown name must not contain: control characters (log and
/// header injection), and the invisible formatting characters that reverse
/// the text around them or make one name look like another (bidirectional
/// embeddings, overrides and isolates, directional marks, zero-width space,
/// word joiner, byte-order mark, line and paragraph separators). Zero-width
/// (non-)joiners stay allowed: emoji sequences and several scripts need them.
pub fn is_forbidden_in_name(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{200B}' | '\u{200E}' | '\u{200F}' | '\u{2028}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{FEFF}'
        )
}

/// Whether `s` is safe to show as a name (see [`is_forbidden_in_name`]).
pub fn is_clean_name(s: &str) -> bool {
    !s.chars().any(is_forbidden_in_name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spoofing_and_injection_characters_are_refused() {
        for bad in [
            "a\r\nb",
            "a\u{0}",
            "a\u{1b}[31m",
            "Eve\u{202E}exe.txt",
            "a\u{2066}b",
            "a\u{200B}",
            "a\u{2028}b",
            "\u{FEFF}a",
        ] {
            assert!(!is_clean_name(bad), "{bad:?}");
        }
        for good in [
            "Zoë",
            "李雷",
            "👨\u{200D}👩\u{200D}👧",
            "می\u{200C}خواهم",
            "O'Brien - team",
        ] {
            assert!(is_clean_name(good), "{good:?}");
        }
    }
}
