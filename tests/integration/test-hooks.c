/* SPDX-License-Identifier: MIT */
/*
 * on_new_mail and on_change (SPEC §6) with the real daemon against the
 * harness's Dovecot. The hook is a small script that writes its
 * IMAPIDLED_* environment and start/end times (ns) to run.KIND.PID in an
 * output directory; a lock directory (mkdir is atomic) detects overlapping
 * runs and leaves overlap.KIND behind.
 */

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "daemon-runner.h"
#include "harness.h"
#include "suites.h"
#include "test-timeout.h"

#define RUNS_MAX 16

static struct harness h;
static struct daemon_runner d;
static char out_dir[PATH_MAX + 16];
static char script[PATH_MAX + 32];

struct run {
        char text[16384];
        unsigned long long start, end;
};

static void setup(void) {
        static const char body[] =
                "#!/bin/sh\n"
                "out='%s'\n"
                "kind=$1\n"
                "mkdir \"$out/lock.$kind\" 2>/dev/null || : > \"$out/overlap.$kind\"\n"
                "f=\"$out/run.$kind.$$\"\n"
                "{ echo \"START=$(date +%%s%%N)\"; env | grep '^IMAPIDLED_'; } > \"$f.tmp\"\n"
                "sleep \"${2:-0}\"\n"
                "echo \"END=$(date +%%s%%N)\" >> \"$f.tmp\"\n"
                "rmdir \"$out/lock.$kind\"\n"
                "mv \"$f.tmp\" \"$f\"\n"
                "echo \"hook $kind says hello on stdout\"\n"
                "exit \"${3:-0}\"\n";
        char text[PATH_MAX * 2];

        ck_assert_int_ge(harness_start(&h, 0), 0);
        ck_assert_int_eq(daemon_runner_init(&d, h.dir, "hooks-test"), 0);
        snprintf(out_dir, sizeof(out_dir), "%s/out", d.dir);
        ck_assert_int_eq(mkdir(out_dir, 0755), 0);
        snprintf(script, sizeof(script), "%s/hook.sh", d.dir);
        snprintf(text, sizeof(text), body, out_dir);
        ck_assert_int_eq(write_text_file(script, text), 0);
        ck_assert_int_eq(chmod(script, 0755), 0);
}

static void teardown(void) {
        daemon_runner_done(&d);
        harness_stop(&h);
}

/* One account on INBOX; hooks is the text of the hook keys. */
static void write_config(const char *hooks) {
        char buf[PATH_MAX * 6];

        snprintf(buf, sizeof(buf),
                 "[general]\n"
                 "log_level = debug\n"
                 "notify = false\n"
                 "\n"
                 "[account main]\n"
                 "host = %s\n"
                 "port = %d\n"
                 "tls = implicit\n"
                 "ca_file = %s\n"
                 "user = user1\n"
                 "password = pass-user1\n"
                 "mailboxes = INBOX\n"
                 "%s",
                 h.host, h.imaps_port, h.ca_file, hooks);
        ck_assert_int_eq(write_text_file(d.config_path, buf), 0);
}

static void start_daemon(const char *const *env) {
        ck_assert_int_eq(daemon_runner_start(&d, NULL, env, false), 0);
        ck_assert_msg(daemon_runner_wait_notify(&d, "STATUS=1/1 mailbox idle", 15000),
                      "daemon not idle; log:\n%s", daemon_runner_log(&d));
}

static void wait_log(const char *needle, unsigned n, unsigned timeout_ms) {
        ck_assert_msg(daemon_runner_wait_log(&d, needle, n, timeout_ms), "timed out waiting for %u x \"%s\"; log:\n%s",
                      n, needle, daemon_runner_log(&d));
}

static void deliver(const char *from, const char *subject) {
        ck_assert_int_eq(harness_deliver(&h, "user1", "INBOX", from, subject), 0);
}

static bool file_exists(const char *name) {
        char path[PATH_MAX * 2];

        snprintf(path, sizeof(path), "%s/%s", out_dir, name);
        return access(path, F_OK) == 0;
}

/* Finished runs of kind ("run.KIND.PID"), sorted by start time; returns how
 * many (at most max). With tmp, counts the unfinished ones (".tmp") instead. */
static unsigned read_runs(const char *kind, struct run *runs, unsigned max, bool tmp) {
        char prefix[64], path[PATH_MAX * 2];
        struct dirent *de;
        unsigned n = 0;
        DIR *dir;

        snprintf(prefix, sizeof(prefix), "run.%s.", kind);
        dir = opendir(out_dir);
        ck_assert_ptr_nonnull(dir);
        while ((de = readdir(dir))) {
                bool is_tmp = strstr(de->d_name, ".tmp") != NULL;
                FILE *f;
                size_t len;
                const char *p;

                if (strncmp(de->d_name, prefix, strlen(prefix)) != 0 || is_tmp != tmp)
                        continue;
                if (tmp || !runs) {
                        n++;
                        continue;
                }
                ck_assert_uint_lt(n, max);
                snprintf(path, sizeof(path), "%s/%s", out_dir, de->d_name);
                f = fopen(path, "re");
                ck_assert_ptr_nonnull(f);
                len = fread(runs[n].text, 1, sizeof(runs[n].text) - 1, f);
                fclose(f);
                runs[n].text[len] = '\0';
                p = strstr(runs[n].text, "START=");
                runs[n].start = p ? strtoull(p + 6, NULL, 10) : 0;
                p = strstr(runs[n].text, "END=");
                runs[n].end = p ? strtoull(p + 4, NULL, 10) : 0;
                n++;
        }
        closedir(dir);
        for (unsigned i = 1; runs && !tmp && i < n; i++)
                for (unsigned j = i; j > 0 && runs[j].start < runs[j - 1].start; j--) {
                        static struct run t;

                        t = runs[j];
                        runs[j] = runs[j - 1];
                        runs[j - 1] = t;
                }
        return n;
}

/* Waits until at least n finished runs of kind exist. */
static void wait_runs(const char *kind, unsigned n, unsigned timeout_ms) {
        timeout_ms = test_timeout_ms(timeout_ms);
        for (unsigned waited = 0;; waited += 50) {
                if (read_runs(kind, NULL, 0, false) >= n)
                        return;
                ck_assert_msg(waited < timeout_ms, "timed out waiting for %u %s runs; log:\n%s", n, kind,
                              daemon_runner_log(&d));
                usleep(50 * 1000);
        }
}

/* The value of IMAPIDLED_<name> in a run, NULL if not set. Static buffer. */
static const char *var(const struct run *r, const char *name) {
        static char value[4096];
        char key[64];
        const char *p, *e;
        size_t klen;

        klen = (size_t) snprintf(key, sizeof(key), "IMAPIDLED_%s=", name);
        for (p = r->text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
                if (strncmp(p, key, klen) == 0) {
                        p += klen;
                        e = strchrnul(p, '\n');
                        snprintf(value, sizeof(value), "%.*s", (int) (e - p), p);
                        return value;
                }
        return NULL;
}

static void assert_var(const struct run *r, const char *name, const char *expected) {
        const char *v = var(r, name);

        ck_assert_msg(v && strcmp(v, expected) == 0, "IMAPIDLED_%s: expected \"%s\", got \"%s\" in:\n%s", name,
                      expected, v ? v : "(unset)", r->text);
}

/* ---- tests --------------------------------------------------------------- */

/* Three messages in quick succession: one run with all three. (The window
 * is wider under valgrind, where the three arrive further apart.) */
START_TEST(test_burst_one_run) {
        static struct run runs[RUNS_MAX];
        char hooks[PATH_MAX * 2];
        unsigned window = test_timeout_ms(3000);

        snprintf(hooks, sizeof(hooks), "on_new_mail = %s nm\nhook_debounce = %ums\n", script, window);
        write_config(hooks);
        start_daemon(NULL);
        for (int i = 0; i < 3; i++)
                deliver("a@example.org", "burst");
        wait_log("new mail in INBOX", 3, 15000);
        wait_runs("nm", 1, 10000);
        usleep((window + 500) * 1000); /* a second run would have started by now */
        ck_assert_uint_eq(read_runs("nm", runs, RUNS_MAX, false), 1);
        ck_assert_uint_eq(read_runs("nm", NULL, 0, true), 0);
        assert_var(&runs[0], "EVENT", "new_mail");
        assert_var(&runs[0], "ACCOUNT", "main");
        assert_var(&runs[0], "MAILBOX", "INBOX");
        assert_var(&runs[0], "COUNT", "3");
        assert_var(&runs[0], "UIDS", "1 2 3");
        ck_assert_ptr_null(var(&runs[0], "FROM"));
        ck_assert_ptr_null(var(&runs[0], "SUBJECT"));
        /* the hook's stdout lands in the daemon's stderr */
        ck_assert_ptr_nonnull(strstr(daemon_runner_log(&d), "hook nm says hello on stdout"));
}
END_TEST

/* One message: sender and subject decoded; hostile text stays data. */
START_TEST(test_single_decoded_and_inert) {
        static struct run runs[RUNS_MAX];
        char hooks[PATH_MAX * 2], subject[PATH_MAX * 5], pwned1[PATH_MAX * 2], pwned2[PATH_MAX * 2];
        static const char *const env[] = { "IMAPIDLED_FROM=stale value from the daemon's environment", NULL };

        snprintf(hooks, sizeof(hooks), "on_new_mail = %s nm\nhook_debounce = 500ms\n", script);
        write_config(hooks);
        start_daemon(env);

        deliver("=?UTF-8?Q?J=C3=B6rg_M=C3=BCller?= <j@example.org>", "=?UTF-8?Q?Gr=C3=BC=C3=9Fe_aus_K=C3=B6ln?=");
        wait_runs("nm", 1, 15000);
        ck_assert_uint_eq(read_runs("nm", runs, RUNS_MAX, false), 1);
        assert_var(&runs[0], "COUNT", "1");
        assert_var(&runs[0], "UIDS", "1");
        assert_var(&runs[0], "FROM", "J\xc3\xb6rg M\xc3\xbcller");
        assert_var(&runs[0], "SUBJECT", "Gr\xc3\xbc\xc3\x9f" "e aus K\xc3\xb6ln");

        snprintf(pwned1, sizeof(pwned1), "%s/pwned1", out_dir);
        snprintf(pwned2, sizeof(pwned2), "%s/pwned2", out_dir);
        snprintf(subject, sizeof(subject), "$(touch %s) `touch %s`; rm -rf ~/nothing", pwned1, pwned2);
        deliver("Eve <eve@example.org>", subject);
        wait_runs("nm", 2, 15000);
        ck_assert_uint_eq(read_runs("nm", runs, RUNS_MAX, false), 2);
        assert_var(&runs[1], "SUBJECT", subject);
        assert_var(&runs[1], "FROM", "Eve");
        assert_var(&runs[1], "UIDS", "2");
        ck_assert(!file_exists("pwned1"));
        ck_assert(!file_exists("pwned2"));
}
END_TEST

/* A slow hook: mail during a run makes exactly one more run, after it. */
START_TEST(test_no_overlap) {
        static struct run runs[RUNS_MAX];
        char hooks[PATH_MAX * 2];

        snprintf(hooks, sizeof(hooks), "on_new_mail = %s nm 3\nhook_debounce = 300ms\n", script);
        write_config(hooks);
        start_daemon(NULL);
        deliver("a@example.org", "first");
        for (unsigned waited = 0; read_runs("nm", NULL, 0, true) == 0; waited += 20) {
                ck_assert_msg(waited < test_timeout_ms(15000), "the hook did not start; log:\n%s", daemon_runner_log(&d));
                usleep(20 * 1000);
        }
        deliver("a@example.org", "during 1");
        deliver("a@example.org", "during 2");
        wait_log("new mail in INBOX", 3, 10000);
        ck_assert_uint_eq(read_runs("nm", NULL, 0, false), 0); /* the first run is still going */
        wait_runs("nm", 2, 15000);
        usleep(1000 * 1000);
        ck_assert_uint_eq(read_runs("nm", runs, RUNS_MAX, false), 2);
        ck_assert_uint_eq(read_runs("nm", NULL, 0, true), 0);
        ck_assert(!file_exists("overlap.nm"));
        ck_assert_uint_ge(runs[1].start, runs[0].end);
        assert_var(&runs[0], "COUNT", "1");
        assert_var(&runs[0], "UIDS", "1");
        assert_var(&runs[1], "COUNT", "2");
        assert_var(&runs[1], "UIDS", "2 3");
}
END_TEST

/* A failing hook is logged with account, mailbox and status; the daemon
 * goes on. */
START_TEST(test_failing_hook) {
        char hooks[PATH_MAX * 2];
        int status;

        snprintf(hooks, sizeof(hooks), "on_new_mail = %s nm 0 3\nhook_debounce = 200ms\n", script);
        write_config(hooks);
        start_daemon(NULL);
        deliver("a@example.org", "one");
        wait_log("main/INBOX: on_new_mail hook failed (exit status 3)", 1, 15000);
        deliver("a@example.org", "two");
        wait_log("main/INBOX: on_new_mail hook failed (exit status 3)", 2, 15000);
        ck_assert_int_eq(kill(d.pid, 0), 0);
        status = daemon_runner_stop(&d, SIGTERM);
        ck_assert(WIFEXITED(status));
        ck_assert_int_eq(WEXITSTATUS(status), 0);
}
END_TEST

/* Starts the daemon with $JOURNAL_STREAM naming its log, so that every line
 * starts with its priority: <3> error, <6> info. */
static void start_daemon_journal(void) {
        static char env_stream[64];
        static const char *env[] = { env_stream, NULL };
        struct stat st;

        ck_assert_int_eq(write_text_file(d.log_path, ""), 0);
        ck_assert_int_eq(stat(d.log_path, &st), 0);
        snprintf(env_stream, sizeof(env_stream), "JOURNAL_STREAM=%llu:%llu", (unsigned long long) st.st_dev,
                 (unsigned long long) st.st_ino);
        start_daemon(env);
}

/* The log line that contains needle, as a copy (static buffer); fails if
 * there is not exactly one. */
static const char *the_line_with(const char *needle) {
        static char line[8192];
        const char *log = daemon_runner_log(&d), *p, *start, *end;
        unsigned n = 0;

        for (p = log; (p = strstr(p, needle)); p++) {
                if (n++ > 0)
                        continue;
                for (start = p; start > log && start[-1] != '\n'; start--)
                        ;
                end = strchrnul(p, '\n');
                snprintf(line, sizeof(line), "%.*s", (int) (end - start), start);
        }
        ck_assert_msg(n == 1, "%u lines with \"%s\"; log:\n%s", n, needle, log);
        return line;
}

/* A failing hook's stderr is part of its error line. */
START_TEST(test_failing_hook_stderr) {
        const char *line;

        write_config("on_new_mail = echo \"boom: mailbox 'Archive' is full\" >&2; exit 3\n"
                     "hook_debounce = 200ms\n");
        start_daemon_journal();
        deliver("a@example.org", "one");
        wait_log("on_new_mail hook failed", 1, 15000);
        line = the_line_with("on_new_mail hook failed");
        ck_assert_str_eq(line, "<3>main/INBOX: on_new_mail hook failed (exit status 3): "
                               "boom: mailbox 'Archive' is full");
        /* in that line only (the debug line with the command ends in "exit 3") */
        ck_assert_uint_eq(daemon_runner_count(&d, "boom: mailbox 'Archive' is full\n"), 1);
}
END_TEST

/* A successful hook's stderr is logged line by line at info level; a flood
 * of stderr is cut to its end and folded into the one failure line. */
START_TEST(test_hook_stderr_success_and_flood) {
        const char *line, *detail;

        /* backslashes doubled for the config file's escapes */
        write_config("on_new_mail = printf 'note: first\\\\n\\\\033[1mnote: second\\\\n' >&2\n"
                     "on_change = head -c 3000000 /dev/zero | tr '\\\\0' x >&2; "
                     "printf '\\\\nlast\\\\tline\\\\n\\\\n  really last\\\\n' >&2; exit 1\n"
                     "hook_debounce = 500ms\n");
        start_daemon_journal();
        deliver("a@example.org", "one");
        wait_log("on_change hook failed", 1, 15000);
        wait_log("hook: [1mnote: second", 1, 15000);
        /* the escape character dropped */
        ck_assert_str_eq(the_line_with("hook: note: first"), "<6>main/INBOX: on_new_mail hook: note: first");
        ck_assert_str_eq(the_line_with("hook: [1mnote: second"), "<6>main/INBOX: on_new_mail hook: [1mnote: second");
        ck_assert_ptr_null(strstr(daemon_runner_log(&d), "on_new_mail hook failed"));

        line = the_line_with("on_change hook failed");
        ck_assert_msg(strncmp(line, "<3>main/INBOX: on_change hook failed (exit status 1): ...xxx", 59) == 0, "%s",
                      line);
        detail = line + strlen("<3>main/INBOX: on_change hook failed (exit status 1): ");
        ck_assert_msg(strlen(detail) <= 1024 && strlen(detail) >= 900, "%zu bytes", strlen(detail));
        ck_assert_str_eq(detail + strlen(detail) - strlen("xxx / lastline / really last"),
                         "xxx / lastline / really last");
        /* megabytes in, a line out */
        ck_assert_uint_lt(strlen(daemon_runner_log(&d)), 100000);
        ck_assert_int_eq(kill(d.pid, 0), 0);
}
END_TEST

/* A background process of the hook keeps its stderr: after the hook has
 * ended, what it writes there is read and dropped, it does not die of
 * SIGPIPE. */
START_TEST(test_hook_background_stderr) {
        char hooks[PATH_MAX * 2];

        snprintf(hooks, sizeof(hooks),
                 "on_new_mail = (sleep 1; echo late >&2; touch '%s/late-done') & echo early >&2\n"
                 "hook_debounce = 200ms\n",
                 out_dir);
        write_config(hooks);
        start_daemon(NULL);
        deliver("a@example.org", "one");
        wait_log("main/INBOX: on_new_mail hook: early", 1, 15000);
        for (unsigned waited = 0; !file_exists("late-done"); waited += 50) {
                ck_assert_msg(waited < 5000, "the background process did not finish; log:\n%s",
                              daemon_runner_log(&d));
                usleep(50 * 1000);
        }
        ck_assert_ptr_null(strstr(daemon_runner_log(&d), "hook: late"));
        ck_assert_ptr_null(strstr(daemon_runner_log(&d), "hook failed"));
}
END_TEST

/* A hook that hangs is stopped (process group) with a warning. */
START_TEST(test_hanging_hook_killed) {
        static const char *const env[] = { "IMAPIDLED_HOOK_TIMEOUT_MS=700", NULL };
        char hooks[PATH_MAX * 2];

        snprintf(hooks, sizeof(hooks), "on_new_mail = %s nm 100\nhook_debounce = 200ms\n", script);
        write_config(hooks);
        start_daemon(env);
        deliver("a@example.org", "one");
        wait_log("on_new_mail hook still running after 700 ms", 1, 15000);
        wait_log("main/INBOX: on_new_mail hook failed (killed by signal TERM) after timing out", 1, 5000);
        /* and it runs again for the next mail */
        deliver("a@example.org", "two");
        wait_log("on_new_mail hook still running after 700 ms", 2, 15000);
}
END_TEST

/* on_change for a flag change made by another client. */
START_TEST(test_on_change_flags) {
        static struct run runs[RUNS_MAX];
        char hooks[PATH_MAX * 2];

        deliver("a@example.org", "already there");
        snprintf(hooks, sizeof(hooks), "on_change = %s ch\nhook_debounce = 300ms\n", script);
        write_config(hooks);
        start_daemon(NULL);
        usleep(1500 * 1000);
        ck_assert_uint_eq(read_runs("ch", NULL, 0, false) + read_runs("ch", NULL, 0, true), 0);

        ck_assert_int_eq(harness_flags(&h, "user1", "INBOX", 1, "add", "\\Seen"), 0);
        wait_runs("ch", 1, 15000);
        usleep(1000 * 1000);
        ck_assert_uint_eq(read_runs("ch", runs, RUNS_MAX, false), 1);
        assert_var(&runs[0], "EVENT", "change");
        assert_var(&runs[0], "ACCOUNT", "main");
        assert_var(&runs[0], "MAILBOX", "INBOX");
        assert_var(&runs[0], "COUNT", "0");
        assert_var(&runs[0], "UIDS", "");

        /* new mail is a change too */
        deliver("a@example.org", "new");
        wait_runs("ch", 2, 15000);
        ck_assert_uint_eq(read_runs("ch", runs, RUNS_MAX, false), 2);
        assert_var(&runs[1], "COUNT", "1");
        assert_var(&runs[1], "UIDS", "2");
}
END_TEST

int main(void) {
        Suite *s = suite_create("hooks");
        TCase *tc = tcase_create("hooks");
        SRunner *sr;
        int failed;

        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_set_timeout(tc, 90);
        tcase_add_test(tc, test_burst_one_run);
        tcase_add_test(tc, test_single_decoded_and_inert);
        tcase_add_test(tc, test_no_overlap);
        tcase_add_test(tc, test_failing_hook);
        tcase_add_test(tc, test_failing_hook_stderr);
        tcase_add_test(tc, test_hook_stderr_success_and_flood);
        tcase_add_test(tc, test_hook_background_stderr);
        tcase_add_test(tc, test_hanging_hook_killed);
        tcase_add_test(tc, test_on_change_flags);
        suite_add_tcase(s, tc);
        sr = srunner_create(s);
        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
