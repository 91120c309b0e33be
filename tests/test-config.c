/* SPDX-License-Identifier: MIT */

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "macro.h"
#include "suites.h"

#define SEC UINT64_C(1000000)

/* A minimal valid account, to which cases add lines. */
#define ACCOUNT_OK "[account work]\nhost = imap.example.com\nuser = me\npassword_command = pass show work\n"

static const char *srcdir(void) {
        const char *d = getenv("IMAPIDLED_SRCDIR");

        return d && *d ? d : ".";
}

/* The diagnostics as "E: message" / "W: message" lines, joined by '\n'. */
static char *diag_text(const struct config_diag *d) {
        size_t size = 1;
        char *s, *p;

        for (size_t i = 0; i < d->n; i++)
                size += strlen(d->items[i].message) + 4;
        s = p = malloc(size);
        ck_assert_ptr_nonnull(s);
        *p = '\0';
        for (size_t i = 0; i < d->n; i++)
                p += sprintf(p, "%s%s: %s", i ? "\n" : "", d->items[i].severity == CONFIG_DIAG_ERROR ? "E" : "W",
                             d->items[i].message);
        return s;
}

/* Parses text; checks the return value and the exact list of messages
 * (expected: lines as diag_text() makes them, NULL or "" for none).
 * Returns the configuration when valid (the caller frees it). */
static struct config *parse_expect(const char *text, int want_r, const char *expected) {
        struct config_diag d = {};
        struct config *c = (struct config *) 0x1;
        char *got;
        int r;

        r = config_parse_string(text, strlen(text), "test", &c, &d);
        got = diag_text(&d);
        ck_assert_msg(r == want_r, "config_parse_string returned %d, expected %d; messages:\n%s\n--- text:\n%s", r,
                      want_r, got, text);
        ck_assert_msg(strcmp(got, expected ?: "") == 0, "messages:\n%s\n--- expected:\n%s\n--- text:\n%s", got,
                      expected ?: "", text);
        ck_assert_uint_eq(d.n_errors + d.n_warnings, d.n);
        ck_assert(r < 0 ? d.n_errors > 0 : d.n_errors == 0);
        free(got);
        config_diag_done(&d);
        ck_assert_ptr_null(d.items);
        if (r < 0) {
                ck_assert_ptr_eq(c, (struct config *) 0x1);     /* ret_ written only on success */
                return NULL;
        }
        ck_assert_ptr_nonnull(c);
        return c;
}

static struct config *parse_ok(const char *text) {
        return parse_expect(text, 0, NULL);
}

/* ---- the table: text, result, the exact messages -------------------------- */

static const struct config_case {
        const char *name;
        const char *text;
        int ret;
        const char *messages;
} cases[] = {
        /* valid */
        { "empty file", "", 0, NULL },
        { "comments only", "# nothing here\n\n   # indented\n", 0, NULL },
        { "general only", "[general]\nnotify = false\nlog_level = debug\n", 0, NULL },
        { "general empty", "[general]\n", 0, NULL },
        { "minimal account", ACCOUNT_OK, 0, NULL },
        { "BOM and CRLF", "\xef\xbb\xbf[account work]\r\nhost = h\r\nuser = u\r\npassword_file = /nonexistent/p\r\n", 0,
          "W: [account work] password_file: cannot access /nonexistent/p: No such file or directory" },
        { "comment after group header", "[account work]   # the office\nhost = h\nuser = u\npassword_command = x\n", 0,
          NULL },
        { "comment glued to group header", "[general]# g\n", 0, NULL },
        { "booleans", "[general]\nnotify = yes\nnotify_show_content = Off\n" ACCOUNT_OK "notify = 1\n", 0, NULL },
        { "localhost without TLS", "[account t]\nhost = localhost\ntls = none\nuser = u\npassword_command = x\n", 0,
          NULL },
        { "127.0.0.2 without TLS", "[account t]\nhost = 127.0.0.2\ntls = none\nuser = u\npassword_command = x\n", 0,
          NULL },
        { "::1 without TLS", "[account t]\nhost = ::1\ntls = NONE\nuser = u\npassword_command = x\n", 0, NULL },
        { "name.localhost without TLS", "[account t]\nhost = imap.localhost.\ntls = none\nuser = u\npassword_command = x\n",
          0, NULL },

        /* the shapes of SPEC §3 */
        { "port not a number", ACCOUNT_OK "port = abc\n", -EINVAL,
          "E: [account work] port: expected 1-65535, got \"abc\"" },
        { "port 0", ACCOUNT_OK "port = 0\n", -EINVAL, "E: [account work] port: expected 1-65535, got \"0\"" },
        { "port 65536", ACCOUNT_OK "port = 65536\n", -EINVAL,
          "E: [account work] port: expected 1-65535, got \"65536\"" },
        { "port negative", ACCOUNT_OK "port = -1\n", -EINVAL, "E: [account work] port: expected 1-65535, got \"-1\"" },
        { "port huge", ACCOUNT_OK "port = 99999999999999999999999\n", -EINVAL,
          "E: [account work] port: expected 1-65535, got \"99999999999999999999999\"" },
        { "log level", "[general]\nlog_level = loud\n", -EINVAL,
          "E: [general] log_level: expected error, warning, info or debug, got \"loud\"" },
        { "tls", ACCOUNT_OK "tls = yes\n", -EINVAL,
          "E: [account work] tls: expected implicit, starttls or none, got \"yes\"" },
        { "no password source", "[account work]\nhost = h\nuser = u\n", -EINVAL,
          "E: [account work]: no password source; set one of password_command, password_file, password_credential "
          "or password" },
        { "empty password sources", "[account work]\nhost = h\nuser = u\npassword =\npassword_command =   # later\n",
          -EINVAL,
          "E: [account work]: no password source; set one of password_command, password_file, password_credential "
          "or password" },
        { "two password sources", ACCOUNT_OK "password_file = /nonexistent/p\n", -EINVAL,
          "W: [account work] password_file: cannot access /nonexistent/p: No such file or directory\n"
          "E: [account work]: more than one password source (password_command, password_file); keep one" },
        { "four password sources",
          ACCOUNT_OK "password_credential = work\npassword = secret\npassword_file = /nonexistent/p\n", -EINVAL,
          "W: [account work] password_file: cannot access /nonexistent/p: No such file or directory\n"
          "E: [account work]: more than one password source (password_command, password_file, "
          "password_credential, password); keep one\n"
          "W: [account work] password: stored in plain text; consider password_command or password_file" },
        { "host and user missing", "[account work]\npassword_command = x\nhost =\n", -EINVAL,
          "E: [account work] host: missing\nE: [account work] user: missing" },
        { "fingerprint short", ACCOUNT_OK "tls_fingerprint = sha256:abcd\n", -EINVAL,
          "E: [account work] tls_fingerprint: expected sha256:<64 hex digits>, got \"sha256:abcd\"" },
        { "fingerprint without algorithm",
          ACCOUNT_OK "tls_fingerprint = 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n", -EINVAL,
          "E: [account work] tls_fingerprint: expected sha256:<64 hex digits>, got "
          "\"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\"" },
        { "fingerprint not hex",
          ACCOUNT_OK "tls_fingerprint = sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdeg\n",
          -EINVAL,
          "E: [account work] tls_fingerprint: expected sha256:<64 hex digits>, got "
          "\"sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdeg\"" },
        { "fingerprint too long",
          ACCOUNT_OK "tls_fingerprint = sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef00\n",
          -EINVAL,
          "E: [account work] tls_fingerprint: expected sha256:<64 hex digits>, got "
          "\"sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef00\"" },
        { "fingerprint empty is none", ACCOUNT_OK "tls_fingerprint =\n", 0, NULL },
        { "unknown key", ACCOUNT_OK "hots = imap.example.com\n", 0,
          "W: [account work] hots: unknown key, did you mean \"host\"?" },
        { "unknown key, case", ACCOUNT_OK "Port = 993\n", 0, "W: [account work] Port: unknown key, did you mean \"port\"?" },
        { "unknown key, long", ACCOUNT_OK "pasword_comand = x\n", 0,
          "W: [account work] pasword_comand: unknown key, did you mean \"password_command\"?" },
        { "unknown key, nothing close", ACCOUNT_OK "colour = blue\n", 0, "W: [account work] colour: unknown key" },
        { "unknown key in general", "[general]\nnotfy = false\nlog_levle = info\n", 0,
          "W: [general] notfy: unknown key, did you mean \"notify\"?\n"
          "W: [general] log_levle: unknown key, did you mean \"log_level\"?" },
        { "general suggests general keys only", "[general]\nhots = x\n", 0, "W: [general] hots: unknown key" },
        { "localized key", ACCOUNT_OK "host[fr] = x\n", 0, "W: [account work] host[fr]: unknown key" },
        { "account key in general", "[general]\nhost = x\n", 0,
          "W: [general] host: only valid in [account NAME] groups, ignoring" },
        { "general key in account", ACCOUNT_OK "log_level = debug\n", 0,
          "W: [account work] log_level: only valid in [general], ignoring" },
        { "unknown group, account typo", "[acount work]\nhost = x\n", 0,
          "W: [acount work]: unknown group, did you mean \"[account work]\"?" },
        { "unknown group, case", "[Account work]\n", 0,
          "W: [Account work]: unknown group, did you mean \"[account work]\"?" },
        { "unknown group, general typo", "[genral]\n", 0, "W: [genral]: unknown group, did you mean \"[general]\"?" },
        { "unknown group, accounts", "[accounts]\n", 0,
          "W: [accounts]: unknown group, did you mean \"[account NAME]\"?" },
        { "unknown group", "[hooks]\nx = y\n", 0, "W: [hooks]: unknown group; expected [general] or [account NAME]" },
        { "plain password", "[account work]\nhost = h\nuser = u\npassword = hunter2\n", 0,
          "W: [account work] password: stored in plain text; consider password_command or password_file" },
        { "tls none, remote host", ACCOUNT_OK "tls = none\n", 0,
          "W: [account work] tls: none sends the password unencrypted; imapidled refuses to log in unless "
          "\"imap.example.com\" is a loopback address" },
        { "duplicate key", ACCOUNT_OK "host = other.example.com\n", 0,
          "W: [account work] host: set more than once (lines 2 and 5); the last value is used" },
        { "duplicate group", ACCOUNT_OK "[general]\n[account work]\nport = 994\n", 0,
          "W: [account work]: appears more than once (lines 1 and 6); their keys are merged" },

        /* syntax */
        { "no equals sign", "[general]\nnotify true\n", -EINVAL,
          "E: line 2: expected \"[group]\", \"key = value\" or a \"#\" comment" },
        { "key before group", "notify = true\n[general]\n", -EINVAL,
          "E: line 1: key \"notify\" before any group; start with [general] or [account NAME]" },
        { "unclosed group", "[general\n", -EINVAL, "E: line 1: expected \"]\" at the end of the group name" },
        { "text after group", "[general] x\n", -EINVAL, "E: line 1: unexpected text after \"]\"" },
        { "empty group", "[]\n", -EINVAL, "E: line 1: empty group name" },
        { "bracket in group", "[a[b]\n", -EINVAL, "E: line 1: \"[\" in a group name" },
        { "no key", "[general]\n= x\n", -EINVAL, "E: line 2: no key before \"=\"" },
        { "bad key name", "[general]\nk]ey = x\n", -EINVAL, "E: line 2: invalid key name \"k]ey\"" },
        { "control character in group", "[gen\x01]\n", -EINVAL, "E: line 1: control character in a group name" },
        { "control character in key", "[general]\nno\x01tify = x\n", -EINVAL,
          "E: line 2: control character in a key name" },
        { "invalid UTF-8", "[general]\n# caf\xe9\nnotify = true\n", -EINVAL, "E: line 2: not valid UTF-8" },
        { "several syntax errors", "[general]\na\nb\n[x\n", -EINVAL,
          "E: line 2: expected \"[group]\", \"key = value\" or a \"#\" comment\n"
          "E: line 3: expected \"[group]\", \"key = value\" or a \"#\" comment\n"
          "E: line 4: expected \"]\" at the end of the group name" },
        { "too many syntax errors", "[general]\n1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n11\n12\n", -EINVAL,
          "E: line 2: expected \"[group]\", \"key = value\" or a \"#\" comment\n"
          "E: line 3: expected \"[group]\", \"key = value\" or a \"#\" comment\n"
          "E: line 4: expected \"[group]\", \"key = value\" or a \"#\" comment\n"
          "E: line 5: expected \"[group]\", \"key = value\" or a \"#\" comment\n"
          "E: line 6: expected \"[group]\", \"key = value\" or a \"#\" comment\n"
          "E: line 7: expected \"[group]\", \"key = value\" or a \"#\" comment\n"
          "E: line 8: expected \"[group]\", \"key = value\" or a \"#\" comment\n"
          "E: line 9: expected \"[group]\", \"key = value\" or a \"#\" comment\n"
          "E: line 10: expected \"[group]\", \"key = value\" or a \"#\" comment\n"
          "E: line 11: expected \"[group]\", \"key = value\" or a \"#\" comment\n"
          "E: 2 more syntax errors not shown" },
        { "invalid escape", ACCOUNT_OK "open_command = echo \\q\n", -EINVAL,
          "E: [account work] open_command: invalid escape sequence \"\\q\"; write \"\\\\\" for a backslash" },
        { "lone backslash", ACCOUNT_OK "open_command = echo \\\n", -EINVAL,
          "E: [account work] open_command: ends with a lone backslash; write \"\\\\\" for a backslash" },

        /* the account name */
        { "account without name", "[account]\n", -EINVAL, "E: [account]: missing account name; write [account NAME]" },
        { "account with empty name", "[account ]\n", -EINVAL,
          "E: [account ]: missing account name; write [account NAME]" },
        { "account name with slash", "[account a/b]\n", -EINVAL,
          "E: [account a/b]: the account name must not contain \"/\"" },
        { "account name with blanks", "[account  work]\n", -EINVAL,
          "E: [account  work]: the account name must not start or end with a blank" },
        { "account name dot-dot", "[account ..]\n", -EINVAL,
          "E: [account ..]: the account name must not be \".\" or \"..\"" },

        /* values */
        { "boolean", ACCOUNT_OK "notify = maybe\n", -EINVAL,
          "E: [account work] notify: expected true or false, got \"maybe\"" },
        { "notify_max_individual", "[general]\nnotify_max_individual = 1001\n", -EINVAL,
          "E: [general] notify_max_individual: expected 0-1000, got \"1001\"" },
        { "notify_timeout 0", "[general]\nnotify_timeout = 0\n", -EINVAL,
          "E: [general] notify_timeout: expected default, never or a duration from 1ms to 24h, got \"0\"" },
        { "notify_timeout 25h", "[general]\nnotify_timeout = 25h\n", -EINVAL,
          "E: [general] notify_timeout: expected default, never or a duration from 1ms to 24h, got \"25h\"" },
        { "notify_timeout junk", "[general]\nnotify_timeout = soon\n", -EINVAL,
          "E: [general] notify_timeout: expected default, never or a duration from 1ms to 24h, got \"soon\"" },
        { "hook_debounce", "[general]\nhook_debounce = 2h\n", -EINVAL,
          "E: [general] hook_debounce: expected a duration from 0s to 1h, got \"2h\"" },
        { "idle_refresh 30m", ACCOUNT_OK "idle_refresh = 30m\n", -EINVAL,
          "E: [account work] idle_refresh: expected a duration from 1m to 29m, got \"30m\"" },
        { "idle_refresh 59s", ACCOUNT_OK "idle_refresh = 59s\n", -EINVAL,
          "E: [account work] idle_refresh: expected a duration from 1m to 29m, got \"59s\"" },
        { "idle_refresh bounds", ACCOUNT_OK "idle_refresh = 1740s\n[account b]\nhost = h\nuser = u\n"
          "password_command = x\nidle_refresh = 1m\n", 0, NULL },
        { "max_connections 0", ACCOUNT_OK "max_connections = 0\n", -EINVAL,
          "E: [account work] max_connections: expected 1-100, got \"0\"" },
        { "max_connections 101", ACCOUNT_OK "max_connections = 101\n", -EINVAL,
          "E: [account work] max_connections: expected 1-100, got \"101\"" },
        { "auth", ACCOUNT_OK "auth = cram-md5\n", -EINVAL,
          "E: [account work] auth: expected auto, plain, login, xoauth2 or oauthbearer, got \"cram-md5\"" },
        { "host with port", "[account work]\nhost = imap.example.com:993\nuser = u\npassword_command = x\n", -EINVAL,
          "E: [account work] host: expected a host name or IP address (the port goes in \"port\"), got "
          "\"imap.example.com:993\"\nE: [account work] host: missing" },
        { "host with space", "[account work]\nhost = imap example\nuser = u\npassword_command = x\n", -EINVAL,
          "E: [account work] host: expected a host name or IP address, got \"imap example\"\n"
          "E: [account work] host: missing" },
        { "user with newline", "[account work]\nhost = h\nuser = a\\nb\npassword_command = x\n", -EINVAL,
          "E: [account work] user: expected a user name without control characters\nE: [account work] user: missing" },
        { "relative ca_file", ACCOUNT_OK "ca_file = certs/ca.pem\n", -EINVAL,
          "E: [account work] ca_file: expected an absolute path or one starting with ~/, got \"certs/ca.pem\"" },
        { "other user's home", ACCOUNT_OK "ca_file = ~bob/ca.pem\n", -EINVAL,
          "E: [account work] ca_file: expected an absolute path or one starting with ~/, got \"~bob/ca.pem\"" },
        { "path with a newline", ACCOUNT_OK "ca_file = /etc/a\\nb\n", -EINVAL,
          "E: [account work] ca_file: expected a path without control characters" },
        { "unreadable ca_file", ACCOUNT_OK "ca_file = /nonexistent/ca.pem\n", 0,
          "W: [account work] ca_file: cannot read /nonexistent/ca.pem: No such file or directory" },
        { "credential with slash", "[account work]\nhost = h\nuser = u\npassword_credential = ../x\n", -EINVAL,
          "E: [account work] password_credential: expected a credential name (a file name, no \"/\"), got \"../x\"\n"
          "E: [account work]: no password source; set one of password_command, password_file, password_credential "
          "or password" },
        { "mailboxes", ACCOUNT_OK "mailboxes = inbox; Lists/linux ;; INBOX; Lists/linux;\n", 0,
          "W: [account work] mailboxes: \"INBOX\" is listed more than once; ignoring the repeat\n"
          "W: [account work] mailboxes: \"Lists/linux\" is listed more than once; ignoring the repeat" },
        { "mailbox with control character", ACCOUNT_OK "mailboxes = INBOX; a\\tb\n", -EINVAL,
          "E: [account work] mailboxes: expected mailbox names without control characters" },
        { "value with quote and backslash shown escaped", ACCOUNT_OK "tls = \"x\\\\y\"\n", -EINVAL,
          "E: [account work] tls: expected implicit, starttls or none, got \"\\\"x\\\\y\\\"\"" },
        { "long value cut", ACCOUNT_OK "tls = "
          "0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789\n",
          -EINVAL,
          "E: [account work] tls: expected implicit, starttls or none, got "
          "\"012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789012345...\"" },
        { "long value cut at a character", ACCOUNT_OK "tls = "
          "01234567890123456789012345678901234567890123456789012345678901234567890123456789012345678901234\u00e9xyz\n",
          -EINVAL,
          "E: [account work] tls: expected implicit, starttls or none, got "
          "\"01234567890123456789012345678901234567890123456789012345678901234567890123456789012345678901234...\"" },
};

START_TEST(test_table) {
        const struct config_case *t = &cases[_i];
        struct config *c;

        c = parse_expect(t->text, t->ret, t->messages);
        config_free(c);
}
END_TEST

/* ---- values ------------------------------------------------------------------ */

static char *fixture(const char *name) {
        char *p;

        ck_assert_int_ge(asprintf(&p, "%s/tests/data/config/%s", srcdir(), name), 0);
        return p;
}

/* SPEC §3's example, verbatim (inline comments included), loads cleanly. */
START_TEST(test_spec_example) {
        _cleanup_free_ char *path = fixture("spec-example.conf");
        struct config_diag d = {};
        struct config *c = NULL;
        const struct config_account *a;

        ck_assert_int_eq(config_load(path, &c, &d), 0);
        ck_assert_uint_eq(d.n, 0);
        ck_assert_str_eq(c->path, path);
        ck_assert_int_eq(c->log_level, LOG_INFO);
        ck_assert(c->notify.notify);
        ck_assert(c->notify.notify_show_content);
        ck_assert_uint_eq(c->notify.notify_max_individual, 3);
        ck_assert_int_eq(c->notify.notify_timeout, CONFIG_NOTIFY_TIMEOUT_DEFAULT);
        ck_assert_str_eq(c->notify.open_command, "thunderbird -mail");
        ck_assert_ptr_null(c->notify.on_new_mail);
        ck_assert_ptr_null(c->notify.on_change);
        ck_assert_uint_eq(c->notify.hook_debounce_usec, 2 * SEC);

        ck_assert_uint_eq(c->n_accounts, 1);
        a = config_find_account(c, "work");
        ck_assert_ptr_eq(a, &c->accounts[0]);
        ck_assert_str_eq(a->id, "work");
        ck_assert_str_eq(a->host, "imap.example.com");
        ck_assert_uint_eq(a->port, 993);
        ck_assert_int_eq(a->tls, IMAP_TLS_IMPLICIT);
        ck_assert_ptr_null(a->ca_file);
        ck_assert_ptr_null(a->tls_fingerprint);
        ck_assert_str_eq(a->user, "me@example.com");
        ck_assert_int_eq(a->auth, SASL_MECH_PREF_AUTO);
        ck_assert_int_eq(a->secret_source, SECRET_COMMAND);
        ck_assert_str_eq(a->secret_value, "pass show mail/work");
        ck_assert_uint_eq(a->n_mailboxes, 2);
        ck_assert_str_eq(a->mailboxes[0], "INBOX");
        ck_assert_str_eq(a->mailboxes[1], "Lists/linux");
        ck_assert_ptr_null(a->mailboxes[2]);
        ck_assert_uint_eq(a->max_connections, 5);
        ck_assert_uint_eq(a->idle_refresh_usec, 25 * 60 * SEC);
        ck_assert(config_notify_equal(&a->notify, &c->notify));
        ck_assert_ptr_null(config_find_account(c, "home"));
        ck_assert_ptr_null(config_find_account(NULL, "work"));
        config_free(c);
        config_diag_done(&d);
}
END_TEST

/* A fresh directory for files a test needs; removed by rm_rf(). */
static char *make_tmpdir(void) {
        char *d = strdup("/tmp/test-config-XXXXXX");

        ck_assert_ptr_nonnull(d);
        ck_assert_ptr_nonnull(mkdtemp(d));
        return d;
}

static void rm_rf(const char *d) {
        char cmd[PATH_MAX + 16];

        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", d);
        ck_assert_int_eq(system(cmd), 0);
}

static void write_file(const char *path, const char *text, mode_t mode) {
        FILE *f = fopen(path, "w");

        ck_assert_ptr_nonnull(f);
        fputs(text, f);
        ck_assert_int_eq(fclose(f), 0);
        ck_assert_int_eq(chmod(path, mode), 0);
}

/* The two-account example of imapidled.conf(5). */
START_TEST(test_man_example) {
        _cleanup_free_ char *path = fixture("two-accounts.conf"), *home = make_tmpdir(), *pass = NULL, *dir = NULL;
        struct config_diag d = {};
        struct config *c = NULL;
        const struct config_account *w, *h;

        /* ~/.config/imapidled/home.pass exists, mode 0600: no warning */
        ck_assert_int_ge(asprintf(&dir, "%s/.config/imapidled", home), 0);
        ck_assert_int_ge(asprintf(&pass, "%s/home.pass", dir), 0);
        {
                _cleanup_free_ char *parent = NULL;

                ck_assert_int_ge(asprintf(&parent, "%s/.config", home), 0);
                ck_assert_int_eq(mkdir(parent, 0700), 0);
                ck_assert_int_eq(mkdir(dir, 0700), 0);
        }
        write_file(pass, "secret\n", 0600);
        ck_assert_int_eq(setenv("HOME", home, 1), 0);

        ck_assert_int_eq(config_load(path, &c, &d), 0);
        ck_assert_uint_eq(d.n, 0);
        ck_assert_uint_eq(c->n_accounts, 2);
        w = config_find_account(c, "work");
        h = config_find_account(c, "home");
        ck_assert_ptr_eq(w, &c->accounts[0]);
        ck_assert_ptr_eq(h, &c->accounts[1]);

        ck_assert_uint_eq(w->port, 993);
        ck_assert_int_eq(w->secret_source, SECRET_COMMAND);
        ck_assert_str_eq(w->secret_value, "pass show mail/work");
        ck_assert_uint_eq(w->n_mailboxes, 2);
        ck_assert_str_eq(w->notify.on_new_mail, "mbsync work");
        ck_assert(w->notify.notify_show_content);

        ck_assert_int_eq(h->tls, IMAP_TLS_STARTTLS);
        ck_assert_uint_eq(h->port, 143);
        ck_assert_int_eq(h->secret_source, SECRET_FILE);
        ck_assert_str_eq(h->secret_value, pass);
        ck_assert_uint_eq(h->n_mailboxes, 1);
        ck_assert_str_eq(h->mailboxes[0], "INBOX");
        ck_assert_ptr_null(h->notify.on_new_mail);
        ck_assert(!h->notify.notify_show_content);

        for (size_t i = 0; i < 2; i++) {
                const struct config_account *a = &c->accounts[i];

                ck_assert_uint_eq(a->notify.notify_max_individual, 5);
                ck_assert_str_eq(a->notify.open_command, "thunderbird -mail");
                ck_assert_uint_eq(a->notify.hook_debounce_usec, 5 * SEC);
        }
        config_free(c);
        config_diag_done(&d);
        rm_rf(home);
}
END_TEST

/* The examples in man/imapidled.conf.5 are the fixtures, byte for byte
 * (after roff escapes), so that the documented examples are the tested ones. */
static char *read_text(const char *path) {
        FILE *f = fopen(path, "r");
        char *buf = NULL;
        size_t n = 0;

        ck_assert_msg(f != NULL, "%s: %m", path);
        ck_assert_int_eq(getdelim(&buf, &n, '\0', f) >= 0, 1);
        fclose(f);
        return buf;
}

static void roff_unescape(char *s) {
        static const struct {
                const char *from, *to;
        } t[] = { { "\\-", "-" }, { "\\(sc", "\u00a7" }, { "\\e", "\\" }, { "\\&", "" } };
        char *w = s;

        while (*s) {
                size_t i;

                for (i = 0; i < ELEMENTSOF(t); i++)
                        if (strncmp(s, t[i].from, strlen(t[i].from)) == 0)
                                break;
                if (i < ELEMENTSOF(t)) {
                        memcpy(w, t[i].to, strlen(t[i].to));
                        w += strlen(t[i].to);
                        s += strlen(t[i].from);
                } else
                        *w++ = *s++;
        }
        *w = '\0';
}

START_TEST(test_man_page_examples) {
        _cleanup_free_ char *man_path = NULL, *man = NULL;
        const char *begin = ".\\\" BEGIN ", *end = ".\\\" END\n";
        unsigned blocks = 0;

        ck_assert_int_ge(asprintf(&man_path, "%s/man/imapidled.conf.5", srcdir()), 0);
        man = read_text(man_path);
        for (char *p = strstr(man, begin); p; p = strstr(p, begin)) {
                _cleanup_free_ char *path = NULL, *want = NULL, *got = NULL;
                char *name = p + strlen(begin), *body = strchr(name, '\n') + 1, *stop = strstr(body, end);
                struct config_diag d = {};
                struct config *c = NULL;

                ck_assert_ptr_nonnull(stop);
                ck_assert_int_ge(asprintf(&path, "%s/%.*s", srcdir(), (int) strcspn(name, " \n"), name), 0);
                got = strndup(body, (size_t) (stop - body));
                roff_unescape(got);
                want = read_text(path);
                ck_assert_msg(strcmp(got, want) == 0, "%s differs from its copy in the man page:\n%s", path, got);
                ck_assert_int_eq(config_parse_string(got, strlen(got), NULL, &c, &d), 0);
                ck_assert_msg(d.n == 0 || strstr(path, "two-accounts"), "%s: %s", path, d.n ? d.items[0].message : "");
                config_free(c);
                config_diag_done(&d);
                blocks++;
                p = stop;
        }
        ck_assert_uint_eq(blocks, 3);
}
END_TEST

START_TEST(test_defaults) {
        struct config *c = parse_ok("[account a]\nhost = h\nuser = u\npassword_command = x\n"
                                    "[account b]\nhost = h\nuser = u\npassword_command = x\ntls = starttls\n"
                                    "[account c]\nhost = localhost\nuser = u\npassword_command = x\ntls = none\n"
                                    "[account d]\nhost = h\nuser = u\npassword_command = x\ntls = starttls\n"
                                    "port = 1143\n");
        const struct config_account *a = &c->accounts[0];

        ck_assert_str_eq(c->path, "test");
        ck_assert_int_eq(c->log_level, LOG_INFO);
        ck_assert(c->notify.notify);
        ck_assert(c->notify.notify_show_content);
        ck_assert_uint_eq(c->notify.notify_max_individual, 3);
        ck_assert_int_eq(c->notify.notify_timeout, CONFIG_NOTIFY_TIMEOUT_DEFAULT);
        ck_assert_uint_eq(c->notify.notify_timeout_usec, 0);
        ck_assert_ptr_null(c->notify.open_command);
        ck_assert_ptr_null(c->notify.on_new_mail);
        ck_assert_ptr_null(c->notify.on_change);
        ck_assert_uint_eq(c->notify.hook_debounce_usec, 2 * SEC);

        ck_assert_uint_eq(c->n_accounts, 4);
        ck_assert_str_eq(a->id, "a");
        ck_assert_uint_eq(a->port, 993);
        ck_assert_int_eq(a->tls, IMAP_TLS_IMPLICIT);
        ck_assert_ptr_null(a->ca_file);
        ck_assert_ptr_null(a->tls_fingerprint);
        ck_assert_int_eq(a->auth, SASL_MECH_PREF_AUTO);
        ck_assert_uint_eq(a->n_mailboxes, 1);
        ck_assert_str_eq(a->mailboxes[0], "INBOX");
        ck_assert_ptr_null(a->mailboxes[1]);
        ck_assert_uint_eq(a->max_connections, CONFIG_MAX_CONNECTIONS_DEFAULT);
        ck_assert_uint_eq(a->idle_refresh_usec, 25 * 60 * SEC);
        ck_assert(config_notify_equal(&a->notify, &c->notify));
        ck_assert_uint_eq(c->accounts[1].port, 143);
        ck_assert_uint_eq(c->accounts[2].port, 143);
        ck_assert_uint_eq(c->accounts[3].port, 1143);
        config_free(c);
}
END_TEST

START_TEST(test_values) {
        struct config *c = parse_expect(
                "[general]\n"
                "log_level = WARNING\n"
                "notify_timeout = 1500ms\n"
                "notify_max_individual = 0\n"
                "hook_debounce = 0\n"
                "[account a]\n"
                "host = 192.0.2.1\n"
                "user = me@example.com\n"
                "auth = XOAUTH2\n"
                "tls = StartTLS\n"
                "password_credential = mail-a\n"
                "tls_fingerprint = SHA256:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:"
                "01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF\n"
                "ca_file = /dev/null\n"
                "mailboxes = Lists/a\\;b; \\#news; x\\sy  ; Archive/2024 # not a mailbox\n"
                "max_connections = 100\n"
                "idle_refresh = 29m\n"
                "[account b]\n"
                "host = ::1\n"
                "user = u\n"
                "password = a#b \\# c\\\\  # the comment\n"
                "notify_timeout = never\n",
                0, "W: [account b] password: stored in plain text; consider password_command or password_file");
        const struct config_account *a = &c->accounts[0], *b = &c->accounts[1];

        ck_assert_int_eq(c->log_level, LOG_WARNING);
        ck_assert_int_eq(c->notify.notify_timeout, CONFIG_NOTIFY_TIMEOUT_DURATION);
        ck_assert_uint_eq(c->notify.notify_timeout_usec, 1500000);
        ck_assert_uint_eq(c->notify.notify_max_individual, 0);
        ck_assert_uint_eq(c->notify.hook_debounce_usec, 0);

        ck_assert_str_eq(a->host, "192.0.2.1");
        ck_assert_int_eq(a->auth, SASL_MECH_PREF_XOAUTH2);
        ck_assert_int_eq(a->tls, IMAP_TLS_STARTTLS);
        ck_assert_int_eq(a->secret_source, SECRET_CREDENTIAL);
        ck_assert_str_eq(a->secret_value, "mail-a");
        ck_assert_str_eq(a->tls_fingerprint,
                         "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef");
        ck_assert_str_eq(a->ca_file, "/dev/null");
        ck_assert_uint_eq(a->n_mailboxes, 4);
        ck_assert_str_eq(a->mailboxes[0], "Lists/a;b");
        ck_assert_str_eq(a->mailboxes[1], "#news");
        ck_assert_str_eq(a->mailboxes[2], "x y");
        ck_assert_str_eq(a->mailboxes[3], "Archive/2024");
        ck_assert_uint_eq(a->max_connections, 100);
        ck_assert_uint_eq(a->idle_refresh_usec, 29 * 60 * SEC);

        /* the password: '#' glued to text stays, "\#" is a '#', the comment goes */
        ck_assert_int_eq(b->secret_source, SECRET_PLAIN);
        ck_assert_str_eq(b->secret_value, "a#b # c\\");
        ck_assert_int_eq(b->notify.notify_timeout, CONFIG_NOTIFY_TIMEOUT_NEVER);
        config_free(c);
}
END_TEST

/* Inline comments: cut after a blank, kept inside quotes of shell commands. */
START_TEST(test_inline_comments) {
        static const struct {
                const char *line, *want;        /* want NULL: none */
        } t[] = {
                { "on_new_mail = mbsync work   # sync", "mbsync work" },
                { "on_new_mail = mbsync work\t# sync", "mbsync work" },
                { "on_new_mail = # nothing", NULL },
                { "on_new_mail =", NULL },
                { "on_new_mail = notify-send '#1 # new'  # popup", "notify-send '#1 # new'" },
                { "on_new_mail = echo \"a # b\" # c", "echo \"a # b\"" },
                { "on_new_mail = echo \"it's # here\"", "echo \"it's # here\"" },
                { "on_new_mail = echo a#b", "echo a#b" },
                { "on_new_mail = echo a \\# b", "echo a # b" },
                { "on_new_mail = echo \\\\# b", "echo \\# b" },
                { "on_new_mail = echo x\\s", "echo x " },
                { "on_new_mail = printf 'a\\\\n'", "printf 'a\\n'" },
                { "on_new_mail = a;b", "a;b" },
                { "on_new_mail =    spaced   out   ", "spaced   out" },
        };

        for (size_t i = 0; i < ELEMENTSOF(t); i++) {
                char text[512];
                struct config *c;

                snprintf(text, sizeof(text), "[general]\n%s\n", t[i].line);
                c = parse_ok(text);
                if (t[i].want)
                        ck_assert_msg(c->notify.on_new_mail && strcmp(c->notify.on_new_mail, t[i].want) == 0,
                                      "%s: got <%s>, want <%s>", t[i].line, c->notify.on_new_mail, t[i].want);
                else
                        ck_assert_ptr_null(c->notify.on_new_mail);
                config_free(c);
        }

        /* quotes only matter in shell commands: here the comment goes */
        struct config *c = parse_ok("[account it's]\nhost = h # x\nuser = o'brien   # me\npassword_command = x\n");
        ck_assert_str_eq(c->accounts[0].id, "it's");
        ck_assert_str_eq(c->accounts[0].host, "h");
        ck_assert_str_eq(c->accounts[0].user, "o'brien");
        config_free(c);
}
END_TEST

/* An account's notification keys override [general]'s; the rest is inherited. */
START_TEST(test_overrides) {
        struct config *c = parse_ok(
                "[account first]\n"             /* before [general]: still inherits from it */
                "host = h\nuser = u\npassword_command = x\n"
                "[general]\n"
                "notify = false\n"
                "notify_show_content = false\n"
                "notify_max_individual = 7\n"
                "notify_timeout = 10s\n"
                "open_command = mail-client\n"
                "on_new_mail = sync-all\n"
                "on_change = refresh-bar\n"
                "hook_debounce = 3s\n"
                "[account own]\n"
                "host = h\nuser = u\npassword_command = x\n"
                "notify = true\n"
                "notify_show_content = true\n"
                "notify_max_individual = 1\n"
                "notify_timeout = never\n"
                "open_command = other-client\n"
                "on_new_mail = sync-own\n"
                "on_change = other-bar\n"
                "hook_debounce = 500ms\n"
                "[account off]\n"
                "host = h\nuser = u\npassword_command = x\n"
                "on_new_mail =          # no hook here\n"
                "notify =               # empty: [general]'s\n"
                "notify_timeout =\n");
        const struct config_account *first = config_find_account(c, "first"), *own = config_find_account(c, "own"),
                                    *off = config_find_account(c, "off");

        ck_assert(!c->notify.notify);
        ck_assert_str_eq(c->notify.on_new_mail, "sync-all");

        ck_assert(config_notify_equal(&first->notify, &c->notify));
        ck_assert(!first->notify.notify);
        ck_assert_uint_eq(first->notify.notify_timeout_usec, 10 * SEC);
        ck_assert_str_eq(first->notify.open_command, "mail-client");
        ck_assert_ptr_ne(first->notify.open_command, c->notify.open_command);   /* own copies */

        ck_assert(own->notify.notify);
        ck_assert(own->notify.notify_show_content);
        ck_assert_uint_eq(own->notify.notify_max_individual, 1);
        ck_assert_int_eq(own->notify.notify_timeout, CONFIG_NOTIFY_TIMEOUT_NEVER);
        ck_assert_uint_eq(own->notify.notify_timeout_usec, 0);
        ck_assert_str_eq(own->notify.open_command, "other-client");
        ck_assert_str_eq(own->notify.on_new_mail, "sync-own");
        ck_assert_str_eq(own->notify.on_change, "other-bar");
        ck_assert_uint_eq(own->notify.hook_debounce_usec, 500000);

        ck_assert(!off->notify.notify);
        ck_assert_ptr_null(off->notify.on_new_mail);
        ck_assert_str_eq(off->notify.on_change, "refresh-bar");
        ck_assert_int_eq(off->notify.notify_timeout, CONFIG_NOTIFY_TIMEOUT_DURATION);
        ck_assert_uint_eq(off->notify.notify_timeout_usec, 10 * SEC);
        config_free(c);
}
END_TEST

/* config_account_equal: what needs a new connection; notification keys do not. */
START_TEST(test_equal) {
        static const char *const changes[] = {
                "host = other.example.com\n",
                "port = 994\n",
                "tls = starttls\nport = 993\n",
                "ca_file = /dev/null\n",
                "tls_fingerprint = sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n",
                "user = other\n",
                "auth = login\n",
                "password_command = pass show other\n",
                "mailboxes = INBOX; Sent\n",
                "mailboxes = Lists\n",
                "max_connections = 4\n",
                "idle_refresh = 20m\n",
        };
        static const char *const notify_changes[] = {
                "notify = false\n",
                "notify_show_content = false\n",
                "notify_max_individual = 4\n",
                "notify_timeout = 5s\n",
                "notify_timeout = never\n",
                "open_command = x\n",
                "on_new_mail = x\n",
                "on_change = x\n",
                "hook_debounce = 1s\n",
        };
        const char *base = "[account work]\nhost = imap.example.com\nuser = me\npassword_command = pass show work\n"
                           "mailboxes = INBOX; Lists\n";
        struct config *c0 = parse_ok(base), *c1 = parse_ok(base);
        struct config_account *dup;

        ck_assert(config_account_equal(&c0->accounts[0], &c1->accounts[0]));
        ck_assert(config_account_notify_equal(&c0->accounts[0], &c1->accounts[0]));
        dup = config_account_dup(&c0->accounts[0]);
        ck_assert_ptr_nonnull(dup);
        ck_assert(config_account_equal(dup, &c0->accounts[0]));
        ck_assert(config_account_notify_equal(dup, &c0->accounts[0]));
        ck_assert_ptr_ne(dup->mailboxes, c0->accounts[0].mailboxes);
        ck_assert_ptr_null(config_account_free(dup));

        for (size_t i = 0; i < ELEMENTSOF(changes); i++) {
                char text[1024];
                struct config *c;

                /* a key of base set again: the last value counts (and a warning says so) */
                snprintf(text, sizeof(text), "%s%s", base, changes[i]);
                ck_assert_int_eq(config_parse_string(text, strlen(text), NULL, &c, NULL), 0);
                ck_assert_msg(!config_account_equal(&c0->accounts[0], &c->accounts[0]), "%s", changes[i]);
                ck_assert_msg(config_account_notify_equal(&c0->accounts[0], &c->accounts[0]), "%s", changes[i]);
                config_free(c);
        }
        for (size_t i = 0; i < ELEMENTSOF(notify_changes); i++) {
                char text[1024];
                struct config *c;

                /* in the account, and in [general] (inherited) */
                for (int where = 0; where < 2; where++) {
                        snprintf(text, sizeof(text), "%s%s%s%s", where ? "[general]\n" : "", where ? notify_changes[i] : "",
                                 base, where ? "" : notify_changes[i]);
                        c = parse_ok(text);
                        ck_assert_msg(config_account_equal(&c0->accounts[0], &c->accounts[0]), "%s", notify_changes[i]);
                        ck_assert_msg(!config_account_notify_equal(&c0->accounts[0], &c->accounts[0]), "%s",
                                      notify_changes[i]);
                        config_free(c);
                }
        }
        /* the id is part of it */
        struct config *c = parse_ok("[account home]\nhost = imap.example.com\nuser = me\n"
                                    "password_command = pass show work\nmailboxes = INBOX; Lists\n");
        ck_assert(!config_account_equal(&c0->accounts[0], &c->accounts[0]));
        config_free(c);
        config_free(c0);
        config_free(c1);
}
END_TEST

START_TEST(test_duration) {
        static const struct {
                const char *s;
                int r;
                uint64_t usec;
        } t[] = {
                { "0", 0, 0 },
                { "30", 0, 30 * SEC },
                { "30s", 0, 30 * SEC },
                { "030s", 0, 30 * SEC },
                { "25m", 0, 25 * 60 * SEC },
                { "2h", 0, 7200 * SEC },
                { "500ms", 0, 500000 },
                { "0ms", 0, 0 },
                { "18446744073709ms", 0, UINT64_C(18446744073709) * 1000 },
                { "18446744073709551615", -ERANGE, 0 },         /* UINT64_MAX seconds */
                { "18446744073709551616", -ERANGE, 0 },         /* > UINT64_MAX */
                { "99999999999999999999999999", -ERANGE, 0 },
                { "5124095576030431h", -ERANGE, 0 },
                { "18446744073709551ms", 0, UINT64_C(18446744073709551000) },
                { "18446744073709552ms", -ERANGE, 0 },
                { "18446744073709551", -ERANGE, 0 },
                { "99999999999999999999h\xce", -EINVAL, 0 },    /* junk, however many digits (fuzz-config) */
                { "99999999999999999999x", -EINVAL, 0 },
                { "99999999999999999999ms", -ERANGE, 0 },
                { "", -EINVAL, 0 },
                { "s", -EINVAL, 0 },
                { "-1", -EINVAL, 0 },
                { "+1", -EINVAL, 0 },
                { " 1", -EINVAL, 0 },
                { "1 ", -EINVAL, 0 },
                { "1 s", -EINVAL, 0 },
                { "1.5s", -EINVAL, 0 },
                { "1h30m", -EINVAL, 0 },
                { "1d", -EINVAL, 0 },
                { "1S", -EINVAL, 0 },
                { "1sec", -EINVAL, 0 },
                { "1min", -EINVAL, 0 },
                { "0x10", -EINVAL, 0 },
                { "1us", -EINVAL, 0 },
        };

        for (size_t i = 0; i < ELEMENTSOF(t); i++) {
                uint64_t u = 4242;
                int r = config_parse_duration(t[i].s, &u);

                ck_assert_msg(r == t[i].r, "\"%s\": %d, expected %d", t[i].s, r, t[i].r);
                ck_assert_msg(u == (r == 0 ? t[i].usec : 4242), "\"%s\": %" PRIu64, t[i].s, u);
        }
        ck_assert_int_eq(config_parse_duration(NULL, &(uint64_t) { 0 }), -EINVAL);
}
END_TEST

/* No message ever quotes a password or a password command, whatever is wrong. */
START_TEST(test_no_secret_in_messages) {
        static const char *const texts[] = {
                "[account work]\nhost = h\nuser = u\npassword = hunter2\n",
                "[account work]\nhost = h\nuser = u\npassword = hunter2\npassword_command = pass hunter2\n",
                "[account work]\nhost = h\nuser = u\npassword = hunter2\\q\n",
                "[account work]\nhost = h\nuser = u\npassword = hunter2\\\n",
                "[account work]\nhost = h\nuser = u\npassword_command = echo hunter2 \\x\n",
                "[account work]\nhost = h\nuser = u\npassword = hunter2\npassword = hunter2again\n",
                "[account work]\npassword = hunter2\n",
                "[account work]\nhost = h\nuser = u\ntls = none\npassword = hunter2\n",
                "[general]\npassword = hunter2\n",
                "[general]\npassword_command = pass hunter2\n",
                "[account work]\npasword = hunter2\n",
                "[acount work]\npassword = hunter2\n",
                "[account work]\npassword hunter2\n",
                "[account work]\npassword: hunter2\n",
                "password = hunter2\n",
                "[account work]\nhunter2\n",
                "[account work]\npassword = hunter2 \xff\n",
                "[account work]\npassword = hunter2\n[account work]\npassword = hunter2\n",
                "[account a/b]\npassword = hunter2\n",
        };

        for (size_t i = 0; i < ELEMENTSOF(texts); i++) {
                struct config_diag d = {};
                struct config *c = NULL;

                (void) config_parse_string(texts[i], strlen(texts[i]), NULL, &c, &d);
                ck_assert_msg(d.n > 0, "%s", texts[i]);
                for (size_t j = 0; j < d.n; j++)
                        ck_assert_msg(!strstr(d.items[j].message, "hunter2"), "%s -> %s", texts[i],
                                      d.items[j].message);
                config_free(c);
                config_diag_done(&d);
        }
}
END_TEST

/* Results are written only on success; diag may be NULL. */
START_TEST(test_api) {
        struct config_diag d = {};
        struct config *c = (struct config *) 0x1;
        const char *bad = "[account work]\nport = x\n";

        ck_assert_int_eq(config_parse_string(bad, strlen(bad), NULL, &c, NULL), -EINVAL);
        ck_assert_ptr_eq(c, (struct config *) 0x1);
        ck_assert_int_eq(config_parse_string(NULL, 0, NULL, &c, NULL), 0);
        ck_assert_ptr_null(c->path);
        ck_assert_uint_eq(c->n_accounts, 0);
        config_free(c);

        /* text[0 .. len), not up to a NUL */
        ck_assert_int_eq(config_parse_string(ACCOUNT_OK "port = x\n", strlen(ACCOUNT_OK), "n", &c, &d), 0);
        ck_assert_uint_eq(c->n_accounts, 1);
        ck_assert_str_eq(c->path, "n");
        config_free(c);

        /* a NUL inside */
        ck_assert_int_eq(config_parse_string("[general]\n\0x\n", 13, NULL, &c, &d), -EINVAL);
        ck_assert_uint_eq(d.n, 1);
        ck_assert_str_eq(d.items[0].message, "line 2: contains a NUL byte");
        ck_assert_int_eq(d.items[0].severity, CONFIG_DIAG_ERROR);

        /* diag appends */
        ck_assert_int_eq(config_parse_string(bad, strlen(bad), NULL, &c, &d), -EINVAL);
        ck_assert_uint_eq(d.n, 5);
        ck_assert_uint_eq(d.n_errors, 5);
        config_diag_done(&d);
        ck_assert_uint_eq(d.n, 0);
        config_diag_done(&d);
        config_diag_done(NULL);
        ck_assert_ptr_null(config_free(NULL));
        ck_assert_ptr_null(config_account_free(NULL));
}
END_TEST

struct logged {
        char lines[4][256];
        int levels[4];
        size_t n;
};

static void log_capture(int level, const char *line, void *userdata) {
        struct logged *l = userdata;

        if (l->n < ELEMENTSOF(l->lines)) {
                snprintf(l->lines[l->n], sizeof(l->lines[0]), "%s", line);
                l->levels[l->n++] = level;
        }
}

START_TEST(test_diag_log) {
        const char *text = "[general]\nnotfy = x\nlog_level = loud\n";
        struct config_diag d = {};
        struct logged l = {};
        struct config *c;

        ck_assert_int_eq(config_parse_string(text, strlen(text), NULL, &c, &d), -EINVAL);
        log_set_sink(log_capture, &l);
        config_diag_log(&d, "cfg: ");
        config_diag_log(NULL, NULL);
        log_set_sink(NULL, NULL);
        ck_assert_uint_eq(l.n, 2);
        ck_assert_int_eq(l.levels[0], LOG_WARNING);
        ck_assert_ptr_nonnull(strstr(l.lines[0], "cfg: [general] notfy: unknown key, did you mean \"notify\"?"));
        ck_assert_int_eq(l.levels[1], LOG_ERR);
        ck_assert_ptr_nonnull(strstr(l.lines[1], "cfg: [general] log_level: expected"));
        config_diag_done(&d);
}
END_TEST

/* ---- files ----------------------------------------------------------------- */

/* The environment the file tests change, put back after each (for CK_FORK=no). */
static char *saved_env[2];
static const char *const env_names[2] = { "HOME", "XDG_CONFIG_HOME" };

static void env_save(void) {
        for (size_t i = 0; i < ELEMENTSOF(env_names); i++) {
                const char *v = getenv(env_names[i]);

                saved_env[i] = v ? strdup(v) : NULL;
        }
}

static void env_restore(void) {
        for (size_t i = 0; i < ELEMENTSOF(env_names); i++) {
                if (saved_env[i])
                        setenv(env_names[i], saved_env[i], 1);
                else
                        unsetenv(env_names[i]);
                free(saved_env[i]);
                saved_env[i] = NULL;
        }
}

START_TEST(test_default_path) {
        _cleanup_free_ char *p = NULL;
        struct passwd *pw;

        ck_assert_int_eq(setenv("XDG_CONFIG_HOME", "/xdg/conf", 1), 0);
        ck_assert_int_eq(setenv("HOME", "/home/someone", 1), 0);
        p = config_default_path();
        ck_assert_str_eq(p, "/xdg/conf/imapidled/config");
        free(p);

        ck_assert_int_eq(setenv("XDG_CONFIG_HOME", "/xdg/conf//", 1), 0);
        p = config_default_path();
        ck_assert_str_eq(p, "/xdg/conf/imapidled/config");
        free(p);

        /* relative or empty: ignored (XDG Base Directory spec) */
        ck_assert_int_eq(setenv("XDG_CONFIG_HOME", "conf", 1), 0);
        p = config_default_path();
        ck_assert_str_eq(p, "/home/someone/.config/imapidled/config");
        free(p);
        ck_assert_int_eq(setenv("XDG_CONFIG_HOME", "", 1), 0);
        p = config_default_path();
        ck_assert_str_eq(p, "/home/someone/.config/imapidled/config");
        free(p);

        ck_assert_int_eq(unsetenv("XDG_CONFIG_HOME"), 0);
        ck_assert_int_eq(setenv("HOME", "/", 1), 0);
        p = config_default_path();
        ck_assert_str_eq(p, "/.config/imapidled/config");
        free(p);

        /* no $HOME: the passwd entry */
        ck_assert_int_eq(unsetenv("HOME"), 0);
        pw = getpwuid(getuid());
        p = config_default_path();
        if (pw && pw->pw_dir && pw->pw_dir[0] == '/') {
                char want[PATH_MAX + 64];

                snprintf(want, sizeof(want), "%s/.config/imapidled/config",
                         strcmp(pw->pw_dir, "/") == 0 ? "" : pw->pw_dir);
                ck_assert_str_eq(p, want);
        }
}
END_TEST

START_TEST(test_load) {
        _cleanup_free_ char *dir = make_tmpdir(), *def = NULL, *big = NULL, *conf = NULL, *msg = NULL;
        struct config_diag d = {};
        struct config *c = NULL;
        FILE *f;

        ck_assert_int_eq(setenv("XDG_CONFIG_HOME", dir, 1), 0);
        ck_assert_int_ge(asprintf(&def, "%s/imapidled/config", dir), 0);

        /* the default path, missing: valid, no accounts, a warning */
        ck_assert_int_eq(config_load(NULL, &c, &d), 0);
        ck_assert_str_eq(c->path, def);
        ck_assert_uint_eq(c->n_accounts, 0);
        ck_assert_int_eq(c->log_level, LOG_INFO);
        ck_assert(c->notify.notify);
        ck_assert_uint_eq(d.n, 1);
        ck_assert_int_eq(d.items[0].severity, CONFIG_DIAG_WARNING);
        ck_assert_int_ge(asprintf(&msg, "no config file at %s: running with no accounts", def), 0);
        ck_assert_str_eq(d.items[0].message, msg);
        config_diag_done(&d);
        c = config_free(c);

        /* the same path given explicitly, as the daemon does */
        ck_assert_int_eq(config_load(def, &c, &d), 0);
        ck_assert_uint_eq(d.n, 1);
        config_diag_done(&d);
        c = config_free(c);

        /* any other missing path is an error */
        ck_assert_int_ge(asprintf(&conf, "%s/other", dir), 0);
        c = (struct config *) 0x1;
        ck_assert_int_eq(config_load(conf, &c, &d), -ENOENT);
        ck_assert_ptr_eq(c, (struct config *) 0x1);
        ck_assert_uint_eq(d.n, 1);
        free(msg);
        ck_assert_int_ge(asprintf(&msg, "cannot read %s: No such file or directory", conf), 0);
        ck_assert_str_eq(d.items[0].message, msg);
        ck_assert_int_eq(d.items[0].severity, CONFIG_DIAG_ERROR);
        config_diag_done(&d);

        /* a directory */
        ck_assert_int_eq(config_load(dir, &c, &d), -EISDIR);
        ck_assert_uint_eq(d.n_errors, 1);
        config_diag_done(&d);

        /* an empty file and one without accounts are valid */
        write_file(conf, "", 0600);
        ck_assert_int_eq(config_load(conf, &c, &d), 0);
        ck_assert_uint_eq(d.n, 0);
        c = config_free(c);
        write_file(conf, "[general]\nnotify = false\n", 0600);
        ck_assert_int_eq(config_load(conf, &c, &d), 0);
        ck_assert_uint_eq(d.n, 0);
        ck_assert(!c->notify.notify);
        c = config_free(c);

        /* at the limit and above */
        f = fopen(conf, "w");
        ck_assert_ptr_nonnull(f);
        for (size_t i = 0; i < CONFIG_FILE_MAX / 64; i++)
                fprintf(f, "%-63s\n", "# padding");
        ck_assert_int_eq(fclose(f), 0);
        ck_assert_int_eq(config_load(conf, &c, &d), 0);
        c = config_free(c);
        f = fopen(conf, "a");
        fputc('\n', f);
        fclose(f);
        c = (struct config *) 0x1;
        ck_assert_int_eq(config_load(conf, &c, &d), -EFBIG);
        ck_assert_ptr_eq(c, (struct config *) 0x1);
        free(msg);
        ck_assert_int_ge(asprintf(&msg, "cannot read %s: larger than %d bytes", conf, CONFIG_FILE_MAX), 0);
        ck_assert_str_eq(d.items[0].message, msg);
        config_diag_done(&d);

        /* unreadable (root reads anything) */
        if (geteuid() != 0) {
                write_file(conf, "", 0);
                ck_assert_int_eq(config_load(conf, &c, &d), -EACCES);
                config_diag_done(&d);
        }

        /* invalid */
        write_file(conf, ACCOUNT_OK "port = abc\n", 0600);
        ck_assert_int_eq(config_load(conf, &c, &d), -EINVAL);
        ck_assert_uint_eq(d.n, 1);
        config_diag_done(&d);
        rm_rf(dir);
}
END_TEST

/* password_file: "~" expanded, and a warning when others can read it. */
START_TEST(test_password_file) {
        _cleanup_free_ char *home = make_tmpdir(), *pass = NULL, *text = NULL, *want = NULL;
        struct config_diag d = {};
        struct config *c = NULL;

        ck_assert_int_eq(setenv("HOME", home, 1), 0);
        ck_assert_int_ge(asprintf(&pass, "%s/work.pass", home), 0);
        ck_assert_int_ge(asprintf(&text, "%s", "[account work]\nhost = h\nuser = u\npassword_file = ~/work.pass\n"), 0);

        write_file(pass, "secret\n", 0600);
        c = parse_ok(text);
        ck_assert_int_eq(c->accounts[0].secret_source, SECRET_FILE);
        ck_assert_str_eq(c->accounts[0].secret_value, pass);
        config_free(c);

        for (mode_t m = 0604; m <= 0644; m += 040) {
                write_file(pass, "secret\n", m);
                ck_assert_int_eq(config_parse_string(text, strlen(text), NULL, &c, &d), 0);
                free(want);
                ck_assert_int_ge(asprintf(&want, "[account work] password_file: %s is readable by others (mode %04o); "
                                          "chmod 600 it", pass, (unsigned) m), 0);
                ck_assert_uint_eq(d.n, 1);
                ck_assert_int_eq(d.items[0].severity, CONFIG_DIAG_WARNING);
                ck_assert_str_eq(d.items[0].message, want);
                ck_assert(!strstr(d.items[0].message, "secret"));
                config_diag_done(&d);
                c = config_free(c);
        }

        /* a directory */
        ck_assert_int_eq(unlink(pass), 0);
        ck_assert_int_eq(mkdir(pass, 0700), 0);
        ck_assert_int_eq(config_parse_string(text, strlen(text), NULL, &c, &d), 0);
        free(want);
        ck_assert_int_ge(asprintf(&want, "[account work] password_file: %s is a directory", pass), 0);
        ck_assert_str_eq(d.items[0].message, want);
        config_diag_done(&d);
        c = config_free(c);

        /* "~" alone is the home directory */
        const char *t2 = "[account work]\nhost = h\nuser = u\npassword_file = ~\n";
        ck_assert_int_eq(config_parse_string(t2, strlen(t2), NULL, &c, &d), 0);
        ck_assert_str_eq(c->accounts[0].secret_value, home);
        config_diag_done(&d);
        c = config_free(c);
        rm_rf(home);
}
END_TEST

Suite *config_suite(void) {
        Suite *s = suite_create("config");
        TCase *tc = tcase_create("table");

        tcase_add_loop_test(tc, test_table, 0, (int) ELEMENTSOF(cases));
        suite_add_tcase(s, tc);

        tc = tcase_create("values");
        tcase_add_test(tc, test_spec_example);
        tcase_add_test(tc, test_man_page_examples);
        tcase_add_test(tc, test_defaults);
        tcase_add_test(tc, test_values);
        tcase_add_test(tc, test_inline_comments);
        tcase_add_test(tc, test_overrides);
        tcase_add_test(tc, test_equal);
        tcase_add_test(tc, test_duration);
        tcase_add_test(tc, test_no_secret_in_messages);
        tcase_add_test(tc, test_api);
        tcase_add_test(tc, test_diag_log);
        suite_add_tcase(s, tc);

        tc = tcase_create("files");
        tcase_add_checked_fixture(tc, env_save, env_restore);
        tcase_add_test(tc, test_man_example);
        tcase_add_test(tc, test_default_path);
        tcase_add_test(tc, test_load);
        tcase_add_test(tc, test_password_file);
        suite_add_tcase(s, tc);
        return s;
}
