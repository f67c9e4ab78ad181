//! The client's address: the connection's peer, or, when the peer is a trusted proxy (a load
//! balancer, Envoy), the address the proxies report in `Forwarded` (RFC 7239) or
//! `X-Forwarded-For`.
//!
//! The chain is read from the right: the peer appended the address that connected to it, that
//! proxy (if trusted) the one before, and so on; the first address that is not a trusted proxy
//! is the client. Headers from an untrusted peer are ignored entirely, so a client cannot choose
//! its own address by sending them. A malformed entry stops the walk at the nearest trusted hop,
//! which is then taken as the client: a broken proxy makes its clients share its address, it
//! never fails the request and never lets anything left of the bad entry count.
//!
//! [`middleware`] resolves the address once per request and puts it in the request extensions
//! as [`ClientAddr`]; the rate limiter, and anything else that needs the client's address, reads
//! it from there, so they all agree.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderName};
use axum::middleware::Next;
use axum::response::Response;

use crate::state::AppState;

/// `X-Forwarded-For`.
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// At most this many hops are read from the right of a chain; a longer chain of trusted proxies
/// is cut there (the address reached is used).
const MAX_HOPS: usize = 32;

/// The client address resolved for a request (canonical: an IPv4-mapped IPv6 address is shown
/// as IPv4), in the request extensions of every request that came over a socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub IpAddr);

/// One CIDR block, such as `10.0.0.0/8` or `2001:db8::/32`; a bare address is a block of one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

/// Why a CIDR block did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{given}` is not a CIDR block (e.g. 10.0.0.0/8, 2001:db8::/32, 192.0.2.7): {why}")]
pub struct CidrError {
    given: String,
    why: &'static str,
}

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |why| CidrError {
            given: s.to_owned(),
            why,
        };
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| err("not an IP address"))?;
        let addr = addr.to_canonical();
        let bits = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => bits,
            Some(p) => {
                if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(err("the prefix length is not a number"));
                }
                p.parse::<u8>()
                    .ok()
                    .filter(|p| *p <= bits)
                    .ok_or_else(|| err("the prefix length is too long for the address"))?
            }
        };
        let cidr = Cidr { addr, prefix };
        if cidr.network(addr) != addr_bits(addr) {
            return Err(err("host bits are set after the prefix"));
        }
        Ok(cidr)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

fn addr_bits(addr: IpAddr) -> u128 {
    match addr {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

impl Cidr {
    /// `addr`'s bits with everything after this block's prefix cleared.
    fn network(&self, addr: IpAddr) -> u128 {
        let bits: u32 = if addr.is_ipv4() { 32 } else { 128 };
        let host_bits = bits - u32::from(self.prefix);
        let mask = if host_bits >= 128 {
            0
        } else {
            (u128::MAX << host_bits) & (u128::MAX >> (128 - bits))
        };
        addr_bits(addr) & mask
    }

    /// Whether `addr` is in the block (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn contains(&self, addr: IpAddr) -> bool {
        let addr = addr.to_canonical();
        addr.is_ipv4() == self.addr.is_ipv4() && self.network(addr) == addr_bits(self.addr)
    }
}

/// The proxies whose forwarding headers are believed (`--trusted-proxies`); empty by default,
/// so the peer address is the client's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<Cidr>);

impl TrustedProxies {
    /// No trusted proxies: forwarding headers are ignored.
    pub fn none() -> Self {
        TrustedProxies(Vec::new())
    }

    /// Whether `addr` is a trusted proxy.
    pub fn contains(&self, addr: IpAddr) -> bool {
        self.0.iter().any(|c| c.contains(addr))
    }

    /// Whether no proxy is trusted.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The client address of a request from `peer` with `headers`: see the module docs.
    pub fn resolve(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = peer.to_canonical();
        if !self.contains(peer) {
            return peer;
        }
        let chain = match forwarded_chain(headers) {
            Some(chain) => chain,
            None => x_forwarded_for_chain(headers),
        };
        let mut client = peer;
        for hop in chain.into_iter().rev().take(MAX_HOPS) {
            let Some(addr) = hop else {
                // Malformed: nothing left of it can be believed; the trusted hop that sent it
                // stands for the client.
                return client;
            };
            client = addr;
            if !self.contains(addr) {
                return addr;
            }
        }
        client
    }
}

impl FromStr for TrustedProxies {
    type Err = CidrError;

    /// A comma-separated list of CIDR blocks (blank items ignored), e.g.
    /// `10.0.0.0/8, 192.168.0.0/16, ::1`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(Cidr::from_str)
            .collect::<Result<Vec<_>, _>>()
            .map(TrustedProxies)
    }
}

impl fmt::Display for TrustedProxies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, c) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{c}")?;
        }
        Ok(())
    }
}

/// A node of `Forwarded` or an entry of `X-Forwarded-For`: an address, optionally with a port
/// (`192.0.2.1:80`, `[2001:db8::1]:80`), quoted or not. Anything else (`unknown`, an obfuscated
/// `_name`, garbage) is `None`.
fn node(value: &str) -> Option<IpAddr> {
    let v = value.trim();
    let v = v
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(v);
    if let Some(rest) = v.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        if !(after.is_empty() || is_port(after.strip_prefix(':')?)) {
            return None;
        }
        return inside
            .parse::<std::net::Ipv6Addr>()
            .ok()
            .map(|a| IpAddr::V6(a).to_canonical());
    }
    if let Ok(addr) = v.parse::<IpAddr>() {
        return Some(addr.to_canonical());
    }
    let (host, port) = v.rsplit_once(':')?;
    if !is_port(port) {
        return None;
    }
    host.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

fn is_port(p: &str) -> bool {
    !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit())
}

/// Splits on `sep` outside double quotes (a quoted `Forwarded` value may hold `,` or `;`).
fn split_unquoted(s: &str, sep: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut quoted = false;
    let mut escaped = false;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
        } else if quoted && c == '\\' {
            escaped = true;
        } else if c == '"' {
            quoted = !quoted;
        } else if c == sep && !quoted {
            parts.push(&s[start..i]);
            start = i + c.len_utf8();
        }
    }
    parts.push(&s[start..]);
    parts
}

/// The `for=` addresses of every `Forwarded` field, in order (`None` for an element without a
/// usable one); `None` when there is no `Forwarded` field.
fn forwarded_chain(headers: &HeaderMap) -> Option<Vec<Option<IpAddr>>> {
    let mut fields = headers
        .get_all(axum::http::header::FORWARDED)
        .iter()
        .peekable();
    fields.peek()?;
    let mut chain = Vec::new();
    for field in fields {
        let Ok(text) = field.to_str() else {
            chain.push(None);
            continue;
        };
        for element in split_unquoted(text, ',') {
            let mut addr = None;
            for pair in split_unquoted(element, ';') {
                if let Some((name, value)) = pair.split_once('=') {
                    if name.trim().eq_ignore_ascii_case("for") {
                        addr = node(value);
                    }
                }
            }
            chain.push(addr);
        }
    }
    Some(chain)
}

/// The entries of every `X-Forwarded-For` field, in order.
fn x_forwarded_for_chain(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    let mut chain = Vec::new();
    for field in headers.get_all(X_FORWARDED_FOR) {
        match field.to_str() {
            Ok(text) => chain.extend(text.split(',').map(node)),
            Err(_) => chain.push(None),
        }
    }
    chain
}

/// Resolves the client address of every request that came over a socket and puts it in the
/// request extensions as [`ClientAddr`].
pub(crate) async fn middleware(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    let mut req = req;
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip());
    if let Some(peer) = peer {
        let client = state.config().trusted_proxies.resolve(peer, req.headers());
        req.extensions_mut().insert(ClientAddr(client));
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_bytes(value.as_bytes()).unwrap(),
            );
        }
        h
    }

    #[test]
    fn cidr_blocks_parse_and_contain() {
        let block: Cidr = "10.0.0.0/8".parse().unwrap();
        assert!(block.contains(ip("10.255.1.2")));
        assert!(!block.contains(ip("11.0.0.1")));
        assert!(block.contains(ip("::ffff:10.1.2.3")), "IPv4-mapped");
        assert!(
            !block.contains(ip("::a00:1")),
            "an IPv6 address is not IPv4"
        );
        let v6: Cidr = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains(ip("2001:db8:ffff::1")));
        assert!(!v6.contains(ip("2001:db9::1")));
        let one: Cidr = "192.0.2.7".parse().unwrap();
        assert!(one.contains(ip("192.0.2.7")) && !one.contains(ip("192.0.2.8")));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("203.0.113.9")));
        let all6: Cidr = "::/0".parse().unwrap();
        assert!(all6.contains(ip("2001:db8::1")) && !all6.contains(ip("192.0.2.1")));
        assert_eq!("::1/128".parse::<Cidr>().unwrap().to_string(), "::1/128");
        for bad in [
            "10.0.0.0/33",
            "10.0.0.1/8",
            "10.0.0.0/",
            "10.0.0.0/+8",
            "nonsense",
            "2001:db8::/129",
            "",
        ] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
        let list: TrustedProxies = " 10.0.0.0/8, ,::1 ".parse().unwrap();
        assert_eq!(list.to_string(), "10.0.0.0/8,::1/128");
        let e = "10.0.0.0/8,10.0.0.0/40"
            .parse::<TrustedProxies>()
            .unwrap_err();
        assert!(e.to_string().contains("10.0.0.0/40"), "{e}");
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_sends() {
        let trusted: TrustedProxies = "10.0.0.0/8".parse().unwrap();
        let spoof = headers(&[("x-forwarded-for", "1.2.3.4"), ("forwarded", "for=5.6.7.8")]);
        assert_eq!(
            trusted.resolve(ip("203.0.113.5"), &spoof),
            ip("203.0.113.5")
        );
        assert_eq!(
            TrustedProxies::none().resolve(ip("10.0.0.1"), &spoof),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn the_rightmost_untrusted_address_is_the_client() {
        let trusted: TrustedProxies = "10.0.0.0/8, 2001:db8::/32".parse().unwrap();
        let lb = ip("10.0.0.2");
        // A client-supplied (spoofed) first entry, then the real client, then an inner proxy.
        let h = headers(&[("x-forwarded-for", "1.2.3.4, 198.51.100.9, 10.1.1.1")]);
        assert_eq!(trusted.resolve(lb, &h), ip("198.51.100.9"));
        // Several fields are one list, in order.
        let h = headers(&[
            ("x-forwarded-for", "1.2.3.4"),
            ("x-forwarded-for", "198.51.100.9:5555"),
        ]);
        assert_eq!(trusted.resolve(lb, &h), ip("198.51.100.9"));
        // Forwarded wins over X-Forwarded-For, quoted IPv6 with a port included.
        let h = headers(&[
            ("x-forwarded-for", "1.2.3.4"),
            (
                "forwarded",
                r#"for=192.0.2.60;proto=http;by=10.0.0.2, For="[2001:db8:cafe::17]:4711""#,
            ),
        ]);
        assert_eq!(trusted.resolve(lb, &h), ip("192.0.2.60"));
        let h = headers(&[("forwarded", r#"for="[2001:db9::17]:4711""#)]);
        assert_eq!(trusted.resolve(lb, &h), ip("2001:db9::17"));
        // Only trusted proxies in the chain: the left-most of them.
        let h = headers(&[("x-forwarded-for", "10.9.9.9, 10.1.1.1")]);
        assert_eq!(trusted.resolve(lb, &h), ip("10.9.9.9"));
        // No header: the proxy itself.
        assert_eq!(trusted.resolve(lb, &HeaderMap::new()), lb);
        // An IPv4-mapped peer is matched and shown as IPv4.
        let h = headers(&[("x-forwarded-for", "::ffff:198.51.100.9")]);
        assert_eq!(
            trusted.resolve(ip("::ffff:10.0.0.2"), &h),
            ip("198.51.100.9")
        );
    }

    #[test]
    fn malformed_headers_from_a_trusted_peer_fall_back_to_the_nearest_trusted_hop() {
        let trusted: TrustedProxies = "10.0.0.0/8".parse().unwrap();
        let lb = ip("10.0.0.2");
        for (name, value, expected) in [
            ("x-forwarded-for", "garbage", "10.0.0.2"),
            ("x-forwarded-for", "", "10.0.0.2"),
            ("x-forwarded-for", "1.2.3.4, , 10.1.1.1", "10.1.1.1"),
            ("x-forwarded-for", "1.2.3.4, 999.1.1.1", "10.0.0.2"),
            ("x-forwarded-for", "198.51.100.9:99999999", "10.0.0.2"),
            ("forwarded", "for=unknown", "10.0.0.2"),
            ("forwarded", "for=_hidden, for=10.1.1.1", "10.1.1.1"),
            ("forwarded", "proto=https", "10.0.0.2"),
            ("forwarded", r#"for="[2001:db8::1""#, "10.0.0.2"),
            ("forwarded", ";;;,,=", "10.0.0.2"),
        ] {
            let h = headers(&[(name, value)]);
            assert_eq!(trusted.resolve(lb, &h), ip(expected), "{name}: {value}");
        }
        // Not UTF-8.
        let mut h = HeaderMap::new();
        h.insert(
            X_FORWARDED_FOR,
            HeaderValue::from_bytes(b"\xff\xfe").unwrap(),
        );
        assert_eq!(trusted.resolve(lb, &h), lb);
    }

    #[test]
    fn a_long_chain_of_trusted_hops_is_cut() {
        let trusted: TrustedProxies = "10.0.0.0/8".parse().unwrap();
        let chain = std::iter::once("198.51.100.9".to_owned())
            .chain((0..100).map(|i| format!("10.0.{}.{}", i / 250, i % 250 + 1)))
            .collect::<Vec<_>>()
            .join(",");
        let h = headers(&[("x-forwarded-for", &chain)]);
        let got = trusted.resolve(ip("10.0.0.2"), &h);
        assert!(trusted.contains(got), "stops at a trusted hop: {got}");
    }
}
