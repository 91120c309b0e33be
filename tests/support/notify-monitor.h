/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Watches what is said to and by the notification server on a bus, the way
 * `busctl monitor` does: an sd-bus connection that became a monitor
 * (org.freedesktop.DBus.Monitoring.BecomeMonitor), read by a thread of its
 * own. It records, in arrival order:
 *   - Notify calls with their replies (the id, or an error), matched by the
 *     reply serial and the caller's unique name
 *   - CloseNotification calls
 *   - GetCapabilities calls and the capabilities they were answered with
 *   - NotificationClosed and ActionInvoked signals (dunst sends them to the
 *     notification's sender only; a monitor sees them all the same)
 * from any connection on the bus, so it observes a daemon under test without
 * touching it. Typically on the private bus of a harness started with
 * HARNESS_NOTIFY (real dunst): harness.dbus_address.
 *
 *     struct notify_monitor *m;
 *     ck_assert_int_eq(notify_monitor_new(h.dbus_address, &m), 0);
 *     ... make the daemon notify ...
 *     ck_assert(notify_monitor_wait_notify(m, 1, 5000));
 *     const struct notify_call *c = notify_monitor_get(m, 0);
 *     ck_assert_str_eq(c->summary, "...");
 *     ck_assert(harness_notify_action(&h, "default") == 0);
 *     ck_assert(notify_monitor_wait_action(m, c->id, "default", 5000));
 *     notify_monitor_free(m);
 *
 * Every wait returns true as soon as the condition holds (also when it held
 * before the call), false after timeout_ms (times IMAPIDLED_TEST_TIMEOUT_SCALE,
 * see test-timeout.h) or once the bus connection is gone. All functions are thread-safe. Under Check's fork mode create the
 * monitor inside the test (or a checked fixture), so that its thread lives
 * in the process that runs the test. Free of Check.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct notify_call {                    /* one Notify method call */
        char sender[64];                /* unique name of the caller */
        char app_name[64];              /* (these fixed-size strings are truncated to fit) */
        uint32_t replaces_id;
        char icon[128];
        char *summary, *body;           /* exact strings as on the wire, owned by the monitor */
        char **actions;                 /* NULL-terminated key,label,key,label... (owned by the monitor) */
        char category[64];              /* hint "category", "" if none */
        int urgency;                    /* hint "urgency" (byte), -1 if none */
        char desktop_entry[128];        /* hint "desktop-entry", "" if none */
        int32_t expire_timeout;
        uint32_t id;                    /* from the method return; 0 while none; UINT32_MAX if an error came back */
        char error[128];                /* the error's name when one came back, else "" */
        uint64_t seen_usec;             /* CLOCK_MONOTONIC when the call was seen */
        uint64_t reply_usec;            /* CLOCK_MONOTONIC when its reply was seen, 0 while none */
};

struct notify_monitor;

/* Connects to bus_address (a D-Bus address such as "unix:path=/x/bus"; NULL:
 * $DBUS_SESSION_BUS_ADDRESS), becomes a monitor and starts the thread. The
 * monitor is in place on return: nothing said afterwards is missed. Returns 0
 * with *ret set (owned by the caller: notify_monitor_free) or -errno (the
 * bus's error, e.g. -EACCES when the bus does not allow monitoring). */
int notify_monitor_new(const char *bus_address, struct notify_monitor **ret);

/* Stops and joins the thread, closes the connection, frees every record and
 * every pointer handed out. Accepts NULL. */
void notify_monitor_free(struct notify_monitor *m);

/* Notify calls seen so far. */
size_t notify_monitor_n_notify(struct notify_monitor *m);

/* true once >= n Notify calls have been seen AND each of the first n has its
 * reply (id != 0: a return or an error). */
bool notify_monitor_wait_notify(struct notify_monitor *m, size_t n, unsigned timeout_ms);

/* A copy of call i (0-based) as it is now, valid until notify_monitor_free
 * (a reply that comes later shows in a later copy); NULL if i is out of
 * range. The strings and actions are shared with the monitor's record. */
const struct notify_call *notify_monitor_get(struct notify_monitor *m, size_t i);

/* The copy of the newest Notify call whose reply carried id (the calls of a
 * notification that was replaced share it); NULL if none. */
const struct notify_call *notify_monitor_find(struct notify_monitor *m, uint32_t id);

/* CloseNotification(id) method calls seen so far / wait for one with this id. */
size_t notify_monitor_n_close_calls(struct notify_monitor *m);
bool notify_monitor_wait_close_call(struct notify_monitor *m, uint32_t id, unsigned timeout_ms);

/* NotificationClosed(id, reason) signals: wait for one, returns reason via
 * *ret_reason (may be NULL): 1 expired, 2 dismissed by the user, 3 closed by
 * CloseNotification, 4 undefined. */
bool notify_monitor_wait_closed_signal(struct notify_monitor *m, uint32_t id, unsigned timeout_ms,
                                       uint32_t *ret_reason);
size_t notify_monitor_n_closed_signals(struct notify_monitor *m);

/* ActionInvoked(id, key) signals seen */
bool notify_monitor_wait_action(struct notify_monitor *m, uint32_t id, const char *key, unsigned timeout_ms);
size_t notify_monitor_n_actions(struct notify_monitor *m);

/* GetCapabilities calls seen so far, and a wait until >= n of them have been
 * answered with a capability list. */
size_t notify_monitor_n_capability_calls(struct notify_monitor *m);
bool notify_monitor_wait_capabilities(struct notify_monitor *m, size_t n, unsigned timeout_ms);

/* Whether the last capability list a server answered with contains cap
 * (false while none has been seen). */
bool notify_monitor_has_capability(struct notify_monitor *m, const char *cap);

/* The monitor's own trouble (the bus went away, a message it could not
 * parse), "" if none. A copy into buf, which is returned. */
const char *notify_monitor_error(struct notify_monitor *m, char *buf, size_t size);
