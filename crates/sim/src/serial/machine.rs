//! The chip's command loop: frames in, answers out, with the state that lives between commands
//! (ROM or stub, a flash write in progress, RAM being loaded) and the fault knobs.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::flash_write::{FlashWrite, MemLoad};
use super::frame::{self, BadRequest, Request, Status, op, rom_error, stub_error};
use super::link::{Link, LinkDown};
use super::registers::{Registers, jedec_id};
use super::{Chip, DeviceState, Faults, Shared, esp32c3, esp8266};

/// What runs on the chip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    Rom,
    Stub,
    RunningFirmware,
    Hung,
}

/// The simulated chip.
pub(super) struct Machine {
    pub(super) chip: Chip,
    pub(super) regs: Registers,
    pub(super) mode: Mode,
    pub(super) faults: Faults,
    /// Take real time for flash erases and writes.
    pub(super) timing: bool,
    pub(super) shared: Arc<Shared>,
    pub(super) write: Option<FlashWrite>,
    pub(super) mem: MemLoad,
    /// When the flash chip finishes the work a stub queued (stubs write one block while the
    /// next arrives).
    pub(super) flash_free_at: Instant,
    blocks_seen: u32,
    fail_seen: u32,
    /// The chip left the bootloader and the firmware has not printed yet.
    left_bootloader: bool,
}

/// How long a command may wait before the loop looks at the reset and stop flags again.
const IDLE: Duration = Duration::from_millis(100);
/// While the firmware runs: how long its printed text may wait before it goes out.
const PRINT_EVERY: Duration = Duration::from_millis(20);

impl Machine {
    pub(super) fn new(
        chip: Chip,
        mac: [u8; 6],
        timing: bool,
        faults: Faults,
        shared: Arc<Shared>,
    ) -> Machine {
        let facts = match chip {
            Chip::Esp8266 => esp8266::facts(mac, faults.report_magic),
            Chip::Esp32c3 => esp32c3::facts(mac, faults.report_magic),
        };
        let size = shared.flash.lock().unwrap_or_else(|e| e.into_inner()).size();
        Machine {
            chip,
            regs: Registers::new(facts, jedec_id(size)),
            mode: Mode::Rom,
            faults,
            timing,
            shared,
            write: None,
            mem: MemLoad::default(),
            flash_free_at: Instant::now(),
            blocks_seen: 0,
            fail_seen: 0,
            left_bootloader: false,
        }
    }

    /// Answers commands until the simulator stops or the pty is closed.
    pub(super) fn run(&mut self, mut link: Link) {
        loop {
            if self.shared.reset.swap(false, Ordering::SeqCst) {
                self.reboot(&mut link);
            }
            if self.shared.restart.swap(false, Ordering::SeqCst) {
                link.discard_input();
                self.run_firmware();
            }
            if self.print_firmware_output(&mut link).is_err() {
                break;
            }
            let wait = if self.mode == Mode::RunningFirmware { PRINT_EVERY } else { IDLE };
            let frame = match link.recv(Some(wait)) {
                Ok(Some(f)) => f,
                Ok(None) => continue,
                Err(LinkDown) => break,
            };
            if matches!(self.mode, Mode::RunningFirmware | Mode::Hung) {
                continue;
            }
            let result = match Request::parse(&frame) {
                Ok(req) => {
                    self.note_command(req.op, link.baud());
                    self.handle(req, &mut link)
                }
                Err(BadRequest::NotARequest) => Ok(()),
                Err(BadRequest::LengthMismatch { op }) => {
                    self.answer(&mut link, op, 0, &[], Status::Error(self.invalid_code()))
                }
            };
            if result.is_err() {
                break;
            }
        }
        link.close();
        self.set_state(DeviceState::Gone);
    }

    fn handle(&mut self, req: Request, link: &mut Link) -> Result<(), LinkDown> {
        if let Some(fail) = self.faults.fail_command
            && fail.op == req.op
        {
            self.fail_seen += 1;
            if self.fail_seen > fail.after {
                let code = fail.code.unwrap_or(match self.mode {
                    Mode::Stub => stub_error::FAILED_SPI_OP,
                    _ => rom_error::FAILED_TO_ACT,
                });
                return self.answer(link, req.op, 0, &[], Status::Error(code));
            }
        }
        match self.mode {
            Mode::Rom => self.rom_command(req, link),
            Mode::Stub => self.stub_command(req, link),
            Mode::RunningFirmware | Mode::Hung => Ok(()),
        }
    }

    /// Commands the ROM and the stub share.
    pub(super) fn common_command(&mut self, req: &Request, link: &mut Link) -> Option<Result<(), LinkDown>> {
        Some(match req.op {
            op::SYNC => self.sync(req, link),
            op::READ_REG => match req.word(0) {
                Some(addr) => {
                    let v = self.regs.read(addr, link.baud());
                    self.answer(link, op::READ_REG, v, &[], Status::Ok)
                }
                None => self.answer(link, req.op, 0, &[], Status::Error(self.invalid_code())),
            },
            op::WRITE_REG => {
                if req.data.is_empty() || !req.data.len().is_multiple_of(16) {
                    return Some(self.answer(link, req.op, 0, &[], Status::Error(self.invalid_code())));
                }
                for i in 0..req.data.len() / 16 {
                    let w = |k| req.word(i * 4 + k).unwrap_or(0);
                    self.regs.write(w(0), w(1), w(2));
                }
                self.answer(link, op::WRITE_REG, 0, &[], Status::Ok)
            }
            op::MEM_BEGIN => {
                let (Some(size), Some(_blocks), Some(block_size), Some(addr)) =
                    (req.word(0), req.word(1), req.word(2), req.word(3))
                else {
                    return Some(self.answer(link, req.op, 0, &[], Status::Error(self.invalid_code())));
                };
                self.mem.begin(addr, size, block_size);
                self.answer(link, op::MEM_BEGIN, 0, &[], Status::Ok)
            }
            op::MEM_DATA => {
                let status = match req.data_block() {
                    None => Status::Error(self.invalid_code()),
                    Some((_, _, data)) if frame::data_checksum(data) as u32 != req.checksum & 0xFF => {
                        Status::Error(self.checksum_code())
                    }
                    Some((_, _, data)) => {
                        if self.mem.data(data.len() as u32) {
                            Status::Ok
                        } else {
                            Status::Error(self.invalid_code())
                        }
                    }
                };
                self.answer(link, op::MEM_DATA, 0, &[], status)
            }
            op::MEM_END => {
                let run = req.word(0) == Some(0);
                let entry = req.word(1).unwrap_or(0);
                self.answer(link, op::MEM_END, 0, &[], Status::Ok)
                    .and_then(|()| if run && entry != 0 { self.jump_to_ram(link) } else { Ok(()) })
            }
            _ => return None,
        })
    }

    /// SYNC is answered eight times: the ROM with a non-zero value, a running stub with 0 (how
    /// hosts notice a stub left running).
    fn sync(&mut self, req: &Request, link: &mut Link) -> Result<(), LinkDown> {
        let mut expected = vec![0x07, 0x07, 0x12, 0x20];
        expected.extend([0x55; 32]);
        if req.data != expected {
            return self.answer(link, op::SYNC, 0, &[], Status::Error(self.invalid_code()));
        }
        let value = if self.mode == Mode::Stub { 0 } else { self.regs.facts().rom_sync_value };
        for _ in 0..8 {
            self.answer(link, op::SYNC, value, &[], Status::Ok)?;
        }
        Ok(())
    }

    /// MEM_END with an entry point: code uploaded to RAM runs. Hosts only do that with a flasher
    /// stub, which greets them with a raw `OHAI` frame and keeps the UART at the current rate.
    /// If the upload was incomplete, what runs is garbage: the chip goes silent.
    fn jump_to_ram(&mut self, link: &mut Link) -> Result<(), LinkDown> {
        if !self.mem.complete() {
            log::debug!("virtual device: jumped into an incomplete RAM upload");
            self.mode = Mode::Hung;
            self.set_state(DeviceState::Hung);
            return Ok(());
        }
        self.mem = MemLoad::default();
        self.write = None;
        if self.faults.stub_crashes {
            log::debug!("virtual device: the uploaded code crashed (fault knob); back in the ROM");
            // The watchdog reset's boot message, at 74880 baud: noise to the host.
            link.send_raw(b"\r\n ets Jan  8 2013,rst cause:4, boot mode:(1,7)\r\n\r\nwdt reset\r\n")?;
            self.reboot(link);
            return Ok(());
        }
        self.mode = Mode::Stub;
        self.set_state(DeviceState::Stub);
        let baud = link.baud();
        link.set_device_baud(Some(baud));
        link.send(b"OHAI")
    }

    /// A reset with the boot pin held: back in the ROM, auto-bauding, nothing half-done.
    pub(super) fn reboot(&mut self, link: &mut Link) {
        link.discard_input();
        self.back_in_rom(link);
    }

    /// A reboot a command asks for (FLASH_END): the answer goes out first, then the ROM is
    /// back. Input is dropped before the answer, not after it: a host sends its next command
    /// once it has the answer, and that command must not be lost to how fast this thread gets
    /// to the reboot.
    pub(super) fn answer_then_reboot(&mut self, link: &mut Link, op: u8) -> Result<(), LinkDown> {
        link.discard_input();
        self.answer(link, op, 0, &[], Status::Ok)?;
        self.back_in_rom(link);
        Ok(())
    }

    fn back_in_rom(&mut self, link: &mut Link) {
        self.mode = Mode::Rom;
        self.left_bootloader = false;
        self.write = None;
        self.mem = MemLoad::default();
        link.set_device_baud(None);
        self.set_state(DeviceState::Rom);
    }

    /// Leaves the bootloader to run the flashed firmware: no more protocol answers.
    pub(super) fn run_firmware(&mut self) {
        self.left_bootloader |= self.mode != Mode::RunningFirmware;
        self.mode = Mode::RunningFirmware;
        self.write = None;
        self.mem = MemLoad::default();
        let mut s = self.shared.status.lock().unwrap_or_else(|e| e.into_inner());
        s.state = DeviceState::RunningFirmware;
        s.firmware_starts += 1;
    }

    /// Sends what the firmware printed, if it still runs. Anything else (the ROM or a stub
    /// answers a flasher now) drops it: the firmware is held in reset, and its last words must
    /// not land in the middle of the ROM protocol.
    fn print_firmware_output(&mut self, link: &mut Link) -> Result<(), LinkDown> {
        let mut uart = self.shared.uart.lock().unwrap_or_else(|e| e.into_inner());
        let Some(rx) = uart.as_mut() else { return Ok(()) };
        while let Ok(out) = rx.try_recv() {
            if self.mode != Mode::RunningFirmware {
                continue;
            }
            if std::mem::take(&mut self.left_bootloader) {
                // Flashers do not read the ROM's answer to "run the firmware"; on a real adapter
                // it is gone once they close the port, but this pty stays open (the simulator
                // holds it), so it goes now, before a monitor could read it as noise.
                link.discard_output();
            }
            link.print(out.baud, &out.bytes)?;
        }
        Ok(())
    }

    /// Sends an answer with the status length of whatever runs now.
    pub(super) fn answer(
        &self,
        link: &mut Link,
        op: u8,
        value: u32,
        data: &[u8],
        status: Status,
    ) -> Result<(), LinkDown> {
        let status_len = if self.mode == Mode::Stub { 2 } else { self.regs.facts().rom_status_len };
        link.send(&frame::response(op, value, data, status, status_len))
    }

    /// "Invalid message" in the dialect of whatever runs now.
    pub(super) fn invalid_code(&self) -> u8 {
        if self.mode == Mode::Stub { stub_error::BAD_DATA_LEN } else { rom_error::INVALID_MESSAGE }
    }

    /// "Bad checksum" in the dialect of whatever runs now.
    pub(super) fn checksum_code(&self) -> u8 {
        if self.mode == Mode::Stub { stub_error::BAD_DATA_CHECKSUM } else { rom_error::INVALID_CRC }
    }

    /// Counts a flash data block that was answered, and applies the block-count fault knobs.
    pub(super) fn after_flash_block(&mut self, link: &mut Link) -> Result<(), LinkDown> {
        self.blocks_seen += 1;
        self.shared.status.lock().unwrap_or_else(|e| e.into_inner()).flash_blocks = self.blocks_seen;
        if self.faults.close_after_blocks.is_some_and(|n| self.blocks_seen >= n) {
            log::debug!("virtual device: closing the pty after {} blocks (fault knob)", self.blocks_seen);
            link.close();
            return Err(LinkDown);
        }
        if self.faults.stop_answering_after_blocks.is_some_and(|n| self.blocks_seen >= n) {
            log::debug!("virtual device: hanging after {} blocks (fault knob)", self.blocks_seen);
            self.mode = Mode::Hung;
            self.set_state(DeviceState::Hung);
        }
        Ok(())
    }

    pub(super) fn set_state(&self, state: DeviceState) {
        self.shared.status.lock().unwrap_or_else(|e| e.into_inner()).state = state;
    }

    fn note_command(&self, op: u8, baud: u32) {
        let mut s = self.shared.status.lock().unwrap_or_else(|e| e.into_inner());
        if s.commands.len() >= 4096 {
            s.commands.remove(0);
        }
        s.commands.push(op);
        s.baud = baud;
    }
}
