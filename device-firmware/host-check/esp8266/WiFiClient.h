/* Host syntax-check stub: declarations only. Mirrors in shape esp8266/Arduino 3.x
 * libraries/ESP8266WiFi/src/WiFiClient.h: the base class ESP8266httpUpdate takes. */
#ifndef HOSTCHECK_ESP8266_WIFICLIENT_H
#define HOSTCHECK_ESP8266_WIFICLIENT_H

class WiFiClient {
public:
    WiFiClient();
    virtual ~WiFiClient();
};

#endif
