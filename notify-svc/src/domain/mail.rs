//! Email: the texts (plain and HTML, user-supplied text escaped) and the
//! SMTP transport (lettre). Mail is written to the `mail_jobs` collection
//! first and sent by the mail worker, so an accepted event never loses its
//! email and a failing SMTP server only delays it.

use std::time::Duration;

use anyhow::Context;
use lettre::message::header::{ContentTransferEncoding, ContentType};
use lettre::message::{Body, Mailbox, MultiPart, SinglePart};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use secrecy::{ExposeSecret, SecretString};

/// One email, ready to send.
#[derive(Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Mail {
    pub to_email: String,
    pub to_name: String,
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// Bodies hold message previews and verification links: never in a log.
impl std::fmt::Debug for Mail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mail")
            .field("subject", &self.subject)
            .finish_non_exhaustive()
    }
}

/// Escapes text for HTML element content and attribute values.
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A name safe for a header and a one-line text: no control characters
/// (CR/LF would start a new header), bounded length.
pub fn clean_line(s: &str) -> String {
    let cleaned: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(100)
        .collect();
    cleaned.trim().to_owned()
}

/// The first `max` characters of a message, on one line.
pub fn preview(content: &str, max: usize) -> String {
    let one_line = clean_line(&content.split_whitespace().collect::<Vec<_>>().join(" "));
    if one_line.chars().count() > max {
        let cut: String = one_line.chars().take(max).collect();
        format!("{cut}…")
    } else {
        one_line
    }
}

fn page(title: &str, body_html: &str) -> String {
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{}</title></head>\
         <body style=\"font-family:sans-serif\">{body_html}</body></html>",
        escape_html(title)
    )
}

/// One chat's part of a digest.
#[derive(Debug, Clone)]
pub struct DigestChat {
    pub title: String,
    pub count: usize,
    /// `(sender, preview)`, oldest first, at most a few.
    pub samples: Vec<(String, String)>,
}

pub fn digest(to_email: &str, to_name: &str, chats: &[DigestChat]) -> Mail {
    let total: usize = chats.iter().map(|c| c.count).sum();
    let subject = if chats.len() == 1 {
        format!(
            "{total} unread message{} in {}",
            if total == 1 { "" } else { "s" },
            clean_line(&chats[0].title)
        )
    } else {
        format!("{total} unread messages in {} chats", chats.len())
    };
    let mut text = format!(
        "Hello {},\n\nyou have unread messages:\n",
        clean_line(to_name)
    );
    let mut html = format!(
        "<p>Hello {},</p><p>you have unread messages:</p>",
        escape_html(&clean_line(to_name))
    );
    for chat in chats {
        text.push_str(&format!(
            "\n{} ({} unread)\n",
            clean_line(&chat.title),
            chat.count
        ));
        html.push_str(&format!(
            "<h3>{} ({} unread)</h3><ul>",
            escape_html(&clean_line(&chat.title)),
            chat.count
        ));
        for (sender, preview) in &chat.samples {
            text.push_str(&format!("  {}: {}\n", clean_line(sender), preview));
            html.push_str(&format!(
                "<li><b>{}</b>: {}</li>",
                escape_html(&clean_line(sender)),
                escape_html(preview)
            ));
        }
        html.push_str("</ul>");
    }
    text.push_str("\nChange how often you get these in your notification settings.\n");
    html.push_str("<p>Change how often you get these in your notification settings.</p>");
    Mail {
        to_email: to_email.to_owned(),
        to_name: clean_line(to_name),
        html: page(&subject, &html),
        subject,
        text,
    }
}

/// A security notice; `what` and `detail` are ours, not user-supplied.
pub fn security(to_email: &str, to_name: &str, what: &str, detail: &str) -> Mail {
    let subject = format!("Security notice: {what}");
    let name = clean_line(to_name);
    let text = format!(
        "Hello {name},\n\n{detail}\n\nIf this was not you, change your password and review your sessions now.\n"
    );
    let html = format!(
        "<p>Hello {},</p><p>{}</p><p>If this was not you, change your password and review your sessions now.</p>",
        escape_html(&name),
        escape_html(detail)
    );
    Mail {
        to_email: to_email.to_owned(),
        to_name: name,
        html: page(&subject, &html),
        subject,
        text,
    }
}

/// How long a verification link works, as the mail says; auth-svc sets
/// the token's real expiry (`expires_at` of the event) to the same.
pub const VERIFICATION_VALID_HOURS: u32 = 24;

/// The mail that proves an address: `link` carries the token and is ours
/// (the public URL and a URL-safe token), `to_name` is the user's.
/// `expires` (e.g. "2026-12-04 13:20 UTC") is shown when known.
pub fn email_verification(
    to_email: &str,
    to_name: &str,
    link: &str,
    expires: Option<&str>,
) -> Mail {
    let subject = "Confirm your email address".to_owned();
    let name = clean_line(to_name);
    let until = expires.map(|e| format!(" (until {e})")).unwrap_or_default();
    let hours = VERIFICATION_VALID_HOURS;
    // The plain text stays ASCII (no name in it), so it is sent as 7bit and
    // the raw mail shows `token=<token>` unbroken by any transfer encoding.
    let text = format!(
        "Hello,\n\nconfirm that this is your email address by opening this link:\n\n{link}\n\n\
         The link works once, for {hours} hours{until}. Until you confirm, we send no other email \
         to this address.\n\nIf you did not sign up, ignore this email.\n"
    );
    let html = format!(
        "<p>Hello {},</p><p>confirm that this is your email address by opening this link:</p>\
         <p><a href=\"{link}\">{link}</a></p><p>The link works once, for {hours} hours{}. Until you \
         confirm, we send no other email to this address.</p><p>If you did not sign up, ignore this \
         email.</p>",
        escape_html(&name),
        escape_html(&until),
        link = escape_html(link),
    );
    Mail {
        to_email: to_email.to_owned(),
        to_name: name,
        html: page(&subject, &html),
        subject,
        text,
    }
}

/// Longest line 7bit allows (RFC 5322 2.1.1, RFC 2045 2.7), CRLF excluded.
const MAX_7BIT_LINE: usize = 998;

/// The plain-text part as 7bit whenever it can be: lettre would pick
/// quoted-printable for any line over 76 characters, which turns the
/// `token=` of a verification link into `token=3D` in the raw mail. Falls
/// back to lettre's choice for non-ASCII text or longer lines.
fn plain_body(text: &str) -> Body {
    let seven_bit = text.bytes().all(|b| b.is_ascii() && b != 0 && b != b'\r')
        && text.split('\n').all(|line| line.len() <= MAX_7BIT_LINE);
    if seven_bit {
        let crlf = text.replace('\n', "\r\n");
        Body::dangerous_pre_encoded(crlf.into_bytes(), ContentTransferEncoding::SevenBit)
    } else {
        Body::new(text.to_owned())
    }
}

/// Sends over SMTP.
#[derive(Clone)]
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl Mailer {
    /// `smtp://host:port` (plain, for a local relay or sink), `smtp://...?tls=required`
    /// (STARTTLS) or `smtps://` (TLS).
    pub fn new(url: &SecretString, from: &str) -> anyhow::Result<Self> {
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url.expose_secret())
            .context("smtp_url")?
            .timeout(Some(Duration::from_secs(10)))
            .build();
        let from = from.parse().context("mail_from is not an address")?;
        Ok(Self { transport, from })
    }

    /// Sends `mail`; `message_id` is stable across retries, so a resend after
    /// a crash carries the same Message-ID and mail clients fold the copies.
    pub async fn send(&self, mail: &Mail, message_id: &str) -> anyhow::Result<()> {
        let to = Mailbox::new(
            Some(clean_line(&mail.to_name)).filter(|n| !n.is_empty()),
            mail.to_email.parse().context("recipient address")?,
        );
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(clean_line(&mail.subject))
            .message_id(Some(format!("<{message_id}@notify-svc>")))
            .multipart(
                MultiPart::alternative()
                    .singlepart(
                        SinglePart::builder()
                            .header(ContentType::TEXT_PLAIN)
                            .body(plain_body(&mail.text)),
                    )
                    .singlepart(
                        SinglePart::builder()
                            .header(ContentType::TEXT_HTML)
                            .body(mail.html.clone()),
                    ),
            )
            .context("build message")?;
        self.transport.send(message).await.context("SMTP send")?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_text_is_escaped_in_html_and_names_cannot_inject_headers() {
        let mail = digest(
            "a@example.com",
            "Eve\r\nBcc: victim@example.com",
            &[DigestChat {
                title: "<script>alert(1)</script>".into(),
                count: 1,
                samples: vec![("Mallory".into(), "<img src=x onerror=alert(1)>".into())],
            }],
        );
        assert!(!mail.html.contains("<script>"));
        assert!(!mail.html.contains("<img"));
        assert!(mail.html.contains("&lt;img src=x onerror=alert(1)&gt;"));
        assert!(!mail.to_name.contains('\n') && !mail.to_name.contains('\r'));
        assert!(!mail.subject.contains('\n'));
    }

    #[test]
    fn the_verification_mail_carries_the_link_in_both_parts_and_escapes_the_name() {
        let link = "https://chat.example/verify-email?token=abc_DEF-123";
        let mail = email_verification(
            "new@example.com",
            "<b>Evé</b>\r\nBcc: x@example.com",
            link,
            Some("2026-12-04 13:20 UTC"),
        );
        assert!(mail.text.contains("token=abc_DEF-123"));
        assert!(mail.text.contains(link));
        assert!(mail.text.contains("24 hours (until 2026-12-04 13:20 UTC)"));
        assert!(mail.text.is_ascii(), "the text part would be re-encoded");
        assert!(mail.html.contains(&format!("href=\"{link}\"")));
        assert!(mail.html.contains("24 hours"));
        assert!(!mail.html.contains("<b>Ev"));
        assert!(mail.html.contains("&lt;b&gt;Evé"));
        assert!(!mail.to_name.contains('\n'));
        assert!(!format!("{mail:?}").contains("token"), "a body in Debug");
    }

    #[test]
    fn ascii_text_with_long_lines_stays_7bit_so_links_are_literal() {
        let text = format!(
            "see\nhttps://chat.example/verify-email?token={}\n",
            "a".repeat(60)
        );
        let body = plain_body(&text);
        assert_eq!(body.encoding(), ContentTransferEncoding::SevenBit);
        assert_eq!(body.as_ref(), text.replace('\n', "\r\n").as_bytes());
        assert_ne!(
            plain_body("caf\u{e9}").encoding(),
            ContentTransferEncoding::SevenBit
        );
        assert_ne!(
            plain_body(&"x".repeat(1200)).encoding(),
            ContentTransferEncoding::SevenBit
        );
    }

    #[test]
    fn previews_are_one_line_and_bounded() {
        assert_eq!(preview("a\nb\tc", 10), "a b c");
        assert_eq!(preview(&"x".repeat(200), 5), "xxxxx…");
    }
}
