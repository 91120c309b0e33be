/* SPDX-License-Identifier: MIT */
/*
 * Suspend and resume as the daemon sees them: a private dbus-daemon stands in
 * for the system bus ($DBUS_SYSTEM_BUS_ADDRESS) and python3-dbusmock's logind
 * template owns org.freedesktop.login1 and emits PrepareForSleep. Mail that
 * arrives "during the sleep" is announced once, right after resume.
 */

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "daemon-runner.h"
#include "harness.h"
#include "suites.h"

static struct harness h;
static struct daemon_runner d;
static pid_t mock_pid;
static char system_bus_env[PATH_MAX + 64];

static int run(const char *const *argv) {
        int status;
        pid_t pid = fork();

        if (pid == 0) {
                int null = open("/dev/null", 1);
                if (null >= 0) {
                        dup2(null, STDOUT_FILENO);
                        dup2(null, STDERR_FILENO);
                }
                execv(argv[0], (char *const *) argv);
                _exit(127);
        }
        if (pid < 0 || waitpid(pid, &status, 0) < 0)
                return -1;
        return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* PrepareForSleep(b) from logind itself, through dbusmock's EmitSignal. */
static void logind_emit(bool sleeping) {
        const char *argv[] = { "/usr/bin/gdbus", "call", "--address", h.dbus_address,
                               "--dest", "org.freedesktop.login1", "--object-path", "/org/freedesktop/login1",
                               "--method", "org.freedesktop.DBus.Mock.EmitSignal",
                               "org.freedesktop.login1.Manager", "PrepareForSleep", "b",
                               sleeping ? "[<true>]" : "[<false>]", NULL };

        ck_assert_int_eq(run(argv), 0);
}

static bool logind_up(void) {
        const char *argv[] = { "/usr/bin/gdbus", "call", "--address", h.dbus_address,
                               "--dest", "org.freedesktop.login1", "--object-path", "/org/freedesktop/login1",
                               "--method", "org.freedesktop.DBus.Peer.Ping", NULL };

        return run(argv) == 0;
}

static void setup(void) {
        char cfg[PATH_MAX * 4];

        ck_assert_int_ge(harness_start(&h, HARNESS_DBUS), 0);
        ck_assert_int_eq(daemon_runner_init(&d, h.dir, "suspend-test"), 0);
        snprintf(cfg, sizeof(cfg),
                 "[account main]\nhost = %s\nport = %d\ntls = implicit\nca_file = %s\nuser = user1\n"
                 "password = pass-user1\n", h.host, h.imaps_port, h.ca_file);
        ck_assert_int_eq(write_text_file(d.config_path, cfg), 0);
        snprintf(system_bus_env, sizeof(system_bus_env), "DBUS_SYSTEM_BUS_ADDRESS=%s", h.dbus_address);

        /* the stand-in logind: Debian's python, which has the dbusmock module */
        mock_pid = fork();
        ck_assert_int_ge(mock_pid, 0);
        if (mock_pid == 0) {
                int null = open("/dev/null", 1);
                if (null >= 0) {
                        dup2(null, STDOUT_FILENO);
                        dup2(null, STDERR_FILENO);
                }
                setenv("DBUS_SYSTEM_BUS_ADDRESS", h.dbus_address, 1);
                execl("/usr/bin/python3", "python3", "-m", "dbusmock", "--system", "--template", "logind", NULL);
                _exit(127);
        }
        for (int i = 0; i < 100 && !logind_up(); i++)
                usleep(100 * 1000);
        ck_assert_msg(logind_up(), "the dbusmock logind did not come up");
}

static void teardown(void) {
        daemon_runner_done(&d);
        if (mock_pid > 0) {
                kill(mock_pid, SIGTERM);
                waitpid(mock_pid, NULL, 0);
        }
        harness_stop(&h);
}

static void wait_log(const char *needle, unsigned n, unsigned timeout_ms) {
        ck_assert_msg(daemon_runner_wait_log(&d, needle, n, timeout_ms), "timed out waiting for %u x \"%s\"; log:\n%s",
                      n, needle, daemon_runner_log(&d));
}

static void start_idle(void) {
        const char *env[] = { system_bus_env, NULL };
        static const char *const args[] = { "--verbose", NULL };

        ck_assert_int_eq(daemon_runner_start(&d, args, env, false), 0);
        ck_assert_msg(daemon_runner_wait_notify(&d, "STATUS=1/1 mailbox idle", 15000), "not idle; log:\n%s",
                      daemon_runner_log(&d));
}

/* Sleep, mail arrives, resume: reconnect at once and announce it once. */
START_TEST(test_resume_reconnects) {
        start_idle();
        logind_emit(true);
        wait_log("the system is going to sleep", 1, 5000);
        ck_assert_int_eq(harness_deliver(&h, "user1", "INBOX", "a@example.org", "while asleep"), 0);
        logind_emit(false);
        wait_log("the system resumed", 1, 5000);
        wait_log("reconnecting now", 1, 5000);
        wait_log("new mail in INBOX", 1, 15000);
        usleep(1000 * 1000);
        ck_assert_uint_eq(daemon_runner_count(&d, "new mail in INBOX"), 1);
}
END_TEST

/* Anyone else's PrepareForSleep on the bus is not logind's: ignored. (The
 * emitter stays connected for a moment: gdbus emit quits so fast that the
 * bus drops its broadcast, which would make this test pass for nothing.) */
START_TEST(test_foreign_signal_ignored) {
        char script[PATH_MAX + 512];

        snprintf(script, sizeof(script),
                 "import dbus, time\n"
                 "b = dbus.bus.BusConnection('%s')\n"
                 "m = dbus.lowlevel.SignalMessage('/org/freedesktop/login1', 'org.freedesktop.login1.Manager', "
                 "'PrepareForSleep')\n"
                 "m.append(False, signature='b')\n"
                 "b.send_message(m)\n"
                 "b.flush()\n"
                 "time.sleep(0.5)\n", h.dbus_address);
        const char *argv[] = { "/usr/bin/python3", "-c", script, NULL };

        start_idle();
        ck_assert_int_eq(run(argv), 0);
        usleep(1000 * 1000);
        ck_assert_uint_eq(daemon_runner_count(&d, "the system resumed"), 0);
        ck_assert_uint_eq(daemon_runner_count(&d, "reconnecting now"), 0);
}
END_TEST

/* No system bus at all: the daemon works and says so only at debug level. */
START_TEST(test_no_system_bus) {
        static const char *const env[] = { "DBUS_SYSTEM_BUS_ADDRESS=unix:path=/nonexistent/bus", NULL };
        static const char *const args[] = { "--verbose", NULL };

        ck_assert_int_eq(daemon_runner_start(&d, args, env, false), 0);
        ck_assert(daemon_runner_wait_notify(&d, "STATUS=1/1 mailbox idle", 15000));
        ck_assert_ptr_nonnull(strstr(daemon_runner_log(&d), "no system bus"));
        ck_assert_int_eq(harness_deliver(&h, "user1", "INBOX", "a@example.org", "no bus"), 0);
        wait_log("new mail in INBOX", 1, 15000);
}
END_TEST

int main(void) {
        Suite *s = suite_create("suspend");
        TCase *tc = tcase_create("logind");
        SRunner *sr;
        int failed;

        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_set_timeout(tc, 60);
        tcase_add_test(tc, test_resume_reconnects);
        tcase_add_test(tc, test_foreign_signal_ignored);
        tcase_add_test(tc, test_no_system_bus);
        suite_add_tcase(s, tc);
        sr = srunner_create(s);
        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
