/* SPDX-License-Identifier: MIT */
#pragma once

/* Shared between the framing/tokenizing half (imap-parser.c) and the typed
 * half (imap-response.c) of the parser. Not a public interface. */

#include <stdarg.h>

#include "imap-parser.h"

struct arena_chunk {
        struct arena_chunk *next;
        size_t used, size;
        max_align_t data[];
};

/* A bump allocator: everything of one response is freed at once. */
struct arena {
        struct arena_chunk *head;
        size_t total;
};

void *arena_alloc(struct arena *a, size_t n);
char *arena_strndup(struct arena *a, const char *s, size_t n);
void arena_reset(struct arena *a);      /* keeps the first small chunk */
void arena_free(struct arena *a);

/* What the tokenizer learned from the start of a response. */
struct imap_head {
        enum imap_resp_kind kind;
        const char *tag;
        const char *keyword;
        bool has_number;
        uint32_t number;
        const char *text;       /* text mode: the rest of the line after the keyword */
        size_t text_len;
};

/* Builds the typed response. On failure returns -errno and writes a reason
 * into err (size errsz). All allocations come from the arena. */
int imap_response_build(struct arena *a, const struct imap_head *h,
                        const struct imap_arg *args, size_t n_args,
                        struct imap_response *ret, char *err, size_t errsz);

/* Parses "[CODE args] text" (resp-text), s need not be NUL-terminated. */
int imap_resp_text_parse(struct arena *a, const char *s, size_t n,
                         struct imap_status_data *ret, char *err, size_t errsz);
