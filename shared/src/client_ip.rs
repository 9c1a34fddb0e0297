//! The client's address for rate limits and session records. The rightmost
//! `X-Forwarded-For` entry is believed only when the TCP peer is a trusted
//! proxy (the gateway), so a direct client cannot spoof its address.

use std::net::IpAddr;

use actix_web::HttpRequest;
use ipnet::IpNet;

/// Addresses or networks (`127.0.0.1`, `172.16.0.0/12`) of trusted proxies.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(pub Vec<IpNet>);

impl TrustedProxies {
    /// Parses `a.b.c.d` or `a.b.c.d/n` entries; `Err` names the bad one.
    pub fn parse(entries: &[String]) -> Result<Self, String> {
        entries
            .iter()
            .map(|e| {
                e.parse::<IpNet>()
                    .or_else(|_| e.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| e.clone())
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Self)
    }

    pub fn contains(&self, ip: &IpAddr) -> bool {
        self.0.iter().any(|net| net.contains(ip))
    }
}

pub fn client_ip(req: &HttpRequest, trusted: &TrustedProxies) -> Option<IpAddr> {
    let peer = req.peer_addr().map(|a| a.ip())?;
    if !trusted.contains(&peer) {
        return Some(peer);
    }
    // Walk from the right: the last hop not itself a trusted proxy is the client.
    let forwarded = req
        .headers()
        .get_all("x-forwarded-for")
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect::<Vec<_>>();
    for hop in forwarded.iter().rev() {
        match hop.parse::<IpAddr>() {
            Ok(ip) if trusted.contains(&ip) => continue,
            Ok(ip) => return Some(ip),
            Err(_) => return Some(peer),
        }
    }
    Some(peer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    fn trusted() -> TrustedProxies {
        TrustedProxies::parse(&["127.0.0.1".into(), "10.0.0.0/8".into()]).unwrap()
    }

    #[test]
    fn forwarded_for_is_ignored_from_an_untrusted_peer() {
        let req = TestRequest::default()
            .peer_addr("127.0.0.5:4000".parse().unwrap())
            .insert_header(("x-forwarded-for", "10.9.9.9"))
            .to_http_request();
        assert_eq!(
            client_ip(&req, &trusted()),
            Some("127.0.0.5".parse().unwrap())
        );
    }

    #[test]
    fn the_rightmost_untrusted_hop_is_the_client() {
        let req = TestRequest::default()
            .peer_addr("127.0.0.1:4000".parse().unwrap())
            .insert_header(("x-forwarded-for", "1.1.1.1, 203.0.113.7, 10.1.2.3"))
            .to_http_request();
        assert_eq!(
            client_ip(&req, &trusted()),
            Some("203.0.113.7".parse().unwrap())
        );
    }
}
