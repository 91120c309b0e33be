/* SPDX-License-Identifier: MIT */
/*
 * imapidlectl's output formats, on a snapshot of the daemon's state. Each
 * renderer writes into an open_memstream(3) buffer; a write error there can
 * only be a failed allocation.
 */

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl-render.h"
#include "macro.h"
#include "utf8.h"

static const char *str(const char *s) {
        return s ? s : "";
}

static bool streq(const char *a, const char *b) {
        return strcmp(str(a), str(b)) == 0;
}

static bool state_is_problem(const char *state) {
        return streq(state, "error") || streq(state, "backoff");
}

void ctl_state_done(struct ctl_state *s) {
        if (!s)
                return;
        for (size_t i = 0; i < s->n_accounts; i++) {
                struct ctl_account *a = &s->accounts[i];

                free(a->name);
                free(a->host);
                free(a->user);
                free(a->state);
                free(a->last_error);
        }
        for (size_t i = 0; i < s->n_mailboxes; i++) {
                struct ctl_mailbox *m = &s->mailboxes[i];

                free(m->account);
                free(m->name);
                free(m->path);
                free(m->state);
                free(m->last_error);
        }
        free(s->accounts);
        free(s->mailboxes);
        free(s->error);
        free(s->version);
        free(s->state);
        *s = (struct ctl_state) {};
}

enum ctl_class ctl_state_class(const struct ctl_state *s) {
        switch (s->daemon) {
        case CTL_DAEMON_NOT_RUNNING:
                return CTL_CLASS_OFFLINE;
        case CTL_DAEMON_ERROR:
                return CTL_CLASS_ERROR;
        case CTL_DAEMON_RUNNING:
                break;
        }
        for (size_t i = 0; i < s->n_accounts; i++)
                if (state_is_problem(s->accounts[i].state))
                        return CTL_CLASS_ERROR;
        for (size_t i = 0; i < s->n_mailboxes; i++)
                if (state_is_problem(s->mailboxes[i].state))
                        return CTL_CLASS_ERROR;
        if (streq(s->state, "offline"))
                return CTL_CLASS_OFFLINE;
        return s->unseen_total > 0 ? CTL_CLASS_UNREAD : CTL_CLASS_NONE;
}

const char *ctl_class_to_string(enum ctl_class c) {
        static const char *const names[] = {
                [CTL_CLASS_NONE] = "none",
                [CTL_CLASS_UNREAD] = "unread",
                [CTL_CLASS_ERROR] = "error",
                [CTL_CLASS_OFFLINE] = "offline",
        };

        return (size_t) c < ELEMENTSOF(names) ? names[c] : "error";
}

int ctl_format_from_string(const char *s) {
        static const char *const names[] = {
                [CTL_FORMAT_TEXT] = "text",
                [CTL_FORMAT_JSON] = "json",
                [CTL_FORMAT_WAYBAR] = "waybar",
                [CTL_FORMAT_I3BLOCKS] = "i3blocks",
        };

        for (size_t i = 0; s && i < ELEMENTSOF(names); i++)
                if (strcmp(s, names[i]) == 0)
                        return (int) i;
        return -EINVAL;
}

/* ---- characters ---------------------------------------------------------- */

/* The next character of s (NUL-terminated): its code point, U+FFFD for an
 * ill-formed byte. Returns its length in bytes, 0 at the end. */
static size_t next_char(const char *s, uint32_t *ret_cp) {
        size_t len = strnlen(s, UTF8_CHAR_MAX);
        int n;

        if (len == 0)
                return 0;
        n = utf8_decode_char(s, len, ret_cp);
        if (n < 0) {
                *ret_cp = 0xFFFD;
                return 1;
        }
        return (size_t) n;
}

static bool is_control(uint32_t cp) {
        return cp < 0x20 || (cp >= 0x7F && cp < 0xA0);
}

static void put_cp(FILE *f, uint32_t cp) {
        char buf[UTF8_CHAR_MAX];
        int n = utf8_encode_char(cp, buf);

        if (n < 0)
                n = utf8_encode_char(0xFFFD, buf);
        fwrite(buf, 1, (size_t) n, f);
}

/* Human text: control characters as spaces, ill-formed bytes as U+FFFD; with
 * pango, also &, < and > as entities (waybar tooltips are Pango markup). */
static void put_text_full(FILE *f, const char *s, bool pango) {
        uint32_t cp;
        size_t n;

        for (s = str(s); (n = next_char(s, &cp)) > 0; s += n) {
                if (is_control(cp))
                        fputc(' ', f);
                else if (pango && cp == '&')
                        fputs("&amp;", f);
                else if (pango && cp == '<')
                        fputs("&lt;", f);
                else if (pango && cp == '>')
                        fputs("&gt;", f);
                else
                        put_cp(f, cp);
        }
}

static void put_text(FILE *f, const char *s) {
        put_text_full(f, s, false);
}

/* Columns taken by s as put_text shows it: one per character. */
static size_t text_width(const char *s) {
        uint32_t cp;
        size_t n, w = 0;

        for (s = str(s); (n = next_char(s, &cp)) > 0; s += n)
                w++;
        return w;
}

/* A JSON string (RFC 8259) with its quotes. Non-ASCII stays UTF-8, but C1
 * controls and U+2028/U+2029 are escaped too (terminals, JavaScript). */
static void put_json_string(FILE *f, const char *s) {
        uint32_t cp;
        size_t n;

        fputc('"', f);
        for (s = str(s); (n = next_char(s, &cp)) > 0; s += n)
                switch (cp) {
                case '"':
                        fputs("\\\"", f);
                        break;
                case '\\':
                        fputs("\\\\", f);
                        break;
                case '\b':
                        fputs("\\b", f);
                        break;
                case '\f':
                        fputs("\\f", f);
                        break;
                case '\n':
                        fputs("\\n", f);
                        break;
                case '\r':
                        fputs("\\r", f);
                        break;
                case '\t':
                        fputs("\\t", f);
                        break;
                default:
                        if (is_control(cp) || cp == 0x2028 || cp == 0x2029)
                                fprintf(f, "\\u%04x", (unsigned) cp);
                        else
                                put_cp(f, cp);
                }
        fputc('"', f);
}

/* ---- buffers ------------------------------------------------------------- */

struct out {
        FILE *f;
        char *buf;
        size_t size;
};

static int out_open(struct out *o) {
        *o = (struct out) {};
        o->f = open_memstream(&o->buf, &o->size);
        return o->f ? 0 : -ENOMEM;
}

/* Closes the stream; on success hands the buffer to *ret. */
static int out_close(struct out *o, char **ret) {
        bool bad = ferror(o->f);

        if (fclose(o->f) != 0 || bad || !o->buf) {
                free(o->buf);
                return -ENOMEM;
        }
        *ret = o->buf;
        return 0;
}

/* ---- the status table ---------------------------------------------------- */

#define TABLE_MAX_COLS 6

struct table {
        size_t n_cols;
        const char *header[TABLE_MAX_COLS];
        bool right[TABLE_MAX_COLS];     /* right-aligned (numbers) */
        char **cells;                   /* row-major, n_rows * n_cols, owned */
        size_t n_rows;
        bool oom;
};

static void table_done(struct table *t) {
        for (size_t i = 0; i < t->n_rows * t->n_cols; i++)
                free(t->cells[i]);
        free(t->cells);
}

/* Adds a row of n_cols strings (copied; NULL is ""). Remembers a failed
 * allocation in t->oom. */
static void table_add(struct table *t, ...) {
        char **cells;
        va_list ap;

        if (t->oom)
                return;
        cells = reallocarray(t->cells, (t->n_rows + 1) * t->n_cols, sizeof(char *));
        if (!cells) {
                t->oom = true;
                return;
        }
        t->cells = cells;
        cells += t->n_rows * t->n_cols;
        va_start(ap, t);
        for (size_t c = 0; c < t->n_cols; c++) {
                cells[c] = strdup(str(va_arg(ap, const char *)));
                if (!cells[c])
                        t->oom = true;
        }
        va_end(ap);
        t->n_rows++;
}

static void table_print_row(FILE *f, const struct table *t, const char *const *row, const size_t *width) {
        size_t last = 0;

        /* nothing after the last non-empty cell: no trailing blanks */
        for (size_t c = 0; c < t->n_cols; c++)
                if (*str(row[c]))
                        last = c;
        for (size_t c = 0; c <= last; c++) {
                size_t pad = width[c] - text_width(row[c]);

                if (c > 0)
                        fputs("  ", f);
                if (t->right[c])
                        fprintf(f, "%*s", (int) pad, "");
                put_text(f, row[c]);
                if (!t->right[c] && c < last)
                        fprintf(f, "%*s", (int) pad, "");
        }
        fputc('\n', f);
}

static void table_print(FILE *f, const struct table *t) {
        size_t width[TABLE_MAX_COLS] = {};

        for (size_t c = 0; c < t->n_cols; c++) {
                width[c] = text_width(t->header[c]);
                for (size_t r = 0; r < t->n_rows; r++) {
                        size_t w = text_width(t->cells[r * t->n_cols + c]);

                        if (w > width[c])
                                width[c] = w;
                }
        }
        table_print_row(f, t, t->header, width);
        for (size_t r = 0; r < t->n_rows; r++)
                table_print_row(f, t, (const char *const *) &t->cells[r * t->n_cols], width);
}

static const char *plural(size_t n, const char *one, const char *many) {
        return n == 1 ? one : many;
}

static void write_table(FILE *f, const struct ctl_state *s, bool *oom) {
        struct table accounts = { .n_cols = 4, .header = { "ACCOUNT", "STATE", "UNSEEN", "SERVER", "LAST ERROR" },
                                  .right = { false, false, true } };
        struct table mailboxes = { .n_cols = 5,
                                   .header = { "ACCOUNT", "MAILBOX", "STATE", "UNSEEN", "EXISTS", "LAST ERROR" },
                                   .right = { false, false, false, true, true } };
        char n1[16], n2[16];

        fputs("imapidled ", f);
        put_text(f, s->version);
        fputs(": ", f);
        put_text(f, s->state);
        fputs(s->paused ? ", notifications paused\n" : ", notifications on\n", f);
        if (s->n_accounts == 0) {
                fputs("\nNo accounts configured.\n", f);
                return;
        }

        for (size_t i = 0; i < s->n_accounts; i++)
                if (*str(s->accounts[i].last_error))
                        accounts.n_cols = 5;
        for (size_t i = 0; i < s->n_accounts; i++) {
                const struct ctl_account *a = &s->accounts[i];
                char *server = NULL;

                if (*str(a->user) && *str(a->host)) {
                        if (asprintf(&server, "%s@%s", a->user, a->host) < 0)
                                server = NULL;
                } else
                        server = strdup(str(a->host));
                if (!server)
                        *oom = true;
                snprintf(n1, sizeof(n1), "%" PRIu32, a->unseen);
                table_add(&accounts, a->name, a->state, n1, server, a->last_error);
                free(server);
        }

        for (size_t i = 0; i < s->n_mailboxes; i++)
                if (*str(s->mailboxes[i].last_error))
                        mailboxes.n_cols = 6;
        for (size_t i = 0; i < s->n_mailboxes; i++) {
                const struct ctl_mailbox *m = &s->mailboxes[i];

                snprintf(n1, sizeof(n1), "%" PRIu32, m->unseen);
                snprintf(n2, sizeof(n2), "%" PRIu32, m->exists);
                table_add(&mailboxes, m->account, m->name, m->state, n1, n2, m->last_error);
        }

        fputc('\n', f);
        table_print(f, &accounts);
        if (s->n_mailboxes > 0) {
                fputc('\n', f);
                table_print(f, &mailboxes);
        }
        fprintf(f, "\nTotal: %" PRIu32 " unseen in %zu %s of %zu %s.\n", s->unseen_total, s->n_mailboxes,
                plural(s->n_mailboxes, "mailbox", "mailboxes"), s->n_accounts,
                plural(s->n_accounts, "account", "accounts"));
        *oom = *oom || accounts.oom || mailboxes.oom;
        table_done(&accounts);
        table_done(&mailboxes);
}

int ctl_render_table(const struct ctl_state *s, char **ret) {
        struct out o;
        bool oom = false;
        int r;

        r = out_open(&o);
        if (r < 0)
                return r;
        switch (s->daemon) {
        case CTL_DAEMON_NOT_RUNNING:
                fputs("imapidled is not running.\n", o.f);
                break;
        case CTL_DAEMON_ERROR:
                fputs("imapidled: error: ", o.f);
                put_text(o.f, s->error);
                fputc('\n', o.f);
                break;
        case CTL_DAEMON_RUNNING:
                write_table(o.f, s, &oom);
                break;
        }
        r = out_close(&o, ret);
        if (r >= 0 && oom) {
                free(*ret);
                return -ENOMEM;
        }
        return r;
}

/* ---- JSON ---------------------------------------------------------------- */

static void json_member(FILE *f, const char *name, const char *value) {
        fprintf(f, ",\"%s\":", name);
        put_json_string(f, value);
}

static void write_json_mailbox(FILE *f, const struct ctl_mailbox *m) {
        fputs("{\"name\":", f);
        put_json_string(f, m->name);
        json_member(f, "path", m->path);
        json_member(f, "state", m->state);
        fprintf(f, ",\"unseen\":%" PRIu32 ",\"exists\":%" PRIu32 ",\"uid_validity\":%" PRIu32
                   ",\"uid_next\":%" PRIu32,
                m->unseen, m->exists, m->uid_validity, m->uid_next);
        json_member(f, "last_error", m->last_error);
        fputc('}', f);
}

static void write_json(FILE *f, const struct ctl_state *s) {
        fprintf(f, "{\"running\":%s,\"class\":\"%s\"", s->daemon == CTL_DAEMON_NOT_RUNNING ? "false" : "true",
                ctl_class_to_string(ctl_state_class(s)));
        if (s->daemon == CTL_DAEMON_ERROR)
                json_member(f, "error", s->error);
        if (s->daemon != CTL_DAEMON_RUNNING) {
                fputs("}\n", f);
                return;
        }
        json_member(f, "version", s->version);
        json_member(f, "state", s->state);
        fprintf(f, ",\"paused\":%s,\"unseen\":%" PRIu32 ",\"accounts\":[", s->paused ? "true" : "false",
                s->unseen_total);
        for (size_t i = 0; i < s->n_accounts; i++) {
                const struct ctl_account *a = &s->accounts[i];
                bool first = true;

                fputs(i > 0 ? ",{\"name\":" : "{\"name\":", f);
                put_json_string(f, a->name);
                json_member(f, "host", a->host);
                json_member(f, "user", a->user);
                json_member(f, "state", a->state);
                json_member(f, "last_error", a->last_error);
                fprintf(f, ",\"unseen\":%" PRIu32 ",\"mailboxes\":[", a->unseen);
                for (size_t j = 0; j < s->n_mailboxes; j++) {
                        if (!streq(s->mailboxes[j].account, a->name))
                                continue;
                        if (!first)
                                fputc(',', f);
                        first = false;
                        write_json_mailbox(f, &s->mailboxes[j]);
                }
                fputs("]}", f);
        }
        fputs("]}\n", f);
}

int ctl_render_json(const struct ctl_state *s, char **ret) {
        struct out o;
        int r;

        r = out_open(&o);
        if (r < 0)
                return r;
        write_json(o.f, s);
        return out_close(&o, ret);
}

/* ---- watch formats ------------------------------------------------------- */

/* "3 unseen (work/INBOX 2, home/INBOX 1); degraded; home: backoff: refused; notifications paused" */
static void write_text_line(FILE *f, const struct ctl_state *s) {
        bool first = true;

        if (s->daemon == CTL_DAEMON_NOT_RUNNING) {
                fputs("imapidled is not running\n", f);
                return;
        }
        if (s->daemon == CTL_DAEMON_ERROR) {
                fputs("imapidled: error: ", f);
                put_text(f, s->error);
                fputc('\n', f);
                return;
        }
        fprintf(f, "%" PRIu32 " unseen", s->unseen_total);
        for (size_t i = 0; i < s->n_mailboxes; i++) {
                const struct ctl_mailbox *m = &s->mailboxes[i];

                if (m->unseen == 0)
                        continue;
                fputs(first ? " (" : ", ", f);
                first = false;
                put_text(f, m->account);
                fputc('/', f);
                put_text(f, m->name);
                fprintf(f, " %" PRIu32, m->unseen);
        }
        if (!first)
                fputc(')', f);
        if (*str(s->state) && !streq(s->state, "ok")) {
                fputs("; ", f);
                put_text(f, s->state);
        }
        for (size_t i = 0; i < s->n_accounts; i++) {
                const struct ctl_account *a = &s->accounts[i];

                if (!state_is_problem(a->state))
                        continue;
                fputs("; ", f);
                put_text(f, a->name);
                fputs(": ", f);
                put_text(f, a->state);
                if (*str(a->last_error)) {
                        fputs(": ", f);
                        put_text(f, a->last_error);
                }
        }
        if (s->paused)
                fputs("; notifications paused", f);
        fputc('\n', f);
}

/* The waybar tooltip, Pango-escaped, lines separated by "\n". */
static void write_tooltip(FILE *f, const struct ctl_state *s) {
        const char *sep = "";

        if (s->daemon == CTL_DAEMON_NOT_RUNNING) {
                fputs("imapidled is not running", f);
                return;
        }
        if (s->daemon == CTL_DAEMON_ERROR) {
                fputs("imapidled: error: ", f);
                put_text_full(f, s->error, true);
                return;
        }
        for (size_t i = 0; i < s->n_mailboxes; i++, sep = "\n") {
                fputs(sep, f);
                put_text_full(f, s->mailboxes[i].account, true);
                fputc('/', f);
                put_text_full(f, s->mailboxes[i].name, true);
                fprintf(f, ": %" PRIu32, s->mailboxes[i].unseen);
        }
        if (s->n_mailboxes == 0) {
                fputs("no mailboxes watched", f);
                sep = "\n";
        }
        for (size_t i = 0; i < s->n_accounts; i++) {
                const struct ctl_account *a = &s->accounts[i];

                if (!state_is_problem(a->state) && !streq(a->state, "offline"))
                        continue;
                fputs(sep, f);
                put_text_full(f, a->name, true);
                fputs(": ", f);
                put_text_full(f, a->state, true);
                if (*str(a->last_error)) {
                        fputs(": ", f);
                        put_text_full(f, a->last_error, true);
                }
        }
        if (s->paused)
                fputs("\nnotifications paused", f);
}

static int write_waybar(FILE *f, const struct ctl_state *s) {
        const char *class = ctl_class_to_string(ctl_state_class(s));
        char text[16] = "";
        char *tooltip = NULL;
        struct out o;
        int r;

        r = out_open(&o);
        if (r < 0)
                return r;
        write_tooltip(o.f, s);
        r = out_close(&o, &tooltip);
        if (r < 0)
                return r;
        if (s->daemon == CTL_DAEMON_RUNNING)
                snprintf(text, sizeof(text), "%" PRIu32, s->unseen_total);
        fputs("{\"text\": ", f);
        put_json_string(f, text);
        fputs(", \"tooltip\": ", f);
        put_json_string(f, tooltip);
        fprintf(f, ", \"class\": \"%s\", \"alt\": \"%s\"}\n", class, class);
        free(tooltip);
        return 0;
}

/* Three lines: full text, short text, colour. */
static void write_i3blocks(FILE *f, const struct ctl_state *s) {
        enum ctl_class class = ctl_state_class(s);
        static const char *const colors[] = {
                [CTL_CLASS_NONE] = CTL_COLOR_NONE,
                [CTL_CLASS_UNREAD] = CTL_COLOR_UNREAD,
                [CTL_CLASS_ERROR] = CTL_COLOR_ERROR,
                [CTL_CLASS_OFFLINE] = CTL_COLOR_OFFLINE,
        };

        if (s->daemon == CTL_DAEMON_NOT_RUNNING)
                fputs("imapidled not running\noff\n", f);
        else if (s->daemon == CTL_DAEMON_ERROR)
                fputs("imapidled: error\nerr\n", f);
        else {
                fprintf(f, "%" PRIu32 " unseen", s->unseen_total);
                if (s->paused)
                        fputs(" (paused)", f);
                if (class == CTL_CLASS_OFFLINE)
                        fputs(", offline", f);
                for (size_t i = 0; i < s->n_accounts; i++)
                        if (state_is_problem(s->accounts[i].state)) {
                                fputs(", ", f);
                                put_text(f, s->accounts[i].name);
                                fputs(": ", f);
                                put_text(f, s->accounts[i].state);
                        }
                fprintf(f, "\n%" PRIu32 "%s\n", s->unseen_total, class == CTL_CLASS_ERROR ? "!" : "");
        }
        fprintf(f, "%s\n", colors[class]);
}

int ctl_render_update(const struct ctl_state *s, enum ctl_format format, char **ret) {
        struct out o;
        int r;

        r = out_open(&o);
        if (r < 0)
                return r;
        switch (format) {
        case CTL_FORMAT_JSON:
                write_json(o.f, s);
                break;
        case CTL_FORMAT_WAYBAR:
                r = write_waybar(o.f, s);
                break;
        case CTL_FORMAT_I3BLOCKS:
                write_i3blocks(o.f, s);
                break;
        case CTL_FORMAT_TEXT:
        default:
                write_text_line(o.f, s);
                break;
        }
        if (r < 0) {
                fclose(o.f);
                free(o.buf);
                return r;
        }
        return out_close(&o, ret);
}
