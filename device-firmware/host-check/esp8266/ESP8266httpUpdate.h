/* Host syntax-check stub: declarations only. Mirrors in shape esp8266/Arduino 3.x
 * libraries/ESP8266httpUpdate/src/ESP8266httpUpdate.h: the result enum, the callback types and
 * the ESP8266HTTPUpdate members the sketch calls (with the full update() overload set). The
 * HTTP_UE_* error constants are not declared: they are constexpr ints in 3.1.x and an enum in
 * later versions, so the sketch uses the numbers. getLastError() above 0 is the Updater's code
 * (UPDATE_ERROR_* in Updater.h, which ESP8266WiFi.h brings in through BearSSLHelpers.h): the
 * library copies Update.getError() after a failed begin(), write or end(). */
#ifndef HOSTCHECK_ESP8266HTTPUPDATE_H
#define HOSTCHECK_ESP8266HTTPUPDATE_H

#include <functional>

#include <Arduino.h>
#include <ESP8266WiFi.h>

class HTTPClient; /* ESP8266HTTPClient.h */

enum HTTPUpdateResult { HTTP_UPDATE_FAILED, HTTP_UPDATE_NO_UPDATES, HTTP_UPDATE_OK };

typedef HTTPUpdateResult t_httpUpdate_return;  // backward compatibility

using HTTPUpdateStartCB = std::function<void()>;
using HTTPUpdateEndCB = std::function<void()>;
using HTTPUpdateErrorCB = std::function<void(int)>;
using HTTPUpdateProgressCB = std::function<void(int, int)>;

class ESP8266HTTPUpdate {
public:
    void rebootOnUpdate(bool reboot);
    void setLedPin(int ledPin = -1, uint8_t ledOn = HIGH);

    t_httpUpdate_return update(WiFiClient &client, const String &url, const String &currentVersion = "");
    t_httpUpdate_return update(WiFiClient &client, const String &host, uint16_t port, const String &uri = "/",
                               const String &currentVersion = "");
    t_httpUpdate_return update(HTTPClient &httpClient, const String &currentVersion = "");

    // Notification callbacks
    void onStart(HTTPUpdateStartCB cbOnStart);
    void onEnd(HTTPUpdateEndCB cbOnEnd);
    void onError(HTTPUpdateErrorCB cbOnError);
    void onProgress(HTTPUpdateProgressCB cbOnProgress);

    int getLastError(void);
    String getLastErrorString(void);
};

extern ESP8266HTTPUpdate ESPhttpUpdate;

#endif
