/* SPDX-License-Identifier: MIT */

#include "session-plan.h"
#include "suites.h"

START_TEST(test_plan) {
        struct session_group g[8];

        ck_assert_uint_eq(session_plan(0, 5, false, g), 0);

        /* NOTIFY: one connection for everything */
        ck_assert_uint_eq(session_plan(4, 5, true, g), 1);
        ck_assert_uint_eq(g[0].first, 0);
        ck_assert_uint_eq(g[0].n, 4);

        /* within the budget: one IDLE connection each */
        ck_assert_uint_eq(session_plan(3, 5, false, g), 3);
        for (size_t i = 0; i < 3; i++) {
                ck_assert_uint_eq(g[i].first, i);
                ck_assert_uint_eq(g[i].n, 1);
        }

        /* beyond it: the last connection polls the rest */
        ck_assert_uint_eq(session_plan(8, 3, false, g), 3);
        ck_assert_uint_eq(g[0].n, 1);
        ck_assert_uint_eq(g[1].n, 1);
        ck_assert_uint_eq(g[2].first, 2);
        ck_assert_uint_eq(g[2].n, 6);

        /* a budget of 0 or 1: one connection */
        ck_assert_uint_eq(session_plan(4, 0, false, g), 1);
        ck_assert_uint_eq(g[0].n, 4);
        ck_assert_uint_eq(session_plan(4, 1, false, g), 1);
}
END_TEST

Suite *session_plan_suite(void) {
        Suite *s = suite_create("session-plan");
        TCase *tc = tcase_create("plan");

        tcase_add_test(tc, test_plan);
        suite_add_tcase(s, tc);
        return s;
}
