/* SPDX-License-Identifier: MIT */
/*
 * The session engine against the scripted fake server: byte-exact server
 * quirks and failures that Dovecot will not produce on demand. Every script
 * runs on loopback with tls = none (allowed there), so the bytes on the wire
 * can be asserted on, including that no credential was ever sent.
 */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fake-server.h"
#include "imap-session.h"
#include "log.h"
#include "suites.h"

static const char *const inbox_only[] = { "INBOX" };

struct recorder {
        const char *secret;
        unsigned secrets_asked;
        uint32_t new_uids[64];
        unsigned n_new;
        uint32_t removed[64];
        unsigned n_removed;
        unsigned entered[_SESSION_STATE_MAX];
        enum session_state state;
        struct imap_mailbox_status status;
};

static sd_event *event;
static struct imap_session *sess;
static struct fake_server *fake;
static struct recorder rec;

static uint64_t now_ms(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000 + (uint64_t) ts.tv_nsec / 1000000;
}

typedef bool (*pred_fn)(void);

static void run_until(pred_fn pred, unsigned timeout_ms, const char *what) {
        uint64_t deadline = now_ms() + timeout_ms;

        while (!pred()) {
                ck_assert_msg(now_ms() < deadline, "timed out waiting for %s (state %s, error: %s, fake: %s)", what,
                              session_state_to_string(rec.state), imap_session_last_error(sess),
                              fake_server_error(fake) ? fake_server_error(fake) : "-");
                ck_assert_int_ge(sd_event_run(event, 50 * 1000), 0);
        }
}

static void on_state(struct imap_session *s, enum session_state old, enum session_state new, void *ud) {
        rec.state = new;
        rec.entered[new]++;
}

static void on_need_secret(struct imap_session *s, void *ud) {
        rec.secrets_asked++;
        imap_session_set_secret(s, rec.secret ? rec.secret : "pw");
}

static void on_new(struct imap_session *s, const struct imap_message *m, void *ud) {
        if (rec.n_new < 64)
                rec.new_uids[rec.n_new++] = m->uid;
}

static void on_removed(struct imap_session *s, const char *mailbox, const uint32_t *uids, size_t n, void *ud) {
        for (size_t i = 0; i < n && rec.n_removed < 64; i++)
                rec.removed[rec.n_removed++] = uids[i];
}

static void on_status(struct imap_session *s, const struct imap_mailbox_status *st, void *ud) {
        rec.status = *st;
}

static const struct imap_session_callbacks callbacks = {
        .state_changed = on_state,
        .need_secret = on_need_secret,
        .new_message = on_new,
        .removed = on_removed,
        .mailbox_status = on_status,
};

static void setup(void) {
        ck_assert_int_ge(sd_event_new(&event), 0);
        rec = (struct recorder) {};
        if (getenv("IMAPIDLED_TEST_TRACE"))
                log_set_max_level(LOG_DEBUG);
}

static void teardown(void) {
        sess = imap_session_free(sess);
        fake = fake_server_free(fake);
        event = sd_event_unref(event);
}

static void start(const struct fake_step *script, size_t n, enum imap_tls_mode tls, enum sasl_mech_pref auth) {
        struct imap_session_config cfg = {
                .account = "fake",
                .host = "127.0.0.1",
                .tls = tls,
                .user = "me@example.org",
                .auth = auth,
                .mailboxes = inbox_only,
                .n_mailboxes = 1,
                .command_timeout_usec = 800 * 1000,
                .backoff_min_usec = 50 * 1000,
                .backoff_max_usec = 200 * 1000,
                .auth_backoff_min_usec = 100 * 1000,
                .stable_usec = 200 * 1000,
                .trace = getenv("IMAPIDLED_TEST_TRACE") != NULL,
        };

        fake = fake_server_start(script, n);
        ck_assert_ptr_nonnull(fake);
        cfg.port = (uint16_t) fake_server_port(fake);
        ck_assert_int_ge(imap_session_new(event, &cfg, &callbacks, NULL, &sess), 0);
        ck_assert_int_ge(imap_session_start(sess), 0);
}

static void script_done(void) {
        int r;

        /* the script must have run to its end; the loop keeps the client going */
        for (int i = 0; i < 100; i++) {
                r = fake_server_wait(fake, 1);
                if (r != -ETIMEDOUT)
                        break;
                sd_event_run(event, 50 * 1000);
        }
        ck_assert_msg(r == 0, "script: %d %s", r, fake_server_error(fake));
}

#define ELEMS(x) (sizeof(x) / sizeof((x)[0]))

/* A server with few extensions, up to IDLE. UIDVALIDITY 100, messages 1 and 2. */
#define GREETING(caps) FAKE_SEND_STR("* OK [CAPABILITY " caps "] fake ready\r\n")
#define LOGIN_STEPS                                                                     \
        FAKE_EXPECT_LINE("%t AUTHENTICATE PLAIN AG1lQGV4YW1wbGUub3JnAHB3"),             \
        FAKE_SEND_STR("%t OK [CAPABILITY IMAP4rev1 IDLE] logged in\r\n")
#define SYNC_STEPS                                                                      \
        FAKE_EXPECT_LINE("%t EXAMINE INBOX"),                                           \
        FAKE_SEND_STR("* 2 EXISTS\r\n* OK [UIDVALIDITY 100] v\r\n* OK [UIDNEXT 3] n\r\n" \
                      "%t OK [READ-ONLY] done\r\n"),                                    \
        FAKE_EXPECT_LINE("%t UID SEARCH ALL"),                                          \
        FAKE_SEND_STR("* SEARCH 1 2\r\n%t OK\r\n"),                                     \
        FAKE_EXPECT_LINE("%t UID SEARCH UNSEEN UNDELETED"),                             \
        FAKE_SEND_STR("* SEARCH 2\r\n%t OK\r\n")
#define SASL_CAPS "IMAP4rev1 IDLE SASL-IR AUTH=PLAIN"
#define ENVELOPE "ENVELOPE (\"Mon, 1 Jan 2024 00:00:00 +0000\" \"hello\" ((\"A\" NIL \"a\" \"example.org\")) " \
                 "NIL NIL NIL NIL NIL NIL \"<m@x>\")"

static bool new_1(void) {
        return rec.n_new >= 1 && rec.state == SESSION_IDLE;
}

/* EXISTS before "+ idling": the session leaves IDLE at once and fetches. */
START_TEST(test_exists_before_continuation) {
        static const struct fake_step script[] = {
                GREETING(SASL_CAPS), LOGIN_STEPS, SYNC_STEPS,
                FAKE_EXPECT_LINE("%t IDLE"),
                FAKE_SEND_STR("* 3 EXISTS\r\n+ idling\r\n"),
                FAKE_EXPECT_LINE("DONE"),
                FAKE_SEND_STR("%t OK idle done\r\n"),
                FAKE_EXPECT_LINE("%t UID FETCH 3:* (UID FLAGS ENVELOPE INTERNALDATE RFC822.SIZE)"),
                FAKE_SEND_STR("* 3 FETCH (UID 3 FLAGS () " ENVELOPE " RFC822.SIZE 10)\r\n%t OK\r\n"),
                FAKE_EXPECT_LINE("%t IDLE"),
                FAKE_SEND_STR("+ idling\r\n"),
                FAKE_STEP(FAKE_STALL),
        };

        start(script, ELEMS(script), IMAP_TLS_NONE, SASL_MECH_PREF_AUTO);
        run_until(new_1, 5000, "the new message");
        ck_assert_uint_eq(rec.new_uids[0], 3);
        ck_assert_uint_eq(rec.n_new, 1);
        ck_assert_uint_eq(rec.status.exists, 3);
        ck_assert_uint_eq(rec.status.unseen, 2);
}
END_TEST

static bool removed_then_new(void) {
        return rec.n_removed >= 1 && rec.n_new >= 1 && rec.state == SESSION_IDLE;
}

/* EXPUNGE then EXISTS with the same count: a removal, no fetch; a later
 * EXISTS that grows fetches the right UID. */
START_TEST(test_exists_after_expunge) {
        static const struct fake_step script[] = {
                GREETING(SASL_CAPS), LOGIN_STEPS, SYNC_STEPS,
                FAKE_EXPECT_LINE("%t IDLE"),
                FAKE_SEND_STR("+ idling\r\n* 1 EXPUNGE\r\n* 1 EXISTS\r\n"),
                FAKE_SLEEP_MS(200),
                FAKE_SEND_STR("* 2 EXISTS\r\n"),
                FAKE_EXPECT_LINE("DONE"),
                FAKE_SEND_STR("%t OK idle done\r\n"),
                FAKE_EXPECT_LINE("%t UID FETCH 3:* (UID FLAGS ENVELOPE INTERNALDATE RFC822.SIZE)"),
                FAKE_SEND_STR("* 2 FETCH (UID 7 FLAGS () " ENVELOPE ")\r\n%t OK\r\n"),
                FAKE_EXPECT_LINE("%t IDLE"),
                FAKE_SEND_STR("+ idling\r\n"),
                FAKE_STEP(FAKE_STALL),
        };

        start(script, ELEMS(script), IMAP_TLS_NONE, SASL_MECH_PREF_AUTO);
        run_until(removed_then_new, 5000, "removal and new message");
        ck_assert_uint_eq(rec.removed[0], 1);
        ck_assert_uint_eq(rec.new_uids[0], 7);
        ck_assert_uint_eq(rec.status.exists, 2);
        ck_assert_uint_eq(rec.status.unseen, 2);       /* 2 and 7 */
}
END_TEST

static bool second_idle(void) {
        return rec.entered[SESSION_IDLE] >= 2;
}

/* BYE during IDLE: the session reconnects and syncs again. */
START_TEST(test_bye_during_idle) {
        static const struct fake_step script[] = {
                GREETING(SASL_CAPS), LOGIN_STEPS, SYNC_STEPS,
                FAKE_EXPECT_LINE("%t IDLE"),
                FAKE_SEND_STR("+ idling\r\n"),
                FAKE_SLEEP_MS(100),
                FAKE_SEND_STR("* BYE Server shutting down\r\n"),
                FAKE_STEP(FAKE_CLOSE),
                FAKE_STEP(FAKE_ACCEPT),
                GREETING(SASL_CAPS), LOGIN_STEPS, SYNC_STEPS,
                FAKE_EXPECT_LINE("%t IDLE"),
                FAKE_SEND_STR("+ idling\r\n"),
                FAKE_STEP(FAKE_STALL),
        };

        start(script, ELEMS(script), IMAP_TLS_NONE, SASL_MECH_PREF_AUTO);
        run_until(second_idle, 5000, "the second IDLE");
        ck_assert_uint_eq(rec.entered[SESSION_BACKOFF], 1);
        ck_assert_msg(strstr(imap_session_last_error(sess), "Server shutting down"), "%s",
                      imap_session_last_error(sess));
        ck_assert_uint_eq(rec.secrets_asked, 2);
        ck_assert_uint_eq(rec.n_new, 0);
}
END_TEST

/* A token-expiry BYE: authenticate again at once, no backoff. */
START_TEST(test_token_expired_bye) {
        static const struct fake_step script[] = {
                GREETING(SASL_CAPS), LOGIN_STEPS, SYNC_STEPS,
                FAKE_EXPECT_LINE("%t IDLE"),
                FAKE_SEND_STR("+ idling\r\n"),
                FAKE_SLEEP_MS(400),
                FAKE_SEND_STR("* BYE Session invalidated - AccessTokenExpired\r\n"),
                FAKE_STEP(FAKE_CLOSE),
                FAKE_STEP(FAKE_ACCEPT),
                GREETING(SASL_CAPS), LOGIN_STEPS, SYNC_STEPS,
                FAKE_EXPECT_LINE("%t IDLE"),
                FAKE_SEND_STR("+ idling\r\n"),
                FAKE_STEP(FAKE_STALL),
        };

        start(script, ELEMS(script), IMAP_TLS_NONE, SASL_MECH_PREF_AUTO);
        run_until(second_idle, 5000, "the second IDLE");
        ck_assert_uint_eq(rec.entered[SESSION_BACKOFF], 0);
        ck_assert_uint_eq(rec.entered[SESSION_ERROR], 0);
        ck_assert_uint_eq(rec.secrets_asked, 2);
}
END_TEST

static bool idle_now(void) {
        return rec.state == SESSION_IDLE;
}

static bool in_error(void) {
        return rec.state == SESSION_ERROR;
}

/* STARTTLS configured but not offered: error, and nothing secret sent. */
START_TEST(test_starttls_not_offered) {
        static const struct fake_step script[] = {
                GREETING(SASL_CAPS),
                FAKE_STEP(FAKE_WAIT_EOF),
        };

        start(script, ELEMS(script), IMAP_TLS_STARTTLS, SASL_MECH_PREF_AUTO);
        run_until(in_error, 5000, "the error state");
        ck_assert_msg(strstr(imap_session_last_error(sess), "STARTTLS"), "%s", imap_session_last_error(sess));
        script_done();
        ck_assert_uint_eq(rec.secrets_asked, 0);
        ck_assert_uint_eq(fake_server_transcript_len(fake), 0);
}
END_TEST

/* LOGINDISABLED without TLS: no LOGIN, no AUTHENTICATE, an error. */
START_TEST(test_logindisabled_without_tls) {
        static const struct fake_step script[] = {
                GREETING("IMAP4rev1 IDLE LOGINDISABLED"),
                FAKE_STEP(FAKE_WAIT_EOF),
        };

        start(script, ELEMS(script), IMAP_TLS_NONE, SASL_MECH_PREF_AUTO);
        run_until(in_error, 5000, "the error state");
        ck_assert_msg(strstr(imap_session_last_error(sess), "LOGINDISABLED"), "%s", imap_session_last_error(sess));
        script_done();
        ck_assert_ptr_null(strstr(fake_server_transcript(fake), "LOGIN"));
        ck_assert_ptr_null(strstr(fake_server_transcript(fake), "AUTHENTICATE"));
}
END_TEST

static bool in_backoff(void) {
        return rec.state == SESSION_BACKOFF;
}

static bool second_backoff(void) {
        return rec.entered[SESSION_BACKOFF] >= 2;
}

/* A server that stops answering: the command times out, reconnect. */
START_TEST(test_command_timeout) {
        static const struct fake_step script[] = {
                GREETING(SASL_CAPS), LOGIN_STEPS,
                FAKE_EXPECT_LINE("%t EXAMINE INBOX"),
                FAKE_STEP_MS(FAKE_STALL, 3000),
        };
        uint64_t t0 = now_ms();

        start(script, ELEMS(script), IMAP_TLS_NONE, SASL_MECH_PREF_AUTO);
        run_until(in_backoff, 5000, "the backoff state");
        ck_assert_uint_ge(now_ms() - t0, 700);
        ck_assert_msg(strstr(imap_session_last_error(sess), "did not answer EXAMINE"), "%s",
                      imap_session_last_error(sess));
}
END_TEST

/* A server that accepts and then says nothing, or a byte a second: the
 * greeting has the command timeout too. */
START_TEST(test_greeting_timeout) {
        static const struct fake_step script[] = {
                FAKE_STEP_MS(FAKE_STALL, 3000),
                FAKE_STEP(FAKE_ACCEPT),
                FAKE_DRIBBLE_STR("* OK [CAPABILITY " SASL_CAPS "] slow\r\n", 300),
                FAKE_STEP(FAKE_STALL),
        };
        uint64_t t0 = now_ms();

        start(script, ELEMS(script), IMAP_TLS_NONE, SASL_MECH_PREF_AUTO);
        run_until(in_backoff, 5000, "the backoff state");
        ck_assert_uint_ge(now_ms() - t0, 700);
        ck_assert_msg(strstr(imap_session_last_error(sess), "no complete greeting within 0.8 s"), "%s",
                      imap_session_last_error(sess));
        run_until(second_backoff, 5000, "the second backoff");
        ck_assert_msg(strstr(imap_session_last_error(sess), "no complete greeting"), "%s",
                      imap_session_last_error(sess));
        ck_assert_uint_eq(rec.secrets_asked, 0);
}
END_TEST

/* An oversized literal: a clean protocol error, the session goes on later. */
START_TEST(test_oversized_literal) {
        static const struct fake_step script[] = {
                GREETING(SASL_CAPS), LOGIN_STEPS,
                FAKE_EXPECT_LINE("%t EXAMINE INBOX"),
                FAKE_SEND_STR("* 1 FETCH (BODY[] {4294967296}\r\n"),
                FAKE_STEP(FAKE_WAIT_EOF),
        };

        start(script, ELEMS(script), IMAP_TLS_NONE, SASL_MECH_PREF_AUTO);
        run_until(in_backoff, 5000, "the backoff state");
        ck_assert_msg(strstr(imap_session_last_error(sess), "literal larger"), "%s", imap_session_last_error(sess));
        ck_assert_uint_lt(imap_session_memory(sess), 64 * 1024);
        script_done();
}
END_TEST

/* A tagged response for a command never sent. */
START_TEST(test_wrong_tag) {
        static const struct fake_step script[] = {
                GREETING(SASL_CAPS), LOGIN_STEPS,
                FAKE_EXPECT_LINE("%t EXAMINE INBOX"),
                FAKE_SEND_STR("zz9 OK [READ-ONLY] done\r\n"),
                FAKE_STEP(FAKE_WAIT_EOF),
        };

        start(script, ELEMS(script), IMAP_TLS_NONE, SASL_MECH_PREF_AUTO);
        run_until(in_backoff, 5000, "the backoff state");
        ck_assert_msg(strstr(imap_session_last_error(sess), "not sent"), "%s", imap_session_last_error(sess));
        script_done();
}
END_TEST

/* XOAUTH2 with SASL-IR: the exact initial response; an error challenge is
 * answered with an empty line, the NO is an auth error; the next attempt
 * fetches a fresh token and succeeds. */
START_TEST(test_xoauth2) {
        static char expect1[512], expect2[512];
        char *b64;

        ck_assert_int_eq(sasl_build_initial_base64(SASL_XOAUTH2, "me@example.org", "stale-token", 11, "127.0.0.1",
                                                   0, &b64), 0);
        snprintf(expect1, sizeof(expect1), "%%t AUTHENTICATE XOAUTH2 %s", b64);
        free(b64);
        ck_assert_int_eq(sasl_build_initial_base64(SASL_XOAUTH2, "me@example.org", "fresh-token", 11, "127.0.0.1",
                                                   0, &b64), 0);
        snprintf(expect2, sizeof(expect2), "%%t AUTHENTICATE XOAUTH2 %s", b64);
        free(b64);

        const struct fake_step script[] = {
                GREETING("IMAP4rev1 IDLE SASL-IR AUTH=XOAUTH2"),
                FAKE_EXPECT_LINE(expect1),
                /* {"status":"401","schemes":"bearer","scope":"https://mail.google.com/"} */
                FAKE_SEND_STR("+ eyJzdGF0dXMiOiI0MDEiLCJzY2hlbWVzIjoiYmVhcmVyIiwic2NvcGUiOiJodHRwczovL21haWwuZ29vZ2xl"
                              "LmNvbS8ifQ==\r\n"),
                FAKE_EXPECT_LINE(""),
                FAKE_SEND_STR("%t NO [AUTHENTICATIONFAILED] Invalid credentials (Failure)\r\n"),
                FAKE_STEP(FAKE_WAIT_EOF),
                FAKE_STEP(FAKE_ACCEPT),
                GREETING("IMAP4rev1 IDLE SASL-IR AUTH=XOAUTH2"),
                FAKE_EXPECT_LINE(expect2),
                FAKE_SEND_STR("%t OK [CAPABILITY IMAP4rev1 IDLE] logged in\r\n"),
                SYNC_STEPS,
                FAKE_EXPECT_LINE("%t IDLE"),
                FAKE_SEND_STR("+ idling\r\n"),
                FAKE_STEP(FAKE_STALL),
        };

        rec.secret = "stale-token";
        start(script, ELEMS(script), IMAP_TLS_NONE, SASL_MECH_PREF_XOAUTH2);
        run_until(in_error, 5000, "the auth error");
        ck_assert_msg(strstr(imap_session_last_error(sess), "XOAUTH2"), "%s", imap_session_last_error(sess));
        rec.secret = "fresh-token";
        run_until(idle_now, 5000, "IDLE with the fresh token");
        ck_assert_uint_eq(rec.secrets_asked, 2);
        ck_assert_ptr_null(strstr(fake_server_transcript(fake), "stale-token"));     /* base64 only */
}
END_TEST

/* OAUTHBEARER without SASL-IR: the initial response after "+", the error
 * challenge answered with AQ== (RFC 7628 §3.2.3), then an auth error. */
START_TEST(test_oauthbearer_error_challenge) {
        static char expect[512];
        char *b64;

        /* the port is the fake server's, known only later: the first 36
         * bytes ("n,a=me@example.org,^Ahost=127.0.0.") are 44 base64
         * characters of their own; sasl's unit tests check the rest */
        ck_assert_int_eq(sasl_build_initial_base64(SASL_OAUTHBEARER, "me@example.org", "tok", 3, "127.0.0.1",
                                                   0, &b64), 0);
        snprintf(expect, sizeof(expect), "%.44s*", b64);
        free(b64);

        const struct fake_step script[] = {
                GREETING("IMAP4rev1 IDLE AUTH=OAUTHBEARER"),
                FAKE_EXPECT_LINE("%t AUTHENTICATE OAUTHBEARER"),
                FAKE_SEND_STR("+ \r\n"),
                FAKE_EXPECT_LINE(expect),
                /* {"status":"invalid_token","scope":"mail"} */
                FAKE_SEND_STR("+ eyJzdGF0dXMiOiJpbnZhbGlkX3Rva2VuIiwic2NvcGUiOiJtYWlsIn0=\r\n"),
                FAKE_EXPECT_LINE("AQ=="),
                FAKE_SEND_STR("%t NO [AUTHENTICATIONFAILED] OAuth failed\r\n"),
                FAKE_STEP(FAKE_WAIT_EOF),
        };

        rec.secret = "tok";
        start(script, ELEMS(script), IMAP_TLS_NONE, SASL_MECH_PREF_OAUTHBEARER);
        run_until(in_error, 5000, "the auth error");
        ck_assert_msg(strstr(imap_session_last_error(sess), "OAUTHBEARER"), "%s", imap_session_last_error(sess));
        script_done();
}
END_TEST

/* The connection is reset in the middle of a literal of the fetch of a new
 * message: reconnect, fetch again, announce it once. */
START_TEST(test_reset_mid_literal_catches_up) {
        static const struct fake_step script[] = {
                GREETING(SASL_CAPS), LOGIN_STEPS, SYNC_STEPS,
                FAKE_EXPECT_LINE("%t IDLE"),
                FAKE_SEND_STR("+ idling\r\n* 3 EXISTS\r\n"),
                FAKE_EXPECT_LINE("DONE"),
                FAKE_SEND_STR("%t OK idle done\r\n"),
                FAKE_EXPECT_LINE("%t UID FETCH 3:* (UID FLAGS ENVELOPE INTERNALDATE RFC822.SIZE)"),
                FAKE_SEND_STR("* 3 FETCH (UID 3 FLAGS () ENVELOPE (\"Mon, 1 Jan 2024\" {20}\r\nhalf a sub"),
                FAKE_STEP(FAKE_RESET),
                FAKE_STEP(FAKE_ACCEPT),
                GREETING(SASL_CAPS), LOGIN_STEPS,
                FAKE_EXPECT_LINE("%t EXAMINE INBOX"),
                FAKE_SEND_STR("* 3 EXISTS\r\n* OK [UIDVALIDITY 100] v\r\n* OK [UIDNEXT 4] n\r\n%t OK [READ-ONLY] done\r\n"),
                FAKE_EXPECT_LINE("%t UID SEARCH ALL"),
                FAKE_SEND_STR("* SEARCH 1 2 3\r\n%t OK\r\n"),
                FAKE_EXPECT_LINE("%t UID SEARCH UNSEEN UNDELETED"),
                FAKE_SEND_STR("* SEARCH 2 3\r\n%t OK\r\n"),
                FAKE_EXPECT_LINE("%t UID FETCH 3:* (UID FLAGS ENVELOPE INTERNALDATE RFC822.SIZE)"),
                FAKE_SEND_STR("* 3 FETCH (UID 3 FLAGS () " ENVELOPE ")\r\n%t OK\r\n"),
                FAKE_EXPECT_LINE("%t IDLE"),
                FAKE_SEND_STR("+ idling\r\n"),
                FAKE_STEP(FAKE_STALL),
        };

        start(script, ELEMS(script), IMAP_TLS_NONE, SASL_MECH_PREF_AUTO);
        run_until(new_1, 5000, "the new message after the reset");
        ck_assert_uint_eq(rec.n_new, 1);
        ck_assert_uint_eq(rec.new_uids[0], 3);
        ck_assert_uint_eq(imap_session_connects(sess), 2);
        ck_assert_uint_eq(rec.entered[SESSION_BACKOFF], 1);
}
END_TEST

Suite *quirks_suite(void);
Suite *quirks_suite(void) {
        Suite *s = suite_create("session-quirks");
        TCase *tc = tcase_create("fake-server");

        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_set_timeout(tc, 30);
        tcase_add_test(tc, test_exists_before_continuation);
        tcase_add_test(tc, test_exists_after_expunge);
        tcase_add_test(tc, test_bye_during_idle);
        tcase_add_test(tc, test_token_expired_bye);
        tcase_add_test(tc, test_starttls_not_offered);
        tcase_add_test(tc, test_logindisabled_without_tls);
        tcase_add_test(tc, test_command_timeout);
        tcase_add_test(tc, test_greeting_timeout);
        tcase_add_test(tc, test_oversized_literal);
        tcase_add_test(tc, test_wrong_tag);
        tcase_add_test(tc, test_xoauth2);
        tcase_add_test(tc, test_oauthbearer_error_challenge);
        tcase_add_test(tc, test_reset_mid_literal_catches_up);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        SRunner *sr = srunner_create(quirks_suite());
        int failed;

        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
