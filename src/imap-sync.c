/* SPDX-License-Identifier: MIT */
/*
 * Mailbox sync, IDLE, NOTIFY and STATUS polling for one session (see
 * imap-session.h for the exactly-once contract).
 *
 * After login the work loop (sync_next) does, in this order, whatever is due:
 *
 *   STATUS of every further mailbox      first, then every poll interval
 *   visit a further mailbox with news    EXAMINE it, sync, fetch
 *   return home                          EXAMINE home, sync, fetch
 *   NOTIFY SET                           once per connection, where offered
 *   IDLE                                 until something needs doing
 *
 * A sync of the selected mailbox is
 *
 *   EXAMINE box [(QRESYNC (uv modseq))]  read-only: watching changes nothing
 *   UID SEARCH [RETURN (ALL)] ALL        the sequence-number -> UID map
 *   UID SEARCH [RETURN (ALL)] UNSEEN UNDELETED
 *   UID FETCH point+1:* (UID FLAGS ENVELOPE INTERNALDATE RFC822.SIZE)
 *
 * and a fetch again whenever EXISTS grows. The persisted HIGHESTMODSEQ moves
 * only to the value EXAMINE reported once the sync is complete: replaying a
 * little more on the next QRESYNC is harmless (UIDs are deduplicated
 * against the point), skipping a change is not.
 */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "imap-session-internal.h"
#include "utf8.h"

static bool utf8_is_ascii(const char *s) {
        for (; *s; s++)
                if ((unsigned char) *s >= 0x80)
                        return false;
        return true;
}

#define FETCH_ITEMS "(UID FLAGS ENVELOPE INTERNALDATE RFC822.SIZE)"
#define NOTIFY_EVENTS "(MessageNew MessageExpunge FlagChange)"
#define MAX_REMOVED_REPORT 10000        /* bounded work for a hostile VANISHED (EARLIER) 1:4294967295 */

static int fetch_new(struct imap_session *s);
static int search_all(struct imap_session *s);
static int sync_next(struct imap_session *s);

struct watched *sync_find(const struct imap_session *s, const char *name) {
        for (size_t i = 0; i < s->n_mb; i++) {
                const char *n = s->mb[i].name;

                if (strcmp(n, name) == 0 || (strcasecmp(n, "INBOX") == 0 && strcasecmp(name, "INBOX") == 0))
                        return &s->mb[i];
        }
        return NULL;
}

void sync_update_prefix(struct imap_session *s) {
        const struct watched *w = s->sel ? s->sel : SESSION_HOME(s);
        char *p;

        if (!w->name)
                return;
        if (asprintf(&p, "%s/%s: ", s->cfg.account, w->name) < 0)
                return;         /* keep the old prefix */
        free(s->log_prefix);
        s->log_prefix = p;
}

void sync_reset_connection(struct imap_session *s) {
        uidset_clear(&s->uids);
        uidset_clear(&s->search_result);
        s->sel = NULL;
        s->condstore = s->qresync = false;
        s->synced = s->awaiting_closed = s->fetching_new = s->need_fetch = false;
        s->batch_new = 0;
        s->notify_active = s->notify_failed = false;
        s->notify_attempts = 0;
        s->list_status_failed = false;
        s->status_round = s->poll_due = false;
        s->status_next = 0;
        s->poll_timer = sd_event_source_disable_unref(s->poll_timer);
        /* after a reconnect, every further mailbox is checked again */
        if (s->n_mb > 1)
                s->status_round = true;
        if (s->mb)
                sync_update_prefix(s);
}

static void report_status(struct imap_session *s, struct watched *w) {
        struct imap_mailbox_status st = {
                .mailbox = w->name,
                .uidvalidity = w->uidvalidity,
                .uidnext = w->uidnext,
                .exists = w->exists,
                .unseen = w->unseen_known ? (uint32_t) uidset_count(&w->unseen) : w->unseen_count,
                .highestmodseq = w->highestmodseq,
                .point = w->point,
        };

        if (s->cb.mailbox_status && !s->dead)
                s->cb.mailbox_status(s, &st, s->userdata);
}

static bool has_flag(const struct imap_strv *flags, const char *f) {
        return imap_strv_contains(flags, f);
}

static int oom(struct imap_session *s) {
        return session_fail(s, SESSION_BACKOFF, -ENOMEM, "out of memory");
}

static bool alive(const struct imap_session *s) {
        return !s->dead && s->conn;
}

/* ---- IDLE ---------------------------------------------------------------- */

static int on_refresh_timer(sd_event_source *es, uint64_t usec, void *userdata) {
        struct imap_session *s = userdata;

        s->refresh_timer = sd_event_source_disable_unref(s->refresh_timer);
        session_log(s, LOG_DEBUG, 0, "re-issuing IDLE");
        sync_idle_leave(s);
        return 0;
}

static int on_idle_done(struct imap_session *s, const struct imap_response *r) {
        s->idle_sent = s->idling = s->done_sent = false;
        s->refresh_timer = sd_event_source_disable_unref(s->refresh_timer);
        if (r->type != IMAP_RESP_OK)
                return session_fail(s, SESSION_BACKOFF, -EPROTO, "IDLE ended with an error: %s", r->status.text);
        return sync_next(s);
}

static int on_poll_timer(sd_event_source *es, uint64_t usec, void *userdata) {
        struct imap_session *s = userdata;

        s->poll_timer = sd_event_source_disable_unref(s->poll_timer);
        s->poll_due = true;
        if (s->idling)
                sync_idle_leave(s);
        return 0;
}

int sync_idle_enter(struct imap_session *s) {
        struct imap_command cmd;
        int r;

        /* Without NOTIFY, further mailboxes are checked on a timer. Its
         * slack lets the kernel batch the wake-up with others. */
        if (s->n_mb > 1 && !s->notify_active && !s->poll_timer) {
                r = sd_event_add_time_relative(s->event, &s->poll_timer, CLOCK_BOOTTIME, s->cfg.poll_interval_usec,
                                               s->cfg.poll_interval_usec / 10, on_poll_timer, s);
                if (r < 0)
                        return session_fail(s, SESSION_BACKOFF, r, "cannot arm the poll timer");
        }
        imap_command_begin(&s->writer, &cmd, "IDLE");
        s->idle_sent = true;
        s->idling = s->done_sent = false;
        return session_send(s, &cmd, "IDLE", on_idle_done);
}

static bool work_pending(const struct imap_session *s) {
        if (s->need_fetch || s->poll_due)
                return true;
        for (size_t i = 1; i < s->n_mb; i++)
                if (s->mb[i].dirty)
                        return true;
        return false;
}

/* "+ idling": the server waits for us now; no command timeout while idle. */
int sync_idle_continue(struct imap_session *s) {
        int r;

        s->idling = true;
        s->cmd_timer = sd_event_source_disable_unref(s->cmd_timer);
        session_set_state(s, SESSION_IDLE);
        /* an EXISTS may have come before the "+" */
        if (work_pending(s))
                return sync_idle_leave(s);
        /* CLOCK_BOOTTIME: after a suspend longer than the refresh the timer
         * fires at once and a dead connection shows up quickly. */
        r = sd_event_add_time_relative(s->event, &s->refresh_timer, CLOCK_BOOTTIME, s->cfg.idle_refresh_usec,
                                       1000000, on_refresh_timer, s);
        if (r < 0)
                return session_fail(s, SESSION_BACKOFF, r, "cannot arm the IDLE refresh timer");
        /* an idle session keeps no parse buffers */
        if (s->parser)
                imap_parser_trim(s->parser);
        return 0;
}

int sync_idle_leave(struct imap_session *s) {
        int r;

        s->refresh_timer = sd_event_source_disable_unref(s->refresh_timer);
        if (!s->idling || s->done_sent)
                return 0;
        s->done_sent = true;
        if (s->cfg.trace)
                session_log(s, LOG_DEBUG, 0, "C: DONE");
        r = conn_write(s->conn, "DONE\r\n", 6);
        if (r < 0)
                return session_fail(s, SESSION_BACKOFF, r, "write failed");
        /* the tagged OK for IDLE must come now */
        s->cmd_name = "DONE";
        r = session_arm_command_timer(s);
        if (r < 0)
                return session_fail(s, SESSION_BACKOFF, r, "cannot arm the command timer");
        return 0;
}

/* ---- new mail ------------------------------------------------------------ */

static int on_fetch_new_done(struct imap_session *s, const struct imap_response *r) {
        struct watched *w = s->sel;
        unsigned n = s->batch_new;

        s->fetching_new = false;
        if (r->type != IMAP_RESP_OK)
                return session_fail(s, SESSION_BACKOFF, -EPROTO, "fetching new messages failed: %s", r->status.text);
        s->batch_new = 0;
        if (n > 0 && s->cb.batch_done && !s->dead)
                s->cb.batch_done(s, w->name, n, s->userdata);
        report_status(s, w);
        if (!alive(s))
                return 0;
        if (uidset_count(&s->uids) != w->exists) {
                /* an EXPUNGE raced the fetch: rebuild the map */
                session_log(s, LOG_DEBUG, 0, "map has %llu UIDs, server %u: rebuilding",
                            (unsigned long long) uidset_count(&s->uids), w->exists);
                return search_all(s);
        }
        return sync_next(s);
}

static int fetch_new(struct imap_session *s) {
        struct watched *w = s->sel;
        struct imap_command cmd;
        char range[32];

        s->need_fetch = false;
        if (w->exists == 0 || w->point.announced_uid == UINT32_MAX ||
            (w->uidnext && w->uidnext - 1 <= w->point.announced_uid &&
             uidset_max(&s->uids) <= w->point.announced_uid && uidset_count(&s->uids) == w->exists)) {
                /* nothing above the point */
                w->dirty = false;
                report_status(s, w);
                return alive(s) ? sync_next(s) : 0;
        }
        session_set_state(s, SESSION_SYNCING);
        snprintf(range, sizeof(range), "%u:*", w->point.announced_uid + 1);
        imap_command_begin(&s->writer, &cmd, "UID FETCH");
        imap_command_raw(&cmd, range);
        imap_command_raw(&cmd, FETCH_ITEMS);
        s->fetching_new = true;
        s->batch_new = 0;
        w->dirty = false;
        return session_send(s, &cmd, "UID FETCH", on_fetch_new_done);
}

static int handle_new_candidate(struct imap_session *s, const struct imap_fetch_resp *f) {
        struct watched *w = s->sel;
        bool seen, deleted;
        int r;

        if (!(f->present & IMAP_FETCH_UID))
                return session_fail(s, SESSION_BACKOFF, -EPROTO, "the server sent a FETCH without UID");
        r = uidset_add(&s->uids, f->uid);
        if (r < 0)
                return oom(s);
        /* "n:*" also returns the highest message when n is above it */
        if (f->uid <= w->point.announced_uid)
                return 0;

        seen = has_flag(&f->flags, "\\Seen");
        deleted = has_flag(&f->flags, "\\Deleted");
        if (!seen && !deleted) {
                r = uidset_add(&w->unseen, f->uid);
                if (r < 0)
                        return oom(s);
                struct imap_message m = {
                        .mailbox = w->name,
                        .uid = f->uid,
                        .uidvalidity = w->uidvalidity,
                        .envelope = &f->envelope,
                        .internaldate = f->internaldate,
                        .size = f->rfc822_size,
                };
                s->batch_new++;
                if (s->cb.new_message && !s->dead)
                        s->cb.new_message(s, &m, s->userdata);
        }
        /* read already (a copy of a sent message), or deleted: counted, not announced */
        w->point.announced_uid = f->uid;
        if (w->uidnext <= f->uid)
                w->uidnext = f->uid + 1;
        return 0;
}

/* ---- changes in the selected mailbox ------------------------------------- */

static void report_removed(struct imap_session *s, const uint32_t *uids, size_t n) {
        if (n > 0 && s->cb.removed && !s->dead)
                s->cb.removed(s, s->sel->name, uids, n, s->userdata);
}

static int handle_flags(struct imap_session *s, uint32_t seq, const struct imap_fetch_resp *f) {
        struct watched *w = s->sel;
        uint32_t uid = f->present & IMAP_FETCH_UID ? f->uid : 0;
        bool seen, deleted, was_unseen;
        int r;

        if (!(f->present & IMAP_FETCH_FLAGS))
                return 0;
        if (!uid && s->synced)
                uid = uidset_nth(&s->uids, seq);
        if (!uid || !uidset_contains(&s->uids, uid))
                return 0;       /* not mapped yet: the next fetch brings it */

        seen = has_flag(&f->flags, "\\Seen");
        deleted = has_flag(&f->flags, "\\Deleted");
        was_unseen = uidset_contains(&w->unseen, uid);
        if (seen || deleted)
                r = uidset_remove(&w->unseen, uid);
        else
                r = uidset_add(&w->unseen, uid);
        if (r < 0)
                return oom(s);
        if (s->cb.flags_changed && !s->dead)
                s->cb.flags_changed(s, w->name, uid, seen, deleted, s->userdata);
        if (was_unseen != (!seen && !deleted))
                report_status(s, w);
        return 0;
}

static int handle_expunge(struct imap_session *s, uint32_t seq) {
        struct watched *w = s->sel;
        uint32_t uid = 0;
        int r;

        if (w->exists > 0)
                w->exists--;
        if (!s->synced)
                return 0;
        r = uidset_remove_nth(&s->uids, seq, &uid);
        if (r < 0)
                return oom(s);
        if (r == 0)
                return 0;       /* a message not mapped yet */
        r = uidset_remove(&w->unseen, uid);
        if (r < 0)
                return oom(s);
        report_removed(s, &uid, 1);
        report_status(s, w);
        return 0;
}

static int handle_vanished(struct imap_session *s, const struct imap_vanished_resp *v) {
        struct watched *w = s->sel;
        _cleanup_free_ uint32_t *gone = NULL;
        struct imap_seqset_iter it;
        uint32_t a, b;
        size_t n = 0;
        int r;

        gone = malloc(MAX_REMOVED_REPORT * sizeof(uint32_t));
        if (!gone)
                return oom(s);

        imap_seqset_iter_init(&it, v->uids);
        while ((r = imap_seqset_next(&it, &a, &b)) > 0) {
                if (!s->synced) {
                        /* during EXAMINE (QRESYNC): messages gone while we were away;
                         * report the ones that could have been announced */
                        for (uint64_t u = a; u <= b && u <= w->point.announced_uid && n < MAX_REMOVED_REPORT; u++)
                                gone[n++] = (uint32_t) u;
                        continue;
                }
                /* only UIDs the map knows: the work is bounded by the mailbox */
                for (;;) {
                        uint64_t i = uidset_rank(&s->uids, a) + 1;
                        uint32_t u = uidset_nth(&s->uids, i), removed;

                        if (u == 0 || u > b)
                                break;
                        r = uidset_remove_nth(&s->uids, i, &removed);
                        if (r < 0)
                                return oom(s);
                        if (uidset_remove(&w->unseen, removed) < 0)
                                return oom(s);
                        if (w->exists > 0)
                                w->exists--;
                        if (n < MAX_REMOVED_REPORT)
                                gone[n++] = removed;
                }
        }
        report_removed(s, gone, n);
        if (s->synced)
                report_status(s, w);
        return 0;
}

/* ---- sync of the selected mailbox ---------------------------------------- */

static int on_search_unseen_done(struct imap_session *s, const struct imap_response *r) {
        struct watched *w = s->sel;
        struct uidset_iter it;
        uint32_t uid;

        if (r->type != IMAP_RESP_OK)
                return session_fail(s, SESSION_BACKOFF, -EPROTO, "UID SEARCH UNSEEN failed: %s", r->status.text);

        /* Messages that were unseen at the last visit and are not any more
         * were read (or deleted) elsewhere meanwhile: their notifications go. */
        if (w->unseen_known) {
                uidset_iter_init(&it, &w->unseen);
                while (uidset_iter_next(&it, &uid))
                        if (!uidset_contains(&s->search_result, uid) && uidset_contains(&s->uids, uid) &&
                            s->cb.flags_changed && !s->dead)
                                s->cb.flags_changed(s, w->name, uid, true, false, s->userdata);
        }
        uidset_done(&w->unseen);
        w->unseen = s->search_result;
        uidset_init(&s->search_result);
        w->unseen_known = true;
        w->unseen_count = (uint32_t) uidset_count(&w->unseen);
        if (w->highestmodseq)
                w->point.highestmodseq = w->highestmodseq;
        return alive(s) ? fetch_new(s) : 0;
}

static int send_search(struct imap_session *s, const char *criteria, cmd_done_fn done) {
        struct imap_command cmd;

        uidset_clear(&s->search_result);
        imap_command_begin(&s->writer, &cmd, "UID SEARCH");
        if (session_has_cap(s, "ESEARCH"))
                imap_command_raw(&cmd, "RETURN (ALL)");
        imap_command_raw(&cmd, criteria);
        return session_send(s, &cmd, "UID SEARCH", done);
}

static int on_search_all_done(struct imap_session *s, const struct imap_response *r) {
        struct watched *w = s->sel;

        if (r->type != IMAP_RESP_OK)
                return session_fail(s, SESSION_BACKOFF, -EPROTO, "UID SEARCH ALL failed: %s", r->status.text);
        uidset_done(&s->uids);
        s->uids = s->search_result;
        uidset_init(&s->search_result);
        w->exists = (uint32_t) uidset_count(&s->uids);
        s->synced = true;

        if (w->point.uidvalidity == 0) {
                /* first start: what is there is counted, not announced */
                w->point.uidvalidity = w->uidvalidity;
                w->point.announced_uid = w->uidnext ? w->uidnext - 1 : uidset_max(&s->uids);
                session_log(s, LOG_INFO, 0, "first sync: %u messages counted, UIDVALIDITY %u", w->exists,
                            w->uidvalidity);
        }
        return send_search(s, "UNSEEN UNDELETED", on_search_unseen_done);
}

static int search_all(struct imap_session *s) {
        session_set_state(s, SESSION_SYNCING);
        s->synced = false;
        return send_search(s, "ALL", on_search_all_done);
}

/* A UIDVALIDITY other than the point's: the mailbox was rebuilt. */
static bool check_uidvalidity(struct imap_session *s, struct watched *w) {
        uint32_t old = w->point.uidvalidity;

        if (!old || old == w->uidvalidity)
                return true;
        session_log(s, LOG_WARNING, 0, "UIDVALIDITY of \"%s\" changed from %u to %u: the mailbox was rebuilt; "
                    "starting over without announcing its content", w->name, old, w->uidvalidity);
        w->point = (struct imap_mailbox_point) {};
        uidset_clear(&w->unseen);
        w->unseen_known = false;
        if (s->cb.mailbox_reset && !s->dead)
                s->cb.mailbox_reset(s, w->name, old, w->uidvalidity, s->userdata);
        return alive(s);
}

static int on_examine_done(struct imap_session *s, const struct imap_response *r) {
        struct watched *w = s->sel;

        s->awaiting_closed = false;
        if (r->type != IMAP_RESP_OK)
                return session_fail(s, SESSION_ERROR, -ENOENT, "cannot open mailbox \"%s\": %s; check mailboxes = "
                                    "in the configuration", w->name, r->status.text);
        if (w->uidvalidity == 0)
                return session_fail(s, SESSION_BACKOFF, -EPROTO, "the server sent no UIDVALIDITY for \"%s\"", w->name);
        if (!check_uidvalidity(s, w))
                return 0;
        return search_all(s);
}

static int select_mailbox(struct imap_session *s, struct watched *w) {
        struct imap_command cmd;
        char param[96];

        /* QRESYNC: until [CLOSED], untagged data is the old mailbox's (RFC 7162 §3.2.11) */
        s->awaiting_closed = s->qresync && s->sel != NULL;
        s->sel = w;
        sync_update_prefix(s);
        uidset_clear(&s->uids);
        s->synced = false;
        s->need_fetch = false;
        w->uidvalidity = w->uidnext = w->exists = 0;
        w->highestmodseq = 0;

        session_set_state(s, SESSION_EXAMINING);
        imap_command_begin(&s->writer, &cmd, "EXAMINE");
        imap_command_mailbox(&s->writer, &cmd, w->name);
        if (s->qresync && w->point.uidvalidity && w->point.highestmodseq) {
                snprintf(param, sizeof(param), "(QRESYNC (%u %llu))", w->point.uidvalidity,
                         (unsigned long long) w->point.highestmodseq);
                imap_command_raw(&cmd, param);
        } else if (s->condstore)
                imap_command_raw(&cmd, "(CONDSTORE)");
        return session_send(s, &cmd, "EXAMINE", on_examine_done);
}

/* ---- further mailboxes: STATUS and NOTIFY -------------------------------- */

/* A STATUS response, asked for or sent by NOTIFY. */
static int handle_status(struct imap_session *s, const struct imap_status_resp *st) {
        struct watched *w = sync_find(s, st->mailbox);
        bool was_unknown;

        if (!w || w == s->sel)
                return 0;
        if (st->present & IMAP_STATUS_UIDVALIDITY)
                w->uidvalidity = st->uidvalidity;
        if (st->present & IMAP_STATUS_UIDNEXT)
                w->uidnext = st->uidnext;
        if (st->present & IMAP_STATUS_MESSAGES)
                w->exists = st->messages;
        if (st->present & IMAP_STATUS_HIGHESTMODSEQ)
                w->highestmodseq = st->highestmodseq;

        if (w->uidvalidity && !check_uidvalidity(s, w))
                return 0;
        was_unknown = w->point.uidvalidity == 0;
        if (was_unknown && w->uidvalidity && w->uidnext) {
                /* first start: counted, not announced, without a visit */
                w->point.uidvalidity = w->uidvalidity;
                w->point.announced_uid = w->uidnext - 1;
                session_log(s, LOG_INFO, 0, "first check of \"%s\": %u messages counted", w->name, w->exists);
        }
        if (w->uidnext && w->uidnext - 1 > w->point.announced_uid)
                w->dirty = true;
        if (st->present & IMAP_STATUS_UNSEEN) {
                /* fewer unseen than we know of: some were read elsewhere */
                if (w->unseen_known && st->unseen < uidset_count(&w->unseen))
                        w->dirty = true;
                w->unseen_count = st->unseen;
                if (w->unseen_known && !w->dirty && st->unseen != uidset_count(&w->unseen))
                        w->unseen_known = false;
        }
        report_status(s, w);
        if (alive(s) && w->dirty && s->idling)
                return sync_idle_leave(s);
        return 0;
}

static int on_status_done(struct imap_session *s, const struct imap_response *r) {
        if (r->type != IMAP_RESP_OK) {
                struct watched *w = &s->mb[s->status_next - 1];

                /* one missing mailbox must not stop the others */
                session_log(s, LOG_WARNING, 0, "cannot check mailbox \"%s\": %s; check mailboxes = in the "
                            "configuration", w->name, r->status.text);
        }
        return sync_next(s);
}

static int send_status(struct imap_session *s, struct watched *w) {
        struct imap_command cmd;

        imap_command_begin(&s->writer, &cmd, "STATUS");
        imap_command_mailbox(&s->writer, &cmd, w->name);
        imap_command_raw(&cmd, s->condstore ? "(MESSAGES UIDNEXT UIDVALIDITY UNSEEN HIGHESTMODSEQ)"
                                            : "(MESSAGES UIDNEXT UIDVALIDITY UNSEEN)");
        return session_send(s, &cmd, "STATUS", on_status_done);
}

static int send_notify(struct imap_session *s);

/* LIST-STATUS (RFC 5819): every further mailbox in one round trip. LIST
 * arguments are patterns, so names with wildcards go through STATUS. */
static bool can_list_status(const struct imap_session *s) {
        if (!session_has_cap(s, "LIST-STATUS") || !session_has_cap(s, "LIST-EXTENDED"))
                return false;
        for (size_t i = 1; i < s->n_mb; i++)
                if (strpbrk(s->mb[i].name, "*%"))
                        return false;
        return true;
}

static int on_list_status_done(struct imap_session *s, const struct imap_response *r) {
        if (r->type != IMAP_RESP_OK) {
                session_log(s, LOG_DEBUG, 0, "LIST-STATUS failed (%s); using STATUS", r->status.text);
                s->list_status_failed = true;
                s->status_round = true;
                s->status_next = 0;
        }
        return sync_next(s);
}

static int send_list_status(struct imap_session *s) {
        struct imap_command cmd;

        imap_command_begin(&s->writer, &cmd, "LIST");
        imap_command_string(&s->writer, &cmd, "", 0);
        imap_command_raw(&cmd, "(");
        for (size_t i = 1; i < s->n_mb; i++)
                if (&s->mb[i] != s->sel)
                        imap_command_mailbox(&s->writer, &cmd, s->mb[i].name);
        imap_command_append(&cmd, ")");
        imap_command_raw(&cmd, s->condstore ? "RETURN (STATUS (MESSAGES UIDNEXT UIDVALIDITY UNSEEN HIGHESTMODSEQ))"
                                            : "RETURN (STATUS (MESSAGES UIDNEXT UIDVALIDITY UNSEEN))");
        return session_send(s, &cmd, "LIST", on_list_status_done);
}

static int on_notify_done(struct imap_session *s, const struct imap_response *r) {
        if (r->type != IMAP_RESP_OK && s->notify_attempts == 1) {
                /* maybe the server minded the UTF-8 spellings: RFC form only */
                session_log(s, LOG_DEBUG, 0, "NOTIFY refused (%s); trying again without UTF-8 names",
                            r->status.text);
                return send_notify(s);
        }
        if (r->type == IMAP_RESP_OK) {
                s->notify_active = true;
                s->poll_timer = sd_event_source_disable_unref(s->poll_timer);
                session_log(s, LOG_DEBUG, 0, "NOTIFY active for %zu mailboxes", s->n_mb);
        } else {
                s->notify_failed = true;
                session_log(s, LOG_INFO, 0, "the server refused NOTIFY (%s); checking the other mailboxes "
                            "every %llu s instead", r->status.text,
                            (unsigned long long) (s->cfg.poll_interval_usec / 1000000));
        }
        return sync_next(s);
}

static int send_notify(struct imap_session *s) {
        struct imap_command cmd;

        s->notify_attempts++;
        imap_command_begin(&s->writer, &cmd, "NOTIFY SET");
        imap_command_raw(&cmd, "(SELECTED " NOTIFY_EVENTS ")");
        imap_command_raw(&cmd, "(MAILBOXES (");
        for (size_t i = 1; i < s->n_mb; i++) {
                const char *name = s->mb[i].name;

                imap_command_mailbox(&s->writer, &cmd, name);
                /* Dovecot 2.3 matches NOTIFY names in UTF-8, not in modified
                 * UTF-7 (and answers with UTF-8 STATUS names): name both. */
                if (s->notify_attempts == 1 && !s->writer.utf8 && !utf8_is_ascii(name))
                        imap_command_string(&s->writer, &cmd, name, strlen(name));
        }
        imap_command_append(&cmd, ")");
        imap_command_raw(&cmd, NOTIFY_EVENTS ")");
        return session_send(s, &cmd, "NOTIFY", on_notify_done);
}

/* ---- the work loop ------------------------------------------------------- */

static int sync_next(struct imap_session *s) {
        if (!alive(s))
                return 0;
        if (s->sel && s->need_fetch)
                return fetch_new(s);

        if (s->poll_due) {
                s->poll_due = false;
                s->status_round = true;
                s->status_next = 0;
        }
        if (s->status_round && s->status_next == 0 && !s->list_status_failed && can_list_status(s) &&
            !(s->n_mb == 2 && s->sel == &s->mb[1])) {
                s->status_round = false;
                session_set_state(s, SESSION_SYNCING);
                return send_list_status(s);
        }
        if (s->status_round) {
                if (s->status_next == 0)
                        s->status_next = 1;
                while (s->status_next < s->n_mb && &s->mb[s->status_next] == s->sel)
                        s->status_next++;
                if (s->status_next < s->n_mb) {
                        session_set_state(s, SESSION_SYNCING);
                        return send_status(s, &s->mb[s->status_next++]);
                }
                s->status_round = false;
                s->status_next = 0;
        }

        for (size_t i = 1; i < s->n_mb; i++)
                if (s->mb[i].dirty)
                        return select_mailbox(s, &s->mb[i]);
        if (s->sel != SESSION_HOME(s))
                return select_mailbox(s, SESSION_HOME(s));
        if (s->n_mb > 1 && !s->notify_active && !s->notify_failed && !s->cfg.no_notify &&
            session_has_cap(s, "NOTIFY"))
                return send_notify(s);
        return sync_idle_enter(s);
}

static int on_enable_done(struct imap_session *s, const struct imap_response *r) {
        /* ENABLE failing is not fatal: we just do without */
        return sync_next(s);
}

int sync_start(struct imap_session *s) {
        struct imap_command cmd;

        s->condstore = session_has_cap(s, "CONDSTORE") || session_has_cap(s, "QRESYNC");
        if (session_has_cap(s, "ENABLE") && session_has_cap(s, "QRESYNC")) {
                imap_command_begin(&s->writer, &cmd, "ENABLE");
                imap_command_atom(&cmd, "QRESYNC");
                return session_send(s, &cmd, "ENABLE", on_enable_done);
        }
        return sync_next(s);
}

/* ---- one-shot: set \Seen ------------------------------------------------ */

void sync_store_report(struct imap_session *s, int r, const char *message) {
        if (s->store_reported)
                return;
        s->store_reported = true;
        if (s->cb.store_done && !s->dead)
                s->cb.store_done(s, r, message, s->userdata);
}

static int on_store_done(struct imap_session *s, const struct imap_response *r) {
        if (r->type != IMAP_RESP_OK)
                return session_fail(s, SESSION_ERROR, -EIO, "the server refused to mark UID %u read: %s",
                                    s->cfg.store_uid, r->status.text);
        session_log(s, LOG_INFO, 0, "marked UID %u read", s->cfg.store_uid);
        sync_store_report(s, 0, "");
        return imap_session_stop(s, NULL);
}

static int on_store_check_done(struct imap_session *s, const struct imap_response *r) {
        struct imap_command cmd;
        char uid[16];

        if (r->type != IMAP_RESP_OK)
                return session_fail(s, SESSION_ERROR, -EIO, "UID FETCH failed: %s", r->status.text);
        if (!s->store_found) {
                char msg[256];

                snprintf(msg, sizeof(msg), "no message with UID %u in \"%s\"", s->cfg.store_uid,
                         SESSION_HOME(s)->name);
                sync_store_report(s, -ENOENT, msg);
                return imap_session_stop(s, NULL);
        }
        snprintf(uid, sizeof(uid), "%u", s->cfg.store_uid);
        imap_command_begin(&s->writer, &cmd, "UID STORE");
        imap_command_raw(&cmd, uid);
        imap_command_raw(&cmd, "+FLAGS.SILENT (\\Seen)");
        return session_send(s, &cmd, "UID STORE", on_store_done);
}

static int on_store_select_done(struct imap_session *s, const struct imap_response *r) {
        struct imap_command cmd;
        char uid[16];

        if (r->type != IMAP_RESP_OK)
                return session_fail(s, SESSION_ERROR, -ENOENT, "cannot open mailbox \"%s\" to mark a message read: %s",
                                    SESSION_HOME(s)->name, r->status.text);
        snprintf(uid, sizeof(uid), "%u", s->cfg.store_uid);
        imap_command_begin(&s->writer, &cmd, "UID FETCH");
        imap_command_raw(&cmd, uid);
        imap_command_raw(&cmd, "(UID FLAGS)");
        return session_send(s, &cmd, "UID FETCH", on_store_check_done);
}

/* SELECT (read-write: the one place flags change), check the UID exists
 * (a STORE on a missing UID is silently OK), then STORE. */
int sync_store_start(struct imap_session *s) {
        struct imap_command cmd;

        s->store_found = false;
        session_set_state(s, SESSION_SYNCING);
        imap_command_begin(&s->writer, &cmd, "SELECT");
        imap_command_mailbox(&s->writer, &cmd, SESSION_HOME(s)->name);
        return session_send(s, &cmd, "SELECT", on_store_select_done);
}

/* ---- untagged ------------------------------------------------------------ */

int sync_handle_untagged(struct imap_session *s, const struct imap_response *r) {
        struct watched *w = s->sel;

        if (s->cfg.store_uid) {
                if (r->type == IMAP_RESP_FETCH && (r->fetch.present & IMAP_FETCH_UID) &&
                    r->fetch.uid == s->cfg.store_uid)
                        s->store_found = true;
                return 0;
        }

        if (r->type == IMAP_RESP_ENABLED) {
                if (imap_strv_contains(&r->atoms, "QRESYNC"))
                        s->qresync = s->condstore = true;
                else if (imap_strv_contains(&r->atoms, "CONDSTORE"))
                        s->condstore = true;
                return 0;
        }
        if (r->type == IMAP_RESP_STATUS)
                return handle_status(s, &r->mbstatus);
        if (r->type == IMAP_RESP_SEARCH) {
                for (size_t i = 0; i < r->search.n; i++)
                        if (uidset_add(&s->search_result, r->search.numbers[i]) < 0)
                                return oom(s);
                return 0;
        }
        if (r->type == IMAP_RESP_ESEARCH) {
                if (r->esearch.tag && strcmp(r->esearch.tag, s->tag) != 0)
                        return 0;
                if ((r->esearch.present & IMAP_ESEARCH_ALL) && uidset_add_seqset(&s->search_result, r->esearch.all) < 0)
                        return oom(s);
                return 0;
        }
        if (r->kind == IMAP_RESP_KIND_UNTAGGED && r->type == IMAP_RESP_OK &&
            r->status.code.type == IMAP_CODE_CLOSED) {
                s->awaiting_closed = false;
                return 0;
        }
        if (r->type == IMAP_RESP_OK && r->status.code.type == IMAP_CODE_ALERT) {
                session_log(s, LOG_WARNING, 0, "server alert: %s", r->status.text);
                return 0;
        }

        /* the rest is about the selected mailbox */
        if (!w || s->awaiting_closed)
                return 0;

        switch (r->type) {
        case IMAP_RESP_OK:
        case IMAP_RESP_NO:
        case IMAP_RESP_BAD:
                switch (r->status.code.type) {
                case IMAP_CODE_UIDVALIDITY:
                        w->uidvalidity = r->status.code.number;
                        break;
                case IMAP_CODE_UIDNEXT:
                        w->uidnext = r->status.code.number;
                        break;
                case IMAP_CODE_HIGHESTMODSEQ:
                        if (s->state <= SESSION_EXAMINING)
                                w->highestmodseq = r->status.code.modseq;
                        break;
                case IMAP_CODE_NOMODSEQ:
                        w->highestmodseq = 0;
                        break;
                default:
                        break;
                }
                return 0;

        case IMAP_RESP_EXISTS:
                if (s->synced && r->number > w->exists) {
                        s->need_fetch = true;
                        w->exists = r->number;
                        if (s->idling)
                                return sync_idle_leave(s);
                        return 0;
                }
                w->exists = r->number;
                return 0;

        case IMAP_RESP_EXPUNGE:
                return handle_expunge(s, r->number);

        case IMAP_RESP_VANISHED:
                return handle_vanished(s, &r->vanished);

        case IMAP_RESP_FETCH:
                if (s->fetching_new && (r->fetch.present & IMAP_FETCH_ENVELOPE))
                        return handle_new_candidate(s, &r->fetch);
                return handle_flags(s, r->number, &r->fetch);

        default:
                return 0;
        }
}
