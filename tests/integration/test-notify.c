/* SPDX-License-Identifier: MIT */
/*
 * Desktop notifications (SPEC §6) with the real daemon, the harness's
 * Dovecot and a real notification server: dunst under Xvfb on the private
 * session bus. A bus monitor (tests/support/notify-monitor.c) records the
 * Notify and CloseNotification calls exactly as they travel, with the ids
 * the server returns; a plain client watches the daemon's NewMail signals.
 */

#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <systemd/sd-bus.h>

#include "daemon-runner.h"
#include "harness.h"
#include "notify-monitor.h"
#include "suites.h"

#define NAME "org.imapidled.Daemon1"
#define ROOT "/org/imapidled/Daemon1"
#define MANAGER "org.imapidled.Daemon1.Manager"

static struct harness h;
static struct daemon_runner d;
static struct notify_monitor *mon;
static sd_bus *client;
static unsigned n_new_mail;
static char bus_env[PATH_MAX + 64];
static char opened_path[PATH_MAX + 32];

static const char *log_tail(void) {
        const char *log = daemon_runner_log(&d);
        size_t n = strlen(log);

        return n > 2500 ? log + n - 2500 : log;
}

static uint64_t now_ms(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000 + (uint64_t) ts.tv_nsec / 1000000;
}

/* ---- a client counting NewMail ------------------------------------------- */

static int on_new_mail(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        (void) m, (void) userdata, (void) ret_error;
        n_new_mail++;
        return 0;
}

static void pump(unsigned ms) {
        uint64_t deadline = now_ms() + ms;

        for (;;) {
                int r;

                (void) daemon_runner_notified(&d);
                while ((r = sd_bus_process(client, NULL)) > 0)
                        ;
                ck_assert_int_ge(r, 0);
                uint64_t now = now_ms();
                if (now >= deadline)
                        return;
                ck_assert_int_ge(sd_bus_wait(client, (deadline - now) * 1000), 0);
        }
}

/* waits until n NewMail signals have been seen in all; returns the ms it took */
static uint64_t wait_new_mail(unsigned n, unsigned timeout_ms) {
        uint64_t start = now_ms();

        while (n_new_mail < n && now_ms() - start < timeout_ms)
                pump(50);
        ck_assert_msg(n_new_mail >= n, "%u NewMail signals, want %u, within %u ms; log:\n%s", n_new_mail, n,
                      timeout_ms, log_tail());
        return now_ms() - start;
}

static void set_paused(bool paused) {
        sd_bus_error e = SD_BUS_ERROR_NULL;

        ck_assert_msg(sd_bus_set_property(client, NAME, ROOT, MANAGER, "Paused", &e, "b", paused) >= 0,
                      "Paused: %s", e.message ? e.message : "?");
        sd_bus_error_free(&e);
}

/* ---- fixture ------------------------------------------------------------- */

static void setup(void) {
        ck_assert_int_ge(harness_start(&h, HARNESS_NOTIFY), 0);
        ck_assert_int_eq(daemon_runner_init(&d, h.dir, "notify-test"), 0);
        snprintf(bus_env, sizeof(bus_env), "DBUS_SESSION_BUS_ADDRESS=%s", h.dbus_address);
        snprintf(opened_path, sizeof(opened_path), "%s/opened", d.dir);
        ck_assert_int_ge(notify_monitor_new(h.dbus_address, &mon), 0);

        ck_assert_int_ge(sd_bus_new(&client), 0);
        ck_assert_int_ge(sd_bus_set_address(client, h.dbus_address), 0);
        ck_assert_int_ge(sd_bus_set_bus_client(client, true), 0);
        ck_assert_int_ge(sd_bus_start(client), 0);
        ck_assert_int_ge(sd_bus_match_signal(client, NULL, NAME, ROOT, MANAGER, "NewMail", on_new_mail, NULL), 0);
        n_new_mail = 0;
}

static void teardown(void) {
        client = sd_bus_flush_close_unref(client);
        daemon_runner_done(&d);
        notify_monitor_free(mon);
        mon = NULL;
        harness_stop(&h);
}

/* [general] extra keys, one account "main" (user1) and, with second, an
 * account "quiet" (user2) with its own extra keys */
static void write_config(const char *general, const char *second) {
        char buf[PATH_MAX * 8];
        int n;

        n = snprintf(buf, sizeof(buf),
                     "[general]\n"
                     "log_level = debug\n"
                     "notify_timeout = never\n"
                     "open_command = env | grep ^IMAPIDLED_ > '%s.tmp' && mv '%s.tmp' '%s'\n"
                     "%s\n"
                     "[account main]\n"
                     "host = %s\nport = %d\ntls = implicit\nca_file = %s\n"
                     "user = user1\npassword = pass-user1\n",
                     opened_path, opened_path, opened_path, general ? general : "", h.host, h.imaps_port,
                     h.ca_file);
        if (second)
                snprintf(buf + n, sizeof(buf) - (size_t) n,
                         "\n[account quiet]\n"
                         "host = %s\nport = %d\ntls = implicit\nca_file = %s\n"
                         "user = user2\npassword = pass-user2\n%s\n",
                         h.host, h.imaps_port, h.ca_file, second);
        ck_assert_int_eq(write_text_file(d.config_path, buf), 0);
}

static void start_daemon(unsigned n_mailboxes) {
        const char *env[] = { bus_env, NULL };
        char status[64];

        ck_assert_int_eq(daemon_runner_start(&d, NULL, env, false), 0);
        snprintf(status, sizeof(status), "STATUS=%u/%u mailbox%s idle", n_mailboxes, n_mailboxes,
                 n_mailboxes == 1 ? "" : "es");
        ck_assert_msg(daemon_runner_wait_notify(&d, status, 15000), "daemon not idle; log:\n%s", log_tail());
}

static unsigned deliver(const char *user, const char *from, const char *subject) {
        unsigned uid = 0;

        ck_assert_int_eq(harness_mail(&h, user, "INBOX", from, subject, NULL, &uid), 0);
        ck_assert_uint_gt(uid, 0);
        return uid;
}

/* the i-th Notify call, with its reply */
static const struct notify_call *wait_notify(size_t i) {
        ck_assert_msg(notify_monitor_wait_notify(mon, i + 1, 15000), "no Notify call #%zu (%zu seen); log:\n%s", i + 1,
                      notify_monitor_n_notify(mon), log_tail());
        return notify_monitor_get(mon, i);
}

static bool has_action(const struct notify_call *c, const char *key, const char *label) {
        for (size_t i = 0; c->actions && c->actions[i] && c->actions[i + 1]; i += 2)
                if (strcmp(c->actions[i], key) == 0 && strcmp(c->actions[i + 1], label) == 0)
                        return true;
        return false;
}

/* nothing more than n Notify calls for ms milliseconds */
static void assert_no_notify_after(size_t n, unsigned ms) {
        ck_assert_msg(!notify_monitor_wait_notify(mon, n + 1, ms), "unexpected Notify #%zu: \"%s\" / \"%s\"", n + 1,
                      notify_monitor_get(mon, n)->summary, notify_monitor_get(mon, n)->body);
}

/* ---- content ------------------------------------------------------------- */

START_TEST(test_hostile_content) {
        const struct notify_call *c;
        char subject[2100];
        size_t len;

        write_config(NULL, NULL);
        start_daemon(1);

        deliver("user1", "=?ISO-8859-1?Q?Ren=E9_Z=FCrich?= <rene@example.org>",
                "<b>x</b> & <a href=\"https://evil.example\">y</a>");
        c = wait_notify(0);
        ck_assert_str_eq(c->app_name, "imapidled");
        ck_assert_str_eq(c->icon, "mail-unread");
        ck_assert_str_eq(c->category, "email.arrived");
        ck_assert_uint_eq(c->replaces_id, 0);
        ck_assert_int_eq(c->expire_timeout, 0);         /* notify_timeout = never */
        /* the summary is plain text by the spec: the decoded name, unescaped */
        ck_assert_str_eq(c->summary, "Ren\xc3\xa9 Z\xc3\xbcrich");
        /* dunst renders body-markup: the subject arrives escaped, as text */
        ck_assert_str_eq(c->body, "&lt;b&gt;x&lt;/b&gt; &amp; &lt;a href=\"https://evil.example\"&gt;y&lt;/a&gt;");
        ck_assert(has_action(c, "default", "Open"));
        ck_assert(has_action(c, "mark-read", "Mark as read"));
        ck_assert_uint_gt(c->id, 0);
        ck_assert_uint_ne(c->id, UINT32_MAX);

        /* bidi override and a control character, RFC 2047 encoded */
        deliver("user1", "<plain@example.org>", "=?UTF-8?Q?invoice=E2=80=AEfdp.exe=07_now?=");
        c = wait_notify(1);
        ck_assert_str_eq(c->summary, "plain@example.org");
        ck_assert_str_eq(c->body, "invoicefdp.exe now");

        /* a 2,000-character subject: cut at a character boundary with "…" */
        memset(subject, 0, sizeof(subject));
        for (size_t i = 0; i < 1000; i++)
                memcpy(subject + 2 * i, i % 2 ? "<b" : "ab", 2);
        deliver("user1", "Long <long@example.org>", subject);
        c = wait_notify(2);
        len = strlen(c->body);
        ck_assert_msg(len > 500 && len < 1200, "body of %zu bytes", len);
        ck_assert_str_eq(c->body + len - 3, "\xe2\x80\xa6");
        ck_assert_int_eq(strncmp(c->body, "ab&lt;bab&lt;b", 14), 0);
        ck_assert_ptr_null(strchr(c->body, '<'));
}
END_TEST

START_TEST(test_no_content) {
        const struct notify_call *c;

        write_config("notify_show_content = false\n", NULL);
        start_daemon(1);
        deliver("user1", "Secret Sender <s@example.org>", "secret subject");
        c = wait_notify(0);
        ck_assert_str_eq(c->summary, "New mail on main");
        ck_assert_str_eq(c->body, "");
}
END_TEST

/* ---- bursts -------------------------------------------------------------- */

START_TEST(test_burst_updates_in_place) {
        const struct notify_call *c, *summary = NULL;
        size_t n;

        write_config("notify_max_individual = 2\n", NULL);
        start_daemon(1);

        /* one at a time, each seen by the daemon before the next */
        deliver("user1", "A <a@example.org>", "one");
        wait_new_mail(1, 15000);
        deliver("user1", "B <b@example.org>", "two");
        wait_new_mail(2, 15000);
        c = wait_notify(1);
        ck_assert_str_eq(c->summary, "B");
        uint32_t id_a = notify_monitor_get(mon, 0)->id, id_b = c->id;

        /* the third is above the limit: one summary, the two popups fold into it */
        deliver("user1", "C <c@example.org>", "three");
        wait_new_mail(3, 15000);
        c = wait_notify(2);
        ck_assert_str_eq(c->summary, "3 new messages on main");
        ck_assert_str_eq(c->body, "From A, B and C");
        ck_assert_uint_eq(c->replaces_id, 0);
        ck_assert(notify_monitor_wait_close_call(mon, id_a, 5000));
        ck_assert(notify_monitor_wait_close_call(mon, id_b, 5000));
        summary = c;

        /* more: the same popup, updated in place */
        deliver("user1", "D <d@example.org>", "four");
        wait_new_mail(4, 15000);
        deliver("user1", "E <e@example.org>", "five");
        wait_new_mail(5, 15000);
        ck_assert(notify_monitor_wait_notify(mon, 4, 15000));
        /* let the last update through */
        for (uint64_t end = now_ms() + 10000; now_ms() < end; pump(100)) {
                n = notify_monitor_n_notify(mon);
                if (n >= 4 && strcmp(notify_monitor_get(mon, n - 1)->summary, "5 new messages on main") == 0)
                        break;
        }
        n = notify_monitor_n_notify(mon);
        /* every call with its reply (a snapshot taken before the reply has id 0) */
        ck_assert(notify_monitor_wait_notify(mon, n, 5000));
        for (size_t i = 3; i < n; i++) {
                c = notify_monitor_get(mon, i);
                ck_assert_msg(c->replaces_id == summary->id, "Notify #%zu replaces %u, not the summary %u", i + 1,
                              c->replaces_id, summary->id);
                ck_assert_uint_eq(c->id, summary->id);
        }
        c = notify_monitor_get(mon, n - 1);
        ck_assert_str_eq(c->summary, "5 new messages on main");
        ck_assert_str_eq(c->body, "From A, B, C and others");
}
END_TEST

START_TEST(test_catch_up_is_one_summary) {
        const struct notify_call *c;

        write_config("notify_max_individual = 3\n", NULL);
        start_daemon(1);
        ck_assert_int_eq(daemon_runner_stop(&d, SIGTERM), 0);
        /* delivered while the daemon is down: one catch-up of 6 */
        for (int i = 0; i < 6; i++) {
                char from[64];

                snprintf(from, sizeof(from), "S%d <s%d@example.org>", i, i);
                deliver("user1", from, "catch-up");
        }
        start_daemon(1);
        wait_new_mail(6, 15000);
        c = wait_notify(0);
        ck_assert_str_eq(c->summary, "6 new messages on main");
        ck_assert_str_eq(c->body, "From S0, S1, S2 and others");
        /* no single popup flashed before it */
        assert_no_notify_after(1, 1500);
        ck_assert_uint_eq(notify_monitor_n_close_calls(mon), 0);
}
END_TEST

/* ---- retraction and actions ---------------------------------------------- */

START_TEST(test_read_elsewhere_closes) {
        const struct notify_call *c;
        unsigned uid1, uid2;
        uint32_t reason = 0;

        write_config(NULL, NULL);
        start_daemon(1);

        uid1 = deliver("user1", "A <a@example.org>", "read me elsewhere");
        c = wait_notify(0);
        uint32_t id1 = c->id;
        uid2 = deliver("user1", "B <b@example.org>", "delete me elsewhere");
        c = wait_notify(1);
        uint32_t id2 = c->id;

        /* another client sets \Seen: the popup goes */
        ck_assert_int_eq(harness_flags(&h, "user1", "INBOX", uid1, "add", "\\Seen"), 0);
        ck_assert_msg(notify_monitor_wait_close_call(mon, id1, 10000), "no CloseNotification(%u); log:\n%s", id1,
                      log_tail());
        ck_assert(notify_monitor_wait_closed_signal(mon, id1, 5000, &reason));
        ck_assert_uint_eq(reason, 3);   /* closed by CloseNotification */

        /* another client expunges: the popup goes */
        ck_assert_int_eq(harness_expunge(&h, "user1", "INBOX", uid2), 0);
        ck_assert_msg(notify_monitor_wait_close_call(mon, id2, 10000), "no CloseNotification(%u); log:\n%s", id2,
                      log_tail());
}
END_TEST

START_TEST(test_actions) {
        const struct notify_call *c;
        char out[4096], text[4096] = "";
        unsigned uid;
        FILE *f;

        write_config(NULL, NULL);
        start_daemon(1);

        /* click: open_command, with the message in its environment */
        uid = deliver("user1", "A <a@example.org>", "open me");
        c = wait_notify(0);
        ck_assert_int_ge(harness_notify_action(&h, "default"), 0);
        ck_assert(notify_monitor_wait_action(mon, c->id, "default", 5000));
        /* dunst leaves a popup up after an action: the daemon closes it */
        ck_assert(notify_monitor_wait_close_call(mon, c->id, 5000));
        for (uint64_t end = now_ms() + 5000; now_ms() < end && access(opened_path, F_OK) != 0;)
                usleep(50000);
        f = fopen(opened_path, "re");
        ck_assert_msg(f, "open_command did not run; log:\n%s", log_tail());
        text[fread(text, 1, sizeof(text) - 1, f)] = '\0';
        fclose(f);
        ck_assert_ptr_nonnull(strstr(text, "IMAPIDLED_ACCOUNT=main\n"));
        ck_assert_ptr_nonnull(strstr(text, "IMAPIDLED_MAILBOX=INBOX\n"));
        snprintf(out, sizeof(out), "IMAPIDLED_UID=%u\n", uid);
        ck_assert_ptr_nonnull(strstr(text, out));

        /* "Mark as read" from the context menu: \Seen on the server */
        uid = deliver("user1", "B <b@example.org>", "mark me");
        c = wait_notify(1);
        ck_assert_int_ge(harness_notify_action(&h, "context"), 0);
        ck_assert(notify_monitor_wait_action(mon, c->id, "mark-read", 5000));
        ck_assert(notify_monitor_wait_close_call(mon, c->id, 5000));
        for (uint64_t end = now_ms() + 10000; now_ms() < end; usleep(200000)) {
                char uidstr[16];

                snprintf(uidstr, sizeof(uidstr), "%u", uid);
                ck_assert_int_ge(harness_doveadm(&h, out, sizeof(out), "fetch", "-u", "user1", "flags", "mailbox",
                                                 "INBOX", "uid", uidstr, NULL), 0);
                if (strstr(out, "\\Seen"))
                        break;
        }
        ck_assert_msg(strstr(out, "\\Seen"), "UID %u not \\Seen: %s; log:\n%s", uid, out, log_tail());
}
END_TEST

/* ---- Paused and per-account notify --------------------------------------- */

START_TEST(test_paused_and_per_account) {
        const struct notify_call *c;

        write_config(NULL, "notify = false\n");
        start_daemon(2);

        /* notify = false for "quiet": its mail is signalled, never shown */
        deliver("user2", "Q <q@example.org>", "quiet one");
        wait_new_mail(1, 15000);
        assert_no_notify_after(0, 1500);

        /* Paused: signals go on, popups do not */
        set_paused(true);
        deliver("user1", "P <p@example.org>", "while paused");
        wait_new_mail(2, 15000);
        assert_no_notify_after(0, 1500);

        set_paused(false);
        deliver("user1", "R <r@example.org>", "after resume");
        c = wait_notify(0);
        ck_assert_str_eq(c->summary, "R");
        ck_assert_str_eq(c->body, "after resume");
}
END_TEST

/* ---- a frozen or missing notification server ----------------------------- */

START_TEST(test_frozen_server) {
        uint64_t ms;
        size_t n;

        write_config("notify_max_individual = 10\n", NULL);
        start_daemon(1);
        deliver("user1", "A <a@example.org>", "before");
        wait_notify(0);

        ck_assert_int_ge(harness_notify_signal(&h, SIGSTOP), 0);
        /* each NewMail as fast as with a live server (Dovecot's ~0.5 s batching
         * included): the daemon is not waiting for the popup */
        for (unsigned i = 0; i < 3; i++) {
                char subject[32];

                snprintf(subject, sizeof(subject), "frozen %u", i);
                deliver("user1", "F <f@example.org>", subject);
                ms = wait_new_mail(2 + i, 15000);
                ck_assert_msg(ms < 5000, "NewMail %u took %llu ms with the server frozen", i, (unsigned long long) ms);
        }
        /* the daemon still answers on the bus */
        uint64_t t0 = now_ms();
        set_paused(false);
        ck_assert_uint_lt(now_ms() - t0, 2000);

        ck_assert_int_ge(harness_notify_signal(&h, SIGCONT), 0);
        /* the popups come, each once: the first was on its way, the rest
         * follow with their latest content */
        ck_assert(notify_monitor_wait_notify(mon, 4, 20000));
        pump(1500);
        n = notify_monitor_n_notify(mon);
        ck_assert_uint_eq(n, 4);
        for (size_t i = 1; i < 4; i++) {
                char subject[32];

                snprintf(subject, sizeof(subject), "frozen %zu", i - 1);
                ck_assert_str_eq(notify_monitor_get(mon, i)->body, subject);
        }
}
END_TEST

START_TEST(test_no_server) {
        write_config(NULL, NULL);
        ck_assert_int_ge(harness_notify_signal(&h, SIGKILL), 0);
        start_daemon(1);
        deliver("user1", "A <a@example.org>", "nobody shows this");
        wait_new_mail(1, 15000);
        deliver("user1", "B <b@example.org>", "nor this");
        wait_new_mail(2, 15000);
        ck_assert_msg(daemon_runner_wait_log(&d, "cannot show desktop notifications", 1, 5000), "log:\n%s",
                      log_tail());
        pump(1000);
        /* once, not per message */
        ck_assert_uint_eq(daemon_runner_count(&d, "cannot show desktop notifications"), 1);
        /* nothing owns the name and the private bus cannot activate one:
         * GetCapabilities fails, nothing is sent blindly */
        ck_assert_uint_eq(notify_monitor_n_notify(mon), 0);
}
END_TEST

/* A picture of real popups (for the README: IMAPIDLED_SCREENSHOT=path
 * keeps it, `make screenshot` does that for docs/) */
START_TEST(test_screenshot) {
        const char *path = getenv("IMAPIDLED_SCREENSHOT");
        char own[PATH_MAX + 32];
        struct stat st;

        if (!path || !*path) {
                snprintf(own, sizeof(own), "%s/screenshot.png", d.dir);
                path = own;
        }
        write_config(NULL, NULL);
        start_daemon(1);
        deliver("user1", "=?ISO-8859-1?Q?Ren=E9_Z=FCrich?= <rene@example.org>",
                "<b>x</b> & <a href=\"https://evil.example\">y</a>");
        wait_notify(0);
        deliver("user1", "=?UTF-8?B?5bGx55Sw5aSq6YOO?= <taro@example.jp>",
                "=?UTF-8?Q?Quarterly_report_=E2=80=93_draft_2?=");
        wait_notify(1);
        usleep(800000);
        ck_assert_int_ge(harness_screenshot(&h, path), 0);
        /* a 1024x768 PNG with text on it, not an empty screen */
        ck_assert_int_eq(stat(path, &st), 0);
        ck_assert_int_gt(st.st_size, 5000);
}
END_TEST

int main(void) {
        Suite *s = suite_create("notify");
        TCase *tc = tcase_create("dunst");
        SRunner *sr;
        int failed;

        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_set_timeout(tc, 120);
        tcase_add_test(tc, test_hostile_content);
        tcase_add_test(tc, test_no_content);
        tcase_add_test(tc, test_burst_updates_in_place);
        tcase_add_test(tc, test_catch_up_is_one_summary);
        tcase_add_test(tc, test_read_elsewhere_closes);
        tcase_add_test(tc, test_actions);
        tcase_add_test(tc, test_paused_and_per_account);
        tcase_add_test(tc, test_frozen_server);
        tcase_add_test(tc, test_no_server);
        suite_add_tcase(s, tc);
        /* its own case: CK_RUN_CASE=screenshot (make screenshot) runs it alone */
        tc = tcase_create("screenshot");
        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_set_timeout(tc, 120);
        tcase_add_test(tc, test_screenshot);
        suite_add_tcase(s, tc);
        sr = srunner_create(s);
        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
