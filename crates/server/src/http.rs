//! The slice of HTTP/1.x the update endpoint needs, with hard limits: one request per connection
//! (devices send `Connection: close`, HTTP/1.0), GET and HEAD, answers always with
//! `Content-Length`, never chunked (the ESP8266 reads the body raw).

use std::borrow::Cow;
use std::time::Duration;

use otaforge_protocol::REDACTED;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

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
    /// the history is for diagnosis and must not become a store of passwords. Characters that
    /// would hide or reorder what is shown are written as escapes ([`printable`]).
    pub fn headers_text(&self) -> String {
        self.headers
            .iter()
            .map(|(n, v)| {
                let secret = CREDENTIAL_HEADERS.iter().any(|c| n.eq_ignore_ascii_case(c));
                format!("{n}: {}", if secret { Cow::Borrowed(REDACTED) } else { printable(v) })
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Headers whose values are credentials.
const CREDENTIAL_HEADERS: [&str; 3] = ["Authorization", "Proxy-Authorization", "Cookie"];

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
    /// A blank line, or the client closed its side having sent nothing (400, at once).
    #[error("empty request")]
    Empty,
    /// The connection failed first (nobody to answer).
    #[error("connection lost before a request")]
    Closed,
}

/// Reads one request head (and ignores any body) of at most `limit` bytes, by `started +
/// timeout` (`started`: when the connection was accepted, so the TLS handshake and the head
/// share one header timeout).
pub async fn read_request<S: AsyncRead + Unpin>(
    stream: &mut S,
    limit: usize,
    timeout: Duration,
    started: Instant,
) -> Result<Request, ReadError> {
    tokio::time::timeout_at(started + timeout, read_head(stream, limit))
        .await
        .map_err(|_| ReadError::Timeout(timeout))?
}

async fn read_head<S: AsyncRead + Unpin>(stream: &mut S, limit: usize) -> Result<Request, ReadError> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    loop {
        let n = match stream.read(&mut chunk).await {
            Ok(n) => n,
            // TLS without close_notify: the client closed its side all the same.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => 0,
            Err(_) => return Err(ReadError::Closed),
        };
        if n == 0 {
            return Err(if buf.is_empty() {
                ReadError::Empty
            } else {
                ReadError::Malformed("connection closed in the middle of the request".into())
            });
        }
        buf.extend_from_slice(&chunk[..n]);
        // Only blank lines so far: an empty request. httparse would skip them (RFC 9112 2.2) and
        // wait the whole header timeout for a request line; one sent with them is still read.
        if buf.ends_with(b"\n") && buf.iter().all(|&b| b == b'\r' || b == b'\n') {
            return Err(ReadError::Empty);
        }
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf) {
            // The limit holds for the head itself, however it arrived.
            Ok(httparse::Status::Complete(len)) if len > limit => return Err(ReadError::TooLarge(limit)),
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
            // Unfinished at `limit` bytes: the head is longer than that.
            Ok(httparse::Status::Partial) if buf.len() >= limit => return Err(ReadError::TooLarge(limit)),
            Ok(httparse::Status::Partial) => {}
            Err(httparse::Error::TooManyHeaders) => return Err(ReadError::TooLarge(limit)),
            Err(e) => return Err(ReadError::Malformed(e.to_string())),
        }
    }
}

/// Characters that hide, reorder or break what is shown: controls (C0, DEL, C1), bidi
/// embeddings, overrides, isolates and marks, zero-width and invisible characters, line and
/// paragraph separators, the byte-order mark.
pub fn is_hidden(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{00AD}'
                | '\u{061C}'
                | '\u{180E}'
                | '\u{200B}'..='\u{200F}'
                | '\u{2028}'..='\u{202E}'
                | '\u{2060}'..='\u{2069}'
                | '\u{FEFF}'
                | '\u{FFF9}'..='\u{FFFB}'
        )
}

/// `s` with every [`is_hidden`] character written as an escape (`\u{202e}`), for anything a
/// client sent that is echoed, logged or recorded.
pub fn printable(s: &str) -> Cow<'_, str> {
    if !s.chars().any(is_hidden) {
        return Cow::Borrowed(s);
    }
    Cow::Owned(
        s.chars()
            .map(|c| if is_hidden(c) { c.escape_unicode().to_string() } else { c.to_string() })
            .collect(),
    )
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
        let r = read_request(&mut s, 8192, Duration::from_secs(1), Instant::now()).await.unwrap();
        assert_eq!((r.method.as_str(), r.path.as_str(), r.minor_version), ("GET", "/update", 0));
        assert_eq!(r.header("X-esp8266-sta-mac"), Some("AA:BB:CC:DD:EE:FF"));
        let raw = b"GET / HTTP/1.0\r\nauthorization: Basic ZGV2OnMzY3JldA==\r\nHost: a\r\n\r\n";
        let r = read_request(&mut &raw[..], 8192, Duration::from_secs(1), Instant::now()).await.unwrap();
        assert_eq!(r.headers_text(), format!("authorization: {REDACTED}\nHost: a"));
        let big = format!("GET / HTTP/1.0\r\nX: {}\r\n\r\n", "a".repeat(100_000));
        let mut s = big.as_bytes();
        assert!(matches!(
            read_request(&mut s, 8192, Duration::from_secs(1), Instant::now()).await,
            Err(ReadError::TooLarge(_))
        ));
        let mut s = &b"\x16\x03\x01garbage\r\n\r\n"[..];
        assert!(matches!(
            read_request(&mut s, 8192, Duration::from_secs(1), Instant::now()).await,
            Err(ReadError::Malformed(_))
        ));
    }

    /// A head of `len` bytes: a request line, headers, and one padding header to make up the rest.
    fn head_of(len: usize) -> Vec<u8> {
        let start = "GET /update HTTP/1.0\r\nHost: ota.test\r\nX-Pad: ";
        let pad = len - start.len() - 4;
        format!("{start}{}\r\n\r\n", "p".repeat(pad)).into_bytes()
    }

    #[tokio::test]
    async fn the_header_limit_is_exact_whatever_the_size() {
        let t = Duration::from_secs(1);
        for limit in [100, 600, 2047, 2048, 2049, 8192] {
            let ok = head_of(limit);
            assert_eq!(ok.len(), limit);
            let r = read_request(&mut &ok[..], limit, t, Instant::now()).await;
            assert!(r.is_ok(), "a head of exactly {limit} bytes: {r:?}");
            // Followed by body bytes in the same read: still only the head counts.
            let mut with_body = ok.clone();
            with_body.extend_from_slice(&[b'b'; 3000]);
            assert!(read_request(&mut &with_body[..], limit, t, Instant::now()).await.is_ok(), "{limit}");
            let over = head_of(limit + 1);
            let r = read_request(&mut &over[..], limit, t, Instant::now()).await;
            assert!(
                matches!(r, Err(ReadError::TooLarge(l)) if l == limit),
                "{} bytes, limit {limit}: {r:?}",
                over.len()
            );
        }
    }

    #[tokio::test]
    async fn an_empty_request_is_refused_without_waiting() {
        // Blank lines with the connection left open: answered at once, not at the timeout.
        for blank in [&b"\r\n"[..], b"\n", b"\r\n\r\n"] {
            let (mut client, mut server) = tokio::io::duplex(1024);
            client.write_all(blank).await.unwrap();
            let started = Instant::now();
            let r = read_request(&mut server, 8192, Duration::from_secs(5), started).await;
            assert!(matches!(r, Err(ReadError::Empty)), "{blank:?}: {r:?}");
            assert!(started.elapsed() < Duration::from_secs(1));
        }
        // A stray line break before a request sent with it is skipped, as RFC 9112 allows.
        let raw = b"\r\nGET /update HTTP/1.0\r\n\r\n";
        let r = read_request(&mut &raw[..], 8192, Duration::from_secs(1), Instant::now()).await.unwrap();
        assert_eq!(r.path, "/update");
        // Nothing at all, the client's side closed.
        assert!(matches!(
            read_request(&mut &b""[..], 8192, Duration::from_secs(5), Instant::now()).await,
            Err(ReadError::Empty)
        ));
    }

    #[test]
    fn hidden_characters_are_written_as_escapes() {
        assert_eq!(printable("kitchen 1.0"), "kitchen 1.0");
        assert_eq!(printable("a\u{202E}b\u{0085}c\u{2066}d\u{7}"), "a\\u{202e}b\\u{85}c\\u{2066}d\\u{7}");
        assert!(printable("é ü 中").chars().all(|c| !is_hidden(c)));
        for c in ['\u{200F}', '\u{061C}', '\u{FEFF}', '\u{2028}', '\u{9B}', '\u{0}'] {
            assert!(is_hidden(c), "{c:?}");
        }
    }
}
