/* SPDX-License-Identifier: MIT */
/*
 * The notification test infrastructure, checked against a real notification
 * server: harness_start(HARNESS_NOTIFY) brings up Xvfb and dunst on the
 * private bus; the bus monitor (tests/support/notify-monitor.h) sees the
 * Notify calls this test makes with their exact strings and the ids dunst
 * returns, GetCapabilities and its answer, CloseNotification and
 * NotificationClosed, and the ActionInvoked signals dunst emits when the
 * harness acts as the user (a click, the context menu); a stopped dunst
 * answers nothing until it is continued; screenshots show the popups; stop
 * and the guard leave no X server, dunst, socket or lock file behind.
 *
 * The test talks to dunst with its own sd-bus connection, independent of the
 * daemon's notifier.
 */

#include <check.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <systemd/sd-bus.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "notify-monitor.h"

#define WAIT_MS 5000

static const char *const test_actions[] = { "default", "Open", "mark-read", "Mark as read", NULL };

static struct harness h;

static void setup(void) {
        ck_assert_msg(harness_start(&h, HARNESS_NOTIFY) >= 0, "harness failed to start");
}

static void teardown(void) {
        harness_stop(&h);
}

static long now_ms(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

/* ---- talking to the notification server --------------------------------- */

static sd_bus *bus_open(void) {
        sd_bus *bus = NULL;
        int r;

        r = sd_bus_new(&bus);
        ck_assert_int_ge(r, 0);
        ck_assert_int_ge(sd_bus_set_address(bus, h.dbus_address), 0);
        ck_assert_int_ge(sd_bus_set_bus_client(bus, true), 0);
        r = sd_bus_start(bus);
        ck_assert_msg(r >= 0, "connecting to %s: %s", h.dbus_address, strerror(-r));
        return bus;
}

struct notify_args {
        const char *app_name;
        uint32_t replaces_id;
        const char *icon;
        const char *summary, *body;
        const char *const *actions;
        const char *category;           /* NULL: no hint */
        int urgency;                    /* < 0: no hint */
        int32_t expire_timeout;
};

/* Notify(...) on bus; returns 0 with the id (and the call's serial, if
 * ret_cookie), or -errno. */
static int notify(sd_bus *bus, const struct notify_args *a, uint32_t *ret_id, uint64_t *ret_cookie) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        sd_bus_message *call = NULL, *reply = NULL;
        int r;

        r = sd_bus_message_new_method_call(bus, &call, "org.freedesktop.Notifications",
                                           "/org/freedesktop/Notifications", "org.freedesktop.Notifications",
                                           "Notify");
        if (r >= 0)
                r = sd_bus_message_append(call, "susss", a->app_name, a->replaces_id, a->icon ? a->icon : "",
                                          a->summary, a->body);
        if (r >= 0)
                r = sd_bus_message_append_strv(call, (char **) a->actions);
        if (r >= 0)
                r = sd_bus_message_open_container(call, 'a', "{sv}");
        if (r >= 0 && a->category)
                r = sd_bus_message_append(call, "{sv}", "category", "s", a->category);
        if (r >= 0 && a->urgency >= 0)
                r = sd_bus_message_append(call, "{sv}", "urgency", "y", (uint8_t) a->urgency);
        if (r >= 0)
                r = sd_bus_message_close_container(call);
        if (r >= 0)
                r = sd_bus_message_append(call, "i", a->expire_timeout);
        if (r >= 0)
                r = sd_bus_call(bus, call, 20 * 1000000ULL, &error, &reply);
        if (r >= 0)
                r = sd_bus_message_read(reply, "u", ret_id);
        if (r >= 0 && ret_cookie)
                r = sd_bus_message_get_cookie(call, ret_cookie);
        if (r < 0 && sd_bus_error_is_set(&error))
                fprintf(stderr, "Notify: %s: %s\n", error.name, error.message ? error.message : "");
        sd_bus_error_free(&error);
        sd_bus_message_unref(reply);
        sd_bus_message_unref(call);
        return r < 0 ? r : 0;
}

/* A notification with the test's actions; returns its id. */
static uint32_t notify_simple(sd_bus *bus, const char *summary, const char *body) {
        const struct notify_args a = {
                .app_name = "notify-harness-test",
                .summary = summary,
                .body = body,
                .actions = test_actions,
                .urgency = -1,
                .expire_timeout = -1,
        };
        uint32_t id = 0;
        int r;

        r = notify(bus, &a, &id, NULL);
        ck_assert_msg(r >= 0, "Notify %s: %s", summary, strerror(-r));
        ck_assert_uint_ne(id, 0);
        return id;
}

static void close_notification(sd_bus *bus, uint32_t id) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        int r;

        r = sd_bus_call_method(bus, "org.freedesktop.Notifications", "/org/freedesktop/Notifications",
                               "org.freedesktop.Notifications", "CloseNotification", &error, NULL, "u", id);
        ck_assert_msg(r >= 0, "CloseNotification %u: %s", id, error.message ? error.message : strerror(-r));
        sd_bus_error_free(&error);
}

static bool strv_has(char **l, const char *s) {
        for (; l && *l; l++)
                if (strcmp(*l, s) == 0)
                        return true;
        return false;
}

static void strv_free(char **l) {
        for (char **p = l; p && *p; p++)
                free(*p);
        free(l);
}

static const char *monitor_error(struct notify_monitor *m) {
        static char buf[256];

        return notify_monitor_error(m, buf, sizeof(buf));
}

/* ---- processes and files ------------------------------------------------ */

/* Live processes (other than us) whose command line mentions dir. */
static int procs_mentioning(const char *dir, char *desc, size_t desc_size) {
        struct dirent *e;
        size_t used = 0;
        DIR *d;
        int n = 0;

        if (desc_size)
                desc[0] = '\0';
        d = opendir("/proc");
        ck_assert_ptr_nonnull(d);
        while ((e = readdir(d))) {
                char path[300], buf[4096];
                ssize_t len;
                int fd;

                if (!isdigit((unsigned char) e->d_name[0]) || atoi(e->d_name) == getpid())
                        continue;
                snprintf(path, sizeof(path), "/proc/%s/cmdline", e->d_name);
                fd = open(path, O_RDONLY | O_CLOEXEC);
                if (fd < 0)
                        continue;
                len = read(fd, buf, sizeof(buf) - 1);
                close(fd);
                if (len <= 0)
                        continue; /* kernel threads, zombies */
                for (ssize_t i = 0; i < len; i++)
                        if (buf[i] == '\0')
                                buf[i] = ' ';
                buf[len] = '\0';
                if (!strstr(buf, dir))
                        continue;
                n++;
                if (used + 1 < desc_size) {
                        int w = snprintf(desc + used, desc_size - used, "[%s] %.120s; ", e->d_name, buf);

                        if (w > 0)
                                used += (size_t) w < desc_size - used ? (size_t) w : desc_size - used - 1;
                }
        }
        closedir(d);
        return n;
}

static bool wait_procs_gone(const char *dir, int timeout_ms, char *desc, size_t desc_size) {
        long deadline = now_ms() + timeout_ms;

        for (;;) {
                if (procs_mentioning(dir, desc, desc_size) == 0)
                        return true;
                if (now_ms() > deadline)
                        return false;
                usleep(50 * 1000);
        }
}

static bool path_exists(const char *p) {
        struct stat st;

        return lstat(p, &st) == 0;
}

/* Whether pid runs (a zombie does not count: PID 1 of a container may never
 * reap what it inherits). */
static bool pid_running(pid_t pid) {
        char path[64], buf[512], *p;
        ssize_t len;
        int fd;

        snprintf(path, sizeof(path), "/proc/%ld/stat", (long) pid);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return false;
        len = read(fd, buf, sizeof(buf) - 1);
        close(fd);
        if (len <= 0)
                return false;
        buf[len] = '\0';
        p = strrchr(buf, ')');
        return p && p[1] == ' ' && p[2] != 'Z';
}

static void x_paths(const char *display, char *lock, size_t lock_size, char *sock, size_t sock_size) {
        ck_assert_msg(display[0] == ':' && isdigit((unsigned char) display[1]), "display '%s'", display);
        snprintf(lock, lock_size, "/tmp/.X%s-lock", display + 1);
        snprintf(sock, sock_size, "/tmp/.X11-unix/X%s", display + 1);
}

static long file_size(const char *path) {
        struct stat st;

        return stat(path, &st) == 0 ? (long) st.st_size : -1;
}

/* ---- tests --------------------------------------------------------------- */

START_TEST(test_start_settings) {
        char lock[64], sock[64], expect[32], got[32] = "";
        int fd;
        ssize_t n;

        ck_assert_msg(h.dbus_address[0], "HARNESS_NOTIFY implies a private bus");
        ck_assert_int_gt(h.notify_pid, 1);
        ck_assert_msg(pid_running(h.notify_pid), "dunst (%ld) is not running", (long) h.notify_pid);
        ck_assert_msg(strncmp(h.xauthority, h.dir, strlen(h.dir)) == 0, "XAUTHORITY %s", h.xauthority);

        /* A display in :90..:199 with a lock file naming a running Xvfb. */
        x_paths(h.display, lock, sizeof(lock), sock, sizeof(sock));
        ck_assert_int_ge(atoi(h.display + 1), 90);
        ck_assert_int_le(atoi(h.display + 1), 199);
        ck_assert_msg(path_exists(sock), "%s missing", sock);
        fd = open(lock, O_RDONLY | O_CLOEXEC);
        ck_assert_msg(fd >= 0, "%s: %s", lock, strerror(errno));
        n = read(fd, got, sizeof(got) - 1);
        close(fd);
        ck_assert_int_eq(n, 11);
        got[n] = '\0';
        ck_assert_msg(pid_running((pid_t) atol(got)), "lock %s names %s, not running", lock, got);
        snprintf(expect, sizeof(expect), "/proc/%ld/exe", atol(got));
        n = readlink(expect, got, sizeof(got) - 1);
        ck_assert_int_gt(n, 0);
        got[n] = '\0';
        ck_assert_msg(strstr(got, "Xvfb") != NULL, "the lock's process is %s", got);

        /* Xvfb and dunst belong to this harness. */
        ck_assert_int_ge(procs_mentioning(h.dir, NULL, 0), 5); /* dovecot x3+, dbus, Xvfb, dunst */
}
END_TEST

/* The monitor sees our Notify with its exact strings, hints and the id dunst
 * returned; GetCapabilities and its answer too. */
START_TEST(test_monitor_sees_notify_and_capabilities) {
        static const char *const no_actions[] = { NULL };
        struct notify_monitor *m;
        sd_bus_message *reply = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        const struct notify_call *c;
        const char *unique;
        char **caps = NULL;
        uint32_t id = 0, id2 = 0;
        int r;
        sd_bus *bus;

        ck_assert_int_eq(notify_monitor_new(h.dbus_address, &m), 0);
        bus = bus_open();
        ck_assert_int_ge(sd_bus_get_unique_name(bus, &unique), 0);

        r = sd_bus_call_method(bus, "org.freedesktop.Notifications", "/org/freedesktop/Notifications",
                               "org.freedesktop.Notifications", "GetCapabilities", &error, &reply, "");
        ck_assert_msg(r >= 0, "GetCapabilities: %s", error.message ? error.message : strerror(-r));
        ck_assert_int_ge(sd_bus_message_read_strv(reply, &caps), 0);
        ck_assert_msg(strv_has(caps, "body-markup") && strv_has(caps, "actions"), "dunst's capabilities lack some");
        ck_assert(notify_monitor_wait_capabilities(m, 1, WAIT_MS));
        ck_assert_uint_eq(notify_monitor_n_capability_calls(m), 1);
        ck_assert(notify_monitor_has_capability(m, "body-markup"));
        ck_assert(notify_monitor_has_capability(m, "actions"));
        ck_assert(!notify_monitor_has_capability(m, "no-such-capability"));
        strv_free(caps);
        sd_bus_message_unref(reply);
        sd_bus_error_free(&error);

        {
                const struct notify_args a = {
                        .app_name = "imapidled-test",
                        .icon = "mail-unread",
                        .summary = "A & B",
                        .body = "<b>x</b>",
                        .actions = test_actions,
                        .category = "email.arrived",
                        .urgency = 2,
                        .expire_timeout = 0,
                };

                ck_assert_int_eq(notify(bus, &a, &id, NULL), 0);
        }
        ck_assert_uint_ne(id, 0);
        ck_assert_msg(notify_monitor_wait_notify(m, 1, WAIT_MS), "no Notify with reply seen: %s", monitor_error(m));
        ck_assert_uint_eq(notify_monitor_n_notify(m), 1);
        c = notify_monitor_get(m, 0);
        ck_assert_ptr_nonnull(c);
        ck_assert_ptr_null(notify_monitor_get(m, 1));
        ck_assert_str_eq(c->sender, unique);
        ck_assert_str_eq(c->app_name, "imapidled-test");
        ck_assert_uint_eq(c->replaces_id, 0);
        ck_assert_str_eq(c->icon, "mail-unread");
        ck_assert_str_eq(c->summary, "A & B");
        ck_assert_str_eq(c->body, "<b>x</b>");
        for (size_t i = 0; test_actions[i] || c->actions[i]; i++) {
                ck_assert_msg(test_actions[i] && c->actions[i], "actions differ in length at %zu", i);
                ck_assert_str_eq(c->actions[i], test_actions[i]);
        }
        ck_assert_str_eq(c->category, "email.arrived");
        ck_assert_int_eq(c->urgency, 2);
        ck_assert_str_eq(c->desktop_entry, "");
        ck_assert_int_eq(c->expire_timeout, 0);
        ck_assert_uint_eq(c->id, id);
        ck_assert_str_eq(c->error, "");
        ck_assert(c->seen_usec > 0 && c->reply_usec >= c->seen_usec);
        ck_assert_ptr_eq(notify_monitor_find(m, id)->summary, c->summary);

        /* No hints, no actions, replacing the first: recorded as such. */
        {
                const struct notify_args a = {
                        .app_name = "imapidled-test",
                        .replaces_id = id,
                        .summary = "replaced",
                        .body = "",
                        .actions = no_actions,
                        .urgency = -1,
                        .expire_timeout = 1234,
                };

                ck_assert_int_eq(notify(bus, &a, &id2, NULL), 0);
        }
        ck_assert_uint_eq(id2, id); /* dunst keeps the id it replaces */
        ck_assert(notify_monitor_wait_notify(m, 2, WAIT_MS));
        c = notify_monitor_get(m, 1);
        ck_assert_uint_eq(c->replaces_id, id);
        ck_assert_str_eq(c->summary, "replaced");
        ck_assert_str_eq(c->body, "");
        ck_assert_ptr_nonnull(c->actions);
        ck_assert_ptr_null(c->actions[0]);
        ck_assert_str_eq(c->category, "");
        ck_assert_int_eq(c->urgency, -1);
        ck_assert_int_eq(c->expire_timeout, 1234);
        ck_assert_uint_eq(c->id, id);
        ck_assert_str_eq(notify_monitor_find(m, id)->summary, "replaced");
        ck_assert_ptr_null(notify_monitor_find(m, id + 100));
        ck_assert_str_eq(monitor_error(m), "");

        sd_bus_flush_close_unref(bus);
        notify_monitor_free(m);
}
END_TEST

/* A call dunst answers with an error: id UINT32_MAX and the error's name. A
 * Notify call the monitor cannot parse is not recorded; it says so. */
START_TEST(test_monitor_records_error_reply) {
        struct notify_monitor *m;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        sd_bus_message *call = NULL;
        const struct notify_call *c;
        sd_bus *bus;
        int r;

        ck_assert_int_eq(notify_monitor_new(h.dbus_address, &m), 0);
        bus = bus_open();
        /* Notify with a truncated signature: dunst refuses it. */
        r = sd_bus_call_method(bus, "org.freedesktop.Notifications", "/org/freedesktop/Notifications",
                               "org.freedesktop.Notifications", "Notify", &error, NULL, "sus", "app", 0, "icon");
        ck_assert_int_lt(r, 0);
        sd_bus_error_free(&error);

        /* A well-formed call to an object dunst does not serve gets an error. */
        ck_assert_int_ge(sd_bus_message_new_method_call(bus, &call, "org.freedesktop.Notifications", "/no/such/object",
                                                        "org.freedesktop.Notifications", "Notify"),
                         0);
        ck_assert_int_ge(sd_bus_message_append(call, "susss", "app", 0, "", "s", "b"), 0);
        ck_assert_int_ge(sd_bus_message_append_strv(call, (char **) test_actions), 0);
        ck_assert_int_ge(sd_bus_message_append(call, "a{sv}i", 0, -1), 0);
        r = sd_bus_call(bus, call, 5 * 1000000ULL, &error, NULL);
        ck_assert_int_lt(r, 0);
        sd_bus_message_unref(call);

        /* The monitor reads in order: once it has the second, it had the first. */
        ck_assert(notify_monitor_wait_notify(m, 1, WAIT_MS));
        ck_assert_uint_eq(notify_monitor_n_notify(m), 1);
        c = notify_monitor_get(m, 0);
        ck_assert_str_eq(c->summary, "s");
        ck_assert_uint_eq(c->id, UINT32_MAX);
        ck_assert_str_eq(c->error, error.name);
        sd_bus_error_free(&error);
        ck_assert_msg(strstr(monitor_error(m), "cannot parse a Notify call") != NULL, "monitor error: '%s'",
                      monitor_error(m));

        sd_bus_flush_close_unref(bus);
        notify_monitor_free(m);
}
END_TEST

/* A click and the context menu make dunst emit ActionInvoked for the newest
 * notification with the right key. */
START_TEST(test_actions_invoked) {
        struct notify_monitor *m;
        uint32_t id1, id2;
        sd_bus *bus;

        ck_assert_int_eq(notify_monitor_new(h.dbus_address, &m), 0);
        bus = bus_open();
        ck_assert_int_eq(harness_notify_action(&h, "default"), -EIO); /* nothing on screen */
        ck_assert_int_eq(harness_notify_action(&h, "menu"), -EINVAL);

        /* One on screen: a click, dunstctl action 0. */
        id1 = notify_simple(bus, "A & B", "<b>x</b>");
        ck_assert_int_eq(harness_notify_action(&h, "default"), 0);
        ck_assert_msg(notify_monitor_wait_action(m, id1, "default", WAIT_MS), "no ActionInvoked(%u, default)", id1);
        ck_assert_uint_eq(notify_monitor_n_actions(m), 1);

        /* Two on screen: the context menu picks the newest's "Mark as read". */
        id2 = notify_simple(bus, "second", "another");
        ck_assert_uint_gt(id2, id1);
        ck_assert_int_eq(harness_notify_action(&h, "context"), 0);
        ck_assert_msg(notify_monitor_wait_action(m, id2, "mark-read", WAIT_MS), "no ActionInvoked(%u, mark-read)",
                      id2);
        ck_assert_uint_eq(notify_monitor_n_actions(m), 2);

        /* And a click goes to the newest as well, not to position 0. */
        ck_assert_int_eq(harness_notify_action(&h, "default"), 0);
        ck_assert_msg(notify_monitor_wait_action(m, id2, "default", WAIT_MS), "no ActionInvoked(%u, default)", id2);
        ck_assert_uint_eq(notify_monitor_n_actions(m), 3);
        ck_assert(!notify_monitor_wait_action(m, id1, "mark-read", 200));
        ck_assert(!notify_monitor_wait_action(m, id2, "Open", 0));
        /* dunst closes nothing by itself after an action. */
        ck_assert_uint_eq(notify_monitor_n_closed_signals(m), 0);

        /* Nothing with "Mark as read" on screen: the harness says so. */
        close_notification(bus, id1);
        close_notification(bus, id2);
        {
                static const char *const only_open[] = { "open", "Open", NULL };
                const struct notify_args a = {
                        .app_name = "t", .summary = "no mark", .body = "", .actions = only_open,
                        .urgency = -1, .expire_timeout = -1,
                };
                uint32_t id3;

                ck_assert_int_eq(notify(bus, &a, &id3, NULL), 0);
                ck_assert_int_eq(harness_notify_action(&h, "context"), -EIO);
                ck_assert(!notify_monitor_wait_action(m, id3, "open", 300));
        }

        sd_bus_flush_close_unref(bus);
        notify_monitor_free(m);
}
END_TEST

START_TEST(test_close_notification) {
        struct notify_monitor *m;
        uint32_t id, other, reason = 0;
        sd_bus *bus;

        ck_assert_int_eq(notify_monitor_new(h.dbus_address, &m), 0);
        bus = bus_open();
        id = notify_simple(bus, "to close", "body");
        other = notify_simple(bus, "stays", "body");
        close_notification(bus, id);
        ck_assert(notify_monitor_wait_close_call(m, id, WAIT_MS));
        ck_assert_uint_eq(notify_monitor_n_close_calls(m), 1);
        ck_assert_msg(notify_monitor_wait_closed_signal(m, id, WAIT_MS, &reason), "no NotificationClosed(%u)", id);
        ck_assert_uint_eq(reason, 3);
        ck_assert_uint_eq(notify_monitor_n_closed_signals(m), 1);
        ck_assert(!notify_monitor_wait_close_call(m, other, 200));
        ck_assert(!notify_monitor_wait_closed_signal(m, other, 0, &reason));
        ck_assert_uint_eq(reason, 3); /* untouched on failure */

        sd_bus_flush_close_unref(bus);
        notify_monitor_free(m);
}
END_TEST

struct notify_thread {
        pthread_t thread;
        int r;
        uint32_t id;
        uint64_t cookie;
};

static void *notify_in_thread(void *userdata) {
        struct notify_thread *t = userdata;
        const struct notify_args a = {
                .app_name = "t", .summary = "while stopped", .body = "", .actions = test_actions,
                .urgency = -1, .expire_timeout = -1,
        };
        sd_bus *bus = NULL;

        t->r = sd_bus_new(&bus);
        if (t->r >= 0)
                t->r = sd_bus_set_address(bus, h.dbus_address);
        if (t->r >= 0)
                t->r = sd_bus_set_bus_client(bus, true);
        if (t->r >= 0)
                t->r = sd_bus_start(bus);
        if (t->r >= 0)
                t->r = notify(bus, &a, &t->id, &t->cookie);
        sd_bus_flush_close_unref(bus);
        return NULL;
}

/* A stopped notification server: the call is seen, the reply comes only
 * after SIGCONT. Meanwhile another connection's call with the same serial is
 * answered by the bus: not a reply to Notify, whose caller is another. */
START_TEST(test_stopped_server_answers_late) {
        struct notify_monitor *m;
        struct notify_thread t = { .r = -1 };
        const struct notify_call *c;
        sd_bus_message *call = NULL;
        uint64_t cookie = 0;
        sd_bus *bus;

        ck_assert_int_eq(notify_monitor_new(h.dbus_address, &m), 0);
        ck_assert_int_eq(harness_notify_signal(&h, SIGSTOP), 0);
        ck_assert_int_eq(pthread_create(&t.thread, NULL, notify_in_thread, &t), 0);

        ck_assert(!notify_monitor_wait_notify(m, 1, 1000));
        ck_assert_uint_eq(notify_monitor_n_notify(m), 1); /* seen, unanswered */
        c = notify_monitor_get(m, 0);
        ck_assert_uint_eq(c->id, 0);
        ck_assert_uint_eq(c->reply_usec, 0);
        ck_assert_str_eq(c->summary, "while stopped");

        /* A fresh connection's first call after Hello has the serial of the
         * thread's Notify (checked below). */
        bus = bus_open();
        ck_assert_int_ge(sd_bus_message_new_method_call(bus, &call, "org.freedesktop.DBus", "/org/freedesktop/DBus",
                                                        "org.freedesktop.DBus", "GetId"),
                         0);
        ck_assert_int_ge(sd_bus_call(bus, call, 5 * 1000000ULL, NULL, NULL), 0);
        ck_assert_int_ge(sd_bus_message_get_cookie(call, &cookie), 0);
        sd_bus_message_unref(call);
        sd_bus_flush_close_unref(bus);
        ck_assert(!notify_monitor_wait_notify(m, 1, 200));
        c = notify_monitor_get(m, 0);
        ck_assert_uint_eq(c->reply_usec, 0);
        ck_assert_str_eq(c->error, "");

        ck_assert_int_eq(harness_notify_signal(&h, SIGCONT), 0);
        ck_assert_msg(notify_monitor_wait_notify(m, 1, WAIT_MS), "no reply after SIGCONT");
        ck_assert_int_eq(pthread_join(t.thread, NULL), 0);
        ck_assert_int_eq(t.r, 0);
        ck_assert_uint_eq(t.cookie, cookie);
        c = notify_monitor_get(m, 0);
        ck_assert_uint_eq(c->id, t.id);
        ck_assert_uint_ge(c->reply_usec - c->seen_usec, 900 * 1000);

        notify_monitor_free(m);
}
END_TEST

START_TEST(test_screenshot_shows_popup) {
        char empty[PATH_MAX + 32], shown[PATH_MAX + 32];
        unsigned char magic[8];
        long empty_size, shown_size;
        sd_bus *bus;
        FILE *f;

        snprintf(empty, sizeof(empty), "%s/tmp/empty.png", h.dir);
        snprintf(shown, sizeof(shown), "%s/tmp/shown.png", h.dir);
        ck_assert_int_eq(harness_screenshot(&h, empty), 0);
        bus = bus_open();
        (void) notify_simple(bus, "Screenshot", "<i>a popup</i> with some text in it");
        ck_assert_int_eq(harness_screenshot(&h, shown), 0);

        f = fopen(shown, "rb");
        ck_assert_ptr_nonnull(f);
        ck_assert_int_eq(fread(magic, 1, sizeof(magic), f), sizeof(magic));
        fclose(f);
        ck_assert_int_eq(memcmp(magic, "\x89PNG\r\n\x1a\n", 8), 0);
        empty_size = file_size(empty);
        shown_size = file_size(shown);
        ck_assert_int_gt(shown_size, 1024);
        /* A black screen compresses to almost nothing; a popup with text does not. */
        ck_assert_msg(shown_size > empty_size + 512, "empty %ld bytes, with a popup %ld", empty_size, shown_size);
        sd_bus_flush_close_unref(bus);

        ck_assert_int_eq(harness_screenshot(&h, "/nonexistent-dir/x.png"), -EIO);
}
END_TEST

/* stop ends Xvfb and dunst, even a stopped dunst, and removes the display's
 * lock file and socket. */
START_TEST(test_stop_leaves_nothing) {
        struct harness s;
        char dir[PATH_MAX], desc[1024], lock[64], sock[64];
        pid_t dunst;

        ck_assert_int_ge(harness_start(&s, HARNESS_NOTIFY), 0);
        snprintf(dir, sizeof(dir), "%s", s.dir);
        x_paths(s.display, lock, sizeof(lock), sock, sizeof(sock));
        dunst = s.notify_pid;
        ck_assert(path_exists(lock) && path_exists(sock));
        ck_assert_int_eq(harness_notify_signal(&s, SIGSTOP), 0);

        harness_stop(&s);
        ck_assert_str_eq(s.display, "");
        ck_assert_int_eq(s.notify_pid, 0);
        ck_assert_int_eq(harness_notify_signal(&s, SIGCONT), -ENOTCONN);
        ck_assert_int_eq(harness_notify_action(&s, "default"), -ENOTCONN);
        ck_assert_msg(procs_mentioning(dir, desc, sizeof(desc)) == 0, "left running: %s", desc);
        ck_assert_msg(!pid_running(dunst), "dunst %ld still runs", (long) dunst);
        ck_assert_msg(!path_exists(lock), "%s left", lock);
        ck_assert_msg(!path_exists(sock), "%s left", sock);
        ck_assert_msg(!path_exists(dir), "%s left", dir);
}
END_TEST

/* The owner dies with SIGKILL: the guard ends Xvfb and dunst too. */
START_TEST(test_guard_cleans_up_after_killed_owner) {
        char info[PATH_MAX + 32] = "", desc[1024], lock[64], sock[64], *dir, *display;
        int p[2], status;
        pid_t child;
        ssize_t n;

        ck_assert_int_eq(pipe(p), 0);
        child = fork();
        ck_assert_int_ge(child, 0);
        if (child == 0) {
                struct harness s;
                char buf[sizeof(info)];
                int len;

                close(p[0]);
                if (harness_start(&s, HARNESS_NOTIFY) < 0)
                        _exit(1);
                len = snprintf(buf, sizeof(buf), "%s %s", s.display, s.dir);
                if (write(p[1], buf, (size_t) len) < 0)
                        _exit(2);
                close(p[1]);
                for (;;)
                        pause();
        }
        close(p[1]);
        n = read(p[0], info, sizeof(info) - 1);
        close(p[0]);
        if (n <= 0) {
                waitpid(child, &status, 0);
                ck_abort_msg("child failed to start a harness");
        }
        info[n] = '\0';
        display = info;
        dir = strchr(info, ' ');
        ck_assert_ptr_nonnull(dir);
        *dir++ = '\0';
        x_paths(display, lock, sizeof(lock), sock, sizeof(sock));
        ck_assert(path_exists(lock));

        ck_assert_int_eq(kill(child, SIGKILL), 0);
        ck_assert_int_eq(waitpid(child, &status, 0), child);
        /* the guard notices within about a second; stopping Dovecot (and
         * Xvfb, dunst) took over 5 s in a clean-clone run on a loaded
         * machine, so allow 20 */
        if (!wait_procs_gone(dir, 20000, desc, sizeof(desc))) {
                struct harness s;

                memset(&s, 0, sizeof(s));
                snprintf(s.dir, sizeof(s.dir), "%s", dir);
                harness_stop(&s);
                ck_abort_msg("20 s after the owner died, still running: %s", desc);
        }
        for (long deadline = now_ms() + 2000; (path_exists(dir) || path_exists(lock)) && now_ms() < deadline;)
                usleep(20 * 1000);
        ck_assert_msg(!path_exists(lock), "%s left", lock);
        ck_assert_msg(!path_exists(sock), "%s left", sock);
        ck_assert_msg(!path_exists(dir), "%s left", dir);
}
END_TEST

START_TEST(test_monitor_needs_a_bus) {
        struct notify_monitor *m = NULL;

        ck_assert_int_lt(notify_monitor_new("unix:path=/nonexistent/bus", &m), 0);
        ck_assert_ptr_null(m);
        notify_monitor_free(NULL);
}
END_TEST

static Suite *notify_harness_suite(void) {
        Suite *s = suite_create("notify-harness");
        TCase *tc;

        tc = tcase_create("dunst");
        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_set_timeout(tc, 60);
        tcase_add_test(tc, test_start_settings);
        tcase_add_test(tc, test_monitor_sees_notify_and_capabilities);
        tcase_add_test(tc, test_monitor_records_error_reply);
        tcase_add_test(tc, test_actions_invoked);
        tcase_add_test(tc, test_close_notification);
        tcase_add_test(tc, test_stopped_server_answers_late);
        tcase_add_test(tc, test_screenshot_shows_popup);
        suite_add_tcase(s, tc);

        tc = tcase_create("lifecycle");
        tcase_set_timeout(tc, 60);
        tcase_add_test(tc, test_stop_leaves_nothing);
        tcase_add_test(tc, test_guard_cleans_up_after_killed_owner);
        tcase_add_test(tc, test_monitor_needs_a_bus);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        SRunner *sr = srunner_create(notify_harness_suite());
        int failed;

        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
