/* Host syntax-check stub: declarations only. Mirrors in shape esp8266/Arduino 3.x
 * libraries/ESP8266WiFi/src/ESP8266WiFi.h and the class parts it pulls in (ESP8266WiFiGeneric.h,
 * ESP8266WiFiSTA.h, LwipIntf.h, ESP8266WiFiType.h, cores/esp8266/wl_definitions.h), limited to
 * what the sketch calls, with their full overload sets. Like the real header it brings in the
 * BearSSL client. */
#ifndef HOSTCHECK_ESP8266WIFI_H
#define HOSTCHECK_ESP8266WIFI_H

#include <stdint.h>

#include <Arduino.h>
#include "IPAddress.h"
#include "WiFiClient.h"
#include "BearSSLHelpers.h"
#include "WiFiClientSecureBearSSL.h"

/* wl_definitions.h */
typedef enum {
    WL_NO_SHIELD = 255,
    WL_IDLE_STATUS = 0,
    WL_NO_SSID_AVAIL = 1,
    WL_SCAN_COMPLETED = 2,
    WL_CONNECTED = 3,
    WL_CONNECT_FAILED = 4,
    WL_CONNECTION_LOST = 5,
    WL_WRONG_PASSWORD = 6,
    WL_DISCONNECTED = 7
} wl_status_t;

/* ESP8266WiFiType.h */
typedef enum WiFiMode { WIFI_OFF = 0, WIFI_STA = 1, WIFI_AP = 2, WIFI_AP_STA = 3 } WiFiMode_t;

class ESP8266WiFiClass {
public:
    /* ESP8266WiFiGeneric.h */
    static void persistent(bool persistent);
    bool mode(WiFiMode_t);

    /* ESP8266WiFiSTA.h */
    wl_status_t begin(const char *ssid, const char *passphrase = NULL, int32_t channel = 0, const uint8_t *bssid = NULL,
                      bool connect = true);
    wl_status_t begin(char *ssid, char *passphrase = NULL, int32_t channel = 0, const uint8_t *bssid = NULL,
                      bool connect = true);
    wl_status_t begin(const String &ssid, const String &passphrase, int32_t channel = 0, const uint8_t *bssid = NULL,
                      bool connect = true);
    wl_status_t begin();
    bool setAutoReconnect(bool autoReconnect);
    IPAddress localIP();
    uint8_t *macAddress(uint8_t *mac);
    String macAddress();
    wl_status_t status();
    int8_t RSSI();

    /* LwipIntf.h */
    String hostname();
    bool hostname(const String &aHostname);
    bool hostname(const char *aHostname);
};
extern ESP8266WiFiClass WiFi;

#endif
