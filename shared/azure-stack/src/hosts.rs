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
//! Unset means no restriction (HTTPS and no redirects still apply to every call).

use reqwest::Url;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// The parsed allow-list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StampHosts {
    names: Vec<String>,
    suffixes: Vec<String>,
    blocks: Vec<(IpAddr, u8)>,
}

/// Why a host may not be called.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{host} is not in AZS_USAGE_ALLOWED_STAMP_HOSTS")]
pub struct HostNotAllowed {
    pub host: String,
}

impl StampHosts {
    /// Parses `stamp.example.com, *.contoso.com, 10.0.0.0/8`. The error names the entry and the rule.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut hosts = StampHosts { names: Vec::new(), suffixes: Vec::new(), blocks: Vec::new() };
        for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let lower = entry.to_ascii_lowercase();
            if let Some(suffix) = lower.strip_prefix("*.") {
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
        if hosts.names.is_empty() && hosts.suffixes.is_empty() && hosts.blocks.is_empty() {
            return Err("lists no host".into());
        }
        Ok(hosts)
    }

    /// Whether `url`'s host may be called. A name that is only allowed through its addresses passes
    /// here when there are address blocks; [`AllowedResolver`] checks the addresses when connecting.
    pub fn check_url(&self, url: &Url) -> Result<(), HostNotAllowed> {
        let refused = || HostNotAllowed { host: url.host_str().unwrap_or_default().to_owned() };
        match url.host() {
            Some(url::Host::Ipv4(ip)) if self.holds(IpAddr::V4(ip)) => Ok(()),
            Some(url::Host::Ipv6(ip)) if self.holds(IpAddr::V6(ip)) => Ok(()),
            Some(url::Host::Domain(name)) if self.names_host(name) || !self.blocks.is_empty() => Ok(()),
            _ => Err(refused()),
        }
    }

    /// The same check for a URL given as text (registration); unparsable text is refused.
    pub fn check(&self, url: &str) -> Result<(), HostNotAllowed> {
        let parsed = Url::parse(url).map_err(|_| HostNotAllowed { host: url.to_owned() })?;
        self.check_url(&parsed)
    }

    /// Whether `name` is listed by name or wildcard.
    fn names_host(&self, name: &str) -> bool {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        self.names.contains(&name) || self.suffixes.iter().any(|s| name.ends_with(s.as_str()))
    }

    fn holds(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
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

/// Name resolution for the stamp client under an allow-list: a name listed by name or wildcard
/// resolves normally; any other name resolves only to the addresses that lie in a listed block, and
/// fails when none does.
pub(crate) struct AllowedResolver {
    pub hosts: Arc<StampHosts>,
}

impl reqwest::dns::Resolve for AllowedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let hosts = self.hosts.clone();
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let resolved: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let addresses: Vec<SocketAddr> = if hosts.names_host(&host) {
                resolved
            } else {
                resolved.into_iter().filter(|a| hosts.holds(a.ip())).collect()
            };
            if addresses.is_empty() {
                return Err(Box::new(HostNotAllowed { host }) as Box<dyn std::error::Error + Send + Sync>);
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
    fn a_bare_address_is_a_single_host_block() {
        assert!(allowed("192.0.2.7", "https://192.0.2.7"));
        assert!(!allowed("192.0.2.7", "https://192.0.2.8"));
        assert!(allowed("::1", "https://[::1]:8443"));
    }
}
