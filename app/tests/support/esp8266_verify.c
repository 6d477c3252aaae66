/* The ESP8266 core's signed-update check (cores/esp8266/Updater.cpp, Updater::end, and
 * BearSSL::SigningVerifier::verify in BearSSLHelpers.cpp), done with Debian's libbearssl the way
 * the core calls it: read the trailing uint32_le length, require it to equal the RSA modulus
 * length, SHA-256 the bytes before the signature, br_rsa_pkcs1_vrfy with the SHA-256 OID, compare.
 *
 * usage: esp8266_verify MODULUS_HEX EXPONENT_HEX SIGNED.bin   exit 0 verified, 12 (UPDATE_ERROR_SIGN)
 * refused. The key comes as numbers (from `openssl rsa -pubin -modulus`): BearSSL 0.6 has no
 * public-key file decoder (the core carries its own). */
#include <bearssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static unsigned char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) { perror(path); exit(2); }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *buf = malloc(n > 0 ? (size_t)n : 1);
    if (fread(buf, 1, (size_t)n, f) != (size_t)n) { perror(path); exit(2); }
    fclose(f);
    *len = (size_t)n;
    return buf;
}

static size_t unhex(const char *hex, unsigned char *out, size_t cap) {
    size_t n = strlen(hex) / 2;
    if (n > cap) { fprintf(stderr, "number too long\n"); exit(2); }
    for (size_t i = 0; i < n; i++) {
        unsigned v;
        if (sscanf(hex + 2 * i, "%2x", &v) != 1) { fprintf(stderr, "not hex\n"); exit(2); }
        out[i] = (unsigned char)v;
    }
    return n;
}

int main(int argc, char **argv) {
    if (argc != 4) { fprintf(stderr, "usage: %s MODULUS_HEX EXPONENT_HEX FILE\n", argv[0]); return 2; }
    static unsigned char n[512], e[8];
    br_rsa_public_key key = { n, unhex(argv[1], n, sizeof n), e, unhex(argv[2], e, sizeof e) };
    const br_rsa_public_key *pk = &key;
    size_t size;
    unsigned char *bin = slurp(argv[3], &size);
    size_t modulus = pk->nlen; /* SigningVerifier::length(): the modulus size in bytes */

    if (size < 4) { puts("too short"); return 12; }
    uint32_t sig_len;
    memcpy(&sig_len, bin + size - 4, 4); /* the core reads it little-endian on a little-endian CPU */
    if (sig_len != modulus || size < sig_len + 4) {
        printf("signature length %u, verifier length %zu\n", sig_len, modulus);
        return 12;
    }
    size_t body = size - sig_len - 4;
    br_sha256_context h;
    br_sha256_init(&h);
    br_sha256_update(&h, bin, body);
    unsigned char hash[32], out[32];
    br_sha256_out(&h, hash);
    br_rsa_pkcs1_vrfy vrfy = br_rsa_pkcs1_vrfy_get_default();
    if (!vrfy(bin + body, sig_len, BR_HASH_OID_SHA256, sizeof out, pk, out) || memcmp(out, hash, sizeof out)) {
        puts("signature refused");
        return 12;
    }
    puts("signature verified");
    return 0;
}
