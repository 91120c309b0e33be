/* SPDX-License-Identifier: MIT */
/*
 * The transport (tls-conn.c) against a real Dovecot from the harness and
 * against small servers inside the test: implicit TLS and STARTTLS with the
 * test CA, every verification failure class (system store, host name, IP
 * address, pin match and mismatch), connect and handshake failures (refused,
 * silent peer, peer closing mid-handshake, plaintext peer), TCP keepalive
 * options on the socket, EOF, conn_free() from inside a callback, no wake-ups
 * while idle, a read budget per wake-up, no SIGPIPE on a dead peer, the
 * output limit, and the memory an idle TLS connection costs.
 *
 * Every wait runs the connection's own sd_event loop with a deadline that
 * fails the test.
 */

#include <arpa/inet.h>
#include <errno.h>
#include <malloc.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <systemd/sd-event.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "log.h"
#include "suites.h"
#include "tls-conn.h"

#define SEC 1000000ULL
#define MSEC 1000ULL

static struct harness h;

static void harness_setup(void) {
        ck_assert_msg(harness_start(&h, 0) >= 0, "harness failed to start");
}

static void harness_teardown(void) {
        harness_stop(&h);
}

static uint64_t now_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * SEC + (uint64_t) ts.tv_nsec / 1000U;
}

/* ---- a recording owner --------------------------------------------------- */

struct t;
typedef void (*on_data_fn)(struct t *t);

struct t {
        sd_event *e;
        struct conn *c;
        unsigned n_connected, n_tls_ready, n_closed, n_data;
        bool tls_at_connected, tls_at_ready;
        enum conn_error error;
        int r;
        char message[512];
        char *data;                     /* everything received, NUL-terminated */
        size_t len, size;
        on_data_fn on_data;             /* test script, after appending */
        unsigned step;
        bool free_in_data;              /* conn_free() from the data callback */
        bool free_in_closed;            /* conn_free() from the closed callback */
        /* the read budget: bytes delivered per loop iteration */
        uint64_t iteration;
        size_t iteration_bytes, max_iteration_bytes;
};

static void on_connected(struct conn *c, void *userdata) {
        struct t *t = userdata;

        ck_assert_ptr_eq(c, t->c);
        t->n_connected++;
        t->tls_at_connected = conn_is_tls(c);
}

static void on_tls_ready(struct conn *c, void *userdata) {
        struct t *t = userdata;

        t->n_tls_ready++;
        t->tls_at_ready = conn_is_tls(c);
}

static void on_data(struct conn *c, const void *buf, size_t len, void *userdata) {
        struct t *t = userdata;
        uint64_t it = 0;

        ck_assert_ptr_eq(c, t->c);
        ck_assert_uint_gt(len, 0);
        t->n_data++;
        if (t->len + len + 1 > t->size) {
                t->size = (t->len + len + 1) * 2;
                t->data = realloc(t->data, t->size);
                ck_assert_ptr_nonnull(t->data);
        }
        memcpy(t->data + t->len, buf, len);
        t->len += len;
        t->data[t->len] = '\0';

        ck_assert_int_ge(sd_event_get_iteration(t->e, &it), 0);
        if (it != t->iteration) {
                t->iteration = it;
                t->iteration_bytes = 0;
        }
        t->iteration_bytes += len;
        if (t->iteration_bytes > t->max_iteration_bytes)
                t->max_iteration_bytes = t->iteration_bytes;

        if (t->free_in_data) {
                t->c = conn_free(c);
                return;
        }
        if (t->on_data)
                t->on_data(t);
}

static void on_closed(struct conn *c, enum conn_error error, int r, const char *message, void *userdata) {
        struct t *t = userdata;

        ck_assert_ptr_eq(c, t->c);
        ck_assert_ptr_nonnull(message);
        t->n_closed++;
        t->error = error;
        t->r = r;
        snprintf(t->message, sizeof(t->message), "%s", message);
        if (t->free_in_closed)
                t->c = conn_free(c);
}

static const struct conn_callbacks callbacks = {
        .connected = on_connected,
        .tls_ready = on_tls_ready,
        .data = on_data,
        .closed = on_closed,
};

static void t_init(struct t *t) {
        *t = (struct t) {};
        ck_assert_int_ge(sd_event_new(&t->e), 0);
}

static void t_done(struct t *t) {
        t->c = conn_free(t->c);
        free(t->data);
        t->data = NULL;
        sd_event_unref(t->e);
        t->e = NULL;
}

static struct conn_config config(int port, bool tls) {
        return (struct conn_config) {
                .host = "localhost",
                .port = (uint16_t) port,
                .tls = tls,
                .ca_file = h.ca_file,
                .connect_timeout_usec = 10 * SEC,
                .log_prefix = "test: ",
        };
}

static void t_connect(struct t *t, const struct conn_config *cfg) {
        ck_assert_int_eq(conn_new(t->e, cfg, &callbacks, t, &t->c), 0);
        ck_assert_ptr_nonnull(t->c);
}

/* Runs the loop until cond holds; fails the test after ms milliseconds. */
#define WAIT_FOR(t, cond, ms)                                                                           \
        do {                                                                                            \
                uint64_t _deadline = now_usec() + (uint64_t) (ms) * MSEC;                               \
                while (!(cond)) {                                                                       \
                        ck_assert_msg(now_usec() < _deadline, "timed out waiting for %s (closed %u: %s)", \
                                      #cond, (t)->n_closed, (t)->message);                              \
                        ck_assert_int_ge(sd_event_run((t)->e, 10 * MSEC), 0);                           \
                }                                                                                       \
        } while (0)

static void run_for(struct t *t, uint64_t usec) {
        uint64_t deadline = now_usec() + usec;

        while (now_usec() < deadline)
                ck_assert_int_ge(sd_event_run(t->e, 10 * MSEC), 0);
}

static bool received(const struct t *t, const char *s) {
        return t->data && strstr(t->data, s);
}

static void write_str(struct t *t, const char *s) {
        ck_assert_int_eq(conn_write(t->c, s, strlen(s)), 0);
}

/* Connects and waits for the IMAP greeting. */
static void connect_greeted(struct t *t, const struct conn_config *cfg) {
        t_connect(t, cfg);
        WAIT_FOR(t, t->n_closed > 0 || received(t, "\r\n"), 10000);
        ck_assert_msg(t->n_closed == 0, "closed: %s: %s", conn_error_to_string(t->error), t->message);
        ck_assert_uint_eq(t->n_connected, 1);
        ck_assert_msg(strncmp(t->data, "* OK", 4) == 0, "greeting: %s", t->data);
}

static void wait_closed(struct t *t, unsigned ms) {
        WAIT_FOR(t, t->n_closed > 0, ms);
        ck_assert_uint_eq(t->n_closed, 1);
}

/* sha256 of the harness's server certificate, as "sha256:AB:CD:..." in the
 * format `openssl x509 -fingerprint -sha256` prints. */
static void server_pin(char *buf, size_t size, bool flip) {
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned n = 0;
        char path[PATH_MAX + 32];
        X509 *x;
        FILE *f;
        size_t k;

        snprintf(path, sizeof(path), "%s/tls/server.pem", h.dir);
        f = fopen(path, "re");
        ck_assert_msg(f, "%s: %m", path);
        x = PEM_read_X509(f, NULL, NULL, NULL);
        fclose(f);
        ck_assert_ptr_nonnull(x);
        ck_assert_int_eq(X509_digest(x, EVP_sha256(), md, &n), 1);
        X509_free(x);
        ck_assert_uint_eq(n, 32);
        if (flip)
                md[31] ^= 1;
        k = (size_t) snprintf(buf, size, "sha256:");
        for (unsigned i = 0; i < n; i++)
                k += (size_t) snprintf(buf + k, size - k, i ? ":%02X" : "%02X", md[i]);
}

/* ---- Dovecot: TLS -------------------------------------------------------- */

static char log_lines[8192];

static void log_collect(int level, const char *line, void *userdata) {
        size_t n = strlen(log_lines);

        snprintf(log_lines + n, sizeof(log_lines) - n, "%s\n", line);
}

START_TEST(test_implicit_tls) {
        struct conn_config cfg = config(h.imaps_port, true);
        char peer[64];
        struct t t;

        log_lines[0] = '\0';
        log_set_sink(log_collect, NULL);
        log_set_max_level(LOG_DEBUG);
        t_init(&t);
        t_connect(&t, &cfg);
        ck_assert_str_eq(conn_peer(t.c), "");
        ck_assert(!conn_is_tls(t.c));
        WAIT_FOR(&t, t.n_closed > 0 || received(&t, "\r\n"), 10000);
        log_set_sink(NULL, NULL);
        log_set_max_level(LOG_INFO);

        ck_assert_msg(t.n_closed == 0, "%s", t.message);
        ck_assert_uint_eq(t.n_connected, 1);
        ck_assert(t.tls_at_connected);
        ck_assert_uint_eq(t.n_tls_ready, 0);
        ck_assert_msg(strncmp(t.data, "* OK", 4) == 0, "greeting: %s", t.data);
        ck_assert(conn_is_tls(t.c));
        ck_assert(conn_is_loopback(t.c));
        snprintf(peer, sizeof(peer), "127.0.0.1:%d", h.imaps_port);
        ck_assert_str_eq(conn_peer(t.c), peer);
        /* Debug lines carry the prefix and name the protocol. */
        ck_assert_msg(strstr(log_lines, "test: TLS established with 127.0.0.1:"), "%s", log_lines);
        ck_assert_msg(strstr(log_lines, "TLSv1."), "%s", log_lines);

        write_str(&t, "a1 CAPABILITY\r\n");
        WAIT_FOR(&t, received(&t, "a1 OK"), 10000);
        ck_assert(received(&t, "* CAPABILITY"));
        t_done(&t);
}
END_TEST

START_TEST(test_ip_literal_host) {
        struct conn_config cfg = config(h.imaps_port, true);
        struct t t;

        /* The certificate has IP:127.0.0.1: checked as an address, no SNI. */
        cfg.host = "127.0.0.1";
        t_init(&t);
        connect_greeted(&t, &cfg);
        ck_assert(conn_is_tls(t.c));
        t_done(&t);

        cfg.verify_name = "127.0.0.2";
        t_init(&t);
        t_connect(&t, &cfg);
        wait_closed(&t, 10000);
        ck_assert_int_eq(t.error, CONN_ERROR_TLS_VERIFY);
        ck_assert_msg(strstr(t.message, "IP address mismatch"), "%s", t.message);
        t_done(&t);
}
END_TEST

static void starttls_script(struct t *t) {
        switch (t->step) {
        case 0:
                if (!received(t, "\r\n"))
                        return;
                ck_assert(!conn_is_tls(t->c));
                write_str(t, "a1 STARTTLS\r\n");
                t->step = 1;
                return;
        case 1:
                if (!received(t, "a1 OK"))
                        return;
                ck_assert_int_eq(conn_start_tls(t->c), 0);
                ck_assert_int_eq(conn_start_tls(t->c), -EALREADY);
                t->step = 2;
                return;
        default:
                /* No plaintext after conn_start_tls() and nothing before
                 * tls_ready. */
                ck_assert_msg(t->n_tls_ready > 0, "data before tls_ready");
                return;
        }
}

START_TEST(test_starttls) {
        struct conn_config cfg = config(h.imap_port, false);
        struct t t;

        t_init(&t);
        t.on_data = starttls_script;
        t_connect(&t, &cfg);
        WAIT_FOR(&t, t.n_closed > 0 || t.n_tls_ready > 0, 10000);
        ck_assert_msg(t.n_closed == 0, "%s", t.message);
        ck_assert_uint_eq(t.n_connected, 1);
        ck_assert(!t.tls_at_connected);
        ck_assert_uint_eq(t.n_tls_ready, 1);
        ck_assert(t.tls_at_ready);
        ck_assert(conn_is_tls(t.c));

        write_str(&t, "a2 CAPABILITY\r\n");
        WAIT_FOR(&t, t.n_closed > 0 || received(&t, "a2 OK"), 10000);
        ck_assert_msg(t.n_closed == 0, "%s", t.message);
        /* Over TLS the server no longer offers STARTTLS. */
        ck_assert(received(&t, "* CAPABILITY"));
        ck_assert_msg(!strstr(strstr(t.data, "a1 OK"), "STARTTLS"), "%s", t.data);
        t_done(&t);
}
END_TEST

static void starttls_write_early_script(struct t *t) {
        if (t->step == 0 && received(t, "\r\n")) {
                write_str(t, "a1 STARTTLS\r\n");
                t->step = 1;
        } else if (t->step == 1 && received(t, "a1 OK")) {
                ck_assert_int_eq(conn_start_tls(t->c), 0);
                /* Queued during the handshake, sent over TLS after it. */
                write_str(t, "a2 NOOP\r\n");
                t->step = 2;
        }
}

START_TEST(test_starttls_write_during_handshake) {
        struct conn_config cfg = config(h.imap_port, false);
        struct t t;

        t_init(&t);
        t.on_data = starttls_write_early_script;
        t_connect(&t, &cfg);
        WAIT_FOR(&t, t.n_closed > 0 || received(&t, "a2 OK"), 10000);
        ck_assert_msg(t.n_closed == 0, "%s", t.message);
        ck_assert_uint_eq(t.n_tls_ready, 1);
        t_done(&t);
}
END_TEST

START_TEST(test_verify_system_store) {
        struct conn_config cfg = config(h.imaps_port, true);
        struct t t;

        cfg.ca_file = NULL;     /* the harness CA is not in the system store */
        t_init(&t);
        t_connect(&t, &cfg);
        wait_closed(&t, 10000);
        ck_assert_uint_eq(t.n_connected, 0);
        ck_assert_int_eq(t.error, CONN_ERROR_TLS_VERIFY);
        ck_assert_int_lt(t.r, 0);
        ck_assert_msg(strstr(t.message, "certificate verify failed: unable to get local issuer certificate"), "%s",
                      t.message);
        ck_assert_int_eq(conn_write(t.c, "x", 1), -ENOTCONN);
        t_done(&t);
}
END_TEST

START_TEST(test_verify_host_name) {
        struct conn_config cfg = config(h.imaps_port, true);
        struct t t;

        cfg.verify_name = "imap.example.org";
        t_init(&t);
        t_connect(&t, &cfg);
        wait_closed(&t, 10000);
        ck_assert_uint_eq(t.n_connected, 0);
        ck_assert_int_eq(t.error, CONN_ERROR_TLS_VERIFY);
        ck_assert_msg(strstr(t.message, "hostname mismatch"), "%s", t.message);
        ck_assert_msg(strstr(t.message, "imap.example.org"), "%s", t.message);
        t_done(&t);
}
END_TEST

START_TEST(test_pin_match_without_chain) {
        struct conn_config cfg = config(h.imaps_port, true);
        char pin[160];
        struct t t;

        /* The chain cannot be verified (system store), the pin matches. */
        server_pin(pin, sizeof(pin), false);
        cfg.ca_file = NULL;
        cfg.fingerprint = pin;
        t_init(&t);
        connect_greeted(&t, &cfg);
        ck_assert(conn_is_tls(t.c));
        t_done(&t);

        /* Documented: a matching pin also covers a host name mismatch. */
        cfg.verify_name = "imap.example.org";
        t_init(&t);
        connect_greeted(&t, &cfg);
        t_done(&t);
}
END_TEST

START_TEST(test_pin_mismatch) {
        struct conn_config cfg = config(h.imaps_port, true);
        char pin[160], good[160], got[80];
        struct t t;
        size_t k = 0;

        /* A verifiable chain does not save a wrong pin. */
        server_pin(pin, sizeof(pin), true);
        server_pin(good, sizeof(good), false);
        cfg.fingerprint = pin;
        t_init(&t);
        t_connect(&t, &cfg);
        wait_closed(&t, 10000);
        ck_assert_uint_eq(t.n_connected, 0);
        ck_assert_int_eq(t.error, CONN_ERROR_TLS_VERIFY);
        ck_assert_msg(strstr(t.message, "certificate fingerprint mismatch: got sha256:"), "%s", t.message);

        /* It names the certificate's real fingerprint (lower case, no colons). */
        for (const char *p = good + 7; *p; p++)
                if (*p != ':')
                        got[k++] = (char) (*p >= 'A' && *p <= 'F' ? *p - 'A' + 'a' : *p);
        got[k] = '\0';
        ck_assert_msg(strstr(t.message, got), "%s lacks %s", t.message, got);
        t_done(&t);
}
END_TEST

START_TEST(test_keepalive_options) {
        struct conn_config cfg = config(h.imaps_port, true);
        int v = 0, fd;
        unsigned u = 0;
        socklen_t len;
        struct t t;

        cfg.keepalive_idle_sec = 77;
        cfg.keepalive_interval_sec = 11;
        cfg.keepalive_count = 3;
        cfg.user_timeout_msec = 45000;
        t_init(&t);
        connect_greeted(&t, &cfg);
        fd = conn_fd(t.c);
        ck_assert_int_ge(fd, 0);

#define CHECK_OPT(level, name, expected)                                                \
        do {                                                                            \
                len = sizeof(v);                                                        \
                ck_assert_int_eq(getsockopt(fd, level, name, &v, &len), 0);             \
                ck_assert_msg(v == (expected), #name ": %d, expected %d", v, (expected)); \
        } while (0)
        CHECK_OPT(SOL_SOCKET, SO_KEEPALIVE, 1);
        CHECK_OPT(IPPROTO_TCP, TCP_KEEPIDLE, 77);
        CHECK_OPT(IPPROTO_TCP, TCP_KEEPINTVL, 11);
        CHECK_OPT(IPPROTO_TCP, TCP_KEEPCNT, 3);
        CHECK_OPT(IPPROTO_TCP, TCP_NODELAY, 1);
#undef CHECK_OPT
        len = sizeof(u);
        ck_assert_int_eq(getsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &u, &len), 0);
        ck_assert_uint_eq(u, 45000);
        t_done(&t);

        /* The defaults from the header. */
        cfg = config(h.imaps_port, true);
        t_init(&t);
        connect_greeted(&t, &cfg);
        fd = conn_fd(t.c);
        len = sizeof(v);
        ck_assert_int_eq(getsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &v, &len), 0);
        ck_assert_int_eq(v, 60);
        ck_assert_int_eq(getsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &v, &len), 0);
        ck_assert_int_eq(v, 15);
        ck_assert_int_eq(getsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &v, &len), 0);
        ck_assert_int_eq(v, 4);
        len = sizeof(u);
        ck_assert_int_eq(getsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &u, &len), 0);
        ck_assert_uint_eq(u, 120000);
        t_done(&t);
}
END_TEST

START_TEST(test_eof_after_logout) {
        struct conn_config cfg = config(_i ? h.imaps_port : h.imap_port, _i);
        struct t t;

        t_init(&t);
        t.free_in_closed = true;
        connect_greeted(&t, &cfg);
        write_str(&t, "a1 LOGOUT\r\n");
        wait_closed(&t, 10000);
        ck_assert(received(&t, "* BYE"));
        ck_assert_msg(t.error == CONN_ERROR_EOF, "%s: %s", conn_error_to_string(t.error), t.message);
        ck_assert_ptr_null(t.c);        /* freed inside "closed" */
        t_done(&t);
}
END_TEST

START_TEST(test_free_in_data_callback) {
        struct conn_config cfg = config(_i ? h.imaps_port : h.imap_port, _i);
        struct t t;

        t_init(&t);
        t.free_in_data = true;
        t_connect(&t, &cfg);
        WAIT_FOR(&t, t.n_data > 0, 10000);
        ck_assert_ptr_null(t.c);
        /* Nothing more arrives for the freed connection, "closed" included. */
        run_for(&t, 300 * MSEC);
        ck_assert_uint_eq(t.n_data, 1);
        ck_assert_uint_eq(t.n_closed, 0);
        t_done(&t);
}
END_TEST

/* Writes to a peer that has gone away from inside the data callback. With
 * write(2) underneath, the second write raises SIGPIPE and kills the test. */
static void write_after_logout_script(struct t *t) {
        if (t->step != 0 || !received(t, "a1 OK"))
                return;
        t->step = 1;
        usleep(200 * 1000);     /* the server closes its end */
        for (int i = 0; i < 5 && conn_write(t->c, "a2 NOOP\r\n", 9) == 0; i++)
                usleep(50 * 1000);
}

START_TEST(test_no_sigpipe) {
        struct conn_config cfg = config(_i ? h.imaps_port : h.imap_port, _i);
        struct t t;

        t_init(&t);
        connect_greeted(&t, &cfg);
        t.on_data = write_after_logout_script;
        write_str(&t, "a1 LOGOUT\r\n");
        wait_closed(&t, 10000);
        ck_assert_uint_eq(t.step, 1);
        ck_assert_msg(t.error == CONN_ERROR_IO || t.error == CONN_ERROR_EOF, "%s: %s",
                      conn_error_to_string(t.error), t.message);
        t_done(&t);
}
END_TEST

START_TEST(test_idle_no_wakeups) {
        struct conn_config cfg = config(h.imaps_port, true);
        uint64_t before = 0, after = 0, deadline;
        unsigned wakeups = 0, data_before;
        struct t t;

        t_init(&t);
        connect_greeted(&t, &cfg);
        /* Let the TLS 1.3 session tickets that follow the handshake arrive. */
        run_for(&t, 200 * MSEC);
        data_before = t.n_data;

        ck_assert_int_ge(sd_event_get_iteration(t.e, &before), 0);
        deadline = now_usec() + 2 * SEC;
        while (now_usec() < deadline) {
                int r = sd_event_run(t.e, deadline - now_usec());

                ck_assert_int_ge(r, 0);
                wakeups += r > 0;
        }
        ck_assert_int_ge(sd_event_get_iteration(t.e, &after), 0);
        printf("idle TLS connection, 2 s: %u wake-ups, %llu loop iterations, %u data callbacks\n", wakeups,
               (unsigned long long) (after - before), t.n_data - data_before);
        ck_assert_uint_eq(wakeups, 0);
        ck_assert_uint_le(after - before, 2);
        ck_assert_uint_eq(t.n_data, data_before);
        ck_assert_uint_eq(t.n_closed, 0);
        t_done(&t);
}
END_TEST

START_TEST(test_memory) {
        enum { N = 16 };
        struct conn_config cfg = config(h.imaps_port, true);
        static struct t conns[N];
        struct mallinfo2 m0, m1;
        struct t warm;
        size_t est = 0, measured;
        long delta;

        /* One connection first, so that the shared SSL_CTX, OpenSSL's
         * tables and the resolver are already paid for. */
        t_init(&warm);
        connect_greeted(&warm, &cfg);
        for (int i = 0; i < N; i++)
                t_init(&conns[i]);
        m0 = mallinfo2();
        for (int i = 0; i < N; i++)
                t_connect(&conns[i], &cfg);
        for (int i = 0; i < N; i++) {
                WAIT_FOR(&conns[i], conns[i].n_closed > 0 || received(&conns[i], "\r\n"), 10000);
                ck_assert_msg(conns[i].n_closed == 0, "%s", conns[i].message);
        }
        for (int i = 0; i < N; i++)
                run_for(&conns[i], 20 * MSEC);  /* session tickets */
        /* What the test itself holds: the received greetings. */
        for (int i = 0; i < N; i++) {
                free(conns[i].data);
                conns[i].data = NULL;
                conns[i].size = conns[i].len = 0;
        }
        m1 = mallinfo2();
        for (int i = 0; i < N; i++)
                est += conn_memory(conns[i].c);
        est /= N;
        delta = (long) (m1.uordblks + m1.hblkhd) - (long) (m0.uordblks + m0.hblkhd);
        measured = delta > 0 ? (size_t) delta / N : 0;
        printf("idle TLS connection: conn_memory() %zu bytes, heap growth %zu bytes per connection "
               "(mallinfo2, %d connections)\n",
               est, measured, N);
        if (measured > 0) {
                /* The transport leaves most of the spec's 48 KiB per IDLE
                 * session to the rest (about 23 KiB here; 39 KiB if the
                 * post-handshake write buffer stays), and the estimate is
                 * within a third of reality. */
                ck_assert_uint_le(measured, 32 * 1024);
                ck_assert_uint_ge(est, measured * 2 / 3);
                ck_assert_uint_le(est, measured * 3 / 2);
        }
        for (int i = 0; i < N; i++)
                t_done(&conns[i]);
        t_done(&warm);
}
END_TEST

/* Many TLS records: delivered in order and complete, at most the read budget
 * (64 KiB) plus one chunk per loop iteration. */
static void fetch_script(struct t *t) {
        if (t->step == 0 && received(t, "a1 OK")) {
                write_str(t, "a2 EXAMINE INBOX\r\n");
                t->step = 1;
        } else if (t->step == 1 && received(t, "a2 OK")) {
                write_str(t, "a3 FETCH 1 BODY.PEEK[]\r\n");
                t->step = 2;
        } else if (t->step == 2 && received(t, "a3 OK")) {
                t->step = 3;
        }
}

START_TEST(test_large_read_budget) {
        struct conn_config cfg = config(h.imaps_port, true);
        size_t body = 2 * 1024 * 1024, n;
        char *msg, *p, pw[64], login[128];
        struct t t;

        msg = malloc(body + 256);
        ck_assert_ptr_nonnull(msg);
        p = msg + sprintf(msg, "From: a@example.org\r\nSubject: big\r\n\r\n");
        for (n = 0; n + 78 <= body; n += 78)
                p += sprintf(p, "%076zu\r\n", n);
        *p = '\0';
        ck_assert_int_eq(harness_deliver_raw(&h, "user1", "INBOX", msg), 0);
        free(msg);

        t_init(&t);
        connect_greeted(&t, &cfg);
        t.on_data = fetch_script;
        snprintf(login, sizeof(login), "a1 LOGIN user1 %s\r\n", harness_password(&h, "user1", pw, sizeof(pw)));
        write_str(&t, login);
        /* Let Dovecot fill the socket while the loop is not reading. */
        WAIT_FOR(&t, t.n_closed > 0 || t.step == 2, 10000);
        usleep(300 * 1000);
        WAIT_FOR(&t, t.n_closed > 0 || t.step == 3, 30000);
        ck_assert_msg(t.n_closed == 0, "%s", t.message);
        ck_assert(received(&t, "00000000000000000000000000000000000000000000000000000000000000000000000000\r\n"));
        ck_assert_uint_gt(t.len, body);
        printf("2 MiB FETCH over TLS: at most %zu bytes delivered per loop iteration\n", t.max_iteration_bytes);
        ck_assert_uint_le(t.max_iteration_bytes, 64 * 1024 + 16 * 1024);
        t_done(&t);
}
END_TEST

START_TEST(test_write_limits) {
        struct conn_config cfg = config(h.imap_port, false);
        char big[100];
        struct t t;

        t_init(&t);
        t_connect(&t, &cfg);
        /* Not yet connected. */
        ck_assert_int_eq(conn_write(t.c, "x", 1), -ENOTCONN);
        ck_assert_int_eq(conn_start_tls(t.c), -ENOTCONN);
        ck_assert(!conn_is_loopback(t.c));
        t_done(&t);

        cfg.max_output = 64;
        t_init(&t);
        connect_greeted(&t, &cfg);
        ck_assert_int_eq(conn_write(t.c, NULL, 0), 0);
        memset(big, 'x', sizeof(big));
        ck_assert_int_eq(conn_write(t.c, big, sizeof(big)), -ENOBUFS);
        /* Reported from the loop, not from inside conn_write(). */
        ck_assert_uint_eq(t.n_closed, 0);
        ck_assert_int_eq(conn_write(t.c, "x", 1), -ENOTCONN);
        wait_closed(&t, 5000);
        ck_assert_int_eq(t.error, CONN_ERROR_OVERFLOW);
        ck_assert_int_eq(t.r, -ENOBUFS);
        t_done(&t);
}
END_TEST

/* ---- local servers ------------------------------------------------------- */

enum server_mode {
        SERVER_SILENT,          /* listen, never accept */
        SERVER_CLOSE_AFTER_READ,        /* accept, read what comes, close */
        SERVER_SEND_AND_CLOSE,  /* accept, send text, close */
        SERVER_SEND_PLAIN,      /* accept, send text, stay */
};

struct server {
        enum server_mode mode;
        const char *text;
        int listen_fd, client_fd;
        int port;
        size_t got;
        sd_event_source *listen_src, *client_src;
};

static int server_on_client(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        struct server *srv = userdata;
        char buf[4096];
        ssize_t n = read(fd, buf, sizeof(buf));

        if (n > 0)
                srv->got += (size_t) n;
        if (n >= 0) {
                srv->client_src = sd_event_source_disable_unref(srv->client_src);
                close(srv->client_fd);
                srv->client_fd = -1;
        }
        return 0;
}

static int server_on_accept(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        struct server *srv = userdata;
        sd_event *e = sd_event_source_get_event(s);
        int cfd = accept4(fd, NULL, NULL, SOCK_CLOEXEC);

        ck_assert_int_ge(cfd, 0);
        srv->listen_src = sd_event_source_disable_unref(srv->listen_src);
        srv->client_fd = cfd;
        switch (srv->mode) {
        case SERVER_CLOSE_AFTER_READ:
                ck_assert_int_ge(sd_event_add_io(e, &srv->client_src, cfd, EPOLLIN,
                                                 server_on_client, srv), 0);
                break;
        case SERVER_SEND_AND_CLOSE:
                ck_assert_int_eq(write(cfd, srv->text, strlen(srv->text)), (ssize_t) strlen(srv->text));
                close(cfd);
                srv->client_fd = -1;
                break;
        case SERVER_SEND_PLAIN:
                ck_assert_int_eq(write(cfd, srv->text, strlen(srv->text)), (ssize_t) strlen(srv->text));
                break;
        default:
                break;
        }
        return 0;
}

/* Listens on the loopback address of family; false if that family is not
 * available here. */
static bool server_start(struct server *srv, sd_event *e, int family, enum server_mode mode, const char *text) {
        struct sockaddr_storage ss = {};
        socklen_t len;

        *srv = (struct server) { .mode = mode, .text = text, .listen_fd = -1, .client_fd = -1 };
        srv->listen_fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        ck_assert_int_ge(srv->listen_fd, 0);
        if (family == AF_INET6) {
                struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *) &ss;

                sin6->sin6_family = AF_INET6;
                sin6->sin6_addr = in6addr_loopback;
                len = sizeof(*sin6);
        } else {
                struct sockaddr_in *sin = (struct sockaddr_in *) &ss;

                sin->sin_family = AF_INET;
                sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
                len = sizeof(*sin);
        }
        if (bind(srv->listen_fd, (struct sockaddr *) &ss, len) < 0) {
                close(srv->listen_fd);
                srv->listen_fd = -1;
                return false;
        }
        ck_assert_int_eq(listen(srv->listen_fd, 4), 0);
        ck_assert_int_eq(getsockname(srv->listen_fd, (struct sockaddr *) &ss, &len), 0);
        srv->port = ntohs(family == AF_INET6 ? ((struct sockaddr_in6 *) &ss)->sin6_port
                                             : ((struct sockaddr_in *) &ss)->sin_port);
        if (mode != SERVER_SILENT)
                ck_assert_int_ge(sd_event_add_io(e, &srv->listen_src, srv->listen_fd, EPOLLIN, server_on_accept, srv),
                                 0);
        return true;
}

static void server_stop(struct server *srv) {
        srv->listen_src = sd_event_source_disable_unref(srv->listen_src);
        srv->client_src = sd_event_source_disable_unref(srv->client_src);
        if (srv->client_fd >= 0)
                close(srv->client_fd);
        if (srv->listen_fd >= 0)
                close(srv->listen_fd);
        srv->client_fd = srv->listen_fd = -1;
}

static struct conn_config local_config(int port, bool tls) {
        return (struct conn_config) {
                .host = "127.0.0.1",
                .port = (uint16_t) port,
                .tls = tls,
                .connect_timeout_usec = 5 * SEC,
        };
}

START_TEST(test_connection_refused) {
        struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t len = sizeof(sin);
        struct conn_config cfg;
        struct t t;
        int fd;

        /* A port that was free a moment ago and that nobody listens on. */
        fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(bind(fd, (struct sockaddr *) &sin, sizeof(sin)), 0);
        ck_assert_int_eq(getsockname(fd, (struct sockaddr *) &sin, &len), 0);
        close(fd);

        cfg = local_config(ntohs(sin.sin_port), true);
        t_init(&t);
        t_connect(&t, &cfg);
        wait_closed(&t, 5000);
        ck_assert_uint_eq(t.n_connected, 0);
        ck_assert_int_eq(t.error, CONN_ERROR_CONNECT);
        ck_assert_int_eq(t.r, -ECONNREFUSED);
        ck_assert_msg(strcasestr(t.message, "connection refused"), "%s", t.message);
        ck_assert_str_eq(conn_peer(t.c), "");
        t_done(&t);
}
END_TEST

START_TEST(test_resolve_failure) {
        struct conn_config cfg = local_config(993, true);
        struct t t;

        cfg.host = "nonexistent.invalid";
        t_init(&t);
        t_connect(&t, &cfg);
        wait_closed(&t, 10000);
        ck_assert_int_eq(t.error, CONN_ERROR_RESOLVE);
        ck_assert_msg(t.r == -ENOENT || t.r == -EAGAIN, "%d", t.r);
        ck_assert_msg(strstr(t.message, "nonexistent.invalid"), "%s", t.message);
        t_done(&t);
}
END_TEST

START_TEST(test_handshake_timeout) {
        struct conn_config cfg;
        struct server srv;
        uint64_t start, elapsed;
        struct t t;

        t_init(&t);
        ck_assert(server_start(&srv, t.e, AF_INET, SERVER_SILENT, NULL));
        cfg = local_config(srv.port, true);
        cfg.connect_timeout_usec = 300 * MSEC;
        start = now_usec();
        t_connect(&t, &cfg);
        wait_closed(&t, 5000);
        elapsed = now_usec() - start;
        ck_assert_uint_eq(t.n_connected, 0);
        ck_assert_int_eq(t.error, CONN_ERROR_TIMEOUT);
        ck_assert_int_eq(t.r, -ETIMEDOUT);
        ck_assert_str_eq(t.message, "TLS handshake timed out");
        ck_assert_uint_ge(elapsed, 250 * MSEC);
        ck_assert_uint_lt(elapsed, 3 * SEC);
        t_done(&t);
        server_stop(&srv);
}
END_TEST

START_TEST(test_close_mid_handshake) {
        struct conn_config cfg;
        struct server srv;
        struct t t;

        t_init(&t);
        ck_assert(server_start(&srv, t.e, AF_INET, SERVER_CLOSE_AFTER_READ, NULL));
        cfg = local_config(srv.port, true);
        t_connect(&t, &cfg);
        wait_closed(&t, 5000);
        ck_assert_uint_gt(srv.got, 0);  /* the ClientHello */
        ck_assert_uint_eq(t.n_connected, 0);
        ck_assert_msg(t.error == CONN_ERROR_TLS, "%s: %s", conn_error_to_string(t.error), t.message);
        ck_assert_msg(strstr(t.message, "TLS handshake failed: connection closed by peer"), "%s", t.message);
        t_done(&t);
        server_stop(&srv);
}
END_TEST

START_TEST(test_plaintext_peer) {
        struct conn_config cfg;
        struct server srv;
        struct t t;

        /* An IMAP server on a port configured for implicit TLS. */
        t_init(&t);
        ck_assert(server_start(&srv, t.e, AF_INET, SERVER_SEND_PLAIN, "* OK IMAP4rev1 ready\r\n"));
        cfg = local_config(srv.port, true);
        t_connect(&t, &cfg);
        wait_closed(&t, 5000);
        ck_assert_uint_eq(t.n_connected, 0);
        ck_assert_uint_eq(t.n_data, 0);
        ck_assert_msg(t.error == CONN_ERROR_TLS, "%s: %s", conn_error_to_string(t.error), t.message);
        ck_assert_msg(strncmp(t.message, "TLS handshake failed: ", 22) == 0, "%s", t.message);
        t_done(&t);
        server_stop(&srv);
}
END_TEST

START_TEST(test_plain_eof) {
        struct conn_config cfg;
        struct server srv;
        char peer[64];
        struct t t;

        t_init(&t);
        ck_assert(server_start(&srv, t.e, AF_INET, SERVER_SEND_AND_CLOSE, "hello\r\n"));
        cfg = local_config(srv.port, false);
        t_connect(&t, &cfg);
        wait_closed(&t, 5000);
        ck_assert_uint_eq(t.n_connected, 1);
        ck_assert(!t.tls_at_connected);
        ck_assert_str_eq(t.data, "hello\r\n");
        ck_assert_int_eq(t.error, CONN_ERROR_EOF);
        ck_assert(conn_is_loopback(t.c));
        snprintf(peer, sizeof(peer), "127.0.0.1:%d", srv.port);
        ck_assert_str_eq(conn_peer(t.c), peer);
        t_done(&t);
        server_stop(&srv);
}
END_TEST

START_TEST(test_ipv6_literal) {
        struct conn_config cfg;
        struct server srv;
        char peer[64];
        struct t t;

        t_init(&t);
        if (!server_start(&srv, t.e, AF_INET6, SERVER_SEND_AND_CLOSE, "v6\r\n")) {
                printf("no IPv6 loopback here, skipping\n");
                t_done(&t);
                return;
        }
        cfg = local_config(srv.port, false);
        cfg.host = "::1";
        t_connect(&t, &cfg);
        wait_closed(&t, 5000);
        ck_assert_uint_eq(t.n_connected, 1);
        ck_assert_str_eq(t.data, "v6\r\n");
        ck_assert(conn_is_loopback(t.c));
        snprintf(peer, sizeof(peer), "[::1]:%d", srv.port);
        ck_assert_str_eq(conn_peer(t.c), peer);
        t_done(&t);
        server_stop(&srv);
}
END_TEST

START_TEST(test_bad_ca_file) {
        struct conn_config cfg;
        struct server srv;
        struct t t;

        t_init(&t);
        ck_assert(server_start(&srv, t.e, AF_INET, SERVER_SILENT, NULL));
        cfg = local_config(srv.port, true);
        cfg.ca_file = "/nonexistent/ca.pem";
        t_connect(&t, &cfg);
        wait_closed(&t, 5000);
        ck_assert_int_eq(t.error, CONN_ERROR_TLS);
        ck_assert_msg(strstr(t.message, "cannot load CA file /nonexistent/ca.pem"), "%s", t.message);
        t_done(&t);
        server_stop(&srv);
}
END_TEST

START_TEST(test_config_validation) {
        struct conn_config cfg = local_config(993, true);
        struct conn *c = NULL;
        sd_event *e = NULL;
        static const char *const good[] = {
                "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
                "SHA256:0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF",
                "01:23:45:67:89:AB:CD:EF:01:23:45:67:89:ab:cd:ef:01:23:45:67:89:ab:cd:ef:01:23:45:67:89:ab:cd:ef",
        };
        static const char *const bad[] = {
                "sha256:0123",
                "sha1:0123456789abcdef0123456789abcdef01234567",
                "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdeg",
                "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef00",
                "0:123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
                "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef:",
        };

        ck_assert_int_ge(sd_event_new(&e), 0);
        for (size_t i = 0; i < ELEMENTSOF(good); i++) {
                cfg.fingerprint = good[i];
                ck_assert_msg(conn_new(e, &cfg, &callbacks, NULL, &c) == 0, "%s", good[i]);
                c = conn_free(c);
        }
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                cfg.fingerprint = bad[i];
                ck_assert_msg(conn_new(e, &cfg, &callbacks, NULL, &c) == -EINVAL, "%s", bad[i]);
                ck_assert_ptr_null(c);
        }
        cfg.fingerprint = NULL;
        cfg.port = 0;
        ck_assert_int_eq(conn_new(e, &cfg, &callbacks, NULL, &c), -EINVAL);
        cfg.port = 993;
        cfg.host = "";
        ck_assert_int_eq(conn_new(e, &cfg, &callbacks, NULL, &c), -EINVAL);
        ck_assert_ptr_null(conn_free(NULL));
        ck_assert_str_eq(conn_error_to_string(CONN_ERROR_TLS_VERIFY), "tls-verify");
        ck_assert_ptr_null(conn_error_to_string(_CONN_ERROR_MAX));
        /* Let cancelled resolver threads finish before the process exits. */
        usleep(100 * 1000);
        sd_event_unref(e);
}
END_TEST

static Suite *tls_conn_suite(void) {
        Suite *s = suite_create("tls-conn");
        TCase *tc = tcase_create("dovecot");
        TCase *local = tcase_create("local");

        tcase_add_unchecked_fixture(tc, harness_setup, harness_teardown);
        tcase_set_timeout(tc, 120);
        tcase_add_test(tc, test_implicit_tls);
        tcase_add_test(tc, test_ip_literal_host);
        tcase_add_test(tc, test_starttls);
        tcase_add_test(tc, test_starttls_write_during_handshake);
        tcase_add_test(tc, test_verify_system_store);
        tcase_add_test(tc, test_verify_host_name);
        tcase_add_test(tc, test_pin_match_without_chain);
        tcase_add_test(tc, test_pin_mismatch);
        tcase_add_test(tc, test_keepalive_options);
        tcase_add_loop_test(tc, test_eof_after_logout, 0, 2);
        tcase_add_loop_test(tc, test_free_in_data_callback, 0, 2);
        tcase_add_loop_test(tc, test_no_sigpipe, 0, 2);
        tcase_add_test(tc, test_idle_no_wakeups);
        tcase_add_test(tc, test_memory);
        tcase_add_test(tc, test_large_read_budget);
        tcase_add_test(tc, test_write_limits);
        suite_add_tcase(s, tc);

        tcase_set_timeout(local, 60);
        tcase_add_test(local, test_connection_refused);
        tcase_add_test(local, test_resolve_failure);
        tcase_add_test(local, test_handshake_timeout);
        tcase_add_test(local, test_close_mid_handshake);
        tcase_add_test(local, test_plaintext_peer);
        tcase_add_test(local, test_plain_eof);
        tcase_add_test(local, test_ipv6_literal);
        tcase_add_test(local, test_bad_ca_file);
        tcase_add_test(local, test_config_validation);
        suite_add_tcase(s, local);
        return s;
}

int main(void) {
        SRunner *sr = srunner_create(tls_conn_suite());
        int failed;

        if (getenv("IMAPIDLED_TEST_DEBUG"))
                log_set_max_level(LOG_DEBUG);
        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
