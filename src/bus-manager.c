/* SPDX-License-Identifier: MIT */
/*
 * org.imapidled.Daemon1.Manager on /org/imapidled/Daemon1, with the
 * ObjectManager (dbus/org.imapidled.Daemon1.Manager.xml).
 */

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "account.h"
#include "bus-internal.h"
#include "bus.h"
#include "daemon.h"
#include "log.h"
#include "macro.h"

/* In the order of the BUS_MANAGER_* bits. */
static const char *const manager_property_names[] = { "Paused", "UnseenTotal", "State" };

/* ---- properties ---------------------------------------------------------- */

static int property_get_version(sd_bus *bus, const char *path, const char *interface, const char *property,
                                sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        return sd_bus_message_append(reply, "s", IMAPIDLED_VERSION);
}

static int property_get_paused(sd_bus *bus, const char *path, const char *interface, const char *property,
                               sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        struct bus *b = userdata;

        return sd_bus_message_append(reply, "b", b->paused);
}

static int property_set_paused(sd_bus *bus, const char *path, const char *interface, const char *property,
                               sd_bus_message *value, void *userdata, sd_bus_error *error) {
        struct bus *b = userdata;
        int paused, r;

        r = sd_bus_message_read(value, "b", &paused);
        if (r < 0)
                return r;
        daemon_set_paused(b->daemon, paused);
        /* PropertiesChanged before the reply */
        bus_flush(b);
        return 0;
}

/* ---- the setters: every Manager property changes here -------------------- */

static void manager_set_paused(struct bus *b, bool paused) {
        if (b->paused == paused)
                return;
        b->paused = paused;
        b->changed |= BUS_MANAGER_PAUSED;
}

static void manager_set_unseen_total(struct bus *b, uint32_t unseen) {
        if (b->unseen_total == unseen)
                return;
        b->unseen_total = unseen;
        b->changed |= BUS_MANAGER_UNSEEN_TOTAL;
}

static void manager_set_state(struct bus *b, const char *state) {
        if (bus_set_string(&b->state, state))
                b->changed |= BUS_MANAGER_STATE;
}

/* "ok": every account is connected and working (idle, or syncing: which it
 * does for every new message, so that is not a degradation); "offline":
 * none is; "degraded": some are. No accounts is "ok". */
static const char *manager_state(const struct bus *b) {
        size_t working = 0;

        for (size_t i = 0; i < b->n_accounts; i++) {
                const char *st = b->accounts[i]->state;

                if (strcmp(st, "idle") == 0 || strcmp(st, "syncing") == 0)
                        working++;
        }
        if (working == b->n_accounts)
                return "ok";
        return working == 0 ? "offline" : "degraded";
}

void bus_manager_update(struct bus *b) {
        uint64_t unseen = 0;

        for (size_t i = 0; i < b->n_accounts; i++)
                unseen += b->accounts[i]->unseen;
        manager_set_unseen_total(b, unseen > UINT32_MAX ? UINT32_MAX : (uint32_t) unseen);
        manager_set_state(b, manager_state(b));
        manager_set_paused(b, daemon_get_paused(b->daemon));
}

void bus_manager_emit_changes(struct bus *b) {
        bus_emit_changed(b, BUS_PATH, BUS_MANAGER_INTERFACE, b->changed, manager_property_names,
                         ELEMENTSOF(manager_property_names));
        b->changed = 0;
}

/* ---- methods ------------------------------------------------------------- */

static int method_list_mailboxes(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        struct bus *b = userdata;
        int r;

        bus_flush(b);
        r = sd_bus_message_new_method_return(m, &reply);
        if (r < 0)
                return r;
        r = sd_bus_message_open_container(reply, 'a', "(ssouus)");
        if (r < 0)
                return r;
        for (size_t i = 0; i < b->n_accounts; i++)
                for (size_t j = 0; j < b->accounts[i]->n_mailboxes; j++) {
                        const struct bus_mailbox *bm = b->accounts[i]->mailboxes[j];

                        r = sd_bus_message_append(reply, "(ssouus)", bm->account, bm->name, bm->path, bm->unseen,
                                                  bm->exists, bm->state);
                        if (r < 0)
                                return r;
                }
        r = sd_bus_message_close_container(reply);
        if (r < 0)
                return r;
        return sd_bus_send(NULL, reply, NULL);
}

static int method_check_now(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        struct bus *b = userdata;

        daemon_check_now(b->daemon);
        return sd_bus_reply_method_return(m, NULL);
}

static int method_reload(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        _cleanup_free_ char *errors = NULL;
        struct bus *b = userdata;
        int r;

        r = daemon_reload_full(b->daemon, &errors);
        if (r == -ENOMEM)
                return r;
        if (r < 0)
                /* the first line is the summary, the problems follow one per line */
                return sd_bus_error_setf(error, BUS_ERROR_FAILED, "the new configuration is not valid; see the log%s%s",
                                         errors && *errors ? "\n" : "", errors ? errors : "");
        /* InterfacesAdded/Removed before the reply */
        bus_flush(b);
        return sd_bus_reply_method_return(m, NULL);
}

/* The reply to MarkSeen, once the server has answered. */
static void on_marked_seen(int r, const char *message, void *userdata) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *call = userdata;

        if (r == 0)
                (void) sd_bus_reply_method_return(call, NULL);
        else if (r == -ENOENT)
                (void) sd_bus_reply_method_errorf(call, BUS_ERROR_NO_SUCH_MESSAGE, "%s", message);
        else
                (void) sd_bus_reply_method_errorf(call, BUS_ERROR_FAILED, "%s", message && *message ? message
                                                  : "the server did not mark the message read");
}

static int method_mark_seen(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        struct bus *b = userdata;
        const char *account, *mailbox;
        struct account *a;
        uint32_t uid;
        bool found = false;
        int r;

        r = sd_bus_message_read(m, "ssu", &account, &mailbox, &uid);
        if (r < 0)
                return r;
        if (uid == 0)
                return sd_bus_error_set(error, SD_BUS_ERROR_INVALID_ARGS, "UID 0 names no message");
        a = daemon_find_account(b->daemon, account);
        if (!a)
                return sd_bus_error_setf(error, BUS_ERROR_NO_SUCH_ACCOUNT, "no account \"%s\" is configured", account);
        for (unsigned i = 0; i < account_n_mailboxes(a) && !found; i++) {
                struct mail_mailbox_info info;

                account_mailbox_info(a, i, &info);
                found = strcmp(info.mailbox, mailbox) == 0 ||
                        (strcasecmp(info.mailbox, "INBOX") == 0 && strcasecmp(mailbox, "INBOX") == 0);
        }
        if (!found)
                return sd_bus_error_setf(error, BUS_ERROR_NO_SUCH_MAILBOX, "account \"%s\" does not watch a mailbox \"%s\"",
                                         account, mailbox);

        /* answered when the extra connection is done: keep the call */
        r = account_mark_seen(a, mailbox, uid, on_marked_seen, sd_bus_message_ref(m));
        if (r < 0) {
                sd_bus_message_unref(m);
                return sd_bus_error_set_errnof(error, r, "cannot mark UID %u in %s read: %m", uid, mailbox);
        }
        return 1;
}

/* ---- signals ------------------------------------------------------------- */

void bus_manager_emit_new_mail(struct bus *b, const struct mail_message *msg) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        _cleanup_free_ char *path = NULL, *b_account = NULL, *b_mailbox = NULL, *b_from = NULL, *b_subject = NULL,
                            *b_address = NULL, *b_id = NULL;
        int r;

        if (!bus_can_emit(b))
                return;
        path = bus_mailbox_path(msg->account, msg->mailbox);
        if (!path) {
                log_oom();
                return;
        }
        r = sd_bus_message_new_signal(b->bus, &m, BUS_PATH, BUS_MANAGER_INTERFACE, "NewMail");
        if (r >= 0)
                r = sd_bus_message_append(m, "ssuss", bus_utf8(msg->account, &b_account),
                                          bus_utf8(msg->mailbox, &b_mailbox), msg->uid, bus_utf8(msg->from, &b_from),
                                          bus_utf8(msg->subject, &b_subject));
        if (r >= 0)
                r = sd_bus_message_append(m, "a{sv}", 6,
                                          "from_address", "s", bus_utf8(msg->from_address, &b_address),
                                          "date", "x", (int64_t) msg->date,
                                          "message_id", "s", bus_utf8(msg->message_id, &b_id),
                                          "uidvalidity", "u", msg->uidvalidity,
                                          "size", "t", (uint64_t) msg->size,
                                          "mailbox_path", "o", path);
        if (r >= 0)
                r = sd_bus_send(b->bus, m, NULL);
        if (r < 0)
                log_warning_errno(r, "%s: cannot send NewMail for UID %u in %s, ignoring: %m", msg->account, msg->uid,
                                  msg->mailbox);
}

void bus_manager_emit_removed(struct bus *b, const char *account, const char *mailbox, const uint32_t *uids,
                              size_t n) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        _cleanup_free_ char *b_account = NULL, *b_mailbox = NULL;
        int r;

        if (!bus_can_emit(b))
                return;
        r = sd_bus_message_new_signal(b->bus, &m, BUS_PATH, BUS_MANAGER_INTERFACE, "MailRemoved");
        if (r >= 0)
                r = sd_bus_message_append(m, "ss", bus_utf8(account, &b_account), bus_utf8(mailbox, &b_mailbox));
        if (r >= 0)
                r = sd_bus_message_append_array(m, 'u', uids, n * sizeof(uint32_t));
        if (r >= 0)
                r = sd_bus_send(b->bus, m, NULL);
        if (r < 0)
                log_warning_errno(r, "%s: cannot send MailRemoved for %s, ignoring: %m", account, mailbox);
}

/* ---- the object ---------------------------------------------------------- */

static const sd_bus_vtable manager_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_PROPERTY("Version", "s", property_get_version, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_WRITABLE_PROPERTY("Paused", "b", property_get_paused, property_set_paused, 0,
                                 SD_BUS_VTABLE_UNPRIVILEGED | SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("UnseenTotal", "u", NULL, offsetof(struct bus, unseen_total),
                        SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("State", "s", NULL, offsetof(struct bus, state), SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),

        SD_BUS_METHOD_WITH_ARGS("ListMailboxes",
                                SD_BUS_NO_ARGS,
                                SD_BUS_RESULT("a(ssouus)", mailboxes),
                                method_list_mailboxes, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("CheckNow",
                                SD_BUS_NO_ARGS,
                                SD_BUS_NO_RESULT,
                                method_check_now, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("Reload",
                                SD_BUS_NO_ARGS,
                                SD_BUS_NO_RESULT,
                                method_reload, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("MarkSeen",
                                SD_BUS_ARGS("s", account, "s", mailbox, "u", uid),
                                SD_BUS_NO_RESULT,
                                method_mark_seen, SD_BUS_VTABLE_UNPRIVILEGED),

        SD_BUS_SIGNAL_WITH_ARGS("NewMail",
                                SD_BUS_ARGS("s", account, "s", mailbox, "u", uid, "s", from, "s", subject,
                                            "a{sv}", details),
                                0),
        SD_BUS_SIGNAL_WITH_ARGS("MailRemoved",
                                SD_BUS_ARGS("s", account, "s", mailbox, "au", uids),
                                0),
        SD_BUS_SIGNAL_WITH_ARGS("AccountStateChanged",
                                SD_BUS_ARGS("s", account, "s", state, "s", message),
                                0),
        SD_BUS_VTABLE_END
};

int bus_manager_add_objects(struct bus *b, sd_bus *bus) {
        int r;

        r = sd_bus_add_object_vtable(bus, NULL, BUS_PATH, BUS_MANAGER_INTERFACE, manager_vtable, b);
        if (r < 0)
                return r;
        return sd_bus_add_object_manager(bus, NULL, BUS_PATH);
}
