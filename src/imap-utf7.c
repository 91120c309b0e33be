/* SPDX-License-Identifier: MIT */
#include <assert.h>
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "imap-utf7.h"
#include "macro.h"
#include "utf8.h"

/* RFC 3501 §5.1.3: modified BASE64 uses ',' instead of '/' of RFC 2045. */
static const char b64_alphabet[64] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

/* Value of a modified base64 character, or -1. */
static int b64_value(uint8_t c) {
        if (c >= 'A' && c <= 'Z')
                return c - 'A';
        if (c >= 'a' && c <= 'z')
                return c - 'a' + 26;
        if (c >= '0' && c <= '9')
                return c - '0' + 52;
        if (c == '+')
                return 62;
        if (c == ',')
                return 63;
        return -1;
}

/* RFC 3501 §5.1.3: "printable US-ASCII characters, except for '&', represent
 * themselves"; those are 0x20..0x7e. */
static bool is_printable(uint32_t c) {
        return c >= 0x20 && c <= 0x7e;
}

/* Output of one conversion pass. With buf == NULL the pass only measures, so
 * the conversion runs twice: once to validate and size, once to write. */
struct sink {
        char *buf;
        size_t len;
};

static int sink_put(struct sink *s, const char *p, size_t n) {
        /* Keep len + 1 (the terminator) representable. */
        if (n >= SIZE_MAX - s->len)
                return -ENOMEM;
        if (s->buf)
                memcpy(s->buf + s->len, p, n);
        s->len += n;
        return 0;
}

static int sink_putc(struct sink *s, char c) {
        return sink_put(s, &c, 1);
}

typedef int (*convert_fn)(const uint8_t *in, size_t len, struct sink *out);

static int convert(convert_fn f, const char *in, size_t len, char **ret_out) {
        struct sink s = { .buf = NULL, .len = 0 };
        _cleanup_free_ char *buf = NULL;
        size_t size;
        int r;

        r = f((const uint8_t *) in, len, &s);
        if (r < 0)
                return r;
        size = s.len;

        buf = malloc(size + 1);
        if (!buf)
                return -ENOMEM;

        s = (struct sink) { .buf = buf, .len = 0 };
        r = f((const uint8_t *) in, len, &s);
        if (r < 0)
                return r;       /* cannot happen: the measuring pass saw the same input */
        assert(s.len == size);
        buf[size] = '\0';

        *ret_out = TAKE_PTR(buf);
        return 0;
}

/* Decodes one base64 run starting after its '&' at in[*i]; on success *i
 * points after the closing '-'. */
static int decode_shift(const uint8_t *in, size_t len, size_t *i, struct sink *out) {
        uint32_t bits = 0, high = 0;
        unsigned nbits = 0;
        int r;

        for (;;) {
                uint32_t unit, cp;
                char u8[UTF8_CHAR_MAX];
                int v, n;

                if (*i >= len)
                        return -EILSEQ;         /* unterminated shift */
                if (in[*i] == '-') {
                        (*i)++;
                        break;
                }
                v = b64_value(in[*i]);
                if (v < 0)
                        return -EILSEQ;
                (*i)++;

                bits = (bits << 6) | (uint32_t) v;
                nbits += 6;
                if (nbits < 16)
                        continue;

                nbits -= 16;
                unit = (bits >> nbits) & 0xFFFF;
                bits &= (UINT32_C(1) << nbits) - 1;

                if (high != 0) {
                        if (unit < 0xDC00 || unit > 0xDFFF)
                                return -EILSEQ;         /* high surrogate not followed by low */
                        cp = 0x10000 + ((high - 0xD800) << 10) + (unit - 0xDC00);
                        high = 0;
                } else if (unit >= 0xD800 && unit <= 0xDBFF) {
                        high = unit;
                        continue;
                } else if (unit >= 0xDC00 && unit <= 0xDFFF) {
                        return -EILSEQ;                 /* lone low surrogate */
                } else if (unit == 0 || is_printable(unit)) {
                        return -EILSEQ;                 /* NUL, or should have been direct */
                } else
                        cp = unit;

                n = utf8_encode_char(cp, u8);
                if (n < 0)
                        return -EILSEQ;
                r = sink_put(out, u8, (size_t) n);
                if (r < 0)
                        return r;
        }

        if (high != 0)
                return -EILSEQ;         /* high surrogate at the end of the shift */
        /* Whole characters are 16 bits; fewer than 6 bits may be left over
         * and must be zero. 6 or more means a superfluous base64 character,
         * which also covers a shift too short to hold one character. */
        if (nbits >= 6 || bits != 0)
                return -EILSEQ;

        return 0;
}

static int decode(const uint8_t *in, size_t len, struct sink *out) {
        bool after_shift = false;
        size_t i = 0;
        int r;

        while (i < len) {
                uint8_t c = in[i];

                if (!is_printable(c))
                        return -EILSEQ;

                if (c != '&') {
                        r = sink_putc(out, (char) c);
                        if (r < 0)
                                return r;
                        i++;
                        after_shift = false;
                        continue;
                }

                i++;
                if (i < len && in[i] == '-') {
                        r = sink_putc(out, '&');
                        if (r < 0)
                                return r;
                        i++;
                        after_shift = false;
                        continue;
                }

                /* RFC 3501: "null shifts ("-&" while in BASE64 ...) are not
                 * permitted": two adjacent runs must be one. */
                if (after_shift)
                        return -EILSEQ;

                r = decode_shift(in, len, &i, out);
                if (r < 0)
                        return r;
                after_shift = true;
        }

        return 0;
}

int imap_utf7_to_utf8(const char *in, size_t len, char **ret_out) {
        return convert(decode, in, len, ret_out);
}

static int put_b64(struct sink *out, uint32_t value) {
        return sink_putc(out, b64_alphabet[value & 0x3F]);
}

/* Encodes the run of non-printable characters starting at in[*i] as one
 * shift; on success *i points at the next printable character or the end. */
static int encode_shift(const uint8_t *in, size_t len, size_t *i, struct sink *out) {
        uint32_t bits = 0;
        unsigned nbits = 0;
        int r;

        r = sink_putc(out, '&');
        if (r < 0)
                return r;

        while (*i < len && !is_printable(in[*i])) {
                uint32_t cp, units[2];
                size_t nunits;
                int n;

                n = utf8_decode_char((const char *) in + *i, len - *i, &cp);
                if (n < 0)
                        return n;
                if (cp == 0)
                        return -EILSEQ;
                *i += (size_t) n;

                if (cp >= 0x10000) {
                        units[0] = 0xD800 + ((cp - 0x10000) >> 10);
                        units[1] = 0xDC00 + ((cp - 0x10000) & 0x3FF);
                        nunits = 2;
                } else {
                        units[0] = cp;
                        nunits = 1;
                }

                for (size_t k = 0; k < nunits; k++) {
                        /* nbits < 6 here, so at most 21 bits are pending. */
                        bits = (bits << 16) | units[k];
                        nbits += 16;
                        while (nbits >= 6) {
                                nbits -= 6;
                                r = put_b64(out, bits >> nbits);
                                if (r < 0)
                                        return r;
                        }
                        bits &= (UINT32_C(1) << nbits) - 1;
                }
        }

        if (nbits > 0) {
                r = put_b64(out, bits << (6 - nbits));
                if (r < 0)
                        return r;
        }

        return sink_putc(out, '-');
}

static int encode(const uint8_t *in, size_t len, struct sink *out) {
        size_t i = 0;
        int r;

        while (i < len) {
                uint8_t c = in[i];

                if (is_printable(c)) {
                        r = c == '&' ? sink_put(out, "&-", 2) : sink_putc(out, (char) c);
                        if (r < 0)
                                return r;
                        i++;
                        continue;
                }

                r = encode_shift(in, len, &i, out);
                if (r < 0)
                        return r;
        }

        return 0;
}

int imap_utf8_to_utf7(const char *in, size_t len, char **ret_out) {
        return convert(encode, in, len, ret_out);
}
