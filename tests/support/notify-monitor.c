/* SPDX-License-Identifier: MIT */
/*
 * The notification bus monitor (see notify-monitor.h). The thread owns the
 * sd-bus connection; everything it learns goes into records under the lock,
 * and every change wakes the waiters through one condition variable.
 */

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-bus.h>
#include <time.h>
#include <unistd.h>

#include "macro.h"
#include "notify-monitor.h"
#include "test-timeout.h"

#define NOTIFY_INTERFACE "org.freedesktop.Notifications"
#define BECOME_MONITOR_TIMEOUT_USEC (5 * 1000000ULL)

/* What the monitor registers with the bus. Returns and errors cannot be
 * narrowed to the notification server's: the thread matches them to the
 * calls it saw by reply serial and destination. */
static const char *const match_rules[] = {
        "type='method_call',interface='" NOTIFY_INTERFACE "',member='Notify'",
        "type='method_call',interface='" NOTIFY_INTERFACE "',member='CloseNotification'",
        "type='method_call',interface='" NOTIFY_INTERFACE "',member='GetCapabilities'",
        "type='method_return'",
        "type='error'",
        "type='signal',interface='" NOTIFY_INTERFACE "',member='NotificationClosed'",
        "type='signal',interface='" NOTIFY_INTERFACE "',member='ActionInvoked'",
};

enum call_kind {
        CALL_NOTIFY,
        CALL_CAPABILITIES,
};

/* A call whose reply is still to come. */
struct pending {
        enum call_kind kind;
        char sender[64];
        uint64_t cookie;
        size_t index;                   /* CALL_NOTIFY: into calls */
};

struct close_call {
        char sender[64];
        uint32_t id;
};

struct closed_signal {
        uint32_t id, reason;
};

struct action_signal {
        uint32_t id;
        char *key;
};

/* A growable array of elements of any size. */
struct vec {
        void *items;
        size_t n, cap;
};

struct notify_monitor {
        sd_bus *bus;                    /* the thread's alone once it runs */
        pthread_t thread;
        bool thread_running;
        int stop_pipe[2];

        pthread_mutex_t lock;
        pthread_cond_t cond;
        bool gone;                      /* the thread has ended: no news will come */
        char error[256];
        struct notify_call **calls;     /* individually allocated, never moved */
        size_t n_calls, cap_calls;
        struct notify_call **copies;    /* handed out by _get and _find */
        size_t n_copies, cap_copies;
        struct vec pending;             /* struct pending */
        struct vec close_calls;         /* struct close_call */
        struct vec closed;              /* struct closed_signal */
        struct vec actions;             /* struct action_signal */
        size_t n_capability_calls, n_capability_replies;
        char **capabilities;            /* the last list answered */
};

static uint64_t now_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000ULL + (uint64_t) ts.tv_nsec / 1000ULL;
}

static void copy_string(char *dst, size_t size, const char *src) {
        snprintf(dst, size, "%s", src ? src : "");
}

static void strv_free(char **l) {
        if (!l)
                return;
        for (char **p = l; *p; p++)
                free(*p);
        free(l);
}

static bool strv_contains(char **l, const char *s) {
        for (char **p = l; p && *p; p++)
                if (strcmp(*p, s) == 0)
                        return true;
        return false;
}

/* Appends a zeroed element; returns it or NULL on OOM. */
static void *vec_push(struct vec *v, size_t size) {
        char *item;

        if (v->n == v->cap) {
                size_t cap = v->cap ? v->cap * 2 : 16;
                void *p = realloc(v->items, cap * size);

                if (!p)
                        return NULL;
                v->items = p;
                v->cap = cap;
        }
        item = (char *) v->items + v->n++ * size;
        memset(item, 0, size);
        return item;
}

static int ptr_push(struct notify_call ***array, size_t *n, size_t *cap, struct notify_call *c) {
        if (*n == *cap) {
                size_t new_cap = *cap ? *cap * 2 : 16;
                struct notify_call **p = realloc(*array, new_cap * sizeof(*p));

                if (!p)
                        return -ENOMEM;
                *array = p;
                *cap = new_cap;
        }
        (*array)[(*n)++] = c;
        return 0;
}

static void call_free(struct notify_call *c) {
        if (!c)
                return;
        free(c->summary);
        free(c->body);
        strv_free(c->actions);
        free(c);
}

/* Under the lock: the first trouble is kept. */
static void set_error(struct notify_monitor *m, const char *fmt, ...) _attribute_printf_(2, 3);
static void set_error(struct notify_monitor *m, const char *fmt, ...) {
        va_list ap;

        if (m->error[0])
                return;
        va_start(ap, fmt);
        vsnprintf(m->error, sizeof(m->error), fmt, ap);
        va_end(ap);
}

/* ---- the monitor thread: parsing --------------------------------------- */

/* Reads the a{sv} hints of a Notify call into c, skipping what it does not
 * record. */
static int read_hints(sd_bus_message *msg, struct notify_call *c) {
        int r;

        r = sd_bus_message_enter_container(msg, 'a', "{sv}");
        if (r < 0)
                return r;
        while ((r = sd_bus_message_enter_container(msg, 'e', "sv")) > 0) {
                const char *key, *contents;
                char type;

                r = sd_bus_message_read(msg, "s", &key);
                if (r < 0)
                        return r;
                r = sd_bus_message_peek_type(msg, &type, &contents);
                if (r < 0)
                        return r;
                if (strcmp(key, "category") == 0 && strcmp(contents, "s") == 0) {
                        const char *v;

                        r = sd_bus_message_read(msg, "v", "s", &v);
                        if (r >= 0)
                                copy_string(c->category, sizeof(c->category), v);
                } else if (strcmp(key, "desktop-entry") == 0 && strcmp(contents, "s") == 0) {
                        const char *v;

                        r = sd_bus_message_read(msg, "v", "s", &v);
                        if (r >= 0)
                                copy_string(c->desktop_entry, sizeof(c->desktop_entry), v);
                } else if (strcmp(key, "urgency") == 0 && strcmp(contents, "y") == 0) {
                        uint8_t v;

                        r = sd_bus_message_read(msg, "v", "y", &v);
                        if (r >= 0)
                                c->urgency = v;
                } else
                        r = sd_bus_message_skip(msg, "v");
                if (r < 0)
                        return r;
                r = sd_bus_message_exit_container(msg);
                if (r < 0)
                        return r;
        }
        if (r < 0)
                return r;
        return sd_bus_message_exit_container(msg);
}

/* Notify(susssasa{sv}i). Returns the new record, or NULL (errno set). */
static struct notify_call *parse_notify(sd_bus_message *msg) {
        const char *app, *icon, *summary, *body;
        struct notify_call *c;
        uint32_t replaces;
        int r;

        c = calloc(1, sizeof(*c));
        if (!c)
                return NULL;
        c->urgency = -1;
        c->seen_usec = now_usec();
        copy_string(c->sender, sizeof(c->sender), sd_bus_message_get_sender(msg));

        r = sd_bus_message_read(msg, "susss", &app, &replaces, &icon, &summary, &body);
        if (r < 0)
                goto fail;
        copy_string(c->app_name, sizeof(c->app_name), app);
        c->replaces_id = replaces;
        copy_string(c->icon, sizeof(c->icon), icon);
        c->summary = strdup(summary);
        c->body = strdup(body);
        if (!c->summary || !c->body) {
                r = -ENOMEM;
                goto fail;
        }
        r = sd_bus_message_read_strv(msg, &c->actions);
        if (r < 0)
                goto fail;
        if (!c->actions) {
                c->actions = calloc(1, sizeof(char *));
                if (!c->actions) {
                        r = -ENOMEM;
                        goto fail;
                }
        }
        r = read_hints(msg, c);
        if (r < 0)
                goto fail;
        r = sd_bus_message_read(msg, "i", &c->expire_timeout);
        if (r < 0)
                goto fail;
        return c;

fail:
        call_free(c);
        errno = -r;
        return NULL;
}

static int add_pending(struct notify_monitor *m, enum call_kind kind, sd_bus_message *msg, size_t index) {
        struct pending *p;
        uint64_t cookie;
        int r;

        r = sd_bus_message_get_cookie(msg, &cookie);
        if (r < 0)
                return r;
        p = vec_push(&m->pending, sizeof(*p));
        if (!p)
                return -ENOMEM;
        p->kind = kind;
        copy_string(p->sender, sizeof(p->sender), sd_bus_message_get_sender(msg));
        p->cookie = cookie;
        p->index = index;
        return 0;
}

/* Under the lock. */
static void on_method_call(struct notify_monitor *m, sd_bus_message *msg, const char *member) {
        int r;

        if (strcmp(member, "Notify") == 0) {
                struct notify_call *c = parse_notify(msg);

                if (!c) {
                        set_error(m, "cannot parse a Notify call from %s: %s", sd_bus_message_get_sender(msg),
                                  strerror(errno));
                        return;
                }
                r = ptr_push(&m->calls, &m->n_calls, &m->cap_calls, c);
                if (r < 0) {
                        call_free(c);
                        set_error(m, "out of memory");
                        return;
                }
                r = add_pending(m, CALL_NOTIFY, msg, m->n_calls - 1);
        } else if (strcmp(member, "CloseNotification") == 0) {
                struct close_call *cc;
                uint32_t id;

                r = sd_bus_message_read(msg, "u", &id);
                if (r < 0) {
                        set_error(m, "cannot parse a CloseNotification call: %s", strerror(-r));
                        return;
                }
                cc = vec_push(&m->close_calls, sizeof(*cc));
                if (!cc) {
                        set_error(m, "out of memory");
                        return;
                }
                copy_string(cc->sender, sizeof(cc->sender), sd_bus_message_get_sender(msg));
                cc->id = id;
                r = 0;
        } else if (strcmp(member, "GetCapabilities") == 0) {
                m->n_capability_calls++;
                r = add_pending(m, CALL_CAPABILITIES, msg, 0);
        } else
                r = 0;
        if (r < 0)
                set_error(m, "cannot record a %s call: %s", member, strerror(-r));
}

/* A method return or an error: is it the answer to a call we saw? Under the
 * lock. */
static void on_reply(struct notify_monitor *m, sd_bus_message *msg) {
        const char *dest = sd_bus_message_get_destination(msg);
        struct pending *pending = m->pending.items, found;
        uint64_t cookie;
        size_t i;
        int r;

        if (!dest || sd_bus_message_get_reply_cookie(msg, &cookie) < 0)
                return;
        for (i = 0; i < m->pending.n; i++)
                if (pending[i].cookie == cookie && strcmp(pending[i].sender, dest) == 0)
                        break;
        if (i == m->pending.n)
                return;
        found = pending[i];
        memmove(&pending[i], &pending[i + 1], (m->pending.n - i - 1) * sizeof(*pending));
        m->pending.n--;

        if (found.kind == CALL_NOTIFY) {
                struct notify_call *c = m->calls[found.index];

                c->reply_usec = now_usec();
                if (sd_bus_message_is_method_error(msg, NULL)) {
                        const sd_bus_error *e = sd_bus_message_get_error(msg);

                        c->id = UINT32_MAX;
                        copy_string(c->error, sizeof(c->error), e && e->name ? e->name : "(unnamed error)");
                        return;
                }
                r = sd_bus_message_read(msg, "u", &c->id);
                if (r < 0) {
                        c->id = UINT32_MAX;
                        const char *sig = sd_bus_message_get_signature(msg, true);

                        snprintf(c->error, sizeof(c->error), "(a reply with signature '%s')", sig ? sig : "");
                }
        } else if (found.kind == CALL_CAPABILITIES) {
                char **caps = NULL;

                if (sd_bus_message_is_method_error(msg, NULL))
                        return;
                r = sd_bus_message_read_strv(msg, &caps);
                if (r < 0) {
                        set_error(m, "cannot parse a GetCapabilities reply: %s", strerror(-r));
                        return;
                }
                strv_free(m->capabilities);
                m->capabilities = caps;
                m->n_capability_replies++;
        }
}

/* Under the lock. */
static void on_signal(struct notify_monitor *m, sd_bus_message *msg, const char *member) {
        int r;

        if (strcmp(member, "NotificationClosed") == 0) {
                struct closed_signal *s;
                uint32_t id, reason;

                r = sd_bus_message_read(msg, "uu", &id, &reason);
                if (r < 0) {
                        set_error(m, "cannot parse NotificationClosed: %s", strerror(-r));
                        return;
                }
                s = vec_push(&m->closed, sizeof(*s));
                if (!s) {
                        set_error(m, "out of memory");
                        return;
                }
                s->id = id;
                s->reason = reason;
        } else if (strcmp(member, "ActionInvoked") == 0) {
                struct action_signal *s;
                const char *key;
                char *copy;
                uint32_t id;

                r = sd_bus_message_read(msg, "us", &id, &key);
                if (r < 0) {
                        set_error(m, "cannot parse ActionInvoked: %s", strerror(-r));
                        return;
                }
                copy = strdup(key);
                s = copy ? vec_push(&m->actions, sizeof(*s)) : NULL;
                if (!s) {
                        free(copy);
                        set_error(m, "out of memory");
                        return;
                }
                s->id = id;
                s->key = copy;
        }
}

static void on_message(struct notify_monitor *m, sd_bus_message *msg) {
        const char *interface = sd_bus_message_get_interface(msg);
        const char *member = sd_bus_message_get_member(msg);
        uint8_t type;

        if (sd_bus_message_get_type(msg, &type) < 0)
                return;
        pthread_mutex_lock(&m->lock);
        switch (type) {
        case SD_BUS_MESSAGE_METHOD_CALL:
                if (interface && member && strcmp(interface, NOTIFY_INTERFACE) == 0)
                        on_method_call(m, msg, member);
                break;
        case SD_BUS_MESSAGE_METHOD_RETURN:
        case SD_BUS_MESSAGE_METHOD_ERROR:
                on_reply(m, msg);
                break;
        case SD_BUS_MESSAGE_SIGNAL:
                if (interface && member && strcmp(interface, NOTIFY_INTERFACE) == 0)
                        on_signal(m, msg, member);
                break;
        }
        pthread_cond_broadcast(&m->cond);
        pthread_mutex_unlock(&m->lock);
}

/* ---- the monitor thread: the loop --------------------------------------- */

static void *monitor_thread(void *userdata) {
        struct notify_monitor *m = userdata;
        int r;

        for (;;) {
                sd_bus_message *msg = NULL;
                struct pollfd p[2];
                uint64_t until;
                int events, timeout_ms = -1;

                r = sd_bus_process(m->bus, &msg);
                if (r < 0) {
                        pthread_mutex_lock(&m->lock);
                        set_error(m, "bus connection failed: %s", strerror(-r));
                        pthread_mutex_unlock(&m->lock);
                        break;
                }
                if (msg) {
                        bool disconnected = sd_bus_message_is_signal(msg, "org.freedesktop.DBus.Local",
                                                                     "Disconnected") > 0;

                        if (!disconnected)
                                on_message(m, msg);
                        sd_bus_message_unref(msg);
                        if (disconnected) {
                                pthread_mutex_lock(&m->lock);
                                set_error(m, "the bus went away");
                                pthread_mutex_unlock(&m->lock);
                                break;
                        }
                        continue;
                }
                if (r > 0)
                        continue;

                events = sd_bus_get_events(m->bus);
                if (events < 0) {
                        pthread_mutex_lock(&m->lock);
                        set_error(m, "bus connection failed: %s", strerror(-events));
                        pthread_mutex_unlock(&m->lock);
                        break;
                }
                if (sd_bus_get_timeout(m->bus, &until) >= 0 && until != UINT64_MAX) {
                        uint64_t now = now_usec();

                        timeout_ms = until <= now ? 0 : (int) ((until - now + 999) / 1000);
                }
                p[0] = (struct pollfd) { .fd = sd_bus_get_fd(m->bus), .events = (short) events };
                p[1] = (struct pollfd) { .fd = m->stop_pipe[0], .events = POLLIN };
                if (poll(p, 2, timeout_ms) < 0 && errno != EINTR) {
                        pthread_mutex_lock(&m->lock);
                        set_error(m, "poll: %s", strerror(errno));
                        pthread_mutex_unlock(&m->lock);
                        break;
                }
                if (p[1].revents)
                        break;
        }

        pthread_mutex_lock(&m->lock);
        m->gone = true;
        pthread_cond_broadcast(&m->cond);
        pthread_mutex_unlock(&m->lock);
        return NULL;
}

/* ---- setting up --------------------------------------------------------- */

static int become_monitor(sd_bus *bus) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        sd_bus_message *call = NULL;
        int r;

        r = sd_bus_message_new_method_call(bus, &call, "org.freedesktop.DBus", "/org/freedesktop/DBus",
                                           "org.freedesktop.DBus.Monitoring", "BecomeMonitor");
        if (r < 0)
                return r;
        r = sd_bus_message_open_container(call, 'a', "s");
        for (size_t i = 0; r >= 0 && i < ELEMENTSOF(match_rules); i++)
                r = sd_bus_message_append(call, "s", match_rules[i]);
        if (r >= 0)
                r = sd_bus_message_close_container(call);
        if (r >= 0)
                r = sd_bus_message_append(call, "u", UINT32_C(0));
        if (r >= 0)
                r = sd_bus_call(bus, call, BECOME_MONITOR_TIMEOUT_USEC, &error, NULL);
        if (r < 0 && sd_bus_error_is_set(&error))
                fprintf(stderr, "notify-monitor: BecomeMonitor: %s: %s\n", error.name,
                        error.message ? error.message : "");
        sd_bus_error_free(&error);
        sd_bus_message_unref(call);
        return r;
}

int notify_monitor_new(const char *bus_address, struct notify_monitor **ret) {
        struct notify_monitor *m;
        pthread_condattr_t attr;
        int r;

        if (!ret)
                return -EINVAL;
        if (!bus_address)
                bus_address = getenv("DBUS_SESSION_BUS_ADDRESS");
        if (!bus_address || !*bus_address)
                return -ENOENT;

        m = calloc(1, sizeof(*m));
        if (!m)
                return -ENOMEM;
        m->stop_pipe[0] = m->stop_pipe[1] = -1;
        pthread_mutex_init(&m->lock, NULL);
        pthread_condattr_init(&attr);
        pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
        pthread_cond_init(&m->cond, &attr);
        pthread_condattr_destroy(&attr);

        if (pipe2(m->stop_pipe, O_CLOEXEC) < 0) {
                r = -errno;
                goto fail;
        }
        r = sd_bus_new(&m->bus);
        if (r < 0)
                goto fail;
        r = sd_bus_set_address(m->bus, bus_address);
        if (r >= 0)
                r = sd_bus_set_monitor(m->bus, true);
        if (r >= 0)
                r = sd_bus_set_bus_client(m->bus, true);
        if (r >= 0)
                r = sd_bus_start(m->bus);
        if (r >= 0)
                r = become_monitor(m->bus);
        if (r < 0)
                goto fail;

        r = -pthread_create(&m->thread, NULL, monitor_thread, m);
        if (r < 0)
                goto fail;
        m->thread_running = true;
        *ret = m;
        return 0;

fail:
        notify_monitor_free(m);
        return r;
}

void notify_monitor_free(struct notify_monitor *m) {
        if (!m)
                return;
        if (m->thread_running) {
                char b = 'x';

                while (write(m->stop_pipe[1], &b, 1) < 0 && errno == EINTR)
                        ;
                pthread_join(m->thread, NULL);
        }
        sd_bus_flush_close_unref(m->bus);
        for (int i = 0; i < 2; i++)
                if (m->stop_pipe[i] >= 0)
                        close(m->stop_pipe[i]);

        for (size_t i = 0; i < m->n_calls; i++)
                call_free(m->calls[i]);
        free(m->calls);
        /* The copies share their strings with the records. */
        for (size_t i = 0; i < m->n_copies; i++)
                free(m->copies[i]);
        free(m->copies);
        free(m->pending.items);
        free(m->close_calls.items);
        free(m->closed.items);
        for (size_t i = 0; i < m->actions.n; i++)
                free(((struct action_signal *) m->actions.items)[i].key);
        free(m->actions.items);
        strv_free(m->capabilities);
        pthread_cond_destroy(&m->cond);
        pthread_mutex_destroy(&m->lock);
        free(m);
}

/* ---- the test's side ---------------------------------------------------- */

/* Waits under the lock until done(m, userdata) or timeout_ms (scaled by
 * IMAPIDLED_TEST_TIMEOUT_SCALE: the calls come from a daemon that may run
 * under valgrind); returns the last result of done. */
typedef bool (*wait_done_fn)(struct notify_monitor *m, void *userdata);

static bool wait_for(struct notify_monitor *m, unsigned timeout_ms, wait_done_fn done, void *userdata) {
        uint64_t deadline = now_usec() + (uint64_t) test_timeout_ms(timeout_ms) * 1000ULL;
        struct timespec ts = {
                .tv_sec = (time_t) (deadline / 1000000ULL),
                .tv_nsec = (long) (deadline % 1000000ULL) * 1000L,
        };
        bool ok;

        pthread_mutex_lock(&m->lock);
        while (!(ok = done(m, userdata)) && !m->gone)
                if (pthread_cond_timedwait(&m->cond, &m->lock, &ts) == ETIMEDOUT) {
                        ok = done(m, userdata);
                        break;
                }
        pthread_mutex_unlock(&m->lock);
        return ok;
}

size_t notify_monitor_n_notify(struct notify_monitor *m) {
        size_t n;

        pthread_mutex_lock(&m->lock);
        n = m->n_calls;
        pthread_mutex_unlock(&m->lock);
        return n;
}

static bool have_notify_replies(struct notify_monitor *m, void *userdata) {
        size_t n = *(size_t *) userdata;

        if (m->n_calls < n)
                return false;
        for (size_t i = 0; i < n; i++)
                if (m->calls[i]->reply_usec == 0)
                        return false;
        return true;
}

bool notify_monitor_wait_notify(struct notify_monitor *m, size_t n, unsigned timeout_ms) {
        return wait_for(m, timeout_ms, have_notify_replies, &n);
}

/* Under the lock: a copy of c kept until notify_monitor_free. */
static const struct notify_call *hand_out(struct notify_monitor *m, const struct notify_call *c) {
        struct notify_call *copy = malloc(sizeof(*copy));

        if (!copy)
                return NULL;
        *copy = *c;
        if (ptr_push(&m->copies, &m->n_copies, &m->cap_copies, copy) < 0) {
                free(copy);
                return NULL;
        }
        return copy;
}

const struct notify_call *notify_monitor_get(struct notify_monitor *m, size_t i) {
        const struct notify_call *c = NULL;

        pthread_mutex_lock(&m->lock);
        if (i < m->n_calls)
                c = hand_out(m, m->calls[i]);
        pthread_mutex_unlock(&m->lock);
        return c;
}

const struct notify_call *notify_monitor_find(struct notify_monitor *m, uint32_t id) {
        const struct notify_call *c = NULL;

        pthread_mutex_lock(&m->lock);
        for (size_t i = m->n_calls; i > 0; i--)
                if (m->calls[i - 1]->reply_usec != 0 && m->calls[i - 1]->id == id) {
                        c = hand_out(m, m->calls[i - 1]);
                        break;
                }
        pthread_mutex_unlock(&m->lock);
        return c;
}

size_t notify_monitor_n_close_calls(struct notify_monitor *m) {
        size_t n;

        pthread_mutex_lock(&m->lock);
        n = m->close_calls.n;
        pthread_mutex_unlock(&m->lock);
        return n;
}

static bool have_close_call(struct notify_monitor *m, void *userdata) {
        const struct close_call *cc = m->close_calls.items;
        uint32_t id = *(uint32_t *) userdata;

        for (size_t i = 0; i < m->close_calls.n; i++)
                if (cc[i].id == id)
                        return true;
        return false;
}

bool notify_monitor_wait_close_call(struct notify_monitor *m, uint32_t id, unsigned timeout_ms) {
        return wait_for(m, timeout_ms, have_close_call, &id);
}

struct closed_query {
        uint32_t id;
        uint32_t reason;
};

static bool have_closed_signal(struct notify_monitor *m, void *userdata) {
        struct closed_query *q = userdata;
        const struct closed_signal *s = m->closed.items;

        for (size_t i = 0; i < m->closed.n; i++)
                if (s[i].id == q->id) {
                        q->reason = s[i].reason;
                        return true;
                }
        return false;
}

bool notify_monitor_wait_closed_signal(struct notify_monitor *m, uint32_t id, unsigned timeout_ms,
                                       uint32_t *ret_reason) {
        struct closed_query q = { .id = id };

        if (!wait_for(m, timeout_ms, have_closed_signal, &q))
                return false;
        if (ret_reason)
                *ret_reason = q.reason;
        return true;
}

size_t notify_monitor_n_closed_signals(struct notify_monitor *m) {
        size_t n;

        pthread_mutex_lock(&m->lock);
        n = m->closed.n;
        pthread_mutex_unlock(&m->lock);
        return n;
}

struct action_query {
        uint32_t id;
        const char *key;
};

static bool have_action(struct notify_monitor *m, void *userdata) {
        const struct action_query *q = userdata;
        const struct action_signal *s = m->actions.items;

        for (size_t i = 0; i < m->actions.n; i++)
                if (s[i].id == q->id && strcmp(s[i].key, q->key) == 0)
                        return true;
        return false;
}

bool notify_monitor_wait_action(struct notify_monitor *m, uint32_t id, const char *key, unsigned timeout_ms) {
        struct action_query q = { .id = id, .key = key };

        if (!key)
                return false;
        return wait_for(m, timeout_ms, have_action, &q);
}

size_t notify_monitor_n_actions(struct notify_monitor *m) {
        size_t n;

        pthread_mutex_lock(&m->lock);
        n = m->actions.n;
        pthread_mutex_unlock(&m->lock);
        return n;
}

size_t notify_monitor_n_capability_calls(struct notify_monitor *m) {
        size_t n;

        pthread_mutex_lock(&m->lock);
        n = m->n_capability_calls;
        pthread_mutex_unlock(&m->lock);
        return n;
}

static bool have_capability_replies(struct notify_monitor *m, void *userdata) {
        return m->n_capability_replies >= *(size_t *) userdata;
}

bool notify_monitor_wait_capabilities(struct notify_monitor *m, size_t n, unsigned timeout_ms) {
        return wait_for(m, timeout_ms, have_capability_replies, &n);
}

bool notify_monitor_has_capability(struct notify_monitor *m, const char *cap) {
        bool has;

        if (!cap)
                return false;
        pthread_mutex_lock(&m->lock);
        has = strv_contains(m->capabilities, cap);
        pthread_mutex_unlock(&m->lock);
        return has;
}

const char *notify_monitor_error(struct notify_monitor *m, char *buf, size_t size) {
        if (!buf || size == 0)
                return buf;
        pthread_mutex_lock(&m->lock);
        copy_string(buf, size, m->error);
        pthread_mutex_unlock(&m->lock);
        return buf;
}
