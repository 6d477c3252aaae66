/* Host syntax-check stub: declarations only. Mirrors in shape arduino-esp32 3.x
 * libraries/Update/src/Update.h, as far as the sketch cares: the global Update, its error
 * code, and the signed-update hook. What exists follows the core version the check compiles for
 * (esp_arduino_version.h): UPDATE_ERROR_SIGN (14) and, only in builds with UPDATE_SIGN,
 * Updater_Signing.h and UpdateClass::installSignature(UpdaterVerifyClass *) appear in 3.3; older
 * cores have neither, so a sketch that calls them without checking the version fails here. */
#ifndef HOSTCHECK_ESP32_UPDATE_H
#define HOSTCHECK_ESP32_UPDATE_H

#include <stddef.h>
#include <stdint.h>

#include <Arduino.h>
#include "esp_arduino_version.h"

#if ESP_ARDUINO_VERSION >= ESP_ARDUINO_VERSION_VAL(3, 3, 0)
#ifdef UPDATE_SIGN
#include "Updater_Signing.h"
#endif /* UPDATE_SIGN */
#define UPDATE_ERROR_SIGN (14) /* Signature verification failed */
#endif

class UpdateClass {
public:
    UpdateClass();

#if ESP_ARDUINO_VERSION >= ESP_ARDUINO_VERSION_VAL(3, 3, 0) && defined(UPDATE_SIGN)
    /* Call before begin() to enable signature verification; false while an update runs or when
     * the verifier's hash type is not SHA-256/384/512. The verifier is kept by pointer. */
    bool installSignature(UpdaterVerifyClass *sign);
#endif

    uint8_t getError();
};

extern UpdateClass Update;

#endif
