/* Host syntax-check stub: declarations only. Mirrors in shape ESP-IDF 5.x
 * components/app_update/include/esp_ota_ops.h: the running partition, its OTA state, and the
 * two rollback decisions, with C linkage like the real header. */
#ifndef HOSTCHECK_ESP32_ESP_OTA_OPS_H
#define HOSTCHECK_ESP32_ESP_OTA_OPS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "esp_err.h"
#include "esp_flash_partitions.h"
#include "esp_partition.h"

#ifdef __cplusplus
extern "C" {
#endif

const esp_partition_t *esp_ota_get_running_partition(void);
esp_err_t esp_ota_mark_app_valid_cancel_rollback(void);
esp_err_t esp_ota_mark_app_invalid_rollback_and_reboot(void);
esp_err_t esp_ota_get_state_partition(const esp_partition_t *partition, esp_ota_img_states_t *ota_state);

#ifdef __cplusplus
}
#endif

#endif
