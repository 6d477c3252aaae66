//! A release's answer in TLS records the server seals itself, straight from the release's bytes.
//!
//! rustls does the handshake, reads the request and writes the short answers. For a release it
//! hands over its record keys (`dangerous_extract_secrets`, made for kTLS), and the answer is
//! sealed here: each record's ciphertext written out of place from the shared release bytes into
//! one buffer per connection, a whole step of records leaving in one `write`. rustls's buffered
//! API copies every record's plaintext into a fresh allocation and seals it there; on downloads
//! that copy and the allocation were an eighth of the server's CPU (bench/README.md).
//!
//! Only the sending side is taken over. What the client sends after its request is passed on
//! undecrypted: a device sends nothing but its close (a FIN, after mbedTLS's close_notify), and
//! the delivery check only waits for that close.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use aws_lc_rs::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};
use rustls::{ConnectionTrafficSecrets, ProtocolVersion};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_rustls::server::TlsStream;

/// A stream a reply is written to; a TLS one can take over its record layer for a release.
pub(super) trait Link: AsyncRead + AsyncWrite + Unpin {
    /// Seals what is written from now on here rather than in rustls (TLS only; call with rustls's
    /// buffer flushed). False: nothing changed, writes go on as before.
    fn seal_records(&mut self) -> bool {
        false
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Link for super::streams::WriteDeadline<S> {}

/// Record content types.
const APPLICATION_DATA: u8 = 23;
const ALERT: u8 = 21;
/// TLS 1.2's record version (TLS 1.3 records carry it too).
const VERSION: [u8; 2] = [3, 3];
const HEADER: usize = 5;
const TAG: usize = 16;
/// The largest plaintext in one record (RFC 8446 5.1).
const MAX_RECORD: usize = 16 * 1024;

/// A TLS connection: rustls's until a release is answered, then sealed here.
pub(super) struct Tls<S> {
    state: State<S>,
    /// Plaintext bytes per record: the agreed `max_fragment_length`, else the TLS maximum.
    record: usize,
    /// Sealed bytes held before they go out in one write.
    step: usize,
    /// The system's ChaCha20-Poly1305, if it has one.
    system: Option<&'static libcrypto::Api>,
}

enum State<S> {
    Rustls(Box<TlsStream<S>>),
    Sealed(Box<Sealed<S>>),
    /// The keys could not be taken over after rustls let go of them (not expected: every
    /// precondition is checked first); the connection is lost.
    Lost,
}

impl<S> Tls<S> {
    /// A connection rustls has done the handshake of, with records of at most `record` bytes
    /// (None: 16 KB), sealed bytes written in steps of about `step` bytes.
    pub(super) fn new(stream: TlsStream<S>, record: Option<usize>, step: usize) -> Tls<S> {
        let record = record.unwrap_or(MAX_RECORD).min(MAX_RECORD);
        Tls { state: State::Rustls(Box::new(stream)), record, step, system: libcrypto::api() }
    }

    /// Seals with aws-lc alone (to test both engines on one machine).
    #[cfg(test)]
    fn aws_lc_only(mut self) -> Tls<S> {
        self.system = None;
        self
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Link for Tls<S> {
    fn seal_records(&mut self) -> bool {
        let State::Rustls(stream) = &self.state else {
            return matches!(self.state, State::Sealed(_));
        };
        let conn = stream.get_ref().1;
        // rustls gives up its keys only with nothing left to send and the handshake done.
        let Some(version) = conn.protocol_version() else { return false };
        if conn.is_handshaking() || conn.wants_write() || !Sealer::supports(version) {
            return false;
        }
        let State::Rustls(stream) = std::mem::replace(&mut self.state, State::Lost) else {
            unreachable!("matched above")
        };
        let (io, conn) = stream.into_inner();
        match conn.dangerous_extract_secrets() {
            Ok(secrets) => match Sealer::new(version, secrets.tx.0, secrets.tx.1, self.record, self.system) {
                Some(sealer) => {
                    let out = Held::new(self.step + self.step / 4);
                    self.state = State::Sealed(Box::new(Sealed { io, sealer, out, closing: false }));
                    true
                }
                None => {
                    log::warn!("TLS record keys of an unexpected cipher; connection dropped");
                    false
                }
            },
            Err(e) => {
                log::warn!("TLS record keys not handed over ({e}); connection dropped");
                false
            }
        }
    }
}

fn lost() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "the TLS record keys were lost")
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for Tls<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().state {
            State::Rustls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            State::Sealed(s) => Pin::new(&mut s.io).poll_read(cx, buf),
            State::Lost => Poll::Ready(Err(lost())),
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Tls<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match &mut this.state {
            State::Rustls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            State::Sealed(s) => s.poll_write(cx, buf, this.step),
            State::Lost => Poll::Ready(Err(lost())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().state {
            State::Rustls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            State::Sealed(s) => {
                ready!(s.poll_drain(cx))?;
                Pin::new(&mut s.io).poll_flush(cx)
            }
            State::Lost => Poll::Ready(Err(lost())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().state {
            State::Rustls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            State::Sealed(s) => {
                if !s.closing {
                    // close_notify, as rustls sends it before its FIN.
                    s.sealer.seal(ALERT, &[1, 0], &mut s.out).map_err(sealing_failed)?;
                    s.closing = true;
                }
                ready!(s.poll_drain(cx))?;
                Pin::new(&mut s.io).poll_shutdown(cx)
            }
            State::Lost => Poll::Ready(Err(lost())),
        }
    }
}

fn sealing_failed(_: aws_lc_rs::error::Unspecified) -> io::Error {
    io::Error::other("sealing a TLS record failed")
}

/// The sending side after the handover: sealed records waiting to go out.
struct Sealed<S> {
    io: S,
    sealer: Sealer,
    out: Held,
    closing: bool,
}

impl<S: AsyncWrite + Unpin> Sealed<S> {
    /// Seals up to a step of `buf`, first sending what is held if the step would not fit beside it.
    fn poll_write(&mut self, cx: &mut Context<'_>, buf: &[u8], step: usize) -> Poll<io::Result<usize>> {
        let n = buf.len().min(step);
        if n == 0 {
            return Poll::Ready(Ok(0));
        }
        if self.out.pending() > 0 && self.out.end + self.sealer.sealed_len(n) > self.out.buf.len() {
            ready!(self.poll_drain(cx))?;
        }
        self.sealer.seal(APPLICATION_DATA, &buf[..n], &mut self.out).map_err(sealing_failed)?;
        Poll::Ready(Ok(n))
    }

    /// Writes out everything held.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.out.pending() > 0 {
            let held = &self.out.buf[self.out.at..self.out.end];
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, held))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.out.at += n;
        }
        self.out.at = 0;
        self.out.end = 0;
        Poll::Ready(Ok(()))
    }
}

/// Sealed bytes `buf[at..end]` not yet written. The buffer is zeroed once and then reused, so
/// sealing a record neither allocates nor clears the room it fills; a finished download leaves
/// its buffer to the thread's next one ([`SPARE`]), warm in the cache, instead of freeing it.
struct Held {
    buf: Vec<u8>,
    at: usize,
    end: usize,
}

/// Buffers kept per thread for the next downloads (a new 80 KB buffer per download cost page
/// faults and a memset each; perf in bench/README.md).
const SPARE_BUFFERS: usize = 16;

thread_local! {
    static SPARE: std::cell::RefCell<Vec<Vec<u8>>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl Held {
    fn new(capacity: usize) -> Held {
        let spare = SPARE.with(|s| s.borrow_mut().pop()).filter(|b| b.len() >= capacity);
        Held { buf: spare.unwrap_or_else(|| vec![0; capacity]), at: 0, end: 0 }
    }

    fn pending(&self) -> usize {
        self.end - self.at
    }

    /// The next `n` bytes to fill (grown if need be), counted as held.
    fn take(&mut self, n: usize) -> &mut [u8] {
        if self.buf.len() < self.end + n {
            self.buf.resize(self.end + n, 0);
        }
        let start = self.end;
        self.end += n;
        &mut self.buf[start..self.end]
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let buf = std::mem::take(&mut self.buf);
        // `try_with`: a connection dropped while its thread exits has no spare list any more.
        let _ = SPARE.try_with(|s| {
            let mut spare = s.borrow_mut();
            if spare.len() < SPARE_BUFFERS {
                spare.push(buf);
            }
        });
    }
}

/// The record layer's sending half: key, IV and sequence number, as rustls left them.
struct Sealer {
    key: Engine,
    iv: [u8; 12],
    seq: u64,
    form: Form,
    record: usize,
}

/// Records at least this large are sealed by the system's ChaCha20-Poly1305: OpenSSL's set-up
/// per record outweighs its faster cipher below (measured: 16 KB ×0.92 of aws-lc's CPU per MB,
/// 4 KB ×0.92, 2 KB ×1.10, 512 B ×1.55).
const SYSTEM_FROM: usize = 4096;

/// What seals: aws-lc, or for ChaCha20-Poly1305 in large records the system's OpenSSL when it
/// has one ([`libcrypto`]).
enum Engine {
    AwsLc(LessSafeKey),
    Libcrypto(libcrypto::Chacha<'static>),
}

impl Engine {
    fn seal(
        &mut self,
        nonce: [u8; 12],
        aad: &[u8],
        data: &[u8],
        out: &mut [u8],
        extra: &[u8],
        extra_and_tag: &mut [u8],
    ) -> Result<(), aws_lc_rs::error::Unspecified> {
        match self {
            Engine::AwsLc(key) => key.seal_out_of_place_scatter(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                data,
                out,
                extra,
                extra_and_tag,
            ),
            Engine::Libcrypto(c) => c
                .seal(&nonce, aad, data, out, extra, extra_and_tag)
                .map_err(|()| aws_lc_rs::error::Unspecified),
        }
    }
}

/// How a record is laid out around its ciphertext.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Form {
    /// TLS 1.2 AES-GCM: an 8-byte explicit nonce before the ciphertext (RFC 5288).
    Tls12Gcm,
    /// TLS 1.2 ChaCha20-Poly1305: no explicit nonce (RFC 7905).
    Tls12Chacha,
    /// TLS 1.3: the content type sealed after the data, the record typed application data.
    Tls13,
}

impl Sealer {
    fn supports(version: ProtocolVersion) -> bool {
        matches!(version, ProtocolVersion::TLSv1_2 | ProtocolVersion::TLSv1_3)
    }

    fn new(
        version: ProtocolVersion,
        seq: u64,
        secrets: ConnectionTrafficSecrets,
        record: usize,
        system: Option<&'static libcrypto::Api>,
    ) -> Option<Sealer> {
        let tls13 = version == ProtocolVersion::TLSv1_3;
        let (alg, key, iv, form) = match secrets {
            ConnectionTrafficSecrets::Aes128Gcm { key, iv } => (&aead::AES_128_GCM, key, iv, Form::Tls12Gcm),
            ConnectionTrafficSecrets::Aes256Gcm { key, iv } => (&aead::AES_256_GCM, key, iv, Form::Tls12Gcm),
            ConnectionTrafficSecrets::Chacha20Poly1305 { key, iv } => {
                (&aead::CHACHA20_POLY1305, key, iv, Form::Tls12Chacha)
            }
            _ => return None,
        };
        let system = system.filter(|_| alg == &aead::CHACHA20_POLY1305 && record >= SYSTEM_FROM);
        let key = match system {
            Some(api) => Engine::Libcrypto(libcrypto::Chacha::new(api, key.as_ref().try_into().ok()?)?),
            None => Engine::AwsLc(LessSafeKey::new(UnboundKey::new(alg, key.as_ref()).ok()?)),
        };
        let iv: [u8; 12] = iv.as_ref().try_into().ok()?;
        Some(Sealer { key, iv, seq, form: if tls13 { Form::Tls13 } else { form }, record })
    }

    /// Bytes a record adds around `n` bytes of plaintext.
    fn overhead(&self) -> usize {
        HEADER
            + TAG
            + match self.form {
                Form::Tls12Gcm => 8,
                Form::Tls12Chacha => 0,
                Form::Tls13 => 1,
            }
    }

    /// Bytes `n` bytes of plaintext take once sealed.
    fn sealed_len(&self, n: usize) -> usize {
        n + n.div_ceil(self.record).max(1) * self.overhead()
    }

    /// Seals `data` as records of type `typ` onto `out`.
    fn seal(&mut self, typ: u8, data: &[u8], out: &mut Held) -> Result<(), aws_lc_rs::error::Unspecified> {
        let start = out.end;
        for fragment in data.chunks(self.record) {
            if let Err(e) = self.seal_one(typ, fragment, out.take(fragment.len() + self.overhead())) {
                out.end = start;
                return Err(e);
            }
        }
        Ok(())
    }

    /// Seals one record of `fragment` into `record`, which is exactly its sealed size.
    fn seal_one(
        &mut self,
        typ: u8,
        fragment: &[u8],
        record: &mut [u8],
    ) -> Result<(), aws_lc_rs::error::Unspecified> {
        let mut nonce = self.iv;
        for (n, s) in nonce[4..].iter_mut().zip(self.seq.to_be_bytes()) {
            *n ^= s;
        }
        let n = fragment.len();
        let (outer, inner_type): (u8, &[u8]) = match self.form {
            Form::Tls13 => (APPLICATION_DATA, std::slice::from_ref(&typ)),
            _ => (typ, &[]),
        };
        let explicit = if self.form == Form::Tls12Gcm { 8 } else { 0 };
        let len = u16::try_from(record.len() - HEADER).map_err(|_| aws_lc_rs::error::Unspecified)?;
        let (header, rest) = record.split_at_mut(HEADER);
        header.copy_from_slice(&[outer, VERSION[0], VERSION[1], (len >> 8) as u8, len as u8]);
        let (explicit_nonce, rest) = rest.split_at_mut(explicit);
        explicit_nonce.copy_from_slice(&nonce[12 - explicit..]);
        let (ciphertext, extra_and_tag) = rest.split_at_mut(n);
        let mut aad = [0u8; 13];
        let aad = match self.form {
            // TLS 1.3: the record header (RFC 8446 5.2).
            Form::Tls13 => {
                aad[..HEADER].copy_from_slice(header);
                &aad[..HEADER]
            }
            // TLS 1.2: sequence number, type, version and the plaintext's length (RFC 5246 6.2.3.3).
            _ => {
                aad[..8].copy_from_slice(&self.seq.to_be_bytes());
                aad[8..].copy_from_slice(&[typ, VERSION[0], VERSION[1], (n >> 8) as u8, n as u8]);
                &aad[..]
            }
        };
        self.key.seal(nonce, aad, fragment, ciphertext, inner_type, extra_and_tag)?;
        self.seq += 1;
        Ok(())
    }
}

mod libcrypto;

#[cfg(test)]
mod tests;
