/* SPDX-License-Identifier: MIT */
/*
 * getaddrinfo() off the event loop.
 *
 * Threads: a small process-wide pool of at most RESOLVE_WORKERS_MAX detached
 * worker threads takes queries from one FIFO. A worker is started when a
 * query is queued and fewer than the maximum are running; it exits as soon as
 * the queue is empty, so an idle daemon has no resolver threads at all and
 * nothing is left to join at exit. Workers block every signal, so signals
 * stay with the thread that runs the event loop (sd_event_add_signal).
 *
 * Delivery: each query owns an eventfd watched by an io source on the
 * caller's sd_event (queries on different loops never mix). The worker stores
 * the result and signals the eventfd; the io callback hands the result to the
 * owner on the loop thread.
 *
 * Ownership: struct resolve_query is shared between the loop thread and at
 * most one worker; its state field, under pool_lock, says who may touch it:
 *   QUEUED   only the pool: cancel unlinks and frees it at once.
 *   RUNNING  the worker holds host/port: cancel sets 'cancelled', releases
 *            the loop-side resources (io source and eventfd) and leaves the
 *            struct to the worker, which frees it and its result when
 *            getaddrinfo() returns. The worker never signals the eventfd of
 *            a cancelled query, so the fd number may be reused at once.
 *   DONE     the worker is finished with it: the loop thread owns it all,
 *            cancel frees the result unseen.
 */

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>

#include "macro.h"
#include "resolve.h"

#define RESOLVE_WORKERS_MAX 8

enum query_state {
        QUERY_QUEUED,
        QUERY_RUNNING,
        QUERY_DONE,
};

struct resolve_query {
        /* fixed at start, read by the worker */
        char *host;
        char *port;

        /* loop thread only */
        sd_event_source *io;            /* owns the eventfd */
        int efd;
        resolve_done_fn cb;
        void *userdata;
        bool in_callback;

        /* under pool_lock */
        enum query_state state;
        bool cancelled;
        struct resolve_query *next;     /* FIFO link while QUEUED */
        int gai_error;                  /* getaddrinfo() result */
        int sys_errno;                  /* errno for EAI_SYSTEM */
        struct addrinfo *ai;
};

static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;
static struct resolve_query *queue_head, *queue_tail;
static unsigned n_workers;

static void query_free(struct resolve_query *q) {
        if (!q)
                return;
        if (q->ai)
                freeaddrinfo(q->ai);
        free(q->host);
        free(q->port);
        free(q);
}

/* Releases what the loop thread holds: the io source and with it the
 * eventfd. */
static void query_release_loop(struct resolve_query *q) {
        bool owned = q->io && sd_event_source_get_io_fd_own(q->io) > 0;

        q->io = sd_event_source_disable_unref(q->io);
        if (!owned && q->efd >= 0)
                close(q->efd);
        q->efd = -1;
}

static int gai_error_to_errno(int gai_error, int sys_errno) {
        switch (gai_error) {
        case 0:
                return 0;
        case EAI_NONAME:
#ifdef EAI_NODATA
        case EAI_NODATA:
#endif
#ifdef EAI_ADDRFAMILY
        case EAI_ADDRFAMILY:
#endif
                return -ENOENT;
        case EAI_AGAIN:
                return -EAGAIN;
        case EAI_MEMORY:
                return -ENOMEM;
        case EAI_SYSTEM:
                return sys_errno > 0 ? -sys_errno : -EIO;
        case EAI_SERVICE:
        case EAI_BADFLAGS:
        case EAI_FAMILY:
        case EAI_SOCKTYPE:
                return -EINVAL;
        case EAI_OVERFLOW:
                return -EOVERFLOW;
#ifdef EAI_CANCELED
        case EAI_CANCELED:
                return -ECANCELED;
#endif
#ifdef EAI_INTR
        case EAI_INTR:
                return -EINTR;
#endif
        case EAI_FAIL:
        default:
                return -EIO;
        }
}

static void *worker_main(void *arg) {
        pthread_mutex_lock(&pool_lock);
        for (;;) {
                struct resolve_query *q = queue_head;
                /* AI_ADDRCONFIG: no IPv6 addresses on a host without IPv6
                 * (each would cost a connect timeout where v6 is
                 * blackholed); glibc still resolves localhost offline. */
                struct addrinfo hints = {
                        .ai_family = AF_UNSPEC,
                        .ai_socktype = SOCK_STREAM,
                        .ai_protocol = IPPROTO_TCP,
                        .ai_flags = AI_ADDRCONFIG,
                };
                struct addrinfo *ai = NULL;
                int r, saved_errno;

                if (!q)
                        break;
                queue_head = q->next;
                if (!queue_head)
                        queue_tail = NULL;
                q->next = NULL;
                q->state = QUERY_RUNNING;
                pthread_mutex_unlock(&pool_lock);

                errno = 0;
                r = getaddrinfo(q->host, q->port, &hints, &ai);
                saved_errno = errno;

                pthread_mutex_lock(&pool_lock);
                if (q->cancelled) {
                        /* The owner is gone: the struct and the result are ours. */
                        if (ai)
                                freeaddrinfo(ai);
                        query_free(q);
                        continue;
                }
                q->gai_error = r;
                q->sys_errno = saved_errno;
                q->ai = r == 0 ? ai : NULL;
                q->state = QUERY_DONE;
                /* Under the lock: cancel cannot close the eventfd under us. An
                 * eventfd counter cannot overflow from a single write of 1. */
                (void) eventfd_write(q->efd, 1);
        }
        n_workers--;
        pthread_mutex_unlock(&pool_lock);
        return NULL;
}

/* Called with pool_lock held. Starts a worker if the pool is not full.
 * Returns 0 if a worker is (or will be) available for the queue, -errno if
 * none could be started and none is running. */
static int pool_spawn_locked(void) {
        pthread_attr_t attr;
        sigset_t all, old;
        pthread_t t;
        int r;

        if (n_workers >= RESOLVE_WORKERS_MAX)
                return 0;

        r = pthread_attr_init(&attr);
        if (r != 0)
                return n_workers > 0 ? 0 : -r;
        (void) pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);

        /* The new thread inherits the signal mask: block everything. */
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        r = pthread_create(&t, &attr, worker_main, NULL);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        pthread_attr_destroy(&attr);
        if (r != 0)
                /* Fewer workers than we wanted is fine as long as one runs. */
                return n_workers > 0 ? 0 : -r;

        n_workers++;
        return 0;
}

static int on_query_done(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        struct resolve_query *q = userdata;
        struct addrinfo *ai;
        const char *message;
        int gai_error, sys_errno, error;

        pthread_mutex_lock(&pool_lock);
        if (q->state != QUERY_DONE) {
                /* Spurious wake-up: nothing to do yet. */
                pthread_mutex_unlock(&pool_lock);
                return 0;
        }
        ai = TAKE_PTR(q->ai);
        gai_error = q->gai_error;
        sys_errno = q->sys_errno;
        pthread_mutex_unlock(&pool_lock);

        query_release_loop(q);

        error = gai_error_to_errno(gai_error, sys_errno);
        if (error == 0 && !ai) {
                /* getaddrinfo() never does this, but the owner must not see
                 * success without addresses. */
                error = -ENOENT;
                message = "no addresses";
        } else if (gai_error == EAI_SYSTEM)
                message = strerror(-error);
        else
                message = gai_error != 0 ? gai_strerror(gai_error) : "success";

        /* The callback owns ai; q is freed when it returns. */
        q->in_callback = true;
        q->cb(q, error, message, ai, q->userdata);
        query_free(q);
        return 0;
}

int resolve_start(sd_event *e, const char *host, const char *port, resolve_done_fn cb, void *userdata,
                  struct resolve_query **ret) {
        struct resolve_query *q;
        int r;

        if (!e || !host || !*host || !port || !*port || !cb || !ret)
                return -EINVAL;

        q = calloc(1, sizeof(*q));
        if (!q)
                return -ENOMEM;
        q->efd = -1;
        q->cb = cb;
        q->userdata = userdata;
        q->state = QUERY_QUEUED;
        q->host = strdup(host);
        q->port = strdup(port);
        if (!q->host || !q->port) {
                r = -ENOMEM;
                goto fail;
        }

        q->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (q->efd < 0) {
                r = -errno;
                goto fail;
        }
        r = sd_event_add_io(e, &q->io, q->efd, EPOLLIN, on_query_done, q);
        if (r < 0)
                goto fail;
        r = sd_event_source_set_io_fd_own(q->io, true);
        if (r < 0)
                goto fail;

        pthread_mutex_lock(&pool_lock);
        r = pool_spawn_locked();
        if (r < 0) {
                pthread_mutex_unlock(&pool_lock);
                goto fail;
        }
        if (queue_tail)
                queue_tail->next = q;
        else
                queue_head = q;
        queue_tail = q;
        pthread_mutex_unlock(&pool_lock);

        *ret = q;
        return 0;

fail:
        query_release_loop(q);
        query_free(q);
        return r;
}

struct resolve_query *resolve_cancel(struct resolve_query *q) {
        enum query_state state;
        sd_event_source *io;

        if (!q)
                return NULL;
        /* Inside its own callback the query is finished and freed on return. */
        if (q->in_callback)
                return NULL;

        /* The loop-side resources, taken out first: once 'cancelled' is set a
         * RUNNING worker may free q at any moment. */
        io = TAKE_PTR(q->io);

        pthread_mutex_lock(&pool_lock);
        state = q->state;
        if (state == QUERY_QUEUED) {
                struct resolve_query **p = &queue_head, *prev = NULL;

                while (*p && *p != q) {
                        prev = *p;
                        p = &(*p)->next;
                }
                if (*p) {
                        *p = q->next;
                        if (queue_tail == q)
                                queue_tail = prev;
                }
        } else if (state == QUERY_RUNNING)
                q->cancelled = true;
        pthread_mutex_unlock(&pool_lock);

        /* In every state the eventfd (owned by the io source) may be closed
         * now: a RUNNING worker sees 'cancelled' under the lock before it
         * would signal it. */
        sd_event_source_disable_unref(io);
        if (state != QUERY_RUNNING) {
                q->efd = -1;
                query_free(q);
        }
        return NULL;
}
