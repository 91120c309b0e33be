/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * A scripted, byte-exact fake IMAP server for tests of quirks and hostile
 * input (Dovecot covers everything else). It listens on 127.0.0.1 (an
 * ephemeral port) and plays a script in its own thread, so the test's main
 * thread can run the client's sd-event loop meanwhile.
 *
 *     static const struct fake_step script[] = {
 *             FAKE_SEND_STR("* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] ready\r\n"),
 *             FAKE_EXPECT_LINE("%t AUTHENTICATE PLAIN *"),
 *             FAKE_SEND_STR("%t NO [AUTHENTICATIONFAILED] nope\r\n"),
 *             FAKE_STEP(FAKE_WAIT_EOF),
 *     };
 *     struct fake_server *f = fake_server_start(script, ELEMENTSOF(script));
 *     ... point the client at 127.0.0.1:fake_server_port(f), run the loop ...
 *     ck_assert_msg(fake_server_wait(f, 5000) == 0, "%s", fake_server_error(f));
 *     ck_assert(!strstr(fake_server_transcript(f), "hunter2"));
 *     fake_server_free(f);
 *
 * Steps run in order; the first failing step records an error, closes the
 * connection and ends the script (the thread then exits). After the last
 * step the thread keeps reading the open connection, if any, into the
 * transcript (without answering) until fake_server_free(): the client sees a
 * server that has gone quiet, not one that hung up.
 *
 * Connections: one at a time. A step that needs a connection while none is
 * open accepts one first (so a script may begin with FAKE_SEND), with the
 * default timeout; write FAKE_ACCEPT to make a reconnect explicit or to give
 * a timeout. FAKE_ACCEPT while a connection is open closes that one first.
 * FAKE_CLOSE, FAKE_RESET, FAKE_WAIT_EOF and FAKE_STALL do nothing when the
 * last connection has already ended (the client may be gone before the
 * script gets there); before the first connection they accept one too.
 *
 * Repeating scripts: a script with a FAKE_REPEAT step serves every
 * connection, one after the other, until fake_server_free(): FAKE_REPEAT
 * closes the connection and plays the script again from step 0 (whose first
 * step then accepts the next connection). In such a script a failing step
 * does not end it either: the error is kept (fake_server_error() keeps the
 * first), the connection is closed and the script starts again at step 0.
 * This is for hostile-server tests, where the client is expected to go away
 * in the middle of a step and to come back; fake_server_reached() tells how
 * far each connection got. fake_server_wait() on such a script returns
 * -ETIMEDOUT.
 *
 * Every blocking wait has a timeout: the step's msec, or
 * FAKE_SERVER_TIMEOUT_MS when that is 0. SIGPIPE is never raised
 * (MSG_NOSIGNAL). Set FAKE_SERVER_TRACE=1 in the environment to see the
 * exchange on stderr.
 *
 * Under Check's fork mode, start the server inside the test (or a checked
 * fixture), so that its thread lives in the process that runs the test.
 */

#include <stddef.h>

#define FAKE_SERVER_TIMEOUT_MS 10000

enum fake_op {
        /* data[0 .. len) to the client; "%t" becomes the last tag captured by
         * FAKE_EXPECT, "%%" a '%'. data NULL: len bytes of 'x' (for floods).
         * Fails if the client goes away or stops reading for msec. */
        FAKE_SEND,
        /* Reads one line up to CRLF (a bare LF does not end it) and matches it,
         * without the CRLF, against data: bytes compare exactly, except
         *   "%t"   a tag (1*<ASTRING-CHAR except "+">), remembered for FAKE_SEND
         *   "*"    as the LAST character of the pattern: the rest of the line,
         *          possibly empty; elsewhere a '*' is literal ("1:* (FLAGS)")
         *   "%*"   a literal '*' even at the end; "%%" a literal '%'
         * Fails on a mismatch (the error shows both lines), EOF, timeout or a
         * line over 1 MiB. */
        FAKE_EXPECT,
        FAKE_SLEEP,             /* msec; the client's bytes wait unread */
        FAKE_CLOSE,             /* shutdown(SHUT_WR), read what is already there, close */
        FAKE_RESET,             /* close with SO_LINGER 0: the client gets an RST */
        /* Reads (into the transcript) until the client closes; then closes. */
        FAKE_WAIT_EOF,
        FAKE_ACCEPT,            /* waits for the next connection */
        /* Sends data (or len 'x' when NULL, "%t" substituted) one byte at a
         * time, msec between bytes (0: 1 ms). Fails (-ECONNRESET) as soon as
         * the client goes away (shuts down or closes its side). */
        FAKE_DRIBBLE,
        /* Neither reads nor writes until the client goes away (shuts down or
         * closes its side), then closes. Fails if the client is still there
         * after msec. */
        FAKE_STALL,
        /* Sends data (a NUL-terminated pattern; NULL: "x") repeated until len
         * bytes are sent (len 0: no limit) or until the client goes away
         * (closes, resets or shuts down its side), which is not a failure: for
         * "the client must give up on this line" tests. Fails if the client
         * is still reading after msec (0: the default timeout) of flooding. */
        FAKE_FLOOD,
        /* Closes the connection (as FAKE_CLOSE) and starts the script again
         * at step 0 for the next connection; see "Repeating scripts". */
        FAKE_REPEAT,
};

struct fake_step {
        enum fake_op op;
        const char *data;       /* copied by fake_server_start() */
        size_t len;             /* 0: strlen(data); FAKE_FLOOD: total bytes */
        unsigned msec;          /* timeout, duration or interval, see enum fake_op */
};

#define FAKE_STEP(o)                    { .op = (o) }
#define FAKE_STEP_MS(o, ms)             { .op = (o), .msec = (ms) }
#define FAKE_SEND_STR(s)                { .op = FAKE_SEND, .data = (s) }
#define FAKE_SEND_BYTES(p, n)           { .op = FAKE_SEND, .data = (p), .len = (n) }
#define FAKE_SEND_FILL(n)               { .op = FAKE_SEND, .len = (n) }
#define FAKE_EXPECT_LINE(s)             { .op = FAKE_EXPECT, .data = (s) }
#define FAKE_EXPECT_LINE_MS(s, ms)      { .op = FAKE_EXPECT, .data = (s), .msec = (ms) }
#define FAKE_SLEEP_MS(ms)               { .op = FAKE_SLEEP, .msec = (ms) }
#define FAKE_DRIBBLE_STR(s, ms)         { .op = FAKE_DRIBBLE, .data = (s), .msec = (ms) }
#define FAKE_FLOOD_BYTES(n)             { .op = FAKE_FLOOD, .len = (n) }
#define FAKE_FLOOD_PATTERN(s, n, ms)    { .op = FAKE_FLOOD, .data = (s), .len = (n), .msec = (ms) }

struct fake_server;

/* Listens on 127.0.0.1:0 and starts the script in a new thread. The steps
 * and their data are copied: script may go away on return. Returns the
 * server, owned by the caller (fake_server_free()), or NULL with errno set
 * (EINVAL: an unknown op, an EXPECT without data, an empty FLOOD pattern). */
struct fake_server *fake_server_start(const struct fake_step *script, size_t n_steps);

/* The listening port, valid from fake_server_start() on. */
int fake_server_port(const struct fake_server *f);

/* Waits up to timeout_ms for the script to end. Returns 0 if every step
 * ran, the failing step's -errno (-EPROTO mismatch, -ETIMEDOUT, -ECONNRESET
 * the client went away, -EMSGSIZE line too long ...) or -ETIMEDOUT if the
 * script is still running, with fake_server_error() saying where. The
 * thread goes on either way; fake_server_free() stops it. */
int fake_server_wait(struct fake_server *f, unsigned timeout_ms);

/* The first error ("step 3 (EXPECT): expected \"...\", received \"...\"",
 * non-printable bytes escaped), "" if none. Borrowed: valid until
 * fake_server_free(); once set it does not change. */
const char *fake_server_error(struct fake_server *f);

/* Every byte received so far, on all connections, concatenated (a NUL byte
 * in it ends the C string early; see _len). A snapshot owned by f, valid
 * until the next call of fake_server_transcript() or fake_server_free(). */
const char *fake_server_transcript(struct fake_server *f);

/* The length of the snapshot last returned by fake_server_transcript(). */
size_t fake_server_transcript_len(const struct fake_server *f);

/* Connections accepted so far. */
unsigned fake_server_connections(struct fake_server *f);

/* How many times step has been started so far (over all connections of a
 * repeating script); 0 for a step out of range. */
unsigned fake_server_reached(struct fake_server *f, size_t step);

/* Stops the thread wherever it is (a pipe wakes its poll()), joins it and
 * closes every socket. Accepts NULL; returns NULL. */
struct fake_server *fake_server_free(struct fake_server *f);
