/* SPDX-License-Identifier: MIT */
/*
 * The configuration file: GKeyFile syntax, read in three steps.
 *
 *  1. scan_text() walks the lines once. It finds the syntax errors (with
 *     their line numbers, which GKeyFile does not give), duplicate groups
 *     and keys, drops a byte order mark and the comments after [group]
 *     headers, and records every group and key in file order. What it hands
 *     on is text GKeyFile parses as it is.
 *  2. GKeyFile parses that text and holds the values (the last one of a
 *     repeated key).
 *  3. Each group's keys are checked against the key table (unknown ones get
 *     a suggestion), their values stripped of inline comments, unescaped and
 *     converted; then the per-account rules (required keys, one password
 *     source) run.
 *
 * GLib stays in this file. Its allocator aborts on OOM, which the use of
 * GKeyFile implies anyway; our own results are malloc'ed and checked.
 */

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <limits.h>
#include <netinet/in.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "macro.h"
#include "utf8.h"

#define SCAN_ERRORS_MAX 10      /* syntax errors reported before giving up */
#define SHOWN_VALUE_MAX 96      /* bytes of a bad value quoted in a message (a fingerprint fits) */

/* ---- small helpers ------------------------------------------------------- */

static bool streq_ptr(const char *a, const char *b) {
        if (!a || !b)
                return a == b;
        return strcmp(a, b) == 0;
}

static void free_wiped(char *s) {
        if (s) {
                explicit_bzero(s, strlen(s));
                free(s);
        }
}

static void free_wipedp(char **p) {
        free_wiped(*p);
}
#define _cleanup_wipe_ _cleanup_(free_wipedp)

static void g_free_wiped(gchar *s) {
        if (s) {
                explicit_bzero(s, strlen(s));
                g_free(s);
        }
}

static void strv_free(char **l) {
        if (!l)
                return;
        for (char **p = l; *p; p++)
                free(*p);
        free(l);
}

static bool has_control(const char *s) {
        for (; *s; s++)
                if ((unsigned char) *s < 0x20 || *s == 0x7f)
                        return true;
        return false;
}

static bool ascii_blank(char c) {
        return c == ' ' || c == '\t';
}

/* Optimal string alignment distance (Levenshtein plus transpositions),
 * ignoring ASCII case. SIZE_MAX for strings longer than 64 bytes. */
static size_t edit_distance(const char *a, const char *b) {
        size_t la = strlen(a), lb = strlen(b);
        uint8_t d[65][65];

        if (la > 64 || lb > 64)
                return SIZE_MAX;
        for (size_t i = 0; i <= la; i++)
                d[i][0] = (uint8_t) i;
        for (size_t j = 0; j <= lb; j++)
                d[0][j] = (uint8_t) j;
        for (size_t i = 1; i <= la; i++)
                for (size_t j = 1; j <= lb; j++) {
                        unsigned cost = g_ascii_tolower(a[i - 1]) != g_ascii_tolower(b[j - 1]);
                        unsigned v = MIN(MIN(d[i - 1][j] + 1u, d[i][j - 1] + 1u), d[i - 1][j - 1] + cost);

                        if (i > 1 && j > 1 && g_ascii_tolower(a[i - 1]) == g_ascii_tolower(b[j - 2]) &&
                            g_ascii_tolower(a[i - 2]) == g_ascii_tolower(b[j - 1]))
                                v = MIN(v, d[i - 2][j - 2] + 1u);
                        d[i][j] = (uint8_t) v;
                }
        return d[la][lb];
}

/* Close enough to suggest: a typo or two, more for long names. */
static bool is_close(const char *typed, const char *known, size_t *ret_distance) {
        size_t d = edit_distance(typed, known);

        *ret_distance = d;
        return (d <= 2 && d < strlen(typed)) || (d != SIZE_MAX && d * 3 <= strlen(known));
}

/* s made fit for a one-line message: control characters, '"' and '\' as
 * escapes, cut after SHOWN_VALUE_MAX bytes (at a character boundary) with
 * "...". NULL on OOM. */
static char *shown(const char *s) {
        size_t len = strlen(s), cut = utf8_truncate(s, len, SHOWN_VALUE_MAX), n = 0;
        char *out = malloc(cut * 4 + sizeof("..."));

        if (!out)
                return NULL;
        for (size_t i = 0; i < cut; i++) {
                unsigned char c = (unsigned char) s[i];

                if (c == '"' || c == '\\') {
                        out[n++] = '\\';
                        out[n++] = (char) c;
                } else if (c == '\n') {
                        out[n++] = '\\';
                        out[n++] = 'n';
                } else if (c == '\t') {
                        out[n++] = '\\';
                        out[n++] = 't';
                } else if (c < 0x20 || c == 0x7f)
                        n += (size_t) sprintf(out + n, "\\x%02x", c);
                else
                        out[n++] = (char) c;
        }
        if (cut < len) {
                memcpy(out + n, "...", 3);
                n += 3;
        }
        out[n] = '\0';
        return out;
}

/* ---- diagnostics --------------------------------------------------------- */

struct ctx {
        struct config_diag *diag;       /* may be NULL */
        size_t n_errors;
        bool oom;                       /* a message or result could not be allocated */
};

_attribute_printf_(3, 0)
static void diag_addv(struct ctx *ctx, enum config_diag_severity sev, const char *fmt, va_list ap) {
        struct config_diag_item *e;
        char *m = NULL;

        if (sev == CONFIG_DIAG_ERROR)
                ctx->n_errors++;
        if (!ctx->diag)
                return;
        if (vasprintf(&m, fmt, ap) < 0) {
                ctx->oom = true;
                return;
        }
        e = realloc(ctx->diag->items, (ctx->diag->n + 1) * sizeof(*e));
        if (!e) {
                free(m);
                ctx->oom = true;
                return;
        }
        ctx->diag->items = e;
        e[ctx->diag->n++] = (struct config_diag_item) { .severity = sev, .message = m };
        if (sev == CONFIG_DIAG_ERROR)
                ctx->diag->n_errors++;
        else
                ctx->diag->n_warnings++;
}

_attribute_printf_(3, 4)
static void diag_add(struct ctx *ctx, enum config_diag_severity sev, const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        diag_addv(ctx, sev, fmt, ap);
        va_end(ap);
}

#define diag_error(ctx, ...)   diag_add((ctx), CONFIG_DIAG_ERROR, __VA_ARGS__)
#define diag_warning(ctx, ...) diag_add((ctx), CONFIG_DIAG_WARNING, __VA_ARGS__)

/* A key being read: where messages about it go and how to name it. */
struct keyctx {
        struct ctx *ctx;
        const char *group;
        const char *key;
        bool secret;                    /* never quote the value */
};

_attribute_printf_(3, 4)
static void key_diag(const struct keyctx *k, enum config_diag_severity sev, const char *fmt, ...) {
        _cleanup_free_ char *body = NULL;
        va_list ap;
        int r;

        va_start(ap, fmt);
        r = vasprintf(&body, fmt, ap);
        va_end(ap);
        if (r < 0) {
                body = NULL;
                k->ctx->oom = true;
                if (sev == CONFIG_DIAG_ERROR)
                        k->ctx->n_errors++;
                return;
        }
        diag_add(k->ctx, sev, "[%s] %s: %s", k->group, k->key, body);
}

/* "[group] key: expected WHAT, got "VALUE"" (no value for secret keys). */
static void key_expected(const struct keyctx *k, const char *what, const char *value) {
        _cleanup_free_ char *v = NULL;

        if (k->secret) {
                key_diag(k, CONFIG_DIAG_ERROR, "expected %s", what);
                return;
        }
        v = shown(value);
        if (!v) {
                k->ctx->oom = true;
                k->ctx->n_errors++;
                return;
        }
        key_diag(k, CONFIG_DIAG_ERROR, "expected %s, got \"%s\"", what, v);
}

void config_diag_done(struct config_diag *d) {
        if (!d)
                return;
        for (size_t i = 0; i < d->n; i++)
                free(d->items[i].message);
        free(d->items);
        *d = (struct config_diag) {};
}

void config_diag_log(const struct config_diag *d, const char *prefix) {
        if (!d)
                return;
        for (size_t i = 0; i < d->n; i++) {
                if (d->items[i].severity == CONFIG_DIAG_ERROR)
                        log_error("%s%s", prefix ?: "", d->items[i].message);
                else
                        log_warning("%s%s", prefix ?: "", d->items[i].message);
        }
}

/* ---- scalar parsers ------------------------------------------------------ */

int config_parse_duration(const char *s, uint64_t *ret_usec) {
        static const struct {
                const char *suffix;
                uint64_t usec;
        } units[] = {
                { "", 1000000 }, { "ms", 1000 }, { "s", 1000000 }, { "m", 60 * UINT64_C(1000000) },
                { "h", 3600 * UINT64_C(1000000) },
        };
        uint64_t n = 0;
        const char *p = s;
        bool overflow = false;

        if (!s || !(*p >= '0' && *p <= '9'))
                return -EINVAL;
        /* read every digit before deciding: junk after too many digits is junk */
        for (; *p >= '0' && *p <= '9'; p++) {
                if (n > (UINT64_MAX - (uint64_t) (*p - '0')) / 10)
                        overflow = true;
                n = n * 10 + (uint64_t) (*p - '0');
        }
        for (size_t i = 0; i < ELEMENTSOF(units); i++)
                if (strcmp(p, units[i].suffix) == 0) {
                        if (overflow || n > UINT64_MAX / units[i].usec)
                                return -ERANGE;
                        *ret_usec = n * units[i].usec;
                        return 0;
                }
        return -EINVAL;
}

static int parse_bool(const char *s, bool *ret) {
        static const char *const yes[] = { "true", "yes", "on", "1" }, *const no[] = { "false", "no", "off", "0" };

        for (size_t i = 0; i < ELEMENTSOF(yes); i++) {
                if (strcasecmp(s, yes[i]) == 0) {
                        *ret = true;
                        return 0;
                }
                if (strcasecmp(s, no[i]) == 0) {
                        *ret = false;
                        return 0;
                }
        }
        return -EINVAL;
}

/* Decimal digits only, within [min, max]. */
static int parse_uint(const char *s, unsigned min, unsigned max, unsigned *ret) {
        unsigned long v = 0;

        if (!*s)
                return -EINVAL;
        for (const char *p = s; *p; p++) {
                if (*p < '0' || *p > '9')
                        return -EINVAL;
                v = v * 10 + (unsigned long) (*p - '0');
                if (v > max)
                        return -ERANGE;
        }
        if (v < min)
                return -ERANGE;
        *ret = (unsigned) v;
        return 0;
}

/* "sha256:" (any case) and 64 hex digits, optionally with ':' between the
 * bytes, to "sha256:" + 64 lowercase hex digits. */
static int normalize_fingerprint(const char *s, char **ret) {
        char hex[65];
        size_t n = 0;
        char *out;

        if (strncasecmp(s, "sha256:", 7) != 0)
                return -EINVAL;
        for (s += 7; *s; s++) {
                if (*s == ':') {
                        if (n == 0 || n % 2 != 0 || !g_ascii_isxdigit(s[1]))
                                return -EINVAL;
                        continue;
                }
                if (!g_ascii_isxdigit(*s) || n >= 64)
                        return -EINVAL;
                hex[n++] = g_ascii_tolower(*s);
        }
        if (n != 64)
                return -EINVAL;
        hex[n] = '\0';
        if (asprintf(&out, "sha256:%s", hex) < 0)
                return -ENOMEM;
        *ret = out;
        return 0;
}

/* The home directory: $HOME if absolute, else the passwd entry's. Returns
 * a malloc'ed string, or NULL with errno set (ENOMEM, ENXIO). */
static char *home_dir(void) {
        const char *e = getenv("HOME");
        struct passwd pw, *result = NULL;
        char buf[4096];
        char *h;

        if (e && e[0] == '/')
                return strdup(e);
        if (getpwuid_r(getuid(), &pw, buf, sizeof(buf), &result) != 0 || !result || !result->pw_dir ||
            result->pw_dir[0] != '/') {
                errno = ENXIO;
                return NULL;
        }
        h = strdup(result->pw_dir);
        return h;
}

char *config_default_path(void) {
        const char *e = getenv("XDG_CONFIG_HOME");
        _cleanup_free_ char *home = NULL;
        char *p;
        size_t n;

        if (e && e[0] == '/') {
                n = strlen(e);
                while (n > 1 && e[n - 1] == '/')
                        n--;
                if (asprintf(&p, "%.*s/imapidled/config", (int) n, e) < 0) {
                        errno = ENOMEM;
                        return NULL;
                }
                return p;
        }
        home = home_dir();
        if (!home)
                return NULL;
        n = strlen(home);
        while (n > 1 && home[n - 1] == '/')
                n--;
        if (asprintf(&p, "%.*s/.config/imapidled/config", n > 1 ? (int) n : 0, home) < 0) {
                errno = ENOMEM;
                return NULL;
        }
        return p;
}

/* ---- values: comments, escapes, lists ------------------------------------ */

/* Cuts an inline comment and the blanks before it from a raw GKeyFile value
 * (whose leading blanks GKeyFile already removed), in place. A comment is a
 * '#' at the start or after a blank; in shell values not inside quotes.
 * Backslash escapes are skipped over, so "\#" stays. */
static void strip_comment(char *v, bool shell) {
        size_t end = 0;
        char quote = 0;

        for (size_t i = 0; v[i]; i++) {
                char c = v[i];

                if (c == '\\' && v[i + 1]) {
                        i++;
                        end = i + 1;
                        continue;
                }
                if (quote) {
                        if (c == quote)
                                quote = 0;
                        end = i + 1;
                        continue;
                }
                if (shell && (c == '\'' || c == '"')) {
                        quote = c;
                        end = i + 1;
                        continue;
                }
                if (c == '#' && (i == 0 || ascii_blank(v[i - 1])))
                        break;
                if (!ascii_blank(c))
                        end = i + 1;
        }
        v[end] = '\0';
}

/* GKeyFile's escapes \s \n \t \r \\ plus \# and \; in s[0 .. len). On
 * success *ret is malloc'ed. -EINVAL with *ret_bad the character after the
 * backslash ('\0' for a backslash at the end); -ENOMEM. */
static int unescape(const char *s, size_t len, char **ret, char *ret_bad) {
        _cleanup_wipe_ char *out = malloc(len + 1);
        size_t n = 0;

        if (!out)
                return -ENOMEM;
        for (size_t i = 0; i < len; i++) {
                if (s[i] != '\\') {
                        out[n++] = s[i];
                        continue;
                }
                out[n] = '\0';
                if (++i >= len) {
                        *ret_bad = '\0';
                        return -EINVAL;
                }
                switch (s[i]) {
                case 's':  out[n++] = ' '; break;
                case 'n':  out[n++] = '\n'; break;
                case 't':  out[n++] = '\t'; break;
                case 'r':  out[n++] = '\r'; break;
                case '\\': out[n++] = '\\'; break;
                case '#':  out[n++] = '#'; break;
                case ';':  out[n++] = ';'; break;
                default:
                        *ret_bad = s[i];
                        return -EINVAL;
                }
        }
        out[n] = '\0';
        *ret = TAKE_PTR(out);
        return 0;
}

/* Unescapes s[0 .. len) for key k; reports a bad escape. Returns 0,
 * -EINVAL (reported) or -ENOMEM. */
static int value_unescape(const struct keyctx *k, const char *s, size_t len, char **ret) {
        char bad = 0;
        int r;

        r = unescape(s, len, ret, &bad);
        if (r == -EINVAL) {
                if (bad == '\0')
                        key_diag(k, CONFIG_DIAG_ERROR, "ends with a lone backslash; write \"\\\\\" for a backslash");
                else if (!k->secret && bad > 0x20 && bad < 0x7f)
                        key_diag(k, CONFIG_DIAG_ERROR,
                                 "invalid escape sequence \"\\%c\"; write \"\\\\\" for a backslash", bad);
                else
                        key_diag(k, CONFIG_DIAG_ERROR, "invalid escape sequence; write \"\\\\\" for a backslash");
        }
        return r;
}

/* ---- the scanner ---------------------------------------------------------- */

struct scan_key {
        char *name;
        unsigned line;                  /* where it first appears */
};

struct scan_group {
        char *name;
        unsigned line;
        GPtrArray *keys;                /* struct scan_key *, in order of first appearance */
        GHashTable *by_name;            /* name → struct scan_key * (borrowed from keys) */
};

struct scan {
        GPtrArray *groups;              /* struct scan_group *, in file order */
        GHashTable *by_name;            /* name → struct scan_group * (borrowed) */
        GString *text;                  /* for GKeyFile */
        unsigned n_syntax_errors;
};

static void scan_key_free(gpointer p) {
        struct scan_key *k = p;

        g_free(k->name);
        g_free(k);
}

static void scan_group_free(gpointer p) {
        struct scan_group *g = p;

        g_hash_table_unref(g->by_name);
        g_ptr_array_unref(g->keys);
        g_free(g->name);
        g_free(g);
}

static void scan_init(struct scan *sc) {
        sc->groups = g_ptr_array_new_with_free_func(scan_group_free);
        sc->by_name = g_hash_table_new(g_str_hash, g_str_equal);
        sc->text = g_string_new(NULL);
        sc->n_syntax_errors = 0;
}

static void scan_done(struct scan *sc) {
        if (sc->by_name)
                g_hash_table_unref(sc->by_name);
        if (sc->groups)
                g_ptr_array_unref(sc->groups);
        if (sc->text) {
                explicit_bzero(sc->text->str, sc->text->allocated_len);
                g_string_free(sc->text, TRUE);
        }
        *sc = (struct scan) {};
}

_attribute_printf_(4, 5)
static void scan_error(struct ctx *ctx, struct scan *sc, unsigned line, const char *fmt, ...) {
        _cleanup_free_ char *body = NULL;
        va_list ap;
        int r;

        sc->n_syntax_errors++;
        if (sc->n_syntax_errors > SCAN_ERRORS_MAX)
                return;
        va_start(ap, fmt);
        r = vasprintf(&body, fmt, ap);
        va_end(ap);
        if (r < 0) {
                body = NULL;
                ctx->oom = true;
                ctx->n_errors++;
                return;
        }
        diag_error(ctx, "line %u: %s", line, body);
}

static bool key_has_valid_brackets(const char *k, size_t len) {
        const char *open = memchr(k, '[', len);

        /* GKeyFile allows one "[locale]" suffix: name[ll_CC.enc@mod] */
        if (!open || open == k || k[len - 1] != ']' || open + 2 > k + len - 1)
                return false;
        for (const char *p = open + 1; p < k + len - 1; p++)
                if (!g_ascii_isalnum(*p) && !strchr("-_.@", *p))
                        return false;
        return memchr(k, ']', len) == k + len - 1;
}

/* One line, without its terminator: classify it, check it, record it. */
static void scan_line(struct ctx *ctx, struct scan *sc, unsigned line, const char *p, size_t len,
                      struct scan_group **current) {
        const char *end = p + len, *s = p;

        if (memchr(p, '\0', len)) {
                scan_error(ctx, sc, line, "contains a NUL byte");
                return;
        }
        if (!utf8_is_valid(p, len)) {
                scan_error(ctx, sc, line, "not valid UTF-8");
                return;
        }
        while (s < end && g_ascii_isspace(*s))
                s++;
        if (s == end || *s == '#') {
                g_string_append_c(sc->text, '\n');
                return;
        }

        if (*s == '[') {
                const char *close = memchr(s, ']', (size_t) (end - s)), *t;
                struct scan_group *g;
                g_autofree char *name = NULL;

                if (!close) {
                        scan_error(ctx, sc, line, "expected \"]\" at the end of the group name");
                        return;
                }
                for (t = close + 1; t < end && ascii_blank(*t); t++)
                        ;
                if (t < end && *t != '#') {
                        scan_error(ctx, sc, line, "unexpected text after \"]\"");
                        return;
                }
                name = g_strndup(s + 1, (size_t) (close - s - 1));
                if (!*name) {
                        scan_error(ctx, sc, line, "empty group name");
                        return;
                }
                if (strchr(name, '[')) {
                        scan_error(ctx, sc, line, "\"[\" in a group name");
                        return;
                }
                if (has_control(name)) {
                        scan_error(ctx, sc, line, "control character in a group name");
                        return;
                }
                g_string_append_printf(sc->text, "[%s]\n", name);

                g = g_hash_table_lookup(sc->by_name, name);
                if (g)
                        diag_warning(ctx, "[%s]: appears more than once (lines %u and %u); their keys are merged",
                                     name, g->line, line);
                else {
                        g = g_new0(struct scan_group, 1);
                        g->name = TAKE_PTR(name);
                        g->line = line;
                        g->keys = g_ptr_array_new_with_free_func(scan_key_free);
                        g->by_name = g_hash_table_new(g_str_hash, g_str_equal);
                        g_ptr_array_add(sc->groups, g);
                        g_hash_table_insert(sc->by_name, g->name, g);
                }
                *current = g;
                return;
        }

        const char *eq = memchr(s, '=', (size_t) (end - s)), *kend;
        g_autofree char *key = NULL;
        struct scan_key *k;

        if (!eq) {
                /* not quoted: the line may be a password someone forgot the key of */
                scan_error(ctx, sc, line, "expected \"[group]\", \"key = value\" or a \"#\" comment");
                return;
        }
        for (kend = eq; kend > s && g_ascii_isspace(kend[-1]); kend--)
                ;
        if (kend == s) {
                scan_error(ctx, sc, line, "no key before \"=\"");
                return;
        }
        key = g_strndup(s, (size_t) (kend - s));
        if (has_control(key)) {
                scan_error(ctx, sc, line, "control character in a key name");
                return;
        }
        if ((strchr(key, '[') || strchr(key, ']')) && !key_has_valid_brackets(key, strlen(key))) {
                g_autofree char *v = shown(key);

                scan_error(ctx, sc, line, "invalid key name \"%s\"", v ?: "");
                return;
        }
        if (!*current) {
                scan_error(ctx, sc, line, "key \"%s\" before any group; start with [general] or [account NAME]",
                           key);
                return;
        }
        g_string_append_len(sc->text, s, end - s);
        g_string_append_c(sc->text, '\n');

        k = g_hash_table_lookup((*current)->by_name, key);
        if (k) {
                diag_warning(ctx, "[%s] %s: set more than once (lines %u and %u); the last value is used",
                             (*current)->name, key, k->line, line);
                return;
        }
        k = g_new0(struct scan_key, 1);
        k->name = TAKE_PTR(key);
        k->line = line;
        g_ptr_array_add((*current)->keys, k);
        g_hash_table_insert((*current)->by_name, k->name, k);
}

static void scan_text(struct ctx *ctx, struct scan *sc, const char *text, size_t len) {
        struct scan_group *current = NULL;
        const char *p = text, *end = text + len;
        unsigned line = 1;

        if (len >= 3 && memcmp(p, "\xef\xbb\xbf", 3) == 0)
                p += 3;
        for (; p < end; line++) {
                const char *nl = memchr(p, '\n', (size_t) (end - p));
                size_t n = (size_t) ((nl ?: end) - p);

                if (n > 0 && p[n - 1] == '\r')
                        n--;
                scan_line(ctx, sc, line, p, n, &current);
                if (!nl)
                        break;
                p = nl + 1;
        }
        if (sc->n_syntax_errors > SCAN_ERRORS_MAX)
                diag_error(ctx, "%u more syntax errors not shown", sc->n_syntax_errors - SCAN_ERRORS_MAX);
}

/* ---- keys ------------------------------------------------------------------ */

enum key_id {
        /* the notification keys: [general], and per account as overrides */
        KEY_NOTIFY,
        KEY_NOTIFY_SHOW_CONTENT,
        KEY_NOTIFY_MAX_INDIVIDUAL,
        KEY_NOTIFY_TIMEOUT,
        KEY_OPEN_COMMAND,
        KEY_ON_NEW_MAIL,
        KEY_ON_CHANGE,
        KEY_HOOK_DEBOUNCE,
        _KEY_NOTIFY_MAX,
        KEY_LOG_LEVEL = _KEY_NOTIFY_MAX,
        KEY_HOST,
        KEY_PORT,
        KEY_TLS,
        KEY_CA_FILE,
        KEY_TLS_FINGERPRINT,
        KEY_USER,
        KEY_AUTH,
        KEY_PASSWORD_COMMAND,           /* the four in enum secret_source order */
        KEY_PASSWORD_FILE,
        KEY_PASSWORD_CREDENTIAL,
        KEY_PASSWORD,
        KEY_MAILBOXES,
        KEY_MAX_CONNECTIONS,
        KEY_IDLE_REFRESH,
        _KEY_MAX,
};

enum {
        IN_GENERAL = 1 << 0,
        IN_ACCOUNT = 1 << 1,
};

enum {
        KEY_SHELL = 1 << 0,             /* a shell command: '#' inside quotes is no comment */
        KEY_SECRET = 1 << 1,            /* never quote the value */
};

static const struct key_def {
        const char *name;
        unsigned where;
        unsigned flags;
} key_defs[_KEY_MAX] = {
        [KEY_NOTIFY]                = { "notify",                IN_GENERAL | IN_ACCOUNT, 0 },
        [KEY_NOTIFY_SHOW_CONTENT]   = { "notify_show_content",   IN_GENERAL | IN_ACCOUNT, 0 },
        [KEY_NOTIFY_MAX_INDIVIDUAL] = { "notify_max_individual", IN_GENERAL | IN_ACCOUNT, 0 },
        [KEY_NOTIFY_TIMEOUT]        = { "notify_timeout",        IN_GENERAL | IN_ACCOUNT, 0 },
        [KEY_OPEN_COMMAND]          = { "open_command",          IN_GENERAL | IN_ACCOUNT, KEY_SHELL },
        [KEY_ON_NEW_MAIL]           = { "on_new_mail",           IN_GENERAL | IN_ACCOUNT, KEY_SHELL },
        [KEY_ON_CHANGE]             = { "on_change",             IN_GENERAL | IN_ACCOUNT, KEY_SHELL },
        [KEY_HOOK_DEBOUNCE]         = { "hook_debounce",         IN_GENERAL | IN_ACCOUNT, 0 },
        [KEY_LOG_LEVEL]             = { "log_level",             IN_GENERAL, 0 },
        [KEY_HOST]                  = { "host",                  IN_ACCOUNT, 0 },
        [KEY_PORT]                  = { "port",                  IN_ACCOUNT, 0 },
        [KEY_TLS]                   = { "tls",                   IN_ACCOUNT, 0 },
        [KEY_CA_FILE]               = { "ca_file",               IN_ACCOUNT, 0 },
        [KEY_TLS_FINGERPRINT]       = { "tls_fingerprint",       IN_ACCOUNT, 0 },
        [KEY_USER]                  = { "user",                  IN_ACCOUNT, 0 },
        [KEY_AUTH]                  = { "auth",                  IN_ACCOUNT, 0 },
        [KEY_PASSWORD_COMMAND]      = { "password_command",      IN_ACCOUNT, KEY_SHELL | KEY_SECRET },
        [KEY_PASSWORD_FILE]         = { "password_file",         IN_ACCOUNT, 0 },
        [KEY_PASSWORD_CREDENTIAL]   = { "password_credential",   IN_ACCOUNT, 0 },
        [KEY_PASSWORD]              = { "password",              IN_ACCOUNT, KEY_SECRET },
        [KEY_MAILBOXES]             = { "mailboxes",             IN_ACCOUNT, 0 },
        [KEY_MAX_CONNECTIONS]       = { "max_connections",       IN_ACCOUNT, 0 },
        [KEY_IDLE_REFRESH]          = { "idle_refresh",          IN_ACCOUNT, 0 },
};

static int key_lookup(const char *name) {
        for (int i = 0; i < _KEY_MAX; i++)
                if (strcmp(key_defs[i].name, name) == 0)
                        return i;
        return -1;
}

/*
 * Collects the values of group g's keys, valid in `where`, into raw[]
 * (g_malloc'ed, inline comment cut, escapes still in; NULL: key absent).
 * Unknown keys and keys of the other kind of group are warned about.
 */
static void group_collect(struct ctx *ctx, GKeyFile *kf, const struct scan_group *g, unsigned where,
                          gchar *raw[_KEY_MAX]) {
        for (guint i = 0; i < g->keys->len; i++) {
                const struct scan_key *sk = g_ptr_array_index(g->keys, i);
                int id = key_lookup(sk->name);

                if (id < 0) {
                        const char *best = NULL;
                        size_t best_d = SIZE_MAX, d;

                        for (int j = 0; j < _KEY_MAX; j++)
                                if ((key_defs[j].where & where) && is_close(sk->name, key_defs[j].name, &d) &&
                                    d < best_d) {
                                        best = key_defs[j].name;
                                        best_d = d;
                                }
                        if (best)
                                diag_warning(ctx, "[%s] %s: unknown key, did you mean \"%s\"?", g->name, sk->name,
                                             best);
                        else
                                diag_warning(ctx, "[%s] %s: unknown key", g->name, sk->name);
                        continue;
                }
                if (!(key_defs[id].where & where)) {
                        if (key_defs[id].where & IN_GENERAL)
                                diag_warning(ctx, "[%s] %s: only valid in [general], ignoring", g->name, sk->name);
                        else
                                diag_warning(ctx, "[%s] %s: only valid in [account NAME] groups, ignoring",
                                             g->name, sk->name);
                        continue;
                }
                raw[id] = g_key_file_get_value(kf, g->name, sk->name, NULL);
                if (raw[id])
                        strip_comment(raw[id], key_defs[id].flags & KEY_SHELL);
        }
}

static void raw_free(gchar *raw[_KEY_MAX]) {
        for (int i = 0; i < _KEY_MAX; i++)
                g_free_wiped(TAKE_PTR(raw[i]));
}

static struct keyctx keyctx_make(struct ctx *ctx, const char *group, int id) {
        return (struct keyctx) {
                .ctx = ctx,
                .group = group,
                .key = key_defs[id].name,
                .secret = key_defs[id].flags & KEY_SECRET,
        };
}

/* ---- [general] and the notification keys ----------------------------------- */

static void notify_done(struct config_notify *n) {
        free(n->open_command);
        free(n->on_new_mail);
        free(n->on_change);
        *n = (struct config_notify) {};
}

static void notify_defaults(struct config_notify *n) {
        *n = (struct config_notify) {
                .notify = true,
                .notify_show_content = true,
                .notify_max_individual = CONFIG_NOTIFY_MAX_INDIVIDUAL_DEFAULT,
                .notify_timeout = CONFIG_NOTIFY_TIMEOUT_DEFAULT,
                .hook_debounce_usec = CONFIG_HOOK_DEBOUNCE_DEFAULT,
        };
}

static char **notify_command(struct config_notify *n, int id) {
        switch (id) {
        case KEY_OPEN_COMMAND: return &n->open_command;
        case KEY_ON_NEW_MAIL:  return &n->on_new_mail;
        case KEY_ON_CHANGE:    return &n->on_change;
        default:               return NULL;
        }
}

/* Parses notification key id (value v, unescaped) into n. Returns 1 when
 * the key counts as set, 0 when it is empty (the default applies) or
 * invalid (reported), -ENOMEM. */
static int notify_parse(const struct keyctx *k, int id, const char *v, struct config_notify *n) {
        uint64_t usec;
        unsigned u;
        char **cmd;

        cmd = notify_command(n, id);
        if (cmd) {
                char *c = NULL;

                if (*v && !(c = strdup(v)))
                        return -ENOMEM;
                free(*cmd);
                *cmd = c;
                return 1;
        }
        if (!*v)
                return 0;

        switch (id) {
        case KEY_NOTIFY:
        case KEY_NOTIFY_SHOW_CONTENT: {
                bool b;

                if (parse_bool(v, &b) < 0) {
                        key_expected(k, "true or false", v);
                        return 0;
                }
                if (id == KEY_NOTIFY)
                        n->notify = b;
                else
                        n->notify_show_content = b;
                return 1;
        }
        case KEY_NOTIFY_MAX_INDIVIDUAL:
                if (parse_uint(v, 0, CONFIG_NOTIFY_MAX_INDIVIDUAL_MAX, &u) < 0) {
                        key_expected(k, "0-1000", v);
                        return 0;
                }
                n->notify_max_individual = u;
                return 1;
        case KEY_NOTIFY_TIMEOUT:
                if (strcasecmp(v, "default") == 0) {
                        n->notify_timeout = CONFIG_NOTIFY_TIMEOUT_DEFAULT;
                        n->notify_timeout_usec = 0;
                } else if (strcasecmp(v, "never") == 0) {
                        n->notify_timeout = CONFIG_NOTIFY_TIMEOUT_NEVER;
                        n->notify_timeout_usec = 0;
                } else if (config_parse_duration(v, &usec) >= 0 && usec >= 1000 &&
                           usec <= CONFIG_NOTIFY_TIMEOUT_MAX) {
                        n->notify_timeout = CONFIG_NOTIFY_TIMEOUT_DURATION;
                        n->notify_timeout_usec = usec;
                } else {
                        key_expected(k, "default, never or a duration from 1ms to 24h", v);
                        return 0;
                }
                return 1;
        case KEY_HOOK_DEBOUNCE:
                if (config_parse_duration(v, &usec) < 0 || usec > CONFIG_HOOK_DEBOUNCE_MAX) {
                        key_expected(k, "a duration from 0s to 1h", v);
                        return 0;
                }
                n->hook_debounce_usec = usec;
                return 1;
        default:
                assert(false);
                return 0;
        }
}

/* out = the fields set[] in ov, the others from gen. Strings are copied. */
static int notify_resolve(const struct config_notify *gen, const struct config_notify *ov,
                          const bool set[_KEY_NOTIFY_MAX], struct config_notify *out) {
        const struct config_notify *src;

        *out = (struct config_notify) {
                .notify = (set[KEY_NOTIFY] ? ov : gen)->notify,
                .notify_show_content = (set[KEY_NOTIFY_SHOW_CONTENT] ? ov : gen)->notify_show_content,
                .notify_max_individual = (set[KEY_NOTIFY_MAX_INDIVIDUAL] ? ov : gen)->notify_max_individual,
                .notify_timeout = (set[KEY_NOTIFY_TIMEOUT] ? ov : gen)->notify_timeout,
                .notify_timeout_usec = (set[KEY_NOTIFY_TIMEOUT] ? ov : gen)->notify_timeout_usec,
                .hook_debounce_usec = (set[KEY_HOOK_DEBOUNCE] ? ov : gen)->hook_debounce_usec,
        };
        for (int id = KEY_OPEN_COMMAND; id <= KEY_ON_CHANGE; id++) {
                char **to = notify_command(out, id);
                const char *from;

                src = set[id] ? ov : gen;
                from = *notify_command((struct config_notify *) src, id);
                if (from && !(*to = strdup(from))) {
                        notify_done(out);
                        return -ENOMEM;
                }
        }
        return 0;
}

static int parse_general(struct ctx *ctx, GKeyFile *kf, const struct scan_group *g, struct config *c) {
        gchar *raw[_KEY_MAX] = {};
        int r = 0;

        group_collect(ctx, kf, g, IN_GENERAL, raw);
        for (int id = 0; id < _KEY_MAX && r >= 0; id++) {
                struct keyctx k = keyctx_make(ctx, g->name, id);
                _cleanup_wipe_ char *v = NULL;

                if (!raw[id])
                        continue;
                r = value_unescape(&k, raw[id], strlen(raw[id]), &v);
                if (r == -EINVAL) {
                        r = 0;
                        continue;
                }
                if (r < 0)
                        break;
                if (id == KEY_LOG_LEVEL) {
                        int level;

                        if (!*v)
                                continue;
                        level = log_level_from_string(v);
                        if (level < 0)
                                key_expected(&k, "error, warning, info or debug", v);
                        else
                                c->log_level = level;
                        continue;
                }
                r = notify_parse(&k, id, v, &c->notify);
        }
        raw_free(raw);
        return r < 0 ? r : 0;
}

/* ---- accounts ---------------------------------------------------------------- */

static void account_done(struct config_account *a) {
        free(a->id);
        free(a->host);
        free(a->ca_file);
        free(a->tls_fingerprint);
        free(a->user);
        free_wiped(a->secret_value);
        strv_free(a->mailboxes);
        notify_done(&a->notify);
        *a = (struct config_account) {};
}

static int strdup_null(const char *s, char **ret) {
        *ret = NULL;
        if (s && !(*ret = strdup(s)))
                return -ENOMEM;
        return 0;
}

struct config_account *config_account_free(struct config_account *a) {
        if (!a)
                return NULL;
        account_done(a);
        free(a);
        return NULL;
}

struct config_account *config_account_dup(const struct config_account *a) {
        static const bool none[_KEY_NOTIFY_MAX] = {};
        struct config_account *n;

        assert(a);
        n = calloc(1, sizeof(*n));
        if (!n)
                return NULL;
        n->port = a->port;
        n->tls = a->tls;
        n->auth = a->auth;
        n->secret_source = a->secret_source;
        n->max_connections = a->max_connections;
        n->idle_refresh_usec = a->idle_refresh_usec;
        if (strdup_null(a->id, &n->id) < 0 || strdup_null(a->host, &n->host) < 0 ||
            strdup_null(a->ca_file, &n->ca_file) < 0 || strdup_null(a->tls_fingerprint, &n->tls_fingerprint) < 0 ||
            strdup_null(a->user, &n->user) < 0 || strdup_null(a->secret_value, &n->secret_value) < 0 ||
            notify_resolve(&a->notify, &a->notify, none, &n->notify) < 0)
                return config_account_free(n);
        if (a->mailboxes) {
                n->mailboxes = calloc(a->n_mailboxes + 1, sizeof(char *));
                if (!n->mailboxes)
                        return config_account_free(n);
                for (size_t i = 0; i < a->n_mailboxes; i++)
                        if (!(n->mailboxes[i] = strdup(a->mailboxes[i])))
                                return config_account_free(n);
                n->n_mailboxes = a->n_mailboxes;
        }
        return n;
}

/* Why an account id is not acceptable, or NULL. */
static const char *account_id_problem(const char *id) {
        if (!*id)
                return "missing account name; write [account NAME]";
        if (ascii_blank(id[0]) || ascii_blank(id[strlen(id) - 1]))
                return "the account name must not start or end with a blank";
        if (strchr(id, '/'))
                return "the account name must not contain \"/\"";
        if (streq_ptr(id, ".") || streq_ptr(id, ".."))
                return "the account name must not be \".\" or \"..\"";
        return NULL;
}

/* A leading "~" or "~/" expanded; anything but an absolute path refused
 * (reported). Returns 0 and *ret, -EINVAL (reported) or -ENOMEM. */
static int expand_path(const struct keyctx *k, const char *v, char **ret) {
        _cleanup_free_ char *home = NULL;
        char *p;

        if (has_control(v)) {
                key_diag(k, CONFIG_DIAG_ERROR, "expected a path without control characters");
                return -EINVAL;
        }
        if (v[0] == '/') {
                p = strdup(v);
                if (!p)
                        return -ENOMEM;
                *ret = p;
                return 0;
        }
        if (v[0] != '~' || (v[1] != '\0' && v[1] != '/')) {
                key_expected(k, "an absolute path or one starting with ~/", v);
                return -EINVAL;
        }
        home = home_dir();
        if (!home) {
                if (errno == ENOMEM)
                        return -ENOMEM;
                key_diag(k, CONFIG_DIAG_ERROR, "cannot expand \"~\": no home directory");
                return -EINVAL;
        }
        if (asprintf(&p, "%s%s", strcmp(home, "/") == 0 && v[1] ? "" : home, v + 1) < 0)
                return -ENOMEM;
        *ret = p;
        return 0;
}

static bool host_is_loopback(const char *h) {
        struct in6_addr a6;
        struct in_addr a4;
        size_t n = strlen(h);

        if (inet_pton(AF_INET, h, &a4) == 1)
                return (ntohl(a4.s_addr) >> 24) == 127;
        if (inet_pton(AF_INET6, h, &a6) == 1)
                return IN6_IS_ADDR_LOOPBACK(&a6) || (IN6_IS_ADDR_V4MAPPED(&a6) && a6.s6_addr[12] == 127);
        if (n > 0 && h[n - 1] == '.')
                n--;
        /* RFC 6761 §6.3: localhost and every name under it */
        return (n == 9 && strncasecmp(h, "localhost", 9) == 0) ||
               (n > 10 && strncasecmp(h + n - 10, ".localhost", 10) == 0);
}

/* Splits a mailbox list (raw: escapes in, comment cut) at the unescaped
 * ';' into a NULL-terminated array; blanks around items and empty items
 * dropped, INBOX in any case spelt INBOX, repeats dropped (warned). None:
 * {"INBOX"}. Returns 0, -EINVAL (reported) or -ENOMEM. */
static int parse_mailboxes(const struct keyctx *k, const char *raw, char ***ret, size_t *ret_n) {
        char **l = NULL;
        size_t n = 0;
        int r = 0;

        for (const char *p = raw; *p && r >= 0;) {
                const char *q = p, *b, *e;
                char *name = NULL, **nl;

                while (*q && *q != ';')
                        q += (q[0] == '\\' && q[1]) ? 2 : 1;
                for (b = p; b < q && ascii_blank(*b); b++)
                        ;
                for (e = q; e > b && ascii_blank(e[-1]); e--)
                        ;
                p = *q ? q + 1 : q;
                if (b == e)
                        continue;
                r = value_unescape(k, b, (size_t) (e - b), &name);
                if (r < 0)
                        break;
                if (has_control(name)) {
                        key_diag(k, CONFIG_DIAG_ERROR, "expected mailbox names without control characters");
                        free(name);
                        r = -EINVAL;
                        break;
                }
                if (strcasecmp(name, "INBOX") == 0)
                        memcpy(name, "INBOX", 5);
                for (size_t i = 0; i < n; i++)
                        if (strcmp(l[i], name) == 0) {
                                _cleanup_free_ char *s = shown(name);

                                if (!s)
                                        r = -ENOMEM;
                                else
                                        key_diag(k, CONFIG_DIAG_WARNING,
                                                 "\"%s\" is listed more than once; ignoring the repeat", s);
                                free(TAKE_PTR(name));
                                break;
                        }
                if (!name)
                        continue;
                nl = realloc(l, (n + 2) * sizeof(char *));
                if (!nl) {
                        free(name);
                        r = -ENOMEM;
                        break;
                }
                l = nl;
                l[n++] = name;
                l[n] = NULL;
        }
        if (r >= 0 && n == 0) {
                l = calloc(2, sizeof(char *));
                if (!l || !(l[0] = strdup("INBOX")))
                        r = -ENOMEM;
                else
                        n = 1;
        }
        if (r < 0) {
                strv_free(l);
                return r;
        }
        *ret = l;
        *ret_n = n;
        return 0;
}

static void check_password_file(const struct keyctx *k, const char *path) {
        struct stat st;

        if (stat(path, &st) < 0) {
                key_diag(k, CONFIG_DIAG_WARNING, "cannot access %s: %s", path, strerror(errno));
                return;
        }
        if (S_ISDIR(st.st_mode)) {
                key_diag(k, CONFIG_DIAG_WARNING, "%s is a directory", path);
                return;
        }
        if (S_ISREG(st.st_mode) && (st.st_mode & (S_IRGRP | S_IROTH)))
                key_diag(k, CONFIG_DIAG_WARNING, "%s is readable by others (mode %04o); chmod 600 it", path,
                         (unsigned) (st.st_mode & 07777));
}

/* One account key (value v, unescaped, non-empty). src[] collects the
 * password sources. Returns 0 (problems reported) or -ENOMEM. */
static int account_parse_key(const struct keyctx *k, int id, const char *v, struct config_account *a,
                             char *src[_SECRET_SOURCE_MAX]) {
        const char *colon;
        unsigned u;
        uint64_t usec;
        int r;

        switch (id) {
        case KEY_HOST:
                colon = strchr(v, ':');
                if (colon && !strchr(colon + 1, ':')) {
                        key_expected(k, "a host name or IP address (the port goes in \"port\")", v);
                        return 0;
                }
                if (has_control(v) || strpbrk(v, " /[]")) {
                        key_expected(k, "a host name or IP address", v);
                        return 0;
                }
                free(a->host);
                return (a->host = strdup(v)) ? 0 : -ENOMEM;
        case KEY_PORT:
                if (parse_uint(v, 1, 65535, &u) < 0) {
                        key_expected(k, "1-65535", v);
                        return 0;
                }
                a->port = (uint16_t) u;
                return 0;
        case KEY_TLS:
                if (strcasecmp(v, "implicit") == 0)
                        a->tls = IMAP_TLS_IMPLICIT;
                else if (strcasecmp(v, "starttls") == 0)
                        a->tls = IMAP_TLS_STARTTLS;
                else if (strcasecmp(v, "none") == 0)
                        a->tls = IMAP_TLS_NONE;
                else
                        key_expected(k, "implicit, starttls or none", v);
                return 0;
        case KEY_CA_FILE:
                free(TAKE_PTR(a->ca_file));
                r = expand_path(k, v, &a->ca_file);
                if (r == 0 && access(a->ca_file, R_OK) < 0)
                        key_diag(k, CONFIG_DIAG_WARNING, "cannot read %s: %s", a->ca_file, strerror(errno));
                return r == -ENOMEM ? r : 0;
        case KEY_TLS_FINGERPRINT:
                free(TAKE_PTR(a->tls_fingerprint));
                r = normalize_fingerprint(v, &a->tls_fingerprint);
                if (r == -EINVAL)
                        key_expected(k, "sha256:<64 hex digits>", v);
                return r == -ENOMEM ? r : 0;
        case KEY_USER:
                if (has_control(v)) {
                        key_diag(k, CONFIG_DIAG_ERROR, "expected a user name without control characters");
                        return 0;
                }
                free(a->user);
                return (a->user = strdup(v)) ? 0 : -ENOMEM;
        case KEY_AUTH: {
                enum sasl_mech_pref p = sasl_mech_pref_from_string(v);

                if (p < 0)
                        key_expected(k, "auto, plain, login, xoauth2 or oauthbearer", v);
                else
                        a->auth = p;
                return 0;
        }
        case KEY_PASSWORD_COMMAND:
        case KEY_PASSWORD:
                free_wiped(src[id - KEY_PASSWORD_COMMAND]);
                return (src[id - KEY_PASSWORD_COMMAND] = strdup(v)) ? 0 : -ENOMEM;
        case KEY_PASSWORD_FILE:
                free(TAKE_PTR(src[SECRET_FILE]));
                r = expand_path(k, v, &src[SECRET_FILE]);
                if (r == 0)
                        check_password_file(k, src[SECRET_FILE]);
                return r == -ENOMEM ? r : 0;
        case KEY_PASSWORD_CREDENTIAL:
                if (strchr(v, '/') || has_control(v) || strcmp(v, ".") == 0 || strcmp(v, "..") == 0 ||
                    strlen(v) > NAME_MAX) {
                        key_expected(k, "a credential name (a file name, no \"/\")", v);
                        return 0;
                }
                free(src[SECRET_CREDENTIAL]);
                return (src[SECRET_CREDENTIAL] = strdup(v)) ? 0 : -ENOMEM;
        case KEY_MAX_CONNECTIONS:
                if (parse_uint(v, 1, CONFIG_MAX_CONNECTIONS_MAX, &u) < 0)
                        key_expected(k, "1-100", v);
                else
                        a->max_connections = u;
                return 0;
        case KEY_IDLE_REFRESH:
                if (config_parse_duration(v, &usec) < 0 || usec < CONFIG_IDLE_REFRESH_MIN ||
                    usec > CONFIG_IDLE_REFRESH_MAX)
                        key_expected(k, "a duration from 1m to 29m", v);
                else
                        a->idle_refresh_usec = usec;
                return 0;
        default:
                assert(false);
                return 0;
        }
}

/* The rules across keys: required keys, exactly one password source, the
 * warnings about weak settings. Takes the chosen source out of src[]. */
static void account_check(struct ctx *ctx, const char *group, struct config_account *a,
                          char *src[_SECRET_SOURCE_MAX], bool port_set) {
        bool plain = src[SECRET_PLAIN];
        char list[128] = "";
        size_t n = 0;
        int chosen = -1;

        if (!port_set)
                a->port = a->tls == IMAP_TLS_IMPLICIT ? CONFIG_PORT_IMPLICIT : CONFIG_PORT_PLAIN;
        if (!a->host)
                diag_error(ctx, "[%s] host: missing", group);
        if (!a->user)
                diag_error(ctx, "[%s] user: missing", group);

        for (int s = 0; s < _SECRET_SOURCE_MAX; s++) {
                if (!src[s])
                        continue;
                if (n++ > 0)
                        strcat(list, ", ");
                strcat(list, key_defs[KEY_PASSWORD_COMMAND + s].name);
                chosen = s;
        }
        if (n == 0)
                diag_error(ctx, "[%s]: no password source; set one of password_command, password_file, "
                           "password_credential or password", group);
        else if (n > 1)
                diag_error(ctx, "[%s]: more than one password source (%s); keep one", group, list);
        else {
                a->secret_source = chosen;
                a->secret_value = TAKE_PTR(src[chosen]);
        }
        if (plain)
                diag_warning(ctx, "[%s] password: stored in plain text; consider password_command or "
                             "password_file", group);

        if (a->tls == IMAP_TLS_NONE && a->host && !host_is_loopback(a->host)) {
                _cleanup_free_ char *h = shown(a->host);

                if (!h)
                        ctx->oom = true;
                else
                        diag_warning(ctx, "[%s] tls: none sends the password unencrypted; imapidled refuses to "
                                     "log in unless \"%s\" is a loopback address", group, h);
        }
}

static int parse_account(struct ctx *ctx, GKeyFile *kf, const struct scan_group *g, const struct config_notify *gen,
                         struct config *c) {
        const char *id = g->name + strlen("account "), *problem;
        char *src[_SECRET_SOURCE_MAX] = {};
        gchar *raw[_KEY_MAX] = {};
        struct config_account a = {
                .tls = IMAP_TLS_IMPLICIT,
                .auth = SASL_MECH_PREF_AUTO,
                .max_connections = CONFIG_MAX_CONNECTIONS_DEFAULT,
                .idle_refresh_usec = CONFIG_IDLE_REFRESH_DEFAULT,
        };
        struct config_notify ov;
        bool set[_KEY_NOTIFY_MAX] = {}, port_set = false;
        struct config_account *na;
        int r = 0;

        problem = account_id_problem(id);
        if (problem) {
                diag_error(ctx, "[%s]: %s", g->name, problem);
                return 0;
        }

        notify_defaults(&ov);
        group_collect(ctx, kf, g, IN_ACCOUNT, raw);
        for (int k_id = 0; k_id < _KEY_MAX && r >= 0; k_id++) {
                struct keyctx k = keyctx_make(ctx, g->name, k_id);
                _cleanup_wipe_ char *v = NULL;

                if (!raw[k_id])
                        continue;
                r = value_unescape(&k, raw[k_id], strlen(raw[k_id]), &v);
                if (r == -EINVAL) {
                        r = 0;
                        continue;
                }
                if (r < 0)
                        break;
                if (k_id < _KEY_NOTIFY_MAX) {
                        r = notify_parse(&k, k_id, v, &ov);
                        if (r > 0)
                                set[k_id] = true;
                        continue;
                }
                if (k_id == KEY_MAILBOXES) {
                        strv_free(TAKE_PTR(a.mailboxes));
                        r = parse_mailboxes(&k, raw[k_id], &a.mailboxes, &a.n_mailboxes);
                        if (r == -EINVAL)
                                r = 0;
                        continue;
                }
                if (!*v)
                        continue;       /* empty: the default */
                if (k_id == KEY_PORT)
                        port_set = true;
                r = account_parse_key(&k, k_id, v, &a, src);
        }
        raw_free(raw);
        if (r >= 0 && !a.mailboxes) {
                struct keyctx k = keyctx_make(ctx, g->name, KEY_MAILBOXES);

                r = parse_mailboxes(&k, "", &a.mailboxes, &a.n_mailboxes);
        }
        if (r >= 0) {
                account_check(ctx, g->name, &a, src, port_set);
                r = notify_resolve(gen, &ov, set, &a.notify);
        }
        if (r >= 0 && !(a.id = strdup(id)))
                r = -ENOMEM;
        if (r >= 0) {
                na = realloc(c->accounts, (c->n_accounts + 1) * sizeof(*na));
                if (!na)
                        r = -ENOMEM;
                else {
                        c->accounts = na;
                        c->accounts[c->n_accounts++] = a;
                        a = (struct config_account) {};
                }
        }
        for (int s = 0; s < _SECRET_SOURCE_MAX; s++)
                free_wiped(src[s]);
        notify_done(&ov);
        account_done(&a);
        return r;
}

/* ---- groups -------------------------------------------------------------- */

static void unknown_group(struct ctx *ctx, const char *name) {
        size_t first = strcspn(name, " \t"), d;
        const char *rest = name + first;
        g_autofree char *word = g_strndup(name, first);

        while (ascii_blank(*rest))
                rest++;
        if (*rest && is_close(word, "account", &d))
                diag_warning(ctx, "[%s]: unknown group, did you mean \"[account %s]\"?", name, rest);
        else if (is_close(name, "general", &d))
                diag_warning(ctx, "[%s]: unknown group, did you mean \"[general]\"?", name);
        else if (is_close(name, "account", &d))
                diag_warning(ctx, "[%s]: unknown group, did you mean \"[account NAME]\"?", name);
        else
                diag_warning(ctx, "[%s]: unknown group; expected [general] or [account NAME]", name);
}

static struct config *config_new(const char *path) {
        struct config *c = calloc(1, sizeof(*c));

        if (!c)
                return NULL;
        c->log_level = LOG_INFO;
        notify_defaults(&c->notify);
        if (path && !(c->path = strdup(path)))
                return config_free(c);
        return c;
}

struct config *config_free(struct config *c) {
        if (!c)
                return NULL;
        for (size_t i = 0; i < c->n_accounts; i++)
                account_done(&c->accounts[i]);
        free(c->accounts);
        notify_done(&c->notify);
        free(c->path);
        free(c);
        return NULL;
}

static int parse_text(struct ctx *ctx, const char *text, size_t len, const char *name, struct config **ret) {
        g_autoptr(GKeyFile) kf = NULL;
        g_autoptr(GError) error = NULL;
        const struct scan_group *general;
        struct config *c = NULL;
        struct scan sc;
        int r = 0;

        scan_init(&sc);
        scan_text(ctx, &sc, text, len);
        if (sc.n_syntax_errors > 0 || ctx->oom)
                goto finish;

        kf = g_key_file_new();
        if (!g_key_file_load_from_data(kf, sc.text->str, sc.text->len, G_KEY_FILE_NONE, &error)) {
                /* the scanner should have caught it; GLib's message may quote a line, but the scanner
                 * has already refused every line GLib would quote */
                diag_error(ctx, "%s", error->message);
                goto finish;
        }

        c = config_new(name);
        if (!c) {
                r = -ENOMEM;
                goto finish;
        }
        general = g_hash_table_lookup(sc.by_name, "general");
        if (general)
                r = parse_general(ctx, kf, general, c);
        for (guint i = 0; i < sc.groups->len && r >= 0; i++) {
                const struct scan_group *g = g_ptr_array_index(sc.groups, i);

                if (g == general)
                        continue;
                if (strncmp(g->name, "account ", 8) == 0)
                        r = parse_account(ctx, kf, g, &c->notify, c);
                else if (strcmp(g->name, "account") == 0)
                        diag_error(ctx, "[%s]: missing account name; write [account NAME]", g->name);
                else
                        unknown_group(ctx, g->name);
        }

finish:
        scan_done(&sc);
        if (r >= 0 && ctx->oom)
                r = -ENOMEM;
        if (r >= 0 && ctx->n_errors > 0)
                r = -EINVAL;
        if (r < 0) {
                config_free(c);
                return r;
        }
        *ret = c;
        return 0;
}

int config_parse_string(const char *text, size_t len, const char *name, struct config **ret,
                        struct config_diag *diag) {
        struct ctx ctx = { .diag = diag };

        if (!text && len > 0)
                return -EINVAL;
        return parse_text(&ctx, text ?: "", len, name, ret);
}

/* Reads at most CONFIG_FILE_MAX bytes. *ret_buf is malloc'ed and
 * NUL-terminated; wipe it after use. Every copy made on the way is wiped. */
static int read_file(const char *path, char **ret_buf, size_t *ret_len) {
        _cleanup_close_ int fd = -EBADF;
        char *buf = NULL;
        size_t len = 0, size = 0;
        struct stat st;
        int r;

        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return -errno;
        if (fstat(fd, &st) < 0)
                return -errno;
        if (S_ISDIR(st.st_mode))
                return -EISDIR;
        for (;;) {
                ssize_t n;

                if (len + 1 >= size) {
                        /* at most CONFIG_FILE_MAX + 1 bytes and the NUL: one byte too many is enough to tell */
                        size_t nsize = size ? MIN(size * 2, (size_t) CONFIG_FILE_MAX + 2) : 4096;
                        char *nb = malloc(nsize);

                        if (!nb) {
                                r = -ENOMEM;
                                goto fail;
                        }
                        if (buf) {
                                memcpy(nb, buf, len);
                                explicit_bzero(buf, len);
                                free(buf);
                        }
                        buf = nb;
                        size = nsize;
                }
                n = read(fd, buf + len, size - len - 1);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        r = -errno;
                        goto fail;
                }
                if (n == 0)
                        break;
                len += (size_t) n;
                if (len > CONFIG_FILE_MAX) {
                        r = -EFBIG;
                        goto fail;
                }
        }
        buf[len] = '\0';
        *ret_buf = buf;
        *ret_len = len;
        return 0;

fail:
        if (buf) {
                explicit_bzero(buf, len);
                free(buf);
        }
        return r;
}

int config_load(const char *path, struct config **ret, struct config_diag *diag) {
        _cleanup_free_ char *def = NULL, *buf = NULL;
        struct ctx ctx = { .diag = diag };
        bool is_default;
        size_t len = 0;
        int r;

        def = config_default_path();
        if (!def && errno == ENOMEM)
                return -ENOMEM;
        if (!path) {
                if (!def) {
                        diag_error(&ctx, "cannot locate the configuration file: no home directory "
                                   "($XDG_CONFIG_HOME and $HOME are not set)");
                        return ctx.oom ? -ENOMEM : -ENXIO;
                }
                path = def;
        }
        is_default = streq_ptr(path, def);

        r = read_file(path, &buf, &len);
        if (r == -ENOENT && is_default) {
                struct config *c = config_new(path);

                if (!c)
                        return -ENOMEM;
                diag_warning(&ctx, "no config file at %s: running with no accounts", path);
                if (ctx.oom) {
                        config_free(c);
                        return -ENOMEM;
                }
                *ret = c;
                return 0;
        }
        if (r == -EFBIG)
                diag_error(&ctx, "cannot read %s: larger than %d bytes", path, CONFIG_FILE_MAX);
        else if (r < 0 && r != -ENOMEM)
                diag_error(&ctx, "cannot read %s: %s", path, strerror(-r));
        if (r < 0)
                return r;

        r = parse_text(&ctx, buf, len, path, ret);
        explicit_bzero(buf, len);
        return r;
}

/* ---- comparisons --------------------------------------------------------- */

static bool strv_equal(char *const *a, char *const *b) {
        if (!a || !b)
                return a == b;
        for (; *a && *b; a++, b++)
                if (strcmp(*a, *b) != 0)
                        return false;
        return !*a && !*b;
}

bool config_notify_equal(const struct config_notify *a, const struct config_notify *b) {
        return a->notify == b->notify && a->notify_show_content == b->notify_show_content &&
               a->notify_max_individual == b->notify_max_individual && a->notify_timeout == b->notify_timeout &&
               a->notify_timeout_usec == b->notify_timeout_usec && streq_ptr(a->open_command, b->open_command) &&
               streq_ptr(a->on_new_mail, b->on_new_mail) && streq_ptr(a->on_change, b->on_change) &&
               a->hook_debounce_usec == b->hook_debounce_usec;
}

bool config_account_equal(const struct config_account *a, const struct config_account *b) {
        return streq_ptr(a->id, b->id) && streq_ptr(a->host, b->host) && a->port == b->port && a->tls == b->tls &&
               streq_ptr(a->ca_file, b->ca_file) && streq_ptr(a->tls_fingerprint, b->tls_fingerprint) &&
               streq_ptr(a->user, b->user) && a->auth == b->auth && a->secret_source == b->secret_source &&
               streq_ptr(a->secret_value, b->secret_value) && a->n_mailboxes == b->n_mailboxes &&
               strv_equal(a->mailboxes, b->mailboxes) && a->max_connections == b->max_connections &&
               a->idle_refresh_usec == b->idle_refresh_usec;
}

bool config_account_notify_equal(const struct config_account *a, const struct config_account *b) {
        return config_notify_equal(&a->notify, &b->notify);
}

const struct config_account *config_find_account(const struct config *c, const char *id) {
        if (!c || !id)
                return NULL;
        for (size_t i = 0; i < c->n_accounts; i++)
                if (strcmp(c->accounts[i].id, id) == 0)
                        return &c->accounts[i];
        return NULL;
}
