/* SPDX-License-Identifier: MIT */

#include <stdlib.h>
#include <string.h>

#include "mail-decode.h"
#include "suites.h"

static void expect_text(const char *raw, size_t max, const char *want) {
        char *out = NULL;

        ck_assert_int_eq(mail_decode_text(raw, max, &out), 0);
        ck_assert_msg(strcmp(out, want) == 0, "decode(%s) = \"%s\", want \"%s\"", raw, out, want);
        free(out);
}

START_TEST(test_rfc2047) {
        expect_text("=?UTF-8?B?R3LDvMOfZQ==?= aus Berlin", 512, "Gr\xc3\xbc\xc3\x9f" "e aus Berlin");
        expect_text("=?UTF-8?Q?J=C3=B6rg_M=C3=BCller?=", 512, "J\xc3\xb6rg M\xc3\xbcller");
        expect_text("=?ISO-8859-1?Q?caf=E9?=", 512, "caf\xc3\xa9");
        /* adjacent encoded words join without the space between them */
        expect_text("=?UTF-8?Q?a?= =?UTF-8?Q?b?=", 512, "ab");
        /* plain text passes; an unknown charset does not break anything */
        expect_text("hello", 512, "hello");
        expect_text("", 512, "");
        char *out = NULL;
        ck_assert_int_eq(mail_decode_text("=?X-UNKNOWN?Q?abc?=", 512, &out), 0);
        ck_assert_ptr_nonnull(out);
        free(out);
        ck_assert_int_eq(mail_decode_text(NULL, 512, &out), 0);
        ck_assert_str_eq(out, "");
        free(out);
}
END_TEST

START_TEST(test_hostile_text) {
        /* control characters become spaces, runs collapse, ends trimmed */
        expect_text("a\tb\x01\x02" "c\x7f", 512, "a b c");
        expect_text("=?UTF-8?Q?x=0D=0Ay=1B[31m?=", 512, "x y [31m");
        /* C1 controls (U+0080..U+009F) too */
        expect_text("a\xc2\x85" "b", 512, "a b");
        /* raw 8-bit that is not UTF-8 is read as Latin-1 (GMime's fallback),
         * never passed on as invalid bytes */
        expect_text("bad\xff" "byte", 512, "bad\xc3\xbf" "byte");
        /* cut at a character boundary: 5 bytes of "ééé" is "éé" */
        expect_text("\xc3\xa9\xc3\xa9\xc3\xa9", 5, "\xc3\xa9\xc3\xa9");
}
END_TEST

START_TEST(test_from) {
        struct imap_address alice = { .name = "=?UTF-8?Q?Al=C3=AFce?=", .mailbox = "alice", .host = "example.org" };
        struct imap_address bare = { .mailbox = "bot", .host = "example.com" };
        struct imap_address group = { .mailbox = "undisclosed-recipients" };
        struct imap_address list2[] = { group, bare };
        struct imap_envelope e = { .from = { .v = &alice, .n = 1 } };
        char *from, *addr;

        ck_assert_int_eq(mail_decode_from(&e, &from, &addr), 0);
        ck_assert_str_eq(from, "Al\xc3\xaf" "ce");
        ck_assert_str_eq(addr, "alice@example.org");
        free(from);
        free(addr);

        e.from = (struct imap_address_list) { .v = list2, .n = 2 };
        ck_assert_int_eq(mail_decode_from(&e, &from, &addr), 0);
        ck_assert_str_eq(from, "bot@example.com");
        ck_assert_str_eq(addr, "bot@example.com");
        free(from);
        free(addr);

        e.from = (struct imap_address_list) {};
        ck_assert_int_eq(mail_decode_from(&e, &from, &addr), 0);
        ck_assert_str_eq(from, "(unknown sender)");
        ck_assert_str_eq(addr, "");
        free(from);
        free(addr);
}
END_TEST

START_TEST(test_date) {
        ck_assert_int_eq(mail_decode_date("Wed, 17 Jul 1996 02:23:25 -0700 (PDT)"), 837595405);
        ck_assert_int_eq(mail_decode_date("not a date"), 0);
        ck_assert_int_eq(mail_decode_date(NULL), 0);
}
END_TEST

Suite *mail_decode_suite(void) {
        Suite *s = suite_create("mail-decode");
        TCase *tc = tcase_create("decode");

        tcase_add_test(tc, test_rfc2047);
        tcase_add_test(tc, test_hostile_text);
        tcase_add_test(tc, test_from);
        tcase_add_test(tc, test_date);
        suite_add_tcase(s, tc);
        return s;
}
