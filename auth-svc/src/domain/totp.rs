//! TOTP (RFC 6238): SHA-1, 6 digits, 30-second steps. A code is accepted for
//! the current step and the previous one; the caller then records the step
//! atomically so it (or an older one) is never accepted again.

use data_encoding::BASE32_NOPAD;
use qrcode::render::svg;
use qrcode::QrCode;
use rand::RngCore;
use subtle::ConstantTimeEq;

pub const PERIOD: u64 = 30;
pub const DIGITS: u32 = 6;
/// Shown in authenticator apps.
pub const ISSUER: &str = "Chat";

/// 160 random bits, as RFC 4226 recommends.
pub fn generate_secret() -> Vec<u8> {
    let mut secret = vec![0u8; 20];
    rand::rngs::OsRng.fill_bytes(&mut secret);
    secret
}

/// Base32 (RFC 4648) without padding, as authenticator apps expect.
pub fn encode_secret(secret: &[u8]) -> String {
    BASE32_NOPAD.encode(secret)
}

pub fn decode_secret(text: &str) -> Option<Vec<u8>> {
    BASE32_NOPAD.decode(text.as_bytes()).ok()
}

/// The code for a time step.
pub fn code_at_step(secret: &[u8], step: u64) -> String {
    totp_lite::totp_custom::<totp_lite::Sha1>(PERIOD, DIGITS, secret, step * PERIOD)
}

pub fn step_at(unix_seconds: u64) -> u64 {
    unix_seconds / PERIOD
}

/// The step (current or previous) whose code equals `code`, compared in
/// constant time.
pub fn matching_step(secret: &[u8], code: &str, unix_seconds: u64) -> Option<u64> {
    let code = code.trim();
    if code.len() != DIGITS as usize || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let now = step_at(unix_seconds);
    let mut found = None;
    // Check both steps regardless of the first result: no timing difference.
    for step in [now.saturating_sub(1), now] {
        let expected = code_at_step(secret, step);
        if bool::from(expected.as_bytes().ct_eq(code.as_bytes())) {
            found = Some(step);
        }
    }
    found
}

/// `otpauth://totp/<Issuer>:<username>?secret=...` for authenticator apps.
pub fn otpauth_uri(username: &str, secret_b32: &str) -> String {
    format!(
        "otpauth://totp/{ISSUER}:{username}?secret={secret_b32}&issuer={ISSUER}&algorithm=SHA1&digits={DIGITS}&period={PERIOD}"
    )
}

/// The URI as a QR code in an SVG document.
pub fn qr_svg(uri: &str) -> Option<String> {
    let code = QrCode::new(uri.as_bytes()).ok()?;
    Some(
        code.render::<svg::Color>()
            .min_dimensions(200, 200)
            .quiet_zone(true)
            .build(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 appendix B, SHA-1 (8 digits there; the last 6 are ours).
    #[test]
    fn rfc_6238_test_vectors() {
        let secret = b"12345678901234567890";
        for (time, expected8) in [
            (59u64, "94287082"),
            (1_111_111_109, "07081804"),
            (1_111_111_111, "14050471"),
            (1_234_567_890, "89005924"),
            (2_000_000_000, "69279037"),
            (20_000_000_000, "65353130"),
        ] {
            let eight = totp_lite::totp_custom::<totp_lite::Sha1>(PERIOD, 8, secret, time);
            assert_eq!(eight, expected8, "8 digits at {time}");
            assert_eq!(
                code_at_step(secret, step_at(time)),
                &expected8[2..],
                "6 digits at {time}"
            );
        }
    }

    #[test]
    fn only_the_current_and_previous_steps_match() {
        let secret = generate_secret();
        let now = 1_700_000_000;
        let step = step_at(now);
        assert_eq!(
            matching_step(&secret, &code_at_step(&secret, step), now),
            Some(step)
        );
        assert_eq!(
            matching_step(&secret, &code_at_step(&secret, step - 1), now),
            Some(step - 1)
        );
        assert_eq!(
            matching_step(&secret, &code_at_step(&secret, step - 2), now),
            None
        );
        assert_eq!(
            matching_step(&secret, &code_at_step(&secret, step + 1), now),
            None
        );
        assert_eq!(matching_step(&secret, "12345", now), None);
        assert_eq!(matching_step(&secret, "abcdef", now), None);
    }

    #[test]
    fn secrets_are_160_bit_base32_without_padding() {
        let secret = generate_secret();
        let b32 = encode_secret(&secret);
        assert_eq!(b32.len(), 32);
        assert!(!b32.contains('='));
        assert_eq!(decode_secret(&b32).unwrap(), secret);
        let uri = otpauth_uri("alice", &b32);
        assert!(uri.starts_with("otpauth://totp/Chat:alice?secret="));
        assert!(qr_svg(&uri).unwrap().starts_with("<?xml"));
    }
}
