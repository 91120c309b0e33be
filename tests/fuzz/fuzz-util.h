/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * What the fuzz targets share: a property check that names what failed, and a
 * UTF-8 validator written apart from src/utf8.c so that the targets do not
 * check the library with itself.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* A broken property is a crash: libFuzzer keeps the input as crash-*. */
#define FUZZ_CHECK(cond, ...)                                                           \
        do {                                                                            \
                if (!(cond)) {                                                          \
                        fprintf(stderr, "%s:%d: property failed: %s: ", __FILE__, __LINE__, #cond); \
                        fprintf(stderr, __VA_ARGS__);                                   \
                        fputc('\n', stderr);                                            \
                        abort();                                                        \
                }                                                                       \
        } while (0)

/* The code point at s[0 .. len), strict RFC 3629 (no overlong forms, no
 * surrogates, nothing above U+10FFFF); its length, or 0 if ill-formed. */
static inline size_t fuzz_utf8_char(const uint8_t *s, size_t len, uint32_t *ret_cp) {
        uint32_t cp, min;
        size_t n;

        if (len == 0)
                return 0;
        if (s[0] < 0x80) {
                *ret_cp = s[0];
                return 1;
        }
        if ((s[0] & 0xE0) == 0xC0)
                n = 2, cp = s[0] & 0x1F, min = 0x80;
        else if ((s[0] & 0xF0) == 0xE0)
                n = 3, cp = s[0] & 0x0F, min = 0x800;
        else if ((s[0] & 0xF8) == 0xF0)
                n = 4, cp = s[0] & 0x07, min = 0x10000;
        else
                return 0;
        if (len < n)
                return 0;
        for (size_t i = 1; i < n; i++) {
                if ((s[i] & 0xC0) != 0x80)
                        return 0;
                cp = (cp << 6) | (s[i] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
                return 0;
        *ret_cp = cp;
        return n;
}

/* Well-formed UTF-8 without NUL. */
static inline bool fuzz_utf8_valid(const char *s, size_t len) {
        const uint8_t *p = (const uint8_t *) s;

        for (size_t i = 0; i < len;) {
                uint32_t cp;
                size_t n = fuzz_utf8_char(p + i, len - i, &cp);

                if (n == 0 || cp == 0)
                        return false;
                i += n;
        }
        return true;
}

/* A NUL-terminated copy of data[0 .. size) (which may hold NULs). */
static inline char *fuzz_strndup(const uint8_t *data, size_t size) {
        char *s = malloc(size + 1);

        if (!s)
                abort();
        if (size > 0)
                memcpy(s, data, size);
        s[size] = '\0';
        return s;
}
