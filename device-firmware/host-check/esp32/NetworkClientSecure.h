/* Host syntax-check stub: declarations only. Mirrors in shape arduino-esp32 3.x
 * libraries/NetworkClientSecure/src/NetworkClientSecure.h: the CA setter (which keeps the
 * caller's pointer, not a copy), the handshake timeout (seconds; the .cpp multiplies by 1000 and
 * defaults to 120000 ms) and lastError. */
#ifndef HOSTCHECK_ESP32_NETWORKCLIENTSECURE_H
#define HOSTCHECK_ESP32_NETWORKCLIENTSECURE_H

#include <stddef.h>

#include "Arduino.h"
#include "IPAddress.h"
#include "Network.h"

class NetworkClientSecure : public NetworkClient {
public:
    NetworkClientSecure();
    ~NetworkClientSecure();
    int lastError(char *buf, const size_t size);
    void setCACert(const char *rootCA);
    void setHandshakeTimeout(unsigned long handshake_timeout);
};

#endif
