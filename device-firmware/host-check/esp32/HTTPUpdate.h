/* Host syntax-check stub: declarations only. Mirrors in shape arduino-esp32 3.x
 * libraries/HTTPUpdate/src/HTTPUpdate.h: the result enum, the callback types and the HTTPUpdate
 * members the sketch calls (with the full update() overload set, which takes a NetworkClient and
 * an optional request callback in 3.x). Like the real header it includes Update.h: getLastError()
 * above 0 is the Update library's code (runUpdate() copies Update.getError() after a failed
 * begin(), writeStream() or end()), e.g. UPDATE_ERROR_SIGN. */
#ifndef HOSTCHECK_ESP32_HTTP_UPDATE_H
#define HOSTCHECK_ESP32_HTTP_UPDATE_H

#include <functional>

#include <Arduino.h>
#include <Network.h>
#include <Update.h>

class HTTPClient; /* HTTPClient.h */

enum HTTPUpdateResult { HTTP_UPDATE_FAILED, HTTP_UPDATE_NO_UPDATES, HTTP_UPDATE_OK };

typedef HTTPUpdateResult t_httpUpdate_return;  // backward compatibility

using HTTPUpdateStartCB = std::function<void()>;
using HTTPUpdateRequestCB = std::function<void(HTTPClient *)>;
using HTTPUpdateEndCB = std::function<void()>;
using HTTPUpdateErrorCB = std::function<void(int)>;
using HTTPUpdateProgressCB = std::function<void(int, int)>;

class HTTPUpdate {
public:
    void rebootOnUpdate(bool reboot);
    void setLedPin(int ledPin = -1, uint8_t ledOn = HIGH);

    t_httpUpdate_return update(NetworkClient &client, const String &url, const String &currentVersion = "",
                               HTTPUpdateRequestCB requestCB = NULL);
    t_httpUpdate_return update(NetworkClient &client, const String &host, uint16_t port, const String &uri = "/",
                               const String &currentVersion = "", HTTPUpdateRequestCB requestCB = NULL);
    t_httpUpdate_return update(HTTPClient &httpClient, const String &currentVersion = "",
                               HTTPUpdateRequestCB requestCB = NULL);

    // Notification callbacks
    void onStart(HTTPUpdateStartCB cbOnStart);
    void onEnd(HTTPUpdateEndCB cbOnEnd);
    void onError(HTTPUpdateErrorCB cbOnError);
    void onProgress(HTTPUpdateProgressCB cbOnProgress);

    int getLastError(void);
    String getLastErrorString(void);
};

extern HTTPUpdate httpUpdate;

#endif
