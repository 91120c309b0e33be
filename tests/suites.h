/* SPDX-License-Identifier: MIT */
#pragma once

/* One Check suite per module, defined in tests/test-<module>.c as
 * "Suite *<module>_suite(void)"; the Makefile collects them into
 * build/suites-gen.h for tests/check-main.c. */
#include <check.h>
