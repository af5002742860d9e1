//! The client's address for rate limits and logs. Behind a reverse proxy (nginx in the Compose stack,
//! an ingress controller in Kubernetes) the TCP peer is the proxy; `server.trusted_proxies` names the
//! proxies whose `X-Forwarded-For` is believed. The header is read from the right: each hop a trusted
//! proxy appended is skipped, and the first address that is not a trusted proxy is the client. A
//! client cannot forge its way past this: whatever it puts in the header sits to the left of the
//! address its own proxy appended.

use std::net::IpAddr;

use actix_web::HttpRequest;
use ipnet::IpNet;

/// Parses `server.trusted_proxies` entries: CIDR blocks (`10.0.0.0/8`) or single addresses; empty
/// entries (an empty environment variable) are skipped.
///
/// # Errors
/// The first entry that is neither.
pub fn parse_proxies(entries: &[String]) -> Result<Vec<IpNet>, String> {
    entries
        .iter()
        .filter(|e| !e.trim().is_empty())
        .map(|e| {
            let e = e.trim();
            e.parse::<IpNet>().or_else(|_| e.parse::<IpAddr>().map(IpNet::from)).map_err(|_| e.to_owned())
        })
        .collect()
}

/// The client address of `req` given the trusted proxies.
pub fn client_ip(req: &HttpRequest, trusted: &[IpNet]) -> Option<IpAddr> {
    let peer = req.peer_addr()?.ip();
    let forwarded: Vec<&str> = req
        .headers()
        .get_all("x-forwarded-for")
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    Some(resolve(peer, &forwarded, trusted))
}

/// The client address of a call from `peer` that carried `x-forwarded-for` values `forwarded` (the
/// gRPC transport, whose metadata are not actix headers).
pub fn client_ip_from(peer: IpAddr, forwarded: &[&str], trusted: &[IpNet]) -> IpAddr {
    let hops: Vec<&str> = forwarded.iter().flat_map(|v| v.split(',')).map(str::trim).collect();
    resolve(peer, &hops, trusted)
}

fn resolve(peer: IpAddr, forwarded: &[&str], trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    let mut client = peer;
    for hop in forwarded.iter().rev() {
        if !is_trusted(&client) {
            break;
        }
        match hop.parse::<IpAddr>() {
            Ok(ip) => client = ip,
            // A malformed entry: the last trusted hop is as far as the chain can be followed.
            Err(_) => break,
        }
    }
    client
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or(IpAddr::from([0, 0, 0, 0]))
    }

    #[test]
    fn without_trusted_proxies_the_peer_is_the_client() {
        assert_eq!(resolve(ip("10.0.0.5"), &["1.2.3.4"], &[]), ip("10.0.0.5"));
    }

    #[test]
    fn a_trusted_proxy_hands_over_to_the_forwarded_address() {
        let trusted = parse_proxies(&["10.0.0.0/8".into()]).unwrap_or_default();
        assert_eq!(resolve(ip("10.0.0.5"), &["203.0.113.9"], &trusted), ip("203.0.113.9"));
        // Chained trusted proxies are skipped; a forged entry left of the real client is ignored.
        assert_eq!(resolve(ip("10.0.0.5"), &["6.6.6.6", "203.0.113.9", "10.1.2.3"], &trusted), ip("203.0.113.9"));
        // No header: the proxy itself.
        assert_eq!(resolve(ip("10.0.0.5"), &[], &trusted), ip("10.0.0.5"));
        // Garbage stops the walk at the last trusted hop.
        assert_eq!(resolve(ip("10.0.0.5"), &["nonsense"], &trusted), ip("10.0.0.5"));
    }

    #[test]
    fn an_untrusted_peer_cannot_choose_its_address() {
        let trusted = parse_proxies(&["10.0.0.0/8".into(), "192.168.1.1".into()]).unwrap_or_default();
        assert_eq!(resolve(ip("198.51.100.7"), &["10.9.9.9", "1.1.1.1"], &trusted), ip("198.51.100.7"));
    }

    #[test]
    fn bad_entries_are_named() {
        assert_eq!(parse_proxies(&["10.0.0.0/8".into(), "not-an-ip".into()]), Err("not-an-ip".to_owned()));
        assert_eq!(parse_proxies(&["::1".into(), "fd00::/8".into()]).map(|v| v.len()), Ok(2));
        assert_eq!(parse_proxies(&[String::new()]).map(|v| v.len()), Ok(0));
    }
}
