/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The hooks of SPEC §6: on_new_mail and on_change, user commands run for
 * mail events. An output like the others: it receives the accounts' events
 * through a struct mail_sink.
 *
 *   on_new_mail   new messages in a mailbox
 *   on_change     any change of a mailbox: new mail, removal, flag change,
 *                 changed counts (unseen, exists, uidvalidity; the first
 *                 counts the server reports after start-up are the
 *                 baseline, not a change)
 *
 * Per account, mailbox and hook: the first event of a burst starts a timer
 * of hook_debounce; when it fires, the hook runs once with everything
 * collected since the last run started. A hook never runs twice at once for
 * the same account/mailbox: events during a run are collected and start
 * their own debounce, and a run that falls due meanwhile starts when the
 * current one has ended.
 *
 * A run is /bin/sh -c COMMAND (the command from the config, never anything
 * from the server) with the data in environment variables only:
 *
 *   IMAPIDLED_EVENT     new_mail | change
 *   IMAPIDLED_ACCOUNT   the account id
 *   IMAPIDLED_MAILBOX   the mailbox name (UTF-8)
 *   IMAPIDLED_COUNT     new messages since the previous run (may be 0 for
 *                       on_change)
 *   IMAPIDLED_UIDS      their UIDs, space-separated, the first
 *                       HOOKS_UIDS_MAX only
 *   IMAPIDLED_FROM,     for exactly one new message: its sender (display
 *   IMAPIDLED_SUBJECT   name, else address) and subject, decoded UTF-8
 *                       without control characters, at most
 *                       HOOKS_TEXT_MAX bytes
 *
 * Every other IMAPIDLED_* variable of the daemon's own environment is
 * removed, as are NOTIFY_SOCKET, WATCHDOG_* and LISTEN_*. The child runs in
 * a process group of its own with stdin /dev/null, stdout and stderr on the
 * daemon's stderr (so what it prints lands in the journal next to the
 * daemon's lines), no other fds, an empty signal mask and default signal
 * dispositions. Its exit is watched through a pidfd on the loop; nothing
 * blocks.
 *
 * A run that fails (exit status != 0, killed by a signal, cannot be
 * started) is logged as an error naming account, mailbox and the hook's key
 * (the command itself only at debug level). A run still going after
 * HOOKS_TIMEOUT_USEC (5 min; $IMAPIDLED_HOOK_TIMEOUT_MS overrides it for
 * tests) gets a warning and SIGTERM + SIGCONT to its process group, then
 * SIGKILL 2 s later.
 *
 * When the hooks are freed (daemon exit), pending runs are dropped and
 * running ones are left to finish on their own.
 */

#include <systemd/sd-event.h>

#include "config.h"
#include "mail-event.h"

#define HOOKS_UIDS_MAX 1000u
#define HOOKS_TEXT_MAX 1000u                            /* bytes of IMAPIDLED_FROM / _SUBJECT */
#define HOOKS_TIMEOUT_USEC (UINT64_C(5) * 60 * 1000000)

struct hooks;

/* Creates the hooks output on e (borrowed; must outlive the hooks). config
 * (borrowed, may be NULL) is where the commands and debounce times are
 * looked up, by account id, whenever an event arrives or a run starts: it
 * must stay valid until hooks_set_config() replaces it or hooks_free().
 * *ret is owned by the caller. Returns 0 or -errno. */
int hooks_new(sd_event *e, const struct config *config, struct hooks **ret);

/* After a reload: config (borrowed) replaces the old one. Collected events
 * of a hook that is no longer configured are dropped. */
void hooks_set_config(struct hooks *h, const struct config *config);

/* The sink to register with daemon_add_sink(); borrowed from h. */
const struct mail_sink *hooks_sink(struct hooks *h);

/* Accepts NULL; returns NULL. */
struct hooks *hooks_free(struct hooks *h);
