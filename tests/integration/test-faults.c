/* SPDX-License-Identifier: MIT */
/*
 * Fault injection against the real daemon (issue 7, "Fault injection" and
 * "Secrets"): build/imapidled watches the harness's Dovecot while the test
 * breaks things, and every scenario counts what came out against what went
 * in: each message delivered must be announced exactly once, by a NewMail
 * signal on the harness's private bus and by one "ACCOUNT: new mail in
 * MAILBOX: UID n" log line, keyed by subject and UID.
 *
 *   server     Dovecot stopped while mail keeps arriving (into the Maildir),
 *              then started again; Dovecot killed with SIGKILL mid-session
 *   proxy      a TCP proxy in this process between the daemon and Dovecot's
 *              plaintext port cuts the connection (RST) in the middle of a
 *              response or inside a FETCH literal
 *   suspend    python3-dbusmock's logind on a private system bus; the daemon
 *              is frozen (SIGSTOP) between PrepareForSleep(true) and (false)
 *              while mail arrives
 *   tls        expired certificate, wrong host name, unknown CA, pin
 *              mismatch and a server that drops the handshake, each on an
 *              account of its own, next to a healthy one
 *   auth       a wrong password (the retries are timed at the proxy), a
 *              failing password_command, a token-expired BYE (fake server)
 *   disk       the state directory read-only, full (a small tmpfs in a
 *              private mount namespace), or its file corrupt
 *   churn      connect/disconnect cycles and reloads with alternating
 *              configurations: VmRSS and the fd count before and after
 *   secrets    a full session with --trace and dbus-monitor: no password or
 *              token anywhere
 *
 * Figures (detection, reconnect and catch-up times, RSS, fds, the backoff
 * schedule) go to stderr as "faults: ..." lines. $IMAPIDLED_SOAK_CYCLES
 * (default 200) sets the number of churn cycles; `make soak` runs 1,000.
 *
 * The disk tests mount tmpfs file systems in a mount namespace of their own,
 * which needs root; without it they are skipped with a message
 * (IMAPIDLED_REQUIRE_ROOT=1 makes that a failure).
 */

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <systemd/sd-bus.h>

#include "daemon-runner.h"
#include "fake-server.h"
#include "harness.h"
#include "sasl.h"
#include "suites.h"

#define NAME            "org.imapidled.Daemon1"
#define ROOT            "/org/imapidled/Daemon1"
#define MANAGER         NAME ".Manager"
#define ACCOUNT_IFACE   NAME ".Account"

/* How long to keep watching for a duplicate after the last expected
 * announcement. */
#define QUIET_MS 2000
/* An announcement after a fault: reconnect backoff (up to 8 s after a few
 * failed attempts), TLS, login, resync; generous for 2 shared cores. */
#define CATCH_UP_MS 30000

#define ELEMS(x) (sizeof(x) / sizeof((x)[0]))

static struct harness h;
static struct daemon_runner d;
static char bus_env[PATH_MAX + 64], sysbus_env[PATH_MAX + 64];
static const char *extra_env[8];
static bool state_mounted;
static pid_t mock_pid;                  /* python3-dbusmock's logind */

/* IMAPIDLED_TEST_TIMEOUT_SCALE (1..100): an instrumented daemon (ASan,
 * valgrind) is this many times slower; every wait grows by it. Figures that
 * measure speed or memory are then reported, not asserted. */
static unsigned timeout_scale(void) {
        const char *v = getenv("IMAPIDLED_TEST_TIMEOUT_SCALE");
        unsigned long s = v ? strtoul(v, NULL, 10) : 1;

        return s >= 1 && s <= 100 ? (unsigned) s : 1;
}

static bool instrumented(void) {
        const char *w = getenv("IMAPIDLED_DAEMON_WRAPPER");

        return timeout_scale() > 1 || (w && *w);
}

#define T(ms) ((unsigned) (ms) * timeout_scale())

static uint64_t now_ms(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000 + (uint64_t) ts.tv_nsec / 1000000;
}

/* ---- the daemon's log, unbounded ------------------------------------------- */

static char *logbuf;
static size_t loglen, logcap;

static const char *log_text(void) {
        FILE *f = fopen(d.log_path, "r");

        loglen = 0;
        for (;;) {
                size_t n;

                if (loglen + 65536 + 1 > logcap) {
                        size_t cap = logcap ? logcap * 2 : 1 << 20;
                        char *b = realloc(logbuf, cap);

                        ck_assert_ptr_nonnull(b);
                        logbuf = b;
                        logcap = cap;
                }
                if (!f)
                        break;
                n = fread(logbuf + loglen, 1, 65536, f);
                if (n == 0)
                        break;
                loglen += n;
        }
        if (f)
                fclose(f);
        logbuf[loglen] = '\0';
        return logbuf;
}

static size_t log_mark(void) {
        log_text();
        return loglen;
}

static const char *log_since(size_t mark) {
        const char *t = log_text();

        return t + (mark < loglen ? mark : loglen);
}

static unsigned count_str(const char *hay, const char *needle) {
        unsigned n = 0;

        for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle))
                n++;
        return n;
}

/* Lines of hay that begin with needle. */
static unsigned count_lines(const char *hay, const char *needle) {
        size_t len = strlen(needle);
        unsigned n = 0;

        for (const char *p = hay; (p = strstr(p, needle)); p += len)
                if (p == hay || p[-1] == '\n')
                        n++;
        return n;
}

/* The first line of hay that contains needle, copied into buf ("" if none). */
static const char *find_line(const char *hay, const char *needle, char *buf, size_t size) {
        const char *p = strstr(hay, needle), *b, *e;

        buf[0] = '\0';
        if (!p)
                return buf;
        for (b = p; b > hay && b[-1] != '\n'; b--)
                ;
        e = strchr(p, '\n');
        if (!e)
                e = p + strlen(p);
        snprintf(buf, size, "%.*s", (int) (e - b), b);
        return buf;
}

/* The end of the log on stderr, for a failure. */
static void dump_log(void) {
        const char *t = log_text();

        fprintf(stderr, "---- daemon log (%s, last 30000 bytes) ----\n%s\n---- end of log ----\n", d.log_path,
                loglen > 30000 ? t + loglen - 30000 : t);
}

#define FAIL(...)                                                                       \
        do {                                                                            \
                dump_log();                                                             \
                ck_abort_msg(__VA_ARGS__);                                              \
        } while (0)

#define CHECK(cond, ...)                                                                \
        do {                                                                            \
                if (!(cond))                                                            \
                        FAIL(__VA_ARGS__);                                              \
        } while (0)

/* ---- running programs -------------------------------------------------------- */

/* Runs argv (PATH lookup) with stdin from /dev/null and stdout into out
 * (NUL-terminated; NULL: discarded); stderr passes through unless quiet.
 * Returns the exit status, 128 + signal, or -errno. */
static int run_argv(const char *const *argv, char *out, size_t out_size, bool quiet) {
        int p[2] = { -1, -1 }, status;
        size_t len = 0;
        pid_t pid;

        if (out && out_size)
                out[0] = '\0';
        if (out && pipe2(p, O_CLOEXEC) < 0)
                return -errno;
        fflush(stdout);
        fflush(stderr);
        pid = fork();
        if (pid < 0)
                return -errno;
        if (pid == 0) {
                int null = open("/dev/null", O_RDWR | O_CLOEXEC);

                if (null < 0 || dup2(null, STDIN_FILENO) < 0 || dup2(out ? p[1] : null, STDOUT_FILENO) < 0 ||
                    (quiet && dup2(null, STDERR_FILENO) < 0))
                        _exit(127);
                execvp(argv[0], (char *const *) argv);
                _exit(127);
        }
        if (out) {
                close(p[1]);
                for (;;) {
                        char scratch[512];
                        bool room = len + 1 < out_size;
                        ssize_t n = read(p[0], room ? out + len : scratch, room ? out_size - len - 1 : sizeof(scratch));

                        if (n < 0 && errno == EINTR)
                                continue;
                        if (n <= 0)
                                break;
                        if (room)
                                len += (size_t) n;
                }
                out[len] = '\0';
                close(p[0]);
        }
        while (waitpid(pid, &status, 0) < 0)
                if (errno != EINTR)
                        return -errno;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

#define RUN(...)                                                                                \
        do {                                                                                    \
                const char *const _argv[] = { __VA_ARGS__, NULL };                              \
                int _r = run_argv(_argv, NULL, 0, true);                                        \
                ck_assert_msg(_r == 0, "%s %s failed (%d)", _argv[0], _argv[1], _r);             \
        } while (0)

/* Starts argv in the background (its output into log, or /dev/null), dying
 * with this process. */
static pid_t spawn_bg(const char *const *argv, const char *log, const char *const *env) {
        pid_t parent = getpid(), pid;

        fflush(stdout);
        fflush(stderr);
        pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
                int fd = open(log ? log : "/dev/null", O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);

                if (fd < 0 || prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent)
                        _exit(127);
                dup2(fd, STDOUT_FILENO);
                dup2(fd, STDERR_FILENO);
                for (size_t i = 0; env && env[i]; i++)
                        putenv((char *) env[i]);
                execvp(argv[0], (char *const *) argv);
                _exit(127);
        }
        return pid;
}

static void stop_bg(pid_t *pid) {
        if (*pid > 0) {
                kill(*pid, SIGTERM);
                while (waitpid(*pid, NULL, 0) < 0 && errno == EINTR)
                        ;
        }
        *pid = 0;
}

static char *read_file(const char *path) {
        FILE *f = fopen(path, "r");
        char *buf = NULL;
        size_t len = 0, cap = 0;

        if (!f)
                return strdup("");
        for (;;) {
                if (len + 4097 > cap) {
                        cap = cap ? cap * 2 : 65536;
                        buf = realloc(buf, cap);
                        ck_assert_ptr_nonnull(buf);
                }
                size_t n = fread(buf + len, 1, 4096, f);
                if (n == 0)
                        break;
                len += n;
        }
        fclose(f);
        if (!buf)
                return strdup("");
        buf[len] = '\0';
        return buf;
}

static bool file_contains(const char *path, const char *needle) {
        char *text = read_file(path);
        bool found = strstr(text, needle) != NULL;

        free(text);
        return found;
}

/* Lines of hay that contain both a and b. */
static unsigned count_lines_with(const char *hay, const char *a, const char *b) {
        unsigned n = 0;

        for (const char *line = hay; line && *line;) {
                const char *end = strchr(line, '\n');
                size_t len = end ? (size_t) (end - line) : strlen(line);
                const char *pa = memmem(line, len, a, strlen(a)), *pb = memmem(line, len, b, strlen(b));

                if (pa && pb)
                        n++;
                line = end ? end + 1 : NULL;
        }
        return n;
}

/* ---- systemd's notification socket ---------------------------------------------- */

static char last_status[256];
static unsigned n_ready;

static void notify_poll(void) {
        char buf[4096];
        ssize_t n;

        if (d.notify_fd < 0)
                return;
        while ((n = recv(d.notify_fd, buf, sizeof(buf) - 1, MSG_DONTWAIT)) > 0) {
                buf[n] = '\0';
                for (char *line = buf, *next; line && *line; line = next) {
                        next = strchr(line, '\n');
                        if (next)
                                *next++ = '\0';
                        if (strcmp(line, "READY=1") == 0)
                                n_ready++;
                        else if (strncmp(line, "STATUS=", 7) == 0)
                                snprintf(last_status, sizeof(last_status), "%s", line + 7);
                }
        }
}

/* ---- the bus: NewMail and AccountStateChanged ------------------------------------ */

struct mail_rec {
        char account[32], mailbox[64], subject[160];
        uint32_t uid;
        uint64_t at;
};

struct state_rec {
        char account[32], state[16];
        char message[512];              /* the last one */
        unsigned n;
        uint64_t at;                    /* when the last one was read */
};

static sd_bus *bus;
static struct mail_rec *mails;
static size_t n_mails, cap_mails;
static struct state_rec states[128];
static size_t n_states;

static int on_new_mail(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        const char *account, *mailbox, *from, *subject;
        uint32_t uid;

        if (sd_bus_message_read(m, "ssuss", &account, &mailbox, &uid, &from, &subject) < 0)
                return 0;
        if (n_mails == cap_mails) {
                cap_mails = cap_mails ? cap_mails * 2 : 256;
                mails = realloc(mails, cap_mails * sizeof(*mails));
                ck_assert_ptr_nonnull(mails);
        }
        struct mail_rec *r = &mails[n_mails++];
        snprintf(r->account, sizeof(r->account), "%s", account);
        snprintf(r->mailbox, sizeof(r->mailbox), "%s", mailbox);
        snprintf(r->subject, sizeof(r->subject), "%s", subject);
        r->uid = uid;
        r->at = now_ms();
        return 0;
}

static struct state_rec *state_rec(const char *account, const char *state, bool create) {
        for (size_t i = 0; i < n_states; i++)
                if (strcmp(states[i].account, account) == 0 && strcmp(states[i].state, state) == 0)
                        return &states[i];
        if (!create || n_states == ELEMS(states))
                return NULL;
        struct state_rec *r = &states[n_states++];
        snprintf(r->account, sizeof(r->account), "%s", account);
        snprintf(r->state, sizeof(r->state), "%s", state);
        return r;
}

static int on_state_changed(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        const char *account, *state, *message;
        struct state_rec *r;

        if (sd_bus_message_read(m, "sss", &account, &state, &message) < 0)
                return 0;
        r = state_rec(account, state, true);
        if (r) {
                r->n++;
                r->at = now_ms();
                snprintf(r->message, sizeof(r->message), "%s", message);
        }
        return 0;
}

static unsigned state_n(const char *account, const char *state) {
        struct state_rec *r = state_rec(account, state, false);

        return r ? r->n : 0;
}

static void bus_open(void) {
        ck_assert_int_ge(sd_bus_new(&bus), 0);
        ck_assert_int_ge(sd_bus_set_address(bus, h.dbus_address), 0);
        ck_assert_int_ge(sd_bus_set_bus_client(bus, true), 0);
        ck_assert_int_ge(sd_bus_start(bus), 0);
        ck_assert_int_ge(sd_bus_match_signal(bus, NULL, NAME, ROOT, MANAGER, "NewMail", on_new_mail, NULL), 0);
        ck_assert_int_ge(sd_bus_match_signal(bus, NULL, NAME, ROOT, MANAGER, "AccountStateChanged", on_state_changed,
                                             NULL), 0);
}

/* Reads the bus and the notification socket for up to ms (0: what is there). */
static void pump(unsigned ms) {
        uint64_t deadline = now_ms() + ms;

        for (;;) {
                int r;

                notify_poll();
                if (bus) {
                        while ((r = sd_bus_process(bus, NULL)) > 0)
                                ;
                        ck_assert_int_ge(r, 0);
                }
                uint64_t now = now_ms();
                if (now >= deadline)
                        return;
                uint64_t left = deadline - now < 20 ? deadline - now : 20;
                if (bus)
                        (void) sd_bus_wait(bus, left * 1000);
                else
                        usleep((useconds_t) left * 1000);
        }
}

/* Pumps until cond holds; fails with the message (and the log) after timeout_ms. */
#define WAIT_FOR(cond, timeout_ms, ...)                                                 \
        do {                                                                            \
                uint64_t _deadline = now_ms() + T(timeout_ms);                          \
                for (;;) {                                                              \
                        pump(0);                                                        \
                        if (cond)                                                       \
                                break;                                                  \
                        if (now_ms() > _deadline)                                       \
                                FAIL(__VA_ARGS__);                                      \
                        pump(20);                                                       \
                }                                                                       \
        } while (0)

static uint64_t wait_state(const char *account, const char *state, unsigned n, unsigned timeout_ms) {
        WAIT_FOR(state_n(account, state) >= n, timeout_ms, "%s never reached \"%s\" %u times (status \"%s\")", account,
                 state, n, last_status);
        return state_rec(account, state, false)->at;
}

static void wait_status(const char *want, unsigned timeout_ms) {
        WAIT_FOR(strcmp(last_status, want) == 0, timeout_ms, "STATUS never became \"%s\" (it is \"%s\")", want,
                 last_status);
}

static uint64_t wait_log_since(size_t mark, const char *needle, unsigned n, unsigned timeout_ms) {
        WAIT_FOR(count_str(log_since(mark), needle) >= n, timeout_ms, "no %u x \"%s\" in the log", n, needle);
        return now_ms();
}

static unsigned mail_count(const char *account, const char *subject) {
        unsigned n = 0;

        for (size_t i = 0; i < n_mails; i++)
                if (strcmp(mails[i].account, account) == 0 && strcmp(mails[i].subject, subject) == 0)
                        n++;
        return n;
}

static unsigned mail_total(const char *account) {
        unsigned n = 0;

        for (size_t i = 0; i < n_mails; i++)
                n += strcmp(mails[i].account, account) == 0;
        return n;
}

static uint64_t mail_at(const char *account, const char *subject) {
        for (size_t i = 0; i < n_mails; i++)
                if (strcmp(mails[i].account, account) == 0 && strcmp(mails[i].subject, subject) == 0)
                        return mails[i].at;
        return 0;
}

static uint64_t wait_mail(const char *account, const char *subject, unsigned timeout_ms) {
        WAIT_FOR(mail_count(account, subject) > 0, timeout_ms, "%s: no NewMail for \"%s\" within %u ms", account,
                 subject, timeout_ms);
        return mail_at(account, subject);
}

/* Every subject announced exactly once for account, and nothing else: one
 * NewMail each, no (mailbox, UID) twice, one log line per UID. Watches for
 * QUIET_MS first. */
static void assert_exactly_once(const char *account, const char *const *subjects, size_t n) {
        char needle[256];
        const char *log;
        size_t total = 0;

        pump(T(QUIET_MS));
        for (size_t i = 0; i < n; i++)
                CHECK(mail_count(account, subjects[i]) == 1, "%s: \"%s\" announced %u times", account, subjects[i],
                      mail_count(account, subjects[i]));
        log = log_text();
        for (size_t i = 0; i < n_mails; i++) {
                const struct mail_rec *m = &mails[i];

                if (strcmp(m->account, account) != 0)
                        continue;
                total++;
                for (size_t j = i + 1; j < n_mails; j++)
                        CHECK(strcmp(mails[j].account, account) != 0 || strcmp(mails[j].mailbox, m->mailbox) != 0 ||
                                      mails[j].uid != m->uid,
                              "%s: %s UID %u announced twice", account, m->mailbox, m->uid);
                snprintf(needle, sizeof(needle), "%s: new mail in %s: UID %u from ", account, m->mailbox, m->uid);
                CHECK(count_lines(log, needle) == 1, "%u log lines \"%s\"", count_lines(log, needle), needle);
        }
        CHECK(total == n, "%s: %zu NewMail signals for %zu messages", account, total, n);
        snprintf(needle, sizeof(needle), "%s: new mail in ", account);
        CHECK(count_lines(log, needle) == n, "%s: %u \"new mail in\" log lines for %zu messages", account,
              count_lines(log, needle), n);
}

static char *get_last_error(const char *account) {
        sd_bus_error e = SD_BUS_ERROR_NULL;
        char *path = NULL, *v = NULL;
        int r;

        ck_assert_int_ge(sd_bus_path_encode(ROOT "/account", account, &path), 0);
        r = sd_bus_get_property_string(bus, NAME, path, ACCOUNT_IFACE, "LastError", &e, &v);
        ck_assert_msg(r >= 0, "Get LastError of %s: %s", account, e.message);
        sd_bus_error_free(&e);
        free(path);
        return v;
}

static void check_now(void) {
        sd_bus_error e = SD_BUS_ERROR_NULL;
        int r = sd_bus_call_method(bus, NAME, ROOT, MANAGER, "CheckNow", &e, NULL, NULL);

        ck_assert_msg(r >= 0, "CheckNow: %s", e.message);
        sd_bus_error_free(&e);
}

/* ---- configuration and the daemon ------------------------------------------------ */

static char cfg[32768];

static void cfg_reset(void) {
        cfg[0] = '\0';
}

__attribute__((format(printf, 1, 2))) static void cfg_add(const char *fmt, ...) {
        size_t len = strlen(cfg);
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(cfg + len, sizeof(cfg) - len, fmt, ap);
        va_end(ap);
}

/* An account on the harness's Dovecot over implicit TLS. */
static void cfg_dovecot(const char *id, const char *user, const char *mailboxes) {
        cfg_add("\n[account %s]\nhost = %s\nport = %d\ntls = implicit\nca_file = %s\nuser = %s\n"
                "password = pass-%s\nmailboxes = %s\n", id, h.host, h.imaps_port, h.ca_file, user, user, mailboxes);
}

static void cfg_write(const char *general) {
        char buf[sizeof(cfg) + 512];

        snprintf(buf, sizeof(buf), "[general]\nlog_level = info\n%s\n%s", general ? general : "", cfg);
        ck_assert_int_eq(write_text_file(d.config_path, buf), 0);
}

static void add_env(const char *e) {
        for (size_t i = 0; i < ELEMS(extra_env) - 1; i++)
                if (!extra_env[i]) {
                        extra_env[i] = e;
                        return;
                }
        ck_abort_msg("too many environment variables");
}

static const char *const trace_args[] = { "--trace", NULL };

/* Starts the daemon and waits for READY=1. */
static void daemon_start(const char *const *args) {
        const char *env[ELEMS(extra_env) + 3];
        size_t n = 0;
        unsigned ready = n_ready;

        env[n++] = bus_env;
        env[n++] = sysbus_env;
        for (size_t i = 0; extra_env[i]; i++)
                env[n++] = extra_env[i];
        env[n] = NULL;
        last_status[0] = '\0';
        /* IMAPIDLED_TEST_TRACE=1: the daemon logs the IMAP exchange (for failures) */
        if (!args && getenv("IMAPIDLED_TEST_TRACE") && strcmp(getenv("IMAPIDLED_TEST_TRACE"), "1") == 0)
                args = trace_args;
        ck_assert_int_eq(daemon_runner_start(&d, args, env, false), 0);
        WAIT_FOR(n_ready > ready, 10000, "no READY=1 from the daemon");
}

static int daemon_stop(int sig) {
        int status = daemon_runner_stop(&d, sig);

        pump(0);
        return status;
}

static unsigned deliver(const char *user, const char *mailbox, const char *subject) {
        unsigned uid = 0;

        ck_assert_int_eq(harness_mail(&h, user, mailbox, "Sender <sender@example.org>", subject, NULL, &uid), 0);
        return uid;
}

/* ---- fixture ----------------------------------------------------------------------- */

static void setup(void) {
        ck_assert_int_ge(harness_start(&h, HARNESS_DBUS), 0);
        ck_assert_int_eq(harness_mkbox(&h, "user1", "Lists"), 0);
        ck_assert_int_eq(daemon_runner_init(&d, h.dir, "faults"), 0);
        snprintf(bus_env, sizeof(bus_env), "DBUS_SESSION_BUS_ADDRESS=%s", h.dbus_address);
        snprintf(sysbus_env, sizeof(sysbus_env), "DBUS_SYSTEM_BUS_ADDRESS=unix:path=%s/no-system-bus", d.dir);
        memset(extra_env, 0, sizeof(extra_env));
        last_status[0] = '\0';
        n_ready = 0;
        n_mails = 0;
        n_states = 0;
        state_mounted = false;
        cfg_reset();
        bus_open();
}

static void proxy_stop(void);

static void teardown(void) {
        daemon_runner_done(&d);
        proxy_stop();
        stop_bg(&mock_pid);
        bus = sd_bus_flush_close_unref(bus);
        if (state_mounted)
                (void) umount2(d.state_dir, MNT_DETACH);
        state_mounted = false;
        harness_stop(&h);
}

/* ---- Dovecot's processes ------------------------------------------------------------ */

/* Kills every process of the harness's Dovecot (the master "dovecot -c
 * DIR/dovecot.conf", and "dovecot-DIR/..." by their titles) with SIGKILL and
 * waits until they are gone and reaped: a zombie master that init has not
 * reaped yet (its cmdline is empty then) still makes a new one refuse to
 * start ("Dovecot is already running"). Returns how many there were. */
static unsigned dovecot_kill(void) {
        pid_t pids[256];
        char conf[PATH_MAX + 32], title[PATH_MAX + 16];
        unsigned n = 0;
        DIR *proc = opendir("/proc");
        struct dirent *de;

        ck_assert_ptr_nonnull(proc);
        snprintf(conf, sizeof(conf), "%s/dovecot.conf", h.dir);
        snprintf(title, sizeof(title), "dovecot-%s/", h.dir);
        while ((de = readdir(proc))) {
                char path[64], argv[PATH_MAX * 3];
                pid_t pid = (pid_t) atoi(de->d_name);
                ssize_t len;
                int fd;

                if (pid <= 0)
                        continue;
                snprintf(path, sizeof(path), "/proc/%d/cmdline", (int) pid);
                fd = open(path, O_RDONLY | O_CLOEXEC);
                if (fd < 0)
                        continue;
                len = read(fd, argv, sizeof(argv) - 1);
                close(fd);
                if (len <= 0)
                        continue;
                argv[len] = '\0';
                const char *a0 = argv, *a1 = a0 + strlen(a0) + 1;
                const char *a2 = a1 < argv + len ? a1 + strlen(a1) + 1 : argv + len;
                const char *base = strrchr(a0, '/') ? strrchr(a0, '/') + 1 : a0;
                bool match = strncmp(a0, title, strlen(title)) == 0 ||
                             (strcmp(base, "dovecot") == 0 && a1 < argv + len && strcmp(a1, "-c") == 0 &&
                              a2 < argv + len && strcmp(a2, conf) == 0);
                if (!match)
                        continue;
                if (n < ELEMS(pids) && kill(pid, SIGKILL) == 0)
                        pids[n++] = pid;
        }
        closedir(proc);
        for (unsigned i = 0; i < n; i++) {
                char path[64];

                snprintf(path, sizeof(path), "/proc/%d", (int) pids[i]);
                for (int k = 0; k < 1000 && access(path, F_OK) == 0; k++)
                        pump(10);       /* the times of the daemon's signals stay right */
                ck_assert_msg(access(path, F_OK) != 0, "Dovecot process %d is still there 10 s after SIGKILL",
                              (int) pids[i]);
        }
        return n;
}

/* ---- a TCP proxy that cuts connections on cue ------------------------------------- */

#define PROXY_PAIRS 16
#define PROXY_LOG 4096

enum cut_mode {
        CUT_AFTER,              /* `after` bytes after the end of the pattern */
        CUT_IN_LITERAL,         /* half-way through the first literal after the pattern */
};

struct cut_rule {
        char pattern[64];
        enum cut_mode mode;
        unsigned after, skip;   /* skip: occurrences of the pattern to let through first */
};

struct pair {
        int c, s;               /* client (the daemon), server (Dovecot); -1: free */
        unsigned idx;           /* connection number */
        unsigned rule;          /* 1 + the rule the scan state below belongs to */
        int st;
        char win[64];
        size_t wl;
        uint64_t lit, left;
};

struct proxy {
        int lfd, port, target;
        int wake[2];
        pthread_t thread;
        bool running;
        pthread_mutex_t mu;
        /* under mu: */
        bool stop, kill_all;
        struct cut_rule rules[4];
        unsigned n_rules, next_rule, seen;
        unsigned accepted, cuts, kills;
        uint64_t accept_ms[PROXY_LOG], end_ms[PROXY_LOG];       /* by connection number */
        uint64_t cut_ms[8];
        /* proxy thread only: */
        struct pair p[PROXY_PAIRS];
};

static struct proxy px = { .lfd = -1 };

static void write_all(int fd, const char *p, size_t n) {
        while (n > 0) {
                ssize_t k = send(fd, p, n, MSG_NOSIGNAL);

                if (k < 0 && errno == EINTR)
                        continue;
                if (k <= 0)
                        return;         /* the other side is gone: its read shows it */
                p += k;
                n -= (size_t) k;
        }
}

static void reset_fd(int fd) {
        struct linger lg = { .l_onoff = 1, .l_linger = 0 };

        (void) setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
        close(fd);
}

static void pair_end(struct proxy *x, struct pair *q, bool rst) {
        if (q->idx < PROXY_LOG && !x->end_ms[q->idx])
                x->end_ms[q->idx] = now_ms();
        if (rst) {
                reset_fd(q->c);
                reset_fd(q->s);
        } else {
                close(q->c);
                close(q->s);
        }
        q->c = q->s = -1;
}

/* Scans server bytes for the current rule (under mu). Returns how many of
 * the n bytes go to the client before the cut, or n when there is none
 * (*ret_cut false). */
static size_t proxy_scan(struct proxy *x, struct pair *q, const char *buf, size_t n, bool *ret_cut) {
        struct cut_rule *r;

        *ret_cut = false;
        if (x->next_rule >= x->n_rules)
                return n;
        r = &x->rules[x->next_rule];
        if (q->rule != x->next_rule + 1) {
                q->rule = x->next_rule + 1;
                q->st = 0;
                q->wl = 0;
        }
        for (size_t i = 0; i < n; i++) {
                unsigned char b = (unsigned char) buf[i];
                size_t plen = strlen(r->pattern);

                switch (q->st) {
                case 0:
                        if (q->wl == sizeof(q->win)) {
                                memmove(q->win, q->win + 1, sizeof(q->win) - 1);
                                q->wl--;
                        }
                        q->win[q->wl++] = (char) b;
                        if (q->wl < plen || memcmp(q->win + q->wl - plen, r->pattern, plen) != 0)
                                break;
                        q->wl = 0;
                        if (x->seen++ < r->skip)
                                break;
                        if (r->mode == CUT_IN_LITERAL)
                                q->st = 2;
                        else if (r->after == 0)
                                goto cut;
                        else {
                                q->st = 1;
                                q->left = r->after;
                        }
                        break;
                case 1:
                case 6:
                        if (--q->left == 0)
                                goto cut;
                        break;
                case 2:
                        if (b == '{') {
                                q->st = 3;
                                q->lit = 0;
                        }
                        break;
                case 3:
                        if (b >= '0' && b <= '9' && q->lit < 100000000)
                                q->lit = q->lit * 10 + (b - '0');
                        else
                                q->st = b == '}' ? 4 : 2;
                        break;
                case 4:
                        q->st = b == '\r' ? 5 : 2;
                        break;
                case 5:
                        if (b != '\n') {
                                q->st = 2;
                                break;
                        }
                        q->left = q->lit / 2;
                        if (q->left == 0)
                                goto cut;
                        q->st = 6;
                        break;
                }
                continue;
cut:
                *ret_cut = true;
                if (x->cuts < ELEMS(x->cut_ms))
                        x->cut_ms[x->cuts] = now_ms();
                x->cuts++;
                x->next_rule++;
                x->seen = 0;
                return i + 1;
        }
        return n;
}

static void proxy_accept(struct proxy *x) {
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t) x->target),
                                  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        int c = accept4(x->lfd, NULL, NULL, SOCK_CLOEXEC), s;
        struct pair *q = NULL;

        if (c < 0)
                return;
        s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (s < 0 || connect(s, (struct sockaddr *) &sa, sizeof(sa)) < 0) {
                if (s >= 0)
                        close(s);
                close(c);
                return;
        }
        for (size_t i = 0; i < PROXY_PAIRS; i++)
                if (x->p[i].c < 0) {
                        q = &x->p[i];
                        break;
                }
        if (!q) {
                close(s);
                close(c);
                return;
        }
        pthread_mutex_lock(&x->mu);
        *q = (struct pair) { .c = c, .s = s, .idx = x->accepted };
        if (x->accepted < PROXY_LOG)
                x->accept_ms[x->accepted] = now_ms();
        x->accepted++;
        pthread_mutex_unlock(&x->mu);
}

static void *proxy_main(void *arg) {
        struct proxy *x = arg;

        for (;;) {
                struct pollfd pf[2 + 2 * PROXY_PAIRS];
                struct pair *owner[2 + 2 * PROXY_PAIRS];
                nfds_t n = 2;

                pf[0] = (struct pollfd) { .fd = x->lfd, .events = POLLIN };
                pf[1] = (struct pollfd) { .fd = x->wake[0], .events = POLLIN };
                for (size_t i = 0; i < PROXY_PAIRS; i++) {
                        if (x->p[i].c < 0)
                                continue;
                        owner[n] = &x->p[i];
                        pf[n++] = (struct pollfd) { .fd = x->p[i].c, .events = POLLIN };
                        owner[n] = &x->p[i];
                        pf[n++] = (struct pollfd) { .fd = x->p[i].s, .events = POLLIN };
                }
                if (poll(pf, n, -1) < 0) {
                        if (errno == EINTR)
                                continue;
                        break;
                }
                if (pf[1].revents) {
                        char c[16];
                        bool stop;

                        (void) read(x->wake[0], c, sizeof(c));
                        pthread_mutex_lock(&x->mu);
                        stop = x->stop;
                        if (x->kill_all) {
                                x->kill_all = false;
                                for (size_t i = 0; i < PROXY_PAIRS; i++)
                                        if (x->p[i].c >= 0) {
                                                pair_end(x, &x->p[i], true);
                                                x->kills++;
                                        }
                        }
                        pthread_mutex_unlock(&x->mu);
                        if (stop)
                                break;
                        continue;       /* the pairs changed */
                }
                if (pf[0].revents)
                        proxy_accept(x);
                for (nfds_t k = 2; k < n; k++) {
                        struct pair *q = owner[k];
                        bool from_client = (k % 2) == 0, cut = false;
                        char buf[16384];
                        ssize_t len;
                        size_t pass;

                        if (!pf[k].revents || q->c < 0 || pf[k].fd != (from_client ? q->c : q->s))
                                continue;
                        len = read(pf[k].fd, buf, sizeof(buf));
                        if (len <= 0) {
                                pthread_mutex_lock(&x->mu);
                                pair_end(x, q, false);
                                pthread_mutex_unlock(&x->mu);
                                continue;
                        }
                        if (from_client) {
                                write_all(q->s, buf, (size_t) len);
                                continue;
                        }
                        pthread_mutex_lock(&x->mu);
                        pass = proxy_scan(x, q, buf, (size_t) len, &cut);
                        pthread_mutex_unlock(&x->mu);
                        write_all(q->c, buf, pass);
                        if (cut) {
                                pthread_mutex_lock(&x->mu);
                                pair_end(x, q, true);
                                pthread_mutex_unlock(&x->mu);
                        }
                }
        }
        for (size_t i = 0; i < PROXY_PAIRS; i++)
                if (x->p[i].c >= 0)
                        pair_end(x, &x->p[i], false);
        return NULL;
}

/* Listens on 127.0.0.1 (px.port) and relays to 127.0.0.1:target. */
static void proxy_start(int target) {
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t sl = sizeof(sa);

        memset(&px, 0, sizeof(px));
        pthread_mutex_init(&px.mu, NULL);
        for (size_t i = 0; i < PROXY_PAIRS; i++)
                px.p[i].c = px.p[i].s = -1;
        px.target = target;
        px.lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        ck_assert_int_ge(px.lfd, 0);
        ck_assert_int_eq(bind(px.lfd, (struct sockaddr *) &sa, sizeof(sa)), 0);
        ck_assert_int_eq(listen(px.lfd, 16), 0);
        ck_assert_int_eq(getsockname(px.lfd, (struct sockaddr *) &sa, &sl), 0);
        px.port = ntohs(sa.sin_port);
        ck_assert_int_eq(pipe2(px.wake, O_CLOEXEC), 0);
        ck_assert_int_eq(pthread_create(&px.thread, NULL, proxy_main, &px), 0);
        px.running = true;
}

static void proxy_stop(void) {
        if (!px.running)
                return;
        pthread_mutex_lock(&px.mu);
        px.stop = true;
        pthread_mutex_unlock(&px.mu);
        (void) write(px.wake[1], "s", 1);
        pthread_join(px.thread, NULL);
        close(px.lfd);
        close(px.wake[0]);
        close(px.wake[1]);
        px.running = false;
}

static void proxy_add_rule(const char *pattern, enum cut_mode mode, unsigned after, unsigned skip) {
        pthread_mutex_lock(&px.mu);
        ck_assert_uint_lt(px.n_rules, ELEMS(px.rules));
        struct cut_rule *r = &px.rules[px.n_rules++];
        snprintf(r->pattern, sizeof(r->pattern), "%s", pattern);
        r->mode = mode;
        r->after = after;
        r->skip = skip;
        pthread_mutex_unlock(&px.mu);
}

static unsigned proxy_read(const unsigned *field) {
        unsigned v;

        pthread_mutex_lock(&px.mu);
        v = *field;
        pthread_mutex_unlock(&px.mu);
        return v;
}

static uint64_t proxy_read64(const uint64_t *field) {
        uint64_t v;

        pthread_mutex_lock(&px.mu);
        v = *field;
        pthread_mutex_unlock(&px.mu);
        return v;
}

/* Resets every open connection (both sides get an RST). */
static void proxy_kill_all(void) {
        pthread_mutex_lock(&px.mu);
        px.kill_all = true;
        pthread_mutex_unlock(&px.mu);
        (void) write(px.wake[1], "k", 1);
}

/* ---- TLS listeners that fail on purpose ------------------------------------------- */

struct tls_srv {
        int lfd, port;
        SSL_CTX *ctx;           /* NULL: accept, read the ClientHello, close */
        int wake[2];
        pthread_t thread;
        bool running;
        pthread_mutex_t mu;
        unsigned accepted, handshakes;
};

static void *tls_srv_main(void *arg) {
        struct tls_srv *t = arg;

        for (;;) {
                struct pollfd pf[2] = { { .fd = t->lfd, .events = POLLIN }, { .fd = t->wake[0], .events = POLLIN } };
                struct timeval tv = { .tv_sec = 3 };
                char buf[4096];
                int fd;

                if (poll(pf, 2, -1) < 0 && errno != EINTR)
                        break;
                if (pf[1].revents)
                        break;
                if (!pf[0].revents)
                        continue;
                fd = accept4(t->lfd, NULL, NULL, SOCK_CLOEXEC);
                if (fd < 0)
                        continue;
                (void) setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
                (void) setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
                pthread_mutex_lock(&t->mu);
                t->accepted++;
                pthread_mutex_unlock(&t->mu);
                if (t->ctx) {
                        SSL *ssl = SSL_new(t->ctx);

                        if (ssl && SSL_set_fd(ssl, fd) == 1 && SSL_accept(ssl) == 1) {
                                pthread_mutex_lock(&t->mu);
                                t->handshakes++;
                                pthread_mutex_unlock(&t->mu);
                                SSL_write(ssl, "* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] test\r\n", 45);
                                while (SSL_read(ssl, buf, sizeof(buf)) > 0)
                                        ;
                        }
                        SSL_free(ssl);
                        ERR_clear_error();
                } else {
                        /* the ClientHello, then nothing: a server that dies in the handshake */
                        (void) recv(fd, buf, sizeof(buf), 0);
                }
                close(fd);
        }
        return NULL;
}

static void tls_srv_start(struct tls_srv *t, const char *cert, const char *key) {
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t sl = sizeof(sa);

        memset(t, 0, sizeof(*t));
        pthread_mutex_init(&t->mu, NULL);
        if (cert) {
                t->ctx = SSL_CTX_new(TLS_server_method());
                ck_assert_ptr_nonnull(t->ctx);
                ck_assert_int_eq(SSL_CTX_use_certificate_chain_file(t->ctx, cert), 1);
                ck_assert_int_eq(SSL_CTX_use_PrivateKey_file(t->ctx, key, SSL_FILETYPE_PEM), 1);
        }
        t->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        ck_assert_int_ge(t->lfd, 0);
        ck_assert_int_eq(bind(t->lfd, (struct sockaddr *) &sa, sizeof(sa)), 0);
        ck_assert_int_eq(listen(t->lfd, 8), 0);
        ck_assert_int_eq(getsockname(t->lfd, (struct sockaddr *) &sa, &sl), 0);
        t->port = ntohs(sa.sin_port);
        ck_assert_int_eq(pipe2(t->wake, O_CLOEXEC), 0);
        ck_assert_int_eq(pthread_create(&t->thread, NULL, tls_srv_main, t), 0);
        t->running = true;
}

static void tls_srv_stop(struct tls_srv *t) {
        if (!t->running)
                return;
        (void) write(t->wake[1], "s", 1);
        pthread_join(t->thread, NULL);
        close(t->lfd);
        close(t->wake[0]);
        close(t->wake[1]);
        SSL_CTX_free(t->ctx);
        t->running = false;
}

static unsigned tls_srv_accepted(struct tls_srv *t) {
        unsigned n;

        pthread_mutex_lock(&t->mu);
        n = t->accepted;
        pthread_mutex_unlock(&t->mu);
        return n;
}

/* ---- certificates ---------------------------------------------------------------- */

static char tls_dir[PATH_MAX + 16];

static void cert_path(char *buf, size_t size, const char *name, const char *ext) {
        snprintf(buf, size, "%s/%s.%s", tls_dir, name, ext);
}

/* A leaf certificate NAME.pem / NAME.key signed by the harness's CA. */
static void make_leaf(const char *name, const char *san, const char *days) {
        char key[PATH_MAX + 64], csr[PATH_MAX + 64], ext[PATH_MAX + 64], pem[PATH_MAX + 64], ca_key[PATH_MAX];
        char text[512], *slash;

        cert_path(key, sizeof(key), name, "key");
        cert_path(csr, sizeof(csr), name, "csr");
        cert_path(ext, sizeof(ext), name, "ext");
        cert_path(pem, sizeof(pem), name, "pem");
        snprintf(ca_key, sizeof(ca_key), "%s", h.ca_file);
        slash = strrchr(ca_key, '/');
        ck_assert_ptr_nonnull(slash);
        snprintf(slash + 1, sizeof(ca_key) - (size_t) (slash + 1 - ca_key), "ca.key");
        snprintf(text, sizeof(text),
                 "basicConstraints = critical, CA:FALSE\nkeyUsage = critical, digitalSignature\n"
                 "extendedKeyUsage = serverAuth\nsubjectAltName = %s\n", san);
        ck_assert_int_eq(write_text_file(ext, text), 0);
        RUN("openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key,
            "-out", csr, "-subj", "/CN=imapidled fault test");
        RUN("openssl", "x509", "-req", "-in", csr, "-CA", h.ca_file, "-CAkey", ca_key, "-set_serial", "0x5eed",
            "-days", days, "-sha256", "-extfile", ext, "-out", pem);
}

static void make_certs(void) {
        char key[PATH_MAX + 64], pem[PATH_MAX + 64];

        snprintf(tls_dir, sizeof(tls_dir), "%s/faults-tls", h.dir);
        ck_assert_int_eq(mkdir(tls_dir, 0700), 0);
        /* issued by the CA the daemon trusts, but no longer valid */
        make_leaf("expired", "DNS:localhost, IP:127.0.0.1", "-1");
        /* valid, but for another name */
        make_leaf("wronghost", "DNS:wrong.example", "2");
        /* a CA nobody asked the daemon to trust */
        cert_path(key, sizeof(key), "other-ca", "key");
        cert_path(pem, sizeof(pem), "other-ca", "pem");
        RUN("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key,
            "-out", pem, "-subj", "/CN=imapidled test: another CA", "-days", "2");
}

/* "sha256:<hex>" of a PEM certificate. */
static void fingerprint(const char *pem_path, char *buf, size_t size) {
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned n = 0;
        FILE *f = fopen(pem_path, "r");
        X509 *x;

        ck_assert_ptr_nonnull(f);
        x = PEM_read_X509(f, NULL, NULL, NULL);
        fclose(f);
        ck_assert_ptr_nonnull(x);
        ck_assert_int_eq(X509_digest(x, EVP_sha256(), md, &n), 1);
        X509_free(x);
        ck_assert_uint_lt(7 + 2 * n, size);
        strcpy(buf, "sha256:");
        for (unsigned i = 0; i < n; i++)
                sprintf(buf + 7 + 2 * i, "%02x", md[i]);
}

/* ---- /proc --------------------------------------------------------------------- */

static long vm_rss_kib(pid_t pid) {
        char path[64], line[256];
        long kib = -1;
        FILE *f;

        snprintf(path, sizeof(path), "/proc/%d/status", (int) pid);
        f = fopen(path, "r");
        ck_assert_ptr_nonnull(f);
        while (fgets(line, sizeof(line), f))
                if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
                        break;
        fclose(f);
        return kib;
}

/* The number of open fds, and what they are (for a failure message). */
static unsigned fd_list(pid_t pid, char *buf, size_t size) {
        char path[64];
        unsigned n = 0;
        size_t off = 0;
        DIR *dir;
        struct dirent *de;

        snprintf(path, sizeof(path), "/proc/%d/fd", (int) pid);
        dir = opendir(path);
        ck_assert_ptr_nonnull(dir);
        buf[0] = '\0';
        while ((de = readdir(dir))) {
                char link[PATH_MAX + 64], target[PATH_MAX];
                ssize_t len;

                if (de->d_name[0] == '.')
                        continue;
                n++;
                snprintf(link, sizeof(link), "%s/%s", path, de->d_name);
                len = readlink(link, target, sizeof(target) - 1);
                target[len > 0 ? len : 0] = '\0';
                if (off < size) {
                        int k = snprintf(buf + off, size - off, "%s -> %s\n", de->d_name, target);
                        if (k > 0)
                                off += (size_t) k;
                }
        }
        closedir(dir);
        return n;
}

/* =================================================================================== */
/* ---- server faults ----------------------------------------------------------------- */

/* Dovecot goes down while mail keeps arriving (into the Maildir, as an MTA
 * with Maildir delivery does) and comes back: everything is announced once,
 * right after the restart and afterwards. */
START_TEST(test_server_restart) {
        static const char *const subjects[] = { "restart-1", "restart-2", "restart-3 (down)", "restart-4 (down)",
                                                "restart-5 (down)", "restart-6 (back)", "restart-7 (back)" };
        uint64_t t, detect, back, caught;
        size_t mark;

        cfg_dovecot("main", "user1", "INBOX; Lists");
        cfg_write(NULL);
        daemon_start(NULL);
        wait_status("2/2 mailboxes idle", 20000);
        deliver("user1", "INBOX", subjects[0]);
        deliver("user1", "Lists", subjects[1]);
        wait_mail("main", subjects[0], 15000);
        wait_mail("main", subjects[1], 15000);

        mark = log_mark();
        t = now_ms();
        ck_assert_int_eq(harness_server_stop(&h), 0);
        detect = wait_state("main", "backoff", 1, 15000) - t;
        deliver("user1", "INBOX", subjects[2]);
        deliver("user1", "Lists", subjects[3]);
        /* a few failed reconnects meanwhile */
        pump(2500);
        deliver("user1", "INBOX", subjects[4]);
        CHECK(mail_count("main", subjects[2]) == 0, "announced while Dovecot was down");

        back = now_ms();
        ck_assert_int_eq(harness_server_start(&h), 0);
        caught = 0;
        for (size_t i = 2; i <= 4; i++) {
                uint64_t at = wait_mail("main", subjects[i], CATCH_UP_MS);
                caught = at > caught ? at : caught;
        }
        deliver("user1", "INBOX", subjects[5]);
        deliver("user1", "Lists", subjects[6]);
        wait_mail("main", subjects[5], 15000);
        wait_mail("main", subjects[6], 15000);
        assert_exactly_once("main", subjects, ELEMS(subjects));
        fprintf(stderr, "faults: dovecot stopped: noticed in %" PRIu64 " ms; %u reconnect attempts while down; "
                "started again -> 3 messages caught up in %" PRIu64 " ms\n", detect,
                count_str(log_since(mark), "reconnecting in "), caught - back);
}
END_TEST

/* Dovecot killed with SIGKILL (every process: no BYE, sockets closed by the
 * kernel) at two moments after a delivery: before Dovecot has told the IDLE
 * client and while it may be telling it. Mail delivered meanwhile into the
 * Maildir; Dovecot started again; each message announced once. */
START_TEST(test_server_sigkill) {
        static const char *const subjects[] = { "kill-0", "kill-1a", "kill-1b (down)", "kill-2a", "kill-2b (down)",
                                                "kill-3" };
        static const unsigned delay_ms[] = { 0, 600 };
        size_t k = 1;

        cfg_dovecot("main", "user1", "INBOX; Lists");
        cfg_write(NULL);
        daemon_start(NULL);
        wait_status("2/2 mailboxes idle", 20000);
        deliver("user1", "INBOX", subjects[0]);
        wait_mail("main", subjects[0], 15000);

        for (size_t round = 0; round < ELEMS(delay_ms); round++) {
                unsigned backoffs = state_n("main", "backoff");
                uint64_t t, detect, back, caught;

                deliver("user1", round ? "Lists" : "INBOX", subjects[k]);
                usleep(delay_ms[round] * 1000);
                t = now_ms();
                CHECK(dovecot_kill() > 0, "no Dovecot process found");
                detect = wait_state("main", "backoff", backoffs + 1, 15000) - t;
                deliver("user1", "INBOX", subjects[k + 1]);
                back = now_ms();
                ck_assert_int_eq(harness_server_start(&h), 0);
                caught = wait_mail("main", subjects[k], CATCH_UP_MS);
                uint64_t at = wait_mail("main", subjects[k + 1], CATCH_UP_MS);
                caught = at > caught ? at : caught;
                fprintf(stderr, "faults: dovecot SIGKILL %u ms after a delivery: noticed in %" PRIu64 " ms; "
                        "restarted -> caught up in %" PRIu64 " ms\n", delay_ms[round], detect, caught - back);
                k += 2;
        }
        deliver("user1", "INBOX", subjects[k]);
        wait_mail("main", subjects[k], 15000);
        assert_exactly_once("main", subjects, ELEMS(subjects));
}
END_TEST

/* ---- connection resets at chosen bytes --------------------------------------------- */

/* The daemon talks to Dovecot's plaintext port through the proxy (tls = none
 * on loopback), so the proxy sees where responses and literals are. */
static void start_via_proxy(void) {
        proxy_start(h.imap_port);
        cfg_add("\n[account main]\nhost = 127.0.0.1\nport = %d\ntls = none\nuser = user1\npassword = pass-user1\n"
                "mailboxes = INBOX\n", px.port);
        cfg_write(NULL);
        daemon_start(NULL);
        wait_status("1/1 mailbox idle", 20000);
}

/* A new message's FETCH response is cut 12 bytes in; the resync after the
 * reconnect is cut again, in the middle of EXAMINE's response. Announced
 * once, and so is the next. */
START_TEST(test_reset_mid_response) {
        static const char *const subjects[] = { "cut-1", "cut-2" };
        uint64_t at;

        start_via_proxy();
        proxy_add_rule(" FETCH (UID ", CUT_AFTER, 12, 0);
        proxy_add_rule("[UIDVALIDITY ", CUT_AFTER, 3, 0);
        deliver("user1", "INBOX", subjects[0]);
        at = wait_mail("main", subjects[0], CATCH_UP_MS);
        CHECK(proxy_read(&px.cuts) == 2, "%u cuts, not 2", proxy_read(&px.cuts));
        CHECK(proxy_read(&px.accepted) == 3, "%u connections, not 3", proxy_read(&px.accepted));
        fprintf(stderr, "faults: reset mid-FETCH, then mid-EXAMINE on the reconnect: announced %" PRIu64
                " ms after the first cut\n", at - proxy_read64(&px.cut_ms[0]));
        deliver("user1", "INBOX", subjects[1]);
        wait_mail("main", subjects[1], 15000);
        assert_exactly_once("main", subjects, ELEMS(subjects));
}
END_TEST

/* Subjects in raw UTF-8 come back from Dovecot as literals in ENVELOPE. Two
 * such messages; the second one's literal is cut half-way (the first may be
 * in the same response, announced before the cut, or in one of its own). */
START_TEST(test_reset_mid_literal) {
        static const char *const subjects[] = { "lit-1 Gr\xc3\xbc\xc3\x9f" "e aus K\xc3\xb6ln",
                                                "lit-2 Gr\xc3\xbc\xc3\x9f" "e aus M\xc3\xbcnchen",
                                                "lit-3 \xc3\xa9t\xc3\xa9" };
        uint64_t at;

        start_via_proxy();
        proxy_add_rule(" FETCH (UID ", CUT_IN_LITERAL, 0, 1);
        deliver("user1", "INBOX", subjects[0]);
        deliver("user1", "INBOX", subjects[1]);
        wait_mail("main", subjects[0], CATCH_UP_MS);
        at = wait_mail("main", subjects[1], CATCH_UP_MS);
        CHECK(proxy_read(&px.cuts) == 1, "%u cuts, not 1", proxy_read(&px.cuts));
        CHECK(proxy_read(&px.accepted) == 2, "%u connections, not 2", proxy_read(&px.accepted));
        fprintf(stderr, "faults: reset inside a FETCH literal: announced %" PRIu64 " ms after the cut\n",
                at - proxy_read64(&px.cut_ms[0]));
        deliver("user1", "INBOX", subjects[2]);
        wait_mail("main", subjects[2], 15000);
        assert_exactly_once("main", subjects, ELEMS(subjects));
}
END_TEST

/* ---- suspend and resume ------------------------------------------------------------ */

static int gdbus_call(const char *const *extra) {
        const char *argv[32] = { "gdbus", "call", "--address", h.dbus_address, "--dest", "org.freedesktop.login1",
                                 "--object-path", "/org/freedesktop/login1", "--method" };
        size_t n = 9;

        for (size_t i = 0; extra[i] && n < ELEMS(argv) - 1; i++)
                argv[n++] = extra[i];
        argv[n] = NULL;
        return run_argv(argv, NULL, 0, true);
}

static void logind_emit(bool sleeping) {
        const char *argv[] = { "org.freedesktop.DBus.Mock.EmitSignal", "org.freedesktop.login1.Manager",
                               "PrepareForSleep", "b", sleeping ? "[<true>]" : "[<false>]", NULL };

        ck_assert_int_eq(gdbus_call(argv), 0);
}

static void logind_start(void) {
        static char env[PATH_MAX + 64];
        const char *argv[] = { "/usr/bin/python3", "-m", "dbusmock", "--system", "--template", "logind", NULL };
        const char *envv[] = { env, NULL };
        const char *ping[] = { "org.freedesktop.DBus.Peer.Ping", NULL };

        snprintf(env, sizeof(env), "DBUS_SYSTEM_BUS_ADDRESS=%s", h.dbus_address);
        mock_pid = spawn_bg(argv, NULL, envv);
        for (int i = 0; i < 100 && gdbus_call(ping) != 0; i++)
                usleep(100 * 1000);
        ck_assert_msg(gdbus_call(ping) == 0, "the dbusmock logind did not come up");
}

/* One sleep: PrepareForSleep(true), the daemon frozen (SIGSTOP) as in a real
 * suspend, mail in both mailboxes meanwhile, then PrepareForSleep(false) and
 * the daemon thawed. With kick, the server also dropped the connection
 * during the sleep (a NAT or the server timing out), so the mail can only
 * come through the resync of the new connection; without, Dovecot's EXISTS
 * wait unread in the socket and race the reconnect. */
static void sleep_once(const char *inbox_subject, const char *lists_subject, bool kick) {
        uint64_t resumed, caught, at;
        size_t mark = log_mark();

        logind_emit(true);
        wait_log_since(mark, "the system is going to sleep", 1, 10000);
        ck_assert_int_eq(kill(d.pid, SIGSTOP), 0);
        if (kick)
                ck_assert_int_ge(harness_doveadm(&h, NULL, 0, "kick", "user1", NULL), 0);
        deliver("user1", "INBOX", inbox_subject);
        deliver("user1", "Lists", lists_subject);
        usleep(1500 * 1000);    /* Dovecot has told the frozen daemon's socket, if it still could */
        logind_emit(false);
        resumed = now_ms();
        ck_assert_int_eq(kill(d.pid, SIGCONT), 0);
        caught = wait_mail("main", inbox_subject, CATCH_UP_MS);
        at = wait_mail("main", lists_subject, CATCH_UP_MS);
        caught = at > caught ? at : caught;
        wait_log_since(mark, "reconnecting now", 1, 5000);
        fprintf(stderr, "faults: resume%s -> 2 messages from the sleep announced in %" PRIu64 " ms\n",
                kick ? " (connection dropped by the server meanwhile)" : "", caught - resumed);
}

START_TEST(test_suspend_resume) {
        static const char *const subjects[] = { "sleep-0", "sleep-1 (asleep)", "sleep-2 (asleep)",
                                                "sleep-3 (asleep, kicked)", "sleep-4 (asleep, kicked)", "sleep-5" };

        logind_start();
        snprintf(sysbus_env, sizeof(sysbus_env), "DBUS_SYSTEM_BUS_ADDRESS=%s", h.dbus_address);
        cfg_dovecot("main", "user1", "INBOX; Lists");
        cfg_write(NULL);
        daemon_start(NULL);
        wait_status("2/2 mailboxes idle", 20000);
        deliver("user1", "INBOX", subjects[0]);
        wait_mail("main", subjects[0], 15000);

        sleep_once(subjects[1], subjects[2], false);
        wait_status("2/2 mailboxes idle", 20000);
        sleep_once(subjects[3], subjects[4], true);
        wait_status("2/2 mailboxes idle", 20000);
        deliver("user1", "INBOX", subjects[5]);
        wait_mail("main", subjects[5], 15000);
        assert_exactly_once("main", subjects, ELEMS(subjects));
        stop_bg(&mock_pid);
}
END_TEST

/* ---- TLS ------------------------------------------------------------------------- */

struct tls_case {
        const char *account;
        const char *state;              /* "error" or "backoff" */
        const char *const expect[3];    /* in LastError and in the log line: what, and what to do */
};

/* Five accounts that cannot get through TLS and a healthy one: each broken
 * one says why on the bus (LastError, AccountStateChanged) and in the log,
 * with its name, and none of them keeps the healthy one from announcing. */
START_TEST(test_tls_faults) {
        static const struct tls_case cases[] = {
                { "expired", "error", { "certificate has expired", "must be renewed", "clock" } },
                { "wronghost", "error", { "hostname mismatch", "not valid for \"localhost\"", "set host to" } },
                { "unknownca", "error", { "unable to get local issuer certificate", "set ca_file",
                                          "tls_fingerprint = sha256:" } },
                { "pinned", "error", { "fingerprint mismatch", "expected sha256:", "update tls_fingerprint" } },
                { "halfway", "backoff", { "TLS handshake failed: connection closed by peer", "is port",
                                          "right for tls = implicit" } },
        };
        static const char *const subjects[] = { "tls-ok-1", "tls-ok-2", "tls-ok-3" };
        char pem[PATH_MAX + 64], key[PATH_MAX + 64], other_ca[PATH_MAX + 64], pin[128];
        struct tls_srv expired, wronghost, halfway;
        unsigned accepted[3];

        make_certs();
        cert_path(pem, sizeof(pem), "expired", "pem");
        cert_path(key, sizeof(key), "expired", "key");
        tls_srv_start(&expired, pem, key);
        fingerprint(pem, pin, sizeof(pin));     /* a certificate Dovecot does not have */
        cert_path(pem, sizeof(pem), "wronghost", "pem");
        cert_path(key, sizeof(key), "wronghost", "key");
        tls_srv_start(&wronghost, pem, key);
        tls_srv_start(&halfway, NULL, NULL);
        cert_path(other_ca, sizeof(other_ca), "other-ca", "pem");

        cfg_dovecot("main", "user1", "INBOX");
        cfg_add("\n[account expired]\nhost = localhost\nport = %d\nca_file = %s\nuser = u\npassword = p\n",
                expired.port, h.ca_file);
        cfg_add("\n[account wronghost]\nhost = localhost\nport = %d\nca_file = %s\nuser = u\npassword = p\n",
                wronghost.port, h.ca_file);
        cfg_add("\n[account unknownca]\nhost = localhost\nport = %d\nca_file = %s\nuser = user2\n"
                "password = pass-user2\n", h.imaps_port, other_ca);
        cfg_add("\n[account pinned]\nhost = localhost\nport = %d\nca_file = %s\ntls_fingerprint = %s\nuser = user2\n"
                "password = pass-user2\n", h.imaps_port, h.ca_file, pin);
        cfg_add("\n[account halfway]\nhost = localhost\nport = %d\nca_file = %s\nuser = u\npassword = p\n",
                halfway.port, h.ca_file);
        cfg_write(NULL);
        daemon_start(NULL);
        wait_state("main", "idle", 1, 20000);

        for (size_t i = 0; i < ELEMS(cases); i++) {
                const struct tls_case *c = &cases[i];
                char needle[64], line[1024];
                char *le;

                wait_state(c->account, c->state, 1, 20000);
                le = get_last_error(c->account);
                snprintf(needle, sizeof(needle), "%s/INBOX: ", c->account);
                find_line(log_text(), needle, line, sizeof(line));
                for (size_t j = 0; j < ELEMS(c->expect) && c->expect[j]; j++) {
                        CHECK(strstr(le, c->expect[j]), "%s: LastError \"%s\" lacks \"%s\"", c->account, le,
                              c->expect[j]);
                        CHECK(strstr(line, c->expect[j]), "%s: log line \"%s\" lacks \"%s\"", c->account, line,
                              c->expect[j]);
                }
                CHECK(strcmp(state_rec(c->account, c->state, false)->message, le) == 0,
                      "%s: AccountStateChanged said \"%s\", LastError \"%s\"", c->account,
                      state_rec(c->account, c->state, false)->message, le);
                fprintf(stderr, "faults: tls %s: %s: %s\n", c->account, c->state, line);
                free(le);
        }

        accepted[0] = tls_srv_accepted(&expired);
        accepted[1] = tls_srv_accepted(&wronghost);
        accepted[2] = tls_srv_accepted(&halfway);
        for (size_t i = 0; i < ELEMS(subjects); i++)
                deliver("user1", "INBOX", subjects[i]);
        for (size_t i = 0; i < ELEMS(subjects); i++)
                wait_mail("main", subjects[i], 15000);
        assert_exactly_once("main", subjects, ELEMS(subjects));
        for (size_t i = 0; i < ELEMS(cases); i++)
                CHECK(mail_total(cases[i].account) == 0 && state_n(cases[i].account, "idle") == 0,
                      "%s got through", cases[i].account);
        /* Certificate errors wait for the user (60 s and up); a dropped
         * handshake is retried with the growing transient backoff. */
        CHECK(tls_srv_accepted(&expired) == accepted[0] && tls_srv_accepted(&wronghost) == accepted[1],
              "certificate errors were retried within seconds: %u, %u connections", tls_srv_accepted(&expired),
              tls_srv_accepted(&wronghost));
        CHECK(tls_srv_accepted(&halfway) <= accepted[2] + 4, "the dropped handshake was retried %u times in %d s",
              tls_srv_accepted(&halfway) - accepted[2], QUIET_MS / 1000 + 2);
        tls_srv_stop(&expired);
        tls_srv_stop(&wronghost);
        tls_srv_stop(&halfway);
}
END_TEST

/* ---- authentication ----------------------------------------------------------------- */

/* A wrong password, through the proxy, so that each login attempt is one
 * connection whose end (the daemon hangs up after the NO) and the next
 * accept are timed there: the pauses follow the auth backoff (first step
 * $IMAPIDLED_AUTH_BACKOFF_MIN_MS = 1 s here, 60 s by default, doubling,
 * jitter in [d/2, d]), i.e. they grow and never hammer. Dovecot saw one
 * failed password per connection. The healthy account announces meanwhile. */
START_TEST(test_wrong_password_backoff) {
        static const char *const subjects[] = { "auth-ok-1", "auth-ok-2" };
        enum { ATTEMPTS = 4, BASE_MS = 1000 };
        uint64_t gap[ATTEMPTS - 1];
        char *le, *dovelog, path[PATH_MAX + 32];

        add_env("IMAPIDLED_AUTH_BACKOFF_MIN_MS=1000");
        proxy_start(h.imaps_port);
        cfg_dovecot("main", "user1", "INBOX");
        cfg_add("\n[account badpw]\nhost = 127.0.0.1\nport = %d\nca_file = %s\nuser = user2\n"
                "password = not-the-password-of-user2\n", px.port, h.ca_file);
        cfg_write(NULL);
        daemon_start(NULL);
        wait_state("main", "idle", 1, 20000);
        deliver("user1", "INBOX", subjects[0]);
        WAIT_FOR(proxy_read(&px.accepted) >= ATTEMPTS && proxy_read64(&px.end_ms[ATTEMPTS - 1]) != 0, 40000,
                 "only %u login attempts", proxy_read(&px.accepted));
        deliver("user1", "INBOX", subjects[1]);

        for (unsigned i = 0; i + 1 < ATTEMPTS; i++) {
                uint64_t lo = (uint64_t) BASE_MS << i >> 1, hi = (uint64_t) BASE_MS << i;

                gap[i] = proxy_read64(&px.accept_ms[i + 1]) - proxy_read64(&px.end_ms[i]);
                fprintf(stderr, "faults: wrong password: pause before attempt %u: %" PRIu64 " ms (backoff %" PRIu64
                        "..%" PRIu64 " ms)\n", i + 2, gap[i], lo, hi);
                /* at least the backoff; at most the backoff and a connect (on 2 shared cores) */
                CHECK(gap[i] + 50 >= lo && gap[i] <= hi + T(500), "pause %u: %" PRIu64 " ms, not in %" PRIu64
                      "..%" PRIu64 " ms", i + 1, gap[i], lo, hi);
                CHECK(i == 0 || gap[i] + 50 >= gap[i - 1], "the pauses did not grow: %" PRIu64 " after %" PRIu64,
                      gap[i], gap[i - 1]);
        }
        wait_state("badpw", "error", 1, 1000);
        le = get_last_error("badpw");
        CHECK(strstr(le, "authentication as user2 failed") && strstr(le, "check the password"),
              "LastError: \"%s\"", le);
        free(le);
        snprintf(path, sizeof(path), "%s/dovecot.log", h.dir);
        dovelog = read_file(path);
        unsigned mismatches = count_lines_with(dovelog, "(user2,", "Password mismatch");
        CHECK(mismatches >= ATTEMPTS - 1 && mismatches <= proxy_read(&px.accepted),
              "Dovecot logged %u failed passwords for %u connections", mismatches, proxy_read(&px.accepted));
        free(dovelog);
        wait_mail("main", subjects[0], 15000);
        wait_mail("main", subjects[1], 15000);
        assert_exactly_once("main", subjects, ELEMS(subjects));
        proxy_stop();
}
END_TEST

/* password_command exits 3 with a message on stderr: an error on that
 * account that quotes it, no login attempt at all, retries on the auth
 * schedule; the other account goes on. A reload with a working command
 * brings it back. */
START_TEST(test_password_command_fails) {
        static const char *const subjects[] = { "pwcmd-1", "pwcmd-2" };
        char runs_path[PATH_MAX + 32], path[PATH_MAX + 32], *runs, *le, *dovelog;
        unsigned n_runs, ready;

        add_env("IMAPIDLED_AUTH_BACKOFF_MIN_MS=500");
        snprintf(runs_path, sizeof(runs_path), "%s/pwcmd-runs", d.dir);
        cfg_dovecot("main", "user1", "INBOX");
        cfg_add("\n[account vault]\nhost = %s\nport = %d\nca_file = %s\nuser = user2\n"
                "password_command = echo run >> %s; echo 'the vault is locked' >&2; exit 3\n", h.host, h.imaps_port,
                h.ca_file, runs_path);
        cfg_write(NULL);
        daemon_start(NULL);
        wait_state("main", "idle", 1, 20000);
        wait_state("vault", "error", 1, 15000);
        le = get_last_error("vault");
        CHECK(strstr(le, "password_command failed") && strstr(le, "3") && strstr(le, "the vault is locked"),
              "LastError: \"%s\"", le);
        fprintf(stderr, "faults: failing password_command: LastError \"%s\"\n", le);
        free(le);
        deliver("user1", "INBOX", subjects[0]);
        wait_mail("main", subjects[0], 15000);
        pump(3000);
        runs = read_file(runs_path);
        n_runs = count_str(runs, "run");
        free(runs);
        /* 0.25-0.5 s, 0.5-1 s, 1-2 s ... in the 3-4 s since the first run */
        CHECK(n_runs >= 2 && n_runs <= 5, "password_command ran %u times in about 4 s", n_runs);
        snprintf(path, sizeof(path), "%s/dovecot.log", h.dir);
        dovelog = read_file(path);
        CHECK(!strstr(dovelog, "user=<user2>") && !strstr(dovelog, "(user2,"), "user2 tried to log in");
        free(dovelog);

        cfg_reset();
        cfg_dovecot("main", "user1", "INBOX");
        cfg_add("\n[account vault]\nhost = %s\nport = %d\nca_file = %s\nuser = user2\n"
                "password_command = echo pass-user2\n", h.host, h.imaps_port, h.ca_file);
        cfg_write(NULL);
        ready = n_ready;
        kill(d.pid, SIGHUP);
        WAIT_FOR(n_ready > ready, 10000, "no READY=1 after the reload");
        wait_state("vault", "idle", 1, 15000);
        le = get_last_error("vault");
        CHECK(le[0] == '\0', "LastError after the fix: \"%s\"", le);
        free(le);
        deliver("user2", "INBOX", "pwcmd-vault");
        wait_mail("vault", "pwcmd-vault", 15000);
        deliver("user1", "INBOX", subjects[1]);
        wait_mail("main", subjects[1], 15000);
        assert_exactly_once("main", subjects, ELEMS(subjects));
}
END_TEST

/* A password_command that prints PREFIX1SUFFIX, PREFIX2SUFFIX ... one more
 * on every run, as an OAuth helper hands out fresh tokens. */
static void write_token_script(char *cmd, size_t size, const char *prefix, const char *suffix) {
        char script[PATH_MAX + 32], text[PATH_MAX * 2 + 256];

        snprintf(script, sizeof(script), "%s/token.sh", d.dir);
        snprintf(text, sizeof(text),
                 "#!/bin/sh\n"
                 "n=$(cat '%s/token.n' 2>/dev/null || echo 0)\n"
                 "n=$((n + 1))\n"
                 "echo $n > '%s/token.n'\n"
                 "echo \"%s$n%s\"\n", d.dir, d.dir, prefix, suffix);
        ck_assert_int_eq(write_text_file(script, text), 0);
        ck_assert_int_eq(chmod(script, 0700), 0);
        snprintf(cmd, size, "%s", script);
}

static const char *xoauth2_line(char *buf, size_t size, const char *user, const char *token) {
        char *b64 = NULL;

        ck_assert_int_eq(sasl_build_initial_base64(SASL_XOAUTH2, user, token, strlen(token), "127.0.0.1", 0, &b64),
                         0);
        snprintf(buf, size, "%%t AUTHENTICATE XOAUTH2 %s", b64);
        free(b64);
        return buf;
}

#define FS_GREETING FAKE_SEND_STR("* OK [CAPABILITY IMAP4rev1 IDLE SASL-IR AUTH=XOAUTH2] fake ready\r\n")
#define FS_LOGGED_IN FAKE_SEND_STR("%t OK [CAPABILITY IMAP4rev1 IDLE] logged in\r\n")
#define FS_SYNC(exists, uidnext, all, unseen)                                                           \
        FAKE_EXPECT_LINE("%t EXAMINE INBOX"),                                                           \
        FAKE_SEND_STR("* " exists " EXISTS\r\n* OK [UIDVALIDITY 100] v\r\n* OK [UIDNEXT " uidnext "] n\r\n" \
                      "%t OK [READ-ONLY] done\r\n"),                                                    \
        FAKE_EXPECT_LINE("%t UID SEARCH ALL"),                                                          \
        FAKE_SEND_STR("* SEARCH " all "\r\n%t OK\r\n"),                                                 \
        FAKE_EXPECT_LINE("%t UID SEARCH UNSEEN UNDELETED"),                                             \
        FAKE_SEND_STR("* SEARCH " unseen "\r\n%t OK\r\n")
#define FS_ENVELOPE(subject) "ENVELOPE (\"Mon, 1 Jan 2024 00:00:00 +0000\" \"" subject "\" " \
                             "((\"A\" NIL \"a\" \"example.org\")) NIL NIL NIL NIL NIL NIL \"<m@x>\")"

/* An OAuth server ends the session because the token expired (after it had
 * been up for more than the daemon's 10 s minimum): the daemon fetches a
 * fresh token and logs in again at once, without an error or backoff state
 * on the bus, and goes on announcing. */
START_TEST(test_token_expired_bye) {
        char cmd[PATH_MAX + 32], auth1[512], auth2[512];
        struct fake_server *fake;
        uint64_t bye_at;
        char *le;

        write_token_script(cmd, sizeof(cmd), "ya29.fault-test-token-", "");
        const struct fake_step script[] = {
                FS_GREETING,
                FAKE_EXPECT_LINE(xoauth2_line(auth1, sizeof(auth1), "me@example.org", "ya29.fault-test-token-1")),
                FS_LOGGED_IN,
                FS_SYNC("2", "3", "1 2", "2"),
                FAKE_EXPECT_LINE("%t IDLE"),
                FAKE_SEND_STR("+ idling\r\n"),
                FAKE_SLEEP_MS(10500),
                FAKE_SEND_STR("* BYE Session invalidated - AccessTokenExpired\r\n"),
                FAKE_STEP(FAKE_CLOSE),
                FAKE_STEP(FAKE_ACCEPT),
                FS_GREETING,
                FAKE_EXPECT_LINE(xoauth2_line(auth2, sizeof(auth2), "me@example.org", "ya29.fault-test-token-2")),
                FS_LOGGED_IN,
                FS_SYNC("2", "3", "1 2", "2"),
                FAKE_EXPECT_LINE("%t IDLE"),
                FAKE_SEND_STR("+ idling\r\n* 3 EXISTS\r\n"),
                FAKE_EXPECT_LINE("DONE"),
                FAKE_SEND_STR("%t OK idle done\r\n"),
                FAKE_EXPECT_LINE("%t UID FETCH 3:* (UID FLAGS ENVELOPE INTERNALDATE RFC822.SIZE)"),
                FAKE_SEND_STR("* 3 FETCH (UID 3 FLAGS () " FS_ENVELOPE("after the new token") " RFC822.SIZE 10)\r\n"
                              "%t OK\r\n"),
                FAKE_EXPECT_LINE("%t IDLE"),
                FAKE_SEND_STR("+ idling\r\n"),
                FAKE_STEP_MS(FAKE_STALL, 600000),
        };

        fake = fake_server_start(script, ELEMS(script));
        ck_assert_ptr_nonnull(fake);
        cfg_add("\n[account oauth]\nhost = 127.0.0.1\nport = %d\ntls = none\nauth = xoauth2\nuser = me@example.org\n"
                "password_command = %s\n", fake_server_port(fake), cmd);
        cfg_write(NULL);
        daemon_start(NULL);
        /* the fake server sends the BYE 10.5 s after "+ idling" */
        bye_at = wait_state("oauth", "idle", 1, 15000) + 10500;
        wait_log_since(0, "the token expired; authenticating again", 1, 20000);
        wait_mail("oauth", "after the new token", 15000);
        wait_state("oauth", "idle", 2, 5000);
        CHECK(fake_server_connections(fake) == 2, "%u connections", fake_server_connections(fake));
        CHECK(state_n("oauth", "error") == 0 && state_n("oauth", "backoff") == 0,
              "the token expiry showed as error (%u) or backoff (%u)", state_n("oauth", "error"),
              state_n("oauth", "backoff"));
        le = get_last_error("oauth");
        CHECK(le[0] == '\0', "LastError: \"%s\"", le);
        free(le);
        CHECK(!fake_server_error(fake)[0], "fake server: %s", fake_server_error(fake));
        fprintf(stderr, "faults: token-expired BYE: reconnected at once, logged in with a fresh token, announced "
                "about %" PRIu64 " ms after the BYE; no error or backoff state\n",
                mail_at("oauth", "after the new token") - bye_at);
        {
                static const char *const s[] = { "after the new token" };
                assert_exactly_once("oauth", s, 1);
        }
        fake_server_free(fake);
}
END_TEST

/* ---- the state directory ------------------------------------------------------------ */

static const char *mounts_unavailable(void) {
        int status;
        pid_t pid;

        if (geteuid() != 0)
                return "not root";
        fflush(stdout);
        fflush(stderr);
        pid = fork();
        if (pid < 0)
                return "fork failed";
        if (pid == 0) {
                char dir[] = "/tmp/imapidled-mount-probe.XXXXXX";

                if (unshare(CLONE_NEWNS) < 0 || mount("none", "/", "none", MS_REC | MS_PRIVATE, NULL) < 0)
                        _exit(10);
                if (!mkdtemp(dir))
                        _exit(11);
                int r = mount("tmpfs", dir, "tmpfs", 0, "size=64k");
                if (r == 0)
                        umount2(dir, MNT_DETACH);
                rmdir(dir);
                _exit(r == 0 ? 0 : 12);
        }
        if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status))
                return "the probe died";
        switch (WEXITSTATUS(status)) {
        case 0:
                return NULL;
        case 10:
                return "cannot create a mount namespace";
        default:
                return "cannot mount tmpfs";
        }
}

/* This test process (and the daemon it starts) gets a mount namespace of its
 * own: the tmpfs goes away with them, however the test ends. */
static void mount_state_tmpfs(const char *size) {
        char opts[64];

        ck_assert_int_eq(unshare(CLONE_NEWNS), 0);
        ck_assert_int_eq(mount("none", "/", "none", MS_REC | MS_PRIVATE, NULL), 0);
        ck_assert_int_eq(mkdir(d.state_dir, 0700), 0);
        snprintf(opts, sizeof(opts), "size=%s,mode=0700", size);
        ck_assert_int_eq(mount("tmpfs", d.state_dir, "tmpfs", MS_NOSUID | MS_NODEV, opts), 0);
        state_mounted = true;
}

static void remount_state(bool read_only, const char *size) {
        char opts[64];

        snprintf(opts, sizeof(opts), "size=%s,mode=0700", size);
        ck_assert_msg(mount("tmpfs", d.state_dir, "tmpfs", MS_REMOUNT | MS_NOSUID | MS_NODEV | (read_only ? MS_RDONLY : 0),
                            opts) == 0, "remount: %s", strerror(errno));
}

/* The warning about a failed save: it names the file and says what to do. */
static void check_save_warning(size_t mark, const char *error, const char *advice) {
        char line[2048], state_file[PATH_MAX + 64];

        wait_log_since(mark, "Cannot save mailbox state", 1, 10000);
        find_line(log_since(mark), "Cannot save mailbox state", line, sizeof(line));
        snprintf(state_file, sizeof(state_file), "%s/.main.state.tmp", d.state_dir);
        CHECK(strstr(line, state_file) && strstr(line, error) && strstr(line, advice),
              "the warning lacks \"%s\", \"%s\" or \"%s\": %s", state_file, error, advice, line);
        fprintf(stderr, "faults: %s\n", line);
        find_line(log_since(mark), "main: cannot save the state of INBOX", line, sizeof(line));
        CHECK(line[0], "no per-message warning");
}

/* After the fault is gone: the next save works and says so; then the daemon
 * is killed (kill -9), a message arrives while it is down, and the restart
 * announces that one (the saved point is where it should be) and nothing
 * again. */
static void check_recovered(size_t mark, const char *subject, const char *while_down) {
        deliver("user1", "INBOX", subject);
        wait_mail("main", subject, 15000);
        wait_log_since(mark, "written again", 1, 10000);
        daemon_stop(SIGKILL);
        deliver("user1", "INBOX", while_down);
        daemon_start(NULL);
        wait_mail("main", while_down, 20000);
        wait_status("1/1 mailbox idle", 20000);
}

/* The state directory becomes read-only (remounted) between two messages:
 * every message is still announced once, the daemon says what failed where
 * and what to do, catches up on disk when it can write again, and a restart
 * after that announces nothing twice. */
START_TEST(test_state_read_only) {
        static const char *const subjects[] = { "ro-1", "ro-2 (read-only)", "ro-3 (read-only)", "ro-4 (writable)",
                                                "ro-5 (while killed)" };
        size_t mark;

        mount_state_tmpfs("1m");
        cfg_dovecot("main", "user1", "INBOX");
        cfg_write(NULL);
        daemon_start(NULL);
        wait_status("1/1 mailbox idle", 20000);
        deliver("user1", "INBOX", subjects[0]);
        wait_mail("main", subjects[0], 15000);

        mark = log_mark();
        remount_state(true, "1m");
        deliver("user1", "INBOX", subjects[1]);
        wait_mail("main", subjects[1], 15000);
        deliver("user1", "INBOX", subjects[2]);
        wait_mail("main", subjects[2], 15000);
        check_save_warning(mark, "Read-only file system", "writable (or set $XDG_STATE_HOME");

        remount_state(false, "1m");
        check_recovered(mark, subjects[3], subjects[4]);
        assert_exactly_once("main", subjects, ELEMS(subjects));
}
END_TEST

/* The state directory's file system fills up (a 64 KiB tmpfs and a filler
 * file): the same, with ENOSPC. */
START_TEST(test_state_disk_full) {
        static const char *const subjects[] = { "full-1", "full-2 (full)", "full-3 (full)", "full-4 (space again)",
                                                "full-5 (while killed)" };
        char filler[PATH_MAX + 32], block[4096];
        size_t mark;
        int fd;

        mount_state_tmpfs("64k");
        cfg_dovecot("main", "user1", "INBOX");
        cfg_write(NULL);
        daemon_start(NULL);
        wait_status("1/1 mailbox idle", 20000);
        deliver("user1", "INBOX", subjects[0]);
        wait_mail("main", subjects[0], 15000);

        mark = log_mark();
        snprintf(filler, sizeof(filler), "%s/filler", d.state_dir);
        fd = open(filler, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
        ck_assert_int_ge(fd, 0);
        memset(block, 'x', sizeof(block));
        while (write(fd, block, sizeof(block)) > 0)
                ;
        ck_assert_int_eq(errno, ENOSPC);
        close(fd);
        deliver("user1", "INBOX", subjects[1]);
        wait_mail("main", subjects[1], 15000);
        deliver("user1", "INBOX", subjects[2]);
        wait_mail("main", subjects[2], 15000);
        check_save_warning(mark, "No space left on device", "free some space on the file system of");

        ck_assert_int_eq(unlink(filler), 0);
        check_recovered(mark, subjects[3], subjects[4]);
        assert_exactly_once("main", subjects, ELEMS(subjects));
}
END_TEST

/* The state file is damaged while the daemon is stopped (one digit changed:
 * the checksum no longer matches). The daemon says which file and what it
 * does about it, counts what is in the mailbox as it would on a first start
 * (so mail that came while it was down is not announced: by design, see
 * include/state-store.h), announces new mail once and writes a good file. */
START_TEST(test_state_corrupt) {
        static const char *const subjects[] = { "corrupt-1", "corrupt-3 (after)", "corrupt-4 (restarted)" };
        char path[PATH_MAX + 32], line[2048], *text, *digit;
        size_t mark;

        cfg_dovecot("main", "user1", "INBOX");
        cfg_write(NULL);
        daemon_start(NULL);
        wait_status("1/1 mailbox idle", 20000);
        deliver("user1", "INBOX", subjects[0]);
        wait_mail("main", subjects[0], 15000);
        ck_assert_int_eq(WEXITSTATUS(daemon_stop(SIGTERM)), 0);

        snprintf(path, sizeof(path), "%s/main.state", d.state_dir);
        text = read_file(path);
        digit = strstr(text, "INBOX ");
        CHECK(digit, "no INBOX line in %s:\n%s", path, text);
        digit += strlen("INBOX ");
        *digit = *digit == '1' ? '2' : '1';
        ck_assert_int_eq(write_text_file(path, text), 0);
        free(text);
        deliver("user1", "INBOX", "corrupt-2 (while down: counted)");

        mark = log_mark();
        daemon_start(NULL);
        wait_status("1/1 mailbox idle", 20000);
        find_line(log_since(mark), "is damaged", line, sizeof(line));
        CHECK(strstr(line, path) && strstr(line, "checksum") && strstr(line, "written anew at the next change"),
              "no warning naming %s, the fault and what happens: \"%s\"", path, line);
        fprintf(stderr, "faults: %s\n", line);
        deliver("user1", "INBOX", subjects[1]);
        wait_mail("main", subjects[1], 15000);
        ck_assert_int_eq(WEXITSTATUS(daemon_stop(SIGTERM)), 0);
        mark = log_mark();
        daemon_start(NULL);
        wait_status("1/1 mailbox idle", 20000);
        CHECK(!strstr(log_since(mark), "damaged"), "the file is still damaged after a save");
        deliver("user1", "INBOX", subjects[2]);
        wait_mail("main", subjects[2], 15000);
        assert_exactly_once("main", subjects, ELEMS(subjects));
        CHECK(mail_count("main", "corrupt-2 (while down: counted)") == 0, "counted mail was announced");
}
END_TEST

/* ---- churn ------------------------------------------------------------------------- */

/* $IMAPIDLED_SOAK_CYCLES, else 200 (20 for an instrumented daemon); even. */
static unsigned soak_cycles(void) {
        const char *e = getenv("IMAPIDLED_SOAK_CYCLES");
        int n = e ? atoi(e) : 0;

        if (n <= 0)
                n = instrumented() ? 20 : 200;
        return (unsigned) (n + 1) / 2 * 2;
}

/* logind as far as the daemon can tell: this process owns the name on the
 * private "system" bus and says the system resumed. */
static void emit_resume(void) {
        ck_assert_int_ge(sd_bus_emit_signal(bus, "/org/freedesktop/login1", "org.freedesktop.login1.Manager",
                                            "PrepareForSleep", "b", 0), 0);
}

/* One connect/disconnect cycle: odd ones are a resume (the daemon drops its
 * connection and makes a new one), even ones an RST from the proxy (the
 * daemon goes into backoff) and CheckNow (it reconnects at once). */
static void churn_cycle(unsigned i) {
        unsigned idle = state_n("main", "idle");
        if (i % 2) {
                emit_resume();
        } else {
                unsigned backoff = state_n("main", "backoff");

                proxy_kill_all();
                WAIT_FOR(state_n("main", "backoff") > backoff, 15000, "cycle %u: no backoff after the reset", i);
                check_now();
        }
        WAIT_FOR(state_n("main", "idle") > idle, 15000, "cycle %u: not idle again", i);
}

/* The config for reload i: the same "main" always; every other one adds
 * "second" and changes a notification key. */
static void churn_config(unsigned i) {
        cfg_reset();
        cfg_add("\n[account main]\nhost = 127.0.0.1\nport = %d\nca_file = %s\nuser = user1\npassword = pass-user1\n",
                px.port, h.ca_file);
        if (i % 2)
                cfg_dovecot("second", "user2", "INBOX");
        cfg_write(i % 2 ? "notify_show_content = false\n" : NULL);
}

static void settle(void) {
        wait_status("1/1 mailbox idle", 20000);
        /* the state writer's thread ends after 5 idle seconds */
        pump(6000);
}

#define RSS_BOUND_KIB 512

/* Connect/disconnect cycles and reloads: the fds afterwards are the fds
 * before, and VmRSS grows by less than RSS_BOUND_KIB. The first cycles warm up
 * (malloc arenas of the worker threads, OpenSSL's caches) before the first
 * measurement. A message now and then must still come through exactly once. */
START_TEST(test_churn) {
        unsigned cycles = soak_cycles(), warm = 20, n_subjects = 0, idle_before;
        static char subj_buf[64][32];
        const char *subjects[64];
        char fds0[8192], fds1[8192], fds2[8192];
        long rss0, rss1, rss2;
        unsigned nfd0, nfd1, nfd2;
        uint64_t t0, t_cycles, t_reloads;

        snprintf(sysbus_env, sizeof(sysbus_env), "DBUS_SYSTEM_BUS_ADDRESS=%s", h.dbus_address);
        ck_assert_int_ge(sd_bus_request_name(bus, "org.freedesktop.login1", 0), 0);
        proxy_start(h.imaps_port);
        churn_config(0);
        daemon_start(NULL);
        wait_status("1/1 mailbox idle", 20000);
        wait_state("main", "idle", 1, 5000);

        /* the first announcement starts the notification thread (GLib's
         * gmain, gdbus and pool threads, a bus connection): before the
         * first measurement */
        subjects[n_subjects++] = "churn-warm-up";
        deliver("user1", "INBOX", subjects[0]);
        for (unsigned i = 0; i < warm; i++)
                churn_cycle(i);
        wait_mail("main", subjects[0], CATCH_UP_MS);
        settle();
        rss0 = vm_rss_kib(d.pid);
        nfd0 = fd_list(d.pid, fds0, sizeof(fds0));

        t0 = now_ms();
        for (unsigned i = 0; i < cycles; i++) {
                churn_cycle(i);
                if (i % (cycles / 8 ? cycles / 8 : 1) == 0 && n_subjects < ELEMS(subjects)) {
                        snprintf(subj_buf[n_subjects], sizeof(subj_buf[0]), "churn-%u", i);
                        subjects[n_subjects] = subj_buf[n_subjects];
                        deliver("user1", "INBOX", subjects[n_subjects++]);
                }
        }
        t_cycles = now_ms() - t0;
        for (unsigned i = 0; i < n_subjects; i++)
                wait_mail("main", subjects[i], CATCH_UP_MS);
        settle();
        rss1 = vm_rss_kib(d.pid);
        nfd1 = fd_list(d.pid, fds1, sizeof(fds1));

        idle_before = state_n("main", "idle");
        t0 = now_ms();
        for (unsigned i = 1; i <= cycles; i++) {
                unsigned ready = n_ready;

                churn_config(i);
                ck_assert_int_eq(kill(d.pid, SIGHUP), 0);
                WAIT_FOR(n_ready > ready, 10000, "reload %u: no READY=1", i);
                if (i % 10 == 0)        /* now and then, everything up (even: "main" alone) */
                        wait_status("1/1 mailbox idle", 20000);
        }
        t_reloads = now_ms() - t0;
        settle();
        /* "main" never changed: it kept its connection through every reload */
        CHECK(state_n("main", "idle") == idle_before, "main reconnected %u times during the reloads",
              state_n("main", "idle") - idle_before);
        rss2 = vm_rss_kib(d.pid);
        nfd2 = fd_list(d.pid, fds2, sizeof(fds2));

        fprintf(stderr, "faults: churn: %u connect/disconnect cycles in %.1f s (%.0f ms each): VmRSS %ld -> %ld KiB, "
                "fds %u -> %u\n", cycles, t_cycles / 1000.0, (double) t_cycles / cycles, rss0, rss1, nfd0, nfd1);
        fprintf(stderr, "faults: churn: %u reloads in %.1f s: VmRSS %ld -> %ld KiB, fds %u -> %u\n", cycles,
                t_reloads / 1000.0, rss1, rss2, nfd1, nfd2);
        CHECK(nfd1 == nfd0, "fds after the cycles: %u, before: %u\nbefore:\n%s\nafter:\n%s", nfd1, nfd0, fds0, fds1);
        CHECK(nfd2 == nfd0, "fds after the reloads: %u, before: %u\nbefore:\n%s\nafter:\n%s", nfd2, nfd0, fds0, fds2);
        /* instrumented (ASan's quarantine, valgrind): sizes mean nothing */
        CHECK(instrumented() || rss1 - rss0 < RSS_BOUND_KIB, "VmRSS grew by %ld KiB over %u cycles", rss1 - rss0,
              cycles);
        CHECK(instrumented() || rss2 - rss0 < RSS_BOUND_KIB, "VmRSS grew by %ld KiB over %u cycles and %u reloads",
              rss2 - rss0, cycles, cycles);
        assert_exactly_once("main", subjects, n_subjects);
        proxy_stop();
}
END_TEST

/* ---- secrets ----------------------------------------------------------------------- */

static const char b64_alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static void b64(const unsigned char *in, size_t n, char *out) {
        size_t o = 0;

        for (size_t i = 0; i < n; i += 3) {
                uint32_t v = (uint32_t) in[i] << 16 | (i + 1 < n ? (uint32_t) in[i + 1] << 8 : 0) |
                             (i + 2 < n ? in[i + 2] : 0);

                out[o++] = b64_alphabet[v >> 18 & 63];
                out[o++] = b64_alphabet[v >> 12 & 63];
                out[o++] = i + 1 < n ? b64_alphabet[v >> 6 & 63] : '=';
                out[o++] = i + 2 < n ? b64_alphabet[v & 63] : '=';
        }
        out[o] = '\0';
}

/* The secret as it must never appear: itself, and the characters that every
 * base64 encoding of a stream containing it has, whatever its offset in the
 * stream (0, 1 or 2 bytes before it in a 3-byte group): with k bytes before
 * it, output characters 4*ceil(k/3).. up to the last full group are fixed by
 * the secret alone. */
struct needles {
        char s[4][256];
        size_t n;
};

static void secret_needles(const char *secret, struct needles *nd) {
        size_t len = strlen(secret);

        memset(nd, 0, sizeof(*nd));
        snprintf(nd->s[nd->n++], sizeof(nd->s[0]), "%s", secret);
        for (size_t k = 0; k < 3; k++) {
                unsigned char in[256] = { 0 };
                char out[400];
                size_t first = k ? 4 : 0;               /* the group holding the k filler bytes */
                size_t full = (k + len) / 3 * 4;        /* groups without padding */

                memcpy(in + k, secret, len);
                b64(in, k + len, out);
                if (full > first + 4)
                        snprintf(nd->s[nd->n++], sizeof(nd->s[0]), "%.*s", (int) (full - first), out + first);
        }
}

static void assert_no_secret(const char *what, const char *text, const char *secret) {
        struct needles nd;

        secret_needles(secret, &nd);
        for (size_t i = 0; i < nd.n; i++) {
                const char *p = strstr(text, nd.s[i]);

                CHECK(!p, "%s contains %s \"%s\" (from \"%s\"): ...%.80s...", what, i ? "the base64 of" : "the secret",
                      nd.s[i], secret, p > text + 40 ? p - 40 : text);
        }
}

/* A full session with --trace while dbus-monitor records the private bus:
 * "dove" logs in to Dovecot with a password, idles, announces, is kicked
 * (doveadm kick) and reconnects; "wrongpw" fails to log in; "oauth" uses
 * XOAUTH2 against the fake server, whose first answer is an authentication
 * failure, then logs in with the next token, announces, is dropped and logs
 * in again. Neither the passwords nor the tokens (nor their base64, at any
 * offset) appear in the daemon's log and trace, on the bus, in LastError
 * and AccountStateChanged, in imapidlectl status or in the state files. */
START_TEST(test_secrets_stay_secret) {
        static const char *const tokens[] = { "ya29.SECRET-token-1-Hq3", "ya29.SECRET-token-2-Hq3",
                                              "ya29.SECRET-token-3-Hq3" };
        static const char *const passwords[] = { "pass-user1", "Wr0ng-pass-user2-Zx" };
        char cmd[PATH_MAX + 32], auth[3][512], monitor_log[PATH_MAX + 32], status_out[16384];
        char objects[65536], state_path[PATH_MAX + 32], *monitor, *le_wrong, *le_oauth_err, *state_text;
        struct fake_server *fake;
        pid_t monitor_pid;
        static const char *const args[] = { "--trace", NULL };

        write_token_script(cmd, sizeof(cmd), "ya29.SECRET-token-", "-Hq3");
        const struct fake_step script[] = {
                FS_GREETING,
                FAKE_EXPECT_LINE(xoauth2_line(auth[0], sizeof(auth[0]), "me@example.org", tokens[0])),
                /* {"status":"401","schemes":"bearer","scope":"https://mail.google.com/"} */
                FAKE_SEND_STR("+ eyJzdGF0dXMiOiI0MDEiLCJzY2hlbWVzIjoiYmVhcmVyIiwic2NvcGUiOiJodHRwczovL21haWwuZ29vZ2xl"
                              "LmNvbS8ifQ==\r\n"),
                FAKE_EXPECT_LINE(""),
                FAKE_SEND_STR("%t NO [AUTHENTICATIONFAILED] Invalid credentials (Failure)\r\n"),
                FAKE_STEP(FAKE_WAIT_EOF),
                FAKE_STEP(FAKE_ACCEPT),
                FS_GREETING,
                FAKE_EXPECT_LINE(xoauth2_line(auth[1], sizeof(auth[1]), "me@example.org", tokens[1])),
                FS_LOGGED_IN,
                FS_SYNC("2", "3", "1 2", "2"),
                FAKE_EXPECT_LINE("%t IDLE"),
                FAKE_SEND_STR("+ idling\r\n* 3 EXISTS\r\n"),
                FAKE_EXPECT_LINE("DONE"),
                FAKE_SEND_STR("%t OK idle done\r\n"),
                FAKE_EXPECT_LINE("%t UID FETCH 3:* (UID FLAGS ENVELOPE INTERNALDATE RFC822.SIZE)"),
                FAKE_SEND_STR("* 3 FETCH (UID 3 FLAGS () " FS_ENVELOPE("oauth mail") " RFC822.SIZE 10)\r\n%t OK\r\n"),
                FAKE_EXPECT_LINE("%t IDLE"),
                FAKE_SEND_STR("+ idling\r\n"),
                FAKE_SLEEP_MS(300),
                FAKE_SEND_STR("* BYE going away for maintenance\r\n"),
                FAKE_STEP(FAKE_CLOSE),
                FAKE_STEP(FAKE_ACCEPT),
                FS_GREETING,
                FAKE_EXPECT_LINE(xoauth2_line(auth[2], sizeof(auth[2]), "me@example.org", tokens[2])),
                FS_LOGGED_IN,
                FS_SYNC("3", "4", "1 2 3", "2 3"),
                FAKE_EXPECT_LINE("%t IDLE"),
                FAKE_SEND_STR("+ idling\r\n"),
                FAKE_STEP_MS(FAKE_STALL, 600000),
        };

        add_env("IMAPIDLED_AUTH_BACKOFF_MIN_MS=300");
        snprintf(monitor_log, sizeof(monitor_log), "%s/dbus-monitor.log", d.dir);
        {
                const char *argv[] = { "dbus-monitor", "--address", h.dbus_address, NULL };
                monitor_pid = spawn_bg(argv, monitor_log, NULL);
        }
        fake = fake_server_start(script, ELEMS(script));
        ck_assert_ptr_nonnull(fake);
        cfg_add("\n[account dove]\nhost = %s\nport = %d\nca_file = %s\nuser = user1\n"
                "password_command = printf '%%s\\n' %s\n", h.host, h.imaps_port, h.ca_file, passwords[0]);
        cfg_add("\n[account wrongpw]\nhost = %s\nport = %d\nca_file = %s\nuser = user2\npassword = %s\n", h.host,
                h.imaps_port, h.ca_file, passwords[1]);
        cfg_add("\n[account oauth]\nhost = 127.0.0.1\nport = %d\ntls = none\nauth = xoauth2\nuser = me@example.org\n"
                "password_command = %s\n", fake_server_port(fake), cmd);
        cfg_write(NULL);
        /* the monitor is listening before anything happens */
        WAIT_FOR(file_contains(monitor_log, "NameAcquired"), 10000, "dbus-monitor did not start");
        daemon_start(args);

        wait_state("dove", "idle", 1, 20000);
        wait_state("wrongpw", "error", 1, 20000);
        wait_state("oauth", "error", 1, 20000);
        /* what a user sees while it fails */
        le_wrong = get_last_error("wrongpw");
        le_oauth_err = strdup(state_rec("oauth", "error", false)->message);
        {
                const char *argv[] = { "gdbus", "call", "--address", h.dbus_address, "--dest", NAME, "--object-path",
                                       ROOT, "--method", "org.freedesktop.DBus.ObjectManager.GetManagedObjects", NULL };
                ck_assert_int_eq(run_argv(argv, objects, sizeof(objects), false), 0);
        }
        {
                static char env_bus[PATH_MAX + 64];
                char exe[PATH_MAX];
                const char *b = getenv("IMAPIDLED_BUILDDIR");

                snprintf(exe, sizeof(exe), "%s/imapidlectl", b ? b : "build");
                snprintf(env_bus, sizeof(env_bus), "DBUS_SESSION_BUS_ADDRESS=%s", h.dbus_address);
                putenv(env_bus);
                const char *argv[] = { exe, "status", NULL };
                ck_assert_int_ge(run_argv(argv, status_out, sizeof(status_out), false), 0);
        }
        CHECK(strstr(le_wrong, "authentication as user2 failed"), "wrongpw: LastError \"%s\"", le_wrong);
        CHECK(strstr(le_oauth_err, "XOAUTH2"), "oauth: error \"%s\"", le_oauth_err);
        CHECK(strstr(status_out, "wrongpw"), "imapidlectl status:\n%s", status_out);

        wait_mail("oauth", "oauth mail", 20000);
        wait_state("oauth", "idle", 2, 20000);          /* after the BYE */
        deliver("user1", "INBOX", "dove mail");
        wait_mail("dove", "dove mail", 15000);
        ck_assert_int_ge(harness_doveadm(&h, NULL, 0, "kick", "user1", NULL), 0);
        wait_state("dove", "idle", 2, CATCH_UP_MS);
        CHECK(!fake_server_error(fake)[0], "fake server: %s", fake_server_error(fake));
        daemon_stop(SIGTERM);
        pump(500);
        stop_bg(&monitor_pid);

        monitor = read_file(monitor_log);
        snprintf(state_path, sizeof(state_path), "%s/oauth.state", d.state_dir);
        state_text = read_file(state_path);
        /* the search is not vacuous: each source holds what it should */
        CHECK(strstr(log_text(), "C: a1 AUTHENTICATE XOAUTH2 <redacted>") &&
                      strstr(log_text(), "AUTHENTICATE PLAIN <redacted>") && strstr(log_text(), "S: "),
              "the trace lacks the redacted logins");
        CHECK(strstr(monitor, "member=NewMail") && strstr(monitor, "authentication as user2 failed") &&
                      strstr(monitor, "XOAUTH2"),
              "dbus-monitor did not see the session:\n%.2000s", monitor);
        CHECK(strstr(objects, "LastError"), "GetManagedObjects: %s", objects);
        CHECK(strstr(state_text, "INBOX"), "no state file");

        const char *const secrets[] = { passwords[0], passwords[1], tokens[0], tokens[1], tokens[2] };
        for (size_t i = 0; i < ELEMS(secrets); i++) {
                assert_no_secret("the daemon's log and trace", log_text(), secrets[i]);
                assert_no_secret("the D-Bus traffic", monitor, secrets[i]);
                assert_no_secret("wrongpw's LastError", le_wrong, secrets[i]);
                assert_no_secret("oauth's error", le_oauth_err, secrets[i]);
                assert_no_secret("GetManagedObjects", objects, secrets[i]);
                assert_no_secret("imapidlectl status", status_out, secrets[i]);
                assert_no_secret("the state file", state_text, secrets[i]);
        }
        /* the whole initial responses too (the user is in them) */
        for (size_t i = 0; i < 3; i++) {
                const char *b = strrchr(auth[i], ' ') + 1;

                CHECK(!strstr(log_text(), b) && !strstr(monitor, b), "an XOAUTH2 initial response leaked");
        }
        fprintf(stderr, "faults: secrets: %zu bytes of log and trace, %zu bytes of D-Bus traffic, LastError, "
                "imapidlectl status and state files: no password or token\n", strlen(log_text()), strlen(monitor));
        free(monitor);
        free(state_text);
        free(le_wrong);
        free(le_oauth_err);
        fake_server_free(fake);
}
END_TEST

/* ---- main --------------------------------------------------------------------------- */

static TCase *tcase(Suite *s, const char *name, int timeout) {
        TCase *tc = tcase_create(name);

        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_set_timeout(tc, (double) timeout * timeout_scale());
        suite_add_tcase(s, tc);
        return tc;
}

int main(void) {
        Suite *s = suite_create("faults");
        const char *why = mounts_unavailable(), *require = getenv("IMAPIDLED_REQUIRE_ROOT");
        SRunner *sr;
        TCase *tc;
        int failed;

        tc = tcase(s, "server", 120);
        tcase_add_test(tc, test_server_restart);
        tcase_add_test(tc, test_server_sigkill);
        tc = tcase(s, "proxy", 60);
        tcase_add_test(tc, test_reset_mid_response);
        tcase_add_test(tc, test_reset_mid_literal);
        tc = tcase(s, "suspend", 60);
        tcase_add_test(tc, test_suspend_resume);
        tc = tcase(s, "tls", 90);
        tcase_add_test(tc, test_tls_faults);
        tc = tcase(s, "auth", 90);
        tcase_add_test(tc, test_wrong_password_backoff);
        tcase_add_test(tc, test_password_command_fails);
        tcase_add_test(tc, test_token_expired_bye);
        tc = tcase(s, "disk", 90);
        if (why) {
                fprintf(stderr, "faults: SKIPPING the read-only and full state directory tests: %s\n", why);
                if (require && *require && strcmp(require, "0") != 0) {
                        fprintf(stderr, "faults: IMAPIDLED_REQUIRE_ROOT is set: failing\n");
                        return EXIT_FAILURE;
                }
        } else {
                tcase_add_test(tc, test_state_read_only);
                tcase_add_test(tc, test_state_disk_full);
        }
        tcase_add_test(tc, test_state_corrupt);
        tc = tcase(s, "churn", 120 + (int) soak_cycles() / 2);
        tcase_add_test(tc, test_churn);
        tc = tcase(s, "secrets", 90);
        tcase_add_test(tc, test_secrets_stay_secret);

        sr = srunner_create(s);
        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
