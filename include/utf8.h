/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Strict UTF-8 as defined by RFC 3629 and Unicode §3.9 (Table 3-7): no
 * overlong forms, no surrogates (U+D800..U+DFFF), nothing above U+10FFFF.
 * Pure code: no I/O, no global state. */

/* Longest encoded character, in bytes. */
#define UTF8_CHAR_MAX 4

/* Returns true if s (len bytes, need not be NUL-terminated) is well-formed
 * UTF-8 and contains no NUL byte. s may be NULL when len is 0. The caller
 * keeps ownership of s. */
bool utf8_is_valid(const char *s, size_t len);

/* Copies s (len bytes, need not be NUL-terminated; NULL allowed when len is
 * 0) with every NUL byte and every maximal subpart of an ill-formed sequence
 * replaced by U+FFFD, one replacement per subpart (Unicode §3.9 "U+FFFD
 * Substitution of Maximal Subparts", the WHATWG decoder's behaviour). Valid
 * input is copied unchanged. On success *ret_out is a malloc'ed, NUL-terminated
 * string owned by the caller (free()). Returns 0, or -ENOMEM on allocation
 * failure or size overflow; *ret_out is untouched on failure. The caller keeps
 * ownership of s. */
int utf8_sanitize(const char *s, size_t len, char **ret_out);

/* Returns the largest n <= max_bytes such that s[0..n) ends on a character
 * boundary of the UTF-8 string s (len bytes): cuts long text without splitting
 * a character. Returns len if max_bytes >= len. Meant for valid input; on
 * ill-formed input the result is still <= max_bytes and never splits a
 * well-formed sequence. The caller keeps ownership of s. */
size_t utf8_truncate(const char *s, size_t len, size_t max_bytes);

/* Decodes the character at the start of s (len bytes available). On success
 * stores its code point in *ret_cp and returns its length in bytes (1..4);
 * U+0000 decodes like any other character here. Returns -EILSEQ if s does
 * not start with a complete, well-formed sequence (or len is 0). The caller
 * keeps ownership of s. */
int utf8_decode_char(const char *s, size_t len, uint32_t *ret_cp);

/* Writes the UTF-8 form of the Unicode scalar value cp into buf, which must
 * have room for UTF8_CHAR_MAX bytes (no NUL terminator is written). Returns
 * the length written (1..4), or -EINVAL for surrogates and values above
 * U+10FFFF. buf is owned by the caller. */
int utf8_encode_char(uint32_t cp, char *buf);
