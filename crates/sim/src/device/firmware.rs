//! The reference firmware (device-firmware/) as a virtual device runs it: the boot banner, Wi-Fi,
//! the clock (SNTP, or the bake-time floor), the first check a few seconds after, then checks every
//! poll interval ±10 % with a shorter retry after failures, and the same log lines, word for word.
//! Heap figures in the log are typical values; a virtual device has no heap to measure.

use std::time::Duration;

use rand::Rng;
use tokio::sync::watch;

use super::boot::{self, Booted, ResetReason, Settings};
use super::boot_messages::boot_messages;
use super::codes;
use super::status::{Activity, CheckFailure, CheckOutcome, DeviceEvent, SKETCH_BAUD};
use super::updater::{self, Check, Machine};
use super::{Clock, VirtualDevice};
use otaforge_firmware::config_block::BakedSettings;

/// The firmware never trusts a clock before this (2024-01-01), even without a bake time.
const MIN_PLAUSIBLE_TIME: u64 = 1_704_067_200;
/// How long it waits for SNTP before falling back to the floor.
const SNTP_WAIT: Duration = Duration::from_secs(20);
/// ESP32: how long a new image may go without checking in before it rolls itself back
/// (`OTA_VALIDATE_AFTER_S` in the reference sketch).
const VALIDATE_AFTER: Duration = Duration::from_secs(600);
/// Poll intervals are kept within this range whatever the settings say.
const POLL_RANGE: (u32, u32) = (10, 30 * 24 * 3600);

/// Why the firmware loop returned.
pub(super) enum Exit {
    /// Switched off.
    Stopped,
    /// `ESP.restart()` after an update.
    Restart,
}

/// Boots and runs until switched off. Restarts (after updates) boot again.
pub(super) async fn power_on(dev: &mut VirtualDevice, stop: &mut watch::Receiver<bool>) {
    loop {
        dev.console.update(|s| s.activity = Activity::Booting);
        let (baud, rom) = boot_messages(dev.id.chip, dev.rtc.reset_reason);
        dev.console.uart(baud, rom);
        let booted = match boot::boot(&mut dev.flash, &dev.id, &mut dev.rtc) {
            Ok(b) => b,
            Err(e) => {
                // A real chip prints ROM or bootloader errors and resets in a loop.
                let why = e.to_string();
                dev.console.raw(format!("virtual device: does not boot: {why}"));
                halt(dev, why, stop).await;
                return;
            }
        };
        dev.updater_stuck = false;
        match run_firmware(dev, &booted, stop).await {
            Exit::Stopped => return,
            Exit::Restart => dev.rtc.reset_reason = ResetReason::SoftwareRestart,
        }
    }
}

async fn halt(dev: &VirtualDevice, why: String, stop: &mut watch::Receiver<bool>) {
    dev.console.update(|s| s.activity = Activity::Halted(why));
    dev.console.event(DeviceEvent::Stopped);
    let _ = stop.wait_for(|s| *s).await;
}

async fn run_firmware(dev: &mut VirtualDevice, booted: &Booted, stop: &mut watch::Receiver<bool>) -> Exit {
    let chip = dev.id.chip;
    if !matches!(booted.settings, Settings::NotReference(_)) {
        // setup(): Serial.begin(OTA_SERIAL_BAUD); Serial.println();
        dev.console.uart(SKETCH_BAUD, "\r\n");
    }
    let settings = match &booted.settings {
        Settings::Baked(s) => s.clone(),
        other => {
            let why = match other {
                Settings::Unbaked => {
                    "settings: compiled in (ota_config.h); the config block is not baked".to_string()
                }
                Settings::Damaged(e) => format!(
                    "settings: compiled in (ota_config.h); the config block is marked baked but is damaged (CRC or format), so it is ignored ({e})"
                ),
                Settings::NotReference(e) => {
                    format!("this image is not the OTA Forge reference firmware: {e}")
                }
                Settings::Baked(_) => unreachable!(),
            };
            dev.console.log(&why);
            dev.console.raw(
                "virtual device: runs, but never checks for updates (a virtual device has no ota_config.h: bake the image)",
            );
            dev.console.update(|s| {
                s.boots += 1;
                s.sketch_md5 = Some(booted.sketch_md5.clone());
            });
            halt(dev, why, stop).await;
            return Exit::Stopped;
        }
    };
    // The board's own name and Wi-Fi come from its device settings area, not from the image.
    let own = super::device_area::resolve(&mut dev.flash, &dev.id, &settings);
    if own.migrated {
        dev.console
            .log("settings: device name and Wi-Fi copied from the config block to the device settings area");
    }
    dev.console.log(format!("settings: device name and Wi-Fi from the {}", own.source));
    let name = own.name.clone();
    let mut settings = settings;
    settings.device_name = name.clone();
    dev.console.update(|s| {
        s.boots += 1;
        s.name = name.clone();
        s.wifi_ssid = own.wifi_ssid.clone();
        s.version = Some(settings.version.clone());
        s.sketch_md5 = Some(booted.sketch_md5.clone());
        s.activity = Activity::Idle;
    });
    dev.console.event(DeviceEvent::Booted { version: Some(settings.version.clone()) });
    let floor = u64::from(settings.baked_at).max(MIN_PLAUSIBLE_TIME);
    banner(dev, &settings, &name, floor);

    let mac = dev.id.mac;
    let network = own.wifi_ssid.as_deref().unwrap_or("the built-in network");
    dev.console.log(format!("Wi-Fi: joining {network}"));
    dev.console.log(format!("Wi-Fi: connected, IP 10.{}.{}.{}, RSSI -58 dBm", mac[3], mac[4], mac[5].max(2)));
    dev.console.log(format!("clock: asking SNTP (waiting up to {} s)", SNTP_WAIT.as_secs()));
    let sntp = match dev.opts.clock {
        Clock::Sntp { .. } => {
            dev.console.log(format!("clock: {} (SNTP)", utc(dev.opts.clock.host_time())));
            true
        }
        Clock::NoSntp => {
            if !dev.sleep(SNTP_WAIT, stop).await {
                return Exit::Stopped;
            }
            let how = if chip.is_esp8266() { "certificates are checked against" } else { "clock set to" };
            let what = if settings.baked_at != 0 { "bake" } else { "build" };
            dev.console.log(format!(
                "clock: no SNTP answer in {} s; {how} {} (the {what} time) until SNTP answers",
                SNTP_WAIT.as_secs(),
                utc(floor)
            ));
            false
        }
        Clock::Unset => {
            dev.console
                .raw("virtual device: the clock is never set (1970); certificates are checked against it");
            false
        }
    };

    // ESP32: a new image is on trial until it checks in (the reference sketch defines
    // verifyRollbackLater(), so the core does not confirm it at boot).
    let mut on_trial = booted.pending_verify;
    if on_trial {
        dev.console.log(format!(
            "rollback: this image was just installed and is on trial: it is kept once it checks in with the update server; if it has not within {} s, or resets before, the previous image comes back",
            VALIDATE_AFTER.as_secs()
        ));
    }
    let trial_ends = tokio::time::Instant::now() + VALIDATE_AFTER.div_f64(dev.opts.speed.max(1e-3));
    let mut wait = Duration::from_millis(rand::rng().random_range(1000..5000));
    let mut failures = 0u32;
    loop {
        if !dev.sleep(wait, stop).await {
            return Exit::Stopped;
        }
        let x509_time = match dev.opts.clock {
            Clock::Unset => 0,
            clock => clock.host_time().max(floor),
        };
        let outcome = tokio::select! {
            o = check(dev, booted, &settings, x509_time, sntp) => o,
            _ = stop.wait_for(|s| *s) => return Exit::Stopped,
        };
        // The image is confirmed (or given up) before the check is reported.
        let answered = matches!(outcome, CheckOutcome::UpToDate | CheckOutcome::Updated { .. });
        if on_trial && answered {
            on_trial = false;
            match boot::mark_app_valid(&mut dev.flash, booted) {
                Ok(_) => dev.console.log("rollback: image confirmed after its first check-in; it stays"),
                Err(e) => dev.console.log(format!("rollback: confirming the image failed ({e})")),
            }
        }
        if on_trial && tokio::time::Instant::now() >= trial_ends {
            dev.console.log(format!(
                "rollback: no check-in with the update server within {} s; marking this image invalid and rebooting into the previous one",
                VALIDATE_AFTER.as_secs()
            ));
            // esp_ota_mark_app_invalid_rollback_and_reboot(): the bootloader then finds the entry
            // still on trial and goes back to the previous slot.
            return Exit::Restart;
        }
        let ok = !matches!(outcome, CheckOutcome::Failed(_));
        dev.console.update(|s| {
            s.checks += 1;
            s.failures += u64::from(!ok);
            s.updates += u64::from(matches!(outcome, CheckOutcome::Updated { .. }));
            s.last_outcome = Some(outcome.clone());
            s.activity = Activity::Idle;
        });
        dev.console.event(DeviceEvent::Checked(outcome.clone()));
        if let CheckOutcome::Updated { .. } = outcome {
            return Exit::Restart;
        }
        dev.console.log(format!("check: done; heap {} free", heap(chip)));
        failures = if ok { 0 } else { failures + 1 };
        wait = next_wait(&settings, dev.opts.poll_interval, failures);
        dev.console.log(format!("next check in {} s", wait.as_secs()));
    }
}

/// One check, logged the way `checkForUpdate()` logs it.
async fn check(
    dev: &mut VirtualDevice,
    booted: &Booted,
    s: &BakedSettings,
    x509_time: u64,
    sntp: bool,
) -> CheckOutcome {
    let chip = dev.id.chip;
    let clock_word = if chip.is_esp8266() { "certificate time" } else { "clock" };
    dev.console.update(|st| st.activity = Activity::Checking);
    dev.console.log(format!(
        "check: GET {} as version {} ({clock_word} {}{}; heap {} free, largest block {})",
        updater::url(s),
        s.version,
        utc(x509_time),
        if sntp { "" } else { ", no SNTP yet" },
        heap(chip),
        heap(chip) * 3 / 4
    ));
    let c = Check { id: &dev.id, settings: s, booted, x509_time, net: &dev.opts.net, console: &dev.console };
    let m = Machine { flash: &mut dev.flash, rtc: &mut dev.rtc, updater_stuck: &mut dev.updater_stuck };
    let outcome = updater::check(&c, m).await;
    match &outcome {
        CheckOutcome::UpToDate => dev
            .console
            .log(format!("check: up to date (the server has nothing newer for version {})", s.version)),
        CheckOutcome::Updated { .. } => {}
        CheckOutcome::Failed(f) => log_failure(dev, s, f),
    }
    outcome
}

fn log_failure(dev: &VirtualDevice, s: &BakedSettings, f: &CheckFailure) {
    let esp8266 = dev.id.chip.is_esp8266();
    // onError: ESP8266httpUpdate calls it (`_setLastError`); arduino-esp32's HTTPUpdate sets
    // `_lastError` directly, so an ESP32 never prints this line.
    if esp8266 {
        dev.console.log(format!("update: error {}: {}", f.code, f.message));
    }
    dev.console.log(format!("check failed: error {}: {}", f.code, f.message));
    if let Some(why) = explain_update(esp8266, f.code) {
        dev.console.log(format!("  = {why}"));
    }
    if let Some((code, text)) = &f.tls {
        if esp8266 {
            dev.console.log(format!("TLS error {code}: {text}"));
        } else {
            dev.console.log(format!("TLS error -0x{:04X}: {text}", -code));
        }
        let why = match (esp8266, *code) {
            (true, 54) => Some("the server certificate is expired or not yet valid for this device's clock: let the device reach SNTP (UDP 123), or check the server's certificate dates".to_string()),
            (true, 56) => Some(format!("the server certificate does not name \"{}\": renew it for this host (otaforge cert renew --host {})", s.host, s.host)),
            (true, 62) => Some("the server certificate is not signed by the CA in this firmware (another OTA Forge project, or the CA was replaced): bake this project's CA".to_string()),
            (true, 6) => Some(format!("a TLS record was larger than the {}-byte receive buffer: raise tls_rx_buffer (16384 works with every server)", s.tls_rx_buffer)),
            (false, codes::MBEDTLS_CERT_VERIFY_FAILED) => Some(format!("the server certificate did not verify: it is not signed by the CA in this firmware, or does not name \"{}\", or its dates are outside the device clock", s.host)),
            _ => None,
        };
        if let Some(w) = why {
            dev.console.log(format!("  = {w}"));
        }
    }
}

/// `explainUpdateError` in the reference firmware.
fn explain_update(esp8266: bool, code: i32) -> Option<&'static str> {
    Some(match code {
        -1 if esp8266 => "no connection (DNS, TCP or TLS): check the host, the port and that the server runs",
        -1 => {
            "no connection (DNS, TCP or TLS): check the host, the port and that the server runs; see the TLS error below"
        }
        -100 if esp8266 => "the new image does not fit the free flash space",
        -100 => "the new image does not fit the OTA partition",
        -101 => "the server sent no Content-Length",
        -102 => "the server has no firmware for this path or channel (404)",
        -103 => "the server refused this device (403)",
        -104 => "the server answered with an HTTP status the updater does not handle",
        -105 => "the server's x-MD5 header is malformed",
        -106 if esp8266 => "the download is not an ESP8266 image",
        -106 => "the download is not an ESP32 app image",
        -107 => "the image was built for a larger flash chip than this one",
        -108 if esp8266 => "the server wants authentication (401)",
        -108 => "this partition scheme has no OTA slot: build with one that has two app partitions",
        -109 if !esp8266 => "the download's SHA-256 does not match the server's",
        6 if esp8266 => "the download stalled; the old firmware keeps running",
        7 if esp8266 => "the download's MD5 does not match the server's x-MD5",
        12 if esp8266 => "the image's signature did not verify",
        _ => return None,
    })
}

fn banner(dev: &VirtualDevice, s: &BakedSettings, name: &str, floor: u64) {
    let c = &dev.console;
    let id = &dev.id;
    c.log(format!("OTA Forge firmware {} on \"{name}\"", s.version));
    if id.chip.is_esp8266() {
        c.log(format!(
            "chip ESP8266 id {:06x}, MAC {}, reset reason: {}, heap {} free",
            id.chip_id(),
            id.sta_mac(),
            dev.rtc.reset_reason.text(),
            heap(id.chip)
        ));
    } else {
        c.log(format!("chip {}, MAC {}, heap {} free", id.chip.name(), id.sta_mac(), heap(id.chip)));
    }
    c.log(format!(
        "settings: baked into this image by OTA Forge on {} (config block)",
        utc(u64::from(s.baked_at))
    ));
    c.log(format!("update URL {}, checked every {} s (+-10%)", updater::url(s), poll_seconds(s)));
    if id.chip.is_esp8266() {
        c.log(format!(
            "TLS: trusting the OTA Forge CA ({} bytes of PEM); BearSSL buffers rx {} / tx {} bytes",
            s.ca_pem.len(),
            s.tls_rx_buffer,
            s.tls_tx_buffer
        ));
    } else {
        c.log(format!(
            "TLS: trusting the OTA Forge CA ({} bytes of PEM); mbedTLS takes full-size records, so the tls_rx/tx buffer settings ({}/{}) are for ESP8266 devices only",
            s.ca_pem.len(),
            s.tls_rx_buffer,
            s.tls_tx_buffer
        ));
    }
    let wifi_from = if s.wifi_ssid.is_empty() { "from ota_config.h" } else { "from the config block" };
    c.log(format!("Wi-Fi: \"{}\" ({wifi_from})", s.wifi_ssid));
    c.log(format!("clock: SNTP time, never earlier than {}", utc(floor)));
}

fn poll_seconds(s: &BakedSettings) -> u32 {
    s.poll_interval_s.clamp(POLL_RANGE.0, POLL_RANGE.1)
}

/// `scheduleNextCheck`: the interval, or after failures 30 s doubling (never later than the
/// interval), ±10 % jitter.
fn next_wait(s: &BakedSettings, interval: Option<Duration>, failures: u32) -> Duration {
    let interval = interval.unwrap_or(Duration::from_secs(u64::from(poll_seconds(s))));
    let mut wait = interval;
    if failures > 0 {
        let backoff = Duration::from_secs(30) * (1u32 << (failures - 1).min(6));
        wait = wait.min(backoff);
    }
    let span = wait.as_secs_f64() / 10.0;
    Duration::from_secs_f64(wait.as_secs_f64() - span + rand::rng().random_range(0.0..=2.0 * span))
}

/// A typical free heap while the firmware idles.
fn heap(chip: otaforge_firmware::Chip) -> u32 {
    if chip.is_esp8266() { 41_280 } else { 243_912 }
}

/// `2026-01-31 12:00:00 UTC`.
pub(super) fn utc(t: u64) -> String {
    let fmt = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second] UTC");
    time::OffsetDateTime::from_unix_timestamp(t as i64)
        .ok()
        .and_then(|d| d.format(fmt).ok())
        .unwrap_or_else(|| t.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_follow_the_reference_scheduler() {
        let s = BakedSettings { poll_interval_s: 600, ..Default::default() };
        for _ in 0..50 {
            let w = next_wait(&s, None, 0).as_secs_f64();
            assert!((540.0..=660.0).contains(&w), "{w}");
            let w = next_wait(&s, None, 1).as_secs_f64();
            assert!((27.0..=33.0).contains(&w), "{w}");
            let w = next_wait(&s, None, 3).as_secs_f64();
            assert!((108.0..=132.0).contains(&w), "{w}");
        }
        let s = BakedSettings { poll_interval_s: 1, ..Default::default() };
        assert!(next_wait(&s, None, 0) >= Duration::from_secs(9), "the firmware floor is 10 s");
        assert!(next_wait(&s, Some(Duration::from_secs(1)), 0) < Duration::from_secs(2));
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
    }
}
