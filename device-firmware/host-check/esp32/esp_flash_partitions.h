/* Host syntax-check stub: declarations only. Mirrors in shape ESP-IDF 5.x
 * components/bootloader_support/include/esp_flash_partitions.h: the OTA image states, with their
 * numbers. */
#ifndef HOSTCHECK_ESP32_ESP_FLASH_PARTITIONS_H
#define HOSTCHECK_ESP32_ESP_FLASH_PARTITIONS_H

typedef enum {
    ESP_OTA_IMG_NEW = 0x0U,
    ESP_OTA_IMG_PENDING_VERIFY = 0x1U,
    ESP_OTA_IMG_VALID = 0x2U,
    ESP_OTA_IMG_INVALID = 0x3U,
    ESP_OTA_IMG_ABORTED = 0x4U,
    ESP_OTA_IMG_UNDEFINED = 0xFFFFFFFFU,
} esp_ota_img_states_t;

#endif
