//! Who gets a place in the inventory. Any client can make up MACs, so a new MAC is admitted only
//! while the inventory holds fewer than `max_unproven` devices never seen to install anything, and
//! only at [`NEW_PER_ADDRESS`] new MACs a minute from one address (an IPv6 /64 counts as one:
//! real devices behind one NAT or on one LAN prefix are few and appear one by one). Devices
//! already in the inventory are never refused, and never evicted to make room.
//!
//! A MAC on the allow-list, or one just flashed over USB, is always admitted: the operator named it.
//! Loopback is not rate-limited (the cap still holds): it is this machine — the simulator's
//! fleets, benchmarks, a reverse proxy in front of the server — where one address stands for
//! every device.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::events::ServerEvent;

/// New MACs admitted per address per [`PER`] (and at once, after a quiet minute).
pub const NEW_PER_ADDRESS: u32 = 20;
/// The period of [`NEW_PER_ADDRESS`].
const PER: Duration = Duration::from_secs(60);
/// How often a limit that keeps refusing is reported again (with the count since).
const REPORT_EVERY: Duration = Duration::from_secs(10);

/// Why a new MAC was not admitted, in words a device's 304 header and the log can carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The inventory holds as many devices that never installed anything as it admits.
    Full {
        /// The cap (`serve --max-unproven-devices`).
        max: usize,
    },
    /// An address sent [`NEW_PER_ADDRESS`] new MACs within the last minute.
    Rate {
        /// The address (an IPv6 /64 as its prefix).
        remote: IpAddr,
    },
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Full { max } => write!(
                f,
                "new device not admitted: the inventory already holds {max} devices never seen to install anything \
                 (serve --max-unproven-devices); try again later"
            ),
            Refusal::Rate { remote } => write!(
                f,
                "new device not admitted: more than {NEW_PER_ADDRESS} new devices a minute from {remote}; try again later"
            ),
        }
    }
}

/// The address new MACs are counted by: IPv4 as is (IPv4-mapped IPv6 too), IPv6 by its /64.
fn source(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let bits = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(bits.into())
            }
        },
        v4 => v4,
    }
}

/// Refusals not reported yet, and when the last report was.
#[derive(Default)]
struct Reported {
    at: Option<Instant>,
    unreported: u64,
}

impl Reported {
    /// Counts a refusal; true when it should be reported now (the first, then every few seconds).
    fn count(&mut self, now: Instant) -> Option<u64> {
        self.unreported += 1;
        if self.at.is_some_and(|at| now - at < REPORT_EVERY) {
            return None;
        }
        self.at = Some(now);
        Some(std::mem::take(&mut self.unreported))
    }
}

/// A token bucket of new MACs for one address.
struct Bucket {
    tokens: f64,
    at: Instant,
    reported: Reported,
}

/// The admission limits and their state.
pub(super) struct Admission {
    max_unproven: usize,
    buckets: HashMap<IpAddr, Bucket>,
    /// Size after the last sweep of idle buckets; the next happens when the map has doubled.
    swept_at: usize,
    full: Reported,
}

impl Admission {
    pub(super) fn new(max_unproven: usize) -> Admission {
        Admission { max_unproven, buckets: HashMap::new(), swept_at: 0, full: Reported::default() }
    }

    /// Decides for a MAC the inventory does not hold, given how many devices in it never
    /// installed anything; admitting uses up one of the address's new MACs. A refusal that should
    /// be reported comes with its event.
    pub(super) fn admit(
        &mut self,
        remote: IpAddr,
        unproven: usize,
        now: Instant,
    ) -> (Result<(), Refusal>, Option<ServerEvent>) {
        if unproven >= self.max_unproven {
            let max = self.max_unproven;
            let event = self
                .full
                .count(now)
                .map(|refused| ServerEvent::NewDevicesCapped { max: max as u64, refused });
            return (Err(Refusal::Full { max }), event);
        }
        let key = source(remote);
        if remote.is_loopback() || key.is_loopback() {
            return (Ok(()), None);
        }
        if !self.buckets.contains_key(&key) && self.buckets.len() >= 2 * self.swept_at.max(512) {
            // Forget addresses whose bucket has refilled: they start full again anyway.
            self.buckets.retain(|_, b| now - b.at < PER);
            self.swept_at = self.buckets.len();
        }
        let cap = f64::from(NEW_PER_ADDRESS);
        let b =
            self.buckets.entry(key).or_insert(Bucket { tokens: cap, at: now, reported: Reported::default() });
        let refill = (now - b.at).as_secs_f64() / PER.as_secs_f64() * cap;
        b.tokens = (b.tokens + refill).min(cap);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            return (Ok(()), None);
        }
        let event = b.reported.count(now).map(|refused| ServerEvent::NewDevicesRateLimited {
            remote: key,
            per_minute: NEW_PER_ADDRESS,
            refused,
        });
        (Err(Refusal::Rate { remote: key }), event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// [`Admission::admit`] as one `Result`, for short assertions.
    #[allow(clippy::result_large_err)]
    trait Check {
        fn check(
            &mut self,
            ip: IpAddr,
            unproven: usize,
            now: Instant,
        ) -> Result<(), (Refusal, Option<ServerEvent>)>;
    }

    impl Check for Admission {
        #[allow(clippy::result_large_err)]
        fn check(
            &mut self,
            ip: IpAddr,
            unproven: usize,
            now: Instant,
        ) -> Result<(), (Refusal, Option<ServerEvent>)> {
            match self.admit(ip, unproven, now) {
                (Ok(()), _) => Ok(()),
                (Err(why), event) => Err((why, event)),
            }
        }
    }

    #[test]
    fn an_address_gets_twenty_new_macs_a_minute_and_a_cap_holds_for_everyone() {
        let mut a = Admission::new(100);
        let t0 = Instant::now();
        let one: IpAddr = "203.0.113.7".parse().unwrap();
        let admitted = (0..2000).filter(|_| a.check(one, 0, t0).is_ok()).count();
        assert_eq!(admitted, 20);
        // The first refusal is reported at once, the rest counted for the next report.
        let mut a2 = Admission::new(100);
        for _ in 0..20 {
            a2.check(one, 0, t0).unwrap();
        }
        let (why, event) = a2.check(one, 0, t0).unwrap_err();
        assert_eq!(why, Refusal::Rate { remote: one });
        assert!(matches!(event, Some(ServerEvent::NewDevicesRateLimited { refused: 1, .. })));
        assert!(a2.check(one, 0, t0 + Duration::from_secs(1)).unwrap_err().1.is_none());
        // Ten seconds later three more are admitted (one every three seconds), then the next
        // refusal is reported with the one not reported yet.
        let t11 = t0 + Duration::from_secs(11);
        let mut admitted = 0;
        let later = loop {
            match a2.check(one, 0, t11) {
                Ok(()) => admitted += 1,
                Err((_, event)) => break event,
            }
        };
        assert_eq!(admitted, 3);
        assert!(matches!(later, Some(ServerEvent::NewDevicesRateLimited { refused: 2, .. })), "{later:?}");

        // Another address is not held up by the first; nobody gets past the cap.
        let other: IpAddr = "198.51.100.1".parse().unwrap();
        assert!(a.check(other, 99, t0).is_ok());
        let (why, event) = a.check(other, 100, t0).unwrap_err();
        assert_eq!(why, Refusal::Full { max: 100 });
        assert!(matches!(event, Some(ServerEvent::NewDevicesCapped { max: 100, refused: 1 })));
    }

    #[test]
    fn an_ipv6_slash_64_is_one_address() {
        let mut a = Admission::new(10_000);
        let t0 = Instant::now();
        let admitted = (0..100u16)
            .filter(|i| a.check(format!("2001:db8:1:2::{i:x}").parse().unwrap(), 0, t0).is_ok())
            .count();
        assert_eq!(admitted, 20);
        assert!(a.check("2001:db8:1:3::1".parse().unwrap(), 0, t0).is_ok());
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(source(mapped), "192.0.2.1".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn loopback_is_capped_but_not_rate_limited() {
        let mut a = Admission::new(1000);
        let t0 = Instant::now();
        for ip in ["127.0.0.1", "::1", "::ffff:127.0.0.1"] {
            let ip: IpAddr = ip.parse().unwrap();
            assert!((0..100).all(|_| a.check(ip, 0, t0).is_ok()), "{ip}");
            assert!(a.check(ip, 1000, t0).is_err(), "{ip}");
        }
    }
}
