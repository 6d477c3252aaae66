//! One update check, step by step as `ESPhttpUpdate.update()` (ESP8266) and arduino-esp32's
//! `httpUpdate.update()` take it: connect (TLS the device's way), send the headers, read the
//! answer, check Content-Length, free space, the first bytes and the flash-size nibble, write the
//! body to the OTA area while hashing it, check x-MD5 and, when the firmware installed a verifier,
//! the signature ([`super::signature_check`]), and arrange the switch to the new image (eboot's
//! copy command, or otadata). Every failure ends with the code and words the core uses.
//!
//! One deliberate difference: a connection that closes mid-body fails at once with error 6,
//! where the real updater waits out its stream timeout first (60 s on the ESP8266; on the ESP32
//! every one of `writeStream`'s 300 tries waits the 8 s stream timeout). Same outcome, sooner.
//! A body that merely stalls is retried as the core retries it.
//!
//! ESP32 facts (arduino-esp32 master, 2026; see [`super::http`] for the 3.0.x caveat):
//! `libraries/HTTPUpdate/src/HTTPUpdate.cpp` (`handleUpdate`, `runUpdate`), `HTTPUpdate.h`
//! (8000 ms client timeout), `libraries/HTTPClient/src/HTTPClient.{h,cpp}` (5000 ms connect
//! timeout, `setTimeout`), `libraries/NetworkClientSecure/src/NetworkClientSecure.cpp` and
//! `ssl_client.cpp` (120 s handshake timeout, `last_error`), `libraries/Update/src/Updater.cpp`
//! (`begin`, `writeStream`, `end`).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use md5::{Digest, Md5};
use tokio::net::TcpStream;

use super::boot::{Booted, EbootCopy, Layout, Rtc, check_esp32_slot};
use super::codes::{self, update};
use super::flash::{Flash, SECTOR};
use super::http::{self, ReadFail, Report, Wire};
use super::identity::Identity;
use super::signature_check::{self, ESP32_SIGNATURE_SIZE};
use super::status::{Activity, CheckFailure, CheckOutcome, Console};
use super::tls::{self, BEARSSL_IN_OVERHEAD, TlsFailure};
use otaforge_firmware::config_block::BakedSettings;

/// ESP32: `HTTPClient`'s connect timeout (`_connectTimeout = HTTPCLIENT_DEFAULT_TCP_TIMEOUT`,
/// 5000 ms, passed to `NetworkClientSecure::connect`, which waits that long in `select` for the TCP
/// connection).
pub const ESP32_CONNECT_TIMEOUT: Duration = Duration::from_millis(5000);
/// ESP32: `NetworkClientSecure`'s TLS handshake timeout (`handshake_timeout = 120000` ms in its
/// constructor; `ssl_starttls_handshake` gives up after it).
pub const ESP32_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(120);
/// ESP32: how many times `UpdateClass::writeStream` calls `readBytes` for one buffer before it
/// gives up with error 6 (`timeout_failures >= 300`), pausing [`ESP32_STALL_PAUSE`] after each
/// empty read. arduino-esp32 2.x gave up after the second empty read.
pub const ESP32_STALL_READS: u32 = 300;
/// ESP32: `writeStream`'s `delay(100)` after an empty read.
pub const ESP32_STALL_PAUSE: Duration = Duration::from_millis(100);

/// The network as the device sees it. Tests shorten the timeouts; the defaults are the devices'.
#[derive(Debug, Clone)]
pub struct Net {
    /// What the device's DNS answers for the update host (None: the system resolver).
    pub dns: Option<IpAddr>,
    /// `setTimeout` (8 s on both: `HTTPUpdate`'s `_httpClientTimeout`): each wait for the answer's
    /// head; on the ESP8266 also connecting; on the ESP32 also each `peek()`/`readBytes()` of the
    /// body (HTTPClient passes it to the stream's `setTimeout`).
    pub http_timeout: Duration,
    /// The ESP8266 updater's wait for more body bytes (60 s).
    pub stream_timeout: Duration,
    /// ESP32: connecting ([`ESP32_CONNECT_TIMEOUT`]).
    pub connect_timeout: Duration,
    /// ESP32: the TLS handshake ([`ESP32_HANDSHAKE_TIMEOUT`]).
    pub handshake_timeout: Duration,
    /// ESP32: the pause after an empty body read ([`ESP32_STALL_PAUSE`]).
    pub stall_pause: Duration,
}

impl Default for Net {
    fn default() -> Self {
        Net {
            dns: None,
            http_timeout: Duration::from_secs(8),
            stream_timeout: Duration::from_secs(60),
            connect_timeout: ESP32_CONNECT_TIMEOUT,
            handshake_timeout: ESP32_HANDSHAKE_TIMEOUT,
            stall_pause: ESP32_STALL_PAUSE,
        }
    }
}

/// What one check needs to know.
pub struct Check<'a> {
    /// The chip.
    pub id: &'a Identity,
    /// The firmware's settings.
    pub settings: &'a BakedSettings,
    /// What is running.
    pub booted: &'a Booted,
    /// The time certificates are checked against (seconds since 1970).
    pub x509_time: u64,
    /// The network.
    pub net: &'a Net,
    /// Where the log goes.
    pub console: &'a Console,
}

/// The state an update changes.
pub struct Machine<'a> {
    /// The flash chip.
    pub flash: &'a mut Flash,
    /// RTC memory (eboot's command).
    pub rtc: &'a mut Rtc,
    /// The ESP8266 updater left "running" by a malformed x-MD5, until the next reboot.
    pub updater_stuck: &'a mut bool,
}

/// The update URL's path: the path, then the channel when there is one.
pub fn url_path(s: &BakedSettings) -> String {
    if s.channel.is_empty() {
        s.path.clone()
    } else {
        format!("{}/{}", s.path.trim_end_matches('/'), s.channel)
    }
}

/// The whole URL, as the firmware logs it. The device's name rides in the query: the cores' updaters
/// send no custom headers, but pass the URL through unchanged.
pub fn url(s: &BakedSettings) -> String {
    format!("https://{}:{}{}", s.host, s.port, request_target(s))
}

/// Path and query of the update request: `<path>[/<channel>]?name=<device name>`.
pub fn request_target(s: &BakedSettings) -> String {
    if s.device_name.is_empty() {
        return url_path(s);
    }
    let name: String = s
        .device_name
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b == b'-' { (b as char).to_string() } else { format!("%{b:02X}") }
        })
        .collect();
    format!("{}?name={name}", url_path(s))
}

struct Fail {
    code: i32,
    detail: String,
    tls: Option<TlsFailure>,
}

impl Fail {
    fn http(code: i32) -> Fail {
        Fail { code, detail: String::new(), tls: None }
    }
    fn update(c: &Check<'_>, code: i32) -> Fail {
        Fail { code, detail: codes::update_error_string(c.id.chip, code).into(), tls: None }
    }
    /// The TLS library's verdict on a failed read, when the core reports one: BearSSL keeps its
    /// engine error for `getLastSSLError`; `NetworkClientSecure::lastError` only holds what
    /// connecting left (`ssl_client.cpp` sets `last_error` in connect and startTLS alone).
    fn with_read(mut self, chip: otaforge_firmware::Chip, r: ReadFail) -> Fail {
        if let ReadFail::Tls(t) = r
            && chip.is_esp8266()
        {
            self.tls = Some(t);
        }
        self
    }
}

/// Runs one check against the server in the settings.
pub async fn check(c: &Check<'_>, m: Machine<'_>) -> CheckOutcome {
    match run(c, m).await {
        Ok(o) => o,
        Err(f) => CheckOutcome::Failed(CheckFailure::new(c.id.chip, f.code, &f.detail, f.tls)),
    }
}

async fn run(c: &Check<'_>, m: Machine<'_>) -> Result<CheckOutcome, Fail> {
    let s = c.settings;
    let chip = c.id.chip;
    let stream = connect(c).await?;
    let report = Report {
        free_space: c.booted.free_space,
        sketch_size: c.booted.sketch_size,
        sketch_md5: c.booted.sketch_md5.clone(),
        sketch_sha256: c.booted.sketch_sha256.clone(),
        version: s.version.clone(),
    };
    let head = http::request_head(c.id, &s.host, s.port, &request_target(s), &report);
    let mut stream = stream;
    {
        use tokio::io::AsyncWriteExt;
        let send = async {
            stream.write_all(head.as_bytes()).await?;
            stream.flush().await
        };
        // ESP32: `send_ssl_data` gives up after `socket_timeout`, the connect timeout.
        let limit = if chip.is_esp8266() { c.net.http_timeout } else { c.net.connect_timeout };
        match tokio::time::timeout(limit, send).await {
            Ok(Ok(())) => {}
            _ => return Err(Fail::http(codes::SEND_HEADER_FAILED)),
        }
    }
    let mut wire = Wire::new(stream, chip);
    let answer = match wire.head(c.net.http_timeout).await {
        Ok(h) => h,
        Err(ReadFail::Timeout) => return Err(Fail::http(codes::READ_TIMEOUT)),
        Err(r) => return Err(Fail::http(codes::CONNECTION_LOST).with_read(chip, r)),
    };
    // ESP8266HTTPClient takes only "chunked"; arduino-esp32's also "identity" (either way the
    // updater then reads Content-Length raw bytes).
    if let Some(te) = answer.transfer_encoding.as_deref() {
        let ok =
            te.eq_ignore_ascii_case("chunked") || (!chip.is_esp8266() && te.eq_ignore_ascii_case("identity"));
        if !ok {
            return Err(Fail::http(codes::ENCODING));
        }
    }
    match answer.code {
        0 => return Err(Fail::http(codes::NO_HTTP_SERVER)),
        200 => {}
        304 => return Ok(CheckOutcome::UpToDate),
        // arduino-esp32 master: `case HTTP_CODE_NO_CONTENT: case HTTP_CODE_NOT_MODIFIED:` (no
        // updates). Not verified for 3.0.x.
        204 if !chip.is_esp8266() => return Ok(CheckOutcome::UpToDate),
        404 => return Err(Fail::http(codes::SERVER_FILE_NOT_FOUND)),
        403 => return Err(Fail::http(codes::SERVER_FORBIDDEN)),
        401 if chip.is_esp8266() => return Err(Fail::http(codes::SERVER_UNAUTHORIZED)),
        _ => return Err(Fail::http(codes::SERVER_WRONG_HTTP_CODE)),
    }
    if answer.size <= 0 {
        return Err(Fail::http(codes::SERVER_NOT_REPORT_SIZE));
    }
    let size = answer.size as usize;
    // ESP32: `getFreeSketchSpace()` 0 (no OTA slot) is -108 before the size is compared.
    if !chip.is_esp8266() && c.booted.free_space == 0 {
        return Err(Fail::http(codes::NO_PARTITION));
    }
    if size > c.booted.free_space {
        return Err(Fail::http(codes::TOO_LESS_SPACE));
    }
    // The reference firmware's onStart callback (HTTPUpdate calls it before the magic check).
    c.console.log(if chip.is_esp8266() {
        "update: a new image is available; downloading and writing it to flash"
    } else {
        "update: a new image is available; downloading and writing it to the OTA partition"
    });
    // ESP8266: peekBytes(4), magic, flash-size nibble; ESP32: peek() (a timed read bounded by the
    // stream timeout, `http_timeout`) and the magic only.
    let want = if chip.is_esp8266() { 4 } else { 1 };
    let peek_timeout = if chip.is_esp8266() { c.net.stream_timeout } else { c.net.http_timeout };
    let first = match wire.peek(want, peek_timeout).await {
        Ok(b) => b.to_vec(),
        Err(r) => return Err(Fail::http(codes::BIN_VERIFY_HEADER_FAILED).with_read(chip, r)),
    };
    let magic_ok = first[0] == 0xE9 || (chip.is_esp8266() && first[0] == 0x1F);
    if !magic_ok {
        return Err(Fail::http(codes::BIN_VERIFY_HEADER_FAILED));
    }
    if chip.is_esp8266() && first[0] == 0xE9 && too_big_for_flash(c, first[3]) {
        return Err(Fail::http(codes::BIN_FOR_WRONG_FLASH));
    }
    let version = answer.x_version.clone();
    write_update(c, m, &mut wire, size, answer.x_md5.as_deref()).await?;
    c.console.log("update: download complete; the device reboots into the new firmware");
    Ok(CheckOutcome::Updated { bytes: size as u64, version })
}

/// `magicFlashChipSize(nibble) > getFlashChipRealSize()`.
fn too_big_for_flash(c: &Check<'_>, byte3: u8) -> bool {
    c.id.chip.flash_size_from_code(byte3 >> 4).is_some_and(|need| need > c.id.flash_size as u64)
}

type Tls = tokio_rustls::client::TlsStream<tls::RecordLimit<TcpStream>>;

async fn connect(c: &Check<'_>) -> Result<Tls, Fail> {
    let s = c.settings;
    let chip = c.id.chip;
    let failed = || Fail::http(codes::CONNECTION_FAILED);
    // ESP32: when `start_ssl_client` fails (TCP) or the handshake times out, NetworkClientSecure
    // keeps -1 as its last error, which the reference firmware logs as a TLS error. A name that
    // does not resolve fails before that (`hostByName`), with no TLS error.
    let start_failed = || {
        let tls = (!chip.is_esp8266()).then(|| TlsFailure::new(chip, codes::MBEDTLS_GENERIC_ERROR));
        Fail { tls, ..failed() }
    };
    let addr = match c.net.dns {
        Some(ip) => SocketAddr::new(ip, s.port),
        None => tokio::net::lookup_host((s.host.as_str(), s.port))
            .await
            .ok()
            .and_then(|mut a| a.next())
            .ok_or_else(failed)?,
    };
    let connect_timeout = if chip.is_esp8266() { c.net.http_timeout } else { c.net.connect_timeout };
    let tcp = match tokio::time::timeout(connect_timeout, TcpStream::connect(addr)).await {
        Ok(Ok(t)) => t,
        _ => return Err(start_failed()),
    };
    let _ = tcp.set_nodelay(true);
    let config = tls::client_config(c.id.chip, &s.ca_pem, &s.host, c.x509_time).map_err(|_| failed())?;
    let limit =
        c.id.chip.is_esp8266().then(|| usize::from(s.tls_rx_buffer.clamp(512, 16384)) + BEARSSL_IN_OVERHEAD);
    let connector = tokio_rustls::TlsConnector::from(config);
    let handshake = connector.connect(tls::server_name(&s.host), tls::RecordLimit::new(tcp, limit));
    let handshake_timeout = if chip.is_esp8266() { c.net.http_timeout } else { c.net.handshake_timeout };
    match tokio::time::timeout(handshake_timeout, handshake).await {
        Ok(Ok(t)) => Ok(t),
        Ok(Err(e)) => Err(Fail { tls: Some(tls::classify(c.id.chip, &e)), ..failed() }),
        Err(_) => Err(start_failed()),
    }
}

/// Where the update goes and how it is finished.
enum Target {
    /// ESP8266: written below the filesystem, copied to 0x0 by eboot.
    Esp8266 { start: usize },
    /// ESP32: written into the next OTA slot, its first 16 bytes held back until the end so a
    /// half-written slot never looks bootable.
    Esp32 { slot: super::partitions::AppSlot, map: super::partitions::PartitionMap, held: Vec<u8> },
}

/// `Update.begin`, `setMD5`, `writeStream`, `end`.
async fn write_update<S: tokio::io::AsyncRead + Unpin>(
    c: &Check<'_>,
    m: Machine<'_>,
    wire: &mut Wire<S>,
    size: usize,
    x_md5: Option<&str>,
) -> Result<(), Fail> {
    let chip = c.id.chip;
    // The reference firmware calls `Update.installSignature` when its config block holds a key.
    let verifier = signature_check::installed(chip, c.settings);
    let mut target = match &c.booted.layout {
        Layout::Esp8266(l) => {
            if *m.updater_stuck {
                return Err(Fail::update(c, update::ESP8266_RUNNING_ALREADY));
            }
            let start = l.fs_start.saturating_sub(size.next_multiple_of(SECTOR));
            if start < c.booted.sketch_size.next_multiple_of(SECTOR) {
                return Err(Fail::update(c, update::SPACE));
            }
            Target::Esp8266 { start }
        }
        Layout::Esp32 { map, running } => {
            // `begin`: a file too short for the signature trailer, before the partition lookup.
            if verifier.is_some() && size < ESP32_SIGNATURE_SIZE {
                return Err(Fail::update(c, update::SIZE));
            }
            // UpdateClass::begin(U_FLASH): no next OTA slot, or only the running one, is error 10.
            let Some(slot) = map.next_update_slot(*running).filter(|s| s != running) else {
                return Err(Fail::update(c, update::ESP32_NO_PARTITION));
            };
            if size > slot.size {
                return Err(Fail::update(c, update::SIZE));
            }
            Target::Esp32 { slot, map: map.clone(), held: Vec::new() }
        }
    };
    let mut tenth = None;
    progress(c, 0, size, &mut tenth);
    let expected = match x_md5 {
        Some(v) if v.len() != 32 => {
            // The ESP8266 core returns here without ending the update it began.
            if chip.is_esp8266() {
                *m.updater_stuck = true;
            }
            return Err(Fail::http(codes::SERVER_FAULTY_MD5));
        }
        Some(v) => Some(v.to_ascii_lowercase()),
        None => None,
    };
    let peek_timeout = if chip.is_esp8266() { c.net.stream_timeout } else { c.net.http_timeout };
    let first = wire.peek(1, peek_timeout).await.map(|b| b[0]).unwrap_or(0);
    match &target {
        Target::Esp8266 { .. } if first != 0xE9 && first != 0x1F => {
            return Err(Fail::update(c, update::ESP8266_MAGIC_BYTE));
        }
        Target::Esp32 { .. } if first != 0xE9 => {
            return Err(esp32_stream_failed(c, update::ESP32_MAGIC_BYTE));
        }
        _ => {}
    }
    let mut md5 = Md5::new();
    let mut done = 0usize;
    let mut buffer = Vec::with_capacity(SECTOR);
    while done + buffer.len() < size {
        let want = (SECTOR - buffer.len()).min(size - done - buffer.len());
        let read = if chip.is_esp8266() {
            wire.read(want, c.net.stream_timeout).await
        } else {
            esp32_read(c.net, wire, want).await
        };
        match read {
            Ok(bytes) => buffer.extend_from_slice(&bytes),
            Err(r) if chip.is_esp8266() => return Err(Fail::update(c, update::STREAM).with_read(chip, r)),
            Err(_) => return Err(esp32_stream_failed(c, update::STREAM)),
        }
        if buffer.len() == SECTOR || done + buffer.len() == size {
            write_sector(c, m.flash, &mut target, done, &buffer).map_err(|_| match chip.is_esp8266() {
                true => Fail::update(c, 1),
                false => esp32_stream_failed(c, 1),
            })?;
            md5.update(&buffer);
            done += buffer.len();
            buffer.clear();
            progress(c, done, size, &mut tenth);
        }
    }
    let computed = hex::encode(md5.finalize());
    // The ESP8266 core neither computes nor compares the MD5 when a verifier is installed.
    let md5_checked = !(chip.is_esp8266() && verifier.is_some());
    if let Some(exp) = expected
        && md5_checked
        && exp != computed
    {
        let detail = if chip.is_esp8266() {
            format!("MD5 verification failed: expected: {exp}, calculated: {computed}")
        } else {
            codes::update_error_string(chip, update::MD5).to_string()
        };
        return Err(Fail { code: update::MD5, detail, tls: None });
    }
    match target {
        Target::Esp8266 { start } => {
            // The signature first, then `_verifyEnd`; eboot gets the image without the trailer.
            let len = match &verifier {
                Some(key) => signature_check::esp8266_end(m.flash, start, size, key)
                    .map_err(|_| Fail::update(c, update::ESP8266_SIGN))?,
                None => size,
            };
            let head = m.flash.read(start, 4).map_err(|_| Fail::update(c, 3))?;
            if head[..2] != [0x1F, 0x8B] {
                if head[0] != 0xE9 {
                    return Err(Fail::update(c, update::ESP8266_MAGIC_BYTE));
                }
                if too_big_for_flash(c, head[3]) {
                    let detail = format!("new Flash config wrong, real size: {}", c.id.flash_size);
                    return Err(Fail { code: update::ESP8266_NEW_FLASH_CONFIG, detail, tls: None });
                }
            }
            m.rtc.eboot_copy = Some(EbootCopy { src: start, dst: 0, len });
        }
        Target::Esp32 { slot, map, held } => {
            // After the MD5, before the first 16 bytes go in: the signature over the received
            // bytes, the trailer read back from the slot.
            if let Some(key) = &verifier {
                signature_check::esp32_end(m.flash, slot.offset, size, &held, key)
                    .map_err(|_| Fail::update(c, update::ESP32_SIGN))?;
            }
            m.flash.write(slot.offset, &held).map_err(|_| Fail::update(c, 1))?;
            if m.flash.read(slot.offset, 1).map_err(|_| Fail::update(c, 3))?[0] != 0xE9 {
                return Err(Fail::update(c, 3));
            }
            // esp_ota_set_boot_partition verifies the image first (checksum, SHA-256, chip id).
            check_esp32_slot(m.flash, chip, slot).map_err(|_| Fail::update(c, update::ESP32_ACTIVATE))?;
            map.set_boot(m.flash, slot).map_err(|_| Fail::update(c, update::ESP32_ACTIVATE))?;
        }
    }
    Ok(())
}

/// Feeds `body` to the updater as the answer's body and runs `begin` to `end`, for tests: the
/// failure's code and the updater's words.
#[cfg(test)]
pub(super) async fn feed(
    c: &Check<'_>,
    m: Machine<'_>,
    body: &[u8],
    x_md5: Option<&str>,
) -> Result<(), (i32, String)> {
    use tokio::io::AsyncWriteExt;
    let (mut server, device) = tokio::io::duplex(body.len() + 1);
    server.write_all(body).await.expect("the pipe holds the body");
    let mut wire = Wire::new(device, c.id.chip);
    write_update(c, m, &mut wire, body.len(), x_md5).await.map_err(|f| (f.code, f.detail))
}

/// `UpdateClass::writeStream`'s read of one buffer: `readBytes` (each byte waited for at most
/// the stream timeout, `http_timeout`) up to [`ESP32_STALL_READS`] times, with `stall_pause`
/// after each read that brought nothing. A closed connection fails at once (see the module doc).
async fn esp32_read<S: tokio::io::AsyncRead + Unpin>(
    net: &Net,
    wire: &mut Wire<S>,
    want: usize,
) -> Result<Vec<u8>, ReadFail> {
    let mut empty = 0;
    loop {
        match wire.read(want, net.http_timeout).await {
            Err(ReadFail::Timeout) => {
                empty += 1;
                if empty >= ESP32_STALL_READS {
                    return Err(ReadFail::Timeout);
                }
                tokio::time::sleep(net.stall_pause).await;
            }
            other => return other,
        }
    }
}

/// An ESP32 `writeStream` failure: `getLastError()` is the updater's error, but master's
/// `runUpdate` then calls `Update.abort()`, so `getLastErrorString()` (which prints the updater's
/// error when asked) says "Aborted". arduino-esp32 2.x, without the `abort()`, said the error's
/// own words.
fn esp32_stream_failed(c: &Check<'_>, code: i32) -> Fail {
    Fail { code, detail: codes::update_error_string(c.id.chip, update::ESP32_ABORT).into(), tls: None }
}

/// Writes one buffer of the update at offset `done`.
fn write_sector(
    c: &Check<'_>,
    flash: &mut Flash,
    target: &mut Target,
    done: usize,
    data: &[u8],
) -> Result<(), super::flash::FlashError> {
    match target {
        Target::Esp8266 { start } => {
            let at = *start + done;
            if at.is_multiple_of(SECTOR) {
                flash.erase_range(at, SECTOR.min(flash.size() - at))?;
            }
            // The first sector gets the chip's flash mode in byte 2 (not for gzip); the MD5 is
            // computed on what was sent.
            if done == 0 && data.len() > 2 && data[0] != 0x1F {
                let mut first = data.to_vec();
                first[2] = c.booted.flash_mode;
                flash.write(at, &first)
            } else {
                flash.write(at, data)
            }
        }
        Target::Esp32 { slot, held, .. } => {
            let at = slot.offset + done;
            flash.erase_range(at, SECTOR)?;
            if done == 0 {
                let keep = data.len().min(16);
                *held = data[..keep].to_vec();
                flash.write(at + keep, &data[keep..])
            } else {
                flash.write(at, data)
            }
        }
    }
}

/// The firmware's progress callback: the status, and a log line each time a new tenth is reached.
fn progress(c: &Check<'_>, done: usize, total: usize, last_tenth: &mut Option<usize>) {
    c.console.update(|s| s.activity = Activity::Downloading { done: done as u64, total: total as u64 });
    let tenth = done * 10 / total.max(1);
    if *last_tenth != Some(tenth) {
        *last_tenth = Some(tenth);
        c.console.log(format!("update: {}% ({} of {} bytes)", tenth * 10, done, total));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use otaforge_firmware::Chip;
    use tokio::io::AsyncWriteExt;

    fn net(read: Duration) -> Net {
        Net { http_timeout: read, stall_pause: Duration::ZERO, ..Net::default() }
    }

    #[tokio::test]
    async fn a_stalled_esp32_body_is_read_300_times_before_it_fails() {
        let (mut server, device) = tokio::io::duplex(64 * 1024);
        let mut wire = Wire::new(device, Chip::Esp32);
        server.write_all(b"0123456789").await.unwrap();
        let n = net(Duration::from_millis(1));
        assert_eq!(esp32_read(&n, &mut wire, 4096).await.unwrap(), b"0123456789");
        // Nothing more comes and the connection stays open: 300 reads, each waiting the stream
        // timeout, then the stall error.
        let started = std::time::Instant::now();
        assert_eq!(esp32_read(&n, &mut wire, 4096).await, Err(ReadFail::Timeout));
        assert!(
            started.elapsed() >= Duration::from_millis(u64::from(ESP32_STALL_READS)),
            "{:?}",
            started.elapsed()
        );
        // Data that comes within the retries is taken.
        let late = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(30)).await;
            server.write_all(b"late").await.unwrap();
            server
        });
        assert_eq!(esp32_read(&n, &mut wire, 4096).await.unwrap(), b"late");
        // A closed connection fails at once (the deliberate difference).
        drop(late.await.unwrap());
        assert_eq!(esp32_read(&n, &mut wire, 4096).await, Err(ReadFail::Closed));
        assert_eq!(Net::default().connect_timeout, Duration::from_secs(5));
        assert_eq!(Net::default().handshake_timeout, Duration::from_secs(120));
        assert_eq!(Net::default().stall_pause, Duration::from_millis(100));
    }
}
