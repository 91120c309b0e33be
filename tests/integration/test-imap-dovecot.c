/* SPDX-License-Identifier: MIT */
/*
 * The protocol core against a real Dovecot started by the harness: implicit
 * TLS and STARTTLS with the test CA and host name verified, LOGIN, EXAMINE,
 * IDLE, and mail delivered by the harness (dovecot-lda, as an MTA does)
 * arriving as EXISTS parsed by the core. Flag changes and expunges made by
 * "another client" (doveadm) arrive during IDLE too.
 */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "suites.h"
#include "test-client.h"

static struct harness h;
static struct test_client c;

static void setup(void) {
        ck_assert_msg(harness_start(&h, 0) >= 0, "harness failed to start");
}

static void teardown(void) {
        test_client_close(&c);
        harness_stop(&h);
}

static void connect_and_login(enum test_tls tls, const char *user) {
        char pw[64];
        int port = tls == TEST_TLS_IMPLICIT ? h.imaps_port : h.imap_port;
        int r;

        r = test_client_connect(&c, h.host, port, tls, h.ca_file, NULL);
        ck_assert_msg(r >= 0, "connect: %s", c.error);
        r = test_client_login(&c, user, harness_password(&h, user, pw, sizeof(pw)));
        ck_assert_msg(r == IMAP_RESP_OK, "LOGIN: %d %s", r, c.error);
}

struct examine_seen {
        uint32_t exists, uidvalidity, uidnext;
        uint64_t highestmodseq;
        bool flags, read_only_code;
};

static void on_examine(const struct imap_response *r, void *ud) {
        struct examine_seen *s = ud;

        switch (r->type) {
        case IMAP_RESP_EXISTS:
                s->exists = r->number;
                break;
        case IMAP_RESP_FLAGS:
                s->flags = r->atoms.n >= 5;
                break;
        case IMAP_RESP_OK:
                if (r->status.code.type == IMAP_CODE_UIDVALIDITY)
                        s->uidvalidity = r->status.code.number;
                else if (r->status.code.type == IMAP_CODE_UIDNEXT)
                        s->uidnext = r->status.code.number;
                else if (r->status.code.type == IMAP_CODE_HIGHESTMODSEQ)
                        s->highestmodseq = r->status.code.modseq;
                break;
        default:
                break;
        }
}

static void examine(const char *mailbox, struct examine_seen *s) {
        struct imap_command cmd;
        int r;

        *s = (struct examine_seen) {};
        imap_command_begin(&c.writer, &cmd, "EXAMINE");
        imap_command_mailbox(&c.writer, &cmd, mailbox);
        r = test_client_run(&c, &cmd, 10000, on_examine, s);
        imap_command_done(&cmd);
        ck_assert_msg(r == IMAP_RESP_OK, "EXAMINE %s: %s", mailbox, c.error);
        ck_assert(s->flags);
        ck_assert_uint_gt(s->uidvalidity, 0);
        ck_assert_uint_gt(s->uidnext, 0);
}

/* Enters IDLE: "a5 IDLE", waits for "+". */
static void idle_start(void) {
        const struct imap_response *resp;
        struct imap_command cmd;
        int r;

        imap_command_begin(&c.writer, &cmd, "IDLE");
        ck_assert_int_eq(imap_command_end(&cmd), 0);
        ck_assert_int_eq(test_client_send(&c, &cmd), 0);
        imap_command_done(&cmd);
        r = test_client_read(&c, 10000, &resp);
        ck_assert_int_eq(r, 1);
        ck_assert_int_eq(resp->kind, IMAP_RESP_KIND_CONTINUATION);
}

/* Reads untagged responses until one of type with number n comes. */
static const struct imap_response *wait_for(enum imap_resp_type type, uint32_t n, int timeout_ms) {
        const struct imap_response *resp;

        for (;;) {
                int r = test_client_read(&c, timeout_ms, &resp);

                ck_assert_msg(r == 1, "waiting for %s %u: %d %s", imap_resp_type_to_string(type), n, r, c.error);
                if (resp->type == type && (n == 0 || resp->number == n))
                        return resp;
        }
}

static void idle_done(void) {
        const struct imap_response *resp;

        ck_assert_int_eq(test_client_write(&c, "DONE\r\n", 6), 0);
        for (;;) {
                ck_assert_int_eq(test_client_read(&c, 10000, &resp), 1);
                if (resp->kind == IMAP_RESP_KIND_TAGGED) {
                        ck_assert_int_eq(resp->type, IMAP_RESP_OK);
                        return;
                }
        }
}

static void logout(void) {
        bool bye = false;
        const struct imap_response *resp;
        struct imap_command cmd;

        imap_command_begin(&c.writer, &cmd, "LOGOUT");
        ck_assert_int_eq(imap_command_end(&cmd), 0);
        ck_assert_int_eq(test_client_send(&c, &cmd), 0);
        for (;;) {
                ck_assert_int_eq(test_client_read(&c, 10000, &resp), 1);
                if (resp->type == IMAP_RESP_BYE)
                        bye = true;
                if (resp->kind == IMAP_RESP_KIND_TAGGED && strcmp(resp->tag, cmd.tag) == 0)
                        break;
        }
        imap_command_done(&cmd);
        ck_assert(bye);
}

/* LOGIN, EXAMINE INBOX, IDLE; two deliveries arrive as EXISTS 1 and 2. */
static void idle_receives_delivery(enum test_tls tls) {
        struct examine_seen s;

        connect_and_login(tls, "user1");
        ck_assert_ptr_nonnull(strstr(test_client_capabilities(&c), "IDLE"));
        examine("INBOX", &s);
        ck_assert_uint_eq(s.exists, 0);

        idle_start();
        ck_assert_int_eq(harness_deliver(&h, "user1", "INBOX", "Alice <alice@example.org>", "first"), 0);
        wait_for(IMAP_RESP_EXISTS, 1, 15000);
        ck_assert_int_eq(harness_deliver(&h, "user1", "INBOX", "Bob <bob@example.org>", "second"), 0);
        wait_for(IMAP_RESP_EXISTS, 2, 15000);
        idle_done();
        logout();
}

START_TEST(test_implicit_tls_idle) {
        idle_receives_delivery(TEST_TLS_IMPLICIT);
}
END_TEST

START_TEST(test_starttls_idle) {
        idle_receives_delivery(TEST_TLS_STARTTLS);
}
END_TEST

START_TEST(test_starttls_capabilities_reread) {
        const char *caps;

        connect_and_login(TEST_TLS_STARTTLS, "user2");
        caps = test_client_capabilities(&c);
        /* after the handshake STARTTLS is gone from the list we re-read */
        ck_assert_ptr_null(strstr(caps, "STARTTLS"));
        ck_assert_ptr_nonnull(strstr(caps, "IMAP4rev1"));
        logout();
}
END_TEST

START_TEST(test_tls_verifies_host_name) {
        int r;

        r = test_client_connect(&c, h.host, h.imaps_port, TEST_TLS_IMPLICIT, h.ca_file, "imap.example.com");
        ck_assert_int_eq(r, -EPERM);
        ck_assert_msg(strstr(c.error, "hostname mismatch"), "%s", c.error);
}
END_TEST

START_TEST(test_tls_verifies_ca) {
        int r;

        /* the system store does not know the test CA */
        r = test_client_connect(&c, h.host, h.imaps_port, TEST_TLS_IMPLICIT, NULL, NULL);
        ck_assert_int_eq(r, -EPERM);
        ck_assert_msg(strstr(c.error, "certificate"), "%s", c.error);
}
END_TEST

struct fetch_seen {
        uint32_t uid;
        const char *want_subject;
        bool subject_ok, from_ok, header_ok, seen_flag;
};

static void on_fetch(const struct imap_response *r, void *ud) {
        struct fetch_seen *f = ud;
        const struct imap_envelope *e = &r->fetch.envelope;

        if (r->type != IMAP_RESP_FETCH)
                return;
        f->uid = r->fetch.uid;
        f->subject_ok = e->subject && strcmp(e->subject, f->want_subject) == 0;
        f->from_ok = e->from.n == 1 && e->from.v[0].mailbox && strcmp(e->from.v[0].mailbox, "carol") == 0 &&
                     e->from.v[0].host && strcmp(e->from.v[0].host, "example.org") == 0;
        f->header_ok = r->fetch.n_sections == 1 && r->fetch.sections[0].data &&
                       strstr(r->fetch.sections[0].data, "Subject: ") != NULL;
        f->seen_flag = false;
        for (size_t i = 0; i < r->fetch.flags.n; i++)
                if (strcmp(r->fetch.flags.v[i], "\\Seen") == 0)
                        f->seen_flag = true;
}

/* ENVELOPE and BODY[HEADER.FIELDS] of a delivered message parse as sent;
 * RFC 2047 words stay raw at this layer. */
START_TEST(test_fetch_envelope_and_headers) {
        static const char subject[] = "=?UTF-8?B?R3LDvMOfZSDwn5iA?= and (parens) \"quotes\"";
        struct fetch_seen f = { .want_subject = subject };
        struct examine_seen s;
        int r;

        ck_assert_int_eq(harness_deliver(&h, "user3", "INBOX", "Carol <carol@example.org>", subject), 0);
        connect_and_login(TEST_TLS_IMPLICIT, "user3");
        examine("INBOX", &s);
        ck_assert_uint_eq(s.exists, 1);
        r = test_client_simple(&c, "UID FETCH", "1:* (UID FLAGS ENVELOPE BODY.PEEK[HEADER.FIELDS (FROM SUBJECT)])",
                               10000, on_fetch, &f);
        ck_assert_int_eq(r, IMAP_RESP_OK);
        ck_assert_uint_eq(f.uid, 1);
        ck_assert(f.subject_ok);
        ck_assert(f.from_ok);
        ck_assert(f.header_ok);
        ck_assert(!f.seen_flag);        /* EXAMINE and BODY.PEEK change nothing */
        logout();
}
END_TEST

static void on_enable(const struct imap_response *r, void *ud) {
        bool *enabled = ud;

        if (r->type == IMAP_RESP_ENABLED)
                *enabled = imap_strv_contains(&r->atoms, "QRESYNC");
}

/* Another client sets \Seen and expunges: FETCH FLAGS and VANISHED (QRESYNC)
 * arrive during IDLE. */
START_TEST(test_idle_sees_other_clients) {
        const struct imap_response *resp;
        struct examine_seen s;
        bool enabled = false;
        int r;

        ck_assert_int_eq(harness_deliver(&h, "user4", "INBOX", "Dave <dave@example.org>", "one"), 0);
        ck_assert_int_eq(harness_deliver(&h, "user4", "INBOX", "Dave <dave@example.org>", "two"), 0);
        connect_and_login(TEST_TLS_IMPLICIT, "user4");
        r = test_client_simple(&c, "ENABLE", "QRESYNC", 10000, on_enable, &enabled);
        ck_assert_int_eq(r, IMAP_RESP_OK);
        ck_assert(enabled);
        examine("INBOX", &s);
        ck_assert_uint_eq(s.exists, 2);
        ck_assert_uint_gt(s.highestmodseq, 0);

        idle_start();
        ck_assert_int_eq(harness_flags(&h, "user4", "INBOX", 1, "add", "\\Seen"), 0);
        resp = wait_for(IMAP_RESP_FETCH, 1, 15000);
        ck_assert(resp->fetch.present & IMAP_FETCH_FLAGS);
        ck_assert(imap_strv_contains(&resp->fetch.flags, "\\Seen"));
        ck_assert(resp->fetch.present & IMAP_FETCH_MODSEQ);
        ck_assert_uint_gt(resp->fetch.modseq, s.highestmodseq);

        ck_assert_int_eq(harness_expunge(&h, "user4", "INBOX", 2), 0);
        resp = wait_for(IMAP_RESP_VANISHED, 0, 15000);
        ck_assert(!resp->vanished.earlier);
        ck_assert_str_eq(resp->vanished.uids, "2");
        idle_done();
        logout();
}
END_TEST

struct list_seen {
        bool inbox, created;
};

static void on_list(const struct imap_response *r, void *ud) {
        struct list_seen *l = ud;

        if (r->type != IMAP_RESP_LIST)
                return;
        if (strcmp(r->list.mailbox, "INBOX") == 0)
                l->inbox = true;
        if (strcmp(r->list.mailbox, "Lists/Entw\xc3\xbcrfe & Ideen") == 0 && r->list.mailbox_utf7_valid &&
            r->list.delimiter != '\0')
                l->created = true;
}

/* A mailbox with a non-ASCII name made by the harness: LIST decodes it from
 * modified UTF-7, and EXAMINE with the UTF-8 name (encoded by the writer) works. */
START_TEST(test_utf7_mailbox_names) {
        struct list_seen l = {};
        struct examine_seen s;
        int r;

        ck_assert_int_eq(harness_mkbox(&h, "user2", "Lists/Entw\xc3\xbcrfe & Ideen"), 0);
        ck_assert_int_eq(harness_deliver(&h, "user2", "Lists/Entw\xc3\xbcrfe & Ideen", "x@example.org", "hi"), 0);
        connect_and_login(TEST_TLS_IMPLICIT, "user2");
        r = test_client_simple(&c, "LIST", "\"\" *", 10000, on_list, &l);
        ck_assert_int_eq(r, IMAP_RESP_OK);
        ck_assert(l.inbox);
        ck_assert(l.created);
        examine("Lists/Entw\xc3\xbcrfe & Ideen", &s);
        ck_assert_uint_eq(s.exists, 1);
        logout();
}
END_TEST

/* Prints what the server offers, for the README. */
START_TEST(test_report_capabilities) {
        int r;

        r = test_client_connect(&c, h.host, h.imap_port, TEST_TLS_NONE, NULL, NULL);
        ck_assert_msg(r >= 0, "%s", c.error);
        printf("CAPABILITY (plain port, greeting): %s\n", test_client_capabilities(&c));
        ck_assert_ptr_nonnull(strstr(test_client_capabilities(&c), "STARTTLS"));
        test_client_close(&c);
        connect_and_login(TEST_TLS_IMPLICIT, "user1");
        r = test_client_simple(&c, "CAPABILITY", NULL, 10000, NULL, NULL);
        ck_assert_int_eq(r, IMAP_RESP_OK);
        printf("CAPABILITY (after login): %s\n", test_client_capabilities(&c));
        fflush(stdout);
        for (const char *cap = "IDLE\0NOTIFY\0CONDSTORE\0QRESYNC\0ENABLE\0LITERAL+\0"; *cap; cap += strlen(cap) + 1)
                ck_assert_msg(strstr(test_client_capabilities(&c), cap), "missing %s", cap);
        logout();
}
END_TEST

static Suite *imap_dovecot_suite(void) {
        Suite *s = suite_create("imap-dovecot");
        TCase *tc = tcase_create("dovecot");

        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_set_timeout(tc, 120);
        tcase_add_test(tc, test_implicit_tls_idle);
        tcase_add_test(tc, test_starttls_idle);
        tcase_add_test(tc, test_starttls_capabilities_reread);
        tcase_add_test(tc, test_tls_verifies_host_name);
        tcase_add_test(tc, test_tls_verifies_ca);
        tcase_add_test(tc, test_fetch_envelope_and_headers);
        tcase_add_test(tc, test_idle_sees_other_clients);
        tcase_add_test(tc, test_utf7_mailbox_names);
        tcase_add_test(tc, test_report_capabilities);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        SRunner *sr = srunner_create(imap_dovecot_suite());
        int failed;

        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
