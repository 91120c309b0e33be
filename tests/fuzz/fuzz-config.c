/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target for the configuration loader (config_parse_string(), on
 * GKeyFile), and config_parse_duration() on short inputs.
 *
 * Properties, from config.h:
 *   - the result is 0 (valid, no error in the diagnostics) or -EINVAL (at
 *     least one error, *ret untouched); counts add up;
 *   - every message is one line of valid UTF-8 without control characters;
 *   - no message contains the value of a password or password_command line
 *     (checked for values with a non-ASCII byte that occur only once in the
 *     input, so that no message template or other key can hold them);
 *   - a valid configuration keeps its documented invariants: account ids
 *     non-empty, UTF-8, without '/', distinct and found by
 *     config_find_account(); ports, budgets and durations within their
 *     ranges; a password source with a value; absolute paths; a
 *     well-formed pin; at least one mailbox, "INBOX" spelt so, no
 *     duplicates; config_account_dup() equal to the original;
 *   - config_parse_duration() agrees with a model of its grammar.
 */

#include <errno.h>
#include <inttypes.h>
#include <strings.h>
#include <syslog.h>

#include "config.h"
#include "fuzz-util.h"

#define SECRET_NEEDLE_MAX 16

int LLVMFuzzerInitialize(int *argc, char ***argv) {
        /* "~/" paths expand to a home that does not exist: the same result everywhere */
        setenv("HOME", "/nonexistent/imapidled-fuzz", 1);
        return 0;
}

static size_t count_occurrences(const char *hay, size_t hay_len, const char *needle, size_t len) {
        size_t n = 0;

        for (const char *p = hay, *end = hay + hay_len; (p = memmem(p, (size_t) (end - p), needle, len)); p++)
                n++;
        return n;
}

/* The start of a password / password_command value on this line, if the
 * line sets one; its length (up to a comment) in *ret_len. */
static const char *secret_value(const char *line, size_t len, size_t *ret_len) {
        static const char *const keys[] = { "password_command", "password" };
        const char *p = line, *end = line + len, *v, *e;

        while (p < end && (*p == ' ' || *p == '\t'))
                p++;
        for (size_t i = 0; i < 2; i++) {
                size_t k = strlen(keys[i]);

                if ((size_t) (end - p) < k || memcmp(p, keys[i], k) != 0)
                        continue;
                v = p + k;
                while (v < end && (*v == ' ' || *v == '\t'))
                        v++;
                if (v == end || *v != '=')
                        continue;
                v++;
                while (v < end && (*v == ' ' || *v == '\t'))
                        v++;
                for (e = v; e < end; e++)
                        if (*e == '#' && e > v && (e[-1] == ' ' || e[-1] == '\t'))
                                break;
                while (e > v && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r'))
                        e--;
                *ret_len = (size_t) (e - v);
                return v;
        }
        return NULL;
}

static void check_no_secret(const char *text, size_t size, const struct config_diag *d) {
        for (const char *line = text, *end = text + size; line < end;) {
                const char *nl = memchr(line, '\n', (size_t) (end - line)), *v;
                size_t len = (size_t) ((nl ? nl : end) - line), vlen, n;
                bool high = false;

                v = secret_value(line, len, &vlen);
                line += len + 1;
                if (!v)
                        continue;
                n = vlen < SECRET_NEEDLE_MAX ? vlen : SECRET_NEEDLE_MAX;
                for (size_t i = 0; i < n; i++)
                        high |= (uint8_t) v[i] >= 0x80;
                if (n < 6 || !high || count_occurrences(text, size, v, n) != 1)
                        continue;
                for (size_t i = 0; i < d->n; i++)
                        FUZZ_CHECK(!memmem(d->items[i].message, strlen(d->items[i].message), v, n),
                                   "a message shows a secret: %s", d->items[i].message);
        }
}

static bool is_abs_path(const char *p) {
        return p && p[0] == '/';
}

static void check_notify(const struct config_notify *n) {
        FUZZ_CHECK(n->notify_max_individual <= CONFIG_NOTIFY_MAX_INDIVIDUAL_MAX, "notify_max_individual %u",
                   n->notify_max_individual);
        if (n->notify_timeout == CONFIG_NOTIFY_TIMEOUT_DURATION)
                FUZZ_CHECK(n->notify_timeout_usec >= 1000 && n->notify_timeout_usec <= CONFIG_NOTIFY_TIMEOUT_MAX,
                           "notify_timeout %" PRIu64, n->notify_timeout_usec);
        else
                FUZZ_CHECK(n->notify_timeout <= CONFIG_NOTIFY_TIMEOUT_NEVER && n->notify_timeout_usec == 0,
                           "notify_timeout %d/%" PRIu64, (int) n->notify_timeout, n->notify_timeout_usec);
        FUZZ_CHECK(n->hook_debounce_usec <= CONFIG_HOOK_DEBOUNCE_MAX, "hook_debounce %" PRIu64, n->hook_debounce_usec);
}

static void check_account(const struct config *c, const struct config_account *a) {
        struct config_account *copy;

        FUZZ_CHECK(a->id && a->id[0] && !strchr(a->id, '/') && fuzz_utf8_valid(a->id, strlen(a->id)), "account id");
        FUZZ_CHECK(config_find_account(c, a->id) == a, "[account %s] not found by its id, or twice", a->id);
        FUZZ_CHECK(a->host && a->host[0], "[account %s] without host", a->id);
        FUZZ_CHECK(a->port >= 1, "[account %s] port 0", a->id);
        FUZZ_CHECK(a->tls <= IMAP_TLS_NONE, "[account %s] tls %d", a->id, (int) a->tls);
        FUZZ_CHECK(a->auth >= 0 && a->auth < _SASL_MECH_PREF_MAX, "[account %s] auth %d", a->id, (int) a->auth);
        FUZZ_CHECK(!a->ca_file || is_abs_path(a->ca_file), "[account %s] ca_file %s", a->id, a->ca_file);
        if (a->tls_fingerprint) {
                FUZZ_CHECK(strlen(a->tls_fingerprint) == 7 + 64 && strncmp(a->tls_fingerprint, "sha256:", 7) == 0 &&
                                   strspn(a->tls_fingerprint + 7, "0123456789abcdef") == 64,
                           "[account %s] pin %s", a->id, a->tls_fingerprint);
        }
        FUZZ_CHECK(a->secret_source < _SECRET_SOURCE_MAX && a->secret_value, "[account %s] password source", a->id);
        if (a->secret_source == SECRET_FILE)
                FUZZ_CHECK(is_abs_path(a->secret_value), "[account %s] password_file %s", a->id, a->secret_value);
        FUZZ_CHECK(a->mailboxes && a->n_mailboxes >= 1 && !a->mailboxes[a->n_mailboxes], "[account %s] mailboxes",
                   a->id);
        for (size_t i = 0; i < a->n_mailboxes; i++) {
                FUZZ_CHECK(a->mailboxes[i], "[account %s] NULL mailbox %zu", a->id, i);
                FUZZ_CHECK(fuzz_utf8_valid(a->mailboxes[i], strlen(a->mailboxes[i])), "[account %s] mailbox %zu",
                           a->id, i);
                FUZZ_CHECK(strcasecmp(a->mailboxes[i], "INBOX") != 0 || strcmp(a->mailboxes[i], "INBOX") == 0,
                           "[account %s] \"%s\" not spelt INBOX", a->id, a->mailboxes[i]);
                for (size_t j = 0; j < i; j++)
                        FUZZ_CHECK(strcmp(a->mailboxes[i], a->mailboxes[j]) != 0, "[account %s] \"%s\" twice", a->id,
                                   a->mailboxes[i]);
        }
        FUZZ_CHECK(a->max_connections >= 1 && a->max_connections <= CONFIG_MAX_CONNECTIONS_MAX,
                   "[account %s] max_connections %u", a->id, a->max_connections);
        FUZZ_CHECK(a->idle_refresh_usec >= CONFIG_IDLE_REFRESH_MIN && a->idle_refresh_usec <= CONFIG_IDLE_REFRESH_MAX,
                   "[account %s] idle_refresh %" PRIu64, a->id, a->idle_refresh_usec);
        check_notify(&a->notify);

        copy = config_account_dup(a);
        FUZZ_CHECK(copy, "out of memory");
        FUZZ_CHECK(config_account_equal(a, copy) && config_account_notify_equal(a, copy),
                   "[account %s] differs from its copy", a->id);
        config_account_free(copy);
}

/* The grammar of config.h: digits, then "", "ms", "s", "m" or "h". */
static void check_duration(const uint8_t *data, size_t size) {
        static const struct {
                const char *suffix;
                uint64_t usec;
        } units[] = { { "", 1000000 }, { "ms", 1000 }, { "s", 1000000 }, { "m", 60000000 }, { "h", 3600000000 } };
        char *s = fuzz_strndup(data, size);
        uint64_t got = 0, n = 0, want = 0;
        bool overflow = false, known = false;
        const char *p = s;
        int r, expect;

        for (; *p >= '0' && *p <= '9'; p++) {
                overflow |= __builtin_mul_overflow(n, 10, &n);
                overflow |= __builtin_add_overflow(n, (uint64_t) (*p - '0'), &n);
        }
        for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
                if (strcmp(p, units[i].suffix) == 0) {
                        known = true;
                        overflow |= __builtin_mul_overflow(n, units[i].usec, &want);
                }
        expect = p == s || !known ? -EINVAL : overflow ? -ERANGE : 0;

        r = config_parse_duration(s, &got);
        FUZZ_CHECK(r == expect, "config_parse_duration(\"%s\") = %d, want %d", s, r, expect);
        FUZZ_CHECK(r < 0 || got == want, "config_parse_duration(\"%s\") = %" PRIu64 ", want %" PRIu64, s, got, want);
        free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        const char *text = (const char *) data;
        struct config *c = (struct config *) &size;     /* a sentinel: must stay untouched on failure */
        struct config_diag d = {};
        size_t n_errors = 0, n_warnings = 0;
        int r;

        if (size <= 32)
                check_duration(data, size);

        r = config_parse_string(text, size, "fuzz", &c, &d);
        FUZZ_CHECK(r == 0 || r == -EINVAL, "config_parse_string() = %d", r);
        for (size_t i = 0; i < d.n; i++) {
                const char *m = d.items[i].message;

                FUZZ_CHECK(m && m[0], "empty message %zu", i);
                FUZZ_CHECK(fuzz_utf8_valid(m, strlen(m)), "message not UTF-8: %s", m);
                for (const char *q = m; *q; q++)
                        FUZZ_CHECK((uint8_t) *q >= 0x20 && *q != 0x7f, "control character in message: %s", m);
                if (d.items[i].severity == CONFIG_DIAG_ERROR)
                        n_errors++;
                else
                        n_warnings++;
        }
        FUZZ_CHECK(n_errors == d.n_errors && n_warnings == d.n_warnings, "diag counts %zu/%zu, items %zu/%zu",
                   d.n_errors, d.n_warnings, n_errors, n_warnings);
        check_no_secret(text, size, &d);

        if (r == 0) {
                FUZZ_CHECK(c && c != (struct config *) &size, "success without a configuration");
                FUZZ_CHECK(d.n_errors == 0, "valid with %zu errors", d.n_errors);
                FUZZ_CHECK(c->path && strcmp(c->path, "fuzz") == 0, "config->path");
                FUZZ_CHECK(c->log_level >= LOG_ERR && c->log_level <= LOG_DEBUG, "log_level %d", c->log_level);
                check_notify(&c->notify);
                for (size_t i = 0; i < c->n_accounts; i++)
                        check_account(c, &c->accounts[i]);
                config_free(c);
        } else {
                FUZZ_CHECK(c == (struct config *) &size, "*ret written on failure");
                FUZZ_CHECK(d.n_errors > 0, "invalid without an error");
        }
        config_diag_done(&d);
        return 0;
}
