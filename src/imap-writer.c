/* SPDX-License-Identifier: MIT */

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "imap-utf7.h"
#include "imap-writer.h"
#include "macro.h"
#include "utf8.h"

#define COMMAND_MAX (1024 * 1024)       /* nothing a notifier sends comes near */
#define LITERAL_MINUS_MAX 4096          /* RFC 7888 §3 */

void imap_writer_init(struct imap_writer *w) {
        *w = (struct imap_writer) { .next_tag = 1 };
}

static void set_error(struct imap_command *c, int r) {
        if (c->error == 0)
                c->error = r;
}

static void put(struct imap_command *c, const char *s, size_t n) {
        if (c->error)
                return;
        if (n > COMMAND_MAX || c->len + n > COMMAND_MAX)
                return set_error(c, -E2BIG);
        if (c->len + n + 1 > c->cap) {
                size_t cap = c->cap ? c->cap : 64;
                char *d;

                while (cap < c->len + n + 1)
                        cap *= 2;
                d = realloc(c->data, cap);
                if (!d)
                        return set_error(c, -ENOMEM);
                c->data = d;
                c->cap = cap;
        }
        memcpy(c->data + c->len, s, n);
        c->len += n;
        c->data[c->len] = '\0';
}

static void puts_(struct imap_command *c, const char *s) {
        put(c, s, strlen(s));
}

/* Separator before an argument: none at the start of a continuation line
 * and none right after an opening parenthesis. */
static void put_sep(struct imap_command *c) {
        if (c->len > 0 && !c->error && c->data[c->len - 1] != '(')
                put(c, " ", 1);
}

/* RFC 9051 §9: ATOM-CHAR = <any CHAR except atom-specials>; ASTRING-CHAR adds "]". */
static bool is_atom_char(unsigned char ch) {
        if (ch <= 0x20 || ch >= 0x7f)
                return false;
        return !strchr("(){%*\"\\]", ch);
}

static bool is_astring_char(unsigned char ch) {
        return is_atom_char(ch) || ch == ']';
}

static bool valid_atom(const char *s, size_t n, bool astring) {
        if (n == 0)
                return false;
        for (size_t i = 0; i < n; i++)
                if (!(astring ? is_astring_char((unsigned char) s[i]) : is_atom_char((unsigned char) s[i])))
                        return false;
        return true;
}

void imap_command_begin(struct imap_writer *w, struct imap_command *c, const char *verb) {
        *c = (struct imap_command) {};
        snprintf(c->tag, sizeof(c->tag), "a%u", w->next_tag++);
        if (w->next_tag == 0)
                w->next_tag = 1;
        puts_(c, c->tag);

        /* A verb is atoms separated by single spaces ("UID FETCH"). */
        size_t n = strlen(verb);
        bool ok = n > 0 && verb[0] != ' ' && verb[n - 1] != ' ' && !strstr(verb, "  ");
        for (size_t i = 0; ok && i < n; i++)
                ok = verb[i] == ' ' || is_atom_char((unsigned char) verb[i]);
        if (!ok)
                return set_error(c, -EINVAL);
        put(c, " ", 1);
        put(c, verb, n);
}

void imap_command_begin_continuation(struct imap_command *c) {
        *c = (struct imap_command) {};
}

void imap_command_atom(struct imap_command *c, const char *atom) {
        size_t n = strlen(atom);

        if (!valid_atom(atom, n, false))
                return set_error(c, -EINVAL);
        put_sep(c);
        put(c, atom, n);
}

void imap_command_number(struct imap_command *c, uint64_t n) {
        char buf[24];

        snprintf(buf, sizeof(buf), "%llu", (unsigned long long) n);
        put_sep(c);
        puts_(c, buf);
}

void imap_command_raw(struct imap_command *c, const char *text) {
        if (strpbrk(text, "\r\n"))
                return set_error(c, -EINVAL);
        put_sep(c);
        puts_(c, text);
}

void imap_command_append(struct imap_command *c, const char *text) {
        if (strpbrk(text, "\r\n"))
                return set_error(c, -EINVAL);
        puts_(c, text);
}

static bool quotable(const struct imap_writer *w, const char *s, size_t n) {
        bool eight_bit = false;

        for (size_t i = 0; i < n; i++) {
                unsigned char ch = (unsigned char) s[i];

                if (ch == '\r' || ch == '\n')
                        return false;
                if (ch >= 0x80)
                        eight_bit = true;
        }
        /* 8-bit in a quoted string is UTF-8 and only under UTF8=ACCEPT. */
        return !eight_bit || (w->utf8 && utf8_is_valid(s, n));
}

static void put_literal(const struct imap_writer *w, struct imap_command *c, const char *s, size_t n) {
        bool nonsync = w->literal_plus || (w->literal_minus && n <= LITERAL_MINUS_MAX);
        char hdr[32];

        snprintf(hdr, sizeof(hdr), "{%zu%s}\r\n", n, nonsync ? "+" : "");
        puts_(c, hdr);
        if (!nonsync && !c->error) {
                if (c->n_sync >= IMAP_COMMAND_MAX_SYNC)
                        return set_error(c, -E2BIG);
                c->sync[c->n_sync++] = c->len;
        }
        put(c, s, n);
}

static void put_string(const struct imap_writer *w, struct imap_command *c, const char *s, size_t n,
                       bool allow_atom) {
        if (memchr(s, '\0', n))
                return set_error(c, -EINVAL);
        put_sep(c);

        /* "NIL" as an atom would read as NIL where an nstring is expected. */
        if (allow_atom && valid_atom(s, n, true) && !(n == 3 && strncasecmp(s, "NIL", 3) == 0)) {
                put(c, s, n);
                return;
        }
        if (quotable(w, s, n)) {
                put(c, "\"", 1);
                for (size_t i = 0; i < n; i++) {
                        if (s[i] == '"' || s[i] == '\\')
                                put(c, "\\", 1);
                        put(c, s + i, 1);
                }
                put(c, "\"", 1);
                return;
        }
        put_literal(w, c, s, n);
}

void imap_command_astring(struct imap_writer *w, struct imap_command *c, const char *s, size_t len) {
        put_string(w, c, s, len, true);
}

void imap_command_string(struct imap_writer *w, struct imap_command *c, const char *s, size_t len) {
        put_string(w, c, s, len, false);
}

void imap_command_mailbox(struct imap_writer *w, struct imap_command *c, const char *utf8_name) {
        _cleanup_free_ char *enc = NULL;
        int r;

        if (strcasecmp(utf8_name, "INBOX") == 0)
                return imap_command_atom(c, "INBOX");
        if (w->utf8)
                return imap_command_astring(w, c, utf8_name, strlen(utf8_name));
        r = imap_utf8_to_utf7(utf8_name, strlen(utf8_name), &enc);
        if (r < 0)
                return set_error(c, r);
        imap_command_astring(w, c, enc, strlen(enc));
}

static void mark_secret(struct imap_command *c, size_t start) {
        if (c->error)
                return;
        if (c->n_secrets >= IMAP_COMMAND_MAX_SECRETS)
                return set_error(c, -E2BIG);
        c->secrets[c->n_secrets].off = start;
        c->secrets[c->n_secrets].len = c->len - start;
        c->n_secrets++;
}

void imap_command_secret(struct imap_writer *w, struct imap_command *c, const char *s, size_t len) {
        /* put_string() writes the separator; the secret starts after it. */
        size_t start = c->len > 0 ? c->len + 1 : 0;

        put_string(w, c, s, len, true);
        mark_secret(c, start);
}

void imap_command_secret_raw(struct imap_command *c, const char *s, size_t len) {
        size_t start;

        if (memchr(s, '\0', len) || memchr(s, '\r', len) || memchr(s, '\n', len))
                return set_error(c, -EINVAL);
        put_sep(c);
        start = c->len;
        put(c, s, len);
        mark_secret(c, start);
}

int imap_command_end(struct imap_command *c) {
        put(c, "\r\n", 2);
        return c->error;
}

int imap_command_trace(const struct imap_command *c, char **ret) {
        struct imap_command t = {};
        size_t i = 0, end = c->len;

        if (c->error)
                return c->error;
        if (end >= 2 && c->data[end - 2] == '\r' && c->data[end - 1] == '\n')
                end -= 2;

        while (i < end) {
                bool secret = false;

                for (unsigned s = 0; s < c->n_secrets; s++)
                        if (c->secrets[s].off == i) {
                                puts_(&t, "<redacted>");
                                i += c->secrets[s].len;
                                secret = true;
                                break;
                        }
                if (secret)
                        continue;
                if (c->data[i] == '\r' || c->data[i] == '\n') {
                        if (c->data[i] == '\n')
                                put(&t, " ", 1);
                        i++;
                        continue;
                }
                put(&t, c->data + i, 1);
                i++;
        }
        put(&t, "", 0);
        if (t.error) {
                free(t.data);
                return t.error;
        }
        if (!t.data) {
                t.data = strdup("");
                if (!t.data)
                        return -ENOMEM;
        }
        *ret = t.data;
        return 0;
}

void imap_command_done(struct imap_command *c) {
        if (c->data) {
                /* explicit_bzero: the compiler may not drop it before free() */
                for (unsigned s = 0; s < c->n_secrets; s++)
                        if (c->secrets[s].off + c->secrets[s].len <= c->cap)
                                explicit_bzero(c->data + c->secrets[s].off, c->secrets[s].len);
                explicit_bzero(c->data, c->cap);
        }
        free(c->data);
        *c = (struct imap_command) {};
}

int imap_base64_encode(const void *data, size_t len, char **ret) {
        static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        const unsigned char *s = data;
        char *out, *o;

        if (len > (SIZE_MAX - 1) / 4 * 3 - 3)
                return -E2BIG;
        out = malloc((len + 2) / 3 * 4 + 1);
        if (!out)
                return -ENOMEM;
        o = out;
        for (size_t i = 0; i < len; i += 3) {
                unsigned v = (unsigned) s[i] << 16;

                if (i + 1 < len)
                        v |= (unsigned) s[i + 1] << 8;
                if (i + 2 < len)
                        v |= s[i + 2];
                *o++ = tbl[(v >> 18) & 63];
                *o++ = tbl[(v >> 12) & 63];
                *o++ = i + 1 < len ? tbl[(v >> 6) & 63] : '=';
                *o++ = i + 2 < len ? tbl[v & 63] : '=';
        }
        *o = '\0';
        *ret = out;
        return 0;
}
