//! Which webhook URLs payd will call: HTTPS to public addresses only, unless
//! `webhooks.allow_insecure` (development, tests). Checked when an endpoint is registered (literal
//! addresses and local names) and again at delivery time, after DNS resolution, by [`SafeResolver`]
//! (so a name that later resolves to a private address is refused too). Redirects are not followed.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Why a URL is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("url is not a valid absolute URL")]
    Invalid,
    #[error("url must use https")]
    NotHttps,
    #[error("url must not point to a private, loopback or link-local address")]
    PrivateAddress,
    #[error("url must not carry credentials")]
    Credentials,
}

/// Whether `ip` is a public unicast address.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public_v4(v4);
            }
            let seg0 = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (seg0 & 0xfe00) == 0xfc00 // unique local fc00::/7
                || (seg0 & 0xffc0) == 0xfe80 // link local fe80::/10
                || seg0 == 0x2001 && v6.segments()[1] == 0x0db8 // documentation
                || is_nat64(v6))
        }
    }
}

/// NAT64 prefixes: the well-known 64:ff9b::/96 (RFC 6052), whose addresses embed any IPv4 address —
/// a translator would carry `64:ff9b::a9fe:a9fe` to 169.254.169.254 — and the local-use
/// 64:ff9b:1::/48 (RFC 8215). Refused as whole ranges.
fn is_nat64(v6: Ipv6Addr) -> bool {
    let s = v6.segments();
    let well_known = s[2..6].iter().all(|x| *x == 0);
    let local_use = s[2] == 1;
    s[0] == 0x64 && s[1] == 0xff9b && (well_known || local_use)
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let o = ip.octets();
    !(ip.is_private()
        || ip.is_loopback()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || o[0] == 0
        || (o[0] == 100 && (64..=127).contains(&o[1])) // shared address space (CGNAT)
        || (o[0] == 192 && o[1] == 0 && o[2] == 0) // IETF protocol assignments
        || (o[0] == 198 && (18..=19).contains(&o[1])) // benchmarking
        || o[0] >= 240)
}

/// Checks a URL given at registration.
///
/// # Errors
/// `UrlError` naming the problem.
pub fn check(raw: &str, allow_insecure: bool) -> Result<url::Url, UrlError> {
    let url = url::Url::parse(raw).map_err(|_| UrlError::Invalid)?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(UrlError::Credentials);
    }
    match url.scheme() {
        "https" => {}
        "http" if allow_insecure => {}
        _ => return Err(UrlError::NotHttps),
    }
    let host = url.host().ok_or(UrlError::Invalid)?;
    if allow_insecure {
        return Ok(url);
    }
    let private = match host {
        url::Host::Ipv4(ip) => !is_public(IpAddr::V4(ip)),
        url::Host::Ipv6(ip) => !is_public(IpAddr::V6(ip)),
        url::Host::Domain(d) => {
            let d = d.trim_end_matches('.').to_ascii_lowercase();
            d == "localhost"
                || d.ends_with(".localhost")
                || d.ends_with(".local")
                || d.ends_with(".internal")
                || d.ends_with(".lan")
                || !d.contains('.')
        }
    };
    if private {
        return Err(UrlError::PrivateAddress);
    }
    Ok(url)
}

/// DNS resolution for webhook deliveries that drops non-public addresses (and fails when none is
/// left), so a public name cannot be pointed at an internal service.
#[derive(Debug, Default, Clone, Copy)]
pub struct SafeResolver;

impl reqwest::dns::Resolve for SafeResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let public: Vec<SocketAddr> = addrs.into_iter().filter(|a| is_public(a.ip())).collect();
            if public.is_empty() {
                let e: Box<dyn std::error::Error + Send + Sync> =
                    format!("{host} resolves to no public address").into();
                return Err(e);
            }
            let it: reqwest::dns::Addrs = Box::new(public.into_iter());
            Ok(it)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_insecure_and_private_targets() {
        assert!(check("https://hooks.example.com/payd", false).is_ok());
        assert_eq!(check("http://hooks.example.com/payd", false), Err(UrlError::NotHttps));
        assert_eq!(check("ftp://hooks.example.com/", false), Err(UrlError::NotHttps));
        for bad in [
            "https://127.0.0.1/h",
            "https://10.1.2.3/h",
            "https://192.168.0.10/h",
            "https://172.16.5.4/h",
            "https://169.254.169.254/latest",
            "https://[::1]/h",
            "https://[fd00::1]/h",
            "https://[::ffff:127.0.0.1]/h",
            "https://localhost/h",
            "https://api.localhost/h",
            "https://printer.local/h",
            "https://intranet/h",
            "https://0.0.0.0/h",
            // NAT64: the whole well-known /96 (any embedded IPv4 address), and the local-use /48.
            "https://[64:ff9b::]/h",
            "https://[64:ff9b::a9fe:a9fe]/h",
            "https://[64:ff9b::7f00:1]/h",
            "https://[64:ff9b::5db8:d822]/h",
            "https://[64:ff9b:1::a00:1]/h",
        ] {
            assert_eq!(check(bad, false), Err(UrlError::PrivateAddress), "{bad}");
        }
        assert_eq!(check("https://user:pw@hooks.example.com/", false), Err(UrlError::Credentials));
        assert_eq!(check("not a url", false), Err(UrlError::Invalid));
        assert!(check("http://127.0.0.1:9/h", true).is_ok());
        assert!(is_public("93.184.216.34".parse().unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))));
    }
}
