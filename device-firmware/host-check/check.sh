#!/usr/bin/env bash
# Compiles both sketches on the host against the stub headers, with ota_config.h.example as
# ota_config.h. The same check as `cargo test --test firmware sketches`, without Rust.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
fw="$(dirname "$here")"
cxx="${CXX:-g++}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

check() { # name folder define stubs variant-flags led...
  local name=$1 folder=$2 define=$3 stubs=$4 variants=$5
  shift 5
  mkdir -p "$work/$name"
  cp "$fw/$folder/$name.ino" "$work/$name/$name.cpp"
  cp "$fw/$folder/otaforge_config_block.h" "$fw/$folder/otaforge_device_settings.h" "$fw/$folder/otaforge_common.h" \
    "$work/$name/"
  cp "$fw/$folder/ota_config.h.example" "$work/$name/ota_config.h"
  for led in "$@"; do
    local flags=()
    [ -n "$led" ] && flags+=("-DHOSTCHECK_LED_BUILTIN=$led")
    "$cxx" -std=gnu++17 -fsyntax-only -Wall -Wextra -Werror -I "$here/$stubs" "-D$define" ${flags[@]+"${flags[@]}"} \
      "$work/$name/$name.cpp"
  done
  for variant in $variants; do
    "$cxx" -std=gnu++17 -fsyntax-only -Wall -Wextra -Werror -I "$here/$stubs" "-D$define" "$variant" "$work/$name/$name.cpp"
  done
  "$cxx" -std=gnu++17 -O2 -c -o "$work/$name/$name.o" -Wall -Wextra -Werror -I "$here/$stubs" "-D$define" \
    "$work/$name/$name.cpp"
  echo "$name: OK"
}

check otaforge_esp8266 esp8266/otaforge_esp8266 ESP8266 esp8266 "-DFLASH_MAP_SUPPORT=1" "" 2 1
check otaforge_esp32 esp32/otaforge_esp32 ESP32 esp32 "" "" 8
