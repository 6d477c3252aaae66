//! What a device says about itself in the `x-ESP8266-*` / `x-ESP32-*` headers of an update check
//! (ESP8266httpUpdate and arduino-esp32 HTTPUpdate). Names are matched case-insensitively.

use super::http::Request;

/// Which updater sent the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Family {
    /// Arduino ESP8266 core, `ESP8266httpUpdate`.
    Esp8266,
    /// arduino-esp32 `HTTPUpdate` (any ESP32-family chip).
    Esp32,
}

impl Family {
    /// "ESP8266" or "ESP32".
    pub fn name(self) -> &'static str {
        match self {
            Family::Esp8266 => "ESP8266",
            Family::Esp32 => "ESP32",
        }
    }
    fn prefix(self) -> &'static str {
        match self {
            Family::Esp8266 => "x-esp8266-",
            Family::Esp32 => "x-esp32-",
        }
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
    /// Station MAC, upper-case `AA:BB:CC:DD:EE:FF`.
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
    let get = |field: &str| req.header(&format!("{}{field}", family.prefix())).map(str::trim);
    let text = |field: &str| -> Result<Option<String>, String> {
        match get(field) {
            None | Some("") => Ok(None),
            Some(v) if v.chars().count() > MAX_VALUE => Err(format!(
                "{}{field} is {} characters long (at most {MAX_VALUE})",
                family.prefix(),
                v.chars().count()
            )),
            Some(v) if v.chars().any(char::is_control) => {
                Err(format!("{}{field} contains control characters", family.prefix()))
            }
            Some(v) => Ok(Some(v.to_string())),
        }
    };
    let number = |field: &str| -> Result<Option<u64>, String> {
        match get(field) {
            None | Some("") => Ok(None),
            Some(v) => v
                .parse()
                .map(Some)
                .map_err(|_| format!("{}{field} is not a number: \"{}\"", family.prefix(), short(v))),
        }
    };
    let hex = |field: &str, len: usize| -> Result<Option<String>, String> {
        match get(field) {
            None | Some("") => Ok(None),
            Some(v) if v.len() == len && v.bytes().all(|b| b.is_ascii_hexdigit()) => {
                Ok(Some(v.to_ascii_lowercase()))
            }
            Some(v) => Err(format!("{}{field} is not {len} hex digits: \"{}\"", family.prefix(), short(v))),
        }
    };
    let sta_mac = match get("sta-mac") {
        Some(m) => parse_mac(m)
            .ok_or_else(|| format!("{}sta-mac is not a MAC address: \"{}\"", family.prefix(), short(m)))?,
        None => {
            return Err(format!(
                "{}sta-mac is missing: the server cannot tell devices apart",
                family.prefix()
            ));
        }
    };
    let ap_mac = get("ap-mac").and_then(parse_mac);
    let mode = match get("mode").map(str::to_ascii_lowercase).as_deref() {
        None | Some("") | Some("sketch") => Mode::Sketch,
        Some("spiffs") | Some("filesystem") | Some("littlefs") => Mode::Filesystem,
        Some("version") => Mode::Version,
        Some(other) => {
            return Err(format!(
                "{}mode \"{}\" is not sketch, spiffs or version",
                family.prefix(),
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

/// Normalises a MAC to upper-case colon form; `None` if it is not one.
pub fn parse_mac(s: &str) -> Option<String> {
    let hex: String = s.trim().chars().filter(|c| !matches!(c, ':' | '-')).collect();
    let sep_ok = s.trim().len() == 17 || s.trim().len() == 12;
    (sep_ok && hex.len() == 12 && hex.bytes().all(|b| b.is_ascii_hexdigit())).then(|| {
        hex.to_ascii_uppercase()
            .as_bytes()
            .chunks(2)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect::<Vec<_>>()
            .join(":")
    })
}

fn starts_with_ci(s: &str, prefix: &str) -> bool {
    s.len() >= prefix.len() && s.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
}

fn short(s: &str) -> String {
    if s.chars().count() > 40 { s.chars().take(37).collect::<String>() + "…" } else { s.to_string() }
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
