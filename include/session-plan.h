/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * How an account's mailboxes are spread over IMAP connections (SPEC §4):
 * with NOTIFY one connection watches them all; without it each mailbox gets
 * its own IDLE connection while the account's max_connections budget lasts,
 * and the last connection also watches the mailboxes beyond the budget with
 * STATUS polling. Pure.
 */

#include <stdbool.h>
#include <stddef.h>

struct session_group {
        size_t first;           /* index of its home mailbox in the account's list */
        size_t n;               /* mailboxes[first .. first + n); the first IDLEs, the others are polled */
};

/* Fills groups (room for n_mailboxes entries) and returns how many sessions
 * to run: at least 1 when there is a mailbox, never more than
 * max_connections (0 counts as 1). */
size_t session_plan(size_t n_mailboxes, unsigned max_connections, bool notify, struct session_group *groups);
