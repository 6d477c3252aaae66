/*
 * OTA Forge reference firmware for the ESP8266 (Arduino core 3.x).
 *
 * The device joins Wi-Fi, sets its clock, then asks the OTA Forge update server over HTTPS whether
 * there is newer firmware, at a fixed interval with random jitter. When there is, it downloads
 * and flashes the new image and reboots into it.
 * Security: the server certificate must be signed by the private CA baked into this firmware
 * (a trust anchor, not a pinned leaf), so the server certificate can be renewed without
 * reflashing any device. When the image carries a signing key (baked into the config block, or
 * OTA_SIGNING_KEY_PEM in ota_config.h), an update is installed only if it is signed by that key
 * (RSA-2048, PKCS#1 v1.5, SHA-256: see "Signed updates" below).
 *
 * Settings come from three places:
 *   1. ota_config.h: compiled-in defaults, written by `otaforge bake --sketch <this folder>`.
 *   2. The config block (OTAFORGE_CONFIG in otaforge_common.h): 3 KB reserved in flash.
 *      `otaforge bake --image` finds it by its magic in a built .bin and writes the fleet's
 *      settings into it (server, path, channel, CA, poll interval...), so a prebuilt image can be
 *      given to another server without a compiler. Baked values override ota_config.h.
 *   3. The device settings area: this board's own name and Wi-Fi, in the flash sector the core
 *      reserves for EEPROM, which no update writes (see "Device settings" below). Written by
 *      `otaforge provision` / `otaforge flash --device-name ... --wifi-ssid ...`. Its values
 *      override the image's, so every update keeps the board's name and network.
 *
 * What the ESP32 sketch does the same way (settings, update URL, scheduling, reports) is in
 * otaforge_common.h, next to this file; this file holds the ESP8266's own parts: BearSSL and
 * ESP8266httpUpdate, the update signature verifier, the device settings in the EEPROM sector, and
 * the certificate time.
 *
 * Nothing here blocks for long outside the update itself: loop() runs a small scheduler, so the
 * Wi-Fi stack is never starved by waiting loops.
 */

#include <Arduino.h>

#if !defined(ESP8266) && !defined(ARDUINO_ARCH_ESP8266)
#error "otaforge_esp8266 is for ESP8266 boards (FQBN esp8266:esp8266:...). For ESP32 boards build device-firmware/esp32/otaforge_esp32 instead."
#endif

#include <ESP8266WiFi.h>
#include <ESP8266httpUpdate.h>
#include <Updater.h>  // Update (ESP8266WiFi.h brings it in too, through BearSSLHelpers.h)

// ota_config.h, the generated headers, and the code both sketches share.
#include "otaforge_common.h"

// ---------------------------------------------------------------------------------------------
// Tunables of this sketch (define them with build flags to change them; otaforge_common.h has
// the ones both sketches take).

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

// What the device settings area (the EEPROM sector) holds. (Types come before the first
// function, so the prototypes the Arduino builder generates never refer to a type it has not seen.)
enum OtaAreaState {
  AREA_VALID,         // a record of this format with a good CRC
  AREA_BLANK,         // erased flash: the board was never provisioned
  AREA_DAMAGED,       // our magic and format, but a bad length or CRC
  AREA_OTHER_FORMAT,  // our magic, another format (written by a newer OTA Forge): left alone
  AREA_FOREIGN,       // something else (the EEPROM library, an earlier firmware): left alone
  AREA_READ_FAILED,   // ESP.flashRead() failed
  AREA_NO_MEMORY,     // no 2 KB of heap to read it
};

static OtaAreaState areaState;

// The update signature check, made once at boot when a key is configured (setUpSignedUpdates())
// and never freed: the Updater keeps the two plug-ins by pointer for every update after.
static BearSSL::PublicKey *signingPublicKey = nullptr;
static BearSSL::HashSHA256 *signingHash = nullptr;
static BearSSL::SigningVerifier *signingVerifier = nullptr;

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
// in the config block; the first boot of this firmware copies them into the device settings
// area, once: after that the area holds a record and wins. `rec` is the 2 KB buffer the area was
// read into.
static void moveBakedDeviceSettings(otaforge_device_settings_t *rec) {
  if (areaState == AREA_FOREIGN || areaState == AREA_OTHER_FORMAT) {
    settings.migration = MIGRATION_REFUSED;
    OTA_LOG("device settings: this image's config block names the board \"%s\" / Wi-Fi \"%s\", but the EEPROM sector holds %s, which is not overwritten; using the image's values (otaforge provision writes the board's own settings)",
            settings.nameSource == FROM_CONFIG_BLOCK ? settings.deviceName : "",
            settings.wifiSource == FROM_CONFIG_BLOCK ? settings.wifiSsid : "",
            areaState == AREA_FOREIGN ? "other data (does this sketch use the EEPROM library?)"
                                      : "a record of another format (written by a newer OTA Forge)");
    return;
  }
  const OtaMove move = plannedMove();
  OTA_LOG("device settings: moving the name \"%s\"%s%s%s from this image's config block into the device settings area (EEPROM sector at 0x%06lx), so updates keep them",
          move.name, move.wifi ? " and the Wi-Fi network \"" : "", move.wifi ? settings.wifiSsid : "",
          move.wifi ? "\"" : "", (unsigned long)deviceAreaOffset());
  fillDeviceRecord(rec, move.name, move.wifi ? settings.wifiSsid : "", move.wifi ? settings.wifiPassword : "");
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
  moveDone(move);
  OTA_LOG("device settings: moved; the device settings area now holds them");
}

// Reads the device settings area: its name and Wi-Fi override the image's; when it holds no
// record and the config block carries device settings, they are moved into it.
static void loadDeviceSettings() {
  // 2 KB: from the heap, not the stack, and only while the record is read.
  otaforge_device_settings_t *rec = (otaforge_device_settings_t *)malloc(sizeof(otaforge_device_settings_t));
  if (rec == nullptr) {
    areaState = AREA_NO_MEMORY;
    return;
  }
  areaState = readDeviceRecord(rec);
  if (areaState == AREA_VALID) {
    const uint32_t flags = rec->flags;
    useDeviceName(rec->device_name);
    if ((flags & OTAFORGE_DEVICE_FLAG_WIFI) != 0) useDeviceWifi(rec->wifi_ssid, rec->wifi_password);
  } else if (areaState != AREA_READ_FAILED && imageCarriesDeviceSettings()) {
    moveBakedDeviceSettings(rec);
  }
  free(rec);
}

// "esp8266-a1b2c3" from the last three bytes of the MAC, when no device name was configured.
static void defaultDeviceName() {
  uint8_t mac[6];
  WiFi.macAddress(mac);
  nameFromMac("esp8266", mac);
}

// ---------------------------------------------------------------------------------------------
// Time. BearSSL checks the server certificate's dates. Without a clock (1970) every certificate
// is "not yet valid" (BearSSL error 54), so the device always validates against the best time it
// knows: SNTP time when it has it, and never earlier than the bake or build time.

static time_t bestKnownTime() {
  const time_t now = time(nullptr);
  const time_t floor = (time_t)settings.clockFloor;
  return now > floor ? now : floor;
}

// No SNTP in time: nothing to change, as every check hands BearSSL bestKnownTime(). The system
// clock is left to SNTP, so the scheduler still sees when it answers.
static bool fallBackToClockFloor() {
  return false;
}

// ---------------------------------------------------------------------------------------------
// Signed updates. The core's own mechanism (esp8266/Arduino 2.6 and later, 3.x included):
// Update.installSignature(hash, verifier) (cores/esp8266/Updater.h) makes Updater::end() read the
// last 4 bytes of the download as the signature length, which must equal verifier->length() (the
// RSA modulus, 256 bytes), hash everything before the signature with SHA-256 and have the verifier
// check the signature (BearSSL br_rsa_pkcs1_vrfy, on the BearSSL second stack); any mismatch is
// UPDATE_ERROR_SIGN (12) and the new image is never activated (Updater.cpp, end()). That is the
// layout OTA Forge signs ESP8266 images in: image || RSA-PKCS1v15-SHA256 signature || uint32_le
// length. The plug-ins are the ones libraries/ESP8266WiFi/src/BearSSLHelpers.h provides, made the
// way libraries/ESP8266httpUpdate/examples/httpUpdateSigned does: BearSSL::PublicKey (which parses
// PEM or DER, from RAM or PROGMEM, and copies the key), BearSSL::HashSHA256 and
// BearSSL::SigningVerifier. The verifier's constructor takes a reference on the BearSSL second
// stack (about 6 KB), which the TLS client needs during every check anyway; kept for the life of
// the program, it costs heap between checks but not at the peak, and never fragments it.
//
// A key that does not parse as RSA leaves length() at 0 or the EC key length, so the Updater
// refuses every image (a signature of the wrong length, or one the EC verifier cannot take): the
// check stays installed, failing closed, and the boot log says so.

// Boot: makes the verifier when a key is configured, and logs which key checks updates.
static void setUpSignedUpdates() {
  if (settings.keySource == KEY_NONE) {
    printSigningKey("");
    return;
  }
  if (settings.keySource == KEY_CONFIG_BLOCK) {
    signingPublicKey = new BearSSL::PublicKey(settings.signingKeyDer, settings.signingKeyLen);
  } else {
    signingPublicKey = new BearSSL::PublicKey(settings.signingKeyPem);
  }
  signingHash = new BearSSL::HashSHA256();
  signingVerifier = new BearSSL::SigningVerifier(signingPublicKey);
  if (signingPublicKey->isRSA()) {
    printSigningKey("every update must be signed by it (RSA-2048, PKCS#1 v1.5, SHA-256)");
  } else {
    printSigningKey("but it is not an RSA public key, so every update is refused: bake this project's ESP8266 signing key (otaforge key show)");
  }
}

// Before each update: the core's example installs the plug-ins just before ESPhttpUpdate.update();
// the Updater keeps them across updates (its _reset() leaves them), so this only makes sure. Without
// a key nothing is installed, and a build with the core's own automatic signing (a public.key in the
// sketch folder, ARDUINO_SIGNING) keeps the verifier that installed.
static void installUpdateVerifier() {
  if (signingVerifier != nullptr) Update.installSignature(signingHash, signingVerifier);
}

// ---------------------------------------------------------------------------------------------
// Update

static void explainUpdateError(int err) {
  switch (err) {
    case -1:
      OTA_LOG("  = no connection (DNS, TCP or TLS): check the host, the port and that the server runs");
      break;
    case -100:
      OTA_LOG("  = the new image does not fit the free flash space");
      break;
    case -106:
      OTA_LOG("  = the download is not an ESP8266 image");
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
    case UPDATE_ERROR_SIGN:  // 12 (cores/esp8266/Updater.h)
      logSignatureRefused(err);
      break;
    default:
      explainCommonUpdateError(err);
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

// One check of `url` (the scheduler in otaforge_common.h calls it): true when the server answered
// (up to date, or an update was installed).
static bool checkForUpdate(const char *url) {
  const time_t x509Time = bestKnownTime();
  logCheckStart(url, "certificate time", (uint32_t)x509Time, ESP.getMaxFreeBlockSize());

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

    installUpdateVerifier();
    const t_httpUpdate_return result = ESPhttpUpdate.update(client, url, settings.version);
    ok = reportUpdateResult(result);
    if (!ok) {
      const int err = ESPhttpUpdate.getLastError();
      OTA_LOG("check failed: error %d: %s", err, ESPhttpUpdate.getLastErrorString().c_str());
      explainUpdateError(err);
      char sslText[112];
      const int sslErr = client.getLastSSLError(sslText, sizeof(sslText));
      if (sslErr != 0) {
        OTA_LOG("TLS error %d: %s", sslErr, sslText);
        explainBearSslError(sslErr);
      }
    }
  }
  OTA_LOG("check: done; heap %lu free", (unsigned long)ESP.getFreeHeap());
  return ok;
}

// ---------------------------------------------------------------------------------------------
// Boot banner

static void printDeviceArea() {
  const unsigned long at = (unsigned long)deviceAreaOffset();
  switch (areaState) {
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
  printImageSettings();
  OTA_LOG("TLS: trusting the OTA Forge CA (%u bytes of PEM); BearSSL buffers rx %u / tx %u bytes",
          (unsigned)settings.caPem.length(), (unsigned)settings.tlsRxBuffer, (unsigned)settings.tlsTxBuffer);
  printDeviceArea();
  printNameWifiAndClock("from the device settings area", "from the config block, now kept in the device settings area");
}

void setup() {
  Serial.begin(OTA_SERIAL_BAUD);
  Serial.println();
  loadSettings();        // the image's: ota_config.h, then the config block
  loadDeviceSettings();  // the board's own name and Wi-Fi win over the image's

  // Do not rewrite the SDK's copy of the credentials in flash at every boot.
  WiFi.persistent(false);
  WiFi.mode(WIFI_STA);
  if (settings.deviceName[0] == '\0') defaultDeviceName();
  // DHCP host names take letters, digits and '-', at most 32 characters.
  char hostname[33];
  sanitizeName(hostname, sizeof(hostname), settings.deviceName);
  if (hostname[0] != '\0') WiFi.hostname(hostname);
  printBanner();
  setUpSignedUpdates();

  setUpUpdater(ESPhttpUpdate, onUpdateStart, OTA_LED_PIN, OTA_LED_ON);
  startWifi("SDK");
}

void loop() {
  // Returns at once unless a check is due; the core services Wi-Fi between calls.
  runScheduler();
}
