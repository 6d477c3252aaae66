/* Host syntax-check stub: declarations only. Mirrors in shape esp8266/Arduino 3.x
 * cores/esp8266/Updater.h (3.1.2; the same since 2.6.0 as far as the sketch cares): the error codes
 * (UPDATE_ERROR_SIGN is 12), the two abstract classes a signed update plugs in, and the
 * UpdaterClass members the sketch calls. In the core installSignature() is an inline setter
 * ({ _hash = hash; _verify = verify; }, returning void); here it is only declared, so a host test
 * can define it and see what the sketch installed. Like the real header, BearSSLHelpers.h includes
 * this one. */
#ifndef HOSTCHECK_ESP8266_UPDATER_H
#define HOSTCHECK_ESP8266_UPDATER_H

#include <stddef.h>
#include <stdint.h>

#include <functional>

#include <Arduino.h>

#define UPDATE_ERROR_OK (0)
#define UPDATE_ERROR_WRITE (1)
#define UPDATE_ERROR_ERASE (2)
#define UPDATE_ERROR_READ (3)
#define UPDATE_ERROR_SPACE (4)
#define UPDATE_ERROR_SIZE (5)
#define UPDATE_ERROR_STREAM (6)
#define UPDATE_ERROR_MD5 (7)
#define UPDATE_ERROR_FLASH_CONFIG (8)
#define UPDATE_ERROR_NEW_FLASH_CONFIG (9)
#define UPDATE_ERROR_MAGIC_BYTE (10)
#define UPDATE_ERROR_BOOTSTRAP (11)
#define UPDATE_ERROR_SIGN (12)
#define UPDATE_ERROR_NO_DATA (13)
#define UPDATE_ERROR_OOM (14)

// Abstract class to implement whatever signing hash desired
class UpdaterHashClass {
public:
    virtual void begin() = 0;
    virtual void add(const void *data, uint32_t len) = 0;
    virtual void end() = 0;
    virtual int len() = 0;
    virtual const void *hash() = 0;
    virtual const unsigned char *oid() = 0;
};

// Abstract class to implement a signature verifier
class UpdaterVerifyClass {
public:
    virtual uint32_t length() = 0;  // How many bytes of signature are expected
    virtual bool verify(UpdaterHashClass *hash, const void *signature, uint32_t signatureLen) = 0;
};

class UpdaterClass {
public:
    UpdaterClass();
    ~UpdaterClass();

    /* Optionally add a cryptographic signature verification hash and method */
    void installSignature(UpdaterHashClass *hash, UpdaterVerifyClass *verify);

    uint8_t getError();
};

extern UpdaterClass Update;

#endif
