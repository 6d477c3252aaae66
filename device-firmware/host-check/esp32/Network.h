/* Host syntax-check stub: declarations only. Mirrors in shape arduino-esp32 3.x
 * libraries/Network/src/Network.h, as far as the sketch needs it: NetworkClient
 * (NetworkClient.h), the client type HTTPUpdate takes. */
#ifndef HOSTCHECK_ESP32_NETWORK_H
#define HOSTCHECK_ESP32_NETWORK_H

#include <Arduino.h>
#include "IPAddress.h"

class NetworkClient {
public:
    NetworkClient();
    virtual ~NetworkClient();
};

#endif
