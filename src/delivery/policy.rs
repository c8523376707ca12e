//! Endpoint policy: herald does not deliver to loopback, private, link-local or cloud metadata
//! addresses unless they are allow-listed. Checked at Subscribe and again at send time, after
//! DNS resolution, so a name that later resolves somewhere forbidden is still refused.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::time::Duration;

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

/// Whether an address is one herald refuses by default: loopback, private, shared (CGNAT),
/// link-local (which holds cloud metadata services), unspecified, broadcast, multicast,
/// documentation, IPv6 unique-local.
pub fn is_internal(ip: IpAddr) -> bool {
    match canonical(ip) {
        IpAddr::V4(v4) => is_internal_v4(v4),
        IpAddr::V6(v6) => is_internal_v6(v6),
    }
}

fn is_internal_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b))
        || (a == 192 && b == 0 && ip.octets()[2] == 0)
        || a >= 240
}

fn is_internal_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (first & 0xfe00) == 0xfc00
        || (first & 0xffc0) == 0xfe80
        || first == 0x2001 && ip.segments()[1] == 0x0db8
}

/// Why an endpoint is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// The URL cannot be used at all.
    #[error("the address is not a usable http(s) URL")]
    BadUrl,
    /// The host name does not resolve to any address.
    #[error("the name {host} does not resolve: {reason}")]
    Unresolvable {
        /// The host as written.
        host: String,
        /// What the resolver said.
        reason: String,
    },
    /// It is, or resolves to, an address the policy forbids.
    #[error(
        "{host} resolves to {ip}, a loopback, private, link-local or metadata address that is not allow-listed"
    )]
    Forbidden {
        /// The host as written.
        host: String,
        /// The forbidden address.
        ip: IpAddr,
    },
}

/// The endpoint policy with its allow-list.
#[derive(Debug, Clone, Default)]
pub struct EndpointPolicy {
    allowed: Vec<Network>,
}

impl EndpointPolicy {
    /// A policy allowing these networks despite their being internal.
    pub fn new(allowed: Vec<Network>) -> EndpointPolicy {
        EndpointPolicy { allowed }
    }

    /// Whether herald may connect to `ip`.
    pub fn permits(&self, ip: IpAddr) -> bool {
        !is_internal(ip) || self.allowed.iter().any(|net| net.contains(ip))
    }

    /// Checks a URL at Subscribe time: an IP literal is judged directly; a name is resolved
    /// (briefly), and refused if any address it resolves to is forbidden. A name that does not
    /// resolve now is accepted, since the send-time check will judge it then.
    pub async fn check_url(&self, url: &str) -> Result<(), PolicyError> {
        let (host, port) = host_and_port(url).ok_or(PolicyError::BadUrl)?;
        if let Ok(ip) = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
        {
            return self.check_ip(&host, ip);
        }
        let lookup = tokio::net::lookup_host((host.as_str(), port));
        if let Ok(Ok(addresses)) = tokio::time::timeout(Duration::from_secs(2), lookup).await {
            for address in addresses {
                self.check_ip(&host, address.ip())?;
            }
        }
        Ok(())
    }

    /// Judges one address.
    pub fn check_ip(&self, host: &str, ip: IpAddr) -> Result<(), PolicyError> {
        if self.permits(ip) {
            Ok(())
        } else {
            Err(PolicyError::Forbidden {
                host: host.to_owned(),
                ip,
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
            .iter()
            .copied()
            .filter(|address| self.permits(address.ip()))
            .collect();
        match (permitted.is_empty(), addresses.first()) {
            (true, Some(first)) => Err(PolicyError::Forbidden {
                host: host.to_owned(),
                ip: first.ip(),
            }),
            _ => Ok(permitted),
        }
    }
}

/// The host (brackets kept for IPv6) and port of an http(s) URL.
pub fn host_and_port(url: &str) -> Option<(String, u16)> {
    let (rest, default_port) = if let Some(rest) = url.strip_prefix("http://") {
        (rest, 80)
    } else {
        (url.strip_prefix("https://")?, 443)
    };
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    if let Some(v6_end) = authority.find(']') {
        let host = &authority[..=v6_end];
        let port = match authority[v6_end + 1..].strip_prefix(':') {
            Some(port) => port.parse().ok()?,
            None => default_port,
        };
        return Some((host.to_owned(), port));
    }
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) => (host, port.parse().ok()?),
        None => (authority, default_port),
    };
    (!host.is_empty()).then(|| (host.to_owned(), port))
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
            "::1",
            "fe80::1",
            "fd00:ec2::254",
            "::ffff:127.0.0.1",
            "224.0.0.1",
        ] {
            assert!(is_internal(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["93.184.216.34", "1.1.1.1", "2606:4700::1111"] {
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

    #[test]
    fn hosts_and_ports() {
        assert_eq!(
            host_and_port("http://127.0.0.1:9/x"),
            Some(("127.0.0.1".into(), 9))
        );
        assert_eq!(
            host_and_port("https://example.com"),
            Some(("example.com".into(), 443))
        );
        assert_eq!(
            host_and_port("http://[::1]:80/"),
            Some(("[::1]".into(), 80))
        );
        assert_eq!(
            host_and_port("http://user@host/"),
            Some(("host".into(), 80))
        );
        assert_eq!(host_and_port("ftp://x"), None);
    }

    #[tokio::test]
    async fn literal_addresses_are_judged_at_subscribe() {
        let policy = EndpointPolicy::default();
        assert!(matches!(
            policy
                .check_url("http://169.254.169.254/latest/meta-data")
                .await,
            Err(PolicyError::Forbidden { .. })
        ));
        assert!(policy.check_url("http://[::1]:8080/").await.is_err());
        assert!(policy.check_url("http://93.184.216.34/").await.is_ok());
    }
}
