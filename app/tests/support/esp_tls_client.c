/*
 * A TLS client that behaves like an ESP8266 running the Arduino core's BearSSL::WiFiClientSecure:
 * the same TLS library (BearSSL), TLS 1.0-1.2 only, the core's cipher-suite order, trust anchors
 * built the way BearSSL::X509List builds them (CA:TRUE -> CA anchor, otherwise a pinned
 * certificate), the core's buffer sizing (setBufferSizes: 16384/512 by default, which makes BearSSL
 * advertise max_fragment_length 512) and an optional device clock (setX509Time).
 *
 * Used by the tests to prove that what OTA Forge makes and serves works for the device's TLS stack.
 *
 * usage: esp_tls_client HOST PORT SERVER_NAME ANCHOR.der [--rx N] [--tx N] [--time UNIX]
 *                       [--get PATH [--header "Name: value"]... [--out FILE]]
 * prints "OK version=0x0303 suite=0xCCA9 status=200 bytes=N max_record=M" and exits 0 (bytes counts
 * the whole response, head included; --out saves the body), or "BEARSSL_ERROR <n> <name>" and
 * exits 1.
 */
#include <arpa/inet.h>
#include <bearssl.h>
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* The Arduino ESP8266 core's default suite order (suites_P in WiFiClientSecureBearSSL.cpp, which
 * follows BearSSL's ssl_client_full.c): ECDHE AEAD first, ChaCha20 leading. */
static const uint16_t esp_suites[] = {
    BR_TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    BR_TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    BR_TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    BR_TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    BR_TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    BR_TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    BR_TLS_ECDHE_ECDSA_WITH_AES_128_CCM,
    BR_TLS_ECDHE_ECDSA_WITH_AES_256_CCM,
    BR_TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8,
    BR_TLS_ECDHE_ECDSA_WITH_AES_256_CCM_8,
    BR_TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256,
    BR_TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256,
    BR_TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA384,
    BR_TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384,
    BR_TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA,
    BR_TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA,
    BR_TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA,
    BR_TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA,
    BR_TLS_ECDH_ECDSA_WITH_AES_128_GCM_SHA256,
    BR_TLS_ECDH_RSA_WITH_AES_128_GCM_SHA256,
    BR_TLS_ECDH_ECDSA_WITH_AES_256_GCM_SHA384,
    BR_TLS_ECDH_RSA_WITH_AES_256_GCM_SHA384,
    BR_TLS_ECDH_ECDSA_WITH_AES_128_CBC_SHA256,
    BR_TLS_ECDH_RSA_WITH_AES_128_CBC_SHA256,
    BR_TLS_ECDH_ECDSA_WITH_AES_256_CBC_SHA384,
    BR_TLS_ECDH_RSA_WITH_AES_256_CBC_SHA384,
    BR_TLS_ECDH_ECDSA_WITH_AES_128_CBC_SHA,
    BR_TLS_ECDH_RSA_WITH_AES_128_CBC_SHA,
    BR_TLS_ECDH_ECDSA_WITH_AES_256_CBC_SHA,
    BR_TLS_ECDH_RSA_WITH_AES_256_CBC_SHA,
    BR_TLS_RSA_WITH_AES_128_GCM_SHA256,
    BR_TLS_RSA_WITH_AES_256_GCM_SHA384,
    BR_TLS_RSA_WITH_AES_128_CCM,
    BR_TLS_RSA_WITH_AES_256_CCM,
    BR_TLS_RSA_WITH_AES_128_CCM_8,
    BR_TLS_RSA_WITH_AES_256_CCM_8,
    BR_TLS_RSA_WITH_AES_128_CBC_SHA256,
    BR_TLS_RSA_WITH_AES_256_CBC_SHA256,
    BR_TLS_RSA_WITH_AES_128_CBC_SHA,
    BR_TLS_RSA_WITH_AES_256_CBC_SHA,
    BR_TLS_ECDHE_ECDSA_WITH_3DES_EDE_CBC_SHA,
    BR_TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA,
    BR_TLS_ECDH_ECDSA_WITH_3DES_EDE_CBC_SHA,
    BR_TLS_ECDH_RSA_WITH_3DES_EDE_CBC_SHA,
    BR_TLS_RSA_WITH_3DES_EDE_CBC_SHA,
};

static const char *error_name(int err) {
    switch (err) {
    case BR_ERR_TOO_LARGE: return "record too large for the receive buffer";
    case BR_ERR_X509_EXPIRED: return "certificate expired or not yet valid";
    case BR_ERR_X509_BAD_SERVER_NAME: return "server name does not match the certificate";
    case BR_ERR_X509_NOT_TRUSTED: return "certificate not trusted";
    case BR_ERR_BAD_VERSION: return "unsupported protocol version";
    case BR_ERR_BAD_CIPHER_SUITE: return "no common cipher suite";
    default: return "see bearssl_ssl.h / bearssl_x509.h";
    }
}

static void append_dn(void *ctx, const void *buf, size_t len) {
    br_x509_trust_anchor *ta = ctx;
    unsigned char *grown = realloc(ta->dn.data, ta->dn.len + len);
    if (!grown) abort();
    memcpy(grown + ta->dn.len, buf, len);
    ta->dn.data = grown;
    ta->dn.len += len;
}

static unsigned char *copy(const void *src, size_t len) {
    unsigned char *out = malloc(len ? len : 1);
    if (!out) abort();
    memcpy(out, src, len);
    return out;
}

/* Builds a trust anchor as BearSSL::X509List does: CA flag only for CA:TRUE certificates. */
static int load_anchor(const char *path, br_x509_trust_anchor *ta) {
    FILE *f = fopen(path, "rb");
    if (!f) { perror(path); return -1; }
    static unsigned char der[16384];
    size_t len = fread(der, 1, sizeof der, f);
    fclose(f);
    br_x509_decoder_context dc;
    memset(ta, 0, sizeof *ta);
    br_x509_decoder_init(&dc, append_dn, ta);
    br_x509_decoder_push(&dc, der, len);
    const br_x509_pkey *pk = br_x509_decoder_get_pkey(&dc);
    if (!pk) {
        fprintf(stderr, "anchor %s: decode error %d\n", path, br_x509_decoder_last_error(&dc));
        return -1;
    }
    ta->flags = br_x509_decoder_isCA(&dc) ? BR_X509_TA_CA : 0;
    ta->pkey.key_type = pk->key_type;
    if (pk->key_type == BR_KEYTYPE_RSA) {
        ta->pkey.key.rsa.n = copy(pk->key.rsa.n, pk->key.rsa.nlen);
        ta->pkey.key.rsa.nlen = pk->key.rsa.nlen;
        ta->pkey.key.rsa.e = copy(pk->key.rsa.e, pk->key.rsa.elen);
        ta->pkey.key.rsa.elen = pk->key.rsa.elen;
    } else {
        ta->pkey.key.ec.curve = pk->key.ec.curve;
        ta->pkey.key.ec.q = copy(pk->key.ec.q, pk->key.ec.qlen);
        ta->pkey.key.ec.qlen = pk->key.ec.qlen;
    }
    return 0;
}

/* Watches the raw bytes the server sends: the largest application-data record, to prove the
 * server kept records within the advertised max_fragment_length. */
static size_t rec_need = 0, max_app_record = 0;
static unsigned char rec_hdr[5];
static size_t rec_hdr_len = 0;

static void watch_records(const unsigned char *p, size_t n) {
    while (n > 0) {
        if (rec_need > 0) {
            size_t take = rec_need < n ? rec_need : n;
            rec_need -= take;
            p += take;
            n -= take;
            continue;
        }
        rec_hdr[rec_hdr_len++] = *p++;
        n--;
        if (rec_hdr_len == 5) {
            rec_need = ((size_t)rec_hdr[3] << 8) | rec_hdr[4];
            if (rec_hdr[0] == 23 && rec_need > max_app_record) max_app_record = rec_need;
            rec_hdr_len = 0;
        }
    }
}

static int sock_read(void *ctx, unsigned char *buf, size_t len) {
    for (;;) {
        ssize_t n = read(*(int *)ctx, buf, len);
        if (n <= 0) {
            if (n < 0 && errno == EINTR) continue;
            return -1;
        }
        watch_records(buf, (size_t)n);
        return (int)n;
    }
}

static int sock_write(void *ctx, const unsigned char *buf, size_t len) {
    for (;;) {
        ssize_t n = write(*(int *)ctx, buf, len);
        if (n <= 0) {
            if (n < 0 && errno == EINTR) continue;
            return -1;
        }
        return (int)n;
    }
}

static int connect_to(const char *host, const char *port) {
    struct addrinfo hints = {0}, *res;
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(host, port, &hints, &res) != 0) return -1;
    int fd = -1;
    for (struct addrinfo *a = res; a; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype, a->ai_protocol);
        if (fd < 0) continue;
        if (connect(fd, a->ai_addr, a->ai_addrlen) == 0) break;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    return fd;
}

static int fail(br_ssl_client_context *sc) {
    int err = br_ssl_engine_last_error(&sc->eng);
    printf("BEARSSL_ERROR %d %s\n", err, error_name(err));
    return 1;
}

int main(int argc, char **argv) {
    if (argc < 5) {
        fprintf(stderr, "usage: %s HOST PORT SERVER_NAME ANCHOR.der [--rx N] [--tx N] [--time UNIX] [--get PATH]\n", argv[0]);
        return 2;
    }
    size_t rx = 16384, tx = 512; /* the core's defaults */
    long long device_time = -1;
    const char *get = NULL, *out = NULL;
    char extra[8192] = "";
    for (int i = 5; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--rx")) rx = strtoul(argv[i + 1], NULL, 10);
        else if (!strcmp(argv[i], "--tx")) tx = strtoul(argv[i + 1], NULL, 10);
        else if (!strcmp(argv[i], "--time")) device_time = strtoll(argv[i + 1], NULL, 10);
        else if (!strcmp(argv[i], "--get")) get = argv[i + 1];
        else if (!strcmp(argv[i], "--out")) out = argv[i + 1];
        else if (!strcmp(argv[i], "--header")) {
            if (strlen(extra) + strlen(argv[i + 1]) + 3 >= sizeof extra) { fprintf(stderr, "headers too long\n"); return 2; }
            strcat(extra, argv[i + 1]);
            strcat(extra, "\r\n");
        }
        else { fprintf(stderr, "unknown option %s\n", argv[i]); return 2; }
    }

    br_x509_trust_anchor ta;
    if (load_anchor(argv[4], &ta) != 0) return 2;

    static br_ssl_client_context sc;
    static br_x509_minimal_context xc;
    br_ssl_client_init_full(&sc, &xc, &ta, 1);
    br_ssl_engine_set_versions(&sc.eng, BR_TLS10, BR_TLS12);
    br_ssl_engine_set_suites(&sc.eng, esp_suites, sizeof esp_suites / sizeof esp_suites[0]);
    if (device_time >= 0) {
        /* BearSSL counts days from 1 January of year 0; 719528 days separate it from 1970. */
        br_x509_minimal_set_time(&xc, (uint32_t)(device_time / 86400 + 719528),
                                 (uint32_t)(device_time % 86400));
    }
    /* setBufferSizes(rx, tx) clamps to 512..16384 and adds BearSSL's record overhead; the
     * resulting buffers also set the max_fragment_length the client advertises. */
    if (rx < 512) rx = 512;
    if (rx > 16384) rx = 16384;
    if (tx < 512) tx = 512;
    if (tx > 16384) tx = 16384;
    size_t in_len = rx + 325, out_len = tx + 85;
    unsigned char *ibuf = malloc(in_len), *obuf = malloc(out_len);
    br_ssl_engine_set_buffers_bidi(&sc.eng, ibuf, in_len, obuf, out_len);
    if (!br_ssl_client_reset(&sc, argv[3], 0)) return fail(&sc);

    int fd = connect_to(argv[1], argv[2]);
    if (fd < 0) { printf("CONNECT_FAILED %s:%s\n", argv[1], argv[2]); return 1; }

    br_sslio_context ioc;
    br_sslio_init(&ioc, &sc.eng, sock_read, &fd, sock_write, &fd);
    if (br_sslio_flush(&ioc) != 0) return fail(&sc);

    unsigned version = br_ssl_engine_get_version(&sc.eng);
    unsigned suite = sc.eng.session.cipher_suite;
    long long body = -1;
    int status = 0;
    if (get) {
        /* HTTP/1.0, one request per connection, as ESP8266httpUpdate sends it. */
        static char req[16384];
        int n = snprintf(req, sizeof req,
                         "GET %s HTTP/1.0\r\nHost: %s\r\nUser-Agent: ESP8266-http-Update\r\n"
                         "Connection: close\r\n%sContent-Length: 0\r\n\r\n", get, argv[3], extra);
        if (br_sslio_write_all(&ioc, req, (size_t)n) != 0 || br_sslio_flush(&ioc) != 0) return fail(&sc);
        FILE *sink = out ? fopen(out, "wb") : NULL;
        char head[4096];
        size_t head_len = 0;
        int in_body = 0;
        body = 0;
        unsigned char buf[512];
        for (;;) {
            int r = br_sslio_read(&ioc, buf, sizeof buf);
            if (r < 0) break;
            body += r;
            for (int k = 0; k < r; k++) {
                if (in_body) { if (sink) fputc(buf[k], sink); continue; }
                if (head_len < sizeof head - 1) head[head_len++] = (char)buf[k];
                if (head_len >= 4 && !memcmp(head + head_len - 4, "\r\n\r\n", 4)) in_body = 1;
            }
        }
        if (sink) fclose(sink);
        head[head_len] = 0;
        sscanf(head, "HTTP/%*d.%*d %d", &status);
        int err = br_ssl_engine_last_error(&sc.eng);
        if (err != BR_ERR_OK && err != BR_ERR_IO) return fail(&sc);
    }
    printf("OK version=0x%04X suite=0x%04X status=%d bytes=%lld max_record=%zu\n", version, suite, status, body,
           max_app_record);
    close(fd);
    return 0;
}
