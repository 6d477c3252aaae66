/* Host syntax-check stub: declarations only. Mirrors in shape arduino-esp32 3.x
 * cores/esp32/pgmspace.h: on the ESP32 flash is memory-mapped, PROGMEM is empty, PSTR is the
 * literal itself and the _P functions the sketch calls are the plain ones. */
#ifndef HOSTCHECK_ESP32_PGMSPACE_H
#define HOSTCHECK_ESP32_PGMSPACE_H

#define PROGMEM
#define PGM_P const char *
#define PSTR(s) (s)

#define memcpy_P memcpy
#define printf_P printf

#endif
