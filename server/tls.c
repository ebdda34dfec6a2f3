/* SPDX-License-Identifier: MIT */
/*
 * TLS sessions on OpenSSL BIOs in memory (see tls.h for the data flow).
 *
 * Notes on the design:
 *
 * - Each session has two BIOs (tls-bio.c): `in` holds ciphertext
 *   received from the peer, straight from the socket, until OpenSSL reads
 *   it; `out` collects the ciphertext OpenSSL produces until the
 *   connection takes it to send. Both grow as needed, so a write never stops half-way for
 *   want of room; the connection's in-flight budget is what bounds them.
 *
 * - OpenSSL's error queue belongs to the thread, and several sessions
 *   run on one worker thread, so it is cleared before every SSL call and
 *   read right after: an error is always this session's.
 *
 * - PSK comes in two shapes. TLS 1.2 asks for the key by identity
 *   (psk_server_callback). TLS 1.3 treats an external PSK as a session
 *   to resume (psk_find_session_callback), and the session's cipher
 *   must use the hash the client bound the key with. GnuTLS (qemu,
 *   libnbd) binds external keys with SHA-256, so when a keys file is
 *   loaded the server prefers the SHA-256 suites; otherwise OpenSSL
 *   would follow GnuTLS's preference for AES-256-GCM-SHA384 and
 *   silently ignore the key.
 *
 * - No session cache and no tickets: NBD clients connect rarely, and
 *   resumption would be one more way in to check.
 */
#include "config.h"

#include "server/tls.h"
#include "server/tls-bio.h"

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

/* Limits of a PSK keys file. psktool writes 32-byte keys; a key
 * shorter than 16 bytes could be found by brute force. */
enum {
    PSK_FILE_MAX = 1 << 20,
    PSK_ENTRIES_MAX = 10000,
    PSK_IDENTITY_MAX = 128,   /* RFC 4279 asks every peer to accept 128 */
    PSK_KEY_MIN = 16,
    PSK_KEY_MAX = 256,
};

/* TLS 1.2 suites: forward secrecy and AEAD or SHA-2 MACs, plus the PSK
 * suites GnuTLS offers (ECDHE-PSK, DHE-PSK, plain PSK). */
#define TLS12_CIPHERS \
    "HIGH:!aNULL:!eNULL:!kRSA:!kRSAPSK:!CAMELLIA:!ARIA:!SHA1:!AESCCM8"
static const char tls12_ciphers[] = TLS12_CIPHERS;
/* With a keys file, the PSK suites first: a client that offers them has
 * a key, and may be unable to check a certificate (gnutls-cli offers
 * both). */
static const char tls12_psk_first[] =
    "HIGH+kECDHEPSK:HIGH+kDHEPSK:HIGH+kPSK:" TLS12_CIPHERS;
/* TLS 1.3 suites, SHA-256 first, used when PSK is on (see above). */
static const char tls13_psk_first[] =
    "TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256:"
    "TLS_AES_256_GCM_SHA384";
static const unsigned char sid_context[] = "sendense-nbd";
static const unsigned char tls13_aes128gcm_sha256[] = { 0x13, 0x01 };
static const unsigned char tls13_aes256gcm_sha384[] = { 0x13, 0x02 };

struct psk_entry {
    char *identity;                 /* NUL-terminated */
    size_t identity_len;
    unsigned char key[PSK_KEY_MAX];
    size_t key_len;
};

struct sd_tls_server {
    SSL_CTX *ctx;
    struct psk_entry *psk;          /* n_psk entries */
    size_t n_psk;
};

struct sd_tls_session {
    SSL *ssl;
    BIO *in, *out;                  /* owned by ssl */
    char *peer;                     /* NULL until known */
    char *psk_identity;             /* the identity a PSK was found for */
    char note[160];                 /* why a PSK was not used, for errors */
};

/* ---- errors ------------------------------------------------------- */

/* OpenSSL's first (most specific) reason for a failure, emptying the
 * queue. */
static void openssl_reason(char *buf, size_t len)
{
    unsigned long e = ERR_get_error();

    if (e)
        ERR_error_string_n(e, buf, len);
    else
        snprintf(buf, len, "no detail from OpenSSL");
    ERR_clear_error();
}

static int openssl_error(struct sd_error *err, int code, const char *what)
{
    char reason[256];

    openssl_reason(reason, sizeof(reason));
    return sd_error_set(err, code, "%s: %s", what, reason);
}

/* A file we are about to hand to OpenSSL: say plainly if it cannot be
 * read, since OpenSSL's own message for that is cryptic. */
static int check_readable(const char *what, const char *path,
                          struct sd_error *err)
{
    if (access(path, R_OK) < 0)
        return sd_error_set(err, -errno, "tls %s '%s': %s", what, path,
                            strerror(errno));
    return 0;
}

/* ---- PSK keys file ------------------------------------------------ */

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Decode hex into key; returns the length or a message in *why. */
static size_t hex_decode(const char *hex, size_t len, unsigned char *key,
                         const char **why)
{
    size_t i;

    if (len % 2) {
        *why = "key has an odd number of hex digits";
        return 0;
    }
    if (len / 2 < PSK_KEY_MIN || len / 2 > PSK_KEY_MAX) {
        *why = "key must be 16 to 256 bytes (32 to 512 hex digits)";
        return 0;
    }
    for (i = 0; i < len; i += 2) {
        int hi = hex_value(hex[i]), lo = hex_value(hex[i + 1]);

        if (hi < 0 || lo < 0) {
            *why = "key is not hexadecimal";
            return 0;
        }
        key[i / 2] = (unsigned char)(hi << 4 | lo);
    }
    return len / 2;
}

static const char *identity_problem(const char *id, size_t len)
{
    size_t i;

    if (len == 0)
        return "expected identity:hexkey";
    if (len > PSK_IDENTITY_MAX)
        return "identity longer than 128 bytes";
    for (i = 0; i < len; i++)
        if ((unsigned char)id[i] < 0x20 || id[i] == 0x7f)
            return "identity has a control character";
    return NULL;
}

static const struct psk_entry *psk_lookup(const struct sd_tls_server *srv,
                                          const void *id, size_t len)
{
    size_t i;

    for (i = 0; i < srv->n_psk; i++)
        if (srv->psk[i].identity_len == len &&
            memcmp(srv->psk[i].identity, id, len) == 0)
            return &srv->psk[i];
    return NULL;
}

/* Parse one non-blank line into a new entry of srv. */
static int psk_add_line(struct sd_tls_server *srv, char *line,
                        const char *path, unsigned lineno,
                        struct sd_error *err)
{
    char *colon = strchr(line, ':');
    const char *why = NULL;
    struct psk_entry *e;
    size_t id_len = colon ? (size_t)(colon - line) : 0;

    why = colon ? identity_problem(line, id_len) : "expected identity:hexkey";
    if (!why && psk_lookup(srv, line, id_len))
        why = "identity appears twice";
    if (!why && srv->n_psk == PSK_ENTRIES_MAX)
        why = "more than 10000 keys";
    if (why)
        return sd_error_set(err, -EINVAL, "%s:%u: %s", path, lineno, why);

    e = &srv->psk[srv->n_psk];
    e->key_len = hex_decode(colon + 1, strlen(colon + 1), e->key, &why);
    if (why) {
        OPENSSL_cleanse(e->key, sizeof(e->key));
        return sd_error_set(err, -EINVAL, "%s:%u: %s", path, lineno, why);
    }
    e->identity = strndup(line, id_len);
    if (!e->identity) {
        OPENSSL_cleanse(e->key, sizeof(e->key));
        return sd_error_set(err, -ENOMEM, "%s: out of memory", path);
    }
    e->identity_len = id_len;
    srv->n_psk++;
    return 0;
}

/* Read the whole file (bounded) into a NUL-terminated buffer. */
static int read_small_file(const char *path, char **out, size_t *len,
                           struct sd_error *err)
{
    FILE *f = fopen(path, "re");
    struct stat st;
    char *buf = NULL;
    int ret = 0;

    if (!f)
        return sd_error_set(err, -errno, "tls psk_file '%s': %s", path,
                            strerror(errno));
    if (fstat(fileno(f), &st) < 0) {
        ret = sd_error_set(err, -errno, "tls psk_file '%s': %s", path,
                           strerror(errno));
    } else if (!S_ISREG(st.st_mode) || st.st_size > PSK_FILE_MAX) {
        ret = sd_error_set(err, -EINVAL, "tls psk_file '%s': not a regular "
                           "file of at most 1 MiB", path);
    } else if (!(buf = malloc((size_t)st.st_size + 1))) {
        ret = sd_error_set(err, -ENOMEM, "tls psk_file '%s': out of memory",
                           path);
    } else {
        *len = fread(buf, 1, (size_t)st.st_size, f);
        if (ferror(f))
            ret = sd_error_set(err, -EIO, "tls psk_file '%s': read error",
                               path);
        buf[*len] = '\0';
    }
    fclose(f);
    if (ret < 0 && buf) {
        OPENSSL_cleanse(buf, (size_t)st.st_size + 1);
        free(buf);
        buf = NULL;
    }
    *out = buf;
    return ret;
}

/* Load psktool's format: "identity:hexkey" per line. Blank lines are
 * skipped; anything else that does not parse is an error. */
static int psk_load(struct sd_tls_server *srv, const char *path,
                    struct sd_error *err)
{
    char *text = NULL, *line, *next;
    size_t len = 0, n_lines = 1;
    unsigned lineno = 0;
    int ret = read_small_file(path, &text, &len, err);

    if (ret < 0)
        return ret;
    if (memchr(text, '\0', len))
        ret = sd_error_set(err, -EINVAL, "%s: contains a NUL byte", path);
    for (size_t i = 0; i < len; i++)
        n_lines += text[i] == '\n';
    if (!ret && !(srv->psk = calloc(n_lines < PSK_ENTRIES_MAX ? n_lines
                                                              : PSK_ENTRIES_MAX,
                                    sizeof(*srv->psk))))
        ret = sd_error_set(err, -ENOMEM, "%s: out of memory", path);
    for (line = text; !ret && line && *line; line = next) {
        next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        lineno++;
        size_t n = strlen(line);
        if (n && line[n - 1] == '\r')
            line[--n] = '\0';
        if (n)
            ret = psk_add_line(srv, line, path, lineno, err);
    }
    if (!ret && srv->n_psk == 0)
        ret = sd_error_set(err, -EINVAL, "%s: no keys", path);
    OPENSSL_cleanse(text, len);
    free(text);
    return ret;
}

static void psk_free(struct sd_tls_server *srv)
{
    size_t i;

    for (i = 0; i < srv->n_psk; i++) {
        OPENSSL_cleanse(srv->psk[i].key, sizeof(srv->psk[i].key));
        free(srv->psk[i].identity);
    }
    free(srv->psk);
    srv->psk = NULL;
    srv->n_psk = 0;
}

/* ---- PSK callbacks -------------------------------------------------- */

static const struct sd_tls_server *server_of(SSL *ssl)
{
    return SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));
}

/* For the error message: the client's bytes, printable and short. */
static void note_unknown_identity(struct sd_tls_session *s,
                                  const unsigned char *id, size_t len)
{
    char shown[65];
    size_t i;

    for (i = 0; i < len && i < sizeof(shown) - 1; i++)
        shown[i] = id[i] >= 0x20 && id[i] < 0x7f ? (char)id[i] : '?';
    shown[i] = '\0';
    snprintf(s->note, sizeof(s->note), "unknown PSK identity '%s'%s", shown,
             len > i ? "..." : "");
}

/* The key of identity (len bytes, not terminated), noting in the
 * session which identity it is, or why there is none. */
static const struct psk_entry *psk_for(SSL *ssl,
                                       const unsigned char *identity,
                                       size_t len)
{
    struct sd_tls_session *s = SSL_get_app_data(ssl);
    const struct psk_entry *e = psk_lookup(server_of(ssl), identity, len);

    if (!e) {
        note_unknown_identity(s, identity, len);
        return NULL;
    }
    free(s->psk_identity);
    s->psk_identity = strdup(e->identity);
    return s->psk_identity ? e : NULL;
}

/* TLS 1.2: copy the key for identity into psk. */
static unsigned int psk_server_cb(SSL *ssl, const char *identity,
                                  unsigned char *psk, unsigned int max_len)
{
    const struct psk_entry *e = psk_for(ssl, (const unsigned char *)identity,
                                        strlen(identity));

    if (!e || e->key_len > max_len)
        return 0;
    memcpy(psk, e->key, e->key_len);
    return (unsigned int)e->key_len;
}

/* TLS 1.3: the key as a session to resume. Its cipher's hash must be
 * the one of the suite OpenSSL chose (RFC 8446 4.2.11), which we made
 * SHA-256 whenever the client allows it. */
static int psk_find_session_cb(SSL *ssl, const unsigned char *identity,
                               size_t len, SSL_SESSION **out)
{
    const struct psk_entry *e = psk_for(ssl, identity, len);
    const SSL_CIPHER *chosen = SSL_get_pending_cipher(ssl);
    const unsigned char *id = tls13_aes128gcm_sha256;
    const SSL_CIPHER *cipher;
    SSL_SESSION *sess;

    *out = NULL;
    if (!e)
        return 1;                   /* no PSK: try certificates */
    if (chosen && SSL_CIPHER_get_handshake_digest(chosen) &&
        EVP_MD_get_type(SSL_CIPHER_get_handshake_digest(chosen)) ==
            NID_sha384)
        id = tls13_aes256gcm_sha384;
    cipher = SSL_CIPHER_find(ssl, id);
    sess = SSL_SESSION_new();
    if (!cipher || !sess ||
        !SSL_SESSION_set1_master_key(sess, e->key, e->key_len) ||
        !SSL_SESSION_set_cipher(sess, cipher) ||
        !SSL_SESSION_set_protocol_version(sess, TLS1_3_VERSION)) {
        SSL_SESSION_free(sess);
        return 0;                   /* abort the handshake */
    }
    *out = sess;
    return 1;
}

/* ---- server --------------------------------------------------------- */

/* Never ask a terminal for a passphrase: an encrypted key is an error. */
static int no_passphrase_cb(char *buf, int size, int rwflag, void *data)
{
    (void)buf, (void)size, (void)rwflag, (void)data;
    return 0;
}

static int load_cert_and_key(SSL_CTX *ctx, const struct sd_tls_config *cfg,
                             struct sd_error *err)
{
    char what[SD_ERROR_MSG_MAX / 2];
    int ret;

    if ((ret = check_readable("cert", cfg->cert, err)) < 0 ||
        (ret = check_readable("key", cfg->key, err)) < 0)
        return ret;
    ERR_clear_error();
    if (SSL_CTX_use_certificate_chain_file(ctx, cfg->cert) != 1) {
        snprintf(what, sizeof(what), "tls cert '%s'", cfg->cert);
        return openssl_error(err, -EINVAL, what);
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, cfg->key, SSL_FILETYPE_PEM) != 1) {
        snprintf(what, sizeof(what), "tls key '%s'", cfg->key);
        return openssl_error(err, -EINVAL, what);
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        snprintf(what, sizeof(what), "tls key '%s' does not match cert '%s'",
                 cfg->key, cfg->cert);
        return openssl_error(err, -EINVAL, what);
    }
    return 0;
}

/* Clients must present a certificate signed by the CA in ca. */
static int load_client_ca(SSL_CTX *ctx, const char *ca, struct sd_error *err)
{
    char what[SD_ERROR_MSG_MAX / 2];
    STACK_OF(X509_NAME) *names;
    int ret = check_readable("ca", ca, err);

    if (ret < 0)
        return ret;
    snprintf(what, sizeof(what), "tls ca '%s'", ca);
    ERR_clear_error();
    if (SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1)
        return openssl_error(err, -EINVAL, what);
    /* Tells clients which CA we trust, to pick their certificate. */
    names = SSL_load_client_CA_file(ca);
    if (!names)
        return openssl_error(err, -EINVAL, what);
    SSL_CTX_set_client_CA_list(ctx, names);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT,
                       NULL);
    return 0;
}

static int setup_psk(struct sd_tls_server *srv, const char *path,
                     struct sd_error *err)
{
    int ret = psk_load(srv, path, err);

    if (ret < 0)
        return ret;
    ERR_clear_error();
    if (SSL_CTX_set_ciphersuites(srv->ctx, tls13_psk_first) != 1 ||
        SSL_CTX_set_cipher_list(srv->ctx, tls12_psk_first) != 1)
        return openssl_error(err, -EINVAL, "tls: PSK cipher suites");
    SSL_CTX_set_options(srv->ctx, SSL_OP_CIPHER_SERVER_PREFERENCE);
    SSL_CTX_set_psk_server_callback(srv->ctx, psk_server_cb);
    SSL_CTX_set_psk_find_session_callback(srv->ctx, psk_find_session_cb);
    return 0;
}

/* What every context gets, credentials aside. */
static int ctx_defaults(SSL_CTX *ctx, struct sd_error *err)
{
    ERR_clear_error();
    if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1 ||
        SSL_CTX_set_cipher_list(ctx, tls12_ciphers) != 1 ||
        SSL_CTX_set_dh_auto(ctx, 1) != 1 ||
        SSL_CTX_set_num_tickets(ctx, 0) != 1)
        return openssl_error(err, -EINVAL, "tls: setting up OpenSSL");
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_TICKET);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    /* A TLS 1.3 PSK is a resumed session, which OpenSSL refuses when
     * client certificates are checked and this is not set. */
    if (SSL_CTX_set_session_id_context(ctx, sid_context,
                                       sizeof(sid_context) - 1) != 1)
        return openssl_error(err, -EINVAL, "tls: setting up OpenSSL");
    SSL_CTX_set_default_passwd_cb(ctx, no_passphrase_cb);
    return 0;
}

int sd_tls_server_new(const struct sd_tls_config *cfg,
                      struct sd_tls_server **out, struct sd_error *err)
{
    struct sd_tls_server *srv;
    int ret;

    *out = NULL;
    if (cfg->mode == SD_TLS_OFF || (!cfg->cert && !cfg->psk_file) ||
        !cfg->cert != !cfg->key || (cfg->ca && !cfg->cert))
        return sd_error_set(err, -EINVAL, "tls: incomplete configuration "
                            "(cert and key, or psk_file, are needed)");
    srv = calloc(1, sizeof(*srv));
    if (!srv)
        return sd_error_set(err, -ENOMEM, "tls: out of memory");
    ERR_clear_error();
    srv->ctx = SSL_CTX_new(TLS_server_method());
    if (!srv->ctx) {
        ret = openssl_error(err, -ENOMEM, "tls: creating a context");
        goto fail;
    }
    SSL_CTX_set_app_data(srv->ctx, srv);
    if ((ret = ctx_defaults(srv->ctx, err)) < 0 ||
        (cfg->cert && (ret = load_cert_and_key(srv->ctx, cfg, err)) < 0) ||
        (cfg->ca && (ret = load_client_ca(srv->ctx, cfg->ca, err)) < 0) ||
        (cfg->psk_file && (ret = setup_psk(srv, cfg->psk_file, err)) < 0))
        goto fail;
    *out = srv;
    return 0;

fail:
    sd_tls_server_free(srv);
    return ret;
}

void sd_tls_server_free(struct sd_tls_server *srv)
{
    if (!srv)
        return;
    SSL_CTX_free(srv->ctx);
    psk_free(srv);
    free(srv);
}

/* ---- sessions ------------------------------------------------------- */

int sd_tls_session_new(struct sd_tls_server *srv,
                       struct sd_tls_session **out)
{
    struct sd_tls_session *s = calloc(1, sizeof(*s));

    *out = NULL;
    if (!s)
        return -ENOMEM;
    ERR_clear_error();
    s->ssl = SSL_new(srv->ctx);
    s->in = tls_in_bio_new();
    s->out = tls_out_bio_new();
    if (!s->ssl || !s->in || !s->out) {
        BIO_free(s->in);
        BIO_free(s->out);
        SSL_free(s->ssl);
        free(s);
        ERR_clear_error();
        return -ENOMEM;
    }
    SSL_set_bio(s->ssl, s->in, s->out);  /* ssl owns both now */
    SSL_set_app_data(s->ssl, s);
    SSL_set_accept_state(s->ssl);
    *out = s;
    return 0;
}

void sd_tls_session_free(struct sd_tls_session *s)
{
    if (!s)
        return;
    SSL_free(s->ssl);
    free(s->peer);
    free(s->psk_identity);
    free(s);
}

int sd_tls_session_put_input(struct sd_tls_session *s, const void *buf,
                             size_t len)
{
    void *space;

    if (len && tls_in_bio_space(s->in, len, &space) == 0)
        return -ENOMEM;
    if (len) {
        memcpy(space, buf, len);
        tls_in_bio_commit(s->in, len);
    }
    return 0;
}

size_t sd_tls_session_input_space(struct sd_tls_session *s, size_t want,
                                  void **ptr)
{
    return tls_in_bio_space(s->in, want, ptr);
}

void sd_tls_session_input_commit(struct sd_tls_session *s, size_t n)
{
    tls_in_bio_commit(s->in, n);
}

size_t sd_tls_session_output(struct sd_tls_session *s, const void **ptr)
{
    return tls_out_bio_peek(s->out, ptr);
}

void sd_tls_session_consume(struct sd_tls_session *s, size_t n)
{
    tls_out_bio_consume(s->out, n);
}

size_t sd_tls_session_take_output(struct sd_tls_session *s, void **buf)
{
    return tls_out_bio_take(s->out, buf);
}

void sd_tls_session_give_back_output(struct sd_tls_session *s, void *buf)
{
    tls_out_bio_give_back(s->out, buf);
}

void sd_tls_session_trim(struct sd_tls_session *s)
{
    tls_out_bio_trim(s->out);
}

/* What a failed SSL call (its return value ret) means. */
static int ssl_failure(struct sd_tls_session *s, int ret,
                       struct sd_error *err, const char *what)
{
    int code = SSL_get_error(s->ssl, ret);
    char reason[256], verify_text[160] = "";
    long verify;

    switch (code) {
    case SSL_ERROR_WANT_READ:
        ERR_clear_error();
        return -EAGAIN;
    case SSL_ERROR_ZERO_RETURN:
        ERR_clear_error();
        return sd_error_set(err, -ECONNRESET, "%s: the peer closed the "
                            "session", what);
    case SSL_ERROR_SSL:
        openssl_reason(reason, sizeof(reason));
        verify = SSL_get_verify_result(s->ssl);
        if (verify != X509_V_OK)
            snprintf(verify_text, sizeof(verify_text),
                     " (client certificate: %s)",
                     X509_verify_cert_error_string(verify));
        return sd_error_set(err, -EPROTO, "%s: %s%s%s%s", what, reason,
                            verify_text, s->note[0] ? "; " : "", s->note);
    default:
        return openssl_error(err, -EIO, what);
    }
}

/* Whether the handshake authenticated the client by PSK: a PSK cipher
 * suite in TLS 1.2; in TLS 1.3 a resumed session, and with neither
 * tickets nor cache, only an external PSK resumes. */
static bool psk_used(SSL *ssl)
{
    const SSL_CIPHER *c = SSL_get_current_cipher(ssl);

    if (SSL_version(ssl) >= TLS1_3_VERSION)
        return SSL_session_reused(ssl) == 1;
    return c && SSL_CIPHER_get_auth_nid(c) == NID_auth_psk;
}

/* Who the peer is, once the handshake is done: the PSK identity, or its
 * certificate's subject. */
static int remember_peer(struct sd_tls_session *s, struct sd_error *err)
{
    X509 *cert = SSL_get0_peer_certificate(s->ssl);
    char *name;

    if (s->peer)
        return 0;
    if (s->psk_identity && psk_used(s->ssl)) {
        s->peer = s->psk_identity;
        s->psk_identity = NULL;
        return 0;
    }
    if (!cert)
        return 0;
    name = X509_NAME_oneline(X509_get_subject_name(cert), NULL, 0);
    s->peer = name ? strdup(name) : NULL;
    OPENSSL_free(name);
    if (!s->peer)
        return sd_error_set(err, -ENOMEM, "TLS handshake: out of memory");
    return 0;
}

int sd_tls_session_handshake(struct sd_tls_session *s, struct sd_error *err)
{
    int ret;

    ERR_clear_error();
    ret = SSL_do_handshake(s->ssl);
    if (ret == 1)
        return remember_peer(s, err);
    return ssl_failure(s, ret, err, "TLS handshake");
}

ssize_t sd_tls_session_read(struct sd_tls_session *s, void *buf, size_t len)
{
    size_t n = 0;
    int ret;

    if (len == 0)
        return -EINVAL;             /* 0 would read as "closed" */
    ERR_clear_error();
    ret = SSL_read_ex(s->ssl, buf, len, &n);
    if (ret == 1)
        return (ssize_t)n;
    if (SSL_get_error(s->ssl, ret) == SSL_ERROR_ZERO_RETURN) {
        ERR_clear_error();
        return 0;
    }
    return ssl_failure(s, ret, NULL, "TLS read");
}

int sd_tls_session_write(struct sd_tls_session *s, const void *buf,
                         size_t len)
{
    size_t written = 0;
    int ret;

    if (len == 0)
        return 0;
    /* Without partial writes, SSL_write_ex takes all of buf, split into
     * records, or fails. */
    ERR_clear_error();
    ret = SSL_write_ex(s->ssl, buf, len, &written);
    if (ret == 1)
        return 0;
    return ssl_failure(s, ret, NULL, "TLS write");
}

void sd_tls_session_shutdown(struct sd_tls_session *s)
{
    ERR_clear_error();
    /* 0 means "sent, the peer's has not come": all we want. A failure
     * leaves nothing to send, which the caller's close handles. */
    if (SSL_shutdown(s->ssl) < 0)
        ERR_clear_error();
}

const char *sd_tls_session_peer(const struct sd_tls_session *s)
{
    return s->peer;
}
