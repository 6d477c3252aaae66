//! The simulated SPI flash chip, kept in a file so what was flashed survives the simulator (and
//! the booting device simulator can run it).
//!
//! NOR flash semantics: erasing sets a 4 KB sector to `FF`; programming can only clear bits
//! (the new byte is `old & new`). A host that writes without erasing first gets the same
//! corrupted result it would get on a real chip.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Smallest erasable unit.
pub const SECTOR_SIZE: u32 = 0x1000;

/// Flash memory backed by a file of exactly the flash size.
#[derive(Debug)]
pub struct FlashFile {
    path: PathBuf,
    file: File,
    data: Vec<u8>,
}

impl FlashFile {
    /// Opens `path` as a flash chip of `size` bytes: an existing file keeps its contents (a
    /// shorter one is padded with `FF`, as if erased); a new file starts fully erased.
    pub fn open(path: &Path, size: u32) -> io::Result<FlashFile> {
        let file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path)?;
        let existing = file.metadata()?.len();
        if existing > size as u64 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{} holds {existing} bytes, more than the {size}-byte flash; pick a larger flash size or another file",
                    path.display()
                ),
            ));
        }
        let mut data = vec![0xFF; size as usize];
        file.read_exact_at(&mut data[..existing as usize], 0)?;
        if existing < size as u64 {
            file.write_all_at(&data[existing as usize..], existing)?;
        }
        Ok(FlashFile { path: path.to_path_buf(), file, data })
    }

    /// The backing file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Flash size in bytes.
    pub fn size(&self) -> u32 {
        self.data.len() as u32
    }

    /// The whole flash.
    pub fn contents(&self) -> &[u8] {
        &self.data
    }

    /// `len` bytes from `offset`, or `None` past the end of the flash.
    pub fn read(&self, offset: u32, len: u32) -> Option<&[u8]> {
        let end = (offset as usize).checked_add(len as usize)?;
        self.data.get(offset as usize..end)
    }

    /// Erases every sector that `[offset, offset + len)` touches. Returns false (erasing nothing)
    /// past the end of the flash.
    pub fn erase(&mut self, offset: u32, len: u32) -> io::Result<bool> {
        if len == 0 {
            return Ok(true);
        }
        let start = (offset / SECTOR_SIZE * SECTOR_SIZE) as usize;
        let end = (offset as u64 + len as u64).div_ceil(SECTOR_SIZE as u64) * SECTOR_SIZE as u64;
        if end > self.data.len() as u64 {
            return Ok(false);
        }
        let end = end as usize;
        self.data[start..end].fill(0xFF);
        self.file.write_all_at(&self.data[start..end], start as u64)?;
        Ok(true)
    }

    /// Programs `bytes` at `offset` (each byte becomes `old & new`). Returns false (writing
    /// nothing) past the end of the flash.
    pub fn program(&mut self, offset: u32, bytes: &[u8]) -> io::Result<bool> {
        let start = offset as usize;
        let Some(end) = start.checked_add(bytes.len()).filter(|&e| e <= self.data.len()) else {
            return Ok(false);
        };
        for (cell, b) in self.data[start..end].iter_mut().zip(bytes) {
            *cell &= b;
        }
        self.file.write_all_at(&self.data[start..end], offset as u64)?;
        Ok(true)
    }

    /// Erases the whole chip.
    pub fn erase_all(&mut self) -> io::Result<()> {
        self.data.fill(0xFF);
        self.file.write_all_at(&self.data, 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_file_is_erased_and_writes_reach_the_disk() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("flash.bin");
        let mut f = FlashFile::open(&path, 0x4000).unwrap();
        assert!(f.contents().iter().all(|&b| b == 0xFF));
        assert!(f.program(0x1001, &[0x12, 0x34]).unwrap());
        let disk = std::fs::read(&path).unwrap();
        assert_eq!(disk.len(), 0x4000);
        assert_eq!(&disk[0x1000..0x1004], &[0xFF, 0x12, 0x34, 0xFF]);
        // Reopening keeps the contents.
        drop(f);
        let f = FlashFile::open(&path, 0x4000).unwrap();
        assert_eq!(f.read(0x1001, 2), Some(&[0x12, 0x34][..]));
    }

    #[test]
    fn programming_only_clears_bits_until_erased() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = FlashFile::open(&dir.path().join("f"), 0x3000).unwrap();
        f.program(0x10, &[0xF0]).unwrap();
        f.program(0x10, &[0x0F]).unwrap();
        assert_eq!(f.read(0x10, 1), Some(&[0x00][..]));
        // Erasing a byte range erases whole sectors.
        f.program(0x1FFF, &[0x00, 0x00]).unwrap();
        assert!(f.erase(0x1FFF, 2).unwrap());
        assert_eq!(f.read(0x1FFF, 2), Some(&[0xFF, 0xFF][..]));
        assert_eq!(f.read(0x10, 1), Some(&[0x00][..]), "sector 0 lies outside 0x1FFF..0x2001");
    }

    #[test]
    fn refuses_out_of_range_and_oversized_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let mut f = FlashFile::open(&path, 0x2000).unwrap();
        assert!(!f.program(0x1FFF, &[0, 0]).unwrap());
        assert!(!f.erase(0x1000, 0x1001).unwrap());
        assert_eq!(f.read(0x2000, 1), None);
        drop(f);
        let err = FlashFile::open(&path, 0x1000).unwrap_err();
        assert!(err.to_string().contains("more than the 4096-byte flash"), "{err}");
    }
}
