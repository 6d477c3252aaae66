//! Writing an ESP32-family board through espflash's `Flasher`: its stub gives compressed writes,
//! MD5 verification, skipping unchanged regions and higher baud rates.

use std::time::Duration;

use espflash::command::Command;
use espflash::connection::Connection;
use espflash::flasher::{FlashData, FlashSettings, Flasher};
use espflash::image_format::idf::IdfBootloaderFormat;
use espflash::image_format::{ImageFormat, Segment};

use super::plan::{ImageKind, Plan};
use super::progress::{FlashUpdate, Meter, Phase, SegmentProgress};
use otaforge_firmware::Chip;

/// Our chip as espflash names it (`None`: the ESP8266, which espflash does not flash).
pub fn to_espflash(chip: Chip) -> Option<espflash::target::Chip> {
    if chip.is_esp8266() { None } else { chip.slug().parse().ok() }
}

/// espflash's chip as ours (`None` for chips OTA Forge does not know, e.g. the ESP32-H4).
pub fn from_espflash(chip: espflash::target::Chip) -> Option<Chip> {
    chip.to_string().parse().ok()
}

/// Options for one ESP32-family write.
#[derive(Debug, Clone, Copy)]
pub struct WriteOptions {
    /// Compare the flash with the image afterwards (MD5).
    pub verify: bool,
    /// Leave regions that already hold the image alone.
    pub skip_unchanged: bool,
    /// Erase the whole flash first.
    pub erase_all: bool,
}

/// The segments an image is written as: one for a `.bin`, several (bootloader, partition
/// table, app) for an ELF.
pub fn segments(
    flasher: &mut Flasher,
    plan: &Plan,
    flash_size: Option<u64>,
) -> Result<Vec<(u32, Vec<u8>)>, espflash::Error> {
    if plan.kind != ImageKind::Elf {
        return Ok(vec![(plan.offset, plan.data.clone())]);
    }
    let chip = flasher.chip();
    let xtal = chip.xtal_frequency(flasher.connection())?;
    let size =
        flash_size.and_then(|s| espflash::flasher::FlashSize::from_detected((s.trailing_zeros()) as u8).ok());
    let settings = FlashSettings::new(None, size, None);
    let data = FlashData::new(settings, 0, None, chip, xtal);
    let idf = IdfBootloaderFormat::new(&plan.data, &data, None, None, None, None)?;
    Ok(ImageFormat::EspIdf(idf).flash_segments().into_iter().map(|s| (s.addr, s.data.into_owned())).collect())
}

/// How a write went.
#[derive(Debug, Clone, Default)]
pub struct Written {
    /// Every segment was already on the board (same MD5), so nothing was written.
    pub all_skipped: bool,
    /// Everything was written (and verified), but the reset that follows failed (a native-USB
    /// board re-enumerating, say). The flash stands; the user presses RESET.
    pub reset_error: Option<String>,
}

/// Erases (if asked) and writes the segments, turning espflash's block counts into bytes.
pub fn write(
    flasher: &mut Flasher,
    segments: &[(u32, Vec<u8>)],
    opts: WriteOptions,
    meter: &mut Meter,
    report: &mut dyn FnMut(FlashUpdate),
) -> Result<Written, espflash::Error> {
    if opts.erase_all {
        report(FlashUpdate::Phase(Phase::Erase));
        flasher.erase_flash()?;
    }
    let parts: Vec<Segment<'_>> = segments.iter().map(|(addr, data)| Segment::new(*addr, data)).collect();
    let lens: Vec<(u32, u64)> = segments.iter().map(|(a, d)| (*a, d.len() as u64)).collect();
    let mut progress = SegmentProgress::new(&lens, meter, report);
    match flasher.write_bins_to_flash(&parts, &mut progress) {
        Ok(()) => Ok(Written { all_skipped: progress.all_skipped(), reset_error: None }),
        // Only the end-of-write reset is left after the last segment finished.
        Err(e) if progress.all_finished() && !matches!(e, espflash::Error::VerifyFailed) => {
            Ok(Written { all_skipped: progress.all_skipped(), reset_error: Some(e.to_string()) })
        }
        Err(e) => Err(e),
    }
}

/// After espflash's own end-of-write handling left the board in its ROM bootloader (no reset
/// lines to restart it with), tells the ROM to run the new firmware. The stub's reboot into the
/// ROM loses whatever arrives meanwhile, so the ROM is synced with first.
pub fn run_firmware(conn: &mut Connection) -> Result<(), espflash::Error> {
    conn.begin()?;
    conn.with_timeout(Duration::from_secs(3), |c| {
        c.command(Command::FlashBegin {
            size: 0,
            blocks: 0,
            block_size: 0x400,
            offset: 0,
            supports_encryption: false,
        })
        .map(drop)
    })?;
    // From here it is the same "run user code" every ESP ROM takes.
    super::esp8266::run_firmware(conn)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chip_names_map_both_ways() {
        for chip in Chip::ALL {
            match to_espflash(chip) {
                Some(e) => assert_eq!(from_espflash(e), Some(chip), "{chip}"),
                None => assert!(chip.is_esp8266()),
            }
        }
        assert_eq!(from_espflash(espflash::target::Chip::Esp32h4), None);
    }
}
