/* SPDX-License-Identifier: MIT */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "notify-text.h"
#include "utf8.h"

#define ELLIPSIS "\xE2\x80\xA6"                 /* U+2026 */
#define ELLIPSIS_LEN (sizeof(ELLIPSIS) - 1)

static bool is_dropped(uint32_t cp) {
        return cp < 0x20 || (cp >= 0x7F && cp <= 0x9F) ||
               cp == 0x061C || cp == 0x200E || cp == 0x200F ||
               (cp >= 0x202A && cp <= 0x202E) ||
               (cp >= 0x2066 && cp <= 0x2069) ||
               cp == 0xFFFE || cp == 0xFFFF;
}

static bool is_space(uint32_t cp) {
        /* tab, LF, CR and the other C0 space controls read as a word break */
        return cp == ' ' || cp == '\t' || cp == '\n' || cp == '\r' || cp == '\v' || cp == '\f' ||
               cp == 0x85 || cp == 0xA0 || cp == 0x2028 || cp == 0x2029;
}

char *notify_text_clean(const char *s, size_t max_bytes) {
        char *valid = NULL, *out;
        size_t len, n = 0;
        bool space = false;

        if (max_bytes < 4)
                max_bytes = 4;
        if (!s)
                s = "";
        len = strlen(s);
        if (utf8_sanitize(s, len, &valid) < 0)
                return NULL;
        out = malloc(strlen(valid) + 1);
        if (!out) {
                free(valid);
                return NULL;
        }
        for (const char *p = valid; *p;) {
                uint32_t cp;
                int k = utf8_decode_char(p, strlen(p), &cp);

                if (k < 0) {    /* cannot happen after utf8_sanitize; skip a byte */
                        p++;
                        continue;
                }
                if (is_space(cp)) {
                        space = n > 0;
                } else if (!is_dropped(cp)) {
                        if (space)
                                out[n++] = ' ';
                        space = false;
                        memcpy(out + n, p, (size_t) k);
                        n += (size_t) k;
                }
                p += k;
        }
        out[n] = '\0';
        free(valid);

        if (n > max_bytes) {
                size_t cut = utf8_truncate(out, n, max_bytes - ELLIPSIS_LEN);

                while (cut > 0 && out[cut - 1] == ' ')
                        cut--;
                memcpy(out + cut, ELLIPSIS, ELLIPSIS_LEN + 1);
        }
        return out;
}

char *notify_text_escape_markup(const char *s) {
        size_t n = 0;
        char *out, *q;

        if (!s)
                s = "";
        for (const char *p = s; *p; p++)
                n += *p == '&' ? 5 : (*p == '<' || *p == '>') ? 4 : 1;
        out = q = malloc(n + 1);
        if (!out)
                return NULL;
        for (const char *p = s; *p; p++) {
                const char *rep = *p == '&' ? "&amp;" : *p == '<' ? "&lt;" : *p == '>' ? "&gt;" : NULL;

                if (rep) {
                        size_t k = strlen(rep);

                        memcpy(q, rep, k);
                        q += k;
                } else
                        *q++ = *p;
        }
        *q = '\0';
        return out;
}

char *notify_text_burst_body(const char *const *senders, size_t n_senders, bool more_senders) {
        size_t named = n_senders < NOTIFY_TEXT_BURST_SENDERS ? n_senders : NOTIFY_TEXT_BURST_SENDERS;
        size_t size = sizeof("From  and others");
        char *raw, *out;

        if (n_senders > named)
                more_senders = true;
        if (named == 0)
                return strdup("");
        for (size_t i = 0; i < named; i++)
                size += strlen(senders[i]) + sizeof(", ");
        raw = malloc(size);
        if (!raw)
                return NULL;
        strcpy(raw, "From ");
        for (size_t i = 0; i < named; i++) {
                if (i > 0)
                        strcat(raw, i + 1 == named && !more_senders ? " and " : ", ");
                strcat(raw, senders[i]);
        }
        if (more_senders)
                strcat(raw, " and others");
        out = notify_text_clean(raw, NOTIFY_TEXT_BODY_MAX);
        free(raw);
        return out;
}
