/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target for the text of desktop notifications (notify-text.h).
 *
 * Input: byte 0 picks max_bytes, byte 1 the burst (number of senders, "and
 * others"); the rest is server text, NUL-separated into up to 6 senders. The
 * whole rest, up to its first NUL, is the text to clean and escape.
 *
 * notify_text_clean(s, max):
 *   - valid UTF-8, at most max(max, 4) bytes; the same as without a limit
 *     if that fits, else a prefix of it followed by "…";
 *   - none of the characters it drops (C0, DEL, C1, bidi controls, U+FFFE,
 *     U+FFFF), no white space but single ' ', none at either end;
 *   - cleaning its own output again changes nothing.
 * notify_text_escape_markup(s):
 *   - no '<' or '>', and every '&' starts "&amp;", "&lt;" or "&gt;";
 *   - undoing those three gives back s; valid UTF-8 in, valid UTF-8 out.
 * notify_text_burst_body(senders, n, more):
 *   - "" for no sender; else valid UTF-8 of at most NOTIFY_TEXT_BODY_MAX
 *     bytes, exactly the "From A, B and C" text cut like notify_text_clean().
 */

#include "fuzz-util.h"
#include "notify-text.h"

#define ELLIPSIS "\xE2\x80\xA6"
#define MAX_SENDERS 6

static bool is_dropped_or_space(uint32_t cp) {
        return cp < 0x20 || (cp >= 0x7F && cp <= 0xA0) || cp == 0x061C || cp == 0x200E || cp == 0x200F ||
               (cp >= 0x202A && cp <= 0x202E) || (cp >= 0x2066 && cp <= 0x2069) || cp == 0xFFFE ||
               cp == 0xFFFF || cp == 0x2028 || cp == 0x2029;
}

static void check_clean(const char *in, size_t max, const char *out) {
        size_t len = strlen(out), limit = max < 4 ? 4 : max;
        const uint8_t *p = (const uint8_t *) out;
        char *again, *full;

        FUZZ_CHECK(fuzz_utf8_valid(out, len), "clean(\"%s\") is not valid UTF-8", in);
        FUZZ_CHECK(len <= limit, "clean(\"%s\", %zu) is %zu bytes", in, max, len);
        FUZZ_CHECK(len == 0 || (out[0] != ' ' && out[len - 1] != ' '), "clean(\"%s\") = \"%s\": space at an end", in,
                   out);
        FUZZ_CHECK(!strstr(out, "  "), "clean(\"%s\") = \"%s\": a run of spaces", in, out);
        for (size_t i = 0; i < len;) {
                uint32_t cp;
                size_t n = fuzz_utf8_char(p + i, len - i, &cp);

                FUZZ_CHECK(cp == ' ' || !is_dropped_or_space(cp), "clean(\"%s\") kept U+%04X", in, (unsigned) cp);
                i += n;
        }

        /* the same text without a limit: equal if it fits, else a prefix of it and "…" */
        full = notify_text_clean(in, SIZE_MAX);
        FUZZ_CHECK(full, "out of memory");
        if (strlen(full) <= limit)
                FUZZ_CHECK(strcmp(full, out) == 0, "clean(\"%s\", %zu) = \"%s\", without limit \"%s\"", in, max,
                           out, full);
        else {
                size_t cut = len - strlen(ELLIPSIS);

                FUZZ_CHECK(len >= strlen(ELLIPSIS) && strcmp(out + cut, ELLIPSIS) == 0,
                           "clean(\"%s\", %zu) = \"%s\" is cut without \"…\"", in, max, out);
                FUZZ_CHECK(strncmp(full, out, cut) == 0, "clean(\"%s\", %zu) = \"%s\" is not a prefix of \"%s\"",
                           in, max, out, full);
        }
        free(full);

        again = notify_text_clean(out, max);
        FUZZ_CHECK(again, "out of memory");
        FUZZ_CHECK(strcmp(again, out) == 0, "clean is not idempotent: \"%s\" -> \"%s\"", out, again);
        free(again);
}

static void check_escape(const char *in) {
        char *out = notify_text_escape_markup(in);
        size_t n = 0;

        FUZZ_CHECK(out, "out of memory");
        for (const char *p = out; *p;) {
                FUZZ_CHECK(*p != '<' && *p != '>', "escape(\"%s\") = \"%s\"", in, out);
                if (*p == '&') {
                        const char *ent = strncmp(p, "&amp;", 5) == 0 ? "&"
                                        : strncmp(p, "&lt;", 4) == 0  ? "<"
                                        : strncmp(p, "&gt;", 4) == 0  ? ">"
                                                                       : NULL;

                        FUZZ_CHECK(ent, "escape(\"%s\") = \"%s\": a bare '&'", in, out);
                        FUZZ_CHECK(in[n] == *ent, "escape(\"%s\") = \"%s\": wrong entity", in, out);
                        p += *ent == '&' ? 5 : 4;
                } else {
                        FUZZ_CHECK(in[n] == *p, "escape(\"%s\") = \"%s\": text changed", in, out);
                        p++;
                }
                n++;
        }
        FUZZ_CHECK(in[n] == '\0', "escape(\"%s\") = \"%s\": text lost", in, out);
        if (fuzz_utf8_valid(in, strlen(in)))
                FUZZ_CHECK(fuzz_utf8_valid(out, strlen(out)), "escape(\"%s\") is not valid UTF-8", in);
        free(out);
}

static void check_burst(const char *const *senders, size_t n, bool more) {
        char *out = notify_text_burst_body(senders, n, more), *want, *raw;
        size_t named = n < NOTIFY_TEXT_BURST_SENDERS ? n : NOTIFY_TEXT_BURST_SENDERS, size = 32;
        bool others = more || n > named;

        FUZZ_CHECK(out, "out of memory");
        if (n == 0) {
                FUZZ_CHECK(out[0] == '\0', "no sender gave \"%s\"", out);
                free(out);
                return;
        }
        FUZZ_CHECK(fuzz_utf8_valid(out, strlen(out)), "burst body \"%s\" is not valid UTF-8", out);
        FUZZ_CHECK(strlen(out) <= NOTIFY_TEXT_BODY_MAX, "burst body of %zu bytes", strlen(out));

        for (size_t i = 0; i < named; i++)
                size += strlen(senders[i]) + 8;
        raw = malloc(size);
        FUZZ_CHECK(raw, "out of memory");
        strcpy(raw, "From ");
        for (size_t i = 0; i < named; i++) {
                if (i > 0)
                        strcat(raw, i + 1 == named && !others ? " and " : ", ");
                strcat(raw, senders[i]);
        }
        if (others)
                strcat(raw, " and others");
        want = notify_text_clean(raw, NOTIFY_TEXT_BODY_MAX);
        FUZZ_CHECK(want, "out of memory");
        FUZZ_CHECK(strcmp(out, want) == 0, "burst body \"%s\", want \"%s\"", out, want);
        free(want);
        free(raw);
        free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        const char *senders[MAX_SENDERS];
        char *text, *clean, *cleaned[MAX_SENDERS];
        size_t max, n = 0;
        bool more;

        if (size < 2)
                return 0;
        /* mostly small limits, where cutting happens, and the two real ones */
        max = data[0] < 0xF0 ? data[0] : data[0] & 1 ? NOTIFY_TEXT_SUMMARY_MAX : NOTIFY_TEXT_BODY_MAX;
        more = data[1] & 0x80;
        text = fuzz_strndup(data + 2, size - 2);

        clean = notify_text_clean(text, max);
        FUZZ_CHECK(clean, "out of memory");
        check_clean(text, max, clean);
        check_escape(text);
        check_escape(clean);
        free(clean);

        /* the senders as the notifier has them: cleaned summaries */
        for (const char *p = text, *end = text + (size - 2); n < (size_t) (data[1] & 0x7F) % (MAX_SENDERS + 1);
             p += strlen(p) + 1) {
                cleaned[n] = notify_text_clean(p, NOTIFY_TEXT_SUMMARY_MAX);
                FUZZ_CHECK(cleaned[n], "out of memory");
                senders[n] = cleaned[n];
                n++;
                if (p + strlen(p) >= end)
                        break;
        }
        check_burst(senders, n, more);
        for (size_t i = 0; i < n; i++)
                free(cleaned[i]);
        free(text);
        return 0;
}
