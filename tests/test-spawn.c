/* SPDX-License-Identifier: MIT */
/*
 * spawn.c: the text a child wrote made into one log line, exit statuses as
 * text, the child's environment, its fds when the caller passes the
 * daemon's own stdio, and spawn_detached() on a real loop: the failure
 * logged with its prefix, the child reaped, nothing left when the loop goes
 * first. Every test ends with no child process left behind.
 */

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <systemd/sd-event.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "macro.h"
#include "spawn.h"
#include "suites.h"
#include "utf8.h"

#define SEC 1000000ULL
#define MSEC 1000ULL

static uint64_t now_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * SEC + (uint64_t) ts.tv_nsec / 1000U;
}

static bool have_children(void) {
        siginfo_t si = {};

        return waitid(P_ALL, 0, &si, WEXITED | WNOHANG | WNOWAIT) == 0;
}

static void teardown(void) {
        log_set_sink(NULL, NULL);
        log_set_max_level(LOG_INFO);
        ck_assert_msg(!have_children(), "a child was left behind");
}

/* ---- spawn_output_excerpt() ---------------------------------------------- */

static void expect_excerpt(const char *in, size_t max, bool keep_end, const char *expected) {
        _cleanup_free_ char *out = spawn_output_excerpt(in, strlen(in), max, keep_end);

        if (!expected) {
                ck_assert_msg(!out, "\"%s\": expected nothing, got \"%s\"", in, out);
                return;
        }
        ck_assert_msg(out, "\"%s\": expected \"%s\", got nothing", in, expected);
        ck_assert_str_eq(out, expected);
}

START_TEST(test_excerpt) {
        _cleanup_free_ char *out = NULL;

        expect_excerpt("plain", 100, false, "plain");
        expect_excerpt("", 100, false, NULL);
        expect_excerpt("\n\r\n  \n", 100, false, NULL);
        /* line breaks folded, runs of them once, none at the ends */
        expect_excerpt("\none\ntwo\r\n\n\nthree\n", 100, false, "one / two / three");
        /* blanks around a break dropped, leading blanks of the first line kept */
        expect_excerpt("  one   \n   two  ", 100, false, "  one / two");
        /* other control characters dropped: tab, escape, DEL, C1, a lone CR */
        expect_excerpt("a\tb\033[1mc\177d\xc2\x85" "e\rf", 100, false, "ab[1mcdef");
        /* ill-formed UTF-8 and NUL become U+FFFD */
        out = spawn_output_excerpt("a\0b\xff", 4, 100, false);
        ck_assert_str_eq(out, "a\xef\xbf\xbd" "b\xef\xbf\xbd");
        /* cut at a character boundary, keeping the start */
        expect_excerpt("abc\xc3\xa4", 4, false, "abc");
        expect_excerpt("abc\xc3\xa4", 5, false, "abc\xc3\xa4");
        /* keeping the end: "..." and the last bytes, never half a character */
        expect_excerpt("0123456789", 10, true, "0123456789");
        expect_excerpt("0123456789", 8, true, "...56789");
        expect_excerpt("aaaa\xc3\xa4xy", 6, true, "...xy");
        expect_excerpt("aaaa\xc3\xa4xy", 7, true, "...\xc3\xa4xy");
        expect_excerpt("first\nsecond\nlast words\n", 16, true, "... / last words");
}
END_TEST

START_TEST(test_excerpt_bounded_and_valid) {
        char in[3000];
        char *out;

        for (size_t i = 0; i < sizeof(in); i++)
                in[i] = (char) (i * 37 % 256);
        for (size_t max = 4; max < 1200; max += 97)
                for (int end = 0; end < 2; end++) {
                        out = spawn_output_excerpt(in, sizeof(in), max, end);
                        ck_assert_ptr_nonnull(out);
                        ck_assert_uint_le(strlen(out), max);
                        ck_assert(utf8_is_valid(out, strlen(out)));
                        for (const char *p = out; *p; p++)
                                ck_assert((unsigned char) *p >= 0x20 && *p != 0x7f);
                        free(out);
                }
}
END_TEST

/* ---- statuses ------------------------------------------------------------ */

START_TEST(test_exit_to_string) {
        char buf[SPAWN_EXIT_STRING_MAX];
        siginfo_t si = { .si_code = CLD_EXITED, .si_status = 3 };

        ck_assert_str_eq(spawn_exit_to_string(&si, buf), "exit status 3");
        ck_assert(!spawn_exit_ok(&si));
        si.si_status = 0;
        ck_assert(spawn_exit_ok(&si));
        si = (siginfo_t) { .si_code = CLD_KILLED, .si_status = SIGKILL };
        ck_assert_str_eq(spawn_exit_to_string(&si, buf), "killed by signal KILL");
        ck_assert(!spawn_exit_ok(&si));
        si = (siginfo_t) { .si_code = CLD_DUMPED, .si_status = SIGSEGV };
        ck_assert_str_eq(spawn_exit_to_string(&si, buf), "killed by signal SEGV, core dumped");
        si = (siginfo_t) { .si_code = CLD_KILLED, .si_status = 200 };
        ck_assert_str_eq(spawn_exit_to_string(&si, buf), "killed by signal 200");
        si = (siginfo_t) { .si_code = CLD_STOPPED, .si_status = SIGSTOP };
        ck_assert_str_eq(spawn_exit_to_string(&si, buf), "wait status 5/19");
}
END_TEST

/* ---- starting ------------------------------------------------------------ */

START_TEST(test_environment) {
        char *extra[] = { (char *) "IMAPIDLED_EVENT=x", (char *) "OTHER=y" };
        _cleanup_free_ char **env = NULL;
        size_t n = 0;

        ck_assert_int_eq(setenv("NOTIFY_SOCKET", "/x", 1), 0);
        ck_assert_int_eq(setenv("LISTEN_FDS", "1", 1), 0);
        ck_assert_int_eq(setenv("IMAPIDLED_OLD", "1", 1), 0);
        ck_assert_int_eq(setenv("KEPT_VAR", "1", 1), 0);
        ck_assert_int_eq(spawn_environment(extra, 2, "IMAPIDLED_", &env), 0);
        ck_assert_str_eq(env[0], "IMAPIDLED_EVENT=x");
        ck_assert_str_eq(env[1], "OTHER=y");
        for (char **e = env; *e; e++) {
                ck_assert(strncmp(*e, "NOTIFY_SOCKET=", 14) != 0 && strncmp(*e, "LISTEN_", 7) != 0);
                ck_assert(strcmp(*e, "IMAPIDLED_OLD=1") != 0);
                n += strcmp(*e, "KEPT_VAR=1") == 0;
        }
        ck_assert_uint_eq(n, 1);
        free(env);
        env = NULL;

        /* without a prefix to drop */
        ck_assert_int_eq(spawn_environment(NULL, 0, NULL, &env), 0);
        n = 0;
        for (char **e = env; *e; e++)
                n += strcmp(*e, "IMAPIDLED_OLD=1") == 0;
        ck_assert_uint_eq(n, 1);
        unsetenv("NOTIFY_SOCKET");
        unsetenv("LISTEN_FDS");
        unsetenv("IMAPIDLED_OLD");
        unsetenv("KEPT_VAR");
}
END_TEST

/* Everything readable from fd until EOF. */
static void read_all(int fd, char *buf, size_t size) {
        size_t len = 0;
        ssize_t n;

        (void) fcntl(fd, F_SETFL, 0); /* blocking */
        while (len + 1 < size && (n = read(fd, buf + len, size - 1 - len)) > 0)
                len += (size_t) n;
        buf[len] = '\0';
}

static int wait_exit(pid_t pid, int pidfd) {
        siginfo_t si = {};

        close(pidfd);
        ck_assert_int_eq(waitid(P_PID, pid, &si, WEXITED), 0);
        ck_assert_int_eq(si.si_code, CLD_EXITED);
        return si.si_status;
}

/* The daemon's stderr as the child's stdout (as the hooks do), a pipe as its
 * stderr: the dup2()s must not clobber one another. */
START_TEST(test_shell_fds) {
        char out[4096], err[4096];
        int saved, po[2], pe[2], pidfd;
        pid_t pid;
        struct spawn_options o = { .stdin_fd = -1, .stdout_fd = STDERR_FILENO };

        ck_assert_int_eq(spawn_pipe(po), 0);
        ck_assert_int_eq(spawn_pipe(pe), 0);
        ck_assert_int_gt(po[0], STDERR_FILENO);
        ck_assert_int_gt(pe[1], STDERR_FILENO);
        ck_assert(fcntl(po[0], F_GETFL) & O_NONBLOCK);
        ck_assert(!(fcntl(po[1], F_GETFL) & O_NONBLOCK));

        /* "the daemon's stderr" is po[1] for this test */
        saved = fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 3);
        ck_assert_int_ge(saved, 0);
        ck_assert_int_eq(dup2(po[1], STDERR_FILENO), STDERR_FILENO);
        close(po[1]);
        o.stderr_fd = pe[1];
        o.command = "echo out; echo err >&2; ls /proc/self/fd | tr '\\n' ' '; "
                    "set -- $(cat /proc/$$/stat); [ \"$5\" = \"$$\" ] && echo own-group";
        ck_assert_int_eq(spawn_shell(&o, &pid, &pidfd), 0);
        ck_assert_int_eq(dup2(saved, STDERR_FILENO), STDERR_FILENO);
        close(saved);
        close(pe[1]);

        ck_assert_int_eq(wait_exit(pid, pidfd), 0);
        read_all(po[0], out, sizeof(out));
        read_all(pe[0], err, sizeof(err));
        close(po[0]);
        close(pe[0]);
        ck_assert_str_eq(out, "out\n0 1 2 3 own-group\n");
        ck_assert_str_eq(err, "err\n");
}
END_TEST

START_TEST(test_shell_errors) {
        struct spawn_options o = { .command = "true", .stdin_fd = -1, .stdout_fd = -1, .stderr_fd = -1 };
        pid_t pid = 0;
        int pidfd = -1;

        ck_assert_int_eq(spawn_shell(NULL, &pid, &pidfd), -EINVAL);
        o.command = NULL;
        ck_assert_int_eq(spawn_shell(&o, &pid, &pidfd), -EINVAL);
        ck_assert_int_eq(pid, 0);
        ck_assert_int_eq(pidfd, -1);
        o.command = "exit 7";
        ck_assert_int_eq(spawn_shell(&o, &pid, &pidfd), 0);
        ck_assert_int_eq(wait_exit(pid, pidfd), 7);
}
END_TEST

/* ---- spawn_detached() ---------------------------------------------------- */

struct record {
        char lines[8192];
};

static void record_sink(int level, const char *line, void *userdata) {
        struct record *r = userdata;
        size_t len = strlen(r->lines);

        snprintf(r->lines + len, sizeof(r->lines) - len, "<%d>%s\n", level, line);
}

static void run_until(sd_event *e, const struct record *r, const char *needle, uint64_t usec) {
        uint64_t deadline = now_usec() + usec;

        while (!strstr(r->lines, needle) && now_usec() < deadline)
                ck_assert_int_ge(sd_event_run(e, 10 * MSEC), 0);
        ck_assert_msg(strstr(r->lines, needle), "no \"%s\" in:\n%s", needle, r->lines);
}

START_TEST(test_detached) {
        static struct record r;
        sd_event *e = NULL;

        log_set_max_level(LOG_DEBUG);
        log_set_sink(record_sink, &r);
        ck_assert_int_ge(sd_event_new(&e), 0);

        ck_assert_int_eq(spawn_detached(e, "exit 3", NULL, "work: open_command "), 0);
        ck_assert_int_eq(spawn_detached(e, "kill -TERM $$", NULL, "b: "), 0);
        ck_assert_int_eq(spawn_detached(e, "true", NULL, "c: "), 0);
        run_until(e, &r, "<3>work: open_command failed (exit status 3)\n", 5 * SEC);
        run_until(e, &r, "<3>b: failed (killed by signal TERM)\n", 5 * SEC);
        run_until(e, &r, "<7>c: process ", 5 * SEC);
        ck_assert_ptr_null(strstr(r.lines, "<3>c:"));
        /* all three reaped, their sources gone */
        ck_assert(!have_children());
        ck_assert_int_eq(spawn_detached(NULL, "true", NULL, NULL), -EINVAL);
        ck_assert_int_eq(spawn_detached(e, NULL, NULL, NULL), -EINVAL);
        sd_event_unref(e);
}
END_TEST

/* The loop goes first: a child that has exited is reaped, one that runs on
 * is left running (and reaped here); nothing else is left. */
START_TEST(test_detached_loop_freed_first) {
        sd_event *e = NULL;
        siginfo_t si = {};

        ck_assert_int_ge(sd_event_new(&e), 0);
        ck_assert_int_eq(spawn_detached(e, "true", NULL, NULL), 0);
        ck_assert_int_eq(spawn_detached(e, "exec sleep 0.3", NULL, "x: "), 0);
        usleep(100 * MSEC);
        sd_event_unref(e);
        ck_assert_int_eq(waitid(P_ALL, 0, &si, WEXITED), 0); /* the sleep, after it ends */
        ck_assert_int_eq(si.si_code, CLD_EXITED);
        ck_assert_int_eq(si.si_status, 0);
}
END_TEST

Suite *spawn_suite(void) {
        Suite *s = suite_create("spawn");
        TCase *tc = tcase_create("spawn");

        tcase_add_checked_fixture(tc, NULL, teardown);
        tcase_set_timeout(tc, 30);
        tcase_add_test(tc, test_excerpt);
        tcase_add_test(tc, test_excerpt_bounded_and_valid);
        tcase_add_test(tc, test_exit_to_string);
        tcase_add_test(tc, test_environment);
        tcase_add_test(tc, test_shell_fds);
        tcase_add_test(tc, test_shell_errors);
        tcase_add_test(tc, test_detached);
        tcase_add_test(tc, test_detached_loop_freed_first);
        suite_add_tcase(s, tc);
        return s;
}
