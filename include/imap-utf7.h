/* SPDX-License-Identifier: MIT */
#pragma once

#include <stddef.h>

/* IMAP "modified UTF-7" mailbox names (RFC 3501 §5.1.3, based on RFC 2152):
 * printable US-ASCII except '&' stands for itself, "&-" is '&', and every
 * other character is UTF-16 in modified base64 ("+,", no '=' padding) between
 * '&' and '-'. Pure code: no I/O, no global state. */

/* Decodes the modified UTF-7 mailbox name in (len bytes, need not be
 * NUL-terminated; NULL allowed when len is 0) to UTF-8. Strict: returns
 * -EILSEQ for bytes other than printable US-ASCII outside a shift (8-bit and
 * control bytes, NUL), an unterminated shift, a character outside the base64
 * alphabet inside a shift, leftover bits that are non-zero or form a whole
 * superfluous base64 character, a shifted printable US-ASCII character
 * (including '&'), an encoded U+0000, an unpaired or reversed surrogate, and a
 * null shift ("-&" restarting base64 right after it ended). On success
 * *ret_out is a malloc'ed, NUL-terminated, valid UTF-8 string owned by the
 * caller (free()); returns 0. Returns -ENOMEM on allocation failure or size
 * overflow. *ret_out is untouched on failure. The caller keeps ownership of
 * in. */
int imap_utf7_to_utf8(const char *in, size_t len, char **ret_out);

/* Encodes the UTF-8 mailbox name in (len bytes, need not be NUL-terminated;
 * NULL allowed when len is 0) to canonical modified UTF-7 for use in
 * commands: consecutive non-printable characters share one shift, '&' becomes
 * "&-". Returns -EILSEQ if in is not strictly valid UTF-8 or contains NUL.
 * On success *ret_out is a malloc'ed, NUL-terminated string owned by the
 * caller (free()); returns 0. Returns -ENOMEM on allocation failure or size
 * overflow. *ret_out is untouched on failure. The caller keeps ownership of
 * in. The result still needs IMAP quoting (astring) before it goes on the
 * wire. */
int imap_utf8_to_utf7(const char *in, size_t len, char **ret_out);
