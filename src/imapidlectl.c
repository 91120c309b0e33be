/* SPDX-License-Identifier: MIT */
/*
 * imapidlectl: the command-line client of imapidled's D-Bus API (SPEC §5, §7;
 * the contract is dbus/org.imapidled.Daemon1.*.xml).
 *
 *   imapidlectl [status [--json]]
 *   imapidlectl watch [--format text|json|waybar|i3blocks]
 *   imapidlectl check-now | reload | pause | resume
 *   imapidlectl mark-seen ACCOUNT MAILBOX UID
 *
 * Exit status: 0 success, 1 error, 3 the daemon is not running. Every call
 * carries NO_AUTO_START: imapidlectl never starts the daemon through D-Bus
 * activation, so "not running" means what it says and a status bar does not
 * start a daemon the user stopped.
 *
 * `watch` keeps one connection, subscribes to every signal the daemon sends
 * under /org/imapidled/Daemon1 (NewMail, MailRemoved, AccountStateChanged,
 * PropertiesChanged, InterfacesAdded/Removed) and to NameOwnerChanged for its
 * name, and on each burst re-reads the whole state (three calls) and prints it
 * if what it shows changed. It never polls: the only timer coalesces a burst
 * (WATCH_COALESCE_USEC), or retries while the state cannot be read.
 */

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>

#include "ctl-render.h"
#include "macro.h"

#define DAEMON_NAME   "org.imapidled.Daemon1"
#define DAEMON_PATH   "/org/imapidled/Daemon1"
#define MANAGER_IFACE DAEMON_NAME ".Manager"
#define ACCOUNT_IFACE DAEMON_NAME ".Account"
#define MAILBOX_IFACE DAEMON_NAME ".Mailbox"
#define ERROR_PREFIX  DAEMON_NAME ".Error."

#define EXIT_NOT_RUNNING 3

#define USEC_PER_MSEC 1000ULL
/* Changes this close together are printed as one update: a delivery of 50
 * messages is one line, not 150 (NewMail, and PropertiesChanged on the
 * mailbox, the account and the manager for each). */
#define WATCH_COALESCE_USEC (100 * USEC_PER_MSEC)
/* While the daemon owns its name but its state cannot be read. */
#define WATCH_RETRY_USEC (5000 * USEC_PER_MSEC)

static bool streq(const char *a, const char *b) {
        return strcmp(a ? a : "", b ? b : "") == 0;
}

/* ---- errors -------------------------------------------------------------- */

static int not_running(void) {
        fputs("imapidled is not running. Start it with: systemctl --user start imapidled "
              "(or run imapidled in a terminal)\n",
              stderr);
        return EXIT_NOT_RUNNING;
}

static bool error_is_not_running(const sd_bus_error *e) {
        return sd_bus_error_has_names(e, SD_BUS_ERROR_SERVICE_UNKNOWN, SD_BUS_ERROR_NAME_HAS_NO_OWNER);
}

/* Server text on our stderr: control bytes shown as spaces; with indent,
 * each line indented by two spaces (a multi-line message: one problem each). */
static void put_message(const char *s, bool indent) {
        if (indent)
                fputs("  ", stderr);
        for (; *s; s++)
                if (*s == '\n' && indent)
                        fputs(s[1] ? "\n  " : "", stderr);
                else
                        fputc((unsigned char) *s < 0x20 || *s == 0x7f ? ' ' : *s, stderr);
}

/* What the MarkSeen errors are about, for their messages. */
struct mark_seen_args {
        const char *account, *mailbox;
        uint32_t uid;
};

/* Reports a failed call (e set, or only r) in friendly terms and returns the
 * exit status: EXIT_NOT_RUNNING when nobody owns the name, else EXIT_FAILURE. */
static int fail_call(const char *command, const sd_bus_error *e, int r, const struct mark_seen_args *ms) {
        char buf[1024];
        const char *friendly = NULL, *detail = e->message;

        if (error_is_not_running(e))
                return not_running();
        if (!sd_bus_error_is_set(e)) {
                fprintf(stderr, "imapidlectl: %s: %s\n", command, strerror(r < 0 ? -r : EIO));
                return EXIT_FAILURE;
        }

        if (sd_bus_error_has_name(e, ERROR_PREFIX "NoSuchAccount")) {
                friendly = "no such account";
                if (ms) {
                        snprintf(buf, sizeof(buf), "no account '%s' is configured", ms->account);
                        friendly = buf, detail = NULL;
                }
        } else if (sd_bus_error_has_name(e, ERROR_PREFIX "NoSuchMailbox")) {
                friendly = "no such mailbox";
                if (ms) {
                        snprintf(buf, sizeof(buf), "account '%s' does not watch a mailbox '%s'", ms->account,
                                 ms->mailbox);
                        friendly = buf, detail = NULL;
                }
        } else if (sd_bus_error_has_name(e, ERROR_PREFIX "NoSuchMessage")) {
                friendly = "no such message";
                if (ms) {
                        snprintf(buf, sizeof(buf), "no message with UID %" PRIu32 " in %s/%s (never there, or expunged)",
                                 ms->uid, ms->account, ms->mailbox);
                        friendly = buf, detail = NULL;
                }
        } else if (sd_bus_error_has_name(e, ERROR_PREFIX "Failed"))
                friendly = streq(command, "reload")
                                   ? "the configuration was not accepted; the running configuration stays in force"
                                   : "imapidled could not do it";
        else if (sd_bus_error_has_name(e, SD_BUS_ERROR_INVALID_ARGS))
                friendly = "imapidled rejected the arguments";
        else if (sd_bus_error_has_names(e, SD_BUS_ERROR_ACCESS_DENIED, SD_BUS_ERROR_AUTH_FAILED,
                                        SD_BUS_ERROR_INTERACTIVE_AUTHORIZATION_REQUIRED))
                friendly = "permission denied";
        else if (sd_bus_error_has_names(e, SD_BUS_ERROR_UNKNOWN_METHOD, SD_BUS_ERROR_UNKNOWN_OBJECT,
                                        SD_BUS_ERROR_UNKNOWN_INTERFACE, SD_BUS_ERROR_UNKNOWN_PROPERTY,
                                        SD_BUS_ERROR_PROPERTY_READ_ONLY))
                friendly = "the running imapidled does not offer this (is it another version?)";
        else if (sd_bus_error_has_names(e, SD_BUS_ERROR_NO_REPLY, SD_BUS_ERROR_TIMEOUT,
                                        "org.freedesktop.DBus.Error.TimedOut"))
                friendly = "imapidled did not answer in time";
        else if (sd_bus_error_has_name(e, SD_BUS_ERROR_DISCONNECTED))
                friendly = "lost the connection to the session bus";

        fprintf(stderr, "imapidlectl: %s: ", command);
        if (!friendly) {
                put_message(detail && *detail ? detail : e->name, false);
                fprintf(stderr, " (%s)\n", e->name);
                return EXIT_FAILURE;
        }
        fputs(friendly, stderr);
        if (detail && *detail) {
                bool lines = strchr(detail, '\n');

                fputs(lines ? ":\n" : ": ", stderr);
                put_message(detail, lines);
        }
        fputc('\n', stderr);
        return EXIT_FAILURE;
}

/* ---- calls --------------------------------------------------------------- */

/* Calls iface.member on path of the daemon, never activating it. types and
 * the arguments after it as for sd_bus_message_append (types may be NULL).
 * Returns sd_bus_call's result; error is set on every failure. */
static int call(sd_bus *bus, const char *path, const char *iface, const char *member, sd_bus_error *error,
                sd_bus_message **ret_reply, const char *types, ...) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        va_list ap;
        int r;

        r = sd_bus_message_new_method_call(bus, &m, DAEMON_NAME, path, iface, member);
        if (r >= 0)
                r = sd_bus_message_set_auto_start(m, false);
        if (r >= 0 && types) {
                va_start(ap, types);
                r = sd_bus_message_appendv(m, types, ap);
                va_end(ap);
        }
        if (r >= 0)
                r = sd_bus_call(bus, m, 0, error, ret_reply);
        if (r < 0 && !sd_bus_error_is_set(error))
                sd_bus_error_set_errno(error, r);
        return r;
}

/* 1 if someone owns the daemon's name, 0 if not, or -errno. */
static int daemon_has_owner(sd_bus *bus, sd_bus_error *error) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        int r, b;

        r = sd_bus_call_method(bus, "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus",
                               "NameHasOwner", error, &reply, "s", DAEMON_NAME);
        if (r < 0)
                return r;
        r = sd_bus_message_read(reply, "b", &b);
        return r < 0 ? r : !!b;
}

/* ---- reading the state --------------------------------------------------- */

struct prop {
        const char *name;
        char type;              /* 's' (char **), 'u' (uint32_t *), 'b' (bool *) */
        void *value;
};

static int read_variant(sd_bus_message *m, const struct prop *p) {
        char signature[2] = { p->type, 0 };
        const char *s;
        char *copy;
        int r, b;

        r = sd_bus_message_enter_container(m, 'v', signature);
        if (r < 0)
                return r;
        switch (p->type) {
        case 's':
                r = sd_bus_message_read(m, "s", &s);
                if (r < 0)
                        return r;
                copy = strdup(s);
                if (!copy)
                        return -ENOMEM;
                free(*(char **) p->value);
                *(char **) p->value = copy;
                break;
        case 'u':
                r = sd_bus_message_read(m, "u", p->value);
                break;
        case 'b':
                r = sd_bus_message_read(m, "b", &b);
                if (r >= 0)
                        *(bool *) p->value = b;
                break;
        }
        if (r < 0)
                return r;
        return sd_bus_message_exit_container(m);
}

/* Reads the a{sv} at the current position: the n props by name, everything
 * else (and a known name with an unexpected type) skipped. */
static int read_properties(sd_bus_message *m, const struct prop *props, size_t n) {
        int r;

        r = sd_bus_message_enter_container(m, 'a', "{sv}");
        if (r < 0)
                return r;
        while ((r = sd_bus_message_enter_container(m, 'e', "sv")) > 0) {
                const struct prop *p = NULL;
                const char *name, *contents;
                char type;

                r = sd_bus_message_read(m, "s", &name);
                if (r < 0)
                        return r;
                for (size_t i = 0; i < n && !p; i++)
                        if (strcmp(props[i].name, name) == 0)
                                p = &props[i];
                r = sd_bus_message_peek_type(m, &type, &contents);
                if (r < 0)
                        return r;
                if (p && contents && contents[0] == p->type && contents[1] == 0)
                        r = read_variant(m, p);
                else
                        r = sd_bus_message_skip(m, "v");
                if (r < 0)
                        return r;
                r = sd_bus_message_exit_container(m);
                if (r < 0)
                        return r;
        }
        if (r < 0)
                return r;
        return sd_bus_message_exit_container(m);
}

static void account_done(struct ctl_account *a) {
        free(a->name);
        free(a->host);
        free(a->user);
        free(a->state);
        free(a->last_error);
        *a = (struct ctl_account) {};
}

static void mailbox_done(struct ctl_mailbox *m) {
        free(m->account);
        free(m->name);
        free(m->path);
        free(m->state);
        free(m->last_error);
        *m = (struct ctl_mailbox) {};
}

/* Appends *a (its strings move into s) or frees them on failure. */
static int push_account(struct ctl_state *s, struct ctl_account *a) {
        struct ctl_account *n = reallocarray(s->accounts, s->n_accounts + 1, sizeof(*n));

        if (!n) {
                account_done(a);
                return -ENOMEM;
        }
        s->accounts = n;
        s->accounts[s->n_accounts++] = *a;
        *a = (struct ctl_account) {};
        return 0;
}

static int push_mailbox(struct ctl_state *s, struct ctl_mailbox *m) {
        struct ctl_mailbox *n = reallocarray(s->mailboxes, s->n_mailboxes + 1, sizeof(*n));

        if (!n) {
                mailbox_done(m);
                return -ENOMEM;
        }
        s->mailboxes = n;
        s->mailboxes[s->n_mailboxes++] = *m;
        *m = (struct ctl_mailbox) {};
        return 0;
}

/* ListMailboxes' a(ssouus) into s->mailboxes. */
static int read_mailbox_list(sd_bus_message *reply, struct ctl_state *s) {
        const char *account, *name, *path, *state;
        uint32_t unseen, exists;
        int r;

        r = sd_bus_message_enter_container(reply, 'a', "(ssouus)");
        if (r < 0)
                return r;
        while ((r = sd_bus_message_read(reply, "(ssouus)", &account, &name, &path, &unseen, &exists, &state)) > 0) {
                struct ctl_mailbox m = {
                        .account = strdup(account),
                        .name = strdup(name),
                        .path = strdup(path),
                        .state = strdup(state),
                        .last_error = strdup(""),
                        .unseen = unseen,
                        .exists = exists,
                };

                if (!m.account || !m.name || !m.path || !m.state || !m.last_error) {
                        mailbox_done(&m);
                        return -ENOMEM;
                }
                r = push_mailbox(s, &m);
                if (r < 0)
                        return r;
        }
        if (r < 0)
                return r;
        return sd_bus_message_exit_container(reply);
}

/* GetManagedObjects' a{oa{sa{sv}}}: the Account and Mailbox objects with
 * their properties into om->accounts and om->mailboxes (path set). */
static int read_managed_objects(sd_bus_message *reply, struct ctl_state *om) {
        int r;

        r = sd_bus_message_enter_container(reply, 'a', "{oa{sa{sv}}}");
        if (r < 0)
                return r;
        while ((r = sd_bus_message_enter_container(reply, 'e', "oa{sa{sv}}")) > 0) {
                const char *path;

                r = sd_bus_message_read(reply, "o", &path);
                if (r < 0)
                        return r;
                r = sd_bus_message_enter_container(reply, 'a', "{sa{sv}}");
                if (r < 0)
                        return r;
                while ((r = sd_bus_message_enter_container(reply, 'e', "sa{sv}")) > 0) {
                        struct ctl_account a = {};
                        struct ctl_mailbox m = {};
                        const char *iface;

                        r = sd_bus_message_read(reply, "s", &iface);
                        if (r < 0)
                                return r;
                        if (streq(iface, ACCOUNT_IFACE)) {
                                const struct prop props[] = {
                                        { "Name", 's', &a.name },        { "Host", 's', &a.host },
                                        { "User", 's', &a.user },        { "State", 's', &a.state },
                                        { "LastError", 's', &a.last_error }, { "Unseen", 'u', &a.unseen },
                                };

                                r = read_properties(reply, props, ELEMENTSOF(props));
                                if (r >= 0 && a.name)
                                        r = push_account(om, &a);
                                account_done(&a);
                        } else if (streq(iface, MAILBOX_IFACE)) {
                                const struct prop props[] = {
                                        { "Account", 's', &m.account },      { "Name", 's', &m.name },
                                        { "State", 's', &m.state },          { "Unseen", 'u', &m.unseen },
                                        { "Exists", 'u', &m.exists },        { "UidValidity", 'u', &m.uid_validity },
                                        { "UidNext", 'u', &m.uid_next },     { "LastError", 's', &m.last_error },
                                };

                                m.path = strdup(path);
                                r = m.path ? read_properties(reply, props, ELEMENTSOF(props)) : -ENOMEM;
                                if (r >= 0)
                                        r = push_mailbox(om, &m);
                                mailbox_done(&m);
                        } else
                                r = sd_bus_message_skip(reply, "a{sv}");
                        if (r < 0)
                                return r;
                        r = sd_bus_message_exit_container(reply);
                        if (r < 0)
                                return r;
                }
                if (r < 0)
                        return r;
                r = sd_bus_message_exit_container(reply);
                if (r < 0)
                        return r;
                r = sd_bus_message_exit_container(reply);
                if (r < 0)
                        return r;
        }
        if (r < 0)
                return r;
        return sd_bus_message_exit_container(reply);
}

static struct ctl_account *find_account(struct ctl_state *s, const char *name) {
        for (size_t i = 0; i < s->n_accounts; i++)
                if (s->accounts[i].name && streq(s->accounts[i].name, name))
                        return &s->accounts[i];
        return NULL;
}

static int ensure_string(char **p) {
        if (!*p)
                *p = strdup("");
        return *p ? 0 : -ENOMEM;
}

/* The accounts of s: in the order of their first mailbox, with the
 * ObjectManager's details (om, consumed) where it had them; then accounts
 * without mailboxes. Mailboxes get LastError, UidValidity, UidNext from om. */
static int merge_details(struct ctl_state *s, struct ctl_state *om) {
        int r;

        for (size_t i = 0; i < s->n_mailboxes; i++) {
                struct ctl_mailbox *m = &s->mailboxes[i];

                for (size_t j = 0; j < om->n_mailboxes; j++) {
                        struct ctl_mailbox *o = &om->mailboxes[j];

                        if (!streq(o->path, m->path))
                                continue;
                        if (o->last_error) {
                                free(m->last_error);
                                m->last_error = TAKE_PTR(o->last_error);
                        }
                        m->uid_validity = o->uid_validity;
                        m->uid_next = o->uid_next;
                }
        }
        for (size_t i = 0; i < s->n_mailboxes; i++) {
                struct ctl_account *o, a = {};

                if (find_account(s, s->mailboxes[i].account))
                        continue;
                o = find_account(om, s->mailboxes[i].account);
                if (o) {
                        a = *o;
                        *o = (struct ctl_account) {};
                } else {
                        a.name = strdup(s->mailboxes[i].account);
                        if (!a.name)
                                return -ENOMEM;
                        for (size_t j = 0; j < s->n_mailboxes; j++)
                                if (streq(s->mailboxes[j].account, s->mailboxes[i].account))
                                        a.unseen += s->mailboxes[j].unseen;
                }
                r = push_account(s, &a);
                if (r < 0)
                        return r;
        }
        for (size_t i = 0; i < om->n_accounts; i++)
                if (om->accounts[i].name && !find_account(s, om->accounts[i].name)) {
                        r = push_account(s, &om->accounts[i]);
                        if (r < 0)
                                return r;
                }
        for (size_t i = 0; i < s->n_accounts; i++) {
                struct ctl_account *a = &s->accounts[i];

                if (ensure_string(&a->name) < 0 || ensure_string(&a->host) < 0 || ensure_string(&a->user) < 0 ||
                    ensure_string(&a->state) < 0 || ensure_string(&a->last_error) < 0)
                        return -ENOMEM;
        }
        if (ensure_string(&s->version) < 0 || ensure_string(&s->state) < 0)
                return -ENOMEM;
        return 0;
}

/* Reads the daemon's state into *ret (zeroed first; on failure it holds
 * whatever was read and must be freed all the same). The ObjectManager only
 * adds detail: if it fails, accounts are derived from ListMailboxes. */
static int fetch_state(sd_bus *bus, struct ctl_state *ret, sd_bus_error *error) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        _cleanup_(sd_bus_error_free) sd_bus_error om_error = SD_BUS_ERROR_NULL;
        struct ctl_state om = {};
        int r;

        *ret = (struct ctl_state) { .daemon = CTL_DAEMON_RUNNING };
        const struct prop manager[] = {
                { "Version", 's', &ret->version },
                { "Paused", 'b', &ret->paused },
                { "UnseenTotal", 'u', &ret->unseen_total },
                { "State", 's', &ret->state },
        };

        r = call(bus, DAEMON_PATH, "org.freedesktop.DBus.Properties", "GetAll", error, &reply, "s", MANAGER_IFACE);
        if (r >= 0)
                r = read_properties(reply, manager, ELEMENTSOF(manager));
        if (r < 0)
                goto fail;
        reply = sd_bus_message_unref(reply);

        r = call(bus, DAEMON_PATH, MANAGER_IFACE, "ListMailboxes", error, &reply, NULL);
        if (r >= 0)
                r = read_mailbox_list(reply, ret);
        if (r < 0)
                goto fail;
        reply = sd_bus_message_unref(reply);

        r = call(bus, DAEMON_PATH, "org.freedesktop.DBus.ObjectManager", "GetManagedObjects", &om_error, &reply,
                 NULL);
        if (r >= 0)
                r = read_managed_objects(reply, &om);
        if (r < 0) {
                if (error_is_not_running(&om_error)) {
                        sd_bus_error_move(error, &om_error);
                        goto fail;
                }
                ctl_state_done(&om);            /* no details, then */
        }
        r = merge_details(ret, &om);
        ctl_state_done(&om);
        if (r < 0)
                sd_bus_error_set_errno(error, r);
        return r;

fail:
        if (!sd_bus_error_is_set(error))
                sd_bus_error_setf(error, SD_BUS_ERROR_INCONSISTENT_MESSAGE, "unexpected reply from imapidled: %s",
                                  strerror(-r));
        ctl_state_done(&om);
        return r < 0 ? r : -EIO;
}

/* ---- output -------------------------------------------------------------- */

/* Writes s to stdout and flushes. 0, or -errno (EPIPE: the reader is gone). */
static int output(const char *s) {
        if (fputs(s, stdout) == EOF || fflush(stdout) == EOF)
                return errno > 0 ? -errno : -EIO;
        return 0;
}

static int fail_output(int r) {
        if (r == -EPIPE)
                return EXIT_SUCCESS;    /* like `yes | head`: the reader has what it wanted */
        fprintf(stderr, "imapidlectl: writing to standard output: %s\n", strerror(-r));
        return EXIT_FAILURE;
}

/* ---- commands ------------------------------------------------------------ */

/* The session bus, and the daemon on it. Returns 0, or the exit status. */
static int connect_daemon(sd_bus **ret, bool need_daemon) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        sd_bus *bus = NULL;
        int r;

        r = sd_bus_open_user(&bus);
        if (r < 0) {
                fprintf(stderr, "imapidlectl: cannot connect to the session bus: %s\n", strerror(-r));
                return EXIT_FAILURE;
        }
        if (need_daemon) {
                r = daemon_has_owner(bus, &error);
                if (r == 0) {
                        sd_bus_flush_close_unref(bus);
                        return not_running();
                }
                if (r < 0) {
                        fprintf(stderr, "imapidlectl: asking the session bus for %s: %s\n", DAEMON_NAME,
                                error.message ? error.message : strerror(-r));
                        sd_bus_flush_close_unref(bus);
                        return EXIT_FAILURE;
                }
        }
        *ret = bus;
        return 0;
}

static int cmd_status(bool json) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_free_ char *text = NULL;
        struct ctl_state s;
        int r;

        r = connect_daemon(&bus, true);
        if (r != 0)
                return r;
        r = fetch_state(bus, &s, &error);
        if (r < 0) {
                ctl_state_done(&s);
                return fail_call("status", &error, r, NULL);
        }
        r = json ? ctl_render_json(&s, &text) : ctl_render_table(&s, &text);
        ctl_state_done(&s);
        if (r < 0) {
                fprintf(stderr, "imapidlectl: out of memory\n");
                return EXIT_FAILURE;
        }
        r = output(text);
        return r < 0 ? fail_output(r) : EXIT_SUCCESS;
}

/* check-now, reload, pause, resume, mark-seen: one call, silent on success. */
static int cmd_call(const char *command, const struct mark_seen_args *ms) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        int r;

        r = connect_daemon(&bus, true);
        if (r != 0)
                return r;
        if (streq(command, "check-now"))
                r = call(bus, DAEMON_PATH, MANAGER_IFACE, "CheckNow", &error, NULL, NULL);
        else if (streq(command, "reload"))
                r = call(bus, DAEMON_PATH, MANAGER_IFACE, "Reload", &error, NULL, NULL);
        else if (streq(command, "pause") || streq(command, "resume"))
                r = call(bus, DAEMON_PATH, "org.freedesktop.DBus.Properties", "Set", &error, NULL, "ssv",
                         MANAGER_IFACE, "Paused", "b", (int) streq(command, "pause"));
        else
                r = call(bus, DAEMON_PATH, MANAGER_IFACE, "MarkSeen", &error, NULL, "ssu", ms->account, ms->mailbox,
                         ms->uid);
        return r < 0 ? fail_call(command, &error, r, ms) : EXIT_SUCCESS;
}

/* ---- watch --------------------------------------------------------------- */

struct watch {
        sd_event *event;
        sd_bus *bus;
        enum ctl_format format;
        sd_event_source *timer;         /* a pending refresh */
        bool owned;                     /* someone owns the daemon's name */
        char *last;                     /* the last update printed */
};

static void watch_exit(struct watch *w, int status) {
        sd_event_exit(w->event, status);
}

/* Prints s unless it shows what the last update showed. */
static void watch_print(struct watch *w, const struct ctl_state *s) {
        char *text = NULL;
        int r;

        r = ctl_render_update(s, w->format, &text);
        if (r < 0) {
                fprintf(stderr, "imapidlectl: out of memory\n");
                watch_exit(w, EXIT_FAILURE);
                return;
        }
        if (w->last && streq(w->last, text)) {
                free(text);
                return;
        }
        free(w->last);
        w->last = text;
        r = output(text);
        if (r < 0)
                watch_exit(w, fail_output(r));
}

/* Arms the refresh timer to fire within usec (sooner if it already would). */
static void watch_schedule(struct watch *w, uint64_t usec) {
        uint64_t now, when;
        int enabled = 0, r;

        r = sd_event_now(w->event, CLOCK_MONOTONIC, &now);
        if (r < 0) {
                watch_exit(w, EXIT_FAILURE);
                return;
        }
        if (sd_event_source_get_enabled(w->timer, &enabled) > 0 && sd_event_source_get_time(w->timer, &when) >= 0 &&
            when <= now + usec)
                return;
        r = sd_event_source_set_time(w->timer, now + usec);
        if (r >= 0)
                r = sd_event_source_set_enabled(w->timer, SD_EVENT_ONESHOT);
        if (r < 0) {
                fprintf(stderr, "imapidlectl: arming a timer: %s\n", strerror(-r));
                watch_exit(w, EXIT_FAILURE);
        }
}

static void watch_refresh(struct watch *w) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        struct ctl_state s = { .daemon = CTL_DAEMON_NOT_RUNNING };
        int r;

        sd_event_source_set_enabled(w->timer, SD_EVENT_OFF);
        if (w->owned) {
                r = fetch_state(w->bus, &s, &error);
                if (r < 0) {
                        ctl_state_done(&s);
                        if (error_is_not_running(&error))
                                s.daemon = CTL_DAEMON_NOT_RUNNING;      /* NameOwnerChanged is on its way */
                        else {
                                s.daemon = CTL_DAEMON_ERROR;
                                s.error = strdup(error.message ? error.message : strerror(-r));
                                watch_schedule(w, WATCH_RETRY_USEC);
                        }
                }
        }
        watch_print(w, &s);
        ctl_state_done(&s);
}

static int on_timer(sd_event_source *source, uint64_t usec, void *userdata) {
        watch_refresh(userdata);
        return 0;
}

/* Any signal of the daemon under its object tree. */
static int match_daemon_signal(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        struct watch *w = userdata;

        if (w->owned)
                watch_schedule(w, WATCH_COALESCE_USEC);
        return 0;
}

static int match_name_owner_changed(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        struct watch *w = userdata;
        const char *name, *old_owner, *new_owner;

        if (sd_bus_message_read(m, "sss", &name, &old_owner, &new_owner) < 0 || !streq(name, DAEMON_NAME))
                return 0;
        w->owned = *new_owner != 0;
        if (w->owned)
                watch_schedule(w, WATCH_COALESCE_USEC);
        else
                watch_refresh(w);       /* offline at once */
        return 0;
}

static int match_disconnected(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        fprintf(stderr, "imapidlectl: lost the connection to the session bus\n");
        watch_exit(userdata, EXIT_FAILURE);
        return 0;
}

static int cmd_watch(enum ctl_format format) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        struct watch w = { .format = format };
        sigset_t mask;
        int r;

        r = connect_daemon(&w.bus, false);
        if (r != 0)
                return r;
        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigprocmask(SIG_BLOCK, &mask, NULL);

        r = sd_event_default(&w.event);
        if (r >= 0)
                r = sd_event_add_signal(w.event, NULL, SIGTERM, NULL, NULL);
        if (r >= 0)
                r = sd_event_add_signal(w.event, NULL, SIGINT, NULL, NULL);
        if (r >= 0)
                r = sd_event_add_time_relative(w.event, &w.timer, CLOCK_MONOTONIC, WATCH_COALESCE_USEC,
                                               USEC_PER_MSEC, on_timer, &w);
        if (r >= 0)
                r = sd_event_source_set_enabled(w.timer, SD_EVENT_OFF);
        if (r >= 0)
                r = sd_bus_attach_event(w.bus, w.event, SD_EVENT_PRIORITY_NORMAL);
        if (r < 0) {
                fprintf(stderr, "imapidlectl: setting up the event loop: %s\n", strerror(-r));
                goto finish;
        }

        /* Subscribe first, then read: a change in between is not lost. */
        r = sd_bus_match_signal(w.bus, NULL, NULL, "/org/freedesktop/DBus/Local", "org.freedesktop.DBus.Local",
                                "Disconnected", match_disconnected, &w);
        if (r >= 0)
                r = sd_bus_add_match(w.bus, NULL,
                                     "type='signal',sender='org.freedesktop.DBus',path='/org/freedesktop/DBus',"
                                     "interface='org.freedesktop.DBus',member='NameOwnerChanged',"
                                     "arg0='" DAEMON_NAME "'",
                                     match_name_owner_changed, &w);
        if (r >= 0)
                r = sd_bus_add_match(w.bus, NULL,
                                     "type='signal',sender='" DAEMON_NAME "',path_namespace='" DAEMON_PATH "'",
                                     match_daemon_signal, &w);
        if (r < 0) {
                fprintf(stderr, "imapidlectl: subscribing to the daemon's signals: %s\n", strerror(-r));
                goto finish;
        }
        r = daemon_has_owner(w.bus, &error);
        if (r < 0) {
                fprintf(stderr, "imapidlectl: asking the session bus for %s: %s\n", DAEMON_NAME,
                        error.message ? error.message : strerror(-r));
                goto finish;
        }
        w.owned = r > 0;
        watch_refresh(&w);

        r = sd_event_loop(w.event);
        if (r < 0)
                fprintf(stderr, "imapidlectl: event loop: %s\n", strerror(-r));

finish:
        sd_event_source_unref(w.timer);
        sd_bus_flush_close_unref(w.bus);
        sd_event_unref(w.event);
        free(w.last);
        return r < 0 ? EXIT_FAILURE : r;
}

/* ---- command line -------------------------------------------------------- */

static void help(void) {
        printf("Usage: imapidlectl [OPTIONS] [COMMAND]\n"
               "\n"
               "Query and control imapidled, the IMAP push-mail notifier, over D-Bus.\n"
               "\n"
               "Commands:\n"
               "  status [--json]        accounts, mailboxes and unseen counts (the default)\n"
               "  watch [--format FMT]   print the state now and again on every change;\n"
               "                         FMT: text (default), json, waybar, i3blocks\n"
               "  check-now              look for new mail on every account now\n"
               "  reload                 re-read the configuration file\n"
               "  pause                  no desktop notifications until resume\n"
               "  resume                 show desktop notifications again\n"
               "  mark-seen ACCOUNT MAILBOX UID\n"
               "                         mark one message as read on the server\n"
               "\n"
               "Options:\n"
               "  -h, --help             print this help and exit\n"
               "      --version          print the version and exit\n"
               "\n"
               "Exit status: 0 success, 1 error, 3 imapidled is not running.\n"
               "See imapidlectl(1).\n");
}

/* A UID: decimal digits only, 1 .. 4294967295. */
static int parse_uid(const char *s, uint32_t *ret) {
        unsigned long long v;
        char *end;

        if (!*s)
                return -EINVAL;
        for (const char *p = s; *p; p++)
                if (!isdigit((unsigned char) *p))
                        return -EINVAL;
        errno = 0;
        v = strtoull(s, &end, 10);
        if (errno != 0 || *end || v == 0 || v > UINT32_MAX)
                return -ERANGE;
        *ret = (uint32_t) v;
        return 0;
}

_attribute_printf_(2, 3) static int usage_error(const char *command, const char *fmt, ...) {
        va_list ap;

        fprintf(stderr, "imapidlectl: %s%s", command ? command : "", command ? ": " : "");
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fprintf(stderr, "\nTry 'imapidlectl --help'.\n");
        return EXIT_FAILURE;
}

/* One command: argv[0] is its name. */
static int run_command(int argc, char *argv[]) {
        enum { ARG_JSON = 0x100, ARG_FORMAT };
        static const struct option options[] = {
                { "help", no_argument, NULL, 'h' },
                { "json", no_argument, NULL, ARG_JSON },
                { "format", required_argument, NULL, ARG_FORMAT },
                {}
        };
        const char *command = argv[0];
        bool status = streq(command, "status"), watch = streq(command, "watch"), json = false;
        int format = CTL_FORMAT_TEXT, c;

        if (!status && !watch && !streq(command, "check-now") && !streq(command, "reload") &&
            !streq(command, "pause") && !streq(command, "resume") && !streq(command, "mark-seen"))
                return usage_error(NULL, "unknown command '%s'", command);

        optind = 0;
        opterr = 0;
        while ((c = getopt_long(argc, argv, "+h", options, NULL)) >= 0)
                switch (c) {
                case 'h':
                        help();
                        return EXIT_SUCCESS;
                case ARG_JSON:
                        if (!status)
                                return usage_error(command, "--json is an option of status");
                        json = true;
                        break;
                case ARG_FORMAT:
                        if (!watch)
                                return usage_error(command, "--format is an option of watch");
                        format = ctl_format_from_string(optarg);
                        if (format < 0)
                                return usage_error(command, "unknown format '%s' (text, json, waybar, i3blocks)",
                                                   optarg);
                        break;
                default:
                        return usage_error(command, "unknown option or missing argument '%s'", argv[optind - 1]);
                }
        argc -= optind;
        argv += optind;

        if (streq(command, "mark-seen")) {
                struct mark_seen_args ms;

                if (argc != 3)
                        return usage_error(command, "needs ACCOUNT MAILBOX UID");
                ms = (struct mark_seen_args) { .account = argv[0], .mailbox = argv[1] };
                if (parse_uid(argv[2], &ms.uid) < 0) {
                        fprintf(stderr, "imapidlectl: mark-seen: invalid UID '%s': a number from 1 to 4294967295\n",
                                argv[2]);
                        return EXIT_FAILURE;
                }
                return cmd_call(command, &ms);
        }
        if (argc > 0)
                return usage_error(command, "unexpected argument '%s'", argv[0]);
        if (status)
                return cmd_status(json);
        if (watch)
                return cmd_watch((enum ctl_format) format);
        return cmd_call(command, NULL);
}

int main(int argc, char *argv[]) {
        enum { ARG_VERSION = 0x100 };
        static const struct option options[] = {
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, ARG_VERSION },
                {}
        };
        static char status_command[] = "status";
        char *default_argv[] = { status_command, NULL };
        int c;

        /* A status bar that goes away closes our stdout: see output(). */
        signal(SIGPIPE, SIG_IGN);

        opterr = 0;
        while ((c = getopt_long(argc, argv, "+h", options, NULL)) >= 0)
                switch (c) {
                case 'h':
                        help();
                        return EXIT_SUCCESS;
                case ARG_VERSION:
                        printf("imapidlectl %s\n", IMAPIDLED_VERSION);
                        return EXIT_SUCCESS;
                default:
                        return usage_error(NULL, "unknown option '%s'", argv[optind - 1]);
                }
        if (optind >= argc)
                return run_command(1, default_argv);
        return run_command(argc - optind, argv + optind);
}
