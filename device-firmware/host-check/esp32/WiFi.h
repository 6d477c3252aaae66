/* Host syntax-check stub: declarations only. Mirrors in shape arduino-esp32 3.x
 * libraries/WiFi/src/WiFi.h and the class parts it pulls in (WiFiGeneric.h, WiFiSTA.h,
 * WiFiType.h, esp_wifi_types.h's wifi_mode_t), limited to what the sketch calls, with their full
 * overload sets. */
#ifndef HOSTCHECK_ESP32_WIFI_H
#define HOSTCHECK_ESP32_WIFI_H

#include <stdint.h>

#include <Arduino.h>
#include "IPAddress.h"
#include "Network.h"

/* esp_wifi_types.h */
typedef enum {
    WIFI_MODE_NULL = 0,
    WIFI_MODE_STA,
    WIFI_MODE_AP,
    WIFI_MODE_APSTA,
    WIFI_MODE_NAN,
    WIFI_MODE_MAX
} wifi_mode_t;

/* WiFiType.h */
#define WIFI_OFF WIFI_MODE_NULL
#define WIFI_STA WIFI_MODE_STA
#define WIFI_AP WIFI_MODE_AP
#define WIFI_AP_STA WIFI_MODE_APSTA

typedef enum {
    WL_NO_SHIELD = 255,
    WL_STOPPED = 254,
    WL_IDLE_STATUS = 0,
    WL_NO_SSID_AVAIL = 1,
    WL_SCAN_COMPLETED = 2,
    WL_CONNECTED = 3,
    WL_CONNECT_FAILED = 4,
    WL_CONNECTION_LOST = 5,
    WL_DISCONNECTED = 6
} wl_status_t;

class WiFiClass {
public:
    /* WiFiGeneric.h */
    void persistent(bool persistent);
    static bool mode(wifi_mode_t);
    static bool setHostname(const char *hostname);

    /* WiFiSTA.h */
    wl_status_t begin(const char *ssid, const char *passphrase = NULL, int32_t channel = 0, const uint8_t *bssid = NULL,
                      bool connect = true);
    wl_status_t begin(const String &ssid, const String &passphrase = (const char *)NULL, int32_t channel = 0,
                      const uint8_t *bssid = NULL, bool connect = true);
    wl_status_t begin();
    bool setAutoReconnect(bool autoReconnect);
    wl_status_t status();
    int8_t RSSI();
    IPAddress localIP();
    uint8_t *macAddress(uint8_t *mac);
    String macAddress();
};
extern WiFiClass WiFi;

#endif
