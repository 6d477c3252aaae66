/* Host syntax-check stub: declarations only. Mirrors in shape esp8266/Arduino 3.x
 * libraries/ESP8266WiFi/src/WiFiClientSecureBearSSL.h: BearSSL::WiFiClientSecure with the setters
 * the sketch calls (trust anchors, X.509 time, buffer sizes) and getLastSSLError. */
#ifndef HOSTCHECK_ESP8266_WIFICLIENTSECUREBEARSSL_H
#define HOSTCHECK_ESP8266_WIFICLIENTSECUREBEARSSL_H

#include <stddef.h>
#include <time.h>

#include "WiFiClient.h"
#include "BearSSLHelpers.h"

namespace BearSSL {

class WiFiClientSecure : public WiFiClient {
public:
    WiFiClientSecure();
    WiFiClientSecure(const WiFiClientSecure &rhs);
    ~WiFiClientSecure() override;

    // Install certificates of trusted CAs or specific site
    void setTrustAnchors(const X509List *ta);
    // In cases when NTP is not used, app must set a time manually to check cert validity
    void setX509Time(time_t now);
    // Sets the requested buffer size for transmit and receive
    void setBufferSizes(int recv, int xmit);
    // Return an error code and possibly a text string in a passed-in buffer with last SSL failure
    int getLastSSLError(char *dest = NULL, size_t len = 0);
};

};  // namespace BearSSL

#endif
