/* SPDX-License-Identifier: MIT */

#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdarg.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "test-client.h"

__attribute__((format(printf, 3, 4)))
static int fail(struct test_client *c, int r, const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(c->error, sizeof(c->error), fmt, ap);
        va_end(ap);
        return r;
}

static void remember_caps(struct test_client *c, const struct imap_strv *sv) {
        size_t off = 0;

        c->caps[0] = '\0';
        for (size_t i = 0; i < sv->n; i++) {
                int n = snprintf(c->caps + off, sizeof(c->caps) - off, "%s%s", i ? " " : "", sv->v[i]);
                if (n < 0 || (size_t) n >= sizeof(c->caps) - off)
                        break;
                off += (size_t) n;
        }
}

const char *test_client_capabilities(const struct test_client *c) {
        return c->caps;
}

static int wait_fd(struct test_client *c, short events, int timeout_ms) {
        struct pollfd pfd = { .fd = c->fd, .events = events };
        int r;

        do
                r = poll(&pfd, 1, timeout_ms);
        while (r < 0 && errno == EINTR);
        if (r < 0)
                return -errno;
        if (r == 0)
                return -ETIMEDOUT;
        return 0;
}

static int fill(struct test_client *c, int timeout_ms) {
        ssize_t n;
        int r;

        c->buf_off = c->buf_len = 0;
        for (;;) {
                if (c->ssl) {
                        /* pending TLS records first: poll() cannot see them */
                        if (SSL_pending(c->ssl) == 0) {
                                r = wait_fd(c, POLLIN, timeout_ms);
                                if (r < 0)
                                        return r;
                        }
                        int k = SSL_read(c->ssl, c->buf, sizeof(c->buf));
                        if (k > 0) {
                                c->buf_len = (size_t) k;
                                return 0;
                        }
                        int e = SSL_get_error(c->ssl, k);
                        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
                                continue;
                        if (e == SSL_ERROR_ZERO_RETURN)
                                return -ECONNRESET;
                        return fail(c, -EIO, "TLS read failed: %s", ERR_reason_error_string(ERR_get_error()));
                }
                r = wait_fd(c, POLLIN, timeout_ms);
                if (r < 0)
                        return r;
                n = read(c->fd, c->buf, sizeof(c->buf));
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return -errno;
                if (n == 0)
                        return -ECONNRESET;
                c->buf_len = (size_t) n;
                return 0;
        }
}

int test_client_read(struct test_client *c, int timeout_ms, const struct imap_response **ret) {
        int r;

        for (;;) {
                if (c->buf_off < c->buf_len) {
                        size_t used;

                        r = imap_parser_feed(c->parser, c->buf + c->buf_off, c->buf_len - c->buf_off, &used, ret);
                        c->buf_off += used;
                        if (r < 0)
                                return fail(c, r, "parse error: %s", imap_parser_error(c->parser));
                        if (r > 0) {
                                const struct imap_response *resp = *ret;

                                if (resp->type == IMAP_RESP_CAPABILITY)
                                        remember_caps(c, &resp->atoms);
                                else if (resp->kind != IMAP_RESP_KIND_CONTINUATION &&
                                         (resp->type == IMAP_RESP_OK || resp->type == IMAP_RESP_PREAUTH) &&
                                         resp->status.code.type == IMAP_CODE_CAPABILITY)
                                        remember_caps(c, &resp->status.code.atoms);
                                if (c->trace)
                                        fprintf(stderr, "S: %s %s%s\n",
                                                resp->tag ? resp->tag : resp->kind == IMAP_RESP_KIND_CONTINUATION ? "+" : "*",
                                                resp->keyword ? resp->keyword : "",
                                                resp->number ? " (numbered)" : "");
                                return 1;
                        }
                }
                r = fill(c, timeout_ms);
                if (r < 0)
                        return r;
        }
}

int test_client_write(struct test_client *c, const char *data, size_t len) {
        size_t off = 0;

        while (off < len) {
                if (c->ssl) {
                        int k = SSL_write(c->ssl, data + off, (int) (len - off));
                        if (k <= 0) {
                                int e = SSL_get_error(c->ssl, k);
                                if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ)
                                        continue;
                                return fail(c, -EIO, "TLS write failed");
                        }
                        off += (size_t) k;
                } else {
                        ssize_t n = write(c->fd, data + off, len - off);
                        if (n < 0 && errno == EINTR)
                                continue;
                        if (n < 0)
                                return -errno;
                        off += (size_t) n;
                }
        }
        return 0;
}

int test_client_send(struct test_client *c, const struct imap_command *cmd) {
        size_t off = 0;
        int r;

        if (c->trace) {
                char *t = NULL;
                if (imap_command_trace(cmd, &t) >= 0)
                        fprintf(stderr, "C: %s\n", t);
                free(t);
        }
        for (unsigned i = 0; i <= cmd->n_sync; i++) {
                size_t end = i < cmd->n_sync ? cmd->sync[i] : cmd->len;

                r = test_client_write(c, cmd->data + off, end - off);
                if (r < 0)
                        return r;
                off = end;
                if (i < cmd->n_sync) {
                        const struct imap_response *resp;

                        r = test_client_read(c, 10000, &resp);
                        if (r < 0)
                                return r;
                        if (resp->kind != IMAP_RESP_KIND_CONTINUATION)
                                return fail(c, -EPROTO, "expected a continuation for a literal");
                }
        }
        return 0;
}

int test_client_run(struct test_client *c, struct imap_command *cmd, int timeout_ms,
                    test_untagged_fn fn, void *userdata) {
        const struct imap_response *resp;
        int r;

        r = imap_command_end(cmd);
        if (r < 0)
                return fail(c, r, "cannot build command");
        r = test_client_send(c, cmd);
        if (r < 0)
                return r;
        for (;;) {
                r = test_client_read(c, timeout_ms, &resp);
                if (r < 0)
                        return r;
                if (resp->kind == IMAP_RESP_KIND_TAGGED && strcmp(resp->tag, cmd->tag) == 0) {
                        if (resp->type != IMAP_RESP_OK)
                                snprintf(c->error, sizeof(c->error), "%s %s", resp->keyword, resp->status.text);
                        return resp->type;
                }
                if (fn)
                        fn(resp, userdata);
        }
}

int test_client_simple(struct test_client *c, const char *verb, const char *raw_args, int timeout_ms,
                       test_untagged_fn fn, void *userdata) {
        struct imap_command cmd;
        int r;

        imap_command_begin(&c->writer, &cmd, verb);
        if (raw_args)
                imap_command_raw(&cmd, raw_args);
        r = test_client_run(c, &cmd, timeout_ms, fn, userdata);
        imap_command_done(&cmd);
        return r;
}

int test_client_login(struct test_client *c, const char *user, const char *password) {
        struct imap_command cmd;
        int r;

        imap_command_begin(&c->writer, &cmd, "LOGIN");
        imap_command_astring(&c->writer, &cmd, user, strlen(user));
        imap_command_secret(&c->writer, &cmd, password, strlen(password));
        r = test_client_run(c, &cmd, 10000, NULL, NULL);
        imap_command_done(&cmd);
        return r;
}

static int tls_start(struct test_client *c, const char *ca_file, const char *verify_name) {
        int r;

        c->ctx = SSL_CTX_new(TLS_client_method());
        if (!c->ctx)
                return fail(c, -ENOMEM, "SSL_CTX_new failed");
        SSL_CTX_set_min_proto_version(c->ctx, TLS1_2_VERSION);
        SSL_CTX_set_verify(c->ctx, SSL_VERIFY_PEER, NULL);
        if (ca_file) {
                if (SSL_CTX_load_verify_locations(c->ctx, ca_file, NULL) != 1)
                        return fail(c, -EINVAL, "cannot load CA file %s", ca_file);
        } else if (SSL_CTX_set_default_verify_paths(c->ctx) != 1)
                return fail(c, -EINVAL, "cannot load the system trust store");

        c->ssl = SSL_new(c->ctx);
        if (!c->ssl)
                return fail(c, -ENOMEM, "SSL_new failed");
        SSL_set_fd(c->ssl, c->fd);
        SSL_set_tlsext_host_name(c->ssl, verify_name);
        if (SSL_set1_host(c->ssl, verify_name) != 1)
                return fail(c, -EINVAL, "cannot set the host name to verify");

        r = SSL_connect(c->ssl);
        if (r != 1) {
                long v = SSL_get_verify_result(c->ssl);
                unsigned long e = ERR_get_error();

                return fail(c, -EPERM, "TLS handshake failed: %s%s%s",
                            v != X509_V_OK ? X509_verify_cert_error_string(v) : "",
                            v != X509_V_OK ? "; " : "", e ? ERR_reason_error_string(e) : "no detail");
        }
        return 0;
}

static int read_greeting(struct test_client *c) {
        const struct imap_response *resp;
        int r;

        r = test_client_read(c, 10000, &resp);
        if (r < 0)
                return fail(c, r, "no greeting: %s", c->error[0] ? c->error : strerror(-r));
        if (resp->kind != IMAP_RESP_KIND_UNTAGGED ||
            (resp->type != IMAP_RESP_OK && resp->type != IMAP_RESP_PREAUTH))
                return fail(c, -EPROTO, "unexpected greeting");
        return 0;
}

int test_client_connect(struct test_client *c, const char *host, int port, enum test_tls tls,
                        const char *ca_file, const char *verify_name) {
        struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *ai = NULL;
        char portstr[16];
        int r;

        *c = (struct test_client) { .fd = -1 };
        imap_writer_init(&c->writer);
        c->trace = getenv("IMAPIDLED_TEST_TRACE") != NULL;
        c->parser = imap_parser_new(NULL);
        if (!c->parser)
                return fail(c, -ENOMEM, "out of memory");
        if (!verify_name)
                verify_name = host;

        snprintf(portstr, sizeof(portstr), "%d", port);
        r = getaddrinfo(host, portstr, &hints, &ai);
        if (r != 0)
                return fail(c, -EHOSTUNREACH, "cannot resolve %s: %s", host, gai_strerror(r));
        for (struct addrinfo *a = ai; a; a = a->ai_next) {
                c->fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
                if (c->fd < 0)
                        continue;
                if (connect(c->fd, a->ai_addr, a->ai_addrlen) == 0)
                        break;
                close(c->fd);
                c->fd = -1;
        }
        freeaddrinfo(ai);
        if (c->fd < 0)
                return fail(c, -ECONNREFUSED, "cannot connect to %s:%d", host, port);

        if (tls == TEST_TLS_IMPLICIT) {
                r = tls_start(c, ca_file, verify_name);
                if (r < 0)
                        return r;
                return read_greeting(c);
        }

        r = read_greeting(c);
        if (r < 0 || tls == TEST_TLS_NONE)
                return r;

        /* STARTTLS is mandatory here: no capability, no connection. */
        if (!strstr(c->caps, "STARTTLS")) {
                r = test_client_simple(c, "CAPABILITY", NULL, 10000, NULL, NULL);
                if (r < 0)
                        return r;
                if (!strstr(c->caps, "STARTTLS"))
                        return fail(c, -EPROTONOSUPPORT, "server does not offer STARTTLS");
        }
        r = test_client_simple(c, "STARTTLS", NULL, 10000, NULL, NULL);
        if (r != IMAP_RESP_OK)
                return fail(c, -EPROTO, "STARTTLS refused");
        /* Anything the server sent after the OK, before the handshake, could
         * have been injected by an attacker: drop it (RFC 9051 §11.1). */
        c->buf_off = c->buf_len = 0;
        imap_parser_free(c->parser);
        c->parser = imap_parser_new(NULL);
        c->caps[0] = '\0';
        r = tls_start(c, ca_file, verify_name);
        if (r < 0)
                return r;
        /* capabilities must be read again after the handshake */
        r = test_client_simple(c, "CAPABILITY", NULL, 10000, NULL, NULL);
        return r == IMAP_RESP_OK ? 0 : fail(c, -EPROTO, "CAPABILITY after STARTTLS failed");
}

void test_client_close(struct test_client *c) {
        if (c->ssl) {
                SSL_shutdown(c->ssl);
                SSL_free(c->ssl);
        }
        SSL_CTX_free(c->ctx);
        if (c->fd >= 0)
                close(c->fd);
        imap_parser_free(c->parser);
        c->ssl = NULL;
        c->ctx = NULL;
        c->fd = -1;
        c->parser = NULL;
}
