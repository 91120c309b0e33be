/* SPDX-License-Identifier: MIT */
/*
 * The D-Bus API (SPEC §5, dbus/org.imapidled.Daemon1.*.xml) as a client sees
 * it: the imapidled binary on the harness's private session bus, watching the
 * harness's Dovecot. The client is this process (sd-bus): it calls methods,
 * reads properties and records every signal the daemon sends. Deliveries,
 * flag changes and expunges are made by another client (doveadm), as a phone
 * or a mail program would.
 *
 * Accounts: "main" (user1: INBOX and "Entwürfe") and "my.work" (user2:
 * INBOX), so object paths need escaping.
 */

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <gio/gio.h>
#include <systemd/sd-bus.h>

#include "daemon-runner.h"
#include "harness.h"
#include "suites.h"

#define NAME            "org.imapidled.Daemon1"
#define ROOT            "/org/imapidled/Daemon1"
#define MANAGER         NAME ".Manager"
#define ACCOUNT         NAME ".Account"
#define MAILBOX         NAME ".Mailbox"
#define PROPERTIES      "org.freedesktop.DBus.Properties"
#define OBJECT_MANAGER  "org.freedesktop.DBus.ObjectManager"

/* The escaped paths, written out (sd_bus_path_encode: "." is _2e, "ü" is _c3_bc). */
#define PATH_ACCOUNT_MAIN       ROOT "/account/main"
#define PATH_ACCOUNT_WORK       ROOT "/account/my_2ework"
#define PATH_INBOX              ROOT "/mailbox/main/INBOX"
#define PATH_DRAFTS             ROOT "/mailbox/main/Entw_c3_bcrfe"
#define PATH_WORK_INBOX         ROOT "/mailbox/my_2ework/INBOX"
#define DRAFTS                  "Entw\xc3\xbcrfe"

static struct harness h;
static struct daemon_runner d;
static sd_bus *client;
static char bus_env[PATH_MAX + 64];

/* Every signal the daemon sent since the client connected, oldest first;
 * the wait_* functions take out what they looked for. */
static sd_bus_message *recorded[4096];
static size_t n_recorded;

/* The end of the daemon's log, for failure messages (Check limits their size). */
static const char *log_tail(void) {
        const char *log = daemon_runner_log(&d);
        size_t n = strlen(log);

        return n > 2500 ? log + n - 2500 : log;
}

/* ---- the client ---------------------------------------------------------- */

static int on_signal(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        if (n_recorded < sizeof(recorded) / sizeof(recorded[0]))
                recorded[n_recorded++] = sd_bus_message_ref(m);
        return 0;
}

static uint64_t now_ms(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000 + (uint64_t) ts.tv_nsec / 1000000;
}

static sd_bus *client_open(const char *address) {
        sd_bus *bus = NULL;

        ck_assert_int_ge(sd_bus_new(&bus), 0);
        ck_assert_int_ge(sd_bus_set_address(bus, address), 0);
        ck_assert_int_ge(sd_bus_set_bus_client(bus, true), 0);
        ck_assert_int_ge(sd_bus_start(bus), 0);
        /* everything the daemon's name sends: its own signals, PropertiesChanged, InterfacesAdded/Removed */
        ck_assert_int_ge(sd_bus_match_signal(bus, NULL, NAME, NULL, NULL, NULL, on_signal, NULL), 0);
        return bus;
}

static void client_close(void) {
        for (size_t i = 0; i < n_recorded; i++)
                sd_bus_message_unref(recorded[i]);
        n_recorded = 0;
        client = sd_bus_flush_close_unref(client);
}

/* Runs the client's bus for up to ms milliseconds (0: only what is there). */
static void pump(unsigned ms) {
        uint64_t deadline = now_ms() + ms;

        for (;;) {
                int r;

                /* read what the daemon tells "systemd": a full NOTIFY_SOCKET
                 * queue would block it in sd_notify() */
                (void) daemon_runner_notified(&d);

                while ((r = sd_bus_process(client, NULL)) > 0)
                        ;
                ck_assert_int_ge(r, 0);
                uint64_t now = now_ms();
                if (now >= deadline)
                        return;
                ck_assert_int_ge(sd_bus_wait(client, (deadline - now) * 1000), 0);
        }
}

typedef bool (*signal_pred_fn)(sd_bus_message *m, const void *arg);

/* The first recorded signal interface.member on path (NULL: any) for which
 * pred (NULL: any) holds, taken out of the record; NULL after timeout_ms. */
static sd_bus_message *find_signal(const char *path, const char *interface, const char *member, signal_pred_fn pred,
                                   const void *arg, unsigned timeout_ms) {
        uint64_t deadline = now_ms() + timeout_ms;

        for (;;) {
                pump(0);
                for (size_t i = 0; i < n_recorded; i++) {
                        sd_bus_message *m = recorded[i];

                        if (!sd_bus_message_is_signal(m, interface, member) ||
                            (path && strcmp(sd_bus_message_get_path(m), path) != 0))
                                continue;
                        ck_assert_int_ge(sd_bus_message_rewind(m, true), 0);
                        bool ok = !pred || pred(m, arg);
                        ck_assert_int_ge(sd_bus_message_rewind(m, true), 0);
                        if (!ok)
                                continue;
                        memmove(recorded + i, recorded + i + 1, (n_recorded - i - 1) * sizeof(recorded[0]));
                        n_recorded--;
                        return m;
                }
                uint64_t now = now_ms();
                if (now >= deadline)
                        return NULL;
                pump((unsigned) (deadline - now < 100 ? deadline - now : 100));
        }
}

static sd_bus_message *wait_signal(const char *path, const char *interface, const char *member, signal_pred_fn pred,
                                   const void *arg, unsigned timeout_ms) {
        sd_bus_message *m = find_signal(path, interface, member, pred, arg, timeout_ms);

        ck_assert_msg(m, "no %s.%s on %s within %u ms; daemon log:\n%s", interface, member, path ? path : "any path",
                      timeout_ms, log_tail());
        return m;
}

/* PropertiesChanged: does it carry property (of the given interface) with
 * this value? */
struct prop_want {
        const char *interface;
        const char *property;
        char type;                      /* 'u', 's' or 'b'; 0: any value */
        uint32_t u;
        const char *s;
        int b;
};

static bool pred_property(sd_bus_message *m, const void *arg) {
        const struct prop_want *w = arg;
        const char *interface, *name;
        bool found = false;

        ck_assert_int_ge(sd_bus_message_read(m, "s", &interface), 0);
        if (strcmp(interface, w->interface) != 0)
                return false;
        ck_assert_int_ge(sd_bus_message_enter_container(m, 'a', "{sv}"), 0);
        while (sd_bus_message_enter_container(m, 'e', "sv") > 0) {
                ck_assert_int_ge(sd_bus_message_read(m, "s", &name), 0);
                if (strcmp(name, w->property) != 0) {
                        ck_assert_int_ge(sd_bus_message_skip(m, "v"), 0);
                } else if (w->type == 0) {
                        ck_assert_int_ge(sd_bus_message_skip(m, "v"), 0);
                        found = true;
                } else if (w->type == 'u') {
                        uint32_t u;

                        ck_assert_int_ge(sd_bus_message_read(m, "v", "u", &u), 0);
                        found = u == w->u;
                } else if (w->type == 'b') {
                        int b;

                        ck_assert_int_ge(sd_bus_message_read(m, "v", "b", &b), 0);
                        found = !!b == !!w->b;
                } else {
                        const char *s;

                        ck_assert_int_ge(sd_bus_message_read(m, "v", "s", &s), 0);
                        found = strcmp(s, w->s) == 0;
                }
                ck_assert_int_ge(sd_bus_message_exit_container(m), 0);
        }
        return found;
}

static void wait_property_u(const char *path, const char *interface, const char *property, uint32_t value,
                            unsigned timeout_ms) {
        struct prop_want w = { interface, property, 'u', .u = value };

        sd_bus_message_unref(wait_signal(path, PROPERTIES, "PropertiesChanged", pred_property, &w, timeout_ms));
}

static void wait_property_s(const char *path, const char *interface, const char *property, const char *value,
                            unsigned timeout_ms) {
        struct prop_want w = { interface, property, 's', .s = value };

        sd_bus_message_unref(wait_signal(path, PROPERTIES, "PropertiesChanged", pred_property, &w, timeout_ms));
}

/* AccountStateChanged(account, state, message) for this account and state. */
struct state_want {
        const char *account, *state;
};

static bool pred_state(sd_bus_message *m, const void *arg) {
        const struct state_want *w = arg;
        const char *account, *state, *message;

        ck_assert_int_ge(sd_bus_message_read(m, "sss", &account, &state, &message), 0);
        return strcmp(account, w->account) == 0 && strcmp(state, w->state) == 0;
}

static uint32_t get_u(const char *path, const char *interface, const char *property) {
        sd_bus_error e = SD_BUS_ERROR_NULL;
        uint32_t v = 0;
        int r;

        r = sd_bus_get_property_trivial(client, NAME, path, interface, property, &e, 'u', &v);
        ck_assert_msg(r >= 0, "Get %s.%s on %s: %s", interface, property, path, e.message);
        sd_bus_error_free(&e);
        return v;
}

/* A malloc'ed string. */
static char *get_s(const char *path, const char *interface, const char *property) {
        sd_bus_error e = SD_BUS_ERROR_NULL;
        char *v = NULL;
        int r;

        r = sd_bus_get_property_string(client, NAME, path, interface, property, &e, &v);
        ck_assert_msg(r >= 0, "Get %s.%s on %s: %s", interface, property, path, e.message);
        sd_bus_error_free(&e);
        return v;
}

static void assert_prop_s(const char *path, const char *interface, const char *property, const char *want) {
        char *v = get_s(path, interface, property);

        ck_assert_msg(strcmp(v, want) == 0, "%s %s.%s is \"%s\", want \"%s\"", path, interface, property, v, want);
        free(v);
}

/* Calls a Manager method; returns 0 or the error (name and message in *e). */
static int call_manager(const char *method, sd_bus_error *e, sd_bus_message **reply, const char *types, ...) {
        sd_bus_message *m = NULL;
        va_list ap;
        int r;

        ck_assert_int_ge(sd_bus_message_new_method_call(client, &m, NAME, ROOT, MANAGER, method), 0);
        if (types) {
                va_start(ap, types);
                ck_assert_int_ge(sd_bus_message_appendv(m, types, ap), 0);
                va_end(ap);
        }
        r = sd_bus_call(client, m, 0, e, reply);
        sd_bus_message_unref(m);
        return r < 0 ? r : 0;
}

/* ---- the daemon ---------------------------------------------------------- */

static void write_config_to(const char *path, const char *accounts) {
        char buf[PATH_MAX * 6];

        snprintf(buf, sizeof(buf), "[general]\nlog_level = info\n%s", accounts);
        ck_assert_int_eq(write_text_file(path, buf), 0);
}

static void write_config(const char *accounts) {
        write_config_to(d.config_path, accounts);
}

static const char *account_section(char *buf, size_t size, const char *id, const char *user, const char *mailboxes) {
        snprintf(buf, size,
                 "\n[account %s]\nhost = %s\nport = %d\ntls = implicit\nca_file = %s\nuser = %s\n"
                 "password = pass-%s\nmailboxes = %s\n", id, h.host, h.imaps_port, h.ca_file, user, user, mailboxes);
        return buf;
}

static void write_default_config(const char *path) {
        char a[PATH_MAX * 2], b[PATH_MAX * 2], all[PATH_MAX * 5];

        snprintf(all, sizeof(all), "%s%s", account_section(a, sizeof(a), "main", "user1", "INBOX; " DRAFTS),
                 account_section(b, sizeof(b), "my.work", "user2", "INBOX"));
        write_config_to(path, all);
}

static void setup(void) {
        ck_assert_int_ge(harness_start(&h, HARNESS_DBUS), 0);
        ck_assert_int_eq(harness_mkbox(&h, "user1", DRAFTS), 0);
        ck_assert_int_eq(daemon_runner_init(&d, h.dir, "bus-test"), 0);
        snprintf(bus_env, sizeof(bus_env), "DBUS_SESSION_BUS_ADDRESS=%s", h.dbus_address);
        write_default_config(d.config_path);
}

static void teardown(void) {
        client_close();
        daemon_runner_done(&d);
        harness_stop(&h);
}

static void wait_log(const char *needle, unsigned n, unsigned timeout_ms) {
        ck_assert_msg(daemon_runner_wait_log(&d, needle, n, timeout_ms), "timed out waiting for %u x \"%s\"; log:\n%s",
                      n, needle, log_tail());
}

/* Starts the daemon on bus_env and waits until all 3 mailboxes are idle;
 * the client connects first, so it sees every signal. */
static void start_daemon_on(const char *address, const char *env) {
        const char *envv[] = { env, NULL };
        /* IMAPIDLED_TEST_VERBOSE=1: the daemon logs at debug level (for failures) */
        static const char *const verbose[] = { "--verbose", NULL };
        const char *v = getenv("IMAPIDLED_TEST_VERBOSE");

        client = client_open(address);
        ck_assert_int_eq(daemon_runner_start(&d, v && *v == '1' ? verbose : NULL, envv, false), 0);
        ck_assert_msg(daemon_runner_wait_notify(&d, "READY=1", 10000), "no READY=1; log:\n%s", log_tail());
        ck_assert_msg(daemon_runner_wait_notify(&d, "STATUS=3/3 mailboxes idle", 15000), "not idle; log:\n%s",
                      log_tail());
}

static void start_daemon(void) {
        start_daemon_on(h.dbus_address, bus_env);
        /* the objects' "idle" reached the bus too */
        for (uint64_t deadline = now_ms() + 5000; now_ms() < deadline; pump(50)) {
                char *st = get_s(ROOT, MANAGER, "State");
                bool ok = strcmp(st, "ok") == 0;

                free(st);
                if (ok) {
                        /* what start-up announced is not what the tests look for */
                        pump(200);
                        for (size_t i = 0; i < n_recorded; i++)
                                sd_bus_message_unref(recorded[i]);
                        n_recorded = 0;
                        return;
                }
        }
        ck_abort_msg("Manager.State never became \"ok\"; log:\n%s", log_tail());
}

/* ---- introspection: live vs. the shipped XML ----------------------------- */

static char *read_xml(const char *interface) {
        const char *src = getenv("IMAPIDLED_SRCDIR");
        char path[PATH_MAX];
        char *text = NULL;

        snprintf(path, sizeof(path), "%s/dbus/%s.xml", src ? src : ".", interface);
        ck_assert_msg(g_file_get_contents(path, &text, NULL, NULL), "cannot read %s", path);
        return text;
}

static char *introspect(const char *path) {
        sd_bus_error e = SD_BUS_ERROR_NULL;
        sd_bus_message *reply = NULL;
        const char *xml;
        char *copy;
        int r;

        r = sd_bus_call_method(client, NAME, path, "org.freedesktop.DBus.Introspectable", "Introspect", &e, &reply,
                               NULL);
        ck_assert_msg(r >= 0, "Introspect %s: %s", path, e.message);
        ck_assert_int_ge(sd_bus_message_read(reply, "s", &xml), 0);
        copy = strdup(xml);
        sd_bus_message_unref(reply);
        return copy;
}

static GDBusNodeInfo *parse_xml(const char *what, const char *xml) {
        GError *err = NULL;
        GDBusNodeInfo *node = g_dbus_node_info_new_for_xml(xml, &err);

        ck_assert_msg(node, "%s is not introspection XML: %s", what, err ? err->message : "?");
        return node;
}

static void diff_annotations(GString *diff, const char *where, GDBusAnnotationInfo **want, GDBusAnnotationInfo **got) {
        for (size_t i = 0; want && want[i]; i++) {
                const char *v = g_dbus_annotation_info_lookup(got, want[i]->key);

                if (!v || strcmp(v, want[i]->value) != 0)
                        g_string_append_printf(diff, "%s: annotation %s=%s in the XML, live %s\n", where, want[i]->key,
                                               want[i]->value, v ? v : "(none)");
        }
        for (size_t i = 0; got && got[i]; i++)
                if (!g_dbus_annotation_info_lookup(want, got[i]->key))
                        g_string_append_printf(diff, "%s: live annotation %s=%s is not in the XML\n", where,
                                               got[i]->key, got[i]->value);
}

static void diff_args(GString *diff, const char *where, const char *dir, GDBusArgInfo **want, GDBusArgInfo **got) {
        size_t nw = 0, ng = 0;

        while (want && want[nw])
                nw++;
        while (got && got[ng])
                ng++;
        if (nw != ng)
                g_string_append_printf(diff, "%s: %zu %s args in the XML, %zu live\n", where, nw, dir, ng);
        for (size_t i = 0; i < nw && i < ng; i++) {
                if (strcmp(want[i]->name, got[i]->name) != 0 || strcmp(want[i]->signature, got[i]->signature) != 0)
                        g_string_append_printf(diff, "%s: %s arg %zu is %s %s in the XML, %s %s live\n", where, dir, i,
                                               want[i]->signature, want[i]->name, got[i]->signature, got[i]->name);
                diff_annotations(diff, where, want[i]->annotations, got[i]->annotations);
        }
}

/* Every difference between two interfaces, one line each ("" if none):
 * member names, argument names, types and directions, property types and
 * access, annotations. */
static void diff_interface(GString *diff, const GDBusInterfaceInfo *want, const GDBusInterfaceInfo *got) {
        char where[256];

        diff_annotations(diff, want->name, want->annotations, got->annotations);
        for (size_t i = 0; want->properties && want->properties[i]; i++) {
                const GDBusPropertyInfo *w = want->properties[i];
                const GDBusPropertyInfo *g = g_dbus_interface_info_lookup_property((GDBusInterfaceInfo *) got, w->name);

                snprintf(where, sizeof(where), "%s.%s", want->name, w->name);
                if (!g) {
                        g_string_append_printf(diff, "%s: property missing live\n", where);
                        continue;
                }
                if (strcmp(w->signature, g->signature) != 0)
                        g_string_append_printf(diff, "%s: type %s in the XML, %s live\n", where, w->signature,
                                               g->signature);
                if (w->flags != g->flags)
                        g_string_append_printf(diff, "%s: access flags %d in the XML, %d live\n", where, w->flags,
                                               g->flags);
                diff_annotations(diff, where, w->annotations, g->annotations);
        }
        for (size_t i = 0; got->properties && got->properties[i]; i++)
                if (!g_dbus_interface_info_lookup_property((GDBusInterfaceInfo *) want, got->properties[i]->name))
                        g_string_append_printf(diff, "%s.%s: live property not in the XML\n", want->name,
                                               got->properties[i]->name);

        for (size_t i = 0; want->methods && want->methods[i]; i++) {
                const GDBusMethodInfo *w = want->methods[i];
                const GDBusMethodInfo *g = g_dbus_interface_info_lookup_method((GDBusInterfaceInfo *) got, w->name);

                snprintf(where, sizeof(where), "%s.%s()", want->name, w->name);
                if (!g) {
                        g_string_append_printf(diff, "%s: method missing live\n", where);
                        continue;
                }
                diff_args(diff, where, "in", w->in_args, g->in_args);
                diff_args(diff, where, "out", w->out_args, g->out_args);
                diff_annotations(diff, where, w->annotations, g->annotations);
        }
        for (size_t i = 0; got->methods && got->methods[i]; i++)
                if (!g_dbus_interface_info_lookup_method((GDBusInterfaceInfo *) want, got->methods[i]->name))
                        g_string_append_printf(diff, "%s.%s(): live method not in the XML\n", want->name,
                                               got->methods[i]->name);

        for (size_t i = 0; want->signals && want->signals[i]; i++) {
                const GDBusSignalInfo *w = want->signals[i];
                const GDBusSignalInfo *g = g_dbus_interface_info_lookup_signal((GDBusInterfaceInfo *) got, w->name);

                snprintf(where, sizeof(where), "%s::%s", want->name, w->name);
                if (!g) {
                        g_string_append_printf(diff, "%s: signal missing live\n", where);
                        continue;
                }
                diff_args(diff, where, "signal", w->args, g->args);
                diff_annotations(diff, where, w->annotations, g->annotations);
        }
        for (size_t i = 0; got->signals && got->signals[i]; i++)
                if (!g_dbus_interface_info_lookup_signal((GDBusInterfaceInfo *) want, got->signals[i]->name))
                        g_string_append_printf(diff, "%s::%s: live signal not in the XML\n", want->name,
                                               got->signals[i]->name);
}

/* The differences between dbus/<interface>.xml and what path says live (a
 * new string); *ret_live gets the live node (for more checks). */
static char *diff_live(const char *interface, const char *xml_interface, const char *path, GDBusNodeInfo **ret_live) {
        char *xml = read_xml(xml_interface), *live_xml = introspect(path);
        GDBusNodeInfo *want = parse_xml(xml_interface, xml), *live = parse_xml(path, live_xml);
        GDBusInterfaceInfo *wi = g_dbus_node_info_lookup_interface(want, xml_interface);
        GDBusInterfaceInfo *gi = g_dbus_node_info_lookup_interface(live, interface);
        GString *diff = g_string_new(NULL);

        ck_assert_msg(wi, "dbus/%s.xml does not declare %s", xml_interface, xml_interface);
        if (!gi)
                g_string_append_printf(diff, "%s does not implement %s:\n%s\n", path, interface, live_xml);
        else
                diff_interface(diff, wi, gi);
        g_dbus_node_info_unref(want);
        g_free(xml);
        free(live_xml);
        if (ret_live)
                *ret_live = live;
        else
                g_dbus_node_info_unref(live);
        return g_string_free(diff, false);
}

START_TEST(test_introspection_matches_xml) {
        static const struct {
                const char *interface, *path;
        } cases[] = {
                { MANAGER, ROOT },
                { ACCOUNT, PATH_ACCOUNT_MAIN },
                { ACCOUNT, PATH_ACCOUNT_WORK },
                { MAILBOX, PATH_INBOX },
                { MAILBOX, PATH_DRAFTS },
                { MAILBOX, PATH_WORK_INBOX },
        };
        GDBusNodeInfo *root = NULL;

        start_daemon();
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                GDBusNodeInfo *live = NULL;
                char *diff = diff_live(cases[i].interface, cases[i].interface, cases[i].path, &live);

                ck_assert_msg(!*diff, "%s on %s differs from dbus/%s.xml:\n%s", cases[i].interface, cases[i].path,
                              cases[i].interface, diff);
                g_free(diff);
                if (i == 0)
                        root = live;
                else
                        g_dbus_node_info_unref(live);
        }
        /* the root is also the ObjectManager and has both subtrees below it */
        ck_assert_ptr_nonnull(g_dbus_node_info_lookup_interface(root, OBJECT_MANAGER));
        bool account = false, mailbox = false;
        for (size_t i = 0; root->nodes && root->nodes[i]; i++) {
                account |= strcmp(root->nodes[i]->path, "account") == 0;
                mailbox |= strcmp(root->nodes[i]->path, "mailbox") == 0;
        }
        ck_assert(account && mailbox);
        g_dbus_node_info_unref(root);

        /* the comparison does see differences: the Account XML is not the Mailbox object */
        char *diff = diff_live(MAILBOX, ACCOUNT, PATH_INBOX, NULL);
        ck_assert_msg(strstr(diff, "Account.Host: property missing live") &&
                      strstr(diff, "Account.Exists: live property not in the XML"), "%s", diff);
        g_free(diff);
        diff = diff_live(MANAGER, MANAGER, PATH_INBOX, NULL);
        ck_assert_ptr_nonnull(strstr(diff, "does not implement"));
        g_free(diff);
}
END_TEST

/* ---- NewMail ------------------------------------------------------------- */

static bool pred_uid(sd_bus_message *m, const void *arg) {
        const char *account, *mailbox;
        uint32_t uid;

        ck_assert_int_ge(sd_bus_message_read(m, "ssu", &account, &mailbox, &uid), 0);
        return uid == *(const uint32_t *) arg;
}

/* A value of doveadm fetch / mailbox status output: the number after key. */
static unsigned long long doveadm_number(const char *out, const char *key) {
        const char *p = strstr(out, key);

        ck_assert_msg(p, "no %s in doveadm's output: %s", key, out);
        return strtoull(p + strlen(key), NULL, 10);
}

START_TEST(test_new_mail_signal) {
        static const char message[] =
                "Date: Tue, 01 Oct 2024 12:34:56 +0200\r\n"
                "From: =?UTF-8?Q?J=C3=B6rg_M=C3=BCller?= <joerg@example.org>\r\n"
                "To: user1@example.org\r\n"
                "Subject: =?ISO-8859-1?Q?Gr=FC=DFe_aus_K=F6ln?=\r\n"
                "Message-ID: <bus-test-1@example.org>\r\n"
                "MIME-Version: 1.0\r\n"
                "Content-Type: text/plain; charset=UTF-8\r\n"
                "\r\n"
                "Hallo.\r\n";
        struct tm tm = { .tm_year = 2024 - 1900, .tm_mon = 9, .tm_mday = 1, .tm_hour = 10, .tm_min = 34, .tm_sec = 56 };
        const char *account, *mailbox, *from, *subject, *key;
        char uid_s[16], out[1024];
        sd_bus_message *m;
        unsigned uid = 0;
        uint32_t got_uid;
        unsigned seen_keys = 0;

        start_daemon();
        ck_assert_int_eq(harness_deliver_raw_uid(&h, "user1", "INBOX", message, &uid), 0);
        ck_assert_uint_gt(uid, 0);
        m = wait_signal(ROOT, MANAGER, "NewMail", pred_uid, &uid, 15000);

        ck_assert_int_ge(sd_bus_message_read(m, "ssuss", &account, &mailbox, &got_uid, &from, &subject), 0);
        ck_assert_str_eq(account, "main");
        ck_assert_str_eq(mailbox, "INBOX");
        ck_assert_uint_eq(got_uid, uid);
        ck_assert_str_eq(from, "J\xc3\xb6rg M\xc3\xbcller");
        ck_assert_str_eq(subject, "Gr\xc3\xbc\xc3\x9f" "e aus K\xc3\xb6ln");       /* from ISO-8859-1 */

        /* the details, checked against Dovecot's own view of the message */
        snprintf(uid_s, sizeof(uid_s), "%u", uid);
        ck_assert_int_ge(harness_doveadm(&h, out, sizeof(out), "fetch", "-u", "user1", "size.virtual", "mailbox",
                                         "INBOX", "uid", uid_s, NULL), 0);
        unsigned long long size = doveadm_number(out, "size.virtual: ");
        ck_assert_int_ge(harness_doveadm(&h, out, sizeof(out), "mailbox", "status", "-u", "user1", "uidvalidity",
                                         "INBOX", NULL), 0);
        unsigned long long uidvalidity = doveadm_number(out, "uidvalidity=");

        ck_assert_int_ge(sd_bus_message_enter_container(m, 'a', "{sv}"), 0);
        while (sd_bus_message_enter_container(m, 'e', "sv") > 0) {
                ck_assert_int_ge(sd_bus_message_read(m, "s", &key), 0);
                if (strcmp(key, "from_address") == 0) {
                        const char *v;

                        ck_assert_int_ge(sd_bus_message_read(m, "v", "s", &v), 0);
                        ck_assert_str_eq(v, "joerg@example.org");
                        seen_keys |= 1;
                } else if (strcmp(key, "date") == 0) {
                        int64_t v;

                        ck_assert_int_ge(sd_bus_message_read(m, "v", "x", &v), 0);
                        ck_assert_int_eq(v, (int64_t) timegm(&tm));
                        seen_keys |= 2;
                } else if (strcmp(key, "message_id") == 0) {
                        const char *v;

                        ck_assert_int_ge(sd_bus_message_read(m, "v", "s", &v), 0);
                        ck_assert_str_eq(v, "<bus-test-1@example.org>");
                        seen_keys |= 4;
                } else if (strcmp(key, "uidvalidity") == 0) {
                        uint32_t v;

                        ck_assert_int_ge(sd_bus_message_read(m, "v", "u", &v), 0);
                        ck_assert_uint_eq(v, uidvalidity);
                        ck_assert_uint_eq(v, get_u(PATH_INBOX, MAILBOX, "UidValidity"));
                        seen_keys |= 8;
                } else if (strcmp(key, "size") == 0) {
                        uint64_t v;

                        ck_assert_int_ge(sd_bus_message_read(m, "v", "t", &v), 0);
                        ck_assert_uint_eq(v, size);
                        seen_keys |= 16;
                } else if (strcmp(key, "mailbox_path") == 0) {
                        const char *v;

                        ck_assert_int_ge(sd_bus_message_read(m, "v", "o", &v), 0);
                        ck_assert_str_eq(v, PATH_INBOX);
                        seen_keys |= 32;
                } else
                        ck_assert_int_ge(sd_bus_message_skip(m, "v"), 0);
                ck_assert_int_ge(sd_bus_message_exit_container(m), 0);
        }
        ck_assert_int_ge(sd_bus_message_exit_container(m), 0);
        ck_assert_msg(seen_keys == 63, "details keys missing: mask %#x", seen_keys);
        sd_bus_message_unref(m);

        /* the UTF-8 mailbox and the other account: names and paths */
        ck_assert_int_eq(harness_mail(&h, "user1", DRAFTS, "a@example.org", "draft", NULL, &uid), 0);
        m = wait_signal(ROOT, MANAGER, "NewMail", pred_uid, &uid, 15000);
        ck_assert_int_ge(sd_bus_message_read(m, "ss", &account, &mailbox), 0);
        ck_assert_str_eq(account, "main");
        ck_assert_str_eq(mailbox, DRAFTS);
        sd_bus_message_unref(m);
        ck_assert_int_eq(harness_mail(&h, "user2", "INBOX", "b@example.org", "work", NULL, &uid), 0);
        m = wait_signal(ROOT, MANAGER, "NewMail", pred_uid, &uid, 15000);
        ck_assert_int_ge(sd_bus_message_read(m, "ss", &account, &mailbox), 0);
        ck_assert_str_eq(account, "my.work");
        ck_assert_str_eq(mailbox, "INBOX");
        sd_bus_message_unref(m);

        /* one signal per message */
        pump(1000);
        ck_assert_ptr_null(find_signal(ROOT, MANAGER, "NewMail", NULL, NULL, 0));
}
END_TEST

/* ---- MailRemoved --------------------------------------------------------- */

START_TEST(test_mail_removed_signal) {
        const char *account, *mailbox;
        const uint32_t *uids;
        size_t size;
        unsigned uid = 0;
        sd_bus_message *m;

        start_daemon();
        ck_assert_int_eq(harness_mail(&h, "user1", "INBOX", "a@example.org", "to be removed", NULL, &uid), 0);
        sd_bus_message_unref(wait_signal(ROOT, MANAGER, "NewMail", pred_uid, &uid, 15000));
        ck_assert_int_eq(harness_expunge(&h, "user1", "INBOX", uid), 0);
        m = wait_signal(ROOT, MANAGER, "MailRemoved", NULL, NULL, 15000);
        ck_assert_int_ge(sd_bus_message_read(m, "ss", &account, &mailbox), 0);
        ck_assert_str_eq(account, "main");
        ck_assert_str_eq(mailbox, "INBOX");
        ck_assert_int_ge(sd_bus_message_read_array(m, 'u', (const void **) &uids, &size), 0);
        ck_assert_uint_eq(size, sizeof(uint32_t));
        ck_assert_uint_eq(uids[0], uid);
        sd_bus_message_unref(m);
}
END_TEST

/* ---- properties ---------------------------------------------------------- */

START_TEST(test_unseen_properties) {
        unsigned uid = 0;
        uint32_t total, inbox, main_unseen;

        ck_assert_int_eq(harness_deliver(&h, "user1", "INBOX", "a@example.org", "old, unread"), 0);
        ck_assert_int_eq(harness_deliver(&h, "user2", "INBOX", "a@example.org", "old, unread"), 0);
        start_daemon();
        total = get_u(ROOT, MANAGER, "UnseenTotal");
        inbox = get_u(PATH_INBOX, MAILBOX, "Unseen");
        main_unseen = get_u(PATH_ACCOUNT_MAIN, ACCOUNT, "Unseen");
        ck_assert_uint_eq(total, 2);
        ck_assert_uint_eq(inbox, 1);
        ck_assert_uint_eq(main_unseen, 1);
        ck_assert_uint_eq(get_u(PATH_INBOX, MAILBOX, "Exists"), 1);

        /* a delivery: every level counts it */
        ck_assert_int_eq(harness_mail(&h, "user1", "INBOX", "a@example.org", "new", NULL, &uid), 0);
        wait_property_u(ROOT, MANAGER, "UnseenTotal", total + 1, 15000);
        wait_property_u(PATH_INBOX, MAILBOX, "Unseen", inbox + 1, 5000);
        wait_property_u(PATH_ACCOUNT_MAIN, ACCOUNT, "Unseen", main_unseen + 1, 5000);
        ck_assert_uint_eq(get_u(ROOT, MANAGER, "UnseenTotal"), total + 1);
        ck_assert_uint_eq(get_u(PATH_INBOX, MAILBOX, "Exists"), 2);
        ck_assert_uint_ge(get_u(PATH_INBOX, MAILBOX, "UidNext"), uid + 1);

        /* read on the phone: back down */
        ck_assert_int_eq(harness_flags(&h, "user1", "INBOX", uid, "add", "\\Seen"), 0);
        wait_property_u(ROOT, MANAGER, "UnseenTotal", total, 15000);
        wait_property_u(PATH_INBOX, MAILBOX, "Unseen", inbox, 5000);
        wait_property_u(PATH_ACCOUNT_MAIN, ACCOUNT, "Unseen", main_unseen, 5000);
        ck_assert_uint_eq(get_u(PATH_INBOX, MAILBOX, "Unseen"), inbox);

        /* the other account's count did not move */
        struct prop_want any_unseen = { .interface = MAILBOX, .property = "Unseen" };
        ck_assert_uint_eq(get_u(PATH_WORK_INBOX, MAILBOX, "Unseen"), 1);
        ck_assert_ptr_null(find_signal(PATH_WORK_INBOX, PROPERTIES, "PropertiesChanged", pred_property, &any_unseen, 0));
}
END_TEST

START_TEST(test_paused) {
        sd_bus_error e = SD_BUS_ERROR_NULL;
        struct prop_want w = { MANAGER, "Paused", 'b', .b = 1 };
        int paused = -1;

        start_daemon();
        ck_assert_int_ge(sd_bus_get_property_trivial(client, NAME, ROOT, MANAGER, "Paused", &e, 'b', &paused), 0);
        ck_assert_int_eq(paused, 0);
        ck_assert_msg(sd_bus_set_property(client, NAME, ROOT, MANAGER, "Paused", &e, "b", 1) >= 0, "%s", e.message);
        sd_bus_message_unref(wait_signal(ROOT, PROPERTIES, "PropertiesChanged", pred_property, &w, 2000));
        ck_assert_int_ge(sd_bus_get_property_trivial(client, NAME, ROOT, MANAGER, "Paused", &e, 'b', &paused), 0);
        ck_assert_int_eq(paused, 1);
        /* signals go on while paused */
        unsigned uid = 0;
        ck_assert_int_eq(harness_mail(&h, "user1", "INBOX", "a@example.org", "while paused", NULL, &uid), 0);
        sd_bus_message_unref(wait_signal(ROOT, MANAGER, "NewMail", pred_uid, &uid, 15000));
        w.b = 0;
        ck_assert_int_ge(sd_bus_set_property(client, NAME, ROOT, MANAGER, "Paused", &e, "b", 0), 0);
        sd_bus_message_unref(wait_signal(ROOT, PROPERTIES, "PropertiesChanged", pred_property, &w, 2000));
        /* the constant and the read-only ones */
        assert_prop_s(ROOT, MANAGER, "Version", IMAPIDLED_VERSION);
        ck_assert_int_lt(sd_bus_set_property(client, NAME, ROOT, MANAGER, "UnseenTotal", &e, "u", 5), 0);
        sd_bus_error_free(&e);
}
END_TEST

/* ---- ListMailboxes and the ObjectManager --------------------------------- */

START_TEST(test_list_mailboxes) {
        static const struct {
                const char *account, *mailbox, *path;
                uint32_t unseen, exists;
        } want[] = {
                { "main", "INBOX", PATH_INBOX, 2, 2 },
                { "main", DRAFTS, PATH_DRAFTS, 1, 1 },
                { "my.work", "INBOX", PATH_WORK_INBOX, 0, 0 },
        };
        sd_bus_error e = SD_BUS_ERROR_NULL;
        sd_bus_message *reply = NULL;
        const char *account, *mailbox, *path, *state;
        uint32_t unseen, exists;
        size_t n = 0;

        /* counted at the first start, not announced */
        ck_assert_int_eq(harness_deliver(&h, "user1", "INBOX", "a@example.org", "one"), 0);
        ck_assert_int_eq(harness_deliver(&h, "user1", "INBOX", "a@example.org", "two"), 0);
        ck_assert_int_eq(harness_deliver(&h, "user1", DRAFTS, "a@example.org", "three"), 0);
        start_daemon();

        ck_assert_msg(call_manager("ListMailboxes", &e, &reply, NULL) == 0, "%s", e.message);
        ck_assert_int_ge(sd_bus_message_enter_container(reply, 'a', "(ssouus)"), 0);
        while (sd_bus_message_read(reply, "(ssouus)", &account, &mailbox, &path, &unseen, &exists, &state) > 0) {
                ck_assert_uint_lt(n, 3);
                ck_assert_str_eq(account, want[n].account);
                ck_assert_str_eq(mailbox, want[n].mailbox);
                ck_assert_str_eq(path, want[n].path);
                ck_assert_uint_eq(unseen, want[n].unseen);
                ck_assert_uint_eq(exists, want[n].exists);
                ck_assert_str_eq(state, "idle");
                /* the path is the object, with the same values */
                assert_prop_s(path, MAILBOX, "Account", account);
                assert_prop_s(path, MAILBOX, "Name", mailbox);
                assert_prop_s(path, MAILBOX, "State", state);
                assert_prop_s(path, MAILBOX, "LastError", "");
                ck_assert_uint_eq(get_u(path, MAILBOX, "Unseen"), unseen);
                ck_assert_uint_eq(get_u(path, MAILBOX, "Exists"), exists);
                ck_assert_uint_gt(get_u(path, MAILBOX, "UidValidity"), 0);
                ck_assert_uint_eq(get_u(path, MAILBOX, "UidNext"), exists + 1);
                n++;
        }
        ck_assert_uint_eq(n, 3);
        sd_bus_message_unref(reply);
        ck_assert_int_eq(get_u(ROOT, MANAGER, "UnseenTotal"), 3);

        /* the accounts */
        assert_prop_s(PATH_ACCOUNT_MAIN, ACCOUNT, "Name", "main");
        assert_prop_s(PATH_ACCOUNT_MAIN, ACCOUNT, "Host", h.host);
        assert_prop_s(PATH_ACCOUNT_MAIN, ACCOUNT, "User", "user1");
        assert_prop_s(PATH_ACCOUNT_MAIN, ACCOUNT, "State", "idle");
        assert_prop_s(PATH_ACCOUNT_MAIN, ACCOUNT, "LastError", "");
        ck_assert_uint_eq(get_u(PATH_ACCOUNT_MAIN, ACCOUNT, "Unseen"), 3);
        assert_prop_s(PATH_ACCOUNT_WORK, ACCOUNT, "Name", "my.work");
        assert_prop_s(PATH_ACCOUNT_WORK, ACCOUNT, "User", "user2");

        /* GetManagedObjects: every account and mailbox with its properties, nothing else of ours */
        unsigned found = 0;
        ck_assert_int_ge(sd_bus_call_method(client, NAME, ROOT, OBJECT_MANAGER, "GetManagedObjects", &e, &reply, NULL),
                         0);
        ck_assert_int_ge(sd_bus_message_enter_container(reply, 'a', "{oa{sa{sv}}}"), 0);
        while (sd_bus_message_enter_container(reply, 'e', "oa{sa{sv}}") > 0) {
                const char *iface;

                ck_assert_int_ge(sd_bus_message_read(reply, "o", &path), 0);
                ck_assert_int_ge(sd_bus_message_enter_container(reply, 'a', "{sa{sv}}"), 0);
                while (sd_bus_message_enter_container(reply, 'e', "sa{sv}") > 0) {
                        unsigned props = 0;

                        ck_assert_int_ge(sd_bus_message_read(reply, "s", &iface), 0);
                        ck_assert_int_ge(sd_bus_message_enter_container(reply, 'a', "{sv}"), 0);
                        while (sd_bus_message_enter_container(reply, 'e', "sv") > 0) {
                                ck_assert_int_ge(sd_bus_message_skip(reply, "sv"), 0);
                                ck_assert_int_ge(sd_bus_message_exit_container(reply), 0);
                                props++;
                        }
                        ck_assert_int_ge(sd_bus_message_exit_container(reply), 0);
                        ck_assert_int_ge(sd_bus_message_exit_container(reply), 0);
                        if (strcmp(iface, ACCOUNT) == 0) {
                                ck_assert_uint_eq(props, 6);
                                found |= strcmp(path, PATH_ACCOUNT_MAIN) == 0 ? 1 :
                                         strcmp(path, PATH_ACCOUNT_WORK) == 0 ? 2 : 64;
                        } else if (strcmp(iface, MAILBOX) == 0) {
                                ck_assert_uint_eq(props, 8);
                                found |= strcmp(path, PATH_INBOX) == 0 ? 4 : strcmp(path, PATH_DRAFTS) == 0 ? 8 :
                                         strcmp(path, PATH_WORK_INBOX) == 0 ? 16 : 64;
                        }
                }
                ck_assert_int_ge(sd_bus_message_exit_container(reply), 0);
                ck_assert_int_ge(sd_bus_message_exit_container(reply), 0);
        }
        ck_assert_uint_eq(found, 31);
        sd_bus_message_unref(reply);
        sd_bus_error_free(&e);
}
END_TEST

/* ---- Reload -------------------------------------------------------------- */

static bool pred_interfaces(sd_bus_message *m, const void *arg) {
        const char *path;

        ck_assert_int_ge(sd_bus_message_read(m, "o", &path), 0);
        return strcmp(path, arg) == 0;
}

START_TEST(test_reload) {
        char a[PATH_MAX * 2], b[PATH_MAX * 2], all[PATH_MAX * 5];
        sd_bus_error e = SD_BUS_ERROR_NULL;
        char who1[4096], who2[4096];
        sd_bus_message *m;
        unsigned uid = 0;

        start_daemon();
        ck_assert_int_ge(harness_doveadm(&h, who1, sizeof(who1), "who", "-1", "user1", NULL), 0);

        /* broken: an error reply naming the problem; the daemon and its watch go on */
        ck_assert_int_eq(write_text_file(d.config_path, "[account main]\nhost = \nport = abc\n"), 0);
        ck_assert_int_lt(call_manager("Reload", &e, NULL, NULL), 0);
        ck_assert_str_eq(e.name, "org.imapidled.Daemon1.Error.Failed");
        ck_assert_msg(strncmp(e.message, "the new configuration is not valid; see the log\n", 48) == 0, "%s", e.message);
        ck_assert_msg(strstr(e.message, "[account main] port: expected 1-65535, got \"abc\""), "%s", e.message);
        sd_bus_error_free(&e);
        ck_assert_int_eq(kill(d.pid, 0), 0);
        assert_prop_s(ROOT, MANAGER, "State", "ok");
        ck_assert_int_eq(harness_mail(&h, "user1", "INBOX", "a@example.org", "after the bad reload", NULL, &uid), 0);
        sd_bus_message_unref(wait_signal(ROOT, MANAGER, "NewMail", pred_uid, &uid, 15000));

        /* good: "Entwürfe" and my.work go, "third" comes; main keeps its connection */
        snprintf(all, sizeof(all), "%s%s", account_section(a, sizeof(a), "main", "user1", "INBOX"),
                 account_section(b, sizeof(b), "third", "user3", "INBOX"));
        write_config(all);
        ck_assert_msg(call_manager("Reload", &e, NULL, NULL) == 0, "%s", e.message);
        static const char *const removed[] = { PATH_DRAFTS, PATH_ACCOUNT_WORK, PATH_WORK_INBOX };
        for (size_t i = 0; i < 3; i++)
                sd_bus_message_unref(wait_signal(ROOT, OBJECT_MANAGER, "InterfacesRemoved", pred_interfaces,
                                                 removed[i], 2000));
        m = wait_signal(ROOT, OBJECT_MANAGER, "InterfacesAdded", pred_interfaces, ROOT "/account/third", 2000);
        sd_bus_message_unref(m);
        sd_bus_message_unref(wait_signal(ROOT, OBJECT_MANAGER, "InterfacesAdded", pred_interfaces,
                                         ROOT "/mailbox/third/INBOX", 2000));
        ck_assert_int_lt(sd_bus_get_property_trivial(client, NAME, PATH_DRAFTS, MAILBOX, "Unseen", &e, 'u', &uid), 0);
        sd_bus_error_free(&e);
        assert_prop_s(ROOT "/account/third", ACCOUNT, "User", "user3");
        wait_property_s(ROOT "/account/third", ACCOUNT, "State", "idle", 15000);
        ck_assert_int_eq(harness_mail(&h, "user3", "INBOX", "a@example.org", "to the new account", NULL, &uid), 0);
        sd_bus_message_unref(wait_signal(ROOT, MANAGER, "NewMail", pred_uid, &uid, 15000));

        /* a reload that changes nothing keeps main's connection */
        ck_assert_msg(daemon_runner_wait_notify(&d, "STATUS=2/2 mailboxes idle", 15000), "%s", log_tail());
        ck_assert_int_ge(harness_doveadm(&h, who1, sizeof(who1), "who", "-1", "user1", NULL), 0);
        ck_assert_msg(call_manager("Reload", &e, NULL, NULL) == 0, "%s", e.message);
        ck_assert_int_ge(harness_doveadm(&h, who2, sizeof(who2), "who", "-1", "user1", NULL), 0);
        ck_assert_str_eq(who1, who2);
        pump(300);
        ck_assert_ptr_null(find_signal(ROOT, OBJECT_MANAGER, NULL, NULL, NULL, 0));
}
END_TEST

/* ---- errors -------------------------------------------------------------- */

START_TEST(test_mark_seen_errors) {
        sd_bus_error e = SD_BUS_ERROR_NULL;

        start_daemon();
        ck_assert_int_lt(call_manager("MarkSeen", &e, NULL, "ssu", "nope", "INBOX", 1), 0);
        ck_assert_str_eq(e.name, "org.imapidled.Daemon1.Error.NoSuchAccount");
        sd_bus_error_free(&e);
        ck_assert_int_lt(call_manager("MarkSeen", &e, NULL, "ssu", "main", "Nope", 1), 0);
        ck_assert_str_eq(e.name, "org.imapidled.Daemon1.Error.NoSuchMailbox");
        sd_bus_error_free(&e);
        ck_assert_int_lt(call_manager("MarkSeen", &e, NULL, "ssu", "main", "INBOX", 0), 0);
        ck_assert_str_eq(e.name, SD_BUS_ERROR_INVALID_ARGS);
        sd_bus_error_free(&e);
        /* a UID that does not exist in a watched mailbox */
        ck_assert_int_lt(call_manager("MarkSeen", &e, NULL, "ssu", "main", "inbox", 999), 0);
        ck_assert_str_eq(e.name, "org.imapidled.Daemon1.Error.NoSuchMessage");
        ck_assert_ptr_nonnull(strstr(e.message, "999"));
        sd_bus_error_free(&e);
        /* wrong argument types */
        ck_assert_int_lt(call_manager("MarkSeen", &e, NULL, "ss", "main", "INBOX"), 0);
        ck_assert_str_eq(e.name, SD_BUS_ERROR_INVALID_ARGS);
        sd_bus_error_free(&e);
}
END_TEST

/* MarkSeen sets \Seen on the server (seen from another connection), through
 * a short extra connection: the watching one stays on EXAMINE. */
START_TEST(test_mark_seen_sets_flag) {
        sd_bus_error e = SD_BUS_ERROR_NULL;
        char flags[4096];

        ck_assert_int_eq(harness_deliver(&h, "user1", "INBOX", "a@example.org", "to be read"), 0);
        start_daemon();
        ck_assert_int_ge(harness_doveadm(&h, flags, sizeof(flags), "fetch", "-u", "user1", "flags", "mailbox", "INBOX",
                                         "uid", "1", NULL), 0);
        ck_assert_ptr_null(strstr(flags, "\\Seen"));
        ck_assert_msg(call_manager("MarkSeen", &e, NULL, "ssu", "main", "INBOX", 1) >= 0, "%s: %s", e.name, e.message);
        ck_assert_int_ge(harness_doveadm(&h, flags, sizeof(flags), "fetch", "-u", "user1", "flags", "mailbox", "INBOX",
                                         "uid", "1", NULL), 0);
        ck_assert_msg(strstr(flags, "\\Seen"), "flags: %s", flags);
}
END_TEST

/* A second daemon on the same bus: a clear message, exit 1, no IMAP. */
START_TEST(test_second_daemon) {
        struct daemon_runner d2;
        const char *env[] = { bus_env, NULL };
        const char *log;
        char owner1[256], *owner2;
        sd_bus_error e = SD_BUS_ERROR_NULL;
        sd_bus_message *reply = NULL;
        const char *s;
        int status = -1;

        start_daemon();
        ck_assert_int_ge(sd_bus_call_method(client, "org.freedesktop.DBus", "/org/freedesktop/DBus",
                                            "org.freedesktop.DBus", "GetNameOwner", &e, &reply, "s", NAME), 0);
        ck_assert_int_ge(sd_bus_message_read(reply, "s", &s), 0);
        snprintf(owner1, sizeof(owner1), "%s", s);
        reply = sd_bus_message_unref(reply);

        ck_assert_int_eq(daemon_runner_init(&d2, h.dir, "second"), 0);
        write_default_config(d2.config_path);   /* the same accounts */
        ck_assert_int_eq(daemon_runner_start(&d2, NULL, env, false), 0);
        for (uint64_t deadline = now_ms() + 10000; now_ms() < deadline; usleep(20 * 1000))
                if (waitpid(d2.pid, &status, WNOHANG) == d2.pid) {
                        d2.pid = 0;
                        break;
                }
        log = daemon_runner_log(&d2);
        ck_assert_msg(d2.pid == 0, "the second daemon still runs; log:\n%s", log);
        ck_assert(WIFEXITED(status));
        ck_assert_int_eq(WEXITSTATUS(status), 1);
        ck_assert_msg(strstr(log, "another imapidled is running (org.imapidled.Daemon1 is taken on the session bus)"),
                      "%s", log);
        ck_assert_msg(!strstr(log, "watching"), "the second daemon started its accounts:\n%s", log);
        ck_assert_msg(!strstr(daemon_runner_notified(&d2), "READY=1"), "the second daemon said READY");
        daemon_runner_done(&d2);

        /* the first one still has the name */
        ck_assert_int_ge(sd_bus_call_method(client, "org.freedesktop.DBus", "/org/freedesktop/DBus",
                                            "org.freedesktop.DBus", "GetNameOwner", &e, &reply, "s", NAME), 0);
        ck_assert_int_ge(sd_bus_message_read(reply, "s", &s), 0);
        owner2 = strdup(s);
        sd_bus_message_unref(reply);
        ck_assert_str_eq(owner1, owner2);
        free(owner2);
        sd_bus_error_free(&e);
}
END_TEST

/* ---- accounts failing, State, CheckNow ----------------------------------- */

/* The server goes away (every account in backoff: "offline"), comes back
 * while main's password is wrong (main in error, my.work idle: "degraded"),
 * the password is fixed and CheckNow brings main back at once instead of
 * after its error wait of at least 30 s ("ok"). */
START_TEST(test_server_down_state_and_check_now) {
        struct state_want main_backoff = { "main", "backoff" }, work_backoff = { "my.work", "backoff" };
        struct state_want main_error = { "main", "error" }, main_idle = { "main", "idle" };
        char pw[PATH_MAX + 16], a[PATH_MAX * 2], b[PATH_MAX * 2], all[PATH_MAX * 5], *p, *err;
        const char *account, *state, *message;
        sd_bus_error e = SD_BUS_ERROR_NULL;
        sd_bus_message *m;
        uint64_t t0;

        /* main reads its password from a file, every time it connects */
        snprintf(pw, sizeof(pw), "%s/main.pass", d.dir);
        ck_assert_int_eq(write_text_file(pw, "pass-user1\n"), 0);
        ck_assert_int_eq(chmod(pw, 0600), 0);
        account_section(a, sizeof(a), "main", "user1", "INBOX; " DRAFTS);
        p = strstr(a, "password = pass-user1");
        ck_assert_ptr_nonnull(p);
        snprintf(p, sizeof(a) - (size_t) (p - a), "password_file = %s\nmailboxes = INBOX; %s\n", pw, DRAFTS);
        snprintf(all, sizeof(all), "%s%s", a, account_section(b, sizeof(b), "my.work", "user2", "INBOX"));
        write_config(all);
        start_daemon();

        ck_assert_int_eq(harness_server_stop(&h), 0);
        m = wait_signal(ROOT, MANAGER, "AccountStateChanged", pred_state, &main_backoff, 15000);
        ck_assert_int_ge(sd_bus_message_read(m, "sss", &account, &state, &message), 0);
        ck_assert_msg(*message, "AccountStateChanged(main, backoff) without a message");
        sd_bus_message_unref(m);
        sd_bus_message_unref(wait_signal(ROOT, MANAGER, "AccountStateChanged", pred_state, &work_backoff, 15000));
        wait_property_s(ROOT, MANAGER, "State", "offline", 5000);
        err = get_s(PATH_ACCOUNT_MAIN, ACCOUNT, "LastError");
        ck_assert_msg(*err, "Account.LastError is empty in backoff");
        free(err);

        ck_assert_int_eq(write_text_file(pw, "wrong\n"), 0);
        ck_assert_int_eq(harness_server_start(&h), 0);
        m = wait_signal(ROOT, MANAGER, "AccountStateChanged", pred_state, &main_error, 20000);
        ck_assert_int_ge(sd_bus_message_read(m, "sss", &account, &state, &message), 0);
        ck_assert_msg(*message, "AccountStateChanged(main, error) without a message");
        sd_bus_message_unref(m);
        wait_property_s(ROOT, MANAGER, "State", "degraded", 20000);
        assert_prop_s(PATH_ACCOUNT_MAIN, ACCOUNT, "State", "error");
        assert_prop_s(PATH_ACCOUNT_WORK, ACCOUNT, "State", "idle");
        err = get_s(PATH_ACCOUNT_MAIN, ACCOUNT, "LastError");
        ck_assert_msg(*err, "Account.LastError is empty in error");
        free(err);

        /* fixed: CheckNow does not wait for the error's retry */
        ck_assert_int_eq(write_text_file(pw, "pass-user1\n"), 0);
        unsigned before = daemon_runner_count(&d, "main/INBOX: reconnecting now");
        t0 = now_ms();
        ck_assert_msg(call_manager("CheckNow", &e, NULL, NULL) == 0, "%s", e.message);
        sd_bus_message_unref(wait_signal(ROOT, MANAGER, "AccountStateChanged", pred_state, &main_idle, 15000));
        ck_assert_msg(now_ms() - t0 < 20000, "idle %llu ms after CheckNow", (unsigned long long) (now_ms() - t0));
        ck_assert_uint_gt(daemon_runner_count(&d, "main/INBOX: reconnecting now"), before);
        wait_property_s(ROOT, MANAGER, "State", "ok", 5000);
        assert_prop_s(PATH_ACCOUNT_MAIN, ACCOUNT, "LastError", "");
        sd_bus_error_free(&e);
}
END_TEST

/* ---- the bus goes away and comes back ------------------------------------ */

static pid_t own_bus_start(const char *conf) {
        pid_t pid = fork();

        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
                int null = open("/dev/null", O_RDWR);

                prctl(PR_SET_PDEATHSIG, SIGTERM);
                if (null >= 0) {
                        dup2(null, STDIN_FILENO);
                        dup2(null, STDOUT_FILENO);
                        dup2(null, STDERR_FILENO);
                }
                execlp("dbus-daemon", "dbus-daemon", "--nofork", "--nosyslog", conf, (char *) NULL);
                _exit(127);
        }
        return pid;
}

static bool name_has_owner(const char *address) {
        sd_bus *bus = NULL;
        sd_bus_message *reply = NULL;
        int has = 0;

        if (sd_bus_new(&bus) < 0)
                return false;
        if (sd_bus_set_address(bus, address) >= 0 && sd_bus_set_bus_client(bus, true) >= 0 && sd_bus_start(bus) >= 0 &&
            sd_bus_call_method(bus, "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus",
                               "NameHasOwner", NULL, &reply, "s", NAME) >= 0)
                (void) sd_bus_message_read(reply, "b", &has);
        sd_bus_message_unref(reply);
        sd_bus_flush_close_unref(bus);
        return has;
}

static unsigned long cpu_ticks(pid_t pid) {
        char path[64], buf[1024], *p;
        unsigned long utime = 0, stime = 0;
        FILE *f;

        snprintf(path, sizeof(path), "/proc/%d/stat", (int) pid);
        f = fopen(path, "r");
        ck_assert_ptr_nonnull(f);
        ck_assert_ptr_nonnull(fgets(buf, sizeof(buf), f));
        fclose(f);
        p = strrchr(buf, ')');
        ck_assert_ptr_nonnull(p);
        /* after "pid (comm)": state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime */
        ck_assert_int_eq(sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &utime, &stime), 2);
        return utime + stime;
}

START_TEST(test_session_bus_restart) {
        char conf[PATH_MAX + 64], sock[PATH_MAX + 16], address[PATH_MAX + 32], env[PATH_MAX + 64], text[PATH_MAX * 2];
        char who1[4096], who2[4096];
        pid_t bus;
        unsigned uid = 0;
        int status;

        snprintf(sock, sizeof(sock), "%s/own-bus", d.dir);
        snprintf(address, sizeof(address), "unix:path=%s", sock);
        snprintf(env, sizeof(env), "DBUS_SESSION_BUS_ADDRESS=%s", address);
        snprintf(text, sizeof(text),
                 "<!DOCTYPE busconfig PUBLIC \"-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN\"\n"
                 " \"http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd\">\n"
                 "<busconfig><type>session</type><listen>%s</listen><auth>EXTERNAL</auth>\n"
                 "<policy context=\"default\"><allow send_destination=\"*\" eavesdrop=\"true\"/>"
                 "<allow eavesdrop=\"true\"/><allow own=\"*\"/></policy></busconfig>\n", address);
        snprintf(conf, sizeof(conf), "--config-file=%s/own-bus.conf", d.dir);
        ck_assert_int_eq(write_text_file(conf + strlen("--config-file="), text), 0);

        bus = own_bus_start(conf);
        for (int i = 0; i < 200 && access(sock, F_OK) < 0; i++)
                usleep(20 * 1000);
        start_daemon_on(address, env);
        ck_assert(name_has_owner(address));
        ck_assert_int_ge(harness_doveadm(&h, who1, sizeof(who1), "who", "-1", "user1", NULL), 0);

        /* the bus goes */
        client_close();
        kill(bus, SIGTERM);
        waitpid(bus, &status, 0);
        wait_log("the session bus went away", 1, 5000);
        /* waiting for it costs nothing: no busy loop */
        unsigned long t = cpu_ticks(d.pid);
        usleep(2000 * 1000);
        ck_assert_uint_le(cpu_ticks(d.pid) - t, 10);
        ck_assert_int_eq(kill(d.pid, 0), 0);

        /* and comes back at the same address: the name returns within the retry interval */
        unlink(sock);
        bus = own_bus_start(conf);
        uint64_t deadline = now_ms() + 15000;
        while (!name_has_owner(address)) {
                ck_assert_msg(now_ms() < deadline, "the name did not come back; log:\n%s", log_tail());
                usleep(100 * 1000);
        }
        wait_log("on the session bus again as org.imapidled.Daemon1", 1, 2000);

        /* everything is there again, and new mail is announced on the new bus */
        client = client_open(address);
        assert_prop_s(ROOT, MANAGER, "State", "ok");
        assert_prop_s(PATH_DRAFTS, MAILBOX, "Name", DRAFTS);
        ck_assert_int_eq(harness_mail(&h, "user1", "INBOX", "a@example.org", "after the bus came back", NULL, &uid),
                         0);
        sd_bus_message_unref(wait_signal(ROOT, MANAGER, "NewMail", pred_uid, &uid, 15000));

        /* IMAP did not notice: the same server processes, no reconnect */
        ck_assert_int_ge(harness_doveadm(&h, who2, sizeof(who2), "who", "-1", "user1", NULL), 0);
        ck_assert_str_eq(who1, who2);
        ck_assert_uint_eq(daemon_runner_count(&d, "reconnecting"), 0);

        client_close();
        daemon_runner_stop(&d, SIGTERM);
        kill(bus, SIGTERM);
        waitpid(bus, NULL, 0);
}
END_TEST

/* No session bus at all: a warning, and the mail is still watched. */
START_TEST(test_no_session_bus) {
        const char *env[] = { "DBUS_SESSION_BUS_ADDRESS=unix:path=/nonexistent/bus", NULL };

        ck_assert_int_eq(daemon_runner_start(&d, NULL, env, false), 0);
        ck_assert(daemon_runner_wait_notify(&d, "READY=1", 10000));
        ck_assert(daemon_runner_wait_notify(&d, "STATUS=3/3 mailboxes idle", 15000));
        ck_assert_msg(strstr(daemon_runner_log(&d), "running without D-Bus"), "%s", log_tail());
        ck_assert_int_eq(harness_deliver(&h, "user1", "INBOX", "a@example.org", "no bus"), 0);
        wait_log("main: new mail in INBOX", 1, 15000);
}
END_TEST

/* One case per test, so that CK_RUN_CASE=reload runs one. */
static void add_case(Suite *s, const char *name, const TTest *test) {
        TCase *tc = tcase_create(name);

        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_set_timeout(tc, 90);
        tcase_add_test(tc, test);
        suite_add_tcase(s, tc);
}

int main(void) {
        Suite *s = suite_create("bus");
        SRunner *sr;
        int failed;

        add_case(s, "introspection", test_introspection_matches_xml);
        add_case(s, "new-mail", test_new_mail_signal);
        add_case(s, "mail-removed", test_mail_removed_signal);
        add_case(s, "unseen", test_unseen_properties);
        add_case(s, "paused", test_paused);
        add_case(s, "list-mailboxes", test_list_mailboxes);
        add_case(s, "reload", test_reload);
        add_case(s, "mark-seen", test_mark_seen_errors);
        add_case(s, "mark-seen-flag", test_mark_seen_sets_flag);
        add_case(s, "second-daemon", test_second_daemon);
        add_case(s, "server-down", test_server_down_state_and_check_now);
        add_case(s, "bus-restart", test_session_bus_restart);
        add_case(s, "no-session-bus", test_no_session_bus);
        sr = srunner_create(s);
        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
