//! What a device says about itself in the `x-ESP8266-*` / `x-ESP32-*` headers of an update check
//! (ESP8266httpUpdate and arduino-esp32 HTTPUpdate). Names are matched case-insensitively.
//!
//! arduino-esp32 3.x (`libraries/HTTPUpdate/src/HTTPUpdate.cpp`, master) sends
//! `x-ESP32-BASE-MAC` (`Network.macAddress()`, the base MAC) always, and `x-ESP32-STA-MAC` /
//! `x-ESP32-AP-MAC` only on chips with Wi-Fi (`#if SOC_WIFI_SUPPORTED`: not the ESP32-H2 or P4).
//! A station-only device's AP MAC is all zeros (its AP interface never existed). `x-ESP32-mode`
//! is `sketch`, or for a filesystem `spiffs`, `fatfs`, `littlefs` or `flashfs` (any of the three,
//! as `updateFs` asks for).

use super::http::{Request, is_hidden, printable};

/// Which updater sent the request: `ESP8266httpUpdate` (Arduino ESP8266 core) or arduino-esp32
/// `HTTPUpdate` (any ESP32-family chip).
pub use otaforge_protocol::Family;

/// The family's header prefix, lower-case.
fn prefix(family: Family) -> &'static str {
    match family {
        Family::Esp8266 => "x-esp8266-",
        Family::Esp32 => "x-esp32-",
    }
}

/// `x-…-mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Mode {
    /// Wants a new application image.
    Sketch,
    /// Wants a new filesystem image.
    Filesystem,
    /// Only asks which version is current (200 + `x-version`, no body).
    Version,
}

/// A device's update check.
#[allow(missing_docs)] // fields mirror the headers
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DeviceRequest {
    pub family: Family,
    /// Station MAC, upper-case `AA:BB:CC:DD:EE:FF`; for an ESP32 without Wi-Fi (only
    /// `x-ESP32-BASE-MAC`), its base MAC. The device's identity either way.
    pub sta_mac: String,
    pub ap_mac: Option<String>,
    pub chip_id: Option<String>,
    pub free_space: Option<u64>,
    pub sketch_size: Option<u64>,
    /// Lower-case hex MD5 of the running sketch.
    pub sketch_md5: Option<String>,
    pub sketch_sha256: Option<String>,
    pub chip_size: Option<u64>,
    pub sdk_version: Option<String>,
    pub mode: Mode,
    /// Absent when the sketch passes no version.
    pub version: Option<String>,
}

/// Longest header value we keep (a version, an SDK string).
const MAX_VALUE: usize = 64;

/// Reads the device headers. `Ok(None)`: not an Arduino updater (e.g. ESP-IDF `esp_https_ota`,
/// a browser, curl). `Err`: the headers are there but unusable, with the reason (answered 400).
pub fn parse(req: &Request) -> Result<Option<DeviceRequest>, String> {
    let family = if req.headers.iter().any(|(n, _)| starts_with_ci(n, "x-esp8266-")) {
        Family::Esp8266
    } else if req.headers.iter().any(|(n, _)| starts_with_ci(n, "x-esp32-")) {
        Family::Esp32
    } else {
        return Ok(None);
    };
    let get = |field: &str| req.header(&format!("{}{field}", prefix(family))).map(str::trim);
    let text = |field: &str| -> Result<Option<String>, String> {
        match get(field) {
            None | Some("") => Ok(None),
            Some(v) if v.chars().count() > MAX_VALUE => Err(format!(
                "{}{field} is {} characters long (at most {MAX_VALUE})",
                prefix(family),
                v.chars().count()
            )),
            // Controls, bidi overrides and invisible characters would be shown as they are in
            // the device table and the log.
            Some(v) if v.chars().any(is_hidden) => Err(format!(
                "{}{field} contains control, bidi or invisible characters: \"{}\"",
                prefix(family),
                short(v)
            )),
            Some(v) => Ok(Some(v.to_string())),
        }
    };
    let number = |field: &str| -> Result<Option<u64>, String> {
        match get(field) {
            None | Some("") => Ok(None),
            Some(v) => v
                .parse()
                .map(Some)
                .map_err(|_| format!("{}{field} is not a number: \"{}\"", prefix(family), short(v))),
        }
    };
    let hex = |field: &str, len: usize| -> Result<Option<String>, String> {
        match get(field) {
            None | Some("") => Ok(None),
            Some(v) if v.len() == len && v.bytes().all(|b| b.is_ascii_hexdigit()) => {
                Ok(Some(v.to_ascii_lowercase()))
            }
            Some(v) => Err(format!("{}{field} is not {len} hex digits: \"{}\"", prefix(family), short(v))),
        }
    };
    let mac = |field: &str| -> Result<Option<String>, String> {
        get(field)
            .map(|m| {
                parse_mac(m).ok_or_else(|| {
                    format!("{}{field} is not a MAC address: \"{}\"", prefix(family), short(m))
                })
            })
            .transpose()
    };
    // The station MAC; an ESP32 without Wi-Fi has only its base MAC (which is also what an
    // ESP32 with Wi-Fi reports as STA-MAC).
    let base_mac = if family == Family::Esp32 { mac("base-mac")? } else { None };
    let sta_mac = match (mac("sta-mac")?, base_mac) {
        (Some(m), _) | (None, Some(m)) => m,
        (None, None) => {
            let also = if family == Family::Esp32 { " (and x-esp32-base-mac)" } else { "" };
            return Err(format!(
                "{}sta-mac{also} is missing: the server cannot tell devices apart",
                prefix(family)
            ));
        }
    };
    // An all-zero AP MAC is a station-only ESP32 saying it has none.
    let ap_mac = get("ap-mac").and_then(parse_mac).filter(|m| m != "00:00:00:00:00:00");
    let mode = match get("mode").map(str::to_ascii_lowercase).as_deref() {
        None | Some("") | Some("sketch") => Mode::Sketch,
        // "filesystem" is no core's word; it is kept for clients written against older docs.
        Some("spiffs" | "fatfs" | "littlefs" | "flashfs" | "filesystem") => Mode::Filesystem,
        Some("version") => Mode::Version,
        Some(other) => {
            return Err(format!(
                "{}mode \"{}\" is not sketch, a filesystem (spiffs, fatfs, littlefs, flashfs) or version",
                prefix(family),
                short(other)
            ));
        }
    };
    Ok(Some(DeviceRequest {
        family,
        sta_mac,
        ap_mac,
        chip_id: text("chip-id")?,
        free_space: number("free-space")?,
        sketch_size: number("sketch-size")?,
        sketch_md5: hex("sketch-md5", 32)?,
        sketch_sha256: hex("sketch-sha256", 64)?,
        chip_size: number("chip-size")?,
        sdk_version: text("sdk-version")?,
        mode,
        version: text("version")?,
    }))
}

/// Normalises a MAC to upper-case colon form; `None` if it is not one. Accepted: six pairs of
/// hex digits separated by one ':' or one '-' each (the same throughout), or twelve hex digits.
pub fn parse_mac(s: &str) -> Option<String> {
    let s = s.trim();
    if !s.is_ascii() {
        return None;
    }
    let pairs: Vec<&str> = match s.len() {
        12 => (0..6).map(|i| &s[2 * i..2 * i + 2]).collect(),
        17 => {
            let sep = s.as_bytes()[2];
            if !matches!(sep, b':' | b'-') {
                return None;
            }
            let pairs: Vec<&str> = s.split(sep as char).collect();
            if pairs.len() != 6 {
                return None;
            }
            pairs
        }
        _ => return None,
    };
    pairs
        .iter()
        .all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| pairs.iter().map(|p| p.to_ascii_uppercase()).collect::<Vec<_>>().join(":"))
}

fn starts_with_ci(s: &str, prefix: &str) -> bool {
    s.len() >= prefix.len() && s.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
}

/// A value as it may be echoed (in the 400 body, the log, the history): cut short, and with
/// hidden characters written as escapes.
fn short(s: &str) -> String {
    let s =
        if s.chars().count() > 40 { s.chars().take(37).collect::<String>() + "…" } else { s.to_string() };
    printable(&s).into_owned()
}

/// The device name a reference firmware passes as `?name=` (percent-encoded). Only names a board
/// can have (letters, digits, '-', at most 31 bytes, as `firmware::device_settings` allows) are
/// taken; anything else is ignored rather than shown in the device list.
pub fn name_from_query(query: Option<&str>) -> Option<String> {
    let raw = query?.split('&').find_map(|kv| kv.strip_prefix("name="))?;
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    let name = String::from_utf8(out).ok()?;
    let ok = !name.is_empty()
        && name.len() <= otaforge_firmware::device_settings::NAME_MAX
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    ok.then_some(name)
}

#[cfg(test)]
mod name_tests {
    use super::name_from_query;

    #[test]
    fn names_come_from_the_query_and_only_board_names_count() {
        assert_eq!(name_from_query(Some("name=kitchen")).as_deref(), Some("kitchen"));
        assert_eq!(name_from_query(Some("x=1&name=hall-2")).as_deref(), Some("hall-2"));
        assert_eq!(name_from_query(Some("name=k%69tchen")).as_deref(), Some("kitchen"));
        assert_eq!(name_from_query(Some("name=%E2%80%AEevil")), None, "bidi controls are not names");
        assert_eq!(name_from_query(Some("name=a%2")), None);
        assert_eq!(name_from_query(Some("name=")), None);
        assert_eq!(name_from_query(None), None);
        assert_eq!(name_from_query(Some(&format!("name={}", "a".repeat(32)))), None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(headers: &[(&str, &str)]) -> Request {
        Request {
            method: "GET".into(),
            path: "/update".into(),
            query: None,
            minor_version: 0,
            headers: headers.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect(),
        }
    }

    #[test]
    fn reads_esp8266_headers_case_insensitively() {
        let d = parse(&req(&[
            ("X-ESP8266-STA-MAC", "18:fe:34:a1:b2:c3"),
            ("x-esp8266-free-space", "1044480"),
            ("x-ESP8266-sketch-md5", "0123456789ABCDEF0123456789abcdef"),
            ("x-ESP8266-mode", "sketch"),
            ("x-ESP8266-version", "1.10"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(d.family, Family::Esp8266);
        assert_eq!(d.sta_mac, "18:FE:34:A1:B2:C3");
        assert_eq!(d.free_space, Some(1_044_480));
        assert_eq!(d.sketch_md5.as_deref(), Some("0123456789abcdef0123456789abcdef"));
        assert_eq!(d.version.as_deref(), Some("1.10"));
    }

    #[test]
    fn esp32_macs_and_filesystem_modes() {
        // A chip without Wi-Fi (ESP32-H2/P4) sends only its base MAC: that is its identity.
        let d = parse(&req(&[("x-ESP32-BASE-MAC", "74:4d:bd:00:00:01"), ("x-ESP32-mode", "sketch")]))
            .unwrap()
            .unwrap();
        assert_eq!(
            (d.family, d.sta_mac.as_str(), d.ap_mac.as_deref()),
            (Family::Esp32, "74:4D:BD:00:00:01", None)
        );
        // With Wi-Fi the STA MAC is the identity, and a station-only device's zero AP MAC is none.
        let d = parse(&req(&[
            ("x-ESP32-BASE-MAC", "24:0A:C4:00:00:01"),
            ("x-ESP32-STA-MAC", "24:0A:C4:00:00:02"),
            ("x-ESP32-AP-MAC", "00:00:00:00:00:00"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!((d.sta_mac.as_str(), d.ap_mac), ("24:0A:C4:00:00:02", None));
        let e = parse(&req(&[("x-ESP32-BASE-MAC", "nope")])).unwrap_err();
        assert!(e.contains("base-mac is not a MAC"), "{e}");
        let e = parse(&req(&[("x-ESP32-free-space", "1")])).unwrap_err();
        assert!(e.contains("x-esp32-sta-mac (and x-esp32-base-mac) is missing"), "{e}");
        // BASE-MAC means nothing to the ESP8266 updater.
        assert!(parse(&req(&[("x-ESP8266-BASE-MAC", "18:FE:34:00:00:01")])).is_err());
        for mode in ["spiffs", "fatfs", "littlefs", "flashfs", "FATFS"] {
            let d = parse(&req(&[("x-ESP32-BASE-MAC", "74:4D:BD:00:00:01"), ("x-ESP32-mode", mode)]))
                .unwrap()
                .unwrap();
            assert_eq!(d.mode, Mode::Filesystem, "{mode}");
        }
        let e =
            parse(&req(&[("x-ESP32-BASE-MAC", "74:4D:BD:00:00:01"), ("x-ESP32-mode", "nvs")])).unwrap_err();
        assert!(e.contains("mode \"nvs\""), "{e}");
    }

    #[test]
    fn macs_are_six_hex_pairs_and_nothing_else() {
        for (input, want) in [
            ("18:fe:34:a1:b2:c3", "18:FE:34:A1:B2:C3"),
            ("18-FE-34-A1-B2-C3", "18:FE:34:A1:B2:C3"),
            ("18fe34a1b2c3", "18:FE:34:A1:B2:C3"),
            (" 18:FE:34:A1:B2:C3 ", "18:FE:34:A1:B2:C3"),
        ] {
            assert_eq!(parse_mac(input).as_deref(), Some(want), "{input}");
        }
        for bad in [
            ":::::5CCF7F000001",
            "5CCF7F000001:::::",
            "5C:CF:7F-00:00:01",
            "5CC:F7F:000:01:::",
            "5C::CF7F00:00:01",
            "---:-5CCF7F000001",
            "5C:CF:7F:00:00:0G",
            "5C:CF:7F:00:00",
            "5C:CF:7F:00:00:01:02",
            "5CCF7F00000",
            "5C.CF.7F.00.00.01",
            "",
            "5CCF7F00000é",
            "5éCF7F00000",
            "é:CF:7F:00:00:01",
        ] {
            assert_eq!(parse_mac(bad), None, "{bad}");
        }
    }

    #[test]
    fn generic_clients_have_no_device_headers() {
        assert_eq!(parse(&req(&[("User-Agent", "ESP32 HTTP Client/1.0")])), Ok(None));
    }

    #[test]
    fn bad_values_are_named() {
        let e = parse(&req(&[("x-ESP8266-STA-MAC", "not-a-mac")])).unwrap_err();
        assert!(e.contains("sta-mac"), "{e}");
        let e = parse(&req(&[("x-ESP8266-free-space", "12")])).unwrap_err();
        assert!(e.contains("missing"), "{e}");
        let long = "1".repeat(10_000);
        let e =
            parse(&req(&[("x-ESP32-STA-MAC", "AA:BB:CC:DD:EE:FF"), ("x-ESP32-version", &long)])).unwrap_err();
        assert!(e.contains("10000 characters"), "{e}");
        let e = parse(&req(&[("x-ESP32-STA-MAC", "AA:BB:CC:DD:EE:FF"), ("x-ESP32-free-space", "lots")]))
            .unwrap_err();
        assert!(e.contains("not a number"), "{e}");
    }
}
