//! The Arduino cores' HTTP client, as far as an update check uses it: the request head byte for
//! byte (header order included), HTTP/1.0, one request per connection; the answer read line by
//! line the way `handleHeaderResponse` reads it.

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
    /// `getSketchMD5()` (ESP8266).
    pub sketch_md5: String,
    /// The running partition's SHA-256 (ESP32).
    pub sketch_sha256: Option<String>,
    /// The version the sketch passes to `update()`; empty sends no version header.
    pub version: String,
}

/// The request head `ESPhttpUpdate.update(client, url, version)` sends.
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
    } else {
        // arduino-esp32 HTTPClient: Connection, then User-Agent, then the added headers.
        add("Connection", "close");
        add("User-Agent", "ESP32-http-Update");
        add("Cache-Control", "no-cache");
        add("x-ESP32-STA-MAC", &id.sta_mac());
        add("x-ESP32-AP-MAC", &id.ap_mac());
        add("x-ESP32-free-space", &r.free_space.to_string());
        add("x-ESP32-sketch-size", &r.sketch_size.to_string());
        if let Some(sha) = &r.sketch_sha256 {
            add("x-ESP32-sketch-sha256", sha);
        }
        add("x-ESP32-chip-size", &id.flash_size.to_string());
        add("x-ESP32-sdk-version", id.sdk_version());
        add("x-ESP32-mode", "sketch");
        if !r.version.is_empty() {
            add("x-ESP32-version", &r.version);
        }
    }
    add("Content-Length", "0");
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
    /// `x-MD5`, values of repeated headers joined with commas as the core collects them.
    pub x_md5: Option<String>,
    /// `x-version`.
    pub x_version: Option<String>,
    /// A Transfer-Encoding other than identity.
    pub transfer_encoding: Option<String>,
}

/// The receiving side of the connection, with the bytes read ahead (for `peek`).
pub struct Wire<S> {
    stream: S,
    buf: Vec<u8>,
    chip: crate::firmware::Chip,
}

impl<S: AsyncRead + Unpin> Wire<S> {
    /// Reads from `stream`; TLS errors are worded for `chip`'s library.
    pub fn new(stream: S, chip: crate::firmware::Chip) -> Wire<S> {
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
    use crate::firmware::Chip;

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
