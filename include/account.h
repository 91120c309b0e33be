/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * One configured account: its IMAP sessions (spread over its connection
 * budget), its mailboxes' persisted points, its password source, and the
 * typed events it publishes to the daemon's sink.
 *
 * Exactly once across restarts: a new message is published only after the
 * point that covers it is on disk (persist, then announce), so a crash
 * between the two can lose an announcement but never repeat one.
 */

#include <stdbool.h>
#include <stdint.h>
#include <systemd/sd-event.h>

#include "config.h"
#include "mail-event.h"

struct account;
struct state_store;

struct account_env {
        sd_event *event;
        struct state_store *state;      /* NULL: nothing persisted (tests) */
        const struct mail_sink *sink;   /* where events go; may be NULL */
        bool trace;                     /* IMAP exchange at debug level, credentials redacted */
        /* state or counts of the account changed (for STATUS=, D-Bus) */
        void (*changed)(struct account *a, void *userdata);
        void *userdata;
};

/* cfg is copied (deep). Returns 0 or -errno. */
int account_new(const struct account_env *env, const struct config_account *cfg, struct account **ret);
struct account *account_free(struct account *a);        /* closes its connections at once; NULL-safe */

int account_start(struct account *a);
/* LOGOUT on every session; done is called when all have ended. */
int account_stop(struct account *a, void (*done)(struct account *a, void *userdata), void *userdata);

/* After resume: drop every connection and reconnect now. */
void account_reconnect(struct account *a);
/* The network changed: reconnect sessions that wait in backoff at once, and
 * make idle ones prove they are alive within 10 s. */
void account_network_changed(struct account *a);
/* CheckNow (D-Bus): sessions waiting in backoff or error reconnect at once;
 * idle ones leave IDLE, catch up and must be answered within 10 s. */
void account_check_now(struct account *a);

/* Sets \Seen on a message, through a short extra connection (the watching
 * ones stay read-only). done: r = 0, -ENOENT (no such mailbox or UID, with
 * a message), other -errno; called once, later, never from inside this call.
 * If the account is freed first, done gets -ECANCELED. */
typedef void (*account_mark_seen_fn)(int r, const char *message, void *userdata);
int account_mark_seen(struct account *a, const char *mailbox, uint32_t uid, account_mark_seen_fn done, void *userdata);

const struct config_account *account_config(const struct account *a);
const char *account_id(const struct account *a);
/* The least advanced state of its sessions, in public terms. */
const char *account_state(const struct account *a);
const char *account_last_error(const struct account *a);

unsigned account_n_mailboxes(const struct account *a);
unsigned account_mailboxes_idle(const struct account *a);      /* watched by a session in IDLE */
unsigned account_unseen(const struct account *a);
unsigned account_connections(const struct account *a);         /* sessions running */
/* Per mailbox info (i < account_n_mailboxes). */
void account_mailbox_info(const struct account *a, unsigned i, struct mail_mailbox_info *ret);
/* The last failure of the connection watching mailbox i, "" while it is
 * idle or before any failure. Borrowed: valid until the next event. */
const char *account_mailbox_last_error(const struct account *a, unsigned i);
