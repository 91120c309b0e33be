/* SPDX-License-Identifier: MIT */
/*
 * One outgoing TCP (+TLS) connection on sd-event. See tls-conn.h for the
 * contract; the notes here are about how it is kept.
 *
 * States: RESOLVING -> CONNECTING (one address at a time, each with the
 * connect timer) -> [HANDSHAKE] -> OPEN; conn_start_tls() goes OPEN ->
 * HANDSHAKE -> OPEN. A failure found inside one of our event callbacks is
 * reported at once (CLOSED); one found in an API call (conn_write,
 * conn_start_tls) moves to CLOSING and is reported from the defer source on
 * the next iteration, so the owner never sees "closed" from inside its own
 * call.
 *
 * Ownership: the conn owns its sources (io, timer, defer), the socket, the
 * SSL, the resolver query and the address list; all are released before
 * "closed" is called and in conn_free(). Every callback into the owner runs
 * between conn_enter() and conn_leave(): conn_free() inside a callback
 * releases everything but leaves the struct until the outermost handler
 * returns, and every call site checks c->freed / c->state afterwards.
 *
 * TLS contexts are shared: one SSL_CTX per distinct ca_file (NULL = system
 * store), reference counted and freed with the last connection using it.
 * The verify callback and pin live on the SSL (app data = the conn), so the
 * host name and pin stay per connection. No session cache: every handshake
 * runs the verify callback, which is where the pin is checked.
 *
 * Pin semantics: with tls_fingerprint set, the SHA-256 of the leaf
 * certificate (DER) must match, always. A matching pin makes chain and host
 * name failures non-fatal (the pin names the exact certificate, which makes
 * self-signed servers usable, as isync and fetchmail do); a mismatching pin
 * fails even when the chain verifies.
 *
 * Writes go through send(MSG_NOSIGNAL) for plain sockets and through our own
 * socket BIO (send with MSG_NOSIGNAL) under OpenSSL, so a peer that has gone
 * away gives EPIPE, never SIGPIPE, whatever the process does with signals.
 */

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <ifaddrs.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "log.h"
#include "macro.h"
#include "resolve.h"
#include "tls-conn.h"

#define USEC_PER_SEC_U64 1000000ULL

#ifndef MIN
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#endif
#ifndef MAX
#define MAX(a, b) ((a) > (b) ? (a) : (b))
#endif

#define CONN_READ_CHUNK (16U * 1024U)           /* stack buffer per read */
#define CONN_READ_BUDGET (64U * 1024U)          /* bytes per wake-up before yielding */
#define CONN_DEFAULT_TIMEOUT_USEC (30 * USEC_PER_SEC_U64)
#define CONN_DEFAULT_KEEPIDLE 60U
#define CONN_DEFAULT_KEEPINTVL 15U
#define CONN_DEFAULT_KEEPCNT 4U
#define CONN_DEFAULT_USER_TIMEOUT_MS 120000U
#define CONN_DEFAULT_MAX_OUTPUT (1024U * 1024U)
#define CONN_WBUF_MIN 1024U
#define PIN_LEN 32                              /* SHA-256 */

/* What OpenSSL keeps for an idle client connection with its buffers
 * released: the SSL (7.6 KiB alone), session, verify parameters, record
 * layer, ~140 allocations; measured with a counting CRYPTO_set_mem_functions()
 * against Dovecot (TLS 1.3, P-256). The peer certificates come on top. */
#define CONN_SSL_IDLE_ESTIMATE (20U * 1024U)
/* An sd-event source with its allocator overhead. */
#define CONN_EVENT_SOURCE_ESTIMATE 256U

#define conn_debug(c, ...) log_internal(LOG_DEBUG, 0, (c)->log_prefix, __VA_ARGS__)

enum conn_state {
        CONN_RESOLVING,
        CONN_CONNECTING,
        CONN_HANDSHAKE,
        CONN_OPEN,
        CONN_CLOSING,           /* failure recorded, reported from the defer source */
        CONN_CLOSED,
};

struct conn_failure {
        enum conn_error error;
        int r;
        char message[384];
};

/* One SSL_CTX per ca_file, shared by the connections using it. */
struct tls_ctx {
        struct tls_ctx *next;
        char *ca_file;                  /* NULL: the system store */
        SSL_CTX *ctx;
        unsigned n_ref;
};

struct conn {
        sd_event *event;
        struct conn_callbacks cb;
        void *userdata;

        /* configuration */
        char *host;
        char *ca_file;
        char *verify_name;
        char *log_prefix;
        uint16_t port;
        bool implicit_tls;
        bool have_pin;
        uint8_t pin[PIN_LEN];
        uint64_t connect_timeout_usec;
        unsigned keepalive_idle_sec, keepalive_interval_sec, keepalive_count, user_timeout_msec;
        size_t max_output;

        enum conn_state state;
        unsigned dispatch_depth;
        bool freed;                     /* conn_free() ran inside a callback */

        /* resolving and connecting */
        struct resolve_query *query;
        struct addrinfo *addrs, *next_addr;
        unsigned n_attempts, n_timeouts;
        int last_connect_error;

        /* the socket */
        int fd;
        sd_event_source *io, *timer, *defer;
        uint32_t events;                /* the io source's current mask */
        bool tcp_connected;
        bool loopback;
        char peer[INET6_ADDRSTRLEN + 8];        /* "[addr]:port" of the (last tried) peer */

        /* TLS */
        struct tls_ctx *tls_ctx;
        SSL *ssl;
        bool starttls;                  /* the handshake came from conn_start_tls() */
        bool tls_up;                    /* handshake done, peer verified */
        bool pin_checked, pin_mismatch;
        int verify_error;               /* first X509_V_ERR_* the verify callback saw */
        uint8_t seen_pin[PIN_LEN];      /* the leaf's SHA-256, when seen_pin_set */
        bool seen_pin_set;
        uint32_t handshake_want, read_want, write_want;

        /* output queue, allocated while bytes are queued */
        char *wbuf;
        size_t woff, wlen, wsize;

        /* CLOSING: what to report */
        enum conn_error pending_error;
        int pending_r;
        char *pending_message;
};

static const char *const conn_error_table[_CONN_ERROR_MAX] = {
        [CONN_ERROR_NONE] = "none",
        [CONN_ERROR_RESOLVE] = "resolve",
        [CONN_ERROR_CONNECT] = "connect",
        [CONN_ERROR_TLS_VERIFY] = "tls-verify",
        [CONN_ERROR_TLS] = "tls",
        [CONN_ERROR_IO] = "io",
        [CONN_ERROR_EOF] = "eof",
        [CONN_ERROR_TIMEOUT] = "timeout",
        [CONN_ERROR_OVERFLOW] = "overflow",
};

const char *conn_error_to_string(enum conn_error e) {
        if ((unsigned) e >= _CONN_ERROR_MAX)
                return NULL;
        return conn_error_table[e];
}

static void conn_close(struct conn *c, const struct conn_failure *f);
static void conn_process(struct conn *c, uint32_t revents, bool force_read);
static int on_io(sd_event_source *s, int fd, uint32_t revents, void *userdata);
static int on_timer(sd_event_source *s, uint64_t usec, void *userdata);

/* ---- small helpers ------------------------------------------------------- */

static int failure_set(struct conn_failure *f, enum conn_error error, int r, const char *fmt, ...)
        _attribute_printf_(4, 5);
static int failure_set(struct conn_failure *f, enum conn_error error, int r, const char *fmt, ...) {
        va_list ap;

        f->error = error;
        f->r = r < 0 ? r : -EIO;
        va_start(ap, fmt);
        vsnprintf(f->message, sizeof(f->message), fmt, ap);
        va_end(ap);
        return f->r;
}

static int unhex(char ch) {
        if (ch >= '0' && ch <= '9')
                return ch - '0';
        if (ch >= 'a' && ch <= 'f')
                return ch - 'a' + 10;
        if (ch >= 'A' && ch <= 'F')
                return ch - 'A' + 10;
        return -1;
}

/* "sha256:AB:cd:..." or bare hex, colons only between bytes. */
static int parse_fingerprint(const char *s, uint8_t ret[PIN_LEN]) {
        uint8_t buf[PIN_LEN];
        size_t n = 0;
        int hi = -1;

        if (strncasecmp(s, "sha256:", 7) == 0)
                s += 7;
        for (; *s; s++) {
                int v;

                if (*s == ':') {
                        if (hi >= 0 || n == 0 || s[1] == '\0' || s[1] == ':')
                                return -EINVAL;
                        continue;
                }
                v = unhex(*s);
                if (v < 0)
                        return -EINVAL;
                if (hi < 0) {
                        hi = v;
                        continue;
                }
                if (n >= PIN_LEN)
                        return -EINVAL;
                buf[n++] = (uint8_t) (hi << 4 | v);
                hi = -1;
        }
        if (hi >= 0 || n != PIN_LEN)
                return -EINVAL;
        memcpy(ret, buf, PIN_LEN);
        return 0;
}

static char *hex_pin(const uint8_t pin[PIN_LEN], char out[2 * PIN_LEN + 1]) {
        static const char digits[] = "0123456789abcdef";

        for (size_t i = 0; i < PIN_LEN; i++) {
                out[2 * i] = digits[pin[i] >> 4];
                out[2 * i + 1] = digits[pin[i] & 15];
        }
        out[2 * PIN_LEN] = '\0';
        return out;
}

static bool is_ip_literal(const char *s) {
        struct in6_addr a;

        return inet_pton(AF_INET, s, &a) == 1 || inet_pton(AF_INET6, s, &a) == 1;
}

static void sockaddr_format(const struct sockaddr *sa, char *buf, size_t size) {
        char addr[INET6_ADDRSTRLEN];

        if (sa->sa_family == AF_INET) {
                const struct sockaddr_in *sin = (const struct sockaddr_in *) sa;

                inet_ntop(AF_INET, &sin->sin_addr, addr, sizeof(addr));
                snprintf(buf, size, "%s:%u", addr, ntohs(sin->sin_port));
        } else if (sa->sa_family == AF_INET6) {
                const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *) sa;

                inet_ntop(AF_INET6, &sin6->sin6_addr, addr, sizeof(addr));
                snprintf(buf, size, "[%s]:%u", addr, ntohs(sin6->sin6_port));
        } else
                snprintf(buf, size, "(family %d)", sa->sa_family);
}

static bool sockaddr_is_loopback(const struct sockaddr *sa) {
        if (sa->sa_family == AF_INET) {
                const struct sockaddr_in *sin = (const struct sockaddr_in *) sa;

                return (ntohl(sin->sin_addr.s_addr) >> 24) == 127;
        }
        if (sa->sa_family == AF_INET6) {
                const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *) sa;

                if (IN6_IS_ADDR_LOOPBACK(&sin6->sin6_addr))
                        return true;
                return IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr) && sin6->sin6_addr.s6_addr[12] == 127;
        }
        return false;
}

/* The first queued OpenSSL error as text; clears the queue. */
static const char *openssl_error(char *buf, size_t size) {
        unsigned long e = ERR_get_error();
        const char *reason = e ? ERR_reason_error_string(e) : NULL;

        if (reason)
                snprintf(buf, size, "%s", reason);
        else if (e)
                ERR_error_string_n(e, buf, size);
        else
                snprintf(buf, size, "unknown error");
        ERR_clear_error();
        return buf;
}

/* ---- a socket BIO that never raises SIGPIPE ------------------------------ */

static pthread_once_t bio_once = PTHREAD_ONCE_INIT;
static BIO_METHOD *bio_method;          /* process lifetime, created once */

static int bio_write_nosignal(BIO *b, const char *data, int len) {
        int fd = -1;
        ssize_t n;

        if (BIO_get_fd(b, &fd) < 0 || fd < 0)
                return -1;
        n = send(fd, data, (size_t) len, MSG_NOSIGNAL);
        BIO_clear_retry_flags(b);
        if (n <= 0 && BIO_sock_should_retry((int) n))
                BIO_set_retry_write(b);
        return (int) n;
}

static void bio_method_init(void) {
        const BIO_METHOD *sock = BIO_s_socket();
        int index = BIO_get_new_index();
        BIO_METHOD *m;

        if (index < 0)
                return;
        m = BIO_meth_new(index | BIO_TYPE_SOURCE_SINK | BIO_TYPE_DESCRIPTOR, "imapidled socket");
        if (!m)
                return;
        if (!BIO_meth_set_write(m, bio_write_nosignal) || !BIO_meth_set_read(m, BIO_meth_get_read(sock)) ||
            !BIO_meth_set_puts(m, BIO_meth_get_puts(sock)) || !BIO_meth_set_ctrl(m, BIO_meth_get_ctrl(sock)) ||
            !BIO_meth_set_create(m, BIO_meth_get_create(sock)) ||
            !BIO_meth_set_destroy(m, BIO_meth_get_destroy(sock))) {
                BIO_meth_free(m);
                return;
        }
        bio_method = m;
}

/* ---- shared SSL_CTX per CA file ----------------------------------------- */

static pthread_mutex_t tls_ctx_lock = PTHREAD_MUTEX_INITIALIZER;
static struct tls_ctx *tls_ctxs;

static bool streq_ptr(const char *a, const char *b) {
        if (!a || !b)
                return a == b;
        return strcmp(a, b) == 0;
}

static int tls_ctx_create(const char *ca_file, SSL_CTX **ret, struct conn_failure *f) {
        char err[256];
        SSL_CTX *ctx;

        ERR_clear_error();
        ctx = SSL_CTX_new(TLS_client_method());
        if (!ctx)
                return failure_set(f, CONN_ERROR_TLS, -ENOMEM, "cannot create TLS context: %s",
                                   openssl_error(err, sizeof(err)));

        if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1)
                goto fail;
        SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE |
                                      SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
        SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
        /* No resumption: the verify callback, and so the pin check, runs on
         * every handshake. */
        SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);

        if (ca_file) {
                if (SSL_CTX_load_verify_locations(ctx, ca_file, NULL) != 1) {
                        SSL_CTX_free(ctx);
                        return failure_set(f, CONN_ERROR_TLS, -ENOENT, "cannot load CA file %s: %s", ca_file,
                                           openssl_error(err, sizeof(err)));
                }
        } else if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
                SSL_CTX_free(ctx);
                return failure_set(f, CONN_ERROR_TLS, -ENOENT, "cannot load the system trust store: %s",
                                   openssl_error(err, sizeof(err)));
        }

        *ret = ctx;
        return 0;

fail:
        SSL_CTX_free(ctx);
        return failure_set(f, CONN_ERROR_TLS, -EPROTO, "cannot set up TLS context: %s",
                           openssl_error(err, sizeof(err)));
}

static int tls_ctx_acquire(const char *ca_file, struct tls_ctx **ret, struct conn_failure *f) {
        struct tls_ctx *t;
        SSL_CTX *ctx = NULL;
        int r;

        pthread_mutex_lock(&tls_ctx_lock);
        for (t = tls_ctxs; t; t = t->next)
                if (streq_ptr(t->ca_file, ca_file)) {
                        t->n_ref++;
                        pthread_mutex_unlock(&tls_ctx_lock);
                        *ret = t;
                        return 0;
                }

        /* Parsing the CA file under the lock keeps one context per file even
         * with several loops in several threads. */
        r = tls_ctx_create(ca_file, &ctx, f);
        if (r < 0) {
                pthread_mutex_unlock(&tls_ctx_lock);
                return r;
        }
        t = calloc(1, sizeof(*t));
        if (!t || (ca_file && !(t->ca_file = strdup(ca_file)))) {
                pthread_mutex_unlock(&tls_ctx_lock);
                free(t);
                SSL_CTX_free(ctx);
                return failure_set(f, CONN_ERROR_TLS, -ENOMEM, "out of memory");
        }
        t->ctx = ctx;
        t->n_ref = 1;
        t->next = tls_ctxs;
        tls_ctxs = t;
        pthread_mutex_unlock(&tls_ctx_lock);

        *ret = t;
        return 0;
}

static struct tls_ctx *tls_ctx_release(struct tls_ctx *t) {
        if (!t)
                return NULL;

        pthread_mutex_lock(&tls_ctx_lock);
        if (--t->n_ref == 0) {
                for (struct tls_ctx **p = &tls_ctxs; *p; p = &(*p)->next)
                        if (*p == t) {
                                *p = t->next;
                                break;
                        }
                SSL_CTX_free(t->ctx);
                free(t->ca_file);
                free(t);
        }
        pthread_mutex_unlock(&tls_ctx_lock);
        return NULL;
}

/* ---- lifetime ------------------------------------------------------------ */

static void conn_release_socket(struct conn *c) {
        c->io = sd_event_source_disable_unref(c->io);
        c->timer = sd_event_source_disable_unref(c->timer);
        if (c->ssl) {
                SSL_free(c->ssl);
                c->ssl = NULL;
        }
        if (c->fd >= 0) {
                close(c->fd);
                c->fd = -1;
        }
        c->events = 0;
}

/* Everything but the struct, the configuration strings and the peer name. */
static void conn_release(struct conn *c) {
        c->query = resolve_cancel(c->query);
        conn_release_socket(c);
        c->defer = sd_event_source_disable_unref(c->defer);
        if (c->addrs) {
                freeaddrinfo(c->addrs);
                c->addrs = c->next_addr = NULL;
        }
        free(c->wbuf);
        c->wbuf = NULL;
        c->woff = c->wlen = c->wsize = 0;
        free(c->pending_message);
        c->pending_message = NULL;
        c->tls_ctx = tls_ctx_release(c->tls_ctx);
}

static void conn_destroy(struct conn *c) {
        free(c->host);
        free(c->ca_file);
        free(c->verify_name);
        free(c->log_prefix);
        sd_event_unref(c->event);
        free(c);
}

struct conn *conn_free(struct conn *c) {
        if (!c || c->freed)
                return NULL;

        if (c->state == CONN_OPEN && c->tls_up && c->ssl) {
                /* One close_notify, best effort, never waited for. */
                ERR_clear_error();
                (void) SSL_shutdown(c->ssl);
                ERR_clear_error();
        }
        conn_release(c);
        c->state = CONN_CLOSED;
        c->freed = true;
        if (c->dispatch_depth == 0)
                conn_destroy(c);
        return NULL;
}

static void conn_freep(struct conn **c) {
        conn_free(*c);
}

/* Every handler that may call back into the owner is bracketed by these. */
static void conn_enter(struct conn *c) {
        c->dispatch_depth++;
}

static void conn_leave(struct conn *c) {
        assert(c->dispatch_depth > 0);
        if (--c->dispatch_depth == 0 && c->freed)
                conn_destroy(c);
}

/* After calling the owner: may we go on with this connection in state? */
static bool conn_still(const struct conn *c, enum conn_state state) {
        return !c->freed && c->state == state;
}

/* ---- events -------------------------------------------------------------- */

static uint32_t conn_wanted_events(const struct conn *c) {
        switch (c->state) {
        case CONN_CONNECTING:
                return EPOLLOUT;
        case CONN_HANDSHAKE:
                return c->handshake_want;
        case CONN_OPEN:
                return c->read_want | (c->wlen > c->woff ? c->write_want : 0);
        default:
                return 0;
        }
}

static int conn_update_events(struct conn *c) {
        uint32_t events = conn_wanted_events(c);
        int r;

        if (!c->io || events == c->events)
                return 0;
        r = sd_event_source_set_io_events(c->io, events);
        if (r < 0)
                return r;
        c->events = events;
        return 0;
}

/* Reports a failure found outside our own handlers on the next iteration. */
static void conn_fail_later(struct conn *c, const struct conn_failure *f) {
        int r;

        if (c->state == CONN_CLOSING || c->state == CONN_CLOSED)
                return;
        conn_debug(c, "closing: %s", f->message);
        conn_release_socket(c);
        c->state = CONN_CLOSING;
        c->pending_error = f->error;
        c->pending_r = f->r;
        c->pending_message = strdup(f->message);        /* NULL: reported with strerror() */
        r = sd_event_source_set_enabled(c->defer, SD_EVENT_ONESHOT);
        if (r < 0)
                log_internal(LOG_ERR, r, c->log_prefix, "cannot schedule closing the connection: %m");
}

/* Continue reading on the next iteration: OpenSSL holds bytes epoll does
 * not know about. */
static void conn_schedule_read(struct conn *c) {
        int r;

        r = sd_event_source_set_enabled(c->defer, SD_EVENT_ONESHOT);
        if (r < 0)
                log_internal(LOG_ERR, r, c->log_prefix, "cannot schedule reading: %m");
}

/* ---- the one place that interprets SSL_get_error() ----------------------- */

/* What the user can do about a certificate the verification rejected. */
static const char *verify_advice(long v) {
        switch (v) {
        case X509_V_ERR_CERT_HAS_EXPIRED:
        case X509_V_ERR_CERT_NOT_YET_VALID:
        case X509_V_ERR_ERROR_IN_CERT_NOT_BEFORE_FIELD:
        case X509_V_ERR_ERROR_IN_CERT_NOT_AFTER_FIELD:
                return "the server's certificate must be renewed, or this computer's clock is wrong";
        case X509_V_ERR_HOSTNAME_MISMATCH:
        case X509_V_ERR_IP_ADDRESS_MISMATCH:
                return "set host to a name the certificate is issued for";
        default:
                return NULL;
        }
}

static bool verify_unknown_issuer(long v) {
        return v == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT || v == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY ||
               v == X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE || v == X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT ||
               v == X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN;
}

/* Each message says what failed and what to do about it. */
static void conn_verify_failure(struct conn *c, struct conn_failure *f) {
        char got[2 * PIN_LEN + 1], expected[2 * PIN_LEN + 1];
        const char *advice;
        long v;

        if (c->pin_mismatch) {
                failure_set(f, CONN_ERROR_TLS_VERIFY, -EPERM,
                            "certificate fingerprint mismatch: got sha256:%s, expected sha256:%s; if the server's "
                            "certificate was replaced, check the new fingerprint and update tls_fingerprint",
                            hex_pin(c->seen_pin, got), hex_pin(c->pin, expected));
                return;
        }
        v = c->verify_error != X509_V_OK ? c->verify_error : (c->ssl ? SSL_get_verify_result(c->ssl) : X509_V_OK);
        advice = verify_advice(v);
        if (v == X509_V_ERR_HOSTNAME_MISMATCH || v == X509_V_ERR_IP_ADDRESS_MISMATCH)
                failure_set(f, CONN_ERROR_TLS_VERIFY, -EPERM,
                            "TLS certificate verify failed: %s (the certificate is not valid for \"%s\"); %s",
                            X509_verify_cert_error_string(v), c->verify_name ? c->verify_name : c->host, advice);
        else if (verify_unknown_issuer(v) && c->seen_pin_set)
                failure_set(f, CONN_ERROR_TLS_VERIFY, -EPERM,
                            "TLS certificate verify failed: %s; set ca_file to the CA that signed the server's "
                            "certificate, or pin the certificate with tls_fingerprint = sha256:%s once its "
                            "administrator has confirmed that fingerprint",
                            X509_verify_cert_error_string(v), hex_pin(c->seen_pin, got));
        else if (v != X509_V_OK)
                failure_set(f, CONN_ERROR_TLS_VERIFY, -EPERM, "TLS certificate verify failed: %s%s%s",
                            X509_verify_cert_error_string(v), advice ? "; " : "", advice ? advice : "");
        else
                failure_set(f, CONN_ERROR_TLS_VERIFY, -EPERM, "TLS certificate verify failed");
}

/* A handshake that fails before any certificate was judged: most often TLS
 * spoken to a port that does not (or the other way round). */
static int conn_handshake_failure(struct conn *c, int r, const char *what, struct conn_failure *f) {
        return failure_set(f, CONN_ERROR_TLS, r, "TLS handshake failed: %s; is port %u right for tls = %s%s?", what,
                           (unsigned) c->port, c->starttls ? "starttls" : "implicit",
                           c->starttls ? "" : " (usually 993)");
}

static int conn_eof(struct conn *c, const char *how, struct conn_failure *f) {
        char what[96];

        if (!c->tls_up && c->ssl) {
                snprintf(what, sizeof(what), "connection closed by peer%s", how);
                return conn_handshake_failure(c, -ECONNRESET, what, f);
        }
        return failure_set(f, CONN_ERROR_EOF, -ECONNRESET, "connection closed by peer%s", how);
}

/* Maps the result ret of an SSL_* call (errno_saved is errno right after
 * it). Returns 0 and the io events OpenSSL waits for in *ret_events, or a
 * negative errno with f filled in. Clears OpenSSL's error queue. */
static int conn_ssl_result(struct conn *c, int ret, int errno_saved, uint32_t *ret_events,
                           struct conn_failure *f) {
        unsigned long e;
        char err[256];
        int code;

        code = SSL_get_error(c->ssl, ret);
        switch (code) {
        case SSL_ERROR_WANT_READ:
                *ret_events = EPOLLIN;
                return 0;

        case SSL_ERROR_WANT_WRITE:
                *ret_events = EPOLLOUT;
                return 0;

        case SSL_ERROR_ZERO_RETURN:
                ERR_clear_error();
                return conn_eof(c, "", f);

        case SSL_ERROR_SYSCALL:
                if (ERR_peek_error() != 0)
                        break;          /* OpenSSL queued a reason after all */
                if (errno_saved == 0 || ret == 0)
                        return conn_eof(c, " without TLS close_notify", f);
                return failure_set(f, CONN_ERROR_IO, -errno_saved, "%s", strerror(errno_saved));

        case SSL_ERROR_SSL:
                break;

        default:
                ERR_clear_error();
                return failure_set(f, CONN_ERROR_TLS, -EPROTO, "unexpected SSL_get_error() result %d", code);
        }

        /* SSL_ERROR_SSL, or SYSCALL with a queued reason */
        e = ERR_peek_error();
        if (ERR_GET_LIB(e) == ERR_LIB_SSL && ERR_GET_REASON(e) == SSL_R_UNEXPECTED_EOF_WHILE_READING) {
                ERR_clear_error();
                return conn_eof(c, " without TLS close_notify", f);
        }
        if (c->pin_mismatch || c->verify_error != X509_V_OK ||
            (ERR_GET_LIB(e) == ERR_LIB_SSL && ERR_GET_REASON(e) == SSL_R_CERTIFICATE_VERIFY_FAILED)) {
                ERR_clear_error();
                conn_verify_failure(c, f);
                return f->r;
        }
        openssl_error(err, sizeof(err));
        if (!c->tls_up)
                return conn_handshake_failure(c, -EPROTO, err, f);
        return failure_set(f, CONN_ERROR_TLS, -EPROTO, "TLS error: %s", err);
}

/* ---- TLS ----------------------------------------------------------------- */

static int verify_callback(int ok, X509_STORE_CTX *store) {
        SSL *ssl = X509_STORE_CTX_get_ex_data(store, SSL_get_ex_data_X509_STORE_CTX_idx());
        struct conn *c = ssl ? SSL_get_app_data(ssl) : NULL;

        if (!c)
                return 0;
        if (!ok && c->verify_error == X509_V_OK)
                c->verify_error = X509_STORE_CTX_get_error(store);
        if (!ok && !c->have_pin && !c->seen_pin_set) {
                /* for the message: the fingerprint a user could check and pin */
                X509 *leaf = X509_STORE_CTX_get0_cert(store);
                unsigned n = 0;

                c->seen_pin_set = leaf && X509_digest(leaf, EVP_sha256(), c->seen_pin, &n) == 1 && n == PIN_LEN;
        }
        if (!c->have_pin)
                return ok;

        if (!c->pin_checked) {
                X509 *leaf = X509_STORE_CTX_get0_cert(store);
                unsigned n = 0;

                c->pin_checked = true;
                c->pin_mismatch = !leaf || X509_digest(leaf, EVP_sha256(), c->seen_pin, &n) != 1 ||
                                  n != PIN_LEN || CRYPTO_memcmp(c->seen_pin, c->pin, PIN_LEN) != 0;
        }
        if (c->pin_mismatch) {
                X509_STORE_CTX_set_error(store, X509_V_ERR_APPLICATION_VERIFICATION);
                return 0;
        }
        /* The pin names this exact certificate: chain and name errors are
         * tolerated. */
        return 1;
}

/* Creates the SSL on the connected socket and arms the handshake timer. */
static int conn_tls_begin(struct conn *c, struct conn_failure *f) {
        const char *name = c->verify_name ? c->verify_name : c->host;
        char err[256];
        BIO *bio;
        int r;

        if (!c->tls_ctx) {
                r = tls_ctx_acquire(c->ca_file, &c->tls_ctx, f);
                if (r < 0)
                        return r;
        }
        pthread_once(&bio_once, bio_method_init);
        if (!bio_method)
                return failure_set(f, CONN_ERROR_TLS, -ENOMEM, "cannot create the socket BIO method");

        ERR_clear_error();
        c->ssl = SSL_new(c->tls_ctx->ctx);
        if (!c->ssl)
                return failure_set(f, CONN_ERROR_TLS, -ENOMEM, "cannot create TLS connection: %s",
                                   openssl_error(err, sizeof(err)));
        bio = BIO_new(bio_method);
        if (!bio)
                return failure_set(f, CONN_ERROR_TLS, -ENOMEM, "cannot create TLS connection: %s",
                                   openssl_error(err, sizeof(err)));
        BIO_set_fd(bio, c->fd, BIO_NOCLOSE);
        SSL_set_bio(c->ssl, bio, bio);
        SSL_set_app_data(c->ssl, c);

        if (is_ip_literal(name)) {
                /* No SNI for addresses (RFC 6066 §3); check the IP SAN. */
                if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), name) != 1)
                        goto fail;
        } else {
                if (SSL_set_tlsext_host_name(c->ssl, name) != 1)
                        goto fail;
                SSL_set_hostflags(c->ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
                if (SSL_set1_host(c->ssl, name) != 1)
                        goto fail;
        }
        SSL_set_verify(c->ssl, SSL_VERIFY_PEER, verify_callback);
        SSL_set_connect_state(c->ssl);

        c->verify_error = X509_V_OK;
        c->pin_checked = c->pin_mismatch = c->seen_pin_set = false;
        c->handshake_want = EPOLLOUT;
        c->state = CONN_HANDSHAKE;

        c->timer = sd_event_source_disable_unref(c->timer);
        r = sd_event_add_time_relative(c->event, &c->timer, CLOCK_MONOTONIC, c->connect_timeout_usec, 0,
                                       on_timer, c);
        if (r < 0)
                return failure_set(f, CONN_ERROR_TLS, r, "cannot arm the handshake timer: %s", strerror(-r));
        return 0;

fail:
        return failure_set(f, CONN_ERROR_TLS, -EINVAL, "cannot set the TLS peer name \"%s\": %s", name,
                           openssl_error(err, sizeof(err)));
}

/* The handshake is done: double-check the peer (the pin also on paths
 * where the callback might not have run). */
static int conn_tls_check_peer(struct conn *c, struct conn_failure *f) {
        X509 *peer = SSL_get0_peer_certificate(c->ssl);
        uint8_t digest[PIN_LEN];
        unsigned n = 0;

        if (!peer)
                return failure_set(f, CONN_ERROR_TLS_VERIFY, -EPERM, "the server sent no certificate");

        if (!c->have_pin) {
                if (SSL_get_verify_result(c->ssl) != X509_V_OK) {
                        conn_verify_failure(c, f);
                        return f->r;
                }
                return 0;
        }

        if (X509_digest(peer, EVP_sha256(), digest, &n) != 1 || n != PIN_LEN)
                return failure_set(f, CONN_ERROR_TLS, -ENOMEM, "cannot compute the certificate fingerprint");
        if (CRYPTO_memcmp(digest, c->pin, PIN_LEN) != 0) {
                memcpy(c->seen_pin, digest, PIN_LEN);
                c->pin_mismatch = true;
                conn_verify_failure(c, f);
                return f->r;
        }
        if (c->verify_error != X509_V_OK)
                conn_debug(c, "certificate not verified (%s), accepted by its pinned fingerprint",
                           X509_verify_cert_error_string(c->verify_error));
        return 0;
}

static void conn_handshake(struct conn *c) {
        struct conn_failure f;
        uint32_t want;
        int r, errno_saved;

        ERR_clear_error();
        errno = 0;
        r = SSL_do_handshake(c->ssl);
        errno_saved = errno;
        if (r != 1) {
                r = conn_ssl_result(c, r, errno_saved, &want, &f);
                if (r < 0) {
                        conn_close(c, &f);
                        return;
                }
                c->handshake_want = want;
                r = conn_update_events(c);
                if (r < 0) {
                        failure_set(&f, CONN_ERROR_IO, r, "cannot update io events: %s", strerror(-r));
                        conn_close(c, &f);
                        return;
                }
                return;
        }

        r = conn_tls_check_peer(c, &f);
        if (r < 0) {
                conn_close(c, &f);
                return;
        }

        c->timer = sd_event_source_disable_unref(c->timer);
        c->tls_up = true;
        c->state = CONN_OPEN;
        c->read_want = EPOLLIN;
        c->write_want = EPOLLOUT;
        conn_debug(c, "TLS established with %s: %s, %s", c->peer, SSL_get_version(c->ssl),
                   SSL_get_cipher_name(c->ssl));

        if (c->starttls) {
                if (c->cb.tls_ready)
                        c->cb.tls_ready(c, c->userdata);
        } else if (c->cb.connected)
                c->cb.connected(c, c->userdata);
        if (!conn_still(c, CONN_OPEN))
                return;

        /* Flush what was queued during the handshake; read what OpenSSL may
         * already hold. */
        conn_process(c, EPOLLOUT, true);
}

/* ---- connecting ---------------------------------------------------------- */

static int conn_socket_options(struct conn *c, int fd) {
        int one = 1;
        int idle = (int) c->keepalive_idle_sec, intvl = (int) c->keepalive_interval_sec;
        int cnt = (int) c->keepalive_count;
        unsigned user_timeout = c->user_timeout_msec;

        if (setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one)) < 0 ||
            setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle)) < 0 ||
            setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl)) < 0 ||
            setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt)) < 0 ||
            setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_timeout, sizeof(user_timeout)) < 0)
                return -errno;
        /* IMAP commands are small and latency matters more than packets. */
        (void) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        return 0;
}

/* Starts a non-blocking connect to a. Returns 0 when it is under way. */
static int conn_connect_one(struct conn *c, const struct addrinfo *a) {
        int fd, r;

        sockaddr_format(a->ai_addr, c->peer, sizeof(c->peer));
        c->n_attempts++;
        conn_debug(c, "connecting to %s (%s)", c->peer, c->host);

        fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, a->ai_protocol);
        if (fd < 0)
                return -errno;
        c->fd = fd;

        r = conn_socket_options(c, fd);
        if (r < 0)
                return r;
        if (connect(fd, a->ai_addr, a->ai_addrlen) < 0 && errno != EINPROGRESS)
                return -errno;

        r = sd_event_add_io(c->event, &c->io, fd, EPOLLOUT, on_io, c);
        if (r < 0)
                return r;
        c->events = EPOLLOUT;
        r = sd_event_add_time_relative(c->event, &c->timer, CLOCK_MONOTONIC, c->connect_timeout_usec, 0,
                                       on_timer, c);
        if (r < 0)
                return r;
        c->state = CONN_CONNECTING;
        return 0;
}

static void conn_connect_next(struct conn *c) {
        struct conn_failure f;

        while (c->next_addr) {
                const struct addrinfo *a = c->next_addr;
                int r;

                c->next_addr = a->ai_next;
                r = conn_connect_one(c, a);
                if (r >= 0)
                        return;
                c->last_connect_error = r;
                conn_debug(c, "connect to %s failed: %s", c->peer, strerror(-r));
                conn_release_socket(c);
        }

        if (c->n_attempts > 0 && c->n_timeouts == c->n_attempts)
                failure_set(&f, CONN_ERROR_TIMEOUT, -ETIMEDOUT, "connect to %s port %u timed out%s", c->host,
                            c->port, c->n_attempts > 1 ? " on every address" : "");
        else if (c->n_attempts > 1)
                failure_set(&f, CONN_ERROR_CONNECT, c->last_connect_error,
                            "cannot connect to %s port %u (%u addresses tried, last %s): %s", c->host, c->port,
                            c->n_attempts, c->peer, strerror(-c->last_connect_error));
        else
                failure_set(&f, CONN_ERROR_CONNECT, c->last_connect_error ? c->last_connect_error : -ENOENT,
                            "cannot connect to %s (%s): %s", c->peer, c->host,
                            c->last_connect_error ? strerror(-c->last_connect_error) : "no address");
        conn_close(c, &f);
}

static void conn_connect_finish(struct conn *c) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof(int);
        struct conn_failure f;
        int error = 0, r;

        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &error, &len) < 0)
                error = errno;
        if (error != 0) {
                c->last_connect_error = -error;
                conn_debug(c, "connect to %s failed: %s", c->peer, strerror(error));
                conn_release_socket(c);
                conn_connect_next(c);
                return;
        }

        c->timer = sd_event_source_disable_unref(c->timer);
        len = sizeof(ss);
        if (getpeername(c->fd, (struct sockaddr *) &ss, &len) == 0) {
                sockaddr_format((struct sockaddr *) &ss, c->peer, sizeof(c->peer));
                c->loopback = sockaddr_is_loopback((struct sockaddr *) &ss);
        }
        c->tcp_connected = true;
        freeaddrinfo(c->addrs);
        c->addrs = c->next_addr = NULL;
        conn_debug(c, "connected to %s", c->peer);

        if (c->implicit_tls) {
                r = conn_tls_begin(c, &f);
                if (r < 0) {
                        conn_close(c, &f);
                        return;
                }
                conn_handshake(c);
                return;
        }

        c->state = CONN_OPEN;
        c->read_want = EPOLLIN;
        c->write_want = EPOLLOUT;
        r = conn_update_events(c);
        if (r < 0) {
                failure_set(&f, CONN_ERROR_IO, r, "cannot update io events: %s", strerror(-r));
                conn_close(c, &f);
                return;
        }
        if (c->cb.connected)
                c->cb.connected(c, c->userdata);
}

static void on_resolved(struct resolve_query *q, int error, const char *message, struct addrinfo *ai,
                        void *userdata) {
        struct conn *c = userdata;
        struct conn_failure f;

        c->query = NULL;
        conn_enter(c);
        if (error < 0) {
                if (ai)
                        freeaddrinfo(ai);
                failure_set(&f, CONN_ERROR_RESOLVE, error, "cannot resolve %s: %s", c->host, message);
                conn_close(c, &f);
        } else {
                c->addrs = c->next_addr = ai;
                conn_connect_next(c);
        }
        conn_leave(c);
}

/* ---- reading and writing ------------------------------------------------- */

/* Writes from p. Returns 1 and the bytes written, 0 if the socket (or
 * OpenSSL) would block, or a negative errno with f filled in. */
static int conn_send(struct conn *c, const char *p, size_t len, size_t *ret_n, struct conn_failure *f) {
        for (;;) {
                if (c->ssl) {
                        uint32_t want;
                        int n, errno_saved, r;

                        ERR_clear_error();
                        errno = 0;
                        n = SSL_write(c->ssl, p, len > INT_MAX ? INT_MAX : (int) len);
                        errno_saved = errno;
                        if (n > 0) {
                                c->write_want = EPOLLOUT;
                                *ret_n = (size_t) n;
                                return 1;
                        }
                        r = conn_ssl_result(c, n, errno_saved, &want, f);
                        if (r < 0)
                                return r;
                        c->write_want = want;
                        return 0;
                } else {
                        ssize_t n = send(c->fd, p, len, MSG_NOSIGNAL | MSG_DONTWAIT);

                        if (n >= 0) {
                                *ret_n = (size_t) n;
                                return 1;
                        }
                        if (errno == EINTR)
                                continue;
                        if (errno == EAGAIN || errno == EWOULDBLOCK) {
                                c->write_want = EPOLLOUT;
                                return 0;
                        }
                        return failure_set(f, CONN_ERROR_IO, -errno, "%s", strerror(errno));
                }
        }
}

static int conn_flush(struct conn *c, struct conn_failure *f) {
        while (c->wlen > c->woff) {
                size_t n = 0;
                int r;

                r = conn_send(c, c->wbuf + c->woff, c->wlen - c->woff, &n, f);
                if (r < 0)
                        return r;
                if (r == 0)
                        break;
                c->woff += n;
        }
        if (c->woff == c->wlen) {
                /* Drained: an idle connection holds no output buffer. */
                free(c->wbuf);
                c->wbuf = NULL;
                c->woff = c->wlen = c->wsize = 0;
        }
        return 0;
}

enum {
        READ_AGAIN,             /* wait for the next event */
        READ_STOP,              /* the owner freed or changed the connection */
};

/* Reads and delivers up to CONN_READ_BUDGET bytes. Returns READ_AGAIN,
 * READ_STOP or a negative errno with f filled in. */
static int conn_read(struct conn *c, struct conn_failure *f) {
        char buf[CONN_READ_CHUNK];
        size_t total = 0;

        while (total < CONN_READ_BUDGET) {
                size_t len;

                if (c->ssl) {
                        uint32_t want;
                        int n, errno_saved, r;

                        ERR_clear_error();
                        errno = 0;
                        n = SSL_read(c->ssl, buf, sizeof(buf));
                        errno_saved = errno;
                        if (n <= 0) {
                                r = conn_ssl_result(c, n, errno_saved, &want, f);
                                if (r < 0)
                                        return r;
                                c->read_want = want;
                                return READ_AGAIN;
                        }
                        c->read_want = EPOLLIN;
                        len = (size_t) n;
                } else {
                        ssize_t n = recv(c->fd, buf, sizeof(buf), MSG_DONTWAIT);

                        if (n < 0) {
                                if (errno == EINTR)
                                        continue;
                                if (errno == EAGAIN || errno == EWOULDBLOCK)
                                        return READ_AGAIN;
                                return failure_set(f, CONN_ERROR_IO, -errno, "%s", strerror(errno));
                        }
                        if (n == 0)
                                return conn_eof(c, "", f);
                        len = (size_t) n;
                }

                total += len;
                if (c->cb.data)
                        c->cb.data(c, buf, len, c->userdata);
                /* Freed, closed, or conn_start_tls(): the rest is not ours
                 * to deliver. */
                if (!conn_still(c, CONN_OPEN))
                        return READ_STOP;
        }

        /* Budget spent: let other sources run. epoll reports what is left in
         * the socket; what OpenSSL already holds needs a nudge. */
        if (c->ssl && SSL_has_pending(c->ssl))
                conn_schedule_read(c);
        return READ_AGAIN;
}

static void conn_process(struct conn *c, uint32_t revents, bool force_read) {
        struct conn_failure f;
        int r;

        switch (c->state) {
        case CONN_CONNECTING:
                conn_connect_finish(c);
                return;
        case CONN_HANDSHAKE:
                conn_handshake(c);
                return;
        case CONN_OPEN:
                break;
        default:
                return;
        }

        if (c->wlen > c->woff && (revents & (c->write_want | EPOLLERR | EPOLLHUP))) {
                r = conn_flush(c, &f);
                if (r < 0) {
                        conn_close(c, &f);
                        return;
                }
        }
        if (force_read || (revents & (c->read_want | EPOLLERR | EPOLLHUP))) {
                r = conn_read(c, &f);
                if (r < 0) {
                        conn_close(c, &f);
                        return;
                }
                if (r == READ_STOP) {
                        if (c->freed || c->state != CONN_HANDSHAKE)
                                return;
                        /* conn_start_tls() from the data callback: fall
                         * through to arm the handshake's events. */
                }
        }
        /* SSL_MODE_RELEASE_BUFFERS misses the write buffer that handling
         * post-handshake messages (TLS 1.3 session tickets) sets up: 16 KiB
         * per idle connection. Frees nothing while a record is pending. */
        if (c->state == CONN_OPEN && c->ssl)
                (void) SSL_free_buffers(c->ssl);
        r = conn_update_events(c);
        if (r < 0) {
                failure_set(&f, CONN_ERROR_IO, r, "cannot update io events: %s", strerror(-r));
                conn_close(c, &f);
        }
}

/* Ends the connection and tells the owner, who may free it in the callback. */
static void conn_close(struct conn *c, const struct conn_failure *failure) {
        struct conn_failure f = *failure;

        conn_debug(c, "connection %s: %s (%s)", c->tcp_connected ? "closed" : "failed", f.message,
                   conn_error_to_string(f.error));
        conn_release(c);
        c->state = CONN_CLOSED;
        if (c->cb.closed)
                c->cb.closed(c, f.error, f.r, f.message, c->userdata);
}

static int on_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        struct conn *c = userdata;

        conn_enter(c);
        conn_process(c, revents, false);
        conn_leave(c);
        return 0;
}

static int on_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        struct conn *c = userdata;
        struct conn_failure f;

        conn_enter(c);
        if (c->state == CONN_CONNECTING) {
                conn_debug(c, "connect to %s timed out", c->peer);
                c->n_timeouts++;
                c->last_connect_error = -ETIMEDOUT;
                conn_release_socket(c);
                conn_connect_next(c);
        } else if (c->state == CONN_HANDSHAKE) {
                failure_set(&f, CONN_ERROR_TIMEOUT, -ETIMEDOUT, "TLS handshake timed out");
                conn_close(c, &f);
        }
        conn_leave(c);
        return 0;
}

static int on_defer(sd_event_source *s, void *userdata) {
        struct conn *c = userdata;
        struct conn_failure f;

        conn_enter(c);
        if (c->state == CONN_CLOSING) {
                if (c->pending_message)
                        failure_set(&f, c->pending_error, c->pending_r, "%s", c->pending_message);
                else
                        failure_set(&f, c->pending_error, c->pending_r, "%s", strerror(-c->pending_r));
                conn_close(c, &f);
        } else if (c->state == CONN_OPEN)
                conn_process(c, 0, true);
        conn_leave(c);
        return 0;
}

/* ---- API ----------------------------------------------------------------- */

static int strdup_opt(const char *s, char **ret) {
        if (!s) {
                *ret = NULL;
                return 0;
        }
        *ret = strdup(s);
        return *ret ? 0 : -ENOMEM;
}

int conn_new(sd_event *e, const struct conn_config *cfg, const struct conn_callbacks *cb, void *userdata,
             struct conn **ret) {
        _cleanup_(conn_freep) struct conn *c = NULL;
        char port[8];
        int r;

        if (!e || !cfg || !cfg->host || !*cfg->host || cfg->port == 0 || !ret)
                return -EINVAL;

        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        c->fd = -1;
        c->state = CONN_RESOLVING;
        c->event = sd_event_ref(e);
        if (cb)
                c->cb = *cb;
        c->userdata = userdata;

        if (strdup_opt(cfg->host, &c->host) < 0 || strdup_opt(cfg->ca_file, &c->ca_file) < 0 ||
            strdup_opt(cfg->verify_name && *cfg->verify_name ? cfg->verify_name : NULL, &c->verify_name) < 0 ||
            strdup_opt(cfg->log_prefix, &c->log_prefix) < 0)
                return -ENOMEM;
        if (cfg->fingerprint && *cfg->fingerprint) {
                r = parse_fingerprint(cfg->fingerprint, c->pin);
                if (r < 0)
                        return r;
                c->have_pin = true;
        }
        c->port = cfg->port;
        c->implicit_tls = cfg->tls;
        c->connect_timeout_usec = cfg->connect_timeout_usec ?: CONN_DEFAULT_TIMEOUT_USEC;
        /* The kernel's limits (MAX_TCP_KEEPIDLE/INTVL/CNT). */
        c->keepalive_idle_sec = MIN(cfg->keepalive_idle_sec ?: CONN_DEFAULT_KEEPIDLE, 32767U);
        c->keepalive_interval_sec = MIN(cfg->keepalive_interval_sec ?: CONN_DEFAULT_KEEPINTVL, 32767U);
        c->keepalive_count = MIN(cfg->keepalive_count ?: CONN_DEFAULT_KEEPCNT, 127U);
        c->user_timeout_msec = MIN(cfg->user_timeout_msec ?: CONN_DEFAULT_USER_TIMEOUT_MS, (unsigned) INT_MAX);
        c->max_output = cfg->max_output ?: CONN_DEFAULT_MAX_OUTPUT;

        /* Allocated now so that reporting a failure later cannot fail. */
        r = sd_event_add_defer(e, &c->defer, on_defer, c);
        if (r < 0)
                return r;
        r = sd_event_source_set_enabled(c->defer, SD_EVENT_OFF);
        if (r < 0)
                return r;

        snprintf(port, sizeof(port), "%u", cfg->port);
        r = resolve_start(e, c->host, port, on_resolved, c, &c->query);
        if (r < 0)
                return r;
        conn_debug(c, "resolving %s", c->host);

        *ret = TAKE_PTR(c);
        return 0;
}

int conn_write(struct conn *c, const void *data, size_t len) {
        struct conn_failure f;
        const char *p = data;
        size_t queued;
        int r;

        if (!c || (!data && len > 0))
                return -EINVAL;
        if (!(c->state == CONN_OPEN || (c->state == CONN_HANDSHAKE && c->starttls)))
                return -ENOTCONN;
        if (len == 0)
                return 0;

        queued = c->wlen - c->woff;
        if (len > c->max_output || queued > c->max_output - len) {
                failure_set(&f, CONN_ERROR_OVERFLOW, -ENOBUFS, "output queue limit of %zu bytes exceeded",
                            c->max_output);
                conn_fail_later(c, &f);
                return -ENOBUFS;
        }

        /* Nothing queued: try the socket first, most commands leave at once
         * and never need a buffer. */
        if (c->state == CONN_OPEN && queued == 0) {
                while (len > 0) {
                        size_t n = 0;

                        r = conn_send(c, p, len, &n, &f);
                        if (r < 0) {
                                /* Reported through "closed", like a failure
                                 * found by the event loop. */
                                conn_fail_later(c, &f);
                                return 0;
                        }
                        if (r == 0)
                                break;
                        p += n;
                        len -= n;
                }
                if (len == 0)
                        return 0;
        }

        if (c->woff > 0) {
                memmove(c->wbuf, c->wbuf + c->woff, c->wlen - c->woff);
                c->wlen -= c->woff;
                c->woff = 0;
        }
        if (c->wsize - c->wlen < len) {
                size_t size = MAX(MAX(c->wlen + len, 2 * c->wsize), (size_t) CONN_WBUF_MIN);
                char *b = realloc(c->wbuf, size);

                if (!b)
                        return -ENOMEM;
                c->wbuf = b;
                c->wsize = size;
        }
        memcpy(c->wbuf + c->wlen, p, len);
        c->wlen += len;

        r = conn_update_events(c);
        if (r < 0) {
                failure_set(&f, CONN_ERROR_IO, r, "cannot update io events: %s", strerror(-r));
                conn_fail_later(c, &f);
        }
        return 0;
}

int conn_start_tls(struct conn *c) {
        struct conn_failure f;
        int r;

        if (!c)
                return -EINVAL;
        if (c->ssl && (c->state == CONN_HANDSHAKE || c->state == CONN_OPEN))
                return -EALREADY;
        if (c->state != CONN_OPEN)
                return -ENOTCONN;
        if (c->wlen > c->woff)
                return -EBUSY;

        c->starttls = true;
        r = conn_tls_begin(c, &f);
        if (r < 0) {
                /* Reported through "closed" with OpenSSL's reason. */
                conn_fail_later(c, &f);
                return 0;
        }
        /* The handshake starts when the socket is writable, on the next
         * iteration; no plaintext is read or delivered from now on. */
        r = conn_update_events(c);
        if (r < 0) {
                failure_set(&f, CONN_ERROR_IO, r, "cannot update io events: %s", strerror(-r));
                conn_fail_later(c, &f);
        }
        return 0;
}

bool conn_is_tls(const struct conn *c) {
        return c && c->tls_up && c->ssl;
}

bool conn_is_loopback(const struct conn *c) {
        return c && c->tcp_connected && c->loopback;
}

const char *conn_peer(const struct conn *c) {
        return c && c->tcp_connected ? c->peer : "";
}

int conn_fd(const struct conn *c) {
        return c ? c->fd : -1;
}

bool conn_local_address_gone(const struct conn *c) {
        struct sockaddr_storage local = {};
        socklen_t len = sizeof(local);
        struct ifaddrs *ifs, *i;
        bool found = false;

        if (!c || c->fd < 0 || getsockname(c->fd, (struct sockaddr *) &local, &len) < 0)
                return false;
        if (local.ss_family != AF_INET && local.ss_family != AF_INET6)
                return false;
        if (getifaddrs(&ifs) < 0)
                return false;
        for (i = ifs; i && !found; i = i->ifa_next) {
                if (!i->ifa_addr || i->ifa_addr->sa_family != local.ss_family)
                        continue;
                if (local.ss_family == AF_INET)
                        found = ((struct sockaddr_in *) i->ifa_addr)->sin_addr.s_addr ==
                                ((struct sockaddr_in *) &local)->sin_addr.s_addr;
                else
                        found = memcmp(&((struct sockaddr_in6 *) i->ifa_addr)->sin6_addr,
                                       &((struct sockaddr_in6 *) &local)->sin6_addr, sizeof(struct in6_addr)) == 0;
        }
        freeifaddrs(ifs);
        return !found;
}

size_t conn_memory(const struct conn *c) {
        const char *strings[] = { c ? c->host : NULL, c ? c->ca_file : NULL, c ? c->verify_name : NULL,
                                  c ? c->log_prefix : NULL, c ? c->pending_message : NULL };
        size_t m;

        if (!c)
                return 0;
        m = sizeof(*c) + c->wsize;
        for (size_t i = 0; i < ELEMENTSOF(strings); i++)
                if (strings[i])
                        m += strlen(strings[i]) + 1;
        m += CONN_EVENT_SOURCE_ESTIMATE * ((c->io != NULL) + (c->timer != NULL) + (c->defer != NULL));
        for (const struct addrinfo *a = c->addrs; a; a = a->ai_next)
                m += sizeof(*a) + a->ai_addrlen;
        if (c->ssl) {
                STACK_OF(X509) *chain = SSL_get_peer_cert_chain(c->ssl);

                m += CONN_SSL_IDLE_ESTIMATE;
                /* A parsed certificate costs about three times its DER. */
                if (chain)
                        for (int i = 0; i < sk_X509_num(chain); i++)
                                m += 3 * (size_t) MAX(i2d_X509(sk_X509_value(chain, i), NULL), 0);
        }
        return m;
}
