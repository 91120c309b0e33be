/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "imap-utf7.h"
#include "macro.h"
#include "suites.h"
#include "utf8.h"

#define S(lit) (lit), (sizeof(lit) - 1)

/* ck_assert() records a checkpoint on every call (a pipe write when Check
 * forks), which makes loops over a million cases slow; hot loops test with a
 * plain if and call into Check only on failure. */
#define REQUIRE(cond, ...) do { if (!(cond)) ck_abort_msg(__VA_ARGS__); } while (0)

/* Pairs that must convert exactly both ways (the UTF-7 side is canonical).
 * Reference encodings computed independently with Python's UTF-16 and
 * base64 codecs. */
static const struct {
        const char *utf8;
        const char *utf7;
} pairs[] = {
        { "", "" },
        { "INBOX", "INBOX" },
        /* RFC 3501 §5.1.3 example */
        { "~peter/mail/\xE5\x8F\xB0\xE5\x8C\x97/\xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E",
          "~peter/mail/&U,BTFw-/&ZeVnLIqe-" },
        { "\xE5\x8F\xB0\xE5\x8C\x97", "&U,BTFw-" },                     /* 2 units: 4 padding bits */
        { "\xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E", "&ZeVnLIqe-" },       /* 3 units: no padding */
        { "Entw\xC3\xBC" "rfe", "Entw&APw-rfe" },                       /* 1 unit: 2 padding bits */
        { "\xD0\x9E\xD1\x82\xD0\xBF\xD1\x80\xD0\xB0\xD0\xB2\xD0\xBB\xD0\xB5\xD0\xBD"
          "\xD0\xBD\xD1\x8B\xD0\xB5", "&BB4EQgQ,BEAEMAQyBDsENQQ9BD0ESwQ1-" },
        { "&", "&-" },
        { "&&", "&-&-" },
        { "a&b", "a&-b" },
        { "\xC3\xA9&", "&AOk-&-" },                                     /* shift end, then "&-" */
        { "\xC3\xA9-", "&AOk--" },
        { "\xC3\xA9" "a \xC3\xA9", "&AOk-a &AOk-" },
        { "-&-", "-&--" },
        { "\xF0\x9F\x98\x80", "&2D3eAA-" },                             /* U+1F600, surrogate pair */
        { "\xF4\x8F\xBF\xBF", "&2,,f,w-" },                             /* U+10FFFF */
        { "\xC3\xBF\xF0\x9F\x98\x80\xC4\x80", "&AP,YPd4AAQA-" },        /* BMP, astral, BMP in one run */
        { "\xEF\xBF\xBF", "&,,8-" },                                    /* U+FFFF */
        { "\xED\x9F\xBF", "&1,8-" },                                    /* U+D7FF */
        { "\xEE\x80\x80", "&4AA-" },                                    /* U+E000 */
        { "\xC2\x80", "&AIA-" },
        { "\x01", "&AAE-" },                                            /* controls are shifted */
        { "\x1F", "&AB8-" },
        { "\x7F", "&AH8-" },
        { "a\tb", "a&AAk-b" },
        { " !\"#$%'()*+,./09:;<=>?@AZ[\\]^_`az{|}~", " !\"#$%'()*+,./09:;<=>?@AZ[\\]^_`az{|}~" },
};

static void assert_utf7_to_utf8(const char *in, size_t len, const char *expected) {
        char *out = NULL;
        int r;

        r = imap_utf7_to_utf8(in, len, &out);
        ck_assert_msg(r == 0, "decoding \"%.*s\" failed: %d", (int) len, in, r);
        ck_assert_str_eq(out, expected);
        free(out);
}

static void assert_utf8_to_utf7(const char *in, size_t len, const char *expected) {
        char *out = NULL;
        int r;

        r = imap_utf8_to_utf7(in, len, &out);
        ck_assert_msg(r == 0, "encoding \"%.*s\" failed: %d", (int) len, in, r);
        ck_assert_str_eq(out, expected);
        free(out);
}

static void assert_bad_utf7(const char *in, size_t len) {
        char sentinel[] = "untouched";
        char *out = sentinel;

        ck_assert_msg(imap_utf7_to_utf8(in, len, &out) == -EILSEQ,
                      "accepted invalid modified UTF-7 \"%.*s\"", (int) len, in);
        ck_assert_ptr_eq(out, sentinel);
}

static void assert_bad_utf8(const char *in, size_t len) {
        char sentinel[] = "untouched";
        char *out = sentinel;

        ck_assert_int_eq(imap_utf8_to_utf7(in, len, &out), -EILSEQ);
        ck_assert_ptr_eq(out, sentinel);
}

static bool is_printable_ascii(const char *s) {
        for (; *s; s++)
                if (*s < 0x20 || *s > 0x7E)
                        return false;
        return true;
}

/* Hex dump for failure messages; two static buffers used in turn so that
 * one message can show two dumps (the tests are single-threaded). */
static const char *hex(const char *s, size_t len) {
        static char bufs[2][3 * 64 + 4];
        static unsigned turn;
        char *buf = bufs[turn++ % 2];
        size_t o = 0;

        for (size_t i = 0; i < len && o + 4 < sizeof(bufs[0]); i++)
                o += (size_t) snprintf(buf + o, sizeof(bufs[0]) - o, "%s%02x", i ? " " : "", (uint8_t) s[i]);
        buf[o] = '\0';
        return buf;
}

/* Encodes, checks the result is printable ASCII, and decodes it back to
 * exactly the input. */
static void assert_round_trip(const char *utf8, size_t len) {
        char *utf7 = NULL, *back = NULL;

        REQUIRE(imap_utf8_to_utf7(utf8, len, &utf7) == 0, "encoding %s failed", hex(utf8, len));
        REQUIRE(is_printable_ascii(utf7), "%s encoded to non-printable \"%s\"", hex(utf8, len), utf7);
        REQUIRE(imap_utf7_to_utf8(utf7, strlen(utf7), &back) == 0, "decoding \"%s\" failed", utf7);
        REQUIRE(strlen(back) == len && memcmp(back, utf8, len) == 0,
                "%s -> \"%s\" -> %s", hex(utf8, len), utf7, hex(back, strlen(back)));
        free(utf7);
        free(back);
}

START_TEST(test_pairs_decode) {
        const char *utf7 = pairs[_i].utf7;

        assert_utf7_to_utf8(utf7, strlen(utf7), pairs[_i].utf8);
}
END_TEST

START_TEST(test_pairs_encode) {
        const char *utf8 = pairs[_i].utf8;

        assert_utf8_to_utf7(utf8, strlen(utf8), pairs[_i].utf7);
}
END_TEST

START_TEST(test_not_nul_terminated) {
        assert_utf7_to_utf8("&-xyz", 2, "&");
        assert_utf7_to_utf8("&AOk-rest", 5, "\xC3\xA9");
        assert_utf7_to_utf8(NULL, 0, "");
        assert_utf8_to_utf7("\xC3\xA9zz", 2, "&AOk-");
        assert_utf8_to_utf7("&&", 1, "&-");
        assert_utf8_to_utf7(NULL, 0, "");

        /* a shift cut off by len is unterminated even if the buffer goes on */
        assert_bad_utf7("&AOk-", 4);
        assert_bad_utf7("&-", 1);
        /* a UTF-8 character cut off by len is invalid */
        assert_bad_utf8("\xC3\xA9", 1);
}
END_TEST

/* Every BMP scalar value and a spread of astral ones (plus the plane edges),
 * alone, repeated (to hit all three base64 phases) and between ASCII. */
START_TEST(test_round_trip_code_points) {
        for (uint32_t cp = 1; cp <= 0x10FFFF; cp += cp < 0x10000 ? 1 : 31) {
                char buf[3 * UTF8_CHAR_MAX + 2], c[UTF8_CHAR_MAX];
                size_t len = 0;
                int n;

                if (cp >= 0xD800 && cp <= 0xDFFF)
                        continue;
                n = utf8_encode_char(cp, c);
                REQUIRE(n > 0, "U+%04X", cp);

                assert_round_trip(c, (size_t) n);
                for (int k = 0; k < 3; k++) {
                        memcpy(buf + len, c, (size_t) n);
                        len += (size_t) n;
                }
                assert_round_trip(buf, len);

                buf[0] = '&';
                memcpy(buf + 1, c, (size_t) n);
                buf[1 + n] = '-';
                assert_round_trip(buf, (size_t) n + 2);
        }

        static const uint32_t edges[] = {
                0x10000, 0x10001, 0x103FF, 0x10400, 0x1FFFF, 0x20000, 0xFFFFF, 0x100000, 0x10FFFE, 0x10FFFF,
        };
        for (size_t i = 0; i < ELEMENTSOF(edges); i++) {
                char c[UTF8_CHAR_MAX];
                int n = utf8_encode_char(edges[i], c);

                ck_assert_int_eq(n, 4);
                assert_round_trip(c, (size_t) n);
        }
}
END_TEST

/* Deterministic pseudo-random mixes of ASCII, '&', '-', controls, BMP and
 * astral characters: round trip, and the decoder accepts exactly the
 * encoder's canonical output. */
START_TEST(test_round_trip_random) {
        static const uint32_t pool[] = {
                'a', 'Z', '&', '-', ' ', '~', 0x01, 0x7F, 0x80, 0xE9, 0x7FF, 0x800,
                0x53F0, 0xD7FF, 0xE000, 0xFFFD, 0xFFFF, 0x10000, 0x1F600, 0x10FFFF,
        };
        uint32_t seed = 4242;

        for (unsigned iter = 0; iter < 5000; iter++) {
                char buf[16 * UTF8_CHAR_MAX];
                char *utf7 = NULL, *again = NULL, *back = NULL;
                size_t len = 0, nchars;

                seed = seed * 1103515245u + 12345u;
                nchars = (seed >> 16) % 16;
                for (size_t i = 0; i < nchars; i++) {
                        int n;

                        seed = seed * 1103515245u + 12345u;
                        n = utf8_encode_char(pool[(seed >> 16) % ELEMENTSOF(pool)], buf + len);
                        REQUIRE(n > 0, "pool entry");
                        len += (size_t) n;
                }

                assert_round_trip(buf, len);

                REQUIRE(imap_utf8_to_utf7(buf, len, &utf7) == 0, "iteration %u", iter);
                REQUIRE(imap_utf7_to_utf8(utf7, strlen(utf7), &back) == 0, "iteration %u", iter);
                REQUIRE(imap_utf8_to_utf7(back, strlen(back), &again) == 0, "iteration %u", iter);
                REQUIRE(strcmp(again, utf7) == 0, "\"%s\" re-encoded as \"%s\"", utf7, again);
                free(utf7);
                free(again);
                free(back);
        }
}
END_TEST

START_TEST(test_reject_unterminated) {
        assert_bad_utf7(S("&"));
        assert_bad_utf7(S("a&"));
        assert_bad_utf7(S("&AOk"));
        assert_bad_utf7(S("~peter/mail/&U,BTFw"));
        assert_bad_utf7(S("&U,BTFw-/&ZeVnLIqe"));
}
END_TEST

START_TEST(test_reject_bad_base64) {
        assert_bad_utf7(S("&AO.-"));
        assert_bad_utf7(S("&AP/-"));            /* RFC 2045 '/' instead of ',' */
        assert_bad_utf7(S("&AOk=-"));           /* padding */
        assert_bad_utf7(S("&AOk&-"));           /* '&' inside a shift */
        assert_bad_utf7(S("&AO k-"));
        assert_bad_utf7(S("&AOk\xC3\xA9-"));
}
END_TEST

START_TEST(test_reject_padding_bits) {
        /* non-zero leftover bits */
        assert_bad_utf7(S("&AOl-"));            /* é + 2 bits 01 */
        assert_bad_utf7(S("&AOn-"));            /* é + 2 bits 11 */
        assert_bad_utf7(S("&U,BTFx-"));         /* 台北 + 4 bits 0001 */
        assert_bad_utf7(S("&U,BTF8-"));         /* 台北 + 4 bits 1100 */
        /* a whole superfluous base64 character */
        assert_bad_utf7(S("&A-"));              /* 6 bits: not even one character */
        assert_bad_utf7(S("&AO-"));             /* 12 bits */
        assert_bad_utf7(S("&AOkA-"));           /* 24 bits: é + 8 */
        assert_bad_utf7(S("&ZeVnLIqeA-"));      /* 54 bits: 3 characters + 6 */
        assert_bad_utf7(S("&ZeVnLIqeAA-"));     /* 60 bits */
}
END_TEST

START_TEST(test_reject_shifted_ascii) {
        assert_bad_utf7(S("&AGE-"));            /* 'a' */
        assert_bad_utf7(S("&ACA-"));            /* ' ' */
        assert_bad_utf7(S("&AH4-"));            /* '~' */
        assert_bad_utf7(S("&ACY-"));            /* '&' must be "&-" */
        assert_bad_utf7(S("&AOkAYQ-"));         /* é then shifted 'a' */
        /* the neighbours of the printable range are fine */
        assert_utf7_to_utf8(S("&AB8-"), "\x1F");
        assert_utf7_to_utf8(S("&AH8-"), "\x7F");
}
END_TEST

START_TEST(test_reject_surrogates) {
        assert_bad_utf7(S("&2D0-"));            /* lone high */
        assert_bad_utf7(S("&3gA-"));            /* lone low */
        assert_bad_utf7(S("&2D0A6Q-"));         /* high, then é */
        assert_bad_utf7(S("&2D0AYQ-"));         /* high, then 'a' */
        assert_bad_utf7(S("&3gDYPQ-"));         /* low, high: reversed pair */
        assert_bad_utf7(S("&2D3YPQ-"));         /* high, high */
        assert_bad_utf7(S("&2D0-&3gA-"));       /* pair split over two shifts */
        assert_bad_utf7(S("&2D0-a"));
        assert_bad_utf7(S("&2D3eAA-&2D0-"));
}
END_TEST

START_TEST(test_reject_8bit_and_controls) {
        assert_bad_utf7(S("caf\xC3\xA9"));
        assert_bad_utf7(S("\x80"));
        assert_bad_utf7(S("\xFF"));
        assert_bad_utf7(S("a\tb"));
        assert_bad_utf7(S("\x01"));
        assert_bad_utf7(S("\x7F"));
        assert_bad_utf7(S("a\rb"));
        assert_bad_utf7(S("a\0b"));             /* raw NUL */
}
END_TEST

START_TEST(test_reject_nul) {
        assert_bad_utf7(S("&AAA-"));            /* encoded U+0000 */
        assert_bad_utf7(S("&AOkAAA-"));         /* é, U+0000 */
        assert_bad_utf8(S("\0"));
        assert_bad_utf8(S("a\0b"));
        assert_bad_utf8(S("\xC3\xA9\0"));
}
END_TEST

START_TEST(test_reject_null_shift) {
        /* RFC 3501: null shifts ("-&" while in BASE64) are not permitted */
        assert_bad_utf7(S("&AOk-&AOk-"));
        assert_bad_utf7(S("&U,BTFw-&ZeVnLIqe-"));
        /* but a literal '&' right after a shift is fine */
        assert_utf7_to_utf8(S("&AOk-&-"), "\xC3\xA9&");
        assert_utf7_to_utf8(S("&AOk-&-&AOk-"), "\xC3\xA9&\xC3\xA9");
        /* and the encoder merges adjacent characters into one shift */
        assert_utf8_to_utf7(S("\xC3\xA9\xC3\xA9"), "&AOkA6Q-");
}
END_TEST

START_TEST(test_reject_bad_utf8) {
        assert_bad_utf8(S("\xC3"));             /* truncated */
        assert_bad_utf8(S("a\xE2\x82"));
        assert_bad_utf8(S("\xF0\x9F\x98"));
        assert_bad_utf8(S("\xC0\x80"));         /* overlong NUL */
        assert_bad_utf8(S("\xC0\xAF"));         /* overlong '/' */
        assert_bad_utf8(S("\xE0\x80\xAF"));
        assert_bad_utf8(S("\xF0\x80\x80\xAF"));
        assert_bad_utf8(S("\xED\xA0\x80"));     /* surrogate */
        assert_bad_utf8(S("\xED\xA0\xBD\xED\xB8\x80"));
        assert_bad_utf8(S("\xF4\x90\x80\x80")); /* above U+10FFFF */
        assert_bad_utf8(S("\xF5\x80\x80\x80"));
        assert_bad_utf8(S("\x80"));             /* lone continuation */
        assert_bad_utf8(S("ok\xC3\xA9\xA9"));
        assert_bad_utf8(S("\xFE"));
        assert_bad_utf8(S("\xFF"));
}
END_TEST

Suite *imap_utf7_suite(void) {
        Suite *s = suite_create("imap-utf7");
        const int npairs = (int) ELEMENTSOF(pairs);
        TCase *tc;

        tc = tcase_create("convert");
        tcase_add_loop_test(tc, test_pairs_decode, 0, npairs);
        tcase_add_loop_test(tc, test_pairs_encode, 0, npairs);
        tcase_add_test(tc, test_not_nul_terminated);
        suite_add_tcase(s, tc);

        tc = tcase_create("round-trip");
        tcase_add_test(tc, test_round_trip_code_points);
        tcase_add_test(tc, test_round_trip_random);
        suite_add_tcase(s, tc);

        tc = tcase_create("reject");
        tcase_add_test(tc, test_reject_unterminated);
        tcase_add_test(tc, test_reject_bad_base64);
        tcase_add_test(tc, test_reject_padding_bits);
        tcase_add_test(tc, test_reject_shifted_ascii);
        tcase_add_test(tc, test_reject_surrogates);
        tcase_add_test(tc, test_reject_8bit_and_controls);
        tcase_add_test(tc, test_reject_nul);
        tcase_add_test(tc, test_reject_null_shift);
        tcase_add_test(tc, test_reject_bad_utf8);
        suite_add_tcase(s, tc);

        return s;
}
