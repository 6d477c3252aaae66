//! Host help: which names and addresses devices could use to reach this machine, and whether a
//! chosen name actually leads here (the tutorial's DNS test script, answered in words).

use std::net::IpAddr;
use std::time::Duration;

use super::host::{Host, is_loopback_or_unspecified};

/// One interface address devices on the LAN might use.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LocalAddress {
    /// Interface name, e.g. `eth0`.
    pub interface: String,
    /// The address.
    pub ip: IpAddr,
}

/// This machine's non-loopback addresses (IPv4 first; IPv6 link-local addresses are left out
/// because a URL cannot carry their zone) and its host names.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct LocalHosts {
    /// Non-loopback interface addresses.
    pub addresses: Vec<LocalAddress>,
    /// The machine's host name, if it has one.
    pub hostname: Option<String>,
}

impl LocalHosts {
    /// Reads the interfaces and host name of this machine.
    pub fn discover() -> LocalHosts {
        let mut addresses: Vec<LocalAddress> = if_addrs::get_if_addrs()
            .unwrap_or_default()
            .into_iter()
            .filter(|i| !i.is_loopback() && !i.is_link_local())
            .map(|i| LocalAddress { ip: i.ip(), interface: i.name })
            .filter(|a| !is_loopback_or_unspecified(&a.ip))
            .collect();
        addresses.sort_by_key(|a| (a.ip.is_ipv6(), a.ip));
        addresses.dedup_by_key(|a| a.ip);
        let hostname = gethostname::gethostname()
            .into_string()
            .ok()
            .map(|h| h.trim().trim_end_matches('.').to_ascii_lowercase())
            .filter(|h| !h.is_empty() && h != "localhost");
        LocalHosts { addresses, hostname }
    }

    /// Suggested hosts, best first: the host name with `.local` (mDNS, works on most LANs without a
    /// DNS server), the plain host name, then each IPv4 and IPv6 address.
    pub fn suggestions(&self) -> Vec<Host> {
        let mut out = Vec::new();
        if let Some(h) = &self.hostname {
            let base = h.strip_suffix(".local").unwrap_or(h);
            for candidate in [format!("{base}.local"), h.clone()] {
                if let Ok(host) = Host::parse(&candidate)
                    && !out.contains(&host)
                {
                    out.push(host);
                }
            }
        }
        out.extend(self.addresses.iter().map(|a| Host::Ip(a.ip)));
        out
    }

    /// True if `ip` belongs to this machine.
    pub fn owns(&self, ip: &IpAddr) -> bool {
        ip.is_loopback() || self.addresses.iter().any(|a| a.ip == *ip)
    }
}

/// What a chosen host means for devices.
#[allow(missing_docs)] // fields: the addresses the name resolved to, or why it did not
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub enum Resolution {
    /// An IP address of this machine: devices reach it directly.
    LocalIp,
    /// Loopback: only this machine reaches it, never a device.
    Loopback,
    /// An IP address this machine does not have.
    ForeignIp,
    /// The name resolves to one or more addresses of this machine.
    ResolvesHere { addresses: Vec<IpAddr> },
    /// The name resolves only to loopback addresses.
    ResolvesToLoopback { addresses: Vec<IpAddr> },
    /// The name resolves, but to other machines.
    ResolvesElsewhere { addresses: Vec<IpAddr> },
    /// The name does not resolve from here.
    DoesNotResolve { why: String },
}

impl Resolution {
    /// True when devices using this host would reach this machine (as far as can be told from here).
    pub fn reaches_here(&self) -> bool {
        matches!(self, Resolution::LocalIp | Resolution::ResolvesHere { .. })
    }

    /// One sentence for the user.
    pub fn describe(&self, host: &Host) -> String {
        let list = |a: &[IpAddr]| a.iter().map(|ip| ip.to_string()).collect::<Vec<_>>().join(", ");
        match self {
            Resolution::LocalIp => format!(
                "{host} is an address of this machine: devices on its network can reach the server there."
            ),
            Resolution::Loopback => {
                format!("{host} is a loopback address: only this machine can use it, devices never can.")
            }
            Resolution::ForeignIp => format!(
                "{host} is not an address of this machine: devices would connect to another computer."
            ),
            Resolution::ResolvesHere { addresses } => {
                format!("{host} resolves to {}, an address of this machine.", list(addresses))
            }
            Resolution::ResolvesToLoopback { addresses } => format!(
                "{host} resolves only to {} (loopback) here: devices need a name that resolves to a LAN address.",
                list(addresses)
            ),
            Resolution::ResolvesElsewhere { addresses } => format!(
                "{host} resolves to {}, which is not this machine: devices would connect elsewhere.",
                list(addresses)
            ),
            Resolution::DoesNotResolve { why } => format!(
                "{host} does not resolve from here ({why}): devices will not find the server unless their DNS knows it."
            ),
        }
    }
}

/// Checks where `host` leads, with a bounded wait for DNS.
pub async fn check(host: &Host, local: &LocalHosts) -> Resolution {
    let name = match host {
        Host::Ip(ip) if ip.is_loopback() => return Resolution::Loopback,
        Host::Ip(ip) if local.owns(ip) => return Resolution::LocalIp,
        Host::Ip(_) => return Resolution::ForeignIp,
        Host::Dns(name) if name.starts_with("*.") => {
            return Resolution::DoesNotResolve { why: "a wildcard is not a name devices can use".into() };
        }
        Host::Dns(name) => name.clone(),
    };
    let lookup = tokio::net::lookup_host((name.as_str(), 0));
    let addresses: Vec<IpAddr> = match tokio::time::timeout(Duration::from_secs(3), lookup).await {
        Ok(Ok(addrs)) => {
            let mut v: Vec<IpAddr> = addrs.map(|a| a.ip()).collect();
            v.sort();
            v.dedup();
            v
        }
        Ok(Err(e)) => return Resolution::DoesNotResolve { why: e.to_string() },
        Err(_) => return Resolution::DoesNotResolve { why: "no answer within 3 s".into() },
    };
    if addresses.is_empty() {
        return Resolution::DoesNotResolve { why: "no addresses".into() };
    }
    if addresses.iter().any(|ip| !ip.is_loopback() && local.owns(ip)) {
        Resolution::ResolvesHere { addresses }
    } else if addresses.iter().all(|ip| ip.is_loopback()) {
        Resolution::ResolvesToLoopback { addresses }
    } else {
        Resolution::ResolvesElsewhere { addresses }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake() -> LocalHosts {
        LocalHosts {
            addresses: vec![LocalAddress { interface: "eth0".into(), ip: "192.168.1.70".parse().unwrap() }],
            hostname: Some("forge".into()),
        }
    }

    #[test]
    fn suggestions_put_mdns_name_first() {
        let s = fake().suggestions();
        assert_eq!(s[0], Host::Dns("forge.local".into()));
        assert_eq!(s[1], Host::Dns("forge".into()));
        assert_eq!(s[2], Host::Ip("192.168.1.70".parse().unwrap()));
    }

    #[tokio::test]
    async fn ip_hosts_are_judged_without_dns() {
        let l = fake();
        assert_eq!(check(&Host::parse("192.168.1.70").unwrap(), &l).await, Resolution::LocalIp);
        assert_eq!(check(&Host::parse("10.9.9.9").unwrap(), &l).await, Resolution::ForeignIp);
        assert_eq!(check(&Host::parse("127.0.0.1").unwrap(), &l).await, Resolution::Loopback);
    }

    #[tokio::test]
    async fn localhost_is_loopback_only() {
        let r = check(&Host::parse("localhost").unwrap(), &fake()).await;
        assert!(matches!(r, Resolution::ResolvesToLoopback { .. }), "{r:?}");
        assert!(!r.reaches_here());
    }

    #[tokio::test]
    async fn unknown_name_does_not_resolve() {
        // .invalid is reserved (RFC 2606) and never resolves.
        let r = check(&Host::parse("nothing-here.invalid").unwrap(), &fake()).await;
        assert!(matches!(r, Resolution::DoesNotResolve { .. }), "{r:?}");
    }
}
