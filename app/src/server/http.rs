//! The slice of HTTP/1.x the update endpoint needs, with hard limits: one request per connection
//! (devices send `Connection: close`, HTTP/1.0), GET and HEAD, answers always with
//! `Content-Length`, never chunked (the ESP8266 reads the body raw).

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// A parsed request head.
#[derive(Debug, Clone)]
pub struct Request {
    /// `GET`, `HEAD`, …
    pub method: String,
    /// The path, without query string.
    pub path: String,
    /// The query string, if any.
    pub query: Option<String>,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor_version: u8,
    /// Headers in the order received (names as sent).
    pub headers: Vec<(String, String)>,
}

impl Request {
    /// A header value by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// All headers, one `name: value` per line (for the request history), credentials redacted:
    /// the history is for diagnosis and must not become a store of passwords.
    pub fn headers_text(&self) -> String {
        self.headers
            .iter()
            .map(|(n, v)| {
                let secret = CREDENTIAL_HEADERS.iter().any(|c| n.eq_ignore_ascii_case(c));
                format!("{n}: {}", if secret { REDACTED } else { v })
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Headers whose values are credentials.
const CREDENTIAL_HEADERS: [&str; 3] = ["Authorization", "Proxy-Authorization", "Cookie"];

/// What stands in for a credential's value wherever requests are recorded.
pub const REDACTED: &str = "(redacted)";

/// Why no request could be read; each maps to an answer (or to silently closing).
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The client sent nothing parsable in time.
    #[error("no complete request within {0:?}")]
    Timeout(Duration),
    /// The head exceeded the limit (431).
    #[error("request head larger than {0} bytes")]
    TooLarge(usize),
    /// Not HTTP (400).
    #[error("malformed request: {0}")]
    Malformed(String),
    /// The connection closed first.
    #[error("connection closed before a request")]
    Closed,
}

/// Reads one request head (and ignores any body), within `limit` bytes and `timeout`.
pub async fn read_request<S: AsyncRead + Unpin>(
    stream: &mut S,
    limit: usize,
    timeout: Duration,
) -> Result<Request, ReadError> {
    tokio::time::timeout(timeout, read_head(stream, limit)).await.map_err(|_| ReadError::Timeout(timeout))?
}

async fn read_head<S: AsyncRead + Unpin>(stream: &mut S, limit: usize) -> Result<Request, ReadError> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    loop {
        let n = stream.read(&mut chunk).await.map_err(|_| ReadError::Closed)?;
        if n == 0 {
            return Err(if buf.is_empty() {
                ReadError::Closed
            } else {
                ReadError::Malformed("connection closed in the middle of the request".into())
            });
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf) {
            Ok(httparse::Status::Complete(_)) => {
                let target = req.path.unwrap_or("/");
                let (path, query) = match target.split_once('?') {
                    Some((p, q)) => (p.to_string(), Some(q.to_string())),
                    None => (target.to_string(), None),
                };
                return Ok(Request {
                    method: req.method.unwrap_or("").to_string(),
                    path,
                    query,
                    minor_version: req.version.unwrap_or(0),
                    headers: req
                        .headers
                        .iter()
                        .map(|h| (h.name.to_string(), String::from_utf8_lossy(h.value).into_owned()))
                        .collect(),
                });
            }
            Ok(httparse::Status::Partial) if buf.len() >= limit => return Err(ReadError::TooLarge(limit)),
            Ok(httparse::Status::Partial) => {}
            Err(httparse::Error::TooManyHeaders) => return Err(ReadError::TooLarge(limit)),
            Err(e) => return Err(ReadError::Malformed(e.to_string())),
        }
        if buf.len() >= limit {
            return Err(ReadError::TooLarge(limit));
        }
    }
}

/// The reason phrase for the codes we send.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        206 => "Partial Content",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        416 => "Range Not Satisfiable",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

/// Writes a response head. `Content-Length` and `Connection: close` are always sent.
pub async fn write_head<S: AsyncWrite + Unpin>(
    stream: &mut S,
    status: u16,
    content_length: u64,
    extra: &[(&str, String)],
) -> std::io::Result<()> {
    let mut head = format!("HTTP/1.1 {status} {}\r\nServer: OTA Forge\r\n", reason_phrase(status));
    for (name, value) in extra {
        head.push_str(name);
        head.push_str(": ");
        head.push_str(value);
        head.push_str("\r\n");
    }
    head.push_str(&format!("Content-Length: {content_length}\r\nConnection: close\r\n\r\n"));
    stream.write_all(head.as_bytes()).await
}

/// Writes a short plain-text answer (errors, 304s): the reason is readable with curl.
pub async fn write_text<S: AsyncWrite + Unpin>(
    stream: &mut S,
    status: u16,
    text: &str,
    extra: &[(&str, String)],
    head_only: bool,
) -> std::io::Result<()> {
    // 304 must not carry a body.
    let body = if status == 304 || head_only { "" } else { text };
    let mut headers = extra.to_vec();
    if !body.is_empty() {
        headers.push(("Content-Type", "text/plain; charset=utf-8".into()));
    }
    write_head(stream, status, body.len() as u64, &headers).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.flush().await
}

/// A byte range request (`Range: bytes=a-b`, `bytes=a-`, `bytes=-n`) resolved against `len`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeAnswer {
    /// No (usable) Range header: send everything with 200.
    Full,
    /// Send `start..=end` with 206.
    #[allow(missing_docs)]
    Partial { start: u64, end: u64 },
    /// 416.
    Unsatisfiable,
}

/// Resolves a `Range` header. Multiple ranges are answered with the whole file (allowed by RFC 9110).
pub fn resolve_range(header: Option<&str>, len: u64) -> RangeAnswer {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else { return RangeAnswer::Full };
    if spec.contains(',') {
        return RangeAnswer::Full;
    }
    let Some((a, b)) = spec.trim().split_once('-') else { return RangeAnswer::Full };
    let parse = |s: &str| s.trim().parse::<u64>().ok();
    match (a.trim().is_empty(), parse(a), parse(b)) {
        (true, _, Some(n)) if n > 0 && len > 0 => {
            RangeAnswer::Partial { start: len.saturating_sub(n), end: len - 1 }
        }
        (true, _, _) => RangeAnswer::Unsatisfiable,
        (false, Some(start), end) => {
            if start >= len {
                return RangeAnswer::Unsatisfiable;
            }
            match (end, b.trim().is_empty()) {
                (_, true) => RangeAnswer::Partial { start, end: len - 1 },
                (Some(e), _) if e >= start => RangeAnswer::Partial { start, end: e.min(len - 1) },
                _ => RangeAnswer::Full,
            }
        }
        (false, None, _) => RangeAnswer::Full,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_follow_rfc_9110() {
        assert_eq!(resolve_range(None, 100), RangeAnswer::Full);
        assert_eq!(resolve_range(Some("bytes=0-0"), 100), RangeAnswer::Partial { start: 0, end: 0 });
        assert_eq!(resolve_range(Some("bytes=10-19"), 100), RangeAnswer::Partial { start: 10, end: 19 });
        assert_eq!(resolve_range(Some("bytes=90-"), 100), RangeAnswer::Partial { start: 90, end: 99 });
        assert_eq!(resolve_range(Some("bytes=90-500"), 100), RangeAnswer::Partial { start: 90, end: 99 });
        assert_eq!(resolve_range(Some("bytes=-10"), 100), RangeAnswer::Partial { start: 90, end: 99 });
        assert_eq!(resolve_range(Some("bytes=100-"), 100), RangeAnswer::Unsatisfiable);
        assert_eq!(resolve_range(Some("bytes=-0"), 100), RangeAnswer::Unsatisfiable);
        assert_eq!(resolve_range(Some("bytes=5-2"), 100), RangeAnswer::Full);
        assert_eq!(resolve_range(Some("items=1-2"), 100), RangeAnswer::Full);
        assert_eq!(resolve_range(Some("bytes=0-1,5-6"), 100), RangeAnswer::Full);
    }

    #[tokio::test]
    async fn reads_http10_heads_and_enforces_the_size_limit() {
        let raw = b"GET /update?x=1 HTTP/1.0\r\nHost: a\r\nx-ESP8266-STA-MAC: AA:BB:CC:DD:EE:FF\r\n\r\n";
        let mut s = &raw[..];
        let r = read_request(&mut s, 8192, Duration::from_secs(1)).await.unwrap();
        assert_eq!((r.method.as_str(), r.path.as_str(), r.minor_version), ("GET", "/update", 0));
        assert_eq!(r.header("X-esp8266-sta-mac"), Some("AA:BB:CC:DD:EE:FF"));
        let raw = b"GET / HTTP/1.0\r\nauthorization: Basic ZGV2OnMzY3JldA==\r\nHost: a\r\n\r\n";
        let r = read_request(&mut &raw[..], 8192, Duration::from_secs(1)).await.unwrap();
        assert_eq!(r.headers_text(), format!("authorization: {REDACTED}\nHost: a"));
        let big = format!("GET / HTTP/1.0\r\nX: {}\r\n\r\n", "a".repeat(100_000));
        let mut s = big.as_bytes();
        assert!(matches!(
            read_request(&mut s, 8192, Duration::from_secs(1)).await,
            Err(ReadError::TooLarge(_))
        ));
        let mut s = &b"\x16\x03\x01garbage\r\n\r\n"[..];
        assert!(matches!(
            read_request(&mut s, 8192, Duration::from_secs(1)).await,
            Err(ReadError::Malformed(_))
        ));
    }
}
