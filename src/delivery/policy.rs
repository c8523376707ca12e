//! Endpoint policy: herald does not deliver to loopback, private, link-local, cloud metadata or
//! otherwise internal addresses unless they are allow-listed. An endpoint is parsed once, by
//! the WHATWG rules the HTTP client follows; its host is judged at Subscribe (a name must
//! resolve, to permitted addresses only) and again at send time: an address literal before
//! connecting, a name by the client's resolver, which hands it only permitted addresses.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::time::Duration;

use url::{Host, Url};

/// An IP network in CIDR notation (`10.0.0.0/8`, `::1/128`, or a bare address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    address: IpAddr,
    prefix: u8,
}

impl FromStr for Network {
    type Err = String;

    fn from_str(text: &str) -> Result<Network, String> {
        let (address, prefix) = match text.trim().split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text.trim(), None),
        };
        let address: IpAddr = address
            .parse()
            .map_err(|_| format!("'{text}' is not an IP address or CIDR network"))?;
        let max = if address.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(prefix) => prefix
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("'{text}' has an invalid prefix length"))?,
        };
        Ok(Network { address, prefix })
    }
}

impl Network {
    /// Whether `ip` lies in this network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.address, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// IPv4-mapped IPv6 addresses are judged as the IPv4 address they carry.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The IPv4 addresses an IPv6 address carries, by the embeddings that lead to them: IPv4-mapped
/// (`::ffff:0:0/96`), IPv4-compatible (`::/96`), IPv4-translated (`::ffff:0:0:0/96`), NAT64
/// (`64:ff9b::/96`), 6to4 (`2002::/16`) and Teredo (`2001::/32`, server and client).
fn embedded_v4(ip: Ipv6Addr) -> Vec<Ipv4Addr> {
    let s = ip.segments();
    let v4 = |high: u16, low: u16| Ipv4Addr::from((u32::from(high) << 16) | u32::from(low));
    let mut found = Vec::new();
    if s[..5] == [0; 5] && (s[5] == 0 || s[5] == 0xffff) {
        found.push(v4(s[6], s[7])); // compatible, mapped
    }
    if s[..4] == [0; 4] && s[4] == 0xffff && s[5] == 0 {
        found.push(v4(s[6], s[7])); // translated
    }
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        found.push(v4(s[6], s[7])); // NAT64, well-known prefix
    }
    if s[0] == 0x2002 {
        found.push(v4(s[1], s[2])); // 6to4
    }
    if s[0] == 0x2001 && s[1] == 0 {
        found.push(v4(s[2], s[3])); // Teredo server
        found.push(v4(!s[6], !s[7])); // Teredo client, obfuscated
    }
    found
}

/// Whether an address is one herald refuses by default: loopback, private, shared (CGNAT),
/// link-local (which holds cloud metadata services), unspecified, broadcast, multicast,
/// documentation and reserved; in IPv6 also unique-local, site-local, discard-only, NAT64
/// local-use, and any embedding (mapped, compatible, translated, NAT64, 6to4, Teredo) of an
/// IPv4 address that is one of those.
pub fn is_internal(ip: IpAddr) -> bool {
    match canonical(ip) {
        IpAddr::V4(v4) => is_internal_v4(v4),
        IpAddr::V6(v6) => is_internal_v6(v6) || embedded_v4(v6).into_iter().any(is_internal_v4),
    }
}

fn is_internal_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b))
        || (a == 192 && b == 0 && c == 0)
        || (a == 198 && (18..20).contains(&b))
        || a >= 240
}

fn is_internal_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (s[0] & 0xfe00) == 0xfc00 // unique-local
        || (s[0] & 0xffc0) == 0xfe80 // link-local
        || (s[0] & 0xffc0) == 0xfec0 // site-local (deprecated)
        || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
        || s[..4] == [0x100, 0, 0, 0] // discard-only
        || (s[0] == 0x64 && s[1] == 0xff9b && s[2] == 1) // NAT64 local-use
}

/// Why an endpoint is refused, or could not be reached. The messages never name the
/// addresses a name resolved to: a subscriber learns no more of herald's network than it
/// could from outside.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// The URL cannot be used at all.
    #[error("the address is not a usable http(s) URL")]
    BadUrl,
    /// The host name does not resolve to any address.
    #[error("the name {host} does not resolve: {reason}")]
    Unresolvable {
        /// The host as parsed.
        host: String,
        /// What the resolver said.
        reason: String,
    },
    /// It is, or resolves to, an address the policy forbids.
    #[error(
        "{host} is, or resolves to, a loopback, private, link-local or otherwise internal address that is not allow-listed"
    )]
    Forbidden {
        /// The host as parsed.
        host: String,
    },
}

/// Parses an endpoint address as the HTTP client will (WHATWG URL rules, the `url` crate):
/// an absolute `http` or `https` URL with a host. What the policy judges is this parsed host,
/// and the client is handed this same parsed URL, so what is checked is what is dialled. An
/// origin parsed before on this thread is not parsed again ([`super::origins`]).
pub fn parse_endpoint(address: &str) -> Result<Url, PolicyError> {
    let url = super::origins::parse(address.trim()).map_err(|_| PolicyError::BadUrl)?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(PolicyError::BadUrl);
    }
    Ok(url)
}

/// How long a name may take to resolve at Subscribe.
const SUBSCRIBE_LOOKUP: Duration = Duration::from_secs(2);

/// A host name accepted at Subscribe although it does not resolve (yet): `sink.example.com`,
/// or `*.example.com` for every name under it. Whatever it resolves to is still judged at
/// send time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPattern {
    name: String,
    subdomains: bool,
}

impl FromStr for HostPattern {
    type Err = String;

    fn from_str(text: &str) -> Result<HostPattern, String> {
        let text = text.trim().to_ascii_lowercase();
        let (subdomains, name) = match text.strip_prefix("*.") {
            Some(name) => (true, name.to_owned()),
            None => (false, text.clone()),
        };
        let label_ok = |label: &str| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        };
        if name.len() > 253 || !name.split('.').all(label_ok) {
            return Err(format!("'{text}' is not a host name or *.domain pattern"));
        }
        Ok(HostPattern { name, subdomains })
    }
}

impl HostPattern {
    /// Whether `host` (as the URL parser normalised it: lower case, punycode) matches.
    pub fn matches(&self, host: &str) -> bool {
        let host = host.strip_suffix('.').unwrap_or(host);
        if self.subdomains {
            host.strip_suffix(self.name.as_str())
                .is_some_and(|rest| rest.ends_with('.') && rest.len() > 1)
        } else {
            host == self.name
        }
    }
}

/// The endpoint policy with its allow-lists.
#[derive(Debug, Clone, Default)]
pub struct EndpointPolicy {
    allowed: Vec<Network>,
    hosts: Vec<HostPattern>,
}

impl EndpointPolicy {
    /// A policy allowing these networks despite their being internal.
    pub fn new(allowed: Vec<Network>) -> EndpointPolicy {
        EndpointPolicy {
            allowed,
            hosts: Vec::new(),
        }
    }

    /// Also accepts these names at Subscribe when they do not resolve.
    pub fn with_hosts(mut self, hosts: Vec<HostPattern>) -> EndpointPolicy {
        self.hosts = hosts;
        self
    }

    /// Whether herald may connect to `ip`.
    pub fn permits(&self, ip: IpAddr) -> bool {
        !is_internal(ip) || self.allowed.iter().any(|net| net.contains(ip))
    }

    /// Checks an endpoint at Subscribe: an address literal is judged directly; a name must
    /// resolve (within 2 s), unless it is an allow-listed host, and every address it resolves
    /// to must be permitted.
    pub async fn check_url(&self, address: &str) -> Result<(), PolicyError> {
        self.check_parsed(&parse_endpoint(address)?).await
    }

    /// [`EndpointPolicy::check_url`] of an address already read by [`parse_endpoint`].
    pub async fn check_parsed(&self, url: &Url) -> Result<(), PolicyError> {
        let port = url.port_or_known_default().unwrap_or(80);
        match url.host() {
            Some(Host::Ipv4(ip)) => self.check_ip(url, IpAddr::V4(ip)),
            Some(Host::Ipv6(ip)) => self.check_ip(url, IpAddr::V6(ip)),
            Some(Host::Domain(name)) => {
                let listed = self.hosts.iter().any(|pattern| pattern.matches(name));
                let unresolvable = |reason: String| {
                    if listed {
                        Ok(())
                    } else {
                        Err(PolicyError::Unresolvable {
                            host: name.to_owned(),
                            reason,
                        })
                    }
                };
                let lookup = tokio::net::lookup_host((name, port));
                let addresses: Vec<SocketAddr> =
                    match tokio::time::timeout(SUBSCRIBE_LOOKUP, lookup).await {
                        Ok(Ok(addresses)) => addresses.collect(),
                        Ok(Err(err)) => return unresolvable(err.to_string()),
                        Err(_) => return unresolvable("no answer within 2 s".into()),
                    };
                if addresses.is_empty() {
                    return unresolvable("no addresses".into());
                }
                for address in addresses {
                    self.check_ip(url, address.ip())?;
                }
                Ok(())
            }
            None => Err(PolicyError::BadUrl),
        }
    }

    /// Judges the address literal of a parsed endpoint; names are judged when they resolve.
    pub fn check_literal(&self, url: &Url) -> Result<(), PolicyError> {
        match url.host() {
            Some(Host::Ipv4(ip)) => self.check_ip(url, IpAddr::V4(ip)),
            Some(Host::Ipv6(ip)) => self.check_ip(url, IpAddr::V6(ip)),
            Some(Host::Domain(_)) => Ok(()),
            None => Err(PolicyError::BadUrl),
        }
    }

    fn check_ip(&self, url: &Url, ip: IpAddr) -> Result<(), PolicyError> {
        if self.permits(ip) {
            Ok(())
        } else {
            Err(PolicyError::Forbidden {
                host: url.host_str().unwrap_or_default().to_owned(),
            })
        }
    }

    /// Resolves a host name for the HTTP client, keeping only permitted addresses.
    pub async fn resolve(&self, host: &str) -> Result<Vec<SocketAddr>, PolicyError> {
        let unresolvable = |reason: String| PolicyError::Unresolvable {
            host: host.to_owned(),
            reason,
        };
        let addresses: Vec<SocketAddr> = tokio::net::lookup_host((host, 0))
            .await
            .map_err(|err| unresolvable(err.to_string()))?
            .collect();
        if addresses.is_empty() {
            return Err(unresolvable("no addresses".into()));
        }
        let permitted: Vec<SocketAddr> = addresses
            .into_iter()
            .filter(|address| self.permits(address.ip()))
            .collect();
        if permitted.is_empty() {
            tracing::debug!(
                host,
                "every address of the name is refused by the endpoint policy"
            );
            return Err(PolicyError::Forbidden {
                host: host.to_owned(),
            });
        }
        Ok(permitted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "198.18.0.1",
            "::1",
            "::",
            "fe80::1",
            "fd00:ec2::254",
            "fec0::1",
            "::ffff:127.0.0.1",
            "::a9fe:a9fe",
            "::ffff:0:7f00:1",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b:1::1",
            "2002:7f00:1::",
            "2002:a9fe:a9fe::1",
            "2001:0:4136:e378:8000:63bf:80ff:fffe",
            "2001:db8::1",
            "100::1",
            "224.0.0.1",
            "ff02::1",
        ] {
            assert!(is_internal(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "93.184.216.34",
            "1.1.1.1",
            "2606:4700::1111",
            "64:ff9b::5db8:d822",
            "2002:5db8:d822::1",
        ] {
            assert!(!is_internal(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn allow_list() {
        let policy =
            EndpointPolicy::new(vec!["127.0.0.0/8".parse().unwrap(), "::1".parse().unwrap()]);
        assert!(policy.permits("127.0.0.1".parse().unwrap()));
        assert!(policy.permits("::ffff:127.0.0.2".parse().unwrap()));
        assert!(policy.permits("::1".parse().unwrap()));
        assert!(!policy.permits("10.0.0.1".parse().unwrap()));
        assert!("10.0.0.0/33".parse::<Network>().is_err());
        assert!("nope".parse::<Network>().is_err());
    }

    /// Hosts are read as the HTTP client reads them: every spelling of a loopback address is
    /// that address.
    #[test]
    fn endpoints_are_parsed_as_the_client_parses_them() {
        for address in [
            "http://127.0.0.1.:9/",
            "http://127.0.0.1:9\\@evil.example/",
            "http://%31%32%37.0.0.1:9/",
            "http://127.0.0.1%2e:9/",
            "http://\u{ff11}\u{ff12}\u{ff17}.\u{ff10}.\u{ff10}.\u{ff11}:9/",
            "http://127\u{3002}0\u{3002}0\u{3002}1:9/",
            "http://2130706433:9/",
            "http://0x7f.1:9/",
            "HTTP://127.0.0.1:9/",
        ] {
            let url = parse_endpoint(address).unwrap_or_else(|e| panic!("{address}: {e}"));
            assert_eq!(
                url.host(),
                Some(Host::Ipv4(Ipv4Addr::LOCALHOST)),
                "{address}"
            );
            assert_eq!(url.port(), Some(9), "{address}");
        }
        for bad in [
            "ftp://x/",
            "http://",
            "mailto:a@b",
            "not a url",
            "file:///etc/passwd",
        ] {
            assert_eq!(parse_endpoint(bad), Err(PolicyError::BadUrl), "{bad}");
        }
    }

    #[tokio::test]
    async fn every_spelling_of_an_internal_address_is_refused_at_subscribe() {
        let policy = EndpointPolicy::default();
        for address in [
            "http://169.254.169.254/latest/meta-data",
            "http://[::1]:8080/",
            "http://127.0.0.1.:9/",
            "http://127.0.0.1:9\\@evil.example/",
            "http://%31%32%37.0.0.1:9/",
            "http://127.0.0.1%2e:9/",
            "http://\u{ff11}\u{ff12}\u{ff17}.\u{ff10}.\u{ff10}.\u{ff11}:9/",
            "http://127\u{3002}0\u{3002}0\u{3002}1:9/",
            "http://[64:ff9b::a9fe:a9fe]/",
            "http://[2002:7f00:1::]/",
            "http://[::a9fe:a9fe]/",
            "http://[::ffff:0:7f00:1]/",
            "http://[fec0::1]/",
            "http://localhost:9/",
        ] {
            assert!(
                matches!(
                    policy.check_url(address).await,
                    Err(PolicyError::Forbidden { .. })
                ),
                "{address}"
            );
        }
        assert!(policy.check_url("http://93.184.216.34/").await.is_ok());
        assert!(matches!(
            policy.check_url("http://herald-test.invalid/").await,
            Err(PolicyError::Unresolvable { .. })
        ));
        // An allow-listed name is accepted unresolved; a listed name that resolves to a
        // forbidden address is not.
        let listed = EndpointPolicy::default().with_hosts(vec![
            "herald-test.invalid".parse().unwrap(),
            "*.localhost".parse().unwrap(),
            "localhost".parse().unwrap(),
        ]);
        assert!(
            listed
                .check_url("http://herald-test.invalid/")
                .await
                .is_ok()
        );
        assert!(listed.check_url("http://other.invalid/").await.is_err());
        assert!(matches!(
            listed.check_url("http://localhost:9/").await,
            Err(PolicyError::Forbidden { .. })
        ));
    }

    #[test]
    fn host_patterns() {
        let exact: HostPattern = "Sink.Example.com".parse().unwrap();
        assert!(exact.matches("sink.example.com"));
        assert!(exact.matches("sink.example.com."));
        assert!(!exact.matches("a.sink.example.com"));
        let wildcard: HostPattern = "*.example.com".parse().unwrap();
        assert!(wildcard.matches("www.example.com"));
        assert!(wildcard.matches("a.b.example.com"));
        assert!(!wildcard.matches("example.com"));
        assert!(!wildcard.matches("badexample.com"));
        for bad in ["", "*", "a..b", "exa mple.com", "*.*.com", "10.0.0.0/8"] {
            assert!(bad.parse::<HostPattern>().is_err(), "{bad}");
        }
    }
}
