/* Host syntax-check stub: declarations only. Mirrors in shape arduino-esp32 3.3
 * libraries/Update/src/Updater_Signing.h: like the real header, everything in it exists only when
 * the build defines UPDATE_SIGN (the core's Update library is compiled with the same flag, from
 * build_opt.h or build_flags). The hash and scheme numbers, the verifier interface and the two
 * mbedTLS verifiers, whose constructors take the public key as DER, or as PEM with its NUL
 * counted in pubkeyLen (mbedtls_pk_parse_public_key), and copy it. getHashType() is inline in the
 * core (it returns the constructor's hashType); here it is only declared. SHA2Builder.h is
 * reduced to the class name the interface mentions. */
#pragma once
#ifdef UPDATE_SIGN

#include <stddef.h>
#include <stdint.h>

#include <Arduino.h>

class SHA2Builder; /* cores/esp32/SHA2Builder.h */

// Signature schemes
#define SIGN_NONE 0
#define SIGN_RSA 1
#define SIGN_ECDSA 2

// Hash algorithms for signature verification
#define HASH_SHA256 0
#define HASH_SHA384 1
#define HASH_SHA512 2

class UpdaterVerifyClass {
public:
    virtual bool verify(SHA2Builder *hash, const void *signature, size_t signatureLen) = 0;
    virtual int getHashType() const = 0;
    virtual ~UpdaterVerifyClass() {}
};

// Signature verifiers using mbedtls (required for public key cryptography)
class UpdaterRSAVerifier : public UpdaterVerifyClass {
public:
    UpdaterRSAVerifier(const uint8_t *pubkey, size_t pubkeyLen, int hashType = HASH_SHA256);
    ~UpdaterRSAVerifier();
    bool verify(SHA2Builder *hash, const void *signature, size_t signatureLen) override;
    int getHashType() const override;
};

class UpdaterECDSAVerifier : public UpdaterVerifyClass {
public:
    UpdaterECDSAVerifier(const uint8_t *pubkey, size_t pubkeyLen, int hashType = HASH_SHA256);
    ~UpdaterECDSAVerifier();
    bool verify(SHA2Builder *hash, const void *signature, size_t signatureLen) override;
    int getHashType() const override;
};

#endif  // UPDATE_SIGN
