/* SPDX-License-Identifier: MIT */
/*
 * The scripted fake IMAP server, driven by a plain blocking socket client:
 * tag capture and substitution, wildcards, mismatches reported with both
 * lines, scripts across several connections, floods, dribbles, the client
 * going away, transcripts, timeouts, and SIGPIPE not killing the test.
 */

#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "fake-server.h"
#include "macro.h"

#define IO_TIMEOUT_MS 5000

static long now_ms(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

/* ---- a blocking client ------------------------------------------------------ */

static int client_connect(struct fake_server *f) {
        struct sockaddr_in sa = {
                .sin_family = AF_INET,
                .sin_port = htons((uint16_t) fake_server_port(f)),
                .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
        };
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

        ck_assert_int_ge(fd, 0);
        ck_assert_msg(connect(fd, (struct sockaddr *) &sa, sizeof(sa)) == 0, "connect: %m");
        return fd;
}

static void client_send(int fd, const char *s, size_t len) {
        while (len > 0) {
                ssize_t n = send(fd, s, len, MSG_NOSIGNAL);

                ck_assert_msg(n > 0, "send: %m");
                s += n;
                len -= (size_t) n;
        }
}

static void client_puts(int fd, const char *s) {
        client_send(fd, s, strlen(s));
}

/* One recv() after waiting up to timeout_ms: > 0 bytes, 0 EOF, -ETIMEDOUT, -errno. */
static ssize_t client_recv(int fd, char *buf, size_t n, int timeout_ms) {
        struct pollfd p = { .fd = fd, .events = POLLIN };
        ssize_t r;

        r = poll(&p, 1, timeout_ms);
        if (r < 0)
                return -errno;
        if (r == 0)
                return -ETIMEDOUT;
        r = recv(fd, buf, n, 0);
        return r < 0 ? -errno : r;
}

/* Reads exactly one line including CRLF (byte by byte: nothing is read
 * ahead) into a static buffer, which it returns without the CRLF. */
static const char *client_line(int fd) {
        static char line[4096];
        size_t len = 0;

        for (;;) {
                ssize_t n;

                ck_assert_uint_lt(len, sizeof(line) - 1);
                n = client_recv(fd, line + len, 1, IO_TIMEOUT_MS);
                ck_assert_msg(n == 1, "reading a line: %zd after \"%.*s\"", n, (int) len, line);
                len++;
                if (len >= 2 && line[len - 2] == '\r' && line[len - 1] == '\n')
                        break;
        }
        line[len - 2] = '\0';
        return line;
}

static void client_expect_line(int fd, const char *want) {
        ck_assert_str_eq(client_line(fd), want);
}

/* Expects the server to close the connection, with nothing more sent. */
static void client_expect_eof(int fd) {
        char c;
        ssize_t n = client_recv(fd, &c, 1, IO_TIMEOUT_MS);

        ck_assert_msg(n == 0, "expected EOF, got %zd ('%c')", n, n == 1 ? c : ' ');
}

static void expect_ok(struct fake_server *f) {
        int r = fake_server_wait(f, IO_TIMEOUT_MS);

        ck_assert_msg(r == 0, "fake server: %d %s", r, fake_server_error(f));
        ck_assert_str_eq(fake_server_error(f), "");
}

static void expect_error(struct fake_server *f, int want, const char *substr) {
        int r = fake_server_wait(f, IO_TIMEOUT_MS);

        ck_assert_msg(r == want, "fake server returned %d, expected %d: %s", r, want, fake_server_error(f));
        ck_assert_msg(strstr(fake_server_error(f), substr), "error \"%s\" lacks \"%s\"", fake_server_error(f),
                      substr);
}

#define START(script)                                                                   \
        ({                                                                              \
                struct fake_server *_f = fake_server_start(script, ELEMENTSOF(script)); \
                ck_assert_msg(_f, "fake_server_start: %m");                             \
                ck_assert_int_gt(fake_server_port(_f), 0);                              \
                _f;                                                                     \
        })

/* ---- tests -------------------------------------------------------------------- */

START_TEST(test_tag_capture) {
        static const struct fake_step script[] = {
                FAKE_SEND_STR("* OK ready\r\n"),        /* accepts implicitly */
                FAKE_EXPECT_LINE("%t CAPABILITY"),
                FAKE_SEND_STR("* CAPABILITY IMAP4rev1\r\n%t OK done\r\n"),
                FAKE_EXPECT_LINE("%t LOGOUT"),
                FAKE_SEND_STR("* BYE 100%% %%t\r\n%t OK bye\r\n"),
                FAKE_STEP(FAKE_CLOSE),
        };
        struct fake_server *f = START(script);
        int fd = client_connect(f);

        client_expect_line(fd, "* OK ready");
        client_puts(fd, "x17 CAPABILITY\r\n");
        client_expect_line(fd, "* CAPABILITY IMAP4rev1");
        client_expect_line(fd, "x17 OK done");
        /* every tag character RFC 9051 allows, ']' included */
        client_puts(fd, "A.b]9#&'!-_~ LOGOUT\r\n");
        client_expect_line(fd, "* BYE 100% %t");
        client_expect_line(fd, "A.b]9#&'!-_~ OK bye");
        client_expect_eof(fd);
        expect_ok(f);
        ck_assert_uint_eq(fake_server_connections(f), 1);
        close(fd);
        fake_server_free(f);
}
END_TEST

START_TEST(test_tag_chars) {
        /* '+' is not a tag character, nor are atom-specials */
        static const char *const bad[] = { "+a NOOP", "a+ NOOP", "a* NOOP", "a%b NOOP", "(a) NOOP", "a\"b NOOP",
                                           " NOOP", "a{1} NOOP" };

        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                static const struct fake_step script[] = { FAKE_EXPECT_LINE("%t NOOP") };
                struct fake_server *f = START(script);
                int fd = client_connect(f);
                char line[64];

                snprintf(line, sizeof(line), "%s\r\n", bad[i]);
                client_puts(fd, line);
                expect_error(f, -EPROTO, "expected \"%t NOOP\"");
                close(fd);
                fake_server_free(f);
        }
}
END_TEST

START_TEST(test_wildcard) {
        static const struct fake_step script[] = {
                FAKE_EXPECT_LINE("%t LOGIN *"),
                FAKE_EXPECT_LINE("%t UID FETCH 1:* (FLAGS)"),   /* '*' inside: literal */
                FAKE_EXPECT_LINE("%t SEARCH 5:%*"),             /* "%*": literal at the end */
                FAKE_EXPECT_LINE("%t NOOP*"),                   /* the rest may be empty */
                FAKE_EXPECT_LINE("*"),                          /* any line, even empty */
                FAKE_EXPECT_LINE("*"),
                FAKE_EXPECT_LINE("100%% %t"),
                FAKE_SEND_STR("%t OK\r\n"),
        };
        struct fake_server *f = START(script);
        int fd = client_connect(f);

        client_puts(fd, "a1 LOGIN \"user\" {6}\r\n");
        client_puts(fd, "a2 UID FETCH 1:* (FLAGS)\r\n");
        client_puts(fd, "a3 SEARCH 5:*\r\n");
        client_puts(fd, "a4 NOOP\r\n");
        client_puts(fd, "\r\n");
        client_puts(fd, "whatever * at all\r\n");
        client_puts(fd, "100% z9\r\n");
        client_expect_line(fd, "z9 OK");
        expect_ok(f);
        close(fd);
        fake_server_free(f);
}
END_TEST

START_TEST(test_wildcard_literal_star_mismatch) {
        static const struct fake_step script[] = { FAKE_EXPECT_LINE("%t UID FETCH 1:* (FLAGS)") };
        struct fake_server *f = START(script);
        int fd = client_connect(f);

        client_puts(fd, "a2 UID FETCH 1:5 (FLAGS)\r\n");
        expect_error(f, -EPROTO, "received \"a2 UID FETCH 1:5 (FLAGS)\"");
        close(fd);
        fake_server_free(f);
}
END_TEST

START_TEST(test_mismatch) {
        static const struct fake_step script[] = {
                FAKE_SEND_STR("* OK ready\r\n"),
                FAKE_EXPECT_LINE("%t NOOP"),
                FAKE_SEND_STR("%t OK never sent\r\n"),
        };
        struct fake_server *f = START(script);
        int fd = client_connect(f);

        client_expect_line(fd, "* OK ready");
        client_puts(fd, "a1 LOGOUT\r\n");
        expect_error(f, -EPROTO, "step 1 (EXPECT): expected \"%t NOOP\", received \"a1 LOGOUT\"");
        /* the script stopped and closed the connection */
        client_expect_eof(fd);
        close(fd);
        fake_server_free(f);
}
END_TEST

START_TEST(test_bare_lf_and_controls) {
        static const struct fake_step script[] = { FAKE_EXPECT_LINE("%t NOOP") };
        struct fake_server *f = START(script);
        int fd = client_connect(f);

        /* a bare LF does not end a line: the mismatch shows it, escaped */
        client_puts(fd, "a1 NOOP\na2 \"\\\x01\xff\r\n");
        expect_error(f, -EPROTO, "received \"a1 NOOP\\na2 \\\"\\\\\\x01\\xff\"");
        close(fd);
        fake_server_free(f);
}
END_TEST

START_TEST(test_multi_connection) {
        static const struct fake_step script[] = {
                FAKE_STEP(FAKE_ACCEPT),
                FAKE_SEND_STR("* OK one\r\n"),
                FAKE_STEP(FAKE_CLOSE),
                FAKE_STEP_MS(FAKE_ACCEPT, 3000),
                FAKE_SEND_STR("* OK two\r\n"),
                FAKE_EXPECT_LINE("%t LOGOUT"),
                FAKE_SEND_STR("%t OK\r\n"),
                FAKE_STEP(FAKE_WAIT_EOF),
                FAKE_STEP(FAKE_ACCEPT),
                FAKE_SEND_STR("* BYE three\r\n"),
                FAKE_STEP(FAKE_CLOSE),
        };
        struct fake_server *f = START(script);
        int fd;

        fd = client_connect(f);
        client_expect_line(fd, "* OK one");
        client_expect_eof(fd);
        close(fd);

        fd = client_connect(f);
        client_expect_line(fd, "* OK two");
        client_puts(fd, "b1 LOGOUT\r\n");
        client_expect_line(fd, "b1 OK");
        close(fd);

        fd = client_connect(f);
        client_expect_line(fd, "* BYE three");
        client_expect_eof(fd);
        close(fd);

        expect_ok(f);
        ck_assert_uint_eq(fake_server_connections(f), 3);
        ck_assert_str_eq(fake_server_transcript(f), "b1 LOGOUT\r\n");
        fake_server_free(f);
}
END_TEST

/* FAKE_REPEAT: every connection gets the script again; a client that goes
 * away mid-script (a failing step) does not end it either. */
START_TEST(test_repeat) {
        static const struct fake_step script[] = {
                FAKE_SEND_STR("* OK hello\r\n"),
                FAKE_EXPECT_LINE("%t NOOP"),
                FAKE_SEND_STR("%t OK\r\n"),
                FAKE_STEP(FAKE_REPEAT),
        };
        struct fake_server *f = START(script);
        long deadline;
        int fd;

        for (int i = 0; i < 3; i++) {
                char cmd[32], ok[32];

                fd = client_connect(f);
                client_expect_line(fd, "* OK hello");
                snprintf(cmd, sizeof(cmd), "c%d NOOP\r\n", i);
                snprintf(ok, sizeof(ok), "c%d OK", i);
                client_puts(fd, cmd);
                client_expect_line(fd, ok);
                client_expect_eof(fd);
                close(fd);
        }
        /* gone before the EXPECT: an error is kept, the next one is served */
        fd = client_connect(f);
        client_expect_line(fd, "* OK hello");
        close(fd);
        fd = client_connect(f);
        client_expect_line(fd, "* OK hello");
        client_puts(fd, "d1 NOOP\r\n");
        client_expect_line(fd, "d1 OK");
        close(fd);

        deadline = now_ms() + IO_TIMEOUT_MS;
        while (fake_server_reached(f, 0) < 6 && now_ms() < deadline)
                usleep(10 * 1000);
        ck_assert_uint_eq(fake_server_connections(f), 5);
        ck_assert_uint_eq(fake_server_reached(f, 2), 4);
        ck_assert_uint_eq(fake_server_reached(f, 3), 4);
        ck_assert_uint_eq(fake_server_reached(f, 0), 6);      /* waiting for the 6th */
        ck_assert_uint_eq(fake_server_reached(f, 99), 0);
        ck_assert_msg(strstr(fake_server_error(f), "step 1 (EXPECT)"), "%s", fake_server_error(f));
        ck_assert_int_eq(fake_server_wait(f, 10), -ETIMEDOUT);
        fake_server_free(f);
}
END_TEST

START_TEST(test_flood_1mb) {
        static const size_t size = 1024 * 1024;
        static const struct fake_step script[] = {
                FAKE_SEND_STR("* OK "),
                FAKE_SEND_FILL(1024 * 1024),
                FAKE_SEND_STR("\r\n"),
                FAKE_EXPECT_LINE("%t NOOP"),
                FAKE_SEND_STR("%t OK\r\n"),
        };
        struct fake_server *f = START(script);
        int fd = client_connect(f);
        size_t total = 0, xs = 0;
        char buf[65536];

        /* read slowly at first so that the server's sends must wait */
        usleep(200 * 1000);
        while (total < size + 7) {
                ssize_t n = client_recv(fd, buf, sizeof(buf), IO_TIMEOUT_MS);

                ck_assert_int_gt(n, 0);
                for (ssize_t i = 0; i < n; i++) {
                        size_t pos = total + (size_t) i;

                        if (pos < 5)
                                ck_assert_int_eq(buf[i], "* OK "[pos]);
                        else if (pos < size + 5)
                                xs += buf[i] == 'x';
                        else
                                ck_assert_int_eq(buf[i], "\r\n"[pos - size - 5]);
                }
                total += (size_t) n;
        }
        ck_assert_uint_eq(total, size + 7);
        ck_assert_uint_eq(xs, size);
        client_puts(fd, "n1 NOOP\r\n");
        client_expect_line(fd, "n1 OK");
        expect_ok(f);
        close(fd);
        fake_server_free(f);
}
END_TEST

START_TEST(test_flood_until_client_gives_up) {
        static const struct fake_step script[] = {
                FAKE_SEND_STR("* OK "),
                FAKE_FLOOD_BYTES(0),                    /* endless */
                FAKE_STEP(FAKE_WAIT_EOF),
        };
        struct fake_server *f = START(script);
        int fd = client_connect(f);
        size_t total = 0;
        char buf[16384];

        while (total < 200 * 1024) {
                ssize_t n = client_recv(fd, buf, sizeof(buf), IO_TIMEOUT_MS);

                ck_assert_int_gt(n, 0);
                total += (size_t) n;
        }
        close(fd);      /* with unread data: the server sees an RST */
        expect_ok(f);
        fake_server_free(f);
}
END_TEST

START_TEST(test_flood_pattern) {
        static const struct fake_step script[] = {
                FAKE_FLOOD_PATTERN("abc", 100001, 0),
                FAKE_SEND_STR("\r\n"),
        };
        struct fake_server *f = START(script);
        int fd = client_connect(f);
        size_t total = 0;
        char buf[8192];

        while (total < 100003) {
                ssize_t n = client_recv(fd, buf, sizeof(buf), IO_TIMEOUT_MS);

                ck_assert_int_gt(n, 0);
                for (ssize_t i = 0; i < n; i++, total++)
                        ck_assert_int_eq(buf[i], total < 100001 ? "abc"[total % 3] : "\r\n"[total - 100001]);
        }
        expect_ok(f);
        close(fd);
        fake_server_free(f);
}
END_TEST

START_TEST(test_flood_client_neither_reads_nor_closes) {
        static const struct fake_step script[] = { FAKE_FLOOD_PATTERN(NULL, 0, 300) };
        struct fake_server *f = START(script);
        int fd = client_connect(f);

        expect_error(f, -ETIMEDOUT, "neither read nor closed");
        close(fd);
        fake_server_free(f);
}
END_TEST

START_TEST(test_dribble) {
        static const struct fake_step script[] = {
                FAKE_EXPECT_LINE("%t NOOP"),
                FAKE_DRIBBLE_STR("%t OK hi\r\n", 20),
        };
        struct fake_server *f = START(script);
        int fd = client_connect(f);
        unsigned reads = 0;
        char buf[64];
        size_t len = 0;
        long t0;

        client_puts(fd, "d1 NOOP\r\n");
        t0 = now_ms();
        while (len < 10) {
                ssize_t n = client_recv(fd, buf + len, sizeof(buf) - len, IO_TIMEOUT_MS);

                ck_assert_int_gt(n, 0);
                len += (size_t) n;
                reads++;
        }
        ck_assert_mem_eq(buf, "d1 OK hi\r\n", 10);
        /* 10 bytes, 9 pauses of 20 ms */
        ck_assert_int_ge(now_ms() - t0, 150);
        ck_assert_uint_ge(reads, 5);
        expect_ok(f);
        close(fd);
        fake_server_free(f);
}
END_TEST

/* A client gone in the middle of a slow dribble is noticed at once. */
START_TEST(test_dribble_client_gone) {
        static const struct fake_step script[] = {
                FAKE_DRIBBLE_STR("* OK slow\r\n", 2000),
        };
        struct fake_server *f = START(script);
        int fd = client_connect(f);
        char c;
        long t0;

        ck_assert_int_eq(client_recv(fd, &c, 1, IO_TIMEOUT_MS), 1);
        close(fd);
        t0 = now_ms();
        expect_error(f, -ECONNRESET, "went away after 1 of 11 bytes");
        ck_assert_int_lt(now_ms() - t0, 1500);
        fake_server_free(f);
}
END_TEST

START_TEST(test_client_close_detected) {
        static const struct fake_step script[] = {
                FAKE_SEND_STR("* OK\r\n"),
                FAKE_STEP(FAKE_WAIT_EOF),
                FAKE_SEND_STR("* OK again\r\n"),
                FAKE_STEP(FAKE_STALL),
                FAKE_STEP(FAKE_CLOSE),                  /* nothing to close: no-op */
        };
        struct fake_server *f = START(script);
        int fd = client_connect(f);

        client_expect_line(fd, "* OK");
        client_puts(fd, "a1 LOGOUT\r\n");
        shutdown(fd, SHUT_WR);
        close(fd);

        fd = client_connect(f);
        client_expect_line(fd, "* OK again");
        client_puts(fd, "b1 NOOP\r\n");         /* not read by STALL, but still recorded */
        usleep(100 * 1000);
        close(fd);

        expect_ok(f);
        ck_assert_str_eq(fake_server_transcript(f), "a1 LOGOUT\r\nb1 NOOP\r\n");
        ck_assert_uint_eq(fake_server_connections(f), 2);
        fake_server_free(f);
}
END_TEST

START_TEST(test_client_close_during_expect) {
        static const struct fake_step script[] = { FAKE_EXPECT_LINE("%t NOOP") };
        struct fake_server *f = START(script);
        int fd = client_connect(f);

        client_puts(fd, "a1 NO");
        close(fd);
        expect_error(f, -ECONNRESET, "the client closed the connection (after \"a1 NO\")");
        fake_server_free(f);
}
END_TEST

START_TEST(test_stall_timeout) {
        static const struct fake_step script[] = { FAKE_STEP_MS(FAKE_STALL, 300) };
        struct fake_server *f = START(script);
        int fd = client_connect(f);

        expect_error(f, -ETIMEDOUT, "still connected after 300 ms");
        close(fd);
        fake_server_free(f);
}
END_TEST

START_TEST(test_reset) {
        static const struct fake_step script[] = {
                FAKE_SEND_STR("* OK\r\n"),
                FAKE_STEP(FAKE_RESET),
        };
        struct fake_server *f = START(script);
        int fd = client_connect(f);
        char buf[64];
        ssize_t n;

        expect_ok(f);
        /* the greeting may or may not survive the RST; the RST itself must show */
        do
                n = client_recv(fd, buf, sizeof(buf), IO_TIMEOUT_MS);
        while (n > 0);
        ck_assert_int_eq(n, -ECONNRESET);
        close(fd);
        fake_server_free(f);
}
END_TEST

START_TEST(test_sigpipe_does_not_kill) {
        static const struct fake_step script[] = {
                FAKE_SEND_STR("* OK\r\n"),
                FAKE_SEND_FILL(16 * 1024 * 1024),
        };
        struct fake_server *f = START(script);
        int fd = client_connect(f);

        client_expect_line(fd, "* OK");
        close(fd);
        expect_error(f, -ECONNRESET, "the client went away after");
        fake_server_free(f);
}
END_TEST

START_TEST(test_transcript) {
        static const char bin[] = "a2 APPEND x {3+}\r\n\0\001\377\r\n";
        static const struct fake_step script[] = {
                FAKE_EXPECT_LINE("%t LOGIN user *"),
                FAKE_SEND_STR("%t OK\r\n"),
                FAKE_EXPECT_LINE("%t APPEND x {3+}"),
                FAKE_EXPECT_LINE("*"),
        };
        struct fake_server *f = START(script);
        int fd = client_connect(f);
        const char *t;
        long t0;

        client_puts(fd, "a1 LOGIN us");
        usleep(50 * 1000);
        client_puts(fd, "er hunter2\r\n");
        client_expect_line(fd, "a1 OK");
        client_send(fd, bin, sizeof(bin) - 1);
        expect_ok(f);

        t = fake_server_transcript(f);
        ck_assert_uint_eq(fake_server_transcript_len(f), 23 + sizeof(bin) - 1);
        ck_assert_mem_eq(t, "a1 LOGIN user hunter2\r\n", 23);
        ck_assert_mem_eq(t + 23, bin, sizeof(bin) - 1);
        ck_assert_ptr_nonnull(strstr(t, "hunter2"));

        /* after the script: the server keeps reading, silently */
        client_puts(fd, "a3 LOGOUT\r\n");
        t0 = now_ms();
        for (;;) {
                t = fake_server_transcript(f);
                if (fake_server_transcript_len(f) == 23 + sizeof(bin) - 1 + 11)
                        break;
                ck_assert_int_lt(now_ms() - t0, IO_TIMEOUT_MS);
                usleep(10 * 1000);
        }
        ck_assert_mem_eq(t + 23 + sizeof(bin) - 1, "a3 LOGOUT\r\n", 11);
        {
                char c;

                ck_assert_int_eq(client_recv(fd, &c, 1, 200), -ETIMEDOUT);
        }
        close(fd);
        fake_server_free(f);
}
END_TEST

START_TEST(test_timeout_silent_client) {
        static const struct fake_step script[] = {
                FAKE_SEND_STR("* OK\r\n"),
                FAKE_EXPECT_LINE_MS("%t CAPABILITY", 300),
        };
        struct fake_server *f = START(script);
        int fd = client_connect(f);
        long t0 = now_ms();

        client_puts(fd, "a1 CAPA");
        expect_error(f, -ETIMEDOUT, "expected \"%t CAPABILITY\", nothing within 300 ms (received \"a1 CAPA\")");
        ck_assert_int_ge(now_ms() - t0, 250);
        ck_assert_int_lt(now_ms() - t0, 3000);
        close(fd);
        fake_server_free(f);
}
END_TEST

START_TEST(test_timeout_no_connection) {
        static const struct fake_step script[] = { FAKE_STEP_MS(FAKE_ACCEPT, 200) };
        struct fake_server *f = START(script);

        expect_error(f, -ETIMEDOUT, "step 0 (ACCEPT): no connection within 200 ms");
        ck_assert_uint_eq(fake_server_connections(f), 0);
        fake_server_free(f);
}
END_TEST

START_TEST(test_wait_timeout_and_prompt_free) {
        static const struct fake_step script[] = {
                FAKE_SEND_STR("* OK\r\n"),
                FAKE_EXPECT_LINE("%t NOOP"),            /* default timeout: 10 s */
        };
        struct fake_server *f = START(script);
        int fd = client_connect(f);
        long t0;

        ck_assert_int_eq(fake_server_wait(f, 200), -ETIMEDOUT);
        ck_assert_str_eq(fake_server_error(f), "step 1 (EXPECT): still running after 200 ms");
        t0 = now_ms();
        fake_server_free(f);
        ck_assert_int_lt(now_ms() - t0, 1000);
        close(fd);
}
END_TEST

START_TEST(test_send_tag_without_capture) {
        static const struct fake_step script[] = { FAKE_SEND_STR("%t OK\r\n") };
        struct fake_server *f = START(script);
        int fd = client_connect(f);

        expect_error(f, -EINVAL, "before any EXPECT captured a tag");
        close(fd);
        fake_server_free(f);
}
END_TEST

START_TEST(test_bad_scripts) {
        static const struct fake_step no_data[] = { FAKE_STEP(FAKE_EXPECT) };
        static const struct fake_step bad_op[] = { FAKE_STEP((enum fake_op) 99) };
        static const struct fake_step empty_pattern[] = { FAKE_FLOOD_PATTERN("", 10, 0) };

        errno = 0;
        ck_assert_ptr_null(fake_server_start(no_data, 1));
        ck_assert_int_eq(errno, EINVAL);
        ck_assert_ptr_null(fake_server_start(bad_op, 1));
        ck_assert_int_eq(errno, EINVAL);
        ck_assert_ptr_null(fake_server_start(empty_pattern, 1));
        ck_assert_int_eq(errno, EINVAL);

        /* an empty script is done at once */
        {
                struct fake_server *f = fake_server_start(NULL, 0);

                ck_assert_ptr_nonnull(f);
                ck_assert_int_eq(fake_server_wait(f, 1000), 0);
                ck_assert_str_eq(fake_server_transcript(f), "");
                fake_server_free(f);
        }
        ck_assert_ptr_null(fake_server_free(NULL));
}
END_TEST

static Suite *fake_server_suite(void) {
        Suite *s = suite_create("fake-server");
        TCase *tc = tcase_create("script");

        tcase_set_timeout(tc, 30);
        tcase_add_test(tc, test_tag_capture);
        tcase_add_test(tc, test_tag_chars);
        tcase_add_test(tc, test_wildcard);
        tcase_add_test(tc, test_wildcard_literal_star_mismatch);
        tcase_add_test(tc, test_mismatch);
        tcase_add_test(tc, test_bare_lf_and_controls);
        tcase_add_test(tc, test_multi_connection);
        tcase_add_test(tc, test_repeat);
        tcase_add_test(tc, test_transcript);
        tcase_add_test(tc, test_send_tag_without_capture);
        tcase_add_test(tc, test_bad_scripts);
        suite_add_tcase(s, tc);

        tc = tcase_create("streams");
        tcase_set_timeout(tc, 30);
        tcase_add_test(tc, test_flood_1mb);
        tcase_add_test(tc, test_flood_until_client_gives_up);
        tcase_add_test(tc, test_flood_pattern);
        tcase_add_test(tc, test_flood_client_neither_reads_nor_closes);
        tcase_add_test(tc, test_dribble);
        tcase_add_test(tc, test_dribble_client_gone);
        tcase_add_test(tc, test_sigpipe_does_not_kill);
        suite_add_tcase(s, tc);

        tc = tcase_create("lifecycle");
        tcase_set_timeout(tc, 30);
        tcase_add_test(tc, test_client_close_detected);
        tcase_add_test(tc, test_client_close_during_expect);
        tcase_add_test(tc, test_stall_timeout);
        tcase_add_test(tc, test_reset);
        tcase_add_test(tc, test_timeout_silent_client);
        tcase_add_test(tc, test_timeout_no_connection);
        tcase_add_test(tc, test_wait_timeout_and_prompt_free);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        SRunner *sr = srunner_create(fake_server_suite());
        int failed;

        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
