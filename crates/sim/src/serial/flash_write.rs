//! Writing flash the way the bootloaders do: a `_BEGIN` command sets up the region, `_DATA`
//! blocks (plain or zlib-compressed) fill it. The ROMs erase the region at `_BEGIN`; the stubs
//! erase just in time, sector by sector, as data arrives. Also: loading code into RAM.

use std::time::Duration;

use flate2::{Decompress, FlushDecompress, Status as ZStatus};

use super::flash_file::{FlashFile, SECTOR_SIZE};

/// The large erase unit of SPI NOR flash.
const BLOCK_SIZE: u32 = 0x1_0000;

/// Code being uploaded to RAM (a flasher stub), segment by segment.
#[derive(Debug, Default)]
pub struct MemLoad {
    expected: u32,
    received: u32,
    started: bool,
    broken: bool,
}

impl MemLoad {
    /// MEM_BEGIN: a new segment of `size` bytes. An unfinished previous segment spoils the upload.
    pub fn begin(&mut self, _addr: u32, size: u32, _block_size: u32) {
        if self.started && self.received < self.expected {
            self.broken = true; // the previous segment never arrived whole
        }
        self.started = true;
        self.expected = size;
        self.received = 0;
    }

    /// MEM_DATA: `len` bytes of the segment arrived. False if there is no segment or it overflows
    /// (hosts pad the last block to a whole word, so up to 3 bytes past the size are fine).
    pub fn data(&mut self, len: u32) -> bool {
        if !self.started || self.received as u64 + len as u64 > (self.expected as u64).next_multiple_of(4) {
            return false;
        }
        self.received += len;
        true
    }

    /// Was every segment uploaded whole?
    pub fn complete(&self) -> bool {
        self.started && !self.broken && self.received >= self.expected
    }
}

/// Why a data block was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockError {
    /// The data goes past the end of the flash (or of the announced size).
    OutOfRange,
    /// A compressed block skipped ahead of the next expected one.
    Sequence,
    /// The compressed data is not a valid zlib stream.
    Inflate,
    /// The flash file could not be written.
    Io,
}

/// A flash write in progress.
#[derive(Debug)]
pub struct FlashWrite {
    offset: u32,
    size: u32,
    block_size: u32,
    next_seq: u32,
    written: u32,
    erased_until: u32,
    just_in_time: bool,
    clip: bool,
    inflate: Option<Decompress>,
}

/// How the bootloader running the write erases and bounds it.
#[derive(Debug, Clone, Copy)]
pub struct WriteStyle {
    /// Erase sectors as data reaches them (stubs) instead of at `_BEGIN` (ROMs).
    pub just_in_time: bool,
    /// Drop bytes past the announced size (stubs; the ROM writes whole blocks).
    pub clip: bool,
}

impl FlashWrite {
    /// A write of `size` bytes at `offset` in blocks of `block_size`; `compressed` for the
    /// `FLASH_DEFL_*` commands.
    pub fn new(offset: u32, size: u32, block_size: u32, compressed: bool, style: WriteStyle) -> FlashWrite {
        FlashWrite {
            offset,
            size,
            block_size,
            next_seq: 0,
            written: 0,
            erased_until: offset / SECTOR_SIZE * SECTOR_SIZE,
            just_in_time: style.just_in_time,
            clip: style.clip,
            inflate: compressed.then(|| Decompress::new(true)),
        }
    }

    /// Is this a compressed write?
    pub fn compressed(&self) -> bool {
        self.inflate.is_some()
    }

    /// Takes data block `seq`; returns the time the flash chip spends on it.
    /// `corrupt` flips a bit of the block (the fault knob for flash that does not keep data).
    pub fn accept(
        &mut self,
        seq: u32,
        data: &[u8],
        flash: &mut FlashFile,
        corrupt: bool,
    ) -> Result<Duration, BlockError> {
        let (addr, mut bytes) = match self.inflate.as_mut() {
            Some(z) => {
                if seq < self.next_seq {
                    return Ok(Duration::ZERO); // a host's retry of a block already taken
                }
                if seq > self.next_seq {
                    return Err(BlockError::Sequence);
                }
                let out = inflate(z, data)?;
                (self.offset + self.written, out)
            }
            None => {
                let addr =
                    self.offset.checked_add(seq.checked_mul(self.block_size).ok_or(BlockError::OutOfRange)?);
                (addr.ok_or(BlockError::OutOfRange)?, data.to_vec())
            }
        };
        self.next_seq = self.next_seq.max(seq + 1);
        let end = self.offset as u64 + self.size as u64;
        if self.clip && addr as u64 + bytes.len() as u64 > end {
            if self.inflate.is_some() {
                return Err(BlockError::OutOfRange); // more data than announced
            }
            bytes.truncate(end.saturating_sub(addr as u64) as usize);
        }
        if corrupt && let Some(b) = bytes.first_mut() {
            *b ^= 0x01;
        }
        let mut busy = Duration::ZERO;
        let block_end = addr as u64 + bytes.len() as u64;
        if block_end > flash.size() as u64 {
            return Err(BlockError::OutOfRange);
        }
        if self.just_in_time && block_end > self.erased_until as u64 {
            // Like the stubs: a whole 64 KB block where one starts and the write still covers
            // it, else a 4 KB sector; the stale area ahead of `addr` is left alone.
            let region_end = (self.offset as u64 + self.size as u64).next_multiple_of(SECTOR_SIZE as u64);
            let mut at = self.erased_until.max(addr / SECTOR_SIZE * SECTOR_SIZE);
            while (at as u64) < block_end {
                let len = if at.is_multiple_of(BLOCK_SIZE) && region_end >= at as u64 + BLOCK_SIZE as u64 {
                    BLOCK_SIZE
                } else {
                    SECTOR_SIZE
                };
                if !flash.erase(at, len).map_err(|_| BlockError::Io)? {
                    return Err(BlockError::OutOfRange);
                }
                busy += erase_time(at, len);
                at += len;
            }
            self.erased_until = at;
        }
        if !flash.program(addr, &bytes).map_err(|_| BlockError::Io)? {
            return Err(BlockError::OutOfRange);
        }
        self.written += bytes.len() as u32;
        Ok(busy + program_time(bytes.len() as u32))
    }
}

fn inflate(z: &mut Decompress, input: &[u8]) -> Result<Vec<u8>, BlockError> {
    let mut out = Vec::with_capacity(input.len() * 4 + 4096);
    let mut used = 0usize;
    loop {
        if out.len() == out.capacity() {
            out.reserve(out.capacity());
        }
        let (in_before, out_before) = (z.total_in(), out.len());
        let status = z
            .decompress_vec(&input[used..], &mut out, FlushDecompress::None)
            .map_err(|_| BlockError::Inflate)?;
        used += (z.total_in() - in_before) as usize;
        let progressed = z.total_in() != in_before || out.len() != out_before;
        if matches!(status, ZStatus::StreamEnd)
            || (used == input.len() && out.len() < out.capacity())
            || !progressed
        {
            return Ok(out);
        }
    }
}

/// How long a NOR flash takes to erase a range: 64 KB blocks where aligned (~150 ms), 4 KB
/// sectors elsewhere (~45 ms), as a W25Q32 datasheet has them.
pub fn erase_time(offset: u32, len: u32) -> Duration {
    let (mut at, end) = (
        offset / SECTOR_SIZE * SECTOR_SIZE,
        (offset as u64 + len as u64).div_ceil(SECTOR_SIZE as u64) as u32 * SECTOR_SIZE,
    );
    let mut t = Duration::ZERO;
    while at < end {
        if at % 0x1_0000 == 0 && end - at >= 0x1_0000 {
            t += Duration::from_millis(150);
            at += 0x1_0000;
        } else {
            t += Duration::from_millis(45);
            at += SECTOR_SIZE;
        }
    }
    t
}

/// How long programming takes: ~0.5 ms per 256-byte page.
pub fn program_time(len: u32) -> Duration {
    Duration::from_micros(len.div_ceil(256) as u64 * 500)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn flash() -> (tempfile::TempDir, FlashFile) {
        let dir = tempfile::tempdir().unwrap();
        let f = FlashFile::open(&dir.path().join("f"), 0x4_0000).unwrap();
        (dir, f)
    }

    #[test]
    fn stub_style_compressed_write_erases_just_in_time() {
        let (_d, mut f) = flash();
        f.program(0x2_0000, &[0x00; 16]).unwrap(); // stale data the write must erase first
        f.program(0x2_6000, &[0x00; 4]).unwrap(); // data past the write that must survive
        let image: Vec<u8> = (0..0x5000u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
        z.write_all(&image).unwrap();
        let packed = z.finish().unwrap();
        let style = WriteStyle { just_in_time: true, clip: true };
        let mut w = FlashWrite::new(0x2_0000, image.len() as u32, 0x400, true, style);
        for (seq, chunk) in packed.chunks(0x400).enumerate() {
            w.accept(seq as u32, chunk, &mut f, false).unwrap();
            // A retried block is taken once.
            w.accept(seq as u32, chunk, &mut f, false).unwrap();
        }
        assert_eq!(f.read(0x2_0000, image.len() as u32).unwrap(), &image[..]);
        assert_eq!(f.read(0x2_5000, 1), Some(&[0xFF][..]));
        assert_eq!(f.read(0x2_6000, 4), Some(&[0x00; 4][..]), "no 64 KB erase past the write's end");
        assert_eq!(w.accept(99, &packed[..1], &mut f, false), Err(BlockError::Sequence));
    }

    #[test]
    fn rom_style_plain_write_places_blocks_by_sequence_and_rejects_garbage() {
        let (_d, mut f) = flash();
        let style = WriteStyle { just_in_time: false, clip: false };
        let mut w = FlashWrite::new(0x1000, 0x800, 0x400, false, style);
        w.accept(1, &[0xAA; 0x400], &mut f, false).unwrap();
        w.accept(0, &[0x55; 0x400], &mut f, true).unwrap();
        assert_eq!(f.read(0x1000, 2).unwrap(), &[0x54, 0x55], "corrupt flips a bit");
        assert_eq!(f.read(0x1400, 1).unwrap(), &[0xAA]);
        assert_eq!(w.accept(0x1000, &[0; 0x400], &mut f, false), Err(BlockError::OutOfRange));
        let mut z = FlashWrite::new(0, 0x100, 0x400, true, style);
        assert_eq!(z.accept(0, b"not zlib at all", &mut f, false), Err(BlockError::Inflate));
    }

    #[test]
    fn flash_timing_model() {
        assert_eq!(erase_time(0, 0x1_0000), Duration::from_millis(150));
        assert_eq!(erase_time(0x1000, 0x1_0000), Duration::from_millis(45 * 16));
        assert_eq!(program_time(0x400), Duration::from_millis(2));
    }
}
