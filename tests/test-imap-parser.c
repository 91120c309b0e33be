/* SPDX-License-Identifier: MIT */
/*
 * Parser tests. Every input is fed whole, one byte at a time, and in a few
 * other splits; the checks must hold for each (dovecot's test-imap-parser
 * does the same).
 */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "imap-parser.h"
#include "suites.h"

typedef void (*check_fn)(const struct imap_response *r, unsigned index, void *userdata);

static const size_t steps[] = { 0, 1, 2, 3, 5, 7, 64 };

/* Feeds len bytes in chunks of step (0 = all at once). Calls fn for every
 * response. Returns the number of responses, or the parser's error. */
static int feed_split(const struct imap_parser_limits *lim, const char *in, size_t len, size_t step,
                      check_fn fn, void *ud, char *err, size_t errsz) {
        struct imap_parser *p = imap_parser_new(lim);
        size_t off = 0;
        unsigned count = 0;
        int r = 0;

        ck_assert_ptr_nonnull(p);
        while (off < len) {
                size_t chunk = step == 0 || len - off < step ? len - off : step;
                size_t pos = 0;

                while (pos < chunk) {
                        const struct imap_response *resp = NULL;
                        size_t used;

                        r = imap_parser_feed(p, in + off + pos, chunk - pos, &used, &resp);
                        ck_assert_uint_le(used, chunk - pos);
                        pos += used;
                        if (r < 0) {
                                if (err)
                                        snprintf(err, errsz, "%s", imap_parser_error(p));
                                imap_parser_free(p);
                                return r;
                        }
                        if (r == 0) {
                                ck_assert_uint_eq(pos, chunk);
                                break;
                        }
                        if (fn)
                                fn(resp, count, ud);
                        count++;
                }
                off += chunk;
        }
        imap_parser_free(p);
        return (int) count;
}

/* Parses in every split; asserts the same number of responses each time. */
static void parse_expect(const char *in, unsigned expected, check_fn fn, void *ud) {
        for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
                char err[256] = "";
                int r = feed_split(NULL, in, strlen(in), steps[i], fn, ud, err, sizeof(err));

                ck_assert_msg(r == (int) expected, "step %zu: got %d (%s) for %s", steps[i], r, err, in);
        }
}

/* Asserts that input fails with error r in every split and that the
 * reason mentions what. */
static void parse_fail_lim(const struct imap_parser_limits *lim, const char *in, size_t len, int expected,
                           const char *what) {
        for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
                char err[256] = "";
                int r = feed_split(lim, in, len, steps[i], NULL, NULL, err, sizeof(err));

                ck_assert_msg(r == expected, "step %zu: expected %d, got %d (%s)", steps[i], expected, r, err);
                if (what)
                        ck_assert_msg(strstr(err, what), "error '%s' does not mention '%s'", err, what);
        }
}

static void parse_fail(const char *in, int expected, const char *what) {
        parse_fail_lim(NULL, in, strlen(in), expected, what);
}

/* ---- greeting and status responses -------------------------------------- */

static void check_greeting(const struct imap_response *r, unsigned i, void *ud) {
        ck_assert_int_eq(r->kind, IMAP_RESP_KIND_UNTAGGED);
        ck_assert_int_eq(r->type, IMAP_RESP_OK);
        ck_assert_int_eq(r->status.code.type, IMAP_CODE_CAPABILITY);
        ck_assert_uint_eq(r->status.code.atoms.n, 8);
        ck_assert_str_eq(r->status.code.atoms.v[0], "IMAP4rev1");
        ck_assert(imap_strv_contains(&r->status.code.atoms, "idle"));
        ck_assert(imap_strv_contains(&r->status.code.atoms, "AUTH=PLAIN"));
        ck_assert(!imap_strv_contains(&r->status.code.atoms, "NOTIFY"));
        ck_assert_str_eq(r->status.text, "Dovecot (Debian) ready.");
}

START_TEST(test_greeting_ok) {
        parse_expect("* OK [CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ AUTH=PLAIN] "
                     "Dovecot (Debian) ready.\r\n", 1, check_greeting, NULL);
}
END_TEST

static void check_preauth_bye(const struct imap_response *r, unsigned i, void *ud) {
        ck_assert_int_eq(r->kind, IMAP_RESP_KIND_UNTAGGED);
        if (i == 0) {
                ck_assert_int_eq(r->type, IMAP_RESP_PREAUTH);
                ck_assert_int_eq(r->status.code.type, IMAP_CODE_NONE);
                ck_assert_str_eq(r->status.text, "IMAP4rev1 server logged in as Smith");
        } else {
                ck_assert_int_eq(r->type, IMAP_RESP_BYE);
                ck_assert_int_eq(r->status.code.type, IMAP_CODE_UNAVAILABLE);
                ck_assert_str_eq(r->status.text, "Autologout; idle for too long");
        }
}

START_TEST(test_greeting_preauth_bye) {
        parse_expect("* PREAUTH IMAP4rev1 server logged in as Smith\r\n"
                     "* BYE [UNAVAILABLE] Autologout; idle for too long\r\n", 2, check_preauth_bye, NULL);
}
END_TEST

static void check_tagged(const struct imap_response *r, unsigned i, void *ud) {
        static const struct {
                const char *tag;
                enum imap_resp_type type;
                enum imap_code_type code;
                const char *text;
        } want[] = {
                { "a1", IMAP_RESP_OK, IMAP_CODE_READ_ONLY, "Examine completed (0.001 + 0.000 secs)." },
                { "a2", IMAP_RESP_NO, IMAP_CODE_AUTHENTICATIONFAILED, "Authentication failed." },
                { "A003", IMAP_RESP_BAD, IMAP_CODE_NONE, "Error in IMAP command: Unknown command." },
                { "a4", IMAP_RESP_NO, IMAP_CODE_TRYCREATE, "Mailbox doesn't exist: Foo" },
                { "a5", IMAP_RESP_OK, IMAP_CODE_CLOSED, "" },
                { "a6", IMAP_RESP_OK, IMAP_CODE_NONE, "" },
                { "a7", IMAP_RESP_NO, IMAP_CODE_OTHER, "weird" },
                { "a8", IMAP_RESP_OK, IMAP_CODE_READ_WRITE, "[not a code] SELECT done" },
        };

        ck_assert_uint_lt(i, sizeof(want) / sizeof(want[0]));
        ck_assert_int_eq(r->kind, IMAP_RESP_KIND_TAGGED);
        ck_assert_str_eq(r->tag, want[i].tag);
        ck_assert_int_eq(r->type, want[i].type);
        ck_assert_int_eq(r->status.code.type, want[i].code);
        ck_assert_str_eq(r->status.text, want[i].text);
        if (want[i].code == IMAP_CODE_OTHER) {
                ck_assert_str_eq(r->status.code.name, "X-WHATEVER");
                ck_assert_str_eq(r->status.code.text, "1 (2 3)");
        }
}

START_TEST(test_tagged_status) {
        parse_expect("a1 OK [READ-ONLY] Examine completed (0.001 + 0.000 secs).\r\n"
                     "a2 NO [AUTHENTICATIONFAILED] Authentication failed.\r\n"
                     "A003 BAD Error in IMAP command: Unknown command.\r\n"
                     "a4 NO [TRYCREATE] Mailbox doesn't exist: Foo\r\n"
                     "a5 ok [CLOSED]\r\n"
                     "a6 OK\r\n"
                     "a7 NO [X-WHATEVER 1 (2 3)] weird\r\n"
                     "a8 OK [READ-WRITE] [not a code] SELECT done\r\n",
                     8, check_tagged, NULL);
}
END_TEST

static void check_codes(const struct imap_response *r, unsigned i, void *ud) {
        const struct imap_code *c = &r->status.code;

        ck_assert_int_eq(r->type, IMAP_RESP_OK);
        switch (i) {
        case 0:
                ck_assert_int_eq(c->type, IMAP_CODE_UIDVALIDITY);
                ck_assert_uint_eq(c->number, 3857529045u);
                ck_assert_str_eq(r->status.text, "UIDs valid");
                break;
        case 1:
                ck_assert_int_eq(c->type, IMAP_CODE_UIDNEXT);
                ck_assert_uint_eq(c->number, 4392);
                break;
        case 2:
                ck_assert_int_eq(c->type, IMAP_CODE_HIGHESTMODSEQ);
                ck_assert_uint_eq(c->modseq, 9223372036854775807ull);
                break;
        case 3:
                ck_assert_int_eq(c->type, IMAP_CODE_NOMODSEQ);
                ck_assert_str_eq(r->status.text, "Sorry, this mailbox format doesn't support modsequences");
                break;
        case 4:
                ck_assert_int_eq(c->type, IMAP_CODE_PERMANENTFLAGS);
                ck_assert_uint_eq(c->atoms.n, 3);
                ck_assert_str_eq(c->atoms.v[0], "\\Deleted");
                ck_assert_str_eq(c->atoms.v[2], "\\*");
                break;
        case 5:
                ck_assert_int_eq(c->type, IMAP_CODE_PERMANENTFLAGS);
                ck_assert_uint_eq(c->atoms.n, 0);
                break;
        case 6:
                ck_assert_int_eq(c->type, IMAP_CODE_ALERT);
                ck_assert_str_eq(r->status.text, "System shutdown in 10 minutes");
                break;
        case 7:
                ck_assert_int_eq(c->type, IMAP_CODE_UNSEEN);
                ck_assert_uint_eq(c->number, 12);
                break;
        case 8:
                ck_assert_int_eq(c->type, IMAP_CODE_NONE);
                ck_assert_str_eq(r->status.text, "[ALERT no closing bracket");
                break;
        }
}

START_TEST(test_response_codes) {
        parse_expect("* OK [UIDVALIDITY 3857529045] UIDs valid\r\n"
                     "* OK [UIDNEXT 4392] Predicted next UID\r\n"
                     "* OK [HIGHESTMODSEQ 9223372036854775807] Highest\r\n"
                     "* OK [NOMODSEQ] Sorry, this mailbox format doesn't support modsequences\r\n"
                     "* OK [PERMANENTFLAGS (\\Deleted \\Seen \\*)] Limited\r\n"
                     "* OK [PERMANENTFLAGS ()] No permanent flags permitted\r\n"
                     "* OK [ALERT] System shutdown in 10 minutes\r\n"
                     "* OK [UNSEEN 12] Message 12 is first unseen\r\n"
                     "* OK [ALERT no closing bracket\r\n",
                     9, check_codes, NULL);
}
END_TEST

START_TEST(test_response_code_ranges) {
        parse_fail("* OK [UIDVALIDITY 4294967296] x\r\n", -EPROTO, "UIDVALIDITY");
        parse_fail("* OK [UIDVALIDITY 0] x\r\n", -EPROTO, "UIDVALIDITY");
        parse_fail("* OK [UIDNEXT abc] x\r\n", -EPROTO, "UIDNEXT");
        parse_fail("* OK [HIGHESTMODSEQ 9223372036854775808] x\r\n", -EPROTO, "HIGHESTMODSEQ");
        parse_fail("* OK [] x\r\n", -EPROTO, "empty response code");
}
END_TEST

/* ---- continuation -------------------------------------------------------- */

static void check_cont(const struct imap_response *r, unsigned i, void *ud) {
        static const char *texts[] = { "idling", "", "", "dXNlcm5hbWU=" };

        ck_assert_int_eq(r->kind, IMAP_RESP_KIND_CONTINUATION);
        ck_assert_int_eq(r->type, IMAP_RESP_CONTINUE);
        ck_assert_ptr_null(r->tag);
        ck_assert_str_eq(r->status.text, texts[i]);
}

START_TEST(test_continuation) {
        parse_expect("+ idling\r\n+\r\n+ \r\n+ dXNlcm5hbWU=\r\n", 4, check_cont, NULL);
}
END_TEST

/* ---- untagged data ------------------------------------------------------- */

static void check_capability(const struct imap_response *r, unsigned i, void *ud) {
        ck_assert_int_eq(r->kind, IMAP_RESP_KIND_UNTAGGED);
        if (i == 0) {
                ck_assert_int_eq(r->type, IMAP_RESP_CAPABILITY);
                ck_assert_uint_eq(r->atoms.n, 6);
                ck_assert(imap_strv_contains(&r->atoms, "QRESYNC"));
                ck_assert(imap_strv_contains(&r->atoms, "NOTIFY"));
                ck_assert(imap_strv_contains(&r->atoms, "LITERAL+"));
        } else {
                ck_assert_int_eq(r->type, IMAP_RESP_ENABLED);
                ck_assert_uint_eq(r->atoms.n, 2);
                ck_assert_str_eq(r->atoms.v[0], "CONDSTORE");
                ck_assert_str_eq(r->atoms.v[1], "QRESYNC");
        }
}

START_TEST(test_capability_enabled) {
        /* trailing space after CAPABILITY: seen from real servers */
        parse_expect("* CAPABILITY IMAP4rev1 IDLE NOTIFY CONDSTORE QRESYNC LITERAL+ \r\n"
                     "* ENABLED CONDSTORE QRESYNC\r\n", 2, check_capability, NULL);
}
END_TEST

static void check_flags(const struct imap_response *r, unsigned i, void *ud) {
        ck_assert_int_eq(r->type, IMAP_RESP_FLAGS);
        ck_assert_uint_eq(r->atoms.n, i == 0 ? 6 : 0);
        if (i == 0) {
                ck_assert_str_eq(r->atoms.v[0], "\\Answered");
                ck_assert_str_eq(r->atoms.v[5], "$Forwarded");
        }
}

START_TEST(test_flags) {
        parse_expect("* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Forwarded)\r\n* FLAGS ()\r\n",
                     2, check_flags, NULL);
}
END_TEST

static void check_numbered(const struct imap_response *r, unsigned i, void *ud) {
        static const struct {
                enum imap_resp_type type;
                uint32_t n;
        } want[] = {
                { IMAP_RESP_EXISTS, 172 },
                { IMAP_RESP_RECENT, 1 },
                { IMAP_RESP_EXPUNGE, 44 },
                { IMAP_RESP_EXISTS, 0 },
                { IMAP_RESP_EXISTS, 4294967295u },
                { IMAP_RESP_OTHER, 3 },
        };
        ck_assert_int_eq(r->kind, IMAP_RESP_KIND_UNTAGGED);
        ck_assert_int_eq(r->type, want[i].type);
        ck_assert_uint_eq(r->number, want[i].n);
}

START_TEST(test_exists_recent_expunge) {
        parse_expect("* 172 EXISTS\r\n* 1 RECENT\r\n* 44 expunge\r\n* 0 EXISTS\r\n* 4294967295 EXISTS\r\n"
                     "* 3 XNEWTHING foo\r\n", 6, check_numbered, NULL);
        parse_fail("* 4294967296 EXISTS\r\n", -ERANGE, "out of range");
        parse_fail("* 0 EXPUNGE\r\n", -EPROTO, "number 0");
        parse_fail("* 0 FETCH (UID 1)\r\n", -EPROTO, "number 0");
        parse_fail("* 3\r\n", -EPROTO, "keyword");
}
END_TEST

static void check_vanished(const struct imap_response *r, unsigned i, void *ud) {
        struct imap_seqset_iter it;
        uint32_t a, b;

        ck_assert_int_eq(r->type, IMAP_RESP_VANISHED);
        if (i == 0) {
                ck_assert(r->vanished.earlier);
                ck_assert_str_eq(r->vanished.uids, "300:310,405,411");
                imap_seqset_iter_init(&it, r->vanished.uids);
                ck_assert_int_eq(imap_seqset_next(&it, &a, &b), 1);
                ck_assert_uint_eq(a, 300);
                ck_assert_uint_eq(b, 310);
                ck_assert_int_eq(imap_seqset_next(&it, &a, &b), 1);
                ck_assert_uint_eq(a, 405);
                ck_assert_uint_eq(b, 405);
                ck_assert_int_eq(imap_seqset_next(&it, &a, &b), 1);
                ck_assert_uint_eq(a, 411);
                ck_assert_int_eq(imap_seqset_next(&it, &a, &b), 0);
        } else {
                ck_assert(!r->vanished.earlier);
                ck_assert_str_eq(r->vanished.uids, "505");
        }
}

START_TEST(test_vanished) {
        parse_expect("* VANISHED (EARLIER) 300:310,405,411\r\n* VANISHED 505\r\n", 2, check_vanished, NULL);
        parse_fail("* VANISHED 1:*\r\n", -EPROTO, "VANISHED");
        parse_fail("* VANISHED (LATER) 1\r\n", -EPROTO, "EARLIER");
        parse_fail("* VANISHED 0\r\n", -EPROTO, "VANISHED");
        parse_fail("* VANISHED\r\n", -EPROTO, "VANISHED");
}
END_TEST

START_TEST(test_seqset) {
        struct imap_seqset_iter it;
        uint32_t a, b;

        ck_assert(imap_seqset_valid("1", false));
        ck_assert(imap_seqset_valid("1:*", true));
        ck_assert(!imap_seqset_valid("1:*", false));
        ck_assert(!imap_seqset_valid("", false));
        ck_assert(!imap_seqset_valid("1,", false));
        ck_assert(!imap_seqset_valid(",1", false));
        ck_assert(!imap_seqset_valid("1::2", false));
        ck_assert(!imap_seqset_valid("4294967296", false));
        ck_assert(imap_seqset_valid("4294967295", false));
        imap_seqset_iter_init(&it, "9:3,*");
        ck_assert_int_eq(imap_seqset_next(&it, &a, &b), 1);
        ck_assert_uint_eq(a, 3);
        ck_assert_uint_eq(b, 9);
        ck_assert_int_eq(imap_seqset_next(&it, &a, &b), 1);
        ck_assert_uint_eq(a, UINT32_MAX);
        ck_assert_int_eq(imap_seqset_next(&it, &a, &b), 0);
}
END_TEST

/* ---- FETCH --------------------------------------------------------------- */

static void check_fetch_flags(const struct imap_response *r, unsigned i, void *ud) {
        const struct imap_fetch_resp *f = &r->fetch;

        ck_assert_int_eq(r->type, IMAP_RESP_FETCH);
        ck_assert_uint_eq(r->number, 12);
        ck_assert_uint_eq(f->present, IMAP_FETCH_UID | IMAP_FETCH_FLAGS | IMAP_FETCH_MODSEQ);
        ck_assert_uint_eq(f->uid, 4827313);
        ck_assert_uint_eq(f->flags.n, 2);
        ck_assert_str_eq(f->flags.v[0], "\\Seen");
        ck_assert_str_eq(f->flags.v[1], "$Label1");
        ck_assert_uint_eq(f->modseq, 12111230047ull);
}

START_TEST(test_fetch_flags_modseq) {
        parse_expect("* 12 FETCH (UID 4827313 FLAGS (\\Seen $Label1) MODSEQ (12111230047))\r\n", 1,
                     check_fetch_flags, NULL);
}
END_TEST

static void check_fetch_envelope(const struct imap_response *r, unsigned i, void *ud) {
        const struct imap_fetch_resp *f = &r->fetch;
        const struct imap_envelope *e = &f->envelope;

        ck_assert_int_eq(r->type, IMAP_RESP_FETCH);
        ck_assert(f->present & IMAP_FETCH_ENVELOPE);
        ck_assert(f->present & IMAP_FETCH_INTERNALDATE);
        ck_assert(f->present & IMAP_FETCH_RFC822_SIZE);
        ck_assert_uint_eq(f->rfc822_size, 4286);
        ck_assert_str_eq(f->internaldate, "17-Jul-1996 02:44:25 -0700");
        ck_assert_str_eq(e->date, "Wed, 17 Jul 1996 02:23:25 -0700 (PDT)");
        ck_assert_str_eq(e->subject, "=?UTF-8?B?SMOpbGxv?= \"quoted\" (paren");
        ck_assert_uint_eq(e->from.n, 1);
        ck_assert_str_eq(e->from.v[0].name, "Terry Gray");
        ck_assert_ptr_null(e->from.v[0].adl);
        ck_assert_str_eq(e->from.v[0].mailbox, "gray");
        ck_assert_str_eq(e->from.v[0].host, "cac.washington.edu");
        ck_assert_uint_eq(e->to.n, 1);
        ck_assert_uint_eq(e->cc.n, 2);
        ck_assert_ptr_null(e->cc.v[0].name);
        ck_assert_str_eq(e->cc.v[1].mailbox, "KLENSIN");
        ck_assert_uint_eq(e->bcc.n, 0);
        ck_assert_ptr_null(e->in_reply_to);
        ck_assert_str_eq(e->message_id, "<B27397-0100000@cac.washington.edu>");
        ck_assert_uint_eq(f->uid, 9);
}

START_TEST(test_fetch_envelope) {
        parse_expect("* 3 FETCH (INTERNALDATE \"17-Jul-1996 02:44:25 -0700\" RFC822.SIZE 4286 ENVELOPE "
                     "(\"Wed, 17 Jul 1996 02:23:25 -0700 (PDT)\" {36}\r\n"
                     "=?UTF-8?B?SMOpbGxv?= \"quoted\" (paren"
                     " ((\"Terry Gray\" NIL \"gray\" \"cac.washington.edu\")) "
                     "((\"Terry Gray\" NIL \"gray\" \"cac.washington.edu\")) "
                     "((\"Terry Gray\" NIL \"gray\" \"cac.washington.edu\")) "
                     "((NIL NIL \"imap\" \"cac.washington.edu\")) "
                     "((NIL NIL \"minutes\" \"CNRI.Reston.VA.US\")(\"John Klensin\" NIL \"KLENSIN\" \"MIT.EDU\")) "
                     "NIL NIL \"<B27397-0100000@cac.washington.edu>\") UID 9)\r\n",
                     1, check_fetch_envelope, NULL);
}
END_TEST

static void check_fetch_body(const struct imap_response *r, unsigned i, void *ud) {
        const struct imap_fetch_resp *f = &r->fetch;

        ck_assert_int_eq(r->type, IMAP_RESP_FETCH);
        ck_assert_uint_eq(f->uid, 7);
        ck_assert_uint_eq(f->n_sections, 3);
        ck_assert_str_eq(f->sections[0].item, "BODY");
        ck_assert_str_eq(f->sections[0].section, "HEADER.FIELDS (FROM SUBJECT \"X-A]\")");
        ck_assert(!f->sections[0].has_origin);
        ck_assert_uint_eq(f->sections[0].len, 37);
        ck_assert_mem_eq(f->sections[0].data, "From: a@b.c\r\nSubject: hi\r\n(x) {3}\r\n\r\n", 37);
        ck_assert_str_eq(f->sections[1].item, "BINARY");
        ck_assert_str_eq(f->sections[1].section, "1");
        ck_assert(f->sections[1].has_origin);
        ck_assert_uint_eq(f->sections[1].origin, 0);
        ck_assert_uint_eq(f->sections[1].len, 4);
        ck_assert_mem_eq(f->sections[1].data, "a\0b\0", 4);
        ck_assert_str_eq(f->sections[2].section, "TEXT");
        ck_assert_ptr_null(f->sections[2].data);
        /* everything is also available as generic values */
        ck_assert_uint_eq(r->n_args, 1);
        ck_assert_int_eq(r->args[0].type, IMAP_ARG_LIST);
        ck_assert_uint_eq(r->args[0].len, 12);
        ck_assert_int_eq(r->args[0].list[3].type, IMAP_ARG_LITERAL);
        ck_assert(r->args[0].list[5].literal8);
        ck_assert_int_eq(r->args[0].list[6].type, IMAP_ARG_ATOM);
        ck_assert_str_eq(r->args[0].list[6].str, "X-GM-LABELS");
}

START_TEST(test_fetch_body_literals) {
        static const char in[] = "* 2 FETCH (UID 7 BODY[HEADER.FIELDS (FROM SUBJECT \"X-A]\")] {37}\r\n"
                                 "From: a@b.c\r\nSubject: hi\r\n(x) {3}\r\n\r\n"
                                 " BINARY[1]<0> ~{4}\r\na\0b\0 X-GM-LABELS (\\Inbox \"a b\") "
                                 "BODY[TEXT] NIL BINARY.SIZE[1] 4)\r\n";

        for (size_t s = 0; s < sizeof(steps) / sizeof(steps[0]); s++) {
                int r = feed_split(NULL, in, sizeof(in) - 1, steps[s], check_fetch_body, NULL, NULL, 0);
                ck_assert_int_eq(r, 1);
        }
}
END_TEST

START_TEST(test_fetch_malformed) {
        parse_fail("* 1 FETCH (UID 0)\r\n", -EPROTO, "UID");
        parse_fail("* 1 FETCH (UID 4294967296)\r\n", -EPROTO, "UID");
        parse_fail("* 1 FETCH (UID)\r\n", -EPROTO, "FETCH");
        parse_fail("* 1 FETCH UID 1\r\n", -EPROTO, "FETCH");
        parse_fail("* 1 FETCH (FLAGS \\Seen)\r\n", -EPROTO, "FLAGS");
        parse_fail("* 1 FETCH (MODSEQ 5)\r\n", -EPROTO, "MODSEQ");
        parse_fail("* 1 FETCH (MODSEQ (0))\r\n", -EPROTO, "MODSEQ");
        parse_fail("* 1 FETCH (ENVELOPE (NIL NIL))\r\n", -EPROTO, "ENVELOPE");
        parse_fail("* 1 FETCH (BODY[HEADER]<x> NIL)\r\n", -EPROTO, "origin");
        parse_fail("* 1 FETCH (BODY[HEADER {3}\r\n", -EPROTO, "'['");
        static const char nul_lit[] = "* 1 FETCH (BODY[] {3}\r\na\0b)\r\n";
        parse_fail_lim(NULL, nul_lit, sizeof(nul_lit) - 1, -EPROTO, "NUL byte in literal");
}
END_TEST

/* ---- LIST, STATUS, SEARCH, ESEARCH --------------------------------------- */

static void check_list(const struct imap_response *r, unsigned i, void *ud) {
        const struct imap_list_resp *l = &r->list;

        switch (i) {
        case 0:
                ck_assert_int_eq(r->type, IMAP_RESP_LIST);
                ck_assert_uint_eq(l->attributes.n, 1);
                ck_assert_str_eq(l->attributes.v[0], "\\HasNoChildren");
                ck_assert_int_eq(l->delimiter, '/');
                ck_assert_str_eq(l->mailbox, "INBOX");
                break;
        case 1:
                ck_assert_str_eq(l->mailbox_raw, "~peter/mail/&U,BTFw-/&ZeVnLIqe-");
                ck_assert_str_eq(l->mailbox, "~peter/mail/\xe5\x8f\xb0\xe5\x8c\x97/\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e");
                ck_assert(l->mailbox_utf7_valid);
                break;
        case 2:
                ck_assert_int_eq(r->type, IMAP_RESP_LSUB);
                ck_assert_int_eq(l->delimiter, '\0');
                ck_assert_str_eq(l->mailbox, "Lists/linux & friends");
                ck_assert_str_eq(l->mailbox_raw, "Lists/linux &- friends");
                break;
        case 3:
                ck_assert_str_eq(l->mailbox, "lit box");
                ck_assert_uint_eq(r->n_args, 4);        /* extended data kept */
                break;
        case 4:
                ck_assert(!l->mailbox_utf7_valid);
                ck_assert_str_eq(l->mailbox, "bad&name");
                break;
        case 5:
                ck_assert(!l->mailbox_utf7_valid);
                ck_assert_str_eq(l->mailbox, "caf\xc3\xa9");        /* UTF8=ACCEPT server */
                break;
        case 6:
                ck_assert_str_eq(l->mailbox, "inv\xef\xbf\xbd");     /* invalid byte replaced */
                ck_assert_str_eq(l->mailbox, "inv\xef\xbf\xbd");
                break;
        case 7:
                ck_assert_str_eq(l->mailbox, "INBOX");               /* inbox is case-insensitive */
                ck_assert_str_eq(l->mailbox_raw, "inbox");
                break;
        }
}

START_TEST(test_list_lsub) {
        parse_expect("* LIST (\\HasNoChildren) \"/\" INBOX\r\n"
                     "* LIST () \"/\" \"~peter/mail/&U,BTFw-/&ZeVnLIqe-\"\r\n"
                     "* LSUB (\\Noselect) NIL \"Lists/linux &- friends\"\r\n"
                     "* LIST (\\Subscribed) \".\" {7}\r\nlit box (\"CHILDINFO\" (\"SUBSCRIBED\"))\r\n"
                     "* LIST () \"/\" bad&name\r\n"
                     "* LIST () \"/\" \"caf\xc3\xa9\"\r\n"
                     "* LIST () \"/\" \"inv\xff\"\r\n"
                     "* LIST () \"/\" inbox\r\n",
                     8, check_list, NULL);
        parse_fail("* LIST () \"//\" INBOX\r\n", -EPROTO, "delimiter");
        parse_fail("* LIST \"/\" INBOX\r\n", -EPROTO, "LIST");
}
END_TEST

static void check_status(const struct imap_response *r, unsigned i, void *ud) {
        const struct imap_status_resp *s = &r->mbstatus;

        ck_assert_int_eq(r->type, IMAP_RESP_STATUS);
        if (i == 0) {
                ck_assert_str_eq(s->mailbox, "blurdybloop");
                ck_assert_uint_eq(s->present, IMAP_STATUS_MESSAGES | IMAP_STATUS_UIDNEXT | IMAP_STATUS_UIDVALIDITY |
                                              IMAP_STATUS_UNSEEN | IMAP_STATUS_HIGHESTMODSEQ);
                ck_assert_uint_eq(s->messages, 231);
                ck_assert_uint_eq(s->uidnext, 44292);
                ck_assert_uint_eq(s->uidvalidity, 1700000000);
                ck_assert_uint_eq(s->unseen, 3);
                ck_assert_uint_eq(s->highestmodseq, 7011231777ull);
        } else {
                ck_assert_str_eq(s->mailbox, "Entw\xc3\xbcrfe");
                ck_assert_uint_eq(s->present, IMAP_STATUS_SIZE | IMAP_STATUS_RECENT);
                ck_assert_uint_eq(s->size, 8000000000ull);
        }
}

START_TEST(test_status) {
        parse_expect("* STATUS blurdybloop (MESSAGES 231 UIDNEXT 44292 UIDVALIDITY 1700000000 UNSEEN 3 "
                     "HIGHESTMODSEQ 7011231777 X-FUTURE (a b))\r\n"
                     "* STATUS \"Entw&APw-rfe\" (SIZE 8000000000 RECENT 0)\r\n",
                     2, check_status, NULL);
        parse_fail("* STATUS INBOX (MESSAGES)\r\n", -EPROTO, "STATUS");
        parse_fail("* STATUS INBOX (MESSAGES 4294967296)\r\n", -EPROTO, "MESSAGES");
        parse_fail("* STATUS INBOX MESSAGES 1\r\n", -EPROTO, "STATUS");
}
END_TEST

static void check_search(const struct imap_response *r, unsigned i, void *ud) {
        ck_assert_int_eq(r->type, IMAP_RESP_SEARCH);
        switch (i) {
        case 0:
                ck_assert_uint_eq(r->search.n, 3);
                ck_assert_uint_eq(r->search.numbers[0], 2);
                ck_assert_uint_eq(r->search.numbers[2], 4294967295u);
                ck_assert_uint_eq(r->search.modseq, 0);
                break;
        case 1:
                ck_assert_uint_eq(r->search.n, 0);
                break;
        case 2:
                ck_assert_uint_eq(r->search.n, 2);
                ck_assert_uint_eq(r->search.modseq, 917162500);
                break;
        }
}

START_TEST(test_search) {
        /* "* SEARCH " with a trailing space is what several servers send for no match */
        parse_expect("* SEARCH 2 84 4294967295\r\n* SEARCH \r\n* SEARCH 2 5 (MODSEQ 917162500)\r\n",
                     3, check_search, NULL);
        parse_fail("* SEARCH 0\r\n", -EPROTO, "SEARCH");
        parse_fail("* SEARCH 1 x\r\n", -EPROTO, "SEARCH");
        parse_fail("* SEARCH 1 (MODSEQ)\r\n", -EPROTO, "MODSEQ");
}
END_TEST

static void check_esearch(const struct imap_response *r, unsigned i, void *ud) {
        const struct imap_esearch_resp *e = &r->esearch;

        ck_assert_int_eq(r->type, IMAP_RESP_ESEARCH);
        if (i == 0) {
                ck_assert_str_eq(e->tag, "A282");
                ck_assert(e->uid);
                ck_assert_uint_eq(e->present, IMAP_ESEARCH_MIN | IMAP_ESEARCH_MAX | IMAP_ESEARCH_COUNT |
                                              IMAP_ESEARCH_ALL | IMAP_ESEARCH_MODSEQ);
                ck_assert_uint_eq(e->min, 2);
                ck_assert_uint_eq(e->max, 47);
                ck_assert_uint_eq(e->count, 9);
                ck_assert_str_eq(e->all, "2,10:11,44:47");
                ck_assert_uint_eq(e->modseq, 5);
        } else {
                ck_assert_ptr_null(e->tag);
                ck_assert(!e->uid);
                ck_assert_uint_eq(e->present, 0);
        }
}

START_TEST(test_esearch) {
        parse_expect("* ESEARCH (TAG \"A282\") UID MIN 2 MAX 47 COUNT 9 ALL 2,10:11,44:47 MODSEQ 5\r\n"
                     "* ESEARCH\r\n", 2, check_esearch, NULL);
        parse_fail("* ESEARCH (TAG) MIN 1\r\n", -EPROTO, "correlator");
        parse_fail("* ESEARCH ALL 1:*\r\n", -EPROTO, "ALL");
        parse_fail("* ESEARCH MIN\r\n", -EPROTO, "pairs");
}
END_TEST

/* ---- others: NAMESPACE, ID, unknown, untagged NO/BAD --------------------- */

static void check_other(const struct imap_response *r, unsigned i, void *ud) {
        const struct imap_arg *l;
        size_t n;

        switch (i) {
        case 0:
                ck_assert_int_eq(r->type, IMAP_RESP_NAMESPACE);
                ck_assert_uint_eq(r->n_args, 3);
                ck_assert(imap_arg_get_list(&r->args[0], &l, &n));
                ck_assert_uint_eq(n, 1);
                ck_assert(imap_arg_is_nil(&r->args[1]));
                break;
        case 1:
                ck_assert_int_eq(r->type, IMAP_RESP_ID);
                ck_assert(imap_arg_get_list(&r->args[0], &l, &n));
                ck_assert_uint_eq(n, 2);
                ck_assert_str_eq(l[1].str, "Dovecot");
                break;
        case 2:
                ck_assert_int_eq(r->type, IMAP_RESP_OTHER);
                ck_assert_str_eq(r->keyword, "XLIST");
                break;
        case 3:
                ck_assert_int_eq(r->type, IMAP_RESP_NO);
                ck_assert_int_eq(r->kind, IMAP_RESP_KIND_UNTAGGED);
                ck_assert_str_eq(r->status.text, "Disk quota (almost) exceeded \"here");
                break;
        case 4:
                ck_assert_int_eq(r->type, IMAP_RESP_BAD);
                ck_assert_str_eq(r->status.text, "unbalanced ((( and {5} are just text");
                break;
        }
}

START_TEST(test_namespace_id_other) {
        parse_expect("* NAMESPACE ((\"\" \"/\")) NIL NIL\r\n"
                     "* ID (\"name\" \"Dovecot\")\r\n"
                     "* XLIST (\\Inbox) \"/\" INBOX\r\n"
                     "* NO Disk quota (almost) exceeded \"here\r\n"
                     "* BAD unbalanced ((( and {5} are just text\r\n",
                     5, check_other, NULL);
}
END_TEST

/* ---- strings, atoms, literals ------------------------------------------- */

static void check_strings(const struct imap_response *r, unsigned i, void *ud) {
        const struct imap_arg *a = r->args;

        ck_assert_int_eq(r->type, IMAP_RESP_OTHER);
        ck_assert_uint_eq(r->n_args, 8);
        ck_assert_int_eq(a[0].type, IMAP_ARG_STRING);
        ck_assert_str_eq(a[0].str, "a \"q\" \\ b");
        ck_assert_int_eq(a[1].type, IMAP_ARG_STRING);
        ck_assert_uint_eq(a[1].len, 0);
        ck_assert_int_eq(a[2].type, IMAP_ARG_NIL);
        ck_assert_int_eq(a[3].type, IMAP_ARG_LITERAL);
        ck_assert_uint_eq(a[3].len, 0);
        ck_assert_int_eq(a[4].type, IMAP_ARG_LITERAL);
        ck_assert_str_eq(a[4].str, "ab");
        ck_assert_int_eq(a[5].type, IMAP_ARG_LIST);
        ck_assert_uint_eq(a[5].len, 2);
        ck_assert_int_eq(a[5].list[0].type, IMAP_ARG_LIST);
        ck_assert_uint_eq(a[5].list[0].len, 0);
        ck_assert_int_eq(a[6].type, IMAP_ARG_ATOM);
        ck_assert_str_eq(a[6].str, "\\*");
        ck_assert_str_eq(a[7].str, "caf\xc3\xa9");
}

START_TEST(test_strings_literals) {
        parse_expect("* XTEST \"a \\\"q\\\" \\\\ b\" \"\" nil {0}\r\n {2+}\r\nab (() x) \\* \"caf\xc3\xa9\"\r\n",
                     1, check_strings, NULL);
        parse_fail("* XTEST \"abc\r\n", -EPROTO, "unterminated quoted");
        parse_fail("* XTEST \"a\\nb\"\r\n", -EPROTO, "escape");
        parse_fail("* XTEST \"a\"b\r\n", -EPROTO, "missing space");
        parse_fail("* XTEST {3} x\r\nabc\r\n", -EPROTO, "literal header not at the end");
        parse_fail("* XTEST {}\r\n", -EPROTO, "literal size");
        parse_fail("* XTEST {-1}\r\n", -EPROTO, "literal size");
        parse_fail("* XTEST {3x}\r\n", -EPROTO, "literal header");
        parse_fail("* XTEST ~3\r\n", -EPROTO, "'~'");
}
END_TEST

/* ---- hostile input ------------------------------------------------------- */

START_TEST(test_literal_limits) {
        struct imap_parser_limits lim = imap_parser_default_limits;

        lim.max_literal = 100;
        /* the size is rejected while its digits are read, before any allocation */
        parse_fail("* 1 FETCH (BODY[] {4294967296}\r\n", -EMSGSIZE, "literal larger");
        parse_fail("* 1 FETCH (BODY[] {99999999999999999999999999999}\r\n", -EMSGSIZE, "literal larger");
        parse_fail_lim(&lim, "* 1 FETCH (BODY[] {101}\r\n", 25, -EMSGSIZE, "literal larger");

        /* exactly at the limit is fine */
        char buf[300];
        int n = snprintf(buf, sizeof(buf), "* 1 FETCH (BODY[] {100}\r\n%0100d)\r\n", 0);
        for (size_t s = 0; s < sizeof(steps) / sizeof(steps[0]); s++)
                ck_assert_int_eq(feed_split(&lim, buf, (size_t) n, steps[s], NULL, NULL, NULL, 0), 1);

        /* response limit covers several literals together */
        lim.max_literal = 1000;
        lim.max_response = 1500;
        char big[4096];
        n = snprintf(big, sizeof(big), "* 1 FETCH (BODY[1] {800}\r\n%0800d BODY[2] {800}\r\n%0800d)\r\n", 0, 0);
        parse_fail_lim(&lim, big, (size_t) n, -EMSGSIZE, "response larger");
}
END_TEST

START_TEST(test_deep_nesting) {
        char buf[256];
        size_t n = 0;

        n += (size_t) snprintf(buf + n, sizeof(buf) - n, "* XTEST ");
        for (int i = 0; i < 16; i++)
                buf[n++] = '(';
        for (int i = 0; i < 16; i++)
                buf[n++] = ')';
        memcpy(buf + n, "\r\n", 3);
        parse_expect(buf, 1, NULL, NULL);

        n = (size_t) snprintf(buf, sizeof(buf), "* XTEST ");
        for (int i = 0; i < 17; i++)
                buf[n++] = '(';
        for (int i = 0; i < 17; i++)
                buf[n++] = ')';
        memcpy(buf + n, "\r\n", 3);
        parse_fail(buf, -EMSGSIZE, "nested deeper");

        /* 60000 open parentheses: fails at 17 without using memory for the rest */
        size_t len = 8 + 60000 + 2;
        char *deep = malloc(len + 1);
        ck_assert_ptr_nonnull(deep);
        memcpy(deep, "* XTEST ", 8);
        memset(deep + 8, '(', 60000);
        memcpy(deep + 8 + 60000, "\r\n", 3);
        parse_fail_lim(NULL, deep, len, -EMSGSIZE, "nested deeper");
        free(deep);
}
END_TEST

START_TEST(test_unbalanced) {
        parse_fail("* XTEST (a b\r\n", -EPROTO, "unbalanced '('");
        parse_fail("* XTEST a b)\r\n", -EPROTO, "unbalanced ')'");
        parse_fail("* 1 FETCH (FLAGS (\\Seen)\r\n", -EPROTO, "unbalanced '('");
        parse_fail("* XTEST ((a) b))\r\n", -EPROTO, "unbalanced ')'");
}
END_TEST

START_TEST(test_nul_and_control) {
        static const char nul_line[] = "* OK hello\0world\r\n";
        static const char nul_tag[] = "a\0 OK x\r\n";

        parse_fail_lim(NULL, nul_line, sizeof(nul_line) - 1, -EPROTO, "NUL byte");
        parse_fail_lim(NULL, nul_tag, sizeof(nul_tag) - 1, -EPROTO, "NUL byte");
        parse_fail("* OK a\rb\r\n", -EPROTO, "stray CR");
        parse_fail("* XTEST a\x01" "b\r\n", -EPROTO, "control character");
        parse_fail("\r\n", -EPROTO, "empty line");
        parse_fail("(a) OK\r\n", -EPROTO, "tag");
        parse_fail("a1 FETCH (UID 1)\r\n", -EPROTO, "tagged response with keyword");
        parse_fail("a1 BYE x\r\n", -EPROTO, "tagged BYE");
        parse_fail("*OK x\r\n", -EPROTO, "missing space");
}
END_TEST

START_TEST(test_long_lines) {
        struct imap_parser_limits lim = imap_parser_default_limits;
        size_t len = 10 * 1024 * 1024;
        char *buf;

        lim.max_line = 1000;
        /* 1000 bytes plus CRLF is accepted; 1001 is not */
        buf = malloc(len + 3);
        ck_assert_ptr_nonnull(buf);
        memcpy(buf, "* OK ", 5);
        memset(buf + 5, 'x', 995);
        memcpy(buf + 1000, "\r\n", 2);
        ck_assert_int_eq(feed_split(&lim, buf, 1002, 0, NULL, NULL, NULL, 0), 1);
        ck_assert_int_eq(feed_split(&lim, buf, 1002, 1, NULL, NULL, NULL, 0), 1);
        memset(buf + 5, 'x', 996);
        memcpy(buf + 1001, "\r\n", 2);
        parse_fail_lim(&lim, buf, 1003, -EMSGSIZE, "line longer");

        /* a 10 MB line without LF fails early, with the default limits too */
        memcpy(buf, "* OK ", 5);
        memset(buf + 5, 'x', len - 5);
        char err[256];
        ck_assert_int_eq(feed_split(NULL, buf, len, 0, NULL, NULL, err, sizeof(err)), -EMSGSIZE);
        ck_assert_int_eq(feed_split(NULL, buf, len, 4096, NULL, NULL, err, sizeof(err)), -EMSGSIZE);
        free(buf);
}
END_TEST

START_TEST(test_element_limit) {
        struct imap_parser_limits lim = imap_parser_default_limits;

        lim.max_elements = 10;
        parse_fail_lim(&lim, "* SEARCH 1 2 3 4 5 6 7 8 9 10 11\r\n", 34, -EMSGSIZE, "values");
        ck_assert_int_eq(feed_split(&lim, "* SEARCH 1 2 3 4 5 6 7 8 9 10\r\n", 31, 1, NULL, NULL, NULL, 0), 1);
}
END_TEST

/* Memory follows the response, not (values x line length): 20,000 empty
 * quoted strings on one 60 KB line used to take a copy of the rest of the
 * line each, 600 MB in all. */
static void check_20000_empty(const struct imap_response *r, unsigned i, void *ud) {
        const struct imap_arg *l;
        size_t n;

        ck_assert_uint_eq(r->n_args, 1);
        ck_assert(imap_arg_get_list(&r->args[0], &l, &n));
        ck_assert_uint_eq(n, 4);
        ck_assert(imap_arg_get_list(&l[3], &l, &n));
        ck_assert_uint_eq(n, 20000);
        ck_assert_int_eq(l[19999].type, IMAP_ARG_STRING);
        ck_assert_str_eq(l[19999].str, "");
}

START_TEST(test_quoted_strings_memory) {
        static const char head[] = "* 1 FETCH (UID 1 X (", tail[] = "))\r\n";
        size_t len = sizeof(head) - 1 + 3 * 20000 + sizeof(tail) - 1, n = 0;
        char *buf = malloc(len + 1);
        struct imap_parser *p = imap_parser_new(NULL);
        const struct imap_response *r;
        size_t used;

        ck_assert_ptr_nonnull(buf);
        memcpy(buf, head, sizeof(head) - 1);
        n = sizeof(head) - 1;
        for (int i = 0; i < 20000; i++, n += 3)
                memcpy(buf + n, "\"\" ", 3);
        memcpy(buf + n, tail, sizeof(tail));
        ck_assert_int_eq(imap_parser_feed(p, buf, len, &used, &r), 1);
        check_20000_empty(r, 0, NULL);
        ck_assert_uint_le(imap_parser_memory(p), 4 * 1024 * 1024);
        imap_parser_free(p);
        for (size_t s = 0; s < sizeof(steps) / sizeof(steps[0]); s++)
                ck_assert_int_eq(feed_split(NULL, buf, len, steps[s], check_20000_empty, NULL, NULL, 0), 1);
        free(buf);
}
END_TEST

/* Many values over lines joined by literals (3.5 MB, under the response
 * limit): the value limit ends it while the parser's tables are still
 * within twice the response limit. At 1,000,000 values they took 40 MB. */
START_TEST(test_values_memory) {
        size_t cap = 3600 * 1024, len = 0, peak = 0, off = 0, used;
        char *buf = malloc(cap);
        struct imap_parser *p = imap_parser_new(NULL);
        const struct imap_response *r;
        int k = 0;

        ck_assert_ptr_nonnull(buf);
        len += (size_t) snprintf(buf, cap, "* 1 FETCH (UID 1");
        while (len + 70000 < cap) {
                for (int i = 0; i < 10000; i++, len += 6)
                        memcpy(buf + len, " X NIL", 6);
                memcpy(buf + len, " X {1}\r\na", 9);
                len += 9;
        }
        memcpy(buf + len, ")\r\n", 3);
        len += 3;
        while (off < len) {
                size_t chunk = len - off < 65536 ? len - off : 65536;

                k = imap_parser_feed(p, buf + off, chunk, &used, &r);
                if (imap_parser_memory(p) > peak)
                        peak = imap_parser_memory(p);
                if (k != 0)
                        break;
                off += used;
        }
        ck_assert_int_eq(k, -EMSGSIZE);
        ck_assert_ptr_nonnull(strstr(imap_parser_error(p), "values in one response"));
        ck_assert_uint_le(peak, 2 * imap_parser_default_limits.max_response);
        /* a SEARCH on a full 64 KiB line still fits */
        ck_assert_uint_ge(imap_parser_default_limits.max_elements, 32 * 1024 + 1);
        imap_parser_free(p);
        free(buf);
}
END_TEST

START_TEST(test_failed_parser_stays_failed) {
        struct imap_parser *p = imap_parser_new(NULL);
        const struct imap_response *r;
        size_t used;

        ck_assert_int_eq(imap_parser_feed(p, "* 1 FETCH (UID 0)\r\n", 19, &used, &r), -EPROTO);
        ck_assert_ptr_nonnull(imap_parser_error(p));
        ck_assert_int_eq(imap_parser_feed(p, "* 1 EXISTS\r\n", 12, &used, &r), -EPROTO);
        ck_assert_uint_eq(used, 0);
        imap_parser_free(p);
        ck_assert_ptr_null(imap_parser_free(NULL));
}
END_TEST

START_TEST(test_bare_lf_and_consumed) {
        struct imap_parser *p = imap_parser_new(NULL);
        const struct imap_response *r;
        const char *in = "* 2 EXISTS\n* 1 RECENT\r\na1 OK done\r\n* 3 EX";
        size_t len = strlen(in), off = 0, used;

        ck_assert_int_eq(imap_parser_feed(p, in, len, &used, &r), 1);
        ck_assert_uint_eq(used, 11);
        ck_assert_int_eq(r->type, IMAP_RESP_EXISTS);
        off += used;
        ck_assert_int_eq(imap_parser_feed(p, in + off, len - off, &used, &r), 1);
        ck_assert_int_eq(r->type, IMAP_RESP_RECENT);
        off += used;
        ck_assert_int_eq(imap_parser_feed(p, in + off, len - off, &used, &r), 1);
        ck_assert_str_eq(r->tag, "a1");
        off += used;
        ck_assert_int_eq(imap_parser_feed(p, in + off, len - off, &used, &r), 0);
        ck_assert_uint_eq(off + used, len);
        ck_assert_int_eq(imap_parser_feed(p, "ISTS\r\n", 6, &used, &r), 1);
        ck_assert_int_eq(r->type, IMAP_RESP_EXISTS);
        ck_assert_uint_eq(r->number, 3);
        imap_parser_free(p);
}
END_TEST

START_TEST(test_memory_trim) {
        struct imap_parser *p = imap_parser_new(NULL);
        const struct imap_response *r;
        size_t used, before;
        char *big = malloc(60000);

        before = imap_parser_memory(p);
        memcpy(big, "* OK ", 5);
        memset(big + 5, 'y', 59993);
        memcpy(big + 59998, "\r\n", 2);
        ck_assert_int_eq(imap_parser_feed(p, big, 60000, &used, &r), 1);
        ck_assert_uint_gt(imap_parser_memory(p), before + 50000);
        imap_parser_trim(p);
        ck_assert_uint_le(imap_parser_memory(p), before);
        /* still works after trimming */
        ck_assert_int_eq(imap_parser_feed(p, "* 9 EXISTS\r\n", 12, &used, &r), 1);
        ck_assert_uint_eq(r->number, 9);
        free(big);
        imap_parser_free(p);
}
END_TEST

START_TEST(test_number_helper) {
        uint64_t v;

        ck_assert_int_eq(imap_parse_number("0", 1, 10, &v), 0);
        ck_assert_uint_eq(v, 0);
        ck_assert_int_eq(imap_parse_number("18446744073709551615", 20, UINT64_MAX, &v), 0);
        ck_assert_uint_eq(v, UINT64_MAX);
        ck_assert_int_eq(imap_parse_number("18446744073709551616", 20, UINT64_MAX, &v), -ERANGE);
        ck_assert_int_eq(imap_parse_number("11", 2, 10, &v), -ERANGE);
        ck_assert_int_eq(imap_parse_number("", 0, 10, &v), -EINVAL);
        ck_assert_int_eq(imap_parse_number("+1", 2, 10, &v), -EINVAL);
        ck_assert_int_eq(imap_parse_number("1a", 2, 10, &v), -EINVAL);
        ck_assert_str_eq(imap_resp_type_to_string(IMAP_RESP_VANISHED), "VANISHED");
        ck_assert_ptr_null(imap_resp_type_to_string(_IMAP_RESP_TYPE_MAX));
}
END_TEST

/* A realistic Dovecot exchange, start to IDLE, as one stream. */
static void check_session(const struct imap_response *r, unsigned i, void *ud) {
        unsigned *seen = ud;

        seen[r->type]++;
        if (r->type == IMAP_RESP_EXISTS && r->kind == IMAP_RESP_KIND_UNTAGGED && i > 10)
                ck_assert_uint_eq(r->number, 4);
}

START_TEST(test_dovecot_session) {
        unsigned seen[_IMAP_RESP_TYPE_MAX] = {};
        static const char in[] =
                "* OK [CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ STARTTLS "
                "AUTH=PLAIN AUTH=LOGIN] Dovecot (Debian) ready.\r\n"
                "a1 OK [CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE SORT SORT=DISPLAY "
                "THREAD=REFERENCES THREAD=REFS THREAD=ORDEREDSUBJECT MULTIAPPEND URL-PARTIAL CATENATE "
                "UNSELECT CHILDREN NAMESPACE UIDPLUS LIST-EXTENDED I18NLEVEL=1 CONDSTORE QRESYNC ESEARCH "
                "ESORT SEARCHRES WITHIN CONTEXT=SEARCH LIST-STATUS BINARY MOVE SNIPPET=FUZZY PREVIEW=FUZZY "
                "PREVIEW STATUS=SIZE SAVEDATE LITERAL+ NOTIFY SPECIAL-USE] Logged in\r\n"
                "* ENABLED QRESYNC\r\n"
                "a2 OK Enabled\r\n"
                "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n"
                "* OK [PERMANENTFLAGS ()] Read-only mailbox.\r\n"
                "* 3 EXISTS\r\n"
                "* 0 RECENT\r\n"
                "* OK [UIDVALIDITY 1700000000] UIDs valid\r\n"
                "* OK [UIDNEXT 4] Predicted next UID\r\n"
                "* OK [HIGHESTMODSEQ 7] Highest\r\n"
                "a3 OK [READ-ONLY] Examine completed (0.001 + 0.000 secs).\r\n"
                "+ idling\r\n"
                "* 4 EXISTS\r\n"
                "* 1 RECENT\r\n"
                "a4 OK Idle completed (0.001 + 12.345 + 12.344 secs).\r\n"
                "* 4 FETCH (UID 4 MODSEQ (8) FLAGS (\\Recent))\r\n"
                "a5 OK Fetch completed (0.001 + 0.000 secs).\r\n"
                "* BYE Logging out\r\n"
                "a6 OK Logout completed (0.001 + 0.000 secs).\r\n";

        ck_assert_int_eq(feed_split(NULL, in, sizeof(in) - 1, 1, check_session, seen, NULL, 0), 20);
        ck_assert_uint_eq(seen[IMAP_RESP_OK], 11);
        ck_assert_uint_eq(seen[IMAP_RESP_EXISTS], 2);
        ck_assert_uint_eq(seen[IMAP_RESP_CONTINUE], 1);
        ck_assert_uint_eq(seen[IMAP_RESP_FETCH], 1);
        ck_assert_uint_eq(seen[IMAP_RESP_BYE], 1);
}
END_TEST

Suite *imap_parser_suite(void) {
        Suite *s = suite_create("imap-parser");
        TCase *tc;

        tc = tcase_create("status");
        tcase_add_test(tc, test_greeting_ok);
        tcase_add_test(tc, test_greeting_preauth_bye);
        tcase_add_test(tc, test_tagged_status);
        tcase_add_test(tc, test_response_codes);
        tcase_add_test(tc, test_response_code_ranges);
        tcase_add_test(tc, test_continuation);
        suite_add_tcase(s, tc);

        tc = tcase_create("data");
        tcase_add_test(tc, test_capability_enabled);
        tcase_add_test(tc, test_flags);
        tcase_add_test(tc, test_exists_recent_expunge);
        tcase_add_test(tc, test_vanished);
        tcase_add_test(tc, test_seqset);
        tcase_add_test(tc, test_fetch_flags_modseq);
        tcase_add_test(tc, test_fetch_envelope);
        tcase_add_test(tc, test_fetch_body_literals);
        tcase_add_test(tc, test_fetch_malformed);
        tcase_add_test(tc, test_list_lsub);
        tcase_add_test(tc, test_status);
        tcase_add_test(tc, test_search);
        tcase_add_test(tc, test_esearch);
        tcase_add_test(tc, test_namespace_id_other);
        tcase_add_test(tc, test_strings_literals);
        tcase_add_test(tc, test_dovecot_session);
        suite_add_tcase(s, tc);

        tc = tcase_create("hostile");
        tcase_add_test(tc, test_literal_limits);
        tcase_add_test(tc, test_deep_nesting);
        tcase_add_test(tc, test_unbalanced);
        tcase_add_test(tc, test_nul_and_control);
        tcase_add_test(tc, test_long_lines);
        tcase_add_test(tc, test_element_limit);
        tcase_add_test(tc, test_quoted_strings_memory);
        tcase_add_test(tc, test_values_memory);
        tcase_add_test(tc, test_failed_parser_stays_failed);
        tcase_add_test(tc, test_bare_lf_and_consumed);
        tcase_add_test(tc, test_memory_trim);
        tcase_add_test(tc, test_number_helper);
        suite_add_tcase(s, tc);

        return s;
}
