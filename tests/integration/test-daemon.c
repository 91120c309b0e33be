/* SPDX-License-Identifier: MIT */
/*
 * The imapidled binary against the harness's Dovecot, as a user runs it: a
 * config file, a state directory, signals, systemd's notification socket
 * (owned by the test: no systemd runs as PID 1 here). Announcements are
 * counted in the daemon's log until the D-Bus outputs exist.
 */

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "daemon-runner.h"
#include "test-timeout.h"
#include "harness.h"
#include "suites.h"

static struct harness h;
static struct daemon_runner d;

/* A config with the harness's accounts: userN on IMAPS. */
static void write_config(const char *extra_accounts) {
        char buf[PATH_MAX * 4];

        snprintf(buf, sizeof(buf),
                 "[general]\n"
                 "log_level = info\n"
                 "\n"
                 "[account main]\n"
                 "host = %s\n"
                 "port = %d\n"
                 "tls = implicit\n"
                 "ca_file = %s\n"
                 "user = user1\n"
                 "password_command = printf 'pass-user1\\n'\n"
                 "mailboxes = INBOX; Lists\n"
                 "%s",
                 h.host, h.imaps_port, h.ca_file, extra_accounts ? extra_accounts : "");
        ck_assert_int_eq(write_text_file(d.config_path, buf), 0);
}

static void setup(void) {
        ck_assert_int_ge(harness_start(&h, 0), 0);
        ck_assert_int_eq(harness_mkbox(&h, "user1", "Lists"), 0);
        ck_assert_int_eq(daemon_runner_init(&d, h.dir, "daemon-test"), 0);
        write_config(NULL);
}

static void teardown(void) {
        daemon_runner_done(&d);
        harness_stop(&h);
}

static void start_daemon(const char *const *args, const char *const *env, bool watchdog) {
        ck_assert_int_eq(daemon_runner_start(&d, args, env, watchdog), 0);
}

static int stop_daemon(int sig) {
        return daemon_runner_stop(&d, sig);
}

static const char *read_log(void) {
        return daemon_runner_log(&d);
}

static void wait_log(const char *needle, unsigned n, unsigned timeout_ms) {
        ck_assert_msg(daemon_runner_wait_log(&d, needle, n, timeout_ms), "timed out waiting for %u x \"%s\"; log:\n%s",
                      n, needle, read_log());
}

static void wait_notify(const char *needle, unsigned timeout_ms) {
        ck_assert_msg(daemon_runner_wait_notify(&d, needle, timeout_ms),
                      "timed out waiting for %s on NOTIFY_SOCKET; got:\n%s\nlog:\n%s", needle,
                      daemon_runner_notified(&d), read_log());
}

static void deliver(const char *mailbox, const char *subject) {
        ck_assert_int_eq(harness_deliver(&h, "user1", mailbox, "=?UTF-8?Q?J=C3=B6rg?= <j@example.org>", subject), 0);
}

/* ---- tests --------------------------------------------------------------- */

/* systemd protocol: READY, STATUS, watchdog pings, STOPPING; SIGTERM logs
 * out and exits 0. */
START_TEST(test_systemd_notify) {
        int status;

        start_daemon(NULL, NULL, true);
        wait_notify("READY=1", 10000);
        wait_notify("STATUS=2/2 mailboxes idle", 15000);
        wait_notify("WATCHDOG=1", 5000);
        status = stop_daemon(SIGTERM);
        ck_assert(WIFEXITED(status));
        ck_assert_int_eq(WEXITSTATUS(status), 0);
        ck_assert_ptr_nonnull(strstr(daemon_runner_notified(&d), "STOPPING=1"));
        ck_assert_ptr_nonnull(strstr(read_log(), "logging out"));
}
END_TEST

/* N while running, M while killed, none on a clean restart; the state
 * survives kill -9. */
START_TEST(test_exactly_once_across_restarts) {
        deliver("INBOX", "before the first start");     /* counted, not announced */
        start_daemon(NULL, NULL, false);
        wait_notify("STATUS=2/2 mailboxes idle", 15000);
        for (int i = 0; i < 3; i++)
                deliver(i == 1 ? "Lists" : "INBOX", "while running");
        wait_log("new mail in ", 3, 15000);
        ck_assert_uint_eq(daemon_runner_count(&d, "UID 1 "), 1);      /* Lists UID 1 */
        ck_assert_uint_eq(daemon_runner_count(&d, "before the first start"), 0);

        stop_daemon(SIGKILL);
        deliver("INBOX", "while down 1");
        deliver("Lists", "while down 2");
        start_daemon(NULL, NULL, false);
        wait_log("new mail in ", 5, 15000);
        usleep(1500 * 1000);
        ck_assert_uint_eq(daemon_runner_count(&d, "new mail in "), 5);
        ck_assert_uint_eq(daemon_runner_count(&d, "while down"), 2);

        ck_assert_int_eq(WEXITSTATUS(stop_daemon(SIGTERM)), 0);
        start_daemon(NULL, NULL, false);
        wait_notify("STATUS=2/2 mailboxes idle", 15000);
        usleep(1500 * 1000);
        ck_assert_uint_eq(daemon_runner_count(&d, "new mail in "), 5);
        /* the sender's name is decoded for display */
        ck_assert_ptr_nonnull(strstr(read_log(), "from \"J\xc3\xb6rg\""));
}
END_TEST

/* A mailbox deleted and created again (new UIDVALIDITY) does not flood. */
START_TEST(test_uidvalidity_change_no_flood) {
        char out[256];

        deliver("Lists", "one");
        start_daemon(NULL, NULL, false);
        wait_notify("STATUS=2/2 mailboxes idle", 15000);
        stop_daemon(SIGTERM);
        ck_assert_int_ge(harness_doveadm(&h, out, sizeof(out), "mailbox", "delete", "-u", "user1", "Lists", NULL), 0);
        ck_assert_int_eq(harness_mkbox(&h, "user1", "Lists"), 0);
        for (int i = 0; i < 4; i++)
                deliver("Lists", "rebuilt");
        start_daemon(NULL, NULL, false);
        wait_log("rebuilt on the server", 1, 15000);
        usleep(1000 * 1000);
        ck_assert_uint_eq(daemon_runner_count(&d, "new mail in "), 0);
        deliver("Lists", "after the rebuild");
        wait_log("new mail in ", 1, 15000);
}
END_TEST

/* SIGHUP with a broken file keeps the running config; a good file adds an
 * account and keeps the unchanged one's connection. */
START_TEST(test_reload) {
        char who1[4096], who2[4096];

        start_daemon(NULL, NULL, false);
        wait_notify("STATUS=2/2 mailboxes idle", 15000);
        ck_assert_int_ge(harness_doveadm(&h, who1, sizeof(who1), "who", "-1", "user1", NULL), 0);

        ck_assert_int_eq(write_text_file(d.config_path, "[account main]\nhost = \nport = abc\n"), 0);
        kill(d.pid, SIGHUP);
        wait_log("keeping the running one", 1, 5000);
        deliver("INBOX", "still watching");
        wait_log("new mail in ", 1, 15000);

        char extra[PATH_MAX * 2];
        snprintf(extra, sizeof(extra),
                 "\n[account second]\nhost = %s\nport = %d\ntls = implicit\nca_file = %s\nuser = user2\n"
                 "password = pass-user2\n", h.host, h.imaps_port, h.ca_file);
        write_config(extra);
        kill(d.pid, SIGHUP);
        wait_notify("STATUS=3/3 mailboxes idle", 15000);
        ck_assert_int_ge(harness_doveadm(&h, who2, sizeof(who2), "who", "-1", "user1", NULL), 0);
        /* same imap process (pid) for user1: the connection was kept */
        ck_assert_str_eq(who1, who2);
        ck_assert_int_eq(harness_deliver(&h, "user2", "INBOX", "x@example.org", "to the new account"), 0);
        wait_log("second: new mail in INBOX", 1, 15000);
}
END_TEST

/* A password command that hangs costs its account only. */
START_TEST(test_hanging_password_command) {
        char extra[PATH_MAX * 2], timeout[64];
        const char *env[] = { timeout, NULL };

        /* short enough for the test, long enough for main's own password
         * command when the daemon runs under valgrind (scaled) */
        snprintf(timeout, sizeof(timeout), "IMAPIDLED_SECRET_TIMEOUT_MS=%u", test_timeout_ms(700));

        snprintf(extra, sizeof(extra),
                 "\n[account stuck]\nhost = %s\nport = %d\ntls = implicit\nca_file = %s\nuser = user2\n"
                 "password_command = sleep 100\n", h.host, h.imaps_port, h.ca_file);
        write_config(extra);
        start_daemon(NULL, env, false);
        wait_log("did not finish", 1, 10000);
        deliver("INBOX", "main still works");
        wait_log("main: new mail in INBOX", 1, 15000);
        ck_assert_ptr_nonnull(strstr(read_log(), "stuck"));
}
END_TEST

/* --trace logs the IMAP exchange, never the password. */
START_TEST(test_trace_has_no_password) {
        static const char *const args[] = { "--trace", NULL };

        start_daemon(args, NULL, false);
        wait_notify("STATUS=2/2 mailboxes idle", 15000);
        deliver("INBOX", "traced");
        wait_log("new mail in ", 1, 15000);
        stop_daemon(SIGTERM);
        ck_assert_ptr_nonnull(strstr(read_log(), "C: a1 AUTHENTICATE PLAIN <redacted>"));
        ck_assert_ptr_null(strstr(read_log(), "pass-user1"));
        ck_assert_ptr_null(strstr(read_log(), "AHVzZXIxAHBhc3MtdXNlcjE="));      /* base64 of the PLAIN message */
}
END_TEST

/* --check-config: 0 and nothing for a good file, 1 and one line per problem. */
START_TEST(test_check_config) {
        char cmd[PATH_MAX * 4];
        int status;

        const char *b = getenv("IMAPIDLED_BUILDDIR");
        snprintf(cmd, sizeof(cmd), "%s/imapidled --check-config --config %s >%s 2>&1", b ? b : "build",
                 d.config_path, d.log_path);
        status = system(cmd);
        ck_assert_int_eq(WEXITSTATUS(status), 0);
        ck_assert_ptr_nonnull(strstr(read_log(), "valid, 1 account"));

        ck_assert_int_eq(write_text_file(d.config_path, "[account work]\nhost = imap.example.com\nport = abc\nuser = me\npassword_file = /x\n"), 0);
        status = system(cmd);
        ck_assert_int_eq(WEXITSTATUS(status), 1);
        ck_assert_ptr_nonnull(strstr(read_log(), "[account work] port: expected 1-65535, got \"abc\""));
}
END_TEST

/* Under journald ($JOURNAL_STREAM names stderr) lines carry <N> priorities. */
START_TEST(test_journal_priorities) {
        static char env_stream[64];
        const char *env[] = { env_stream, NULL };
        struct stat st;

        ck_assert_int_eq(write_text_file(d.log_path, ""), 0);
        ck_assert_int_eq(stat(d.log_path, &st), 0);
        snprintf(env_stream, sizeof(env_stream), "JOURNAL_STREAM=%llu:%llu", (unsigned long long) st.st_dev,
                 (unsigned long long) st.st_ino);
        start_daemon(NULL, env, false);
        wait_notify("STATUS=2/2 mailboxes idle", 15000);
        deliver("INBOX", "journal");
        wait_log("<6>main: new mail in INBOX", 1, 15000);
        ck_assert_ptr_nonnull(strstr(read_log(), "<6>watching 1 account"));
}
END_TEST

int main(void) {
        Suite *s = suite_create("daemon");
        TCase *tc = tcase_create("daemon");
        SRunner *sr;
        int failed;

        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_set_timeout(tc, 90);
        tcase_add_test(tc, test_systemd_notify);
        tcase_add_test(tc, test_exactly_once_across_restarts);
        tcase_add_test(tc, test_uidvalidity_change_no_flood);
        tcase_add_test(tc, test_reload);
        tcase_add_test(tc, test_hanging_password_command);
        tcase_add_test(tc, test_trace_has_no_password);
        tcase_add_test(tc, test_check_config);
        tcase_add_test(tc, test_journal_priorities);
        suite_add_tcase(s, tc);
        sr = srunner_create(s);
        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
