/* Host syntax-check stub: declarations only. Mirrors in shape arduino-esp32 3.x
 * cores/esp32/WString.h: String with the constructors, assignments and accessors the sketch uses,
 * __FlashStringHelper and FPSTR. */
#ifndef HOSTCHECK_ESP32_WSTRING_H
#define HOSTCHECK_ESP32_WSTRING_H

class __FlashStringHelper;
#define FPSTR(str_pointer) (reinterpret_cast<const __FlashStringHelper *>(str_pointer))

class String {
public:
    String(const char *cstr = "");
    String(const String &str);
    String(const __FlashStringHelper *str);
    ~String(void);

    String &operator=(const String &rhs);
    String &operator=(const char *cstr);
    String &operator=(const __FlashStringHelper *str);

    unsigned int length(void) const;
    const char *c_str() const;
};

#endif
