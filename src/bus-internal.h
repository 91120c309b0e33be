/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Shared by src/bus*.c: names, the objects as clients last saw them, and the
 * functions the files offer each other. See include/bus.h.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>

#include "mail-event.h"

#define BUS_NAME                        "org.imapidled.Daemon1"
#define BUS_PATH                        "/org/imapidled/Daemon1"
#define BUS_ACCOUNT_PREFIX              BUS_PATH "/account"
#define BUS_MAILBOX_PREFIX              BUS_PATH "/mailbox"
#define BUS_MANAGER_INTERFACE           BUS_NAME ".Manager"
#define BUS_ACCOUNT_INTERFACE           BUS_NAME ".Account"
#define BUS_MAILBOX_INTERFACE           BUS_NAME ".Mailbox"

#define BUS_ERROR_NO_SUCH_ACCOUNT       BUS_NAME ".Error.NoSuchAccount"
#define BUS_ERROR_NO_SUCH_MAILBOX       BUS_NAME ".Error.NoSuchMailbox"
#define BUS_ERROR_NO_SUCH_MESSAGE       BUS_NAME ".Error.NoSuchMessage"
#define BUS_ERROR_FAILED                BUS_NAME ".Error.Failed"

struct account;
struct daemon;

/* A Mailbox object: the values last announced. Strings are owned, never
 * NULL, valid UTF-8. */
struct bus_mailbox {
        char *path;
        char *account;
        char *name;
        char *state;
        char *last_error;
        uint32_t unseen, exists, uidvalidity, uidnext;
        unsigned changed;               /* BUS_MAILBOX_* not announced yet */
        bool added;                     /* InterfacesAdded not sent yet */
};

/* An Account object and its mailboxes (in config order), likewise. */
struct bus_account {
        char *path;
        char *name;
        char *host;
        char *user;
        char *state;
        char *last_error;
        uint32_t unseen;
        unsigned changed;               /* BUS_ACCOUNT_* not announced yet */
        bool added;
        struct bus_mailbox **mailboxes;
        size_t n_mailboxes;
};

struct bus {
        sd_event *event;
        struct daemon *daemon;          /* borrowed */
        sd_bus *bus;                    /* NULL while there is no session bus */
        bool have_name;
        bool connected_once;
        sd_event_source *sync_defer;    /* bus_changed() -> bus_sync() */
        sd_event_source *retry_timer;
        uint64_t lost_usec;             /* CLOCK_MONOTONIC when the bus went away */
        struct mail_sink sink;

        /* the Manager as clients last saw it */
        struct bus_account **accounts;  /* in config order */
        size_t n_accounts;
        uint32_t unseen_total;
        char *state;
        bool paused;
        unsigned changed;               /* BUS_MANAGER_* not announced yet */
};

enum {
        BUS_MANAGER_PAUSED = 1 << 0,
        BUS_MANAGER_UNSEEN_TOTAL = 1 << 1,
        BUS_MANAGER_STATE = 1 << 2,
};

enum {
        BUS_ACCOUNT_HOST = 1 << 0,
        BUS_ACCOUNT_USER = 1 << 1,
        BUS_ACCOUNT_STATE = 1 << 2,
        BUS_ACCOUNT_LAST_ERROR = 1 << 3,
        BUS_ACCOUNT_UNSEEN = 1 << 4,
};

enum {
        BUS_MAILBOX_STATE = 1 << 0,
        BUS_MAILBOX_UNSEEN = 1 << 1,
        BUS_MAILBOX_EXISTS = 1 << 2,
        BUS_MAILBOX_UIDVALIDITY = 1 << 3,
        BUS_MAILBOX_UIDNEXT = 1 << 4,
        BUS_MAILBOX_LAST_ERROR = 1 << 5,
};

/* bus.c */
/* *field = a valid UTF-8 copy of value when it differs. Returns true if it
 * changed; false if equal or out of memory (logged; the old value stays). */
bool bus_set_string(char **field, const char *value);
/* s itself if it is valid UTF-8, else a sanitized copy in *buf (free() it). */
const char *bus_utf8(const char *s, char **buf);
/* Sends PropertiesChanged for the names whose bit is set in mask; names[i]
 * goes with bit 1 << i. Errors are logged at debug level. */
void bus_emit_changed(struct bus *b, const char *path, const char *interface, unsigned mask,
                      const char *const *names, size_t n_names);
bool bus_can_emit(const struct bus *b);

/* bus-manager.c */
int bus_manager_add_objects(struct bus *b, sd_bus *bus);
void bus_manager_update(struct bus *b);         /* after the accounts were updated */
void bus_manager_emit_changes(struct bus *b);
void bus_manager_emit_new_mail(struct bus *b, const struct mail_message *m);
void bus_manager_emit_removed(struct bus *b, const char *account, const char *mailbox, const uint32_t *uids,
                              size_t n);

/* bus-account.c */
int bus_account_add_objects(struct bus *b, sd_bus *bus);
/* A new object for the account id (borrowed), marked added. */
int bus_account_new(const char *id, struct bus_account **ret);
/* Frees ba and its mailboxes; accepts NULL, returns NULL. */
struct bus_account *bus_account_free(struct bus_account *ba);
/* Takes the values (and the set of mailboxes) from a; mailboxes that are gone
 * are announced with InterfacesRemoved and freed at once. */
void bus_account_update(struct bus *b, struct bus_account *ba, const struct account *a);
/* InterfacesAdded, or PropertiesChanged + AccountStateChanged; the same for
 * its mailboxes. */
void bus_account_emit_changes(struct bus *b, struct bus_account *ba);
/* InterfacesRemoved for ba and its mailboxes. */
void bus_account_emit_removed(struct bus *b, struct bus_account *ba);
struct bus_account *bus_find_account(const struct bus *b, const char *id);

/* bus-mailbox.c */
int bus_mailbox_add_objects(struct bus *b, sd_bus *bus);
int bus_mailbox_new(const char *account, const char *name, struct bus_mailbox **ret);
struct bus_mailbox *bus_mailbox_free(struct bus_mailbox *bm);
void bus_mailbox_update(struct bus_mailbox *bm, const struct mail_mailbox_info *info, const char *last_error);
void bus_mailbox_emit_changes(struct bus *b, struct bus_mailbox *bm);
void bus_mailbox_emit_removed(struct bus *b, struct bus_mailbox *bm);
/* The object path of a mailbox: a new string (free()), or NULL on OOM. */
char *bus_mailbox_path(const char *account, const char *name);
