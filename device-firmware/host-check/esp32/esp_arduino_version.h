/* Host syntax-check stub. Mirrors arduino-esp32 cores/esp32/esp_arduino_version.h (2.x and 3.x):
 * the version macros, with the same ESP_ARDUINO_VERSION_VAL encoding. The version is the check's
 * choice: 3.3.8 unless -DHOSTCHECK_ESP_ARDUINO_VERSION_MAJOR/_MINOR/_PATCH say otherwise, so both
 * sides of the sketch's version tests are compiled. (The core's Arduino.h includes this header;
 * the stub Arduino.h does not, so Update.h and the sketch include it by name, which the real core
 * allows too.) */
#pragma once

#ifndef HOSTCHECK_ESP_ARDUINO_VERSION_MAJOR
#define HOSTCHECK_ESP_ARDUINO_VERSION_MAJOR 3
#endif
#ifndef HOSTCHECK_ESP_ARDUINO_VERSION_MINOR
#define HOSTCHECK_ESP_ARDUINO_VERSION_MINOR 3
#endif
#ifndef HOSTCHECK_ESP_ARDUINO_VERSION_PATCH
#define HOSTCHECK_ESP_ARDUINO_VERSION_PATCH 8
#endif

/** Major version number (X.x.x) */
#define ESP_ARDUINO_VERSION_MAJOR HOSTCHECK_ESP_ARDUINO_VERSION_MAJOR
/** Minor version number (x.X.x) */
#define ESP_ARDUINO_VERSION_MINOR HOSTCHECK_ESP_ARDUINO_VERSION_MINOR
/** Patch version number (x.x.X) */
#define ESP_ARDUINO_VERSION_PATCH HOSTCHECK_ESP_ARDUINO_VERSION_PATCH

#define ESP_ARDUINO_VERSION_VAL(major, minor, patch) ((major << 16) | (minor << 8) | (patch))

#define ESP_ARDUINO_VERSION \
    ESP_ARDUINO_VERSION_VAL(ESP_ARDUINO_VERSION_MAJOR, ESP_ARDUINO_VERSION_MINOR, ESP_ARDUINO_VERSION_PATCH)

#define df2xstr(s) #s
#define df2str(s) df2xstr(s)
#define ESP_ARDUINO_VERSION_STR \
    df2str(ESP_ARDUINO_VERSION_MAJOR) "." df2str(ESP_ARDUINO_VERSION_MINOR) "." df2str(ESP_ARDUINO_VERSION_PATCH)
