/* Host syntax-check stub, not a port: declarations only, no behaviour.
 * Mirrors in shape arduino-esp32 3.x cores/esp32/Arduino.h (random, configTime, std::min/max) and
 * the parts of esp32-hal-misc (millis, delay), Print.h, HardwareSerial.h and Esp.h that the OTA
 * Forge sketch calls. Only the APIs the sketch uses are declared. */
#ifndef HOSTCHECK_ESP32_ARDUINO_H
#define HOSTCHECK_ESP32_ARDUINO_H

#include <stdint.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <algorithm>
#include <functional>

#define HIGH 0x1
#define LOW 0x0

/* esp32-hal.h */
unsigned long millis();
void delay(uint32_t);

/* Arduino.h: WMath prototypes and the SNTP helper (esp32-hal-time.c) */
long random(long, long);
long random(long);
extern "C" void configTime(long gmtOffset_sec, int daylightOffset_sec, const char *server1,
                           const char *server2 = nullptr, const char *server3 = nullptr);

using std::max;
using std::min;

#include "pgmspace.h"
#include "WString.h"

/* cores/esp32/Print.h */
class Print {
public:
    size_t printf(const char *format, ...) __attribute__((format(printf, 2, 3)));
    size_t println(void);
};

/* cores/esp32/HardwareSerial.h (esp32-hal-uart.h's SERIAL_8N1) */
#define SERIAL_8N1 0x800001c
class HardwareSerial : public Print {
public:
    void begin(unsigned long baud, uint32_t config = SERIAL_8N1, int8_t rxPin = -1, int8_t txPin = -1,
               bool invert = false, unsigned long timeout_ms = 20000UL, uint8_t rxfifo_full_thrhd = 120);
    void flush(void);
};
extern HardwareSerial Serial;

/* cores/esp32/Esp.h */
class EspClass {
public:
    void restart();
    uint32_t getFreeHeap();
    uint32_t getMaxAllocHeap();
    const char *getChipModel();
    uint64_t getEfuseMac();
};
extern EspClass ESP;

#include "pins_arduino.h"

#endif
