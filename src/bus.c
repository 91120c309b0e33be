/* SPDX-License-Identifier: MIT */
/*
 * The session bus connection: the name, losing the bus and finding it again,
 * the mail sink, and the comparison of the daemon's accounts with what
 * clients were last told (bus_sync), which the objects in bus-manager.c,
 * bus-account.c and bus-mailbox.c then announce.
 */

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "account.h"
#include "bus-internal.h"
#include "bus.h"
#include "daemon.h"
#include "log.h"
#include "macro.h"
#include "utf8.h"

/* After the bus went away (or was not there at start): try every 5 s for a
 * minute, then once a minute. No busy loop, few wake-ups. */
#define RETRY_FAST_USEC         (5ULL * 1000000)
#define RETRY_SLOW_USEC         (60ULL * 1000000)
#define RETRY_FAST_FOR_USEC     (60ULL * 1000000)
#define RETRY_ACCURACY_USEC     (500ULL * 1000)

/* ---- helpers for bus*.c -------------------------------------------------- */

const char *bus_utf8(const char *s, char **buf) {
        size_t len;

        *buf = NULL;
        if (!s)
                return "";
        len = strlen(s);
        if (utf8_is_valid(s, len))
                return s;
        /* never pass invalid bytes on; on OOM say nothing rather than garbage */
        if (utf8_sanitize(s, len, buf) < 0)
                return "";
        return *buf;
}

bool bus_set_string(char **field, const char *value) {
        _cleanup_free_ char *buf = NULL;
        const char *v = bus_utf8(value, &buf);
        char *copy;

        if (*field && strcmp(*field, v) == 0)
                return false;
        copy = buf ? TAKE_PTR(buf) : strdup(v);
        if (!copy) {
                log_oom();
                return false;
        }
        free(*field);
        *field = copy;
        return true;
}

bool bus_can_emit(const struct bus *b) {
        return b->bus && sd_bus_is_open(b->bus) > 0;
}

void bus_emit_changed(struct bus *b, const char *path, const char *interface, unsigned mask,
                      const char *const *names, size_t n_names) {
        const char *list[16];
        size_t k = 0;
        int r;

        assert(n_names < ELEMENTSOF(list));
        if (!mask || !bus_can_emit(b))
                return;
        for (size_t i = 0; i < n_names; i++)
                if (mask & (1u << i))
                        list[k++] = names[i];
        list[k] = NULL;
        r = sd_bus_emit_properties_changed_strv(b->bus, path, interface, (char **) list);
        if (r < 0)
                log_debug_errno(r, "cannot announce the changes of %s, ignoring: %m", path);
}

/* ---- what clients see vs. what the daemon has ---------------------------- */

/* The object of account id, taken out of b->accounts. Accounts keep their
 * order from one sync to the next (only a reload changes it), so the one at
 * hint is tried first: a sync runs on every loop iteration that changed
 * anything, and searching the whole list for every account made it
 * quadratic (with 1,000 accounts, most of the start-up's CPU time). */
static struct bus_account *take_account(struct bus *b, const char *id, size_t hint) {
        for (size_t k = 0; k <= b->n_accounts; k++) {
                size_t i = k == 0 ? hint : k - 1;
                struct bus_account *ba;

                if (i >= b->n_accounts || (k > 0 && i == hint))
                        continue;
                ba = b->accounts[i];
                if (ba && strcmp(ba->name, id) == 0) {
                        b->accounts[i] = NULL;
                        return ba;
                }
        }
        return NULL;
}

/* Brings the objects up to date with the daemon's accounts and announces
 * every difference: removed objects first, then new ones, then changes. */
static void bus_sync(struct bus *b) {
        size_t n = daemon_n_accounts(b->daemon), k = 0;
        struct bus_account **next;

        next = calloc(n + 1, sizeof(*next));
        if (!next) {
                log_oom();
                return;
        }
        for (size_t i = 0; i < n; i++) {
                const struct account *a = daemon_get_account(b->daemon, i);
                struct bus_account *ba = take_account(b, account_id(a), i);

                if (!ba && bus_account_new(account_id(a), &ba) < 0) {
                        log_oom();
                        continue;
                }
                bus_account_update(b, ba, a);
                next[k++] = ba;
        }
        /* what is left went away with a reload */
        for (size_t i = 0; i < b->n_accounts; i++)
                if (b->accounts[i]) {
                        bus_account_emit_removed(b, b->accounts[i]);
                        bus_account_free(b->accounts[i]);
                }
        free(b->accounts);
        b->accounts = next;
        b->n_accounts = k;

        bus_manager_update(b);
        for (size_t i = 0; i < b->n_accounts; i++)
                bus_account_emit_changes(b, b->accounts[i]);
        bus_manager_emit_changes(b);
}

static int on_sync_defer(sd_event_source *es, void *userdata) {
        bus_sync(userdata);
        return 0;
}

void bus_changed(struct bus *b) {
        int r;

        if (!b)
                return;
        r = sd_event_source_set_enabled(b->sync_defer, SD_EVENT_ONESHOT);
        if (r < 0)
                log_debug_errno(r, "cannot schedule the D-Bus update, ignoring: %m");
}

void bus_flush(struct bus *b) {
        int enabled = SD_EVENT_OFF;

        if (!b)
                return;
        (void) sd_event_source_get_enabled(b->sync_defer, &enabled);
        if (enabled == SD_EVENT_OFF)
                return;
        (void) sd_event_source_set_enabled(b->sync_defer, SD_EVENT_OFF);
        bus_sync(b);
}

/* ---- the mail sink ------------------------------------------------------- */

static void sink_new_mail(const struct mail_message *m, void *userdata) {
        struct bus *b = userdata;

        bus_manager_emit_new_mail(b, m);
        bus_changed(b);
}

static void sink_new_mail_done(const char *account, const char *mailbox, unsigned n, void *userdata) {
        bus_changed(userdata);
}

static void sink_removed(const char *account, const char *mailbox, const uint32_t *uids, size_t n, void *userdata) {
        struct bus *b = userdata;

        bus_manager_emit_removed(b, account, mailbox, uids, n);
        bus_changed(b);
}

static void sink_flags_changed(const char *account, const char *mailbox, uint32_t uid, bool seen, void *userdata) {
        bus_changed(userdata);
}

static void sink_mailbox_changed(const struct mail_mailbox_info *info, void *userdata) {
        bus_changed(userdata);
}

/* AccountStateChanged is sent with Account.State's PropertiesChanged, from
 * bus_sync: one source for both, so they always agree. */
static void sink_account_state(const char *account, const char *state, const char *message, void *userdata) {
        bus_changed(userdata);
}

/* ---- the connection ------------------------------------------------------ */

static void schedule_retry(struct bus *b);

/* Off the loop first: nothing of an old connection (its matches and replies
 * carry b) may run after this. Returns NULL. */
static sd_bus *bus_release(sd_bus *bus) {
        if (!bus)
                return NULL;
        (void) sd_bus_detach_event(bus);
        return sd_bus_close_unref(bus);
}

static int match_disconnected(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        struct bus *b = userdata;

        if (b->have_name)
                log_warning("the session bus went away; connecting again in the background (mail is still watched)");
        else
                log_debug("the session bus connection closed");
        b->have_name = false;
        /* the closed connection is released by the retry, outside its own callback */
        schedule_retry(b);
        return 0;
}

static int reply_request_name(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        struct bus *b = userdata;
        const sd_bus_error *e = sd_bus_message_get_error(m);
        uint32_t ret;
        int r;

        if (e) {
                /* a dropped connection is retried by match_disconnected */
                log_warning_errno(sd_bus_error_get_errno(e), "cannot take the name %s on the session bus: %s",
                                  BUS_NAME, e->message ? e->message : e->name);
                return 0;
        }
        r = sd_bus_message_read(m, "u", &ret);
        if (r < 0) {
                log_warning_errno(r, "cannot read the answer to RequestName: %m");
                return 0;
        }
        if (ret == 1 || ret == 4) {     /* DBUS_REQUEST_NAME_REPLY_PRIMARY_OWNER, _ALREADY_OWNER */
                b->have_name = true;
                b->lost_usec = 0;
                log_info("on the session bus again as %s", BUS_NAME);
                return 0;
        }
        /* DBUS_REQUEST_NAME_REPLY_EXISTS: another instance started while the bus
         * was away. Two would announce everything twice: this one goes. */
        log_error("another imapidled is running (%s is taken on the session bus); exiting", BUS_NAME);
        daemon_exit_failure(b->daemon, -EEXIST);
        return 0;
}

/* A new connection with every object on it, attached to the loop. With
 * wait_for_name the name is requested synchronously (start-up: -EEXIST when
 * it is taken), else asynchronously (reconnecting: the loop never waits for
 * the bus). */
static int bus_connect(struct bus *b, bool wait_for_name) {
        _cleanup_(sd_bus_close_unrefp) sd_bus *bus = NULL;
        int r;

        /* $DBUS_SESSION_BUS_ADDRESS, else $XDG_RUNTIME_DIR/bus */
        r = sd_bus_open_user_with_description(&bus, "session");
        if (r < 0)
                return r;
        r = sd_bus_set_exit_on_disconnect(bus, false);
        if (r < 0)
                return r;
        /* org.freedesktop.DBus.Local is synthesized by sd-bus itself when the
         * connection ends: no match is installed on the server */
        r = sd_bus_match_signal_async(bus, NULL, "org.freedesktop.DBus.Local", "/org/freedesktop/DBus/Local",
                                      "org.freedesktop.DBus.Local", "Disconnected", match_disconnected, NULL, b);
        if (r < 0)
                return r;
        r = bus_manager_add_objects(b, bus);
        if (r < 0)
                return r;
        r = bus_account_add_objects(b, bus);
        if (r < 0)
                return r;
        r = bus_mailbox_add_objects(b, bus);
        if (r < 0)
                return r;
        r = sd_bus_attach_event(bus, b->event, SD_EVENT_PRIORITY_NORMAL);
        if (r < 0)
                return r;
        if (wait_for_name) {
                r = sd_bus_request_name(bus, BUS_NAME, 0);
                if (r < 0)
                        return r;
                b->have_name = true;
        } else {
                r = sd_bus_request_name_async(bus, NULL, BUS_NAME, 0, reply_request_name, b);
                if (r < 0)
                        return r;
        }
        b->bus = TAKE_PTR(bus);
        return 0;
}

static int on_retry(sd_event_source *es, uint64_t usec, void *userdata) {
        struct bus *b = userdata;
        int r;

        b->bus = bus_release(b->bus);
        r = bus_connect(b, false);
        if (r < 0) {
                log_debug_errno(r, "the session bus is not back yet (%m)");
                schedule_retry(b);
                return 0;
        }
        log_debug("connected to the session bus, asking for %s", BUS_NAME);
        return 0;
}

static void schedule_retry(struct bus *b) {
        uint64_t now, delay;
        int r;

        r = sd_event_now(b->event, CLOCK_MONOTONIC, &now);
        if (r < 0)
                goto fail;
        if (!b->lost_usec)
                b->lost_usec = now;
        delay = now - b->lost_usec < RETRY_FAST_FOR_USEC ? RETRY_FAST_USEC : RETRY_SLOW_USEC;
        if (!b->retry_timer) {
                r = sd_event_add_time_relative(b->event, &b->retry_timer, CLOCK_MONOTONIC, delay, RETRY_ACCURACY_USEC,
                                               on_retry, b);
                if (r < 0)
                        goto fail;
                (void) sd_event_source_set_description(b->retry_timer, "bus-retry");
                return;
        }
        r = sd_event_source_set_time_relative(b->retry_timer, delay);
        if (r >= 0)
                r = sd_event_source_set_enabled(b->retry_timer, SD_EVENT_ONESHOT);
        if (r >= 0)
                return;
fail:
        log_warning_errno(r, "cannot arm the session bus retry timer (%m); running without D-Bus");
}

/* ---- life cycle ---------------------------------------------------------- */

static void bus_freep(struct bus **b) {
        bus_free(*b);
}

int bus_new(sd_event *e, struct daemon *d, struct bus **ret) {
        _cleanup_(bus_freep) struct bus *b = NULL;
        int r;

        b = calloc(1, sizeof(*b));
        if (!b)
                return log_oom();
        b->event = sd_event_ref(e);
        b->daemon = d;
        b->sink = (struct mail_sink) {
                .new_mail = sink_new_mail,
                .new_mail_done = sink_new_mail_done,
                .removed = sink_removed,
                .flags_changed = sink_flags_changed,
                .mailbox_changed = sink_mailbox_changed,
                .account_state = sink_account_state,
                .userdata = b,
        };
        b->state = strdup("ok");
        if (!b->state)
                return log_oom();
        b->paused = daemon_get_paused(d);

        /* before the bus's own sources: a method call or Get sees what the
         * last PropertiesChanged said */
        r = sd_event_add_defer(e, &b->sync_defer, on_sync_defer, b);
        if (r >= 0)
                r = sd_event_source_set_enabled(b->sync_defer, SD_EVENT_OFF);
        if (r >= 0)
                r = sd_event_source_set_priority(b->sync_defer, SD_EVENT_PRIORITY_IMPORTANT);
        if (r < 0)
                return log_error_errno(r, "cannot set up the D-Bus updates: %m");
        (void) sd_event_source_set_description(b->sync_defer, "bus-sync");

        r = bus_connect(b, true);
        if (r == -EEXIST)
                return log_error_errno(r, "another imapidled is running (%s is taken on the session bus)", BUS_NAME);
        if (r == -ENOMEM)
                return log_oom();
        if (r == -ENOMEDIUM)
                /* nothing will change that: no retries */
                log_warning("no session bus ($DBUS_SESSION_BUS_ADDRESS and $XDG_RUNTIME_DIR are not set); "
                            "running without D-Bus");
        else if (r < 0) {
                log_warning_errno(r, "cannot connect to the session bus (%m); running without D-Bus and trying "
                                  "again in the background");
                schedule_retry(b);
        } else
                log_debug("on the session bus as %s", BUS_NAME);
        /* last: a bus that is not returned must not stay in the daemon's list */
        r = daemon_add_sink(d, &b->sink);
        if (r < 0)
                return log_error_errno(r, "cannot add the D-Bus output: %m");
        *ret = TAKE_PTR(b);
        return 0;
}

struct bus *bus_free(struct bus *b) {
        if (!b)
                return NULL;
        sd_event_source_disable_unref(b->sync_defer);
        sd_event_source_disable_unref(b->retry_timer);
        if (b->bus && sd_bus_is_ready(b->bus) > 0)
                (void) sd_bus_flush(b->bus);
        bus_release(b->bus);
        for (size_t i = 0; i < b->n_accounts; i++)
                bus_account_free(b->accounts[i]);
        free(b->accounts);
        free(b->state);
        sd_event_unref(b->event);
        free(b);
        return NULL;
}
