//! A device's SPI flash in memory: 4 KB sectors, erased to `FF`, programming only clears bits (as
//! NOR flash does). Sectors are shared copy-on-write, so a fleet of a thousand devices flashed
//! with the same image holds that image once, and an update copied sector by sector (eboot, or an
//! OTA slot) costs nothing until it is written.

use std::path::Path;
use std::sync::Arc;

/// Smallest erasable unit.
pub const SECTOR: usize = 0x1000;

type Sector = Arc<[u8; SECTOR]>;

/// The flash chip's contents.
#[derive(Debug, Clone)]
pub struct Flash {
    /// `None`: erased (all `FF`).
    sectors: Vec<Option<Sector>>,
    /// Sectors changed since [`Flash::take_dirty`] (to write back to a flash file).
    dirty: Vec<bool>,
}

/// Why flash could not be used.
#[allow(missing_docs)] // each variant's message is its documentation
#[derive(Debug, thiserror::Error)]
pub enum FlashError {
    #[error("{what} at 0x{addr:x} (+{len} bytes) lies outside the {size}-byte flash")]
    OutOfRange { what: &'static str, addr: usize, len: usize, size: usize },
    #[error("the flash size {0} is not a whole number of 4 KB sectors")]
    BadSize(usize),
    #[error("cannot read the flash file {path}: {source}")]
    File { path: String, source: std::io::Error },
    #[error("the flash file {path} holds {len} bytes, more than the {size}-byte flash")]
    FileTooLarge { path: String, len: usize, size: usize },
}

impl Flash {
    /// A fully erased chip of `size` bytes.
    pub fn erased(size: usize) -> Result<Flash, FlashError> {
        if size == 0 || !size.is_multiple_of(SECTOR) {
            return Err(FlashError::BadSize(size));
        }
        Ok(Flash { sectors: vec![None; size / SECTOR], dirty: vec![false; size / SECTOR] })
    }

    /// A chip of `size` bytes holding `bytes` at `addr` (erased elsewhere): what flashing an
    /// image over serial leaves.
    pub fn with_image(size: usize, addr: usize, bytes: &[u8]) -> Result<Flash, FlashError> {
        let mut f = Flash::erased(size)?;
        f.erase_range(addr, bytes.len())?;
        f.write(addr, bytes)?;
        f.dirty.fill(false);
        Ok(f)
    }

    /// A chip holding exactly `bytes` (a whole flash dump; its length is the chip size).
    pub fn from_bytes(bytes: &[u8]) -> Result<Flash, FlashError> {
        let mut f = Flash::erased(bytes.len())?;
        for (i, chunk) in bytes.chunks(SECTOR).enumerate() {
            if chunk.iter().any(|&b| b != 0xFF) {
                let mut s = [0xFF; SECTOR];
                s.copy_from_slice(chunk);
                f.sectors[i] = Some(Arc::new(s));
            }
        }
        Ok(f)
    }

    /// Reads a raw flash file (the serial simulator's): a shorter file is erased beyond its end.
    pub fn load(path: &Path, size: usize) -> Result<Flash, FlashError> {
        let bytes = std::fs::read(path)
            .map_err(|source| FlashError::File { path: path.display().to_string(), source })?;
        if bytes.len() > size {
            return Err(FlashError::FileTooLarge {
                path: path.display().to_string(),
                len: bytes.len(),
                size,
            });
        }
        let mut f = Flash::erased(size)?;
        for (i, chunk) in bytes.chunks(SECTOR).enumerate() {
            if chunk.iter().all(|&b| b == 0xFF) {
                continue;
            }
            let mut s = [0xFF; SECTOR];
            s[..chunk.len()].copy_from_slice(chunk);
            f.sectors[i] = Some(Arc::new(s));
        }
        Ok(f)
    }

    /// Writes the sectors changed since the last call back into a raw flash file.
    pub fn save_dirty(&mut self, path: &Path) -> std::io::Result<usize> {
        use std::os::unix::fs::FileExt;
        let file = std::fs::OpenOptions::new().write(true).create(true).truncate(false).open(path)?;
        let mut n = 0;
        for i in self.take_dirty() {
            let data = self.sectors[i].as_deref().copied().unwrap_or([0xFF; SECTOR]);
            file.write_all_at(&data, (i * SECTOR) as u64)?;
            n += 1;
        }
        file.sync_data()?;
        Ok(n)
    }

    /// Indices of sectors changed since the last call.
    pub fn take_dirty(&mut self) -> Vec<usize> {
        let out = self.dirty.iter().enumerate().filter(|(_, d)| **d).map(|(i, _)| i).collect();
        self.dirty.fill(false);
        out
    }

    /// Size in bytes.
    pub fn size(&self) -> usize {
        self.sectors.len() * SECTOR
    }

    fn check(&self, what: &'static str, addr: usize, len: usize) -> Result<(), FlashError> {
        match addr.checked_add(len) {
            Some(end) if end <= self.size() => Ok(()),
            _ => Err(FlashError::OutOfRange { what, addr, len, size: self.size() }),
        }
    }

    /// Reads `len` bytes at `addr`.
    pub fn read(&self, addr: usize, len: usize) -> Result<Vec<u8>, FlashError> {
        self.check("a read", addr, len)?;
        let mut out = Vec::with_capacity(len);
        let mut at = addr;
        while at < addr + len {
            let (i, off) = (at / SECTOR, at % SECTOR);
            let n = (SECTOR - off).min(addr + len - at);
            match &self.sectors[i] {
                Some(s) => out.extend_from_slice(&s[off..off + n]),
                None => out.resize(out.len() + n, 0xFF),
            }
            at += n;
        }
        Ok(out)
    }

    /// Erases the sectors holding `[addr, addr + len)` (whole sectors, as the chip does).
    pub fn erase_range(&mut self, addr: usize, len: usize) -> Result<(), FlashError> {
        self.check("an erase", addr, len)?;
        if len == 0 {
            return Ok(());
        }
        for i in addr / SECTOR..(addr + len).div_ceil(SECTOR) {
            self.sectors[i] = None;
            self.dirty[i] = true;
        }
        Ok(())
    }

    /// Programs `data` at `addr`: each byte becomes `old & new` (only an erase sets bits).
    pub fn write(&mut self, addr: usize, data: &[u8]) -> Result<(), FlashError> {
        self.check("a write", addr, data.len())?;
        let mut at = addr;
        for chunk in chunks_at(addr, data) {
            let (i, off) = (at / SECTOR, at % SECTOR);
            let sector = self.sectors[i].get_or_insert_with(|| Arc::new([0xFF; SECTOR]));
            let s = Arc::make_mut(sector);
            for (dst, src) in s[off..off + chunk.len()].iter_mut().zip(chunk) {
                *dst &= *src;
            }
            self.dirty[i] = true;
            at += chunk.len();
        }
        Ok(())
    }

    /// Copies `len` bytes from `src` to `dst` as eboot does (erase, then program). Whole aligned
    /// sectors are shared rather than copied.
    pub fn copy(&mut self, src: usize, dst: usize, len: usize) -> Result<(), FlashError> {
        self.check("a copy source", src, len)?;
        self.check("a copy destination", dst, len)?;
        if src.is_multiple_of(SECTOR) && dst.is_multiple_of(SECTOR) {
            let whole = len / SECTOR;
            for k in 0..whole {
                self.sectors[dst / SECTOR + k] = self.sectors[src / SECTOR + k].clone();
                self.dirty[dst / SECTOR + k] = true;
            }
            let done = whole * SECTOR;
            if done < len {
                let rest = self.read(src + done, len - done)?;
                self.erase_range(dst + done, rest.len())?;
                self.write(dst + done, &rest)?;
            }
            return Ok(());
        }
        let bytes = self.read(src, len)?;
        self.erase_range(dst, len)?;
        self.write(dst, &bytes)
    }
}

/// Splits `data` written at `addr` at sector boundaries.
fn chunks_at(addr: usize, data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut at = addr;
    let mut rest = data;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let n = (SECTOR - at % SECTOR).min(rest.len());
        let (head, tail) = rest.split_at(n);
        rest = tail;
        at += n;
        Some(head)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nor_semantics() {
        let mut f = Flash::erased(4 * SECTOR).unwrap();
        assert_eq!(f.read(10, 3).unwrap(), [0xFF; 3]);
        f.write(SECTOR - 2, &[0x0F, 0xF0, 0x55, 0xAA]).unwrap();
        assert_eq!(f.read(SECTOR - 2, 4).unwrap(), [0x0F, 0xF0, 0x55, 0xAA]);
        // Programming without erasing only clears bits.
        f.write(SECTOR - 2, &[0xF0, 0xFF, 0xFF, 0xFF]).unwrap();
        assert_eq!(f.read(SECTOR - 2, 1).unwrap(), [0x00]);
        f.erase_range(SECTOR - 1, 2).unwrap();
        assert_eq!(f.read(SECTOR - 2, 4).unwrap(), [0xFF; 4]);
        assert!(f.write(4 * SECTOR - 1, &[0, 0]).is_err());
        assert!(f.read(usize::MAX, 2).is_err());
        assert!(Flash::erased(1000).is_err());
    }

    #[test]
    fn copies_share_and_stay_independent() {
        let data: Vec<u8> = (0..3 * SECTOR + 100).map(|i| (i * 7) as u8).collect();
        let mut f = Flash::with_image(16 * SECTOR, 8 * SECTOR, &data).unwrap();
        f.copy(8 * SECTOR, 0, data.len()).unwrap();
        assert_eq!(f.read(0, data.len()).unwrap(), data);
        f.erase_range(8 * SECTOR, SECTOR).unwrap();
        assert_eq!(f.read(0, data.len()).unwrap(), data, "the copy keeps its bytes");
        let clone = f.clone();
        f.erase_range(0, SECTOR).unwrap();
        assert_eq!(clone.read(0, 4).unwrap(), data[..4]);
        // Unaligned copies work too.
        let expected = f.read(SECTOR + 5, 200).unwrap();
        f.copy(SECTOR + 5, 9 * SECTOR + 3, 200).unwrap();
        assert_eq!(f.read(9 * SECTOR + 3, 200).unwrap(), expected);
    }

    #[test]
    fn files_round_trip_through_dirty_sectors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("flash.bin");
        std::fs::write(&path, [0x12u8; 100]).unwrap();
        let mut f = Flash::load(&path, 8 * SECTOR).unwrap();
        assert_eq!(f.read(98, 4).unwrap(), [0x12, 0x12, 0xFF, 0xFF]);
        f.erase_range(2 * SECTOR, 1).unwrap();
        f.write(2 * SECTOR, b"new").unwrap();
        assert_eq!(f.save_dirty(&path).unwrap(), 1);
        let again = Flash::load(&path, 8 * SECTOR).unwrap();
        assert_eq!(again.read(2 * SECTOR, 3).unwrap(), b"new");
        let mut dump = std::fs::read(&path).unwrap();
        dump.resize(8 * SECTOR, 0xFF);
        assert_eq!(Flash::from_bytes(&dump).unwrap().read(0, 8 * SECTOR).unwrap(), dump);
        assert!(Flash::from_bytes(&[0; 100]).is_err());
        assert!(Flash::load(&path, SECTOR).is_err());
    }
}
