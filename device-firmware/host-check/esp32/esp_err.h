/* Host syntax-check stub: declarations only. Mirrors in shape ESP-IDF 5.x
 * components/esp_common/include/esp_err.h: esp_err_t, ESP_OK/ESP_FAIL, esp_err_to_name. */
#ifndef HOSTCHECK_ESP32_ESP_ERR_H
#define HOSTCHECK_ESP32_ESP_ERR_H

#ifdef __cplusplus
extern "C" {
#endif

typedef int esp_err_t;

#define ESP_OK 0
#define ESP_FAIL -1

const char *esp_err_to_name(esp_err_t code);

#ifdef __cplusplus
}
#endif

#endif
