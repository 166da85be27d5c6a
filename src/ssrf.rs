//! The SSRF guard: a webhook URL may only reach the public internet.
//!
//! Only http(s). The host is resolved and every address checked against a
//! table built from IANA's special-purpose address registries (IPv4:
//! <https://www.iana.org/assignments/iana-ipv4-special-registry>, IPv6:
//! <https://www.iana.org/assignments/iana-ipv6-special-registry>), plus
//! multicast, 240/4 and the deprecated site-local block. Every block in
//! them is refused except those the registries mark globally reachable
//! and that reach one host only (none are worth a webhook). IPv6 forms
//! that carry an IPv4 address (mapped, compatible, IPv4-translated,
//! NAT64, 6to4, Teredo) are refused outright: a receiver has no need of
//! them and each can smuggle an internal IPv4 address. Decimal, octal and hex spellings (`2130706433`, `0177.0.0.1`)
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
        IpAddr::V6(v6) => is_internal_v6(v6),
    }
}

/// IPv4 blocks webhooks never reach: (network, prefix length, name).
const INTERNAL_V4: &[([u8; 4], u8, &str)] = &[
    ([0, 0, 0, 0], 8, "this network"),
    ([10, 0, 0, 0], 8, "private"),
    ([100, 64, 0, 0], 10, "shared address space (CGNAT)"),
    ([127, 0, 0, 0], 8, "loopback"),
    ([169, 254, 0, 0], 16, "link-local (cloud metadata)"),
    ([172, 16, 0, 0], 12, "private"),
    ([192, 0, 0, 0], 24, "IETF protocol assignments"),
    ([192, 0, 2, 0], 24, "documentation (TEST-NET-1)"),
    ([192, 31, 196, 0], 24, "AS112-v4"),
    ([192, 52, 193, 0], 24, "AMT"),
    ([192, 88, 99, 0], 24, "deprecated 6to4 relay anycast"),
    ([192, 168, 0, 0], 16, "private"),
    ([192, 175, 48, 0], 24, "direct delegation AS112"),
    ([198, 18, 0, 0], 15, "benchmarking"),
    ([198, 51, 100, 0], 24, "documentation (TEST-NET-2)"),
    ([203, 0, 113, 0], 24, "documentation (TEST-NET-3)"),
    ([224, 0, 0, 0], 4, "multicast"),
    ([240, 0, 0, 0], 4, "reserved (and limited broadcast)"),
];

/// IPv6 blocks webhooks never reach: (network, prefix length, name).
const INTERNAL_V6: &[([u16; 8], u8, &str)] = &[
    ([0, 0, 0, 0, 0, 0, 0, 0], 128, "unspecified"),
    ([0, 0, 0, 0, 0, 0, 0, 1], 128, "loopback"),
    ([0, 0, 0, 0, 0, 0xffff, 0, 0], 96, "IPv4-mapped"),
    ([0, 0, 0, 0, 0, 0, 0, 0], 96, "IPv4-compatible (deprecated)"),
    ([0, 0, 0, 0, 0xffff, 0, 0, 0], 96, "IPv4-translated"),
    (
        [0x64, 0xff9b, 0, 0, 0, 0, 0, 0],
        96,
        "NAT64 well-known prefix",
    ),
    ([0x64, 0xff9b, 1, 0, 0, 0, 0, 0], 48, "NAT64 local-use"),
    ([0x100, 0, 0, 0, 0, 0, 0, 0], 64, "discard-only"),
    (
        [0x2001, 0, 0, 0, 0, 0, 0, 0],
        23,
        "IETF protocol assignments (Teredo 2001::/32 within)",
    ),
    ([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 32, "documentation"),
    ([0x2002, 0, 0, 0, 0, 0, 0, 0], 16, "6to4"),
    ([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20, "documentation"),
    ([0x5f00, 0, 0, 0, 0, 0, 0, 0], 16, "segment routing SIDs"),
    ([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7, "unique local"),
    ([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10, "link-local"),
    ([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10, "site-local (deprecated)"),
    ([0xff00, 0, 0, 0, 0, 0, 0, 0], 8, "multicast"),
];

fn in_block(address: u128, network: u128, prefix: u8, bits: u32) -> bool {
    let shift = bits - u32::from(prefix);
    if shift >= bits {
        return true;
    }
    (address >> shift) == (network >> shift)
}

fn is_internal_v4(v4: Ipv4Addr) -> bool {
    let address = u128::from(u32::from(v4));
    INTERNAL_V4.iter().any(|(network, prefix, _)| {
        in_block(
            address,
            u128::from(u32::from(Ipv4Addr::from(*network))),
            *prefix,
            32,
        )
    })
}

fn is_internal_v6(v6: Ipv6Addr) -> bool {
    let address = u128::from(v6);
    INTERNAL_V6.iter().any(|(network, prefix, _)| {
        in_block(address, u128::from(Ipv6Addr::from(*network)), *prefix, 128)
    })
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

    #[test]
    fn the_special_purpose_table_refuses_every_listed_range_and_not_its_neighbours() {
        let refused = [
            "64:ff9b::a00:1",
            "64:ff9b::8.8.8.8",
            "64:ff9b:1::1",
            "2002:c0a8:101::1",
            "2002::",
            "2001::1",
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
            "::ffff:0:7f00:1",
            "::ffff:0:0808:0808",
            "fec0::1",
            "feff::1",
            "100::1",
            "100::ffff:ffff:ffff:ffff",
            "::ffff:8.8.8.8",
            "::8.8.8.8",
            "2001:db8::1",
            "fd00::1",
            "fe80::1",
            "ff02::1",
            "::",
            "::1",
            "192.0.0.1",
            "192.0.0.255",
            "192.0.2.1",
            "198.18.0.1",
            "198.19.255.255",
            "198.51.100.7",
            "203.0.113.9",
            "192.88.99.1",
            "240.0.0.1",
            "255.255.255.255",
            "0.1.2.3",
            "10.1.1.1",
            "100.64.0.1",
            "127.0.0.1",
            "169.254.169.254",
            "172.16.0.1",
            "192.168.1.1",
            "224.0.0.1",
        ];
        for address in refused {
            let parsed: IpAddr = address.parse().unwrap();
            assert!(is_internal(parsed), "{address} must be refused");
        }
        let allowed = [
            "8.8.8.8",
            "1.1.1.1",
            "192.0.3.1",
            "198.17.255.255",
            "198.20.0.1",
            "198.51.101.1",
            "203.0.114.1",
            "192.88.100.1",
            "223.255.255.255",
            "100.128.0.1",
            "172.32.0.1",
            "2606:4700:4700::1111",
            "2a00:1450:4001::1",
            "2003::1",
            "101::1",
            "64:ff9c::1",
        ];
        for address in allowed {
            let parsed: IpAddr = address.parse().unwrap();
            assert!(!is_internal(parsed), "{address} is public");
        }
    }

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
