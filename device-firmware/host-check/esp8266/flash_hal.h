/* Host syntax-check stub: declarations only. Mirrors in shape esp8266/Arduino 3.1.x
 * cores/esp8266/flash_hal.h (with FlashMap.h's flash_map_s): the EEPROM_start macro the sketch
 * uses in FLASH_MAP_SUPPORT builds ("Mapping defined by Hardware and Sketch"), where the layout is
 * looked up per chip size in __flashdesc[] instead of coming from linker symbols. */
#ifndef HOSTCHECK_ESP8266_FLASH_HAL_H
#define HOSTCHECK_ESP8266_FLASH_HAL_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* cores/esp8266/FlashMap.h */
typedef struct {
    uint32_t eeprom_start;
    uint32_t fs_start;
    uint32_t fs_end;
    uint32_t fs_block_size;
    uint32_t fs_page_size;
    uint32_t flash_size_kb;
} flash_map_s;

#if FLASH_MAP_SUPPORT
extern uint32_t __flashindex;
extern const flash_map_s __flashdesc[];

#define EEPROM_start (__flashdesc[__flashindex].eeprom_start)
#define FS_start (__flashdesc[__flashindex].fs_start)
#define FS_end (__flashdesc[__flashindex].fs_end)
#define FS_block (__flashdesc[__flashindex].fs_block_size)
#define FS_page (__flashdesc[__flashindex].fs_page_size)
#else
extern uint32_t _FS_start;
extern uint32_t _FS_end;
extern uint32_t _FS_page;
extern uint32_t _FS_block;
extern uint32_t _EEPROM_start;
/* The core casts the symbol's address to uint32_t (a 32-bit pointer on the chip); through
 * uintptr_t here so that a 64-bit host accepts the cast. */
#define EEPROM_start ((uint32_t)(uintptr_t)&_EEPROM_start)
#define FS_start ((uint32_t)(uintptr_t)&_FS_start)
#define FS_end ((uint32_t)(uintptr_t)&_FS_end)
#define FS_page ((uint32_t)(uintptr_t)&_FS_page)
#define FS_block ((uint32_t)(uintptr_t)&_FS_block)
#endif

#ifdef __cplusplus
}
#endif

#endif
