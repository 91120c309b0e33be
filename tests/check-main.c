/* SPDX-License-Identifier: MIT */
#include <stdlib.h>

#include "suites.h"

int main(void) {
        SRunner *sr;
        int failed;

        sr = srunner_create(imap_parser_suite());
        srunner_add_suite(sr, imap_writer_suite());
        srunner_add_suite(sr, imap_utf7_suite());
        srunner_add_suite(sr, utf8_suite());

        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);

        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
