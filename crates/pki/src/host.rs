//! The update-server host a device puts in its URL: a DNS name or an IP address.
//!
//! Parsing is strict because a bad name here becomes a certificate no device accepts,
//! and the user only finds out when the fleet stops updating.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

/// A validated update-server host.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Host {
    /// A DNS name, lower-cased, without a trailing dot. May start with `*.` (one label).
    Dns(String),
    /// An IP address. Certificates carry it twice: as an IP SAN and as a DNS SAN holding its text,
    /// because BearSSL and mbedTLS 2 match only dNSName entries.
    Ip(IpAddr),
}

/// Why a host was refused, in words a user can act on.
#[allow(missing_docs)] // each variant's message is its documentation
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    #[error("the host is empty: give the name or IP address devices will use to reach this server")]
    Empty,
    #[error("\"{0}\" contains whitespace: a host name cannot contain spaces")]
    Whitespace(String),
    #[error("\"{0}\" is longer than 253 characters, the limit for a DNS name")]
    TooLong(String),
    #[error("the label \"{label}\" in \"{host}\" is {len} characters long; DNS labels have at most 63")]
    LabelTooLong { host: String, label: String, len: usize },
    #[error("\"{0}\" has an empty label (two dots in a row, or a leading dot)")]
    EmptyLabel(String),
    #[error("\"{host}\" contains '{ch}': host names may only use letters, digits and '-' between dots")]
    BadCharacter { host: String, ch: char },
    #[error("the label \"{label}\" in \"{host}\" starts or ends with '-', which DNS does not allow")]
    HyphenEdge { host: String, label: String },
    #[error(
        "\"{0}\" is not a usable wildcard: only '*.' followed by at least two labels (e.g. *.example.com) works, and devices still connect to one exact name"
    )]
    BadWildcard(String),
    #[error("\"{0}\" looks like an IP address but is not a valid one")]
    BadIp(String),
    #[error("\"{0}\" looks like a URL: give only the host part (no scheme, port or path)")]
    LooksLikeUrl(String),
}

impl Host {
    /// Parses what a user typed. Surrounding whitespace is ignored; brackets around an IPv6
    /// address are accepted.
    pub fn parse(input: &str) -> Result<Host, HostError> {
        let s = input.trim();
        if s.is_empty() {
            return Err(HostError::Empty);
        }
        if s.chars().any(char::is_whitespace) {
            return Err(HostError::Whitespace(s.to_string()));
        }
        if s.contains("://") || s.contains('/') {
            return Err(HostError::LooksLikeUrl(s.to_string()));
        }
        let unbracketed = s.strip_prefix('[').and_then(|r| r.strip_suffix(']')).unwrap_or(s);
        if let Ok(ip) = unbracketed.parse::<IpAddr>() {
            return Ok(Host::Ip(ip));
        }
        if unbracketed.contains(':') {
            return Err(if s.matches(':').count() == 1 {
                HostError::LooksLikeUrl(s.to_string())
            } else {
                HostError::BadIp(s.to_string())
            });
        }
        let name = s.strip_suffix('.').unwrap_or(s).to_ascii_lowercase();
        parse_dns_name(&name, s)
    }

    /// The text a device puts in its URL and the certificate puts in a dNSName SAN.
    pub fn as_dns_text(&self) -> String {
        match self {
            Host::Dns(name) => name.clone(),
            Host::Ip(ip) => ip.to_string(),
        }
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.as_dns_text())
    }
}

impl std::str::FromStr for Host {
    type Err = HostError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Host::parse(s)
    }
}

fn parse_dns_name(name: &str, original: &str) -> Result<Host, HostError> {
    if name.len() > 253 {
        return Err(HostError::TooLong(original.chars().take(40).collect::<String>() + "…"));
    }
    let (wildcard, rest) = match name.strip_prefix("*.") {
        Some(rest) => (true, rest),
        None => (false, name),
    };
    if name.contains('*') && (!wildcard || rest.contains('*') || rest.split('.').count() < 2) {
        return Err(HostError::BadWildcard(original.to_string()));
    }
    if rest.is_empty() {
        return Err(HostError::BadWildcard(original.to_string()));
    }
    let labels: Vec<&str> = rest.split('.').collect();
    // All-numeric dotted text is an attempt at an IPv4 address (e.g. 192.168.1.300).
    if labels.iter().all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_digit()))
        || labels.last().is_some_and(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(HostError::BadIp(original.to_string()));
    }
    for label in &labels {
        if label.is_empty() {
            return Err(HostError::EmptyLabel(original.to_string()));
        }
        if label.len() > 63 {
            return Err(HostError::LabelTooLong {
                host: shorten(original),
                label: shorten(label),
                len: label.len(),
            });
        }
        if let Some(ch) = label.chars().find(|c| !(c.is_ascii_alphanumeric() || *c == '-')) {
            return Err(HostError::BadCharacter { host: original.to_string(), ch });
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(HostError::HyphenEdge { host: original.to_string(), label: label.to_string() });
        }
    }
    Ok(Host::Dns(name.to_string()))
}

fn shorten(s: &str) -> String {
    if s.chars().count() <= 40 { s.to_string() } else { s.chars().take(37).collect::<String>() + "…" }
}

/// True when a certificate dNSName entry matches the name a device connects to, the way
/// BearSSL does it: case-insensitive, and `*.` matches exactly one left-most label.
pub fn dns_name_matches(pattern: &str, name: &str) -> bool {
    let pattern = pattern.to_ascii_lowercase();
    let name = name.to_ascii_lowercase();
    match pattern.strip_prefix("*.") {
        Some(suffix) => match name.split_once('.') {
            Some((first, rest)) => !first.is_empty() && rest == suffix,
            None => false,
        },
        None => pattern == name,
    }
}

/// True for addresses devices on a LAN can never reach this machine by.
pub fn is_loopback_or_unspecified(ip: &IpAddr) -> bool {
    ip.is_loopback() || ip.is_unspecified() || *ip == IpAddr::V4(Ipv4Addr::BROADCAST)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_names_and_ips() {
        assert_eq!(Host::parse(" ServerOTA.ddns.net. ").unwrap(), Host::Dns("serverota.ddns.net".into()));
        assert_eq!(Host::parse("192.168.1.70").unwrap(), Host::Ip("192.168.1.70".parse().unwrap()));
        assert_eq!(Host::parse("[fe80::1]").unwrap(), Host::Ip("fe80::1".parse().unwrap()));
        assert_eq!(Host::parse("*.iot.example.com").unwrap(), Host::Dns("*.iot.example.com".into()));
        assert_eq!(Host::parse("otaforge").unwrap(), Host::Dns("otaforge".into()));
    }

    #[test]
    fn refuses_bad_input_with_a_reason() {
        assert_eq!(Host::parse("   "), Err(HostError::Empty));
        assert!(matches!(Host::parse("my server"), Err(HostError::Whitespace(_))));
        assert!(matches!(Host::parse("*."), Err(HostError::BadWildcard(_))));
        assert!(matches!(Host::parse("*.com"), Err(HostError::BadWildcard(_))));
        assert!(matches!(Host::parse("a.*.com"), Err(HostError::BadWildcard(_))));
        let long = format!("{}.example.com", "a".repeat(300));
        assert!(matches!(Host::parse(&long), Err(HostError::TooLong(_))));
        let long_label = format!("{}.example.com", "a".repeat(64));
        assert!(matches!(Host::parse(&long_label), Err(HostError::LabelTooLong { len: 64, .. })));
        assert!(matches!(Host::parse("192.168.1.300"), Err(HostError::BadIp(_))));
        assert!(matches!(Host::parse("1:2:3"), Err(HostError::BadIp(_))));
        assert!(matches!(Host::parse("host:3443"), Err(HostError::LooksLikeUrl(_))));
        assert!(matches!(Host::parse("https://x.y/update"), Err(HostError::LooksLikeUrl(_))));
        assert!(matches!(Host::parse("a..b"), Err(HostError::EmptyLabel(_))));
        assert!(matches!(Host::parse("-a.b"), Err(HostError::HyphenEdge { .. })));
        assert!(matches!(Host::parse("a_b.c"), Err(HostError::BadCharacter { ch: '_', .. })));
        let msg = Host::parse("192.168.1.300").unwrap_err().to_string();
        assert!(msg.contains("192.168.1.300"), "{msg}");
    }

    #[test]
    fn wildcard_matches_one_label_only() {
        assert!(dns_name_matches("*.example.com", "ota.example.com"));
        assert!(!dns_name_matches("*.example.com", "a.b.example.com"));
        assert!(!dns_name_matches("*.example.com", "example.com"));
        assert!(dns_name_matches("OTA.example.com", "ota.EXAMPLE.com"));
        assert!(!dns_name_matches("ota.example.com", "ota.example.org"));
    }
}
