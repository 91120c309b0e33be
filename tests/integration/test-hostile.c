/* SPDX-License-Identifier: MIT */
/*
 * Hostile servers against the real daemon. One imapidled runs with an
 * account "good" on the harness's Dovecot; each case adds (by SIGHUP) an
 * account "evil-<case>" on a scripted fake server that logs in, syncs and
 * IDLEs normally, or nearly, and then replays one hostile response on every
 * connection (FAKE_REPEAT). The next case's reload replaces the account.
 *
 * For each case (the table below: name, script, expected outcome):
 *  - a case with an error substring: the daemon logs a line naming the
 *    account ("evil-<case>/INBOX: ...") with that error within DROP_MS of
 *    the hostile bytes (slowloris: the command timeout plus DROP_MS), and
 *    reconnects with backoff: in the WINDOW_MS after the drop at least 2
 *    connections and no more than the backoff schedule allows (4; a hot loop
 *    makes hundreds), the announced delays not shrinking;
 *  - a case without: the session stays up (one connection, no reconnect),
 *    announcing exactly evil_mail messages, all in valid UTF-8;
 *  - either way the daemon's VmRSS and VmHWM (/proc/PID/status) grow by at
 *    most the case's bound (RSS_BOUND_KB unless it says otherwise), the
 *    daemon lives, and a message delivered to "good" while the evil account
 *    misbehaves is announced exactly once.
 *
 * Each case prints a line with what it measured; IMAPIDLED_HOSTILE_CASE=SUBSTRING
 * runs only the cases whose name contains it. IMAPIDLED_COMMAND_TIMEOUT_MS
 * (a test knob of the daemon) shortens the command timeout for the slowloris
 * cases. IMAPIDLED_TEST_TIMEOUT_SCALE multiplies every time bound; under ASan
 * or valgrind the memory figures are printed but not checked. The parser
 * limits the cases aim at are imap_parser_default_limits (include/imap-parser.h).
 */

#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "daemon-runner.h"
#include "fake-server.h"
#include "harness.h"
#include "macro.h"
#include "suites.h"
#include "utf8.h"

#define COMMAND_TIMEOUT_MS 3000         /* IMAPIDLED_COMMAND_TIMEOUT_MS for the daemon */
#define DROP_MS 3000                    /* hostile bytes sent -> the error in the log */
#define WINDOW_MS 2000                  /* after the drop: reconnects counted, good mail announced */
/* A delivery to Dovecot -> its announcement: under 1 s on an idle machine,
 * but Dovecot itself may take 10 s and more when the cores are busy (seen
 * with fuzzers next to the flood); a starved account never gets there. */
#define GOOD_MS 30000
/* A hostile case may cost the daemon what the parser holds for one response
 * at most (a 64 KiB line; literals only where the case says) plus the
 * connection's buffers: 2 MiB leaves room for malloc's own slack, and is far
 * from the 10 MB a line without CRLF would cost if it were kept. */
#define RSS_BOUND_KB 2048
#define TOTAL_HWM_BOUND_KB (16 * 1024)  /* the peak over all cases, from the start */

enum stage {
        AT_CONNECT,     /* the case sends the greeting (or not) */
        AT_EXAMINE,     /* logged in, EXAMINE INBOX received: the case answers it */
        AT_IDLE,        /* synced, "+ idling" sent */
};

struct hostile_case {
        const char *name;               /* the account is evil-<name> */
        enum stage stage;
        const struct fake_step *steps;  /* then FAKE_REPEAT */
        size_t n_steps;
        const char *drop;               /* the error logged; NULL: the session stays up */
        unsigned drop_ms;               /* bound on the time to drop; 0: DROP_MS */
        unsigned rss_kb;                /* bound on RSS and HWM growth; 0: RSS_BOUND_KB */
        unsigned evil_mail;             /* messages the evil account announces */
};

#define STEPS(...)                                                                      \
        .steps = (const struct fake_step[]) { __VA_ARGS__ },                            \
        .n_steps = sizeof((const struct fake_step[]) { __VA_ARGS__ }) / sizeof(struct fake_step)
#define BYTES(s)                FAKE_SEND_BYTES(s, sizeof(s) - 1)
#define STALL                   FAKE_STEP_MS(FAKE_STALL, 120000)
#define MIB                     (1024 * 1024)
#define OPEN15                  "(((((" "(((((" "((((("     /* with FETCH's own: 16 deep, the limit */
#define CLOSE15                 ")))))" ")))))" ")))))"

#define GREETING "* OK [CAPABILITY IMAP4rev1 IDLE SASL-IR AUTH=PLAIN] evil ready\r\n"
#define ENVELOPE(subject, name) "ENVELOPE (\"Mon, 1 Jan 2024 00:00:00 +0000\" \"" subject "\" ((\"" name \
                                "\" NIL \"e\" \"example.org\")) NIL NIL NIL NIL NIL NIL \"<m@x>\")"
/* two new messages: IDLE is left (DONE, the tagged OK), the fetch */
#define NEW_MAIL_FETCH                                                                  \
        FAKE_SEND_STR("* 4 EXISTS\r\n"), FAKE_EXPECT_LINE("DONE"), FAKE_SEND_STR("%t OK\r\n"), \
        FAKE_EXPECT_LINE("%t UID FETCH 3:* (UID FLAGS ENVELOPE INTERNALDATE RFC822.SIZE)")

/* One FETCH of ~3.5 MB: lines of 20,000 values joined by 1-byte literals,
 * far more values than a notifier's response has; filled in setup(). */
static char huge_fetch[3600 * 1024];

static const struct hostile_case cases[] = {
        /* literals: at the 1 MiB limit (kept: 4 MiB for the literal held while its response
         * is read), beyond it, beyond 32 and 64 bits, and several within the limit that
         * together pass the 4 MiB response limit (8 MiB: three are held when it fails) */
        { "literal-at-limit", AT_IDLE, STEPS(FAKE_SEND_STR("* 1 FETCH (BODY[] {1048576}\r\n"), FAKE_SEND_FILL(MIB),
                FAKE_SEND_STR(")\r\n"), STALL), .rss_kb = 4096 },
        { "literal-over-limit", AT_IDLE, STEPS(FAKE_SEND_STR("* 1 FETCH (BODY[] {1048577}\r\n"), STALL),
                .drop = "literal larger than the 1048576 byte limit" },
        { "literal-2^32", AT_IDLE, STEPS(FAKE_SEND_STR("* 1 FETCH (BODY[] {4294967296}\r\n"), STALL),
                .drop = "literal larger than" },
        { "literal-40-digits", AT_IDLE, STEPS(FAKE_SEND_STR("* 1 FETCH (BODY[] {9999999999999999999999999999999999999999}\r\n"),
                STALL), .drop = "literal larger than" },
        { "literals-over-response", AT_IDLE, STEPS(FAKE_SEND_STR("* 1 FETCH (BODY[1] {1048576}\r\n"), FAKE_SEND_FILL(MIB),
                FAKE_SEND_STR(" BODY[2] {1048576}\r\n"), FAKE_SEND_FILL(MIB), FAKE_SEND_STR(" BODY[3] {1048576}\r\n"),
                FAKE_SEND_FILL(MIB), FAKE_SEND_STR(" BODY[4] {1048576}\r\n"), FAKE_SEND_FILL(MIB), STALL),
                .drop = "response larger than the 4194304 byte limit", .rss_kb = 8192 },
        /* nesting: 16 lists deep (the limit, kept), 60,000 deep */
        { "nesting-at-limit", AT_IDLE, STEPS(FAKE_SEND_STR("* 1 FETCH (X " OPEN15 "1" CLOSE15 ")\r\n"), STALL) },
        { "nesting-deep", AT_IDLE, STEPS(FAKE_SEND_STR("* 1 FETCH (X "), FAKE_FLOOD_PATTERN("(", 60000, 0),
                FAKE_SEND_STR("\r\n"), STALL), .drop = "lists nested deeper than 16" },
        /* 20,000 empty quoted strings on one 60 KB line: a valid response */
        { "quoted-strings", AT_IDLE, STEPS(FAKE_SEND_STR("* 1 FETCH (UID 1 X ("), FAKE_FLOOD_PATTERN("\"\" ", 60000, 0),
                FAKE_SEND_STR("))\r\n"), STALL) },
        /* NUL bytes: in a line, in a quoted string, in a literal */
        { "nul-in-line", AT_IDLE, STEPS(BYTES("* OK all\0fine\r\n"), STALL), .drop = "NUL byte in response line" },
        { "nul-in-quoted", AT_IDLE, STEPS(BYTES("* 1 FETCH (UID 1 X \"a\0b\")\r\n"), STALL),
                .drop = "NUL byte in response line" },
        { "nul-in-literal", AT_IDLE, STEPS(BYTES("* 1 FETCH (UID 1 BODY[] {3}\r\na\0b)\r\n"), STALL),
                .drop = "NUL byte in literal" },
        /* invalid UTF-8 and charsets in ENVELOPE: announced, decoded with U+FFFD or a fallback */
        { "bad-utf8-envelope", AT_IDLE, STEPS(NEW_MAIL_FETCH,
                BYTES("* 3 FETCH (UID 3 FLAGS () " ENVELOPE("raw \xff\xfe\xc3 bytes \xed\xa0\x80 \xf4\x90\x80\x80 end",
                                                          "\xe9t\xe9 \x80 \xc0\xaf") ")\r\n"
                      "* 4 FETCH (UID 4 FLAGS () " ENVELOPE("=?x-no-such-charset?Q?caf=E9?= =?UTF-8?B?/w==?= "
                                                          "=?UTF-8?Q?=ED=A0=80?= =?utf-7?B?K2Fq?= =?UTF-8?Q?=C3?=",
                                                          "=?iso-8859-1?q?J=F6rg?= =?bogus?B?!!!?=") ")\r\n"
                      "%t OK\r\n"),
                FAKE_EXPECT_LINE("%t IDLE"), FAKE_SEND_STR("+ idling\r\n"), STALL), .evil_mail = 2 },
        /* a 10 MB line without CRLF */
        { "line-10MB", AT_IDLE, STEPS(FAKE_SEND_STR("* OK "), FAKE_FLOOD_BYTES(10 * MIB), STALL),
                .drop = "line longer than the 65536 byte limit" },
        /* a tagged response to a command never sent */
        { "wrong-tag", AT_IDLE, STEPS(FAKE_SEND_STR("zz9 OK [READ-ONLY] done\r\n"), STALL),
                .drop = "answered a command that was not sent (tag zz9)" },
        /* continuation requests without end */
        { "continuation-flood", AT_IDLE, STEPS(FAKE_FLOOD_PATTERN("+ go on\r\n", 0, 60000), STALL),
                .drop = "unexpected continuation request" },
        /* an endless untagged stream at full speed: tolerated, but it must not
         * starve the good account or cost memory */
        { "untagged-stream", AT_IDLE, STEPS(FAKE_FLOOD_PATTERN("* 1 EXISTS\r\n", 0, 120000), STALL) },
        /* one byte a second: the greeting, the answer to EXAMINE */
        { "slowloris-greeting", AT_CONNECT, STEPS(FAKE_DRIBBLE_STR(GREETING, 1000), STALL),
                .drop = "sent no complete greeting", .drop_ms = COMMAND_TIMEOUT_MS + DROP_MS },
        { "slowloris-examine", AT_EXAMINE, STEPS(FAKE_DRIBBLE_STR("* 2 EXISTS\r\n* OK [UIDVALIDITY 100] v\r\n", 1000),
                STALL), .drop = "did not answer EXAMINE", .drop_ms = COMMAND_TIMEOUT_MS + DROP_MS },
        /* FETCH with a huge number of items: on one line, and over lines joined by literals
         * (8 MiB: 100,000 values, about 60 bytes of tables each, before the limit) */
        { "fetch-items-line", AT_IDLE, STEPS(FAKE_SEND_STR("* 1 FETCH (UID 1"), FAKE_FLOOD_PATTERN(" X NIL", MIB, 0),
                STALL), .drop = "line longer than the 65536 byte limit" },
        { "fetch-items-literals", AT_IDLE, STEPS(FAKE_SEND_STR(huge_fetch), STALL), .drop = "values in one response",
                .rss_kb = 8192 },
        /* EXISTS 2^32-1, then the same FETCH again and again: announced once, and the
         * command timeout ends the storm */
        { "exists-absurd-fetch-storm", AT_IDLE, STEPS(FAKE_SEND_STR("* 4294967295 EXISTS\r\n"), FAKE_EXPECT_LINE("DONE"),
                FAKE_SEND_STR("%t OK\r\n"), FAKE_EXPECT_LINE("%t UID FETCH *"),
                FAKE_FLOOD_PATTERN("* 3 FETCH (UID 3 FLAGS () " ENVELOPE("storm", "Storm") ")\r\n", 0, 60000), STALL),
                .drop = "did not answer UID FETCH", .drop_ms = COMMAND_TIMEOUT_MS + DROP_MS, .evil_mail = 1 },
};

#define N_CASES (sizeof(cases) / sizeof(cases[0]))

static struct harness h;
static struct daemon_runner d;
static long hwm_start_kb;
static unsigned scale = 1;              /* IMAPIDLED_TEST_TIMEOUT_SCALE */
static bool instrumented;               /* the daemon runs under ASan or valgrind */

static uint64_t now_ms(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000 + (uint64_t) ts.tv_nsec / 1000000;
}

static const char *log_tail(void) {
        const char *log = daemon_runner_log(&d);
        size_t n = strlen(log);

        return n > 3000 ? log + n - 3000 : log;
}

/* A field of /proc/PID/status in kB ("VmRSS", "VmHWM"); -1 if gone. */
static long proc_kb(pid_t pid, const char *field) {
        char path[64], line[256];
        size_t flen = strlen(field);
        long v = -1;
        FILE *f;

        snprintf(path, sizeof(path), "/proc/%d/status", (int) pid);
        f = fopen(path, "re");
        if (!f)
                return -1;
        while (fgets(line, sizeof(line), f))
                if (strncmp(line, field, flen) == 0 && line[flen] == ':') {
                        v = strtol(line + flen + 1, NULL, 10);
                        break;
                }
        fclose(f);
        return v;
}

/* Under ASan (redzones, quarantine, shadow memory) or valgrind, RSS tells
 * little about the daemon's own allocations. */
static bool daemon_instrumented(pid_t pid) {
        char path[64], line[512];
        bool found = false;
        FILE *f;

        snprintf(path, sizeof(path), "/proc/%d/maps", (int) pid);
        f = fopen(path, "re");
        if (!f)
                return false;
        while (!found && fgets(line, sizeof(line), f))
                found = strstr(line, "libasan") || strstr(line, "vgpreload") ||
                        strncmp(line, "7fff8000-", 9) == 0;     /* ASan's x86-64 shadow */
        fclose(f);
        return found;
}

/* The most connections the backoff allows within ms of the first drop:
 * retries wait at least 0.5 s, 1 s, 2 s ... (1 s doubling, jitter down to
 * half), plus one for slack. A hot loop makes hundreds. */
static unsigned max_connections(uint64_t ms) {
        uint64_t t = 0, wait = 500;
        unsigned n = 1;

        while (t + wait <= ms) {
                t += wait;
                wait *= 2;
                n++;
        }
        return n + 1;
}

/* Alive: not gone, not a zombie (the daemon is the parent process's child). */
static bool daemon_alive(void) {
        char path[64], line[256];
        bool alive = false;
        FILE *f;

        snprintf(path, sizeof(path), "/proc/%d/status", (int) d.pid);
        f = fopen(path, "re");
        if (!f)
                return false;
        while (fgets(line, sizeof(line), f))
                if (strncmp(line, "State:", 6) == 0) {
                        alive = !strchr(line, 'Z') && !strchr(line, 'X');
                        break;
                }
        fclose(f);
        return alive;
}

/* Lines of the log holding both a and b (b NULL: any), at most max copied
 * (NUL-terminated, cut) into out. Returns the number of such lines. */
static unsigned log_lines(const char *a, const char *b, char out[][512], unsigned max) {
        const char *p = daemon_runner_log(&d);
        unsigned n = 0;

        while (*p) {
                const char *e = strchr(p, '\n');
                size_t len = e ? (size_t) (e - p) : strlen(p);
                char line[4096];

                snprintf(line, sizeof(line), "%.*s", (int) (len < sizeof(line) - 1 ? len : sizeof(line) - 1), p);
                if (strstr(line, a) && (!b || strstr(line, b))) {
                        if (n < max) {
                                size_t k = strlen(line) < sizeof(out[n]) - 1 ? strlen(line) : sizeof(out[n]) - 1;

                                memcpy(out[n], line, k);
                                out[n][k] = '\0';
                        }
                        n++;
                }
                p += len + (e ? 1 : 0);
        }
        return n;
}

static unsigned count_lines(const char *a, const char *b) {
        return log_lines(a, b, NULL, 0);
}

static void write_config(const char *evil_account, int evil_port) {
        char buf[PATH_MAX * 4], evil[512] = "";

        if (evil_account)
                snprintf(evil, sizeof(evil),
                         "\n[account %s]\nhost = 127.0.0.1\nport = %d\ntls = none\nuser = me\npassword = pw\n"
                         "mailboxes = INBOX\n", evil_account, evil_port);
        snprintf(buf, sizeof(buf),
                 "[general]\nlog_level = info\nnotify = false\n\n"
                 "[account good]\nhost = %s\nport = %d\ntls = implicit\nca_file = %s\nuser = user1\n"
                 "password_command = printf 'pass-user1\\n'\nmailboxes = INBOX\n%s",
                 h.host, h.imaps_port, h.ca_file, evil);
        ck_assert_int_eq(write_text_file(d.config_path, buf), 0);
}

static void fill_huge_fetch(void) {
        size_t n = 0, cap = sizeof(huge_fetch) - 1;

        n += (size_t) snprintf(huge_fetch, cap, "* 1 FETCH (UID 1");
        while (n + 70000 < cap) {
                for (int i = 0; i < 10000; i++) {
                        memcpy(huge_fetch + n, " X NIL", 6);
                        n += 6;
                }
                memcpy(huge_fetch + n, " X {1}\r\na", 9);
                n += 9;
        }
        memcpy(huge_fetch + n, ")\r\n", 3);
        n += 3;
        huge_fetch[n] = '\0';
}

/* Unchecked (runs once, in the parent of the forked cases): Dovecot and the
 * daemon with the good account, idle. */
static void setup(void) {
        static char env_timeout[64];
        const char *env[] = { env_timeout, NULL };

        const char *v = getenv("IMAPIDLED_TEST_TIMEOUT_SCALE");

        if (v && atoi(v) >= 1 && atoi(v) <= 100)
                scale = (unsigned) atoi(v);
        fill_huge_fetch();
        ck_assert_int_ge(harness_start(&h, 0), 0);
        ck_assert_int_eq(daemon_runner_init(&d, h.dir, "hostile"), 0);
        write_config(NULL, 0);
        snprintf(env_timeout, sizeof(env_timeout), "IMAPIDLED_COMMAND_TIMEOUT_MS=%d", COMMAND_TIMEOUT_MS);
        ck_assert_int_eq(daemon_runner_start(&d, NULL, env, false), 0);
        ck_assert_msg(daemon_runner_wait_notify(&d, "STATUS=1/1 mailbox idle", 20000), "the daemon is not idle:\n%s",
                      log_tail());
        hwm_start_kb = proc_kb(d.pid, "VmHWM");
        instrumented = daemon_instrumented(d.pid);
        if (instrumented)
                fprintf(stderr, "hostile: the daemon runs under ASan or valgrind: memory reported, not checked\n");
}

static void teardown(void) {
        uint64_t deadline = now_ms() + 10000;

        /* SIGTERM, draining the notify socket until it is gone (else SIGKILL) */
        if (d.pid > 0 && kill(d.pid, SIGTERM) == 0)
                while (now_ms() < deadline && waitpid(d.pid, NULL, WNOHANG) == 0) {
                        daemon_runner_notified(&d);
                        usleep(10 * 1000);
                }
        if (d.pid > 0 && waitpid(d.pid, NULL, WNOHANG) != 0)
                d.pid = 0;
        daemon_runner_done(&d);
        harness_stop(&h);
}

/* ---- one case ------------------------------------------------------------ */

static size_t build_script(const struct hostile_case *c, struct fake_step *s, size_t max, size_t *ret_hostile) {
        static const struct fake_step login[] = {
                FAKE_SEND_STR(GREETING),
                FAKE_EXPECT_LINE("%t AUTHENTICATE PLAIN *"),
                FAKE_SEND_STR("%t OK [CAPABILITY IMAP4rev1 IDLE] logged in\r\n"),
                FAKE_EXPECT_LINE("%t EXAMINE INBOX"),
        };
        static const struct fake_step sync[] = {
                FAKE_SEND_STR("* 2 EXISTS\r\n* OK [UIDVALIDITY 100] v\r\n* OK [UIDNEXT 3] n\r\n%t OK [READ-ONLY] done\r\n"),
                FAKE_EXPECT_LINE("%t UID SEARCH ALL"),
                FAKE_SEND_STR("* SEARCH 1 2\r\n%t OK\r\n"),
                FAKE_EXPECT_LINE("%t UID SEARCH UNSEEN UNDELETED"),
                FAKE_SEND_STR("* SEARCH 2\r\n%t OK\r\n"),
                FAKE_EXPECT_LINE("%t IDLE"),
                FAKE_SEND_STR("+ idling\r\n"),
        };
        size_t n = 0;

        if (c->stage >= AT_EXAMINE)
                for (size_t i = 0; i < ELEMENTSOF(login); i++)
                        s[n++] = login[i];
        if (c->stage >= AT_IDLE)
                for (size_t i = 0; i < ELEMENTSOF(sync); i++)
                        s[n++] = sync[i];
        *ret_hostile = n;
        ck_assert_uint_le(n + c->n_steps + 1, max);
        for (size_t i = 0; i < c->n_steps; i++)
                s[n++] = c->steps[i];
        s[n++] = (struct fake_step) FAKE_STEP(FAKE_REPEAT);
        return n;
}

/* The session's backoff as logged (prefix "evil-<case>/INBOX: "): the
 * "reconnecting in X s" delays, the first one, the first that shrank within
 * one schedule, and how often a network change made it reconnect at once
 * ("reconnecting now", which starts the schedule again: other tests on the
 * machine add and remove interfaces, and the daemon sees it). */
struct backoff_seen {
        unsigned n_delays, n_now;
        double first;
        bool shrank;
        double from, to;
};

static struct backoff_seen backoff_seen(const char *prefix) {
        char lines[32][512];
        unsigned n = log_lines(prefix, "reconnecting ", lines, 32);
        struct backoff_seen b = {};
        double prev = 0;

        for (unsigned i = 0; i < n && i < 32; i++) {
                const char *p = strstr(lines[i], "reconnecting in ");
                double v;

                if (!p) {
                        b.n_now += strstr(lines[i], "reconnecting now") != NULL;
                        prev = 0;
                        continue;
                }
                v = strtod(p + strlen("reconnecting in "), NULL);
                if (b.n_delays++ == 0)
                        b.first = v;
                if (v < prev && !b.shrank) {
                        b.shrank = true;
                        b.from = prev;
                        b.to = v;
                }
                prev = v;
        }
        return b;
}

START_TEST(test_hostile_case) {
        const struct hostile_case *c = &cases[_i];
        const char *only = getenv("IMAPIDLED_HOSTILE_CASE");
        struct fake_step script[64];
        struct fake_server *f;
        char account[96], prefix[128], mail_needle[128], subject[128], lines[8][512];
        size_t n_script, hostile;
        long rss0, hwm0, rss1 = 0, hwm1 = 0, bound = c->rss_kb ? c->rss_kb : RSS_BOUND_KB;
        unsigned good0, conns = 0, drop_ms = scale * (c->drop_ms ? c->drop_ms : DROP_MS), n_evil;
        unsigned window_ms = scale * WINDOW_MS;
        uint64_t t_hostile, t_ref, t_deliver, good_ms = 0, dropped_ms = 0;
        pid_t deliverer;
        int status;

        if (only && !strstr(c->name, only))
                return;
        ck_assert_msg(daemon_alive(), "the daemon is gone before %s:\n%s", c->name, log_tail());
        snprintf(account, sizeof(account), "evil-%s", c->name);
        snprintf(prefix, sizeof(prefix), "%s/INBOX: ", account);
        snprintf(mail_needle, sizeof(mail_needle), "%s: new mail in INBOX", account);
        n_script = build_script(c, script, ELEMENTSOF(script), &hostile);
        f = fake_server_start(script, n_script);
        ck_assert_msg(f, "fake_server_start: %m");

        rss0 = proc_kb(d.pid, "VmRSS");
        hwm0 = proc_kb(d.pid, "VmHWM");
        good0 = count_lines("good: new mail in INBOX", NULL);
        write_config(account, fake_server_port(f));
        ck_assert_int_eq(kill(d.pid, SIGHUP), 0);

        /* the script got to the hostile part */
        {
                uint64_t deadline = now_ms() + scale * 10000;

                while (fake_server_connections(f) < 1 || fake_server_reached(f, hostile) < 1) {
                        ck_assert_msg(now_ms() < deadline, "%s: the session never got to the hostile part (fake: %s)\n%s",
                                      c->name, fake_server_error(f), log_tail());
                        usleep(5 * 1000);
                }
                t_hostile = now_ms();
        }

        if (c->drop) {
                uint64_t deadline = t_hostile + drop_ms;

                while (count_lines(prefix, c->drop) < 1) {
                        ck_assert_msg(now_ms() < deadline, "%s: no \"%s\" for %s within %u ms (fake: %s)\n%s", c->name,
                                      c->drop, account, drop_ms, fake_server_error(f), log_tail());
                        usleep(10 * 1000);
                }
                t_ref = now_ms();
                dropped_ms = t_ref - t_hostile;
        } else {
                /* everything sent (the STALL before FAKE_REPEAT), and announced */
                uint64_t deadline = t_hostile + scale * 10000;

                /* an endless flood just goes on: half a second of it */
                const struct fake_step *last = &c->steps[c->n_steps - 2];
                bool endless = last->op == FAKE_FLOOD && last->len == 0;

                while ((endless ? now_ms() < t_hostile + 500 : fake_server_reached(f, n_script - 2) < 1) ||
                       count_lines(mail_needle, NULL) < c->evil_mail) {
                        ck_assert_msg(now_ms() < deadline, "%s: the script did not finish or %u mail not announced "
                                      "(fake: %s)\n%s", c->name, c->evil_mail, fake_server_error(f), log_tail());
                        usleep(10 * 1000);
                }
                t_ref = now_ms();
        }

        /* The good account works meanwhile: a message delivered now (by a
         * child: delivering may take longer than the window) is announced
         * exactly once. The connections and the memory are taken at the
         * end of the window. */
        snprintf(subject, sizeof(subject), "good mail during %s", c->name);
        t_deliver = now_ms();
        deliverer = fork();
        ck_assert_int_ge(deliverer, 0);
        if (deliverer == 0)
                _exit(harness_deliver(&h, "user1", "INBOX", "Good <g@example.org>", subject) == 0 ? 0 : 1);
        for (;;) {
                if (!conns && now_ms() >= t_ref + window_ms) {
                        conns = fake_server_connections(f);
                        rss1 = proc_kb(d.pid, "VmRSS");
                        hwm1 = proc_kb(d.pid, "VmHWM");
                }
                if (!good_ms && count_lines(subject, NULL) > 0)
                        good_ms = now_ms() - t_deliver;
                if ((conns && good_ms) || now_ms() > t_deliver + scale * GOOD_MS)
                        break;
                usleep(10 * 1000);
        }
        ck_assert_int_eq(waitpid(deliverer, &status, 0), deliverer);
        ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "%s: the delivery failed", c->name);
        ck_assert_msg(good_ms, "%s: the good account did not announce \"%s\" within %u ms\n%s", c->name, subject,
                      scale * GOOD_MS, log_tail());

        fprintf(stderr, "hostile: %-26s %s %5llu ms  connections %u  RSS %+6ld kB  HWM %+6ld kB  good mail in %llu ms\n",
                c->name, c->drop ? "dropped in" : "stays up  ", (unsigned long long) dropped_ms, conns, rss1 - rss0,
                hwm1 - hwm0, (unsigned long long) good_ms);

        ck_assert_msg(daemon_alive(), "%s: the daemon died\n%s", c->name, log_tail());
        ck_assert_msg(!strstr(fake_server_error(f), ", received \""), "%s: the script did not match: %s", c->name,
                      fake_server_error(f));
        ck_assert_msg(instrumented || rss1 - rss0 <= bound, "%s: VmRSS grew by %ld kB (bound %ld)", c->name, rss1 - rss0,
                      bound);
        ck_assert_msg(instrumented || hwm1 - hwm0 <= bound, "%s: VmHWM grew by %ld kB (bound %ld)", c->name, hwm1 - hwm0,
                      bound);
        ck_assert_uint_eq(count_lines("good: new mail in INBOX", NULL), good0 + 1);

        if (c->drop) {
                struct backoff_seen b = backoff_seen(prefix);
                unsigned max = (b.n_now + 1) * max_connections(window_ms);

                /* reconnected, but not in a loop: the 1st retry after 0.5-1 s, the 2nd 1-2 s later */
                ck_assert_msg(conns >= 2 && conns <= max, "%s: %u connections in the %u ms after the drop (2..%u)\n%s",
                              c->name, conns, window_ms, max, log_tail());
                ck_assert_msg(b.n_delays >= 1 && b.first >= 0.5, "%s: no backoff logged (%u, %.1f)\n%s", c->name,
                              b.n_delays, b.first, log_tail());
                ck_assert_msg(!b.shrank, "%s: backoff shrank: %.1f then %.1f s\n%s", c->name, b.from, b.to, log_tail());
                if (b.n_now > 0)
                        fprintf(stderr, "hostile: %-26s %u network change(s) restarted the backoff\n", c->name, b.n_now);
                /* every connection that got to the hostile part was dropped for it */
                ck_assert_uint_ge(count_lines(prefix, c->drop) + 1, fake_server_reached(f, hostile));
        } else {
                unsigned n_now = count_lines(prefix, "reconnecting now");

                ck_assert_msg(conns == 1 + n_now, "%s: %u connections for a session that should stay up\n%s", c->name,
                              conns, log_tail());
                ck_assert_msg(count_lines(prefix, "reconnecting in ") == 0, "%s: the session was dropped\n%s", c->name,
                              log_tail());
        }

        /* the evil account's announcements: as many as expected, valid UTF-8 */
        n_evil = log_lines(mail_needle, NULL, lines, 8);
        ck_assert_msg(n_evil == c->evil_mail, "%s: %u announcements from %s, expected %u\n%s", c->name, n_evil, account,
                      c->evil_mail, log_tail());
        for (unsigned i = 0; i < n_evil && i < 8; i++) {
                ck_assert_msg(utf8_is_valid(lines[i], strlen(lines[i])), "%s: not UTF-8: %s", c->name, lines[i]);
                fprintf(stderr, "hostile: %-26s %s\n", c->name, lines[i]);
        }
        fake_server_free(f);
}
END_TEST

/* After every case: alive, the peak memory bounded, still announcing. */
START_TEST(test_after_all) {
        const char *only = getenv("IMAPIDLED_HOSTILE_CASE");
        long hwm = proc_kb(d.pid, "VmHWM");
        unsigned ran = 0;

        for (size_t i = 0; i < N_CASES; i++)
                ran += !only || strstr(cases[i].name, only);
        ck_assert_msg(daemon_alive(), "the daemon died\n%s", log_tail());
        write_config(NULL, 0);
        ck_assert_int_eq(kill(d.pid, SIGHUP), 0);
        ck_assert_int_eq(harness_deliver(&h, "user1", "INBOX", "Good <g@example.org>", "after all cases"), 0);
        ck_assert_msg(daemon_runner_wait_log(&d, "after all cases", 1, scale * GOOD_MS), "%s", log_tail());
        /* one announcement per delivery, none lost, none twice */
        ck_assert_uint_eq(count_lines("good: new mail in INBOX", NULL), ran + 1);
        ck_assert_uint_eq(count_lines("good: new mail in INBOX", "good mail during "), ran);
        fprintf(stderr, "hostile: VmHWM %ld kB at the start, %ld kB after %u cases\n", hwm_start_kb, hwm, ran);
        ck_assert_msg(instrumented || hwm - hwm_start_kb <= TOTAL_HWM_BOUND_KB, "VmHWM grew by %ld kB over all cases",
                      hwm - hwm_start_kb);
}
END_TEST

int main(void) {
        Suite *s = suite_create("hostile");
        TCase *tc = tcase_create("hostile");
        SRunner *sr;
        int failed;

        tcase_add_unchecked_fixture(tc, setup, teardown);
        tcase_set_timeout(tc, 40);
        tcase_add_loop_test(tc, test_hostile_case, 0, (int) N_CASES);
        tcase_add_test(tc, test_after_all);
        suite_add_tcase(s, tc);
        sr = srunner_create(s);
        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
