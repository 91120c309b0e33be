/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The one place that talks to the desktop notification server: libnotify
 * in a thread of its own, with its own GMainContext.
 *
 * notify_notification_show() and _close() are synchronous D-Bus calls that
 * wait as long as the server takes: 25 s (GDBus's default timeout, which
 * libnotify gives no way to change) for a SIGSTOPped server. So the event
 * loop never calls libnotify. It states what it wants per popup (show this
 * content under this key; close that key), and the worker thread carries it
 * out when it can. Wishes are coalesced per key: while the worker waits on a
 * frozen server, a popup updated ten times is sent once, with its latest
 * content, and a popup shown and closed meanwhile is never sent at all. So
 * the memory held is bounded by the number of live popups, not by how long
 * the server stalls, and nothing is resent blindly (a server that was only
 * slow still shows what it got).
 *
 * The worker learns the server's capabilities (GetCapabilities) before the
 * first popup and again after a failure or a change of the server's bus
 * name owner: the body is sent escaped when the server renders
 * "body-markup", and actions only when it lists "actions". An absent server
 * (no bus, no name, an error) costs one log line when popups stop working
 * and one when they work again, never one per message.
 *
 * What comes back (an action invoked, a popup closed by the user, the
 * server or a failure) is queued for the event loop and reported there
 * through the callbacks, on the loop's thread.
 *
 * GLib and libnotify stay inside notify-worker.c.
 */

#include <stdbool.h>
#include <stdint.h>

#include <systemd/sd-event.h>

struct notify_worker;

struct notify_popup {
        const char *summary;            /* plain text, cleaned (notify-text.h) */
        const char *body;               /* plain text, cleaned; escaped by the worker when needed */
        const char *icon;               /* icon name, e.g. "mail-unread" */
        const char *category;           /* hint "category", e.g. "email.arrived"; NULL: none */
        int32_t timeout_ms;             /* -1: the server's default, 0: never expires */
        const char *default_label;      /* NULL: no default action (click) */
        const char *mark_read_label;    /* NULL: no "mark-read" action */
};

/* An action chosen on popup key: "default" or "mark-read". */
typedef void (*notify_worker_action_fn)(uint64_t key, const char *action, void *userdata);
/* Popup key is gone for good: closed by the user, expired, replaced by the
 * server, or it could not be shown. Not called for notify_worker_close(). */
typedef void (*notify_worker_closed_fn)(uint64_t key, void *userdata);

/* Starts the thread (libnotify app name app_name) and an io source on e
 * (borrowed; must outlive the worker) for what comes back. The callbacks
 * may be NULL. *ret is owned by the caller. Returns 0 or -errno. */
int notify_worker_new(sd_event *e, const char *app_name, notify_worker_action_fn on_action,
                      notify_worker_closed_fn on_closed, void *userdata, struct notify_worker **ret);

/* Show p as popup key (a number > 0 the caller picks and does not reuse),
 * or, if key is already showing, replace its content in place (same
 * notification id). The strings are copied. Returns 0 or -ENOMEM. */
int notify_worker_show(struct notify_worker *w, uint64_t key, const struct notify_popup *p);

/* Close popup key (a no-op if it is unknown or already gone). */
void notify_worker_close(struct notify_worker *w, uint64_t key);

/* Stops the thread: waits for it up to about a second, then leaves it to
 * finish its current call on its own (it touches nothing of the caller's
 * after that). Popups on screen stay. Accepts NULL; returns NULL. */
struct notify_worker *notify_worker_free(struct notify_worker *w);
