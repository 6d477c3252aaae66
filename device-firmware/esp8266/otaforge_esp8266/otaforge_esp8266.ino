/*
 * OTA Forge reference firmware for the ESP8266 (Arduino core 3.x).
 *
 * The device joins Wi-Fi, sets its clock, then asks the OTA Forge update server over HTTPS whether
 * there is newer firmware, at a fixed interval with random jitter. When there is, it downloads
 * and flashes the new image and reboots into it.
 * Security: the server certificate must be signed by the private CA baked into this firmware
 * (a trust anchor, not a pinned leaf), so the server certificate can be renewed without
 * reflashing any device.
 *
 * Settings come from three places:
 *   1. ota_config.h: compiled-in defaults, written by `otaforge bake --sketch <this folder>`.
 *   2. The config block (OTAFORGE_CONFIG below): 3 KB reserved in flash. `otaforge bake --image`
 *      finds it by its magic in a built .bin and writes the fleet's settings into it (server,
 *      path, channel, CA, poll interval...), so a prebuilt image can be given to another server
 *      without a compiler. Baked values override ota_config.h.
 *   3. The device settings area: this board's own name and Wi-Fi, in the flash sector the core
 *      reserves for EEPROM, which no update writes (see "Device settings" below). Written by
 *      `otaforge provision` / `otaforge flash --device-name ... --wifi-ssid ...`. Its values
 *      override the image's, so every update keeps the board's name and network.
 *
 * Nothing here blocks for long outside the update itself: loop() runs a small scheduler, so the
 * Wi-Fi stack is never starved by waiting loops.
 */

#include <Arduino.h>

#if !defined(ESP8266) && !defined(ARDUINO_ARCH_ESP8266)
#error "otaforge_esp8266 is for ESP8266 boards (FQBN esp8266:esp8266:...). For ESP32 boards build device-firmware/esp32/otaforge_esp32 instead."
#endif

#if __has_include("ota_config.h")
#include "ota_config.h"
#else
#error "ota_config.h is missing. Write it with: otaforge bake --sketch <this sketch folder> --version <x.y.z> (it holds your update server and its CA; ota_config.h.example shows the format). The board's name and Wi-Fi go onto the board itself: otaforge provision --port PORT --device-name NAME --wifi-ssid SSID"
#endif
// The config block's header first: it defines otaforge_crc32(), which the device settings header
// shares. Config-block headers generated before the two shared it define the function without
// the guard macro; define the guard here so the second header does not define it again.
#include "otaforge_config_block.h"
#ifndef OTAFORGE_CRC32_DEFINED
#define OTAFORGE_CRC32_DEFINED
#endif
#include "otaforge_device_settings.h"

#include <ESP8266WiFi.h>
#include <ESP8266httpUpdate.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

// ---------------------------------------------------------------------------------------------
// Tunables (define them with build flags to change them).

// How long to wait for SNTP after Wi-Fi comes up before falling back to the bake/build time.
#ifndef OTA_SNTP_WAIT_MS
#define OTA_SNTP_WAIT_MS 20000UL
#endif

#ifndef OTA_SERIAL_BAUD
#define OTA_SERIAL_BAUD 115200
#endif

// A board's name and Wi-Fi belong in its device settings area (otaforge provision); ota_config.h
// may still carry them as a fallback for boards that have none, or leave them out.
#ifndef OTA_DEVICE_NAME
#define OTA_DEVICE_NAME ""
#endif
#ifndef OTA_WIFI_SSID
#define OTA_WIFI_SSID ""
#endif
#ifndef OTA_WIFI_PASSWORD
#define OTA_WIFI_PASSWORD ""
#endif

// LED lit while a buffer of the update is being downloaded. OTA_LED_PIN -1 turns it off.
// Generic ESP8266 boards define LED_BUILTIN as GPIO1, the serial TX pin: driving it would cut
// the log, so that value is skipped unless OTA_LED_PIN asks for it explicitly.
#ifndef OTA_LED_PIN
#ifdef LED_BUILTIN
#define OTA_LED_PIN ((LED_BUILTIN) == 1 ? -1 : (LED_BUILTIN))
#else
#define OTA_LED_PIN -1
#endif
#endif
// The on-board LEDs of NodeMCU and D1 mini boards light when the pin is LOW.
#ifndef OTA_LED_ON
#define OTA_LED_ON LOW
#endif

#define OTA_LOG(fmt, ...) Serial.printf_P(PSTR("[otaforge] " fmt "\n"), ##__VA_ARGS__)

// Seconds between checks are kept in this range whatever the settings say.
static const uint32_t kMinPollSeconds = 10;
static const uint32_t kMaxPollSeconds = 30UL * 24 * 3600;
// The clock is never trusted below this (2024-01-01), even with an empty OTA_BUILD_TIME.
static const uint32_t kMinPlausibleTime = 1704067200UL;

// ---------------------------------------------------------------------------------------------
// The config block. OTA Forge searches a built image for the magic and writes the settings and a
// CRC into it; as compiled it carries only the magic, format and length (flags = 0: not baked),
// exactly what config_block::unbaked_block() in the app produces. `used` and the reference
// from loadSettings() keep the linker from dropping it; PROGMEM puts it in flash (.irom0.text).
static const otaforge_config_block_t OTAFORGE_CONFIG PROGMEM __attribute__((used, aligned(4))) = {
    OTAFORGE_CONFIG_MAGIC,  /* magic: 15 characters and the NUL, 16 bytes */
    OTAFORGE_CONFIG_FORMAT, /* format */
    OTAFORGE_CONFIG_LENGTH, /* length */
    0,                      /* flags: not baked */
    0,                      /* baked_at */
    0,                      /* port */
    0,                      /* tls_rx_buffer */
    0,                      /* tls_tx_buffer */
    0,                      /* ca_len */
    0,                      /* poll_interval_s */
    {0},                    /* host */
    {0},                    /* path */
    {0},                    /* channel */
    {0},                    /* version */
    {0},                    /* device_name */
    {0},                    /* wifi_ssid */
    {0},                    /* wifi_password */
    {0},                    /* ca_pem */
    {0},                    /* reserved */
    0,                      /* crc32 */
};

// ---------------------------------------------------------------------------------------------
// Settings in RAM, and the scheduler's state. (All types come before the first function, so the
// prototypes the Arduino builder generates never refer to a type it has not seen.)

enum OtaSettingsSource {
  SOURCE_COMPILED,       // ota_config.h; the config block is not baked
  SOURCE_BAKED,          // the config block
  SOURCE_BLOCK_DAMAGED,  // the block says "baked" but its CRC or format is wrong: ota_config.h
  SOURCE_NO_MEMORY,      // no 3 KB of heap to read the block: ota_config.h
};

// Where the device name and the Wi-Fi network in use came from.
enum OtaValueSource {
  FROM_NOWHERE,       // none configured
  FROM_OTA_CONFIG,    // compiled in (ota_config.h)
  FROM_CONFIG_BLOCK,  // baked into the config block, as images were before device settings (moved)
  FROM_DEVICE_AREA,   // this board's device settings area
  FROM_MAC,           // derived from the MAC (names only)
};

// What the device settings area (the EEPROM sector) holds.
enum OtaAreaState {
  AREA_VALID,         // a record of this format with a good CRC
  AREA_BLANK,         // erased flash: the board was never provisioned
  AREA_DAMAGED,       // our magic and format, but a bad length or CRC
  AREA_OTHER_FORMAT,  // our magic, another format (written by a newer OTA Forge): left alone
  AREA_FOREIGN,       // something else (the EEPROM library, an earlier firmware): left alone
  AREA_READ_FAILED,   // ESP.flashRead() failed
  AREA_NO_MEMORY,     // no 2 KB of heap to read it
};

// Whether device settings found in the config block were copied into the device settings area.
enum OtaMigration {
  MIGRATION_NONE,     // nothing to copy, or the area already holds a record
  MIGRATION_DONE,     // copied and read back
  MIGRATION_FAILED,   // erase, write or read-back failed: the image's values stay in use
  MIGRATION_REFUSED,  // the area holds foreign data or another format, which is not overwritten
};

struct OtaSettings {
  char host[sizeof(otaforge_config_block_t::host)];
  uint16_t port;
  char path[sizeof(otaforge_config_block_t::path)];
  char channel[sizeof(otaforge_config_block_t::channel)];
  char version[sizeof(otaforge_config_block_t::version)];
  char deviceName[sizeof(otaforge_config_block_t::device_name)];
  char wifiSsid[sizeof(otaforge_config_block_t::wifi_ssid)];
  char wifiPassword[sizeof(otaforge_config_block_t::wifi_password)];
  String caPem;            // the trust anchor (our private CA), PEM
  uint32_t pollIntervalS;  // seconds between checks
  uint16_t tlsRxBuffer;    // BearSSL receive buffer, 512..16384
  uint16_t tlsTxBuffer;    // BearSSL send buffer, 512..16384
  uint32_t bakedAt;        // unix time of `otaforge bake --image`, 0 when not baked
  uint32_t clockFloor;     // certificates are never checked against a time earlier than this
  OtaSettingsSource source;
  OtaValueSource nameSource;
  OtaValueSource wifiSource;
  OtaAreaState areaState;
  OtaMigration migration;
};

// The device settings record and the config block carry the same texts in fields of the same
// size, so values move between them without truncation.
static_assert(sizeof(otaforge_device_settings_t::device_name) == sizeof(otaforge_config_block_t::device_name),
              "device name fields differ");
static_assert(sizeof(otaforge_device_settings_t::wifi_ssid) == sizeof(otaforge_config_block_t::wifi_ssid),
              "SSID fields differ");
static_assert(sizeof(otaforge_device_settings_t::wifi_password) == sizeof(otaforge_config_block_t::wifi_password),
              "password fields differ");

// Room for "https://" host ":" port path "/" channel "?name=" and the name percent-encoded.
static const size_t kUrlCap = sizeof(OtaSettings::host) + sizeof(OtaSettings::path) + sizeof(OtaSettings::channel) +
                              3 * sizeof(OtaSettings::deviceName) + 32;

struct OtaScheduler {
  bool wifiUp;
  bool sntpStarted;
  bool clockSettled;
  bool clockFromSntp;
  uint32_t clockWaitStartMs;
  uint32_t lastWifiLogMs;
  uint32_t lastCheckMs;  // a check is due when millis() - lastCheckMs >= waitMs
  uint32_t waitMs;
  uint32_t failures;     // consecutive failed checks, for the retry backoff
};

static OtaSettings settings;
static OtaScheduler sched;
static int lastProgressDecile = -1;

// ---------------------------------------------------------------------------------------------
// Settings

static void copyText(char *dst, size_t cap, const char *src) {
  const size_t n = strnlen(src, cap - 1);
  memcpy(dst, src, n);
  dst[n] = '\0';
}
#define OTA_SET_TEXT(dst, src) copyText((dst), sizeof(dst), (src))

static uint16_t clampBuffer(uint32_t v) {
  if (v < 512) return 512;
  if (v > 16384) return 16384;
  return (uint16_t)v;
}

static uint32_t clampPoll(uint32_t s) {
  if (s < kMinPollSeconds) return kMinPollSeconds;
  if (s > kMaxPollSeconds) return kMaxPollSeconds;
  return s;
}

// The block's address, hidden from the optimiser: the compiler sees the initialiser above (all
// zeros, flags 0) and would otherwise fold every read into those constants, but OTA Forge
// changes the bytes in the .bin after the build.
static const otaforge_config_block_t *configBlockInFlash() {
  const otaforge_config_block_t *p = &OTAFORGE_CONFIG;
  asm volatile("" : "+r"(p));
  return p;
}

// The device name as a DHCP host name and as stored: letters, digits and '-' (anything else
// becomes '-'), at most cap - 1 characters.
static void sanitizeName(char *out, size_t cap, const char *in) {
  size_t n = 0;
  for (const char *c = in; *c != '\0' && n + 1 < cap; c++) {
    const char ch = *c;
    const bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '-';
    out[n++] = ok ? ch : '-';
  }
  out[n] = '\0';
}

// ---------------------------------------------------------------------------------------------
// Device settings: this board's own name and Wi-Fi, kept outside the app image so that no update
// replaces them (an image is the same for every board on a channel, and may be downloaded by
// anyone who asks the update endpoint).
//
// They live in the flash sector the core reserves for the EEPROM library (_EEPROM_start, 20 KB
// below the end of the flash size the sketch is built for). tools/boards.txt.py lays the end of
// flash out as sketch | OTA space | filesystem | EEPROM | RF calibration | SDK Wi-Fi settings, and
// nothing but the EEPROM library writes that sector:
//   - an update (Updater::begin, U_FLASH) is written below _FS_start and copied by eboot to the
//     sketch's own place at 0;
//   - a filesystem update (U_FS) writes only _FS_start.._FS_end;
//   - the SDK writes only its RF calibration sector and its three Wi-Fi settings sectors above it
//     (the core only lets it *read* its PHY init data "at" the EEPROM address, served from the
//     image: core_esp8266_phy.cpp).
// So this sketch must not use the EEPROM library as well: EEPROM.commit() would replace the
// record. (The other way round, data there without the record's magic is never overwritten.)
//
// The record is OTA Forge's (otaforge_device_settings.h, generated from the app's
// device_settings.rs): 2 KB at the start of the sector with a CRC-32, the rest of the sector
// erased. `otaforge provision` and `otaforge flash --device-name/--wifi-ssid` write it over USB.

static const uint32_t kFlashSectorSize = 4096;  // SPI_FLASH_SEC_SIZE

// Offset of the EEPROM sector in flash (the linker gives its address in the flash mapping that
// starts at 0x40200000, as libraries/EEPROM/EEPROM.cpp computes its sector).
#if defined(FLASH_MAP_SUPPORT) && FLASH_MAP_SUPPORT
// "Mapping defined by Hardware and Sketch" (core 3.1+): flash_hal.h, which Arduino.h includes in
// this mode, looks the address up for the chip's real size; the linker script has no symbol.
static uint32_t deviceAreaOffset() {
  return (uint32_t)EEPROM_start - 0x40200000UL;
}
#else
// eagle.flash.*.ld: PROVIDE ( _EEPROM_start = ... ), declared like core 3.0.x's EEPROM.cpp does.
extern "C" uint32_t _EEPROM_start;
static uint32_t deviceAreaOffset() {
  return (uint32_t)(uintptr_t)&_EEPROM_start - 0x40200000UL;
}
#endif

static_assert(sizeof(otaforge_device_settings_t) % 4 == 0, "flash is read and written in 4-byte words");

static OtaAreaState classifyDeviceRecord(const otaforge_device_settings_t *rec) {
  if (otaforge_device_settings_valid(rec)) return AREA_VALID;
  const uint8_t *bytes = (const uint8_t *)rec;
  bool blank = true;
  for (size_t i = 0; i < sizeof(otaforge_device_settings_t); i++) {
    if (bytes[i] != 0xFF) {
      blank = false;
      break;
    }
  }
  if (blank) return AREA_BLANK;
  if (memcmp(rec->magic, OTAFORGE_DEVICE_MAGIC, sizeof(rec->magic)) != 0) return AREA_FOREIGN;
  const uint16_t format = rec->format;
  return format == OTAFORGE_DEVICE_FORMAT ? AREA_DAMAGED : AREA_OTHER_FORMAT;
}

// A sealed record holding `name` and, when `ssid` is not empty, that Wi-Fi network: byte for byte
// what OTA Forge's DeviceSettings::encode() writes (a test compiles this function on the host and
// compares). Every byte not set here is zero.
static void fillDeviceRecord(otaforge_device_settings_t *rec, const char *name, const char *ssid,
                             const char *password) {
  memset(rec, 0, sizeof(otaforge_device_settings_t));
  memcpy(rec->device_name, name, strnlen(name, sizeof(rec->device_name) - 1));
  if (ssid[0] != '\0') {
    memcpy(rec->wifi_ssid, ssid, strnlen(ssid, sizeof(rec->wifi_ssid) - 1));
    memcpy(rec->wifi_password, password, strnlen(password, sizeof(rec->wifi_password) - 1));
    rec->flags = OTAFORGE_DEVICE_FLAG_WIFI;
  }
  otaforge_device_settings_seal(rec);
}

// Reads the record into `rec` (RAM, 4-byte aligned) and says what the sector holds.
static OtaAreaState readDeviceRecord(otaforge_device_settings_t *rec) {
  if (!ESP.flashRead(deviceAreaOffset(), (uint8_t *)rec, sizeof(otaforge_device_settings_t))) return AREA_READ_FAILED;
  return classifyDeviceRecord(rec);
}

// Images baked before device settings had an area of their own carry the board's name and Wi-Fi
// in the config block. The next image (baked without them) would lose them, so the first boot of
// this firmware copies them into the device settings area, once: after that the area holds a
// record and wins. `rec` is the 2 KB buffer the area was read into; the name is stored in its
// host-name form (letters, digits, '-'), the only form the record takes.
static void moveBakedDeviceSettings(otaforge_device_settings_t *rec) {
  if (settings.areaState == AREA_FOREIGN || settings.areaState == AREA_OTHER_FORMAT) {
    settings.migration = MIGRATION_REFUSED;
    OTA_LOG("device settings: this image's config block names the board \"%s\" / Wi-Fi \"%s\", but the EEPROM sector holds %s, which is not overwritten; using the image's values (otaforge provision writes the board's own settings)",
            settings.nameSource == FROM_CONFIG_BLOCK ? settings.deviceName : "",
            settings.wifiSource == FROM_CONFIG_BLOCK ? settings.wifiSsid : "",
            settings.areaState == AREA_FOREIGN ? "other data (does this sketch use the EEPROM library?)"
                                               : "a record of another format (written by a newer OTA Forge)");
    return;
  }
  char name[sizeof(settings.deviceName)];
  if (settings.nameSource == FROM_CONFIG_BLOCK) {
    sanitizeName(name, sizeof(name), settings.deviceName);
  } else {
    name[0] = '\0';
  }
  const bool wifi = settings.wifiSource == FROM_CONFIG_BLOCK;
  OTA_LOG("device settings: moving the name \"%s\"%s%s%s from this image's config block into the device settings area (EEPROM sector at 0x%06lx), so updates keep them",
          name, wifi ? " and the Wi-Fi network \"" : "", wifi ? settings.wifiSsid : "", wifi ? "\"" : "",
          (unsigned long)deviceAreaOffset());
  fillDeviceRecord(rec, name, wifi ? settings.wifiSsid : "", wifi ? settings.wifiPassword : "");
  const uint32_t offset = deviceAreaOffset();
  if (!ESP.flashEraseSector(offset / kFlashSectorSize)) {
    settings.migration = MIGRATION_FAILED;
    OTA_LOG("device settings: erasing the sector failed; the image's values stay in use and the move is tried again at the next boot");
    return;
  }
  // The buffer comes from malloc (4-byte aligned) and is 2048 bytes, so the core writes it word
  // by word without a bounce buffer.
  if (!ESP.flashWrite(offset, (const uint8_t *)rec, sizeof(otaforge_device_settings_t))) {
    settings.migration = MIGRATION_FAILED;
    OTA_LOG("device settings: writing the record failed; the image's values stay in use and the move is tried again at the next boot");
    return;
  }
  memset(rec, 0, sizeof(otaforge_device_settings_t));
  if (readDeviceRecord(rec) != AREA_VALID) {
    settings.migration = MIGRATION_FAILED;
    OTA_LOG("device settings: the record did not read back intact; the move is tried again at the next boot");
    return;
  }
  settings.migration = MIGRATION_DONE;
  if (settings.nameSource == FROM_CONFIG_BLOCK) OTA_SET_TEXT(settings.deviceName, name);
  OTA_LOG("device settings: moved; the device settings area now holds them");
}

// Reads the device settings area: its name and Wi-Fi override the image's; when it holds no
// record and the config block carries device settings, they are moved into it.
static void loadDeviceSettings() {
  // 2 KB: from the heap, not the stack, and only while the record is read.
  otaforge_device_settings_t *rec = (otaforge_device_settings_t *)malloc(sizeof(otaforge_device_settings_t));
  if (rec == nullptr) {
    settings.areaState = AREA_NO_MEMORY;
    return;
  }
  settings.areaState = readDeviceRecord(rec);
  if (settings.areaState == AREA_VALID) {
    const uint32_t flags = rec->flags;
    if (rec->device_name[0] != '\0') {
      OTA_SET_TEXT(settings.deviceName, rec->device_name);
      settings.nameSource = FROM_DEVICE_AREA;
    }
    if ((flags & OTAFORGE_DEVICE_FLAG_WIFI) != 0 && rec->wifi_ssid[0] != '\0') {
      OTA_SET_TEXT(settings.wifiSsid, rec->wifi_ssid);
      OTA_SET_TEXT(settings.wifiPassword, rec->wifi_password);
      settings.wifiSource = FROM_DEVICE_AREA;
    }
  } else if (settings.areaState != AREA_READ_FAILED &&
             (settings.nameSource == FROM_CONFIG_BLOCK || settings.wifiSource == FROM_CONFIG_BLOCK)) {
    moveBakedDeviceSettings(rec);
  }
  free(rec);
}

static void loadSettings() {
  // Compiled-in defaults (ota_config.h).
  OTA_SET_TEXT(settings.host, OTA_HOST);
  settings.port = OTA_PORT;
  OTA_SET_TEXT(settings.path, OTA_PATH);
  OTA_SET_TEXT(settings.channel, OTA_CHANNEL);
  OTA_SET_TEXT(settings.version, OTA_VERSION);
  OTA_SET_TEXT(settings.deviceName, OTA_DEVICE_NAME);
  OTA_SET_TEXT(settings.wifiSsid, OTA_WIFI_SSID);
  OTA_SET_TEXT(settings.wifiPassword, OTA_WIFI_PASSWORD);
  settings.caPem = FPSTR(OTA_CA_PEM);
  settings.pollIntervalS = clampPoll(OTA_POLL_INTERVAL_S);
  settings.tlsRxBuffer = clampBuffer(OTA_TLS_RX_BUFFER);
  settings.tlsTxBuffer = clampBuffer(OTA_TLS_TX_BUFFER);
  settings.bakedAt = 0;
  settings.clockFloor = OTA_BUILD_TIME;
  settings.source = SOURCE_COMPILED;
  settings.nameSource = settings.deviceName[0] != '\0' ? FROM_OTA_CONFIG : FROM_NOWHERE;
  settings.wifiSource = settings.wifiSsid[0] != '\0' ? FROM_OTA_CONFIG : FROM_NOWHERE;
  settings.migration = MIGRATION_NONE;

  // The block lives in flash, which the ESP8266 reads 4 bytes at a time: copy it to RAM with
  // memcpy_P, take what is needed, and give the 3 KB back.
  otaforge_config_block_t *block = (otaforge_config_block_t *)malloc(sizeof(otaforge_config_block_t));
  if (block == nullptr) {
    settings.source = SOURCE_NO_MEMORY;
  } else {
    memcpy_P(block, configBlockInFlash(), sizeof(otaforge_config_block_t));
    if (otaforge_config_is_baked(block)) {
      // Every text field is NUL-terminated inside its array (the CRC vouches for the bytes; this
      // only makes sure a string never runs into the next field).
      block->path[sizeof(block->path) - 1] = '\0';
      block->channel[sizeof(block->channel) - 1] = '\0';
      block->version[sizeof(block->version) - 1] = '\0';
      block->device_name[sizeof(block->device_name) - 1] = '\0';
      block->wifi_ssid[sizeof(block->wifi_ssid) - 1] = '\0';
      block->wifi_password[sizeof(block->wifi_password) - 1] = '\0';

      OTA_SET_TEXT(settings.host, block->host);
      settings.port = block->port;
      OTA_SET_TEXT(settings.path, block->path);
      OTA_SET_TEXT(settings.channel, block->channel);
      if (block->version[0] != '\0') OTA_SET_TEXT(settings.version, block->version);
      // A device name or Wi-Fi in the block comes from an image baked before device settings had
      // an area of their own; loadDeviceSettings() moves them there.
      if (block->device_name[0] != '\0') {
        OTA_SET_TEXT(settings.deviceName, block->device_name);
        settings.nameSource = FROM_CONFIG_BLOCK;
      }
      // An empty SSID in the block keeps the network the firmware was built with.
      if (block->wifi_ssid[0] != '\0') {
        OTA_SET_TEXT(settings.wifiSsid, block->wifi_ssid);
        OTA_SET_TEXT(settings.wifiPassword, block->wifi_password);
        settings.wifiSource = FROM_CONFIG_BLOCK;
      }
      settings.caPem = block->ca_pem;
      // Packed fields are copied into locals before use (no references into the packed struct).
      const uint32_t poll = block->poll_interval_s;
      const uint16_t rx = block->tls_rx_buffer;
      const uint16_t tx = block->tls_tx_buffer;
      const uint32_t bakedAt = block->baked_at;
      settings.pollIntervalS = clampPoll(poll);
      if (rx != 0) settings.tlsRxBuffer = clampBuffer(rx);
      if (tx != 0) settings.tlsTxBuffer = clampBuffer(tx);
      settings.bakedAt = bakedAt;
      if (bakedAt > settings.clockFloor) settings.clockFloor = bakedAt;
      settings.source = SOURCE_BAKED;
    } else if ((block->flags & OTAFORGE_CONFIG_FLAG_BAKED) != 0) {
      settings.source = SOURCE_BLOCK_DAMAGED;
    }
    free(block);
  }
  if (settings.clockFloor < kMinPlausibleTime) settings.clockFloor = kMinPlausibleTime;

  // The board's own name and Wi-Fi win over the image's.
  loadDeviceSettings();
}

// "esp8266-a1b2c3" from the last three bytes of the MAC, when no device name was configured.
static void defaultDeviceName() {
  uint8_t mac[6];
  WiFi.macAddress(mac);
  snprintf(settings.deviceName, sizeof(settings.deviceName), "esp8266-%02x%02x%02x", mac[3], mac[4], mac[5]);
  settings.nameSource = FROM_MAC;
}

// ---------------------------------------------------------------------------------------------
// Time. BearSSL checks the server certificate's dates. Without a clock (1970) every certificate
// is "not yet valid" (BearSSL error 54), so the device always validates against the best time it
// knows: SNTP time when it has it, and never earlier than the bake or build time.

static void formatUtc(uint32_t t, char *out, size_t cap) {
  const time_t tt = (time_t)t;
  struct tm parts;
  gmtime_r(&tt, &parts);
  if (strftime(out, cap, "%Y-%m-%d %H:%M:%S UTC", &parts) == 0 && cap > 0) out[0] = '\0';
}

static bool clockLooksSet() {
  return time(nullptr) >= (time_t)settings.clockFloor;
}

static time_t bestKnownTime() {
  const time_t now = time(nullptr);
  const time_t floor = (time_t)settings.clockFloor;
  return now > floor ? now : floor;
}

// ---------------------------------------------------------------------------------------------
// Update

// Appends `text` to the NUL-terminated `out` (capacity `cap`), percent-encoding every byte but
// letters, digits and "-._~" (RFC 3986's unreserved characters). Device names hold only letters,
// digits and '-', so this normally copies; anything else still makes a valid query.
static bool appendPercentEncoded(char *out, size_t cap, const char *text) {
  static const char kHex[] = "0123456789ABCDEF";
  size_t n = strlen(out);
  for (const unsigned char *p = (const unsigned char *)text; *p != '\0'; p++) {
    const unsigned char c = *p;
    const bool plain = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
                       c == '.' || c == '_' || c == '~';
    if (plain) {
      if (n + 1 >= cap) return false;
      out[n++] = (char)c;
    } else {
      if (n + 3 >= cap) return false;
      out[n++] = '%';
      out[n++] = kHex[c >> 4];
      out[n++] = kHex[c & 0x0F];
    }
  }
  out[n] = '\0';
  return true;
}

// https://HOST:PORT/PATH[/CHANNEL]?name=NAME. The cores' updaters send no headers of the sketch's
// own, but pass the URL's path and query through unchanged (HTTPClient::begin keeps everything
// after the host as the request URI), so the query is how the server learns the board's name.
static bool buildUpdateUrl(char *out, size_t cap) {
  int n;
  if (settings.channel[0] != '\0') {
    n = snprintf(out, cap, "https://%s:%u%s/%s", settings.host, (unsigned)settings.port, settings.path, settings.channel);
  } else {
    n = snprintf(out, cap, "https://%s:%u%s", settings.host, (unsigned)settings.port, settings.path);
  }
  if (n <= 0 || (size_t)n >= cap) return false;
  if (settings.deviceName[0] == '\0') return true;
  const size_t used = (size_t)n;
  const int q = snprintf(out + used, cap - used, "%cname=", strchr(out, '?') != nullptr ? '&' : '?');
  if (q <= 0 || (size_t)q >= cap - used) return false;
  return appendPercentEncoded(out, cap, settings.deviceName);
}

static void explainUpdateError(int err) {
  switch (err) {
    case -1:
      OTA_LOG("  = no connection (DNS, TCP or TLS): check the host, the port and that the server runs");
      break;
    case -100:
      OTA_LOG("  = the new image does not fit the free flash space");
      break;
    case -101:
      OTA_LOG("  = the server sent no Content-Length");
      break;
    case -102:
      OTA_LOG("  = the server has no firmware for this path or channel (404)");
      break;
    case -103:
      OTA_LOG("  = the server refused this device (403)");
      break;
    case -104:
      OTA_LOG("  = the server answered with an HTTP status the updater does not handle");
      break;
    case -105:
      OTA_LOG("  = the server's x-MD5 header is malformed");
      break;
    case -106:
      OTA_LOG("  = the download is not an ESP8266 image");
      break;
    case -107:
      OTA_LOG("  = the image was built for a larger flash chip than this one");
      break;
    case -108:
      OTA_LOG("  = the server wants authentication (401)");
      break;
    case 6:
      OTA_LOG("  = the download stalled; the old firmware keeps running");
      break;
    case 7:
      OTA_LOG("  = the download's MD5 does not match the server's x-MD5");
      break;
    case 12:
      OTA_LOG("  = the image's signature did not verify");
      break;
    default:
      break;
  }
}

// BearSSL's codes for the failures a misconfigured device actually meets, in plain words.
static void explainBearSslError(int err) {
  switch (err) {
    case 54:
      OTA_LOG("  = the server certificate is expired or not yet valid for this device's clock: let the device reach SNTP (UDP 123), or check the server's certificate dates");
      break;
    case 56:
      OTA_LOG("  = the server certificate does not name \"%s\": renew it for this host (otaforge cert renew --host %s)", settings.host, settings.host);
      break;
    case 62:
      OTA_LOG("  = the server certificate is not signed by the CA in this firmware (another OTA Forge project, or the CA was replaced): bake this project's CA");
      break;
    case 6:
      OTA_LOG("  = a TLS record was larger than the %u-byte receive buffer: raise tls_rx_buffer (16384 works with every server)", (unsigned)settings.tlsRxBuffer);
      break;
    case -1000:
      OTA_LOG("  = not enough heap for the TLS buffers: lower tls_rx_buffer (the OTA Forge server honours 512)");
      break;
    default:
      break;
  }
}

static void onUpdateStart() {
  lastProgressDecile = -1;
  OTA_LOG("update: a new image is available; downloading and writing it to flash");
}

static void onUpdateEnd() {
  OTA_LOG("update: download complete; the device reboots into the new firmware");
}

static void onUpdateProgress(int done, int total) {
  if (total <= 0) return;
  const int decile = (int)((int64_t)done * 10 / total);
  if (decile != lastProgressDecile) {
    lastProgressDecile = decile;
    OTA_LOG("update: %d%% (%d of %d bytes)", decile * 10, done, total);
  }
}

static void onUpdateError(int err) {
  OTA_LOG("update: error %d: %s", err, ESPhttpUpdate.getLastErrorString().c_str());
}

// One check: true when the server answered (up to date, or an update was installed).
static bool checkForUpdate() {
  char url[kUrlCap];
  if (!buildUpdateUrl(url, sizeof(url))) {
    OTA_LOG("check: the update URL does not fit %u bytes", (unsigned)sizeof(url));
    return false;
  }
  const time_t x509Time = bestKnownTime();
  char when[32];
  formatUtc((uint32_t)x509Time, when, sizeof(when));
  OTA_LOG("check: GET %s as version %s (certificate time %s%s; heap %lu free, largest block %lu)", url,
          settings.version, when, sched.clockFromSntp ? "" : ", no SNTP yet", (unsigned long)ESP.getFreeHeap(),
          (unsigned long)ESP.getMaxFreeBlockSize());

  bool ok = false;
  {
    // The client and the trust anchor exist only during the check (about 20 KB of heap with a
    // 16 KB receive buffer), and are freed when this block ends: the client first (declared
    // last), then the anchor it points to.
    BearSSL::X509List trustAnchor(settings.caPem.c_str());
    if (trustAnchor.getCount() == 0) {
      OTA_LOG("check: the CA in the settings is not a PEM certificate; cannot verify the server");
      return false;
    }
    BearSSL::WiFiClientSecure client;
    // Trust our private CA (basicConstraints CA:TRUE): any server certificate it signed is
    // accepted, so renewing the server certificate needs no reflash.
    client.setTrustAnchors(&trustAnchor);
    // Always validate against the best known time (see bestKnownTime()).
    client.setX509Time(x509Time);
    // BearSSL's receive buffer must hold a whole TLS record: 16 KB with an ordinary server. The
    // client advertises max_fragment_length (RFC 6066) from these sizes; the OTA Forge server
    // honours it and sends records that fit, so 512/512 works against it and saves ~16 KB of heap.
    client.setBufferSizes(settings.tlsRxBuffer, settings.tlsTxBuffer);
    // The handshake needs no timeout of ours: BearSSL::WiFiClientSecure has no setter for one,
    // and bounds it itself (WiFiClientSecureCtx::_connectSSL() resets its timeout to 15 s before
    // the handshake, whatever setTimeout() said; ESPhttpUpdate's HTTP client gives reads 8 s).

    const t_httpUpdate_return result = ESPhttpUpdate.update(client, url, settings.version);
    switch (result) {
      case HTTP_UPDATE_NO_UPDATES:
        OTA_LOG("check: up to date (the server has nothing newer for version %s)", settings.version);
        ok = true;
        break;
      case HTTP_UPDATE_OK:
        // rebootOnUpdate(true) normally restarts inside update(); this is the fallback.
        OTA_LOG("update: installed; restarting");
        ok = true;
        Serial.flush();
        ESP.restart();
        break;
      case HTTP_UPDATE_FAILED:
      default: {
        const int err = ESPhttpUpdate.getLastError();
        OTA_LOG("check failed: error %d: %s", err, ESPhttpUpdate.getLastErrorString().c_str());
        explainUpdateError(err);
        char sslText[112];
        const int sslErr = client.getLastSSLError(sslText, sizeof(sslText));
        if (sslErr != 0) {
          OTA_LOG("TLS error %d: %s", sslErr, sslText);
          explainBearSslError(sslErr);
        }
        break;
      }
    }
  }
  OTA_LOG("check: done; heap %lu free", (unsigned long)ESP.getFreeHeap());
  return ok;
}

// ---------------------------------------------------------------------------------------------
// Scheduling: checks every poll interval +-10% (so a fleet that booted together spreads out),
// and after a failure retries sooner (30 s, doubling, never later than the interval).

static uint32_t withJitter(uint32_t ms) {
  const uint32_t span = ms / 10;
  const uint32_t offset = (uint32_t)random(0, (long)(2 * span + 1));
  return ms - span + offset;
}

static void scheduleNextCheck(bool lastOk) {
  const uint32_t intervalMs = settings.pollIntervalS * 1000UL;
  uint32_t waitMs = intervalMs;
  if (lastOk) {
    sched.failures = 0;
  } else {
    sched.failures++;
    const uint32_t shift = sched.failures - 1 < 6 ? sched.failures - 1 : 6;
    const uint32_t backoffMs = 30000UL << shift;
    if (backoffMs < waitMs) waitMs = backoffMs;
  }
  sched.waitMs = withJitter(waitMs);
  sched.lastCheckMs = millis();
  OTA_LOG("next check in %lu s", (unsigned long)(sched.waitMs / 1000));
}

static void startClock(uint32_t now) {
  // UTC: certificates and the server only care about absolute time.
  configTime(0, 0, "pool.ntp.org", "time.nist.gov", "time.google.com");
  sched.sntpStarted = true;
  sched.clockWaitStartMs = now;
  OTA_LOG("clock: asking SNTP (waiting up to %lu s)", (unsigned long)(OTA_SNTP_WAIT_MS / 1000));
}

static void settleClock(uint32_t now) {
  char when[32];
  if (clockLooksSet()) {
    sched.clockFromSntp = true;
    formatUtc((uint32_t)time(nullptr), when, sizeof(when));
    OTA_LOG("clock: %s (SNTP)", when);
  } else {
    sched.clockFromSntp = false;
    formatUtc(settings.clockFloor, when, sizeof(when));
    OTA_LOG("clock: no SNTP answer in %lu s; certificates are checked against %s (the %s time) until SNTP answers",
            (unsigned long)(OTA_SNTP_WAIT_MS / 1000), when, settings.bakedAt != 0 ? "bake" : "build");
  }
  sched.clockSettled = true;
  // The first check comes right away, a few random seconds apart across a fleet.
  sched.lastCheckMs = now;
  sched.waitMs = (uint32_t)random(1000, 5000);
}

static void runScheduler() {
  const uint32_t now = millis();
  const bool wifiUp = WiFi.status() == WL_CONNECTED;
  if (wifiUp != sched.wifiUp) {
    sched.wifiUp = wifiUp;
    sched.lastWifiLogMs = now;
    if (wifiUp) {
      OTA_LOG("Wi-Fi: connected, IP %s, RSSI %d dBm", WiFi.localIP().toString().c_str(), (int)WiFi.RSSI());
      if (!sched.sntpStarted) startClock(now);
    } else {
      OTA_LOG("Wi-Fi: disconnected; reconnecting");
    }
  }
  if (!wifiUp) {
    if (now - sched.lastWifiLogMs >= 30000UL) {
      sched.lastWifiLogMs = now;
      OTA_LOG("Wi-Fi: still connecting to \"%s\" (status %d)", settings.wifiSsid, (int)WiFi.status());
    }
    return;
  }
  if (!sched.clockSettled) {
    if (!clockLooksSet() && now - sched.clockWaitStartMs < OTA_SNTP_WAIT_MS) return;
    settleClock(now);
  }
  if (!sched.clockFromSntp && clockLooksSet()) {
    sched.clockFromSntp = true;
    OTA_LOG("clock: SNTP answered");
  }
  if (now - sched.lastCheckMs >= sched.waitMs) {
    const bool ok = checkForUpdate();
    scheduleNextCheck(ok);
  }
}

// ---------------------------------------------------------------------------------------------

static const char *valueSourceText(OtaValueSource source) {
  switch (source) {
    case FROM_DEVICE_AREA:
      return "from the device settings area";
    case FROM_CONFIG_BLOCK:
      return settings.migration == MIGRATION_DONE ? "from the config block, now kept in the device settings area"
                                                  : "from the config block";
    case FROM_OTA_CONFIG:
      return "from ota_config.h";
    case FROM_MAC:
      return "derived from the MAC";
    case FROM_NOWHERE:
    default:
      return "none configured";
  }
}

static void printDeviceArea() {
  const unsigned long at = (unsigned long)deviceAreaOffset();
  switch (settings.areaState) {
    case AREA_VALID:
      OTA_LOG("device settings: read from the device settings area (EEPROM sector at 0x%06lx)", at);
      break;
    case AREA_BLANK:
      if (settings.migration != MIGRATION_DONE) {
        OTA_LOG("device settings: the device settings area (EEPROM sector at 0x%06lx) is blank; give this board its name and Wi-Fi with: otaforge provision --port PORT --device-name NAME --wifi-ssid SSID",
                at);
      }
      break;
    case AREA_DAMAGED:
      OTA_LOG("device settings: the device settings area (EEPROM sector at 0x%06lx) holds a damaged record (length or CRC), so it is ignored; provision the board again",
              at);
      break;
    case AREA_OTHER_FORMAT:
      OTA_LOG("device settings: the device settings area (EEPROM sector at 0x%06lx) holds a record of another format (written by a newer OTA Forge), so it is ignored",
              at);
      break;
    case AREA_FOREIGN:
      OTA_LOG("device settings: the EEPROM sector at 0x%06lx holds other data, so it is ignored (this sketch must not use the EEPROM library); otaforge provision replaces it",
              at);
      break;
    case AREA_READ_FAILED:
      OTA_LOG("device settings: reading the EEPROM sector at 0x%06lx failed; using the image's values", at);
      break;
    case AREA_NO_MEMORY:
    default:
      OTA_LOG("device settings: no 2 KB of heap to read the device settings area; using the image's values");
      break;
  }
}

static void printBanner() {
  uint8_t mac[6];
  WiFi.macAddress(mac);
  OTA_LOG("OTA Forge firmware %s on \"%s\"", settings.version, settings.deviceName);
  OTA_LOG("chip ESP8266 id %06lx, MAC %02X:%02X:%02X:%02X:%02X:%02X, reset reason: %s, heap %lu free",
          (unsigned long)ESP.getChipId(), mac[0], mac[1], mac[2], mac[3], mac[4], mac[5],
          ESP.getResetReason().c_str(), (unsigned long)ESP.getFreeHeap());
  char when[32];
  switch (settings.source) {
    case SOURCE_BAKED:
      formatUtc(settings.bakedAt, when, sizeof(when));
      OTA_LOG("settings: baked into this image by OTA Forge on %s (config block)", when);
      break;
    case SOURCE_BLOCK_DAMAGED:
      OTA_LOG("settings: compiled in (ota_config.h); the config block is marked baked but is damaged (CRC or format), so it is ignored");
      break;
    case SOURCE_NO_MEMORY:
      OTA_LOG("settings: compiled in (ota_config.h); no heap to read the config block");
      break;
    case SOURCE_COMPILED:
    default:
      OTA_LOG("settings: compiled in (ota_config.h); the config block is not baked");
      break;
  }
  char url[kUrlCap];
  if (buildUpdateUrl(url, sizeof(url))) {
    OTA_LOG("update URL %s, checked every %lu s (+-10%%)", url, (unsigned long)settings.pollIntervalS);
  }
  OTA_LOG("TLS: trusting the OTA Forge CA (%u bytes of PEM); BearSSL buffers rx %u / tx %u bytes",
          (unsigned)settings.caPem.length(), (unsigned)settings.tlsRxBuffer, (unsigned)settings.tlsTxBuffer);
  printDeviceArea();
  OTA_LOG("device name: \"%s\" (%s)", settings.deviceName, valueSourceText(settings.nameSource));
  OTA_LOG("Wi-Fi: \"%s\" (%s)", settings.wifiSsid, valueSourceText(settings.wifiSource));
  formatUtc(settings.clockFloor, when, sizeof(when));
  OTA_LOG("clock: SNTP time, never earlier than %s", when);
}

void setup() {
  Serial.begin(OTA_SERIAL_BAUD);
  Serial.println();
  loadSettings();

  // Do not rewrite the SDK's copy of the credentials in flash at every boot.
  WiFi.persistent(false);
  WiFi.mode(WIFI_STA);
  if (settings.deviceName[0] == '\0') defaultDeviceName();
  // DHCP host names take letters, digits and '-', at most 32 characters.
  char hostname[33];
  sanitizeName(hostname, sizeof(hostname), settings.deviceName);
  if (hostname[0] != '\0') WiFi.hostname(hostname);
  printBanner();

  ESPhttpUpdate.rebootOnUpdate(true);
  ESPhttpUpdate.onStart(onUpdateStart);
  ESPhttpUpdate.onEnd(onUpdateEnd);
  ESPhttpUpdate.onProgress(onUpdateProgress);
  ESPhttpUpdate.onError(onUpdateError);
  const int ledPin = OTA_LED_PIN;
  if (ledPin >= 0) ESPhttpUpdate.setLedPin(ledPin, OTA_LED_ON);

  WiFi.setAutoReconnect(true);
  if (settings.wifiSsid[0] != '\0') {
    WiFi.begin(settings.wifiSsid, settings.wifiPassword);
  } else {
    OTA_LOG("Wi-Fi: no network configured; trying the one the SDK remembers");
    WiFi.begin();
  }
  sched.lastWifiLogMs = millis();
}

void loop() {
  // Returns at once unless a check is due; the core services Wi-Fi between calls.
  runScheduler();
}
