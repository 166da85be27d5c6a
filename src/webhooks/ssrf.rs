//! The SSRF guard: a webhook URL may only reach the public internet.
//!
//! Only http(s). The host is resolved and every address checked: loopback,
//! private, link-local (169.254/16, the cloud metadata range), CGNAT,
//! unspecified, multicast, broadcast and IPv4-mapped IPv6 forms of those are
//! refused. Decimal, octal and hex spellings (`2130706433`, `0177.0.0.1`)
//! are normalised by the URL parser before the check. [`check`] runs at
//! registration; at delivery the transport's resolver applies
//! [`is_internal`] to the very addresses it connects to, so a name cannot
//! resolve to something else between check and connect (DNS rebinding).
//! `PAYLINK_WEBHOOK_ALLOW_PRIVATE=1` lifts the address check for
//! development and tests.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use url::{Host, Url};

/// A name that does not resolve by then is refused rather than left to
/// hold the request open.
const LOOKUP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnsafeUrl {
    #[error("the URL could not be parsed")]
    Unparsable,
    #[error("only http and https URLs can receive webhooks")]
    Scheme,
    #[error("the host `{0}` could not be resolved")]
    Unresolvable(String),
    #[error("`{0}` is a loopback, private, link-local or otherwise internal address")]
    Internal(IpAddr),
}

/// Is `address` one webhooks must never reach?
pub fn is_internal(address: IpAddr) -> bool {
    match address {
        IpAddr::V4(v4) => is_internal_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_internal_v4(v4),
            None => is_internal_v6(v6),
        },
    }
}

fn is_internal_v4(v4: Ipv4Addr) -> bool {
    let [a, b, ..] = v4.octets();
    v4.is_loopback()
        || v4.is_private()
        || v4.is_link_local()
        || v4.is_unspecified()
        || v4.is_multicast()
        || v4.is_broadcast()
        || a == 0 // "this network"
        || (a == 100 && (64..128).contains(&b)) // CGNAT 100.64/10
        || a >= 240 // reserved
}

fn is_internal_v6(v6: Ipv6Addr) -> bool {
    let first = v6.segments()[0];
    v6.is_loopback()
        || v6.is_unspecified()
        || v6.is_multicast()
        || (first & 0xfe00) == 0xfc00 // unique local fc00::/7
        || (first & 0xffc0) == 0xfe80 // link-local fe80::/10
        || v6.to_ipv4().is_some_and(|v4| v6.segments()[..6] == [0; 6] && is_internal_v4(v4)) // IPv4-compatible
}

/// Checks what can be checked without DNS: the scheme, and the address
/// when the host is an IP literal (in any spelling the URL parser accepts).
pub fn check_url(url: &str, allow_internal: bool) -> Result<Url, UnsafeUrl> {
    let parsed = Url::parse(url).map_err(|_| UnsafeUrl::Unparsable)?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(UnsafeUrl::Scheme);
    }
    let literal = match parsed.host().ok_or(UnsafeUrl::Unparsable)? {
        Host::Ipv4(v4) => Some(IpAddr::V4(v4)),
        Host::Ipv6(v6) => Some(IpAddr::V6(v6)),
        Host::Domain(_) => None,
    };
    if !allow_internal && let Some(address) = literal.filter(|a| is_internal(*a)) {
        return Err(UnsafeUrl::Internal(address));
    }
    Ok(parsed)
}

/// Parses and checks `url`, resolving its host; returns the address to pin.
pub async fn check(url: &str, allow_internal: bool) -> Result<(Url, SocketAddr), UnsafeUrl> {
    let parsed = check_url(url, allow_internal)?;
    let port = parsed
        .port_or_known_default()
        .ok_or(UnsafeUrl::Unparsable)?;
    let addresses: Vec<IpAddr> = match parsed.host().ok_or(UnsafeUrl::Unparsable)? {
        Host::Ipv4(v4) => vec![IpAddr::V4(v4)],
        Host::Ipv6(v6) => vec![IpAddr::V6(v6)],
        Host::Domain(domain) => {
            tokio::time::timeout(LOOKUP_TIMEOUT, tokio::net::lookup_host((domain, port)))
                .await
                .ok()
                .and_then(Result::ok)
                .ok_or_else(|| UnsafeUrl::Unresolvable(domain.to_owned()))?
                .map(|socket| socket.ip())
                .collect()
        }
    };
    let first = *addresses
        .first()
        .ok_or_else(|| UnsafeUrl::Unresolvable(parsed.host_str().unwrap_or_default().to_owned()))?;
    if !allow_internal && let Some(bad) = addresses.iter().find(|a| is_internal(**a)) {
        return Err(UnsafeUrl::Internal(*bad));
    }
    Ok((parsed, SocketAddr::new(first, port)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_internal_address_class_is_refused_unless_allowed() {
        let refused = [
            "http://127.0.0.1/hook",
            "http://127.1/hook",
            "http://2130706433/hook",
            "http://0177.0.0.1/hook",
            "http://0x7f.0.0.1/hook",
            "http://localhost:8080/hook",
            "http://10.1.2.3/",
            "http://172.16.0.1/",
            "http://172.31.255.255/",
            "http://192.168.0.10/",
            "http://169.254.169.254/latest/meta-data",
            "http://100.64.0.1/",
            "http://100.127.255.254/",
            "http://0.0.0.0/",
            "http://224.0.0.1/",
            "http://255.255.255.255/",
            "http://[::1]/",
            "http://[::]/",
            "http://[::ffff:127.0.0.1]/",
            "http://[::ffff:169.254.169.254]/",
            "http://[fe80::1]/",
            "http://[fd00::1]/",
            "http://[ff02::1]/",
        ];
        for url in refused {
            assert!(
                matches!(check(url, false).await, Err(UnsafeUrl::Internal(_))),
                "{url} refused"
            );
            assert!(
                check(url, true).await.is_ok(),
                "{url} allowed with the flag"
            );
        }
        for url in [
            "ftp://example.com/",
            "file:///etc/passwd",
            "javascript:alert(1)",
        ] {
            assert!(check(url, true).await.is_err(), "{url}");
        }
        for url in [
            "https://93.184.215.14/hook",
            "http://100.128.0.1/",
            "http://172.32.0.1/",
            "http://[2606:4700::1111]/",
        ] {
            let (_, pinned) = check(url, false)
                .await
                .unwrap_or_else(|e| panic!("{url}: {e}"));
            assert!(!is_internal(pinned.ip()));
        }
        let (_, pinned) = check("http://2130706433:9000/x", true).await.unwrap();
        assert_eq!(
            pinned,
            "127.0.0.1:9000".parse().unwrap(),
            "the spelling is normalised before pinning"
        );
    }
}
