/* Host syntax-check stub: declarations only. Mirrors in shape esp8266/Arduino 3.x
 * libraries/ESP8266WiFi/src/BearSSLHelpers.h: BearSSL::X509List (the trust anchors). */
#ifndef HOSTCHECK_ESP8266_BEARSSLHELPERS_H
#define HOSTCHECK_ESP8266_BEARSSLHELPERS_H

#include <stddef.h>
#include <stdint.h>

namespace BearSSL {

class X509List {
public:
    X509List();
    X509List(const char *pemCert);
    X509List(const uint8_t *derCert, size_t derLen);
    ~X509List();

    bool append(const char *pemCert);
    bool append(const uint8_t *derCert, size_t derLen);

    size_t getCount() const;

    // Disable the copy constructor, we're pointer based
    X509List(const X509List &that) = delete;
    X509List &operator=(const X509List &that) = delete;
};

};  // namespace BearSSL

#endif
