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

#include "mail-event.h"

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

/* An extra output (D-Bus, notifications, hooks); the daemon's own log
 * output is always there. The sink must outlive the daemon. */
int daemon_add_sink(struct daemon *d, const struct mail_sink *sink);
