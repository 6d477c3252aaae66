/* Host syntax-check stub: declarations only. Mirrors in shape esp8266/Arduino 3.x
 * cores/esp8266/IPAddress.h: the sketch only prints an address. */
#ifndef HOSTCHECK_ESP8266_IPADDRESS_H
#define HOSTCHECK_ESP8266_IPADDRESS_H

#include "WString.h"

class IPAddress {
public:
    String toString() const;
};

#endif
