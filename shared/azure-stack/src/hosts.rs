//! Which hosts the service may call for stamps (`AZS_USAGE_ALLOWED_STAMP_HOSTS`): an operator's
//! answer to "a webhook caller names the URL, the service calls it" (server-side request forgery).
//!
//! Entries, comma separated: a host name (`adminmanagement.east.contoso.com`), a wildcard suffix
//! (`*.contoso.com`: any name below it, not `contoso.com` itself), or an address block in CIDR form
//! (`10.20.0.0/16`, `fd00::/8`; a bare address is a /32 or /128). A URL whose host is an address is
//! allowed when a block holds it. A host name not listed by name is allowed when every address it
//! resolves to lies in a block: the check runs again on the resolved addresses at connect time (see
//! [`AllowedResolver`]), so a name cannot be pointed elsewhere after registration.
//!
//! `*` admits any host. Unset is the same as `*`. Whatever the list, an address that is never a
//! stamp's (loopback, link-local, the clouds' metadata and host services, unspecified, multicast,
//! broadcast; [`is_special`]) is called only when an address block in the list holds it (a name,
//! a wildcard or `*` never does: DNS for a name may be answered by the stamp itself). A webhook
//! caller who registers `https://169.254.169.254` or a name that resolves to 127.0.0.1 reaches
//! nothing.

use reqwest::Url;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// The parsed allow-list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StampHosts {
    /// `*`: any host (special addresses still need an explicit entry).
    any: bool,
    names: Vec<String>,
    suffixes: Vec<String>,
    blocks: Vec<(IpAddr, u8)>,
}

impl Default for StampHosts {
    /// No list configured: any host, special addresses refused.
    fn default() -> Self {
        Self { any: true, names: Vec::new(), suffixes: Vec::new(), blocks: Vec::new() }
    }
}

/// Why a host may not be called.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostNotAllowed {
    #[error("{host} is not in AZS_USAGE_ALLOWED_STAMP_HOSTS")]
    NotListed { host: String },
    #[error(
        "{host} is a loopback, link-local, metadata or other special address, called only when an \
         address block in AZS_USAGE_ALLOWED_STAMP_HOSTS holds it"
    )]
    Special { host: String },
}

/// Addresses that are never a stamp's: loopback, link-local (169.254.0.0/16 holds the AWS, Azure and
/// GCP metadata services), Azure's host endpoint 168.63.129.16, Alibaba's metadata service
/// 100.100.100.200, `0.0.0.0/8`, multicast, broadcast, AWS's IPv6 metadata block `fd00:ec2::/32`, and
/// the IPv4 addresses inside IPv4-mapped, IPv4-compatible and NAT64 (`64:ff9b::/96`) IPv6 addresses.
pub fn is_special(ip: IpAddr) -> bool {
    match canonical(ip) {
        IpAddr::V4(v4) => {
            v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_multicast()
                || v4.is_broadcast()
                || v4.octets()[0] == 0
                || v4 == std::net::Ipv4Addr::new(168, 63, 129, 16)
                || v4 == std::net::Ipv4Addr::new(100, 100, 100, 200)
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xffc0) == 0xfe80
                || (s[0] == 0xfd00 && s[1] == 0x0ec2)
        }
    }
}

/// The IPv4 address an IPv6 address carries (mapped `::ffff:a.b.c.d`, compatible `::a.b.c.d`, NAT64
/// `64:ff9b::a.b.c.d`), so that each is judged as the address it reaches.
fn canonical(ip: IpAddr) -> IpAddr {
    let IpAddr::V6(v6) = ip else { return ip };
    if let Some(v4) = v6.to_ipv4_mapped() {
        return IpAddr::V4(v4);
    }
    let s = v6.segments();
    let embedded = || std::net::Ipv4Addr::from(((u32::from(s[6])) << 16) | u32::from(s[7]));
    if s[..6] == [0, 0, 0, 0, 0, 0] && !v6.is_loopback() && !v6.is_unspecified() {
        return IpAddr::V4(embedded());
    }
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return IpAddr::V4(embedded());
    }
    ip
}

impl StampHosts {
    /// Parses `stamp.example.com, *.contoso.com, 10.0.0.0/8`. The error names the entry and the rule.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut hosts =
            StampHosts { any: false, names: Vec::new(), suffixes: Vec::new(), blocks: Vec::new() };
        for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let lower = entry.to_ascii_lowercase();
            if lower == "*" {
                hosts.any = true;
            } else if let Some(suffix) = lower.strip_prefix("*.") {
                if !is_host_name(suffix) {
                    return Err(format!("{entry:?}: a wildcard must be *. followed by a host name"));
                }
                hosts.suffixes.push(format!(".{suffix}"));
            } else if let Some((address, bits)) = lower.split_once('/') {
                let address: IpAddr =
                    address.parse().map_err(|_| format!("{entry:?}: not an address block (CIDR)"))?;
                let max = if address.is_ipv4() { 32 } else { 128 };
                let bits = bits.parse::<u8>().ok().filter(|b| *b <= max).ok_or_else(|| {
                    format!("{entry:?}: the prefix length must be a number from 0 to {max}")
                })?;
                hosts.blocks.push((address, bits));
            } else if let Ok(address) = lower.trim_matches(['[', ']']).parse::<IpAddr>() {
                hosts.blocks.push((address, if address.is_ipv4() { 32 } else { 128 }));
            } else if is_host_name(&lower) {
                hosts.names.push(lower.trim_end_matches('.').to_owned());
            } else {
                return Err(format!(
                    "{entry:?}: must be a host name, *.suffix, an address or an address block (CIDR)"
                ));
            }
        }
        if !hosts.any && hosts.names.is_empty() && hosts.suffixes.is_empty() && hosts.blocks.is_empty() {
            return Err("lists no host".into());
        }
        Ok(hosts)
    }

    /// Whether `url`'s host may be called. A name that is only allowed through its addresses passes
    /// here when there are address blocks; [`AllowedResolver`] checks the addresses when connecting.
    pub fn check_url(&self, url: &Url) -> Result<(), HostNotAllowed> {
        let host = url.host_str().unwrap_or_default().to_owned();
        let ip = match url.host() {
            Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip),
            Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip),
            Some(url::Host::Domain(name)) => {
                // A name's addresses are checked again when it resolves (AllowedResolver).
                return if self.any || self.names_host(name) || !self.blocks.is_empty() {
                    Ok(())
                } else {
                    Err(HostNotAllowed::NotListed { host })
                };
            }
            None => return Err(HostNotAllowed::NotListed { host }),
        };
        self.admits_address(ip, false).map_err(|special| {
            if special { HostNotAllowed::Special { host } } else { HostNotAllowed::NotListed { host } }
        })
    }

    /// Whether an address may be connected to; `listed_name` when the host name it came from is listed
    /// (by name or wildcard). `Err(true)` for a special address no block holds, `Err(false)` for one
    /// not listed.
    fn admits_address(&self, ip: IpAddr, listed_name: bool) -> Result<(), bool> {
        if is_special(ip) {
            // Only an address block names a special address: a listed name is answered by DNS, which
            // a stamp may answer for its own zone.
            return if self.holds(ip) { Ok(()) } else { Err(true) };
        }
        if self.any || listed_name || self.holds(ip) { Ok(()) } else { Err(false) }
    }

    /// The same check for a URL given as text (registration); unparsable text is refused.
    pub fn check(&self, url: &str) -> Result<(), HostNotAllowed> {
        let parsed = Url::parse(url).map_err(|_| HostNotAllowed::NotListed { host: url.to_owned() })?;
        self.check_url(&parsed)
    }

    /// Whether `name` is listed by name or wildcard.
    fn names_host(&self, name: &str) -> bool {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        self.names.contains(&name) || self.suffixes.iter().any(|s| name.ends_with(s.as_str()))
    }

    fn holds(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.blocks.iter().any(|(block, bits)| in_block(ip, *block, *bits))
    }
}

fn in_block(ip: IpAddr, block: IpAddr, bits: u8) -> bool {
    match (ip, block) {
        (IpAddr::V4(ip), IpAddr::V4(block)) => {
            let mask = if bits == 0 { 0 } else { u32::MAX << (32 - u32::from(bits)) };
            u32::from(ip) & mask == u32::from(block) & mask
        }
        (IpAddr::V6(ip), IpAddr::V6(block)) => {
            let mask = if bits == 0 { 0 } else { u128::MAX << (128 - u32::from(bits)) };
            u128::from(ip) & mask == u128::from(block) & mask
        }
        _ => false,
    }
}

fn is_host_name(text: &str) -> bool {
    let text = text.trim_end_matches('.');
    !text.is_empty()
        && text.len() <= 253
        && text.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// Name resolution for the stamp client: the addresses a name resolves to that may be connected to,
/// failing when none may. A name listed by name or wildcard (or any name under `*`) keeps its ordinary
/// addresses; any other name only those in a listed block; a special address only when a block
/// holds it. Connections go to these addresses only, so DNS (which a stamp may answer
/// for its own zone) cannot point an admitted name at the metadata service later.
pub(crate) struct AllowedResolver {
    pub hosts: Arc<StampHosts>,
}

impl reqwest::dns::Resolve for AllowedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let hosts = self.hosts.clone();
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let resolved: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let listed = hosts.names_host(&host);
            let addresses: Vec<SocketAddr> =
                resolved.into_iter().filter(|a| hosts.admits_address(a.ip(), listed).is_ok()).collect();
            if addresses.is_empty() {
                let refused = HostNotAllowed::NotListed { host };
                return Err(Box::new(refused) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(addresses.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed(list: &str, url: &str) -> bool {
        StampHosts::parse(list).unwrap().check(url).is_ok()
    }

    #[test]
    fn names_wildcards_and_blocks_admit_what_they_say_and_nothing_else() {
        let list = "adminmanagement.east.contoso.com, *.azurestack.contoso.com, 10.20.0.0/16, fd00::/8";
        assert!(allowed(list, "https://adminmanagement.east.contoso.com/"));
        assert!(allowed(list, "https://ADMINMANAGEMENT.EAST.CONTOSO.COM:443/x"));
        assert!(allowed(list, "https://adminmanagement.west.azurestack.contoso.com"));
        assert!(allowed(list, "https://10.20.3.4:30024"));
        assert!(allowed(list, "https://[fd00::1]/"));
        assert!(!allowed(list, "https://10.21.0.1"));
        assert!(!allowed(list, "https://169.254.169.254/latest/meta-data"));
        assert!(!allowed(list, "https://[::ffff:169.254.169.254]/"));
        assert!(!allowed(list, "https://[fe80::1]/"));
        assert!(!allowed(list, "not a url"));
    }

    #[test]
    fn a_wildcard_does_not_admit_its_own_suffix_or_look_alikes() {
        let list = "*.contoso.com";
        assert!(allowed(list, "https://a.contoso.com"));
        assert!(!allowed(list, "https://contoso.com"));
        assert!(!allowed(list, "https://evilcontoso.com"));
        assert!(!allowed(list, "https://a.contoso.com.evil.example"));
    }

    #[test]
    fn without_blocks_an_unlisted_name_is_refused_before_any_lookup() {
        assert!(!allowed("*.contoso.com", "https://evil.example"));
        // With blocks, the name is decided by what it resolves to (at connect time).
        assert!(allowed("10.0.0.0/8", "https://stamp.example"));
    }

    #[test]
    fn bad_entries_are_refused_with_the_entry_and_the_rule() {
        for bad in ["", " , ", "10.0.0.0/33", "*.", "http://x", "exa mple.com", "*.-x.com", "::1/129"] {
            let e = StampHosts::parse(bad).unwrap_err();
            assert!(!e.is_empty(), "{bad}");
        }
        assert!(StampHosts::parse("10.0.0.0/33").unwrap_err().contains("0 to 32"));
    }

    #[test]
    fn special_addresses_are_refused_unless_an_entry_names_them_explicitly() {
        for url in [
            "https://127.0.0.1",
            "https://169.254.169.254/latest/meta-data",
            "https://[::1]",
            "https://[fd00:ec2::254]",
            "https://[fe80::1]",
            "https://0.0.0.0",
            "https://[::ffff:127.0.0.1]",
            "https://[::127.0.0.1]",
            "https://[64:ff9b::a9fe:a9fe]",
            "https://[fd00:ec2::1]",
            "https://168.63.129.16",
            "https://100.100.100.200",
            "https://224.0.0.1",
        ] {
            for list in ["*", "*, 10.0.0.0/8"] {
                let refused = StampHosts::parse(list).unwrap().check(url).unwrap_err();
                assert!(matches!(refused, HostNotAllowed::Special { .. }), "{list} admitted {url}");
            }
            assert!(StampHosts::default().check(url).is_err(), "no list admitted {url}");
        }
        assert!(allowed("127.0.0.1", "https://127.0.0.1:8443"));
        assert!(allowed("127.0.0.0/8", "https://127.0.0.2"));
        assert!(allowed("*, 169.254.169.254", "https://169.254.169.254"));
        // Ordinary addresses and names pass under `*` and with no list.
        assert!(allowed("*", "https://10.1.2.3") && allowed("*", "https://stamp.example"));
        assert!(StampHosts::default().check("https://adminmanagement.local.azurestack.external").is_ok());
    }

    #[tokio::test]
    async fn a_name_that_resolves_to_loopback_resolves_to_nothing_unless_a_block_holds_it() {
        use reqwest::dns::Resolve as _;
        use std::str::FromStr as _;
        let resolve = |list: &str| {
            let resolver = AllowedResolver { hosts: Arc::new(StampHosts::parse(list).unwrap()) };
            resolver.resolve(reqwest::dns::Name::from_str("localhost").unwrap())
        };
        assert!(resolve("*").await.is_err());
        assert!(resolve("*.localdomain, 10.0.0.0/8").await.is_err());
        // Not even by its exact name: the name's DNS may be the stamp's to answer.
        assert!(resolve("localhost").await.is_err());
        let by_block: Vec<SocketAddr> = resolve("*, 127.0.0.0/8").await.unwrap().collect();
        assert!(by_block.iter().all(|a| a.ip().is_ipv4() && a.ip().is_loopback()), "{by_block:?}");
    }

    #[test]
    fn a_bare_address_is_a_single_host_block() {
        assert!(allowed("192.0.2.7", "https://192.0.2.7"));
        assert!(!allowed("192.0.2.7", "https://192.0.2.8"));
        assert!(allowed("::1", "https://[::1]:8443"));
    }
}
