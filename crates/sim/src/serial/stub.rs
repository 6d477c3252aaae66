//! The flasher stub, once uploaded: every answer has 2 status bytes, SYNC answers with 0, and it
//! adds compressed writes, MD5, fast streamed reads, baud change and erase commands. Both
//! esptool's stub and espflash's behave this way on the wire.

use std::time::Duration;

use md5::{Digest, Md5};

use super::Chip;
use super::esp32c3;
use super::flash_write::{FlashWrite, WriteStyle, erase_time};
use super::frame::{Request, Status, op, stub_error};
use super::link::{Link, LinkDown};
use super::machine::Machine;

const STUB_STYLE: WriteStyle = WriteStyle { just_in_time: true, clip: true };

/// How long the stub waits for the host to acknowledge READ_FLASH data before giving up.
const ACK_TIMEOUT: Duration = Duration::from_secs(5);

impl Machine {
    pub(super) fn stub_command(&mut self, req: Request, link: &mut Link) -> Result<(), LinkDown> {
        if self.timing && !matches!(req.op, op::FLASH_DATA | op::FLASH_DEFL_DATA) {
            link.wait_until(self.flash_free_at); // queued flash writes finish first
        }
        if let Some(done) = self.common_command(&req, link) {
            return done;
        }
        match req.op {
            op::FLASH_BEGIN | op::FLASH_DEFL_BEGIN => {
                let (Some(size), Some(_blocks), Some(block_size), Some(offset)) =
                    (req.word(0), req.word(1), req.word(2), req.word(3))
                else {
                    return self.answer(link, req.op, 0, &[], Status::Error(stub_error::BAD_DATA_LEN));
                };
                let flash_size = self.shared.flash.lock().unwrap_or_else(|e| e.into_inner()).size();
                if offset as u64 + size as u64 > flash_size as u64 {
                    return self.answer(link, req.op, 0, &[], Status::Error(stub_error::BAD_DATA_LEN));
                }
                let compressed = req.op == op::FLASH_DEFL_BEGIN;
                self.write = Some(FlashWrite::new(offset, size, block_size, compressed, STUB_STYLE));
                self.answer(link, req.op, 0, &[], Status::Ok)
            }
            op::FLASH_DATA => self.flash_data(&req, link, false),
            op::FLASH_DEFL_DATA => self.flash_data(&req, link, true),
            op::FLASH_END | op::FLASH_DEFL_END => {
                // 0: reboot (back into the ROM: the boot pin is still held); 1: stay in the stub.
                let reboot = req.word(0).unwrap_or(0) == 0;
                self.write = None;
                if reboot {
                    return self.answer_then_reboot(link, req.op);
                }
                self.answer(link, req.op, 0, &[], Status::Ok)
            }
            op::SPI_ATTACH | op::SPI_SET_PARAMS => self.answer(link, req.op, 0, &[], Status::Ok),
            op::CHANGE_BAUDRATE => self.change_baud(&req, link),
            op::SPI_FLASH_MD5 => self.flash_md5(&req, link),
            op::ERASE_FLASH => {
                let size = {
                    let mut flash = self.shared.flash.lock().unwrap_or_else(|e| e.into_inner());
                    let _ = flash.erase_all();
                    flash.size()
                };
                if self.timing {
                    link.busy(erase_time(0, size));
                }
                self.answer(link, req.op, 0, &[], Status::Ok)
            }
            op::ERASE_REGION => self.erase_region(&req, link),
            op::READ_FLASH => self.read_flash(&req, link),
            op::RUN_USER_CODE => {
                self.run_firmware();
                Ok(())
            }
            op::GET_SECURITY_INFO if self.chip == Chip::Esp32c3 => {
                let id = self.faults.report_chip_id.unwrap_or(esp32c3::CHIP_ID);
                self.answer(link, req.op, 0, &esp32c3::security_info(id), Status::Ok)
            }
            _ => self.answer(link, req.op, 0, &[], Status::Error(stub_error::CMD_NOT_IMPLEMENTED)),
        }
    }

    /// ERASE_REGION: `offset, size`, both whole sectors.
    fn erase_region(&mut self, req: &Request, link: &mut Link) -> Result<(), LinkDown> {
        let (Some(offset), Some(size)) = (req.word(0), req.word(1)) else {
            return self.answer(link, req.op, 0, &[], Status::Error(stub_error::BAD_DATA_LEN));
        };
        if offset % 0x1000 != 0 || size % 0x1000 != 0 {
            return self.answer(link, req.op, 0, &[], Status::Error(stub_error::BAD_DATA_LEN));
        }
        let ok =
            self.shared.flash.lock().unwrap_or_else(|e| e.into_inner()).erase(offset, size).unwrap_or(false);
        if !ok {
            return self.answer(link, req.op, 0, &[], Status::Error(stub_error::FAILED_SPI_OP));
        }
        if self.timing {
            link.busy(erase_time(offset, size));
        }
        self.answer(link, req.op, 0, &[], Status::Ok)
    }

    /// READ_FLASH: `offset, length, packet size, packets in flight`. After a normal answer the
    /// stub streams raw data frames, each acknowledged by the host with a 4-byte frame (the
    /// total received so far), then one frame with the MD5 of it all.
    ///
    /// It keeps one packet in flight whatever the host allows (the protocol lets a stub send
    /// fewer): espflash flushes its input before every acknowledgement, so packets sent ahead
    /// would be thrown away on a pty, where they arrive at once.
    fn read_flash(&mut self, req: &Request, link: &mut Link) -> Result<(), LinkDown> {
        let (Some(offset), Some(length), Some(packet), Some(in_flight)) =
            (req.word(0), req.word(1), req.word(2), req.word(3))
        else {
            return self.answer(link, req.op, 0, &[], Status::Error(stub_error::BAD_DATA_LEN));
        };
        let data = self
            .shared
            .flash
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .read(offset, length)
            .map(<[u8]>::to_vec);
        let Some(data) = data.filter(|_| packet > 0 && in_flight > 0) else {
            return self.answer(link, req.op, 0, &[], Status::Error(stub_error::BAD_DATA_LEN));
        };
        self.answer(link, req.op, 0, &[], Status::Ok)?;
        let mut sent = 0usize;
        while sent < data.len() {
            let end = (sent + packet as usize).min(data.len());
            link.send(&data[sent..end])?;
            sent = end;
            match link.recv(Some(ACK_TIMEOUT))? {
                Some(ack)
                    if ack.len() == 4
                        && u32::from_le_bytes([ack[0], ack[1], ack[2], ack[3]]) as usize == sent => {}
                Some(other) => {
                    log::debug!(
                        "virtual device: READ_FLASH got {:02x?} instead of an ack for {sent}; stopping",
                        &other[..other.len().min(8)]
                    );
                    return Ok(());
                }
                None => {
                    log::debug!("virtual device: READ_FLASH ack timed out");
                    return Ok(());
                }
            }
        }
        link.send(&Md5::digest(&data))
    }
}
