/* SPDX-License-Identifier: MIT */
/*
 * org.imapidled.Daemon1.Account on /org/imapidled/Daemon1/account/ID, one
 * object per configured account through a fallback vtable and a node
 * enumerator (dbus/org.imapidled.Daemon1.Account.xml).
 */

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "account.h"
#include "bus-internal.h"
#include "log.h"
#include "macro.h"

/* In the order of the BUS_ACCOUNT_* bits. */
static const char *const account_property_names[] = { "Host", "User", "State", "LastError", "Unseen" };

struct bus_account *bus_find_account(const struct bus *b, const char *id) {
        for (size_t i = 0; i < b->n_accounts; i++)
                if (strcmp(b->accounts[i]->name, id) == 0)
                        return b->accounts[i];
        return NULL;
}

/* ---- the setters: every Account property changes here -------------------- */

static void account_set_host(struct bus_account *ba, const char *host) {
        if (bus_set_string(&ba->host, host))
                ba->changed |= BUS_ACCOUNT_HOST;
}

static void account_set_user(struct bus_account *ba, const char *user) {
        if (bus_set_string(&ba->user, user))
                ba->changed |= BUS_ACCOUNT_USER;
}

static void account_set_state(struct bus_account *ba, const char *state) {
        if (bus_set_string(&ba->state, state))
                ba->changed |= BUS_ACCOUNT_STATE;
}

static void account_set_last_error(struct bus_account *ba, const char *error) {
        if (bus_set_string(&ba->last_error, error))
                ba->changed |= BUS_ACCOUNT_LAST_ERROR;
}

static void account_set_unseen(struct bus_account *ba, uint32_t unseen) {
        if (ba->unseen == unseen)
                return;
        ba->unseen = unseen;
        ba->changed |= BUS_ACCOUNT_UNSEEN;
}

/* ---- life cycle ---------------------------------------------------------- */

int bus_account_new(const char *id, struct bus_account **ret) {
        struct bus_account *ba;

        ba = calloc(1, sizeof(*ba));
        if (!ba)
                return -ENOMEM;
        ba->added = true;
        if (sd_bus_path_encode(BUS_ACCOUNT_PREFIX, id, &ba->path) < 0 || !bus_set_string(&ba->name, id) ||
            !bus_set_string(&ba->host, "") || !bus_set_string(&ba->user, "") || !bus_set_string(&ba->state, "offline") ||
            !bus_set_string(&ba->last_error, "")) {
                bus_account_free(ba);
                return -ENOMEM;
        }
        *ret = ba;
        return 0;
}

struct bus_account *bus_account_free(struct bus_account *ba) {
        if (!ba)
                return NULL;
        for (size_t i = 0; i < ba->n_mailboxes; i++)
                bus_mailbox_free(ba->mailboxes[i]);
        free(ba->mailboxes);
        free(ba->path);
        free(ba->name);
        free(ba->host);
        free(ba->user);
        free(ba->state);
        free(ba->last_error);
        free(ba);
        return NULL;
}

/* ---- keeping up with the account ----------------------------------------- */

static struct bus_mailbox *take_mailbox(struct bus_account *ba, const char *name) {
        for (size_t i = 0; i < ba->n_mailboxes; i++)
                if (ba->mailboxes[i] && strcmp(ba->mailboxes[i]->name, name) == 0) {
                        struct bus_mailbox *bm = ba->mailboxes[i];

                        ba->mailboxes[i] = NULL;
                        return bm;
                }
        return NULL;
}

static void update_mailboxes(struct bus *b, struct bus_account *ba, const struct account *a) {
        unsigned n = account_n_mailboxes(a);
        struct bus_mailbox **next;
        size_t k = 0;

        next = calloc(n + 1, sizeof(*next));
        if (!next) {
                log_oom();
                return;
        }
        for (unsigned i = 0; i < n; i++) {
                struct mail_mailbox_info info;
                struct bus_mailbox *bm;

                account_mailbox_info(a, i, &info);
                bm = take_mailbox(ba, info.mailbox);
                if (!bm && bus_mailbox_new(ba->name, info.mailbox, &bm) < 0) {
                        log_oom();
                        continue;
                }
                bus_mailbox_update(bm, &info, account_mailbox_last_error(a, i));
                next[k++] = bm;
        }
        for (size_t i = 0; i < ba->n_mailboxes; i++)
                if (ba->mailboxes[i]) {
                        bus_mailbox_emit_removed(b, ba->mailboxes[i]);
                        bus_mailbox_free(ba->mailboxes[i]);
                }
        free(ba->mailboxes);
        ba->mailboxes = next;
        ba->n_mailboxes = k;
}

void bus_account_update(struct bus *b, struct bus_account *ba, const struct account *a) {
        const struct config_account *cfg = account_config(a);

        account_set_host(ba, cfg->host);
        account_set_user(ba, cfg->user);
        account_set_state(ba, account_state(a));
        account_set_last_error(ba, account_last_error(a));
        account_set_unseen(ba, account_unseen(a));
        update_mailboxes(b, ba, a);
}

/* ---- announcing ---------------------------------------------------------- */

static void emit_state_changed(struct bus *b, const struct bus_account *ba) {
        bool failed = strcmp(ba->state, "backoff") == 0 || strcmp(ba->state, "error") == 0;
        int r;

        r = sd_bus_emit_signal(b->bus, BUS_PATH, BUS_MANAGER_INTERFACE, "AccountStateChanged", "sss", ba->name,
                               ba->state, failed ? ba->last_error : "");
        if (r < 0)
                log_debug_errno(r, "%s: cannot send AccountStateChanged, ignoring: %m", ba->name);
}

void bus_account_emit_changes(struct bus *b, struct bus_account *ba) {
        int r;

        if (ba->added) {
                if (bus_can_emit(b)) {
                        r = sd_bus_emit_interfaces_added(b->bus, ba->path, BUS_ACCOUNT_INTERFACE, NULL);
                        if (r < 0)
                                log_debug_errno(r, "%s: cannot send InterfacesAdded, ignoring: %m", ba->name);
                }
        } else {
                bus_emit_changed(b, ba->path, BUS_ACCOUNT_INTERFACE, ba->changed, account_property_names,
                                 ELEMENTSOF(account_property_names));
                if ((ba->changed & BUS_ACCOUNT_STATE) && bus_can_emit(b))
                        emit_state_changed(b, ba);
        }
        ba->added = false;
        ba->changed = 0;
        for (size_t i = 0; i < ba->n_mailboxes; i++)
                bus_mailbox_emit_changes(b, ba->mailboxes[i]);
}

void bus_account_emit_removed(struct bus *b, struct bus_account *ba) {
        int r;

        for (size_t i = 0; i < ba->n_mailboxes; i++)
                bus_mailbox_emit_removed(b, ba->mailboxes[i]);
        if (ba->added || !bus_can_emit(b))
                return;
        r = sd_bus_emit_interfaces_removed(b->bus, ba->path, BUS_ACCOUNT_INTERFACE, NULL);
        if (r < 0)
                log_debug_errno(r, "%s: cannot send InterfacesRemoved, ignoring: %m", ba->name);
}

/* ---- the objects --------------------------------------------------------- */

static int account_object_find(sd_bus *bus, const char *path, const char *interface, void *userdata, void **found,
                               sd_bus_error *error) {
        struct bus *b = userdata;

        for (size_t i = 0; i < b->n_accounts; i++)
                if (strcmp(b->accounts[i]->path, path) == 0) {
                        *found = b->accounts[i];
                        return 1;
                }
        return 0;
}

static int account_node_enumerator(sd_bus *bus, const char *path, void *userdata, char ***nodes, sd_bus_error *error) {
        struct bus *b = userdata;
        char **l;

        l = calloc(b->n_accounts + 1, sizeof(char *));
        if (!l)
                return -ENOMEM;
        for (size_t i = 0; i < b->n_accounts; i++) {
                l[i] = strdup(b->accounts[i]->path);
                if (!l[i]) {
                        for (size_t j = 0; j < i; j++)
                                free(l[j]);
                        free(l);
                        return -ENOMEM;
                }
        }
        *nodes = l;
        return 1;
}

static const sd_bus_vtable account_vtable[] = {
        SD_BUS_VTABLE_START(0),
        /* Name never changes (it is the object's identity), but the contract
         * says every property announces its changes */
        SD_BUS_PROPERTY("Name", "s", NULL, offsetof(struct bus_account, name), SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("Host", "s", NULL, offsetof(struct bus_account, host), SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("User", "s", NULL, offsetof(struct bus_account, user), SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("State", "s", NULL, offsetof(struct bus_account, state), SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("LastError", "s", NULL, offsetof(struct bus_account, last_error),
                        SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("Unseen", "u", NULL, offsetof(struct bus_account, unseen), SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_VTABLE_END
};

int bus_account_add_objects(struct bus *b, sd_bus *bus) {
        int r;

        r = sd_bus_add_fallback_vtable(bus, NULL, BUS_ACCOUNT_PREFIX, BUS_ACCOUNT_INTERFACE, account_vtable,
                                       account_object_find, b);
        if (r < 0)
                return r;
        return sd_bus_add_node_enumerator(bus, NULL, BUS_ACCOUNT_PREFIX, account_node_enumerator, b);
}
