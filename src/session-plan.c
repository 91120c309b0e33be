/* SPDX-License-Identifier: MIT */

#include "session-plan.h"

size_t session_plan(size_t n_mailboxes, unsigned max_connections, bool notify, struct session_group *groups) {
        size_t k;

        if (n_mailboxes == 0)
                return 0;
        if (max_connections == 0)
                max_connections = 1;
        k = notify ? 1 : (n_mailboxes < max_connections ? n_mailboxes : max_connections);
        for (size_t i = 0; i < k; i++)
                groups[i] = (struct session_group) { .first = i, .n = 1 };
        /* the last connection takes the rest, checked by STATUS (or NOTIFY) */
        groups[k - 1].n = n_mailboxes - (k - 1);
        return k;
}
