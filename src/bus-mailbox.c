/* SPDX-License-Identifier: MIT */
/*
 * org.imapidled.Daemon1.Mailbox on /org/imapidled/Daemon1/mailbox/ID/NAME,
 * one object per watched mailbox through a fallback vtable and a node
 * enumerator (dbus/org.imapidled.Daemon1.Mailbox.xml).
 */

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "bus-internal.h"
#include "log.h"
#include "macro.h"

/* In the order of the BUS_MAILBOX_* bits. */
static const char *const mailbox_property_names[] = { "State", "Unseen", "Exists", "UidValidity", "UidNext",
                                                      "LastError" };

char *bus_mailbox_path(const char *account, const char *name) {
        char *path = NULL;

        /* each one path element: "Lists/linux" is Lists_2flinux */
        if (sd_bus_path_encode_many(&path, BUS_MAILBOX_PREFIX "/%/%", account, name) < 0)
                return NULL;
        return path;
}

/* ---- the setters: every Mailbox property changes here -------------------- */

static void mailbox_set_state(struct bus_mailbox *bm, const char *state) {
        if (bus_set_string(&bm->state, state))
                bm->changed |= BUS_MAILBOX_STATE;
}

static void mailbox_set_unseen(struct bus_mailbox *bm, uint32_t unseen) {
        if (bm->unseen == unseen)
                return;
        bm->unseen = unseen;
        bm->changed |= BUS_MAILBOX_UNSEEN;
}

static void mailbox_set_exists(struct bus_mailbox *bm, uint32_t exists) {
        if (bm->exists == exists)
                return;
        bm->exists = exists;
        bm->changed |= BUS_MAILBOX_EXISTS;
}

static void mailbox_set_uidvalidity(struct bus_mailbox *bm, uint32_t uidvalidity) {
        if (bm->uidvalidity == uidvalidity)
                return;
        bm->uidvalidity = uidvalidity;
        bm->changed |= BUS_MAILBOX_UIDVALIDITY;
}

static void mailbox_set_uidnext(struct bus_mailbox *bm, uint32_t uidnext) {
        if (bm->uidnext == uidnext)
                return;
        bm->uidnext = uidnext;
        bm->changed |= BUS_MAILBOX_UIDNEXT;
}

static void mailbox_set_last_error(struct bus_mailbox *bm, const char *error) {
        if (bus_set_string(&bm->last_error, error))
                bm->changed |= BUS_MAILBOX_LAST_ERROR;
}

void bus_mailbox_update(struct bus_mailbox *bm, const struct mail_mailbox_info *info, const char *last_error) {
        mailbox_set_state(bm, info->state);
        mailbox_set_unseen(bm, info->unseen);
        mailbox_set_exists(bm, info->exists);
        mailbox_set_uidvalidity(bm, info->uidvalidity);
        mailbox_set_uidnext(bm, info->uidnext);
        mailbox_set_last_error(bm, last_error);
}

/* ---- life cycle ---------------------------------------------------------- */

int bus_mailbox_new(const char *account, const char *name, struct bus_mailbox **ret) {
        struct bus_mailbox *bm;

        bm = calloc(1, sizeof(*bm));
        if (!bm)
                return -ENOMEM;
        bm->added = true;
        bm->path = bus_mailbox_path(account, name);
        if (!bm->path || !bus_set_string(&bm->account, account) || !bus_set_string(&bm->name, name) ||
            !bus_set_string(&bm->state, "offline") || !bus_set_string(&bm->last_error, "")) {
                bus_mailbox_free(bm);
                return -ENOMEM;
        }
        *ret = bm;
        return 0;
}

struct bus_mailbox *bus_mailbox_free(struct bus_mailbox *bm) {
        if (!bm)
                return NULL;
        free(bm->path);
        free(bm->account);
        free(bm->name);
        free(bm->state);
        free(bm->last_error);
        free(bm);
        return NULL;
}

/* ---- announcing ---------------------------------------------------------- */

void bus_mailbox_emit_changes(struct bus *b, struct bus_mailbox *bm) {
        int r;

        if (bm->added) {
                if (bus_can_emit(b)) {
                        r = sd_bus_emit_interfaces_added(b->bus, bm->path, BUS_MAILBOX_INTERFACE, NULL);
                        if (r < 0)
                                log_debug_errno(r, "%s: cannot send InterfacesAdded for %s, ignoring: %m",
                                                bm->account, bm->name);
                }
        } else
                bus_emit_changed(b, bm->path, BUS_MAILBOX_INTERFACE, bm->changed, mailbox_property_names,
                                 ELEMENTSOF(mailbox_property_names));
        bm->added = false;
        bm->changed = 0;
}

void bus_mailbox_emit_removed(struct bus *b, struct bus_mailbox *bm) {
        int r;

        if (bm->added || !bus_can_emit(b))
                return;
        r = sd_bus_emit_interfaces_removed(b->bus, bm->path, BUS_MAILBOX_INTERFACE, NULL);
        if (r < 0)
                log_debug_errno(r, "%s: cannot send InterfacesRemoved for %s, ignoring: %m", bm->account, bm->name);
}

/* ---- the objects --------------------------------------------------------- */

static int mailbox_object_find(sd_bus *bus, const char *path, const char *interface, void *userdata, void **found,
                               sd_bus_error *error) {
        struct bus *b = userdata;

        for (size_t i = 0; i < b->n_accounts; i++)
                for (size_t j = 0; j < b->accounts[i]->n_mailboxes; j++)
                        if (strcmp(b->accounts[i]->mailboxes[j]->path, path) == 0) {
                                *found = b->accounts[i]->mailboxes[j];
                                return 1;
                        }
        return 0;
}

static int mailbox_node_enumerator(sd_bus *bus, const char *path, void *userdata, char ***nodes, sd_bus_error *error) {
        struct bus *b = userdata;
        size_t n = 0, k = 0;
        char **l;

        for (size_t i = 0; i < b->n_accounts; i++)
                n += b->accounts[i]->n_mailboxes;
        l = calloc(n + 1, sizeof(char *));
        if (!l)
                return -ENOMEM;
        for (size_t i = 0; i < b->n_accounts; i++)
                for (size_t j = 0; j < b->accounts[i]->n_mailboxes; j++) {
                        l[k] = strdup(b->accounts[i]->mailboxes[j]->path);
                        if (!l[k]) {
                                for (size_t x = 0; x < k; x++)
                                        free(l[x]);
                                free(l);
                                return -ENOMEM;
                        }
                        k++;
                }
        *nodes = l;
        return 1;
}

static const sd_bus_vtable mailbox_vtable[] = {
        SD_BUS_VTABLE_START(0),
        /* Account and Name never change (the object's identity); the contract
         * says every property announces its changes */
        SD_BUS_PROPERTY("Account", "s", NULL, offsetof(struct bus_mailbox, account),
                        SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("Name", "s", NULL, offsetof(struct bus_mailbox, name), SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("State", "s", NULL, offsetof(struct bus_mailbox, state), SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("Unseen", "u", NULL, offsetof(struct bus_mailbox, unseen), SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("Exists", "u", NULL, offsetof(struct bus_mailbox, exists), SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("UidValidity", "u", NULL, offsetof(struct bus_mailbox, uidvalidity),
                        SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("UidNext", "u", NULL, offsetof(struct bus_mailbox, uidnext),
                        SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("LastError", "s", NULL, offsetof(struct bus_mailbox, last_error),
                        SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_VTABLE_END
};

int bus_mailbox_add_objects(struct bus *b, sd_bus *bus) {
        int r;

        r = sd_bus_add_fallback_vtable(bus, NULL, BUS_MAILBOX_PREFIX, BUS_MAILBOX_INTERFACE, mailbox_vtable,
                                       mailbox_object_find, b);
        if (r < 0)
                return r;
        return sd_bus_add_node_enumerator(bus, NULL, BUS_MAILBOX_PREFIX, mailbox_node_enumerator, b);
}
