/* Host syntax-check stub: declarations only. Mirrors in shape esp8266/Arduino 3.x
 * cores/esp8266/WString.h: String with the constructors, assignments and accessors the sketch
 * uses, __FlashStringHelper and FPSTR/F. */
#ifndef HOSTCHECK_ESP8266_WSTRING_H
#define HOSTCHECK_ESP8266_WSTRING_H

class __FlashStringHelper;
#define FPSTR(pstr_pointer) (reinterpret_cast<const __FlashStringHelper *>(pstr_pointer))
#define F(string_literal) (FPSTR(PSTR(string_literal)))

class String {
public:
    String();
    String(const char *cstr);
    String(const String &str);
    String(const __FlashStringHelper *str);
    ~String();

    String &operator=(const String &rhs);
    String &operator=(const char *cstr);
    String &operator=(const __FlashStringHelper *str);

    unsigned int length(void) const;
    const char *c_str() const;
};

#endif
