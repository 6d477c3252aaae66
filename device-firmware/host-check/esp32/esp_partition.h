/* Host syntax-check stub: declarations only. Mirrors in shape ESP-IDF 5.x
 * components/esp_partition/include/esp_partition.h: the partition record (the sketch prints its
 * label). The type and subtype enums are reduced to their type names. */
#ifndef HOSTCHECK_ESP32_ESP_PARTITION_H
#define HOSTCHECK_ESP32_ESP_PARTITION_H

#include <stdbool.h>
#include <stdint.h>

#include "esp_err.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct esp_flash_t esp_flash_t;

typedef enum { ESP_PARTITION_TYPE_APP = 0x00, ESP_PARTITION_TYPE_DATA = 0x01, ESP_PARTITION_TYPE_ANY = 0xff } esp_partition_type_t;
typedef enum { ESP_PARTITION_SUBTYPE_ANY = 0xff } esp_partition_subtype_t;

typedef struct {
    esp_flash_t *flash_chip;
    esp_partition_type_t type;
    esp_partition_subtype_t subtype;
    uint32_t address;
    uint32_t size;
    uint32_t erase_size;
    char label[17];
    bool encrypted;
    bool readonly;
} esp_partition_t;

#ifdef __cplusplus
}
#endif

#endif
