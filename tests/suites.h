/* SPDX-License-Identifier: MIT */
#pragma once

#include <check.h>

/* One Check suite per module; tests/check-main.c runs them all.
 * Run one with CK_RUN_SUITE=imap-parser build/test-unit. */
Suite *imap_parser_suite(void);
Suite *imap_writer_suite(void);
Suite *imap_utf7_suite(void);
Suite *utf8_suite(void);
