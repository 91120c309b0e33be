/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target for header decoding (mail-decode.h, on GMime), three ways
 * chosen by the first byte:
 *
 *   0  mail_decode_text() and mail_decode_date() on the rest (up to a NUL),
 *      with max_bytes from the second byte;
 *   1  mail_decode_from() on an envelope built from the rest: byte 1 gives
 *      the number of From and Sender addresses, then NUL-separated fields
 *      (name, adl, mailbox, host per address; "\x01" is NIL);
 *   2  the daemon's own path: the rest is fed to the response parser and the
 *      envelope of every FETCH is decoded as account.c does (sender,
 *      subject, date).
 *
 * Properties (mail-decode.h): decoding never fails; every result is valid
 * UTF-8 within its byte limit, without C0, DEL or C1 controls, without a
 * space at its start or a run of spaces; the sender is never empty, and is
 * the address when there is no display name, "(unknown sender)" when there
 * is no address; the address is "" exactly when the list has no address
 * with mailbox and host.
 */

#include "fuzz-util.h"
#include "imap-parser.h"
#include "mail-decode.h"

#define MAX_ADDRS 6

static void check_text(const char *what, const char *out, size_t max) {
        size_t len = strlen(out);
        const uint8_t *p = (const uint8_t *) out;

        FUZZ_CHECK(fuzz_utf8_valid(out, len), "%s \"%s\" is not valid UTF-8", what, out);
        FUZZ_CHECK(len <= max, "%s \"%s\" is %zu bytes, limit %zu", what, out, len, max);
        FUZZ_CHECK(out[0] != ' ', "%s \"%s\" starts with a space", what, out);
        FUZZ_CHECK(!strstr(out, "  "), "%s \"%s\" has a run of spaces", what, out);
        for (size_t i = 0; i < len;) {
                uint32_t cp;
                size_t n = fuzz_utf8_char(p + i, len - i, &cp);

                FUZZ_CHECK(cp >= 0x20 && !(cp >= 0x7f && cp <= 0x9f), "%s \"%s\" keeps control U+%04X", what, out,
                           (unsigned) cp);
                i += n;
        }
}

static bool has_address(const struct imap_address_list *l) {
        for (size_t i = 0; i < l->n; i++)
                if (l->v[i].mailbox && l->v[i].host)
                        return true;
        return false;
}

static const struct imap_address *first_address(const struct imap_address_list *l) {
        for (size_t i = 0; i < l->n; i++)
                if (l->v[i].mailbox && l->v[i].host)
                        return &l->v[i];
        return NULL;
}

static void check_from(const struct imap_envelope *e) {
        const struct imap_address_list *l = e->from.n ? &e->from : &e->sender;
        const struct imap_address *a = first_address(l);
        char *from = NULL, *addr = NULL;
        int r;

        r = mail_decode_from(e, &from, &addr);
        FUZZ_CHECK(r == 0, "mail_decode_from() = %d", r);
        check_text("sender", from, MAIL_TEXT_MAX);
        check_text("address", addr, MAIL_TEXT_MAX);
        FUZZ_CHECK(from[0], "empty sender");
        FUZZ_CHECK(!addr[0] == !has_address(l), "address \"%s\"", addr);
        if (a && !a->name)
                FUZZ_CHECK(strcmp(from, addr) == 0, "no name, but sender \"%s\" is not address \"%s\"", from, addr);
        if (!a)
                FUZZ_CHECK(strcmp(from, "(unknown sender)") == 0, "no address, but sender \"%s\"", from);
        free(from);
        free(addr);
}

static void decode_text(const uint8_t *data, size_t size) {
        size_t max;
        char *raw, *out = NULL;
        int r;

        if (size < 1)
                return;
        /* small limits cut often; 0xC8.. is the daemon's */
        max = data[0] < 0xC8 ? data[0] : MAIL_TEXT_MAX;
        raw = fuzz_strndup(data + 1, size - 1);
        r = mail_decode_text(raw, max, &out);
        FUZZ_CHECK(r == 0, "mail_decode_text() = %d", r);
        check_text("text", out, max);
        free(out);
        (void) mail_decode_date(raw);
        free(raw);
}

static void decode_built_envelope(const uint8_t *data, size_t size) {
        struct imap_address from[MAX_ADDRS] = {}, sender[MAX_ADDRS] = {};
        struct imap_envelope e = {};
        const char *p, *end;
        char *buf;
        size_t n_from, n_sender;

        if (size < 1)
                return;
        n_from = data[0] % (MAX_ADDRS + 1);
        n_sender = (data[0] / (MAX_ADDRS + 1)) % (MAX_ADDRS + 1);
        buf = fuzz_strndup(data + 1, size - 1);
        p = buf;
        end = buf + size - 1;

        /* the fields, in order; missing ones are NIL */
        for (size_t i = 0; i < n_from + n_sender; i++) {
                struct imap_address *a = i < n_from ? &from[i] : &sender[i - n_from];
                const char **f[] = { &a->name, &a->adl, &a->mailbox, &a->host };

                for (size_t k = 0; k < 4; k++) {
                        if (p > end)
                                break;
                        *f[k] = strcmp(p, "\x01") == 0 ? NULL : p;
                        p += strlen(p) + 1;
                }
        }
        e.from = (struct imap_address_list) { .v = from, .n = n_from };
        e.sender = (struct imap_address_list) { .v = sender, .n = n_sender };
        check_from(&e);
        free(buf);
}

static void decode_parsed_envelopes(const uint8_t *data, size_t size) {
        struct imap_parser *p = imap_parser_new(NULL);
        size_t off = 0;

        FUZZ_CHECK(p, "out of memory");
        while (off < size) {
                const struct imap_response *r;
                size_t used;
                int x = imap_parser_feed(p, data + off, size - off, &used, &r);

                off += used;
                if (x <= 0)
                        break;
                if (r->type != IMAP_RESP_FETCH || !(r->fetch.present & IMAP_FETCH_ENVELOPE))
                        continue;

                const struct imap_envelope *e = &r->fetch.envelope;
                char *subject = NULL;

                check_from(e);
                FUZZ_CHECK(mail_decode_text(e->subject, MAIL_TEXT_MAX, &subject) == 0, "subject");
                check_text("subject", subject, MAIL_TEXT_MAX);
                free(subject);
                (void) mail_decode_date(e->date);
        }
        imap_parser_free(p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        if (size < 1)
                return 0;
        switch (data[0] % 3) {
        case 0:
                decode_text(data + 1, size - 1);
                break;
        case 1:
                decode_built_envelope(data + 1, size - 1);
                break;
        default:
                decode_parsed_envelopes(data + 1, size - 1);
                break;
        }
        return 0;
}
