/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * IMAPIDLED_TEST_TIMEOUT_SCALE=N (1..100, default 1) multiplies how long the
 * tests wait for the daemon: `make check-asan` and `make check-valgrind` run
 * it several times slower than a normal build. Only the patience changes,
 * never what a test asserts.
 */

#include <limits.h>
#include <stdlib.h>

static inline unsigned test_timeout_scale(void) {
        static unsigned scale;

        if (scale == 0) {
                const char *v = getenv("IMAPIDLED_TEST_TIMEOUT_SCALE");
                unsigned long s = v ? strtoul(v, NULL, 10) : 1;

                scale = s >= 1 && s <= 100 ? (unsigned) s : 1;
        }
        return scale;
}

static inline unsigned test_timeout_ms(unsigned ms) {
        unsigned s = test_timeout_scale();

        return ms > UINT_MAX / s ? UINT_MAX : ms * s;
}
