//! How a security email names a device: "Firefox 133 on Windows 10", from
//! the `User-Agent` a sign-in sent. The header is text an attacker chooses,
//! so the mail never quotes it: the name is built only from the parser's
//! own vocabulary (woothee's browser and system names) and a numeric major
//! version, so it can carry no markup, no link and no line break.

/// What a device the parser does not recognise is called.
pub const UNKNOWN_DEVICE: &str = "an unknown device";

/// Longest name a mail shows.
pub const MAX_NAME_CHARS: usize = 64;

/// Real user agents are a few hundred bytes; parsing more only costs time.
const MAX_PARSED_BYTES: usize = 1024;

/// woothee's word for a field it could not tell.
const WOOTHEE_UNKNOWN: &str = "UNKNOWN";

/// The device behind `user_agent`, e.g. "Chrome 131 on Android", at most
/// [`MAX_NAME_CHARS`] characters; [`UNKNOWN_DEVICE`] when the parser does
/// not know the browser.
pub fn describe(user_agent: Option<&str>) -> String {
    let Some(agent) = user_agent.map(|a| prefix(a, MAX_PARSED_BYTES)) else {
        return UNKNOWN_DEVICE.to_owned();
    };
    let Some(parsed) = woothee::parser::Parser::new().parse(agent) else {
        return UNKNOWN_DEVICE.to_owned();
    };
    let browser = vocabulary(parsed.name);
    if browser.is_empty() {
        return UNKNOWN_DEVICE.to_owned();
    }
    let mut name = browser;
    // The version is the one part woothee copies out of the header; keep
    // only its leading digits.
    if let Some(major) = major_version(parsed.version) {
        name = format!("{name} {major}");
    }
    // "Windows UNKNOWN Ver" is woothee's name for a Windows it cannot date.
    let system = vocabulary(&parsed.os.replace(" UNKNOWN Ver", ""));
    if !system.is_empty() {
        name = format!("{name} on {system}");
    }
    name.chars()
        .take(MAX_NAME_CHARS)
        .collect::<String>()
        .trim_end()
        .to_owned()
}

/// The longest prefix of `s` of at most `max` bytes that ends on a
/// character boundary.
fn prefix(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// A parser word as shown: empty for "unknown". Only letters, digits,
/// spaces and `.!-` pass; the dataset uses no others, and this keeps it so
/// should a future dataset ever hold something a mail client could render
/// as markup or a link.
fn vocabulary(word: &str) -> String {
    if word == WOOTHEE_UNKNOWN || word.contains("://") {
        return String::new();
    }
    word.chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, ' ' | '.' | '!' | '-'))
        .collect::<String>()
        .trim()
        .to_owned()
}

/// "133" from "133.0.1"; `None` unless it starts with 1-6 digits.
fn major_version(version: &str) -> Option<&str> {
    let major = version.split('.').next()?;
    (!major.is_empty() && major.len() <= 6 && major.bytes().all(|b| b.is_ascii_digit()))
        .then_some(major)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIREFOX_WINDOWS: &str =
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0";
    const CHROME_ANDROID: &str = "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 \
        (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36";
    const SAFARI_MAC: &str = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) \
        AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Safari/605.1.15";

    #[test]
    fn real_browsers_are_named_by_browser_version_and_system() {
        assert_eq!(describe(Some(FIREFOX_WINDOWS)), "Firefox 133 on Windows 10");
        assert_eq!(describe(Some(CHROME_ANDROID)), "Chrome 131 on Android");
        assert_eq!(describe(Some(SAFARI_MAC)), "Safari 17 on Mac OSX");
    }

    #[test]
    fn missing_empty_and_unparseable_agents_are_an_unknown_device() {
        for agent in [
            None,
            Some(""),
            Some("-"),
            Some("curl-ish thing"),
            Some("\u{0}\u{7f}"),
        ] {
            assert_eq!(describe(agent), UNKNOWN_DEVICE, "{agent:?}");
        }
    }

    /// Whatever the header holds, the name is short, one line, and made of
    /// characters that can neither open a tag nor form a URL.
    fn assert_harmless(name: &str, agent: &str) {
        assert!(name.chars().count() <= MAX_NAME_CHARS, "{name:?} too long");
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || " .!-".contains(c)),
            "{name:?} from {:?}",
            prefix(agent, 80)
        );
        for bad in ["http", "www", "evil", "script", "://", "example"] {
            assert!(!name.to_lowercase().contains(bad), "{name:?} quotes {bad}");
        }
    }

    #[test]
    fn hostile_agents_never_reach_the_name() {
        let long = format!(
            "Mozilla/5.0 (Windows NT 10.0) Firefox/133.0 {}",
            "A".repeat(10 * 1024)
        );
        let hostile = [
            "<script>alert(1)</script>".to_owned(),
            "Mozilla/5.0 <script>alert(1)</script> Firefox/133.0".to_owned(),
            "http://evil.example/".to_owned(),
            "Mozilla/5.0 (Windows NT 10.0) Firefox/133.0 http://evil.example/login".to_owned(),
            "Firefox/133.0<img src=x onerror=alert(1)>".to_owned(),
            "Evil\r\nBcc: victim@example.com".to_owned(),
            // woothee copies these captures out of the header as they are.
            "DoCoMo/2.0 http://evil.example/(c100;TB)".to_owned(),
            "KDDI-<script>evil UP.Browser/6.2".to_owned(),
            "Mozilla/5.0 (Windows NT 10.0) Firefox/99999999999999.0".to_owned(),
            long.clone(),
            "é".repeat(10 * 1024),
            "x".repeat(10 * 1024),
        ];
        for agent in &hostile {
            let name = describe(Some(agent));
            assert_harmless(&name, agent);
        }
        assert_eq!(describe(Some(&long)), "Firefox 133 on Windows 10");
        assert_eq!(describe(Some("<script>alert(1)</script>")), UNKNOWN_DEVICE);
        assert_eq!(describe(Some("http://evil.example/")), UNKNOWN_DEVICE);
    }

    #[test]
    fn versions_are_leading_digits_only() {
        assert_eq!(major_version("133.0.1"), Some("133"));
        assert_eq!(major_version("UNKNOWN"), None);
        assert_eq!(major_version("1<b>"), None);
        assert_eq!(major_version("12345678"), None);
        assert_eq!(major_version(""), None);
    }
}
