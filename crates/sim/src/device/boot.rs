//! What a virtual chip does after a reset, up to the moment the reference firmware is running:
//! ESP8266: eboot carries out a pending update copy, then the sketch at 0x1000 starts;
//! ESP32: the bootloader picks the app slot otadata names (aborting an app left unconfirmed, and
//! marking a new one PENDING_VERIFY: see [`super::partitions`]), checks it (checksum, SHA-256,
//! chip) and falls back to another slot when it is broken. Then the firmware reads its config block and
//! works out what the updater will report: sketch size, MD5 (or SHA-256) and free space, computed
//! the way `ESP.getSketchSize()`, `getSketchMD5()` and `getFreeSketchSpace()` compute them.

use std::io::Read;

use super::flash::{Flash, FlashError, SECTOR};
use super::identity::Identity;
use super::image_check;
use super::partitions::{AppSlot, MarkValid, OtaState, PartitionMap};
use otaforge_firmware::config_block::{BakedSettings, ConfigError};
use otaforge_firmware::{Chip, digest};

/// Where an ESP8266 sketch's filesystem sits (the Arduino "Flash Size" menu, e.g. `4M (FS:2MB)`):
/// the sketch and the downloaded update share the space below it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Esp8266Layout {
    /// First byte of the filesystem (`FS_start - 0x40200000`).
    pub fs_start: usize,
    /// End of the filesystem.
    pub fs_end: usize,
}

impl Esp8266Layout {
    /// The layout the Arduino boards default to for a chip of `size` bytes (nodemcuv2 on 4 MB:
    /// `4M2M`, a 2 MB filesystem at 0x200000).
    pub fn for_flash_size(size: usize) -> Esp8266Layout {
        const MB: usize = 1 << 20;
        match size {
            s if s <= 512 * 1024 => Esp8266Layout { fs_start: 0x6B000, fs_end: 0x7B000 },
            s if s <= MB => Esp8266Layout { fs_start: 0xEB000, fs_end: 0xFB000 },
            s if s <= 2 * MB => Esp8266Layout { fs_start: 0x100000, fs_end: 0x1FA000 },
            s => Esp8266Layout { fs_start: 0x200000, fs_end: s - 0x6000 },
        }
    }
}

/// What survives a software reset: the RTC memory eboot's command lives in, and why we reset.
#[derive(Debug, Clone, Default)]
pub struct Rtc {
    /// A copy eboot must make before starting the sketch (ESP8266 updates).
    pub eboot_copy: Option<EbootCopy>,
    /// Why the chip last reset.
    pub reset_reason: ResetReason,
}

/// `ACTION_COPY_RAW`: copy `len` bytes from `src` to `dst`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EbootCopy {
    /// Where the update was written.
    pub src: usize,
    /// Where it goes (0 for a sketch).
    pub dst: usize,
    /// Its length.
    pub len: usize,
}

/// Why the chip last reset, as `ESP.getResetReason()` words it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ResetReason {
    /// Power applied.
    #[default]
    PowerOn,
    /// `ESP.restart()` (after an update).
    SoftwareRestart,
    /// The EN/RST pin (after flashing over serial).
    External,
}

impl ResetReason {
    /// The core's wording.
    pub fn text(self) -> &'static str {
        match self {
            ResetReason::PowerOn => "Power On",
            ResetReason::SoftwareRestart => "Software/System restart",
            ResetReason::External => "External System",
        }
    }
}

/// Where the firmware's settings came from.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(clippy::large_enum_variant)] // one per boot, never in a collection
pub enum Settings {
    /// The config block holds baked settings.
    Baked(BakedSettings),
    /// The block is there, unbaked: the firmware would use `ota_config.h`, which a virtual
    /// device does not have.
    Unbaked,
    /// The block is marked baked but is damaged; the firmware ignores it.
    Damaged(String),
    /// No config block: not the reference firmware.
    NotReference(String),
}

/// Where the running firmware is and what it reports about itself.
#[derive(Debug, Clone)]
pub struct Booted {
    /// Its settings.
    pub settings: Settings,
    /// `ESP.getSketchSize()`.
    pub sketch_size: usize,
    /// `ESP.getSketchMD5()`, lower-case hex: the MD5 of the running sketch's `getSketchSize()`
    /// bytes as they are in flash (arduino-esp32 `cores/esp32/Esp.cpp`: `MD5Builder` over the
    /// running partition, `toString()` lower-case; the ESP8266 core likewise).
    pub sketch_md5: String,
    /// The running partition's SHA-256 (ESP32), upper-case hex.
    pub sketch_sha256: Option<String>,
    /// `ESP.getFreeSketchSpace()`.
    pub free_space: usize,
    /// The chip's flash mode (header byte 2 at 0x0; the updater writes it into new images).
    pub flash_mode: u8,
    /// ESP8266 layout or ESP32 slots.
    pub layout: Layout,
    /// ESP32: the running app's otadata entry is `ESP_OTA_IMG_PENDING_VERIFY` (the bootloader
    /// just booted a new OTA image for the first time): unless [`mark_app_valid`] is called before
    /// the next reset, that reset rolls back to the previous slot. Always false on the ESP8266.
    ///
    /// arduino-esp32's `initArduino()` (`cores/esp32/esp32-hal-misc.c`, built with
    /// `CONFIG_APP_ROLLBACK_ENABLE`) marks a PENDING_VERIFY app valid before `setup()` runs unless
    /// the sketch defines `verifyRollbackLater()` to return true; the reference firmware does not.
    pub pending_verify: bool,
}

/// Where updates go.
#[derive(Debug, Clone)]
pub enum Layout {
    /// Below the filesystem, then copied to 0x0 by eboot.
    Esp8266(Esp8266Layout),
    /// Into the other OTA slot, then selected in otadata.
    Esp32 {
        /// The partition map.
        map: PartitionMap,
        /// The slot running now.
        running: AppSlot,
    },
}

/// Why the chip does not start the firmware (a real one would print ROM/bootloader errors and
/// reset in a loop).
#[allow(missing_docs)] // each variant's message is its documentation
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    #[error("the flash is blank at 0x{0:x}: nothing to boot (flash a firmware first)")]
    Blank(usize),
    #[error(
        "no Arduino sketch at 0x1000 (this virtual ESP8266 runs Arduino images: eboot at 0x0, the sketch at 0x1000)"
    )]
    NotArduino,
    #[error("the image at 0x{addr:x} does not boot: {why}")]
    Broken { addr: usize, why: String },
    #[error("no app slot boots: {0}")]
    NoBootableSlot(String),
    #[error("eboot could not copy the update: {0}")]
    Eboot(String),
    #[error(transparent)]
    Flash(#[from] FlashError),
}

/// Resets the chip and starts what its flash holds.
pub fn boot(flash: &mut Flash, id: &Identity, rtc: &mut Rtc) -> Result<Booted, BootError> {
    if id.chip.is_esp8266() { boot_esp8266(flash, id, rtc) } else { boot_esp32(flash, id) }
}

fn boot_esp8266(flash: &mut Flash, id: &Identity, rtc: &mut Rtc) -> Result<Booted, BootError> {
    let layout = Esp8266Layout::for_flash_size(id.flash_size);
    if let Some(cmd) = rtc.eboot_copy.take() {
        eboot_copy(flash, cmd, layout.fs_start)?;
    }
    if flash.read(0, 1)?[0] != 0xE9 {
        return Err(BootError::Blank(0));
    }
    let sketch_size = esp8266_sketch_size(flash).ok_or(BootError::NotArduino)?;
    let bytes = flash.read(0, sketch_size)?;
    // The ROM checks eboot's checksum; eboot loads the sketch. Neither reads the CRC at 0x1014.
    image_check::check_esp8266(&bytes).map_err(|why| BootError::Broken { addr: 0, why })?;
    let free_space = layout.fs_start.saturating_sub(sketch_size.next_multiple_of(SECTOR));
    Ok(Booted {
        settings: read_settings(&bytes),
        sketch_md5: digest::md5_hex(&bytes),
        sketch_sha256: None,
        sketch_size,
        free_space,
        flash_mode: bytes[2],
        layout: Layout::Esp8266(layout),
        pending_verify: false,
    })
}

/// `ESP.getSketchSize()`: walk the sketch header at 0x1000, round past the checksum byte.
fn esp8266_sketch_size(flash: &Flash) -> Option<usize> {
    let head = flash.read(0x1000, 8).ok()?;
    if head[0] != 0xE9 {
        return None;
    }
    let mut pos = 0x1000 + 8;
    for _ in 0..head[1] {
        let seg = flash.read(pos, 8).ok()?;
        pos += 8 + u32::from_le_bytes([seg[4], seg[5], seg[6], seg[7]]) as usize;
        if pos >= flash.size() {
            return None;
        }
    }
    Some((pos + 16) & !15)
}

/// eboot's `ACTION_COPY_RAW`; gzip'd updates are unpacked on the way, as eboot does.
///
/// eboot (`bootloaders/eboot/eboot.c`, `copy_raw`) takes the unpacked size from the last four
/// bytes of the range it was given and writes that many unpacked bytes (the rest of the last
/// sector 0xFF), however long the stream inside is. That is the gzip's ISIZE when the range is the
/// gzip file; a signed file's trailer is kept out of the range only by an updater that verified it
/// (see [`super::signature_check`]), so without a verifier eboot reads the signature's length word.
fn eboot_copy(flash: &mut Flash, cmd: EbootCopy, limit: usize) -> Result<(), BootError> {
    let head = flash.read(cmd.src, 2.min(cmd.len))?;
    if head == [0x1F, 0x8B] {
        let packed = flash.read(cmd.src, cmd.len)?;
        let size_at = packed
            .len()
            .checked_sub(4)
            .ok_or_else(|| BootError::Eboot("the gzip'd update is cut off".into()))?;
        let unpacked = u32::from_le_bytes(packed[size_at..].try_into().expect("four bytes")) as usize;
        if cmd.dst + unpacked > limit {
            return Err(BootError::Eboot("the unpacked update does not fit below the filesystem".into()));
        }
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&packed[..])
            .take(unpacked as u64)
            .read_to_end(&mut out)
            .map_err(|e| BootError::Eboot(format!("the gzip'd update does not unpack: {e}")))?;
        flash.erase_range(cmd.dst, out.len())?;
        flash.write(cmd.dst, &out)?;
        return Ok(());
    }
    flash.copy(cmd.src, cmd.dst, cmd.len)?;
    Ok(())
}

fn boot_esp32(flash: &mut Flash, id: &Identity) -> Result<Booted, BootError> {
    let map = PartitionMap::read(flash)?;
    if map.slots().is_empty() {
        return Err(BootError::NoBootableSlot("no app partition".into()));
    }
    // otadata first (rollback states), then the slots from the chosen one down to the factory
    // app, then the ones after it (`bootloader_utility_load_boot_image`).
    let start = map.select_boot(flash)?;
    let mut failures = Vec::new();
    for slot in map.load_order(start.index) {
        match check_esp32_slot(flash, id.chip, slot) {
            Ok(bytes) => {
                if start.initial {
                    map.record_initial_boot(flash, slot)?;
                }
                let pending_verify = map.state_of(flash, slot)? == Some(OtaState::PendingVerify);
                // `getFreeSketchSpace()`: the size of `esp_ota_get_next_update_partition(NULL)`,
                // 0 when there is none.
                let free_space = map.next_update_slot(slot).map_or(0, |s| s.size);
                let sha = match bytes[23] == 1 {
                    true => hex::encode_upper(&bytes[bytes.len() - 32..]),
                    false => digest::sha256_hex(&bytes).to_ascii_uppercase(),
                };
                return Ok(Booted {
                    settings: read_settings(&bytes),
                    sketch_md5: digest::md5_hex(&bytes),
                    sketch_sha256: Some(sha),
                    sketch_size: bytes.len(),
                    free_space,
                    flash_mode: bytes[2],
                    layout: Layout::Esp32 { map, running: slot },
                    pending_verify,
                });
            }
            Err(why) => failures.push(format!("{} at 0x{:x}: {why}", slot.label(), slot.offset)),
        }
    }
    Err(BootError::NoBootableSlot(failures.join("; ")))
}

/// `esp_ota_mark_app_valid_cancel_rollback()` on the chip `booted` describes: the active otadata
/// entry becomes VALID, so the next reset boots this app again instead of rolling back. The
/// firmware simulation calls it when the reference firmware would. Nothing to do on an ESP8266
/// ([`MarkValid::NotOta`]).
pub fn mark_app_valid(flash: &mut Flash, booted: &Booted) -> Result<MarkValid, FlashError> {
    match &booted.layout {
        Layout::Esp32 { map, .. } => map.mark_app_valid(flash),
        Layout::Esp8266(_) => Ok(MarkValid::NotOta),
    }
}

/// What `esp_image_verify` checks (the bootloader, and `esp_ota_set_boot_partition`): magic,
/// chip id, checksum, SHA-256. Returns the image.
pub(super) fn check_esp32_slot(flash: &Flash, chip: Chip, slot: AppSlot) -> Result<Vec<u8>, String> {
    let len = esp32_image_len(flash, slot).ok_or("no valid image header (nothing flashed here?)")?;
    let bytes = flash.read(slot.offset, len).map_err(|e| e.to_string())?;
    image_check::check_esp32(&bytes, chip).map(|()| bytes)
}

/// Length of the app image in `slot`: header, segments, padding and checksum, then the SHA-256.
fn esp32_image_len(flash: &Flash, slot: AppSlot) -> Option<usize> {
    let head = flash.read(slot.offset, 24).ok()?;
    if head[0] != 0xE9 || head[1] == 0 || head[1] > 16 {
        return None;
    }
    let mut pos = 24;
    for _ in 0..head[1] {
        let seg = flash.read(slot.offset + pos, 8).ok()?;
        pos += 8 + u32::from_le_bytes([seg[4], seg[5], seg[6], seg[7]]) as usize;
        if pos >= slot.size {
            return None;
        }
    }
    let len = (pos | 15) + 1 + if head[23] == 1 { 32 } else { 0 };
    (len <= slot.size).then_some(len)
}

fn read_settings(image: &[u8]) -> Settings {
    match image_check::settings(image) {
        Ok(Some(s)) => Settings::Baked(s),
        Ok(None) => Settings::Unbaked,
        Err(e @ (ConfigError::BadCrc | ConfigError::WrongFormat(_))) => Settings::Damaged(e.to_string()),
        Err(e) => Settings::NotReference(e.to_string()),
    }
}

#[cfg(test)]
pub(crate) mod tests;
