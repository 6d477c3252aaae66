//! TLS for devices with small buffers.
//!
//! BearSSL on the ESP8266 advertises `max_fragment_length` (RFC 6066) from its buffer sizes and
//! aborts on any record larger than its receive buffer. rustls 0.23 does not implement the
//! extension, so we read it ourselves from the raw ClientHello (peeked, not consumed) and serve that
//! connection with a `ServerConfig` whose records fit. The certificate never depends on SNI:
//! devices using an IP host send the IP as SNI, which rustls drops.

use std::sync::Arc;

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// What to do with a client's `max_fragment_length`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum FragmentPolicy {
    /// Keep every record within what the client advertised (safe for any buffer size).
    #[default]
    Honour,
    /// Always send full 16 KB records (faster; breaks clients whose receive buffer is small).
    Ignore,
    /// Records of at most this many bytes (512, 1024, 2048 or 4096) to every client, also to
    /// those that do not advertise `max_fragment_length` (mbedTLS builds with a small
    /// `MBEDTLS_SSL_IN_CONTENT_LEN` that do not send it); a client that asks for less gets less.
    Limit(u16),
}

impl FragmentPolicy {
    /// The `max_fragment_length` code (1..=4: 2^(8+code) bytes) of a [`FragmentPolicy::Limit`];
    /// `Err` names the sizes that exist.
    pub fn limit_code(&self) -> Result<Option<u8>, String> {
        match *self {
            FragmentPolicy::Limit(bytes) => match bytes {
                512 => Ok(Some(1)),
                1024 => Ok(Some(2)),
                2048 => Ok(Some(3)),
                4096 => Ok(Some(4)),
                other => Err(format!(
                    "a record size of {other} bytes is not one TLS can agree on: use 512, 1024, 2048 or 4096"
                )),
            },
            _ => Ok(None),
        }
    }
}

/// One `ServerConfig` per record size a client can ask for.
pub struct TlsConfigs {
    full: Arc<ServerConfig>,
    /// Index n holds the config for 2^(9+n) bytes: 512, 1024, 2048, 4096.
    limited: [Arc<ServerConfig>; 4],
    policy: FragmentPolicy,
}

impl TlsConfigs {
    /// Builds the configs from PEM certificate and key (TLS 1.2 and 1.3, non-FIPS provider: the
    /// ESP8266 does not do Extended Master Secret, which FIPS mode requires).
    pub fn new(cert_pem: &str, key_pem: &str, policy: FragmentPolicy) -> Result<TlsConfigs, String> {
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
            .collect::<Result<_, _>>()
            .map_err(|e| format!("server certificate: {e}"))?;
        let key =
            PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| format!("server key: {e}"))?;
        let make = |fragment: Option<usize>| -> Result<Arc<ServerConfig>, String> {
            let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
            let mut cfg = ServerConfig::builder_with_provider(provider)
                .with_protocol_versions(&[&rustls::version::TLS12, &rustls::version::TLS13])
                .map_err(|e| e.to_string())?
                .with_no_client_auth()
                .with_single_cert(chain.clone(), key.clone_key())
                .map_err(|e| format!("server certificate and key do not fit together: {e}"))?;
            // rustls 0.23 counts the 5-byte record header in max_fragment_size.
            cfg.max_fragment_size = fragment.map(|f| f + 5);
            // A release's answer is sealed by the server itself (handler::sealed).
            cfg.enable_secret_extraction = true;
            Ok(Arc::new(cfg))
        };
        Ok(TlsConfigs {
            full: make(None)?,
            limited: [make(Some(512))?, make(Some(1024))?, make(Some(2048))?, make(Some(4096))?],
            policy,
        })
    }

    /// The config for a connection whose ClientHello starts with `hello`, and the record size
    /// it will use (None: full size).
    pub fn for_client_hello(&self, hello: &[u8]) -> (Arc<ServerConfig>, Option<usize>) {
        let asked = match self.policy {
            FragmentPolicy::Ignore => None,
            _ => max_fragment_length(hello).filter(|c| (1..=4).contains(c)),
        };
        let ours = self.policy.limit_code().ok().flatten();
        let code = match (asked, ours) {
            (Some(a), Some(o)) => Some(a.min(o)),
            (a, o) => a.or(o),
        };
        match code {
            Some(code) => (self.limited[code as usize - 1].clone(), Some(1 << (8 + code))),
            None => (self.full.clone(), None),
        }
    }
}

/// Bytes of the first TLS record needed before the ClientHello can be read: `None` when `buf`
/// is not a handshake record at all.
pub fn record_len(buf: &[u8]) -> Option<usize> {
    if buf.len() < 5 {
        return Some(5);
    }
    (buf[0] == 0x16).then(|| 5 + u16::from_be_bytes([buf[3], buf[4]]) as usize)
}

/// The RFC 6066 `max_fragment_length` code (1..=4) in a ClientHello record, if present.
/// Never panics on truncated or hostile input.
pub fn max_fragment_length(record: &[u8]) -> Option<u8> {
    let mut r = Reader(record);
    if r.u8()? != 0x16 {
        return None;
    }
    r.skip(4)?; // version, length
    if r.u8()? != 1 {
        return None; // not a ClientHello
    }
    r.skip(3)?; // handshake length
    r.skip(2 + 32)?; // client_version, random
    let sid = r.u8()? as usize;
    r.skip(sid)?;
    let suites = r.u16()? as usize;
    r.skip(suites)?;
    let comp = r.u8()? as usize;
    r.skip(comp)?;
    let ext_len = r.u16()? as usize;
    let mut exts = Reader(r.take(ext_len.min(r.0.len()))?);
    while let (Some(kind), Some(len)) = (exts.u16(), exts.u16()) {
        let data = exts.take(len as usize)?;
        if kind == 1 {
            return data.first().copied();
        }
    }
    None
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Some(head)
    }
    fn skip(&mut self, n: usize) -> Option<()> {
        self.take(n).map(|_| ())
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal ClientHello record with the given extensions.
    fn hello(exts: &[(u16, &[u8])]) -> Vec<u8> {
        let mut ext = Vec::new();
        for (kind, data) in exts {
            ext.extend_from_slice(&kind.to_be_bytes());
            ext.extend_from_slice(&(data.len() as u16).to_be_bytes());
            ext.extend_from_slice(data);
        }
        let mut body = vec![3, 3];
        body.extend_from_slice(&[0u8; 32]);
        body.push(0); // session id
        body.extend_from_slice(&[0, 2, 0xcc, 0xa9]);
        body.extend_from_slice(&[1, 0]);
        body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
        body.extend_from_slice(&ext);
        let mut hs = vec![1];
        hs.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        hs.extend_from_slice(&body);
        let mut rec = vec![0x16, 3, 1];
        rec.extend_from_slice(&(hs.len() as u16).to_be_bytes());
        rec.extend_from_slice(&hs);
        rec
    }

    #[test]
    fn finds_max_fragment_length_among_other_extensions() {
        let rec = hello(&[(0, b"\x00\x05\x00\x00\x02ab"), (1, &[1]), (10, &[0, 2, 0, 23])]);
        assert_eq!(max_fragment_length(&rec), Some(1));
        assert_eq!(record_len(&rec), Some(rec.len()));
        assert_eq!(max_fragment_length(&hello(&[(10, &[0, 2, 0, 23])])), None);
    }

    #[test]
    fn a_record_limit_applies_to_every_client_and_a_smaller_request_wins() {
        let hosts = vec![otaforge_pki::Host::parse("ota.test").unwrap()];
        let issued = otaforge_pki::issue::issue(&otaforge_pki::IssueRequest::new(hosts)).unwrap();
        let (pem, key) = (issued.server.cert_pem, issued.server.key_pem);
        let limit = TlsConfigs::new(&pem, &key, FragmentPolicy::Limit(2048)).unwrap();
        assert_eq!(limit.for_client_hello(&hello(&[])).1, Some(2048));
        assert_eq!(limit.for_client_hello(&hello(&[(1, &[1])])).1, Some(512));
        assert_eq!(limit.for_client_hello(&hello(&[(1, &[4])])).1, Some(2048));
        let honour = TlsConfigs::new(&pem, &key, FragmentPolicy::Honour).unwrap();
        assert_eq!(honour.for_client_hello(&hello(&[])).1, None);
        assert_eq!(honour.for_client_hello(&hello(&[(1, &[2])])).1, Some(1024));
        let ignore = TlsConfigs::new(&pem, &key, FragmentPolicy::Ignore).unwrap();
        assert_eq!(ignore.for_client_hello(&hello(&[(1, &[1])])).1, None);
        assert!(FragmentPolicy::Limit(1000).limit_code().is_err());
    }

    #[test]
    fn never_panics_on_truncated_or_garbage_input() {
        let rec = hello(&[(1, &[2])]);
        for n in 0..rec.len() {
            let _ = max_fragment_length(&rec[..n]);
        }
        let mut x = 0x1234_5678u32;
        for _ in 0..2000 {
            let mut r = rec.clone();
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let i = x as usize % r.len();
            r[i] = (x >> 8) as u8;
            let _ = max_fragment_length(&r);
        }
        assert_eq!(record_len(b"GET / HTTP/1.0\r\n"), None);
    }
}
