/* Host syntax-check stub: declarations only. Mirrors in shape esp8266/Arduino 3.x
 * cores/esp8266/pgmspace.h (and newlib's sys/pgmspace.h it includes): PROGMEM places data in
 * flash (a named section here too), PSTR, PGM_P, memcpy_P. */
#ifndef HOSTCHECK_ESP8266_PGMSPACE_H
#define HOSTCHECK_ESP8266_PGMSPACE_H

#include <stddef.h>

#define PROGMEM __attribute__((section(".irom.text.hostcheck")))
#define PGM_P const char *
#define PGM_VOID_P const void *
/* On the device PSTR puts the literal in flash; here it stays a literal so -Wformat can check the
 * OTA_LOG formats. */
#define PSTR(s) (s)

void *memcpy_P(void *dest, PGM_VOID_P src, size_t n);
size_t strlen_P(PGM_P s);

#endif
