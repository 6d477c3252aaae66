/*
 * OTA Forge reference firmware for the ESP32 family (arduino-esp32 3.x; ESP32, -S2, -S3, -C3, -C6).
 *
 * The device joins Wi-Fi, sets its clock, then asks the OTA Forge update server over HTTPS whether
 * there is newer firmware, at a fixed interval with random jitter. When there is, it downloads
 * the new image into the other OTA partition and reboots into it.
 * Security: the server certificate must be signed by the private CA baked into this firmware
 * (a trust anchor, not a pinned leaf), so the server certificate can be renewed without
 * reflashing any device.
 *
 * Settings come from three places:
 *   1. ota_config.h: compiled-in defaults, written by `otaforge bake --sketch <this folder>`.
 *   2. The config block (OTAFORGE_CONFIG below): 3 KB reserved in flash. `otaforge bake --image`
 *      finds it by its magic in a built .bin and writes the fleet's settings into it (server,
 *      path, channel, CA, poll interval...; fixing the image's checksum and SHA-256), so a
 *      prebuilt image can be given to another server without a compiler. Baked values override
 *      ota_config.h.
 *   3. The device settings: this board's own name and Wi-Fi, in the NVS namespace "otaforge"
 *      (the nvs partition, which no OTA update writes). Written by `otaforge provision` /
 *      `otaforge flash --device-name ... --wifi-ssid ...`. They override the image's, so every
 *      update keeps the board's name and network.
 *
 * A new image is on trial until it has checked in with the update server: if it cannot within
 * OTA_VALIDATE_AFTER_S, or resets before, the bootloader goes back to the previous image.
 *
 * Nothing here blocks for long outside the update itself: loop() runs a small scheduler.
 * Use a partition scheme with two OTA app slots (the default one has them).
 */

#include <Arduino.h>

#if !defined(ESP32) && !defined(ARDUINO_ARCH_ESP32)
#error "otaforge_esp32 is for ESP32 boards (FQBN esp32:esp32:...). For ESP8266 boards build device-firmware/esp8266/otaforge_esp8266 instead."
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

#include <WiFi.h>
#include <WiFiClientSecure.h>
#include <HTTPUpdate.h>
#include <Preferences.h>
#include <esp_ota_ops.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
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

// A new image that has not checked in with the update server this many seconds after it first
// booted is marked invalid, and the device reboots into the previous one. A fleet setting,
// compiled in (ota_config.h may set it; it is not in the config block).
#ifndef OTA_VALIDATE_AFTER_S
#define OTA_VALIDATE_AFTER_S 600
#endif
#if OTA_VALIDATE_AFTER_S < 60 || OTA_VALIDATE_AFTER_S > 86400
#error "OTA_VALIDATE_AFTER_S must be 60..86400 seconds: long enough for Wi-Fi, SNTP and a few check retries"
#endif

// Seconds a TLS handshake may take before the check gives up (NetworkClientSecure's default is
// 120 s, all of it inside loop()).
#ifndef OTA_TLS_HANDSHAKE_TIMEOUT_S
#define OTA_TLS_HANDSHAKE_TIMEOUT_S 30
#endif

// A board's name and Wi-Fi belong in its device settings (otaforge provision); ota_config.h may
// still carry them as a fallback for boards that have none, or leave them out.
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
#ifndef OTA_LED_PIN
#ifdef LED_BUILTIN
#define OTA_LED_PIN LED_BUILTIN
#else
#define OTA_LED_PIN -1
#endif
#endif
#ifndef OTA_LED_ON
#define OTA_LED_ON HIGH
#endif

#define OTA_LOG(fmt, ...) Serial.printf("[otaforge] " fmt "\n", ##__VA_ARGS__)

// Seconds between checks are kept in this range whatever the settings say.
static const uint32_t kMinPollSeconds = 10;
static const uint32_t kMaxPollSeconds = 30UL * 24 * 3600;
// The clock is never trusted below this (2024-01-01), even with an empty OTA_BUILD_TIME.
static const uint32_t kMinPlausibleTime = 1704067200UL;

// ---------------------------------------------------------------------------------------------
// The config block. OTA Forge searches a built image for the magic and writes the settings and a
// CRC into it; as compiled it carries only the magic, format and length (flags = 0: not baked),
// exactly what config_block::unbaked_block() in the app produces. On the ESP32, const data lives
// in flash (the DROM segment, mapped into the address space), so no PROGMEM is needed; `used`
// and the reference from loadSettings() keep the linker from dropping it.
static const otaforge_config_block_t OTAFORGE_CONFIG __attribute__((used, aligned(4))) = {
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
  FROM_DEVICE_AREA,   // this board's device settings (NVS)
  FROM_MAC,           // derived from the MAC (names only)
};

// What the NVS namespace holds.
enum OtaAreaState {
  AREA_VALID,         // the format key says 1: name and Wi-Fi keys are read
  AREA_EMPTY,         // no namespace, or no format key: the board was never provisioned
  AREA_OTHER_FORMAT,  // another format (written by a newer OTA Forge): left alone
};

// Whether device settings found in the config block were copied into NVS.
enum OtaMigration {
  MIGRATION_NONE,     // nothing to copy, or the namespace already holds settings
  MIGRATION_DONE,     // copied and read back
  MIGRATION_FAILED,   // a write or the read-back failed: the image's values stay in use
  MIGRATION_REFUSED,  // the namespace holds another format, which is not overwritten
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
  // The trust anchor (our private CA), PEM. setCACert() keeps a pointer to this text, not a copy:
  // it must outlive every client, which a global does.
  String caPem;
  uint32_t pollIntervalS;  // seconds between checks
  uint16_t tlsRxBuffer;    // BearSSL (ESP8266) only; shown, not used, here
  uint16_t tlsTxBuffer;
  uint32_t bakedAt;        // unix time of `otaforge bake --image`, 0 when not baked
  uint32_t clockFloor;     // the system clock is never left earlier than this
  OtaSettingsSource source;
  OtaValueSource nameSource;
  OtaValueSource wifiSource;
  OtaAreaState areaState;
  uint8_t areaFormat;      // the format key's value, when there is one
  OtaMigration migration;
};

// NVS strings and the config block's fields hold the same texts; the block's (and the ESP8266
// record's) field sizes bound them, so values move without truncation.
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

// Rollback: a freshly updated image boots ESP_OTA_IMG_PENDING_VERIFY (the core's bootloader is
// built with CONFIG_BOOTLOADER_APP_ROLLBACK_ENABLE) and stays so until it is confirmed.
struct OtaTrial {
  bool pending;      // on trial: confirm after the first check-in, roll back at the deadline
  uint32_t startMs;  // millis() when the trial started (boot)
};

static OtaSettings settings;
static OtaScheduler sched;
static OtaTrial trial;
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
// anyone who asks the update endpoint). They live in NVS (the `nvs` partition, which OTA updates
// never write), namespace OTAFORGE_NVS_NAMESPACE, read with Preferences: the key "format" (u8,
// 1) says the namespace holds them; "name", "wifi_ssid" and "wifi_pass" are strings, and a
// missing one is empty (a missing SSID keeps the image's network). `otaforge provision` and
// `otaforge flash --device-name/--wifi-ssid` write them over USB (otaforge_device_settings.h
// comes from the app's device_settings.rs).

// Reads the string `key` into `out`; false (and empty) when it is missing or does not fit.
static bool readNvsString(Preferences &prefs, const char *key, char *out, size_t cap) {
  out[0] = '\0';
  if (!prefs.isKey(key)) return false;
  // getString() copies the text with its NUL, or nothing (returning 0) when it does not fit.
  if (prefs.getString(key, out, cap) == 0) {
    out[0] = '\0';
    return false;
  }
  out[cap - 1] = '\0';
  return true;
}

// Writes the string `key` and reads it back. (putString() returns the length it wrote, which is
// also 0 for an empty text, so the read-back is what says it worked.)
static bool writeNvsString(Preferences &prefs, const char *key, const char *text) {
  prefs.putString(key, text);
  char back[sizeof(otaforge_config_block_t::wifi_password)];
  return readNvsString(prefs, key, back, sizeof(back)) && strcmp(back, text) == 0;
}

// Images baked before device settings had an area of their own carry the board's name and Wi-Fi
// in the config block. The next image (baked without them) would lose them, so the first boot of
// this firmware copies them into NVS, once: after that the namespace holds them and wins. The
// name is stored in its host-name form (letters, digits, '-'), the only form OTA Forge writes.
static void moveBakedDeviceSettings() {
  if (settings.areaState == AREA_OTHER_FORMAT) {
    settings.migration = MIGRATION_REFUSED;
    OTA_LOG("device settings: this image's config block names the board \"%s\" / Wi-Fi \"%s\", but NVS holds device settings of format %u (written by a newer OTA Forge), which are not overwritten; using the image's values",
            settings.nameSource == FROM_CONFIG_BLOCK ? settings.deviceName : "",
            settings.wifiSource == FROM_CONFIG_BLOCK ? settings.wifiSsid : "", (unsigned)settings.areaFormat);
    return;
  }
  char name[sizeof(settings.deviceName)];
  if (settings.nameSource == FROM_CONFIG_BLOCK) {
    sanitizeName(name, sizeof(name), settings.deviceName);
  } else {
    name[0] = '\0';
  }
  const bool wifi = settings.wifiSource == FROM_CONFIG_BLOCK;
  OTA_LOG("device settings: moving the name \"%s\"%s%s%s from this image's config block into NVS (namespace \"%s\"), so updates keep them",
          name, wifi ? " and the Wi-Fi network \"" : "", wifi ? settings.wifiSsid : "", wifi ? "\"" : "",
          OTAFORGE_NVS_NAMESPACE);
  Preferences prefs;
  bool ok = prefs.begin(OTAFORGE_NVS_NAMESPACE, false);
  // Without the format key the namespace holds nothing of ours (a move cut short): start clean.
  if (ok) ok = prefs.clear();
  if (ok && name[0] != '\0') ok = writeNvsString(prefs, OTAFORGE_NVS_KEY_NAME, name);
  if (ok && wifi) {
    ok = writeNvsString(prefs, OTAFORGE_NVS_KEY_SSID, settings.wifiSsid) &&
         writeNvsString(prefs, OTAFORGE_NVS_KEY_PASSWORD, settings.wifiPassword);
  }
  // The format key last: until it is there the namespace reads as empty, and the move is tried
  // again at the next boot.
  if (ok) {
    ok = prefs.putUChar(OTAFORGE_NVS_KEY_FORMAT, (uint8_t)OTAFORGE_DEVICE_FORMAT) == 1 &&
         prefs.getUChar(OTAFORGE_NVS_KEY_FORMAT, 0) == OTAFORGE_DEVICE_FORMAT;
  }
  prefs.end();
  if (!ok) {
    settings.migration = MIGRATION_FAILED;
    OTA_LOG("device settings: writing NVS failed; the image's values stay in use and the move is tried again at the next boot");
    return;
  }
  settings.migration = MIGRATION_DONE;
  if (settings.nameSource == FROM_CONFIG_BLOCK) OTA_SET_TEXT(settings.deviceName, name);
  OTA_LOG("device settings: moved; NVS now holds them");
}

// Reads the device settings in NVS: their name and Wi-Fi override the image's; when there are
// none and the config block carries device settings, they are moved there.
static void loadDeviceSettings() {
  settings.areaState = AREA_EMPTY;
  settings.areaFormat = 0;
  {
    Preferences prefs;
    // Read-only; begin() fails when the namespace does not exist (a board never provisioned).
    if (prefs.begin(OTAFORGE_NVS_NAMESPACE, true)) {
      if (prefs.isKey(OTAFORGE_NVS_KEY_FORMAT)) {
        settings.areaFormat = prefs.getUChar(OTAFORGE_NVS_KEY_FORMAT, 0);
        settings.areaState = settings.areaFormat == OTAFORGE_DEVICE_FORMAT ? AREA_VALID : AREA_OTHER_FORMAT;
      }
      if (settings.areaState == AREA_VALID) {
        char name[sizeof(settings.deviceName)];
        if (readNvsString(prefs, OTAFORGE_NVS_KEY_NAME, name, sizeof(name)) && name[0] != '\0') {
          OTA_SET_TEXT(settings.deviceName, name);
          settings.nameSource = FROM_DEVICE_AREA;
        }
        char ssid[sizeof(settings.wifiSsid)];
        if (readNvsString(prefs, OTAFORGE_NVS_KEY_SSID, ssid, sizeof(ssid)) && ssid[0] != '\0') {
          OTA_SET_TEXT(settings.wifiSsid, ssid);
          // A missing password is an open network.
          readNvsString(prefs, OTAFORGE_NVS_KEY_PASSWORD, settings.wifiPassword, sizeof(settings.wifiPassword));
          settings.wifiSource = FROM_DEVICE_AREA;
        }
      }
      prefs.end();
    }
  }
  if (settings.areaState != AREA_VALID &&
      (settings.nameSource == FROM_CONFIG_BLOCK || settings.wifiSource == FROM_CONFIG_BLOCK)) {
    moveBakedDeviceSettings();
  }
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
  settings.caPem = OTA_CA_PEM;
  settings.pollIntervalS = clampPoll(OTA_POLL_INTERVAL_S);
  settings.tlsRxBuffer = clampBuffer(OTA_TLS_RX_BUFFER);
  settings.tlsTxBuffer = clampBuffer(OTA_TLS_TX_BUFFER);
  settings.bakedAt = 0;
  settings.clockFloor = OTA_BUILD_TIME;
  settings.source = SOURCE_COMPILED;
  settings.nameSource = settings.deviceName[0] != '\0' ? FROM_OTA_CONFIG : FROM_NOWHERE;
  settings.wifiSource = settings.wifiSsid[0] != '\0' ? FROM_OTA_CONFIG : FROM_NOWHERE;
  settings.migration = MIGRATION_NONE;

  // Flash is memory-mapped on the ESP32, so a plain memcpy reads the block; the copy in RAM is
  // what the CRC check runs on, and the 3 KB are given back once the settings are extracted.
  otaforge_config_block_t *block = (otaforge_config_block_t *)malloc(sizeof(otaforge_config_block_t));
  if (block == nullptr) {
    settings.source = SOURCE_NO_MEMORY;
  } else {
    memcpy(block, configBlockInFlash(), sizeof(otaforge_config_block_t));
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

// The base MAC from eFuse (the station MAC), available before Wi-Fi starts.
static void baseMac(uint8_t mac[6]) {
  const uint64_t efuse = ESP.getEfuseMac();
  for (int i = 0; i < 6; i++) mac[i] = (uint8_t)(efuse >> (8 * i));
}

// "esp32-a1b2c3" from the last three bytes of the MAC, when no device name was configured.
static void defaultDeviceName() {
  uint8_t mac[6];
  baseMac(mac);
  snprintf(settings.deviceName, sizeof(settings.deviceName), "esp32-%02x%02x%02x", mac[3], mac[4], mac[5]);
  settings.nameSource = FROM_MAC;
}

// ---------------------------------------------------------------------------------------------
// Time. mbedTLS takes the time for a certificate's validity dates from the system clock (when
// the core's mbedTLS is built with date checks, MBEDTLS_HAVE_TIME_DATE). A clock still at 1970
// would make every certificate "not yet valid", so when SNTP does not answer in time the system
// clock is set to the bake or build time, and it is never left earlier than that. SNTP keeps
// running and corrects the clock when it answers.

static void formatUtc(uint32_t t, char *out, size_t cap) {
  const time_t tt = (time_t)t;
  struct tm parts;
  gmtime_r(&tt, &parts);
  if (strftime(out, cap, "%Y-%m-%d %H:%M:%S UTC", &parts) == 0 && cap > 0) out[0] = '\0';
}

static bool clockLooksSet() {
  return time(nullptr) >= (time_t)settings.clockFloor;
}

static void setSystemClock(uint32_t unixTime) {
  struct timeval tv;
  tv.tv_sec = (time_t)unixTime;
  tv.tv_usec = 0;
  settimeofday(&tv, nullptr);
}

// ---------------------------------------------------------------------------------------------
// Rollback. The core's bootloader is built with CONFIG_BOOTLOADER_APP_ROLLBACK_ENABLE, so an image
// the updater has just written boots ESP_OTA_IMG_PENDING_VERIFY: on trial. If it resets before it
// is confirmed, the bootloader boots the previous image again. On its own the core confirms every
// new image in initArduino(), before setup(), which only catches images that crash at once; this
// firmware keeps the trial open until the image has checked in with the update server (so it can
// receive its next update), and gives up after OTA_VALIDATE_AFTER_S.

// initArduino() (cores/esp32/esp32-hal-misc.c) confirms a pending image unless this weak hook
// returns true. It is declared in that C file, so it needs C linkage here: a C++ definition would
// not replace it, and the core would still confirm every image.
extern "C" bool verifyRollbackLater() { return true; }

static const char *otaStateText(esp_ota_img_states_t state) {
  switch (state) {
    case ESP_OTA_IMG_NEW:
      return "new";
    case ESP_OTA_IMG_PENDING_VERIFY:
      return "on trial";
    case ESP_OTA_IMG_VALID:
      return "confirmed";
    case ESP_OTA_IMG_INVALID:
      return "invalid";
    case ESP_OTA_IMG_ABORTED:
      return "aborted";
    case ESP_OTA_IMG_UNDEFINED:
    default:
      return "flashed over USB, no trial";
  }
}

static void startTrial() {
  trial.pending = false;
  const esp_partition_t *running = esp_ota_get_running_partition();
  if (running == nullptr) {
    OTA_LOG("rollback: cannot tell which partition this image runs from; no trial");
    return;
  }
  esp_ota_img_states_t state;
  const esp_err_t err = esp_ota_get_state_partition(running, &state);
  if (err != ESP_OK) {
    OTA_LOG("rollback: running from %s, which has no OTA state (%s); no trial", running->label, esp_err_to_name(err));
    return;
  }
  if (state != ESP_OTA_IMG_PENDING_VERIFY) {
    OTA_LOG("rollback: running from %s (%s)", running->label, otaStateText(state));
    return;
  }
  trial.pending = true;
  trial.startMs = millis();
  OTA_LOG("rollback: this image (%s) was just installed and is on trial: it is kept once it checks in with the update server; if it has not within %lu s, or resets before, the previous image comes back",
          running->label, (unsigned long)OTA_VALIDATE_AFTER_S);
}

// The image checked in: keep it.
static void confirmImage(const char *why) {
  if (!trial.pending) return;
  const esp_err_t err = esp_ota_mark_app_valid_cancel_rollback();
  if (err == ESP_OK) {
    trial.pending = false;
    OTA_LOG("rollback: image confirmed %lu s after boot (%s); it stays", (unsigned long)((millis() - trial.startMs) / 1000),
            why);
  } else {
    OTA_LOG("rollback: confirming the image failed (%s); tried again at the next check-in", esp_err_to_name(err));
  }
}

// No check-in in time: go back to the previous image.
static void enforceTrialDeadline() {
  if (!trial.pending) return;
  if (millis() - trial.startMs < (uint32_t)OTA_VALIDATE_AFTER_S * 1000UL) return;
  OTA_LOG("rollback: no check-in with the update server within %lu s; marking this image invalid and rebooting into the previous one",
          (unsigned long)OTA_VALIDATE_AFTER_S);
  Serial.flush();
  // Reboots; returns only when there is no other image to go back to.
  const esp_err_t err = esp_ota_mark_app_invalid_rollback_and_reboot();
  OTA_LOG("rollback: not possible (%s): there is no other bootable image; keeping this one", esp_err_to_name(err));
  confirmImage("no other image to go back to");
  trial.pending = false;
}

// True when the server answered the check with 304 (up to date) or 200 (an image for this
// device, even one that then failed to install): the image reaches its update server over TLS
// and the server knows its path and channel, so it can receive its next update. No answer
// (connection, DNS, TLS: the HTTP client's errors above -100), 404, 403 and other statuses do not
// count.
static bool serverAnswered(t_httpUpdate_return result, int err) {
  if (result != HTTP_UPDATE_FAILED) return true;
  if (err > 0) return true;       // Update (flash) errors: they come after a 200
  if (err > -100) return false;   // HTTPClient errors: no answer
  return err != -102 && err != -103 && err != -104;  // 404, 403, another status
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
      OTA_LOG("  = no connection (DNS, TCP or TLS): check the host, the port and that the server runs; see the TLS error below");
      break;
    case -100:
      OTA_LOG("  = the new image does not fit the OTA partition");
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
      OTA_LOG("  = the download is not an ESP32 app image");
      break;
    case -107:
      OTA_LOG("  = the image was built for a larger flash chip than this one");
      break;
    case -108:
      OTA_LOG("  = this partition scheme has no OTA slot: build with one that has two app partitions");
      break;
    case -109:
      OTA_LOG("  = the download's SHA-256 does not match the server's");
      break;
    default:
      break;
  }
}

// mbedTLS's code for a server certificate that failed verification, in plain words.
static void explainTlsError(int err) {
  if (err == -0x2700) {  // MBEDTLS_ERR_X509_CERT_VERIFY_FAILED
    OTA_LOG("  = the server certificate did not verify: it is not signed by the CA in this firmware, or does not name \"%s\", or its dates are outside the device clock",
            settings.host);
  }
}

static void onUpdateStart() {
  lastProgressDecile = -1;
  OTA_LOG("update: a new image is available; downloading and writing it to the OTA partition");
  // HTTPUpdate calls this after the server's 200, before it starts writing: an image on trial
  // has checked in, and is confirmed first, so that a failed new image rolls back to this one.
  confirmImage("the server offered an update");
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
  OTA_LOG("update: error %d: %s", err, httpUpdate.getLastErrorString().c_str());
}

// One check: true when the server answered (up to date, or an update was installed).
static bool checkForUpdate() {
  char url[kUrlCap];
  if (!buildUpdateUrl(url, sizeof(url))) {
    OTA_LOG("check: the update URL does not fit %u bytes", (unsigned)sizeof(url));
    return false;
  }
  // Never validate against a clock earlier than the bake or build time.
  if (!clockLooksSet()) setSystemClock(settings.clockFloor);
  char when[32];
  formatUtc((uint32_t)time(nullptr), when, sizeof(when));
  OTA_LOG("check: GET %s as version %s (clock %s%s; heap %lu free, largest block %lu)", url, settings.version, when,
          sched.clockFromSntp ? "" : ", no SNTP yet", (unsigned long)ESP.getFreeHeap(),
          (unsigned long)ESP.getMaxAllocHeap());

  bool ok = false;
  {
    // The client exists only during the check and is freed when this block ends.
    WiFiClientSecure client;
    // Trust our private CA (basicConstraints CA:TRUE): any server certificate it signed is
    // accepted, so renewing the server certificate needs no reflash. The client keeps only this
    // pointer; settings.caPem outlives it.
    client.setCACert(settings.caPem.c_str());
    // A handshake that stalls would hold loop() for NetworkClientSecure's default 120 s.
    client.setHandshakeTimeout(OTA_TLS_HANDSHAKE_TIMEOUT_S);

    const t_httpUpdate_return result = httpUpdate.update(client, url, settings.version);
    const int err = result == HTTP_UPDATE_FAILED ? httpUpdate.getLastError() : 0;
    if (serverAnswered(result, err)) confirmImage("the update server answered a check");
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
        OTA_LOG("check failed: error %d: %s", err, httpUpdate.getLastErrorString().c_str());
        explainUpdateError(err);
        char tlsText[128];
        const int tlsErr = client.lastError(tlsText, sizeof(tlsText));
        if (tlsErr != 0) {
          OTA_LOG("TLS error -0x%04X: %s", (unsigned)(-tlsErr), tlsText);
          explainTlsError(tlsErr);
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
  // UTC: certificates and the server only care about absolute time. Started once Wi-Fi is up
  // (the network stack must exist before SNTP does).
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
    setSystemClock(settings.clockFloor);
    formatUtc(settings.clockFloor, when, sizeof(when));
    OTA_LOG("clock: no SNTP answer in %lu s; clock set to %s (the %s time) until SNTP answers",
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
  if (now - sched.lastCheckMs >= sched.waitMs) {
    const bool ok = checkForUpdate();
    scheduleNextCheck(ok);
  }
}

// ---------------------------------------------------------------------------------------------

static const char *valueSourceText(OtaValueSource source) {
  switch (source) {
    case FROM_DEVICE_AREA:
      return "from the device settings in NVS";
    case FROM_CONFIG_BLOCK:
      return settings.migration == MIGRATION_DONE ? "from the config block, now kept in NVS" : "from the config block";
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
  switch (settings.areaState) {
    case AREA_VALID:
      OTA_LOG("device settings: read from NVS (namespace \"%s\")", OTAFORGE_NVS_NAMESPACE);
      break;
    case AREA_OTHER_FORMAT:
      OTA_LOG("device settings: NVS holds device settings of format %u (written by a newer OTA Forge), so they are ignored",
              (unsigned)settings.areaFormat);
      break;
    case AREA_EMPTY:
    default:
      if (settings.migration != MIGRATION_DONE) {
        OTA_LOG("device settings: none in NVS; give this board its name and Wi-Fi with: otaforge provision --port PORT --device-name NAME --wifi-ssid SSID");
      }
      break;
  }
}

static void printBanner() {
  uint8_t mac[6];
  baseMac(mac);
  OTA_LOG("OTA Forge firmware %s on \"%s\"", settings.version, settings.deviceName);
  OTA_LOG("chip %s, MAC %02X:%02X:%02X:%02X:%02X:%02X, heap %lu free", ESP.getChipModel(), mac[0], mac[1], mac[2],
          mac[3], mac[4], mac[5], (unsigned long)ESP.getFreeHeap());
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
  OTA_LOG("TLS: trusting the OTA Forge CA (%u bytes of PEM); mbedTLS takes full-size records, so the tls_rx/tx buffer settings (%u/%u) are for ESP8266 devices only",
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
  if (settings.deviceName[0] == '\0') defaultDeviceName();
  printBanner();
  startTrial();

  // Do not rewrite the Wi-Fi driver's copy of the credentials in flash at every boot.
  WiFi.persistent(false);
  // The host name is taken when the station interface is created: set it before mode(). DHCP
  // host names take letters, digits and '-', at most 32 characters.
  char hostname[33];
  sanitizeName(hostname, sizeof(hostname), settings.deviceName);
  if (hostname[0] != '\0') WiFi.setHostname(hostname);
  WiFi.mode(WIFI_STA);

  httpUpdate.rebootOnUpdate(true);
  httpUpdate.onStart(onUpdateStart);
  httpUpdate.onEnd(onUpdateEnd);
  httpUpdate.onProgress(onUpdateProgress);
  httpUpdate.onError(onUpdateError);
  const int ledPin = OTA_LED_PIN;
  if (ledPin >= 0) httpUpdate.setLedPin(ledPin, OTA_LED_ON);

  WiFi.setAutoReconnect(true);
  if (settings.wifiSsid[0] != '\0') {
    WiFi.begin(settings.wifiSsid, settings.wifiPassword);
  } else {
    OTA_LOG("Wi-Fi: no network configured; trying the one the driver remembers");
    WiFi.begin();
  }
  sched.lastWifiLogMs = millis();
}

void loop() {
  enforceTrialDeadline();
  runScheduler();
  // Give the CPU back between passes; the scheduler above is what keeps checks non-blocking.
  delay(10);
}
