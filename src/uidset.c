/* SPDX-License-Identifier: MIT */
/*
 * UID sets as sorted, disjoint, non-adjacent ranges (see uidset.h).
 *
 * Invariants, kept by every function and checked by tests/test-uidset.c:
 *   - r[i].first >= 1 and r[i].first <= r[i].last;
 *   - r[i].last + 1 < r[i + 1].first (sorted, disjoint, not adjacent);
 *   - count is the sum of the range sizes;
 *   - n == 0 implies r == NULL and cap == 0 (an empty set holds no memory).
 *
 * Lookups are binary searches over the ranges; inserting or deleting ranges
 * moves the tail of the array. Sequence-number queries walk the ranges from
 * whichever end is nearer. Arithmetic on "last + 1" is done in 64 bits so
 * UID 4294967295 needs no special case.
 *
 * Functions that allocate either succeed or return -ENOMEM with the set as it
 * was: they allocate before they modify anything. Shrinking the array after
 * removals is best effort and never fails.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "imap-parser.h"
#include "uidset.h"

/* First allocation, in ranges; also the capacity below which we never shrink. */
#define RANGES_MIN 4

static uint64_t range_size(const struct uid_range *r) {
        return (uint64_t) r->last - r->first + 1;
}

/* Index of the first range with last >= uid, or s->n. */
static size_t lower_bound(const struct uidset *s, uint32_t uid) {
        size_t lo = 0, hi = s->n;

        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;

                if (s->r[mid].last < uid)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return lo;
}

/* Index of the first range with first > uid, or s->n. */
static size_t upper_bound(const struct uidset *s, uint32_t uid) {
        size_t lo = 0, hi = s->n;

        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;

                if (s->r[mid].first <= uid)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return lo;
}

/* Makes room for at least need ranges, doubling the capacity. Returns 0 or
 * -ENOMEM (also when the byte size would overflow); the set is unchanged on
 * failure. */
static int reserve(struct uidset *s, size_t need) {
        struct uid_range *r;
        size_t cap;

        if (need <= s->cap)
                return 0;

        cap = s->cap > 0 ? s->cap : RANGES_MIN;
        while (cap < need) {
                if (cap > SIZE_MAX / 2 / sizeof(struct uid_range))
                        return -ENOMEM;
                cap *= 2;
        }

        r = realloc(s->r, cap * sizeof(struct uid_range));
        if (!r)
                return -ENOMEM;
        s->r = r;
        s->cap = cap;
        return 0;
}

/* After removals: frees the array of an empty set; halves the capacity of
 * one that is at most a quarter full until it is more than that, so that a
 * run of additions does not have to grow it again at once. A failed shrink
 * keeps the larger array. */
static void shrink(struct uidset *s) {
        struct uid_range *r;
        size_t cap = s->cap;

        if (s->n == 0) {
                free(s->r);
                s->r = NULL;
                s->cap = 0;
                return;
        }
        while (cap > RANGES_MIN * 4 && s->n <= cap / 4)
                cap /= 2;
        if (cap == s->cap)
                return;

        r = realloc(s->r, cap * sizeof(struct uid_range));
        if (!r)
                return;
        s->r = r;
        s->cap = cap;
}

void uidset_init(struct uidset *s) {
        *s = (struct uidset) {};
}

void uidset_done(struct uidset *s) {
        if (!s)
                return;
        free(s->r);
        uidset_init(s);
}

void uidset_clear(struct uidset *s) {
        uidset_done(s);
}

/* Returns 1 if the set grew, 0 if every UID was already present, -EINVAL
 * unless 1 <= first <= last, -ENOMEM. */
int uidset_add_range(struct uidset *s, uint32_t first, uint32_t last) {
        size_t lo, hi;
        int r;

        if (first == 0 || first > last)
                return -EINVAL;

        /* [lo, hi) are the ranges that overlap or touch [first, last]: from
         * the first one ending at first - 1 or later to the last one starting
         * at last + 1 or earlier. Every range before lo ends before them all,
         * so lo <= hi. */
        lo = lower_bound(s, first - 1);
        hi = last == UINT32_MAX ? s->n : upper_bound(s, last + 1);

        if (lo == hi) {
                r = reserve(s, s->n + 1);
                if (r < 0)
                        return r;
                memmove(s->r + lo + 1, s->r + lo, (s->n - lo) * sizeof(struct uid_range));
                s->r[lo] = (struct uid_range) { first, last };
                s->n++;
                s->count += (uint64_t) last - first + 1;
                return 1;
        }

        /* Merge [lo, hi) and the new range into r[lo]. */
        struct uid_range merged = {
                .first = s->r[lo].first < first ? s->r[lo].first : first,
                .last = s->r[hi - 1].last > last ? s->r[hi - 1].last : last,
        };
        uint64_t before = 0;

        for (size_t i = lo; i < hi; i++)
                before += range_size(&s->r[i]);
        if (before == range_size(&merged))
                return 0;       /* already contained in a single range */

        s->r[lo] = merged;
        memmove(s->r + lo + 1, s->r + hi, (s->n - hi) * sizeof(struct uid_range));
        s->n -= hi - lo - 1;
        s->count = s->count - before + range_size(&merged);
        return 1;
}

/* Returns 1 if uid was added, 0 if it was present, -EINVAL for 0, -ENOMEM. */
int uidset_add(struct uidset *s, uint32_t uid) {
        return uidset_add_range(s, uid, uid);
}

/* Returns 1 if any UID was removed, 0 if none of them was present, -EINVAL
 * unless 1 <= first <= last, -ENOMEM (only when a range must be split). */
int uidset_remove_range(struct uidset *s, uint32_t first, uint32_t last) {
        size_t lo, hi, del_from, del_to;
        uint64_t removed = 0;
        int r;

        if (first == 0 || first > last)
                return -EINVAL;

        /* [lo, hi) are the ranges that overlap [first, last]. */
        lo = lower_bound(s, first);
        hi = upper_bound(s, last);
        if (lo >= hi)
                return 0;

        if (hi - lo == 1 && s->r[lo].first < first && s->r[lo].last > last) {
                /* Strictly inside one range: split it in two. */
                r = reserve(s, s->n + 1);
                if (r < 0)
                        return r;
                memmove(s->r + lo + 2, s->r + lo + 1, (s->n - lo - 1) * sizeof(struct uid_range));
                s->r[lo + 1] = (struct uid_range) { last + 1, s->r[lo].last };
                s->r[lo].last = first - 1;
                s->n++;
                s->count -= (uint64_t) last - first + 1;
                return 1;
        }

        for (size_t i = lo; i < hi; i++) {
                uint32_t a = s->r[i].first > first ? s->r[i].first : first;
                uint32_t b = s->r[i].last < last ? s->r[i].last : last;

                removed += (uint64_t) b - a + 1;
        }

        /* Trim the partial ranges at both ends, drop those in between. The
         * split case is excluded above, so with a single range at most one
         * end is kept and del_from <= del_to. */
        del_from = lo;
        del_to = hi;
        if (s->r[lo].first < first) {
                s->r[lo].last = first - 1;
                del_from++;
        }
        if (s->r[hi - 1].last > last) {
                s->r[hi - 1].first = last + 1;
                del_to--;
        }
        memmove(s->r + del_from, s->r + del_to, (s->n - del_to) * sizeof(struct uid_range));
        s->n -= del_to - del_from;
        s->count -= removed;
        shrink(s);
        return 1;
}

int uidset_remove(struct uidset *s, uint32_t uid) {
        if (uid == 0)
                return 0;
        return uidset_remove_range(s, uid, uid);
}

bool uidset_contains(const struct uidset *s, uint32_t uid) {
        size_t i = lower_bound(s, uid);

        return uid > 0 && i < s->n && s->r[i].first <= uid;
}

uint64_t uidset_count(const struct uidset *s) {
        return s->count;
}

uint32_t uidset_max(const struct uidset *s) {
        return s->n > 0 ? s->r[s->n - 1].last : 0;
}

uint32_t uidset_min(const struct uidset *s) {
        return s->n > 0 ? s->r[0].first : 0;
}

uint32_t uidset_nth(const struct uidset *s, uint64_t n) {
        if (n == 0 || n > s->count)
                return 0;

        if (n <= s->count / 2) {
                /* Forwards: n is the position within the remaining ranges. */
                for (size_t i = 0; i < s->n; i++) {
                        uint64_t size = range_size(&s->r[i]);

                        if (n <= size)
                                return s->r[i].first + (uint32_t) (n - 1);
                        n -= size;
                }
        } else {
                /* Backwards: after is the number of UIDs above the answer. */
                uint64_t after = s->count - n;

                for (size_t i = s->n; i-- > 0;) {
                        uint64_t size = range_size(&s->r[i]);

                        if (after < size)
                                return s->r[i].last - (uint32_t) after;
                        after -= size;
                }
        }
        return 0;       /* unreachable while count is right */
}

int uidset_remove_nth(struct uidset *s, uint64_t n, uint32_t *ret_uid) {
        uint32_t uid;
        int r;

        uid = uidset_nth(s, n);
        if (uid == 0)
                return 0;
        r = uidset_remove(s, uid);
        if (r < 0)
                return r;
        if (ret_uid)
                *ret_uid = uid;
        return 1;
}

uint64_t uidset_index_of(const struct uidset *s, uint32_t uid) {
        size_t i = lower_bound(s, uid);
        uint64_t pos;

        if (uid == 0 || i >= s->n || s->r[i].first > uid)
                return 0;

        if (i <= s->n / 2) {
                pos = (uint64_t) uid - s->r[i].first + 1;
                for (size_t j = 0; j < i; j++)
                        pos += range_size(&s->r[j]);
        } else {
                pos = s->count - ((uint64_t) s->r[i].last - uid);
                for (size_t j = i + 1; j < s->n; j++)
                        pos -= range_size(&s->r[j]);
        }
        return pos;
}

uint64_t uidset_rank(const struct uidset *s, uint32_t uid) {
        size_t i = lower_bound(s, uid);
        uint64_t below = 0;

        for (size_t j = 0; j < i; j++)
                below += range_size(&s->r[j]);
        if (i < s->n && s->r[i].first < uid)
                below += (uint64_t) uid - s->r[i].first;
        return below;
}

static int range_cmp(const void *a, const void *b) {
        const struct uid_range *x = a, *y = b;

        return x->first < y->first ? -1 : x->first > y->first;
}

/* Sorts v and merges overlapping and adjacent ranges in place. Returns the
 * new number of ranges. */
static size_t normalize(struct uid_range *v, size_t m) {
        size_t k = 0;

        for (size_t i = 1; i < m; i++)
                if (v[i].first < v[i - 1].first) {
                        qsort(v, m, sizeof(struct uid_range), range_cmp);
                        break;
                }

        for (size_t i = 0; i < m; i++) {
                if (k > 0 && v[i].first <= (uint64_t) v[k - 1].last + 1) {
                        if (v[i].last > v[k - 1].last)
                                v[k - 1].last = v[i].last;
                } else
                        v[k++] = v[i];
        }
        return k;
}

/* Appends x to out[0..*n), merging it into the last range when they touch.
 * x must not start before the last range does. */
static void append_merge(struct uid_range *out, size_t *n, struct uid_range x) {
        if (*n > 0 && x.first <= (uint64_t) out[*n - 1].last + 1) {
                if (x.last > out[*n - 1].last)
                        out[*n - 1].last = x.last;
        } else
                out[(*n)++] = x;
}

int uidset_add_seqset(struct uidset *s, const char *set) {
        struct imap_seqset_iter it;
        struct uid_range *v, *out;
        size_t m = 1, k = 0, n = 0, i = 0, j = 0;
        uint64_t count = 0;
        uint32_t first, last;

        if (!set || !imap_seqset_valid(set, false))
                return -EINVAL;

        /* A valid set has one element more than it has commas. */
        for (const char *p = set; *p; p++)
                if (*p == ',')
                        m++;
        if (m > SIZE_MAX / sizeof(struct uid_range))
                return -ENOMEM;
        v = malloc(m * sizeof(struct uid_range));
        if (!v)
                return -ENOMEM;

        imap_seqset_iter_init(&it, set);
        while (k < m && imap_seqset_next(&it, &first, &last) > 0)
                v[k++] = (struct uid_range) { first, last };
        if (k != m) {
                /* Cannot happen for a set imap_seqset_valid() accepted. */
                free(v);
                return -EINVAL;
        }
        m = normalize(v, m);

        if (s->n == 0) {
                free(s->r);
                s->r = v;
                s->cap = k;     /* the allocated size, before merging */
                s->n = m;
                for (size_t x = 0; x < m; x++)
                        count += range_size(&v[x]);
                s->count = count;
                return 0;
        }

        /* Union of two sorted lists into a new array, then swap it in. */
        if (s->n > SIZE_MAX / sizeof(struct uid_range) - m) {
                free(v);
                return -ENOMEM;
        }
        out = malloc((s->n + m) * sizeof(struct uid_range));
        if (!out) {
                free(v);
                return -ENOMEM;
        }
        while (i < s->n || j < m) {
                if (j >= m || (i < s->n && s->r[i].first <= v[j].first))
                        append_merge(out, &n, s->r[i++]);
                else
                        append_merge(out, &n, v[j++]);
        }
        free(v);
        for (size_t x = 0; x < n; x++)
                count += range_size(&out[x]);

        free(s->r);
        s->r = out;
        s->cap = s->n + m;
        s->n = n;
        s->count = count;
        return 0;
}

static size_t dec_len(uint32_t v) {
        size_t n = 1;

        while (v >= 10) {
                v /= 10;
                n++;
        }
        return n;
}

static char *dec_put(char *p, uint32_t v) {
        char buf[10];
        size_t n = 0;

        do {
                buf[n++] = (char) ('0' + v % 10);
                v /= 10;
        } while (v > 0);
        while (n > 0)
                *p++ = buf[--n];
        return p;
}

/* On success *ret is a malloc'ed string owned by the caller (free()); it is
 * untouched on failure. Returns 0 or -ENOMEM. */
int uidset_to_string(const struct uidset *s, char **ret) {
        size_t len = 1;         /* the NUL */
        char *buf, *p;

        /* Exact length first: at most 22 bytes per range, checked. */
        for (size_t i = 0; i < s->n; i++) {
                if (len > SIZE_MAX - 22)
                        return -ENOMEM;
                len += (i > 0) + dec_len(s->r[i].first);
                if (s->r[i].first != s->r[i].last)
                        len += 1 + dec_len(s->r[i].last);
        }

        buf = malloc(len);
        if (!buf)
                return -ENOMEM;

        p = buf;
        for (size_t i = 0; i < s->n; i++) {
                if (i > 0)
                        *p++ = ',';
                p = dec_put(p, s->r[i].first);
                if (s->r[i].first != s->r[i].last) {
                        *p++ = ':';
                        p = dec_put(p, s->r[i].last);
                }
        }
        *p = '\0';

        *ret = buf;
        return 0;
}

/* dst keeps its old contents on -ENOMEM. src is only read. */
int uidset_copy(struct uidset *dst, const struct uidset *src) {
        struct uid_range *r;

        if (dst == src)
                return 0;
        if (src->n == 0) {
                uidset_clear(dst);
                return 0;
        }

        /* src->n * size fits: src holds at least that many bytes. */
        r = malloc(src->n * sizeof(struct uid_range));
        if (!r)
                return -ENOMEM;
        memcpy(r, src->r, src->n * sizeof(struct uid_range));

        free(dst->r);
        dst->r = r;
        dst->n = dst->cap = src->n;
        dst->count = src->count;
        return 0;
}

/* The iterator borrows s, which must not change while it is in use. */
void uidset_iter_init(struct uidset_iter *it, const struct uidset *s) {
        *it = (struct uidset_iter) {
                .s = s,
                .range = 0,
                .next = s->n > 0 ? s->r[0].first : 0,
        };
}

bool uidset_iter_next(struct uidset_iter *it, uint32_t *ret_uid) {
        const struct uidset *s = it->s;
        uint32_t uid;

        if (it->range >= s->n)
                return false;

        uid = it->next;
        /* Compare before incrementing: last may be UINT32_MAX. */
        if (uid == s->r[it->range].last) {
                it->range++;
                it->next = it->range < s->n ? s->r[it->range].first : 0;
        } else
                it->next = uid + 1;

        *ret_uid = uid;
        return true;
}

size_t uidset_memory(const struct uidset *s) {
        return s->cap * sizeof(struct uid_range);
}
