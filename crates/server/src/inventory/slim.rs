//! How the inventory keeps devices in memory: the same facts as [`Device`] in a fraction of the
//! space, so a server that has seen tens of thousands of devices stays small.
//!
//! Three things make a [`Device`] big when kept by the thousand: a `String` per field (24 bytes
//! plus an allocation each), a hash map whose slots hold the whole record (and sit half empty
//! after every growth), and the same words ("ESP8266", "stable", "2.2.1-dev", "up to date")
//! repeated in every record. Here the key is the MAC's six bytes, the record is boxed (a slot is
//! one pointer), words many devices share are interned once, and the facts unique to a device
//! (AP MAC, chip id, sketch MD5, address) are kept as bytes when they have their usual spelling.
//! `app/tests/inventory_memory.rs` counts the result: about a third of the plain map.

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::Arc;

use otaforge_store::{Device, DeviceState};

/// A station MAC as the map key.
pub type MacKey = [u8; 6];

/// The key for a MAC in the canonical `AA:BB:CC:DD:EE:FF` form the server stores; `None` for
/// anything else.
pub fn mac_key(mac: &str) -> Option<MacKey> {
    let bytes = mac.as_bytes();
    if bytes.len() != 17 {
        return None;
    }
    let mut key = [0u8; 6];
    for (i, k) in key.iter_mut().enumerate() {
        let pair = mac.get(i * 3..i * 3 + 2)?;
        if i < 5 && bytes[i * 3 + 2] != b':' {
            return None;
        }
        *k = u8::from_str_radix(pair, 16).ok()?;
    }
    // Only the upper-case spelling round-trips; other spellings are not canonical.
    (mac_text(&key) == mac).then_some(key)
}

/// The canonical text of a MAC key.
pub fn mac_text(key: &MacKey) -> String {
    key.iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":")
}

/// Words shared by many devices, each kept once.
#[derive(Default)]
pub struct Interner {
    words: HashSet<Arc<str>>,
    /// Size after the last sweep; the next sweep happens when the set has doubled.
    swept_at: usize,
}

impl Interner {
    /// The shared copy of `s`.
    pub fn get(&mut self, s: &str) -> Arc<str> {
        if let Some(w) = self.words.get(s) {
            return w.clone();
        }
        if self.words.len() >= 2 * self.swept_at.max(512) {
            // Forget words no record uses any more (an old version string, a one-off reason).
            self.words.retain(|w| Arc::strong_count(w) > 1);
            self.swept_at = self.words.len();
        }
        let w: Arc<str> = Arc::from(s);
        self.words.insert(w.clone());
        w
    }

    fn opt(&mut self, s: &Option<String>) -> Option<Arc<str>> {
        s.as_deref().map(|s| self.get(s))
    }

    /// Words currently kept.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.words.len()
    }
}

/// A fact kept as bytes when it has its usual shape and as text otherwise, so nothing a device
/// sends is ever altered.
enum Compact<B> {
    Bytes(B),
    Text(Box<str>),
}

/// A value with an exact text form: `parse` accepts only text that `text` gives back unchanged.
trait Shape: Sized {
    fn parse(s: &str) -> Option<Self>;
    fn text(&self) -> String;
}

impl Shape for MacKey {
    fn parse(s: &str) -> Option<Self> {
        mac_key(s)
    }
    fn text(&self) -> String {
        mac_text(self)
    }
}

/// An MD5 as devices send it: 32 lower-case hex digits.
impl Shape for [u8; 16] {
    fn parse(s: &str) -> Option<Self> {
        let mut out = [0u8; 16];
        let ok = hex::decode_to_slice(s, &mut out).is_ok() && !s.bytes().any(|b| b.is_ascii_uppercase());
        ok.then_some(out)
    }
    fn text(&self) -> String {
        hex::encode(self)
    }
}

/// A chip id: decimal, as `x-ESP8266-Chip-ID` carries it.
impl Shape for u32 {
    fn parse(s: &str) -> Option<Self> {
        s.parse().ok().filter(|v: &u32| v.to_string() == s)
    }
    fn text(&self) -> String {
        self.to_string()
    }
}

impl Shape for IpAddr {
    fn parse(s: &str) -> Option<Self> {
        s.parse().ok().filter(|ip: &IpAddr| ip.to_string() == s)
    }
    fn text(&self) -> String {
        self.to_string()
    }
}

impl<B: Shape> Compact<B> {
    fn pack(s: &str) -> Compact<B> {
        B::parse(s).map_or_else(|| Compact::Text(s.into()), Compact::Bytes)
    }
    fn opt(s: &Option<String>) -> Option<Compact<B>> {
        s.as_deref().map(Compact::pack)
    }
    fn unpack(&self) -> String {
        match self {
            Compact::Bytes(b) => b.text(),
            Compact::Text(t) => t.to_string(),
        }
    }
}

/// One device in memory. Converted to and from [`Device`] at the inventory's edges, so the
/// inventory's logic and every caller keep working with the plain record.
pub struct Slim {
    name: Option<Box<str>>,
    user_name: Option<Box<str>>,
    family: Arc<str>,
    ap_mac: Option<Compact<MacKey>>,
    chip_id: Option<Compact<u32>>,
    chip_size: Option<u64>,
    free_space: Option<u64>,
    sketch_size: Option<u64>,
    sketch_md5: Option<Compact<[u8; 16]>>,
    sketch_sha256: Option<Box<str>>,
    sdk_version: Option<Arc<str>>,
    version: Option<Arc<str>>,
    channel: Arc<str>,
    remote_ip: Compact<IpAddr>,
    first_seen: i64,
    last_seen: i64,
    last_status: u16,
    state: DeviceState,
    attempts: u32,
    last_reason: Arc<str>,
    state_detail: Arc<str>,
    target_release: Option<i64>,
    fs_release: Option<i64>,
    poll_interval_s: Option<u32>,
    /// Seen to install something (see [`Slim::proven`]).
    proven: bool,
}

fn boxed(s: &Option<String>) -> Option<Box<str>> {
    s.as_deref().map(Box::from)
}

fn owned(s: Option<&str>) -> Option<String> {
    s.map(str::to_owned)
}

impl Slim {
    /// The compact form of `d`, sharing words through `words`.
    pub fn pack(d: &Device, words: &mut Interner) -> Box<Slim> {
        Box::new(Slim {
            name: (!d.name.is_empty()).then(|| Box::from(d.name.as_str())),
            user_name: (!d.user_name.is_empty()).then(|| Box::from(d.user_name.as_str())),
            family: words.get(&d.family),
            ap_mac: Compact::opt(&d.ap_mac),
            chip_id: Compact::opt(&d.chip_id),
            chip_size: d.chip_size,
            free_space: d.free_space,
            sketch_size: d.sketch_size,
            sketch_md5: Compact::opt(&d.sketch_md5),
            sketch_sha256: boxed(&d.sketch_sha256),
            sdk_version: words.opt(&d.sdk_version),
            version: words.opt(&d.version),
            channel: words.get(&d.channel),
            remote_ip: Compact::pack(&d.remote_ip),
            first_seen: d.first_seen,
            last_seen: d.last_seen,
            last_status: d.last_status,
            state: d.state,
            attempts: d.attempts,
            last_reason: words.get(&d.last_reason),
            state_detail: words.get(&d.state_detail),
            target_release: d.target_release,
            fs_release: d.fs_release,
            poll_interval_s: d.poll_interval_s,
            proven: d.state == DeviceState::Installed,
        })
    }

    /// Whether the device was seen to install something: it ran a release it downloaded from
    /// this server, or confirmed a flash over USB. Kept in memory only (so after a restart it is
    /// what the stored state says: installed). The inventory caps devices that are not.
    pub fn proven(&self) -> bool {
        self.proven
    }

    /// Marks the device as seen to install something.
    pub fn set_proven(&mut self, proven: bool) {
        self.proven = proven;
    }

    /// The plain record for the device with MAC `key`.
    /// [`Device::silent_since_update`] without unpacking the record.
    pub fn silent_since_update(&self, now: i64) -> Option<i64> {
        otaforge_store::silent_since_update(self.state, self.last_seen, self.poll_interval_s, now)
    }

    pub fn unpack(&self, key: &MacKey) -> Device {
        Device {
            mac: mac_text(key),
            name: self.name.as_deref().unwrap_or_default().to_owned(),
            user_name: self.user_name.as_deref().unwrap_or_default().to_owned(),
            family: self.family.to_string(),
            ap_mac: self.ap_mac.as_ref().map(Compact::unpack),
            chip_id: self.chip_id.as_ref().map(Compact::unpack),
            chip_size: self.chip_size,
            free_space: self.free_space,
            sketch_size: self.sketch_size,
            sketch_md5: self.sketch_md5.as_ref().map(Compact::unpack),
            sketch_sha256: owned(self.sketch_sha256.as_deref()),
            sdk_version: owned(self.sdk_version.as_deref()),
            version: owned(self.version.as_deref()),
            channel: self.channel.to_string(),
            remote_ip: self.remote_ip.unpack(),
            first_seen: self.first_seen,
            last_seen: self.last_seen,
            last_status: self.last_status,
            last_reason: self.last_reason.to_string(),
            state: self.state,
            state_detail: self.state_detail.to_string(),
            target_release: self.target_release,
            fs_release: self.fs_release,
            attempts: self.attempts,
            poll_interval_s: self.poll_interval_s,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(mac: &str) -> Device {
        let mut d = Device::new(mac, "ESP8266", "stable", "192.168.1.20", 1_700_000_000);
        d.name = "kitchen".into();
        d.user_name = "Kitchen shelf".into();
        d.ap_mac = Some("1A:FE:34:00:00:01".into());
        d.chip_id = Some("1234567".into());
        d.chip_size = Some(4 << 20);
        d.free_space = Some(2_000_000);
        d.sketch_size = Some(400_000);
        d.sketch_md5 = Some("0123456789abcdef0123456789abcdef".into());
        d.sdk_version = Some("2.2.2-dev(38a443e)".into());
        d.version = Some("1.4.0".into());
        d.last_status = 304;
        d.last_reason = "runs the current release".into();
        d.state = DeviceState::Installed;
        d.state_detail = "installed 1.4.0".into();
        d.target_release = Some(3);
        d.attempts = 1;
        d
    }

    #[test]
    fn packing_loses_nothing() {
        let mut words = Interner::default();
        let d = device("18:FE:34:AB:CD:EF");
        let key = mac_key(&d.mac).unwrap();
        assert_eq!(Slim::pack(&d, &mut words).unpack(&key), d);
        let bare = Device::new("18:FE:34:AB:CD:EF", "ESP32", "beta", "10.0.0.1", 5);
        assert_eq!(Slim::pack(&bare, &mut words).unpack(&key), bare);
        // Facts in an unusual spelling come back exactly as they were sent.
        let mut odd = d.clone();
        odd.ap_mac = Some("1a-fe-34-00-00-01".into());
        odd.chip_id = Some("007".into());
        odd.sketch_md5 = Some("0123456789ABCDEF0123456789ABCDEF".into());
        odd.remote_ip = "::ffff:10.0.0.1x".into();
        assert_eq!(Slim::pack(&odd, &mut words).unpack(&key), odd);
        let mut v6 = d.clone();
        v6.remote_ip = "fe80::1".into();
        assert_eq!(Slim::pack(&v6, &mut words).unpack(&key), v6);
    }

    #[test]
    fn only_canonical_macs_are_keys() {
        assert_eq!(mac_key("18:FE:34:AB:CD:EF"), Some([0x18, 0xFE, 0x34, 0xAB, 0xCD, 0xEF]));
        for bad in
            ["18:fe:34:ab:cd:ef", "18-FE-34-AB-CD-EF", "18FE34ABCDEF", "18:FE:34:AB:CD", "GG:FE:34:AB:CD:EF"]
        {
            assert_eq!(mac_key(bad), None, "{bad}");
        }
    }

    #[test]
    fn shared_words_are_kept_once_and_forgotten_when_unused() {
        let mut words = Interner::default();
        let a = words.get("stable");
        let b = words.get("stable");
        assert!(Arc::ptr_eq(&a, &b));
        drop((a, b));
        // Enough one-off words to trigger sweeps: unused ones go, so the set stays bounded.
        for i in 0..10_000 {
            words.get(&format!("reason {i}"));
        }
        assert!(words.len() < 2 * 512 + 1, "{} words kept", words.len());
    }
}
