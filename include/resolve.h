/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Host name resolution off the event loop: getaddrinfo() (so NSS, /etc/hosts
 * and the system's resolver configuration apply) in a worker thread, with
 * the result delivered on the sd-event loop.
 */

#include <netdb.h>
#include <systemd/sd-event.h>

struct resolve_query;

/* ai is the getaddrinfo() result, owned by the callee (freeaddrinfo()), NULL
 * on error. error is 0 or -errno (-ENOENT: no such host, -EAGAIN: temporary
 * failure, -ENOMEM ...); message is gai_strerror() text. The query is
 * finished when the callback runs: do not cancel it afterwards. */
typedef void (*resolve_done_fn)(struct resolve_query *q, int error, const char *message, struct addrinfo *ai,
                                void *userdata);

/* Starts resolving host:port (TCP). Returns 0 and the query, or -errno. */
int resolve_start(sd_event *e, const char *host, const char *port, resolve_done_fn cb, void *userdata,
                  struct resolve_query **ret);

/* Cancels a query whose callback has not run yet; the callback will not run.
 * Accepts NULL; returns NULL. */
struct resolve_query *resolve_cancel(struct resolve_query *q);
