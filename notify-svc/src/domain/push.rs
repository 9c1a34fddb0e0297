//! Web Push (RFC 8030): payloads encrypted for the subscription (RFC 8291,
//! `aes128gcm`, by `web-push-native`), requests signed with a VAPID JWT
//! (RFC 8292, ES256, `aud` = the endpoint's origin).
//!
//! Push endpoints are URLs that users hand us, so they are a server-side
//! request forgery risk: they must be https and resolve only to public
//! addresses. The check runs when a subscription is saved and again on every
//! connection, inside the HTTP client's resolver, so a name that later
//! resolves to a private address (DNS rebinding) is refused too. Redirects
//! are not followed and every request has a timeout.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use data_encoding::BASE64URL_NOPAD;
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use p256::elliptic_curve::sec1::ToEncodedPoint;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::Url;

const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a push service keeps an undelivered message (seconds).
const PUSH_TTL: &str = "86400";

/// Which destinations pushes may reach.
#[derive(Debug, Clone, Copy)]
pub struct EndpointPolicy {
    /// Dev stack and tests only: `http://` to loopback addresses.
    pub allow_loopback_http: bool,
}

/// Why an endpoint is refused.
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    #[error("must be an absolute https URL")]
    Scheme,
    #[error("must not carry credentials")]
    Credentials,
    #[error("the host does not resolve")]
    Unresolvable,
    #[error("must not point to a private, loopback or link-local address")]
    PrivateAddress,
}

/// True for addresses that belong to the public internet.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
                || (a == 192 && b == 0) // IETF protocol assignments
                || (a == 198 && (b == 18 || b == 19)) // benchmarking
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00 // unique local
                || (first & 0xffc0) == 0xfe80 // link-local
                || first == 0x2001 && v6.segments()[1] == 0x0db8) // documentation
        }
    }
}

impl EndpointPolicy {
    fn allows(&self, ip: IpAddr) -> bool {
        is_public(ip) || (self.allow_loopback_http && ip.is_loopback())
    }

    fn scheme_allowed(&self, url: &Url) -> bool {
        url.scheme() == "https" || (self.allow_loopback_http && url.scheme() == "http")
    }

    /// Checks a subscription endpoint: scheme, no credentials, and every
    /// address its host resolves to.
    pub async fn check(&self, endpoint: &str) -> Result<Url, EndpointError> {
        let url = Url::parse(endpoint).map_err(|_| EndpointError::Scheme)?;
        if !self.scheme_allowed(&url) || url.host_str().is_none() {
            return Err(EndpointError::Scheme);
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(EndpointError::Credentials);
        }
        let addresses = resolve(&url).await?;
        if addresses.iter().all(|a| self.allows(a.ip())) {
            // Plain http only ever to loopback.
            if url.scheme() == "http" && !addresses.iter().all(|a| a.ip().is_loopback()) {
                return Err(EndpointError::Scheme);
            }
            Ok(url)
        } else {
            Err(EndpointError::PrivateAddress)
        }
    }
}

async fn resolve(url: &Url) -> Result<Vec<SocketAddr>, EndpointError> {
    let host = url.host_str().ok_or(EndpointError::Scheme)?;
    let port = url.port_or_known_default().unwrap_or(443);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let found: Vec<SocketAddr> =
        tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::lookup_host((host, port)))
            .await
            .map_err(|_| EndpointError::Unresolvable)?
            .map_err(|_| EndpointError::Unresolvable)?
            .collect();
    if found.is_empty() {
        Err(EndpointError::Unresolvable)
    } else {
        Ok(found)
    }
}

/// The HTTP client's resolver: drops every address the policy refuses, so a
/// connection can only go where the policy allows.
struct PolicyResolver(EndpointPolicy);

impl Resolve for PolicyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.0;
        Box::pin(async move {
            let found = tokio::net::lookup_host((name.as_str(), 0)).await?;
            let allowed: Vec<SocketAddr> = found.filter(|a| policy.allows(a.ip())).collect();
            if allowed.is_empty() {
                return Err("push endpoint resolves to no allowed address".into());
            }
            let addrs: Addrs = Box::new(allowed.into_iter());
            Ok(addrs)
        })
    }
}

/// A browser's `PushSubscription` keys, decoded and checked.
#[derive(Debug, Clone)]
pub struct SubscriptionKeys {
    pub p256dh: p256::PublicKey,
    pub auth: [u8; 16],
}

fn base64url(s: &str) -> Option<Vec<u8>> {
    BASE64URL_NOPAD
        .decode(s.trim_end_matches('=').as_bytes())
        .ok()
}

impl SubscriptionKeys {
    pub fn parse(p256dh: &str, auth: &str) -> Result<Self, &'static str> {
        let point = base64url(p256dh).ok_or("keys.p256dh must be base64url")?;
        let p256dh = p256::PublicKey::from_sec1_bytes(&point)
            .map_err(|_| "keys.p256dh must be an uncompressed P-256 point")?;
        let auth: [u8; 16] = base64url(auth)
            .and_then(|a| a.try_into().ok())
            .ok_or("keys.auth must be 16 bytes, base64url")?;
        Ok(Self { p256dh, auth })
    }
}

/// What became of one push.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    /// 404 / 410: the subscription is gone; delete it.
    Gone,
    /// 429, 5xx or a network failure: try again later.
    Retry(String),
    /// Any other refusal: retrying will not help.
    Rejected(u16),
}

/// Signs and sends pushes with the service's VAPID key.
#[derive(Clone)]
pub struct PushSender {
    key: Arc<SigningKey>,
    /// `k=` of the Authorization header and `vapid-public-key`.
    public_key: String,
    subject: String,
    policy: EndpointPolicy,
    client: reqwest::Client,
}

impl PushSender {
    /// From the PEM of a P-256 private key (SEC1 `EC PRIVATE KEY` or PKCS#8).
    pub fn new(pem: &str, subject: &str, policy: EndpointPolicy) -> anyhow::Result<Self> {
        use p256::pkcs8::DecodePrivateKey;
        let secret = p256::SecretKey::from_sec1_pem(pem)
            .or_else(|_| p256::SecretKey::from_pkcs8_pem(pem))
            .context("the VAPID key is not a P-256 private key in PEM")?;
        let public_key =
            BASE64URL_NOPAD.encode(secret.public_key().to_encoded_point(false).as_bytes());
        let client = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(Arc::new(PolicyResolver(policy)))
            .build()
            .context("push HTTP client")?;
        Ok(Self {
            key: Arc::new(SigningKey::from(secret)),
            public_key,
            subject: subject.to_owned(),
            policy,
            client,
        })
    }

    /// The application server key for `pushManager.subscribe` (base64url of
    /// the uncompressed point).
    pub fn public_key(&self) -> &str {
        &self.public_key
    }

    pub fn policy(&self) -> EndpointPolicy {
        self.policy
    }

    /// The RFC 8292 JWT for an endpoint: `aud` is its origin, valid 12 hours.
    fn vapid_jwt(&self, endpoint: &Url) -> String {
        let header = BASE64URL_NOPAD.encode(br#"{"typ":"JWT","alg":"ES256"}"#);
        let claims = serde_json::json!({
            "aud": endpoint.origin().ascii_serialization(),
            "exp": chrono::Utc::now().timestamp() + 12 * 3600,
            "sub": self.subject,
        });
        let claims = BASE64URL_NOPAD.encode(claims.to_string().as_bytes());
        let signing_input = format!("{header}.{claims}");
        let signature: Signature = self.key.sign(signing_input.as_bytes());
        format!(
            "{signing_input}.{}",
            BASE64URL_NOPAD.encode(&signature.to_bytes())
        )
    }

    /// Encrypts `payload` for the subscription and posts it.
    pub async fn send(&self, endpoint: &str, keys: &SubscriptionKeys, payload: &[u8]) -> Outcome {
        let url = match Url::parse(endpoint) {
            Ok(u) if self.policy.scheme_allowed(&u) => u,
            _ => return Outcome::Rejected(0),
        };
        // An IP literal never reaches the resolver: check it here.
        if let Some(ip) = url
            .host_str()
            .and_then(|h| h.trim_start_matches('[').trim_end_matches(']').parse().ok())
        {
            if !self.policy.allows(ip) {
                return Outcome::Rejected(0);
            }
        }
        let auth = web_push_native::Auth::clone_from_slice(&keys.auth);
        let body = match web_push_native::encrypt(payload.to_vec(), &keys.p256dh, &auth) {
            Ok(b) => b,
            Err(e) => return Outcome::Retry(format!("encryption failed: {e}")),
        };
        let authorization = format!("vapid t={}, k={}", self.vapid_jwt(&url), self.public_key);
        let sent = self
            .client
            .post(url)
            .header("TTL", PUSH_TTL)
            .header("Urgency", "normal")
            .header("Content-Encoding", "aes128gcm")
            .header("Content-Type", "application/octet-stream")
            .header("Authorization", authorization)
            .body(body)
            .send()
            .await;
        match sent {
            Err(e) => Outcome::Retry(e.to_string()),
            Ok(r) if r.status().is_success() => Outcome::Delivered,
            Ok(r) if r.status() == 404 || r.status() == 410 => Outcome::Gone,
            Ok(r) if r.status() == 429 || r.status().is_server_error() => {
                Outcome::Retry(format!("push service answered {}", r.status()))
            }
            Ok(r) => Outcome::Rejected(r.status().as_u16()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_and_special_addresses_are_not_public() {
        for ip in [
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "127.0.0.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:10.0.0.1",
            "::ffff:127.0.0.1",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip} counted as public");
        }
        for ip in ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111"] {
            assert!(is_public(ip.parse().unwrap()), "{ip} counted as private");
        }
    }

    #[tokio::test]
    async fn endpoints_must_be_https_to_public_hosts() {
        let strict = EndpointPolicy {
            allow_loopback_http: false,
        };
        for bad in [
            "http://push.example.com/x",
            "https://127.0.0.1/x",
            "https://10.0.0.8/x",
            "https://[::1]/x",
            "https://169.254.169.254/latest",
            "https://user:pw@8.8.8.8/x",
            "ftp://8.8.8.8/x",
            "not a url",
        ] {
            assert!(strict.check(bad).await.is_err(), "{bad} accepted");
        }
        assert!(strict.check("https://8.8.8.8/push/abc").await.is_ok());
        let dev = EndpointPolicy {
            allow_loopback_http: true,
        };
        assert!(dev.check("http://127.0.0.1:9/push").await.is_ok());
        assert!(dev.check("http://10.0.0.8/push").await.is_err());
    }
}
