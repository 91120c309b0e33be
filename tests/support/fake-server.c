/* SPDX-License-Identifier: MIT */

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "fake-server.h"
#include "macro.h"

#define LINE_MAX_BYTES (1024 * 1024)            /* FAKE_EXPECT: longest client line */
#define IN_MAX_BYTES (LINE_MAX_BYTES + 4096)    /* what is read ahead of the script */
#define TRANSCRIPT_MAX (64 * 1024 * 1024)
#define CHUNK 65536

static const char *const op_names[] = {
        [FAKE_SEND] = "SEND",     [FAKE_EXPECT] = "EXPECT",   [FAKE_SLEEP] = "SLEEP",
        [FAKE_CLOSE] = "CLOSE",   [FAKE_RESET] = "RESET",     [FAKE_WAIT_EOF] = "WAIT_EOF",
        [FAKE_ACCEPT] = "ACCEPT", [FAKE_DRIBBLE] = "DRIBBLE", [FAKE_STALL] = "STALL",
        [FAKE_FLOOD] = "FLOOD",   [FAKE_REPEAT] = "REPEAT",
};

struct fake_server {
        struct fake_step *steps;        /* data copied, owned */
        size_t n_steps;
        bool repeat;                    /* the script has a FAKE_REPEAT step */
        int listen_fd;
        int stop_pipe[2];
        int port;
        bool trace;
        pthread_t thread;
        bool thread_running;

        /* Shared with the test's thread, under lock. */
        pthread_mutex_t lock;
        pthread_cond_t cond;
        bool done;
        int result;
        size_t step;                    /* the step running, for messages */
        unsigned connections;
        unsigned *reached;              /* per step: times started */
        char error[2048];
        char *transcript;
        size_t transcript_len, transcript_cap;

        /* The test's thread only. */
        char *snapshot;
        size_t snapshot_len;

        /* The server thread only. */
        int conn_fd;
        bool conn_eof;                  /* the client's side is closed */
        bool conn_closed;               /* a connection was open and has been closed */
        char *in;                       /* received, not consumed by the script yet */
        size_t in_len, in_cap;
        char tag[1024];
        bool have_tag;
};

static int64_t now_ms(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static unsigned timeout_of(const struct fake_step *s) {
        return s->msec > 0 ? s->msec : FAKE_SERVER_TIMEOUT_MS;
}

/* Printable form of bytes for messages: C escapes, cut at max input bytes. */
static void escape(const char *s, size_t len, size_t max, char *buf, size_t n) {
        size_t o = 0;

        for (size_t i = 0; i < len && o + 8 < n; i++) {
                unsigned char c = (unsigned char) s[i];

                if (i == max) {
                        o += (size_t) snprintf(buf + o, n - o, "...(%zu bytes)", len);
                        break;
                }
                if (c == '\r')
                        o += (size_t) snprintf(buf + o, n - o, "\\r");
                else if (c == '\n')
                        o += (size_t) snprintf(buf + o, n - o, "\\n");
                else if (c == '"' || c == '\\')
                        o += (size_t) snprintf(buf + o, n - o, "\\%c", c);
                else if (c < 0x20 || c >= 0x7f)
                        o += (size_t) snprintf(buf + o, n - o, "\\x%02x", c);
                else
                        buf[o++] = (char) c;
        }
        buf[o < n ? o : n - 1] = '\0';
}

static void trace(struct fake_server *f, const char *dir, const char *s, size_t len) {
        char buf[1024];

        if (!f->trace)
                return;
        escape(s, len, 300, buf, sizeof(buf));
        fprintf(stderr, "fake-server:%d %s %s\n", f->port, dir, buf);
}

static void set_error(struct fake_server *f, const char *fmt, ...) _attribute_printf_(2, 3);
static void set_error(struct fake_server *f, const char *fmt, ...) {
        va_list ap;

        pthread_mutex_lock(&f->lock);
        if (f->error[0] == '\0') {
                va_start(ap, fmt);
                vsnprintf(f->error, sizeof(f->error), fmt, ap);
                va_end(ap);
        }
        pthread_mutex_unlock(&f->lock);
}

/* Records the first failure of step i; returns r. */
static int fail(struct fake_server *f, size_t i, int r, const char *fmt, ...) _attribute_printf_(4, 5);
static int fail(struct fake_server *f, size_t i, int r, const char *fmt, ...) {
        char msg[1800];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        set_error(f, "step %zu (%s): %s", i, op_names[f->steps[i].op], msg);
        if (f->trace)
                fprintf(stderr, "fake-server:%d step %zu failed: %s\n", f->port, i, msg);
        return r;
}

static void append_transcript(struct fake_server *f, const char *s, size_t n) {
        pthread_mutex_lock(&f->lock);
        if (f->transcript_len + n > TRANSCRIPT_MAX)
                n = TRANSCRIPT_MAX - f->transcript_len;
        if (f->transcript_len + n + 1 > f->transcript_cap) {
                size_t cap = f->transcript_cap ? f->transcript_cap : 4096;
                char *t;

                while (cap < f->transcript_len + n + 1)
                        cap *= 2;
                t = realloc(f->transcript, cap);
                if (!t) {
                        pthread_mutex_unlock(&f->lock);
                        return;
                }
                f->transcript = t;
                f->transcript_cap = cap;
        }
        memcpy(f->transcript + f->transcript_len, s, n);
        f->transcript_len += n;
        f->transcript[f->transcript_len] = '\0';
        pthread_mutex_unlock(&f->lock);
}

/* ---- waiting --------------------------------------------------------------- */

/* Polls fd for events (fd < 0: only the stop pipe) until deadline (ms on the
 * monotonic clock; -1: none). Returns the revents (> 0), -ETIMEDOUT,
 * -ECANCELED when fake_server_free() asks the thread to stop, or -errno. */
static int wait_fd(struct fake_server *f, int fd, short events, int64_t deadline) {
        for (;;) {
                struct pollfd p[2] = {
                        { .fd = f->stop_pipe[0], .events = POLLIN },
                        { .fd = fd, .events = events },
                };
                int timeout = -1, r;

                if (deadline >= 0) {
                        int64_t left = deadline - now_ms();

                        timeout = left > 0 ? (int) (left < INT32_MAX ? left : INT32_MAX) : 0;
                }
                r = poll(p, fd >= 0 ? 2 : 1, timeout);
                if (r < 0 && errno == EINTR)
                        continue;
                if (r < 0)
                        return -errno;
                if (p[0].revents)
                        return -ECANCELED;
                if (r == 0)
                        return -ETIMEDOUT;
                if (p[1].revents)
                        return p[1].revents;
        }
}

static void close_conn(struct fake_server *f) {
        if (f->conn_fd >= 0) {
                close(f->conn_fd);
                f->conn_closed = true;
        }
        f->conn_fd = -1;
        f->conn_eof = false;
        f->in_len = 0;
}

/* Reads what is there into f->in (when keep) and the transcript. Returns the
 * number of bytes, 0 at EOF (also after an RST), -EAGAIN, -ENOBUFS when
 * f->in is full, or -errno. */
static int read_some(struct fake_server *f, bool keep) {
        char buf[CHUNK];
        size_t room = sizeof(buf);
        ssize_t n;

        if (keep) {
                if (f->in_len >= IN_MAX_BYTES)
                        return -ENOBUFS;
                if (room > IN_MAX_BYTES - f->in_len)
                        room = IN_MAX_BYTES - f->in_len;
        }
        n = recv(f->conn_fd, buf, room, MSG_DONTWAIT);
        if (n < 0 && (errno == ECONNRESET || errno == EPIPE))
                n = 0;
        if (n < 0)
                return errno == EWOULDBLOCK ? -EAGAIN : -errno;
        if (n == 0) {
                f->conn_eof = true;
                return 0;
        }
        trace(f, "C:", buf, (size_t) n);
        append_transcript(f, buf, (size_t) n);
        if (keep) {
                if (f->in_len + (size_t) n > f->in_cap) {
                        size_t cap = f->in_cap ? f->in_cap : 4096;
                        char *p;

                        while (cap < f->in_len + (size_t) n)
                                cap *= 2;
                        p = realloc(f->in, cap);
                        if (!p)
                                return -ENOMEM;
                        f->in = p;
                        f->in_cap = cap;
                }
                memcpy(f->in + f->in_len, buf, (size_t) n);
                f->in_len += (size_t) n;
        }
        return (int) n;
}

static int do_accept(struct fake_server *f, size_t i, unsigned timeout_ms) {
        int r, fd;

        close_conn(f);
        r = wait_fd(f, f->listen_fd, POLLIN, now_ms() + timeout_ms);
        if (r == -ETIMEDOUT)
                return fail(f, i, r, "no connection within %u ms", timeout_ms);
        if (r < 0)
                return fail(f, i, r, "waiting for a connection: %s", strerror(-r));
        fd = accept4(f->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd < 0)
                return fail(f, i, -errno, "accept: %m");
        f->conn_fd = fd;
        f->conn_eof = false;
        f->conn_closed = false;
        f->in_len = 0;
        pthread_mutex_lock(&f->lock);
        f->connections++;
        pthread_mutex_unlock(&f->lock);
        if (f->trace)
                fprintf(stderr, "fake-server:%d accepted connection %u\n", f->port, f->connections);
        return 0;
}

static int need_conn(struct fake_server *f, size_t i) {
        if (f->conn_fd >= 0)
                return 0;
        return do_accept(f, i, FAKE_SERVER_TIMEOUT_MS);
}

/* ---- sending ---------------------------------------------------------------- */

/* Sends all of s. While the client's window is full, reads what the client
 * sends meanwhile (so that neither side can block the other). Returns 0,
 * -ECONNRESET (the client went away; *ret_sent says how far it got),
 * -ETIMEDOUT when no progress for timeout_ms, -ECANCELED or -errno. */
static int send_all(struct fake_server *f, const char *s, size_t len, unsigned timeout_ms, size_t *ret_sent) {
        size_t off = 0;
        int64_t deadline = now_ms() + timeout_ms;
        int r;

        while (off < len) {
                ssize_t n = send(f->conn_fd, s + off, len - off, MSG_NOSIGNAL | MSG_DONTWAIT);
                short events;

                if (n > 0) {
                        off += (size_t) n;
                        deadline = now_ms() + timeout_ms;
                        continue;
                }
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0 && errno != EWOULDBLOCK) {
                        r = errno == EPIPE || errno == ECONNRESET ? -ECONNRESET : -errno;
                        goto out;
                }
                events = POLLOUT;
                if (!f->conn_eof && f->in_len < IN_MAX_BYTES)
                        events |= POLLIN;
                r = wait_fd(f, f->conn_fd, events, deadline);
                if (r < 0)
                        goto out;
                if (r & POLLIN) {
                        r = read_some(f, true);
                        if (r < 0 && r != -EAGAIN && r != -ENOBUFS)
                                goto out;
                }
        }
        r = 0;
out:
        if (len > 0)
                trace(f, "S:", s, off);
        if (ret_sent)
                *ret_sent = off;
        return r;
}

/* data with "%t" replaced by the captured tag and "%%" by '%'. */
static int expand(struct fake_server *f, size_t i, const char *s, size_t len, char **ret, size_t *ret_len) {
        size_t tag_len = strlen(f->tag), n = 0;
        char *out;

        out = malloc(len / 2 * (tag_len > 2 ? tag_len : 2) + len + 1);
        if (!out)
                return fail(f, i, -ENOMEM, "out of memory");
        for (size_t k = 0; k < len; k++) {
                if (s[k] == '%' && k + 1 < len && s[k + 1] == 't') {
                        if (!f->have_tag) {
                                free(out);
                                return fail(f, i, -EINVAL, "\"%%t\" in SEND before any EXPECT captured a tag");
                        }
                        memcpy(out + n, f->tag, tag_len);
                        n += tag_len;
                        k++;
                } else if (s[k] == '%' && k + 1 < len && s[k + 1] == '%') {
                        out[n++] = '%';
                        k++;
                } else
                        out[n++] = s[k];
        }
        out[n] = '\0';
        *ret = out;
        *ret_len = n;
        return 0;
}

/* The bytes of a SEND or DRIBBLE step: expanded data, or len 'x'. */
static int step_bytes(struct fake_server *f, size_t i, char **ret, size_t *ret_len) {
        const struct fake_step *s = &f->steps[i];
        char *p;

        if (s->data)
                return expand(f, i, s->data, s->len, ret, ret_len);
        p = malloc(s->len + 1);
        if (!p)
                return fail(f, i, -ENOMEM, "out of memory");
        memset(p, 'x', s->len);
        p[s->len] = '\0';
        *ret = p;
        *ret_len = s->len;
        return 0;
}

static int send_failed(struct fake_server *f, size_t i, int r, size_t sent, size_t len) {
        if (r == -ECONNRESET)
                return fail(f, i, r, "the client went away after %zu of %zu bytes", sent, len);
        if (r == -ETIMEDOUT)
                return fail(f, i, r, "the client stopped reading after %zu of %zu bytes", sent, len);
        return fail(f, i, r, "send: %s", strerror(-r));
}

static int run_send(struct fake_server *f, size_t i) {
        _cleanup_free_ char *p = NULL;
        size_t len, sent;
        int r;

        r = step_bytes(f, i, &p, &len);
        if (r < 0)
                return r;
        r = send_all(f, p, len, timeout_of(&f->steps[i]), &sent);
        if (r < 0)
                return send_failed(f, i, r, sent, len);
        return 0;
}

static int run_dribble(struct fake_server *f, size_t i) {
        _cleanup_free_ char *p = NULL;
        unsigned interval = f->steps[i].msec > 0 ? f->steps[i].msec : 1;
        size_t len, sent;
        int r;

        r = step_bytes(f, i, &p, &len);
        if (r < 0)
                return r;
        for (size_t k = 0; k < len; k++) {
                if (k > 0) {
                        /* a client that goes away meanwhile is noticed at
                         * once, not at the next byte or the one after */
                        r = f->conn_eof ? POLLRDHUP : wait_fd(f, f->conn_fd, POLLRDHUP, now_ms() + interval);
                        if (r > 0)
                                return send_failed(f, i, -ECONNRESET, k, len);
                        if (r != -ETIMEDOUT)
                                return fail(f, i, r, "stopped");
                }
                r = send_all(f, p + k, 1, FAKE_SERVER_TIMEOUT_MS, &sent);
                if (r < 0)
                        return send_failed(f, i, r, k, len);
        }
        return 0;
}

static int run_flood(struct fake_server *f, size_t i) {
        const struct fake_step *s = &f->steps[i];
        unsigned timeout_ms = timeout_of(s);
        int64_t deadline = now_ms() + timeout_ms;
        char chunk[CHUNK];
        const char *pat = s->data ? s->data : "x";
        size_t total = 0, pat_len = strlen(pat);

        for (size_t k = 0; k < sizeof(chunk); k++)
                chunk[k] = pat[k % pat_len];

        /* chunk repeats the pattern from offset 0: keep sends aligned to it */
        while (s->len == 0 || total < s->len) {
                size_t want = sizeof(chunk) - sizeof(chunk) % pat_len, off = total % pat_len;
                ssize_t n;
                int r;

                if (s->len > 0 && want > s->len - total)
                        want = s->len - total;
                if (want > sizeof(chunk) - off)
                        want = sizeof(chunk) - off;
                n = send(f->conn_fd, chunk + off, want, MSG_NOSIGNAL | MSG_DONTWAIT);
                if (n > 0) {
                        total += (size_t) n;
                        if (now_ms() > deadline)
                                return fail(f, i, -ETIMEDOUT, "the client was still reading after %zu bytes and %u ms",
                                            total, timeout_ms);
                        continue;
                }
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0 && (errno == EPIPE || errno == ECONNRESET))
                        break;
                if (n < 0 && errno != EWOULDBLOCK)
                        return fail(f, i, -errno, "send: %m");
                r = wait_fd(f, f->conn_fd, POLLOUT | POLLRDHUP, deadline);
                if (r == -ETIMEDOUT)
                        return fail(f, i, r, "the client neither read nor closed after %zu bytes and %u ms", total,
                                    timeout_ms);
                if (r < 0)
                        return fail(f, i, r, "stopped");
                if (r & (POLLRDHUP | POLLHUP | POLLERR))
                        break;
        }
        if (f->trace)
                fprintf(stderr, "fake-server:%d S: <flood of %zu bytes>\n", f->port, total);
        return 0;
}

/* ---- receiving -------------------------------------------------------------- */

/* RFC 9051 §9: tag = 1*<any ASTRING-CHAR except "+">; ASTRING-CHAR is
 * ATOM-CHAR or "]"; ATOM-CHAR is any CHAR except atom-specials. */
static bool is_tag_char(unsigned char c) {
        if (c <= 0x20 || c >= 0x7f)
                return false;
        return !strchr("(){%*\"\\+", c);
}

/* Matches line against the pattern (see FAKE_EXPECT). On a match with a
 * "%t", the tag goes to f->tag. */
static bool match(struct fake_server *f, const char *pat, size_t plen, const char *line, size_t llen) {
        char tag[sizeof(f->tag)];
        bool have_tag = false;
        size_t i = 0, j = 0;

        while (i < plen) {
                char c = pat[i];

                if (c == '%' && i + 1 < plen && pat[i + 1] == 't') {
                        size_t k = j;

                        while (k < llen && is_tag_char((unsigned char) line[k]))
                                k++;
                        if (k == j || k - j >= sizeof(tag))
                                return false;
                        memcpy(tag, line + j, k - j);
                        tag[k - j] = '\0';
                        have_tag = true;
                        j = k;
                        i += 2;
                        continue;
                }
                if (c == '%' && i + 1 < plen && (pat[i + 1] == '%' || pat[i + 1] == '*'))
                        c = pat[++i];
                else if (c == '*' && i + 1 == plen) {
                        j = llen;
                        break;
                }
                if (j >= llen || line[j] != c)
                        return false;
                i++;
                j++;
        }
        if (j != llen)
                return false;
        if (have_tag) {
                memcpy(f->tag, tag, sizeof(tag));
                f->have_tag = true;
        }
        return true;
}

static int run_expect(struct fake_server *f, size_t i) {
        const struct fake_step *s = &f->steps[i];
        unsigned timeout_ms = timeout_of(s);
        int64_t deadline = now_ms() + timeout_ms;
        char want[700], got[700];
        const char *crlf;
        int r;

        for (;;) {
                crlf = f->in_len >= 2 ? memmem(f->in, f->in_len, "\r\n", 2) : NULL;
                if (crlf)
                        break;
                escape(s->data, s->len, 300, want, sizeof(want));
                escape(f->in, f->in_len, 300, got, sizeof(got));
                if (f->in_len > LINE_MAX_BYTES)
                        return fail(f, i, -EMSGSIZE, "expected \"%s\", received a line over %d bytes: \"%s\"", want,
                                    LINE_MAX_BYTES, got);
                if (f->conn_eof)
                        return fail(f, i, -ECONNRESET,
                                    "expected \"%s\", the client closed the connection (after \"%s\")", want, got);
                r = wait_fd(f, f->conn_fd, POLLIN, deadline);
                if (r == -ETIMEDOUT)
                        return fail(f, i, r, "expected \"%s\", nothing within %u ms (received \"%s\")", want,
                                    timeout_ms, got);
                if (r < 0)
                        return fail(f, i, r, "expected \"%s\": %s", want, strerror(-r));
                r = read_some(f, true);
                if (r < 0 && r != -EAGAIN)
                        return fail(f, i, r, "expected \"%s\": recv: %s", want, strerror(-r));
        }

        {
                size_t llen = (size_t) (crlf - f->in);
                bool ok = match(f, s->data, s->len, f->in, llen);

                if (!ok) {
                        escape(s->data, s->len, 300, want, sizeof(want));
                        escape(f->in, llen, 300, got, sizeof(got));
                }
                memmove(f->in, crlf + 2, f->in_len - llen - 2);
                f->in_len -= llen + 2;
                if (!ok)
                        return fail(f, i, -EPROTO, "expected \"%s\", received \"%s\"", want, got);
        }
        return 0;
}

/* Reads until the client closes; true if it did before deadline. */
static int read_until_eof(struct fake_server *f, int64_t deadline) {
        int r;

        f->in_len = 0;
        while (!f->conn_eof) {
                r = wait_fd(f, f->conn_fd, POLLIN, deadline);
                if (r < 0)
                        return r;
                r = read_some(f, false);
                if (r < 0 && r != -EAGAIN)
                        return r;
        }
        return 0;
}

static int run_wait_eof(struct fake_server *f, size_t i) {
        unsigned timeout_ms = timeout_of(&f->steps[i]);
        int r;

        r = read_until_eof(f, now_ms() + timeout_ms);
        if (r == -ETIMEDOUT)
                return fail(f, i, r, "the client did not close the connection within %u ms", timeout_ms);
        if (r < 0)
                return fail(f, i, r, "waiting for EOF: %s", strerror(-r));
        close_conn(f);
        return 0;
}

static int run_stall(struct fake_server *f, size_t i) {
        unsigned timeout_ms = timeout_of(&f->steps[i]);
        int r = 0;

        if (!f->conn_eof)
                r = wait_fd(f, f->conn_fd, POLLRDHUP, now_ms() + timeout_ms);
        if (r == -ETIMEDOUT)
                return fail(f, i, r, "the client was still connected after %u ms of silence", timeout_ms);
        if (r < 0)
                return fail(f, i, r, "stalling: %s", strerror(-r));
        /* What the client sent meanwhile belongs in the transcript. */
        while (read_some(f, false) > 0)
                ;
        close_conn(f);
        return 0;
}

static void run_close(struct fake_server *f) {
        shutdown(f->conn_fd, SHUT_WR);
        while (read_some(f, false) > 0)
                ;
        close_conn(f);
}

static void run_reset(struct fake_server *f) {
        struct linger l = { .l_onoff = 1, .l_linger = 0 };

        (void) setsockopt(f->conn_fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
        close_conn(f);
}

/* ---- the thread ---------------------------------------------------------------- */

static bool ends_connection(enum fake_op op) {
        return op == FAKE_CLOSE || op == FAKE_RESET || op == FAKE_WAIT_EOF || op == FAKE_STALL || op == FAKE_REPEAT;
}

static int run_step(struct fake_server *f, size_t i) {
        const struct fake_step *s = &f->steps[i];
        int r;

        switch (s->op) {
        case FAKE_ACCEPT:
                return do_accept(f, i, timeout_of(s));
        case FAKE_SLEEP:
                r = wait_fd(f, -1, 0, now_ms() + s->msec);
                return r == -ETIMEDOUT ? 0 : fail(f, i, r, "stopped");
        default:
                break;
        }

        /* Steps that end a connection have nothing to do once it has ended. */
        if (f->conn_fd < 0 && f->conn_closed && ends_connection(s->op))
                return 0;

        r = need_conn(f, i);
        if (r < 0)
                return r;

        switch (s->op) {
        case FAKE_SEND:
                return run_send(f, i);
        case FAKE_EXPECT:
                return run_expect(f, i);
        case FAKE_CLOSE:
        case FAKE_REPEAT:
                run_close(f);
                return 0;
        case FAKE_RESET:
                run_reset(f);
                return 0;
        case FAKE_WAIT_EOF:
                return run_wait_eof(f, i);
        case FAKE_DRIBBLE:
                return run_dribble(f, i);
        case FAKE_STALL:
                return run_stall(f, i);
        case FAKE_FLOOD:
                return run_flood(f, i);
        default:
                return fail(f, i, -EINVAL, "unknown op %d", (int) s->op);
        }
}

static void finish(struct fake_server *f, int r) {
        pthread_mutex_lock(&f->lock);
        f->done = true;
        f->result = r;
        pthread_cond_broadcast(&f->cond);
        pthread_mutex_unlock(&f->lock);
}

static void *thread_main(void *userdata) {
        struct fake_server *f = userdata;
        int r = 0;

        for (size_t i = 0; i < f->n_steps; i++) {
                pthread_mutex_lock(&f->lock);
                f->step = i;
                f->reached[i]++;
                pthread_mutex_unlock(&f->lock);
                r = run_step(f, i);
                if (r < 0 && (!f->repeat || r == -ECANCELED)) {
                        close_conn(f);
                        finish(f, r);
                        return NULL;
                }
                if (f->repeat && (r < 0 || f->steps[i].op == FAKE_REPEAT)) {
                        /* the next connection plays the script from the start */
                        close_conn(f);
                        i = (size_t) -1;
                }
        }
        pthread_mutex_lock(&f->lock);
        f->step = f->n_steps;
        pthread_mutex_unlock(&f->lock);
        finish(f, 0);

        /* Script done: keep listening to the client, say nothing. */
        if (f->conn_fd >= 0)
                (void) read_until_eof(f, -1);
        (void) wait_fd(f, -1, 0, -1);
        return NULL;
}

/* ---- the API ----------------------------------------------------------------- */

struct fake_server *fake_server_start(const struct fake_step *script, size_t n_steps) {
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t sl = sizeof(sa);
        pthread_condattr_t ca;
        sigset_t all, old;
        struct fake_server *f;
        const char *e;
        int r;

        f = calloc(1, sizeof(*f));
        if (!f)
                return NULL;
        f->listen_fd = f->conn_fd = f->stop_pipe[0] = f->stop_pipe[1] = -1;
        pthread_mutex_init(&f->lock, NULL);
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&f->cond, &ca);
        pthread_condattr_destroy(&ca);
        e = getenv("FAKE_SERVER_TRACE");
        f->trace = e && *e && strcmp(e, "0") != 0;

        f->steps = calloc(n_steps ? n_steps : 1, sizeof(*f->steps));
        if (!f->steps)
                goto fail;
        f->n_steps = n_steps;
        f->reached = calloc(n_steps ? n_steps : 1, sizeof(unsigned));
        if (!f->reached)
                goto fail;
        for (size_t i = 0; i < n_steps; i++) {
                struct fake_step *s = &f->steps[i];
                size_t len;
                char *d;

                if ((unsigned) script[i].op >= ELEMENTSOF(op_names) ||
                    (script[i].op == FAKE_EXPECT && !script[i].data)) {
                        errno = EINVAL;
                        goto fail;
                }
                *s = script[i];
                s->data = NULL;
                if (s->op == FAKE_REPEAT)
                        f->repeat = true;
                if (!script[i].data)
                        continue;
                /* FLOOD: data is a NUL-terminated pattern, len the total */
                len = s->op == FAKE_FLOOD || s->len == 0 ? strlen(script[i].data) : s->len;
                if (s->op == FAKE_FLOOD && len == 0) {
                        errno = EINVAL;
                        goto fail;
                }
                d = malloc(len + 1);
                if (!d)
                        goto fail;
                memcpy(d, script[i].data, len);
                d[len] = '\0';
                s->data = d;
                if (s->op != FAKE_FLOOD)
                        s->len = len;
        }

        if (pipe2(f->stop_pipe, O_CLOEXEC | O_NONBLOCK) < 0)
                goto fail;
        f->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (f->listen_fd < 0)
                goto fail;
        if (bind(f->listen_fd, (struct sockaddr *) &sa, sizeof(sa)) < 0 || listen(f->listen_fd, 16) < 0 ||
            getsockname(f->listen_fd, (struct sockaddr *) &sa, &sl) < 0)
                goto fail;
        f->port = ntohs(sa.sin_port);

        /* No signal is ever for this thread (sd-event's signalfd needs them
         * blocked everywhere). */
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        r = pthread_create(&f->thread, NULL, thread_main, f);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (r != 0) {
                errno = r;
                goto fail;
        }
        f->thread_running = true;
        return f;

fail:
        r = errno;
        fake_server_free(f);
        errno = r;
        return NULL;
}

int fake_server_port(const struct fake_server *f) {
        return f->port;
}

int fake_server_wait(struct fake_server *f, unsigned timeout_ms) {
        struct timespec ts;
        int r = 0;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_sec += timeout_ms / 1000;
        ts.tv_nsec += (long) (timeout_ms % 1000) * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
        }

        pthread_mutex_lock(&f->lock);
        while (!f->done && r == 0)
                r = pthread_cond_timedwait(&f->cond, &f->lock, &ts);
        if (f->done)
                r = f->result;
        else {
                size_t i = f->step;

                if (f->error[0] == '\0')
                        snprintf(f->error, sizeof(f->error), "step %zu (%s): still running after %u ms", i,
                                 i < f->n_steps ? op_names[f->steps[i].op] : "end", timeout_ms);
                r = -ETIMEDOUT;
        }
        pthread_mutex_unlock(&f->lock);
        return r;
}

const char *fake_server_error(struct fake_server *f) {
        const char *e;

        pthread_mutex_lock(&f->lock);
        e = f->error;
        pthread_mutex_unlock(&f->lock);
        return e;
}

const char *fake_server_transcript(struct fake_server *f) {
        char *s;

        pthread_mutex_lock(&f->lock);
        s = malloc(f->transcript_len + 1);
        if (s) {
                if (f->transcript_len > 0)
                        memcpy(s, f->transcript, f->transcript_len);
                s[f->transcript_len] = '\0';
                free(f->snapshot);
                f->snapshot = s;
                f->snapshot_len = f->transcript_len;
        }
        pthread_mutex_unlock(&f->lock);
        return f->snapshot ? f->snapshot : "";
}

size_t fake_server_transcript_len(const struct fake_server *f) {
        return f->snapshot_len;
}

unsigned fake_server_connections(struct fake_server *f) {
        unsigned n;

        pthread_mutex_lock(&f->lock);
        n = f->connections;
        pthread_mutex_unlock(&f->lock);
        return n;
}

unsigned fake_server_reached(struct fake_server *f, size_t step) {
        unsigned n = 0;

        pthread_mutex_lock(&f->lock);
        if (step < f->n_steps)
                n = f->reached[step];
        pthread_mutex_unlock(&f->lock);
        return n;
}

struct fake_server *fake_server_free(struct fake_server *f) {
        if (!f)
                return NULL;
        if (f->thread_running) {
                ssize_t n;

                do
                        n = write(f->stop_pipe[1], "x", 1);
                while (n < 0 && errno == EINTR);
                pthread_join(f->thread, NULL);
        }
        close_conn(f);
        if (f->listen_fd >= 0)
                close(f->listen_fd);
        for (int k = 0; k < 2; k++)
                if (f->stop_pipe[k] >= 0)
                        close(f->stop_pipe[k]);
        for (size_t i = 0; i < f->n_steps; i++)
                free((char *) f->steps[i].data);
        free(f->steps);
        free(f->reached);
        free(f->in);
        free(f->transcript);
        free(f->snapshot);
        pthread_cond_destroy(&f->cond);
        pthread_mutex_destroy(&f->lock);
        free(f);
        return NULL;
}
