/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * One IMAP connection that watches one or more mailboxes, kept alive for as
 * long as the owner wants it: connect (TLS or STARTTLS), authenticate with a
 * secret fetched anew at every connect, ENABLE CONDSTORE/QRESYNC, EXAMINE,
 * sync from the owner's persisted point, IDLE, and after any failure
 * reconnect with exponential backoff and jitter.
 *
 * The first mailbox is the home mailbox: it stays selected (read-only) and
 * is watched with IDLE. Further mailboxes are watched through NOTIFY (RFC
 * 5465) where the server offers it, so that one connection serves them all;
 * otherwise they are checked with STATUS every poll interval. When one of
 * them has news the session visits it (EXAMINE, fetch) and returns home.
 *
 * Exactly-once: the owner passes the persisted point (UIDVALIDITY, highest
 * UID announced, HIGHESTMODSEQ). New mail is a message whose UID is above
 * that point, under the same UIDVALIDITY, and that is neither \Seen nor
 * \Deleted when fetched; each is reported once through new_message, and the
 * point moves on. On a first start (no point) existing mail is counted, not
 * reported. A UIDVALIDITY change resets the point without reporting the
 * mailbox's content.
 *
 * The session reports upward through callbacks and knows nothing of D-Bus,
 * notifications or configuration files. Server text in the reports is raw
 * (RFC 2047 words undecoded); envelope pointers are valid during the call.
 */

#include <stdbool.h>
#include <stdint.h>
#include <systemd/sd-event.h>

#include "imap-parser.h"
#include "sasl.h"

struct imap_session;

enum session_state {
        SESSION_STOPPED,        /* not started, or stopped by the owner */
        SESSION_CONNECTING,     /* resolving, TCP, implicit TLS handshake */
        SESSION_GREETING,
        SESSION_CAPABILITY,
        SESSION_STARTTLS,
        SESSION_AUTHENTICATING, /* includes waiting for the secret */
        SESSION_ENABLING,
        SESSION_EXAMINING,
        SESSION_SYNCING,
        SESSION_IDLE,
        SESSION_LOGOUT,
        SESSION_BACKOFF,        /* waiting to reconnect after a transient failure */
        SESSION_ERROR,          /* waiting to reconnect after a failure that needs the user (auth, TLS) */
        _SESSION_STATE_MAX,
};

const char *session_state_to_string(enum session_state s);
/* The public name (spec §5: connecting, authenticating, syncing, idle, backoff, error, offline). */
const char *session_state_to_public(enum session_state s);

enum imap_tls_mode {
        IMAP_TLS_IMPLICIT,
        IMAP_TLS_STARTTLS,
        IMAP_TLS_NONE,          /* loopback only: credentials are refused elsewhere */
};

struct imap_session_config {
        const char *account;            /* id for log lines and errors */
        const char *host;
        uint16_t port;
        enum imap_tls_mode tls;
        const char *ca_file;            /* NULL: system store */
        const char *fingerprint;        /* NULL or "sha256:<hex>" */
        const char *user;
        enum sasl_mech_pref auth;
        const char *const *mailboxes;   /* UTF-8 names; the first is the home mailbox */
        size_t n_mailboxes;
        bool no_notify;                 /* do not use NOTIFY even if offered (poll instead) */
        uint64_t poll_interval_usec;    /* STATUS checks of further mailboxes without NOTIFY; 0: 5 min */
        uint64_t idle_refresh_usec;     /* 0: 25 min */
        uint64_t command_timeout_usec;  /* 0: 60 s */
        uint64_t connect_timeout_usec;  /* 0: 30 s */
        uint64_t backoff_min_usec;      /* 0: 1 s */
        uint64_t backoff_max_usec;      /* 0: 5 min */
        uint64_t auth_backoff_min_usec; /* 0: 60 s (auth and TLS failures) */
        uint64_t stable_usec;           /* a session up this long resets the backoff; 0: 60 s */
        bool trace;                     /* log the exchange at debug level, credentials redacted */
        /* One-shot mode (MarkSeen): when store_uid is set, the session logs
         * in, SELECTs its first mailbox read-write, sets \Seen on that UID,
         * logs out and reports through store_done; it never watches and never
         * reconnects. Watching sessions stay on EXAMINE. */
        uint32_t store_uid;
};

/* What the owner persists, per (account, mailbox). All zero: first start. */
struct imap_mailbox_point {
        uint32_t uidvalidity;
        uint32_t announced_uid;         /* highest UID announced or counted */
        uint64_t highestmodseq;
};

struct imap_mailbox_status {
        const char *mailbox;
        uint32_t uidvalidity, uidnext, exists, unseen;
        uint64_t highestmodseq;
        struct imap_mailbox_point point;        /* persist this */
};

struct imap_message {
        const char *mailbox;
        uint32_t uid, uidvalidity;
        const struct imap_envelope *envelope;   /* raw fields */
        const char *internaldate;               /* NULL if not sent */
        uint64_t size;
};

struct imap_session_callbacks {
        void (*state_changed)(struct imap_session *s, enum session_state old, enum session_state new,
                              void *userdata);
        /* The session needs the secret (password or OAuth token): answer,
         * now or later, with imap_session_set_secret() or _secret_failed(). */
        void (*need_secret)(struct imap_session *s, void *userdata);
        void (*mailbox_status)(struct imap_session *s, const struct imap_mailbox_status *st, void *userdata);
        void (*mailbox_reset)(struct imap_session *s, const char *mailbox, uint32_t old_uidvalidity,
                              uint32_t new_uidvalidity, void *userdata);
        void (*new_message)(struct imap_session *s, const struct imap_message *m, void *userdata);
        /* After each batch of new messages (a sync or a fetch after EXISTS). */
        void (*batch_done)(struct imap_session *s, const char *mailbox, unsigned n_new, void *userdata);
        void (*removed)(struct imap_session *s, const char *mailbox, const uint32_t *uids, size_t n, void *userdata);
        void (*flags_changed)(struct imap_session *s, const char *mailbox, uint32_t uid, bool seen, bool deleted,
                              void *userdata);
        /* One-shot mode: r = 0 done, -ENOENT no such UID, other -errno with
         * a message. Called once; the session is STOPPED afterwards. */
        void (*store_done)(struct imap_session *s, int r, const char *message, void *userdata);
};

/* cfg strings are copied. The session does nothing until _start(). */
int imap_session_new(sd_event *e, const struct imap_session_config *cfg, const struct imap_session_callbacks *cb,
                     void *userdata, struct imap_session **ret);
/* Accepts NULL; returns NULL. Closes the connection at once (no LOGOUT). */
struct imap_session *imap_session_free(struct imap_session *s);

/* The persisted point of one watched mailbox; -ENOENT if it is not watched. */
int imap_session_set_point(struct imap_session *s, const char *mailbox, const struct imap_mailbox_point *p);
const struct imap_mailbox_point *imap_session_get_point(const struct imap_session *s, const char *mailbox);
/* true once NOTIFY SET was accepted on the current connection */
bool imap_session_uses_notify(const struct imap_session *s);

int imap_session_start(struct imap_session *s);
/* LOGOUT politely, then STOPPED; done is called when the session has ended
 * (immediately if not connected). */
int imap_session_stop(struct imap_session *s, void (*done)(struct imap_session *s, void *userdata));
/* Reconnect now: ends a backoff wait, or drops the connection and starts a
 * new one (after resume from suspend, on network change). */
int imap_session_reconnect(struct imap_session *s);

/* Is the connection still alive? An idle session leaves IDLE and expects the
 * server's answer within timeout_usec, else it reconnects (after a network
 * change, where waiting for TCP keepalive would take minutes; CheckNow).
 * Mailboxes checked by polling are checked at once too. */
int imap_session_check(struct imap_session *s, uint64_t timeout_usec);

/* The network changed: reconnect at once when the connection's local
 * address is gone (renumbered: it can never work again), else as
 * imap_session_check(). */
int imap_session_network_changed(struct imap_session *s, uint64_t timeout_usec);

/* Answers need_secret. The secret is copied and wiped after use. */
void imap_session_set_secret(struct imap_session *s, const char *secret);
void imap_session_secret_failed(struct imap_session *s, const char *message);

enum session_state imap_session_get_state(const struct imap_session *s);
const char *imap_session_last_error(const struct imap_session *s);     /* "" if none */
const char *imap_session_capabilities(const struct imap_session *s);   /* space separated, for diagnostics */
unsigned imap_session_connects(const struct imap_session *s);          /* connections made so far */
uint64_t imap_session_backoff_usec(const struct imap_session *s);      /* the current/last backoff delay */
size_t imap_session_memory(const struct imap_session *s);
