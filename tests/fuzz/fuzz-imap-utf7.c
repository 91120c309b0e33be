/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target for modified UTF-7 mailbox names (imap-utf7.h), both
 * directions on every input.
 *
 * Decoding (server names to UTF-8):
 *   - it fails with -EILSEQ only, and leaves *ret_out alone when it fails;
 *   - what it accepts decodes to valid UTF-8 without NUL;
 *   - the decoder is strict, so what it accepts is the canonical form:
 *     encoding the result again gives back the input byte for byte.
 * Encoding (names from the config to commands):
 *   - it succeeds exactly when the input is valid UTF-8 without NUL;
 *   - the output is printable US-ASCII, and decodes back to the input.
 */

#include <errno.h>

#include "fuzz-util.h"
#include "imap-utf7.h"

static bool printable_ascii(const char *s) {
        for (; *s; s++)
                if (*s < 0x20 || *s > 0x7e)
                        return false;
        return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        const char *in = (const char *) data;
        char sentinel[] = "untouched";
        char *out = sentinel, *back = NULL;
        int r, r2;

        /* modified UTF-7 -> UTF-8 */
        r = imap_utf7_to_utf8(in, size, &out);
        if (r == 0) {
                FUZZ_CHECK(out != sentinel, "success without a result");
                FUZZ_CHECK(fuzz_utf8_valid(out, strlen(out)), "decoded \"%.*s\" to invalid UTF-8", (int) size, in);
                r2 = imap_utf8_to_utf7(out, strlen(out), &back);
                FUZZ_CHECK(r2 == 0, "cannot encode the decoded \"%.*s\": %d", (int) size, in, r2);
                FUZZ_CHECK(strlen(back) == size && memcmp(back, in, size) == 0,
                           "\"%.*s\" decoded and encoded again is \"%s\"", (int) size, in, back);
                free(back);
                free(out);
        } else {
                FUZZ_CHECK(r == -EILSEQ, "decoding failed with %d", r);
                FUZZ_CHECK(out == sentinel, "*ret_out written on failure");
        }

        /* UTF-8 -> modified UTF-7 */
        out = sentinel;
        back = NULL;
        r = imap_utf8_to_utf7(in, size, &out);
        if (fuzz_utf8_valid(in, size)) {
                FUZZ_CHECK(r == 0, "valid UTF-8 not encoded: %d", r);
                FUZZ_CHECK(printable_ascii(out), "encoded to non-printable \"%s\"", out);
                r2 = imap_utf7_to_utf8(out, strlen(out), &back);
                FUZZ_CHECK(r2 == 0, "own output \"%s\" not decoded: %d", out, r2);
                FUZZ_CHECK(strlen(back) == size && memcmp(back, in, size) == 0,
                           "round trip through \"%s\" changed the name", out);
                free(back);
                free(out);
        } else {
                FUZZ_CHECK(r == -EILSEQ, "invalid UTF-8 gave %d, not -EILSEQ", r);
                FUZZ_CHECK(out == sentinel, "*ret_out written on failure");
        }
        return 0;
}
