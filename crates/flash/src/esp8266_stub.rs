//! The flasher stub on an ESP8266, spoken as esptool speaks it, on espflash's public
//! `Connection`/`Command` API: uploaded through the ROM (MEM_BEGIN and MEM_DATA per segment,
//! MEM_END with the entry point), greeting with a raw `OHAI` frame, then CHANGE_BAUDRATE (new
//! and old rate), SPI_SET_PARAMS, deflated FLASH_DEFL_* writes in 16 KiB blocks that it erases
//! as they arrive, SPI_FLASH_MD5 (16 raw bytes), ERASE_FLASH and RUN_USER_CODE.

use std::io::Write;
use std::time::{Duration, Instant};

use espflash::command::{Command, CommandResponseValue, CommandType};
use espflash::connection::Connection;
use espflash::flasher::SpiSetParams;
use flate2::{Decompress, FlushDecompress};

use super::esptool_stub::Stub;
use super::link::Cancel;
use super::progress::{FlashUpdate, Meter, Phase};

/// RAM is loaded in blocks of this size (esptool's `ESP_RAM_BLOCK`).
pub const RAM_BLOCK: usize = 0x1800;
/// The stub takes compressed flash data in blocks of this size (esptool's stub `FLASH_WRITE_SIZE`).
pub const BLOCK: usize = 0x4000;
/// How long the stub may take to greet after MEM_END.
const GREETING: Duration = Duration::from_secs(3);
/// Time allowed per MB of image bytes the stub erases and writes while a block is answered
/// (esptool's `ERASE_WRITE_TIMEOUT_PER_MB`).
const WRITE_PER_MB: f64 = 40.0;
/// The shortest wait for any answer.
const MIN_WAIT: Duration = Duration::from_secs(3);
/// The stub greets with this frame once it runs.
const OHAI: &[u8] = b"OHAI";

/// Why the stub did not start.
#[derive(Debug)]
pub enum StartError {
    /// The ROM answered a command with an error: the ROM still runs, nothing was started.
    Refused(espflash::Error),
    /// The ROM took the stub and jumped, but no `OHAI` came (what came instead, if anything).
    NoGreeting(Option<Vec<u8>>),
    /// The link failed during the upload.
    Link(espflash::Error),
}

/// Uploads `stub` through the ROM and starts it; returns once it said `OHAI`.
pub fn upload(conn: &mut Connection, stub: &Stub) -> Result<(), StartError> {
    let classify = |e: espflash::Error| match e {
        espflash::Error::RomError(_) => StartError::Refused(e),
        e => StartError::Link(e),
    };
    for (addr, segment) in stub.segments() {
        let blocks = segment.len().div_ceil(RAM_BLOCK) as u32;
        conn.with_timeout(MIN_WAIT, |c| {
            c.command(Command::MemBegin {
                size: segment.len() as u32,
                blocks,
                block_size: RAM_BLOCK as u32,
                offset: addr,
                supports_encryption: false,
            })
            .map(drop)
        })
        .map_err(classify)?;
        for (seq, block) in segment.chunks(RAM_BLOCK).enumerate() {
            conn.with_timeout(MIN_WAIT, |c| {
                c.command(Command::MemData { data: block, pad_to: 0, pad_byte: 0, sequence: seq as u32 })
                    .map(drop)
            })
            .map_err(classify)?;
        }
    }
    // The ROM answers MEM_END and jumps; the stub then greets. Read frames until the greeting:
    // the answer may come first, or be lost while the UART is taken over.
    conn.write_command(Command::MemEnd { no_entry: false, entry: stub.entry }).map_err(StartError::Link)?;
    let deadline = Instant::now() + GREETING;
    let mut other = None;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(StartError::NoGreeting(other));
        }
        let frame = match conn.with_timeout(left, |c| c.read_flash_response()) {
            Ok(Some(r)) => match r.value {
                CommandResponseValue::Vector(v) => v,
                _ => continue,
            },
            Ok(None) => continue,
            Err(_) => return Err(StartError::NoGreeting(other)),
        };
        if frame == OHAI {
            return Ok(());
        }
        let mem_end_answer = frame.len() >= 10 && frame[0] == 1 && frame[1] == CommandType::MemEnd as u8;
        if mem_end_answer && frame[frame.len() - 2] != 0 {
            // The ROM refused to jump: it still runs.
            return Err(StartError::Refused(espflash::Error::InvalidResponse(format!(
                "the ROM refused MEM_END (error 0x{:02x})",
                frame[frame.len() - 1]
            ))));
        }
        if !mem_end_answer {
            other = Some(frame);
        }
    }
}

/// CHANGE_BAUDRATE: the stub answers at `old`, then listens at `new`; the port follows.
pub fn change_baud(conn: &mut Connection, new: u32, old: u32) -> Result<(), espflash::Error> {
    conn.with_timeout(MIN_WAIT, |c| c.command(Command::ChangeBaudrate { new_baud: new, prior_baud: old }))?;
    conn.set_baud(new)?;
    // What the UART sends while it switches is noise; the next command clears it away.
    std::thread::sleep(Duration::from_millis(50));
    Ok(())
}

/// SPI_SET_PARAMS: tells the stub the flash chip's size, as esptool does.
pub fn set_flash_size(conn: &mut Connection, size: u32) -> Result<(), espflash::Error> {
    conn.with_timeout(MIN_WAIT, |c| {
        c.command(Command::SpiSetParams { spi_params: SpiSetParams::default(size) }).map(drop)
    })
}

/// The MD5 of `size` flash bytes at `offset`, lower-case hex.
pub fn md5(conn: &mut Connection, offset: u32, size: u32) -> Result<String, espflash::Error> {
    let timeout = CommandType::FlashMd5.timeout_for_size(size);
    match conn.with_timeout(timeout, |c| c.command(Command::FlashMd5 { offset, size }))? {
        CommandResponseValue::ValueU128(v) => Ok(format!("{v:032x}")),
        other => Err(espflash::Error::InvalidResponse(format!("SPI_FLASH_MD5 answered {other:?}"))),
    }
}

/// ERASE_FLASH: the whole chip (the stub can; the ROM cannot).
pub fn erase_all(conn: &mut Connection) -> Result<(), espflash::Error> {
    conn.with_timeout(CommandType::EraseFlash.timeout(), |c| c.command(Command::EraseFlash).map(drop))
}

/// zlib at the best level, as esptool compresses.
pub fn deflate(data: &[u8]) -> Vec<u8> {
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    z.write_all(data).expect("writing to memory");
    z.finish().expect("writing to memory")
}

/// Counts what each compressed block inflates to, so progress is in image bytes.
struct Inflated {
    z: Decompress,
    scratch: Vec<u8>,
}

impl Inflated {
    fn new() -> Inflated {
        Inflated { z: Decompress::new(true), scratch: vec![0; 64 * 1024] }
    }

    /// Image bytes the stream holds up to the end of `block`, fed after all before it.
    fn feed(&mut self, mut block: &[u8]) -> u64 {
        loop {
            let (in0, out0) = (self.z.total_in(), self.z.total_out());
            let status = self.z.decompress(block, &mut self.scratch, FlushDecompress::None);
            block = &block[(self.z.total_in() - in0) as usize..];
            let produced = self.z.total_out() - out0;
            let more = produced == self.scratch.len() as u64 || !block.is_empty();
            let stuck = produced == 0 && self.z.total_in() == in0;
            if !matches!(status, Ok(flate2::Status::Ok)) || !more || stuck {
                return self.z.total_out();
            }
        }
    }
}

/// The wait for a block's answer: the stub answers once the block before it is in flash.
fn block_wait(image_bytes: u64) -> Duration {
    MIN_WAIT.max(Duration::from_secs_f64(WRITE_PER_MB * image_bytes as f64 / 1e6))
}

/// Writes `data` at `offset` deflated, reporting image bytes as they go (counted on from what
/// `meter` already holds), then FLASH_DEFL_END so the last block is in flash before returning.
/// Stops between blocks when cancelled.
pub fn write(
    conn: &mut Connection,
    offset: u32,
    data: &[u8],
    meter: &mut Meter,
    cancel: &Cancel,
    report: &mut dyn FnMut(FlashUpdate),
) -> Result<(), espflash::Error> {
    let before = meter.written();
    let packed = deflate(data);
    let blocks = packed.len().div_ceil(BLOCK);
    report(FlashUpdate::Phase(Phase::Write));
    meter.set_phase(Phase::Write);
    // The stub takes the exact byte count and erases as data arrives (the ROM's erase-size bug
    // is not its own), with the fifth word: not encrypted.
    conn.with_timeout(MIN_WAIT, |c| {
        c.command(Command::FlashDeflBegin {
            size: data.len() as u32,
            blocks: blocks as u32,
            block_size: BLOCK as u32,
            offset,
            supports_encryption: true,
        })
        .map(drop)
    })?;
    let mut inflated = Inflated::new();
    let mut done = 0u64;
    let mut previous = 0u64;
    for (seq, block) in packed.chunks(BLOCK).enumerate() {
        if cancel.is_cancelled() {
            return Err(espflash::Error::Cancelled);
        }
        let upto = inflated.feed(block).min(data.len() as u64);
        let this = upto - done;
        conn.with_timeout(block_wait(previous + this), |c| {
            c.command(Command::FlashDeflData { data: block, pad_to: 0, pad_byte: 0xFF, sequence: seq as u32 })
                .map(drop)
        })?;
        done = upto;
        previous = this;
        if let Some(p) = meter.record(before + done) {
            report(FlashUpdate::Progress(p));
        }
    }
    // Stay in the stub (1): its answer comes once the last block is written.
    conn.with_timeout(block_wait(previous), |c| {
        c.command(Command::FlashDeflEnd { reboot: false }).map(drop)
    })?;
    if let Some(p) = meter.record(before + data.len() as u64) {
        report(FlashUpdate::Progress(p));
    }
    Ok(())
}

/// Leaves the stub to run the firmware (RUN_USER_CODE; the stub does not answer).
pub fn run_firmware(conn: &mut Connection) -> Result<(), espflash::Error> {
    conn.with_timeout(Duration::from_secs(1), |c| c.write_command(Command::RunUserCode))?;
    std::thread::sleep(Duration::from_millis(50));
    Ok(())
}

/// Asks the stub to hand the chip back to the ROM (FLASH_BEGIN 0 then FLASH_END "reboot", as
/// esptool's soft reset does): with the boot pin still held, the ROM bootloader runs again and
/// another attempt can start from scratch. Returns whether the stub agreed.
pub fn back_to_rom(conn: &mut Connection) -> bool {
    let quick = Duration::from_millis(500);
    let begin = conn.with_timeout(quick, |c| {
        c.command(Command::FlashBegin {
            size: 0,
            blocks: 0,
            block_size: BLOCK as u32,
            offset: 0,
            supports_encryption: true,
        })
        .map(drop)
    });
    begin.is_ok()
        && conn.with_timeout(quick, |c| c.command(Command::FlashEnd { reboot: true }).map(drop)).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_count_in_image_bytes() {
        let data: Vec<u8> = (0..200_000u32).map(|i| if i % 3 == 0 { (i * 7) as u8 } else { 0 }).collect();
        let packed = deflate(&data);
        let mut inflated = Inflated::new();
        let mut last = 0;
        for block in packed.chunks(BLOCK) {
            let n = inflated.feed(block);
            assert!(n >= last, "never backwards");
            last = n;
        }
        assert_eq!(last, data.len() as u64, "the last block brings the count to the image size");
        // A 16 KiB block of zeros stands for far more than 16 KiB: the wait grows with it.
        assert!(block_wait(4 << 20) > Duration::from_secs(100));
        assert_eq!(block_wait(1000), MIN_WAIT);
    }
}
