/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "macro.h"
#include "suites.h"
#include "utf8.h"

#define S(lit) (lit), (sizeof(lit) - 1)
#define FFFD "\xEF\xBF\xBD"

/* ck_assert() records a checkpoint on every call (a pipe write when Check
 * forks), which makes loops over a million cases slow; hot loops test with a
 * plain if and call into Check only on failure. */
#define REQUIRE(cond, ...) do { if (!(cond)) ck_abort_msg(__VA_ARGS__); } while (0)

/* Reference decoder for the cross-checks: reads the bit pattern without any
 * range rules, then accepts exactly what re-encodes to the same bytes. */
static bool ref_valid_char(const uint8_t *s, size_t len, size_t *ret_n) {
        size_t need;
        uint32_t cp;
        char buf[UTF8_CHAR_MAX];
        int n;

        if (s[0] < 0x80)
                need = 0, cp = s[0];
        else if ((s[0] & 0xE0) == 0xC0)
                need = 1, cp = s[0] & 0x1F;
        else if ((s[0] & 0xF0) == 0xE0)
                need = 2, cp = s[0] & 0x0F;
        else if ((s[0] & 0xF8) == 0xF0)
                need = 3, cp = s[0] & 0x07;
        else
                return false;
        if (need >= len)
                return false;
        for (size_t i = 1; i <= need; i++) {
                if ((s[i] & 0xC0) != 0x80)
                        return false;
                cp = (cp << 6) | (s[i] & 0x3F);
        }
        n = utf8_encode_char(cp, buf);
        if (n != (int) need + 1 || memcmp(buf, s, (size_t) n) != 0)
                return false;
        *ret_n = (size_t) n;
        return true;
}

static bool ref_is_valid(const uint8_t *s, size_t len) {
        size_t i = 0, n;

        while (i < len) {
                if (s[i] == 0 || !ref_valid_char(s + i, len - i, &n))
                        return false;
                i += n;
        }
        return true;
}

static void assert_sanitize(const char *in, size_t len, const char *expected) {
        char *out = NULL;

        ck_assert_int_eq(utf8_sanitize(in, len, &out), 0);
        ck_assert_ptr_nonnull(out);
        ck_assert_str_eq(out, expected);
        ck_assert(utf8_is_valid(out, strlen(out)));
        free(out);
}

START_TEST(test_valid_basic) {
        ck_assert(utf8_is_valid(S("")));
        ck_assert(utf8_is_valid(NULL, 0));
        ck_assert(utf8_is_valid(S("plain ASCII ~!@#$%^&*()")));
        ck_assert(utf8_is_valid(S("\x01\x1F\x7F")));
        ck_assert(utf8_is_valid(S("Entw\xC3\xBCrfe")));
        ck_assert(utf8_is_valid(S("\xE5\x8F\xB0\xE5\x8C\x97")));            /* 台北 */
        ck_assert(utf8_is_valid(S("\xF0\x9F\x98\x80")));                    /* U+1F600 */
        /* boundaries of each length */
        ck_assert(utf8_is_valid(S("\xC2\x80")));                            /* U+0080 */
        ck_assert(utf8_is_valid(S("\xDF\xBF")));                            /* U+07FF */
        ck_assert(utf8_is_valid(S("\xE0\xA0\x80")));                        /* U+0800 */
        ck_assert(utf8_is_valid(S("\xED\x9F\xBF")));                        /* U+D7FF */
        ck_assert(utf8_is_valid(S("\xEE\x80\x80")));                        /* U+E000 */
        ck_assert(utf8_is_valid(S("\xEF\xBF\xBF")));                        /* U+FFFF */
        ck_assert(utf8_is_valid(S("\xF0\x90\x80\x80")));                    /* U+10000 */
        ck_assert(utf8_is_valid(S("\xF4\x8F\xBF\xBF")));                    /* U+10FFFF */
        /* noncharacters are well-formed */
        ck_assert(utf8_is_valid(S("\xEF\xBF\xBE\xEF\xB7\x90")));            /* U+FFFE U+FDD0 */
        /* the length is authoritative, not the NUL */
        ck_assert(utf8_is_valid("ab\xC3", 2));
}
END_TEST

START_TEST(test_invalid) {
        /* overlongs */
        ck_assert(!utf8_is_valid(S("\xC0\x80")));
        ck_assert(!utf8_is_valid(S("\xC0\xAF")));
        ck_assert(!utf8_is_valid(S("\xC1\xBF")));
        ck_assert(!utf8_is_valid(S("\xE0\x80\x80")));
        ck_assert(!utf8_is_valid(S("\xE0\x9F\xBF")));
        ck_assert(!utf8_is_valid(S("\xF0\x80\x80\x80")));
        ck_assert(!utf8_is_valid(S("\xF0\x8F\xBF\xBF")));
        /* surrogates */
        ck_assert(!utf8_is_valid(S("\xED\xA0\x80")));
        ck_assert(!utf8_is_valid(S("\xED\xBF\xBF")));
        ck_assert(!utf8_is_valid(S("\xED\xA0\xBD\xED\xB8\x80")));           /* CESU-8 U+1F600 */
        /* above U+10FFFF and never-valid leads */
        ck_assert(!utf8_is_valid(S("\xF4\x90\x80\x80")));
        ck_assert(!utf8_is_valid(S("\xF5\x80\x80\x80")));
        ck_assert(!utf8_is_valid(S("\xF7\xBF\xBF\xBF")));
        ck_assert(!utf8_is_valid(S("\xF8\x88\x80\x80\x80")));
        ck_assert(!utf8_is_valid(S("\xFC\x84\x80\x80\x80\x80")));
        ck_assert(!utf8_is_valid(S("\xFE")));
        ck_assert(!utf8_is_valid(S("\xFF")));
        /* lone continuation bytes */
        ck_assert(!utf8_is_valid(S("\x80")));
        ck_assert(!utf8_is_valid(S("a\xBF")));
        ck_assert(!utf8_is_valid(S("\xC3\xA9\xA9")));
        /* truncated */
        ck_assert(!utf8_is_valid(S("\xC3")));
        ck_assert(!utf8_is_valid(S("\xE2\x82")));
        ck_assert(!utf8_is_valid(S("\xF0\x9F\x98")));
        ck_assert(!utf8_is_valid(S("\xE2\x82z")));
        ck_assert(!utf8_is_valid("ab\xC3\xA9", 3));
        /* NUL */
        ck_assert(!utf8_is_valid(S("\0")));
        ck_assert(!utf8_is_valid(S("a\0b")));
}
END_TEST

/* utf8_is_valid() against the reference on every 1- and 2-byte string, every
 * 3-byte string whose last byte is from a set of range edges, and every
 * 4-byte string whose last two bytes are. */
START_TEST(test_valid_matches_reference) {
        static const uint8_t edges[] = {
                0x00, 0x41, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xF4, 0xFF,
        };
        static const uint8_t edges4[] = { 0x7F, 0x80, 0xBF, 0xC0 };
        uint8_t b[4];

        for (unsigned x = 0; x < 0x100; x++) {
                b[0] = (uint8_t) x;
                REQUIRE(utf8_is_valid((char *) b, 1) == ref_is_valid(b, 1), "%02x", b[0]);
        }
        for (unsigned x = 0; x < 0x10000; x++) {
                b[0] = (uint8_t) (x >> 8);
                b[1] = (uint8_t) x;
                REQUIRE(utf8_is_valid((char *) b, 2) == ref_is_valid(b, 2), "%02x %02x", b[0], b[1]);
                for (size_t k = 0; k < sizeof(edges); k++) {
                        b[2] = edges[k];
                        REQUIRE(utf8_is_valid((char *) b, 3) == ref_is_valid(b, 3),
                                "%02x %02x %02x", b[0], b[1], b[2]);
                }
                for (size_t k = 0; k < sizeof(edges4) * sizeof(edges4); k++) {
                        b[2] = edges4[k / sizeof(edges4)];
                        b[3] = edges4[k % sizeof(edges4)];
                        REQUIRE(utf8_is_valid((char *) b, 4) == ref_is_valid(b, 4),
                                "%02x %02x %02x %02x", b[0], b[1], b[2], b[3]);
                }
        }
}
END_TEST

START_TEST(test_encode_decode_all) {
        char buf[UTF8_CHAR_MAX];
        uint32_t cp, back;
        int n;

        for (cp = 0; cp <= 0x10FFFF; cp++) {
                n = utf8_encode_char(cp, buf);
                if (cp >= 0xD800 && cp <= 0xDFFF) {
                        REQUIRE(n == -EINVAL, "U+%04X encoded", cp);
                        continue;
                }
                REQUIRE(n == (cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4), "U+%04X: length %d", cp, n);
                REQUIRE(utf8_decode_char(buf, (size_t) n, &back) == n && back == cp, "U+%04X: decode", cp);
                REQUIRE(utf8_is_valid(buf, (size_t) n) == (cp != 0), "U+%04X: validity", cp);
                /* one byte short never decodes */
                REQUIRE(utf8_decode_char(buf, (size_t) n - 1, &back) == -EILSEQ, "U+%04X: short", cp);
        }
        ck_assert_int_eq(utf8_encode_char(0x110000, buf), -EINVAL);
        ck_assert_int_eq(utf8_encode_char(UINT32_MAX, buf), -EINVAL);
}
END_TEST

START_TEST(test_decode_char) {
        uint32_t cp = 0x1234;

        ck_assert_int_eq(utf8_decode_char(S("\0"), &cp), 1);
        ck_assert_uint_eq(cp, 0);
        ck_assert_int_eq(utf8_decode_char(S("\xE2\x82\xAC rest"), &cp), 3);
        ck_assert_uint_eq(cp, 0x20AC);

        /* failure leaves *ret_cp alone */
        cp = 0x1234;
        ck_assert_int_eq(utf8_decode_char("", 0, &cp), -EILSEQ);
        ck_assert_int_eq(utf8_decode_char(S("\xED\xA0\x80"), &cp), -EILSEQ);
        ck_assert_int_eq(utf8_decode_char(S("\xC0\x80"), &cp), -EILSEQ);
        ck_assert_int_eq(utf8_decode_char(S("\x80"), &cp), -EILSEQ);
        ck_assert_uint_eq(cp, 0x1234);
}
END_TEST

START_TEST(test_sanitize_valid_unchanged) {
        static const char *const inputs[] = {
                "",
                "hello",
                "~peter/mail/\xE5\x8F\xB0\xE5\x8C\x97/\xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E",
                "\xF0\x9F\x98\x80 \xF4\x8F\xBF\xBF \xC2\x80 \xEF\xBF\xBD",
        };

        for (size_t i = 0; i < ELEMENTSOF(inputs); i++)
                assert_sanitize(inputs[i], strlen(inputs[i]), inputs[i]);
        assert_sanitize(NULL, 0, "");
}
END_TEST

START_TEST(test_sanitize_invalid) {
        /* Unicode §3.9, "U+FFFD Substitution of Maximal Subparts" example */
        assert_sanitize(S("\x61\xF1\x80\x80\xE1\x80\xC2\x62\x80\x63\x80\xBF\x64"),
                        "a" FFFD FFFD FFFD "b" FFFD "c" FFFD FFFD "d");

        /* truncated sequences: one U+FFFD for the whole prefix */
        assert_sanitize(S("\xC3"), FFFD);
        assert_sanitize(S("a\xE2\x82"), "a" FFFD);
        assert_sanitize(S("\xE2\x82z"), FFFD "z");
        assert_sanitize(S("\xF0\x9F\x98"), FFFD);
        assert_sanitize(S("\xF0\x9F\x98 x"), FFFD " x");
        assert_sanitize(S("\xF0\x9F\xC3\xA9"), FFFD "\xC3\xA9");
        assert_sanitize("ab\xC3\xA9", 3, "ab" FFFD);

        /* overlongs: the lead is never valid (C0, C1) or the second byte is
         * out of range, so each byte is its own subpart */
        assert_sanitize(S("\xC0\xAF"), FFFD FFFD);
        assert_sanitize(S("\xC1\xBF"), FFFD FFFD);
        assert_sanitize(S("\xE0\x80\xAF"), FFFD FFFD FFFD);
        assert_sanitize(S("\xE0\x9F\xBF"), FFFD FFFD FFFD);
        assert_sanitize(S("\xF0\x80\x80\xAF"), FFFD FFFD FFFD FFFD);
        assert_sanitize(S("\xF0\x8F\xBF\xBF"), FFFD FFFD FFFD FFFD);

        /* surrogates */
        assert_sanitize(S("\xED\xA0\x80"), FFFD FFFD FFFD);
        assert_sanitize(S("\xED\xBF\xBF"), FFFD FFFD FFFD);
        assert_sanitize(S("\xED\xA0\xBD\xED\xB8\x80"), FFFD FFFD FFFD FFFD FFFD FFFD);
        assert_sanitize(S("\xED\x9F\xBF"), "\xED\x9F\xBF");                /* U+D7FF is fine */

        /* above U+10FFFF, 0xF5 and up */
        assert_sanitize(S("\xF4\x90\x80\x80"), FFFD FFFD FFFD FFFD);
        assert_sanitize(S("\xF5\x80\x80\x80"), FFFD FFFD FFFD FFFD);
        assert_sanitize(S("\xF5"), FFFD);
        assert_sanitize(S("\xF8\x88\x80\x80\x80"), FFFD FFFD FFFD FFFD FFFD);
        assert_sanitize(S("a\xFE\xFF" "b"), "a" FFFD FFFD "b");

        /* lone continuation bytes */
        assert_sanitize(S("\x80"), FFFD);
        assert_sanitize(S("\x80\x81\xBF"), FFFD FFFD FFFD);
        assert_sanitize(S("\xC3\xA9\xA9"), "\xC3\xA9" FFFD);

        /* a lead interrupted by another lead */
        assert_sanitize(S("\xE2\xF0\x9F\x98\x80"), FFFD "\xF0\x9F\x98\x80");
        assert_sanitize(S("\xC3\xC3\xA9"), FFFD "\xC3\xA9");

        /* NUL */
        assert_sanitize(S("\0"), FFFD);
        assert_sanitize(S("a\0b"), "a" FFFD "b");
        assert_sanitize(S("\0\0"), FFFD FFFD);
}
END_TEST

START_TEST(test_sanitize_ret_out) {
        char *out = (char *) "sentinel", *before = out;

        /* sanitize never fails on content: even all-garbage input succeeds */
        ck_assert_int_eq(utf8_sanitize(S("\xFF"), &out), 0);
        ck_assert_ptr_ne(out, before);
        ck_assert_str_eq(out, FFFD);
        free(out);
}
END_TEST

/* Deterministic pseudo-random byte strings biased towards UTF-8 structure:
 * sanitize must always produce valid UTF-8, leave valid input unchanged, and
 * agree with utf8_is_valid(). */
START_TEST(test_sanitize_random) {
        static const uint8_t pool[] = {
                0x00, 'a', 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xC2,
                0xDF, 0xE0, 0xE1, 0xED, 0xEF, 0xF0, 0xF1, 0xF4, 0xF5, 0xFF,
        };
        uint32_t seed = 12345;
        uint8_t buf[16];

        for (unsigned iter = 0; iter < 20000; iter++) {
                size_t len;
                char *out;

                seed = seed * 1103515245u + 12345u;
                len = (seed >> 16) % sizeof(buf);
                for (size_t i = 0; i < len; i++) {
                        seed = seed * 1103515245u + 12345u;
                        buf[i] = pool[(seed >> 16) % sizeof(pool)];
                }

                REQUIRE(utf8_is_valid((char *) buf, len) == ref_is_valid(buf, len), "iteration %u", iter);
                REQUIRE(utf8_sanitize((char *) buf, len, &out) == 0, "iteration %u", iter);
                REQUIRE(utf8_is_valid(out, strlen(out)), "iteration %u: output invalid", iter);
                if (ref_is_valid(buf, len))
                        REQUIRE(strlen(out) == len && memcmp(out, buf, len) == 0,
                                "iteration %u: valid input changed", iter);
                /* truncating sanitized text never splits a character */
                for (size_t m = 0; m <= strlen(out); m++)
                        REQUIRE(utf8_is_valid(out, utf8_truncate(out, strlen(out), m)),
                                "iteration %u: truncate at %zu", iter, m);
                free(out);
        }
}
END_TEST

START_TEST(test_truncate_every_position) {
        /* "aé€😀b": characters of 1, 2, 3, 4 and 1 bytes */
        static const char s[] = "a\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80" "b";
        static const size_t boundaries[] = { 0, 1, 3, 6, 10, 11 };
        const size_t len = sizeof(s) - 1;

        for (size_t max = 0; max <= len + 2; max++) {
                size_t expected = 0, n;

                for (size_t k = 0; k < ELEMENTSOF(boundaries); k++)
                        if (boundaries[k] <= max)
                                expected = boundaries[k];

                n = utf8_truncate(s, len, max);
                ck_assert_msg(n == expected, "max=%zu: got %zu, expected %zu", max, n, expected);
                ck_assert(utf8_is_valid(s, n));
        }
}
END_TEST

START_TEST(test_truncate_edges) {
        static const char astral[] = "\xF0\x9F\x98\x80\xF0\x9F\x98\x80";

        ck_assert_uint_eq(utf8_truncate(NULL, 0, 0), 0);
        ck_assert_uint_eq(utf8_truncate(NULL, 0, 10), 0);
        ck_assert_uint_eq(utf8_truncate(S("abc"), 0), 0);
        ck_assert_uint_eq(utf8_truncate(S("abc"), 2), 2);
        ck_assert_uint_eq(utf8_truncate(S("abc"), SIZE_MAX), 3);
        for (size_t m = 0; m < 8; m++)
                ck_assert_uint_eq(utf8_truncate(astral, 8, m), m < 4 ? 0 : 4);
        /* cut inside the last character when the string is longer than len */
        ck_assert_uint_eq(utf8_truncate(astral, 6, 5), 4);

        /* ill-formed input: stay <= max_bytes, never split a well-formed
         * character, treat stray bytes as characters of their own */
        ck_assert_uint_eq(utf8_truncate(S("a\x80\x80\x80\x80\x80"), 4), 4);
        ck_assert_uint_eq(utf8_truncate(S("\xE2\x82z"), 1), 0);
        ck_assert_uint_eq(utf8_truncate(S("\xE2\x82z"), 2), 2);
        ck_assert_uint_eq(utf8_truncate(S("\xC3\xA9\xA9\xA9"), 3), 3);
        ck_assert_uint_eq(utf8_truncate(S("\xC3\xA9\xA9\xA9"), 1), 0);
}
END_TEST

Suite *utf8_suite(void) {
        Suite *s = suite_create("utf8");
        TCase *tc;

        tc = tcase_create("validate");
        tcase_add_test(tc, test_valid_basic);
        tcase_add_test(tc, test_invalid);
        tcase_add_test(tc, test_valid_matches_reference);
        tcase_add_test(tc, test_encode_decode_all);
        tcase_add_test(tc, test_decode_char);
        suite_add_tcase(s, tc);

        tc = tcase_create("sanitize");
        tcase_add_test(tc, test_sanitize_valid_unchanged);
        tcase_add_test(tc, test_sanitize_invalid);
        tcase_add_test(tc, test_sanitize_ret_out);
        tcase_add_test(tc, test_sanitize_random);
        suite_add_tcase(s, tc);

        tc = tcase_create("truncate");
        tcase_add_test(tc, test_truncate_every_position);
        tcase_add_test(tc, test_truncate_edges);
        suite_add_tcase(s, tc);

        return s;
}
