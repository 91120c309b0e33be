/* SPDX-License-Identifier: MIT */
/*
 * libnotify in a thread of its own (see notify-worker.h).
 *
 * Shared between the loop and the worker, under one mutex: the list of
 * popups (struct entry) with what the loop wants for each (shown with this
 * content, or closed) and a dirty flag, and the queue of what comes back.
 * The loop only writes wishes and reads the queue; the worker alone frees
 * entries and owns the NotifyNotification objects. The worker is woken by
 * an idle source invoked on its GMainContext (at most one pending); the loop
 * by an eventfd.
 *
 * The shared part is reference-counted: when the worker is stuck in a call
 * to a frozen server at exit, notify_worker_free() lets it go, and whoever
 * is last frees the shared part.
 */

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <gio/gio.h>
#include <libnotify/notify.h>

#include "log.h"
#include "notify-text.h"
#include "notify-worker.h"

#define JOIN_TIMEOUT_MSEC 1000
#define SERVER_NAME "org.freedesktop.Notifications"
#define KEY_DATA "imapidled-key"

struct content {
        char *summary, *body, *icon, *category, *default_label, *mark_read_label;
        int32_t timeout_ms;
};

struct entry {
        struct entry *next;
        uint64_t key;
        bool want_shown;                /* else: closed */
        bool dirty;                     /* the worker has not acted on the latest wish */
        struct content content;
        NotifyNotification *n;          /* the worker's; NULL: not on screen */
};

enum back_kind {
        BACK_ACTION,
        BACK_CLOSED,
};

struct back {
        struct back *next;
        enum back_kind kind;
        uint64_t key;
        char action[16];
};

struct shared {
        pthread_mutex_t lock;
        unsigned n_refs;
        struct entry *entries;
        struct back *back, **back_tail;
        bool quit, wake_pending;
        int efd;                        /* worker -> loop */
        GMainContext *ctx;
        GMainLoop *loop;
        char *app_name;

        /* the worker's alone */
        bool caps_known, caps_markup, caps_actions;
        bool failing;
        guint watch_id;
};

struct notify_worker {
        struct shared *s;
        sd_event_source *io;
        pthread_t thread;
        notify_worker_action_fn on_action;
        notify_worker_closed_fn on_closed;
        void *userdata;
};

/* ---- the shared part ----------------------------------------------------- */

static void content_done(struct content *c) {
        free(c->summary);
        free(c->body);
        free(c->icon);
        free(c->category);
        free(c->default_label);
        free(c->mark_read_label);
        *c = (struct content) {};
}

static char *strdup_or_null(const char *s, bool *ok) {
        char *d;

        if (!s)
                return NULL;
        d = strdup(s);
        if (!d)
                *ok = false;
        return d;
}

static int content_set(struct content *c, const char *summary, const char *body, const char *icon,
                       const char *category, const char *default_label, const char *mark_read_label,
                       int32_t timeout_ms) {
        struct content n = { .timeout_ms = timeout_ms };
        bool ok = true;

        n.summary = strdup_or_null(summary ? summary : "", &ok);
        n.body = strdup_or_null(body ? body : "", &ok);
        n.icon = strdup_or_null(icon ? icon : "", &ok);
        n.category = strdup_or_null(category, &ok);
        n.default_label = strdup_or_null(default_label, &ok);
        n.mark_read_label = strdup_or_null(mark_read_label, &ok);
        if (!ok) {
                content_done(&n);
                return -ENOMEM;
        }
        content_done(c);
        *c = n;
        return 0;
}

static struct entry *find_entry(struct shared *s, uint64_t key) {
        for (struct entry *e = s->entries; e; e = e->next)
                if (e->key == key)
                        return e;
        return NULL;
}

/* under the lock; the worker's job (it owns e->n) */
static void remove_entry(struct shared *s, struct entry *e) {
        for (struct entry **p = &s->entries; *p; p = &(*p)->next)
                if (*p == e) {
                        *p = e->next;
                        break;
                }
        if (e->n)
                g_object_unref(e->n);
        content_done(&e->content);
        free(e);
}

static struct shared *shared_unref(struct shared *s) {
        bool last;

        if (!s)
                return NULL;
        pthread_mutex_lock(&s->lock);
        last = --s->n_refs == 0;
        pthread_mutex_unlock(&s->lock);
        if (!last)
                return NULL;
        while (s->entries)
                remove_entry(s, s->entries);
        while (s->back) {
                struct back *b = s->back;

                s->back = b->next;
                free(b);
        }
        if (s->loop)
                g_main_loop_unref(s->loop);
        if (s->ctx)
                g_main_context_unref(s->ctx);
        if (s->efd >= 0)
                close(s->efd);
        free(s->app_name);
        pthread_mutex_destroy(&s->lock);
        free(s);
        return NULL;
}

/* worker: queue something for the loop */
static void post_back(struct shared *s, enum back_kind kind, uint64_t key, const char *action) {
        struct back *b = calloc(1, sizeof(*b));
        uint64_t one = 1;

        if (!b)
                return;         /* an action lost to OOM is a click lost, nothing worse */
        b->kind = kind;
        b->key = key;
        if (action)
                snprintf(b->action, sizeof(b->action), "%s", action);
        pthread_mutex_lock(&s->lock);
        *s->back_tail = b;
        s->back_tail = &b->next;
        pthread_mutex_unlock(&s->lock);
        if (write(s->efd, &one, sizeof(one)) < 0 && errno != EAGAIN)
                log_debug("notifications: cannot wake the loop: %m");
}

/* ---- the worker thread --------------------------------------------------- */

static bool session_bus_known(void) {
        const char *rt = getenv("XDG_RUNTIME_DIR");
        char path[4096];
        struct stat st;

        /* GLib would try to autolaunch a bus of its own when there is none */
        if (getenv("DBUS_SESSION_BUS_ADDRESS"))
                return true;
        if (!rt || snprintf(path, sizeof(path), "%s/bus", rt) >= (int) sizeof(path))
                return false;
        return stat(path, &st) == 0 && S_ISSOCK(st.st_mode);
}

static void server_failed(struct shared *s, const char *why) {
        s->caps_known = false;
        if (s->failing)
                return;
        s->failing = true;
        log_warning("cannot show desktop notifications (%s); popups stay off until a notification server "
                    "answers on the session bus, D-Bus signals and hooks go on", why);
}

static void server_works(struct shared *s) {
        if (!s->failing)
                return;
        s->failing = false;
        log_info("desktop notifications work again");
}

static void on_name_changed(GDBusConnection *c, const char *name, const char *owner, gpointer userdata) {
        struct shared *s = userdata;

        (void) c, (void) name, (void) owner;
        /* another server may render differently */
        s->caps_known = false;
}

static void on_name_vanished(GDBusConnection *c, const char *name, gpointer userdata) {
        on_name_changed(c, name, NULL, userdata);
}

static bool query_caps(struct shared *s) {
        GList *caps;

        if (s->caps_known)
                return true;
        if (s->watch_id == 0)
                s->watch_id = g_bus_watch_name(G_BUS_TYPE_SESSION, SERVER_NAME, G_BUS_NAME_WATCHER_FLAGS_NONE,
                                               on_name_changed, on_name_vanished, s, NULL);
        caps = notify_get_server_caps();
        if (!caps)
                return false;
        s->caps_markup = s->caps_actions = false;
        for (GList *l = caps; l; l = l->next) {
                if (strcmp(l->data, "body-markup") == 0)
                        s->caps_markup = true;
                else if (strcmp(l->data, "actions") == 0)
                        s->caps_actions = true;
        }
        g_list_free_full(caps, g_free);
        s->caps_known = true;
        log_debug("notification server: body-markup %s, actions %s", s->caps_markup ? "yes" : "no",
                  s->caps_actions ? "yes" : "no");
        return true;
}

static void on_popup_action(NotifyNotification *n, char *action, gpointer userdata) {
        struct shared *s = userdata;
        const uint64_t *key = g_object_get_data(G_OBJECT(n), KEY_DATA);

        if (key)
                post_back(s, BACK_ACTION, *key, action);
}

static void on_server_closed(NotifyNotification *n, gpointer userdata) {
        struct shared *s = userdata;
        const uint64_t *key = g_object_get_data(G_OBJECT(n), KEY_DATA);
        struct entry *e;
        bool report = false;

        if (!key)
                return;
        pthread_mutex_lock(&s->lock);
        e = find_entry(s, *key);
        if (e && e->n == n) {
                if (e->dirty && e->want_shown) {
                        /* an update is on its way: it opens a new popup */
                        g_object_unref(e->n);
                        e->n = NULL;
                } else {
                        report = e->want_shown;
                        remove_entry(s, e);
                }
        }
        pthread_mutex_unlock(&s->lock);
        if (report)
                post_back(s, BACK_CLOSED, *key, NULL);
}

/* Blocks for as long as the server takes. *n is the popup's object (NULL:
 * a new one) and is NULL afterwards if it is not on screen. */
static bool show(struct shared *s, uint64_t key, const struct content *c, NotifyNotification **n) {
        g_autoptr(GError) error = NULL;
        g_autofree char *escaped = NULL;
        const char *body = c->body;

        if (!session_bus_known()) {
                server_failed(s, "no session bus: neither $DBUS_SESSION_BUS_ADDRESS nor $XDG_RUNTIME_DIR/bus");
                goto fail;
        }
        if (!query_caps(s)) {
                server_failed(s, "no answer to GetCapabilities");
                goto fail;
        }
        if (s->caps_markup) {
                escaped = notify_text_escape_markup(c->body);
                if (!escaped)
                        goto fail;
                body = escaped;
        }
        if (!*n) {
                uint64_t *k = malloc(sizeof(*k));

                if (!k)
                        goto fail;
                *k = key;
                *n = notify_notification_new(c->summary, body, c->icon);
                g_object_set_data_full(G_OBJECT(*n), KEY_DATA, k, free);
                g_signal_connect(*n, "closed", G_CALLBACK(on_server_closed), s);
        } else
                notify_notification_update(*n, c->summary, body, c->icon);
        notify_notification_set_timeout(*n, c->timeout_ms);
        notify_notification_set_urgency(*n, NOTIFY_URGENCY_NORMAL);
        if (c->category)
                notify_notification_set_category(*n, c->category);
        notify_notification_clear_actions(*n);
        if (s->caps_actions) {
                if (c->default_label)
                        notify_notification_add_action(*n, "default", c->default_label, on_popup_action, s, NULL);
                if (c->mark_read_label)
                        notify_notification_add_action(*n, "mark-read", c->mark_read_label, on_popup_action, s, NULL);
        }
        if (!notify_notification_show(*n, &error)) {
                server_failed(s, error ? error->message : "unknown error");
                goto fail;
        }
        server_works(s);
        return true;

fail:
        if (*n) {
                g_object_unref(*n);
                *n = NULL;
        }
        return false;
}

static void close_popup(struct shared *s, NotifyNotification *n) {
        g_autoptr(GError) error = NULL;

        if (!notify_notification_close(n, &error))
                log_debug("notifications: cannot close a popup: %s", error ? error->message : "unknown error");
        (void) s;
}

static gboolean process(gpointer userdata) {
        struct shared *s = userdata;

        pthread_mutex_lock(&s->lock);
        s->wake_pending = false;
        for (;;) {
                struct content c = {};
                NotifyNotification *n;
                struct entry *e;
                uint64_t key;
                bool want, ok, copied;

                if (s->quit) {
                        g_main_loop_quit(s->loop);
                        break;
                }
                for (e = s->entries; e && !e->dirty; e = e->next)
                        ;
                if (!e)
                        break;
                e->dirty = false;
                want = e->want_shown;
                key = e->key;
                n = e->n;
                e->n = NULL;
                copied = !want || content_set(&c, e->content.summary, e->content.body, e->content.icon,
                                              e->content.category, e->content.default_label,
                                              e->content.mark_read_label, e->content.timeout_ms) >= 0;
                pthread_mutex_unlock(&s->lock);

                if (want) {
                        ok = copied && show(s, key, &c, &n);
                } else {
                        if (n) {
                                close_popup(s, n);
                                g_object_unref(n);
                                n = NULL;
                        }
                        ok = true;
                }
                content_done(&c);

                pthread_mutex_lock(&s->lock);
                /* only the worker removes entries: e is still there */
                e->n = n;
                if (!e->dirty && (!want || !ok)) {
                        remove_entry(s, e);
                        if (want) {
                                pthread_mutex_unlock(&s->lock);
                                post_back(s, BACK_CLOSED, key, NULL);
                                pthread_mutex_lock(&s->lock);
                        }
                }
        }
        pthread_mutex_unlock(&s->lock);
        return G_SOURCE_REMOVE;
}

static void *worker_main(void *userdata) {
        struct shared *s = userdata;

        g_main_context_push_thread_default(s->ctx);
        notify_init(s->app_name);
        g_main_loop_run(s->loop);
        if (s->watch_id)
                g_bus_unwatch_name(s->watch_id);
        /* the popups stay on screen; only our objects go */
        pthread_mutex_lock(&s->lock);
        for (struct entry *e = s->entries; e; e = e->next)
                if (e->n) {
                        g_object_unref(e->n);
                        e->n = NULL;
                }
        pthread_mutex_unlock(&s->lock);
        notify_uninit();
        /* run what the unwatch and unrefs left behind */
        while (g_main_context_iteration(s->ctx, false))
                ;
        g_main_context_pop_thread_default(s->ctx);
        shared_unref(s);
        return NULL;
}

/* loop: make sure the worker looks at the entries */
static void wake(struct shared *s) {
        bool invoke;

        pthread_mutex_lock(&s->lock);
        invoke = !s->wake_pending;
        s->wake_pending = true;
        pthread_mutex_unlock(&s->lock);
        if (invoke)
                g_main_context_invoke(s->ctx, process, s);
}

/* ---- the loop's side ----------------------------------------------------- */

static int on_back(sd_event_source *source, int fd, uint32_t revents, void *userdata) {
        struct notify_worker *w = userdata;
        struct back *list;
        uint64_t v;

        (void) source, (void) revents;
        if (read(fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
                log_debug("notifications: eventfd read: %m");
        pthread_mutex_lock(&w->s->lock);
        list = w->s->back;
        w->s->back = NULL;
        w->s->back_tail = &w->s->back;
        pthread_mutex_unlock(&w->s->lock);
        while (list) {
                struct back *b = list;

                list = b->next;
                if (b->kind == BACK_ACTION && w->on_action)
                        w->on_action(b->key, b->action, w->userdata);
                else if (b->kind == BACK_CLOSED && w->on_closed)
                        w->on_closed(b->key, w->userdata);
                free(b);
        }
        return 0;
}

int notify_worker_new(sd_event *e, const char *app_name, notify_worker_action_fn on_action,
                      notify_worker_closed_fn on_closed, void *userdata, struct notify_worker **ret) {
        struct notify_worker *w;
        struct shared *s;
        int r;

        w = calloc(1, sizeof(*w));
        s = calloc(1, sizeof(*s));
        if (!w || !s) {
                free(w);
                free(s);
                return -ENOMEM;
        }
        pthread_mutex_init(&s->lock, NULL);
        s->n_refs = 1;
        s->back_tail = &s->back;
        s->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        s->app_name = strdup(app_name);
        s->ctx = g_main_context_new();
        s->loop = g_main_loop_new(s->ctx, false);
        w->s = s;
        w->on_action = on_action;
        w->on_closed = on_closed;
        w->userdata = userdata;
        if (s->efd < 0) {
                r = -errno;
                goto fail;
        }
        if (!s->app_name) {
                r = -ENOMEM;
                goto fail;
        }
        r = sd_event_add_io(e, &w->io, s->efd, EPOLLIN, on_back, w);
        if (r < 0)
                goto fail;
        (void) sd_event_source_set_description(w->io, "notify-worker");

        s->n_refs++;            /* the thread's */
        r = -pthread_create(&w->thread, NULL, worker_main, s);
        if (r < 0) {
                s->n_refs--;
                goto fail;
        }
        *ret = w;
        return 0;

fail:
        w->io = sd_event_source_disable_unref(w->io);
        shared_unref(s);
        free(w);
        return r;
}

int notify_worker_show(struct notify_worker *w, uint64_t key, const struct notify_popup *p) {
        struct entry *e;
        bool fresh = false;
        int r;

        pthread_mutex_lock(&w->s->lock);
        e = find_entry(w->s, key);
        if (!e) {
                e = calloc(1, sizeof(*e));
                if (!e) {
                        pthread_mutex_unlock(&w->s->lock);
                        return -ENOMEM;
                }
                e->key = key;
                fresh = true;
        }
        r = content_set(&e->content, p->summary, p->body, p->icon, p->category, p->default_label,
                        p->mark_read_label, p->timeout_ms);
        if (r < 0) {
                if (fresh)
                        free(e);
                pthread_mutex_unlock(&w->s->lock);
                return r;
        }
        if (fresh) {
                /* in order: the worker shows the oldest wish first */
                struct entry **tail = &w->s->entries;

                while (*tail)
                        tail = &(*tail)->next;
                *tail = e;
        }
        e->want_shown = true;
        e->dirty = true;
        pthread_mutex_unlock(&w->s->lock);
        wake(w->s);
        return 0;
}

void notify_worker_close(struct notify_worker *w, uint64_t key) {
        struct entry *e;

        pthread_mutex_lock(&w->s->lock);
        e = find_entry(w->s, key);
        if (e && e->want_shown) {
                e->want_shown = false;
                e->dirty = true;
        }
        pthread_mutex_unlock(&w->s->lock);
        if (e)
                wake(w->s);
}

struct notify_worker *notify_worker_free(struct notify_worker *w) {
        struct timespec deadline;

        if (!w)
                return NULL;
        w->io = sd_event_source_disable_unref(w->io);
        pthread_mutex_lock(&w->s->lock);
        w->s->quit = true;
        pthread_mutex_unlock(&w->s->lock);
        g_main_context_invoke(w->s->ctx, process, w->s);

        clock_gettime(CLOCK_REALTIME, &deadline);
        deadline.tv_sec += JOIN_TIMEOUT_MSEC / 1000;
        if (pthread_timedjoin_np(w->thread, NULL, &deadline) != 0) {
                log_info("notifications: the notification server is not answering; not waiting for it");
                pthread_detach(w->thread);
        }
        shared_unref(w->s);
        free(w);
        return NULL;
}
