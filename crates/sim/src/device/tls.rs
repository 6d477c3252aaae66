//! The device's TLS client, as strict as the real one: rustls configured like the ESP8266's
//! BearSSL (TLS 1.2 only, the suites both have, only the baked CA, dNSName-only name matching,
//! the device's own clock) or the ESP32's mbedTLS as a stock arduino-esp32 core builds it (TLS 1.2
//! only, no certificate dates). Failures come out as the numbers the real library reports
//! (BearSSL 54, 56, 62, 6…; mbedTLS -0x2700).
//!
//! **Small receive buffers.** BearSSL aborts (error 6) on any encrypted record larger than its
//! receive buffer plus 325 bytes of overhead. [`RecordLimit`] reads the record headers on the raw
//! socket and aborts the same way. What a virtual device cannot do is *ask* for small records:
//! rustls has no way to send the `max_fragment_length` extension a real ESP8266 sends, so a
//! virtual device with a 512-byte buffer fails even against a server that honours the extension
//! (the real BearSSL client in the tests covers that path). With the default 16 KB buffer every
//! record fits.
//!
//! **The ESP32's dates and TLS version.** arduino-esp32's libraries are built by
//! esp32-arduino-lib-builder, whose `configs/defconfig.*` (release/v5.1 to master and v6.0) set
//! neither `CONFIG_MBEDTLS_HAVE_TIME_DATE` nor `CONFIG_MBEDTLS_SSL_PROTO_TLS1_3`; ESP-IDF's
//! `components/mbedtls/Kconfig` defaults both to n (release/v5.1–v5.5 and master; before IDF
//! 5.5 TLS 1.3 also needs `!MBEDTLS_DYNAMIC_BUFFER`, which the lib builder enables). So a stock
//! ESP32 ignores certificates' "valid from" and "valid to" (the Kconfig help's words) and speaks
//! TLS 1.2 only; the virtual ESP32 does the same. Its clock still matters to the firmware's
//! log, not to TLS.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, OtherError, RootCertStore, SignatureScheme,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::codes::{self, bearssl};
use otaforge_firmware::Chip;
use otaforge_pki::host::dns_name_matches;

/// BearSSL's receive-buffer overhead (`MAX_IN_OVERHEAD` in the core's `setBufferSizes`): a record
/// fits when header plus ciphertext is at most the buffer plus this.
pub const BEARSSL_IN_OVERHEAD: usize = 325;

/// A TLS failure as the device's library reports it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("TLS error {code}: {text}")]
pub struct TlsFailure {
    /// BearSSL error number, or mbedTLS error code (negative).
    pub code: i32,
    /// The library's words for it.
    pub text: String,
}

impl TlsFailure {
    /// The failure `code` on `chip`'s TLS library.
    pub fn new(chip: Chip, code: i32) -> TlsFailure {
        let text =
            if chip.is_esp8266() { codes::bearssl_text(code) } else { codes::mbedtls_text(code).into() };
        TlsFailure { code, text }
    }
}

/// Why the TLS client could not even be set up (a broken CA in the settings).
#[derive(Debug, Clone, thiserror::Error)]
#[error("the CA in the settings is not a PEM certificate: {0}")]
pub struct BadAnchor(String);

/// The device clock, as rustls asks for it.
#[derive(Debug)]
struct DeviceTime(UnixTime);

impl rustls::time_provider::TimeProvider for DeviceTime {
    fn current_time(&self) -> Option<UnixTime> {
        Some(self.0)
    }
}

/// The ESP8266 core's cipher-suite order (BearSSL, `WiFiClientSecureBearSSL.cpp`), restricted to
/// what rustls has. Shared with the load generator, which must look like the same devices.
pub fn esp8266_cipher_suites() -> Vec<rustls::SupportedCipherSuite> {
    use rustls::crypto::aws_lc_rs::cipher_suite as cs;
    vec![
        cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
        cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    ]
}

/// A client config for one check: `chip`'s library, trusting only `ca_pem`, checking names
/// against `host` and dates against `x509_time` (seconds since 1970).
pub fn client_config(
    chip: Chip,
    ca_pem: &str,
    host: &str,
    x509_time: u64,
) -> Result<Arc<ClientConfig>, BadAnchor> {
    use rustls::crypto::aws_lc_rs::{default_provider, kx_group};
    let mut roots = RootCertStore::empty();
    for der in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        let der = der.map_err(|e| BadAnchor(e.to_string()))?;
        roots.add(der).map_err(|e| BadAnchor(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(BadAnchor("no certificate in it".into()));
    }
    let mut provider = default_provider();
    if chip.is_esp8266() {
        provider.cipher_suites = esp8266_cipher_suites();
        provider.kx_groups = vec![kx_group::X25519, kx_group::SECP256R1, kx_group::SECP384R1];
    }
    let algs = provider.signature_verification_algorithms;
    // BearSSL and a stock arduino-esp32 mbedTLS (see the module doc): TLS 1.2 only.
    let versions: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS12];
    let verifier = DeviceVerifier { chip, roots, host: host.to_string(), algs };
    let config = ClientConfig::builder_with_details(
        Arc::new(provider),
        Arc::new(DeviceTime(UnixTime::since_unix_epoch(std::time::Duration::from_secs(x509_time)))),
    )
    .with_protocol_versions(versions)
    .map_err(|e| BadAnchor(e.to_string()))?
    .dangerous()
    .with_custom_certificate_verifier(Arc::new(verifier))
    .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The name rustls is given. Names are checked by [`DeviceVerifier`], the device's way; this
/// only decides the SNI (rustls sends none for an IP, where BearSSL sends the IP text).
pub fn server_name(host: &str) -> ServerName<'static> {
    ServerName::try_from(host.to_string())
        .unwrap_or_else(|_| ServerName::try_from("invalid.invalid").unwrap())
}

/// Certificate checks in BearSSL's order: the server certificate's dates (54), its name among
/// the dNSName entries only, CN when there are none (56), then the chain to the anchor (62).
/// mbedTLS reports every one of these as -0x2700.
#[derive(Debug)]
struct DeviceVerifier {
    chip: Chip,
    roots: RootCertStore,
    host: String,
    algs: WebPkiSupportedAlgorithms,
}

impl DeviceVerifier {
    fn fail(&self, bearssl_code: i32) -> rustls::Error {
        let code = if self.chip.is_esp8266() { bearssl_code } else { codes::MBEDTLS_CERT_VERIFY_FAILED };
        rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(TlsFailure::new(
            self.chip, code,
        )))))
    }
}

impl ServerCertVerifier for DeviceVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Ok((_, cert)) = x509_parser::parse_x509_certificate(end_entity) else {
            return Err(self.fail(bearssl::NOT_TRUSTED));
        };
        let t = now.as_secs() as i64;
        let v = cert.validity();
        if self.chip.is_esp8266() && (t < v.not_before.timestamp() || t > v.not_after.timestamp()) {
            return Err(self.fail(bearssl::EXPIRED));
        }
        // mbedTLS without MBEDTLS_HAVE_TIME_DATE checks no dates: the chain is verified at a time
        // the server certificate is valid (the anchor's dates are never checked).
        let now = match self.chip.is_esp8266() {
            true => now,
            false => UnixTime::since_unix_epoch(std::time::Duration::from_secs(
                v.not_before.timestamp().max(0) as u64,
            )),
        };
        let mut names = Vec::new();
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for n in &san.value.general_names {
                if let x509_parser::extensions::GeneralName::DNSName(d) = n {
                    names.push(d.to_string());
                }
            }
        } else if let Some(cn) = cert.subject().iter_common_name().next().and_then(|c| c.as_str().ok()) {
            names.push(cn.to_string());
        }
        if !names.iter().any(|n| dns_name_matches(n, &self.host)) {
            return Err(self.fail(bearssl::BAD_SERVER_NAME));
        }
        let parsed = rustls::server::ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &parsed,
            &self.roots,
            intermediates,
            now,
            self.algs.all,
        )
        .map_err(|e| match e {
            rustls::Error::InvalidCertificate(
                CertificateError::Expired
                | CertificateError::ExpiredContext { .. }
                | CertificateError::NotValidYet
                | CertificateError::NotValidYetContext { .. },
            ) => self.fail(bearssl::EXPIRED),
            _ => self.fail(bearssl::NOT_TRUSTED),
        })?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

/// What the device's library reports for an I/O error out of the TLS stream: the handshake's
/// verdict, a record too large, a received alert, or the transport closing.
pub fn classify(chip: Chip, e: &io::Error) -> TlsFailure {
    if let Some(inner) = e.get_ref() {
        if let Some(t) = inner.downcast_ref::<RecordTooLarge>() {
            let _ = t;
            return TlsFailure::new(chip, bearssl::TOO_LARGE);
        }
        if let Some(r) = inner.downcast_ref::<rustls::Error>() {
            return from_rustls(chip, r);
        }
    }
    TlsFailure::new(chip, if chip.is_esp8266() { bearssl::IO } else { codes::MBEDTLS_SSL_CONN_EOF })
}

fn from_rustls(chip: Chip, e: &rustls::Error) -> TlsFailure {
    match e {
        rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(inner))) => {
            if let Some(t) = inner.downcast_ref::<TlsFailure>() {
                return t.clone();
            }
            TlsFailure::new(
                chip,
                if chip.is_esp8266() { bearssl::NOT_TRUSTED } else { codes::MBEDTLS_CERT_VERIFY_FAILED },
            )
        }
        rustls::Error::AlertReceived(alert) if chip.is_esp8266() => {
            TlsFailure::new(chip, bearssl::RECV_FATAL_ALERT + i32::from(u8::from(*alert)))
        }
        rustls::Error::AlertReceived(_) => TlsFailure::new(chip, codes::MBEDTLS_FATAL_ALERT),
        _ if chip.is_esp8266() => TlsFailure::new(chip, bearssl::BAD_HANDSHAKE),
        _ => TlsFailure::new(chip, codes::MBEDTLS_CERT_VERIFY_FAILED),
    }
}

/// The error [`RecordLimit`] raises.
#[derive(Debug, thiserror::Error)]
#[error("a {len}-byte TLS record does not fit the {limit}-byte receive buffer")]
pub struct RecordTooLarge {
    /// Header plus ciphertext.
    pub len: usize,
    /// Receive buffer plus overhead.
    pub limit: usize,
}

/// The raw socket under the TLS client, reading record headers as they pass: once the server's
/// ChangeCipherSpec has gone by, a record larger than `limit` fails the read, as BearSSL fails
/// its engine. Handshake records before that may be any size, as on the device.
pub struct RecordLimit<S> {
    inner: S,
    limit: Option<usize>,
    header: [u8; 5],
    have: usize,
    body_left: usize,
    ccs_pending: bool,
    encrypted: bool,
    /// Length of the record that did not fit, once one came.
    failed: Option<usize>,
}

impl<S> RecordLimit<S> {
    /// Wraps `inner`; `limit` None checks nothing (mbedTLS takes 16 KB records).
    pub fn new(inner: S, limit: Option<usize>) -> RecordLimit<S> {
        RecordLimit {
            inner,
            limit,
            header: [0; 5],
            have: 0,
            body_left: 0,
            ccs_pending: false,
            encrypted: false,
            failed: None,
        }
    }

    /// Follows the record headers in `data`; returns where the first record too large for the
    /// buffer starts (its header's first byte in `data`, 0 when it began in an earlier read).
    fn scan(&mut self, data: &[u8]) -> Option<usize> {
        let limit = self.limit?;
        let mut i = 0;
        while i < data.len() {
            if self.body_left > 0 {
                let n = self.body_left.min(data.len() - i);
                self.body_left -= n;
                i += n;
                if self.body_left == 0 && self.ccs_pending {
                    self.ccs_pending = false;
                    self.encrypted = true;
                }
                continue;
            }
            let header_start = i.saturating_sub(self.have);
            self.header[self.have] = data[i];
            self.have += 1;
            i += 1;
            if self.have == 5 {
                self.have = 0;
                let len = usize::from(u16::from_be_bytes([self.header[3], self.header[4]]));
                if self.encrypted && 5 + len > limit {
                    self.failed = Some(5 + len);
                    return Some(header_start);
                }
                self.body_left = len;
                if self.header[0] == 20 {
                    self.ccs_pending = true;
                }
            }
        }
        None
    }

    fn too_large(&self) -> io::Error {
        let len = self.failed.unwrap_or(0);
        io::Error::new(io::ErrorKind::InvalidData, RecordTooLarge { len, limit: self.limit.unwrap_or(0) })
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for RecordLimit<S> {
    /// Passes bytes up to the first record too large; the read after that fails, so the records
    /// before it are processed first, as BearSSL processes one record at a time.
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.failed.is_some() {
            return Poll::Ready(Err(self.too_large()));
        }
        let before = buf.filled().len();
        ready!(Pin::new(&mut self.inner).poll_read(cx, buf))?;
        let new = buf.filled()[before..].to_vec();
        match self.scan(&new) {
            None => Poll::Ready(Ok(())),
            Some(0) => Poll::Ready(Err(self.too_large())),
            Some(at) => {
                buf.set_filled(before + at);
                Poll::Ready(Ok(()))
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for RecordLimit<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(ty: u8, len: usize) -> Vec<u8> {
        let mut r = vec![ty, 3, 3];
        r.extend_from_slice(&(len as u16).to_be_bytes());
        r.resize(5 + len, 0xAB);
        r
    }

    #[test]
    fn records_are_measured_only_after_change_cipher_spec() {
        let mut w = RecordLimit::new((), Some(837));
        let mut stream = record(22, 4000); // a big certificate flight: fine
        stream.extend(record(20, 1));
        stream.extend(record(22, 40)); // encrypted Finished
        stream.extend(record(23, 832)); // 837 with the header: fits exactly
        // Fed in awkward pieces, as a socket delivers them.
        for piece in stream.chunks(7) {
            assert_eq!(w.scan(piece), None);
        }
        // The record that does not fit is found where it starts, after what may still be used.
        let mut tail = record(23, 100);
        tail.extend(record(23, 833));
        assert_eq!(w.scan(&tail), Some(105));
        assert!(w.too_large().get_ref().unwrap().downcast_ref::<RecordTooLarge>().is_some());
        let mut unlimited = RecordLimit::new((), None);
        assert_eq!(unlimited.scan(&record(20, 1)), None);
        assert_eq!(unlimited.scan(&record(23, 16000)), None);
    }
}
