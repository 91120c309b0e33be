/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * A small blocking IMAP client for tests and the demo: one connection, TLS
 * through OpenSSL with full verification, the project's parser and writer on
 * top. It is deliberately simple (poll with a timeout, no event loop); the
 * daemon's own transport is the non-blocking one in src/.
 */

#include <stdbool.h>
#include <openssl/ssl.h>

#include "imap-parser.h"
#include "imap-writer.h"

enum test_tls {
        TEST_TLS_IMPLICIT,
        TEST_TLS_STARTTLS,
        TEST_TLS_NONE,
};

struct test_client {
        int fd;
        SSL_CTX *ctx;
        SSL *ssl;
        struct imap_parser *parser;
        struct imap_writer writer;
        char buf[16384];
        size_t buf_len, buf_off;
        bool trace;                     /* print the exchange on stderr (secrets redacted) */
        char caps[2048];
        char error[512];
};

/* Called for every untagged response while a command runs. */
typedef void (*test_untagged_fn)(const struct imap_response *r, void *userdata);

/* Connects to host:port and reads the greeting. verify_name is the name the
 * certificate must carry (NULL: host). ca_file NULL: the system store.
 * Returns 0 or -errno with c->error set. */
int test_client_connect(struct test_client *c, const char *host, int port, enum test_tls tls,
                        const char *ca_file, const char *verify_name);

void test_client_close(struct test_client *c);

/* Reads the next response, waiting at most timeout_ms. The response stays
 * valid until the next read. Returns 1, -ETIMEDOUT, -ECONNRESET or -errno. */
int test_client_read(struct test_client *c, int timeout_ms, const struct imap_response **ret);

/* Sends a finished command, honouring synchronizing literals. */
int test_client_send(struct test_client *c, const struct imap_command *cmd);

/* Sends cmd and reads until its tagged response; untagged ones go to fn.
 * Returns the tagged response's type (IMAP_RESP_OK/NO/BAD) or -errno. The
 * tagged response text is copied into c->error when not OK. */
int test_client_run(struct test_client *c, struct imap_command *cmd, int timeout_ms,
                    test_untagged_fn fn, void *userdata);

/* Convenience: "VERB" with raw arguments appended (must not need quoting). */
int test_client_simple(struct test_client *c, const char *verb, const char *raw_args, int timeout_ms,
                       test_untagged_fn fn, void *userdata);

int test_client_login(struct test_client *c, const char *user, const char *password);

/* Sends raw bytes (e.g. "DONE\r\n"). */
int test_client_write(struct test_client *c, const char *data, size_t len);

/* The capability list from the last CAPABILITY response or code, space separated. */
const char *test_client_capabilities(const struct test_client *c);
