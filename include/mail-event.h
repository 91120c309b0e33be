/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * What the account/mailbox layer tells its outputs (D-Bus, notifications,
 * hooks, the log): typed events through one small sink interface, so that
 * adding an output touches no IMAP code and the mailbox logic can be tested
 * with a recording sink. All strings are valid UTF-8, decoded and free of
 * control characters; they are valid during the call only.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct mail_message {
        const char *account;
        const char *mailbox;
        uint32_t uid, uidvalidity;
        const char *from;               /* decoded display name, else the address */
        const char *from_address;       /* mailbox@host, "" if unknown */
        const char *subject;            /* decoded */
        const char *message_id;         /* "" if none */
        int64_t date;                   /* Unix seconds, 0 if unknown */
        uint64_t size;
};

struct mail_mailbox_info {
        const char *account;
        const char *mailbox;
        const char *state;              /* public session state: idle, syncing, backoff, ... */
        uint32_t unseen, exists, uidvalidity, uidnext;
};

struct mail_sink {
        /* one per new message, in UID order per mailbox; after the point that
         * covers it is on disk (or its write failed) */
        void (*new_mail)(const struct mail_message *m, void *userdata);
        /* a burst ended (sync or fetch): n messages were announced */
        void (*new_mail_done)(const char *account, const char *mailbox, unsigned n, void *userdata);
        void (*removed)(const char *account, const char *mailbox, const uint32_t *uids, size_t n, void *userdata);
        void (*flags_changed)(const char *account, const char *mailbox, uint32_t uid, bool seen, void *userdata);
        void (*mailbox_changed)(const struct mail_mailbox_info *info, void *userdata);
        void (*account_state)(const char *account, const char *state, const char *message, void *userdata);
        void *userdata;
};
