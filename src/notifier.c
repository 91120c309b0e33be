/* SPDX-License-Identifier: MIT */
/*
 * What pops up (see notifier.h); notify-worker.c does the showing.
 *
 * Per account a struct burst counts the messages of the current burst and
 * holds those of this loop pass (pending) until a defer source decides, at
 * the end of the pass, whether they pop up one by one or in the burst's
 * summary. Every popup on screen that can be retracted is a struct popup:
 * a single message (account, mailbox, uid) or a summary with the UIDs it
 * stands for, per mailbox, sorted.
 */

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "macro.h"
#include "notifier.h"
#include "notify-text.h"
#include "notify-worker.h"
#include "spawn.h"

#define ICON "mail-unread"
#define CATEGORY "email.arrived"
#define SUMMARY_UIDS_MAX 100000u        /* beyond: the summary no longer closes by itself */

struct summary_box {
        char *mailbox;
        uint32_t uidvalidity;
        uint32_t *uids;                 /* sorted, unseen and present */
        size_t n, size;
};

struct popup {
        struct popup *next;
        uint64_t key;
        char *account;
        uint64_t burst_gen;             /* the burst it was shown in */
        bool is_summary;

        /* a single message */
        char *mailbox;
        uint32_t uidvalidity, uid;

        /* a summary */
        struct summary_box *boxes;
        size_t n_boxes;
        bool untracked;                 /* too many UIDs: not retracted */
};

struct pending {
        char *mailbox;
        uint32_t uidvalidity, uid;
        char *summary, *body;
};

struct burst {
        struct burst *next;
        char *account;
        uint64_t gen;
        uint64_t last_usec;
        unsigned count;                 /* messages in this burst, shown or pending */
        struct popup *summary;          /* NULL: none on screen for this burst */
        char *senders[NOTIFY_TEXT_BURST_SENDERS];
        size_t n_senders;
        bool more_senders;
        struct pending *pending;
        size_t n_pending, size_pending;
};

struct notifier {
        sd_event *event;
        const struct config *config;
        struct notify_worker *worker;
        notifier_mark_seen_fn mark_seen;
        void *userdata;
        struct mail_sink sink;
        sd_event_source *flush;
        struct popup *popups;           /* newest first */
        struct burst *bursts;
        uint64_t next_key, next_gen;
        bool paused;
};

static const struct config_notify *notify_config(struct notifier *n, const char *account) {
        const struct config_account *a = n->config ? config_find_account(n->config, account) : NULL;

        return a ? &a->notify : NULL;
}

static uint64_t now_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_BOOTTIME, &ts);
        return (uint64_t) ts.tv_sec * 1000000 + (uint64_t) ts.tv_nsec / 1000;
}

/* ---- popups -------------------------------------------------------------- */

static void summary_box_done(struct summary_box *b) {
        free(b->mailbox);
        free(b->uids);
}

static struct popup *popup_free(struct popup *p) {
        if (!p)
                return NULL;
        for (size_t i = 0; i < p->n_boxes; i++)
                summary_box_done(&p->boxes[i]);
        free(p->boxes);
        free(p->account);
        free(p->mailbox);
        free(p);
        return NULL;
}

static void popup_unlink(struct notifier *n, struct popup *p) {
        for (struct popup **pp = &n->popups; *pp; pp = &(*pp)->next)
                if (*pp == p) {
                        *pp = p->next;
                        break;
                }
        for (struct burst *b = n->bursts; b; b = b->next)
                if (b->summary == p)
                        b->summary = NULL;
}

/* forget p (and close it on screen if close) */
static void popup_drop(struct notifier *n, struct popup *p, bool close) {
        if (close)
                notify_worker_close(n->worker, p->key);
        popup_unlink(n, p);
        popup_free(p);
}

static struct popup *popup_new(struct notifier *n, const char *account, uint64_t gen) {
        struct popup *p = calloc(1, sizeof(*p));

        if (!p)
                return NULL;
        p->account = strdup(account);
        if (!p->account)
                return popup_free(p);
        p->key = ++n->next_key;
        p->burst_gen = gen;
        p->next = n->popups;
        n->popups = p;
        return p;
}

static struct popup *find_popup(struct notifier *n, uint64_t key) {
        for (struct popup *p = n->popups; p; p = p->next)
                if (p->key == key)
                        return p;
        return NULL;
}

/* keep at most NOTIFIER_POPUPS_MAX single-message popups tracked; the
 * oldest are forgotten (they stay on screen until they expire) */
static void trim_popups(struct notifier *n) {
        unsigned k = 0;

        for (struct popup **pp = &n->popups; *pp;) {
                struct popup *p = *pp;

                if (!p->is_summary && ++k > NOTIFIER_POPUPS_MAX) {
                        *pp = p->next;
                        popup_free(p);
                        continue;
                }
                pp = &p->next;
        }
}

static size_t uid_search(const uint32_t *uids, size_t n, uint32_t uid) {
        size_t lo = 0, hi = n;

        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;

                if (uids[mid] < uid)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return lo;
}

static int summary_add(struct popup *p, const char *mailbox, uint32_t uidvalidity, uint32_t uid) {
        struct summary_box *b = NULL;
        size_t total = 0, i;

        if (p->untracked)
                return 0;
        for (i = 0; i < p->n_boxes; i++) {
                total += p->boxes[i].n;
                if (strcmp(p->boxes[i].mailbox, mailbox) == 0)
                        b = &p->boxes[i];
        }
        if (total >= SUMMARY_UIDS_MAX) {
                p->untracked = true;
                return 0;
        }
        if (!b) {
                struct summary_box *nb = realloc(p->boxes, (p->n_boxes + 1) * sizeof(*nb));

                if (!nb)
                        return -ENOMEM;
                p->boxes = nb;
                b = &p->boxes[p->n_boxes];
                *b = (struct summary_box) { .mailbox = strdup(mailbox), .uidvalidity = uidvalidity };
                if (!b->mailbox)
                        return -ENOMEM;
                p->n_boxes++;
        }
        if (b->uidvalidity != uidvalidity) {
                b->n = 0;               /* the old UIDs mean nothing now */
                b->uidvalidity = uidvalidity;
        }
        i = uid_search(b->uids, b->n, uid);
        if (i < b->n && b->uids[i] == uid)
                return 0;
        if (b->n == b->size) {
                size_t size = b->size ? b->size * 2 : 16;
                uint32_t *nu = realloc(b->uids, size * sizeof(*nu));

                if (!nu)
                        return -ENOMEM;
                b->uids = nu;
                b->size = size;
        }
        memmove(b->uids + i + 1, b->uids + i, (b->n - i) * sizeof(*b->uids));
        b->uids[i] = uid;
        b->n++;
        return 0;
}

/* uid is seen or gone: true if p now stands for nothing */
static bool summary_remove(struct popup *p, const char *mailbox, uint32_t uid) {
        size_t total = 0;
        bool hit = false;

        for (size_t i = 0; i < p->n_boxes; i++) {
                struct summary_box *b = &p->boxes[i];

                if (strcmp(b->mailbox, mailbox) == 0) {
                        size_t j = uid_search(b->uids, b->n, uid);

                        if (j < b->n && b->uids[j] == uid) {
                                memmove(b->uids + j, b->uids + j + 1, (b->n - j - 1) * sizeof(*b->uids));
                                b->n--;
                                hit = true;
                        }
                }
                total += b->n;
        }
        return hit && total == 0 && !p->untracked;
}

/* ---- what is shown ------------------------------------------------------- */

static int32_t popup_timeout(const struct config_notify *c) {
        switch (c->notify_timeout) {
        case CONFIG_NOTIFY_TIMEOUT_NEVER:
                return 0;
        case CONFIG_NOTIFY_TIMEOUT_DURATION:
                return c->notify_timeout_usec < 1000 ? 1 : (int32_t) (c->notify_timeout_usec / 1000);
        default:
                return -1;
        }
}

static void show(struct notifier *n, struct popup *p, const struct config_notify *c, const char *summary,
                 const char *body) {
        struct notify_popup np = {
                .summary = summary,
                .body = body,
                .icon = ICON,
                .category = CATEGORY,
                .timeout_ms = popup_timeout(c),
                .default_label = c->open_command ? "Open" : NULL,
                .mark_read_label = p->is_summary ? NULL : "Mark as read",
        };

        if (notify_worker_show(n->worker, p->key, &np) < 0)
                log_warning("%s: cannot show a notification: out of memory", p->account);
}

static void show_summary(struct notifier *n, struct burst *b, const struct config_notify *c) {
        char summary[NOTIFY_TEXT_SUMMARY_MAX + 64], *clean_summary, *body;

        snprintf(summary, sizeof(summary), "%u new message%s on %s", b->count, b->count == 1 ? "" : "s", b->account);
        clean_summary = notify_text_clean(summary, NOTIFY_TEXT_SUMMARY_MAX);
        body = c->notify_show_content ? notify_text_burst_body((const char *const *) b->senders, b->n_senders,
                                                               b->more_senders)
                                      : strdup("");
        if (clean_summary && body)
                show(n, b->summary, c, clean_summary, body);
        else
                log_warning("%s: cannot show a notification: out of memory", b->account);
        free(clean_summary);
        free(body);
}

static void pending_done(struct pending *p) {
        free(p->mailbox);
        free(p->summary);
        free(p->body);
}

static void burst_clear_pending(struct burst *b) {
        for (size_t i = 0; i < b->n_pending; i++)
                pending_done(&b->pending[i]);
        b->n_pending = 0;
}

static void burst_reset(struct notifier *n, struct burst *b) {
        burst_clear_pending(b);
        for (size_t i = 0; i < b->n_senders; i++)
                free(b->senders[i]);
        b->n_senders = 0;
        b->more_senders = false;
        b->count = 0;
        b->summary = NULL;      /* it stays on screen, and tracked, as the last burst's */
        b->gen = ++n->next_gen;
}

static void flush_burst(struct notifier *n, struct burst *b) {
        const struct config_notify *c = notify_config(n, b->account);

        if (b->n_pending == 0)
                return;
        if (!c || !c->notify || n->paused) {
                burst_clear_pending(b);
                return;
        }
        if (b->count > c->notify_max_individual) {
                bool fresh = !b->summary;

                if (fresh) {
                        b->summary = popup_new(n, b->account, b->gen);
                        if (!b->summary) {
                                burst_clear_pending(b);
                                log_warning("%s: cannot show a notification: out of memory", b->account);
                                return;
                        }
                        b->summary->is_summary = true;
                        /* this burst's single popups fold into the summary */
                        for (struct popup *p = n->popups, *next; p; p = next) {
                                next = p->next;
                                if (p->is_summary || p->burst_gen != b->gen || strcmp(p->account, b->account) != 0)
                                        continue;
                                (void) summary_add(b->summary, p->mailbox, p->uidvalidity, p->uid);
                                popup_drop(n, p, true);
                        }
                }
                for (size_t i = 0; i < b->n_pending; i++)
                        if (summary_add(b->summary, b->pending[i].mailbox, b->pending[i].uidvalidity,
                                        b->pending[i].uid) < 0)
                                b->summary->untracked = true;
                show_summary(n, b, c);
        } else {
                for (size_t i = 0; i < b->n_pending; i++) {
                        struct pending *m = &b->pending[i];
                        struct popup *p = popup_new(n, b->account, b->gen);

                        if (!p) {
                                log_warning("%s: cannot show a notification: out of memory", b->account);
                                break;
                        }
                        p->mailbox = m->mailbox;
                        m->mailbox = NULL;
                        p->uidvalidity = m->uidvalidity;
                        p->uid = m->uid;
                        show(n, p, c, m->summary, m->body);
                }
                trim_popups(n);
        }
        burst_clear_pending(b);
}

static int on_flush(sd_event_source *s, void *userdata) {
        struct notifier *n = userdata;

        (void) s;
        for (struct burst *b = n->bursts; b; b = b->next)
                flush_burst(n, b);
        return 0;
}

static struct burst *get_burst(struct notifier *n, const char *account) {
        struct burst *b;

        for (b = n->bursts; b; b = b->next)
                if (strcmp(b->account, account) == 0)
                        return b;
        b = calloc(1, sizeof(*b));
        if (!b)
                return NULL;
        b->account = strdup(account);
        if (!b->account) {
                free(b);
                return NULL;
        }
        b->gen = ++n->next_gen;
        b->next = n->bursts;
        n->bursts = b;
        return b;
}

static void burst_note_sender(struct burst *b, const char *sender) {
        char *s;

        for (size_t i = 0; i < b->n_senders; i++)
                if (strcmp(b->senders[i], sender) == 0)
                        return;
        if (b->n_senders == NOTIFY_TEXT_BURST_SENDERS) {
                b->more_senders = true;
                return;
        }
        s = strdup(sender);
        if (s)
                b->senders[b->n_senders++] = s;
}

/* ---- the sink ------------------------------------------------------------ */

static void on_new_mail(const struct mail_message *m, void *userdata) {
        struct notifier *n = userdata;
        const struct config_notify *c = notify_config(n, m->account);
        const char *sender;
        struct pending *p;
        struct burst *b;
        uint64_t now;

        if (!c || !c->notify || n->paused)
                return;
        b = get_burst(n, m->account);
        if (!b)
                goto oom;
        now = now_usec();
        if (b->count > 0 && now - b->last_usec > NOTIFIER_BURST_WINDOW_USEC) {
                flush_burst(n, b);
                burst_reset(n, b);
        }
        b->last_usec = now;

        if (b->n_pending == b->size_pending) {
                size_t size = b->size_pending ? b->size_pending * 2 : 8;
                struct pending *np = realloc(b->pending, size * sizeof(*np));

                if (!np)
                        goto oom;
                b->pending = np;
                b->size_pending = size;
        }
        sender = *m->from ? m->from : *m->from_address ? m->from_address : "Unknown sender";
        p = &b->pending[b->n_pending];
        *p = (struct pending) { .uidvalidity = m->uidvalidity, .uid = m->uid, .mailbox = strdup(m->mailbox) };
        if (c->notify_show_content) {
                char *clean_sender = notify_text_clean(sender, NOTIFY_TEXT_SUMMARY_MAX);

                p->summary = clean_sender;
                p->body = notify_text_clean(*m->subject ? m->subject : "(no subject)", NOTIFY_TEXT_BODY_MAX);
                if (clean_sender)
                        burst_note_sender(b, clean_sender);
        } else {
                char text[NOTIFY_TEXT_SUMMARY_MAX + 32];

                snprintf(text, sizeof(text), "New mail on %s", m->account);
                p->summary = notify_text_clean(text, NOTIFY_TEXT_SUMMARY_MAX);
                p->body = strdup("");
        }
        if (!p->mailbox || !p->summary || !p->body) {
                pending_done(p);
                goto oom;
        }
        b->n_pending++;
        b->count++;
        (void) sd_event_source_set_enabled(n->flush, SD_EVENT_ONESHOT);
        return;

oom:
        log_warning("%s: cannot show a notification: out of memory", m->account);
}

/* account/mailbox/uid was read or removed */
static void retract(struct notifier *n, const char *account, const char *mailbox, uint32_t uid) {
        for (struct burst *b = n->bursts; b; b = b->next) {
                if (strcmp(b->account, account) != 0)
                        continue;
                for (size_t i = 0; i < b->n_pending; i++)
                        if (b->pending[i].uid == uid && strcmp(b->pending[i].mailbox, mailbox) == 0) {
                                pending_done(&b->pending[i]);
                                b->pending[i] = b->pending[--b->n_pending];
                                break;
                        }
        }
        for (struct popup *p = n->popups, *next; p; p = next) {
                next = p->next;
                if (strcmp(p->account, account) != 0)
                        continue;
                if (p->is_summary ? summary_remove(p, mailbox, uid)
                                  : p->uid == uid && strcmp(p->mailbox, mailbox) == 0) {
                        log_debug("%s/%s: UID %" PRIu32 " read or removed, closing its notification", account,
                                  mailbox, uid);
                        popup_drop(n, p, true);
                }
        }
}

static void on_removed(const char *account, const char *mailbox, const uint32_t *uids, size_t n_uids,
                       void *userdata) {
        struct notifier *n = userdata;

        for (size_t i = 0; i < n_uids; i++)
                retract(n, account, mailbox, uids[i]);
}

static void on_flags_changed(const char *account, const char *mailbox, uint32_t uid, bool seen, void *userdata) {
        if (seen)
                retract(userdata, account, mailbox, uid);
}

static void on_mailbox_changed(const struct mail_mailbox_info *info, void *userdata) {
        struct notifier *n = userdata;

        if (info->uidvalidity == 0)
                return;
        /* new UIDVALIDITY: the UIDs we hold name other messages now */
        for (struct popup *p = n->popups, *next; p; p = next) {
                next = p->next;
                if (strcmp(p->account, info->account) != 0)
                        continue;
                if (!p->is_summary) {
                        if (strcmp(p->mailbox, info->mailbox) == 0 && p->uidvalidity != info->uidvalidity)
                                popup_drop(n, p, false);
                        continue;
                }
                for (size_t i = 0; i < p->n_boxes; i++)
                        if (strcmp(p->boxes[i].mailbox, info->mailbox) == 0 &&
                            p->boxes[i].uidvalidity != info->uidvalidity) {
                                p->boxes[i].n = 0;
                                p->untracked = true;
                        }
        }
}

/* ---- what comes back from the popups ------------------------------------- */

static void run_open_command(struct notifier *n, const struct popup *p) {
        const struct config_notify *c = notify_config(n, p->account);
        char account[1024], mailbox[1024], uid[64], prefix[1100];
        char *extra[3], **envp = NULL;
        size_t n_extra = 0;
        int r;

        if (!c || !c->open_command)
                return;
        snprintf(account, sizeof(account), "IMAPIDLED_ACCOUNT=%s", p->account);
        extra[n_extra++] = account;
        if (!p->is_summary) {
                snprintf(mailbox, sizeof(mailbox), "IMAPIDLED_MAILBOX=%s", p->mailbox);
                snprintf(uid, sizeof(uid), "IMAPIDLED_UID=%" PRIu32, p->uid);
                extra[n_extra++] = mailbox;
                extra[n_extra++] = uid;
        }
        snprintf(prefix, sizeof(prefix), "%s: open_command ", p->account);
        r = spawn_environment(extra, n_extra, "IMAPIDLED_", &envp);
        if (r >= 0)
                r = spawn_detached(n->event, c->open_command, envp, prefix);
        free(envp);
        if (r < 0)
                log_error_errno(r, "%s: cannot run open_command: %m; check the command in the configuration",
                                p->account);
}

static void on_action(uint64_t key, const char *action, void *userdata) {
        struct notifier *n = userdata;
        struct popup *p = find_popup(n, key);

        if (!p)
                return;
        log_debug("%s: notification action \"%s\"", p->account, action);
        if (strcmp(action, "default") == 0)
                run_open_command(n, p);
        else if (strcmp(action, "mark-read") == 0 && !p->is_summary && n->mark_seen)
                n->mark_seen(p->account, p->mailbox, p->uid, n->userdata);
        else
                return;
        /* done with: some servers (dunst) leave a popup up after an action */
        popup_drop(n, p, true);
}

static void on_closed(uint64_t key, void *userdata) {
        struct notifier *n = userdata;
        struct popup *p = find_popup(n, key);

        /* closed by the user or the server: nothing left to retract */
        if (p)
                popup_drop(n, p, false);
}

/* ---- life cycle ---------------------------------------------------------- */

int notifier_new(sd_event *e, const struct config *config, notifier_mark_seen_fn mark_seen, void *userdata,
                 struct notifier **ret) {
        struct notifier *n;
        int r;

        n = calloc(1, sizeof(*n));
        if (!n)
                return -ENOMEM;
        n->event = e;
        n->config = config;
        n->mark_seen = mark_seen;
        n->userdata = userdata;
        n->sink = (struct mail_sink) {
                .new_mail = on_new_mail,
                .removed = on_removed,
                .flags_changed = on_flags_changed,
                .mailbox_changed = on_mailbox_changed,
                .userdata = n,
        };
        r = sd_event_add_defer(e, &n->flush, on_flush, n);
        if (r >= 0)
                r = sd_event_source_set_enabled(n->flush, SD_EVENT_OFF);
        if (r >= 0)
                r = notify_worker_new(e, "imapidled", on_action, on_closed, n, &n->worker);
        if (r < 0) {
                notifier_free(n);
                return r;
        }
        (void) sd_event_source_set_description(n->flush, "notifier-flush");
        *ret = n;
        return 0;
}

void notifier_set_config(struct notifier *n, const struct config *config) {
        n->config = config;
}

void notifier_set_paused(struct notifier *n, bool paused) {
        n->paused = paused;
}

const struct mail_sink *notifier_sink(struct notifier *n) {
        return &n->sink;
}

struct notifier *notifier_free(struct notifier *n) {
        if (!n)
                return NULL;
        n->worker = notify_worker_free(n->worker);
        n->flush = sd_event_source_disable_unref(n->flush);
        while (n->popups) {
                struct popup *p = n->popups;

                n->popups = p->next;
                popup_free(p);
        }
        while (n->bursts) {
                struct burst *b = n->bursts;

                n->bursts = b->next;
                burst_clear_pending(b);
                for (size_t i = 0; i < b->n_senders; i++)
                        free(b->senders[i]);
                free(b->pending);
                free(b->account);
                free(b);
        }
        free(n);
        return NULL;
}
