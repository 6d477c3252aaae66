/*
 * OTA Forge reference firmware: the part the ESP8266 and ESP32 sketches share.
 *
 * Hand-written, unlike the two generated headers next to it. The master copy is
 * device-firmware/common/otaforge_common.h; each sketch folder holds a byte-identical copy, because
 * the Arduino IDE compiles only the files inside the sketch folder. Edit the master and copy it to
 * both folders (a test fails while a copy differs).
 *
 * Shared: the settings (ota_config.h's defaults, overridden by a baked config block), which public
 * key update signatures are checked against, the update URL, the check schedule (poll interval
 * with jitter, retry backoff, the wait for SNTP) and the reports that read the same on both chips.
 * Each sketch keeps what differs by core: its TLS client, the updater call and its signature
 * verifier, where the board's own name and Wi-Fi live (the ESP8266's EEPROM sector, the ESP32's
 * NVS), how its TLS stack learns the time, and (ESP32) the rollback of a new image.
 *
 * The sketch's .ino includes this header once, after the core's Wi-Fi and HTTP update headers. It
 * defines the shared state and functions (all static) and the config block, so no other file of the
 * sketch may include it: that would make a second copy of each, and a second config block in the
 * image. The sketch defines the functions declared under "Defined by the sketch" below.
 */
#ifndef OTAFORGE_COMMON_H
#define OTAFORGE_COMMON_H

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

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

// ---------------------------------------------------------------------------------------------
// Tunables of both sketches (define them with build flags to change them).

// How long to wait for SNTP after Wi-Fi comes up before falling back to the bake/build time.
#ifndef OTA_SNTP_WAIT_MS
#define OTA_SNTP_WAIT_MS 20000UL
#endif

#ifndef OTA_SERIAL_BAUD
#define OTA_SERIAL_BAUD 115200
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

// Signed updates: the public key (SubjectPublicKeyInfo) the firmware checks every update against.
// A key baked into the config block wins (`otaforge bake --image` bakes the project's current key);
// else ota_config.h may compile one in as PEM text, e.g. the array `otaforge key export --c-header`
// writes:
//   #include "otaforge_signing_key.h"
//   #define OTA_SIGNING_KEY_PEM OTAFORGE_SIGNING_KEY_ESP8266_PEM   (or ..._ESP32_PEM)
// Without either, updates are installed unchecked (and the boot log says so).

// The length of the PEM text, which on the ESP8266 may sit in flash (PROGMEM), read 4 bytes at a
// time: strlen_P reads it either way. On the ESP32 flash is mapped memory and strlen is enough.
#if defined(ESP8266) || defined(ARDUINO_ARCH_ESP8266)
#define OTA_PEM_LENGTH(pem) strlen_P(pem)
#else
#define OTA_PEM_LENGTH(pem) strlen(pem)
#endif

// One line of the serial log. On the ESP8266 the format stays in flash (PSTR, printf_P); on the
// ESP32 PSTR is the literal itself and printf_P is printf (pgmspace.h).
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
// from loadSettings() keep the linker from dropping it. PROGMEM puts it in flash on the ESP8266
// (.irom0.text); on the ESP32 const data lives in flash anyway (the DROM segment, mapped into the
// address space) and PROGMEM is empty.
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
    0,                      /* signing_key_len: no key baked */
    {0},                    /* signing_key */
    {0},                    /* reserved */
    0,                      /* crc32 */
};

// ---------------------------------------------------------------------------------------------
// Settings in RAM, and the scheduler's state. (All types come before the sketch's first function,
// so the prototypes the Arduino builder generates never refer to a type it has not seen.)

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
  FROM_DEVICE_AREA,   // this board's device settings (ESP8266: EEPROM sector; ESP32: NVS)
  FROM_MAC,           // derived from the MAC (names only)
};

// Where the public key update signatures are checked against came from (see loadSettings()).
enum OtaKeySource {
  KEY_NONE,          // none configured: updates are installed without a signature check
  KEY_CONFIG_BLOCK,  // baked into the config block (format 2): DER, copied into settings.signingKeyDer
  KEY_OTA_CONFIG,    // compiled in: OTA_SIGNING_KEY_PEM in ota_config.h, PEM text
};

// Whether device settings found in the config block were copied into the board's device settings.
enum OtaMigration {
  MIGRATION_NONE,     // nothing to copy, or the board already holds device settings
  MIGRATION_DONE,     // copied and read back
  MIGRATION_FAILED,   // a write or the read-back failed: the image's values stay in use
  MIGRATION_REFUSED,  // the place holds foreign data or another format, which is not overwritten
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
  // The trust anchor (our private CA), PEM. The ESP32's setCACert() keeps a pointer to this text,
  // not a copy: it must outlive every client, which a global does.
  String caPem;
  uint32_t pollIntervalS;  // seconds between checks
  uint16_t tlsRxBuffer;    // BearSSL (ESP8266) receive buffer, 512..16384; the ESP32 only shows it
  uint16_t tlsTxBuffer;    // BearSSL (ESP8266) send buffer, 512..16384; the ESP32 only shows it
  uint32_t bakedAt;        // unix time of `otaforge bake --image`, 0 when not baked
  uint32_t clockFloor;     // certificates are never checked against a time earlier than this
  // The signing key. Both cores' verifiers copy the key when they are made, but they are handed
  // these addresses, which stay valid as long as the program runs: a global's array (the config
  // block itself is freed once read), or the PEM array of ota_config.h.
  OtaKeySource keySource;
  uint8_t signingKeyDer[sizeof(otaforge_config_block_t::signing_key)];  // KEY_CONFIG_BLOCK
  const char *signingKeyPem;  // KEY_OTA_CONFIG (may be PROGMEM on the ESP8266)
  size_t signingKeyLen;       // bytes of DER, or of PEM text without its NUL; 0 for KEY_NONE
  OtaSettingsSource source;
  OtaValueSource nameSource;
  OtaValueSource wifiSource;
  OtaMigration migration;
};

// The device settings record and the config block carry the same texts in fields of the same
// size (and the ESP32's NVS strings are bounded by them), so values move without truncation.
static_assert(sizeof(otaforge_device_settings_t::device_name) == sizeof(otaforge_config_block_t::device_name),
              "device name fields differ");
static_assert(sizeof(otaforge_device_settings_t::wifi_ssid) == sizeof(otaforge_config_block_t::wifi_ssid),
              "SSID fields differ");
static_assert(sizeof(otaforge_device_settings_t::wifi_password) == sizeof(otaforge_config_block_t::wifi_password),
              "password fields differ");

// Room for "https://" host ":" port path "/" channel "?name=" and the name percent-encoded.
static const size_t kUrlCap = sizeof(OtaSettings::host) + sizeof(OtaSettings::path) + sizeof(OtaSettings::channel) +
                              3 * sizeof(OtaSettings::deviceName) + 32;

// The name and Wi-Fi an image baked before device settings had a place of their own carries in its
// config block, as they are moved into the board's device settings (once).
struct OtaMove {
  char name[sizeof(OtaSettings::deviceName)];  // host-name form (the only form stored); "" for none
  bool wifi;                                   // the block's network (settings.wifiSsid) moves too
};

struct OtaScheduler {
  bool wifiUp;
  bool sntpStarted;
  bool clockSettled;
  bool clockFromSntp;
  bool clockSetToFloor;  // the sketch set the system clock to the floor: it no longer tells SNTP
  uint32_t clockWaitStartMs;
  uint32_t lastWifiLogMs;
  uint32_t lastCheckMs;  // a check is due when millis() - lastCheckMs >= waitMs
  uint32_t waitMs;
  uint32_t failures;     // consecutive failed checks, for the retry backoff
};

static OtaSettings settings;
static OtaScheduler sched;
static int lastProgressDecile = -1;  // reset by the sketch's onUpdateStart()

// ---------------------------------------------------------------------------------------------
// Defined by the sketch: the core-specific steps the shared scheduler takes.

// One check of `url` with the core's TLS client and updater: true when the server answered (up to
// date, or an update was installed).
static bool checkForUpdate(const char *url);

// SNTP has not answered within OTA_SNTP_WAIT_MS: until it does, certificates must be checked
// against settings.clockFloor. True when the sketch did that by setting the system clock (its TLS
// stack reads it), false when it hands the TLS client that time at every check instead.
static bool fallBackToClockFloor();

// ---------------------------------------------------------------------------------------------
// Settings

// Copies `src` into the array `dst`, cut to fit and always terminated.
template <size_t N>
static void setText(char (&dst)[N], const char *src) {
  const size_t n = strnlen(src, N - 1);
  memcpy(dst, src, n);
  dst[n] = '\0';
}

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

// The image's settings: ota_config.h, overridden by the config block when it is baked. The
// sketch's loadDeviceSettings() then lays the board's own name and Wi-Fi over them.
static void loadSettings() {
  // Compiled-in defaults (ota_config.h).
  setText(settings.host, OTA_HOST);
  settings.port = OTA_PORT;
  setText(settings.path, OTA_PATH);
  setText(settings.channel, OTA_CHANNEL);
  setText(settings.version, OTA_VERSION);
  setText(settings.deviceName, OTA_DEVICE_NAME);
  setText(settings.wifiSsid, OTA_WIFI_SSID);
  setText(settings.wifiPassword, OTA_WIFI_PASSWORD);
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
  settings.keySource = KEY_NONE;
  settings.signingKeyPem = nullptr;
  settings.signingKeyLen = 0;

  // The block lives in flash. The ESP8266 reads flash 4 bytes at a time, so it is copied to RAM
  // with memcpy_P (the ESP32 maps flash into the address space, and memcpy_P is memcpy); the CRC
  // check runs on the copy, and the 3 KB are given back once the settings are taken.
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

      setText(settings.host, block->host);
      settings.port = block->port;
      setText(settings.path, block->path);
      setText(settings.channel, block->channel);
      if (block->version[0] != '\0') setText(settings.version, block->version);
      // A device name or Wi-Fi in the block comes from an image baked before device settings had
      // a place of their own; the sketch's loadDeviceSettings() moves them there.
      if (block->device_name[0] != '\0') {
        setText(settings.deviceName, block->device_name);
        settings.nameSource = FROM_CONFIG_BLOCK;
      }
      // An empty SSID in the block keeps the network the firmware was built with.
      if (block->wifi_ssid[0] != '\0') {
        setText(settings.wifiSsid, block->wifi_ssid);
        setText(settings.wifiPassword, block->wifi_password);
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
      // The signing key (format 2; signing_key_len 0: none baked). otaforge_config_is_baked()
      // has checked that the length fits the field; the bytes are copied out of the block, which
      // is freed below.
      const uint16_t keyLen = block->signing_key_len;
      if (keyLen > 0 && keyLen <= sizeof(settings.signingKeyDer)) {
        memcpy(settings.signingKeyDer, block->signing_key, keyLen);
        settings.signingKeyLen = keyLen;
        settings.keySource = KEY_CONFIG_BLOCK;
      }
      settings.source = SOURCE_BAKED;
    } else if ((block->flags & OTAFORGE_CONFIG_FLAG_BAKED) != 0) {
      settings.source = SOURCE_BLOCK_DAMAGED;
    }
    free(block);
  }
  if (settings.clockFloor < kMinPlausibleTime) settings.clockFloor = kMinPlausibleTime;
#ifdef OTA_SIGNING_KEY_PEM
  // No key in the block (or no baked block): the one compiled in.
  if (settings.keySource == KEY_NONE) {
    settings.signingKeyPem = OTA_SIGNING_KEY_PEM;
    settings.signingKeyLen = OTA_PEM_LENGTH(settings.signingKeyPem);
    settings.keySource = KEY_OTA_CONFIG;
  }
#endif
}

// "<chip>-a1b2c3" from the last three bytes of the MAC, when no device name was configured.
static void nameFromMac(const char *chip, const uint8_t mac[6]) {
  snprintf(settings.deviceName, sizeof(settings.deviceName), "%s-%02x%02x%02x", chip, mac[3], mac[4], mac[5]);
  settings.nameSource = FROM_MAC;
}

// ---------------------------------------------------------------------------------------------
// Device settings: the board's own name and Wi-Fi, which override the image's. Where they live is
// the sketch's business (its loadDeviceSettings()); these are the steps both cores take.

// A name read from the device settings replaces the image's; an empty one keeps it.
static void useDeviceName(const char *name) {
  if (name[0] == '\0') return;
  setText(settings.deviceName, name);
  settings.nameSource = FROM_DEVICE_AREA;
}

// A network read from the device settings replaces the image's; an empty SSID keeps it.
static void useDeviceWifi(const char *ssid, const char *password) {
  if (ssid[0] == '\0') return;
  setText(settings.wifiSsid, ssid);
  setText(settings.wifiPassword, password);
  settings.wifiSource = FROM_DEVICE_AREA;
}

// True when the config block carries the board's name or Wi-Fi (an image baked before device
// settings had a place of their own). The next image, baked without them, would lose them, so
// when the board holds no device settings yet the sketch moves them there, once.
static bool imageCarriesDeviceSettings() {
  return settings.nameSource == FROM_CONFIG_BLOCK || settings.wifiSource == FROM_CONFIG_BLOCK;
}

static OtaMove plannedMove() {
  OtaMove move;
  if (settings.nameSource == FROM_CONFIG_BLOCK) {
    sanitizeName(move.name, sizeof(move.name), settings.deviceName);
  } else {
    move.name[0] = '\0';
  }
  move.wifi = settings.wifiSource == FROM_CONFIG_BLOCK;
  return move;
}

// The sketch stored `move` and read it back: from now on the name is the stored one.
static void moveDone(const OtaMove &move) {
  settings.migration = MIGRATION_DONE;
  if (settings.nameSource == FROM_CONFIG_BLOCK) setText(settings.deviceName, move.name);
}

// ---------------------------------------------------------------------------------------------
// Time. Each sketch says how its TLS stack gets the time (see fallBackToClockFloor()); a clock
// "looks set" once it has passed the bake or build time.

static void formatUtc(uint32_t t, char *out, size_t cap) {
  const time_t tt = (time_t)t;
  struct tm parts;
  gmtime_r(&tt, &parts);
  if (strftime(out, cap, "%Y-%m-%d %H:%M:%S UTC", &parts) == 0 && cap > 0) out[0] = '\0';
}

static bool clockLooksSet() {
  return time(nullptr) >= (time_t)settings.clockFloor;
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

// The updater's errors that mean the same on both cores, in plain words (the sketch's
// explainUpdateError() handles the others, then calls this).
static void explainCommonUpdateError(int err) {
  switch (err) {
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
    case -107:
      OTA_LOG("  = the image was built for a larger flash chip than this one");
      break;
    default:
      break;
  }
}

// A failed update whose error is the updater's UPDATE_ERROR_SIGN (`code`: 12 on the ESP8266, 14 on
// the ESP32): the image was unsigned, signed by another key, or damaged on the way.
static void logSignatureRefused(int code) {
  OTA_LOG("update refused: the signature does not match this device's signing key (UPDATE_ERROR_SIGN %d); the image is unsigned or signed with another key, and the running firmware stays",
          code);
}

// The first line of a check. `timeName` says what `tlsTime` is to the sketch's TLS stack.
static void logCheckStart(const char *url, const char *timeName, uint32_t tlsTime, uint32_t largestBlock) {
  char when[32];
  formatUtc(tlsTime, when, sizeof(when));
  OTA_LOG("check: GET %s as version %s (%s %s%s; heap %lu free, largest block %lu)", url, settings.version, timeName,
          when, sched.clockFromSntp ? "" : ", no SNTP yet", (unsigned long)ESP.getFreeHeap(),
          (unsigned long)largestBlock);
}

// Reports an updater result that means the server answered: true for up to date, or an image
// installed. False for a failure, which the sketch reports with its updater's and client's errors.
static bool reportUpdateResult(t_httpUpdate_return result) {
  switch (result) {
    case HTTP_UPDATE_NO_UPDATES:
      OTA_LOG("check: up to date (the server has nothing newer for version %s)", settings.version);
      return true;
    case HTTP_UPDATE_OK:
      // rebootOnUpdate(true) normally restarts inside update(); this is the fallback.
      OTA_LOG("update: installed; restarting");
      Serial.flush();
      ESP.restart();
      return true;
    case HTTP_UPDATE_FAILED:
    default:
      return false;
  }
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

// Sets up the core's HTTP updater: ESPhttpUpdate (ESP8266httpUpdate) or httpUpdate (the ESP32's
// HTTPUpdate, a port of it with the same calls). It reboots into a new image once it is written,
// reports progress in tenths, and lights `ledPin` (-1: none) while a buffer is being downloaded.
template <typename HttpUpdate>
static void setUpUpdater(HttpUpdate &updater, void (*onStart)(), int ledPin, uint8_t ledOn) {
  updater.rebootOnUpdate(true);
  updater.onStart(onStart);
  updater.onEnd(onUpdateEnd);
  updater.onProgress(onUpdateProgress);
  updater.onError([&updater](int err) { OTA_LOG("update: error %d: %s", err, updater.getLastErrorString().c_str()); });
  if (ledPin >= 0) updater.setLedPin(ledPin, ledOn);
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
    sched.clockSetToFloor = fallBackToClockFloor();
    formatUtc(settings.clockFloor, when, sizeof(when));
    const char *what = settings.bakedAt != 0 ? "bake" : "build";
    if (sched.clockSetToFloor) {
      OTA_LOG("clock: no SNTP answer in %lu s; clock set to %s (the %s time) until SNTP answers",
              (unsigned long)(OTA_SNTP_WAIT_MS / 1000), when, what);
    } else {
      OTA_LOG("clock: no SNTP answer in %lu s; certificates are checked against %s (the %s time) until SNTP answers",
              (unsigned long)(OTA_SNTP_WAIT_MS / 1000), when, what);
    }
  }
  sched.clockSettled = true;
  // The first check comes right away, a few random seconds apart across a fleet.
  sched.lastCheckMs = now;
  sched.waitMs = (uint32_t)random(1000, 5000);
}

// One check: the update URL, then the sketch's checkForUpdate().
static bool runCheck() {
  char url[kUrlCap];
  if (!buildUpdateUrl(url, sizeof(url))) {
    OTA_LOG("check: the update URL does not fit %u bytes", (unsigned)sizeof(url));
    return false;
  }
  return checkForUpdate(url);
}

// Called from loop(): returns at once unless something is due.
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
  // A clock the sketch left alone passes the floor when SNTP answers; one it set to the floor
  // says nothing about SNTP.
  if (!sched.clockFromSntp && !sched.clockSetToFloor && clockLooksSet()) {
    sched.clockFromSntp = true;
    OTA_LOG("clock: SNTP answered");
  }
  if (now - sched.lastCheckMs >= sched.waitMs) {
    const bool ok = runCheck();
    scheduleNextCheck(ok);
  }
}

// Joins the configured network, or else the one the Wi-Fi driver remembers (`rememberedBy`: the
// core's name for what remembers it).
static void startWifi(const char *rememberedBy) {
  WiFi.setAutoReconnect(true);
  if (settings.wifiSsid[0] != '\0') {
    WiFi.begin(settings.wifiSsid, settings.wifiPassword);
  } else {
    OTA_LOG("Wi-Fi: no network configured; trying the one the %s remembers", rememberedBy);
    WiFi.begin();
  }
  sched.lastWifiLogMs = millis();
}

// ---------------------------------------------------------------------------------------------
// The boot banner's shared lines (the sketch's printBanner() adds the chip, TLS and device
// settings lines).

// Where the image's settings came from, and the update URL.
static void printImageSettings() {
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
}

// The boot banner's line on update signatures: where the key came from and `how` this build checks
// updates against it (the sketch's words), or that nothing checks them.
static void printSigningKey(const char *how) {
  switch (settings.keySource) {
    case KEY_CONFIG_BLOCK:
      OTA_LOG("update signatures: key baked into the config block (%u bytes, DER); %s", (unsigned)settings.signingKeyLen,
              how);
      break;
    case KEY_OTA_CONFIG:
      OTA_LOG("update signatures: key compiled in (OTA_SIGNING_KEY_PEM in ota_config.h, %u bytes of PEM); %s",
              (unsigned)settings.signingKeyLen, how);
      break;
    case KEY_NONE:
    default:
      OTA_LOG("update signatures: no key configured, so updates are NOT signature-checked (otaforge bake --image bakes the project's signing key into the image)");
      break;
  }
}

// `fromArea` and `movedToArea` are the sketch's words for a value read from its device settings,
// and for one this boot moved there from the config block.
static const char *valueSourceText(OtaValueSource source, const char *fromArea, const char *movedToArea) {
  switch (source) {
    case FROM_DEVICE_AREA:
      return fromArea;
    case FROM_CONFIG_BLOCK:
      return settings.migration == MIGRATION_DONE ? movedToArea : "from the config block";
    case FROM_OTA_CONFIG:
      return "from ota_config.h";
    case FROM_MAC:
      return "derived from the MAC";
    case FROM_NOWHERE:
    default:
      return "none configured";
  }
}

// The name and network in use and where each came from (see valueSourceText()), and the clock
// floor.
static void printNameWifiAndClock(const char *fromArea, const char *movedToArea) {
  OTA_LOG("device name: \"%s\" (%s)", settings.deviceName, valueSourceText(settings.nameSource, fromArea, movedToArea));
  OTA_LOG("Wi-Fi: \"%s\" (%s)", settings.wifiSsid, valueSourceText(settings.wifiSource, fromArea, movedToArea));
  char when[32];
  formatUtc(settings.clockFloor, when, sizeof(when));
  OTA_LOG("clock: SNTP time, never earlier than %s", when);
}

#endif /* OTAFORGE_COMMON_H */
