//! SLIP framing, the byte layer of the ESP serial protocol: every request and answer is a frame
//! between two `C0` bytes, with `C0` sent as `DB DC` and `DB` as `DB DD` inside it.

/// Frame delimiter.
pub const END: u8 = 0xC0;
/// Escape byte.
pub const ESC: u8 = 0xDB;
/// Escaped `END`.
pub const ESC_END: u8 = 0xDC;
/// Escaped `ESC`.
pub const ESC_ESC: u8 = 0xDD;

/// Wraps `payload` in one SLIP frame.
pub fn encode(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + payload.len() / 32 + 2);
    out.push(END);
    for &b in payload {
        match b {
            END => out.extend_from_slice(&[ESC, ESC_END]),
            ESC => out.extend_from_slice(&[ESC, ESC_ESC]),
            _ => out.push(b),
        }
    }
    out.push(END);
    out
}

/// Turns a byte stream back into frames, a few bytes at a time (a serial line delivers frames in
/// arbitrary pieces).
///
/// Like the ROM, it ignores bytes outside a frame (boot noise, a host's stray bytes) and drops a
/// frame with a broken escape instead of guessing.
#[derive(Debug, Default)]
pub struct Decoder {
    frame: Vec<u8>,
    in_frame: bool,
    escaped: bool,
    broken: bool,
}

impl Decoder {
    /// A decoder waiting for the start of a frame.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds one byte; returns a frame when this byte completes one.
    pub fn push(&mut self, b: u8) -> Option<Vec<u8>> {
        if b == END {
            if self.in_frame && !self.frame.is_empty() && !self.broken && !self.escaped {
                let frame = std::mem::take(&mut self.frame);
                self.reset();
                // A closing C0 may also open the next frame: stay "in frame".
                self.in_frame = true;
                return Some(frame);
            }
            self.reset();
            self.in_frame = true;
            return None;
        }
        if !self.in_frame {
            return None;
        }
        if self.escaped {
            self.escaped = false;
            match b {
                ESC_END => self.frame.push(END),
                ESC_ESC => self.frame.push(ESC),
                _ => self.broken = true,
            }
        } else if b == ESC {
            self.escaped = true;
        } else {
            self.frame.push(b);
        }
        None
    }

    /// Feeds several bytes; returns every frame they complete, in order.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<Vec<u8>> {
        bytes.iter().filter_map(|&b| self.push(b)).collect()
    }

    fn reset(&mut self) {
        self.escaped = false;
        self.broken = false;
        self.frame.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_end_and_esc_only() {
        assert_eq!(
            encode(&[0x01, 0xC0, 0x02, 0xDB, 0x03]),
            vec![0xC0, 0x01, 0xDB, 0xDC, 0x02, 0xDB, 0xDD, 0x03, 0xC0]
        );
        assert_eq!(encode(&[]), vec![0xC0, 0xC0]);
        assert_eq!(encode(&[0xDC, 0xDD]), vec![0xC0, 0xDC, 0xDD, 0xC0]);
    }

    #[test]
    fn decodes_what_it_encodes_in_any_split() {
        let payload: Vec<u8> = (0..=255u8).chain([0xC0, 0xDB, 0xC0, 0xDB]).collect();
        let wire = encode(&payload);
        for split in 1..wire.len() {
            let mut d = Decoder::new();
            let mut frames = d.feed(&wire[..split]);
            frames.extend(d.feed(&wire[split..]));
            assert_eq!(frames, vec![payload.clone()], "split at {split}");
        }
    }

    #[test]
    fn back_to_back_frames_share_delimiters() {
        // esptool's SYNC answers arrive as C0 .. C0 C0 .. C0, and some hosts send a single C0
        // between frames.
        let mut d = Decoder::new();
        let frames = d.feed(&[0xC0, 1, 2, 0xC0, 0xC0, 3, 0xC0, 4, 0xC0]);
        assert_eq!(frames, vec![vec![1, 2], vec![3], vec![4]]);
    }

    #[test]
    fn ignores_noise_outside_frames_and_drops_broken_escapes() {
        let mut d = Decoder::new();
        let mut wire = b"ets Jan  8 2013,rst cause:2\r\n".to_vec();
        wire.extend([0xC0, 9, 0xDB, 0x01, 8, 0xC0]); // DB 01 is no escape
        wire.extend([0xC0, 7, 0xDB, 0xDC, 0xC0]);
        assert_eq!(d.feed(&wire), vec![vec![7, 0xC0]]);
    }
}
