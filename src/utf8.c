/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "utf8.h"

/* U+FFFD REPLACEMENT CHARACTER */
static const char replacement[] = "\xEF\xBF\xBD";
#define REPLACEMENT_LEN (sizeof(replacement) - 1)

static bool is_continuation(uint8_t b) {
        return (b & 0xC0) == 0x80;
}

/* Examines the sequence at the start of s (len >= 1 bytes). Always sets *n:
 * to the length of the character if it is well-formed (then returns true and
 * sets *cp), otherwise to the length of the maximal subpart of the ill-formed
 * sequence (at least 1), i.e. the longest prefix that could still begin a
 * well-formed sequence. Byte ranges from Unicode §3.9 Table 3-7. */
static bool utf8_scan(const uint8_t *s, size_t len, size_t *n, uint32_t *cp) {
        uint8_t b0 = s[0], lo = 0x80, hi = 0xBF;
        size_t need;
        uint32_t c;

        if (b0 < 0x80) {
                *n = 1;
                *cp = b0;
                return true;
        }

        if (b0 >= 0xC2 && b0 <= 0xDF) {
                need = 1;
                c = b0 & 0x1F;
        } else if (b0 >= 0xE0 && b0 <= 0xEF) {
                need = 2;
                c = b0 & 0x0F;
                if (b0 == 0xE0)
                        lo = 0xA0;      /* overlong */
                else if (b0 == 0xED)
                        hi = 0x9F;      /* surrogates */
        } else if (b0 >= 0xF0 && b0 <= 0xF4) {
                need = 3;
                c = b0 & 0x07;
                if (b0 == 0xF0)
                        lo = 0x90;      /* overlong */
                else if (b0 == 0xF4)
                        hi = 0x8F;      /* above U+10FFFF */
        } else {
                /* 80..BF stray continuation, C0/C1 overlong, F5..FF out of range */
                *n = 1;
                return false;
        }

        for (size_t i = 1; i <= need; i++) {
                if (i >= len || s[i] < lo || s[i] > hi) {
                        *n = i;
                        return false;
                }
                c = (c << 6) | (s[i] & 0x3F);
                lo = 0x80;
                hi = 0xBF;
        }

        *n = need + 1;
        *cp = c;
        return true;
}

bool utf8_is_valid(const char *s, size_t len) {
        const uint8_t *p = (const uint8_t *) s;
        size_t i = 0;

        while (i < len) {
                uint32_t cp;
                size_t n;

                if (p[i] >= 0x01 && p[i] < 0x80) {
                        i++;
                        continue;
                }
                if (!utf8_scan(p + i, len - i, &n, &cp) || cp == 0)
                        return false;
                i += n;
        }

        return true;
}

/* One pass of utf8_sanitize(): with out == NULL only measures. Returns the
 * output length without the terminator, or SIZE_MAX on overflow. */
static size_t sanitize_pass(const uint8_t *p, size_t len, char *out) {
        size_t i = 0, o = 0;

        while (i < len) {
                const void *src;
                uint32_t cp;
                size_t n, m;

                if (utf8_scan(p + i, len - i, &n, &cp) && cp != 0) {
                        src = p + i;
                        m = n;
                } else {
                        src = replacement;
                        m = REPLACEMENT_LEN;
                }

                if (m >= SIZE_MAX - o)
                        return SIZE_MAX;
                if (out)
                        memcpy(out + o, src, m);
                o += m;
                i += n;
        }

        return o;
}

int utf8_sanitize(const char *s, size_t len, char **ret_out) {
        const uint8_t *p = (const uint8_t *) s;
        size_t size;
        char *out;

        size = sanitize_pass(p, len, NULL);
        if (size == SIZE_MAX)
                return -ENOMEM;

        out = malloc(size + 1);
        if (!out)
                return -ENOMEM;

        (void) sanitize_pass(p, len, out);
        out[size] = '\0';

        *ret_out = out;
        return 0;
}

size_t utf8_truncate(const char *s, size_t len, size_t max_bytes) {
        const uint8_t *p = (const uint8_t *) s;

        if (max_bytes >= len)
                return len;

        /* p[max_bytes] exists. Find the start of the sequence containing it:
         * the nearest non-continuation byte at most 3 bytes back, since no
         * sequence is longer than 4 bytes. If that sequence (or, for
         * ill-formed input, its maximal subpart) reaches past max_bytes, cut
         * before it; otherwise max_bytes is already a boundary. */
        for (size_t k = 0; k < UTF8_CHAR_MAX && k <= max_bytes; k++) {
                size_t start = max_bytes - k, n;
                uint32_t cp;

                if (is_continuation(p[start]))
                        continue;
                if (k == 0)
                        return max_bytes;

                (void) utf8_scan(p + start, len - start, &n, &cp);
                return start + n > max_bytes ? start : max_bytes;
        }

        /* Only continuation bytes around the cut: ill-formed, and every one of
         * them is a subpart of its own. */
        return max_bytes;
}

int utf8_decode_char(const char *s, size_t len, uint32_t *ret_cp) {
        uint32_t cp;
        size_t n;

        if (len == 0)
                return -EILSEQ;
        if (!utf8_scan((const uint8_t *) s, len, &n, &cp))
                return -EILSEQ;

        *ret_cp = cp;
        return (int) n;
}

int utf8_encode_char(uint32_t cp, char *buf) {
        uint8_t *b = (uint8_t *) buf;

        if (cp < 0x80) {
                b[0] = (uint8_t) cp;
                return 1;
        }
        if (cp < 0x800) {
                b[0] = (uint8_t) (0xC0 | (cp >> 6));
                b[1] = (uint8_t) (0x80 | (cp & 0x3F));
                return 2;
        }
        if (cp >= 0xD800 && cp <= 0xDFFF)
                return -EINVAL;
        if (cp < 0x10000) {
                b[0] = (uint8_t) (0xE0 | (cp >> 12));
                b[1] = (uint8_t) (0x80 | ((cp >> 6) & 0x3F));
                b[2] = (uint8_t) (0x80 | (cp & 0x3F));
                return 3;
        }
        if (cp <= 0x10FFFF) {
                b[0] = (uint8_t) (0xF0 | (cp >> 18));
                b[1] = (uint8_t) (0x80 | ((cp >> 12) & 0x3F));
                b[2] = (uint8_t) (0x80 | ((cp >> 6) & 0x3F));
                b[3] = (uint8_t) (0x80 | (cp & 0x3F));
                return 4;
        }

        return -EINVAL;
}
