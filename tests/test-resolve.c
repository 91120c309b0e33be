/* SPDX-License-Identifier: MIT */
/*
 * resolve.c: getaddrinfo() in worker threads, results on the sd-event loop.
 * Names come from /etc/hosts through NSS, so this works offline. Checked:
 * results and error mapping, that nothing is delivered before the loop runs,
 * cancellation in every phase (queued, running, finished but undelivered)
 * never runs the callback, and a burst larger than the worker pool
 * completes.
 */

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <systemd/sd-event.h>
#include <time.h>
#include <unistd.h>

#include "macro.h"
#include "resolve.h"
#include "suites.h"

struct result {
        unsigned calls;
        int error;
        char message[128];
        struct addrinfo *ai;
        struct resolve_query *q;        /* as returned by resolve_start */
        bool query_matched;             /* the callback got that same pointer */
};

static void on_done(struct resolve_query *q, int error, const char *message, struct addrinfo *ai, void *userdata) {
        struct result *r = userdata;

        r->calls++;
        r->error = error;
        r->query_matched = q == r->q;
        snprintf(r->message, sizeof(r->message), "%s", message ? message : "(null)");
        r->ai = ai;
}

static uint64_t now_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000U + (uint64_t) ts.tv_nsec / 1000U;
}

/* Runs the loop until all n results have a call or timeout_usec passes. */
static void run_until_done(sd_event *e, struct result *r, size_t n, uint64_t timeout_usec) {
        uint64_t deadline = now_usec() + timeout_usec;

        for (;;) {
                size_t done = 0;

                for (size_t i = 0; i < n; i++)
                        done += r[i].calls > 0;
                if (done == n || now_usec() >= deadline)
                        return;
                ck_assert_int_ge(sd_event_run(e, 10000), 0);
        }
}

/* Runs the loop for a while whatever happens. */
static void run_for(sd_event *e, uint64_t usec) {
        uint64_t deadline = now_usec() + usec;

        while (now_usec() < deadline)
                ck_assert_int_ge(sd_event_run(e, 10000), 0);
}

static void free_results(struct result *r, size_t n) {
        for (size_t i = 0; i < n; i++)
                if (r[i].ai) {
                        freeaddrinfo(r[i].ai);
                        r[i].ai = NULL;
                }
}

static bool has_ipv4(const struct addrinfo *ai, const char *addr, uint16_t port) {
        for (; ai; ai = ai->ai_next) {
                const struct sockaddr_in *sin = (const struct sockaddr_in *) ai->ai_addr;
                char buf[INET_ADDRSTRLEN];

                if (ai->ai_family != AF_INET || ai->ai_socktype != SOCK_STREAM)
                        continue;
                inet_ntop(AF_INET, &sin->sin_addr, buf, sizeof(buf));
                if (strcmp(buf, addr) == 0 && ntohs(sin->sin_port) == port)
                        return true;
        }
        return false;
}

static void resolve_one(const char *host, const char *port, struct result *r) {
        sd_event *e = NULL;

        ck_assert_int_ge(sd_event_new(&e), 0);
        *r = (struct result) {};
        ck_assert_int_eq(resolve_start(e, host, port, on_done, r, &r->q), 0);
        ck_assert_ptr_nonnull(r->q);
        /* Results come through the loop, never from resolve_start(). */
        ck_assert_uint_eq(r->calls, 0);
        run_until_done(e, r, 1, 10 * 1000000U);
        ck_assert_msg(r->calls == 1, "%s: callback ran %u times", host, r->calls);
        ck_assert(r->query_matched);
        sd_event_unref(e);
}

START_TEST(test_resolve_localhost) {
        struct result r;

        resolve_one("localhost", "993", &r);
        ck_assert_msg(r.error == 0, "localhost: %d %s", r.error, r.message);
        ck_assert_ptr_nonnull(r.ai);
        ck_assert_msg(has_ipv4(r.ai, "127.0.0.1", 993), "localhost did not give 127.0.0.1:993");
        free_results(&r, 1);
}
END_TEST

START_TEST(test_resolve_numeric) {
        struct result r;

        resolve_one("127.0.0.1", "143", &r);
        ck_assert_msg(r.error == 0, "127.0.0.1: %d %s", r.error, r.message);
        ck_assert(has_ipv4(r.ai, "127.0.0.1", 143));
        /* An address literal gives exactly that address. */
        ck_assert_int_eq(r.ai->ai_family, AF_INET);
        free_results(&r, 1);
}
END_TEST

START_TEST(test_resolve_nonexistent) {
        struct result r;

        /* RFC 6761: .invalid never resolves. Offline, with "hosts: files
         * dns" and no reachable server, glibc says EAI_NONAME here; with a
         * resolver that times out it would be EAI_AGAIN. Both are failures
         * without addresses, with gai_strerror() text. */
        resolve_one("nonexistent.invalid", "993", &r);
        ck_assert_msg(r.error == -ENOENT || r.error == -EAGAIN, "got %d (%s)", r.error, r.message);
        ck_assert_ptr_null(r.ai);
        ck_assert_str_ne(r.message, "");
        ck_assert_str_ne(r.message, "success");
}
END_TEST

START_TEST(test_resolve_bad_service) {
        struct result r;

        /* EAI_SERVICE maps to -EINVAL: a programming or config error, not a
         * missing host. */
        resolve_one("localhost", "no-such-service-imapidled", &r);
        ck_assert_msg(r.error == -EINVAL, "got %d (%s)", r.error, r.message);
        ck_assert_ptr_null(r.ai);
}
END_TEST

START_TEST(test_resolve_invalid_arguments) {
        struct resolve_query *q = NULL;
        struct result r = {};
        sd_event *e = NULL;

        ck_assert_int_ge(sd_event_new(&e), 0);
        ck_assert_int_eq(resolve_start(e, NULL, "993", on_done, &r, &q), -EINVAL);
        ck_assert_int_eq(resolve_start(e, "", "993", on_done, &r, &q), -EINVAL);
        ck_assert_int_eq(resolve_start(e, "localhost", "993", NULL, &r, &q), -EINVAL);
        ck_assert_ptr_null(q);
        ck_assert_ptr_null(resolve_cancel(NULL));
        sd_event_unref(e);
}
END_TEST

START_TEST(test_resolve_cancel_immediately) {
        struct result r[50] = {};
        sd_event *e = NULL;

        ck_assert_int_ge(sd_event_new(&e), 0);
        /* More queries than workers: some are cancelled while queued, some
         * while running, some after the worker finished. */
        for (size_t i = 0; i < ELEMENTSOF(r); i++)
                ck_assert_int_eq(resolve_start(e, "localhost", "993", on_done, &r[i], &r[i].q), 0);
        for (size_t i = 0; i < ELEMENTSOF(r); i++)
                ck_assert_ptr_null(resolve_cancel(r[i].q));
        run_for(e, 300000);
        for (size_t i = 0; i < ELEMENTSOF(r); i++)
                ck_assert_msg(r[i].calls == 0, "cancelled query %zu delivered", i);
        sd_event_unref(e);
}
END_TEST

START_TEST(test_resolve_cancel_after_finish) {
        struct result r = {}, other = {};
        sd_event *e = NULL;

        ck_assert_int_ge(sd_event_new(&e), 0);
        ck_assert_int_eq(resolve_start(e, "127.0.0.1", "993", on_done, &r, &r.q), 0);
        ck_assert_int_eq(resolve_start(e, "127.0.0.1", "993", on_done, &other, &other.q), 0);
        /* The workers finish and signal, but the loop has not run: the
         * result is waiting. Cancelling now must drop it (no leak under
         * ASan) and must not disturb the other query. */
        usleep(200000);
        ck_assert_ptr_null(resolve_cancel(r.q));
        run_until_done(e, &other, 1, 5 * 1000000U);
        run_for(e, 100000);
        ck_assert_uint_eq(r.calls, 0);
        ck_assert_uint_eq(other.calls, 1);
        ck_assert_int_eq(other.error, 0);
        free_results(&other, 1);
        sd_event_unref(e);
}
END_TEST

START_TEST(test_resolve_many_parallel) {
        enum { N = 100 };
        static struct result r[N];
        sd_event *e = NULL;

        memset(r, 0, sizeof(r));
        ck_assert_int_ge(sd_event_new(&e), 0);
        for (size_t i = 0; i < N; i++)
                ck_assert_int_eq(resolve_start(e, i % 2 ? "localhost" : "127.0.0.1", "993", on_done, &r[i],
                                               &r[i].q), 0);
        run_until_done(e, r, N, 20 * 1000000U);
        for (size_t i = 0; i < N; i++) {
                ck_assert_msg(r[i].calls == 1, "query %zu: %u calls", i, r[i].calls);
                ck_assert_msg(r[i].error == 0, "query %zu: %s", i, r[i].message);
                ck_assert(r[i].query_matched);
                ck_assert(has_ipv4(r[i].ai, "127.0.0.1", 993));
        }
        free_results(r, N);
        sd_event_unref(e);
}
END_TEST

/* A callback may start the next query: the pool and the loop are in a
 * consistent state while it runs. */
struct chain {
        sd_event *e;
        unsigned left, done;
        int last_error;
        struct resolve_query *q;
};

static void on_chain(struct resolve_query *q, int error, const char *message, struct addrinfo *ai, void *userdata) {
        struct chain *ch = userdata;

        if (ai)
                freeaddrinfo(ai);
        /* Cancelling a finished query from its own callback is a no-op. */
        ck_assert_ptr_null(resolve_cancel(q));
        ch->done++;
        ch->last_error = error;
        ch->q = NULL;
        if (--ch->left > 0)
                ck_assert_int_eq(resolve_start(ch->e, "localhost", "993", on_chain, ch, &ch->q), 0);
}

START_TEST(test_resolve_from_callback) {
        struct chain ch = { .left = 5 };
        uint64_t deadline;

        ck_assert_int_ge(sd_event_new(&ch.e), 0);
        ck_assert_int_eq(resolve_start(ch.e, "localhost", "993", on_chain, &ch, &ch.q), 0);
        deadline = now_usec() + 10 * 1000000U;
        while (ch.left > 0 && now_usec() < deadline)
                ck_assert_int_ge(sd_event_run(ch.e, 10000), 0);
        ck_assert_uint_eq(ch.done, 5);
        ck_assert_int_eq(ch.last_error, 0);
        sd_event_unref(ch.e);
}
END_TEST

Suite *resolve_suite(void) {
        Suite *s = suite_create("resolve");
        TCase *tc = tcase_create("resolve");

        tcase_set_timeout(tc, 60);
        tcase_add_test(tc, test_resolve_localhost);
        tcase_add_test(tc, test_resolve_numeric);
        tcase_add_test(tc, test_resolve_nonexistent);
        tcase_add_test(tc, test_resolve_bad_service);
        tcase_add_test(tc, test_resolve_invalid_arguments);
        tcase_add_test(tc, test_resolve_cancel_immediately);
        tcase_add_test(tc, test_resolve_cancel_after_finish);
        tcase_add_test(tc, test_resolve_many_parallel);
        tcase_add_test(tc, test_resolve_from_callback);
        suite_add_tcase(s, tc);
        return s;
}
