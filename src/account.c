/* SPDX-License-Identifier: MIT */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "account.h"
#include "imap-session.h"
#include "log.h"
#include "mail-decode.h"
#include "secret.h"
#include "session-plan.h"
#include "state-store.h"

#define SECRET_TIMEOUT_USEC (30ULL * 1000000)
#define NETWORK_CHECK_TIMEOUT_USEC (10ULL * 1000000)

struct account;

/* One IMAP session of the account and what it waits for. */
struct slot {
        struct account *account;
        struct imap_session *session;
        struct secret_request *secret;
        size_t first, n;                /* its mailboxes: a->mb[first .. first + n) */
        bool stopping;
};

/* A one-shot connection that marks a message read. */
struct marker {
        struct account *account;
        struct marker *next;
        struct imap_session *session;
        struct secret_request *secret;
        account_mark_seen_fn done;
        void *userdata;
        sd_event_source *reap;          /* frees the session outside its callbacks */
};

struct mailbox {
        char *name;
        struct imap_mailbox_point point;        /* as last persisted (or loaded) */
        uint32_t unseen, exists, uidvalidity, uidnext;
        struct slot *slot;
};

/* A new message waiting for its point to reach the disk. */
struct pending {
        struct account *account;        /* NULL once the account is gone */
        struct pending *next;
        struct mail_message m;          /* strings owned */
        unsigned batch_end;             /* > 0: publish new_mail_done(n) after it */
        bool saved;
};

struct account {
        struct account_env env;
        struct config_account *cfg;
        char *log_prefix;

        struct mailbox *mb;
        size_t n_mb;
        struct slot *slots;
        size_t n_slots;
        bool planned;                   /* the connection budget was applied */
        sd_event_source *plan_defer;

        struct pending *queue_head, *queue_tail;
        unsigned batch_waiting;         /* a batch_done came while messages were pending */

        uint64_t secret_timeout_usec;
        uint64_t auth_backoff_min_usec;         /* 0: the session's default */
        uint64_t command_timeout_usec;  /* 0: the session's default */
        struct marker *markers;
        void (*stop_done)(struct account *a, void *userdata);
        void *stop_userdata;
        char last_error[512];
};

#define account_log(a, level, r, ...) log_internal((level), (r), (a)->log_prefix, __VA_ARGS__)

static const struct imap_session_callbacks session_cb;

static struct mailbox *find_mailbox(struct account *a, const char *name) {
        for (size_t i = 0; i < a->n_mb; i++)
                if (strcmp(a->mb[i].name, name) == 0 ||
                    (strcasecmp(a->mb[i].name, "INBOX") == 0 && strcasecmp(name, "INBOX") == 0))
                        return &a->mb[i];
        return NULL;
}

static void changed(struct account *a) {
        if (a->env.changed)
                a->env.changed(a, a->env.userdata);
}

static void publish_mailbox(struct account *a, struct mailbox *m) {
        struct mail_mailbox_info info;

        if (!a->env.sink || !a->env.sink->mailbox_changed)
                return;
        account_mailbox_info(a, (unsigned) (m - a->mb), &info);
        a->env.sink->mailbox_changed(&info, a->env.sink->userdata);
}

/* ---- new mail: persist, then publish ------------------------------------- */

static void pending_free(struct pending *p) {
        free((char *) p->m.account);
        free((char *) p->m.mailbox);
        free((char *) p->m.from);
        free((char *) p->m.from_address);
        free((char *) p->m.subject);
        free((char *) p->m.message_id);
        free(p);
}

/* Publishes the queue's saved head entries, in order. */
static void flush_queue(struct account *a) {
        while (a->queue_head && a->queue_head->saved) {
                struct pending *p = a->queue_head;

                a->queue_head = p->next;
                if (!a->queue_head)
                        a->queue_tail = NULL;
                account_log(a, LOG_INFO, 0, "new mail in %s: UID %u from \"%s\", subject \"%s\"", p->m.mailbox,
                            p->m.uid, p->m.from, p->m.subject);
                if (a->env.sink && a->env.sink->new_mail)
                        a->env.sink->new_mail(&p->m, a->env.sink->userdata);
                if (p->batch_end && a->env.sink && a->env.sink->new_mail_done)
                        a->env.sink->new_mail_done(a->cfg->id, p->m.mailbox, p->batch_end, a->env.sink->userdata);
                pending_free(p);
        }
}

static void on_saved(struct state_store *st, int r, const char *message, void *userdata) {
        struct pending *p = userdata;
        struct account *a = p->account;

        if (!a) {               /* the account went away meanwhile */
                pending_free(p);
                return;
        }
        if (r < 0)
                /* announcing matters more than remembering: go on, say so */
                account_log(a, LOG_WARNING, r, "cannot save the state of %s (%s); a restart may announce "
                            "this message again", p->m.mailbox, message);
        p->saved = true;
        flush_queue(a);
}

static int queue_message(struct account *a, struct mailbox *mb, const struct imap_message *im) {
        struct pending *p;
        char *from = NULL, *addr = NULL, *subject = NULL;
        int r;

        p = calloc(1, sizeof(*p));
        if (!p)
                return -ENOMEM;
        p->account = a;
        r = mail_decode_from(im->envelope, &from, &addr);
        if (r >= 0)
                r = mail_decode_text(im->envelope->subject, MAIL_TEXT_MAX, &subject);
        p->m = (struct mail_message) {
                .account = strdup(a->cfg->id),
                .mailbox = strdup(mb->name),
                .uid = im->uid,
                .uidvalidity = im->uidvalidity,
                .from = from,
                .from_address = addr,
                .subject = subject,
                .message_id = strdup(im->envelope->message_id ? im->envelope->message_id : ""),
                .date = mail_decode_date(im->envelope->date),
                .size = im->size,
        };
        if (r < 0 || !p->m.account || !p->m.mailbox || !p->m.message_id) {
                pending_free(p);
                return -ENOMEM;
        }

        if (a->queue_tail)
                a->queue_tail->next = p;
        else
                a->queue_head = p;
        a->queue_tail = p;

        mb->point.uidvalidity = im->uidvalidity;
        mb->point.announced_uid = im->uid;
        if (!a->env.state) {
                p->saved = true;
                flush_queue(a);
                return 0;
        }
        r = state_store_save(a->env.state, a->cfg->id, mb->name, &mb->point, on_saved, p);
        if (r < 0) {
                account_log(a, LOG_WARNING, r, "cannot save the state of %s: %m", mb->name);
                p->saved = true;
                flush_queue(a);
        }
        return 0;
}

/* ---- session callbacks --------------------------------------------------- */

static void on_session_state(struct imap_session *s, enum session_state old, enum session_state new, void *userdata);

/* The answer of the password source goes to the session that asked. */
static void pass_secret(struct imap_session *s, struct secret_request **req, const char *secret, const char *error) {
        *req = NULL;
        if (secret)
                imap_session_set_secret(s, secret);
        else
                imap_session_secret_failed(s, error);
}

/* Starts the account's password source for a session (watching or one-shot). */
static void fetch_secret(struct account *a, struct imap_session *s, struct secret_request **req, secret_done_fn done,
                         void *userdata) {
        *req = secret_cancel(*req);
        if (secret_fetch(a->env.event, a->cfg->secret_source, a->cfg->secret_value, a->secret_timeout_usec, done,
                         userdata, req) < 0)
                imap_session_secret_failed(s, "cannot start the password source");
}

/* The session settings every connection of the account shares. */
static struct imap_session_config session_config(const struct account *a, const char *const *names, size_t n) {
        return (struct imap_session_config) {
                .account = a->cfg->id,
                .host = a->cfg->host,
                .port = a->cfg->port,
                .tls = a->cfg->tls,
                .ca_file = a->cfg->ca_file,
                .fingerprint = a->cfg->tls_fingerprint,
                .user = a->cfg->user,
                .auth = a->cfg->auth,
                .mailboxes = names,
                .n_mailboxes = n,
                .idle_refresh_usec = a->cfg->idle_refresh_usec,
                .auth_backoff_min_usec = a->auth_backoff_min_usec,
                .command_timeout_usec = a->command_timeout_usec,
                .trace = a->env.trace,
        };
}

static void on_secret(struct secret_request *q, const char *secret, const char *error, void *userdata) {
        struct slot *sl = userdata;

        pass_secret(sl->session, &sl->secret, secret, error);
}

static void on_need_secret(struct imap_session *s, void *userdata) {
        struct slot *sl = userdata;

        fetch_secret(sl->account, s, &sl->secret, on_secret, sl);
}

static void on_mailbox_status(struct imap_session *s, const struct imap_mailbox_status *st, void *userdata) {
        struct slot *sl = userdata;
        struct account *a = sl->account;
        struct mailbox *mb = find_mailbox(a, st->mailbox);

        if (!mb)
                return;
        mb->unseen = st->unseen;
        mb->exists = st->exists;
        mb->uidvalidity = st->uidvalidity;
        mb->uidnext = st->uidnext;
        /* the point moves on with counted (not announced) mail, a reset,
         * or a new HIGHESTMODSEQ: persist it (announced mail was persisted
         * before it was published) */
        if (memcmp(&mb->point, &st->point, sizeof(mb->point)) != 0 && st->point.uidvalidity) {
                mb->point = st->point;
                if (a->env.state)
                        state_store_save(a->env.state, a->cfg->id, mb->name, &mb->point, NULL, NULL);
        }
        publish_mailbox(a, mb);
        changed(a);
}

static void on_mailbox_reset(struct imap_session *s, const char *mailbox, uint32_t old, uint32_t new, void *userdata) {
        struct slot *sl = userdata;

        account_log(sl->account, LOG_WARNING, 0, "%s was rebuilt on the server (UIDVALIDITY %u -> %u): its "
                    "messages are counted again, not announced", mailbox, old, new);
}

static void on_new_message(struct imap_session *s, const struct imap_message *m, void *userdata) {
        struct slot *sl = userdata;
        struct account *a = sl->account;
        struct mailbox *mb = find_mailbox(a, m->mailbox);
        int r;

        if (!mb)
                return;
        r = queue_message(a, mb, m);
        if (r < 0)
                account_log(a, LOG_ERR, r, "cannot announce UID %u in %s: %m", m->uid, mb->name);
}

static void on_batch_done(struct imap_session *s, const char *mailbox, unsigned n, void *userdata) {
        struct slot *sl = userdata;
        struct account *a = sl->account;

        if (a->queue_tail) {
                a->queue_tail->batch_end = n;   /* published after the last of the batch */
                return;
        }
        if (a->env.sink && a->env.sink->new_mail_done)
                a->env.sink->new_mail_done(a->cfg->id, mailbox, n, a->env.sink->userdata);
}

static void on_removed(struct imap_session *s, const char *mailbox, const uint32_t *uids, size_t n, void *userdata) {
        struct slot *sl = userdata;
        struct account *a = sl->account;

        if (a->env.sink && a->env.sink->removed)
                a->env.sink->removed(a->cfg->id, mailbox, uids, n, a->env.sink->userdata);
}

static void on_flags(struct imap_session *s, const char *mailbox, uint32_t uid, bool seen, bool deleted,
                     void *userdata) {
        struct slot *sl = userdata;
        struct account *a = sl->account;

        if (a->env.sink && a->env.sink->flags_changed)
                a->env.sink->flags_changed(a->cfg->id, mailbox, uid, seen || deleted, a->env.sink->userdata);
}

static const struct imap_session_callbacks session_cb = {
        .state_changed = on_session_state,
        .need_secret = on_need_secret,
        .mailbox_status = on_mailbox_status,
        .mailbox_reset = on_mailbox_reset,
        .new_message = on_new_message,
        .batch_done = on_batch_done,
        .removed = on_removed,
        .flags_changed = on_flags,
};

/* ---- sessions ------------------------------------------------------------ */

static void slot_done(struct slot *sl) {
        sl->secret = secret_cancel(sl->secret);
        sl->session = imap_session_free(sl->session);
}

static int slot_start(struct account *a, struct slot *sl) {
        const char *names[a->n_mb];
        struct imap_session_config sc = session_config(a, names, sl->n);
        int r;

        for (size_t i = 0; i < sl->n; i++) {
                names[i] = a->mb[sl->first + i].name;
                a->mb[sl->first + i].slot = sl;
        }
        sl->account = a;
        r = imap_session_new(a->env.event, &sc, &session_cb, sl, &sl->session);
        if (r < 0)
                return r;
        for (size_t i = 0; i < sl->n; i++) {
                struct mailbox *mb = &a->mb[sl->first + i];

                if (mb->point.uidvalidity)
                        imap_session_set_point(sl->session, mb->name, &mb->point);
        }
        return imap_session_start(sl->session);
}

/* Without NOTIFY, one IDLE connection per mailbox while the budget lasts. */
static void apply_plan(struct account *a) {
        struct session_group groups[a->n_mb];
        struct slot *slots;
        size_t k;
        int r;

        a->planned = true;
        k = session_plan(a->n_mb, a->cfg->max_connections, false, groups);
        if (k <= 1)
                return;
        account_log(a, LOG_INFO, 0, "the server has no NOTIFY: watching %zu mailboxes on %zu connections "
                    "(max_connections = %u)", a->n_mb, k, a->cfg->max_connections);
        slots = calloc(k, sizeof(*slots));
        if (!slots)
                return;
        /* the points the first session reached go to the new ones */
        for (size_t i = 0; i < a->n_slots; i++)
                slot_done(&a->slots[i]);
        free(a->slots);
        a->slots = slots;
        a->n_slots = k;
        for (size_t i = 0; i < k; i++) {
                a->slots[i].first = groups[i].first;
                a->slots[i].n = groups[i].n;
                r = slot_start(a, &a->slots[i]);
                if (r < 0)
                        account_log(a, LOG_ERR, r, "cannot start a session: %m");
        }
}

static int on_plan_defer(sd_event_source *es, void *userdata) {
        struct account *a = userdata;

        a->plan_defer = sd_event_source_disable_unref(a->plan_defer);
        apply_plan(a);
        changed(a);
        return 0;
}

static void on_session_state(struct imap_session *s, enum session_state old, enum session_state new,
                             void *userdata) {
        struct slot *sl = userdata;
        struct account *a = sl->account;

        if (new == SESSION_ERROR || new == SESSION_BACKOFF) {
                snprintf(a->last_error, sizeof(a->last_error), "%s", imap_session_last_error(s));
                if (a->env.sink && a->env.sink->account_state)
                        a->env.sink->account_state(a->cfg->id, account_state(a), a->last_error,
                                                   a->env.sink->userdata);
        } else if (new == SESSION_IDLE) {
                a->last_error[0] = '\0';
                if (!a->planned && !a->plan_defer && a->n_slots == 1 && a->n_mb > 1 &&
                    a->cfg->max_connections > 1 && !imap_session_uses_notify(s))
                        /* not from inside the session's own callback */
                        (void) sd_event_add_defer(a->env.event, &a->plan_defer, on_plan_defer, a);
                a->planned = true;
                if (a->env.sink && a->env.sink->account_state)
                        a->env.sink->account_state(a->cfg->id, account_state(a), "", a->env.sink->userdata);
        }
        for (size_t i = 0; i < sl->n; i++)
                publish_mailbox(a, &a->mb[sl->first + i]);
        changed(a);

        if (new == SESSION_STOPPED && a->stop_done) {
                for (size_t i = 0; i < a->n_slots; i++)
                        if (a->slots[i].session && imap_session_get_state(a->slots[i].session) != SESSION_STOPPED)
                                return;
                void (*done)(struct account *, void *) = a->stop_done;
                a->stop_done = NULL;
                done(a, a->stop_userdata);
        }
}

/* ---- MarkSeen ------------------------------------------------------------ */

static void marker_free(struct account *a, struct marker *mk) {
        for (struct marker **p = &a->markers; *p; p = &(*p)->next)
                if (*p == mk) {
                        *p = mk->next;
                        break;
                }
        mk->reap = sd_event_source_disable_unref(mk->reap);
        mk->secret = secret_cancel(mk->secret);
        mk->session = imap_session_free(mk->session);
        free(mk);
}

static int on_marker_reap(sd_event_source *es, void *userdata) {
        struct marker *mk = userdata;

        marker_free(mk->account, mk);
        return 0;
}

static void on_marker_secret(struct secret_request *q, const char *secret, const char *error, void *userdata) {
        struct marker *mk = userdata;

        pass_secret(mk->session, &mk->secret, secret, error);
}

static void on_marker_need_secret(struct imap_session *s, void *userdata) {
        struct marker *mk = userdata;

        fetch_secret(mk->account, s, &mk->secret, on_marker_secret, mk);
}

static void on_marker_done(struct imap_session *s, int r, const char *message, void *userdata) {
        struct marker *mk = userdata;
        account_mark_seen_fn done = mk->done;

        mk->done = NULL;
        if (done)
                done(r, message, mk->userdata);
        /* the session is inside its own callback: free it from the loop */
        if (!mk->reap)
                (void) sd_event_add_defer(mk->account->env.event, &mk->reap, on_marker_reap, mk);
}

static void on_marker_state(struct imap_session *s, enum session_state old, enum session_state new, void *userdata) {
        struct marker *mk = userdata;

        if (new == SESSION_STOPPED && !mk->reap)
                (void) sd_event_add_defer(mk->account->env.event, &mk->reap, on_marker_reap, mk);
}

static const struct imap_session_callbacks marker_cb = {
        .state_changed = on_marker_state,
        .need_secret = on_marker_need_secret,
        .store_done = on_marker_done,
};

int account_mark_seen(struct account *a, const char *mailbox, uint32_t uid, account_mark_seen_fn done, void *userdata) {
        struct mailbox *mb = find_mailbox(a, mailbox);
        const char *names[1];
        struct marker *mk;
        int r;

        if (!mb)
                return -ENOENT;
        if (uid == 0)
                return -EINVAL;
        mk = calloc(1, sizeof(*mk));
        if (!mk)
                return -ENOMEM;
        mk->account = a;
        mk->done = done;
        mk->userdata = userdata;
        names[0] = mb->name;
        struct imap_session_config sc = session_config(a, names, 1);

        sc.store_uid = uid;
        r = imap_session_new(a->env.event, &sc, &marker_cb, mk, &mk->session);
        if (r < 0) {
                free(mk);
                return r;
        }
        mk->next = a->markers;
        a->markers = mk;
        r = imap_session_start(mk->session);
        if (r < 0) {
                marker_free(a, mk);
                return r;
        }
        return 0;
}

/* ---- public -------------------------------------------------------------- */

int account_new(const struct account_env *env, const struct config_account *cfg, struct account **ret) {
        struct account *a;
        int r;

        a = calloc(1, sizeof(*a));
        if (!a)
                return -ENOMEM;
        a->env = *env;
        /* $IMAPIDLED_SECRET_TIMEOUT_MS: for tests of a hanging password_command */
        const char *t = getenv("IMAPIDLED_SECRET_TIMEOUT_MS");
        a->secret_timeout_usec = t && atoi(t) > 0 ? (uint64_t) atoi(t) * 1000 : SECRET_TIMEOUT_USEC;
        /* $IMAPIDLED_AUTH_BACKOFF_MIN_MS: for tests that watch the retries after
         * a failed login grow without waiting minutes (the default is 60 s) */
        t = getenv("IMAPIDLED_AUTH_BACKOFF_MIN_MS");
        a->auth_backoff_min_usec = t && atoi(t) > 0 ? (uint64_t) atoi(t) * 1000 : 0;
        /* $IMAPIDLED_COMMAND_TIMEOUT_MS: for tests of servers that answer
         * too slowly (a byte a second); unset: the session's 60 s */
        t = getenv("IMAPIDLED_COMMAND_TIMEOUT_MS");
        a->command_timeout_usec = t && atoi(t) > 0 ? (uint64_t) atoi(t) * 1000 : 0;
        a->cfg = config_account_dup(cfg);
        if (!a->cfg || asprintf(&a->log_prefix, "%s: ", cfg->id) < 0) {
                a->log_prefix = NULL;
                account_free(a);
                return -ENOMEM;
        }
        a->mb = calloc(cfg->n_mailboxes, sizeof(struct mailbox));
        if (!a->mb) {
                account_free(a);
                return -ENOMEM;
        }
        a->n_mb = cfg->n_mailboxes;
        for (size_t i = 0; i < a->n_mb; i++) {
                a->mb[i].name = strdup(cfg->mailboxes[i]);
                if (!a->mb[i].name) {
                        account_free(a);
                        return -ENOMEM;
                }
                if (env->state) {
                        r = state_store_get(env->state, cfg->id, cfg->mailboxes[i], &a->mb[i].point);
                        if (r <= 0)
                                a->mb[i].point = (struct imap_mailbox_point) {};
                }
        }
        *ret = a;
        return 0;
}

struct account *account_free(struct account *a) {
        if (!a)
                return NULL;
        while (a->markers) {
                struct marker *mk = a->markers;

                if (mk->done)
                        mk->done(-ECANCELED, "the account was removed", mk->userdata);
                mk->done = NULL;
                marker_free(a, mk);
        }
        a->plan_defer = sd_event_source_disable_unref(a->plan_defer);
        for (size_t i = 0; i < a->n_slots; i++)
                slot_done(&a->slots[i]);
        free(a->slots);
        /* writes still in flight publish nothing once we are gone */
        for (struct pending *p = a->queue_head, *next; p; p = next) {
                next = p->next;
                if (p->saved)
                        pending_free(p);
                else
                        p->account = NULL;
        }
        for (size_t i = 0; i < a->n_mb; i++)
                free(a->mb[i].name);
        free(a->mb);
        config_account_free(a->cfg);
        free(a->log_prefix);
        free(a);
        return NULL;
}

int account_start(struct account *a) {
        if (a->n_mb == 0)
                return 0;
        a->slots = calloc(1, sizeof(struct slot));
        if (!a->slots)
                return -ENOMEM;
        a->n_slots = 1;
        a->slots[0].first = 0;
        a->slots[0].n = a->n_mb;
        /* one connection first: with NOTIFY it watches every mailbox;
         * without, the budget is applied once the capabilities are known */
        a->planned = a->n_mb == 1 || a->cfg->max_connections <= 1;
        return slot_start(a, &a->slots[0]);
}

static void on_slot_stopped(struct imap_session *s, void *userdata) {
        /* on_session_state sees STOPPED and completes account_stop() */
}

int account_stop(struct account *a, void (*done)(struct account *a, void *userdata), void *userdata) {
        bool any = false;

        a->stop_done = done;
        a->stop_userdata = userdata;
        for (size_t i = 0; i < a->n_slots; i++)
                if (a->slots[i].session && imap_session_get_state(a->slots[i].session) != SESSION_STOPPED) {
                        any = true;
                        imap_session_stop(a->slots[i].session, on_slot_stopped);
                }
        if (!any && a->stop_done) {
                a->stop_done = NULL;
                done(a, userdata);
        }
        return 0;
}

void account_reconnect(struct account *a) {
        for (size_t i = 0; i < a->n_slots; i++)
                if (a->slots[i].session)
                        imap_session_reconnect(a->slots[i].session);
}

void account_network_changed(struct account *a) {
        for (size_t i = 0; i < a->n_slots; i++) {
                struct imap_session *s = a->slots[i].session;

                if (!s)
                        continue;
                enum session_state st = imap_session_get_state(s);
                if (st == SESSION_BACKOFF || st == SESSION_CONNECTING)
                        imap_session_reconnect(s);
                else if (st == SESSION_IDLE)
                        imap_session_network_changed(s, NETWORK_CHECK_TIMEOUT_USEC);
        }
}

void account_check_now(struct account *a) {
        for (size_t i = 0; i < a->n_slots; i++) {
                struct imap_session *s = a->slots[i].session;

                if (!s)
                        continue;
                enum session_state st = imap_session_get_state(s);
                if (st == SESSION_BACKOFF || st == SESSION_ERROR)
                        imap_session_reconnect(s);
                else if (st == SESSION_IDLE)
                        imap_session_check(s, NETWORK_CHECK_TIMEOUT_USEC);
        }
}

const struct config_account *account_config(const struct account *a) {
        return a->cfg;
}

const char *account_id(const struct account *a) {
        return a->cfg->id;
}

/* Least advanced first. */
static int state_rank(enum session_state s) {
        switch (s) {
        case SESSION_ERROR:
                return 0;
        case SESSION_BACKOFF:
                return 1;
        case SESSION_STOPPED:
        case SESSION_LOGOUT:
                return 2;
        case SESSION_CONNECTING:
        case SESSION_GREETING:
        case SESSION_CAPABILITY:
        case SESSION_STARTTLS:
                return 3;
        case SESSION_AUTHENTICATING:
                return 4;
        case SESSION_ENABLING:
        case SESSION_EXAMINING:
        case SESSION_SYNCING:
                return 5;
        case SESSION_IDLE:
        default:
                return 6;
        }
}

const char *account_state(const struct account *a) {
        enum session_state worst = SESSION_IDLE;
        bool any = false;

        for (size_t i = 0; i < a->n_slots; i++) {
                if (!a->slots[i].session)
                        continue;
                enum session_state s = imap_session_get_state(a->slots[i].session);
                if (!any || state_rank(s) < state_rank(worst))
                        worst = s;
                any = true;
        }
        return any ? session_state_to_public(worst) : "offline";
}

const char *account_last_error(const struct account *a) {
        return a->last_error;
}

unsigned account_n_mailboxes(const struct account *a) {
        return (unsigned) a->n_mb;
}

unsigned account_mailboxes_idle(const struct account *a) {
        unsigned n = 0;

        for (size_t i = 0; i < a->n_mb; i++)
                if (a->mb[i].slot && a->mb[i].slot->session &&
                    imap_session_get_state(a->mb[i].slot->session) == SESSION_IDLE)
                        n++;
        return n;
}

unsigned account_unseen(const struct account *a) {
        unsigned n = 0;

        for (size_t i = 0; i < a->n_mb; i++)
                n += a->mb[i].unseen;
        return n;
}

unsigned account_connections(const struct account *a) {
        unsigned n = 0;

        for (size_t i = 0; i < a->n_slots; i++)
                if (a->slots[i].session && imap_session_get_state(a->slots[i].session) != SESSION_STOPPED)
                        n++;
        return n;
}

void account_mailbox_info(const struct account *a, unsigned i, struct mail_mailbox_info *ret) {
        const struct mailbox *m = &a->mb[i];
        const struct imap_session *s = m->slot ? m->slot->session : NULL;

        *ret = (struct mail_mailbox_info) {
                .account = a->cfg->id,
                .mailbox = m->name,
                .state = s ? session_state_to_public(imap_session_get_state(s)) : "offline",
                .unseen = m->unseen,
                .exists = m->exists,
                .uidvalidity = m->uidvalidity,
                .uidnext = m->uidnext,
        };
}

const char *account_mailbox_last_error(const struct account *a, unsigned i) {
        const struct mailbox *m = &a->mb[i];
        const struct imap_session *s = m->slot ? m->slot->session : NULL;

        if (!s || imap_session_get_state(s) == SESSION_IDLE)
                return "";
        return imap_session_last_error(s);
}
