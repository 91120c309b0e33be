/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The daemon: one sd-event loop, the accounts of the configuration, the
 * state store, signals (SIGTERM/SIGINT: LOGOUT and exit 0; SIGHUP: reload),
 * systemd notification (READY, STATUS, STOPPING, watchdog), logind's
 * PrepareForSleep and rtnetlink changes, and the outputs fed by the
 * accounts' events.
 */

#include <stdbool.h>
#include <stddef.h>

#include "mail-event.h"

struct account;
struct daemon;

struct daemon_options {
        const char *config_path;        /* NULL: the default path */
        const char *state_dir;          /* NULL: $XDG_STATE_HOME/imapidled */
        bool verbose;
        bool trace;
};

/* Loads the configuration (an invalid one is an error here: nothing to fall
 * back to) and sets up the loop. */
int daemon_new(const struct daemon_options *o, struct daemon **ret);
struct daemon *daemon_free(struct daemon *d);

/* Runs until SIGTERM/SIGINT; returns the exit status. */
int daemon_run(struct daemon *d);

/* Re-reads the configuration: an invalid file is reported and the running
 * one stays; unchanged accounts keep their connections. Returns 0 or -errno
 * (-EINVAL: invalid file, errors logged). */
int daemon_reload(struct daemon *d);
/* The same; when it fails and ret_errors is not NULL, *ret_errors is a new
 * string (owned by the caller, free()) with the configuration's errors, one
 * per line without a final newline ("" if there were none, e.g. -EACCES). */
int daemon_reload_full(struct daemon *d, char **ret_errors);

/* An extra output (D-Bus, notifications, hooks); the daemon's own log
 * output is always there. The sink must outlive the daemon. */
int daemon_add_sink(struct daemon *d, const struct mail_sink *sink);

/* The running accounts, in config order (borrowed; valid until the next
 * reload or daemon_free). */
size_t daemon_n_accounts(const struct daemon *d);
struct account *daemon_get_account(const struct daemon *d, size_t i);
/* NULL if no account has that id (borrowed). */
struct account *daemon_find_account(const struct daemon *d, const char *id);

/* Look for new mail now: accounts waiting in backoff or error reconnect at
 * once, idle sessions make the server prove it is alive and catch up. */
void daemon_check_now(struct daemon *d);

/* Do-not-disturb (D-Bus Paused): no popups; signals and hooks go on. */
bool daemon_get_paused(const struct daemon *d);
void daemon_set_paused(struct daemon *d, bool paused);

/* LOGOUT everywhere and leave the loop; daemon_run() then returns error
 * (< 0), so the process exits 1. For a fatal condition found while running
 * (another instance took the bus name). */
void daemon_exit_failure(struct daemon *d, int error);
