/* Host syntax-check stub: declarations only. Mirrors in shape arduino-esp32 3.x
 * cores/esp32/IPAddress.h: the sketch only prints an address. */
#ifndef HOSTCHECK_ESP32_IPADDRESS_H
#define HOSTCHECK_ESP32_IPADDRESS_H

#include "WString.h"

class IPAddress {
public:
    String toString(bool includeZone = false) const;
};

#endif
