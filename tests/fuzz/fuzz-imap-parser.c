/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target for the IMAP response parser.
 *
 * The input is parsed twice: in one piece and in chunks whose sizes come
 * from the first input byte. Both runs must agree on every response (type,
 * kind, number) and on the final outcome, so a split-dependent bug is a crash
 * here, not just a memory error. Small limits make the limit paths reachable.
 */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "imap-parser.h"

#define MAX_SEEN 256

struct outcome {
        int result;
        unsigned n;
        uint32_t sig[MAX_SEEN];
};

static uint32_t signature(const struct imap_response *r) {
        struct imap_seqset_iter it;
        uint32_t a, b, sig = (uint32_t) r->type * 31 + (uint32_t) r->kind * 7 + r->number;

        /* walk what a consumer walks */
        if (r->type == IMAP_RESP_VANISHED) {
                imap_seqset_iter_init(&it, r->vanished.uids);
                while (imap_seqset_next(&it, &a, &b) > 0)
                        sig += b - a;
        }
        if (r->type == IMAP_RESP_FETCH) {
                sig += r->fetch.uid + (uint32_t) r->fetch.n_sections;
                for (size_t i = 0; i < r->fetch.n_sections; i++)
                        sig += (uint32_t) r->fetch.sections[i].len;
                for (size_t i = 0; i < r->fetch.envelope.from.n; i++)
                        sig += r->fetch.envelope.from.v[i].name ? (uint32_t) strlen(r->fetch.envelope.from.v[i].name) : 1;
        }
        if (r->type == IMAP_RESP_LIST || r->type == IMAP_RESP_LSUB)
                sig += (uint32_t) strlen(r->list.mailbox);
        if (r->type == IMAP_RESP_SEARCH)
                for (size_t i = 0; i < r->search.n; i++)
                        sig += r->search.numbers[i];
        if (r->kind != IMAP_RESP_KIND_CONTINUATION &&
            (r->type == IMAP_RESP_OK || r->type == IMAP_RESP_NO || r->type == IMAP_RESP_BAD ||
             r->type == IMAP_RESP_BYE || r->type == IMAP_RESP_PREAUTH))
                sig += (uint32_t) r->status.code.type + (uint32_t) strlen(r->status.text);
        return sig;
}

static void run(const uint8_t *data, size_t size, size_t step, struct outcome *o) {
        static const struct imap_parser_limits lim = {
                .max_line = 2048,
                .max_literal = 4096,
                .max_response = 16384,
                .max_depth = 8,
                .max_elements = 512,
        };
        struct imap_parser *p = imap_parser_new(&lim);
        size_t off = 0;

        if (!p)
                abort();
        *o = (struct outcome) {};
        while (off < size) {
                size_t chunk = step == 0 || size - off < step ? size - off : step;
                size_t pos = 0;

                while (pos < chunk) {
                        const struct imap_response *r;
                        size_t used;
                        int x = imap_parser_feed(p, data + off + pos, chunk - pos, &used, &r);

                        if (used > chunk - pos)
                                abort();
                        pos += used;
                        if (x < 0) {
                                if (!imap_parser_error(p))
                                        abort();
                                o->result = x;
                                imap_parser_free(p);
                                return;
                        }
                        if (x == 0) {
                                if (pos != chunk)
                                        abort();
                                break;
                        }
                        if (o->n < MAX_SEEN)
                                o->sig[o->n] = signature(r);
                        o->n++;
                }
                off += chunk;
        }
        if (imap_parser_memory(p) > 4u * 1024 * 1024)
                abort();
        imap_parser_trim(p);
        imap_parser_free(p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        static struct outcome whole, split;
        size_t step;

        if (size < 1)
                return 0;
        step = (data[0] % 16) + 1;
        data++;
        size--;

        run(data, size, 0, &whole);
        run(data, size, step, &split);

        /* An error may be reported in a later chunk only if no response
         * differs before it; anything else is a split-dependent bug. */
        if (whole.result != split.result || whole.n != split.n)
                abort();
        for (unsigned i = 0; i < whole.n && i < MAX_SEEN; i++)
                if (whole.sig[i] != split.sig[i])
                        abort();
        return 0;
}
