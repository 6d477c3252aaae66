//! Firmware versions, ordered the way people mean them: numerically, never as floats
//! (the tutorial's `parseFloat` put "1.10" before "1.9").
//!
//! A version is SemVer when it parses as SemVer (pre-releases order before their release), else
//! one to four dotted numbers (`1.10`, `2024.11.3.7`). A leading `v` is accepted. Anything else
//! is refused at publish time, so every release can be compared with every device; a device
//! that reports such a version is recognised by the MD5 of its sketch instead.

use std::cmp::Ordering;
use std::fmt;

/// Longest version text accepted (devices send it in a header; the ESP32 app descriptor holds 32 bytes).
pub const MAX_LEN: usize = 64;

/// Most dotted numbers in a version that is not SemVer (`2024.11.3.7`). More would make a
/// version like `1.2.3.4.5.6.7` "newer" than any release numbered the usual way.
pub const MAX_PARTS: usize = 4;

/// A parsed, comparable firmware version.
#[derive(Debug, Clone)]
pub struct Version {
    raw: String,
    numbers: Vec<u64>,
    pre: Option<semver::Prerelease>,
}

/// Why a version string was refused.
#[allow(missing_docs)] // each variant's message is its documentation
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VersionError {
    #[error("the version is empty")]
    Empty,
    #[error("the version is {0} characters long; at most {MAX_LEN} are allowed")]
    TooLong(usize),
    #[error(
        "\"{0}\" is not a version OTA Forge can order: use SemVer (1.4.2, 2.0.0-beta.1) or dotted numbers (1.10, 2024.11.3)"
    )]
    Unorderable(String),
    #[error("\"{0}\" has {1} dotted numbers; at most {MAX_PARTS} are allowed (1.10, 2024.11.3.7)")]
    TooManyParts(String, usize),
}

impl Version {
    /// Parses a version; see the module docs for what is accepted.
    pub fn parse(input: &str) -> Result<Version, VersionError> {
        let s = input.trim();
        if s.is_empty() {
            return Err(VersionError::Empty);
        }
        if s.chars().count() > MAX_LEN {
            return Err(VersionError::TooLong(s.chars().count()));
        }
        let body = s.strip_prefix(['v', 'V']).unwrap_or(s);
        if let Ok(v) = semver::Version::parse(body) {
            return Ok(Version {
                raw: s.to_string(),
                numbers: vec![v.major, v.minor, v.patch],
                pre: (!v.pre.is_empty()).then_some(v.pre),
            });
        }
        let numbers: Option<Vec<u64>> = body
            .split('.')
            .map(|part| {
                (!part.is_empty() && part.len() <= 18 && part.bytes().all(|b| b.is_ascii_digit()))
                    .then(|| part.parse().ok())
                    .flatten()
            })
            .collect();
        match numbers {
            Some(n) if n.len() > MAX_PARTS => Err(VersionError::TooManyParts(s.to_string(), n.len())),
            Some(n) if !n.is_empty() => Ok(Version { raw: s.to_string(), numbers: n, pre: None }),
            _ => Err(VersionError::Unorderable(s.to_string())),
        }
    }

    /// The text as given (trimmed).
    pub fn as_str(&self) -> &str {
        &self.raw
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        let len = self.numbers.len().max(other.numbers.len());
        for i in 0..len {
            let a = self.numbers.get(i).copied().unwrap_or(0);
            let b = other.numbers.get(i).copied().unwrap_or(0);
            match a.cmp(&b) {
                Ordering::Equal => {}
                unequal => return unequal,
            }
        }
        match (&self.pre, &other.pre) {
            (None, None) => Ordering::Equal,
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (Some(a), Some(b)) => a.cmp(b),
        }
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Version {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Version {}

impl std::str::FromStr for Version {
    type Err = VersionError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Version::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap()
    }

    #[test]
    fn orders_numerically_not_as_floats() {
        assert!(v("1.10") > v("1.9"));
        assert!(v("0.10") > v("0.3"));
        assert!(v("v2.0.0") > v("1.99.99"));
        assert!(v("2024.11.3.7") > v("2024.11.3"));
        assert_eq!(v("1.2"), v("1.2.0"));
        assert_eq!(v("v1.2.3"), v("1.2.3"));
    }

    #[test]
    fn prereleases_come_before_their_release() {
        assert!(v("2.0.0-beta.1") < v("2.0.0"));
        assert!(v("2.0.0-beta.2") > v("2.0.0-beta.1"));
        assert!(v("2.0.0-beta.11") > v("2.0.0-beta.2"));
        assert!(v("2.0.0-rc.1") > v("1.9"));
        assert_eq!(v("1.0.0+build.5"), v("1.0.0"));
    }

    #[test]
    fn refuses_what_cannot_be_ordered() {
        assert_eq!(Version::parse(""), Err(VersionError::Empty));
        assert_eq!(Version::parse(&"1".repeat(10_000)), Err(VersionError::TooLong(10_000)));
        for bad in ["latest", "1.x", "1..2", "abc123", "1.2.3-", "NaN", "1e5"] {
            assert!(matches!(Version::parse(bad), Err(VersionError::Unorderable(_))), "{bad}");
        }
    }

    #[test]
    fn at_most_four_dotted_numbers() {
        assert!(v("2024.11.3.7") > v("2024.11.3"));
        assert!(v("v1.2.3.4") > v("1.2.3"));
        for (bad, parts) in [("1.2.3.4.5", 5), ("1.2.3.4.5.6.7", 7), ("1.2.3.4.5.6.7.8.9", 9)] {
            assert_eq!(Version::parse(bad), Err(VersionError::TooManyParts(bad.into(), parts)));
        }
        let e = Version::parse("1.2.3.4.5.6.7").unwrap_err().to_string();
        assert!(e.contains("at most 4"), "{e}");
    }
}
