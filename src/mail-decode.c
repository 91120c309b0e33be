/* SPDX-License-Identifier: MIT */

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <gmime/gmime.h>

#include "mail-decode.h"
#include "macro.h"
#include "utf8.h"

static void gmime_init_once(void) {
        static bool done;

        if (!done) {
                g_mime_init();
                done = true;
        }
}

/* Valid UTF-8, control characters turned into spaces (runs collapsed),
 * trimmed, cut at a character boundary. */
static int clean(const char *s, size_t max_bytes, char **ret) {
        _cleanup_free_ char *valid = NULL;
        char *out, *o;
        bool space = true;
        int r;

        r = utf8_sanitize(s, strlen(s), &valid);
        if (r < 0)
                return r;
        out = malloc(strlen(valid) + 1);
        if (!out)
                return -ENOMEM;
        o = out;
        for (const unsigned char *p = (const unsigned char *) valid; *p; p++) {
                /* C0 controls, DEL; C1 controls are two bytes: C2 80..9F */
                bool ctl = *p < 0x20 || *p == 0x7f;
                if (*p == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f) {
                        ctl = true;
                        p++;
                }
                if (ctl || *p == ' ') {
                        if (!space)
                                *o++ = ' ';
                        space = true;
                        continue;
                }
                *o++ = (char) *p;
                space = false;
        }
        while (o > out && o[-1] == ' ')
                o--;
        *o = '\0';

        out[utf8_truncate(out, strlen(out), max_bytes)] = '\0';
        *ret = out;
        return 0;
}

int mail_decode_text(const char *raw, size_t max_bytes, char **ret) {
        char *decoded;
        int r;

        if (!raw)
                raw = "";
        gmime_init_once();
        /* GMime decodes RFC 2047 words (with RFC 2231 and charset fallback
         * to the user's locale and Latin-1 for raw 8-bit) */
        decoded = g_mime_utils_header_decode_text(NULL, raw);
        r = clean(decoded ? decoded : raw, max_bytes, ret);
        g_free(decoded);
        return r;
}

int mail_decode_from(const struct imap_envelope *e, char **ret_from, char **ret_address) {
        const struct imap_address_list *l = e->from.n ? &e->from : &e->sender;
        const struct imap_address *a = NULL;
        _cleanup_free_ char *name = NULL, *addr = NULL;
        int r;

        /* the first real address (skip group markers: host NIL) */
        for (size_t i = 0; i < l->n; i++)
                if (l->v[i].mailbox && l->v[i].host) {
                        a = &l->v[i];
                        break;
                }

        if (a) {
                _cleanup_free_ char *raw = NULL;

                if (asprintf(&raw, "%s@%s", a->mailbox, a->host) < 0)
                        return -ENOMEM;
                r = clean(raw, MAIL_TEXT_MAX, &addr);
                if (r < 0)
                        return r;
        } else {
                addr = strdup("");
                if (!addr)
                        return -ENOMEM;
        }
        if (a && a->name) {
                r = mail_decode_text(a->name, MAIL_TEXT_MAX, &name);
                if (r < 0)
                        return r;
        }
        if (!name || !name[0]) {
                free(name);
                name = strdup(addr[0] ? addr : "(unknown sender)");
                if (!name)
                        return -ENOMEM;
        }
        *ret_from = TAKE_PTR(name);
        *ret_address = TAKE_PTR(addr);
        return 0;
}

int64_t mail_decode_date(const char *raw) {
        GDateTime *dt;
        int64_t t;

        if (!raw)
                return 0;
        gmime_init_once();
        dt = g_mime_utils_header_decode_date(raw);
        if (!dt)
                return 0;
        t = g_date_time_to_unix(dt);
        g_date_time_unref(dt);
        return t;
}
