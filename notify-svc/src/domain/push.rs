//! Web Push (RFC 8030): payloads encrypted for the subscription (RFC 8291,
//! `aes128gcm`, by `web-push-native`), requests signed with a VAPID JWT
//! (RFC 8292, ES256, `aud` = the endpoint's origin).
//!
//! Push endpoints are URLs that users hand us, so they are a server-side
//! request forgery risk: they must be https on port 443 and resolve only to
//! public addresses, also counting the IPv6 forms that reach an IPv4
//! address (IPv4-mapped and -compatible, NAT64, 6to4). The check runs when a
//! subscription is saved and again on every connection, inside the HTTP
//! client's resolver, so a name that later resolves to a private address
//! (DNS rebinding) is refused too. Redirects are not followed, a proxy from
//! the environment is never used (it would connect where our resolver never
//! looked), and every request has a timeout.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
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
/// The one port an https endpoint may use: push services listen there, and
/// other ports are where internal services answer.
const HTTPS_PORT: u16 = 443;

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
    #[error("must use port 443")]
    Port,
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
            if v6.is_loopback() || v6.is_unspecified() {
                return false;
            }
            if let Some(v4) = embedded_ipv4(v6) {
                return is_public(IpAddr::V4(v4));
            }
            let [first, second, third, ..] = v6.segments();
            !(v6.is_multicast()
                || (first & 0xfe00) == 0xfc00 // unique local
                || (first & 0xffc0) == 0xfe80 // link-local
                || (first & 0xffc0) == 0xfec0 // site-local (deprecated)
                || (first == 0x0064 && second == 0xff9b && third == 0x0001) // local-use NAT64 (RFC 8215)
                || (first == 0x2001 && second == 0x0000) // Teredo: tunnels to an IPv4 address
                || (first == 0x2001 && second == 0x0db8) // documentation
                || (first == 0x0100 && second == 0 && third == 0 && v6.segments()[3] == 0))
            // discard-only
        }
    }
}

/// The IPv4 address that an IPv6 address reaches, in the forms that carry
/// it in fixed bits: IPv4-mapped (`::ffff:0:0/96`), IPv4-compatible
/// (`::/96`, deprecated), NAT64's well-known prefix (`64:ff9b::/96`,
/// RFC 6052) and 6to4 (`2002::/16`, RFC 3056, the address in bits 16-47).
fn embedded_ipv4(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    if let Some(v4) = v6.to_ipv4_mapped() {
        return Some(v4);
    }
    let s = v6.segments();
    let low32 = || Ipv4Addr::from((u32::from(s[6]) << 16) | u32::from(s[7]));
    match s {
        [0, 0, 0, 0, 0, 0, ..] => Some(low32()),
        // IPv4-translated (`::ffff:0:0:0/96`, RFC 2765).
        [0, 0, 0, 0, 0xffff, 0, ..] => Some(low32()),
        [0x0064, 0xff9b, 0, 0, 0, 0, ..] => Some(low32()),
        [0x2002, ..] => Some(Ipv4Addr::from((u32::from(s[1]) << 16) | u32::from(s[2]))),
        _ => None,
    }
}

impl EndpointPolicy {
    fn allows(&self, ip: IpAddr) -> bool {
        is_public(ip) || (self.allow_loopback_http && ip.is_loopback())
    }

    /// Scheme and port: https on 443; with the dev setting also http, on
    /// any port (its addresses must then all be loopback, see `check`).
    fn url_allowed(&self, url: &Url) -> Result<(), EndpointError> {
        match url.scheme() {
            "https" if url.port_or_known_default() == Some(HTTPS_PORT) => Ok(()),
            "https" => Err(EndpointError::Port),
            "http" if self.allow_loopback_http => Ok(()),
            _ => Err(EndpointError::Scheme),
        }
    }

    /// Checks a subscription endpoint: scheme, no credentials, and every
    /// address its host resolves to.
    pub async fn check(&self, endpoint: &str) -> Result<Url, EndpointError> {
        let url = Url::parse(endpoint).map_err(|_| EndpointError::Scheme)?;
        if url.host_str().is_none() {
            return Err(EndpointError::Scheme);
        }
        self.url_allowed(&url)?;
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
            .no_proxy()
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
            Ok(u) if self.policy.url_allowed(&u).is_ok() => u,
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

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn nat64_forms_of_private_ipv4_addresses_are_not_public() {
        for private in [
            "64:ff9b::10.0.0.1",
            "64:ff9b::127.0.0.1",
            "64:ff9b::a9fe:a9fe", // 169.254.169.254
            "64:ff9b::192.168.1.1",
            "64:ff9b::100.64.0.1",
            "64:ff9b::0.0.0.0",
        ] {
            assert!(!is_public(ip(private)), "{private} counted as public");
        }
        // The well-known prefix in front of a public address is a real route.
        assert!(is_public(ip("64:ff9b::8.8.8.8")));
        // The local-use prefix (RFC 8215) embeds IPv4 wherever the operator
        // chooses and is never public, whatever follows it.
        for local in [
            "64:ff9b:1::8.8.8.8",
            "64:ff9b:1:ffff::1",
            "64:ff9b:1::a00:1",
        ] {
            assert!(!is_public(ip(local)), "{local} counted as public");
        }
    }

    #[test]
    fn six_to_four_forms_of_private_ipv4_addresses_are_not_public() {
        for private in [
            "2002:0a00:0001::1",  // 10.0.0.1
            "2002:7f00:0001::",   // 127.0.0.1
            "2002:a9fe:a9fe::1",  // 169.254.169.254
            "2002:c0a8:0101::42", // 192.168.1.1
            "2002:ac10::1",       // 172.16.0.0
            "2002::1",            // 0.0.0.0
        ] {
            assert!(!is_public(ip(private)), "{private} counted as public");
        }
        assert!(is_public(ip("2002:0808:0808::1")), "6to4 of 8.8.8.8");
    }

    #[test]
    fn other_ipv6_forms_of_private_ipv4_and_tunnels_are_not_public() {
        for private in [
            "::10.0.0.1",        // IPv4-compatible
            "::127.0.0.1",       // IPv4-compatible
            "::ffff:0:10.0.0.1", // IPv4-translated
            "::ffff:169.254.169.254",
            "2001:0:4136:e378:8000:63bf:3fff:fdd2", // Teredo
            "fec0::1",                              // site-local
            "100::1",                               // discard-only
            "2001:db8::1",
        ] {
            assert!(!is_public(ip(private)), "{private} counted as public");
        }
        assert!(is_public(ip("::ffff:0:8.8.8.8")));
        assert!(is_public(ip("2a00:1450:4001:82b::200e")));
    }

    #[test]
    fn https_endpoints_must_use_port_443() {
        let strict = EndpointPolicy {
            allow_loopback_http: false,
        };
        let dev = EndpointPolicy {
            allow_loopback_http: true,
        };
        let url = |s: &str| Url::parse(s).unwrap();
        for policy in [strict, dev] {
            assert!(policy
                .url_allowed(&url("https://push.example.com/x"))
                .is_ok());
            assert!(policy
                .url_allowed(&url("https://push.example.com:443/x"))
                .is_ok());
            for other in [
                "https://push.example.com:8443/x",
                "https://push.example.com:22/x",
                "https://push.example.com:80/x",
                "https://push.example.com:6379/x",
            ] {
                assert!(
                    matches!(policy.url_allowed(&url(other)), Err(EndpointError::Port)),
                    "{other} allowed"
                );
            }
        }
        assert!(matches!(
            strict.url_allowed(&url("http://127.0.0.1:9/x")),
            Err(EndpointError::Scheme)
        ));
        assert!(dev.url_allowed(&url("http://127.0.0.1:9/x")).is_ok());
    }

    #[tokio::test]
    async fn subscriptions_are_checked_for_the_port_and_the_embedded_address() {
        let strict = EndpointPolicy {
            allow_loopback_http: false,
        };
        for bad in [
            "https://8.8.8.8:8443/push",
            "https://[64:ff9b::a9fe:a9fe]/latest",
            "https://[64:ff9b:1::808:808]/push",
            "https://[2002:7f00:1::1]/push",
            "https://[::127.0.0.1]/push",
        ] {
            assert!(strict.check(bad).await.is_err(), "{bad} accepted");
        }
        assert!(matches!(
            strict.check("https://8.8.8.8:8443/push").await,
            Err(EndpointError::Port)
        ));
        assert!(strict.check("https://8.8.8.8:443/push").await.is_ok());
    }
}
