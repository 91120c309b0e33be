/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "imap-parser.h"
#include "macro.h"
#include "suites.h"
#include "uidset.h"

/* ck_assert() records a checkpoint on every call (a pipe write when Check
 * forks), which makes loops over 100k operations slow; hot loops test with a
 * plain if and call into Check only on failure. */
#define REQUIRE(cond, ...) do { if (!(cond)) ck_abort_msg(__VA_ARGS__); } while (0)

static uint64_t xorshift64(uint64_t *state) {
        uint64_t x = *state;

        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        return *state = x;
}

/* ---- fault injection ----------------------------------------------------- */

/* A second copy of src/uidset.c whose malloc() and realloc() fail on demand.
 * Its functions carry an fi_ prefix so that they do not clash with the
 * library's; the rest of this file uses the library. If uidset.c starts to
 * allocate through anything else (calloc, strdup...), or uidset.h gains a
 * function, add it to the lists below: a missing rename shows up as a
 * duplicate symbol at link time. */
static unsigned long fi_count;          /* allocations attempted since fi_arm() */
static unsigned long fi_fail_nth;       /* fail exactly this one (from 1); 0: none */
static unsigned fi_percent;             /* or fail this share at random */
static uint64_t fi_rng = 0x9E3779B97F4A7C15u;

static void fi_arm(unsigned long fail_nth, unsigned percent) {
        fi_count = 0;
        fi_fail_nth = fail_nth;
        fi_percent = percent;
}

static bool fi_should_fail(void) {
        fi_count++;
        if (fi_fail_nth != 0 && fi_count == fi_fail_nth)
                return true;
        return fi_percent > 0 && xorshift64(&fi_rng) % 100 < fi_percent;
}

static void *fi_malloc(size_t n) {
        return fi_should_fail() ? NULL : malloc(n);
}

static void *fi_realloc(void *p, size_t n) {
        return fi_should_fail() ? NULL : realloc(p, n);
}

#define malloc fi_malloc
#define realloc fi_realloc
#define uidset_init fi_uidset_init
#define uidset_done fi_uidset_done
#define uidset_clear fi_uidset_clear
#define uidset_add fi_uidset_add
#define uidset_add_range fi_uidset_add_range
#define uidset_remove fi_uidset_remove
#define uidset_remove_range fi_uidset_remove_range
#define uidset_contains fi_uidset_contains
#define uidset_count fi_uidset_count
#define uidset_max fi_uidset_max
#define uidset_min fi_uidset_min
#define uidset_nth fi_uidset_nth
#define uidset_remove_nth fi_uidset_remove_nth
#define uidset_index_of fi_uidset_index_of
#define uidset_rank fi_uidset_rank
#define uidset_add_seqset fi_uidset_add_seqset
#define uidset_to_string fi_uidset_to_string
#define uidset_copy fi_uidset_copy
#define uidset_iter_init fi_uidset_iter_init
#define uidset_iter_next fi_uidset_iter_next
#define uidset_memory fi_uidset_memory
#include "../src/uidset.c"
#undef malloc
#undef realloc
#undef uidset_init
#undef uidset_done
#undef uidset_clear
#undef uidset_add
#undef uidset_add_range
#undef uidset_remove
#undef uidset_remove_range
#undef uidset_contains
#undef uidset_count
#undef uidset_max
#undef uidset_min
#undef uidset_nth
#undef uidset_remove_nth
#undef uidset_index_of
#undef uidset_rank
#undef uidset_add_seqset
#undef uidset_to_string
#undef uidset_copy
#undef uidset_iter_init
#undef uidset_iter_next
#undef uidset_memory

/* ---- helpers ------------------------------------------------------------- */

/* Returns NULL if s keeps every invariant of uidset.c, else what is broken. */
static const char *invariant_error(const struct uidset *s) {
        uint64_t sum = 0;

        if (s->n > s->cap)
                return "n > cap";
        if (s->n == 0 && (s->r || s->cap != 0 || s->count != 0))
                return "empty set holds memory or a count";
        for (size_t i = 0; i < s->n; i++) {
                if (s->r[i].first == 0)
                        return "range starts at 0";
                if (s->r[i].first > s->r[i].last)
                        return "range with first > last";
                if (i > 0 && (uint64_t) s->r[i - 1].last + 1 >= s->r[i].first)
                        return "ranges unsorted, overlapping or adjacent";
                sum += (uint64_t) s->r[i].last - s->r[i].first + 1;
        }
        if (sum != s->count)
                return "count differs from the sum of the ranges";
        return NULL;
}

static void expect_set(const struct uidset *s, const char *expected) {
        const char *e = invariant_error(s);
        char *str = NULL;

        ck_assert_msg(!e, "invariant: %s", e);
        ck_assert_int_eq(uidset_to_string(s, &str), 0);
        ck_assert_str_eq(str, expected);
        free(str);
}

/* Fills s from a sequence set ("" for none); fails the test on error. */
static void set_from(struct uidset *s, const char *set) {
        uidset_clear(s);
        if (*set)
                ck_assert_int_eq(uidset_add_seqset(s, set), 0);
        ck_assert_ptr_null(invariant_error(s));
}

static bool sets_equal(const struct uidset *a, const struct uidset *b) {
        return a->n == b->n && a->count == b->count &&
                (a->n == 0 || memcmp(a->r, b->r, a->n * sizeof(struct uid_range)) == 0);
}

/* ---- unit cases ---------------------------------------------------------- */

START_TEST(test_empty) {
        struct uidset s;
        struct uidset_iter it;
        uint32_t uid = 42;
        char *str = NULL;

        uidset_init(&s);
        ck_assert_uint_eq(uidset_count(&s), 0);
        ck_assert_uint_eq(uidset_min(&s), 0);
        ck_assert_uint_eq(uidset_max(&s), 0);
        ck_assert(!uidset_contains(&s, 0));
        ck_assert(!uidset_contains(&s, 1));
        ck_assert(!uidset_contains(&s, UINT32_MAX));
        ck_assert_uint_eq(uidset_nth(&s, 0), 0);
        ck_assert_uint_eq(uidset_nth(&s, 1), 0);
        ck_assert_uint_eq(uidset_index_of(&s, 1), 0);
        ck_assert_uint_eq(uidset_memory(&s), 0);
        ck_assert_int_eq(uidset_remove(&s, 1), 0);
        ck_assert_int_eq(uidset_remove(&s, 0), 0);
        ck_assert_int_eq(uidset_remove_range(&s, 1, UINT32_MAX), 0);
        ck_assert_int_eq(uidset_remove_nth(&s, 1, &uid), 0);
        ck_assert_uint_eq(uid, 42);
        ck_assert_int_eq(uidset_to_string(&s, &str), 0);
        ck_assert_str_eq(str, "");
        free(str);
        uidset_iter_init(&it, &s);
        ck_assert(!uidset_iter_next(&it, &uid));
        ck_assert_uint_eq(uid, 42);
        ck_assert_ptr_null(invariant_error(&s));
        uidset_done(&s);
        uidset_done(NULL);
}
END_TEST

START_TEST(test_add_single) {
        struct uidset s;

        uidset_init(&s);
        ck_assert_int_eq(uidset_add(&s, 5), 1);
        ck_assert_int_eq(uidset_add(&s, 5), 0);
        ck_assert(uidset_contains(&s, 5));
        ck_assert(!uidset_contains(&s, 4));
        ck_assert(!uidset_contains(&s, 6));
        ck_assert_int_eq(uidset_add(&s, 1), 1);
        ck_assert_int_eq(uidset_add(&s, 9), 1);
        ck_assert_int_eq(uidset_add(&s, 7), 1);
        expect_set(&s, "1,5,7,9");
        ck_assert_uint_eq(uidset_count(&s), 4);
        ck_assert_uint_eq(uidset_min(&s), 1);
        ck_assert_uint_eq(uidset_max(&s), 9);
        /* neighbours merge from either side */
        ck_assert_int_eq(uidset_add(&s, 6), 1);
        expect_set(&s, "1,5:7,9");
        ck_assert_int_eq(uidset_add(&s, 8), 1);
        expect_set(&s, "1,5:9");
        ck_assert_int_eq(uidset_add(&s, 2), 1);
        expect_set(&s, "1:2,5:9");
        ck_assert_int_eq(uidset_add(&s, 4), 1);
        expect_set(&s, "1:2,4:9");
        ck_assert_int_eq(uidset_add(&s, 3), 1);
        expect_set(&s, "1:9");
        ck_assert_uint_eq(s.n, 1);
        ck_assert_uint_eq(uidset_count(&s), 9);
        /* out of domain */
        ck_assert_int_eq(uidset_add(&s, 0), -EINVAL);
        ck_assert_int_eq(uidset_add_range(&s, 0, 3), -EINVAL);
        ck_assert_int_eq(uidset_add_range(&s, 12, 11), -EINVAL);
        expect_set(&s, "1:9");
        uidset_done(&s);
}
END_TEST

START_TEST(test_add_bridges_gap) {
        struct uidset s;

        /* the example from the header: 4 joins {1:3,5:9} */
        uidset_init(&s);
        set_from(&s, "1:3,5:9");
        ck_assert_int_eq(uidset_add(&s, 4), 1);
        expect_set(&s, "1:9");
        ck_assert_uint_eq(s.n, 1);
        uidset_done(&s);
}
END_TEST

START_TEST(test_add_range) {
        struct uidset s;

        uidset_init(&s);
        set_from(&s, "2,4:5,7:8,10:11,20");
        /* bridges several ranges, touching the one at 2 and ending inside 10:11 */
        ck_assert_int_eq(uidset_add_range(&s, 3, 10), 1);
        expect_set(&s, "2:11,20");
        ck_assert_uint_eq(uidset_count(&s), 11);
        /* already contained */
        ck_assert_int_eq(uidset_add_range(&s, 4, 9), 0);
        ck_assert_int_eq(uidset_add_range(&s, 2, 11), 0);
        ck_assert_int_eq(uidset_add_range(&s, 20, 20), 0);
        /* extends on both sides of one range */
        ck_assert_int_eq(uidset_add_range(&s, 1, 12), 1);
        expect_set(&s, "1:12,20");
        /* adjacent on the right only, then in a gap */
        ck_assert_int_eq(uidset_add_range(&s, 13, 15), 1);
        expect_set(&s, "1:15,20");
        ck_assert_int_eq(uidset_add_range(&s, 17, 18), 1);
        expect_set(&s, "1:15,17:18,20");
        /* covers everything and more */
        ck_assert_int_eq(uidset_add_range(&s, 1, 100), 1);
        expect_set(&s, "1:100");
        ck_assert_uint_eq(uidset_count(&s), 100);
        /* before the first range, not adjacent; then adjacent at the right end */
        set_from(&s, "10:20,30");
        ck_assert_int_eq(uidset_add_range(&s, 1, 8), 1);
        expect_set(&s, "1:8,10:20,30");
        ck_assert_int_eq(uidset_add_range(&s, 31, 40), 1);
        expect_set(&s, "1:8,10:20,30:40");
        ck_assert_int_eq(uidset_add_range(&s, 9, 29), 1);
        expect_set(&s, "1:40");
        uidset_done(&s);
}
END_TEST

START_TEST(test_uid_max) {
        struct uidset s;
        uint32_t uid = 0;

        uidset_init(&s);
        ck_assert_int_eq(uidset_add(&s, UINT32_MAX), 1);
        ck_assert_int_eq(uidset_add(&s, UINT32_MAX), 0);
        ck_assert(uidset_contains(&s, UINT32_MAX));
        ck_assert_uint_eq(uidset_max(&s), UINT32_MAX);
        ck_assert_int_eq(uidset_add(&s, UINT32_MAX - 2), 1);
        expect_set(&s, "4294967293,4294967295");
        ck_assert_int_eq(uidset_add(&s, UINT32_MAX - 1), 1);
        expect_set(&s, "4294967293:4294967295");
        ck_assert_uint_eq(uidset_index_of(&s, UINT32_MAX), 3);
        ck_assert_uint_eq(uidset_nth(&s, 3), UINT32_MAX);
        ck_assert_int_eq(uidset_remove(&s, UINT32_MAX - 1), 1);
        expect_set(&s, "4294967293,4294967295");

        /* the whole UID space */
        ck_assert_int_eq(uidset_add_range(&s, 1, UINT32_MAX), 1);
        expect_set(&s, "1:4294967295");
        ck_assert_uint_eq(uidset_count(&s), UINT32_MAX);
        ck_assert_uint_eq(uidset_min(&s), 1);
        ck_assert_uint_eq(uidset_nth(&s, 1), 1);
        ck_assert_uint_eq(uidset_nth(&s, UINT32_MAX), UINT32_MAX);
        ck_assert_uint_eq(uidset_nth(&s, (uint64_t) UINT32_MAX + 1), 0);
        ck_assert_uint_eq(uidset_index_of(&s, UINT32_MAX), UINT32_MAX);
        ck_assert_uint_eq(uidset_index_of(&s, 1), 1);
        ck_assert_int_eq(uidset_add_range(&s, UINT32_MAX, UINT32_MAX), 0);
        ck_assert_int_eq(uidset_remove(&s, UINT32_MAX), 1);
        expect_set(&s, "1:4294967294");
        ck_assert_int_eq(uidset_remove(&s, 1), 1);
        expect_set(&s, "2:4294967294");
        ck_assert_int_eq(uidset_add(&s, UINT32_MAX), 1);
        expect_set(&s, "2:4294967295");
        ck_assert_int_eq(uidset_remove_nth(&s, UINT32_MAX - 1, &uid), 1);
        ck_assert_uint_eq(uid, UINT32_MAX);
        ck_assert_int_eq(uidset_remove_range(&s, 3, UINT32_MAX), 1);
        expect_set(&s, "2");
        ck_assert_int_eq(uidset_remove_range(&s, 1, UINT32_MAX), 1);
        expect_set(&s, "");
        ck_assert_uint_eq(uidset_memory(&s), 0);

        /* splitting a range that ends at UINT32_MAX */
        ck_assert_int_eq(uidset_add_range(&s, UINT32_MAX - 10, UINT32_MAX), 1);
        ck_assert_int_eq(uidset_remove_range(&s, UINT32_MAX - 5, UINT32_MAX - 1), 1);
        expect_set(&s, "4294967285:4294967289,4294967295");
        ck_assert_uint_eq(uidset_count(&s), 6);
        set_from(&s, "4294967295,1");
        expect_set(&s, "1,4294967295");
        uidset_done(&s);
}
END_TEST

START_TEST(test_remove) {
        struct uidset s;

        uidset_init(&s);
        set_from(&s, "1:10,20");
        ck_assert_int_eq(uidset_remove(&s, 15), 0);
        ck_assert_int_eq(uidset_remove(&s, 11), 0);
        ck_assert_int_eq(uidset_remove(&s, 0), 0);
        ck_assert_int_eq(uidset_remove(&s, UINT32_MAX), 0);
        expect_set(&s, "1:10,20");
        ck_assert_int_eq(uidset_remove(&s, 5), 1);            /* split */
        expect_set(&s, "1:4,6:10,20");
        ck_assert_int_eq(uidset_remove(&s, 5), 0);
        ck_assert_int_eq(uidset_remove(&s, 1), 1);            /* left edge */
        expect_set(&s, "2:4,6:10,20");
        ck_assert_int_eq(uidset_remove(&s, 10), 1);           /* right edge */
        expect_set(&s, "2:4,6:9,20");
        ck_assert_int_eq(uidset_remove(&s, 20), 1);           /* whole range */
        expect_set(&s, "2:4,6:9");
        ck_assert_uint_eq(uidset_count(&s), 7);
        ck_assert(!uidset_contains(&s, 5));
        ck_assert(uidset_contains(&s, 6));
        uidset_done(&s);
}
END_TEST

START_TEST(test_remove_range) {
        struct uidset s;

        uidset_init(&s);
        set_from(&s, "1:3,5:9,12,15:20,30:40");
        /* absent: inside a gap, before, after */
        ck_assert_int_eq(uidset_remove_range(&s, 10, 11), 0);
        ck_assert_int_eq(uidset_remove_range(&s, 21, 29), 0);
        ck_assert_int_eq(uidset_remove_range(&s, 41, UINT32_MAX), 0);
        ck_assert_int_eq(uidset_remove_range(&s, 4, 4), 0);
        expect_set(&s, "1:3,5:9,12,15:20,30:40");
        /* bad arguments */
        ck_assert_int_eq(uidset_remove_range(&s, 0, 5), -EINVAL);
        ck_assert_int_eq(uidset_remove_range(&s, 9, 8), -EINVAL);
        /* spans several ranges, trimming both ends */
        ck_assert_int_eq(uidset_remove_range(&s, 7, 17), 1);
        expect_set(&s, "1:3,5:6,18:20,30:40");
        ck_assert_uint_eq(uidset_count(&s), 19);
        /* starts and ends in gaps */
        ck_assert_int_eq(uidset_remove_range(&s, 4, 25), 1);
        expect_set(&s, "1:3,30:40");
        /* split */
        ck_assert_int_eq(uidset_remove_range(&s, 32, 38), 1);
        expect_set(&s, "1:3,30:31,39:40");
        /* exactly one range */
        ck_assert_int_eq(uidset_remove_range(&s, 30, 31), 1);
        expect_set(&s, "1:3,39:40");
        /* left part of the first, right part of the last */
        ck_assert_int_eq(uidset_remove_range(&s, 1, 2), 1);
        ck_assert_int_eq(uidset_remove_range(&s, 40, 1000), 1);
        expect_set(&s, "3,39");
        ck_assert_int_eq(uidset_remove_range(&s, 1, UINT32_MAX), 1);
        expect_set(&s, "");
        ck_assert_uint_eq(uidset_memory(&s), 0);
        uidset_done(&s);
}
END_TEST

START_TEST(test_nth_index_of) {
        static const uint32_t uids[] = { 1, 2, 3, 7, 10, 11, 12 };
        struct uidset s;

        uidset_init(&s);
        set_from(&s, "1:3,7,10:12");
        for (size_t i = 0; i < ELEMENTSOF(uids); i++) {
                ck_assert_uint_eq(uidset_nth(&s, i + 1), uids[i]);
                ck_assert_uint_eq(uidset_index_of(&s, uids[i]), i + 1);
        }
        ck_assert_uint_eq(uidset_nth(&s, 0), 0);
        ck_assert_uint_eq(uidset_nth(&s, 8), 0);
        ck_assert_uint_eq(uidset_nth(&s, UINT64_MAX), 0);
        ck_assert_uint_eq(uidset_index_of(&s, 0), 0);
        ck_assert_uint_eq(uidset_index_of(&s, 4), 0);
        ck_assert_uint_eq(uidset_index_of(&s, 8), 0);
        ck_assert_uint_eq(uidset_index_of(&s, 13), 0);
        ck_assert_uint_eq(uidset_index_of(&s, UINT32_MAX), 0);
        uidset_done(&s);
}
END_TEST

/* EXPUNGE n removes the n-th message; later numbers shift down. */
START_TEST(test_remove_nth) {
        struct uidset s;
        uint32_t uid = 0;

        uidset_init(&s);
        set_from(&s, "1:10,20");
        ck_assert_int_eq(uidset_remove_nth(&s, 3, &uid), 1);
        ck_assert_uint_eq(uid, 3);
        ck_assert_int_eq(uidset_remove_nth(&s, 3, &uid), 1);
        ck_assert_uint_eq(uid, 4);
        expect_set(&s, "1:2,5:10,20");
        ck_assert_int_eq(uidset_remove_nth(&s, 9, &uid), 1);
        ck_assert_uint_eq(uid, 20);
        ck_assert_int_eq(uidset_remove_nth(&s, 1, &uid), 1);
        ck_assert_uint_eq(uid, 1);
        expect_set(&s, "2,5:10");
        uid = 77;
        ck_assert_int_eq(uidset_remove_nth(&s, 0, &uid), 0);
        ck_assert_int_eq(uidset_remove_nth(&s, 8, &uid), 0);
        ck_assert_uint_eq(uid, 77);
        ck_assert_int_eq(uidset_remove_nth(&s, 7, NULL), 1);
        expect_set(&s, "2,5:9");
        while (uidset_remove_nth(&s, 1, &uid) > 0)
                ;
        ck_assert_uint_eq(uid, 9);
        expect_set(&s, "");
        ck_assert_uint_eq(uidset_memory(&s), 0);
        uidset_done(&s);
}
END_TEST

START_TEST(test_seqset) {
        static const char *const bad[] = {
                "", "*", "1:*", "*:5", "0", "0:3", "1,", ",1", "1,,2", "a", "1:2:3",
                "1::2", " 1", "1 ", "4294967296", "1:4294967296", "-1", "+1", "1;2",
        };
        struct uidset s;
        char *str = NULL;

        uidset_init(&s);
        ck_assert_int_eq(uidset_add_seqset(&s, "1:3,7"), 0);
        expect_set(&s, "1:3,7");
        ck_assert_int_eq(uidset_add_seqset(&s, "7"), 0);
        expect_set(&s, "1:3,7");
        /* merged with what is there, reversed ranges and any order accepted */
        ck_assert_int_eq(uidset_add_seqset(&s, "12:9,5,4,100"), 0);
        expect_set(&s, "1:5,7,9:12,100");
        ck_assert_int_eq(uidset_add_seqset(&s, "6,8,13:99"), 0);
        expect_set(&s, "1:100");
        /* overlapping elements inside one set */
        set_from(&s, "5:10,1:6,20,8,19,21:22,4294967295,4294967294");
        expect_set(&s, "1:10,19:22,4294967294:4294967295");
        ck_assert_uint_eq(uidset_count(&s), 16);
        ck_assert_uint_eq(s.n, 3);

        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                ck_assert_msg(uidset_add_seqset(&s, bad[i]) == -EINVAL, "accepted \"%s\"", bad[i]);
                expect_set(&s, "1:10,19:22,4294967294:4294967295");
        }
        ck_assert_int_eq(uidset_add_seqset(&s, NULL), -EINVAL);
        uidset_clear(&s);
        ck_assert_int_eq(uidset_add_seqset(&s, "1,*"), -EINVAL);
        expect_set(&s, "");
        ck_assert_uint_eq(uidset_memory(&s), 0);

        /* to_string output parses back to the same set */
        set_from(&s, "1,3,5:6,4294967295");
        ck_assert_int_eq(uidset_to_string(&s, &str), 0);
        ck_assert_str_eq(str, "1,3,5:6,4294967295");
        ck_assert(imap_seqset_valid(str, false));
        free(str);
        uidset_done(&s);
}
END_TEST

START_TEST(test_copy) {
        struct uidset a, b;

        uidset_init(&a);
        uidset_init(&b);
        set_from(&a, "1:3,7,4294967295");
        set_from(&b, "100:200,300");
        ck_assert_int_eq(uidset_copy(&b, &a), 0);
        expect_set(&b, "1:3,7,4294967295");
        ck_assert_uint_eq(uidset_count(&b), 5);
        ck_assert(sets_equal(&a, &b));
        ck_assert_ptr_ne(a.r, b.r);
        /* independent afterwards */
        ck_assert_int_eq(uidset_add(&b, 4), 1);
        expect_set(&a, "1:3,7,4294967295");
        /* self-copy is a no-op */
        ck_assert_int_eq(uidset_copy(&a, &a), 0);
        expect_set(&a, "1:3,7,4294967295");
        /* copying an empty set empties and frees */
        uidset_clear(&a);
        ck_assert_int_eq(uidset_copy(&b, &a), 0);
        expect_set(&b, "");
        ck_assert_uint_eq(uidset_memory(&b), 0);
        uidset_done(&a);
        uidset_done(&b);
}
END_TEST

START_TEST(test_iter) {
        static const uint32_t expected[] = { 1, 2, 3, 7, UINT32_MAX - 1, UINT32_MAX };
        struct uidset s;
        struct uidset_iter it;
        uint32_t uid;
        size_t i = 0;

        uidset_init(&s);
        set_from(&s, "1:3,7,4294967294:4294967295");
        uidset_iter_init(&it, &s);
        while (uidset_iter_next(&it, &uid)) {
                ck_assert_uint_lt(i, ELEMENTSOF(expected));
                ck_assert_uint_eq(uid, expected[i]);
                i++;
        }
        ck_assert_uint_eq(i, ELEMENTSOF(expected));
        uid = 5;
        ck_assert(!uidset_iter_next(&it, &uid));
        ck_assert_uint_eq(uid, 5);

        set_from(&s, "4294967295");
        uidset_iter_init(&it, &s);
        ck_assert(uidset_iter_next(&it, &uid));
        ck_assert_uint_eq(uid, UINT32_MAX);
        ck_assert(!uidset_iter_next(&it, &uid));
        uidset_done(&s);
}
END_TEST

START_TEST(test_memory) {
        struct uidset s;
        size_t peak;

        uidset_init(&s);
        ck_assert_uint_eq(uidset_memory(&s), 0);
        /* a run of consecutive UIDs is one range */
        for (uint32_t uid = 1; uid <= 100000; uid++)
                REQUIRE(uidset_add(&s, uid) == 1, "add %" PRIu32, uid);
        ck_assert_uint_eq(s.n, 1);
        ck_assert_uint_eq(uidset_memory(&s), s.cap * sizeof(struct uid_range));
        ck_assert_uint_le(uidset_memory(&s), 4 * sizeof(struct uid_range));
        uidset_clear(&s);
        ck_assert_uint_eq(uidset_memory(&s), 0);
        ck_assert_ptr_null(s.r);

        /* odd UIDs: one range each; capacity doubles */
        for (uint32_t uid = 1; uid < 20000; uid += 2)
                REQUIRE(uidset_add(&s, uid) == 1, "add %" PRIu32, uid);
        ck_assert_uint_eq(s.n, 10000);
        ck_assert_uint_ge(s.cap, s.n);
        ck_assert_uint_le(s.cap, 2 * s.n);
        ck_assert_uint_eq(s.cap & (s.cap - 1), 0);
        peak = uidset_memory(&s);
        ck_assert_ptr_null(invariant_error(&s));

        /* removals give memory back */
        ck_assert_int_eq(uidset_remove_range(&s, 100, UINT32_MAX), 1);
        ck_assert_uint_eq(s.n, 50);
        ck_assert_uint_lt(uidset_memory(&s), peak / 8);
        ck_assert_ptr_null(invariant_error(&s));
        while (uidset_remove_nth(&s, 1, NULL) > 0)
                ;
        ck_assert_uint_eq(uidset_memory(&s), 0);

        /* done leaves a usable empty set */
        ck_assert_int_eq(uidset_add(&s, 3), 1);
        uidset_done(&s);
        ck_assert_uint_eq(uidset_count(&s), 0);
        ck_assert_uint_eq(uidset_memory(&s), 0);
        ck_assert_int_eq(uidset_add(&s, 3), 1);
        expect_set(&s, "3");
        uidset_done(&s);
}
END_TEST

/* ---- allocation failures ------------------------------------------------- */

/* Runs op on a copy of the set described by start with the k-th allocation
 * failing, for k = 1, 2, ... until op succeeds: every failure must return
 * -ENOMEM and leave the set exactly as it was; the success must give the
 * expected set and return value. Leaves the number of failed attempts in
 * oom_failures. */
#define OOM_CASE(start, expected, expected_ret, op)                                     \
        do {                                                                            \
                struct uidset _orig, s;                                                 \
                char *_str = NULL;                                                      \
                int _r;                                                                 \
                uidset_init(&_orig);                                                    \
                fi_uidset_init(&s);                                                     \
                set_from(&_orig, start);                                                \
                for (unsigned long _k = 1;; _k++) {                                     \
                        fi_arm(0, 0);                                                   \
                        ck_assert_int_eq(fi_uidset_copy(&s, &_orig), 0);                \
                        fi_arm(_k, 0);                                                  \
                        _r = (op);                                                      \
                        fi_arm(0, 0);                                                   \
                        ck_assert_ptr_null(invariant_error(&s));                        \
                        if (_r == -ENOMEM) {                                            \
                                ck_assert_msg(sets_equal(&s, &_orig),                   \
                                              "%s changed on failure %lu", #op, _k);    \
                                continue;                                               \
                        }                                                               \
                        ck_assert_int_eq(_r, expected_ret);                             \
                        ck_assert_int_eq(fi_uidset_to_string(&s, &_str), 0);            \
                        ck_assert_str_eq(_str, expected);                               \
                        free(_str);                                                     \
                        oom_failures = _k - 1;                                          \
                        break;                                                          \
                }                                                                       \
                fi_uidset_done(&s);                                                     \
                uidset_done(&_orig);                                                    \
        } while (0)

START_TEST(test_oom_atomic) {
        char many[1024];
        size_t len = 0;
        struct uidset t;
        uint32_t uid = 0;
        char *str = (char *) "untouched";
        unsigned long oom_failures = 0;

        /* fi_uidset_copy() allocates exactly n ranges, so these arrays are
         * full and inserting a range must grow them */
        OOM_CASE("1,3,5,7", "1,3,5,7,9", 1, fi_uidset_add(&s, 9));
        ck_assert_uint_eq(oom_failures, 1);
        OOM_CASE("1,3,5,7", "1,3,5,7,9:12", 1, fi_uidset_add_range(&s, 9, 12));
        ck_assert_uint_eq(oom_failures, 1);
        /* merges never allocate */
        OOM_CASE("1,3,5,7", "1:7", 1, fi_uidset_add_range(&s, 2, 6));
        ck_assert_uint_eq(oom_failures, 0);
        OOM_CASE("1,3,5,7", "1,3,5,7", 0, fi_uidset_add_range(&s, 5, 5));
        ck_assert_uint_eq(oom_failures, 0);
        /* splitting a range grows the array */
        OOM_CASE("1:10,20,30,40", "1:4,6:10,20,30,40", 1, fi_uidset_remove(&s, 5));
        ck_assert_uint_eq(oom_failures, 1);
        OOM_CASE("1:10,20,30,40", "1:2,9:10,20,30,40", 1, fi_uidset_remove_range(&s, 3, 8));
        ck_assert_uint_eq(oom_failures, 1);
        OOM_CASE("1:10,20,30,40", "1:2,4:10,20,30,40", 1, fi_uidset_remove_nth(&s, 3, &uid));
        ck_assert_uint_eq(oom_failures, 1);
        ck_assert_uint_eq(uid, 3);
        /* dropping ranges needs no memory; a failed shrink keeps the array
         * and the removal still succeeds */
        for (unsigned i = 1; i < 200; i += 2)
                len += (size_t) snprintf(many + len, sizeof(many) - len, "%s%u", i > 1 ? "," : "", i);
        OOM_CASE(many, "1,199", 1, fi_uidset_remove_range(&s, 2, 198));
        ck_assert_uint_eq(oom_failures, 0);
        /* sequence sets: into an empty set (one allocation) and merged into
         * a non-empty one (two) */
        OOM_CASE("", "1:3,7", 0, fi_uidset_add_seqset(&s, "7,1:3"));
        ck_assert_uint_eq(oom_failures, 1);
        OOM_CASE("5,9", "1:6,9,11", 0, fi_uidset_add_seqset(&s, "11,1:4,6"));
        ck_assert_uint_eq(oom_failures, 2);
        OOM_CASE("5,9", "5,9", -EINVAL, fi_uidset_add_seqset(&s, "1,*"));
        ck_assert_uint_eq(oom_failures, 0);
        /* copy keeps the destination on failure */
        uidset_init(&t);
        set_from(&t, "100:200");
        OOM_CASE("1,2,3", "100:200", 0, fi_uidset_copy(&s, &t));
        ck_assert_uint_eq(oom_failures, 1);
        uidset_done(&t);

        fi_uidset_init(&t);
        ck_assert_int_eq(fi_uidset_add_seqset(&t, "1:10,20,30,40"), 0);
        ck_assert_uint_eq(t.n, t.cap);
        /* to_string leaves *ret alone on failure */
        fi_arm(1, 0);
        ck_assert_int_eq(fi_uidset_to_string(&t, &str), -ENOMEM);
        ck_assert_str_eq(str, "untouched");
        /* remove_nth leaves *ret_uid alone on failure */
        uid = 99;
        fi_arm(1, 0);
        ck_assert_int_eq(fi_uidset_remove_nth(&t, 3, &uid), -ENOMEM);
        ck_assert_uint_eq(uid, 99);
        fi_arm(0, 0);
        expect_set(&t, "1:10,20,30,40");
        fi_uidset_done(&t);
}
END_TEST

/* ---- differential test against a bitmap ---------------------------------- */

/* The model covers UIDs 1..LOW_MAX and the top HIGH_N UIDs up to UINT32_MAX.
 * Additions stay inside these two regions; removals and lookups may also
 * hit the gap between them, which must then stay empty. */
#define LOW_MAX 2000u
#define HIGH_N 64u
#define HIGH_MIN (UINT32_MAX - HIGH_N + 1)
#define MODEL_N (LOW_MAX + HIGH_N)

struct model {
        bool bit[MODEL_N];
        uint64_t count;
};

static bool uid_modelled(uint32_t uid) {
        return (uid >= 1 && uid <= LOW_MAX) || uid >= HIGH_MIN;
}

static size_t model_index(uint32_t uid) {
        return uid <= LOW_MAX ? uid - 1 : LOW_MAX + (uid - HIGH_MIN);
}

static uint32_t model_uid(size_t i) {
        return i < LOW_MAX ? (uint32_t) i + 1 : HIGH_MIN + (uint32_t) (i - LOW_MAX);
}

static bool model_contains(const struct model *m, uint32_t uid) {
        return uid_modelled(uid) && m->bit[model_index(uid)];
}

/* Sets every modelled UID in [first, last] to v; returns how many changed. */
static uint64_t model_set(struct model *m, uint32_t first, uint32_t last, bool v) {
        uint64_t changed = 0;

        for (size_t i = 0; i < MODEL_N; i++) {
                uint32_t uid = model_uid(i);

                if (uid < first || uid > last || m->bit[i] == v)
                        continue;
                m->bit[i] = v;
                changed++;
        }
        if (v)
                m->count += changed;
        else
                m->count -= changed;
        return changed;
}

static uint32_t model_nth(const struct model *m, uint64_t n) {
        for (size_t i = 0; i < MODEL_N && n > 0; i++)
                if (m->bit[i] && --n == 0)
                        return model_uid(i);
        return 0;
}

static uint64_t model_index_of(const struct model *m, uint32_t uid) {
        uint64_t pos = 0;

        if (!model_contains(m, uid))
                return 0;
        for (size_t i = 0; i <= model_index(uid); i++)
                pos += m->bit[i];
        return pos;
}

/* The expected sequence set, into buf (large enough for the worst case). */
static void model_string(const struct model *m, char *buf, size_t size) {
        size_t len = 0;

        buf[0] = '\0';
        for (size_t i = 0; i < MODEL_N; i++) {
                size_t j = i;

                if (!m->bit[i])
                        continue;
                while (j + 1 < MODEL_N && m->bit[j + 1] &&
                       (uint64_t) model_uid(j) + 1 == model_uid(j + 1))
                        j++;
                if (j == i)
                        len += (size_t) snprintf(buf + len, size - len, "%s%" PRIu32,
                                                 len > 0 ? "," : "", model_uid(i));
                else
                        len += (size_t) snprintf(buf + len, size - len, "%s%" PRIu32 ":%" PRIu32,
                                                 len > 0 ? "," : "", model_uid(i), model_uid(j));
                i = j;
        }
}

/* Both the library and the fault-injected copy, behind one table. */
struct impl {
        const char *name;
        unsigned fail_percent;
        void (*init)(struct uidset *s);
        void (*done)(struct uidset *s);
        int (*add)(struct uidset *s, uint32_t uid);
        int (*add_range)(struct uidset *s, uint32_t first, uint32_t last);
        int (*remove)(struct uidset *s, uint32_t uid);
        int (*remove_range)(struct uidset *s, uint32_t first, uint32_t last);
        bool (*contains)(const struct uidset *s, uint32_t uid);
        uint64_t (*count)(const struct uidset *s);
        uint32_t (*max)(const struct uidset *s);
        uint32_t (*min)(const struct uidset *s);
        uint32_t (*nth)(const struct uidset *s, uint64_t n);
        int (*remove_nth)(struct uidset *s, uint64_t n, uint32_t *ret_uid);
        uint64_t (*index_of)(const struct uidset *s, uint32_t uid);
        int (*add_seqset)(struct uidset *s, const char *set);
        int (*to_string)(const struct uidset *s, char **ret);
        int (*copy)(struct uidset *dst, const struct uidset *src);
        void (*iter_init)(struct uidset_iter *it, const struct uidset *s);
        bool (*iter_next)(struct uidset_iter *it, uint32_t *ret_uid);
        size_t (*memory)(const struct uidset *s);
};

static const struct impl impl_lib = {
        "library", 0,
        uidset_init, uidset_done, uidset_add, uidset_add_range, uidset_remove,
        uidset_remove_range, uidset_contains, uidset_count, uidset_max, uidset_min,
        uidset_nth, uidset_remove_nth, uidset_index_of, uidset_add_seqset,
        uidset_to_string, uidset_copy, uidset_iter_init, uidset_iter_next, uidset_memory,
};

static const struct impl impl_fi = {
        "fault-injected", 3,
        fi_uidset_init, fi_uidset_done, fi_uidset_add, fi_uidset_add_range, fi_uidset_remove,
        fi_uidset_remove_range, fi_uidset_contains, fi_uidset_count, fi_uidset_max,
        fi_uidset_min, fi_uidset_nth, fi_uidset_remove_nth, fi_uidset_index_of,
        fi_uidset_add_seqset, fi_uidset_to_string, fi_uidset_copy, fi_uidset_iter_init,
        fi_uidset_iter_next, fi_uidset_memory,
};

/* Set equals model, invariants hold. Cost O(MODEL_N). */
static void check_state(const struct impl *im, const struct uidset *s, const struct model *m,
                        unsigned long step) {
        const char *e = invariant_error(s);
        uint64_t seen = 0;

        REQUIRE(!e, "%s step %lu: invariant: %s", im->name, step, e);
        REQUIRE(im->count(s) == m->count, "%s step %lu: count %" PRIu64 ", model %" PRIu64,
                im->name, step, im->count(s), m->count);
        for (size_t i = 0; i < s->n; i++) {
                uint32_t a = s->r[i].first, b = s->r[i].last;

                REQUIRE(uid_modelled(a) && uid_modelled(b) && (a > LOW_MAX) == (b > LOW_MAX),
                        "%s step %lu: range %" PRIu32 ":%" PRIu32 " outside the model",
                        im->name, step, a, b);
                for (size_t j = model_index(a); j <= model_index(b); j++)
                        REQUIRE(m->bit[j], "%s step %lu: %" PRIu32 " in set, not in model",
                                im->name, step, model_uid(j));
                seen += (uint64_t) b - a + 1;
        }
        /* every set UID is in the model and the totals agree: equal */
        REQUIRE(seen == m->count, "%s step %lu: set differs from model", im->name, step);
        if (m->count == 0)
                REQUIRE(im->memory(s) == 0, "%s step %lu: empty set holds memory", im->name, step);
}

static uint32_t pick_uid(uint64_t *rng) {
        uint64_t x = xorshift64(rng);

        switch (x % 20) {
        case 0:
                return (uint32_t[]) { 1, LOW_MAX, HIGH_MIN, UINT32_MAX }[(x >> 8) % 4];
        case 1:
        case 2:
        case 3:
                return HIGH_MIN + (uint32_t) ((x >> 8) % HIGH_N);
        default:
                return 1 + (uint32_t) ((x >> 8) % LOW_MAX);
        }
}

/* Any UID, modelled or in the gap (always absent), or 0. */
static uint32_t pick_any_uid(uint64_t *rng) {
        uint64_t x = xorshift64(rng);

        switch (x % 10) {
        case 0:
                return (uint32_t) (x >> 32);
        case 1:
                return (uint32_t[]) { 0, LOW_MAX + 1, HIGH_MIN - 1 }[(x >> 8) % 3];
        default:
                return pick_uid(rng);
        }
}

/* A range inside one region, mostly short, sometimes long. */
static void pick_range(uint64_t *rng, uint32_t *ret_first, uint32_t *ret_last) {
        uint32_t first = pick_uid(rng), end = first <= LOW_MAX ? LOW_MAX : UINT32_MAX;
        uint64_t x = xorshift64(rng);
        uint32_t len = x % 8 == 0 ? (uint32_t) ((x >> 8) % 400) : (uint32_t) ((x >> 8) % 4);

        *ret_first = first;
        *ret_last = end - first < len ? end : first + len;
}

static void differential(const struct impl *im, unsigned long steps, uint64_t seed) {
        static struct model m;
        static char expected[MODEL_N * 12 + 1];
        struct uidset s, t;
        uint64_t rng = seed;
        unsigned add_bias = 50;
        bool singles_only = false;

        memset(&m, 0, sizeof(m));
        im->init(&s);
        im->init(&t);
        for (unsigned long step = 0; step < steps; step++) {
                uint64_t x = xorshift64(&rng);
                uint32_t a, b, uid = 0;
                uint64_t n;
                char *str = NULL;
                int r, want;

                /* phases drift between mostly adding and mostly removing, so
                 * the set is sometimes empty, sometimes nearly full; in some
                 * only single UIDs change, which fragments it */
                if (step % 4000 == 0) {
                        add_bias = (unsigned) (xorshift64(&rng) % 100);
                        singles_only = xorshift64(&rng) % 3 == 0;
                }

                fi_arm(0, im->fail_percent);
                switch (x % 100) {
                case 0 ... 39: {
                        bool single = singles_only || (x >> 8) % 2 == 0;
                        bool adding = (x >> 16) % 100 < add_bias;

                        if (single)
                                a = b = adding ? pick_uid(&rng) : pick_any_uid(&rng);
                        else if (!adding && (x >> 24) % 20 == 0) {
                                /* removal across the gap between the regions */
                                a = 1 + (uint32_t) ((x >> 32) % LOW_MAX);
                                b = HIGH_MIN + (uint32_t) ((x >> 40) % HIGH_N);
                        } else
                                pick_range(&rng, &a, &b);

                        if (adding) {
                                r = single ? im->add(&s, a) : im->add_range(&s, a, b);
                                if (r != -ENOMEM) {
                                        want = model_set(&m, a, b, true) > 0;
                                        REQUIRE(r == want, "%s step %lu: add %" PRIu32 ":%" PRIu32
                                                " returned %d, expected %d", im->name, step, a, b, r, want);
                                }
                        } else {
                                if (single && a == 0) {
                                        r = im->remove(&s, 0);
                                        REQUIRE(r == 0, "%s step %lu: remove 0 returned %d", im->name, step, r);
                                        break;
                                }
                                r = single ? im->remove(&s, a) : im->remove_range(&s, a, b);
                                if (r != -ENOMEM) {
                                        want = model_set(&m, a, b, false) > 0;
                                        REQUIRE(r == want, "%s step %lu: remove %" PRIu32 ":%" PRIu32
                                                " returned %d, expected %d", im->name, step, a, b, r, want);
                                }
                        }
                        break;
                }
                case 40 ... 49:
                        /* EXPUNGE: mostly valid positions, sometimes 0 or past the end */
                        n = (x >> 8) % (m.count + 3);
                        want = n >= 1 && n <= m.count;
                        b = model_nth(&m, n);
                        uid = 12345;
                        r = im->remove_nth(&s, n, &uid);
                        if (r == -ENOMEM) {
                                REQUIRE(uid == 12345, "%s step %lu: ret_uid written on failure",
                                        im->name, step);
                                break;
                        }
                        REQUIRE(r == want && uid == (want ? b : 12345),
                                "%s step %lu: remove_nth %" PRIu64 " returned %d uid %" PRIu32
                                ", expected %d uid %" PRIu32, im->name, step, n, r, uid, want, b);
                        if (want)
                                model_set(&m, b, b, false);
                        break;
                case 50 ... 59:
                        n = (x >> 8) % (m.count + 3);
                        a = im->nth(&s, n);
                        b = model_nth(&m, n);
                        REQUIRE(a == b, "%s step %lu: nth %" PRIu64 " = %" PRIu32 ", expected %" PRIu32,
                                im->name, step, n, a, b);
                        if (b != 0) {
                                n = im->index_of(&s, b);
                                REQUIRE(n == (x >> 8) % (m.count + 3), "%s step %lu: index_of(nth(n)) != n",
                                        im->name, step);
                        }
                        break;
                case 60 ... 69:
                        a = pick_any_uid(&rng);
                        n = im->index_of(&s, a);
                        REQUIRE(n == model_index_of(&m, a), "%s step %lu: index_of %" PRIu32 " = %" PRIu64
                                ", expected %" PRIu64, im->name, step, a, n, model_index_of(&m, a));
                        if (n > 0)
                                REQUIRE(im->nth(&s, n) == a, "%s step %lu: nth(index_of(uid)) != uid",
                                        im->name, step);
                        break;
                case 70 ... 79:
                        a = pick_any_uid(&rng);
                        REQUIRE(im->contains(&s, a) == model_contains(&m, a),
                                "%s step %lu: contains %" PRIu32, im->name, step, a);
                        break;
                case 80 ... 84:
                        REQUIRE(im->min(&s) == model_nth(&m, 1) && im->max(&s) == model_nth(&m, m.count),
                                "%s step %lu: min/max", im->name, step);
                        break;
                case 85 ... 89: {
                        /* a sequence set of a few elements in any order, some
                         * reversed, merged into the set; now and then a bad one */
                        char set[256];
                        size_t len = 0, k = 1 + (x >> 8) % 6;
                        bool bad = (x >> 16) % 10 == 0;
                        uint32_t fa[6], fb[6];

                        for (size_t i = 0; i < k; i++) {
                                pick_range(&rng, &fa[i], &fb[i]);
                                if (fa[i] == fb[i])
                                        len += (size_t) snprintf(set + len, sizeof(set) - len, "%s%" PRIu32,
                                                                 i > 0 ? "," : "", fa[i]);
                                else if (xorshift64(&rng) % 2)
                                        len += (size_t) snprintf(set + len, sizeof(set) - len,
                                                                 "%s%" PRIu32 ":%" PRIu32,
                                                                 i > 0 ? "," : "", fb[i], fa[i]);
                                else
                                        len += (size_t) snprintf(set + len, sizeof(set) - len,
                                                                 "%s%" PRIu32 ":%" PRIu32,
                                                                 i > 0 ? "," : "", fa[i], fb[i]);
                        }
                        if (bad)
                                snprintf(set + len, sizeof(set) - len, "%s",
                                         (const char *[]) { ",*", ",", ":*", ",0", "x" }[(x >> 24) % 5]);
                        r = im->add_seqset(&s, set);
                        if (r == -ENOMEM)
                                break;
                        REQUIRE(r == (bad ? -EINVAL : 0), "%s step %lu: add_seqset \"%s\" returned %d",
                                im->name, step, set, r);
                        if (!bad)
                                for (size_t i = 0; i < k; i++)
                                        model_set(&m, fa[i], fb[i], true);
                        break;
                }
                case 90 ... 96:
                        /* to_string matches the model and parses back */
                        r = im->to_string(&s, &str);
                        if (r == -ENOMEM) {
                                REQUIRE(!str, "%s step %lu: *ret written on failure", im->name, step);
                                break;
                        }
                        REQUIRE(r == 0, "%s step %lu: to_string returned %d", im->name, step, r);
                        model_string(&m, expected, sizeof(expected));
                        REQUIRE(strcmp(str, expected) == 0, "%s step %lu: to_string \"%s\", expected \"%s\"",
                                im->name, step, str, expected);
                        if (m.count > 0) {
                                im->done(&t);
                                r = im->add_seqset(&t, str);
                                REQUIRE(r == 0 || r == -ENOMEM, "%s step %lu: add_seqset(to_string) returned %d",
                                        im->name, step, r);
                                if (r == 0)
                                        REQUIRE(!invariant_error(&t) && sets_equal(&s, &t),
                                                "%s step %lu: round trip differs", im->name, step);
                        }
                        free(str);
                        break;
                default: {
                        /* copy, then iterate the copy against the model */
                        struct uidset_iter it;
                        size_t i = 0;

                        r = im->copy(&t, &s);
                        if (r == -ENOMEM)
                                break;
                        REQUIRE(r == 0 && sets_equal(&s, &t) && !invariant_error(&t),
                                "%s step %lu: copy", im->name, step);
                        im->iter_init(&it, &t);
                        while (im->iter_next(&it, &uid)) {
                                while (i < MODEL_N && !m.bit[i])
                                        i++;
                                REQUIRE(i < MODEL_N && model_uid(i) == uid,
                                        "%s step %lu: iteration yields %" PRIu32, im->name, step, uid);
                                i++;
                        }
                        while (i < MODEL_N && !m.bit[i])
                                i++;
                        REQUIRE(i == MODEL_N, "%s step %lu: iteration ends early", im->name, step);
                        break;
                }
                }
                fi_arm(0, 0);
                check_state(im, &s, &m, step);
        }
        im->done(&s);
        im->done(&t);
}

START_TEST(test_differential) {
        differential(&impl_lib, 100000, 0x243F6A8885A308D3u);
}
END_TEST

START_TEST(test_differential_oom) {
        differential(&impl_fi, 30000, 0x13198A2E03707344u);
}
END_TEST

START_TEST(test_rank) {
        struct uidset s;

        uidset_init(&s);
        ck_assert_uint_eq(uidset_rank(&s, 5), 0);
        ck_assert_int_ge(uidset_add_range(&s, 3, 5), 0);
        ck_assert_int_ge(uidset_add_range(&s, 10, 12), 0);
        ck_assert_uint_eq(uidset_rank(&s, 1), 0);
        ck_assert_uint_eq(uidset_rank(&s, 3), 0);
        ck_assert_uint_eq(uidset_rank(&s, 4), 1);
        ck_assert_uint_eq(uidset_rank(&s, 6), 3);
        ck_assert_uint_eq(uidset_rank(&s, 9), 3);
        ck_assert_uint_eq(uidset_rank(&s, 11), 4);
        ck_assert_uint_eq(uidset_rank(&s, 4294967295u), 6);
        ck_assert_uint_eq(uidset_nth(&s, uidset_rank(&s, 7) + 1), 10);
        uidset_done(&s);
}
END_TEST

Suite *uidset_suite(void) {
        Suite *s = suite_create("uidset");
        TCase *tc;

        tc = tcase_create("basic");
        tcase_add_test(tc, test_empty);
        tcase_add_test(tc, test_rank);
        tcase_add_test(tc, test_add_single);
        tcase_add_test(tc, test_add_bridges_gap);
        tcase_add_test(tc, test_add_range);
        tcase_add_test(tc, test_uid_max);
        tcase_add_test(tc, test_remove);
        tcase_add_test(tc, test_remove_range);
        tcase_add_test(tc, test_nth_index_of);
        tcase_add_test(tc, test_remove_nth);
        tcase_add_test(tc, test_seqset);
        tcase_add_test(tc, test_copy);
        tcase_add_test(tc, test_iter);
        tcase_add_test(tc, test_memory);
        tcase_add_test(tc, test_oom_atomic);
        suite_add_tcase(s, tc);

        tc = tcase_create("differential");
        tcase_add_test(tc, test_differential);
        tcase_add_test(tc, test_differential_oom);
        suite_add_tcase(s, tc);

        return s;
}
