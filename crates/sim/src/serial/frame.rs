//! The frame layer: what is inside a SLIP frame. A request is `00, op, u16 len, u32 checksum,
//! data`; an answer is `01, op, u16 len, u32 value, data…, status`. All fields little-endian.

/// Command codes, as the ROM and the flasher stubs number them.
#[allow(missing_docs)] // the names are the protocol's own
pub mod op {
    pub const FLASH_BEGIN: u8 = 0x02;
    pub const FLASH_DATA: u8 = 0x03;
    pub const FLASH_END: u8 = 0x04;
    pub const MEM_BEGIN: u8 = 0x05;
    pub const MEM_END: u8 = 0x06;
    pub const MEM_DATA: u8 = 0x07;
    pub const SYNC: u8 = 0x08;
    pub const WRITE_REG: u8 = 0x09;
    pub const READ_REG: u8 = 0x0A;
    pub const SPI_SET_PARAMS: u8 = 0x0B;
    pub const SPI_ATTACH: u8 = 0x0D;
    pub const READ_FLASH_SLOW: u8 = 0x0E;
    pub const CHANGE_BAUDRATE: u8 = 0x0F;
    pub const FLASH_DEFL_BEGIN: u8 = 0x10;
    pub const FLASH_DEFL_DATA: u8 = 0x11;
    pub const FLASH_DEFL_END: u8 = 0x12;
    pub const SPI_FLASH_MD5: u8 = 0x13;
    pub const GET_SECURITY_INFO: u8 = 0x14;
    pub const ERASE_FLASH: u8 = 0xD0;
    pub const ERASE_REGION: u8 = 0xD1;
    pub const READ_FLASH: u8 = 0xD2;
    pub const RUN_USER_CODE: u8 = 0xD3;
}

/// Error codes the ROM puts in the status's second byte.
#[allow(missing_docs)] // named as esptool's docs name them
pub mod rom_error {
    pub const INVALID_MESSAGE: u8 = 0x05;
    pub const FAILED_TO_ACT: u8 = 0x06;
    pub const INVALID_CRC: u8 = 0x07;
    pub const FLASH_WRITE_ERROR: u8 = 0x08;
    pub const FLASH_READ_ERROR: u8 = 0x09;
    pub const FLASH_READ_LENGTH_ERROR: u8 = 0x0A;
    pub const DEFLATE_ERROR: u8 = 0x0B;
}

/// Error codes the flasher stubs use (all `0xC*`, or `0xFF` for a command they lack).
#[allow(missing_docs)] // named as esptool's stub names them
pub mod stub_error {
    pub const BAD_DATA_LEN: u8 = 0xC0;
    pub const BAD_DATA_CHECKSUM: u8 = 0xC1;
    pub const BAD_BLOCKSIZE: u8 = 0xC2;
    pub const INVALID_COMMAND: u8 = 0xC3;
    pub const FAILED_SPI_OP: u8 = 0xC4;
    pub const NOT_IN_FLASH_MODE: u8 = 0xC6;
    pub const INFLATE_ERROR: u8 = 0xC7;
    pub const NOT_ENOUGH_DATA: u8 = 0xC8;
    pub const TOO_MUCH_DATA: u8 = 0xC9;
    pub const CMD_NOT_IMPLEMENTED: u8 = 0xFF;
}

/// The seed of the `_DATA` commands' 8-bit checksum.
pub const CHECKSUM_SEED: u8 = 0xEF;

/// The checksum the `_DATA` commands carry: `0xEF` xor every byte of the data to write.
pub fn data_checksum(data: &[u8]) -> u8 {
    data.iter().fold(CHECKSUM_SEED, |acc, b| acc ^ b)
}

/// One request from the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Command code.
    pub op: u8,
    /// The header's checksum field (meaningful for the `_DATA` commands only).
    pub checksum: u32,
    /// The payload.
    pub data: Vec<u8>,
}

/// Why a frame is not a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BadRequest {
    /// Shorter than the 8-byte header, or not marked as a request: the ROM ignores it.
    NotARequest,
    /// The header's length disagrees with the payload: the ROM answers "invalid message".
    LengthMismatch {
        /// Command code.
        op: u8,
    },
}

impl Request {
    /// Reads a request out of a decoded frame.
    pub fn parse(frame: &[u8]) -> Result<Request, BadRequest> {
        if frame.len() < 8 || frame[0] != 0x00 {
            return Err(BadRequest::NotARequest);
        }
        let op = frame[1];
        let len = u16::from_le_bytes([frame[2], frame[3]]) as usize;
        let checksum = u32::from_le_bytes([frame[4], frame[5], frame[6], frame[7]]);
        let data = &frame[8..];
        if data.len() != len {
            return Err(BadRequest::LengthMismatch { op });
        }
        Ok(Request { op, checksum, data: data.to_vec() })
    }

    /// Builds a request frame (the host side; the tests use it).
    pub fn encode(op: u8, checksum: u32, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 + data.len());
        out.extend_from_slice(&[0x00, op]);
        out.extend_from_slice(&(data.len() as u16).to_le_bytes());
        out.extend_from_slice(&checksum.to_le_bytes());
        out.extend_from_slice(data);
        out
    }

    /// The payload's `i`th little-endian word, if it is there.
    pub fn word(&self, i: usize) -> Option<u32> {
        let b = self.data.get(i * 4..i * 4 + 4)?;
        Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// The data part of a `_DATA` command: `(length, sequence, data)`, if the payload holds the
    /// 16-byte header and the length it announces.
    pub fn data_block(&self) -> Option<(u32, u32, &[u8])> {
        let len = self.word(0)?;
        let seq = self.word(1)?;
        let rest = self.data.get(16..)?;
        if rest.len() < len as usize {
            return None;
        }
        Some((len, seq, &rest[..len as usize]))
    }
}

/// A command's outcome as the status bytes carry it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Status `00 00`.
    Ok,
    /// Status `01 <code>`.
    Error(u8),
}

/// Builds an answer frame: `01, op, len, value, data, status` where the status takes
/// `status_len` bytes (2 from the ESP8266 ROM and every stub, 4 from newer ROMs).
pub fn response(op: u8, value: u32, data: &[u8], status: Status, status_len: usize) -> Vec<u8> {
    let mut status_bytes = vec![0u8; status_len.max(2)];
    if let Status::Error(code) = status {
        status_bytes[0] = 1;
        status_bytes[1] = code;
    }
    let len = data.len() + status_bytes.len();
    let mut out = Vec::with_capacity(8 + len);
    out.extend_from_slice(&[0x01, op]);
    out.extend_from_slice(&(len as u16).to_le_bytes());
    out.extend_from_slice(&value.to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&status_bytes);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_read_reg_request() {
        // esptool: READ_REG 0x40001000, as on the wire inside the SLIP frame.
        let frame = [0x00, 0x0A, 0x04, 0x00, 0, 0, 0, 0, 0x00, 0x10, 0x00, 0x40];
        let req = Request::parse(&frame).unwrap();
        assert_eq!(req.op, op::READ_REG);
        assert_eq!(req.word(0), Some(0x4000_1000));
        assert_eq!(req.word(1), None);
        assert_eq!(Request::encode(op::READ_REG, 0, &req.data), frame.to_vec());
    }

    #[test]
    fn rejects_answers_short_frames_and_wrong_lengths() {
        assert_eq!(Request::parse(&[0x01, 0x08, 0, 0, 0, 0, 0, 0]), Err(BadRequest::NotARequest));
        assert_eq!(Request::parse(&[0x00, 0x08, 0]), Err(BadRequest::NotARequest));
        assert_eq!(
            Request::parse(&[0x00, 0x0A, 0x05, 0, 0, 0, 0, 0, 1, 2, 3, 4]),
            Err(BadRequest::LengthMismatch { op: 0x0A })
        );
    }

    #[test]
    fn builds_answers_with_two_and_four_status_bytes() {
        // ESP8266 ROM READ_REG answer for the chip magic (from a real board's esptool trace).
        assert_eq!(
            response(op::READ_REG, 0xFFF0_C101, &[], Status::Ok, 2),
            vec![0x01, 0x0A, 0x02, 0x00, 0x01, 0xC1, 0xF0, 0xFF, 0x00, 0x00]
        );
        assert_eq!(
            response(op::FLASH_DATA, 0, &[], Status::Error(rom_error::INVALID_CRC), 4),
            vec![0x01, 0x03, 0x04, 0x00, 0, 0, 0, 0, 0x01, 0x07, 0x00, 0x00]
        );
        let md5 = [0xAB; 16];
        let r = response(op::SPI_FLASH_MD5, 0, &md5, Status::Ok, 2);
        assert_eq!(r.len(), 8 + 16 + 2);
        assert_eq!(u16::from_le_bytes([r[2], r[3]]), 18);
    }

    #[test]
    fn data_checksum_and_block_header() {
        assert_eq!(data_checksum(&[]), 0xEF);
        assert_eq!(data_checksum(&[0xEF]), 0x00);
        assert_eq!(data_checksum(&[0x01, 0x02, 0x04]), 0xEF ^ 0x07);
        let mut payload = Vec::new();
        for w in [3u32, 7, 0, 0] {
            payload.extend_from_slice(&w.to_le_bytes());
        }
        payload.extend_from_slice(&[9, 8, 7, 0xFF]);
        let req = Request { op: op::FLASH_DATA, checksum: 0, data: payload };
        assert_eq!(req.data_block(), Some((3, 7, &[9u8, 8, 7][..])));
        let short = Request { op: op::FLASH_DATA, checksum: 0, data: req.data[..17].to_vec() };
        assert_eq!(short.data_block(), None);
    }
}
