/* SPDX-License-Identifier: MIT */
/*
 * secret.c: the four secret sources, on a real sd-event loop with real
 * /bin/sh children. Checked: the first-line rules, error texts (exit status,
 * signal, timeout, stderr excerpt cleaned and cut), bounded output, a child
 * that closes stdout early or leaves a descendant holding it, the child's
 * environment, signal state, fds and process group, that the loop keeps
 * running meanwhile, cancellation in every phase (no callback, process group
 * killed, child reaped, also when the loop is freed during the grace
 * period), the readable-file warning, credentials, and that neither error
 * texts nor log lines ever hold the secret. Every test ends with no child
 * process left behind.
 *
 * The daemon blocks SIGCHLD before it starts threads; the fixture does the
 * same before anything else, although the pidfd-based reaping does not need
 * it (one test runs with SIGCHLD unblocked to show that).
 */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <systemd/sd-event.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "macro.h"
#include "secret.h"
#include "suites.h"
#include "utf8.h"

#define SEC 1000000ULL
#define MSEC 1000ULL

static char tmpdir[64];

/* ------------------------------------------------------------------------ */
/* helpers */

struct result {
        unsigned calls;
        bool got_secret;
        char secret[256];
        char error[1024];
        struct secret_request *q;       /* as returned by secret_fetch */
        bool matched;                   /* the callback got that same pointer */
        uint64_t at;                    /* when the callback ran */
        struct secret_request *cancel_in_callback[2]; /* cancelled from within done */
};

static uint64_t now_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * SEC + (uint64_t) ts.tv_nsec / 1000U;
}

static void on_done(struct secret_request *q, const char *secret, const char *error, void *userdata) {
        struct result *r = userdata;

        r->calls++;
        r->matched = q == r->q;
        r->at = now_usec();
        ck_assert_msg((secret == NULL) != (error == NULL), "exactly one of secret and error");
        if (secret) {
                ck_assert_ptr_nonnull(secret);
                r->got_secret = true;
                snprintf(r->secret, sizeof(r->secret), "%s", secret);
        } else
                snprintf(r->error, sizeof(r->error), "%s", error);

        for (size_t i = 0; i < ELEMENTSOF(r->cancel_in_callback); i++)
                if (r->cancel_in_callback[i])
                        ck_assert_ptr_null(secret_cancel(r->cancel_in_callback[i]));
}

/* Runs the loop until r has a call or timeout_usec passes. */
static void run_until_done(sd_event *e, struct result *r, uint64_t timeout_usec) {
        uint64_t deadline = now_usec() + timeout_usec;

        while (r->calls == 0 && now_usec() < deadline)
                ck_assert_int_ge(sd_event_run(e, 10 * MSEC), 0);
}

static void run_for(sd_event *e, uint64_t usec) {
        uint64_t deadline = now_usec() + usec;

        while (now_usec() < deadline)
                ck_assert_int_ge(sd_event_run(e, 10 * MSEC), 0);
}

/* Fetches on a loop of its own and waits for the result. */
static void fetch(enum secret_source src, const char *value, uint64_t timeout_usec, struct result *r) {
        sd_event *e = NULL;

        *r = (struct result) {};
        ck_assert_int_ge(sd_event_new(&e), 0);
        ck_assert_int_eq(secret_fetch(e, src, value, timeout_usec, on_done, r, &r->q), 0);
        ck_assert_ptr_nonnull(r->q);
        ck_assert_uint_eq(r->calls, 0); /* never from within secret_fetch() */
        run_until_done(e, r, 10 * SEC);
        ck_assert_uint_eq(r->calls, 1);
        ck_assert(r->matched);
        run_for(e, 20 * MSEC);
        ck_assert_uint_eq(r->calls, 1);
        sd_event_unref(e);
}

static void expect_secret(const char *command, const char *secret) {
        struct result r;

        fetch(SECRET_COMMAND, command, 0, &r);
        ck_assert_msg(r.got_secret, "%s: expected the secret, got error \"%s\"", command, r.error);
        ck_assert_str_eq(r.secret, secret);
}

static void expect_error(enum secret_source src, const char *value, const char *error) {
        struct result r;

        fetch(src, value, 0, &r);
        ck_assert_msg(!r.got_secret, "%s: expected an error, got a secret", value);
        ck_assert_str_eq(r.error, error);
}

/* Is any child of ours left, zombie or not? */
static bool have_children(void) {
        siginfo_t si = {};

        return waitid(P_ALL, 0, &si, WEXITED | WNOHANG | WNOWAIT) == 0;
}

/* Live processes in process group pgid. An orphaned member that died is a
 * zombie until PID 1 reaps it: not ours, not counted. */
static int group_members(pid_t pgid) {
        struct dirent *de;
        DIR *d = opendir("/proc");
        int n = 0;

        ck_assert_ptr_nonnull(d);
        while ((de = readdir(d))) {
                char path[300], buf[512], state;
                int ppid, pgrp;
                const char *p;
                FILE *f;

                if (de->d_name[0] < '0' || de->d_name[0] > '9')
                        continue;
                snprintf(path, sizeof(path), "/proc/%s/stat", de->d_name);
                f = fopen(path, "re");
                if (!f)
                        continue;
                if (!fgets(buf, sizeof(buf), f)) {
                        fclose(f);
                        continue;
                }
                fclose(f);
                p = strrchr(buf, ')');
                if (p && sscanf(p + 1, " %c %d %d", &state, &ppid, &pgrp) == 3 && pgrp == pgid && state != 'Z' &&
                    state != 'X')
                        n++;
        }
        closedir(d);
        return n;
}

/* SIGKILLed members may take a moment to die after the leader was reaped. */
static bool group_gone_within(pid_t pgid, uint64_t usec) {
        uint64_t deadline = now_usec() + usec;

        while (group_members(pgid) > 0 && now_usec() < deadline)
                usleep(10 * MSEC);
        return group_members(pgid) == 0;
}

static bool pid_exists(pid_t pid) {
        char path[64];

        snprintf(path, sizeof(path), "/proc/%d", (int) pid);
        return access(path, F_OK) == 0;
}

/* The pid a command wrote to tmpdir/name, running the loop until it is there. */
static pid_t wait_for_pid_file(sd_event *e, const char *name) {
        uint64_t deadline = now_usec() + 5 * SEC;
        char path[128];

        snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
        while (now_usec() < deadline) {
                FILE *f = fopen(path, "re");
                int pid = 0;

                if (f) {
                        int n = fscanf(f, "%d", &pid);

                        fclose(f);
                        if (n == 1 && pid > 0)
                                return pid;
                }
                ck_assert_int_ge(sd_event_run(e, 10 * MSEC), 0);
        }
        ck_abort_msg("%s never appeared", path);
        return 0;
}

/* Runs the loop until pid is gone from /proc (reaped) or timeout_usec
 * passes; returns whether it is gone. */
static bool run_until_gone(sd_event *e, pid_t pid, uint64_t timeout_usec) {
        uint64_t deadline = now_usec() + timeout_usec;

        while (pid_exists(pid) && now_usec() < deadline)
                ck_assert_int_ge(sd_event_run(e, 10 * MSEC), 0);
        return !pid_exists(pid);
}

static void write_file(const char *path, const char *content, mode_t mode) {
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(write(fd, content, strlen(content)), (ssize_t) strlen(content));
        ck_assert_int_eq(fchmod(fd, mode), 0);
        close(fd);
}

static uint64_t cpu_usec(void) {
        struct rusage ru;

        getrusage(RUSAGE_SELF, &ru);
        return (uint64_t) (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * SEC +
               (uint64_t) (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

struct log_record {
        unsigned warnings;
        char last_warning[512];
        char all[16384];                /* every line, for secret checks */
};

static void log_record_sink(int level, const char *line, void *userdata) {
        struct log_record *rec = userdata;
        size_t n = strlen(rec->all);

        if (level == LOG_WARNING) {
                rec->warnings++;
                snprintf(rec->last_warning, sizeof(rec->last_warning), "%s", line);
        }
        snprintf(rec->all + n, sizeof(rec->all) - n, "%s\n", line);
}

static int rm_entry(const char *path, const struct stat *st, int type, struct FTW *ftw) {
        return remove(path);
}

static void setup(void) {
        sigset_t ss;

        /* first of all, as the daemon's main does */
        sigemptyset(&ss);
        sigaddset(&ss, SIGCHLD);
        ck_assert_int_eq(sigprocmask(SIG_BLOCK, &ss, NULL), 0);

        snprintf(tmpdir, sizeof(tmpdir), "/tmp/test-secret-XXXXXX");
        ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void teardown(void) {
        log_set_sink(NULL, NULL);
        log_set_max_level(LOG_INFO);
        unsetenv("CREDENTIALS_DIRECTORY");
        (void) nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
        ck_assert_msg(!have_children(), "a child process was left behind");
}

/* ------------------------------------------------------------------------ */
/* password_command: results */

START_TEST(test_command_echo) {
        expect_secret("echo hunter2", "hunter2");
        expect_secret("printf 'a\\r\\nb'", "a");
        expect_secret("printf 'no newline'", "no newline");
        expect_secret("printf ' spaces kept \\n'", " spaces kept ");
        expect_secret("echo 'p\xc3\xa4ss w\xc3\xb6rd'", "p\xc3\xa4ss w\xc3\xb6rd");
}
END_TEST

START_TEST(test_command_prints_nothing) {
        expect_error(SECRET_COMMAND, "true", "password_command printed nothing");
        expect_error(SECRET_COMMAND, "echo", "password_command printed nothing");
        expect_error(SECRET_COMMAND, "printf '\\r\\nsecond line\\n'", "password_command printed nothing");
        expect_error(SECRET_COMMAND, "echo only to stderr >&2", "password_command printed nothing");
        expect_error(SECRET_COMMAND, "", "password_command printed nothing");
        expect_error(SECRET_COMMAND, "printf 'a\\0b\\n'", "password_command output: NUL byte in the first line");
}
END_TEST

START_TEST(test_command_exit_status) {
        struct result r;

        expect_error(SECRET_COMMAND, "echo 'gpg: decryption failed: No secret key' >&2; exit 3",
                     "password_command failed (exit status 3): gpg: decryption failed: No secret key");
        expect_error(SECRET_COMMAND, "exit 2", "password_command failed (exit status 2)");
        /* only the first line of stderr, trailing \r and blanks dropped */
        expect_error(SECRET_COMMAND, "printf 'first  \\r\\nsecond\\n' >&2; exit 1",
                     "password_command failed (exit status 1): first");
        /* the shell's own words differ between dash and bash */
        fetch(SECRET_COMMAND, "/nonexistent/command", 0, &r);
        ck_assert_msg(strncmp(r.error, "password_command failed (exit status 127): ", 43) == 0, "%s", r.error);
        ck_assert_msg(strstr(r.error, "/nonexistent/command") != NULL, "%s", r.error);
}
END_TEST

START_TEST(test_command_stderr_cleaned) {
        struct result r;
        const char *prefix = "password_command failed (exit status 1): ";
        const char *detail;

        /* escape sequences, tabs, invalid UTF-8, and far more than 200 bytes */
        fetch(SECRET_COMMAND,
              "printf 'bad\\033[31m red\\tx\\377 ' >&2; head -c 1000 /dev/zero | tr '\\0' y >&2; exit 1", 0, &r);
        ck_assert(!r.got_secret);
        ck_assert_msg(strncmp(r.error, prefix, strlen(prefix)) == 0, "%s", r.error);
        detail = r.error + strlen(prefix);
        ck_assert_uint_le(strlen(detail), 200);
        ck_assert_uint_ge(strlen(detail), 190);
        ck_assert(utf8_is_valid(r.error, strlen(r.error)));
        for (const char *p = r.error; *p; p++)
                ck_assert_msg((unsigned char) *p >= 0x20 && *p != 0x7f, "control character in \"%s\"", r.error);
        ck_assert_msg(strncmp(detail, "bad[31m redx\xef\xbf\xbd yyy", strlen("bad[31m redx\xef\xbf\xbd yyy")) == 0,
                      "%s", detail);

        /* a cut never splits a character: 199 bytes of 'a', then 'ä' */
        fetch(SECRET_COMMAND, "printf '%0199d\xc3\xa4\xc3\xa4' 0 >&2; exit 1", 0, &r);
        detail = r.error + strlen(prefix);
        ck_assert_uint_eq(strlen(detail), 199);
        ck_assert(utf8_is_valid(r.error, strlen(r.error)));
}
END_TEST

START_TEST(test_command_signal) {
        expect_error(SECRET_COMMAND, "kill -TERM $$", "password_command failed (killed by signal TERM)");
        expect_error(SECRET_COMMAND, "echo dying >&2; kill -KILL $$",
                     "password_command failed (killed by signal KILL): dying");
}
END_TEST

/* ------------------------------------------------------------------------ */
/* password_command: bounds and odd children */

START_TEST(test_command_large_output) {
        struct result r;
        uint64_t t0 = now_usec();

        /* the first line is kept, the megabyte after it is read and dropped */
        expect_secret("echo pw; head -c 1048576 /dev/zero | tr '\\0' x", "pw");
        /* a first line beyond 64 KiB is an error, not a truncated secret */
        expect_error(SECRET_COMMAND, "head -c 1048576 /dev/zero | tr '\\0' x",
                     "password_command output: first line longer than 64 KiB");
        /* a megabyte of stderr: bounded, the first line cut */
        fetch(SECRET_COMMAND, "head -c 1048576 /dev/zero | tr '\\0' e >&2; exit 4", 0, &r);
        ck_assert(!r.got_secret);
        ck_assert_msg(strncmp(r.error, "password_command failed (exit status 4): eeee", 45) == 0, "%s", r.error);
        ck_assert_uint_le(strlen(r.error), strlen("password_command failed (exit status 4): ") + 200);
        /* exactly 64 KiB - 1 bytes and a newline is still fine */
        fetch(SECRET_COMMAND, "head -c 65535 /dev/zero | tr '\\0' z; echo", 0, &r);
        ck_assert(r.got_secret);
        ck_assert_uint_eq(strlen(r.secret), sizeof(r.secret) - 1); /* copied into 256 bytes */
        ck_assert_uint_lt(now_usec() - t0, 5 * SEC);
}
END_TEST

START_TEST(test_command_closes_stdout_early) {
        struct result r;
        uint64_t t0, cpu0;

        /* EOF on stdout does not end the request (nor spin): the exit does */
        t0 = now_usec();
        cpu0 = cpu_usec();
        fetch(SECRET_COMMAND, "echo pw; exec >&-; sleep 0.5; exit 0", 0, &r);
        ck_assert(r.got_secret);
        ck_assert_str_eq(r.secret, "pw");
        ck_assert_uint_ge(r.at - t0, 450 * MSEC);
        ck_assert_uint_lt(cpu_usec() - cpu0, 200 * MSEC);

        expect_error(SECRET_COMMAND, "echo pw; exec >&- 2>&-; sleep 0.3; exit 1",
                     "password_command failed (exit status 1)");
        expect_error(SECRET_COMMAND, "exec >&-; sleep 0.3; exit 0", "password_command printed nothing");
}
END_TEST

START_TEST(test_command_descendant_keeps_stdout) {
        char command[256], path[128];
        struct result r;
        uint64_t t0 = now_usec();
        FILE *f;
        int bg = 0;

        /* a background process holds the pipe open for 3 s: the answer comes
         * when the command itself exits */
        snprintf(command, sizeof(command), "sleep 3 & echo $! > %s/bg; echo pw", tmpdir);
        fetch(SECRET_COMMAND, command, 0, &r);
        ck_assert(r.got_secret);
        ck_assert_str_eq(r.secret, "pw");
        ck_assert_uint_lt(r.at - t0, 2 * SEC);

        snprintf(path, sizeof(path), "%s/bg", tmpdir);
        f = fopen(path, "re");
        ck_assert_ptr_nonnull(f);
        ck_assert_int_eq(fscanf(f, "%d", &bg), 1);
        fclose(f);
        (void) kill(bg, SIGKILL); /* not ours to reap: it was sh's child */
}
END_TEST

/* ------------------------------------------------------------------------ */
/* password_command: the child's environment */

START_TEST(test_command_environment) {
        ck_assert_int_eq(setenv("NOTIFY_SOCKET", "/run/user/1000/systemd/notify", 1), 0);
        ck_assert_int_eq(setenv("WATCHDOG_PID", "1", 1), 0);
        ck_assert_int_eq(setenv("WATCHDOG_USEC", "30000000", 1), 0);
        ck_assert_int_eq(setenv("LISTEN_PID", "1", 1), 0);
        ck_assert_int_eq(setenv("LISTEN_FDS", "1", 1), 0);
        ck_assert_int_eq(setenv("LISTEN_FDNAMES", "x", 1), 0);
        ck_assert_int_eq(setenv("IMAPIDLED_TEST_KEEP", "kept", 1), 0);

        expect_secret("echo ${NOTIFY_SOCKET:-none}", "none");
        expect_secret("echo ${WATCHDOG_PID:-none}-${WATCHDOG_USEC:-none}-${LISTEN_PID:-none}-"
                      "${LISTEN_FDS:-none}-${LISTEN_FDNAMES:-none}-${IMAPIDLED_TEST_KEEP:-none}",
                      "none-none-none-none-none-kept");

        unsetenv("NOTIFY_SOCKET");
        unsetenv("WATCHDOG_PID");
        unsetenv("WATCHDOG_USEC");
        unsetenv("LISTEN_PID");
        unsetenv("LISTEN_FDS");
        unsetenv("LISTEN_FDNAMES");
        unsetenv("IMAPIDLED_TEST_KEEP");
}
END_TEST

START_TEST(test_command_hygiene) {
        struct sigaction ign = { .sa_handler = SIG_IGN };
        sigset_t ss;
        int leak;

        /* what a daemon has: signals blocked for sd-event, SIGPIPE ignored,
         * an fd some library opened without O_CLOEXEC */
        sigemptyset(&ss);
        sigaddset(&ss, SIGTERM);
        sigaddset(&ss, SIGINT);
        sigaddset(&ss, SIGHUP);
        ck_assert_int_eq(sigprocmask(SIG_BLOCK, &ss, NULL), 0);
        ck_assert_int_eq(sigaction(SIGPIPE, &ign, NULL), 0);
        leak = open("/dev/null", O_RDONLY);
        ck_assert_int_ge(leak, 3);

        expect_secret("grep -E '^Sig(Blk|Ign):' /proc/self/status | tr -d ' \\t\\n'",
                      "SigBlk:0000000000000000SigIgn:0000000000000000");
        expect_secret("ls /proc/self/fd | tr '\\n' ' '", "0 1 2 3 ");
        expect_secret("readlink /proc/self/fd/0", "/dev/null");
        expect_secret("set -- $(cat /proc/$$/stat); [ \"$5\" = \"$$\" ] && echo own-group", "own-group");

        close(leak);
        signal(SIGPIPE, SIG_DFL);
        ck_assert_int_eq(sigprocmask(SIG_UNBLOCK, &ss, NULL), 0);
}
END_TEST

START_TEST(test_command_sigchld_unblocked) {
        sigset_t ss;

        /* pidfds do not care how SIGCHLD is handled */
        sigemptyset(&ss);
        sigaddset(&ss, SIGCHLD);
        ck_assert_int_eq(sigprocmask(SIG_UNBLOCK, &ss, NULL), 0);
        expect_secret("echo works", "works");
        expect_error(SECRET_COMMAND, "exit 5", "password_command failed (exit status 5)");
        ck_assert_int_eq(sigprocmask(SIG_BLOCK, &ss, NULL), 0);
}
END_TEST

START_TEST(test_command_sigchld_ignored) {
        /* the kernel reaps for us then: the status is gone, so no secret */
        signal(SIGCHLD, SIG_IGN);
        expect_error(SECRET_COMMAND, "echo pw", "password_command: its exit status is lost (is SIGCHLD ignored?)");
        signal(SIGCHLD, SIG_DFL);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* password_command: the loop goes on, timeouts */

struct ticker {
        unsigned ticks;
};

static int on_tick(sd_event_source *s, uint64_t usec, void *userdata) {
        struct ticker *t = userdata;

        t->ticks++;
        ck_assert_int_ge(sd_event_source_set_time_relative(s, 50 * MSEC), 0);
        ck_assert_int_ge(sd_event_source_set_enabled(s, SD_EVENT_ON), 0);
        return 0;
}

START_TEST(test_command_loop_not_blocked) {
        struct ticker t = {};
        sd_event_source *tick = NULL;
        struct result r = {};
        uint64_t t0 = now_usec();
        sd_event *e = NULL;

        ck_assert_int_ge(sd_event_new(&e), 0);
        ck_assert_int_ge(sd_event_add_time_relative(e, &tick, CLOCK_MONOTONIC, 50 * MSEC, 1, on_tick, &t), 0);
        ck_assert_int_eq(secret_fetch(e, SECRET_COMMAND, "sleep 1; echo awake", 0, on_done, &r, &r.q), 0);
        run_until_done(e, &r, 5 * SEC);
        ck_assert(r.got_secret);
        ck_assert_str_eq(r.secret, "awake");
        ck_assert_uint_ge(r.at - t0, 950 * MSEC);
        ck_assert_msg(t.ticks >= 15, "only %u ticks while the command ran", t.ticks);
        sd_event_source_disable_unref(tick);
        sd_event_unref(e);
}
END_TEST

START_TEST(test_command_timeout) {
        char command[256];
        struct result r = {};
        sd_event *e = NULL;
        uint64_t t0;
        pid_t pid;

        ck_assert_int_ge(sd_event_new(&e), 0);
        snprintf(command, sizeof(command), "echo $$ > %s/pid; sleep 100; echo late", tmpdir);
        t0 = now_usec();
        ck_assert_int_eq(secret_fetch(e, SECRET_COMMAND, command, 300 * MSEC, on_done, &r, &r.q), 0);
        pid = wait_for_pid_file(e, "pid");
        /* sh and sleep, in a group of their own; the pid file is written
         * before sh forks sleep, so give a busy machine a moment */
        for (int i = 0; i < 200 && group_members(pid) < 2; i++)
                usleep(10000);
        ck_assert_int_eq(group_members(pid), 2);

        run_until_done(e, &r, 5 * SEC);
        ck_assert_uint_eq(r.calls, 1);
        ck_assert(!r.got_secret);
        ck_assert_str_eq(r.error, "password_command did not finish within 300 ms");
        ck_assert_uint_ge(r.at - t0, 290 * MSEC);
        ck_assert_uint_lt(r.at - t0, 3 * SEC);

        /* SIGTERM took the whole group; the leader is reaped soon after */
        ck_assert(run_until_gone(e, pid, 1500 * MSEC));
        ck_assert(group_gone_within(pid, 1 * SEC));
        ck_assert_uint_lt(now_usec() - t0, 3 * SEC);
        ck_assert_uint_eq(r.calls, 1);
        sd_event_unref(e);
}
END_TEST

START_TEST(test_command_timeout_term_ignored) {
        char command[256];
        struct result r = {};
        sd_event *e = NULL;
        pid_t pid;

        /* SIGTERM is ignored by the whole group: SIGKILL follows after 2 s */
        ck_assert_int_ge(sd_event_new(&e), 0);
        snprintf(command, sizeof(command), "trap '' TERM; echo $$ > %s/pid; sleep 100; echo late", tmpdir);
        ck_assert_int_eq(secret_fetch(e, SECRET_COMMAND, command, 200 * MSEC, on_done, &r, &r.q), 0);
        pid = wait_for_pid_file(e, "pid");
        run_until_done(e, &r, 5 * SEC);
        ck_assert_str_eq(r.error, "password_command did not finish within 200 ms");

        run_for(e, 1 * SEC);
        ck_assert_int_eq(group_members(pid), 2); /* still in the grace period */
        ck_assert(run_until_gone(e, pid, 2 * SEC));
        ck_assert(group_gone_within(pid, 1 * SEC));
        ck_assert_uint_ge(now_usec() - r.at, 1900 * MSEC);
        ck_assert_uint_eq(r.calls, 1);
        sd_event_unref(e);
}
END_TEST

START_TEST(test_command_leader_exits_group_lingers) {
        char command[256];
        struct result r = {};
        sd_event *e = NULL;
        pid_t pid;

        /* The leader dies of SIGTERM at once, a member ignores it: the leader
         * stays unreaped (pinning the group id) until SIGKILL got the rest. */
        ck_assert_int_ge(sd_event_new(&e), 0);
        snprintf(command, sizeof(command), "(trap '' TERM; sleep 100) & echo $$ > %s/pid; wait", tmpdir);
        ck_assert_int_eq(secret_fetch(e, SECRET_COMMAND, command, 200 * MSEC, on_done, &r, &r.q), 0);
        pid = wait_for_pid_file(e, "pid");
        run_until_done(e, &r, 5 * SEC);
        ck_assert_str_eq(r.error, "password_command did not finish within 200 ms");

        run_for(e, 1 * SEC);
        ck_assert(pid_exists(pid));                     /* a zombie ... */
        ck_assert_int_eq(group_members(pid), 1);  /* ... and the member that ignores TERM */
        ck_assert(run_until_gone(e, pid, 2 * SEC));
        run_for(e, 100 * MSEC);
        ck_assert(group_gone_within(pid, 1 * SEC));
        sd_event_unref(e);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* password_command: cancellation */

START_TEST(test_command_cancel_running) {
        char command[256];
        struct result r = {};
        sd_event *e = NULL;
        pid_t pid;

        ck_assert_int_ge(sd_event_new(&e), 0);
        snprintf(command, sizeof(command), "echo $$ > %s/pid; sleep 100; echo late", tmpdir);
        ck_assert_int_eq(secret_fetch(e, SECRET_COMMAND, command, 0, on_done, &r, &r.q), 0);
        pid = wait_for_pid_file(e, "pid");
        ck_assert_ptr_null(secret_cancel(r.q));
        ck_assert(run_until_gone(e, pid, 3 * SEC));
        ck_assert(group_gone_within(pid, 1 * SEC));
        run_for(e, 50 * MSEC);
        ck_assert_uint_eq(r.calls, 0);
        sd_event_unref(e);

        /* cancelled before the loop ever ran */
        ck_assert_int_ge(sd_event_new(&e), 0);
        r = (struct result) {};
        ck_assert_int_eq(secret_fetch(e, SECRET_COMMAND, "sleep 100", 0, on_done, &r, &r.q), 0);
        ck_assert_ptr_null(secret_cancel(r.q));
        run_for(e, 500 * MSEC);
        ck_assert_uint_eq(r.calls, 0);
        ck_assert(!have_children());
        sd_event_unref(e);

        /* cancelled after it exited, before the loop noticed */
        ck_assert_int_ge(sd_event_new(&e), 0);
        r = (struct result) {};
        ck_assert_int_eq(secret_fetch(e, SECRET_COMMAND, "echo quick", 0, on_done, &r, &r.q), 0);
        usleep(200 * MSEC);
        ck_assert_ptr_null(secret_cancel(r.q));
        run_for(e, 300 * MSEC);
        ck_assert_uint_eq(r.calls, 0);
        ck_assert(!have_children());
        sd_event_unref(e);

        ck_assert_ptr_null(secret_cancel(NULL));
}
END_TEST

static int on_cancel_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        struct result *r = userdata;

        r->q = secret_cancel(r->q);
        return 0;
}

START_TEST(test_command_cancel_from_callbacks) {
        struct result a = {}, b = {}, c = {}, d = {};
        sd_event_source *timer = NULL;
        sd_event *e = NULL;

        ck_assert_int_ge(sd_event_new(&e), 0);
        /* a's callback cancels b (running) and a itself (a no-op there) */
        ck_assert_int_eq(secret_fetch(e, SECRET_COMMAND, "echo a", 0, on_done, &a, &a.q), 0);
        ck_assert_int_eq(secret_fetch(e, SECRET_COMMAND, "sleep 100", 0, on_done, &b, &b.q), 0);
        a.cancel_in_callback[0] = b.q;
        a.cancel_in_callback[1] = a.q;
        /* a timer cancels c; d's callback cancels a plain request whose
         * defer source is pending in the same iteration */
        ck_assert_int_eq(secret_fetch(e, SECRET_COMMAND, "sleep 100", 0, on_done, &c, &c.q), 0);
        ck_assert_int_ge(sd_event_add_time_relative(e, &timer, CLOCK_MONOTONIC, 100 * MSEC, 1, on_cancel_timer, &c),
                         0);

        run_until_done(e, &a, 5 * SEC);
        ck_assert(a.got_secret);
        ck_assert_str_eq(a.secret, "a");

        {
                struct result p1 = {}, p2 = {};

                ck_assert_int_eq(secret_fetch(e, SECRET_PLAIN, "one", 0, on_done, &p1, &p1.q), 0);
                ck_assert_int_eq(secret_fetch(e, SECRET_PLAIN, "two", 0, on_done, &p2, &p2.q), 0);
                p1.cancel_in_callback[0] = p2.q;
                ck_assert_int_eq(secret_fetch(e, SECRET_FILE, "/nonexistent", 0, on_done, &d, &d.q), 0);
                d.q = secret_cancel(d.q);
                run_for(e, 50 * MSEC);
                ck_assert_uint_eq(p1.calls, 1);
                ck_assert_uint_eq(p2.calls, 0);
        }

        run_for(e, 3 * SEC);
        ck_assert_uint_eq(b.calls, 0);
        ck_assert_uint_eq(c.calls, 0);
        ck_assert_uint_eq(d.calls, 0);
        ck_assert_ptr_null(c.q);
        ck_assert(!have_children());
        sd_event_source_disable_unref(timer);
        sd_event_unref(e);
}
END_TEST

START_TEST(test_command_loop_freed_in_grace_period) {
        char command[256];
        struct result r = {};
        sd_event *e = NULL;
        uint64_t t0;
        pid_t pid;

        /* Cancelled, the group ignores SIGTERM, and the owner frees the loop
         * during the grace period: the loop's destroy callbacks SIGKILL the
         * group and reap the leader there and then. */
        ck_assert_int_ge(sd_event_new(&e), 0);
        snprintf(command, sizeof(command), "trap '' TERM; echo $$ > %s/pid; sleep 100", tmpdir);
        ck_assert_int_eq(secret_fetch(e, SECRET_COMMAND, command, 0, on_done, &r, &r.q), 0);
        pid = wait_for_pid_file(e, "pid");
        ck_assert_ptr_null(secret_cancel(r.q));
        run_for(e, 200 * MSEC);
        ck_assert_int_eq(group_members(pid), 2);

        t0 = now_usec();
        ck_assert_ptr_null(sd_event_unref(e));
        ck_assert_uint_lt(now_usec() - t0, 1100 * MSEC);
        ck_assert(!pid_exists(pid));
        ck_assert(!have_children());
        ck_assert(group_gone_within(pid, 1 * SEC));
        ck_assert_uint_eq(r.calls, 0);

        /* the same right after cancel, before the loop ran again */
        ck_assert_int_ge(sd_event_new(&e), 0);
        r = (struct result) {};
        ck_assert_int_eq(secret_fetch(e, SECRET_COMMAND, "sleep 100", 0, on_done, &r, &r.q), 0);
        ck_assert_ptr_null(secret_cancel(r.q));
        ck_assert_ptr_null(sd_event_unref(e));
        ck_assert(!have_children());
        ck_assert_uint_eq(r.calls, 0);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* password_file, password_credential, password */

START_TEST(test_file) {
        struct log_record rec = {};
        char path[128], other[128], error[256];
        struct result r;

        log_set_sink(log_record_sink, &rec);

        snprintf(path, sizeof(path), "%s/work.pass", tmpdir);
        write_file(path, "filesecret\r\nsecond line\n", 0644);
        fetch(SECRET_FILE, path, 0, &r);
        ck_assert(r.got_secret);
        ck_assert_str_eq(r.secret, "filesecret");
        ck_assert_uint_eq(rec.warnings, 1);
        ck_assert_msg(strstr(rec.last_warning, path) && strstr(rec.last_warning, "0644"), "%s", rec.last_warning);
        ck_assert_ptr_null(strstr(rec.all, "filesecret"));

        /* once per path and process */
        fetch(SECRET_FILE, path, 0, &r);
        ck_assert(r.got_secret);
        ck_assert_uint_eq(rec.warnings, 1);

        /* 0600: no warning; no trailing newline */
        snprintf(other, sizeof(other), "%s/private.pass", tmpdir);
        write_file(other, "private", 0600);
        fetch(SECRET_FILE, other, 0, &r);
        ck_assert_str_eq(r.secret, "private");
        ck_assert_uint_eq(rec.warnings, 1);

        snprintf(path, sizeof(path), "%s/missing.pass", tmpdir);
        snprintf(error, sizeof(error), "password_file %s: No such file or directory", path);
        expect_error(SECRET_FILE, path, error);

        snprintf(error, sizeof(error), "password_file %s: not a regular file", tmpdir);
        expect_error(SECRET_FILE, tmpdir, error);

        snprintf(path, sizeof(path), "%s/empty.pass", tmpdir);
        write_file(path, "", 0600);
        snprintf(error, sizeof(error), "password_file %s: empty first line", path);
        expect_error(SECRET_FILE, path, error);

        snprintf(path, sizeof(path), "%s/fifo", tmpdir);
        ck_assert_int_eq(mkfifo(path, 0600), 0); /* must not block the loop in open() */
        snprintf(error, sizeof(error), "password_file %s: not a regular file", path);
        expect_error(SECRET_FILE, path, error);

        /* unreadable (root reads everything, so only when not root) */
        if (geteuid() != 0) {
                snprintf(path, sizeof(path), "%s/locked.pass", tmpdir);
                write_file(path, "x\n", 0000);
                snprintf(error, sizeof(error), "password_file %s: Permission denied", path);
                expect_error(SECRET_FILE, path, error);
        }
}
END_TEST

START_TEST(test_file_large) {
        char path[128], error[256];
        char *big = malloc(200001);

        ck_assert_ptr_nonnull(big);
        memset(big, 'q', 200000);
        big[200000] = '\0';
        snprintf(path, sizeof(path), "%s/big.pass", tmpdir);
        write_file(path, big, 0600);
        snprintf(error, sizeof(error), "password_file %s: first line longer than 64 KiB", path);
        expect_error(SECRET_FILE, path, error);

        big[10] = '\n';
        write_file(path, big, 0600);
        {
                struct result r;

                fetch(SECRET_FILE, path, 0, &r);
                ck_assert_str_eq(r.secret, "qqqqqqqqqq");
        }
        free(big);
}
END_TEST

START_TEST(test_credential) {
        char path[128], error[512];
        struct result r;

        unsetenv("CREDENTIALS_DIRECTORY");
        expect_error(SECRET_CREDENTIAL, "work",
                     "password_credential needs $CREDENTIALS_DIRECTORY (set by systemd "
                     "LoadCredential=/SetCredential=)");

        ck_assert_int_eq(setenv("CREDENTIALS_DIRECTORY", tmpdir, 1), 0);
        snprintf(path, sizeof(path), "%s/work", tmpdir);
        write_file(path, "credsecret\n", 0400);
        fetch(SECRET_CREDENTIAL, "work", 0, &r);
        ck_assert(r.got_secret);
        ck_assert_str_eq(r.secret, "credsecret");

        snprintf(error, sizeof(error), "password_credential nope (%s/nope): No such file or directory", tmpdir);
        expect_error(SECRET_CREDENTIAL, "nope", error);
        expect_error(SECRET_CREDENTIAL, "../work",
                     "password_credential \"../work\" is not a credential name (no '/' allowed)");
        expect_error(SECRET_CREDENTIAL, "..", "password_credential \"..\" is not a credential name (no '/' allowed)");
        expect_error(SECRET_CREDENTIAL, "", "password_credential \"\" is not a credential name (no '/' allowed)");
}
END_TEST

START_TEST(test_plain) {
        struct result r;

        fetch(SECRET_PLAIN, "plain secret", 0, &r); /* fetch() checks it is asynchronous */
        ck_assert(r.got_secret);
        ck_assert_str_eq(r.secret, "plain secret");
        expect_error(SECRET_PLAIN, "", "password is empty");
}
END_TEST

START_TEST(test_bad_arguments) {
        struct secret_request *q = NULL;
        struct result r = {};
        sd_event *e = NULL;

        ck_assert_int_ge(sd_event_new(&e), 0);
        ck_assert_int_eq(secret_fetch(NULL, SECRET_PLAIN, "x", 0, on_done, &r, &q), -EINVAL);
        ck_assert_int_eq(secret_fetch(e, SECRET_PLAIN, NULL, 0, on_done, &r, &q), -EINVAL);
        ck_assert_int_eq(secret_fetch(e, SECRET_PLAIN, "x", 0, NULL, &r, &q), -EINVAL);
        ck_assert_int_eq(secret_fetch(e, SECRET_PLAIN, "x", 0, on_done, &r, NULL), -EINVAL);
        ck_assert_int_eq(secret_fetch(e, _SECRET_SOURCE_MAX, "x", 0, on_done, &r, &q), -EINVAL);
        ck_assert_int_eq(secret_fetch(e, (enum secret_source) -1, "x", 0, on_done, &r, &q), -EINVAL);
        ck_assert_ptr_null(q);
        run_for(e, 20 * MSEC);
        ck_assert_uint_eq(r.calls, 0);
        sd_event_unref(e);

        ck_assert_str_eq(secret_source_to_string(SECRET_COMMAND), "password_command");
        ck_assert_str_eq(secret_source_to_string(SECRET_CREDENTIAL), "password_credential");
        ck_assert_ptr_null(secret_source_to_string(_SECRET_SOURCE_MAX));
}
END_TEST

/* ------------------------------------------------------------------------ */
/* the secret stays out of errors and logs */

START_TEST(test_no_secret_in_errors_or_logs) {
        struct log_record rec = {};
        char path[128];
        struct result r;

        log_set_max_level(LOG_DEBUG);
        log_set_sink(log_record_sink, &rec);

        /* printed to stdout, then failed: the error has no stdout in it */
        fetch(SECRET_COMMAND, "printf 'top%s\\n' secret1; exit 1", 0, &r);
        ck_assert(!r.got_secret);
        ck_assert_str_eq(r.error, "password_command failed (exit status 1)");

        /* also echoed to stderr: the stderr excerpt is left out */
        fetch(SECRET_COMMAND, "printf 'top%s\\n' secret2; printf 'bad top%s\\n' secret2 >&2; exit 1", 0, &r);
        ck_assert_str_eq(r.error, "password_command failed (exit status 1)");
        ck_assert_ptr_null(strstr(r.error, "topsecret2"));

        /* killed after printing it */
        fetch(SECRET_COMMAND, "printf 'top%s\\n' secret3; kill -TERM $$", 0, &r);
        ck_assert_str_eq(r.error, "password_command failed (killed by signal TERM)");

        /* timed out after printing it */
        fetch(SECRET_COMMAND, "printf 'top%s\\n' secret4; sleep 100", 200 * MSEC, &r);
        ck_assert_str_eq(r.error, "password_command did not finish within 200 ms");
        {
                /* let the detached request finish before the next test */
                uint64_t deadline = now_usec() + 3 * SEC;

                while (have_children() && now_usec() < deadline)
                        usleep(10 * MSEC);
        }

        /* successes, at debug level */
        fetch(SECRET_COMMAND, "printf 'top%s\\n' secret5", 0, &r);
        ck_assert_str_eq(r.secret, "topsecret5");
        snprintf(path, sizeof(path), "%s/p", tmpdir);
        write_file(path, "topsecret6\n", 0644);
        fetch(SECRET_FILE, path, 0, &r);
        ck_assert_str_eq(r.secret, "topsecret6");
        fetch(SECRET_PLAIN, "topsecret7", 0, &r);
        ck_assert_str_eq(r.secret, "topsecret7");

        ck_assert_msg(strstr(rec.all, "password_command: started process") != NULL, "%s", rec.all);
        ck_assert_msg(strstr(rec.all, "topsecret") == NULL, "a secret was logged:\n%s", rec.all);
}
END_TEST

Suite *secret_suite(void) {
        Suite *s = suite_create("secret");
        TCase *tc;

        tc = tcase_create("command");
        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_set_timeout(tc, 30);
        tcase_add_test(tc, test_command_echo);
        tcase_add_test(tc, test_command_prints_nothing);
        tcase_add_test(tc, test_command_exit_status);
        tcase_add_test(tc, test_command_stderr_cleaned);
        tcase_add_test(tc, test_command_signal);
        tcase_add_test(tc, test_command_large_output);
        tcase_add_test(tc, test_command_closes_stdout_early);
        tcase_add_test(tc, test_command_descendant_keeps_stdout);
        tcase_add_test(tc, test_command_environment);
        tcase_add_test(tc, test_command_hygiene);
        tcase_add_test(tc, test_command_sigchld_unblocked);
        tcase_add_test(tc, test_command_sigchld_ignored);
        tcase_add_test(tc, test_command_loop_not_blocked);
        tcase_add_test(tc, test_command_timeout);
        tcase_add_test(tc, test_command_timeout_term_ignored);
        tcase_add_test(tc, test_command_leader_exits_group_lingers);
        tcase_add_test(tc, test_command_cancel_running);
        tcase_add_test(tc, test_command_cancel_from_callbacks);
        tcase_add_test(tc, test_command_loop_freed_in_grace_period);
        suite_add_tcase(s, tc);

        tc = tcase_create("file");
        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_set_timeout(tc, 30);
        tcase_add_test(tc, test_file);
        tcase_add_test(tc, test_file_large);
        tcase_add_test(tc, test_credential);
        tcase_add_test(tc, test_plain);
        tcase_add_test(tc, test_bad_arguments);
        tcase_add_test(tc, test_no_secret_in_errors_or_logs);
        suite_add_tcase(s, tc);

        return s;
}
