/* SPDX-License-Identifier: MIT */

#include <errno.h>
#include <inttypes.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <systemd/sd-daemon.h>
#include <systemd/sd-event.h>

#include "account.h"
#include "bus.h"
#include "config.h"
#include "daemon.h"
#include "hooks.h"
#include "log.h"
#include "net-monitor.h"
#include "notifier.h"
#include "sleep-monitor.h"
#include "state-store.h"

#define MAX_SINKS 8
#define STOP_TIMEOUT_USEC (5ULL * 1000000)
#define STATE_FLUSH_TIMEOUT_USEC (3ULL * 1000000)
#define NET_SETTLE_USEC (500ULL * 1000)

struct daemon {
        struct daemon_options opts;
        char *config_path;
        sd_event *event;
        struct config *config;
        struct state_store *state;
        struct account **accounts;
        size_t n_accounts;

        struct mail_sink fanout;                /* what accounts publish to */
        const struct mail_sink *sinks[MAX_SINKS];
        size_t n_sinks;

        struct sleep_monitor *sleep;
        struct net_monitor *net;
        struct bus *bus;                        /* NULL until daemon_run */
        struct hooks *hooks;
        struct notifier *notifier;
        sd_event_source *status_defer;
        sd_event_source *stop_timer;
        char last_status[256];
        uint64_t last_trim_usec;
        bool ready, stopping, paused;
        unsigned stopping_accounts;
        int exit_error;                         /* < 0: daemon_run fails with it */
};

/* ---- fan-out to the outputs ---------------------------------------------- */

#define FANOUT(d, member, ...)                                                  \
        do {                                                                    \
                for (size_t _i = 0; _i < (d)->n_sinks; _i++)                    \
                        if ((d)->sinks[_i]->member)                             \
                                (d)->sinks[_i]->member(__VA_ARGS__, (d)->sinks[_i]->userdata); \
        } while (0)

static void fan_new_mail(const struct mail_message *m, void *userdata) {
        struct daemon *d = userdata;
        FANOUT(d, new_mail, m);
}

static void fan_new_mail_done(const char *account, const char *mailbox, unsigned n, void *userdata) {
        struct daemon *d = userdata;
        FANOUT(d, new_mail_done, account, mailbox, n);
}

static void fan_removed(const char *account, const char *mailbox, const uint32_t *uids, size_t n, void *userdata) {
        struct daemon *d = userdata;
        FANOUT(d, removed, account, mailbox, uids, n);
}

static void fan_flags(const char *account, const char *mailbox, uint32_t uid, bool seen, void *userdata) {
        struct daemon *d = userdata;
        FANOUT(d, flags_changed, account, mailbox, uid, seen);
}

static void fan_mailbox(const struct mail_mailbox_info *info, void *userdata) {
        struct daemon *d = userdata;
        FANOUT(d, mailbox_changed, info);
}

static void fan_account_state(const char *account, const char *state, const char *message, void *userdata) {
        struct daemon *d = userdata;
        FANOUT(d, account_state, account, state, message);
}

int daemon_add_sink(struct daemon *d, const struct mail_sink *sink) {
        if (d->n_sinks >= MAX_SINKS)
                return -ENOSPC;
        d->sinks[d->n_sinks++] = sink;
        return 0;
}

/* ---- systemd status ------------------------------------------------------ */

/* "3/3 mailboxes idle, 1 account in backoff"; *ret_all_idle: every mailbox is */
static void format_status(struct daemon *d, char *buf, size_t size, bool *ret_all_idle) {
        unsigned total = 0, idle = 0, backoff = 0, error = 0;
        size_t off;

        for (size_t i = 0; i < d->n_accounts; i++) {
                const char *st = account_state(d->accounts[i]);

                total += account_n_mailboxes(d->accounts[i]);
                idle += account_mailboxes_idle(d->accounts[i]);
                if (strcmp(st, "backoff") == 0)
                        backoff++;
                else if (strcmp(st, "error") == 0)
                        error++;
        }
        *ret_all_idle = total > 0 && idle == total && !d->stopping;
        if (d->stopping) {
                snprintf(buf, size, "logging out");
                return;
        }
        if (d->n_accounts == 0) {
                snprintf(buf, size, "no accounts configured");
                return;
        }
        off = (size_t) snprintf(buf, size, "%u/%u mailbox%s idle", idle, total, total == 1 ? "" : "es");
        if (backoff && off < size)
                off += (size_t) snprintf(buf + off, size - off, ", %u account%s in backoff", backoff,
                                         backoff == 1 ? "" : "s");
        if (error && off < size)
                snprintf(buf + off, size - off, ", %u account%s in error", error, error == 1 ? "" : "s");
}

/* Every mailbox idle again: whatever connecting and syncing needed (TLS
 * handshakes, certificates, fetched envelopes) has been freed, but glibc keeps
 * the freed pages of its heap. Handing them back costs one heap walk; at most
 * once a minute. (make bench, 1,000 sessions idle: 49 MiB of private dirty
 * memory without, 34 MiB with.) */
#define TRIM_INTERVAL_USEC (60ULL * 1000000)

static void trim_heap(struct daemon *d) {
        uint64_t now;

        if (sd_event_now(d->event, CLOCK_MONOTONIC, &now) < 0)
                return;
        if (d->last_trim_usec && now - d->last_trim_usec < TRIM_INTERVAL_USEC)
                return;
        d->last_trim_usec = now;
        (void) malloc_trim(0);
}

static int on_status_defer(sd_event_source *es, void *userdata) {
        struct daemon *d = userdata;
        char status[256];
        bool all_idle = false;

        d->status_defer = sd_event_source_disable_unref(d->status_defer);
        format_status(d, status, sizeof(status), &all_idle);
        if (strcmp(status, d->last_status) == 0)
                return 0;
        snprintf(d->last_status, sizeof(d->last_status), "%s", status);
        sd_notifyf(false, "STATUS=%s", status);
        if (all_idle)
                trim_heap(d);
        return 0;
}

/* Coalesced: many changes in one loop iteration make one STATUS= message. */
static void status_changed(struct daemon *d) {
        if (!d->status_defer)
                (void) sd_event_add_defer(d->event, &d->status_defer, on_status_defer, d);
}

static void on_account_changed(struct account *a, void *userdata) {
        struct daemon *d = userdata;

        status_changed(d);
        bus_changed(d->bus);
}

/* ---- accounts ------------------------------------------------------------ */

static int start_account(struct daemon *d, const struct config_account *cfg, struct account **ret) {
        struct account_env env = {
                .event = d->event,
                .state = d->state,
                .sink = &d->fanout,
                .trace = d->opts.trace,
                .changed = on_account_changed,
                .userdata = d,
        };
        struct account *a;
        int r;

        r = account_new(&env, cfg, &a);
        if (r < 0)
                return log_error_errno(r, "%s: cannot set up the account: %m", cfg->id);
        r = account_start(a);
        if (r < 0) {
                account_free(a);
                return log_error_errno(r, "%s: cannot start the account: %m", cfg->id);
        }
        *ret = a;
        return 0;
}

static int start_accounts(struct daemon *d) {
        d->accounts = calloc(d->config->n_accounts + 1, sizeof(struct account *));
        if (!d->accounts)
                return -ENOMEM;
        for (size_t i = 0; i < d->config->n_accounts; i++)
                if (start_account(d, &d->config->accounts[i], &d->accounts[d->n_accounts]) >= 0)
                        d->n_accounts++;
        log_info("watching %zu account%s", d->n_accounts, d->n_accounts == 1 ? "" : "s");
        return 0;
}

/* The errors in diag, one per line; NULL on OOM. */
static char *diag_errors(const struct config_diag *diag) {
        size_t len = 0;
        char *s, *p;

        for (size_t i = 0; i < diag->n; i++)
                if (diag->items[i].severity == CONFIG_DIAG_ERROR)
                        len += strlen(diag->items[i].message) + 1;
        s = p = malloc(len + 1);
        if (!s)
                return NULL;
        *p = '\0';
        for (size_t i = 0; i < diag->n; i++)
                if (diag->items[i].severity == CONFIG_DIAG_ERROR)
                        p += sprintf(p, "%s%s", p == s ? "" : "\n", diag->items[i].message);
        return s;
}

static int reload_config(struct daemon *d, char **ret_errors);

/* SIGHUP and the bus's Reload alike: systemd hears RELOADING=1, then READY=1. */
int daemon_reload(struct daemon *d) {
        return daemon_reload_full(d, NULL);
}

int daemon_reload_full(struct daemon *d, char **ret_errors) {
        int r;

        sd_notify(false, "RELOADING=1");
        r = reload_config(d, ret_errors);
        sd_notify(false, "READY=1");
        status_changed(d);
        return r;
}

static int reload_config(struct daemon *d, char **ret_errors) {
        struct config_diag diag = {};
        struct config *c = NULL;
        struct account **next;
        size_t n = 0;
        int r;

        log_info("reloading %s", d->config_path);
        r = config_load(d->config_path, &c, &diag);
        for (size_t i = 0; i < diag.n; i++)
                log_full_errno(diag.items[i].severity == CONFIG_DIAG_ERROR ? LOG_ERR : LOG_WARNING, 0, "%s: %s", d->config_path,
                               diag.items[i].message);
        if (r < 0) {
                log_error("the new configuration is not valid; keeping the running one");
                if (ret_errors)
                        *ret_errors = diag_errors(&diag);
                config_diag_done(&diag);
                return r;
        }
        config_diag_done(&diag);

        next = calloc(c->n_accounts + 1, sizeof(struct account *));
        if (!next) {
                config_free(c);
                return log_oom();
        }
        for (size_t i = 0; i < c->n_accounts; i++) {
                const struct config_account *na = &c->accounts[i];
                struct account *keep = NULL;

                for (size_t j = 0; j < d->n_accounts; j++) {
                        struct account *old = d->accounts[j];

                        if (old && strcmp(account_id(old), na->id) == 0 && config_account_equal(account_config(old), na)) {
                                keep = old;
                                d->accounts[j] = NULL;
                                break;
                        }
                }
                if (keep) {
                        /* notification settings come from the new config anyway */
                        next[n++] = keep;
                        continue;
                }
                if (start_account(d, na, &next[n]) >= 0)
                        n++;
        }
        /* removed or changed accounts: log out and go */
        for (size_t j = 0; j < d->n_accounts; j++)
                if (d->accounts[j]) {
                        log_info("%s: removed or changed, closing its connections", account_id(d->accounts[j]));
                        account_free(d->accounts[j]);
                }
        free(d->accounts);
        d->accounts = next;
        d->n_accounts = n;
        hooks_set_config(d->hooks, c);
        notifier_set_config(d->notifier, c);
        config_free(d->config);
        d->config = c;
        status_changed(d);
        bus_changed(d->bus);
        log_info("configuration reloaded: %zu account%s", n, n == 1 ? "" : "s");
        return 0;
}

/* ---- suspend and network ------------------------------------------------- */

static void on_sleep(bool going_to_sleep, void *userdata) {
        struct daemon *d = userdata;

        if (going_to_sleep)
                return;         /* connections die quietly; resume reconnects */
        for (size_t i = 0; i < d->n_accounts; i++)
                account_reconnect(d->accounts[i]);
}

static void on_network(void *userdata) {
        struct daemon *d = userdata;

        for (size_t i = 0; i < d->n_accounts; i++)
                account_network_changed(d->accounts[i]);
}

/* ---- shutdown ------------------------------------------------------------ */

static void finish(struct daemon *d) {
        int r;

        d->stop_timer = sd_event_source_disable_unref(d->stop_timer);
        if (d->state) {
                r = state_store_flush(d->state, STATE_FLUSH_TIMEOUT_USEC);
                if (r < 0)
                        log_warning_errno(r, "cannot save the state before exiting: %m");
        }
        sd_event_exit(d->event, 0);
}

static void on_account_stopped(struct account *a, void *userdata) {
        struct daemon *d = userdata;

        if (d->stopping_accounts > 0 && --d->stopping_accounts == 0)
                finish(d);
}

static int on_stop_timeout(sd_event_source *es, uint64_t usec, void *userdata) {
        struct daemon *d = userdata;

        log_warning("not every server answered LOGOUT in time; exiting anyway");
        finish(d);
        return 0;
}

static void daemon_stop(struct daemon *d) {
        if (d->stopping)
                return;
        d->stopping = true;
        sd_notify(false, "STOPPING=1\nSTATUS=logging out");
        log_info("logging out");
        d->stopping_accounts = (unsigned) d->n_accounts;
        if (d->n_accounts == 0) {
                finish(d);
                return;
        }
        (void) sd_event_add_time_relative(d->event, &d->stop_timer, CLOCK_MONOTONIC, STOP_TIMEOUT_USEC, 0,
                                          on_stop_timeout, d);
        for (size_t i = 0; i < d->n_accounts; i++)
                account_stop(d->accounts[i], on_account_stopped, d);
}

void daemon_exit_failure(struct daemon *d, int error) {
        if (!d->exit_error)
                d->exit_error = error < 0 ? error : -EIO;
        daemon_stop(d);
}

static int on_signal(sd_event_source *es, const struct signalfd_siginfo *si, void *userdata) {
        struct daemon *d = userdata;

        if (si->ssi_signo == SIGHUP) {
                daemon_reload(d);
                return 0;
        }
        daemon_stop(d);
        return 0;
}

/* ---- for the outputs ----------------------------------------------------- */

size_t daemon_n_accounts(const struct daemon *d) {
        return d->n_accounts;
}

struct account *daemon_get_account(const struct daemon *d, size_t i) {
        return i < d->n_accounts ? d->accounts[i] : NULL;
}

struct account *daemon_find_account(const struct daemon *d, const char *id) {
        for (size_t i = 0; i < d->n_accounts; i++)
                if (strcmp(account_id(d->accounts[i]), id) == 0)
                        return d->accounts[i];
        return NULL;
}

void daemon_check_now(struct daemon *d) {
        log_info("checking every account now");
        for (size_t i = 0; i < d->n_accounts; i++)
                account_check_now(d->accounts[i]);
}

bool daemon_get_paused(const struct daemon *d) {
        return d->paused;
}

void daemon_set_paused(struct daemon *d, bool paused) {
        if (d->paused == paused)
                return;
        d->paused = paused;
        notifier_set_paused(d->notifier, paused);
        log_info("%s", paused ? "paused: no notifications pop up until resumed" : "resumed: notifications pop up again");
        bus_changed(d->bus);
}

/* ---- notifications ------------------------------------------------------- */

static void on_mark_seen_done(int r, const char *message, void *userdata) {
        char *what = userdata;

        if (r < 0)
                log_error_errno(r, "%s: \"Mark as read\" failed: %s", what, message ? message : "unknown error");
        else
                log_info("%s: marked as read from its notification", what);
        free(what);
}

/* "Mark as read" on a popup: the same path as the MarkSeen method */
static void on_mark_seen(const char *account, const char *mailbox, uint32_t uid, void *userdata) {
        struct daemon *d = userdata;
        struct account *a = daemon_find_account(d, account);
        char *what;
        int r;

        if (asprintf(&what, "%s/%s UID %" PRIu32, account, mailbox, uid) < 0) {
                log_oom();
                return;
        }
        r = a ? account_mark_seen(a, mailbox, uid, on_mark_seen_done, what) : -ENOENT;
        if (r < 0) {
                log_error_errno(r, "%s: cannot mark as read: %s", what,
                                r == -ENOENT ? "the account or mailbox is no longer configured" : strerror(-r));
                free(what);
        }
}

/* ---- life cycle ---------------------------------------------------------- */

int daemon_new(const struct daemon_options *o, struct daemon **ret) {
        struct config_diag diag = {};
        struct daemon *d;
        char *state_dir;
        int r;

        d = calloc(1, sizeof(*d));
        if (!d)
                return log_oom();
        d->opts = *o;
        d->fanout = (struct mail_sink) {
                .new_mail = fan_new_mail,
                .new_mail_done = fan_new_mail_done,
                .removed = fan_removed,
                .flags_changed = fan_flags,
                .mailbox_changed = fan_mailbox,
                .account_state = fan_account_state,
                .userdata = d,
        };
        d->config_path = o->config_path ? strdup(o->config_path) : config_default_path();
        if (!d->config_path) {
                daemon_free(d);
                return log_oom();
        }

        r = config_load(d->config_path, &d->config, &diag);
        for (size_t i = 0; i < diag.n; i++)
                log_full_errno(diag.items[i].severity == CONFIG_DIAG_ERROR ? LOG_ERR : LOG_WARNING, 0, "%s: %s", d->config_path,
                               diag.items[i].message);
        config_diag_done(&diag);
        if (r < 0) {
                daemon_free(d);
                return log_error_errno(r, "cannot use %s; fix it and start again (imapidled --check-config "
                                       "lists the problems)", o->config_path ? o->config_path : "the configuration");
        }
        if (!o->verbose && !o->trace)
                log_set_max_level(d->config->log_level);

        r = sd_event_default(&d->event);
        if (r < 0)
                goto fail;
        state_dir = o->state_dir ? strdup(o->state_dir) : state_store_default_dir();
        if (!state_dir) {
                r = -ENOMEM;
                goto fail;
        }
        r = state_store_new(d->event, state_dir, &d->state);
        free(state_dir);
        if (r < 0)
                goto fail;

        r = sd_event_add_signal(d->event, NULL, SIGTERM, on_signal, d);
        if (r >= 0)
                r = sd_event_add_signal(d->event, NULL, SIGINT, on_signal, d);
        if (r >= 0)
                r = sd_event_add_signal(d->event, NULL, SIGHUP, on_signal, d);
        if (r < 0)
                goto fail;
        /* pings at half of WatchdogSec=, only when the manager asks for it */
        r = sd_event_set_watchdog(d->event, true);
        if (r < 0)
                log_warning_errno(r, "cannot set up the watchdog, ignoring: %m");

        r = hooks_new(d->event, d->config, &d->hooks);
        if (r >= 0)
                r = daemon_add_sink(d, hooks_sink(d->hooks));
        if (r < 0)
                goto fail;

        r = notifier_new(d->event, d->config, on_mark_seen, d, &d->notifier);
        if (r >= 0)
                r = daemon_add_sink(d, notifier_sink(d->notifier));
        if (r < 0)
                goto fail;

        r = sleep_monitor_new(d->event, on_sleep, d, &d->sleep);
        if (r < 0)
                goto fail;
        r = net_monitor_new(d->event, NET_SETTLE_USEC, on_network, d, &d->net);
        if (r < 0)
                log_warning_errno(r, "cannot watch network changes (%m); lost connections will be found by "
                                  "keepalive, ignoring");
        *ret = d;
        return 0;

fail:
        daemon_free(d);
        return log_error_errno(r, "cannot start: %m");
}

struct daemon *daemon_free(struct daemon *d) {
        if (!d)
                return NULL;
        for (size_t i = 0; i < d->n_accounts; i++)
                account_free(d->accounts[i]);
        free(d->accounts);
        /* after the accounts: nothing publishes to its sink any more */
        bus_free(d->bus);
        hooks_free(d->hooks);
        notifier_free(d->notifier);
        sleep_monitor_free(d->sleep);
        net_monitor_free(d->net);
        sd_event_source_disable_unref(d->status_defer);
        sd_event_source_disable_unref(d->stop_timer);
        state_store_free(d->state);
        config_free(d->config);
        free(d->config_path);
        sd_event_unref(d->event);
        free(d);
        return NULL;
}

int daemon_run(struct daemon *d) {
        int r;

        /* the bus name first: a second instance must go before it opens a
         * single IMAP connection (-EEXIST, logged); no session bus at all is
         * not an error */
        r = bus_new(d->event, d, &d->bus);
        if (r < 0)
                return r;
        r = start_accounts(d);
        if (r < 0)
                return log_error_errno(r, "cannot start the accounts: %m");
        /* the objects exist before anyone can ask for them */
        bus_changed(d->bus);
        bus_flush(d->bus);
        /* ready: the name is ours, the loop runs and every account is on its way */
        sd_notify(false, "READY=1");
        status_changed(d);
        r = sd_event_loop(d->event);
        if (d->exit_error < 0)
                return d->exit_error;
        if (r < 0)
                return log_error_errno(r, "event loop failed: %m");
        return r;
}
