/* Host syntax-check stub: declarations only. Mirrors in shape esp8266/Arduino 3.x
 * libraries/ESP8266WiFi/src/BearSSLHelpers.h: BearSSL::X509List (the trust anchors), and the
 * signed-update plug-ins: BearSSL::PublicKey (PEM or DER, RAM or PROGMEM; it copies the key),
 * BearSSL::HashSHA256 and BearSSL::SigningVerifier (whose constructor, inline in the core, takes a
 * reference on the BearSSL second stack). Like the real header it includes Updater.h, which
 * declares the classes the last two implement. */
#ifndef HOSTCHECK_ESP8266_BEARSSLHELPERS_H
#define HOSTCHECK_ESP8266_BEARSSLHELPERS_H

#include <stddef.h>
#include <stdint.h>

#include <Updater.h>

class Stream; /* cores/esp8266/Stream.h */

namespace BearSSL {

// Holds either a single public RSA or EC key for use when BearSSL wants a pubkey.
// Copies all associated data so no need to keep input PEM/DER keys.
// All inputs can be either in RAM or PROGMEM.
class PublicKey {
public:
    PublicKey();
    PublicKey(const char *pemKey);
    PublicKey(const uint8_t *derKey, size_t derLen);
    PublicKey(Stream &stream, size_t size);
    PublicKey(Stream &stream);
    ~PublicKey();

    bool parse(const char *pemKey);
    bool parse(const uint8_t *derKey, size_t derLen);

    // Accessors for internal use, not needed by apps
    bool isRSA() const;
    bool isEC() const;

    // Disable the copy constructor, we're pointer based
    PublicKey(const PublicKey &that) = delete;
    PublicKey &operator=(const PublicKey &that) = delete;
};

class X509List {
public:
    X509List();
    X509List(const char *pemCert);
    X509List(const uint8_t *derCert, size_t derLen);
    ~X509List();

    bool append(const char *pemCert);
    bool append(const uint8_t *derCert, size_t derLen);

    size_t getCount() const;

    // Disable the copy constructor, we're pointer based
    X509List(const X509List &that) = delete;
    X509List &operator=(const X509List &that) = delete;
};

// Updater SHA256 hash and signature verification
class HashSHA256 : public UpdaterHashClass {
public:
    virtual void begin() override;
    virtual void add(const void *data, uint32_t len) override;
    virtual void end() override;
    virtual int len() override;
    virtual const void *hash() override;
    virtual const unsigned char *oid() override;
};

class SigningVerifier : public UpdaterVerifyClass {
public:
    virtual uint32_t length() override;
    virtual bool verify(UpdaterHashClass *hash, const void *signature, uint32_t signatureLen) override;

public:
    SigningVerifier(PublicKey *pubKey);
    ~SigningVerifier();
};

};  // namespace BearSSL

#endif
