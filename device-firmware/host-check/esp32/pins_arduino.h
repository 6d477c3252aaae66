/* Host syntax-check stub. Mirrors in shape arduino-esp32 3.x variants/<board>/pins_arduino.h as far
 * as the sketch cares: where a board has an LED, LED_BUILTIN is a static const uint8_t plus a
 * same-named macro so `#ifdef LED_BUILTIN` works. Defined only when the check asks for it
 * (-DHOSTCHECK_LED_BUILTIN=n), so both the "LED" and "no LED" paths are compiled. */
#ifndef HOSTCHECK_ESP32_PINS_ARDUINO_H
#define HOSTCHECK_ESP32_PINS_ARDUINO_H

#include <stdint.h>

#ifdef HOSTCHECK_LED_BUILTIN
static const uint8_t LED_BUILTIN = HOSTCHECK_LED_BUILTIN;
#define BUILTIN_LED LED_BUILTIN  // backward compatibility
#define LED_BUILTIN LED_BUILTIN  // allow testing #ifdef LED_BUILTIN
#endif

#endif
