/* SPDX-License-Identifier: MIT */
/*
 * `make demo`: what the protocol core does, end to end, on a throwaway
 * Dovecot. Starts the harness, logs in over verified implicit TLS, opens
 * INBOX read-only, IDLEs, delivers three messages the way an MTA does, and
 * prints each one as the core parsed it. Until the daemon exists this is the
 * project's demonstration; it becomes `imapidled` + a D-Bus listener later.
 */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "harness.h"
#include "test-client.h"

static struct harness h;
static struct test_client c;

static double now_ms(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double) ts.tv_sec * 1e3 + (double) ts.tv_nsec / 1e6;
}

static void on_fetch(const struct imap_response *r, void *ud) {
        const struct imap_envelope *e = &r->fetch.envelope;
        const struct imap_address *from = e->from.n ? &e->from.v[0] : NULL;

        if (r->type != IMAP_RESP_FETCH)
                return;
        printf("    UID %u  from: %s%s<%s@%s>  subject: %s  size: %llu\n", r->fetch.uid,
               from && from->name ? from->name : "", from && from->name ? " " : "",
               from && from->mailbox ? from->mailbox : "?", from && from->host ? from->host : "?",
               e->subject ? e->subject : "(none)", (unsigned long long) r->fetch.rfc822_size);
}

static int die(const char *what) {
        fprintf(stderr, "demo: %s: %s\n", what, c.error);
        test_client_close(&c);
        harness_stop(&h);
        return EXIT_FAILURE;
}

int main(void) {
        static const struct {
                const char *from, *subject;
        } mails[] = {
                { "Alice Example <alice@example.org>", "Lunch on Friday?" },
                { "=?UTF-8?Q?J=C3=B6rg_M=C3=BCller?= <joerg@example.de>", "=?UTF-8?B?R3LDvMOfZQ==?= aus Berlin" },
                { "build-bot@example.com", "<b>CI</b> passed & deployed" },
        };
        const struct imap_response *resp;
        char pw[64];
        int r;

        setvbuf(stdout, NULL, _IOLBF, 0);
        printf("== starting a throwaway Dovecot (harness: tests/harness/harness.sh)\n");
        if (harness_start(&h, 0) < 0) {
                fprintf(stderr, "demo: the Dovecot harness failed to start\n");
                return EXIT_FAILURE;
        }
        printf("   IMAPS on %s:%d, CA %s\n", h.host, h.imaps_port, h.ca_file);

        r = test_client_connect(&c, h.host, h.imaps_port, TEST_TLS_IMPLICIT, h.ca_file, NULL);
        if (r < 0)
                return die("connect");
        printf("== TLS verified against the test CA for host name '%s'\n", h.host);
        r = test_client_login(&c, "user1", harness_password(&h, "user1", pw, sizeof(pw)));
        if (r != IMAP_RESP_OK)
                return die("LOGIN");
        printf("== logged in; server capabilities:\n   %s\n", test_client_capabilities(&c));
        r = test_client_simple(&c, "EXAMINE", "INBOX", 10000, NULL, NULL);
        if (r != IMAP_RESP_OK)
                return die("EXAMINE");

        for (size_t i = 0; i < sizeof(mails) / sizeof(mails[0]); i++) {
                double t0;

                r = test_client_simple(&c, "NOOP", NULL, 10000, NULL, NULL);
                if (r != IMAP_RESP_OK)
                        return die("NOOP");
                test_client_write(&c, "a0 IDLE\r\n", 9);
                r = test_client_read(&c, 10000, &resp);
                if (r < 0 || resp->kind != IMAP_RESP_KIND_CONTINUATION)
                        return die("IDLE");
                printf("== IDLE; delivering message %zu with dovecot-lda\n", i + 1);
                t0 = now_ms();
                if (harness_deliver(&h, "user1", "INBOX", mails[i].from, mails[i].subject) < 0)
                        return die("deliver");
                for (;;) {
                        r = test_client_read(&c, 15000, &resp);
                        if (r < 0)
                                return die("waiting for EXISTS");
                        if (resp->type == IMAP_RESP_EXISTS)
                                break;
                }
                printf("   * %u EXISTS  (%.0f ms after delivery started)\n", resp->number, now_ms() - t0);
                test_client_write(&c, "DONE\r\n", 6);
                do
                        r = test_client_read(&c, 10000, &resp);
                while (r > 0 && resp->kind != IMAP_RESP_KIND_TAGGED);
                if (r < 0)
                        return die("DONE");

                char range[32];
                snprintf(range, sizeof(range), "%zu (UID ENVELOPE RFC822.SIZE)", i + 1);
                r = test_client_simple(&c, "FETCH", range, 10000, on_fetch, NULL);
                if (r != IMAP_RESP_OK)
                        return die("FETCH");
        }

        printf("== raw RFC 2047 words and markup are shown as the server sent them: decoding and\n"
               "   escaping belong to the notification layer (GMime), not the protocol core.\n");
        test_client_simple(&c, "LOGOUT", NULL, 5000, NULL, NULL);
        test_client_close(&c);
        harness_stop(&h);
        printf("== done; Dovecot stopped and its directory removed\n");
        return EXIT_SUCCESS;
}
