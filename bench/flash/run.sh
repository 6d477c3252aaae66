#!/usr/bin/env bash
# Flash benchmark: OTA Forge's flasher against esptool on the same virtual boards, throttled to
# the baud rate. Prints a Markdown table (see bench/README.md, section "Flash").
#
#   bench/flash/run.sh                                  # 1 MiB, 115200 and 921600, ESP8266 and ESP32-C3
#   bench/flash/run.sh --bauds 921600 --rounds 3        # other knobs: --size BYTES --chips esp8266
#   ESPTOOL=/path/to/esptool bench/flash/run.sh
#
# esptool: $ESPTOOL, else target/esptool-venv/bin/esptool (scripts/test installs it there).
set -euo pipefail
cd "$(dirname "$0")/../.."
if [[ -z "${ESPTOOL:-}" && ! -x target/esptool-venv/bin/esptool ]]; then
    echo "esptool not found: installing it into target/esptool-venv" >&2
    python3 -m venv target/esptool-venv && target/esptool-venv/bin/pip install -q esptool
fi
# The link is throttled to the baud rate, so an optimised build changes nothing measurable.
exec cargo run -q -p otaforge --example flash_bench -- "$@"
