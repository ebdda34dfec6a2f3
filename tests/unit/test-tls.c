/* SPDX-License-Identifier: MIT */
/*
 * Unit tests of server/tls.c: our server session against an OpenSSL
 * client, the ciphertext carried between them in memory.
 *
 * Each test makes fresh credentials with tests/tls-creds.sh (a CA, a
 * server and a client certificate, a client of another CA, a PSK keys
 * file) in a temporary directory.
 */
#include "config.h"

#include "server/tls.h"
#include "leak-check.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>

/* ---- credentials ---------------------------------------------------- */

static char dir[] = "/tmp/sd-test-tls-XXXXXX";
static unsigned char alice_key[64];
static size_t alice_key_len;

/* The path of a file in the credentials directory (one of 8 buffers,
 * so a few can be in use at once). */
static const char *cred(const char *name)
{
    static char bufs[8][PATH_MAX];
    static unsigned next;
    char *p = bufs[next++ % 8];

    snprintf(p, PATH_MAX, "%s/%s", dir, name);
    return p;
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");

    cr_assert_not_null(f, "%s", path);
    cr_assert_eq(fputs(text, f) >= 0, true);
    cr_assert_eq(fclose(f), 0);
}

static void run(const char *cmd)
{
    cr_assert_eq(system(cmd), 0, "failed: %s", cmd);
}

/* Alice's key, as tls-creds.sh wrote it (hex) into keys.psk. */
static void read_alice_key(void)
{
    FILE *f = fopen(cred("keys.psk"), "r");
    char line[256];

    cr_assert_not_null(f);
    cr_assert_not_null(fgets(line, sizeof(line), f));
    fclose(f);
    cr_assert_eq(strncmp(line, "alice:", 6), 0);
    for (const char *p = line + 6; p[0] && p[0] != '\n'; p += 2) {
        cr_assert_lt(alice_key_len, sizeof(alice_key));
        cr_assert_eq(sscanf(p, "%2hhx", &alice_key[alice_key_len++]), 1);
    }
    cr_assert_eq(alice_key_len, 32);
}

static void setup(void)
{
    char cmd[PATH_MAX + 64];

    cr_assert_not_null(mkdtemp(dir));
    snprintf(cmd, sizeof(cmd), "%s/tls-creds.sh %s", TESTS_SRCDIR, dir);
    run(cmd);
    read_alice_key();
}

static void teardown(void)
{
    char cmd[PATH_MAX + 16];

    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    run(cmd);
}

TestSuite(tls, .init = setup, .fini = teardown);

/* ---- our server ----------------------------------------------------- */

struct server {
    struct sd_tls_server *srv;
    struct sd_tls_session *s;
};

static void server_start(struct server *sv, const char *cert,
                         const char *key, const char *ca,
                         const char *psk_file)
{
    struct sd_tls_config cfg = {
        .mode = SD_TLS_REQUIRED,
        .cert = (char *)cert, .key = (char *)key, .ca = (char *)ca,
        .psk_file = (char *)psk_file,
    };
    struct sd_error err = { 0 };

    cr_assert_eq(sd_tls_server_new(&cfg, &sv->srv, &err), 0, "%s", err.msg);
    cr_assert_eq(sd_tls_session_new(sv->srv, &sv->s), 0);
}

static void server_x509(struct server *sv, const char *ca)
{
    server_start(sv, cred("server-cert.pem"), cred("server-key.pem"), ca,
                 NULL);
}

static void server_stop(struct server *sv)
{
    sd_tls_session_free(sv->s);
    sd_tls_server_free(sv->srv);
}

/* Config errors: the error of sd_tls_server_new, which must fail. */
static struct sd_error server_new_error(const char *cert, const char *key,
                                        const char *ca, const char *psk_file)
{
    struct sd_tls_config cfg = {
        .mode = SD_TLS_REQUIRED,
        .cert = (char *)cert, .key = (char *)key, .ca = (char *)ca,
        .psk_file = (char *)psk_file,
    };
    struct sd_tls_server *srv = (void *)1;
    struct sd_error err = { 0 };
    int ret = sd_tls_server_new(&cfg, &srv, &err);

    cr_assert_lt(ret, 0, "sd_tls_server_new succeeded");
    cr_assert_eq(err.code, ret);
    cr_assert_null(srv);
    return err;
}

/* ---- the OpenSSL client --------------------------------------------- */

struct client {
    SSL_CTX *ctx;
    SSL *ssl;
    BIO *in, *out;                  /* owned by ssl */
};

struct client_opts {
    int max_version;                /* 0: no limit */
    bool verify;                    /* check the server's certificate */
    const char *cert, *key;         /* client certificate, or NULL */
    const char *psk_identity;       /* NULL: no PSK */
    const unsigned char *psk;
    size_t psk_len;
};

/* One client per test process, so the PSK callbacks read it here. */
static struct client_opts client_psk;

static int client_psk_session_cb(SSL *ssl, const EVP_MD *md,
                                 const unsigned char **id, size_t *idlen,
                                 SSL_SESSION **sess)
{
    static const unsigned char aes128gcm_sha256[] = { 0x13, 0x01 };
    const SSL_CIPHER *cipher = SSL_CIPHER_find(ssl, aes128gcm_sha256);
    SSL_SESSION *s = SSL_SESSION_new();

    (void)md;
    cr_assert_not_null(cipher);
    cr_assert_not_null(s);
    cr_assert_eq(SSL_SESSION_set1_master_key(s, client_psk.psk,
                                             client_psk.psk_len), 1);
    cr_assert_eq(SSL_SESSION_set_cipher(s, cipher), 1);
    cr_assert_eq(SSL_SESSION_set_protocol_version(s, TLS1_3_VERSION), 1);
    *id = (const unsigned char *)client_psk.psk_identity;
    *idlen = strlen(client_psk.psk_identity);
    *sess = s;
    return 1;
}

static unsigned int client_psk_cb(SSL *ssl, const char *hint, char *identity,
                                  unsigned int max_identity_len,
                                  unsigned char *psk, unsigned int max_psk_len)
{
    (void)ssl, (void)hint;
    cr_assert_lt(strlen(client_psk.psk_identity), max_identity_len);
    cr_assert_leq(client_psk.psk_len, max_psk_len);
    strcpy(identity, client_psk.psk_identity);
    memcpy(psk, client_psk.psk, client_psk.psk_len);
    return (unsigned int)client_psk.psk_len;
}

static void client_start(struct client *c, const struct client_opts *o)
{
    c->ctx = SSL_CTX_new(TLS_client_method());
    cr_assert_not_null(c->ctx);
    if (o->max_version)
        cr_assert_eq(SSL_CTX_set_max_proto_version(c->ctx, o->max_version),
                     1);
    if (o->verify) {
        cr_assert_eq(SSL_CTX_load_verify_locations(c->ctx,
                                                   cred("ca-cert.pem"),
                                                   NULL), 1);
        SSL_CTX_set_verify(c->ctx, SSL_VERIFY_PEER, NULL);
    }
    if (o->cert) {
        cr_assert_eq(SSL_CTX_use_certificate_chain_file(c->ctx, o->cert), 1);
        cr_assert_eq(SSL_CTX_use_PrivateKey_file(c->ctx, o->key,
                                                 SSL_FILETYPE_PEM), 1);
    }
    if (o->psk_identity) {
        client_psk = *o;
        SSL_CTX_set_psk_use_session_callback(c->ctx, client_psk_session_cb);
        SSL_CTX_set_psk_client_callback(c->ctx, client_psk_cb);
    }
    c->ssl = SSL_new(c->ctx);
    cr_assert_not_null(c->ssl);
    if (o->verify)
        cr_assert_eq(SSL_set1_host(c->ssl, "localhost"), 1);
    c->in = BIO_new(BIO_s_mem());
    c->out = BIO_new(BIO_s_mem());
    cr_assert(c->in && c->out);
    BIO_set_mem_eof_return(c->in, -1);
    BIO_set_mem_eof_return(c->out, -1);
    SSL_set_bio(c->ssl, c->in, c->out);
    SSL_set_connect_state(c->ssl);
}

static void client_stop(struct client *c)
{
    SSL_free(c->ssl);
    SSL_CTX_free(c->ctx);
}

/* ---- carrying bytes ------------------------------------------------- */

/* Chunk size for moving ciphertext: odd sizes split records and
 * exercise partial input and partial consume. */
static size_t piece = 4096;

/* Move all pending ciphertext both ways; returns the bytes moved. */
static size_t pump(struct server *sv, struct client *c)
{
    const void *p;
    size_t n, moved = 0;
    char buf[65536];
    int r;

    while ((n = sd_tls_session_output(sv->s, &p)) > 0) {
        if (n > piece)
            n = piece;
        cr_assert_eq(BIO_write(c->in, p, (int)n), (int)n);
        sd_tls_session_consume(sv->s, n);
        moved += n;
    }
    while ((r = BIO_read(c->out, buf, (int)(piece < sizeof(buf) ? piece
                                                  : sizeof(buf)))) > 0) {
        cr_assert_eq(sd_tls_session_put_input(sv->s, buf, (size_t)r), 0);
        moved += (size_t)r;
    }
    return moved;
}

struct outcome {
    int server;                     /* sd_tls_session_handshake */
    bool client_done, client_failed;
    struct sd_error err;
};

/* Run both handshakes until each has finished or failed. */
static struct outcome handshake(struct server *sv, struct client *c)
{
    struct outcome o = { .server = -EAGAIN };
    int round;

    for (round = 0; round < 20; round++) {
        if (!o.client_done && !o.client_failed) {
            int r;

            ERR_clear_error();
            r = SSL_do_handshake(c->ssl);
            if (r == 1)
                o.client_done = true;
            else if (SSL_get_error(c->ssl, r) != SSL_ERROR_WANT_READ)
                o.client_failed = true;
        }
        pump(sv, c);
        if (o.server == -EAGAIN)
            o.server = sd_tls_session_handshake(sv->s, &o.err);
        pump(sv, c);
        if (o.server != -EAGAIN && (o.client_done || o.client_failed))
            break;
    }
    return o;
}

static void expect_handshake_ok(struct server *sv, struct client *c)
{
    struct outcome o = handshake(sv, c);

    cr_assert_eq(o.server, 0, "server: %d %s", o.server, o.err.msg);
    cr_assert(o.client_done, "client failed: %s",
              ERR_error_string(ERR_get_error(), NULL));
}

/* The server refused: an error with a message containing what. */
static void expect_handshake_refused(struct server *sv, struct client *c,
                                     const char *what)
{
    struct outcome o = handshake(sv, c);

    cr_assert_eq(o.server, -EPROTO, "server: %d %s", o.server, o.err.msg);
    cr_assert_eq(o.err.code, -EPROTO);
    cr_assert_not_null(strstr(o.err.msg, what), "message: %s", o.err.msg);
}

static void client_send(struct server *sv, struct client *c,
                        const void *buf, size_t len)
{
    size_t written;

    cr_assert_eq(SSL_write_ex(c->ssl, buf, len, &written), 1);
    cr_assert_eq(written, len);
    pump(sv, c);
}

/* Read exactly len bytes on the server, in reads of at most chunk. */
static void server_recv(struct server *sv, struct client *c, void *buf,
                        size_t len, size_t chunk)
{
    size_t got = 0;

    while (got < len) {
        size_t want = len - got < chunk ? len - got : chunk;
        ssize_t n = sd_tls_session_read(sv->s, (char *)buf + got, want);

        if (n == -EAGAIN) {
            cr_assert_gt(pump(sv, c), 0, "server waits for input, none came");
            continue;
        }
        cr_assert_gt(n, 0, "read returned %zd after %zu bytes", n, got);
        cr_assert_leq((size_t)n, want);
        got += (size_t)n;
    }
}

static void client_recv(struct server *sv, struct client *c, void *buf,
                        size_t len)
{
    size_t got = 0;

    while (got < len) {
        size_t n = 0;

        ERR_clear_error();
        if (SSL_read_ex(c->ssl, (char *)buf + got, len - got, &n) == 1) {
            got += n;
            continue;
        }
        cr_assert_eq(SSL_get_error(c->ssl, 0), SSL_ERROR_WANT_READ);
        cr_assert_gt(pump(sv, c), 0, "client waits for input, none came");
    }
}

/* Small messages both ways. */
static void ping_pong(struct server *sv, struct client *c)
{
    char buf[16];

    client_send(sv, c, "ping", 4);
    server_recv(sv, c, buf, 4, sizeof(buf));
    cr_assert_eq(memcmp(buf, "ping", 4), 0);
    cr_assert_eq(sd_tls_session_write(sv->s, "pong!", 5), 0);
    pump(sv, c);
    client_recv(sv, c, buf, 5);
    cr_assert_eq(memcmp(buf, "pong!", 5), 0);
}

/* ---- X.509 ---------------------------------------------------------- */

Test(tls, x509_handshake_and_data)
{
    struct server sv;
    struct client c;

    server_x509(&sv, NULL);
    client_start(&c, &(struct client_opts){ .verify = true });
    expect_handshake_ok(&sv, &c);
    cr_assert_null(sd_tls_session_peer(sv.s), "anonymous client");
    cr_assert_eq(SSL_version(c.ssl), TLS1_3_VERSION);
    ping_pong(&sv, &c);
    client_stop(&c);
    server_stop(&sv);
    expect_no_leaks();
}

/* Taken output goes to the client by hand; the session must not have
 * touched it since it was taken. */
static void take_to_client(struct server *sv, struct client *c,
                           void **taken)
{
    size_t n = sd_tls_session_take_output(sv->s, taken);

    cr_assert_gt(n, 0);
    cr_assert_eq(BIO_write(c->in, *taken, (int)n), (int)n);
    cr_assert_eq(sd_tls_session_take_output(sv->s, &(void *){ NULL }), 0);
}

Test(tls, taken_output_buffer_is_reused_until_trimmed)
{
    static char data[300000], back[sizeof(data)];
    struct server sv;
    struct client c;
    void *first, *second, *third;

    for (size_t i = 0; i < sizeof(data); i++)
        data[i] = (char)(i * 7 + i / 4096);
    server_x509(&sv, NULL);
    client_start(&c, &(struct client_opts){ .verify = true });
    expect_handshake_ok(&sv, &c);

    cr_assert_eq(sd_tls_session_write(sv.s, data, sizeof(data)), 0);
    take_to_client(&sv, &c, &first);
    client_recv(&sv, &c, back, sizeof(data));
    cr_assert_eq(memcmp(back, data, sizeof(data)), 0);
    sd_tls_session_give_back_output(sv.s, first);

    /* The next records go into the buffer given back. */
    cr_assert_eq(sd_tls_session_write(sv.s, data + 5, 1000), 0);
    take_to_client(&sv, &c, &second);
    cr_assert_eq(second, first, "a sent buffer was not reused");
    client_recv(&sv, &c, back, 1000);
    cr_assert_eq(memcmp(back, data + 5, 1000), 0);
    sd_tls_session_give_back_output(sv.s, second);

    /* Trimmed while idle, the session starts a new buffer; the data is
     * the same either way. */
    sd_tls_session_trim(sv.s);
    cr_assert_eq(sd_tls_session_write(sv.s, data + 9, 70000), 0);
    take_to_client(&sv, &c, &third);
    client_recv(&sv, &c, back, 70000);
    cr_assert_eq(memcmp(back, data + 9, 70000), 0);
    sd_tls_session_give_back_output(sv.s, third);
    ping_pong(&sv, &c);
    client_stop(&c);
    server_stop(&sv);
    expect_no_leaks();
}

Test(tls, x509_tls12)
{
    struct server sv;
    struct client c;

    server_x509(&sv, NULL);
    client_start(&c, &(struct client_opts){ .verify = true,
                                            .max_version = TLS1_2_VERSION });
    expect_handshake_ok(&sv, &c);
    cr_assert_eq(SSL_version(c.ssl), TLS1_2_VERSION);
    ping_pong(&sv, &c);
    client_stop(&c);
    server_stop(&sv);
}

Test(tls, tls11_client_refused)
{
    struct server sv;
    struct client c;

    server_x509(&sv, NULL);
    client_start(&c, &(struct client_opts){ .max_version = TLS1_1_VERSION });
    SSL_set_security_level(c.ssl, 0);  /* let the client try at all */
    expect_handshake_refused(&sv, &c, "unsupported protocol");
    client_stop(&c);
    server_stop(&sv);
}

/* Count the TLS records in buf, checking each is no longer than
 * TLS 1.3 allows (2^14 + 256 bytes of payload). */
static size_t count_records(const unsigned char *buf, size_t len)
{
    size_t n = 0, off = 0;

    while (off < len) {
        cr_assert_leq(off + 5, len, "truncated record header");
        size_t rec = (size_t)buf[off + 3] << 8 | buf[off + 4];
        cr_assert_eq(buf[off], 0x17, "not application data");
        cr_assert_leq(rec, 16384 + 256);
        off += 5 + rec;
        n++;
    }
    cr_assert_eq(off, len, "a record runs past the output");
    return n;
}

Test(tls, one_mib_both_ways_in_odd_pieces)
{
    const size_t len = 1 << 20;
    unsigned char *data = malloc(len), *back = malloc(len);
    const void *out;
    struct server sv;
    struct client c;
    size_t n;

    cr_assert(data && back);
    cr_assert_eq(RAND_bytes(data, (int)len), 1);
    server_x509(&sv, NULL);
    client_start(&c, &(struct client_opts){ .verify = true });
    expect_handshake_ok(&sv, &c);

    /* Server to client: one write, many records, sent in odd pieces. */
    cr_assert_eq(sd_tls_session_write(sv.s, data, len), 0);
    n = sd_tls_session_output(sv.s, &out);
    cr_assert_gt(n, len);
    cr_assert_geq(count_records(out, n), len / 16384);
    piece = 777;
    client_recv(&sv, &c, back, len);
    cr_assert_eq(memcmp(data, back, len), 0);
    cr_assert_eq(sd_tls_session_output(sv.s, &out), 0);

    /* Client to server, fed in odd pieces and read in odd chunks. */
    cr_assert_eq(RAND_bytes(data, (int)len), 1);
    memset(back, 0, len);
    client_send(&sv, &c, data, len);
    server_recv(&sv, &c, back, len, 1000);
    cr_assert_eq(memcmp(data, back, len), 0);

    client_stop(&c);
    server_stop(&sv);
    free(data);
    free(back);
    expect_no_leaks();
}

Test(tls, client_cert_required_and_accepted)
{
    struct server sv;
    struct client c;

    server_x509(&sv, cred("ca-cert.pem"));
    client_start(&c, &(struct client_opts){
                         .verify = true, .cert = cred("client-cert.pem"),
                         .key = cred("client-key.pem") });
    expect_handshake_ok(&sv, &c);
    cr_assert_not_null(sd_tls_session_peer(sv.s));
    cr_assert_not_null(strstr(sd_tls_session_peer(sv.s), "CN=test client"),
                       "peer: %s", sd_tls_session_peer(sv.s));
    ping_pong(&sv, &c);
    client_stop(&c);
    server_stop(&sv);
    expect_no_leaks();
}

Test(tls, client_cert_required_tls12)
{
    struct server sv;
    struct client c;

    server_x509(&sv, cred("ca-cert.pem"));
    client_start(&c, &(struct client_opts){
                         .verify = true, .max_version = TLS1_2_VERSION,
                         .cert = cred("client-cert.pem"),
                         .key = cred("client-key.pem") });
    expect_handshake_ok(&sv, &c);
    cr_assert_not_null(strstr(sd_tls_session_peer(sv.s), "CN=test client"));
    client_stop(&c);
    server_stop(&sv);
}

Test(tls, client_without_cert_refused)
{
    struct server sv;
    struct client c;

    server_x509(&sv, cred("ca-cert.pem"));
    client_start(&c, &(struct client_opts){ .verify = true });
    expect_handshake_refused(&sv, &c, "certificate");
    cr_assert_null(sd_tls_session_peer(sv.s));
    client_stop(&c);
    server_stop(&sv);
}

Test(tls, client_cert_from_other_ca_refused)
{
    struct server sv;
    struct client c;

    server_x509(&sv, cred("ca-cert.pem"));
    client_start(&c, &(struct client_opts){
                         .verify = true,
                         .cert = cred("other/client-cert.pem"),
                         .key = cred("other/client-key.pem") });
    expect_handshake_refused(&sv, &c, "certificate verify failed (client "
                             "certificate: unable to get local issuer");
    cr_assert_null(sd_tls_session_peer(sv.s));
    client_stop(&c);
    server_stop(&sv);
    expect_no_leaks();
}

/* ---- PSK ------------------------------------------------------------ */

static struct client_opts alice(int max_version)
{
    return (struct client_opts){ .max_version = max_version,
                                 .psk_identity = "alice",
                                 .psk = alice_key,
                                 .psk_len = alice_key_len };
}

Test(tls, psk_tls13)
{
    struct server sv;
    struct client c;
    struct client_opts o = alice(0);

    server_start(&sv, NULL, NULL, NULL, cred("keys.psk"));
    client_start(&c, &o);
    expect_handshake_ok(&sv, &c);
    cr_assert_eq(SSL_version(c.ssl), TLS1_3_VERSION);
    cr_assert_eq(SSL_session_reused(c.ssl), 1, "the PSK was not used");
    cr_assert_str_eq(sd_tls_session_peer(sv.s), "alice");
    ping_pong(&sv, &c);
    client_stop(&c);
    server_stop(&sv);
    expect_no_leaks();
}

Test(tls, psk_tls12)
{
    struct server sv;
    struct client c;
    struct client_opts o = alice(TLS1_2_VERSION);

    server_start(&sv, NULL, NULL, NULL, cred("keys.psk"));
    client_start(&c, &o);
    /* Only PSK suites, as a client with nothing but a key offers. */
    cr_assert_eq(SSL_set_cipher_list(c.ssl, "kECDHEPSK:kDHEPSK:kPSK"), 1);
    expect_handshake_ok(&sv, &c);
    cr_assert_eq(SSL_version(c.ssl), TLS1_2_VERSION);
    cr_assert_eq(SSL_CIPHER_get_auth_nid(SSL_get_current_cipher(c.ssl)),
                 NID_auth_psk);
    cr_assert_str_eq(sd_tls_session_peer(sv.s), "alice");
    ping_pong(&sv, &c);
    client_stop(&c);
    server_stop(&sv);
}

/* With a certificate and a client CA as well, a PSK client still gets
 * in by its key: the server must pick a SHA-256 suite although the
 * client prefers AES-256-GCM-SHA384, and resuming a PSK "session" must
 * work while client certificates are checked. */
Test(tls, psk_tls13_beside_certificates)
{
    struct server sv;
    struct client c;
    struct client_opts o = alice(0);

    server_start(&sv, cred("server-cert.pem"), cred("server-key.pem"),
                 cred("ca-cert.pem"), cred("keys.psk"));
    client_start(&c, &o);
    expect_handshake_ok(&sv, &c);
    cr_assert_eq(SSL_version(c.ssl), TLS1_3_VERSION);
    cr_assert_eq(SSL_session_reused(c.ssl), 1, "the PSK was not used");
    cr_assert_str_eq(sd_tls_session_peer(sv.s), "alice");
    ping_pong(&sv, &c);
    client_stop(&c);
    server_stop(&sv);
}

Test(tls, psk_tls12_beside_certificates)
{
    struct server sv;
    struct client c;
    struct client_opts o = alice(TLS1_2_VERSION);

    server_start(&sv, cred("server-cert.pem"), cred("server-key.pem"),
                 cred("ca-cert.pem"), cred("keys.psk"));
    client_start(&c, &o);
    /* Both kinds of suites offered: the PSK ones win. */
    cr_assert_eq(SSL_set_cipher_list(c.ssl, "HIGH"), 1);
    expect_handshake_ok(&sv, &c);
    cr_assert_eq(SSL_CIPHER_get_auth_nid(SSL_get_current_cipher(c.ssl)),
                 NID_auth_psk);
    cr_assert_str_eq(sd_tls_session_peer(sv.s), "alice");
    client_stop(&c);
    server_stop(&sv);
}

static unsigned char wrong_key[32];

Test(tls, psk_wrong_key_refused_tls13)
{
    struct server sv;
    struct client c;
    struct client_opts o = alice(0);

    memcpy(wrong_key, alice_key, sizeof(wrong_key));
    wrong_key[7] ^= 1;
    o.psk = wrong_key;
    server_start(&sv, NULL, NULL, NULL, cred("keys.psk"));
    client_start(&c, &o);
    expect_handshake_refused(&sv, &c, "binder");
    client_stop(&c);
    server_stop(&sv);
}

Test(tls, psk_wrong_key_refused_tls12)
{
    struct server sv;
    struct client c;
    struct client_opts o = alice(TLS1_2_VERSION);
    struct outcome res;

    memcpy(wrong_key, alice_key, sizeof(wrong_key));
    wrong_key[0] ^= 0x80;
    o.psk = wrong_key;
    server_start(&sv, NULL, NULL, NULL, cred("keys.psk"));
    client_start(&c, &o);
    cr_assert_eq(SSL_set_cipher_list(c.ssl, "kECDHEPSK:kDHEPSK:kPSK"), 1);
    res = handshake(&sv, &c);
    /* The client's Finished does not decrypt or verify. */
    cr_assert_eq(res.server, -EPROTO, "server: %d", res.server);
    cr_assert_neq(res.err.msg[0], '\0');
    cr_assert(!res.client_done);
    client_stop(&c);
    server_stop(&sv);
}

Test(tls, psk_unknown_identity_refused)
{
    struct server sv;
    struct client c;
    struct client_opts o = alice(0);

    o.psk_identity = "mallory";
    server_start(&sv, NULL, NULL, NULL, cred("keys.psk"));
    client_start(&c, &o);
    expect_handshake_refused(&sv, &c, "unknown PSK identity 'mallory'");
    cr_assert_null(sd_tls_session_peer(sv.s));
    client_stop(&c);
    server_stop(&sv);
}

Test(tls, keys_file_blank_lines_crlf_and_second_entry)
{
    char text[512];
    struct server sv;
    struct client c;
    struct client_opts o = alice(0);

    snprintf(text, sizeof(text),
             "\nbob:00112233445566778899aabbccddeeff\r\n\n"
             "alice:");
    for (size_t i = 0; i < alice_key_len; i++)
        snprintf(text + strlen(text), 3, "%02X", alice_key[i]);
    strcat(text, "\r\n\n");
    write_file(cred("mixed.psk"), text);
    server_start(&sv, NULL, NULL, NULL, cred("mixed.psk"));
    client_start(&c, &o);
    expect_handshake_ok(&sv, &c);
    cr_assert_str_eq(sd_tls_session_peer(sv.s), "alice");
    client_stop(&c);
    server_stop(&sv);
}

/* ---- hostile input and closing --------------------------------------- */

/* After a refused handshake the output holds an alert for the peer. */
static void expect_alert_queued(struct server *sv)
{
    const void *p;
    size_t n = sd_tls_session_output(sv->s, &p);

    cr_assert_geq(n, 7, "no alert queued");
    cr_assert_eq(((const unsigned char *)p)[0], 0x15, "not an alert");
}

static void expect_garbage_refused(const void *garbage, size_t len,
                                   bool alert)
{
    struct server sv;
    struct sd_error err = { 0 };
    int ret;

    server_x509(&sv, NULL);
    cr_assert_eq(sd_tls_session_put_input(sv.s, garbage, len), 0);
    ret = sd_tls_session_handshake(sv.s, &err);
    cr_assert_eq(ret, -EPROTO, "handshake returned %d", ret);
    cr_assert_eq(err.code, -EPROTO);
    cr_assert_not_null(strstr(err.msg, "TLS handshake"), "%s", err.msg);
    if (alert)
        expect_alert_queued(&sv);
    server_stop(&sv);
}

/* OpenSSL sends no alert to what is not TLS at all. */
Test(tls, plain_nbd_greeting_is_not_tls)
{
    /* What a client that does not speak TLS would send: NBD magic. */
    static const char nbd[] = "NBDMAGICIHAVEOPT\0\0\0\x01";

    expect_garbage_refused(nbd, sizeof(nbd) - 1, false);
}

Test(tls, http_request_is_not_tls)
{
    static const char http[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";

    expect_garbage_refused(http, sizeof(http) - 1, false);
}

Test(tls, malformed_client_hello_refused)
{
    /* A handshake record holding a whole ClientHello of 4 bytes: a
     * version, then nothing where 32 random bytes must be. */
    static const unsigned char rec[] = { 0x16, 0x03, 0x01, 0x00, 0x08,
                                         0x01, 0x00, 0x00, 0x04,
                                         0x03, 0x03, 0x00, 0x00 };

    expect_garbage_refused(rec, sizeof(rec), true);
}

Test(tls, partial_record_waits_for_more)
{
    struct server sv;
    struct sd_error err = { 0 };
    static const unsigned char hdr[] = { 0x16, 0x03, 0x01, 0x02 };

    server_x509(&sv, NULL);
    cr_assert_eq(sd_tls_session_handshake(sv.s, &err), -EAGAIN);
    cr_assert_eq(sd_tls_session_put_input(sv.s, hdr, sizeof(hdr)), 0);
    cr_assert_eq(sd_tls_session_handshake(sv.s, &err), -EAGAIN);
    server_stop(&sv);
}

Test(tls, forged_record_after_handshake_is_an_error)
{
    unsigned char rec[5 + 64] = { 0x17, 0x03, 0x03, 0x00, 64 };
    struct server sv;
    struct client c;
    char buf[64];
    size_t got;
    ssize_t n;

    server_x509(&sv, NULL);
    client_start(&c, &(struct client_opts){ .verify = true });
    expect_handshake_ok(&sv, &c);
    cr_assert_eq(RAND_bytes(rec + 5, 64), 1);
    cr_assert_eq(sd_tls_session_put_input(sv.s, rec, sizeof(rec)), 0);
    n = sd_tls_session_read(sv.s, buf, sizeof(buf));
    cr_assert_eq(n, -EPROTO, "read returned %zd", n);
    /* The alert (encrypted in TLS 1.3) reaches the client. */
    cr_assert_gt(pump(&sv, &c), 0);
    cr_assert_eq(SSL_read_ex(c.ssl, buf, sizeof(buf), &got), 0);
    cr_assert_eq(SSL_get_error(c.ssl, 0), SSL_ERROR_SSL);
    client_stop(&c);
    server_stop(&sv);
}

Test(tls, close_notify_reads_as_end)
{
    struct server sv;
    struct client c;
    char buf[16];

    server_x509(&sv, NULL);
    client_start(&c, &(struct client_opts){ .verify = true });
    expect_handshake_ok(&sv, &c);
    client_send(&sv, &c, "last", 4);
    cr_assert_geq(SSL_shutdown(c.ssl), 0);
    pump(&sv, &c);
    server_recv(&sv, &c, buf, 4, sizeof(buf));
    cr_assert_eq(memcmp(buf, "last", 4), 0);
    cr_assert_eq(sd_tls_session_read(sv.s, buf, sizeof(buf)), 0);
    client_stop(&c);
    server_stop(&sv);
}

Test(tls, server_shutdown_sends_close_notify)
{
    struct server sv;
    struct client c;
    char buf[16];
    size_t n = 0;

    server_x509(&sv, NULL);
    client_start(&c, &(struct client_opts){ .verify = true });
    expect_handshake_ok(&sv, &c);
    sd_tls_session_shutdown(sv.s);
    cr_assert_gt(pump(&sv, &c), 0);
    cr_assert_eq(SSL_read_ex(c.ssl, buf, sizeof(buf), &n), 0);
    cr_assert_eq(SSL_get_error(c.ssl, 0), SSL_ERROR_ZERO_RETURN);
    client_stop(&c);
    server_stop(&sv);
}

/* Sessions on one thread share OpenSSL's error queue: an error left
 * there by anyone else must not turn "need more input" into a failure. */
Test(tls, stale_error_in_queue_is_not_ours)
{
    static const char http[] = "GET / HTTP/1.1\r\n\r\n";
    struct sd_tls_session *bad;
    struct server sv;
    struct client c;
    struct sd_error err = { 0 };
    char buf[16];

    server_x509(&sv, NULL);
    cr_assert_eq(sd_tls_session_new(sv.srv, &bad), 0);
    client_start(&c, &(struct client_opts){ .verify = true });
    expect_handshake_ok(&sv, &c);

    ERR_raise(ERR_LIB_SSL, SSL_R_BAD_LENGTH);
    cr_assert_eq(sd_tls_session_read(sv.s, buf, sizeof(buf)), -EAGAIN);
    ERR_raise(ERR_LIB_SSL, SSL_R_BAD_LENGTH);
    cr_assert_eq(sd_tls_session_handshake(bad, &err), -EAGAIN, "%s",
                 err.msg);
    /* The other session fails; the first still works. */
    cr_assert_eq(sd_tls_session_put_input(bad, http, sizeof(http) - 1), 0);
    cr_assert_eq(sd_tls_session_handshake(bad, &err), -EPROTO);
    ERR_raise(ERR_LIB_SSL, SSL_R_BAD_LENGTH);
    ping_pong(&sv, &c);
    sd_tls_session_free(bad);
    client_stop(&c);
    server_stop(&sv);
}

/* ---- configuration errors ------------------------------------------- */

Test(tls, missing_cert_named)
{
    struct sd_error e = server_new_error(cred("nope-cert.pem"),
                                         cred("server-key.pem"), NULL, NULL);

    cr_assert_eq(e.code, -ENOENT);
    cr_assert_not_null(strstr(e.msg, cred("nope-cert.pem")), "%s", e.msg);
}

Test(tls, cert_not_pem_named)
{
    struct sd_error e = server_new_error(cred("keys.psk"),
                                         cred("server-key.pem"), NULL, NULL);

    cr_assert_eq(e.code, -EINVAL);
    cr_assert_not_null(strstr(e.msg, cred("keys.psk")), "%s", e.msg);
}

Test(tls, key_not_matching_cert_named)
{
    struct sd_error e = server_new_error(cred("server-cert.pem"),
                                         cred("client-key.pem"), NULL, NULL);

    cr_assert_not_null(strstr(e.msg, cred("client-key.pem")), "%s", e.msg);
    cr_assert_not_null(strstr(e.msg, "match"), "%s", e.msg);
}

Test(tls, encrypted_key_is_an_error_not_a_prompt)
{
    char cmd[3 * PATH_MAX];

    snprintf(cmd, sizeof(cmd),
             "openssl pkey -in %s -aes256 -passout pass:secret -out %s",
             cred("server-key.pem"), cred("enc-key.pem"));
    run(cmd);
    struct sd_error e = server_new_error(cred("server-cert.pem"),
                                         cred("enc-key.pem"), NULL, NULL);

    cr_assert_not_null(strstr(e.msg, cred("enc-key.pem")), "%s", e.msg);
}

Test(tls, missing_ca_named)
{
    struct sd_error e = server_new_error(cred("server-cert.pem"),
                                         cred("server-key.pem"),
                                         cred("nope-ca.pem"), NULL);

    cr_assert_eq(e.code, -ENOENT);
    cr_assert_not_null(strstr(e.msg, cred("nope-ca.pem")), "%s", e.msg);
}

Test(tls, missing_keys_file_named)
{
    struct sd_error e = server_new_error(NULL, NULL, NULL,
                                         cred("nope.psk"));

    cr_assert_eq(e.code, -ENOENT);
    cr_assert_not_null(strstr(e.msg, cred("nope.psk")), "%s", e.msg);
}

Test(tls, malformed_keys_files_name_file_and_line)
{
    static const char k32[] =
        "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
    char long_id[200];
    struct {
        const char *text;
        unsigned line;
        const char *why;
    } cases[] = {
        { "alice\n", 1, "identity:hexkey" },
        { "\n\n:%s\n", 3, "identity:hexkey" },
        { "alice:%s\nalice:%s\n", 2, "twice" },
        { "alice:0011\n", 1, "16 to 256 bytes" },
        { "alice:%s0\n", 1, "odd number" },
        { "alice:zz%s\n", 1, "not hexadecimal" },
        { "ali\tce:%s\n", 1, "control character" },
        { "%s:%s\n", 1, "longer than 128" },
        { "alice:%s\nbob:%s:x\n", 2, "not hexadecimal" },
    };
    char text[1024], want[PATH_MAX + 32];

    memset(long_id, 'a', 129);
    long_id[129] = '\0';
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *path = cred("bad.psk");

        /* Cases with two %s: the identity or first key, then a key. */
        if (strstr(cases[i].text, "%s:%s"))
            snprintf(text, sizeof(text), cases[i].text, long_id, k32);
        else
            snprintf(text, sizeof(text), cases[i].text, k32, k32);
        write_file(path, text);
        struct sd_error e = server_new_error(NULL, NULL, NULL, path);

        snprintf(want, sizeof(want), "%s:%u: ", path, cases[i].line);
        cr_assert_eq(e.code, -EINVAL, "case %zu", i);
        cr_assert_not_null(strstr(e.msg, want), "case %zu: %s", i, e.msg);
        cr_assert_not_null(strstr(e.msg, cases[i].why), "case %zu: %s", i,
                           e.msg);
    }
}

Test(tls, empty_keys_file_refused)
{
    write_file(cred("empty.psk"), "\n\n");
    struct sd_error e = server_new_error(NULL, NULL, NULL, cred("empty.psk"));

    cr_assert_not_null(strstr(e.msg, cred("empty.psk")), "%s", e.msg);
    cr_assert_not_null(strstr(e.msg, "no keys"), "%s", e.msg);
}

Test(tls, mode_off_or_no_credentials_refused)
{
    struct sd_tls_config off = { .mode = SD_TLS_OFF,
                                 .psk_file = (char *)cred("keys.psk") };
    struct sd_tls_config none = { .mode = SD_TLS_REQUIRED };
    struct sd_tls_server *srv;
    struct sd_error e;

    cr_assert_eq(sd_tls_server_new(&off, &srv, &e), -EINVAL);
    cr_assert_eq(sd_tls_server_new(&none, &srv, &e), -EINVAL);
}
