//! The Arduino cores' HTTP client, as far as an update check uses it: the request head byte for
//! byte (header order included), HTTP/1.0, one request per connection; the answer read line by
//! line the way `handleHeaderResponse` reads it.
//!
//! ESP32 facts are from arduino-esp32 master (2026) `libraries/HTTPClient/src/HTTPClient.cpp`
//! (`sendHeader`, `handleHeaderResponse`, `collectHeaders`, `useHTTP10`), `HTTPClient.h`, and
//! `libraries/HTTPUpdate/src/HTTPUpdate.cpp` (`handleUpdate`); the 3.x `HTTPClient.cpp` with
//! `NetworkClient` (the index's 3.x snapshot) has the same request and header handling. The
//! 3.0.x `HTTPUpdate.cpp` itself could not be read; where master may differ from it, it says so.

use std::io;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};

use super::identity::Identity;
use super::tls::{self, TlsFailure};

/// What the device puts in the `x-…` headers.
#[derive(Debug, Clone)]
pub struct Report {
    /// `getFreeSketchSpace()`.
    pub free_space: usize,
    /// `getSketchSize()`.
    pub sketch_size: usize,
    /// `getSketchMD5()`, lower-case hex (both cores; sent only when not empty).
    pub sketch_md5: String,
    /// The running partition's SHA-256 (ESP32): `esp_partition_get_sha256`, i.e. the digest
    /// appended to the image (not a hash of the file), upper-case hex.
    pub sketch_sha256: Option<String>,
    /// The version the sketch passes to `update()`; empty sends no version header.
    pub version: String,
}

/// What a 3.x ESP32 in station mode sends as `x-ESP32-AP-MAC`: `WiFi.softAPmacAddress()` is
/// `AP.macAddress()`, `NetworkInterface::macAddress()` of an AP interface that was never enabled
/// (`_esp_netif == NULL`), which formats its zero-filled buffer (`libraries/Network/src/
/// NetworkInterface.cpp`, `libraries/WiFi/src/AP.cpp`: the netif is made in `onEnable`).
pub const ESP32_STATION_AP_MAC: &str = "00:00:00:00:00:00";

/// Whether the chip has Wi-Fi (`SOC_WIFI_SUPPORTED` in ESP-IDF's `components/soc/<chip>/include/
/// soc/soc_caps.h`: not on the ESP32-H2 and ESP32-P4). HTTPUpdate sends STA-MAC and AP-MAC only
/// `#if SOC_WIFI_SUPPORTED`.
pub fn has_wifi(chip: otaforge_firmware::Chip) -> bool {
    use otaforge_firmware::Chip;
    !matches!(chip, Chip::Esp32H2 | Chip::Esp32P4)
}

/// The request head `ESPhttpUpdate.update(client, url, version)` (ESP8266) or
/// `httpUpdate.update(client, url, version)` (ESP32) sends.
pub fn request_head(id: &Identity, host: &str, port: u16, path: &str, r: &Report) -> String {
    let host_line = if port == 80 || port == 443 { host.to_string() } else { format!("{host}:{port}") };
    let mut h = format!("GET {path} HTTP/1.0\r\nHost: {host_line}\r\n");
    let mut add = |n: &str, v: &str| {
        h.push_str(n);
        h.push_str(": ");
        h.push_str(v);
        h.push_str("\r\n");
    };
    if id.chip.is_esp8266() {
        // ESP8266HTTPClient: User-Agent, then Connection, then the added headers in order.
        add("User-Agent", "ESP8266-http-Update");
        add("Connection", "close");
        add("x-ESP8266-Chip-ID", &id.chip_id().to_string());
        add("x-ESP8266-STA-MAC", &id.sta_mac());
        add("x-ESP8266-AP-MAC", &id.ap_mac());
        add("x-ESP8266-free-space", &r.free_space.to_string());
        add("x-ESP8266-sketch-size", &r.sketch_size.to_string());
        add("x-ESP8266-sketch-md5", &r.sketch_md5);
        add("x-ESP8266-chip-size", &id.flash_size.to_string());
        add("x-ESP8266-sdk-version", id.sdk_version());
        add("x-ESP8266-mode", "sketch");
        if !r.version.is_empty() {
            add("x-ESP8266-version", &r.version);
        }
        // ESP8266HTTPClient adds Content-Length even without a body.
        add("Content-Length", "0");
    } else {
        // HTTPClient::sendHeader: request line, Host (port unless 80/443), User-Agent, then
        // Connection: `useHTTP10(true)` sets `_reuse = !useHTTP10`, so "close"; no
        // Accept-Encoding (HTTP/1.1 only) and no Authorization (none set). Then the added headers
        // in HTTPUpdate::handleUpdate's order; a GET has no body, so no Content-Length
        // (`sendRequest` adds it only for `payload && size > 0`).
        add("User-Agent", "ESP32-http-Update");
        add("Connection", "close");
        add("Cache-Control", "no-cache");
        // `Network.macAddress()`: `esp_base_mac_addr_get` (NetworkManager.cpp), the efuse MAC.
        add("x-ESP32-BASE-MAC", &id.sta_mac());
        if has_wifi(id.chip) {
            // `WiFi.macAddress()`: the station interface's MAC, the base MAC (ESP_MAC_WIFI_STA).
            add("x-ESP32-STA-MAC", &id.sta_mac());
            add("x-ESP32-AP-MAC", ESP32_STATION_AP_MAC);
        }
        add("x-ESP32-free-space", &r.free_space.to_string());
        add("x-ESP32-sketch-size", &r.sketch_size.to_string());
        if !r.sketch_md5.is_empty() {
            add("x-ESP32-sketch-md5", &r.sketch_md5);
        }
        if let Some(sha) = r.sketch_sha256.as_deref().filter(|s| !s.is_empty()) {
            add("x-ESP32-sketch-sha256", sha);
        }
        add("x-ESP32-chip-size", &id.flash_size.to_string());
        add("x-ESP32-sdk-version", id.sdk_version());
        // "spiffs", "fatfs", "littlefs" or "flashfs" for the filesystem calls; the firmware
        // updates the sketch.
        add("x-ESP32-mode", "sketch");
        if !r.version.is_empty() {
            add("x-ESP32-version", &r.version);
        }
    }
    h.push_str("\r\n");
    h
}

/// Why reading from the server stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadFail {
    /// The connection closed (cleanly, as far as TLS goes).
    Closed,
    /// Nothing arrived in time.
    Timeout,
    /// The TLS layer failed (record too large, bad record…).
    Tls(TlsFailure),
}

/// The answer's head.
#[derive(Debug, Clone, Default)]
pub struct Head {
    /// Status code (0 when there was no status line).
    pub code: u16,
    /// `getSize()`: Content-Length, or -1 when absent.
    pub size: i64,
    /// `x-MD5` as the core collects it: the ESP8266 joins repeated headers with commas; the ESP32
    /// keeps the last one (`handleHeaderResponse` overwrites the collected value; the joining code
    /// is commented out there).
    pub x_md5: Option<String>,
    /// `x-version`.
    pub x_version: Option<String>,
    /// The (last) Transfer-Encoding header, if any; the updater decides what it accepts.
    pub transfer_encoding: Option<String>,
}

/// Arduino's `String::toInt()`: `atol`, i.e. leading blanks, a sign, digits, whatever follows
/// ignored; 0 when there are no digits; saturated like newlib's `strtol` on a 32-bit `long`.
pub fn arduino_to_int(s: &str) -> i32 {
    let t = s.trim_start_matches([' ', '\t', '\n', '\r', '\x0b', '\x0c']);
    let (neg, digits) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let mut v: i64 = 0;
    for b in digits.bytes().take_while(u8::is_ascii_digit) {
        v = (v * 10 + i64::from(b - b'0')).min(i64::from(i32::MAX) + 1);
    }
    let v = if neg { -v } else { v };
    v.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32
}

/// The receiving side of the connection, with the bytes read ahead (for `peek`).
pub struct Wire<S> {
    stream: S,
    buf: Vec<u8>,
    chip: otaforge_firmware::Chip,
}

impl<S: AsyncRead + Unpin> Wire<S> {
    /// Reads from `stream`; TLS errors are worded for `chip`'s library.
    pub fn new(stream: S, chip: otaforge_firmware::Chip) -> Wire<S> {
        Wire { stream, buf: Vec::new(), chip }
    }

    /// Reads more, waiting at most `timeout`.
    async fn more(&mut self, timeout: Duration) -> Result<(), ReadFail> {
        let mut chunk = [0u8; 4096];
        match tokio::time::timeout(timeout, self.stream.read(&mut chunk)).await {
            Err(_) => Err(ReadFail::Timeout),
            Ok(Ok(0)) => Err(ReadFail::Closed),
            Ok(Ok(n)) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Ok(())
            }
            Ok(Err(e)) => Err(self.fail(&e)),
        }
    }

    /// A read error: BearSSL's verdict (a record too large, a bad record), or its I/O error for a
    /// transport that closed without close_notify.
    fn fail(&self, e: &io::Error) -> ReadFail {
        ReadFail::Tls(tls::classify(self.chip, e))
    }

    /// One line without its `\r\n`.
    async fn line(&mut self, timeout: Duration) -> Result<String, ReadFail> {
        loop {
            if let Some(p) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=p).collect();
                return Ok(String::from_utf8_lossy(&line).trim_end_matches(['\r', '\n']).to_string());
            }
            if self.buf.len() > 64 * 1024 {
                return Ok(String::from_utf8_lossy(&std::mem::take(&mut self.buf)).into_owned());
            }
            self.more(timeout).await?;
        }
    }

    /// The answer's head: lines until an empty one, each silence bounded by `timeout`.
    pub async fn head(&mut self, timeout: Duration) -> Result<Head, ReadFail> {
        if !self.chip.is_esp8266() {
            return self.esp32_head(timeout).await;
        }
        let mut head = Head { size: -1, ..Default::default() };
        loop {
            let line = self.line(timeout).await?;
            if let Some(rest) = line.strip_prefix("HTTP/1.") {
                head.code =
                    rest.get(2..).and_then(|r| r.split(' ').next()).and_then(|c| c.parse().ok()).unwrap_or(0);
            } else if let Some((name, value)) = line.split_once(':').filter(|(n, _)| !n.is_empty()) {
                let value = value.trim().to_string();
                let join = |old: Option<String>| Some(old.map_or(value.clone(), |o| format!("{o},{value}")));
                match name.to_ascii_lowercase().as_str() {
                    "content-length" => head.size = value.parse().unwrap_or(0),
                    "x-md5" => head.x_md5 = join(head.x_md5.take()),
                    "x-version" => head.x_version = Some(value),
                    "transfer-encoding" => head.transfer_encoding = Some(value),
                    _ => {}
                }
            } else if line.trim().is_empty() {
                return Ok(head);
            }
        }
    }

    /// arduino-esp32 `HTTPClient::handleHeaderResponse`: each line `trim()`med; the first line is
    /// the status line whatever it says, its code the token after the first space
    /// (`indexOf(' ') + 1` to the next space) through `toInt()`; every later line is split at its
    /// first ':' (a line without one is its own name and value; one starting with ':' is
    /// skipped); an empty line ends the head.
    async fn esp32_head(&mut self, timeout: Duration) -> Result<Head, ReadFail> {
        let mut head = Head { size: -1, ..Default::default() };
        let mut first = true;
        loop {
            let raw = self.line(timeout).await?;
            let line = raw.trim();
            if std::mem::take(&mut first) {
                let token = line.find(' ').map_or(line, |i| &line[i + 1..]).split(' ').next().unwrap_or("");
                head.code = u16::try_from(arduino_to_int(token)).unwrap_or(0);
            } else if !line.starts_with(':') {
                let (name, value) = line.split_once(':').unwrap_or((line, line));
                let value = value.trim().to_string();
                match name.to_ascii_lowercase().as_str() {
                    "content-length" => head.size = i64::from(arduino_to_int(&value)),
                    "x-md5" => head.x_md5 = Some(value),
                    "x-version" => head.x_version = Some(value),
                    "transfer-encoding" => head.transfer_encoding = Some(value),
                    _ => {}
                }
            }
            if line.is_empty() {
                return Ok(head);
            }
        }
    }

    /// The next `n` bytes without consuming them (`peekBytes`); fewer when the stream ends.
    pub async fn peek(&mut self, n: usize, timeout: Duration) -> Result<&[u8], ReadFail> {
        while self.buf.len() < n {
            self.more(timeout).await?;
        }
        Ok(&self.buf[..n])
    }

    /// Up to `max` body bytes (`readBytes`), waiting at most `timeout` for the first.
    pub async fn read(&mut self, max: usize, timeout: Duration) -> Result<Vec<u8>, ReadFail> {
        if self.buf.is_empty() {
            self.more(timeout).await?;
        }
        let n = max.min(self.buf.len());
        Ok(self.buf.drain(..n).collect())
    }

    /// The stream, to close it.
    pub fn into_inner(self) -> S {
        self.stream
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use otaforge_firmware::Chip;

    fn report() -> Report {
        Report {
            free_space: 1_044_480,
            sketch_size: 300_016,
            sketch_md5: "0123456789abcdef0123456789abcdef".into(),
            sketch_sha256: None,
            version: "1.0.0".into(),
        }
    }

    #[test]
    fn the_esp8266_head_byte_for_byte() {
        let id = Identity::numbered(Chip::Esp8266, 0xA1B2C3);
        let h = request_head(&id, "ota.test", 3443, "/update", &report());
        assert_eq!(
            h,
            "GET /update HTTP/1.0\r\nHost: ota.test:3443\r\nUser-Agent: ESP8266-http-Update\r\nConnection: close\r\n\
             x-ESP8266-Chip-ID: 10597059\r\nx-ESP8266-STA-MAC: 18:FE:34:A1:B2:C3\r\nx-ESP8266-AP-MAC: 1A:FE:34:A1:B2:C3\r\n\
             x-ESP8266-free-space: 1044480\r\nx-ESP8266-sketch-size: 300016\r\n\
             x-ESP8266-sketch-md5: 0123456789abcdef0123456789abcdef\r\nx-ESP8266-chip-size: 4194304\r\n\
             x-ESP8266-sdk-version: 2.2.2-dev(38a443e)\r\nx-ESP8266-mode: sketch\r\nx-ESP8266-version: 1.0.0\r\n\
             Content-Length: 0\r\n\r\n"
        );
        let mut r = report();
        r.version.clear();
        assert!(!request_head(&id, "ota.test", 443, "/u", &r).contains("x-ESP8266-version"));
        assert!(request_head(&id, "ota.test", 443, "/u", &r).contains("Host: ota.test\r\n"));
    }

    #[test]
    fn the_esp32_head_byte_for_byte() {
        let id = Identity::numbered(Chip::Esp32, 0xA1B2C3);
        let mut r = report();
        r.sketch_sha256 = Some("AB".repeat(32));
        let h = request_head(&id, "ota.test", 3443, "/update/stable?name=hall", &r);
        assert_eq!(
            h,
            "GET /update/stable?name=hall HTTP/1.0\r\nHost: ota.test:3443\r\nUser-Agent: ESP32-http-Update\r\n\
             Connection: close\r\nCache-Control: no-cache\r\nx-ESP32-BASE-MAC: 24:0A:C4:A1:B2:C3\r\n\
             x-ESP32-STA-MAC: 24:0A:C4:A1:B2:C3\r\nx-ESP32-AP-MAC: 00:00:00:00:00:00\r\n\
             x-ESP32-free-space: 1044480\r\nx-ESP32-sketch-size: 300016\r\n\
             x-ESP32-sketch-md5: 0123456789abcdef0123456789abcdef\r\n\
             x-ESP32-sketch-sha256: ABABABABABABABABABABABABABABABABABABABABABABABABABABABABABABABAB\r\n\
             x-ESP32-chip-size: 4194304\r\nx-ESP32-sdk-version: v5.4.2-25-g858a988d6e\r\n\
             x-ESP32-mode: sketch\r\nx-ESP32-version: 1.0.0\r\n\r\n"
        );
        assert!(!h.contains("Content-Length"), "a GET without a body has none");
        // No version, no digests: those headers are left out; port 443 is not written.
        let mut r = report();
        r.version.clear();
        r.sketch_md5.clear();
        let h = request_head(&id, "ota.test", 443, "/u", &r);
        assert!(
            h.starts_with("GET /u HTTP/1.0\r\nHost: ota.test\r\nUser-Agent: ESP32-http-Update\r\n"),
            "{h}"
        );
        for absent in ["x-ESP32-version", "x-ESP32-sketch-md5", "x-ESP32-sketch-sha256"] {
            assert!(!h.contains(absent), "{absent} in {h}");
        }
        // A chip without Wi-Fi sends only its base MAC.
        let h2 = Identity::numbered(Chip::Esp32H2, 0x010203);
        let h = request_head(&h2, "ota.test", 443, "/u", &report());
        assert!(
            h.contains(
                "\r\nCache-Control: no-cache\r\nx-ESP32-BASE-MAC: 24:0A:C4:01:02:03\r\nx-ESP32-free-space: "
            ),
            "{h}"
        );
        assert!(!h.contains("STA-MAC") && !h.contains("AP-MAC"), "{h}");
        assert!(has_wifi(Chip::Esp32C6) && !has_wifi(Chip::Esp32P4));
    }

    #[tokio::test]
    async fn esp32_heads_are_read_like_its_http_client() {
        let t = Duration::from_secs(1);
        let answer: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length:  1234 \r\nX-MD5: abc\r\nx-md5: def\r\n\
            Transfer-Encoding: identity\r\nx-version: 2.0\r\n  \r\n\xE9";
        let mut w = Wire::new(answer, Chip::Esp32);
        let h = w.head(t).await.unwrap();
        assert_eq!((h.code, h.size), (200, 1234));
        assert_eq!(h.x_md5.as_deref(), Some("def"), "the last x-MD5 wins");
        assert_eq!(h.transfer_encoding.as_deref(), Some("identity"));
        assert_eq!(w.peek(1, t).await.unwrap(), [0xE9], "a blank line ends the head");
        // The first line is the status line whatever it says: the token after its first space.
        for (line, code) in
            [("ICY 304 Not Modified", 304), ("HTTP/1.0 404", 404), ("200", 200), ("garbage", 0)]
        {
            let text = format!("{line}\r\nContent-Length: 7x\r\n\r\n");
            let h = Wire::new(text.as_bytes(), Chip::Esp32C3).head(t).await.unwrap();
            assert_eq!((h.code, h.size), (code, 7), "{line}");
        }
        // A later status-like line is just a header; no head at all gives code 0.
        let h =
            Wire::new(&b"HTTP/1.0 200 OK\r\nHTTP/1.0 500 x\r\n\r\n"[..], Chip::Esp32).head(t).await.unwrap();
        assert_eq!(h.code, 200);
        assert_eq!(Wire::new(&b"\r\n"[..], Chip::Esp32).head(t).await.unwrap().code, 0);
        assert_eq!(arduino_to_int("  -42abc"), -42);
        assert_eq!(arduino_to_int("99999999999"), i32::MAX);
        assert_eq!(arduino_to_int("x1"), 0);
    }

    #[tokio::test]
    async fn heads_are_read_like_the_core() {
        let answer: &[u8] =
            b"HTTP/1.0 200 OK\r\nContent-Length: 1234\r\nX-MD5: abc\r\nx-md5: def\r\nx-version: 2.0\r\n\r\n\xE9\x03";
        let mut w = Wire::new(answer, Chip::Esp8266);
        let h = w.head(Duration::from_secs(1)).await.unwrap();
        assert_eq!((h.code, h.size), (200, 1234));
        assert_eq!(h.x_md5.as_deref(), Some("abc,def"));
        assert_eq!(h.x_version.as_deref(), Some("2.0"));
        assert_eq!(w.peek(2, Duration::from_secs(1)).await.unwrap(), [0xE9, 0x03]);
        assert_eq!(w.peek(3, Duration::from_secs(1)).await, Err(ReadFail::Closed));
        let mut w = Wire::new(&b"garbage\r\n\r\n"[..], Chip::Esp8266);
        assert_eq!(w.head(Duration::from_secs(1)).await.unwrap().code, 0);
    }
}
