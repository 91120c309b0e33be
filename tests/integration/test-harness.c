/* SPDX-License-Identifier: MIT */
/*
 * The harness itself, checked against what a client observes: both listeners
 * greet, implicit TLS and STARTTLS verify against the generated CA for the
 * name "localhost", plaintext LOGIN works on loopback, delivered mail, flag
 * changes and expunges show up in the store (doveadm) and in an IDLE session,
 * mkbox creates mailboxes, the private bus speaks D-Bus, stop leaves nothing
 * behind, and the guard cleans up after an owner killed with SIGKILL.
 *
 * Deliberately independent of the project's parser and test client: plain
 * sockets and OpenSSL only.
 */

#include <arpa/inet.h>
#include <check.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

#define IO_TIMEOUT_MS 5000

static struct harness h;

static void setup(void) {
        ck_assert_msg(harness_start(&h, 0) >= 0, "harness failed to start");
}

static void teardown(void) {
        harness_stop(&h);
}

static long now_ms(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

/* ---- a line-oriented connection, plain or TLS --------------------------- */

struct conn {
        int fd;
        SSL_CTX *ctx;
        SSL *ssl;
};

static void conn_close(struct conn *c) {
        if (c->ssl) {
                SSL_shutdown(c->ssl);
                SSL_free(c->ssl);
        }
        SSL_CTX_free(c->ctx);
        if (c->fd >= 0)
                close(c->fd);
        c->fd = -1;
        c->ssl = NULL;
        c->ctx = NULL;
}

static int tcp_connect(int port) {
        struct sockaddr_in sin = {
                .sin_family = AF_INET,
                .sin_port = htons((uint16_t) port),
                .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
        };
        struct timeval tv = { .tv_sec = IO_TIMEOUT_MS / 1000 };
        int fd;

        fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
        if (connect(fd, (struct sockaddr *) &sin, sizeof(sin)) < 0) {
                int r = -errno;

                close(fd);
                return r;
        }
        return fd;
}

static void conn_open(struct conn *c, int port) {
        c->ssl = NULL;
        c->ctx = NULL;
        c->fd = tcp_connect(port);
        ck_assert_msg(c->fd >= 0, "connect 127.0.0.1:%d: %s", port, strerror(-c->fd));
}

static const char *ssl_errors(void) {
        static char buf[512];
        unsigned long e = ERR_get_error();

        if (!e)
                return "(no OpenSSL error)";
        ERR_error_string_n(e, buf, sizeof(buf));
        ERR_clear_error();
        return buf;
}

/* TLS on c->fd, verifying the chain against ca_file (NULL: an empty trust
 * store) and the certificate against name (SNI too). Returns SSL_connect's
 * result; *ret_verify gets the verification result. */
static int conn_tls(struct conn *c, const char *ca_file, const char *name, long *ret_verify) {
        int r;

        c->ctx = SSL_CTX_new(TLS_client_method());
        ck_assert_ptr_nonnull(c->ctx);
        SSL_CTX_set_verify(c->ctx, SSL_VERIFY_PEER, NULL);
        if (ca_file)
                ck_assert_msg(SSL_CTX_load_verify_locations(c->ctx, ca_file, NULL) == 1, "load %s: %s", ca_file,
                              ssl_errors());
        c->ssl = SSL_new(c->ctx);
        ck_assert_ptr_nonnull(c->ssl);
        ck_assert_int_eq(SSL_set_tlsext_host_name(c->ssl, name), 1);
        ck_assert_int_eq(SSL_set1_host(c->ssl, name), 1);
        ck_assert_int_eq(SSL_set_fd(c->ssl, c->fd), 1);
        r = SSL_connect(c->ssl);
        *ret_verify = SSL_get_verify_result(c->ssl);
        ERR_clear_error();
        return r;
}

static void conn_write(struct conn *c, const char *s) {
        size_t len = strlen(s);

        if (c->ssl)
                ck_assert_int_eq(SSL_write(c->ssl, s, (int) len), (int) len);
        else
                ck_assert_int_eq(write(c->fd, s, len), (ssize_t) len);
}

/* One line without CRLF; -ETIMEDOUT after IO_TIMEOUT_MS of silence. */
static int conn_read_line(struct conn *c, char *line, size_t size) {
        size_t n = 0;

        for (;;) {
                char ch;
                ssize_t r;

                if (c->ssl) {
                        r = SSL_read(c->ssl, &ch, 1);
                        if (r <= 0) {
                                ERR_clear_error();
                                return errno == EAGAIN || errno == EWOULDBLOCK ? -ETIMEDOUT : -ECONNRESET;
                        }
                } else {
                        r = read(c->fd, &ch, 1);
                        if (r < 0)
                                return errno == EAGAIN || errno == EWOULDBLOCK ? -ETIMEDOUT : -errno;
                        if (r == 0)
                                return -ECONNRESET;
                }
                if (ch == '\n')
                        break;
                if (n + 1 < size)
                        line[n++] = ch;
        }
        if (n > 0 && line[n - 1] == '\r')
                n--;
        line[n] = '\0';
        return (int) n;
}

/* Reads lines until one starts with prefix (copied to line) or timeout_ms
 * pass. */
static bool conn_expect(struct conn *c, const char *prefix, char *line, size_t size, int timeout_ms) {
        long deadline = now_ms() + timeout_ms;

        while (now_ms() < deadline) {
                int r = conn_read_line(c, line, size);

                if (r == -ETIMEDOUT)
                        continue;
                if (r < 0)
                        return false;
                if (strncmp(line, prefix, strlen(prefix)) == 0)
                        return true;
        }
        return false;
}

static void conn_login(struct conn *c, const char *user) {
        char cmd[128], pw[64], line[4096];

        ck_assert_ptr_nonnull(harness_password(&h, user, pw, sizeof(pw)));
        snprintf(cmd, sizeof(cmd), "L LOGIN %s %s\r\n", user, pw);
        conn_write(c, cmd);
        ck_assert_msg(conn_expect(c, "L ", line, sizeof(line), IO_TIMEOUT_MS), "no LOGIN response");
        ck_assert_msg(strncmp(line, "L OK", 4) == 0, "LOGIN %s: %s", user, line);
}

/* ---- the processes and the store --------------------------------------- */

/* Processes (other than us) whose command line mentions dir as a path; the
 * first few are described in desc. */
static int procs_mentioning(const char *dir, char *desc, size_t desc_size) {
        size_t dlen = strlen(dir), used = 0;
        struct dirent *e;
        DIR *d;
        int n = 0;

        if (desc_size)
                desc[0] = '\0';
        d = opendir("/proc");
        ck_assert_ptr_nonnull(d);
        while ((e = readdir(d))) {
                char path[300], buf[4096], *hit;
                ssize_t len;
                int fd;

                if (!isdigit((unsigned char) e->d_name[0]) || atoi(e->d_name) == getpid())
                        continue;
                snprintf(path, sizeof(path), "/proc/%s/cmdline", e->d_name);
                fd = open(path, O_RDONLY | O_CLOEXEC);
                if (fd < 0)
                        continue;
                len = read(fd, buf, sizeof(buf) - 1);
                close(fd);
                if (len <= 0)
                        continue; /* kernel threads, zombies */
                for (ssize_t i = 0; i < len; i++)
                        if (buf[i] == '\0')
                                buf[i] = ' ';
                buf[len] = '\0';
                for (hit = strstr(buf, dir); hit; hit = strstr(hit + 1, dir))
                        if (hit[dlen] == '/' || hit[dlen] == ' ' || hit[dlen] == '\0')
                                break;
                if (!hit)
                        continue;
                n++;
                if (used + 1 < desc_size) {
                        int w = snprintf(desc + used, desc_size - used, "[%s] %.120s; ", e->d_name, buf);

                        if (w > 0)
                                used += (size_t) w < desc_size - used ? (size_t) w : desc_size - used - 1;
                }
        }
        closedir(d);
        return n;
}

static bool wait_procs_gone(const char *dir, int timeout_ms, char *desc, size_t desc_size) {
        long deadline = now_ms() + timeout_ms;

        for (;;) {
                if (procs_mentioning(dir, desc, desc_size) == 0)
                        return true;
                if (now_ms() > deadline)
                        return false;
                usleep(50 * 1000);
        }
}

static bool path_exists(const char *p) {
        struct stat st;

        return lstat(p, &st) == 0;
}

static int doveadm_fetch(const char *user, const char *mailbox, const char *fields, unsigned uid, char *out,
                         size_t size) {
        char uid_s[16];

        snprintf(uid_s, sizeof(uid_s), "%u", uid);
        return harness_doveadm(&h, out, size, "fetch", "-u", user, fields, "mailbox", mailbox, "uid", uid_s, NULL);
}

/* Number of messages in the mailbox, by doveadm search. */
static int doveadm_count(const char *user, const char *mailbox) {
        char out[8192];
        int r, n = 0;

        r = harness_doveadm(&h, out, sizeof(out), "search", "-u", user, "mailbox", mailbox, "all", NULL);
        if (r < 0)
                return r;
        for (char *p = out; *p; p++)
                if (*p == '\n')
                        n++;
        return n;
}

/* ---- tests --------------------------------------------------------------- */

START_TEST(test_start_settings) {
        char pw[16];

        ck_assert_str_eq(h.host, "localhost");
        ck_assert_int_gt(h.imap_port, 0);
        ck_assert_int_gt(h.imaps_port, 0);
        ck_assert_int_ne(h.imap_port, h.imaps_port);
        ck_assert_uint_eq(h.n_users, 4);
        ck_assert_str_eq(h.dbus_address, "");
        ck_assert_msg(h.ca_file[0] == '/' && access(h.ca_file, R_OK) == 0, "CA_FILE %s", h.ca_file);
        ck_assert_msg(strncmp(h.ca_file, h.dir, strlen(h.dir)) == 0, "CA %s outside %s", h.ca_file, h.dir);
        ck_assert_str_eq(harness_password(&h, "user3", pw, sizeof(pw)), "pass-user3");
        ck_assert_ptr_null(harness_password(&h, "user3", pw, 5));
}
END_TEST

START_TEST(test_plain_port_greets) {
        struct conn c;
        char line[4096];

        conn_open(&c, h.imap_port);
        ck_assert_int_ge(conn_read_line(&c, line, sizeof(line)), 0);
        ck_assert_msg(strncmp(line, "* OK ", 5) == 0, "greeting: %s", line);
        ck_assert_msg(strstr(line, " STARTTLS") != NULL, "no STARTTLS offered: %s", line);
        ck_assert_msg(strstr(line, "LOGINDISABLED") == NULL, "plaintext login disabled: %s", line);
        conn_write(&c, "Z LOGOUT\r\n");
        ck_assert(conn_expect(&c, "Z OK", line, sizeof(line), IO_TIMEOUT_MS));
        conn_close(&c);
}
END_TEST

START_TEST(test_implicit_tls_verifies) {
        struct conn c;
        char line[4096];
        long verify;
        X509 *ca;
        FILE *f;

        /* The CA is a CA. */
        f = fopen(h.ca_file, "r");
        ck_assert_ptr_nonnull(f);
        ca = PEM_read_X509(f, NULL, NULL, NULL);
        fclose(f);
        ck_assert_ptr_nonnull(ca);
        ck_assert_int_eq(X509_check_ca(ca), 1);
        X509_free(ca);

        /* The implicit-TLS port verifies for "localhost" and greets. */
        conn_open(&c, h.imaps_port);
        ck_assert_msg(conn_tls(&c, h.ca_file, h.host, &verify) == 1, "handshake: %s",
                      X509_verify_cert_error_string(verify));
        ck_assert_int_eq(verify, X509_V_OK);
        ck_assert_int_ge(conn_read_line(&c, line, sizeof(line)), 0);
        ck_assert_msg(strncmp(line, "* OK ", 5) == 0, "greeting: %s", line);
        ck_assert_msg(strstr(line, "STARTTLS") == NULL, "STARTTLS inside TLS: %s", line);
        conn_login(&c, "user1");
        conn_write(&c, "Z LOGOUT\r\n");
        ck_assert(conn_expect(&c, "Z OK", line, sizeof(line), IO_TIMEOUT_MS));
        conn_close(&c);

        /* The certificate also names 127.0.0.1. */
        conn_open(&c, h.imaps_port);
        {
                SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
                SSL *ssl;

                ck_assert_ptr_nonnull(ctx);
                SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
                ck_assert_int_eq(SSL_CTX_load_verify_locations(ctx, h.ca_file, NULL), 1);
                ssl = SSL_new(ctx);
                ck_assert_int_eq(X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), "127.0.0.1"), 1);
                ck_assert_int_eq(SSL_set_fd(ssl, c.fd), 1);
                ck_assert_msg(SSL_connect(ssl) == 1, "IP SAN: %s",
                              X509_verify_cert_error_string(SSL_get_verify_result(ssl)));
                c.ssl = ssl;
                c.ctx = ctx;
        }
        conn_close(&c);

        /* Verification is real: another name, or no trust anchor, fails. */
        conn_open(&c, h.imaps_port);
        ck_assert_int_ne(conn_tls(&c, h.ca_file, "imap.example.org", &verify), 1);
        ck_assert_int_eq(verify, X509_V_ERR_HOSTNAME_MISMATCH);
        conn_close(&c);

        conn_open(&c, h.imaps_port);
        ck_assert_int_ne(conn_tls(&c, NULL, h.host, &verify), 1);
        ck_assert_int_eq(verify, X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY);
        conn_close(&c);
}
END_TEST

START_TEST(test_starttls_verifies) {
        struct conn c;
        char line[4096];
        long verify;

        conn_open(&c, h.imap_port);
        ck_assert(conn_expect(&c, "* OK", line, sizeof(line), IO_TIMEOUT_MS));
        conn_write(&c, "S STARTTLS\r\n");
        ck_assert_msg(conn_expect(&c, "S ", line, sizeof(line), IO_TIMEOUT_MS), "no STARTTLS response");
        ck_assert_msg(strncmp(line, "S OK", 4) == 0, "STARTTLS: %s", line);
        ck_assert_msg(conn_tls(&c, h.ca_file, h.host, &verify) == 1, "handshake: %s",
                      X509_verify_cert_error_string(verify));
        ck_assert_int_eq(verify, X509_V_OK);
        conn_write(&c, "C CAPABILITY\r\n");
        ck_assert(conn_expect(&c, "* CAPABILITY ", line, sizeof(line), IO_TIMEOUT_MS));
        ck_assert_msg(strstr(line, "STARTTLS") == NULL, "STARTTLS still offered: %s", line);
        conn_login(&c, "user2");
        conn_close(&c);
}
END_TEST

START_TEST(test_plaintext_login_on_loopback) {
        struct conn c;
        char line[4096];
        long t0;

        conn_open(&c, h.imap_port);
        ck_assert(conn_expect(&c, "* OK", line, sizeof(line), IO_TIMEOUT_MS));
        /* No auth_failure_delay: a wrong password is answered at once. */
        t0 = now_ms();
        conn_write(&c, "A LOGIN user4 wrong\r\n");
        ck_assert(conn_expect(&c, "A ", line, sizeof(line), IO_TIMEOUT_MS));
        ck_assert_msg(strncmp(line, "A NO", 4) == 0, "wrong password: %s", line);
        ck_assert_int_lt(now_ms() - t0, 1500);
        conn_login(&c, "user4");
        conn_write(&c, "B CAPABILITY\r\n");
        ck_assert(conn_expect(&c, "* CAPABILITY ", line, sizeof(line), IO_TIMEOUT_MS));
        ck_assert_msg(strstr(line, " IDLE") && strstr(line, " NOTIFY") && strstr(line, " CONDSTORE") &&
                              strstr(line, " QRESYNC"),
                      "capabilities: %s", line);
        conn_close(&c);
}
END_TEST

START_TEST(test_delivered_mail_is_stored) {
        static const char raw[] = "From: Raw <raw@example.org>\r\n"
                                  "To: user1@localhost\r\n"
                                  "Subject: =?UTF-8?B?R3LDvMOfZQ==?=\r\n"
                                  "Message-ID: <raw-1@example.org>\r\n"
                                  "\r\n"
                                  "raw body\r\n";
        char out[8192];
        unsigned uid = 0;

        ck_assert_int_eq(harness_mail(&h, "user1", "INBOX", "Alice <alice@example.org>", "first", "hello", &uid),
                         0);
        ck_assert_uint_eq(uid, 1);
        ck_assert_int_eq(harness_deliver(&h, "user1", "INBOX", "Bob <bob@example.org>", "second"), 0);
        ck_assert_int_eq(harness_deliver_raw_uid(&h, "user1", "INBOX", raw, &uid), 0);
        ck_assert_uint_eq(uid, 3);
        ck_assert_int_eq(harness_deliver_raw(&h, "user2", "INBOX", raw), 0);

        ck_assert_int_eq(doveadm_count("user1", "INBOX"), 3);
        ck_assert_int_eq(doveadm_count("user2", "INBOX"), 1);
        ck_assert_int_eq(doveadm_count("user3", "INBOX"), 0);

        ck_assert_int_ge(doveadm_fetch("user1", "INBOX", "hdr.from hdr.subject body", 1, out, sizeof(out)), 0);
        ck_assert_msg(strstr(out, "Alice <alice@example.org>") && strstr(out, "first") && strstr(out, "hello"),
                      "uid 1: %s", out);
        ck_assert_int_ge(doveadm_fetch("user1", "INBOX", "hdr", 2, out, sizeof(out)), 0);
        ck_assert_msg(strstr(out, "Subject: second") && strstr(out, "Message-ID: <") &&
                              strstr(out, "Date: ") && strstr(out, "MIME-Version: 1.0") &&
                              strstr(out, "Content-Type: text/plain; charset=UTF-8"),
                      "uid 2 header: %s", out);
        ck_assert_int_ge(doveadm_fetch("user1", "INBOX", "hdr.subject", 3, out, sizeof(out)), 0);
        ck_assert_msg(strstr(out, "=?UTF-8?B?R3LDvMOfZQ==?="), "uid 3: %s", out);

        /* Unknown users and bad arguments fail. */
        ck_assert_int_eq(harness_deliver(&h, "nosuchuser", "INBOX", "a@b", "x"), -EIO);
        ck_assert_int_eq(harness_deliver(&h, "user1", "INBOX", "a@b", "two\r\nBcc: lines"), -EIO);
        ck_assert_int_eq(harness_flags(&h, "user1", "INBOX", 1, "toggle", "\\Seen"), -EINVAL);
}
END_TEST

START_TEST(test_flags_and_expunge_change_store) {
        char out[4096];

        ck_assert_int_eq(harness_deliver(&h, "user3", "INBOX", "a@example.org", "one"), 0);
        ck_assert_int_eq(harness_deliver(&h, "user3", "INBOX", "a@example.org", "two"), 0);

        ck_assert_int_eq(harness_flags(&h, "user3", "INBOX", 1, "add", "\\Seen \\Flagged"), 0);
        ck_assert_int_ge(doveadm_fetch("user3", "INBOX", "flags", 1, out, sizeof(out)), 0);
        ck_assert_msg(strstr(out, "\\Seen") && strstr(out, "\\Flagged"), "after add: %s", out);
        ck_assert_int_ge(doveadm_fetch("user3", "INBOX", "flags", 2, out, sizeof(out)), 0);
        ck_assert_msg(!strstr(out, "\\Seen"), "uid 2 touched: %s", out);

        ck_assert_int_eq(harness_flags(&h, "user3", "INBOX", 1, "remove", "\\Flagged"), 0);
        ck_assert_int_ge(doveadm_fetch("user3", "INBOX", "flags", 1, out, sizeof(out)), 0);
        ck_assert_msg(strstr(out, "\\Seen") && !strstr(out, "\\Flagged"), "after remove: %s", out);

        ck_assert_int_eq(harness_flags(&h, "user3", "INBOX", 1, "replace", "$Label1 \\Answered"), 0);
        ck_assert_int_ge(doveadm_fetch("user3", "INBOX", "flags", 1, out, sizeof(out)), 0);
        ck_assert_msg(strstr(out, "$Label1") && strstr(out, "\\Answered") && !strstr(out, "\\Seen"),
                      "after replace: %s", out);

        ck_assert_int_eq(harness_expunge(&h, "user3", "INBOX", 2), 0);
        ck_assert_int_eq(doveadm_count("user3", "INBOX"), 1);
        ck_assert_int_ge(harness_doveadm(&h, out, sizeof(out), "search", "-u", "user3", "mailbox", "INBOX", "all",
                                         NULL),
                         0);
        ck_assert_msg(strstr(out, " 1\n") && !strstr(out, " 2\n"), "left: %s", out);
}
END_TEST

START_TEST(test_mkbox_creates_mailbox) {
        static const char box[] = "Lists/Entw\xc3\xbc" "rfe & Ideen";
        char out[4096];
        unsigned uid = 0;

        ck_assert_int_eq(harness_mkbox(&h, "user2", "Lists/dev.announce"), 0);
        ck_assert_int_eq(harness_mkbox(&h, "user2", box), 0);
        ck_assert_int_ge(harness_doveadm(&h, out, sizeof(out), "mailbox", "list", "-u", "user2", NULL), 0);
        ck_assert_msg(strstr(out, "Lists/dev.announce\n") && strstr(out, "Lists/Entw\xc3\xbcrfe & Ideen\n"),
                      "mailboxes: %s", out);
        ck_assert_int_eq(doveadm_count("user2", box), 0);
        ck_assert_int_eq(harness_mkbox(&h, "user2", box), -EIO); /* exists */

        ck_assert_int_eq(harness_mail(&h, "user2", box, "x@example.org", "hi", NULL, &uid), 0);
        ck_assert_uint_eq(uid, 1);
        ck_assert_int_eq(doveadm_count("user2", box), 1);
        ck_assert_int_eq(doveadm_count("user2", "INBOX"), 0);
}
END_TEST

START_TEST(test_idle_sees_changes) {
        struct conn c;
        char line[4096];

        ck_assert_int_eq(harness_deliver(&h, "user1", "INBOX", "a@example.org", "before"), 0);
        conn_open(&c, h.imap_port);
        ck_assert(conn_expect(&c, "* OK", line, sizeof(line), IO_TIMEOUT_MS));
        conn_login(&c, "user1");
        conn_write(&c, "S SELECT INBOX\r\n");
        ck_assert(conn_expect(&c, "S OK", line, sizeof(line), IO_TIMEOUT_MS));
        conn_write(&c, "I IDLE\r\n");
        ck_assert(conn_expect(&c, "+ ", line, sizeof(line), IO_TIMEOUT_MS));

        ck_assert_int_eq(harness_deliver(&h, "user1", "INBOX", "b@example.org", "during IDLE"), 0);
        ck_assert_msg(conn_expect(&c, "* 2 EXISTS", line, sizeof(line), IO_TIMEOUT_MS), "no EXISTS: %s", line);

        ck_assert_int_eq(harness_flags(&h, "user1", "INBOX", 1, "add", "\\Seen"), 0);
        ck_assert_msg(conn_expect(&c, "* 1 FETCH ", line, sizeof(line), IO_TIMEOUT_MS), "no FETCH: %s", line);
        ck_assert_msg(strstr(line, "\\Seen") != NULL, "FETCH: %s", line);

        ck_assert_int_eq(harness_expunge(&h, "user1", "INBOX", 1), 0);
        ck_assert_msg(conn_expect(&c, "* 1 EXPUNGE", line, sizeof(line), IO_TIMEOUT_MS), "no EXPUNGE: %s", line);

        conn_write(&c, "DONE\r\n");
        ck_assert(conn_expect(&c, "I OK", line, sizeof(line), IO_TIMEOUT_MS));
        conn_close(&c);
}
END_TEST

START_TEST(test_stop_leaves_nothing) {
        struct harness s;
        char dir[PATH_MAX], desc[1024];

        memset(&s, 0, sizeof(s));
        harness_stop(&s); /* never started: harmless */

        ck_assert_int_ge(harness_start(&s, HARNESS_DBUS), 0);
        snprintf(dir, sizeof(dir), "%s", s.dir);
        ck_assert_int_ge(procs_mentioning(dir, NULL, 0), 3); /* master, its children, dbus-daemon */

        harness_stop(&s);
        ck_assert_str_eq(s.dir, "");
        ck_assert_msg(procs_mentioning(dir, desc, sizeof(desc)) == 0, "left running: %s", desc);
        ck_assert_msg(!path_exists(dir), "%s still exists", dir);
        harness_stop(&s); /* twice: harmless */
}
END_TEST

START_TEST(test_dbus_bus_answers) {
        struct harness s;
        struct sockaddr_un sun = { .sun_family = AF_UNIX };
        char dir[PATH_MAX], desc[1024], prefix[PATH_MAX + 16], auth[128], uid_hex[64], reply[256];
        const char *path, *end;
        char uid_s[32];
        ssize_t n;
        int fd;

        ck_assert_int_ge(harness_start(&s, HARNESS_DBUS), 0);
        snprintf(dir, sizeof(dir), "%s", s.dir);
        snprintf(prefix, sizeof(prefix), "unix:path=%s/", s.dir);
        ck_assert_msg(strncmp(s.dbus_address, prefix, strlen(prefix)) == 0, "address %s", s.dbus_address);

        path = s.dbus_address + strlen("unix:path=");
        end = strchr(path, ',');
        if (!end)
                end = path + strlen(path);
        ck_assert_uint_lt((size_t) (end - path), sizeof(sun.sun_path));
        memcpy(sun.sun_path, path, (size_t) (end - path));

        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        ck_assert_int_ge(fd, 0);
        ck_assert_msg(connect(fd, (struct sockaddr *) &sun, sizeof(sun)) == 0, "connect %s: %s", sun.sun_path,
                      strerror(errno));

        /* SASL EXTERNAL with our uid, hex-encoded as the D-Bus spec wants. */
        snprintf(uid_s, sizeof(uid_s), "%u", (unsigned) getuid());
        uid_hex[0] = '\0';
        for (size_t i = 0; uid_s[i]; i++)
                snprintf(uid_hex + 2 * i, sizeof(uid_hex) - 2 * i, "%02x", (unsigned char) uid_s[i]);
        n = snprintf(auth, sizeof(auth), "%cAUTH EXTERNAL %s\r\n", '\0', uid_hex);
        ck_assert_int_eq(write(fd, auth, (size_t) n), n);
        n = read(fd, reply, sizeof(reply) - 1);
        ck_assert_int_gt(n, 0);
        reply[n] = '\0';
        ck_assert_msg(strncmp(reply, "OK ", 3) == 0, "bus said: %s", reply);
        close(fd);

        harness_stop(&s);
        ck_assert_msg(procs_mentioning(dir, desc, sizeof(desc)) == 0, "left running: %s", desc);
}
END_TEST

/* The owner is killed with SIGKILL: the guard must stop everything. */
START_TEST(test_guard_cleans_up_after_killed_owner) {
        char dir[PATH_MAX] = "", desc[1024];
        int p[2];
        pid_t child;
        ssize_t n;
        int status;

        ck_assert_int_eq(pipe(p), 0);
        child = fork();
        ck_assert_int_ge(child, 0);
        if (child == 0) {
                struct harness s;

                close(p[0]);
                if (harness_start(&s, HARNESS_DBUS) < 0)
                        _exit(1);
                if (write(p[1], s.dir, strlen(s.dir)) < 0)
                        _exit(2);
                close(p[1]);
                for (;;)
                        pause();
        }
        close(p[1]);
        n = read(p[0], dir, sizeof(dir) - 1);
        close(p[0]);
        if (n <= 0) {
                waitpid(child, &status, 0);
                ck_abort_msg("child failed to start a harness");
        }
        dir[n] = '\0';
        ck_assert_int_ge(procs_mentioning(dir, NULL, 0), 3);

        ck_assert_int_eq(kill(child, SIGKILL), 0);
        ck_assert_int_eq(waitpid(child, &status, 0), child);

        /* the guard notices within about a second; stopping Dovecot (and
         * Xvfb, dunst) took over 5 s in a clean-clone run on a loaded
         * machine, so allow 20 */
        if (!wait_procs_gone(dir, 20000, desc, sizeof(desc))) {
                struct harness s;

                memset(&s, 0, sizeof(s));
                snprintf(s.dir, sizeof(s.dir), "%s", dir);
                harness_stop(&s);
                ck_abort_msg("20 s after the owner died, still running: %s", desc);
        }
        /* The guard removes the directory after stopping the servers. */
        for (long deadline = now_ms() + 2000; path_exists(dir) && now_ms() < deadline;)
                usleep(20 * 1000);
        ck_assert_msg(!path_exists(dir), "%s still exists", dir);
}
END_TEST

/* A failed start leaves nothing behind and a zeroed harness. */
START_TEST(test_failed_start_cleans_up) {
        struct harness s;
        char tmp[PATH_MAX], *old = getenv("TMPDIR");
        DIR *d;
        int r, entries = 0;

        /* Too long a path for Dovecot's sockets: harness.sh refuses it. */
        snprintf(tmp, sizeof(tmp), "/tmp/imapidled-harness-test-%ld-%s", (long) getpid(),
                 "padding-padding-padding-padding-padding-padding");
        ck_assert_int_eq(mkdir(tmp, 0755), 0);
        setenv("TMPDIR", tmp, 1);
        r = harness_start(&s, 0);
        if (old)
                setenv("TMPDIR", old, 1);
        else
                unsetenv("TMPDIR");
        ck_assert_int_eq(r, -EIO);
        ck_assert_str_eq(s.dir, "");
        ck_assert_int_eq(s.imap_port, 0);
        d = opendir(tmp);
        ck_assert_ptr_nonnull(d);
        for (struct dirent *e; (e = readdir(d));)
                if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
                        entries++;
        closedir(d);
        ck_assert_int_eq(entries, 0);
        ck_assert_int_eq(rmdir(tmp), 0);
        harness_stop(&s);
}
END_TEST

static Suite *harness_suite(void) {
        Suite *s = suite_create("harness");
        TCase *tc;

        tc = tcase_create("servers");
        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_set_timeout(tc, 60);
        tcase_add_test(tc, test_start_settings);
        tcase_add_test(tc, test_plain_port_greets);
        tcase_add_test(tc, test_implicit_tls_verifies);
        tcase_add_test(tc, test_starttls_verifies);
        tcase_add_test(tc, test_plaintext_login_on_loopback);
        tcase_add_test(tc, test_delivered_mail_is_stored);
        tcase_add_test(tc, test_flags_and_expunge_change_store);
        tcase_add_test(tc, test_mkbox_creates_mailbox);
        tcase_add_test(tc, test_idle_sees_changes);
        suite_add_tcase(s, tc);

        tc = tcase_create("lifecycle");
        tcase_set_timeout(tc, 60);
        tcase_add_test(tc, test_stop_leaves_nothing);
        tcase_add_test(tc, test_dbus_bus_answers);
        tcase_add_test(tc, test_guard_cleans_up_after_killed_owner);
        tcase_add_test(tc, test_failed_start_cleans_up);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        SRunner *sr = srunner_create(harness_suite());
        int failed;

        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
