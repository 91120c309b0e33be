/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The configuration file (SPEC §3, imapidled.conf(5)): GKeyFile syntax,
 * read into plain C structures. GLib stays inside src/config.c.
 *
 *     [general]            log_level and the notification keys
 *     [account NAME]       one IMAP account each; may override the
 *                          notification keys of [general]
 *
 * Loading never stops at the first problem: every problem found goes into
 * a struct config_diag as one line naming group and key, e.g.
 *
 *     [account work] port: expected 1-65535, got "abc"
 *     [account work] hots: unknown key, did you mean "host"?
 *
 * Errors make the file invalid (nothing is returned); warnings do not.
 * No message ever contains the value of password or password_command.
 *
 * Syntax on top of GKeyFile (see imapidled.conf(5)):
 *   - A '#' that starts a value or follows a space or tab begins a comment,
 *     on key lines and after a [group] header alike. In the command keys
 *     (password_command, open_command, on_new_mail, on_change) a '#' inside
 *     '...' or "..." quotes does not. "\#" is a literal '#' everywhere.
 *   - Escapes as in GKeyFile: \s \t \n \r \\, plus \# and \; (a ';' that
 *     does not separate list items). Any other backslash sequence is an
 *     error.
 *   - Booleans: true/false, yes/no, on/off, 1/0 (any case). Keywords
 *     (tls, auth, log_level, notify_timeout) are case-insensitive.
 *   - Durations: config_parse_duration().
 *   - An empty value means the key's default ("not set"); for an account's
 *     notification key that is the value from [general]. open_command,
 *     on_new_mail and on_change are the exception: empty means "none", and
 *     in an account it overrides [general] (how one account turns a global
 *     hook off).
 *   - Paths (ca_file, password_file) must be absolute or start with "~/";
 *     "~" is $HOME (or the passwd entry's home).
 *   - A UTF-8 byte order mark at the start is skipped; a key set twice keeps
 *     its last value (with a warning); a group given twice is merged (with a
 *     warning).
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "imap-session.h"
#include "sasl.h"
#include "secret.h"

/* Limits and defaults (also in imapidled.conf(5)). */
#define CONFIG_FILE_MAX                 (1024 * 1024)           /* bytes */
#define CONFIG_PORT_IMPLICIT            993
#define CONFIG_PORT_PLAIN               143
#define CONFIG_MAX_CONNECTIONS_DEFAULT  5u
#define CONFIG_MAX_CONNECTIONS_MAX      100u
#define CONFIG_IDLE_REFRESH_DEFAULT     (UINT64_C(25) * 60 * 1000000)
#define CONFIG_IDLE_REFRESH_MIN         (UINT64_C(1) * 60 * 1000000)
#define CONFIG_IDLE_REFRESH_MAX         (UINT64_C(29) * 60 * 1000000)   /* RFC 2177: servers drop at 30 min */
#define CONFIG_NOTIFY_MAX_INDIVIDUAL_DEFAULT 3u
#define CONFIG_NOTIFY_MAX_INDIVIDUAL_MAX 1000u
#define CONFIG_NOTIFY_TIMEOUT_MAX       (UINT64_C(24) * 3600 * 1000000) /* fits the protocol's int32 ms */
#define CONFIG_HOOK_DEBOUNCE_DEFAULT    (UINT64_C(2) * 1000000)
#define CONFIG_HOOK_DEBOUNCE_MAX        (UINT64_C(3600) * 1000000)

enum config_notify_timeout {
        CONFIG_NOTIFY_TIMEOUT_DEFAULT,  /* "default": the notification server decides */
        CONFIG_NOTIFY_TIMEOUT_NEVER,    /* "never": stays until dismissed */
        CONFIG_NOTIFY_TIMEOUT_DURATION, /* notify_timeout_usec */
};

/* The keys [general] sets and an [account NAME] may override. Strings are
 * owned by the structure that embeds this one. */
struct config_notify {
        bool notify;                            /* default true */
        bool notify_show_content;               /* default true */
        unsigned notify_max_individual;         /* default 3, 0 .. 1000 */
        enum config_notify_timeout notify_timeout;
        uint64_t notify_timeout_usec;           /* DURATION only (1 ms .. 24 h); 0 otherwise */
        char *open_command;                     /* NULL: none */
        char *on_new_mail;                      /* NULL: none */
        char *on_change;                        /* NULL: none */
        uint64_t hook_debounce_usec;            /* default 2 s, 0 .. 1 h */
};

struct config_account {
        char *id;                       /* the NAME of [account NAME]: non-empty, UTF-8, no '/' */
        char *host;
        uint16_t port;                  /* default 993 for tls = implicit, else 143 */
        enum imap_tls_mode tls;         /* default IMAP_TLS_IMPLICIT */
        char *ca_file;                  /* "~" expanded; NULL: the system trust store */
        char *tls_fingerprint;          /* NULL, or "sha256:" + 64 lowercase hex digits */
        char *user;
        enum sasl_mech_pref auth;       /* default SASL_MECH_PREF_AUTO */
        enum secret_source secret_source; /* exactly one source (secret.h) */
        char *secret_value;             /* SECRET_COMMAND: the shell command; SECRET_FILE: the path, "~"
                                         * expanded; SECRET_CREDENTIAL: the credential name; SECRET_PLAIN:
                                         * the password itself (wiped when freed) */
        char **mailboxes;               /* NULL-terminated, n_mailboxes long, at least "INBOX";
                                         * "INBOX" in any case is spelt "INBOX"; no duplicates */
        size_t n_mailboxes;
        unsigned max_connections;       /* default 5, 1 .. 100 */
        uint64_t idle_refresh_usec;     /* default 25 min, 1 .. 29 min */
        struct config_notify notify;    /* resolved: the account's own keys over [general]'s */
};

struct config {
        char *path;                     /* the file read, or the name given to config_parse_string(); may be NULL */
        int log_level;                  /* LOG_ERR .. LOG_DEBUG, default LOG_INFO */
        struct config_notify notify;    /* [general] */
        struct config_account *accounts; /* in file order */
        size_t n_accounts;
};

enum config_diag_severity {
        CONFIG_DIAG_ERROR,
        CONFIG_DIAG_WARNING,
};

struct config_diag_item {
        enum config_diag_severity severity;
        char *message;                  /* one line, no newline, owned */
};

/* Problems found while loading, in the order found. Start zeroed
 * (struct config_diag d = {};), release with config_diag_done(). Loading
 * appends, so one diag may collect several loads. */
struct config_diag {
        struct config_diag_item *items;
        size_t n;
        size_t n_errors;
        size_t n_warnings;
};

/* Frees every item and zeroes *d. Accepts NULL. */
void config_diag_done(struct config_diag *d);

/* Logs every item, errors with log_error(), warnings with log_warning(),
 * prefixed with prefix (e.g. the file name and ": "; NULL for none).
 * d and prefix are borrowed. Accepts NULL. */
void config_diag_log(const struct config_diag *d, const char *prefix);

/*
 * Reads and validates the configuration file at path (borrowed). path NULL
 * means config_default_path().
 *
 * A missing file (ENOENT) at the default path — path NULL or equal to
 * config_default_path() — is not an error: the result is a valid
 * configuration with no account, and a warning "no config file at PATH:
 * running with no accounts". Any other path must exist.
 *
 * Returns:
 *   0        valid; *ret is a new configuration owned by the caller
 *            (config_free()); diag may hold warnings
 *   -EINVAL  invalid; the errors (and warnings) are in diag
 *   -errno   the file cannot be read (-ENOENT, -EACCES, -EISDIR, -EFBIG
 *            above CONFIG_FILE_MAX...) or no default path can be formed
 *            (-ENXIO: no home directory); one error in diag says why
 *   -ENOMEM
 * *ret is written only on success. diag may be NULL (problems are then only
 * counted). The file's bytes are wiped from memory after parsing (they may
 * hold a password); GKeyFile's own copies cannot be, which is one more
 * reason to prefer password_command or password_file.
 */
int config_load(const char *path, struct config **ret, struct config_diag *diag);

/* The same for text[0 .. len) (need not be NUL-terminated; borrowed). name
 * (borrowed, may be NULL) becomes config->path. Files named by the text
 * (password_file, ca_file) are looked at as in config_load(). */
int config_parse_string(const char *text, size_t len, const char *name, struct config **ret,
                        struct config_diag *diag);

/* Frees c and everything it owns, wiping a plain-text password. Accepts
 * NULL; returns NULL. */
struct config *config_free(struct config *c);

/* "$XDG_CONFIG_HOME/imapidled/config" when $XDG_CONFIG_HOME is an absolute
 * path, else "$HOME/.config/imapidled/config" ($HOME if absolute, else the
 * passwd entry of the real user). Returns a malloc'ed string owned by the
 * caller, or NULL with errno set (ENOMEM; ENXIO when there is no home). */
char *config_default_path(void);

/* The account with that id, or NULL. Borrowed from c: valid until
 * config_free(c). c and id are borrowed; c may be NULL. */
const struct config_account *config_find_account(const struct config *c, const char *id);

/* true if a and b (borrowed) agree on every setting that needs a new
 * connection to take effect: id, host, port, tls, ca_file,
 * tls_fingerprint, user, auth, the password source and its value,
 * mailboxes (in order: the first is the home mailbox), max_connections and
 * idle_refresh. The notification keys are not compared: a reload that only
 * changes those keeps the account's sessions. */
bool config_account_equal(const struct config_account *a, const struct config_account *b);

/* true if the resolved notification settings of a and b are the same. */
bool config_account_notify_equal(const struct config_account *a, const struct config_account *b);
bool config_notify_equal(const struct config_notify *a, const struct config_notify *b);

/* A deep copy of a (borrowed) on the heap, owned by the caller; NULL on
 * OOM. For an owner that outlives the struct config it came from. */
struct config_account *config_account_dup(const struct config_account *a);

/* Frees a copy made by config_account_dup(), wiping a plain-text
 * password. Accepts NULL; returns NULL. */
struct config_account *config_account_free(struct config_account *a);

/*
 * Parses a duration: decimal digits and an optional unit, nothing else (no
 * sign, no space, no fraction, one number only): "30" or "30s" seconds,
 * "500ms", "25m" minutes, "2h" hours. On success writes *ret_usec and
 * returns 0. Returns -EINVAL for NULL, "", junk, a sign or an unknown unit,
 * -ERANGE when the result does not fit in uint64_t microseconds. s is
 * borrowed.
 */
int config_parse_duration(const char *s, uint64_t *ret_usec);
