/* SPDX-License-Identifier: MIT */
/*
 * The session engine against a real Dovecot: first sync counts and does not
 * announce, new mail is announced exactly once with its envelope, changes by
 * other clients arrive as flag and removal events, a restart from a persisted
 * point catches up exactly once, and failures (wrong password, TLS pin,
 * server restart, kicked session) end in the right state and recover.
 */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "harness.h"
#include "imap-session.h"
#include "log.h"
#include "session-plan.h"
#include "suites.h"
#include "test-timeout.h"

static const char *const inbox_only[] = { "INBOX" };
#include "uidset.h"

#define MAX_EVENTS 256

struct recorder {
        struct harness *h;
        const char *user;
        const char *password;           /* NULL: the harness password */
        unsigned secret_delay_ms;       /* answer need_secret later, from a timer */
        unsigned secrets_asked;
        sd_event_source *secret_timer;

        uint32_t new_uids[MAX_EVENTS];
        char new_subjects[MAX_EVENTS][128];
        char new_mailboxes[MAX_EVENTS][64];
        char flag_mailbox[MAX_EVENTS][64];
        unsigned n_new;
        unsigned batches;
        uint32_t removed[MAX_EVENTS];
        unsigned n_removed;
        uint32_t flag_uid[MAX_EVENTS];
        bool flag_seen[MAX_EVENTS];
        unsigned n_flags;
        struct imap_mailbox_status last_status;
        unsigned n_status, n_reset;
        enum session_state state;
        unsigned entered[_SESSION_STATE_MAX];
        bool stopped;
};

static struct harness h;
static sd_event *event;
static struct imap_session *sess;
static struct recorder rec;
static unsigned want_new, want_flags, want_removed;

static uint64_t now_ms(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000 + (uint64_t) ts.tv_nsec / 1000000;
}

typedef bool (*pred_fn)(void);

/* Runs the loop until pred() holds; fails the test after timeout_ms (scaled
 * by IMAPIDLED_TEST_TIMEOUT_SCALE). */
static void run_until(pred_fn pred, unsigned timeout_ms, const char *what) {
        uint64_t deadline = now_ms() + test_timeout_ms(timeout_ms);

        while (!pred()) {
                ck_assert_msg(now_ms() < deadline, "timed out waiting for %s (state %s, last error: %s)", what,
                              session_state_to_string(rec.state), sess ? imap_session_last_error(sess) : "");
                ck_assert_int_ge(sd_event_run(event, 100 * 1000), 0);
        }
}

/* Runs the loop for ms whatever happens. */
static void run_for(unsigned ms) {
        uint64_t deadline = now_ms() + ms;

        while (now_ms() < deadline)
                ck_assert_int_ge(sd_event_run(event, 50 * 1000), 0);
}

/* ---- recording callbacks ------------------------------------------------- */

static void on_state(struct imap_session *s, enum session_state old, enum session_state new, void *ud) {
        rec.state = new;
        rec.entered[new]++;
}

static void give_secret(struct imap_session *s) {
        char pw[64];

        imap_session_set_secret(s, rec.password ? rec.password : harness_password(rec.h, rec.user, pw, sizeof(pw)));
}

static int on_secret_timer(sd_event_source *es, uint64_t usec, void *ud) {
        rec.secret_timer = sd_event_source_disable_unref(rec.secret_timer);
        give_secret(sess);
        return 0;
}

static void on_need_secret(struct imap_session *s, void *ud) {
        rec.secrets_asked++;
        if (rec.secret_delay_ms == 0) {
                give_secret(s);
                return;
        }
        /* as a slow password_command would: the answer comes later */
        ck_assert_int_ge(sd_event_add_time_relative(event, &rec.secret_timer, CLOCK_MONOTONIC,
                                                    rec.secret_delay_ms * 1000ULL, 0, on_secret_timer, NULL), 0);
}

static void on_status(struct imap_session *s, const struct imap_mailbox_status *st, void *ud) {
        rec.last_status = *st;
        rec.last_status.mailbox = NULL;
        rec.n_status++;
}

static void on_reset(struct imap_session *s, const char *mailbox, uint32_t old, uint32_t new, void *ud) {
        rec.n_reset++;
}

static void on_new(struct imap_session *s, const struct imap_message *m, void *ud) {
        ck_assert_uint_lt(rec.n_new, MAX_EVENTS);
        rec.new_uids[rec.n_new] = m->uid;
        snprintf(rec.new_subjects[rec.n_new], sizeof(rec.new_subjects[0]), "%s",
                 m->envelope->subject ? m->envelope->subject : "");
        snprintf(rec.new_mailboxes[rec.n_new], sizeof(rec.new_mailboxes[0]), "%s", m->mailbox);
        rec.n_new++;
}

static void on_batch(struct imap_session *s, const char *mailbox, unsigned n, void *ud) {
        rec.batches++;
}

static void on_removed(struct imap_session *s, const char *mailbox, const uint32_t *uids, size_t n, void *ud) {
        for (size_t i = 0; i < n && rec.n_removed < MAX_EVENTS; i++)
                rec.removed[rec.n_removed++] = uids[i];
}

static void on_flags(struct imap_session *s, const char *mailbox, uint32_t uid, bool seen, bool deleted, void *ud) {
        ck_assert_uint_lt(rec.n_flags, MAX_EVENTS);
        rec.flag_uid[rec.n_flags] = uid;
        snprintf(rec.flag_mailbox[rec.n_flags], sizeof(rec.flag_mailbox[0]), "%s", mailbox);
        rec.flag_seen[rec.n_flags] = seen;
        rec.n_flags++;
}

static const struct imap_session_callbacks callbacks = {
        .state_changed = on_state,
        .need_secret = on_need_secret,
        .mailbox_status = on_status,
        .mailbox_reset = on_reset,
        .new_message = on_new,
        .batch_done = on_batch,
        .removed = on_removed,
        .flags_changed = on_flags,
};

/* ---- fixture ------------------------------------------------------------- */

static void setup(void) {
        ck_assert_int_ge(harness_start(&h, 0), 0);
        ck_assert_int_ge(sd_event_new(&event), 0);
        rec = (struct recorder) { .h = &h, .user = "user1" };
        want_new = want_flags = want_removed = 0;
        if (getenv("IMAPIDLED_TEST_TRACE"))
                log_set_max_level(LOG_DEBUG);
}

static void teardown(void) {
        sess = imap_session_free(sess);
        rec.secret_timer = sd_event_source_disable_unref(rec.secret_timer);
        event = sd_event_unref(event);
        harness_stop(&h);
}

static struct imap_session_config base_config(enum imap_tls_mode tls) {
        return (struct imap_session_config) {
                .account = "test",
                .host = "localhost",
                .port = (uint16_t) (tls == IMAP_TLS_IMPLICIT ? h.imaps_port : h.imap_port),
                .tls = tls,
                .ca_file = h.ca_file,
                .user = rec.user,
                .auth = SASL_MECH_PREF_AUTO,
                .mailboxes = inbox_only,
                .n_mailboxes = 1,
                .command_timeout_usec = 10 * 1000000ULL,
                .backoff_min_usec = 100 * 1000,
                .backoff_max_usec = 2 * 1000000,
                .auth_backoff_min_usec = 300 * 1000,
                .trace = getenv("IMAPIDLED_TEST_TRACE") != NULL,
        };
}

static void start(const struct imap_session_config *cfg, const struct imap_mailbox_point *point) {
        ck_assert_int_ge(imap_session_new(event, cfg, &callbacks, NULL, &sess), 0);
        if (point)
                ck_assert_int_eq(imap_session_set_point(sess, "INBOX", point), 0);
        ck_assert_int_ge(imap_session_start(sess), 0);
}

static bool is_idle(void) {
        return rec.state == SESSION_IDLE;
}

static bool is_error(void) {
        return rec.state == SESSION_ERROR;
}

static bool have_changes(void) {
        return rec.n_flags >= want_flags && rec.n_removed >= want_removed;
}

static bool have_new(void) {
        return rec.n_new >= want_new && rec.state == SESSION_IDLE;
}

static void deliver(const char *subject) {
        ck_assert_int_eq(harness_deliver(&h, rec.user, "INBOX", "Alice <alice@example.org>", subject), 0);
}

static void assert_new_exactly(unsigned n) {
        for (unsigned i = 0; i < rec.n_new; i++)
                for (unsigned j = i + 1; j < rec.n_new; j++)
                        ck_assert_msg(rec.new_uids[i] != rec.new_uids[j] ||
                                      strcmp(rec.new_mailboxes[i], rec.new_mailboxes[j]) != 0,
                                      "UID %u of %s announced twice", rec.new_uids[i], rec.new_mailboxes[i]);
        ck_assert_uint_eq(rec.n_new, n);
}

/* ---- tests --------------------------------------------------------------- */

/* First start counts what is there; what arrives afterwards is announced,
 * once, with its envelope. */
START_TEST(test_first_sync_then_new_mail) {
        struct imap_session_config cfg = base_config(IMAP_TLS_IMPLICIT);

        deliver("old one");
        deliver("old two");
        start(&cfg, NULL);
        run_until(is_idle, 15000, "IDLE");
        ck_assert_uint_eq(rec.n_new, 0);
        ck_assert_uint_eq(rec.last_status.exists, 2);
        ck_assert_uint_eq(rec.last_status.unseen, 2);
        ck_assert_uint_gt(rec.last_status.point.uidvalidity, 0);
        ck_assert_uint_eq(rec.last_status.point.announced_uid, 2);
        ck_assert_uint_eq(rec.secrets_asked, 1);

        deliver("=?UTF-8?Q?fr=C3=BCh?= news");
        want_new = 1;
        run_until(have_new, 15000, "a new message");
        assert_new_exactly(1);
        ck_assert_uint_eq(rec.new_uids[0], 3);
        ck_assert_str_eq(rec.new_subjects[0], "=?UTF-8?Q?fr=C3=BCh?= news");
        ck_assert_uint_eq(rec.last_status.exists, 3);
        ck_assert_uint_eq(rec.last_status.unseen, 3);
        ck_assert_uint_eq(rec.last_status.point.announced_uid, 3);
        ck_assert_uint_ge(rec.batches, 1);

        /* a burst: each once */
        for (int i = 0; i < 5; i++)
                deliver("burst");
        want_new = 6;
        run_until(have_new, 15000, "five more");
        run_for(700);
        assert_new_exactly(6);
        ck_assert_uint_eq(imap_session_connects(sess), 1);
}
END_TEST

/* A restart from a persisted point announces exactly what came after it;
 * STARTTLS, and a secret that arrives late, as from a slow password_command. */
START_TEST(test_restart_from_point_starttls) {
        struct imap_session_config cfg = base_config(IMAP_TLS_STARTTLS);
        struct imap_mailbox_point point;

        start(&cfg, NULL);
        run_until(is_idle, 15000, "IDLE");
        point = rec.last_status.point;
        sess = imap_session_free(sess);

        deliver("while away 1");
        deliver("while away 2");
        rec = (struct recorder) { .h = &h, .user = "user1", .secret_delay_ms = 300 };
        start(&cfg, &point);
        want_new = 2;
        run_until(have_new, 15000, "catch-up");
        run_for(600);
        assert_new_exactly(2);
        ck_assert_uint_eq(rec.new_uids[0], 1);
        ck_assert_uint_eq(rec.new_uids[1], 2);
        ck_assert_uint_eq(rec.n_reset, 0);

        /* and again with the new point: nothing */
        point = rec.last_status.point;
        ck_assert_uint_eq(point.announced_uid, 2);
        sess = imap_session_free(sess);
        rec = (struct recorder) { .h = &h, .user = "user1" };
        start(&cfg, &point);
        run_until(is_idle, 15000, "IDLE");
        run_for(600);
        assert_new_exactly(0);
}
END_TEST

/* A different UIDVALIDITY resets without announcing the mailbox. */
START_TEST(test_uidvalidity_change_resets) {
        struct imap_session_config cfg = base_config(IMAP_TLS_IMPLICIT);
        struct imap_mailbox_point point = { .uidvalidity = 12345, .announced_uid = 0, .highestmodseq = 1 };

        deliver("a");
        deliver("b");
        start(&cfg, &point);
        run_until(is_idle, 15000, "IDLE");
        run_for(300);
        ck_assert_uint_eq(rec.n_reset, 1);
        assert_new_exactly(0);
        ck_assert_uint_ne(rec.last_status.point.uidvalidity, 12345);
        ck_assert_uint_eq(rec.last_status.point.announced_uid, 2);
}
END_TEST


/* Another client reads and deletes: flag and removal events, counts follow. */
START_TEST(test_other_client_changes) {
        struct imap_session_config cfg = base_config(IMAP_TLS_IMPLICIT);

        deliver("one");
        deliver("two");
        deliver("three");
        start(&cfg, NULL);
        run_until(is_idle, 15000, "IDLE");
        ck_assert_uint_eq(rec.last_status.unseen, 3);

        ck_assert_int_eq(harness_flags(&h, "user1", "INBOX", 2, "add", "\\Seen"), 0);
        want_flags = 1;
        run_until(have_changes, 15000, "the flag change");
        ck_assert_uint_eq(rec.flag_uid[0], 2);
        ck_assert(rec.flag_seen[0]);
        ck_assert_uint_eq(rec.last_status.unseen, 2);

        ck_assert_int_eq(harness_expunge(&h, "user1", "INBOX", 1), 0);
        want_removed = 1;
        run_until(have_changes, 15000, "the removal");
        ck_assert_uint_eq(rec.removed[0], 1);
        run_for(300);
        ck_assert_uint_eq(rec.last_status.exists, 2);
        ck_assert_uint_eq(rec.last_status.unseen, 1);

        /* unread again: counted, not announced as new */
        ck_assert_int_eq(harness_flags(&h, "user1", "INBOX", 2, "remove", "\\Seen"), 0);
        want_flags = 2;
        run_until(have_changes, 15000, "the second flag change");
        ck_assert(!rec.flag_seen[1]);
        ck_assert_uint_eq(rec.last_status.unseen, 2);
        assert_new_exactly(0);
}
END_TEST

/* Dovecot goes away, mail arrives, Dovecot comes back: one event each. */
START_TEST(test_server_restart_catch_up) {
        struct imap_session_config cfg = base_config(IMAP_TLS_IMPLICIT);

        start(&cfg, NULL);
        run_until(is_idle, 15000, "IDLE");
        ck_assert_int_eq(harness_server_stop(&h), 0);
        deliver("during the outage 1");
        deliver("during the outage 2");
        run_for(500);
        ck_assert(rec.state == SESSION_BACKOFF || rec.state == SESSION_CONNECTING);
        ck_assert_int_eq(harness_server_start(&h), 0);
        want_new = 2;
        run_until(have_new, 20000, "catch-up after the restart");
        deliver("after");
        want_new = 3;
        run_until(have_new, 15000, "mail after the restart");
        run_for(600);
        assert_new_exactly(3);
        ck_assert_uint_ge(imap_session_connects(sess), 2);
}
END_TEST

/* The server drops the session (doveadm kick): reconnect and catch up. */
START_TEST(test_kicked_session_reconnects) {
        struct imap_session_config cfg = base_config(IMAP_TLS_IMPLICIT);
        char out[256];

        start(&cfg, NULL);
        run_until(is_idle, 15000, "IDLE");
        ck_assert_int_ge(harness_doveadm(&h, out, sizeof(out), "kick", "user1", NULL), 0);
        deliver("after the kick");
        want_new = 1;
        run_until(have_new, 20000, "catch-up after the kick");
        run_for(600);
        assert_new_exactly(1);
        ck_assert_uint_eq(imap_session_connects(sess), 2);
        ck_assert_uint_eq(rec.secrets_asked, 2);        /* the secret is fetched again */
}
END_TEST

static bool asked_twice(void) {
        return rec.secrets_asked >= 2 && rec.state == SESSION_ERROR;
}

/* Wrong password: error state, slow retries, the secret asked each time,
 * and the password never in a log line. */
static char logged[64 * 1024];
static size_t logged_len;
static void capture_log(int level, const char *line, void *ud) {
        size_t n = strlen(line);

        if (logged_len + n + 2 < sizeof(logged)) {
                memcpy(logged + logged_len, line, n);
                logged_len += n;
                logged[logged_len++] = '\n';
                logged[logged_len] = '\0';
        }
}

START_TEST(test_wrong_password) {
        struct imap_session_config cfg = base_config(IMAP_TLS_IMPLICIT);

        logged_len = 0;
        logged[0] = '\0';
        log_set_sink(capture_log, NULL);
        log_set_max_level(LOG_DEBUG);
        cfg.trace = true;
        rec.password = "Wr0ng-S3cret!";
        start(&cfg, NULL);
        run_until(is_error, 15000, "the error state");
        ck_assert_msg(strstr(imap_session_last_error(sess), "authentication"), "%s", imap_session_last_error(sess));
        ck_assert_uint_ge(imap_session_backoff_usec(sess), 150 * 1000);
        run_until(asked_twice, 15000, "a second attempt");
        /* the second wait is longer than the first minimum */
        ck_assert_uint_ge(imap_session_backoff_usec(sess), 300 * 1000);
        log_set_sink(NULL, NULL);
        log_set_max_level(LOG_INFO);
        ck_assert_ptr_nonnull(strstr(logged, "C: a"));          /* the trace was on */
        ck_assert_ptr_nonnull(strstr(logged, "<redacted>"));
        ck_assert_msg(!strstr(logged, "Wr0ng-S3cret!"), "the password was logged");
}
END_TEST

/* The certificate pin does not match: TLS verification error. */
START_TEST(test_pin_mismatch) {
        struct imap_session_config cfg = base_config(IMAP_TLS_IMPLICIT);

        cfg.fingerprint = "sha256:0000000000000000000000000000000000000000000000000000000000000000";
        start(&cfg, NULL);
        run_until(is_error, 15000, "the error state");
        ck_assert_msg(strstr(imap_session_last_error(sess), "fingerprint"), "%s", imap_session_last_error(sess));
        ck_assert_uint_eq(rec.secrets_asked, 0);        /* nothing was sent */
}
END_TEST

/* The system store does not know the test CA. */
START_TEST(test_unknown_ca) {
        struct imap_session_config cfg = base_config(IMAP_TLS_IMPLICIT);

        cfg.ca_file = NULL;
        start(&cfg, NULL);
        run_until(is_error, 15000, "the error state");
        ck_assert_msg(strstr(imap_session_last_error(sess), "verify"), "%s", imap_session_last_error(sess));
        ck_assert_uint_eq(rec.secrets_asked, 0);
}
END_TEST

/* tls = none works on loopback (Dovecot allows plaintext here). */
START_TEST(test_plain_loopback) {
        struct imap_session_config cfg = base_config(IMAP_TLS_NONE);

        start(&cfg, NULL);
        run_until(is_idle, 15000, "IDLE");
        deliver("plain");
        want_new = 1;
        run_until(have_new, 15000, "a new message");
        assert_new_exactly(1);
}
END_TEST

static unsigned refresh_lines;
static void count_refresh(int level, const char *line, void *ud) {
        if (strstr(line, "re-issuing IDLE"))
                refresh_lines++;
}

/* A short idle_refresh: IDLE is re-issued again and again, nothing is lost. */
START_TEST(test_idle_refresh) {
        struct imap_session_config cfg = base_config(IMAP_TLS_IMPLICIT);

        refresh_lines = 0;
        log_set_sink(count_refresh, NULL);
        log_set_max_level(LOG_DEBUG);
        cfg.idle_refresh_usec = 400 * 1000;
        start(&cfg, NULL);
        run_until(is_idle, 15000, "IDLE");
        for (int i = 0; i < 6; i++) {
                deliver("refresh");
                run_for(350);
        }
        want_new = 6;
        run_until(have_new, 15000, "all six");
        run_for(500);
        log_set_sink(NULL, NULL);
        log_set_max_level(LOG_INFO);
        assert_new_exactly(6);
        ck_assert_uint_ge(refresh_lines, 3);
        ck_assert_uint_eq(imap_session_connects(sess), 1);
}
END_TEST

static const char *const three[] = { "INBOX", "Lists/linux", "Work \xc3\xa9t\xc3\xa9" };

static void deliver_to(const char *mailbox, const char *subject) {
        ck_assert_int_eq(harness_deliver(&h, rec.user, mailbox, "Bob <bob@example.org>", subject), 0);
}

static void make_boxes(void) {
        ck_assert_int_eq(harness_mkbox(&h, "user1", three[1]), 0);
        ck_assert_int_eq(harness_mkbox(&h, "user1", three[2]), 0);
        deliver_to(three[1], "old in lists");          /* counted, never announced */
}

static unsigned count_new_in(const char *mailbox) {
        unsigned n = 0;

        for (unsigned i = 0; i < rec.n_new; i++)
                if (strcmp(rec.new_mailboxes[i], mailbox) == 0)
                        n++;
        return n;
}

/* Several mailboxes on one connection through NOTIFY: each delivery is
 * announced once, under the right mailbox. */
START_TEST(test_notify_three_mailboxes) {
        struct imap_session_config cfg = base_config(IMAP_TLS_IMPLICIT);

        make_boxes();
        cfg.mailboxes = three;
        cfg.n_mailboxes = 3;
        start(&cfg, NULL);
        run_until(is_idle, 15000, "IDLE");
        ck_assert(imap_session_uses_notify(sess));
        ck_assert_uint_eq(rec.n_new, 0);

        deliver_to(three[1], "to lists");
        want_new = 1;
        run_until(have_new, 15000, "mail in Lists/linux");
        deliver_to(three[2], "to work");
        want_new = 2;
        run_until(have_new, 15000, "mail in Work");
        deliver_to("INBOX", "to inbox");
        want_new = 3;
        run_until(have_new, 15000, "mail in INBOX");
        run_for(700);
        assert_new_exactly(3);
        ck_assert_uint_eq(count_new_in(three[0]), 1);
        ck_assert_uint_eq(count_new_in(three[1]), 1);
        ck_assert_uint_eq(count_new_in(three[2]), 1);
        ck_assert_uint_eq(rec.new_uids[0], 2);         /* UID 1 of Lists/linux was there before */
        ck_assert_uint_eq(imap_session_connects(sess), 1);

        /* read elsewhere in a further mailbox: the session learns which */
        ck_assert_int_eq(harness_flags(&h, "user1", three[2], 1, "add", "\\Seen"), 0);
        want_flags = 1;
        run_until(have_changes, 15000, "the flag change in Work");
        ck_assert_str_eq(rec.flag_mailbox[0], three[2]);
        ck_assert_uint_eq(rec.flag_uid[0], 1);
        ck_assert(rec.flag_seen[0]);
}
END_TEST

/* The same without NOTIFY: further mailboxes are checked on a timer. */
START_TEST(test_poll_without_notify) {
        struct imap_session_config cfg = base_config(IMAP_TLS_IMPLICIT);

        make_boxes();
        cfg.mailboxes = three;
        cfg.n_mailboxes = 3;
        cfg.no_notify = true;
        cfg.poll_interval_usec = 500 * 1000;
        start(&cfg, NULL);
        run_until(is_idle, 15000, "IDLE");
        ck_assert(!imap_session_uses_notify(sess));
        deliver_to(three[2], "to work");
        deliver_to("INBOX", "to inbox");
        want_new = 2;
        run_until(have_new, 15000, "both");
        run_for(1500);          /* three more polls: nothing twice */
        assert_new_exactly(2);
        ck_assert_uint_eq(count_new_in(three[2]), 1);
        ck_assert_uint_eq(count_new_in("INBOX"), 1);
        ck_assert_uint_eq(imap_session_connects(sess), 1);
}
END_TEST

/* A check (CheckNow, network change) also looks at polled mailboxes at once
 * instead of at the next poll. */
START_TEST(test_check_polls_now) {
        struct imap_session_config cfg = base_config(IMAP_TLS_IMPLICIT);

        make_boxes();
        cfg.mailboxes = three;
        cfg.n_mailboxes = 3;
        cfg.no_notify = true;
        cfg.poll_interval_usec = 600 * 1000000ULL;
        start(&cfg, NULL);
        run_until(is_idle, 15000, "IDLE");
        deliver_to(three[1], "checked now");
        run_for(1500);
        ck_assert_uint_eq(rec.n_new, 0);         /* nothing polls for ten minutes */
        ck_assert_int_ge(imap_session_check(sess, 5 * 1000000ULL), 0);
        want_new = 1;
        run_until(have_new, 5000, "the polled mailbox checked at once");
        ck_assert_str_eq(rec.new_mailboxes[0], three[1]);
}
END_TEST

static struct imap_session **budget;
static size_t n_budget;

static bool budget_idle(void) {
        for (size_t i = 0; i < n_budget; i++)
                if (imap_session_get_state(budget[i]) != SESSION_IDLE)
                        return false;
        return true;
}

/* No NOTIFY and a budget of 2 connections for 4 mailboxes: one IDLE
 * connection for INBOX, one for Lists/linux that also polls the other two;
 * every delivery announced once, and the server sees 2 connections. */
START_TEST(test_connection_budget) {
        static const char *const four[] = { "INBOX", "Lists/linux", "Work \xc3\xa9t\xc3\xa9", "Archive" };
        struct imap_session *extra[4] = {};
        struct session_group g[4];
        struct imap_session_config cfg = base_config(IMAP_TLS_IMPLICIT);
        char who[4096];
        size_t k;

        make_boxes();
        ck_assert_int_eq(harness_mkbox(&h, "user1", four[3]), 0);
        k = session_plan(4, 2, false, g);
        ck_assert_uint_eq(k, 2);
        cfg.no_notify = true;
        cfg.poll_interval_usec = 500 * 1000;
        for (size_t i = 0; i < k; i++) {
                cfg.mailboxes = &four[g[i].first];
                cfg.n_mailboxes = g[i].n;
                ck_assert_int_ge(imap_session_new(event, &cfg, &callbacks, NULL, &extra[i]), 0);
                ck_assert_int_ge(imap_session_start(extra[i]), 0);
        }
        run_for(2500);
        /* both in IDLE, given more time where everything is slower (valgrind) */
        budget = extra;
        n_budget = k;
        run_until(budget_idle, 5000, "both connections in IDLE");

        for (size_t i = 0; i < 4; i++)
                deliver_to(four[i], "budget");
        want_new = 4;
        run_until(have_new, 20000, "all four");
        run_for(1500);
        assert_new_exactly(4);
        for (size_t i = 0; i < 4; i++)
                ck_assert_uint_eq(count_new_in(four[i]), 1);

        /* the server's view: two IMAP connections of user1 */
        ck_assert_int_ge(harness_doveadm(&h, who, sizeof(who), "who", "-1", "user1", NULL), 0);
        unsigned conns = 0;
        for (const char *p = who; (p = strstr(p, "user1")); p++)
                conns++;
        ck_assert_msg(conns == 2, "doveadm who: %s", who);

        for (size_t i = 0; i < k; i++)
                imap_session_free(extra[i]);
}
END_TEST

static void on_stop_done(struct imap_session *s, void *ud) {
        rec.stopped = true;
}

static bool stopped(void) {
        return rec.stopped;
}

/* stop() logs out from IDLE and ends in STOPPED. */
START_TEST(test_stop_logs_out) {
        struct imap_session_config cfg = base_config(IMAP_TLS_IMPLICIT);

        start(&cfg, NULL);
        run_until(is_idle, 15000, "IDLE");
        ck_assert_int_ge(imap_session_stop(sess, on_stop_done), 0);
        run_until(stopped, 5000, "the stop");
        ck_assert_int_eq(rec.state, SESSION_STOPPED);
        ck_assert_uint_eq(rec.entered[SESSION_LOGOUT], 1);
        ck_assert_uint_eq(rec.entered[SESSION_BACKOFF], 0);
}
END_TEST

static Suite *imap_session_suite(void) {
        Suite *s = suite_create("imap-session");
        TCase *tc = tcase_create("dovecot");

        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_set_timeout(tc, 90);
        tcase_add_test(tc, test_first_sync_then_new_mail);
        tcase_add_test(tc, test_restart_from_point_starttls);
        tcase_add_test(tc, test_uidvalidity_change_resets);
        tcase_add_test(tc, test_other_client_changes);
        tcase_add_test(tc, test_server_restart_catch_up);
        tcase_add_test(tc, test_kicked_session_reconnects);
        tcase_add_test(tc, test_wrong_password);
        tcase_add_test(tc, test_pin_mismatch);
        tcase_add_test(tc, test_unknown_ca);
        tcase_add_test(tc, test_plain_loopback);
        tcase_add_test(tc, test_idle_refresh);
        tcase_add_test(tc, test_stop_logs_out);
        tcase_add_test(tc, test_notify_three_mailboxes);
        tcase_add_test(tc, test_poll_without_notify);
        tcase_add_test(tc, test_connection_budget);
        tcase_add_test(tc, test_check_polls_now);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        SRunner *sr = srunner_create(imap_session_suite());
        int failed;

        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
