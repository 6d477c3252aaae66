//! What a chip prints on its UART at reset, before the sketch's `Serial.begin()`: the ROM's boot
//! messages (on the ESP8266 also eboot's), as a serial monitor shows them on a real board. The
//! load addresses and lengths are those of a typical Arduino build; a virtual chip loads nothing.

use super::boot::ResetReason;
use otaforge_firmware::Chip;

/// The ESP8266 ROM's rate: it assumes a 40 MHz crystal, boards have 26 MHz (115200 × 26 / 40).
pub const ESP8266_ROM_BAUD: u32 = 74_880;
/// The ESP32 family's ROM rate.
pub const ESP32_ROM_BAUD: u32 = 115_200;

/// The boot messages of `chip` after a reset for `reason`, and the rate they are printed at.
pub fn boot_messages(chip: Chip, reason: ResetReason) -> (u32, String) {
    let lines: Vec<String> = match chip {
        Chip::Esp8266 => {
            // The ROM has no cause of its own for a software restart: it reports the reset pin.
            let cause = if reason == ResetReason::PowerOn { 1 } else { 2 };
            [
                "",
                &format!(" ets Jan  8 2013,rst cause:{cause}, boot mode:(3,6)"),
                "",
                "load 0x4010f000, len 3424, room 16 ",
                "tail 0",
                "chksum 0x2e",
                "load 0x3fff20b8, len 40, room 0 ",
                "tail 8",
                "chksum 0x2b",
                "csum 0x2b",
                "v000469b0",
                "~ld",
            ]
            .map(String::from)
            .to_vec()
        }
        Chip::Esp32 => {
            let rst = match reason {
                ResetReason::SoftwareRestart => "rst:0xc (SW_CPU_RESET)",
                ResetReason::PowerOn | ResetReason::External => "rst:0x1 (POWERON_RESET)",
            };
            [
                "ets Jun  8 2016 00:22:57",
                "",
                &format!("{rst},boot:0x13 (SPI_FAST_FLASH_BOOT)"),
                "configsip: 0, SPIWP:0xee",
                "clk_drv:0x00,q_drv:0x00,d_drv:0x00,cs0_drv:0x00,hd_drv:0x00,wp_drv:0x00",
                "mode:DIO, clock div:1",
                "load:0x3fff0030,len:4916",
                "load:0x40078000,len:16436",
                "load:0x40080400,len:4",
                "load:0x40080404,len:3524",
                "entry 0x400805b8",
            ]
            .map(String::from)
            .to_vec()
        }
        // The newer ROMs (the C3's words; other chips print their own name).
        other => {
            let rom = match other {
                Chip::Esp32C3 => "esp32c3-api1-20210207".to_string(),
                other => other.slug().to_string(),
            };
            let mut lines = vec![format!("ESP-ROM:{rom}"), "Build:Feb  7 2021".to_string()];
            match reason {
                // esp_restart(); the reset pin is a power-on reset to these ROMs.
                ResetReason::SoftwareRestart => {
                    lines.push("rst:0x3 (RTC_SW_SYS_RST),boot:0xc (SPI_FAST_FLASH_BOOT)".into());
                    lines.push("Saved PC:0x40380f3c".into());
                }
                ResetReason::PowerOn | ResetReason::External => {
                    lines.push("rst:0x1 (POWERON),boot:0xc (SPI_FAST_FLASH_BOOT)".into())
                }
            }
            lines.extend(
                [
                    "SPIWP:0xee",
                    "mode:DIO, clock div:1",
                    "load:0x3fcd5820,len:0x458",
                    "load:0x403cc710,len:0x814",
                    "load:0x403ce710,len:0x2880",
                    "entry 0x403cc710",
                ]
                .map(String::from),
            );
            lines
        }
    };
    let baud = if chip.is_esp8266() { ESP8266_ROM_BAUD } else { ESP32_ROM_BAUD };
    (baud, lines.iter().map(|l| format!("{l}\r\n")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_chip_says_why_it_reset_in_its_own_words() {
        let (baud, text) = boot_messages(Chip::Esp8266, ResetReason::External);
        assert_eq!(baud, 74_880);
        assert!(text.starts_with("\r\n ets Jan  8 2013,rst cause:2, boot mode:(3,6)\r\n"), "{text}");
        assert!(boot_messages(Chip::Esp8266, ResetReason::PowerOn).1.contains("rst cause:1,"));
        let (baud, text) = boot_messages(Chip::Esp32C3, ResetReason::External);
        assert_eq!(baud, 115_200);
        assert!(text.contains("\r\nrst:0x1 (POWERON),boot:0xc (SPI_FAST_FLASH_BOOT)\r\n"), "{text}");
        let text = boot_messages(Chip::Esp32C3, ResetReason::SoftwareRestart).1;
        assert!(text.contains("rst:0x3 (RTC_SW_SYS_RST)"), "{text}");
        let text = boot_messages(Chip::Esp32, ResetReason::PowerOn).1;
        assert!(text.contains("rst:0x1 (POWERON_RESET),boot:0x13 (SPI_FAST_FLASH_BOOT)"), "{text}");
    }
}
