/* SPDX-License-Identifier: MIT */
/*
 * Mailbox sync and IDLE for one session (see imap-session.h for the
 * exactly-once contract).
 *
 *   ENABLE QRESYNC (or CONDSTORE)      where offered
 *   EXAMINE box [(QRESYNC (uv modseq))] read-only: watching changes nothing
 *   UID SEARCH [RETURN (ALL)] ALL       the sequence-number -> UID map
 *   UID SEARCH [RETURN (ALL)] UNSEEN UNDELETED
 *   UID FETCH point+1:* (UID FLAGS ENVELOPE INTERNALDATE RFC822.SIZE)
 *   IDLE ... DONE, and a fetch again whenever EXISTS grows
 *
 * The persisted HIGHESTMODSEQ moves only to the value EXAMINE reported once
 * the sync is complete: replaying a little more on the next QRESYNC is
 * harmless (UIDs are deduplicated against the point), skipping a change is
 * not.
 */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "imap-session-internal.h"

#define FETCH_ITEMS "(UID FLAGS ENVELOPE INTERNALDATE RFC822.SIZE)"
#define MAX_REMOVED_REPORT 10000        /* bounded work for a hostile VANISHED (EARLIER) 1:4294967295 */

static int fetch_new(struct imap_session *s);
static int search_all(struct imap_session *s);

void sync_reset_connection(struct imap_session *s) {
        uidset_clear(&s->uids);
        uidset_clear(&s->unseen);
        uidset_clear(&s->search_result);
        s->uidvalidity = s->uidnext = s->exists = 0;
        s->highestmodseq = 0;
        s->condstore = s->qresync = false;
        s->synced = s->fetching_new = s->need_fetch = false;
        s->batch_new = 0;
}

static void report_status(struct imap_session *s) {
        struct imap_mailbox_status st = {
                .mailbox = s->cfg.mailbox,
                .uidvalidity = s->uidvalidity,
                .uidnext = s->uidnext,
                .exists = s->exists,
                .unseen = (uint32_t) uidset_count(&s->unseen),
                .highestmodseq = s->highestmodseq,
                .point = s->point,
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
        if (s->need_fetch)
                return fetch_new(s);
        return sync_idle_enter(s);
}

int sync_idle_enter(struct imap_session *s) {
        struct imap_command cmd;

        if (s->need_fetch)
                return fetch_new(s);
        imap_command_begin(&s->writer, &cmd, "IDLE");
        s->idle_sent = true;
        s->idling = s->done_sent = false;
        return session_send(s, &cmd, "IDLE", on_idle_done);
}

/* "+ idling": the server waits for us now; no command timeout while idle. */
int sync_idle_continue(struct imap_session *s) {
        int r;

        s->idling = true;
        s->cmd_timer = sd_event_source_disable_unref(s->cmd_timer);
        session_set_state(s, SESSION_IDLE);
        /* an EXISTS may have come before the "+" */
        if (s->need_fetch)
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
        unsigned n = s->batch_new;

        s->fetching_new = false;
        if (r->type != IMAP_RESP_OK)
                return session_fail(s, SESSION_BACKOFF, -EPROTO, "fetching new messages failed: %s", r->status.text);
        s->batch_new = 0;
        if (n > 0 && s->cb.batch_done && !s->dead)
                s->cb.batch_done(s, n, s->userdata);
        report_status(s);
        if (s->dead || !s->conn)
                return 0;
        if (uidset_count(&s->uids) != s->exists) {
                /* an EXPUNGE raced the fetch: rebuild the map */
                session_log(s, LOG_DEBUG, 0, "map has %llu UIDs, server %u: rebuilding",
                            (unsigned long long) uidset_count(&s->uids), s->exists);
                return search_all(s);
        }
        return sync_idle_enter(s);
}

static int fetch_new(struct imap_session *s) {
        struct imap_command cmd;
        char range[32];

        s->need_fetch = false;
        if (s->exists == 0 || (s->uidnext && s->uidnext - 1 <= s->point.announced_uid &&
                               uidset_max(&s->uids) <= s->point.announced_uid && uidset_count(&s->uids) == s->exists)) {
                /* nothing above the point */
                report_status(s);
                return sync_idle_enter(s);
        }
        if (s->point.announced_uid == UINT32_MAX)
                return sync_idle_enter(s);
        session_set_state(s, SESSION_SYNCING);
        snprintf(range, sizeof(range), "%u:*", s->point.announced_uid + 1);
        imap_command_begin(&s->writer, &cmd, "UID FETCH");
        imap_command_raw(&cmd, range);
        imap_command_raw(&cmd, FETCH_ITEMS);
        s->fetching_new = true;
        s->batch_new = 0;
        return session_send(s, &cmd, "UID FETCH", on_fetch_new_done);
}

static int handle_new_candidate(struct imap_session *s, const struct imap_fetch_resp *f) {
        bool seen, deleted;
        int r;

        if (!(f->present & IMAP_FETCH_UID))
                return session_fail(s, SESSION_BACKOFF, -EPROTO, "the server sent a FETCH without UID");
        r = uidset_add(&s->uids, f->uid);
        if (r < 0)
                return oom(s);
        /* "n:*" also returns the highest message when n is above it */
        if (f->uid <= s->point.announced_uid)
                return 0;

        seen = has_flag(&f->flags, "\\Seen");
        deleted = has_flag(&f->flags, "\\Deleted");
        if (!seen && !deleted) {
                r = uidset_add(&s->unseen, f->uid);
                if (r < 0)
                        return oom(s);
                struct imap_message m = {
                        .uid = f->uid,
                        .uidvalidity = s->uidvalidity,
                        .envelope = &f->envelope,
                        .internaldate = f->internaldate,
                        .size = f->rfc822_size,
                };
                s->batch_new++;
                if (s->cb.new_message && !s->dead)
                        s->cb.new_message(s, &m, s->userdata);
        }
        /* read already (a copy of a sent message), or deleted: counted, not announced */
        s->point.announced_uid = f->uid;
        if (s->uidnext <= f->uid)
                s->uidnext = f->uid + 1;
        return 0;
}

/* ---- changes from other clients ------------------------------------------ */

static void report_removed(struct imap_session *s, const uint32_t *uids, size_t n) {
        if (n > 0 && s->cb.removed && !s->dead)
                s->cb.removed(s, uids, n, s->userdata);
}

static int handle_flags(struct imap_session *s, uint32_t seq, const struct imap_fetch_resp *f) {
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
        was_unseen = uidset_contains(&s->unseen, uid);
        if (seen || deleted)
                r = uidset_remove(&s->unseen, uid);
        else
                r = uidset_add(&s->unseen, uid);
        if (r < 0)
                return oom(s);
        if (s->cb.flags_changed && !s->dead)
                s->cb.flags_changed(s, uid, seen, deleted, s->userdata);
        if (was_unseen != (!seen && !deleted))
                report_status(s);
        return 0;
}

static int handle_expunge(struct imap_session *s, uint32_t seq) {
        uint32_t uid = 0;
        int r;

        if (s->exists > 0)
                s->exists--;
        if (!s->synced)
                return 0;
        r = uidset_remove_nth(&s->uids, seq, &uid);
        if (r < 0)
                return oom(s);
        if (r == 0)
                return 0;       /* a message not mapped yet */
        r = uidset_remove(&s->unseen, uid);
        if (r < 0)
                return oom(s);
        report_removed(s, &uid, 1);
        report_status(s);
        return 0;
}

static int handle_vanished(struct imap_session *s, const struct imap_vanished_resp *v) {
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
                        if (!v->earlier)
                                s->exists = s->exists > b - a + 1 ? s->exists - (b - a + 1) : 0;
                        for (uint64_t u = a; u <= b && u <= s->point.announced_uid && n < MAX_REMOVED_REPORT; u++)
                                gone[n++] = (uint32_t) u;
                        continue;
                }
                /* only UIDs the map knows: bounded by the mailbox, not by the range */
                uint64_t first = uidset_index_of(&s->uids, a), i;
                if (first == 0) {
                        /* a itself unknown: find the first known UID above it */
                        struct uidset_iter ui;
                        uint32_t u;

                        uidset_iter_init(&ui, &s->uids);
                        while (uidset_iter_next(&ui, &u) && u < a)
                                ;
                        if (u < a || u > b)
                                continue;
                        first = uidset_index_of(&s->uids, u);
                }
                for (i = first;; ) {
                        uint32_t u = uidset_nth(&s->uids, i), removed;

                        if (u == 0 || u > b)
                                break;
                        r = uidset_remove_nth(&s->uids, i, &removed);
                        if (r < 0)
                                return oom(s);
                        if (uidset_remove(&s->unseen, removed) < 0)
                                return oom(s);
                        if (s->exists > 0)
                                s->exists--;
                        if (n < MAX_REMOVED_REPORT)
                                gone[n++] = removed;
                }
        }
        report_removed(s, gone, n);
        if (s->synced)
                report_status(s);
        return 0;
}

/* ---- sync ---------------------------------------------------------------- */

static int on_search_unseen_done(struct imap_session *s, const struct imap_response *r) {
        if (r->type != IMAP_RESP_OK)
                return session_fail(s, SESSION_BACKOFF, -EPROTO, "UID SEARCH UNSEEN failed: %s", r->status.text);
        uidset_done(&s->unseen);
        s->unseen = s->search_result;
        uidset_init(&s->search_result);
        if (s->highestmodseq)
                s->point.highestmodseq = s->highestmodseq;
        return fetch_new(s);
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
        if (r->type != IMAP_RESP_OK)
                return session_fail(s, SESSION_BACKOFF, -EPROTO, "UID SEARCH ALL failed: %s", r->status.text);
        uidset_done(&s->uids);
        s->uids = s->search_result;
        uidset_init(&s->search_result);
        s->exists = (uint32_t) uidset_count(&s->uids);
        s->synced = true;

        if (s->point.uidvalidity == 0) {
                /* first start: what is there is counted, not announced */
                s->point.uidvalidity = s->uidvalidity;
                s->point.announced_uid = s->uidnext ? s->uidnext - 1 : uidset_max(&s->uids);
                session_log(s, LOG_INFO, 0, "first sync: %u messages counted, UIDVALIDITY %u",
                            s->exists, s->uidvalidity);
        }
        return send_search(s, "UNSEEN UNDELETED", on_search_unseen_done);
}

static int search_all(struct imap_session *s) {
        session_set_state(s, SESSION_SYNCING);
        s->synced = false;
        return send_search(s, "ALL", on_search_all_done);
}

static int on_examine_done(struct imap_session *s, const struct imap_response *r) {
        if (r->type != IMAP_RESP_OK)
                return session_fail(s, SESSION_ERROR, -ENOENT, "cannot open mailbox \"%s\": %s; check mailboxes = "
                                    "in the configuration", s->cfg.mailbox, r->status.text);
        if (s->uidvalidity == 0)
                return session_fail(s, SESSION_BACKOFF, -EPROTO, "the server sent no UIDVALIDITY for \"%s\"",
                                    s->cfg.mailbox);

        if (s->point.uidvalidity && s->point.uidvalidity != s->uidvalidity) {
                uint32_t old = s->point.uidvalidity;

                session_log(s, LOG_WARNING, 0, "UIDVALIDITY changed from %u to %u: the mailbox was rebuilt; "
                            "starting over without announcing its content", old, s->uidvalidity);
                s->point = (struct imap_mailbox_point) {};
                if (s->cb.mailbox_reset && !s->dead)
                        s->cb.mailbox_reset(s, old, s->uidvalidity, s->userdata);
                if (s->dead || !s->conn)
                        return 0;
        }
        return search_all(s);
}

static int send_examine(struct imap_session *s) {
        struct imap_command cmd;
        char param[96];

        session_set_state(s, SESSION_EXAMINING);
        imap_command_begin(&s->writer, &cmd, "EXAMINE");
        imap_command_mailbox(&s->writer, &cmd, s->cfg.mailbox);
        if (s->qresync && s->point.uidvalidity && s->point.highestmodseq) {
                snprintf(param, sizeof(param), "(QRESYNC (%u %llu))", s->point.uidvalidity,
                         (unsigned long long) s->point.highestmodseq);
                imap_command_raw(&cmd, param);
        } else if (s->condstore)
                imap_command_raw(&cmd, "(CONDSTORE)");
        return session_send(s, &cmd, "EXAMINE", on_examine_done);
}

static int on_enable_done(struct imap_session *s, const struct imap_response *r) {
        /* ENABLE failing is not fatal: we just do without */
        return send_examine(s);
}

int sync_examine(struct imap_session *s) {
        struct imap_command cmd;

        s->condstore = session_has_cap(s, "CONDSTORE") || session_has_cap(s, "QRESYNC");
        if (session_has_cap(s, "ENABLE") && session_has_cap(s, "QRESYNC")) {
                imap_command_begin(&s->writer, &cmd, "ENABLE");
                imap_command_atom(&cmd, "QRESYNC");
                return session_send(s, &cmd, "ENABLE", on_enable_done);
        }
        return send_examine(s);
}

/* ---- untagged ------------------------------------------------------------ */

int sync_handle_untagged(struct imap_session *s, const struct imap_response *r) {
        switch (r->type) {
        case IMAP_RESP_ENABLED:
                if (imap_strv_contains(&r->atoms, "QRESYNC"))
                        s->qresync = s->condstore = true;
                else if (imap_strv_contains(&r->atoms, "CONDSTORE"))
                        s->condstore = true;
                return 0;

        case IMAP_RESP_OK:
        case IMAP_RESP_NO:
        case IMAP_RESP_BAD:
                switch (r->status.code.type) {
                case IMAP_CODE_UIDVALIDITY:
                        s->uidvalidity = r->status.code.number;
                        break;
                case IMAP_CODE_UIDNEXT:
                        s->uidnext = r->status.code.number;
                        break;
                case IMAP_CODE_HIGHESTMODSEQ:
                        if (s->state <= SESSION_EXAMINING)
                                s->highestmodseq = r->status.code.modseq;
                        break;
                case IMAP_CODE_NOMODSEQ:
                        s->highestmodseq = 0;
                        break;
                case IMAP_CODE_ALERT:
                        session_log(s, LOG_WARNING, 0, "server alert: %s", r->status.text);
                        break;
                default:
                        break;
                }
                return 0;

        case IMAP_RESP_EXISTS:
                if (s->synced && r->number > s->exists) {
                        s->need_fetch = true;
                        s->exists = r->number;
                        if (s->idling)
                                return sync_idle_leave(s);
                        return 0;
                }
                s->exists = r->number;
                return 0;

        case IMAP_RESP_EXPUNGE:
                return handle_expunge(s, r->number);

        case IMAP_RESP_VANISHED:
                return handle_vanished(s, &r->vanished);

        case IMAP_RESP_FETCH:
                if (s->fetching_new && (r->fetch.present & IMAP_FETCH_ENVELOPE))
                        return handle_new_candidate(s, &r->fetch);
                return handle_flags(s, r->number, &r->fetch);

        case IMAP_RESP_SEARCH:
                for (size_t i = 0; i < r->search.n; i++)
                        if (uidset_add(&s->search_result, r->search.numbers[i]) < 0)
                                return oom(s);
                return 0;

        case IMAP_RESP_ESEARCH:
                if (r->esearch.tag && strcmp(r->esearch.tag, s->tag) != 0)
                        return 0;
                if ((r->esearch.present & IMAP_ESEARCH_ALL) && uidset_add_seqset(&s->search_result, r->esearch.all) < 0)
                        return oom(s);
                return 0;

        default:
                return 0;
        }
}
