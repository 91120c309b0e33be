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
 * removed, as are NOTIFY_SOCKET, WATCHDOG_* and LISTEN_*. The child is
 * started with spawn_shell() (spawn.h): a process group of its own, no fds
 * but 0..2, an empty signal mask and default signal dispositions, with
 *
 *   stdin    /dev/null
 *   stdout   the daemon's stderr, so what it prints lands in the journal
 *            next to the daemon's lines (/dev/null if the daemon has no
 *            stderr)
 *   stderr   a pipe the daemon reads on the loop. Only the last
 *            HOOKS_STDERR_KEEP bytes are kept; the rest is read and
 *            dropped, so a hook that writes megabytes neither blocks nor
 *            costs memory.
 *
 * Its exit is watched through a pidfd on the loop; nothing blocks. What is
 * kept of stderr is reported when the run has ended, never while it runs:
 *
 *   failure  (exit status != 0, killed by a signal, also after a timeout)
 *            one error line naming account, mailbox, the hook's key and how
 *            it ended, with stderr cleaned and folded into the same line
 *            (spawn_output_excerpt(): control characters dropped, line
 *            breaks as " / ", "..." in front if the start was dropped):
 *              work/INBOX: on_new_mail hook failed (exit status 3): boom: x / y
 *   success  each line of stderr at info level:
 *              work/INBOX: on_new_mail hook: some warning
 *
 * A run that cannot be started is an error line too. The command itself is
 * logged at debug level only. Whatever a background process of the hook
 * writes to stderr after the hook has ended is read and dropped until it
 * closes the pipe, so it neither blocks nor dies of SIGPIPE (a hook that
 * wants to keep such output redirects it: 2>>FILE).
 *
 * A run still going after HOOKS_TIMEOUT_USEC (5 min;
 * $IMAPIDLED_HOOK_TIMEOUT_MS overrides it for tests) gets a warning and
 * SIGTERM + SIGCONT to its process group, then SIGKILL 2 s later.
 *
 * When the hooks are freed (daemon exit), pending runs are dropped and
 * running ones are left to finish on their own; their stderr is read and
 * dropped by the loop until it is freed.
 */

#include <systemd/sd-event.h>

#include "config.h"
#include "mail-event.h"

#define HOOKS_UIDS_MAX 1000u
#define HOOKS_TEXT_MAX 1000u                            /* bytes of IMAPIDLED_FROM / _SUBJECT */
#define HOOKS_TIMEOUT_USEC (UINT64_C(5) * 60 * 1000000)
#define HOOKS_STDERR_KEEP 1024u                         /* bytes of a run's stderr kept: the last ones */

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
