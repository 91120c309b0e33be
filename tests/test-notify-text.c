/* SPDX-License-Identifier: MIT */
#include <stdlib.h>
#include <string.h>

#include "notify-text.h"
#include "suites.h"
#include "utf8.h"

static void check_clean(const char *in, size_t max, const char *want) {
        char *got = notify_text_clean(in, max);

        ck_assert_ptr_nonnull(got);
        ck_assert_msg(strcmp(got, want) == 0, "clean(\"%s\", %zu) = \"%s\", want \"%s\"", in, max, got, want);
        free(got);
}

START_TEST(test_clean_controls) {
        check_clean(NULL, 100, "");
        check_clean("", 100, "");
        check_clean("plain subject", 100, "plain subject");
        /* C0, DEL and C1 go; tab/CR/LF become one space; ends trimmed */
        check_clean("\x01" "a\x7f" "b\xc2\x80" "c\xc2\x9f", 100, "abc");
        check_clean("  line one\r\n\tline two  ", 100, "line one line two");
        /* bidi overrides and isolates cannot reorder what the user reads */
        check_clean("invoice\xe2\x80\xae" "fdp.exe", 100, "invoicefdp.exe");
        check_clean("a\xe2\x81\xa6" "b\xe2\x81\xa9" "c\xe2\x80\x8f", 100, "abc");
        /* ill-formed UTF-8 shows as U+FFFD, never raw bytes */
        check_clean("bad\xff" "byte", 100, "bad\xef\xbf\xbd" "byte");
        /* markup characters are not this function's business */
        check_clean("<b>x</b> & y", 100, "<b>x</b> & y");
        /* joiners in emoji stay */
        check_clean("\xf0\x9f\x91\xa8\xe2\x80\x8d\xf0\x9f\x92\xbb", 100, "\xf0\x9f\x91\xa8\xe2\x80\x8d\xf0\x9f\x92\xbb");
}
END_TEST

START_TEST(test_clean_cut) {
        char in[2101], *got;

        check_clean("abcdefghij", 10, "abcdefghij");
        check_clean("abcdefghijk", 10, "abcdefg\xe2\x80\xa6");
        /* a space before the cut is not kept before the ellipsis */
        check_clean("abcdef ghijk", 10, "abcdef\xe2\x80\xa6");
        /* a two-byte character is never split: 'é' is 2 bytes */
        check_clean("\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9", 8, "\xc3\xa9\xc3\xa9\xe2\x80\xa6");

        /* 700 three-byte characters: the result is valid and within the limit */
        for (size_t i = 0; i < 700; i++)
                memcpy(in + 3 * i, "\xe2\x82\xac", 3);
        in[2100] = '\0';
        got = notify_text_clean(in, NOTIFY_TEXT_BODY_MAX);
        ck_assert_ptr_nonnull(got);
        ck_assert_uint_le(strlen(got), NOTIFY_TEXT_BODY_MAX);
        ck_assert_uint_ge(strlen(got), NOTIFY_TEXT_BODY_MAX - 5);
        ck_assert(utf8_is_valid(got, strlen(got)));
        ck_assert_str_eq(got + strlen(got) - 3, "\xe2\x80\xa6");
        free(got);
}
END_TEST

START_TEST(test_escape) {
        char *got = notify_text_escape_markup("<b>x</b> & <a href=\"https://evil.example\">y</a>");

        ck_assert_str_eq(got, "&lt;b&gt;x&lt;/b&gt; &amp; &lt;a href=\"https://evil.example\"&gt;y&lt;/a&gt;");
        free(got);
        got = notify_text_escape_markup("&amp; stays visible as typed");
        ck_assert_str_eq(got, "&amp;amp; stays visible as typed");
        free(got);
        got = notify_text_escape_markup(NULL);
        ck_assert_str_eq(got, "");
        free(got);
}
END_TEST

START_TEST(test_burst_body) {
        const char *s[] = { "Alice", "Bob", "Carol", "Dave" };
        char *got;

        got = notify_text_burst_body(s, 0, false);
        ck_assert_str_eq(got, "");
        free(got);
        got = notify_text_burst_body(s, 1, false);
        ck_assert_str_eq(got, "From Alice");
        free(got);
        got = notify_text_burst_body(s, 2, false);
        ck_assert_str_eq(got, "From Alice and Bob");
        free(got);
        got = notify_text_burst_body(s, 3, false);
        ck_assert_str_eq(got, "From Alice, Bob and Carol");
        free(got);
        got = notify_text_burst_body(s, 3, true);
        ck_assert_str_eq(got, "From Alice, Bob, Carol and others");
        free(got);
        got = notify_text_burst_body(s, 4, false);
        ck_assert_str_eq(got, "From Alice, Bob, Carol and others");
        free(got);
        got = notify_text_burst_body(s, 1, true);
        ck_assert_str_eq(got, "From Alice and others");
        free(got);
}
END_TEST

Suite *notify_text_suite(void) {
        Suite *s = suite_create("notify-text");
        TCase *tc = tcase_create("text");

        tcase_add_test(tc, test_clean_controls);
        tcase_add_test(tc, test_clean_cut);
        tcase_add_test(tc, test_escape);
        tcase_add_test(tc, test_burst_body);
        suite_add_tcase(s, tc);
        return s;
}
