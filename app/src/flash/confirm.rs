//! Server-side confirmation of ESP8266 flashes.
