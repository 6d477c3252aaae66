/* Host syntax-check stub, not a port: declarations only, no behaviour.
 * Mirrors in shape esp8266/Arduino 3.x cores/esp8266/Arduino.h (timing, random, configTime,
 * std::min/max, flash_hal.h in FLASH_MAP_SUPPORT builds), with the parts of cores/esp8266/Print.h,
 * HardwareSerial.h and Esp.h that the OTA Forge sketch calls. Only the APIs the sketch uses are declared. */
#ifndef HOSTCHECK_ESP8266_ARDUINO_H
#define HOSTCHECK_ESP8266_ARDUINO_H

#include <stdint.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <algorithm>
#include <functional>

#define HIGH 0x1
#define LOW 0x0

unsigned long millis(void);
void delay(unsigned long ms);

/* WMath prototypes */
long random(long);
long random(long, long);

/* configures with approximated TZ value. part of the old api */
void configTime(int timezone, int daylightOffset_sec, const char *server1, const char *server2 = nullptr,
                const char *server3 = nullptr);
void configTime(const char *tz, const char *server1, const char *server2 = nullptr, const char *server3 = nullptr);

/* Arduino.h includes flash_hal.h only in the "Mapping defined by Hardware and Sketch" mode */
#if FLASH_MAP_SUPPORT
#include "flash_hal.h"
#endif

using std::max;
using std::min;

#include "pgmspace.h"
#include "WString.h"

/* cores/esp8266/Print.h */
class Print {
public:
    size_t printf(const char *format, ...) __attribute__((format(printf, 2, 3)));
    size_t printf_P(PGM_P format, ...) __attribute__((format(printf, 2, 3)));
    size_t println(void);
};

/* cores/esp8266/HardwareSerial.h */
class HardwareSerial : public Print {
public:
    void begin(unsigned long baud);
    void flush(void);
};
extern HardwareSerial Serial;

/* cores/esp8266/Esp.h (the flash functions with their full overload sets) */
class EspClass {
public:
    static void restart();
    static uint32_t getChipId();
    static uint32_t getFreeHeap();
    static uint32_t getMaxFreeBlockSize();
    static String getResetReason();

    static bool flashEraseSector(uint32_t sector);
    static bool flashWrite(uint32_t address, const uint32_t *data, size_t size);
    static bool flashWrite(uint32_t address, const uint8_t *data, size_t size);
    static bool flashRead(uint32_t address, uint32_t *data, size_t size);
    static bool flashRead(uint32_t address, uint8_t *data, size_t size);
};
extern EspClass ESP;

#include "pins_arduino.h"

#endif
