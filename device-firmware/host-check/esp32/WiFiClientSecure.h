/* Host syntax-check stub. Mirrors arduino-esp32 3.x libraries/NetworkClientSecure/src/WiFiClientSecure.h:
 * WiFiClientSecure is the NetworkClientSecure class under its old name. */
#pragma once
#include "NetworkClientSecure.h"
typedef NetworkClientSecure WiFiClientSecure;
