//! The ROM bootloader's commands. The ESP8266 ROM knows only the basics (flash and RAM
//! download, SYNC, registers); the ESP32-C3 ROM adds SPI attach, baud change, compressed writes,
//! MD5 and security info, and answers with 4 status bytes.

use super::flash_write::{BlockError, FlashWrite, WriteStyle};
use super::frame::{self, Request, Status, op, rom_error};
use super::link::{Link, LinkDown};
use super::machine::{Machine, Mode};
use super::{Chip, esp32c3, esp8266};

const ROM_STYLE: WriteStyle = WriteStyle { just_in_time: false, clip: false };

impl Machine {
    pub(super) fn rom_command(&mut self, req: Request, link: &mut Link) -> Result<(), LinkDown> {
        if let Some(done) = self.common_command(&req, link) {
            return done;
        }
        let c3 = self.chip == Chip::Esp32c3;
        match req.op {
            op::FLASH_BEGIN => self.rom_flash_begin(&req, link, false),
            op::FLASH_DEFL_BEGIN if c3 => self.rom_flash_begin(&req, link, true),
            op::FLASH_DATA => self.flash_data(&req, link, false),
            op::FLASH_DEFL_DATA if c3 => self.flash_data(&req, link, true),
            op::FLASH_END => self.rom_flash_end(&req, link),
            op::FLASH_DEFL_END if c3 => self.rom_flash_end(&req, link),
            op::SPI_ATTACH | op::SPI_SET_PARAMS if c3 => self.answer(link, req.op, 0, &[], Status::Ok),
            op::CHANGE_BAUDRATE if c3 => self.change_baud(&req, link),
            op::SPI_FLASH_MD5 if c3 => self.flash_md5(&req, link),
            op::GET_SECURITY_INFO if c3 => {
                let id = self.faults.report_chip_id.unwrap_or(esp32c3::CHIP_ID);
                self.answer(link, req.op, 0, &esp32c3::security_info(id), Status::Ok)
            }
            // Everything else, GET_SECURITY_INFO on the ESP8266 included: the ROM does not know
            // the command and says the message is invalid.
            _ => self.answer(link, req.op, 0, &[], Status::Error(rom_error::INVALID_MESSAGE)),
        }
    }

    /// FLASH_BEGIN / FLASH_DEFL_BEGIN: `size, blocks, block size, offset` (+ an "encrypted" word
    /// from hosts talking to newer ROMs). The ROM erases here, before any data arrives, and takes
    /// the time to do it.
    fn rom_flash_begin(&mut self, req: &Request, link: &mut Link, compressed: bool) -> Result<(), LinkDown> {
        let (Some(size), Some(_blocks), Some(block_size), Some(offset)) =
            (req.word(0), req.word(1), req.word(2), req.word(3))
        else {
            return self.answer(link, req.op, 0, &[], Status::Error(rom_error::INVALID_MESSAGE));
        };
        let (start, len) = match self.chip {
            Chip::Esp8266 => esp8266::rom_erase_span(offset, size),
            Chip::Esp32c3 => (offset / 0x1000 * 0x1000, (offset % 0x1000 + size).div_ceil(0x1000) * 0x1000),
        };
        let erased = {
            let mut flash = self.shared.flash.lock().unwrap_or_else(|e| e.into_inner());
            let end = (start as u64 + len as u64).min(flash.size() as u64) as u32;
            // The ROM erases up to the end of the chip and no further.
            flash.erase(start, end.saturating_sub(start)).unwrap_or(false)
        };
        if !erased {
            return self.answer(link, req.op, 0, &[], Status::Error(rom_error::FAILED_TO_ACT));
        }
        if self.timing {
            link.busy(super::flash_write::erase_time(start, len));
        }
        self.write = Some(FlashWrite::new(offset, size, block_size, compressed, ROM_STYLE));
        self.answer(link, req.op, 0, &[], Status::Ok)
    }

    /// FLASH_END / FLASH_DEFL_END: `0` reboots (into the ROM again: the boot pin is still held),
    /// `1` leaves the bootloader and runs the firmware. The ROM answers first.
    fn rom_flash_end(&mut self, req: &Request, link: &mut Link) -> Result<(), LinkDown> {
        let run_user_code = req.word(0).unwrap_or(0) != 0;
        self.write = None;
        if !run_user_code {
            return self.answer_then_reboot(link, req.op);
        }
        self.answer(link, req.op, 0, &[], Status::Ok)?;
        self.run_firmware();
        Ok(())
    }

    /// FLASH_DATA / FLASH_DEFL_DATA, for ROM and stub alike: `len, seq, 0, 0, data`, checked
    /// against the header's checksum.
    pub(super) fn flash_data(
        &mut self,
        req: &Request,
        link: &mut Link,
        compressed: bool,
    ) -> Result<(), LinkDown> {
        let stub = self.mode == Mode::Stub;
        let status = match (req.data_block(), self.write.as_mut()) {
            (_, None) => Status::Error(if stub {
                frame::stub_error::NOT_IN_FLASH_MODE
            } else {
                rom_error::FAILED_TO_ACT
            }),
            (_, Some(w)) if w.compressed() != compressed => Status::Error(self.invalid_code()),
            (None, _) => Status::Error(self.invalid_code()),
            (Some((_, _, data)), _) if frame::data_checksum(data) as u32 != req.checksum & 0xFF => {
                Status::Error(self.checksum_code())
            }
            (Some((_, seq, data)), Some(w)) => {
                let corrupt = self.faults.corrupt_writes;
                let result = {
                    let mut flash = self.shared.flash.lock().unwrap_or_else(|e| e.into_inner());
                    w.accept(seq, data, &mut flash, corrupt)
                };
                match result {
                    Ok(busy) if self.timing && stub => {
                        // The stub answers at once and writes while the next block arrives;
                        // it has room for one block in waiting.
                        link.wait_until(self.flash_free_at);
                        self.flash_free_at = std::time::Instant::now() + busy;
                        Status::Ok
                    }
                    Ok(busy) => {
                        if self.timing {
                            link.busy(busy);
                        }
                        Status::Ok
                    }
                    Err(e) => Status::Error(block_error_code(e, stub)),
                }
            }
        };
        self.answer(link, req.op, 0, &[], status)?;
        if status == Status::Ok {
            self.after_flash_block(link)?;
        }
        Ok(())
    }

    /// CHANGE_BAUDRATE: `new, old`. Answered at the old rate; then the UART runs at the new one.
    pub(super) fn change_baud(&mut self, req: &Request, link: &mut Link) -> Result<(), LinkDown> {
        let Some(baud) = req.word(0).filter(|&b| b >= 300) else {
            return self.answer(link, req.op, 0, &[], Status::Error(self.invalid_code()));
        };
        self.answer(link, req.op, 0, &[], Status::Ok)?;
        link.set_device_baud(Some(baud));
        Ok(())
    }

    /// SPI_FLASH_MD5: `addr, size, 0, 0`. The stub answers 16 raw bytes, a ROM 32 hex digits.
    pub(super) fn flash_md5(&mut self, req: &Request, link: &mut Link) -> Result<(), LinkDown> {
        use md5::{Digest, Md5};
        let (Some(addr), Some(size)) = (req.word(0), req.word(1)) else {
            return self.answer(link, req.op, 0, &[], Status::Error(self.invalid_code()));
        };
        let digest = {
            let flash = self.shared.flash.lock().unwrap_or_else(|e| e.into_inner());
            flash.read(addr, size).map(Md5::digest)
        };
        let Some(digest) = digest else {
            let code = if self.mode == Mode::Stub {
                frame::stub_error::FAILED_SPI_OP
            } else {
                rom_error::FLASH_READ_ERROR
            };
            return self.answer(link, req.op, 0, &[], Status::Error(code));
        };
        if self.timing {
            // Reading flash over SPI at ~20 MB/s and hashing: ~8 ms per MB on a real chip.
            link.busy(std::time::Duration::from_micros(size as u64 / 128));
        }
        if self.mode == Mode::Stub {
            self.answer(link, req.op, 0, &digest, Status::Ok)
        } else {
            self.answer(link, req.op, 0, hex::encode(digest).as_bytes(), Status::Ok)
        }
    }
}

fn block_error_code(e: BlockError, stub: bool) -> u8 {
    use frame::stub_error as s;
    match (e, stub) {
        (BlockError::Inflate, true) => s::INFLATE_ERROR,
        (BlockError::Inflate, false) => rom_error::DEFLATE_ERROR,
        (BlockError::OutOfRange, true) => s::TOO_MUCH_DATA,
        (BlockError::Sequence, true) => s::BAD_DATA_LEN,
        (BlockError::Io, true) => s::FAILED_SPI_OP,
        (_, false) => rom_error::FLASH_WRITE_ERROR,
    }
}
