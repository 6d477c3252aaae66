/*
 * OTA Forge reference firmware for the ESP32 family (arduino-esp32 3.x; ESP32, -S2, -S3, -C3, -C6).
 *
 * The device joins Wi-Fi, sets its clock, then asks the OTA Forge update server over HTTPS whether
 * there is newer firmware, at a fixed interval with random jitter. When there is, it downloads
 * the new image into the other OTA partition and reboots into it.
 * Security: the server certificate must be signed by the private CA baked into this firmware
 * (a trust anchor, not a pinned leaf), so the server certificate can be renewed without
 * reflashing any device. When the image carries a signing key (baked into the config block, or
 * OTA_SIGNING_KEY_PEM in ota_config.h), an update is installed only if it is signed by that key
 * (ECDSA P-256, SHA-256), which needs arduino-esp32 3.3.8 or later built with UPDATE_SIGN (see
 * "Signed updates" below); an image with a key that cannot check it installs no update at all.
 *
 * Settings come from three places:
 *   1. ota_config.h: compiled-in defaults, written by `otaforge bake --sketch <this folder>`.
 *   2. The config block (OTAFORGE_CONFIG in otaforge_common.h): 3 KB reserved in flash.
 *      `otaforge bake --image` finds it by its magic in a built .bin and writes the fleet's
 *      settings into it (server, path, channel, CA, poll interval...; fixing the image's checksum
 *      and SHA-256), so a prebuilt image can be given to another server without a compiler.
 *      Baked values override ota_config.h.
 *   3. The device settings: this board's own name and Wi-Fi, in the NVS namespace "otaforge"
 *      (the nvs partition, which no OTA update writes). Written by `otaforge provision` /
 *      `otaforge flash --device-name ... --wifi-ssid ...`. They override the image's, so every
 *      update keeps the board's name and network.
 *
 * A new image is on trial until it has checked in with the update server: if it cannot within
 * OTA_VALIDATE_AFTER_S, or resets before, the bootloader goes back to the previous image.
 *
 * What the ESP8266 sketch does the same way (settings, update URL, scheduling, reports) is in
 * otaforge_common.h, next to this file; this file holds the ESP32's own parts: NetworkClientSecure
 * and HTTPUpdate, the update signature verifier, the device settings in NVS, the system clock, and
 * the rollback.
 *
 * Nothing here blocks for long outside the update itself: loop() runs a small scheduler.
 * Use a partition scheme with two OTA app slots (the default one has them).
 */

#include <Arduino.h>

#if !defined(ESP32) && !defined(ARDUINO_ARCH_ESP32)
#error "otaforge_esp32 is for ESP32 boards (FQBN esp32:esp32:...). For ESP8266 boards build device-firmware/esp8266/otaforge_esp8266 instead."
#endif

#include <WiFi.h>
#include <WiFiClientSecure.h>
#include <HTTPUpdate.h>
#include <Update.h>  // Update (HTTPUpdate.h includes it too)
#include <esp_arduino_version.h>
#include <Preferences.h>
#include <esp_ota_ops.h>
#include <sys/time.h>

// ota_config.h, the generated headers, and the code both sketches share.
#include "otaforge_common.h"

// ---------------------------------------------------------------------------------------------
// Tunables of this sketch (define them with build flags to change them; otaforge_common.h has
// the ones both sketches take).

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

// The first arduino-esp32 release whose Update library really checks signatures (see "Signed
// updates" below). Raise it if a later core turns out to be the first good one; lowering it lets
// unchecked images in.
#ifndef OTA_SIGNED_UPDATES_MIN_CORE
#define OTA_SIGNED_UPDATES_MIN_CORE ESP_ARDUINO_VERSION_VAL(3, 3, 8)
#endif
// Whether this build can check update signatures: a core that checks them, compiled with
// UPDATE_SIGN (without it the core has no verifier classes and installSignature()).
#if defined(UPDATE_SIGN) && defined(ESP_ARDUINO_VERSION) && defined(ESP_ARDUINO_VERSION_VAL)
#if ESP_ARDUINO_VERSION >= OTA_SIGNED_UPDATES_MIN_CORE
#define OTA_CHECKS_SIGNATURES 1
#endif
#endif
#ifndef OTA_CHECKS_SIGNATURES
#define OTA_CHECKS_SIGNATURES 0
#endif

// ---------------------------------------------------------------------------------------------
// This sketch's state. (Types come before the first function, so the prototypes the Arduino
// builder generates never refer to a type it has not seen.)

// What the NVS namespace holds.
enum OtaAreaState {
  AREA_VALID,         // the format key says 1: name and Wi-Fi keys are read
  AREA_EMPTY,         // no namespace, or no format key: the board was never provisioned
  AREA_OTHER_FORMAT,  // another format (written by a newer OTA Forge): left alone
};

// Rollback: a freshly updated image boots ESP_OTA_IMG_PENDING_VERIFY (the core's bootloader is
// built with CONFIG_BOOTLOADER_APP_ROLLBACK_ENABLE) and stays so until it is confirmed.
struct OtaTrial {
  bool pending;      // on trial: confirm after the first check-in, roll back at the deadline
  uint32_t startMs;  // millis() when the trial started (boot)
};

static OtaAreaState areaState;
static uint8_t areaFormat;  // the format key's value, when there is one
static OtaTrial trial;

#if OTA_CHECKS_SIGNATURES
// The update signature check, made once at boot when a key is configured (setUpSignedUpdates())
// and never freed: Update keeps it by pointer.
static UpdaterVerifyClass *signingVerifier = nullptr;
#endif
// A key is configured but this build cannot check signatures: no update is installed at all.
static bool updatesRefused = false;

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
// in the config block; the first boot of this firmware copies them into NVS, once: after that
// the namespace holds them and wins.
static void moveBakedDeviceSettings() {
  if (areaState == AREA_OTHER_FORMAT) {
    settings.migration = MIGRATION_REFUSED;
    OTA_LOG("device settings: this image's config block names the board \"%s\" / Wi-Fi \"%s\", but NVS holds device settings of format %u (written by a newer OTA Forge), which are not overwritten; using the image's values",
            settings.nameSource == FROM_CONFIG_BLOCK ? settings.deviceName : "",
            settings.wifiSource == FROM_CONFIG_BLOCK ? settings.wifiSsid : "", (unsigned)areaFormat);
    return;
  }
  const OtaMove move = plannedMove();
  OTA_LOG("device settings: moving the name \"%s\"%s%s%s from this image's config block into NVS (namespace \"%s\"), so updates keep them",
          move.name, move.wifi ? " and the Wi-Fi network \"" : "", move.wifi ? settings.wifiSsid : "",
          move.wifi ? "\"" : "", OTAFORGE_NVS_NAMESPACE);
  Preferences prefs;
  bool ok = prefs.begin(OTAFORGE_NVS_NAMESPACE, false);
  // Without the format key the namespace holds nothing of ours (a move cut short): start clean.
  if (ok) ok = prefs.clear();
  if (ok && move.name[0] != '\0') ok = writeNvsString(prefs, OTAFORGE_NVS_KEY_NAME, move.name);
  if (ok && move.wifi) {
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
  moveDone(move);
  OTA_LOG("device settings: moved; NVS now holds them");
}

// Reads the device settings in NVS: their name and Wi-Fi override the image's; when there are
// none and the config block carries device settings, they are moved there.
static void loadDeviceSettings() {
  areaState = AREA_EMPTY;
  areaFormat = 0;
  {
    Preferences prefs;
    // Read-only; begin() fails when the namespace does not exist (a board never provisioned).
    if (prefs.begin(OTAFORGE_NVS_NAMESPACE, true)) {
      if (prefs.isKey(OTAFORGE_NVS_KEY_FORMAT)) {
        areaFormat = prefs.getUChar(OTAFORGE_NVS_KEY_FORMAT, 0);
        areaState = areaFormat == OTAFORGE_DEVICE_FORMAT ? AREA_VALID : AREA_OTHER_FORMAT;
      }
      if (areaState == AREA_VALID) {
        char name[sizeof(settings.deviceName)];
        if (readNvsString(prefs, OTAFORGE_NVS_KEY_NAME, name, sizeof(name))) useDeviceName(name);
        char ssid[sizeof(settings.wifiSsid)];
        if (readNvsString(prefs, OTAFORGE_NVS_KEY_SSID, ssid, sizeof(ssid)) && ssid[0] != '\0') {
          // A missing password is an open network.
          char password[sizeof(settings.wifiPassword)];
          readNvsString(prefs, OTAFORGE_NVS_KEY_PASSWORD, password, sizeof(password));
          useDeviceWifi(ssid, password);
        }
      }
      prefs.end();
    }
  }
  if (areaState != AREA_VALID && imageCarriesDeviceSettings()) moveBakedDeviceSettings();
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
  nameFromMac("esp32", mac);
}

// ---------------------------------------------------------------------------------------------
// Time. mbedTLS takes the time for a certificate's validity dates from the system clock (when
// the core's mbedTLS is built with date checks, MBEDTLS_HAVE_TIME_DATE). A clock still at 1970
// would make every certificate "not yet valid", so when SNTP does not answer in time the system
// clock is set to the bake or build time, and it is never left earlier than that. SNTP keeps
// running and corrects the clock when it answers.

static void setSystemClock(uint32_t unixTime) {
  struct timeval tv;
  tv.tv_sec = (time_t)unixTime;
  tv.tv_usec = 0;
  settimeofday(&tv, nullptr);
}

// No SNTP in time: the system clock is what mbedTLS checks certificates against.
static bool fallBackToClockFloor() {
  setSystemClock(settings.clockFloor);
  return true;
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
// Signed updates. arduino-esp32's Update library (libraries/Update/src/Update.h, Updater.cpp,
// Updater_Signing.h/.cpp; 3.3 and later, compiled only when the build defines UPDATE_SIGN, as
// build_opt.h's "-DUPDATE_SIGN" does for the core's examples/Signed_OTA_Update) checks a signature
// in a fixed 512-byte trailer: Update.installSignature(verifier), called before begin(), makes the
// update hash (SHA-2, the verifier's getHashType()) every byte but the last 512, and end() hand
// those 512 bytes to verifier->verify() before it activates the partition; a mismatch is
// UPDATE_ERROR_SIGN (14), which HTTPUpdate reports as getLastError() (runUpdate() copies
// Update.getError()). UpdaterECDSAVerifier(pubkey, len, HASH_SHA256) parses the key with
// mbedtls_pk_parse_public_key (DER, or PEM with its NUL counted in len; it copies the key) and
// takes the DER ECDSA signature zero-padded to 512 bytes, which is how OTA Forge signs ESP32 images
// (and tools/bin_signing.py writes them): image || DER ECDSA P-256 SHA-256 signature, padded. A key
// that does not parse, or is not an EC key, leaves the verifier invalid: it refuses every image.
//
// Which cores: the API ships in 3.3, but up to 3.3.7 it does not check anything. Update.begin()
// calls _reset(), which zeroes the signature size installSignature() set, so no byte is hashed and
// end() skips the check: unsigned images install (espressif/arduino-esp32#12422, reported against
// 3.3.7; with that fixed, bin_signing.py's RSA signatures still failed: #12427). Both reports are
// closed, and the later Updater_Signing.cpp trims the trailer's zero padding before mbedTLS sees
// the signature. OTA_SIGNED_UPDATES_MIN_CORE is 3.3.8, the first release after those reports; that
// 3.3.8 carries the fix is inferred, not read in its sources. The Update library gives a sketch no
// way to tell at run time whether begin() kept the verifier, so the version is the only guard:
// device-firmware/README.md asks for a bench test that a core refuses an unsigned image.
//
// A key configured on a build that cannot check it (an older core, or no UPDATE_SIGN): this image
// installs no update at all, and says so at boot and at every check. The server offers such a
// device only images signed by its key, and this core would install them without looking, so
// would any image the server, or anyone who got its TLS key, sent: the key would promise a check
// that never happens. Refusing shows the mistake on the bench, at the first boot; and an image that
// arrived as an update never checks in, so its trial ends and the bootloader goes back to the
// previous image, which can still be updated. The way out is a rebuild (core and flag).

// Boot: makes the verifier when a key is configured, and logs which key checks updates.
static void setUpSignedUpdates() {
  if (settings.keySource == KEY_NONE) {
    printSigningKey("");
    return;
  }
#if OTA_CHECKS_SIGNATURES
  if (settings.keySource == KEY_CONFIG_BLOCK) {
    signingVerifier = new UpdaterECDSAVerifier(settings.signingKeyDer, settings.signingKeyLen, HASH_SHA256);
  } else {
    // mbedtls_pk_parse_public_key takes PEM only with its terminating NUL counted.
    signingVerifier = new UpdaterECDSAVerifier((const uint8_t *)settings.signingKeyPem, settings.signingKeyLen + 1,
                                               HASH_SHA256);
  }
  printSigningKey("every update must be signed by it (ECDSA P-256, SHA-256; arduino-esp32 " ESP_ARDUINO_VERSION_STR ")");
#else
  updatesRefused = true;
#if defined(ESP_ARDUINO_VERSION_STR)
  printSigningKey("but this build (arduino-esp32 " ESP_ARDUINO_VERSION_STR
#if defined(UPDATE_SIGN)
                  ", UPDATE_SIGN"
#else
                  ", without UPDATE_SIGN"
#endif
                  ") cannot check signatures, so NO update is installed: build with arduino-esp32 3.3.8 or later and -DUPDATE_SIGN (build_opt.h)");
#else
  printSigningKey("but this core cannot check signatures, so NO update is installed: build with arduino-esp32 3.3.8 or later and -DUPDATE_SIGN (build_opt.h)");
#endif
#endif
}

// Before each update: installSignature() must come before Update.begin(), which HTTPUpdate calls;
// it only records the pointer, so it is repeated for every update rather than trusted to survive
// the last one. False when the check cannot be installed (the update must not run).
static bool installUpdateVerifier() {
#if OTA_CHECKS_SIGNATURES
  if (signingVerifier != nullptr && !Update.installSignature(signingVerifier)) {
    OTA_LOG("check: the signature check could not be installed; not updating");
    return false;
  }
#endif
  return true;
}

// ---------------------------------------------------------------------------------------------
// Update

static void explainUpdateError(int err) {
  switch (err) {
    case -1:
      OTA_LOG("  = no connection (DNS, TCP or TLS): check the host, the port and that the server runs; see the TLS error below");
      break;
    case -100:
      OTA_LOG("  = the new image does not fit the OTA partition");
      break;
    case -106:
      OTA_LOG("  = the download is not an ESP32 app image");
      break;
    case -108:
      OTA_LOG("  = this partition scheme has no OTA slot: build with one that has two app partitions");
      break;
    case -109:
      OTA_LOG("  = the download's SHA-256 does not match the server's");
      break;
#ifdef UPDATE_ERROR_SIGN
    case UPDATE_ERROR_SIGN:  // 14 (libraries/Update/src/Update.h, 3.3 and later)
      logSignatureRefused(err);
      break;
#endif
    default:
      explainCommonUpdateError(err);
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

// One check of `url` (the scheduler in otaforge_common.h calls it): true when the server answered
// (up to date, or an update was installed).
static bool checkForUpdate(const char *url) {
  if (updatesRefused) {
    // Nothing a sooner retry could change: reported as answered, so the next try comes after the
    // poll interval. The server is not asked, so an image on trial is not confirmed (see "Signed
    // updates").
    OTA_LOG("check: skipped: this image has a signing key but cannot check signatures (see the boot log); no update is installed");
    return true;
  }
  if (!installUpdateVerifier()) return false;
  // Never validate against a clock earlier than the bake or build time.
  if (!clockLooksSet()) setSystemClock(settings.clockFloor);
  logCheckStart(url, "clock", (uint32_t)time(nullptr), ESP.getMaxAllocHeap());

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
    ok = reportUpdateResult(result);
    if (!ok) {
      OTA_LOG("check failed: error %d: %s", err, httpUpdate.getLastErrorString().c_str());
      explainUpdateError(err);
      char tlsText[128];
      const int tlsErr = client.lastError(tlsText, sizeof(tlsText));
      if (tlsErr != 0) {
        OTA_LOG("TLS error -0x%04X: %s", (unsigned)(-tlsErr), tlsText);
        explainTlsError(tlsErr);
      }
    }
  }
  OTA_LOG("check: done; heap %lu free", (unsigned long)ESP.getFreeHeap());
  return ok;
}

// ---------------------------------------------------------------------------------------------
// Boot banner

static void printDeviceArea() {
  switch (areaState) {
    case AREA_VALID:
      OTA_LOG("device settings: read from NVS (namespace \"%s\")", OTAFORGE_NVS_NAMESPACE);
      break;
    case AREA_OTHER_FORMAT:
      OTA_LOG("device settings: NVS holds device settings of format %u (written by a newer OTA Forge), so they are ignored",
              (unsigned)areaFormat);
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
  printImageSettings();
  OTA_LOG("TLS: trusting the OTA Forge CA (%u bytes of PEM); mbedTLS takes full-size records, so the tls_rx/tx buffer settings (%u/%u) are for ESP8266 devices only",
          (unsigned)settings.caPem.length(), (unsigned)settings.tlsRxBuffer, (unsigned)settings.tlsTxBuffer);
  printDeviceArea();
  printNameWifiAndClock("from the device settings in NVS", "from the config block, now kept in NVS");
}

void setup() {
  Serial.begin(OTA_SERIAL_BAUD);
  Serial.println();
  loadSettings();        // the image's: ota_config.h, then the config block
  loadDeviceSettings();  // the board's own name and Wi-Fi win over the image's
  if (settings.deviceName[0] == '\0') defaultDeviceName();
  printBanner();
  setUpSignedUpdates();
  startTrial();

  // Do not rewrite the Wi-Fi driver's copy of the credentials in flash at every boot.
  WiFi.persistent(false);
  // The host name is taken when the station interface is created: set it before mode(). DHCP
  // host names take letters, digits and '-', at most 32 characters.
  char hostname[33];
  sanitizeName(hostname, sizeof(hostname), settings.deviceName);
  if (hostname[0] != '\0') WiFi.setHostname(hostname);
  WiFi.mode(WIFI_STA);

  setUpUpdater(httpUpdate, onUpdateStart, OTA_LED_PIN, OTA_LED_ON);
  startWifi("driver");
}

void loop() {
  enforceTrialDeadline();
  runScheduler();
  // Give the CPU back between passes; the scheduler above is what keeps checks non-blocking.
  delay(10);
}
