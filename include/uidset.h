/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * A set of UIDs stored as sorted, disjoint, non-adjacent ranges. Mailboxes
 * are mostly runs of consecutive UIDs, so memory grows with the number of
 * gaps, not of messages.
 *
 * The same structure serves as the sequence-number map of a mailbox: UIDs
 * grow with sequence numbers (RFC 9051 §2.3.1.1), so message n is the n-th
 * smallest UID in the set of all UIDs, and EXPUNGE n removes exactly that.
 *
 * Pure: no I/O. Every function that allocates can fail with -ENOMEM and then
 * leaves the set unchanged.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct uid_range {
        uint32_t first, last;   /* inclusive, first <= last, first >= 1 */
};

struct uidset {
        struct uid_range *r;
        size_t n, cap;
        uint64_t count;         /* number of UIDs, kept up to date */
};

void uidset_init(struct uidset *s);
void uidset_done(struct uidset *s);             /* frees; the set is empty and usable after */
void uidset_clear(struct uidset *s);            /* empties, keeps no memory */

int uidset_add(struct uidset *s, uint32_t uid);
int uidset_add_range(struct uidset *s, uint32_t first, uint32_t last);    /* first <= last, first >= 1 */
/* Returns 1 if uid was present, 0 if not, -ENOMEM (a split may allocate). */
int uidset_remove(struct uidset *s, uint32_t uid);
int uidset_remove_range(struct uidset *s, uint32_t first, uint32_t last);
bool uidset_contains(const struct uidset *s, uint32_t uid);
uint64_t uidset_count(const struct uidset *s);
uint32_t uidset_max(const struct uidset *s);    /* 0 when empty */
uint32_t uidset_min(const struct uidset *s);    /* 0 when empty */

/* Sequence-number view: the n-th smallest UID (n from 1), 0 if n > count. */
uint32_t uidset_nth(const struct uidset *s, uint64_t n);
/* Removes the n-th smallest UID and returns it through ret_uid. Returns 1,
 * 0 if n is out of range, or -ENOMEM. */
int uidset_remove_nth(struct uidset *s, uint64_t n, uint32_t *ret_uid);
/* The position (from 1) of uid, or 0 if absent. */
uint64_t uidset_index_of(const struct uidset *s, uint32_t uid);

/* How many UIDs of the set are smaller than uid (so the first UID >= uid is
 * uidset_nth(s, rank + 1)). */
uint64_t uidset_rank(const struct uidset *s, uint32_t uid);

/* Adds every UID of an IMAP sequence set ("1:3,7"); '*' is refused. Returns
 * 0, -EINVAL for a malformed set (nothing added), -ENOMEM. */
int uidset_add_seqset(struct uidset *s, const char *set);

/* Formats the set as an IMAP sequence set ("1:3,7") into a malloc'ed
 * string, "" for an empty set (callers must not send an empty set). */
int uidset_to_string(const struct uidset *s, char **ret);

/* Replaces dst by a copy of src. */
int uidset_copy(struct uidset *dst, const struct uidset *src);

/* Iteration over single UIDs in ascending order. */
struct uidset_iter {
        const struct uidset *s;
        size_t range;
        uint32_t next;
};
void uidset_iter_init(struct uidset_iter *it, const struct uidset *s);
bool uidset_iter_next(struct uidset_iter *it, uint32_t *ret_uid);

/* Bytes allocated, for memory accounting. */
size_t uidset_memory(const struct uidset *s);
