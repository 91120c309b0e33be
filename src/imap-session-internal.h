/* SPDX-License-Identifier: MIT */
#pragma once

/* Shared between imap-session.c (connection, states, authentication,
 * reconnects) and imap-sync.c (mailbox sync, IDLE, events). */

#include "imap-session.h"
#include "imap-writer.h"
#include "log.h"
#include "tls-conn.h"
#include "uidset.h"

struct imap_session;

/* One watched mailbox. */
struct watched {
        char *name;                             /* UTF-8 */
        struct imap_mailbox_point point;
        uint32_t uidvalidity, uidnext, exists, unseen_count;
        uint64_t highestmodseq;
        struct uidset unseen;                   /* neither \Seen nor \Deleted, as of the last visit */
        bool unseen_known;
        bool dirty;                             /* news: visit it */
};

/* Called with the tagged completion of the command in flight. */
typedef int (*cmd_done_fn)(struct imap_session *s, const struct imap_response *r);

struct imap_session {
        sd_event *event;
        struct imap_session_config cfg;         /* strings owned */
        struct imap_session_callbacks cb;
        void *userdata;
        char *log_prefix;                       /* "account/mailbox: " */

        enum session_state state;
        struct conn *conn;
        struct imap_parser *parser;
        struct imap_writer writer;
        bool tls_active;
        bool discard_input;                     /* STARTTLS accepted: drop the rest of this read */

        char **caps;                            /* current capability list */
        size_t n_caps;
        bool have_caps;

        /* the command in flight (one at a time) */
        char tag[16];
        cmd_done_fn on_done;
        struct imap_command pending;            /* unsent rest of a command with synchronizing literals */
        size_t pending_off;
        unsigned pending_sync;
        sd_event_source *cmd_timer;
        uint64_t cmd_timeout_usec;              /* what cmd_timer was armed with */
        const char *cmd_name;                   /* for timeout messages */

        /* authentication */
        enum sasl_mech mech;
        char *secret;
        size_t secret_len;
        bool secret_requested;
        bool auth_challenge_answered;           /* OAuth error challenge seen */
        char *bye_text;                         /* text of a * BYE, for the close reason */

        /* IDLE */
        bool idle_sent;                         /* "IDLE" sent, waiting for "+" */
        bool idling;                            /* "+" received */
        bool done_sent;
        sd_event_source *refresh_timer;

        /* the watched mailboxes; mb[0] is home */
        struct watched *mb;
        size_t n_mb;
        struct watched *sel;                    /* selected (EXAMINE sent), NULL if none */

        /* the selected mailbox */
        bool condstore, qresync;
        struct uidset uids;                     /* every UID: the sequence-number map */
        bool synced;                            /* the map is complete */
        bool awaiting_closed;                   /* QRESYNC: data before [CLOSED] is the old mailbox's */
        bool fetching_new;                      /* FETCH responses with ENVELOPE are candidates */
        bool need_fetch;                        /* EXISTS grew: fetch after leaving IDLE */
        unsigned batch_new;
        struct uidset search_result;            /* collects SEARCH / ESEARCH */

        /* further mailboxes: NOTIFY, or STATUS polling */
        bool notify_active, notify_failed;
        unsigned notify_attempts;
        bool list_status_failed;
        bool status_round;                      /* STATUS of every further mailbox in progress */
        size_t status_next;
        bool poll_due;
        sd_event_source *poll_timer;

        /* reconnects */
        sd_event_source *backoff_timer;
        unsigned attempts, auth_attempts;
        uint64_t backoff_usec;
        uint64_t connected_at;                  /* CLOCK_MONOTONIC usec, 0 if not connected */
        unsigned connects;
        char last_error[512];

        bool store_found, store_reported;

        void (*stop_done)(struct imap_session *s, void *userdata);
        sd_event_source *stop_timer;

        unsigned busy;                          /* > 0 while dispatching */
        bool dead;                              /* freed while busy */
};

#define session_log(s, level, r, ...) log_internal((level), (r), (s)->log_prefix, __VA_ARGS__)
#define SESSION_HOME(s) (&(s)->mb[0])

void session_set_state(struct imap_session *s, enum session_state state);
int session_send(struct imap_session *s, struct imap_command *cmd, const char *name, cmd_done_fn done);
int session_fail(struct imap_session *s, enum session_state kind, int r, const char *fmt, ...)
        _attribute_printf_(4, 5);
bool session_has_cap(const struct imap_session *s, const char *cap);
int session_arm_command_timer(struct imap_session *s);

/* imap-sync.c */
int sync_start(struct imap_session *s);               /* after login: ENABLE, then the work loop */
int sync_store_start(struct imap_session *s);         /* after login, one-shot mode */
void sync_store_report(struct imap_session *s, int r, const char *message);
struct watched *sync_find(const struct imap_session *s, const char *name);
void sync_update_prefix(struct imap_session *s);
int sync_handle_untagged(struct imap_session *s, const struct imap_response *r);
int sync_idle_continue(struct imap_session *s);        /* "+" after IDLE */
int sync_idle_enter(struct imap_session *s);
int sync_idle_leave(struct imap_session *s);
void sync_reset_connection(struct imap_session *s);    /* forget per-connection state */
