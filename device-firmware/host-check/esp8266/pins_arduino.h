/* Host syntax-check stub. Mirrors in shape esp8266/Arduino 3.x variants/<board>/pins_arduino.h as
 * far as the sketch cares: LED_BUILTIN, defined only when the check asks for it
 * (-DHOSTCHECK_LED_BUILTIN=2 like variants/nodemcu, =1 like variants/generic), so both the
 * "board has an LED" and "board has none" paths are compiled. */
#ifndef HOSTCHECK_ESP8266_PINS_ARDUINO_H
#define HOSTCHECK_ESP8266_PINS_ARDUINO_H

#ifdef HOSTCHECK_LED_BUILTIN
#define LED_BUILTIN HOSTCHECK_LED_BUILTIN
#endif

#endif
