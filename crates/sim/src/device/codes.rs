//! The numbers and words a real device logs when a check fails, so a virtual device's log reads
//! like a real one's and the same troubleshooting applies.
//!
//! Sources (facts, read from the cores): esp8266/Arduino `ESP8266httpUpdate.cpp` (`HTTP_UE_*`,
//! `getLastErrorString`), `ESP8266HTTPClient.cpp` (`HTTPC_ERROR_*`, `errorToString`),
//! `Updater.cpp` (`UPDATE_ERROR_*`, `printError`), `WiFiClientSecureBearSSL.cpp`
//! (`getLastSSLError`); arduino-esp32 `HTTPUpdate.cpp`/`.h`, `HTTPClient.cpp` and `Updater.cpp`
//! (master, 2026); BearSSL's `bearssl_ssl.h` and `bearssl_x509.h`; mbedTLS `x509.h`, `error.h`
//! and `error.c` (`mbedtls_strerror`).

use otaforge_firmware::Chip;

/// `HTTPC_ERROR_CONNECTION_FAILED`: no TCP connection, or the TLS handshake failed.
pub const CONNECTION_FAILED: i32 = -1;
/// `HTTPC_ERROR_SEND_HEADER_FAILED`.
pub const SEND_HEADER_FAILED: i32 = -2;
/// `HTTPC_ERROR_CONNECTION_LOST`: the connection closed while the answer's head was read.
pub const CONNECTION_LOST: i32 = -5;
/// `HTTPC_ERROR_NO_HTTP_SERVER`: the answer had no HTTP status line.
pub const NO_HTTP_SERVER: i32 = -7;
/// `HTTPC_ERROR_ENCODING`: a Transfer-Encoding other than chunked.
pub const ENCODING: i32 = -9;
/// `HTTPC_ERROR_READ_TIMEOUT`: no answer within the HTTP timeout.
pub const READ_TIMEOUT: i32 = -11;

/// `HTTP_UE_TOO_LESS_SPACE`.
pub const TOO_LESS_SPACE: i32 = -100;
/// `HTTP_UE_SERVER_NOT_REPORT_SIZE`.
pub const SERVER_NOT_REPORT_SIZE: i32 = -101;
/// `HTTP_UE_SERVER_FILE_NOT_FOUND`.
pub const SERVER_FILE_NOT_FOUND: i32 = -102;
/// `HTTP_UE_SERVER_FORBIDDEN`.
pub const SERVER_FORBIDDEN: i32 = -103;
/// `HTTP_UE_SERVER_WRONG_HTTP_CODE`.
pub const SERVER_WRONG_HTTP_CODE: i32 = -104;
/// `HTTP_UE_SERVER_FAULTY_MD5`: x-MD5 is not 32 characters.
pub const SERVER_FAULTY_MD5: i32 = -105;
/// `HTTP_UE_BIN_VERIFY_HEADER_FAILED`: the body does not start like an image.
pub const BIN_VERIFY_HEADER_FAILED: i32 = -106;
/// `HTTP_UE_BIN_FOR_WRONG_FLASH`: the image's flash-size nibble exceeds the chip.
pub const BIN_FOR_WRONG_FLASH: i32 = -107;
/// `HTTP_UE_SERVER_UNAUTHORIZED` (ESP8266 only).
pub const SERVER_UNAUTHORIZED: i32 = -108;
/// `HTTP_UE_NO_PARTITION` (ESP32 only, the same number as the ESP8266's -108):
/// `ESP.getFreeSketchSpace()` is 0, i.e. the partition table has no OTA slot
/// (`libraries/HTTPUpdate/src/HTTPUpdate.h`, checked in `handleUpdate` before the size).
pub const NO_PARTITION: i32 = -108;
/// `HTTP_UE_SERVER_FAULTY_SHA256` (ESP32, arduino-esp32 master): x-SHA256 is not 64 characters.
pub const SERVER_FAULTY_SHA256: i32 = -109;

/// The updater's own errors (`Update.getError()`), positive. The ESP8266 and ESP32 cores number
/// them differently from 8 on; each constant names its core.
pub mod update {
    /// Both cores: not enough space.
    pub const SPACE: i32 = 4;
    /// Both cores: `begin` with a size larger than the partition ("Bad Size Given").
    pub const SIZE: i32 = 5;
    /// Both cores: the body stopped arriving.
    pub const STREAM: i32 = 6;
    /// Both cores: the MD5 of what was written is not x-MD5.
    pub const MD5: i32 = 7;
    /// ESP32: the first byte is not 0xE9.
    pub const ESP32_MAGIC_BYTE: i32 = 8;
    /// ESP8266: the new image's flash size exceeds the chip.
    pub const ESP8266_NEW_FLASH_CONFIG: i32 = 9;
    /// ESP32: `esp_ota_set_boot_partition` refused the image (bad checksum, hash or chip).
    pub const ESP32_ACTIVATE: i32 = 9;
    /// ESP8266: the first byte is not 0xE9 (or gzip).
    pub const ESP8266_MAGIC_BYTE: i32 = 10;
    /// ESP32: no OTA partition to write to, or the next one is the running one
    /// (`UpdateClass::begin`: `!_partition || _partition == esp_ota_get_running_partition()`).
    pub const ESP32_NO_PARTITION: i32 = 10;
    /// ESP8266: `UPDATE_ERROR_SIGN`: the signature did not verify (any step of it: see
    /// [`crate::device::signature_check`]).
    pub const ESP8266_SIGN: i32 = 12;
    /// ESP32: `UPDATE_ERROR_SIGN` (arduino-esp32 ≥ 3.3, built with `UPDATE_SIGN`).
    pub const ESP32_SIGN: i32 = 14;
    /// ESP32: `Update.abort()` (or `end()` before all bytes came). arduino-esp32 master's
    /// `HTTPUpdate::runUpdate` calls `abort()` after a failed `writeStream`, so the updater's text
    /// is then "Aborted" while `getLastError()` keeps the stream error's number.
    pub const ESP32_ABORT: i32 = 12;
    /// ESP8266: `begin` while an earlier update is still marked running (after -105).
    pub const ESP8266_RUNNING_ALREADY: i32 = 15;
}

/// BearSSL error numbers (`br_ssl_engine_last_error`), as the ESP8266 reports them.
pub mod bearssl {
    /// `BR_ERR_TOO_LARGE`: a record larger than the receive buffer.
    pub const TOO_LARGE: i32 = 6;
    /// `BR_ERR_BAD_HANDSHAKE`: a handshake message it could not use.
    pub const BAD_HANDSHAKE: i32 = 14;
    /// `BR_ERR_IO`: the transport closed during the handshake.
    pub const IO: i32 = 31;
    /// `BR_ERR_X509_EXPIRED`: expired or not yet valid for the device clock.
    pub const EXPIRED: i32 = 54;
    /// `BR_ERR_X509_BAD_SERVER_NAME`.
    pub const BAD_SERVER_NAME: i32 = 56;
    /// `BR_ERR_X509_NOT_TRUSTED`.
    pub const NOT_TRUSTED: i32 = 62;
    /// `BR_ERR_RECV_FATAL_ALERT`, added to the alert number.
    pub const RECV_FATAL_ALERT: i32 = 256;
}

/// `MBEDTLS_ERR_X509_CERT_VERIFY_FAILED`: what an ESP32 reports for any certificate failure.
pub const MBEDTLS_CERT_VERIFY_FAILED: i32 = -0x2700;
/// `MBEDTLS_ERR_SSL_CONN_EOF`: the transport closed during the handshake.
pub const MBEDTLS_SSL_CONN_EOF: i32 = -0x7280;
/// `MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE`: the server sent a fatal alert.
pub const MBEDTLS_FATAL_ALERT: i32 = -0x7780;
/// What `NetworkClientSecure` keeps as its last error when `start_ssl_client` fails before TLS
/// (TCP refused, or not connected within the connect timeout) or the handshake outlasts its
/// timeout: a bare -1 (`libraries/NetworkClientSecure/src/ssl_client.cpp`), which
/// `mbedtls_strerror` words as `MBEDTLS_ERR_ERROR_GENERIC_ERROR` (-0x0001, mbedTLS 3.x `error.c`).
pub const MBEDTLS_GENERIC_ERROR: i32 = -0x0001;

/// `ESPhttpUpdate.getLastErrorString()` for `code` on `chip`'s core. `update_detail` is the
/// updater's own text for positive codes (the MD5 one carries both sums).
pub fn last_error_string(chip: Chip, code: i32, update_detail: &str) -> String {
    if code == 0 {
        return String::new();
    }
    if code > 0 {
        return if chip.is_esp8266() {
            format!("Update error: ERROR[{code}]: {update_detail}")
        } else {
            format!("Update error: {update_detail}")
        };
    }
    if code > -100 {
        return format!("HTTP error: {}", http_error_string(chip, code));
    }
    match code {
        TOO_LESS_SPACE => "Not Enough space",
        SERVER_NOT_REPORT_SIZE => "Server Did Not Report Size",
        SERVER_FILE_NOT_FOUND => "File Not Found (404)",
        SERVER_FORBIDDEN => "Forbidden (403)",
        SERVER_WRONG_HTTP_CODE => "Wrong HTTP Code",
        SERVER_FAULTY_MD5 => "Wrong MD5",
        BIN_VERIFY_HEADER_FAILED => "Verify Bin Header Failed",
        BIN_FOR_WRONG_FLASH => "New Binary Does Not Fit Flash Size",
        SERVER_UNAUTHORIZED if chip.is_esp8266() => "Unauthorized (401)",
        NO_PARTITION => "Partition Could Not be Found",
        SERVER_FAULTY_SHA256 if !chip.is_esp8266() => "Wrong SHA256",
        _ => "",
    }
    .to_string()
}

/// `HTTPClient::errorToString`.
fn http_error_string(chip: Chip, code: i32) -> &'static str {
    match code {
        CONNECTION_FAILED if chip.is_esp8266() => "connection failed",
        CONNECTION_FAILED => "connection refused",
        SEND_HEADER_FAILED => "send header failed",
        -3 => "send payload failed",
        -4 => "not connected",
        CONNECTION_LOST => "connection lost",
        -6 => "no stream",
        NO_HTTP_SERVER => "no HTTP server",
        -8 if chip.is_esp8266() => "not enough ram",
        -8 => "too less ram",
        ENCODING => "Transfer-Encoding not supported",
        -10 => "Stream write error",
        READ_TIMEOUT => "read Timeout",
        _ => "",
    }
}

/// The updater's text for its own error `code` (`Update.printError`, without the prefix).
pub fn update_error_string(chip: Chip, code: i32) -> &'static str {
    match (chip.is_esp8266(), code) {
        (_, 0) => "No Error",
        (_, 1) => "Flash Write Failed",
        (_, 2) => "Flash Erase Failed",
        (_, 3) => "Flash Read Failed",
        (_, 4) => "Not Enough Space",
        (_, 5) => "Bad Size Given",
        (_, 6) => "Stream Read Timeout",
        (false, 7) => "MD5 Check Failed",
        (true, 10) => "Magic byte is not 0xE9",
        (true, 12) => "Signature verification failed",
        (true, 13) => "No data supplied",
        (true, 15) => "Update already running",
        (false, 8) => "Wrong Magic Byte",
        (false, 9) => "Could Not Activate The Firmware",
        (false, 10) => "Partition Could Not be Found",
        (false, 11) => "Bad Argument",
        (false, 12) => "Aborted",
        (false, 14) => "Signature Verification Failed",
        _ => "UNKNOWN",
    }
}

/// `getLastSSLError` text for a BearSSL error, as the reference firmware logs it: it passes a
/// 112-byte buffer, so longer texts are cut at 111 characters.
pub fn bearssl_text(code: i32) -> String {
    let (prefix, code) = if (bearssl::RECV_FATAL_ALERT..512).contains(&code) {
        ("SSL received fatal alert - ", code - bearssl::RECV_FATAL_ALERT)
    } else {
        ("", code)
    };
    let text = match code {
        bearssl::TOO_LARGE => {
            "Incoming record is too large to be processed, or buffer is too small for the handshake message to send."
        }
        bearssl::IO => "I/O error or premature close on transport stream.",
        bearssl::EXPIRED => "Certificate is expired or not yet valid.",
        bearssl::BAD_SERVER_NAME => "Expected server name was not found in the chain.",
        bearssl::NOT_TRUSTED => "Chain could not be linked to a trust anchor.",
        bearssl::BAD_HANDSHAKE => "Incoming handshake message decoding failed.",
        16 => {
            "Server wants to use a cipher suite that we did not claim to support. This is also reported if we tried to advertise a cipher suite that we do not support."
        }
        _ => "Unknown error code.",
    };
    format!("{prefix}{text}").chars().take(111).collect()
}

/// `mbedtls_strerror` text for the codes a virtual ESP32 reports.
pub fn mbedtls_text(code: i32) -> &'static str {
    match code {
        MBEDTLS_CERT_VERIFY_FAILED => {
            "X509 - Certificate verification failed, e.g. CRL, CA or signature check failed"
        }
        MBEDTLS_SSL_CONN_EOF => "SSL - The connection indicated an EOF",
        MBEDTLS_FATAL_ALERT => "SSL - A fatal alert message was received from our peer",
        MBEDTLS_GENERIC_ERROR => "ERROR - Generic error",
        _ => "UNKNOWN ERROR CODE",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_follow_the_cores() {
        let e = Chip::Esp8266;
        assert_eq!(last_error_string(e, -1, ""), "HTTP error: connection failed");
        assert_eq!(last_error_string(Chip::Esp32, -1, ""), "HTTP error: connection refused");
        assert_eq!(last_error_string(e, -106, ""), "Verify Bin Header Failed");
        assert_eq!(
            last_error_string(e, 6, "Stream Read Timeout"),
            "Update error: ERROR[6]: Stream Read Timeout"
        );
        assert_eq!(
            last_error_string(Chip::Esp32, 9, "Could Not Activate The Firmware"),
            "Update error: Could Not Activate The Firmware"
        );
        assert_eq!(last_error_string(e, 0, ""), "");
        assert_eq!(update_error_string(e, 10), "Magic byte is not 0xE9");
        assert_eq!(update_error_string(Chip::Esp32, 8), "Wrong Magic Byte");
        // The two cores number and word a refused signature differently.
        assert_eq!(
            last_error_string(e, 12, update_error_string(e, 12)),
            "Update error: ERROR[12]: Signature verification failed"
        );
        assert_eq!(
            last_error_string(Chip::Esp32, 14, update_error_string(Chip::Esp32, 14)),
            "Update error: Signature Verification Failed"
        );
        assert_eq!(update_error_string(Chip::Esp32, 12), "Aborted");
        // -108 means different things on the two cores.
        assert_eq!(last_error_string(e, -108, ""), "Unauthorized (401)");
        assert_eq!(last_error_string(Chip::Esp32, -108, ""), "Partition Could Not be Found");
        assert_eq!(last_error_string(Chip::Esp32C3, -109, ""), "Wrong SHA256");
        assert_eq!(last_error_string(Chip::Esp32, -8, ""), "HTTP error: too less ram");
        assert_eq!(mbedtls_text(MBEDTLS_GENERIC_ERROR), "ERROR - Generic error");
    }

    #[test]
    fn bearssl_texts_are_cut_like_the_reference_buffer() {
        assert_eq!(bearssl_text(54), "Certificate is expired or not yet valid.");
        assert!(bearssl_text(6).starts_with("Incoming record is too large"));
        assert_eq!(bearssl_text(16).chars().count(), 111, "the cipher-suite text is cut");
        assert!(bearssl_text(256 + 40).starts_with("SSL received fatal alert - "));
    }
}
