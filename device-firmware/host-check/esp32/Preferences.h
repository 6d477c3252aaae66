/* Host syntax-check stub: declarations only. Mirrors in shape arduino-esp32 3.x
 * libraries/Preferences/src/Preferences.h: begin/end, the keys the sketch reads and writes, with
 * the full overload sets of getString/putString. Semantics the sketch relies on
 * (Preferences.cpp): begin(name, true) fails when the namespace does not exist; getString(key,
 * buf, maxLen) copies the text with its NUL and returns that length, or 0 when the key is missing
 * or the text does not fit; putString returns strlen(value) (0 for an empty text). */
#ifndef HOSTCHECK_ESP32_PREFERENCES_H
#define HOSTCHECK_ESP32_PREFERENCES_H

#include <stddef.h>
#include <stdint.h>

#include "Arduino.h"

typedef enum { PT_I8, PT_U8, PT_I16, PT_U16, PT_I32, PT_U32, PT_I64, PT_U64, PT_STR, PT_BLOB, PT_INVALID } PreferenceType;

class Preferences {
public:
    Preferences();
    ~Preferences();

    bool begin(const char *name, bool readOnly = false, const char *partition_label = NULL);
    void end();

    bool clear();
    bool remove(const char *key);

    size_t putUChar(const char *key, uint8_t value);
    size_t putString(const char *key, const char *value);
    size_t putString(const char *key, String value);

    bool isKey(const char *key);
    PreferenceType getType(const char *key);
    uint8_t getUChar(const char *key, uint8_t defaultValue = 0);
    size_t getString(const char *key, char *value, size_t maxLen);
    String getString(const char *key, String defaultValue = String());
};

#endif
