/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * What imapidlectl shows: a snapshot of the daemon as read from the bus
 * (Manager properties, accounts, mailboxes) and its renderings: the status
 * table, JSON, and the one-update-at-a-time formats of `watch`. Pure code: no
 * bus, no I/O, no global state. imapidlectl fills the snapshot
 * (src/imapidlectl.c); nothing in the daemon uses this module.
 *
 * Strings from the bus are valid UTF-8 by contract; the renderers do not rely
 * on it: ill-formed bytes come out as U+FFFD. Human formats (table, text,
 * i3blocks, the waybar tooltip) show control characters as spaces, so server
 * text can neither break a line-oriented format nor drive the terminal; JSON
 * escapes them.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct ctl_mailbox {
        char *account;          /* account id */
        char *name;             /* UTF-8 mailbox name */
        char *path;             /* object path */
        char *state;
        char *last_error;       /* "" when none or unknown */
        uint32_t unseen, exists, uid_validity, uid_next;
};

struct ctl_account {
        char *name;
        char *host, *user, *state, *last_error; /* "" when unknown */
        uint32_t unseen;
};

enum ctl_daemon {
        CTL_DAEMON_RUNNING,             /* the snapshot below is valid */
        CTL_DAEMON_NOT_RUNNING,         /* nobody owns org.imapidled.Daemon1 */
        CTL_DAEMON_ERROR,               /* running, but reading its state failed: error says why */
};

struct ctl_state {
        enum ctl_daemon daemon;
        char *error;
        char *version, *state;          /* Manager.Version, Manager.State */
        bool paused;
        uint32_t unseen_total;
        struct ctl_account *accounts;   /* every mailbox's account is among them */
        size_t n_accounts;
        struct ctl_mailbox *mailboxes;  /* in ListMailboxes order */
        size_t n_mailboxes;
};

/* The one-word summary of waybar's class and alt, also in the JSON. */
enum ctl_class {
        CTL_CLASS_NONE,         /* running, nothing unseen */
        CTL_CLASS_UNREAD,       /* running, something unseen */
        CTL_CLASS_ERROR,        /* an account or mailbox in "error" or "backoff", or the state unreadable */
        CTL_CLASS_OFFLINE,      /* not running, or Manager.State "offline" (no account watching) */
};

enum ctl_format {
        CTL_FORMAT_TEXT,
        CTL_FORMAT_JSON,
        CTL_FORMAT_WAYBAR,
        CTL_FORMAT_I3BLOCKS,
};

/* i3blocks colours, one per class (documented in imapidlectl(1)). */
#define CTL_COLOR_UNREAD  "#FFCC00"
#define CTL_COLOR_NONE    "#A0A0A0"
#define CTL_COLOR_ERROR   "#FF5555"
#define CTL_COLOR_OFFLINE "#707070"

/* Frees every string and array and zeroes s; s may be NULL. */
void ctl_state_done(struct ctl_state *s);

enum ctl_class ctl_state_class(const struct ctl_state *s);
const char *ctl_class_to_string(enum ctl_class c);      /* "none", "unread", "error", "offline" */

/* "text", "json", "waybar", "i3blocks" -> the format; -EINVAL otherwise. */
int ctl_format_from_string(const char *s);

/* Each render function stores a malloc'ed, NUL-terminated string owned by
 * the caller in *ret (written only on success) and returns 0, or -ENOMEM. */

/* `status`: a header, a table of accounts, a table of mailboxes, totals.
 * Meant for CTL_DAEMON_RUNNING; other states give one explanatory line. */
int ctl_render_table(const struct ctl_state *s, char **ret);

/* `status --json` and a `watch --format json` update: one JSON object on
 * one line, ending in "\n". */
int ctl_render_json(const struct ctl_state *s, char **ret);

/* One `watch` update in format f, ending in "\n": one line, or three for
 * i3blocks (full text, short text, colour). */
int ctl_render_update(const struct ctl_state *s, enum ctl_format f, char **ret);
