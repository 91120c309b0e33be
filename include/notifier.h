/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Desktop notifications (SPEC §6): an output like the others, fed through a
 * struct mail_sink. It decides what pops up; notify-worker.c shows it
 * without ever blocking the loop.
 *
 *   one message      summary = sender (display name, else address), body =
 *                    subject; icon "mail-unread", category
 *                    "email.arrived", app name "imapidled"; actions
 *                    "default" (click: open_command, when set) and
 *                    "mark-read" ("Mark as read": \Seen on the server, the
 *                    same path as the MarkSeen method)
 *   a burst          messages of one account count as one burst while each
 *                    arrives within NOTIFIER_BURST_WINDOW_USEC of the
 *                    previous one. Once a burst has more than
 *                    notify_max_individual messages, its individual popups
 *                    are closed and one summary popup ("12 new messages on
 *                    work", body "From A, B, C and others") stands for all
 *                    of them; it is updated in place (same notification id)
 *                    as more arrive. Messages that arrive together (one
 *                    pass of the loop: a catch-up after a reconnect) are
 *                    counted before anything is shown, so a catch-up above
 *                    the limit never flashes individual popups.
 *   no content       notify_show_content = false: "New mail on ACCOUNT"
 *                    with an empty body ("N new messages on ACCOUNT" for a
 *                    burst); no sender or subject leaves the daemon
 *   retraction       a message marked \Seen or removed (here or from any
 *                    other client) closes its popup; a summary closes once
 *                    every message it stands for is seen or removed
 *   Paused, notify   while paused, or for an account with notify = false,
 *                    new mail pops nothing up (and does not count towards
 *                    a burst); signals and hooks are not affected
 *
 * Text is cleaned by notify-text.c (controls, bidi overrides, ill-formed
 * UTF-8 removed; cut at a character boundary) and escaped by the worker
 * when the server renders body markup.
 *
 * open_command runs as /bin/sh -c COMMAND with IMAPIDLED_ACCOUNT,
 * IMAPIDLED_MAILBOX and, for a single message, IMAPIDLED_UID in its
 * environment (data only in the environment, as for hooks); its failure is
 * logged.
 */

#include <stdbool.h>
#include <stdint.h>

#include <systemd/sd-event.h>

#include "config.h"
#include "mail-event.h"

#define NOTIFIER_BURST_WINDOW_USEC (UINT64_C(10) * 1000000)
#define NOTIFIER_POPUPS_MAX 64u         /* single-message popups tracked for retraction */

struct notifier;

/* "Mark as read" was chosen on the popup of account/mailbox/uid. */
typedef void (*notifier_mark_seen_fn)(const char *account, const char *mailbox, uint32_t uid, void *userdata);

/* Creates the notifications output on e (borrowed; must outlive it) and
 * starts its worker thread. config (borrowed, may be NULL) is where the
 * notify keys are looked up, by account id, for every event: it must stay
 * valid until notifier_set_config() replaces it or notifier_free().
 * mark_seen may be NULL. *ret is owned by the caller. Returns 0 or -errno. */
int notifier_new(sd_event *e, const struct config *config, notifier_mark_seen_fn mark_seen, void *userdata,
                 struct notifier **ret);

void notifier_set_config(struct notifier *n, const struct config *config);
void notifier_set_paused(struct notifier *n, bool paused);

/* The sink to register with daemon_add_sink(); borrowed from n. */
const struct mail_sink *notifier_sink(struct notifier *n);

/* Accepts NULL; returns NULL. Popups on screen stay. */
struct notifier *notifier_free(struct notifier *n);
