/* SPDX-License-Identifier: MIT */
/*
 * Latency: a message delivered -> NewMail received by a D-Bus client, against
 * the floor of a bare IDLE client on the same server that times the same
 * deliveries to its own EXISTS.
 *
 *   bench-latency --harness FILE --label NAME [--user userN] [--count 200]
 *                 [--hibernate] [--raw FILE]
 *
 * The daemon watches user's INBOX (one account); the floor is the project's
 * blocking test client (tests/support/test-client.c: OpenSSL + the parser)
 * logged in as the same user, EXAMINE INBOX, IDLE, and nothing else. A
 * second bare client does the same: how far two identical clients differ
 * (the control) is the server's own spread between sessions. Each
 * delivery is one dovecot-lda run (as an MTA delivers); its exit is the
 * reference time of both. A thread per receiver takes the arrival time as
 * soon as its read returns, so neither waits for the other or for the
 * delivery. Deliveries are strictly one after another: the next starts when
 * both have seen the previous one and 100 ms passed (Dovecot batches what
 * happens within 0.5 s into one notification). With --hibernate the next
 * delivery also waits until both sessions sit in imap-hibernate (no imap
 * process left), so every delivery takes the hibernated path.
 *
 * Output: one JSON line per delivery to --raw, and a summary JSON line
 * (percentiles by nearest rank).
 *
 * What the daemon's path costs, measured in the same run: a third client
 * does what the daemon does on EXISTS (DONE, UID FETCH of the envelope, IDLE
 * again) and notes when its FETCH is answered (fetch_*: the server's share
 * of the overhead). --state-dir puts the daemon's state files elsewhere (a
 * tmpfs: what persisting before announcing costs on the real disk). BENCH_TRACE=1: the daemon runs with --trace
 * and each delivery is logged.
 */

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <systemd/sd-bus.h>

#include "bench-common.h"
#include "test-client.h"

#define MAX_COUNT 2000

static _Atomic uint64_t t_exists[3][MAX_COUNT + 2];    /* by client, by EXISTS number */
static _Atomic uint64_t t_fetched[MAX_COUNT + 2];      /* client 2: its FETCH answered, by number */
static _Atomic uint64_t t_newmail[MAX_COUNT + 2];      /* by UID */
static atomic_bool stop;
static atomic_uint floor_error;

struct floor {
        struct test_client c;
        unsigned index;
        bool fetch;             /* does what the daemon does on EXISTS: DONE, UID FETCH, IDLE */
};

/* Reads until the tagged response (or, with tag NULL, the continuation). */
static int read_until(struct test_client *c, const char *tag) {
        for (;;) {
                const struct imap_response *resp;
                int r = test_client_read(c, 10000, &resp);

                if (r < 0)
                        return r;
                if (!tag && resp->kind == IMAP_RESP_KIND_CONTINUATION)
                        return 0;
                if (tag && resp->kind == IMAP_RESP_KIND_TAGGED)
                        return resp->type == IMAP_RESP_OK ? 0 : -EPROTO;
        }
}

/* The daemon's work on the server's side, without the daemon: leave IDLE,
 * fetch what NewMail carries, IDLE again. */
static int fetch_cycle(struct test_client *c, unsigned n) {
        char cmd[128];
        int r;

        if (test_client_write(c, "DONE\r\n", 6) < 0 || read_until(c, "i") < 0)
                return -EIO;
        snprintf(cmd, sizeof(cmd), "f UID FETCH %u:* (UID FLAGS ENVELOPE INTERNALDATE RFC822.SIZE)\r\n", n);
        if (test_client_write(c, cmd, strlen(cmd)) < 0 || read_until(c, "f") < 0)
                return -EIO;
        if (n <= MAX_COUNT)
                atomic_store(&t_fetched[n], now_usec());
        r = test_client_write(c, "i IDLE\r\n", 8);
        if (r >= 0)
                r = read_until(c, NULL);
        return r;
}

static void *floor_main(void *userdata) {
        struct floor *f = userdata;
        struct test_client *c = &f->c;

        while (!atomic_load(&stop)) {
                const struct imap_response *resp;
                int r = test_client_read(c, 200, &resp);
                uint64_t t = now_usec();

                if (r == -ETIMEDOUT)
                        continue;
                if (r < 0) {
                        atomic_store(&floor_error, 1);
                        fprintf(stderr, "bench-latency: floor client: %s\n", c->error);
                        return NULL;
                }
                if (resp->type == IMAP_RESP_EXISTS && resp->number <= MAX_COUNT) {
                        atomic_store(&t_exists[f->index][resp->number], t);
                        if (f->fetch && fetch_cycle(c, resp->number) < 0) {
                                atomic_store(&floor_error, 1);
                                fprintf(stderr, "bench-latency: fetching client: %s\n", c->error);
                                return NULL;
                        }
                }
        }
        return NULL;
}

static int on_new_mail(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        uint64_t t = now_usec();
        const char *account, *mailbox;
        uint32_t uid;

        if (sd_bus_message_read(m, "ssu", &account, &mailbox, &uid) >= 0 && uid <= MAX_COUNT)
                atomic_store(&t_newmail[uid], t);
        return 0;
}

static void *bus_main(void *userdata) {
        sd_bus *bus = userdata;

        while (!atomic_load(&stop)) {
                int r = sd_bus_process(bus, NULL);

                if (r < 0) {
                        fprintf(stderr, "bench-latency: bus: %s\n", strerror(-r));
                        return NULL;
                }
                if (r == 0)
                        (void) sd_bus_wait(bus, 200 * 1000);
        }
        return NULL;
}

static void floor_connect(struct test_client *c, const struct bench_harness *h, const char *user) {
        const struct imap_response *resp;
        char pw[64];
        int r;

        snprintf(pw, sizeof(pw), "pass-%s", user);
        r = test_client_connect(c, h->host, h->imaps_port, TEST_TLS_IMPLICIT, h->ca_file, NULL);
        if (r < 0)
                bench_die("floor connect: %s", c->error);
        if (test_client_login(c, user, pw) != IMAP_RESP_OK)
                bench_die("floor LOGIN: %s", c->error);
        if (test_client_simple(c, "EXAMINE", "INBOX", 10000, NULL, NULL) != IMAP_RESP_OK)
                bench_die("floor EXAMINE: %s", c->error);
        if (test_client_write(c, "i IDLE\r\n", 8) < 0)
                bench_die("floor IDLE: %s", c->error);
        r = test_client_read(c, 10000, &resp);
        if (r < 0 || resp->kind != IMAP_RESP_KIND_CONTINUATION)
                bench_die("floor IDLE: no continuation");
}

static int cmp_dbl(const void *a, const void *b) {
        double x = *(const double *) a, y = *(const double *) b;
        return x < y ? -1 : x > y;
}

/* nearest-rank percentile of sorted v */
static double pct(const double *v, size_t n, double p) {
        size_t k = (size_t) (p / 100.0 * (double) n + 0.999999);

        if (k < 1)
                k = 1;
        if (k > n)
                k = n;
        return v[k - 1];
}

int main(int argc, char **argv) {
        const char *harness_file = NULL, *label = "default", *user = "user1", *raw_path = NULL;
        unsigned count = 200;
        bool hibernate = false;
        const char *state_dir = NULL;
        struct bench_harness h;
        struct daemon_runner d;
        struct floor fc[3] = { { .index = 0 }, { .index = 1 }, { .index = 2, .fetch = true } };
        sd_bus *bus = NULL;
        pthread_t floor_thread[3], bus_thread;
        FILE *raw = NULL;
        char general[256];
        double *fl, *dm, *ov, *lda, *ctl, *fx;
        unsigned hib_missed = 0;
        int r;

        for (int i = 1; i < argc; i++) {
                if (strcmp(argv[i], "--harness") == 0 && i + 1 < argc)
                        harness_file = argv[++i];
                else if (strcmp(argv[i], "--label") == 0 && i + 1 < argc)
                        label = argv[++i];
                else if (strcmp(argv[i], "--user") == 0 && i + 1 < argc)
                        user = argv[++i];
                else if (strcmp(argv[i], "--count") == 0 && i + 1 < argc)
                        count = (unsigned) atoi(argv[++i]);
                else if (strcmp(argv[i], "--raw") == 0 && i + 1 < argc)
                        raw_path = argv[++i];
                else if (strcmp(argv[i], "--hibernate") == 0)
                        hibernate = true;
                else if (strcmp(argv[i], "--state-dir") == 0 && i + 1 < argc)
                        state_dir = argv[++i];
                else
                        bench_die("usage: bench-latency --harness FILE [--label NAME] [--user U] [--count N] "
                                  "[--hibernate] [--state-dir DIR] [--raw FILE]");
        }
        if (!harness_file || count < 1 || count > MAX_COUNT)
                bench_die("--harness FILE required, --count 1..%d", MAX_COUNT);
        signal(SIGPIPE, SIG_IGN);
        bench_harness_load(&h, harness_file);
        if (raw_path && !(raw = fopen(raw_path, "w")))
                bench_die("%s: %s", raw_path, strerror(errno));

        {
                char name[64];

                snprintf(name, sizeof(name), "latency-%s-%d", label, (int) getpid());
                r = daemon_runner_init(&d, h.dir, name);
                if (r < 0)
                        bench_die("daemon_runner_init: %s", strerror(-r));
        }
        /* popups expire, so that dunst does not pile up 200 of them */
        snprintf(general, sizeof(general), "notify_timeout = 2s\n");
        {
                unsigned n = (unsigned) atoi(user + 4);
                r = bench_write_config(&h, d.config_path, n, 1, general);
                if (r < 0)
                        bench_die("config: %s", strerror(-r));
        }
        if (state_dir)
                snprintf(d.state_dir, sizeof(d.state_dir), "%s", state_dir);
        r = bench_daemon_start(&d, &h, 0);
        if (r < 0)
                bench_die("daemon start: %s", strerror(-r));
        if (!bench_wait_all_idle(1, 30000))
                bench_die("the daemon did not become idle; log:\n%s", daemon_runner_log(&d));

        r = sd_bus_new(&bus);
        if (r >= 0)
                r = sd_bus_set_address(bus, h.dbus_address);
        if (r >= 0)
                r = sd_bus_set_bus_client(bus, true);
        if (r >= 0)
                r = sd_bus_start(bus);
        if (r >= 0)
                r = sd_bus_match_signal(bus, NULL, "org.imapidled.Daemon1", "/org/imapidled/Daemon1",
                                        "org.imapidled.Daemon1.Manager", "NewMail", on_new_mail, NULL);
        if (r < 0)
                bench_die("D-Bus client: %s", strerror(-r));

        for (unsigned k = 0; k < 3; k++) {
                floor_connect(&fc[k].c, &h, user);
                if (pthread_create(&floor_thread[k], NULL, floor_main, &fc[k]) != 0)
                        bench_die("pthread_create");
        }
        if (pthread_create(&bus_thread, NULL, bus_main, bus) != 0)
                bench_die("pthread_create");

        fl = calloc(count, sizeof(double));
        dm = calloc(count, sizeof(double));
        ov = calloc(count, sizeof(double));
        lda = calloc(count, sizeof(double));
        ctl = calloc(count, sizeof(double));
        fx = calloc(count, sizeof(double));
        if (!fl || !dm || !ov || !lda || !ctl || !fx)
                bench_die("out of memory");

        fprintf(stderr, "bench-latency %s: %u deliveries to %s%s\n", label, count, user,
                hibernate ? " (each to hibernated sessions)" : "");
        sleep_usec(500 * 1000);
        for (unsigned i = 1; i <= count; i++) {
                uint64_t t0, t1, deadline;

                if (hibernate) {
                        /* both sessions in imap-hibernate: no imap process */
                        deadline = now_usec() + 10 * 1000000;
                        while (bench_count_imap_processes(&h) > 0 && now_usec() < deadline)
                                sleep_usec(20 * 1000);
                        if (bench_count_imap_processes(&h) > 0)
                                hib_missed++;
                        sleep_usec(50 * 1000);
                } else
                        sleep_usec(100 * 1000);

                if (getenv("BENCH_TRACE"))
                        fprintf(stderr, "bench-latency: delivery %u at %.3f s, %u imap processes\n", i,
                                (double) (now_usec() % 100000000) / 1e6, bench_count_imap_processes(&h));
                t0 = now_usec();
                r = bench_deliver_lda(&h, user, i);
                t1 = now_usec();
                if (r < 0)
                        bench_die("delivery %u failed", i);
                deadline = t1 + 15 * 1000000;
                while ((!atomic_load(&t_exists[0][i]) || !atomic_load(&t_exists[1][i]) ||
                        !atomic_load(&t_fetched[i]) || !atomic_load(&t_newmail[i])) &&
                       now_usec() < deadline && !atomic_load(&floor_error))
                        sleep_usec(1000);
                if (!atomic_load(&t_exists[0][i]) || !atomic_load(&t_exists[1][i]) || !atomic_load(&t_fetched[i]) ||
                    !atomic_load(&t_newmail[i]))
                        bench_die("delivery %u: EXISTS %s/%s, fetched %s, NewMail %s within 15 s; daemon log:\n%s", i,
                                  atomic_load(&t_exists[0][i]) ? "seen" : "missing",
                                  atomic_load(&t_exists[1][i]) ? "seen" : "missing",
                                  atomic_load(&t_fetched[i]) ? "yes" : "no",
                                  atomic_load(&t_newmail[i]) ? "seen" : "missing", daemon_runner_log(&d));
                fl[i - 1] = ((double) atomic_load(&t_exists[0][i]) - (double) t1) / 1000.0;
                ctl[i - 1] = ((double) atomic_load(&t_exists[1][i]) - (double) t1) / 1000.0 - fl[i - 1];
                dm[i - 1] = ((double) atomic_load(&t_newmail[i]) - (double) t1) / 1000.0;
                ov[i - 1] = dm[i - 1] - fl[i - 1];
                fx[i - 1] = ((double) atomic_load(&t_fetched[i]) - (double) t1) / 1000.0 - fl[i - 1];
                lda[i - 1] = (double) (t1 - t0) / 1000.0;
                if (raw)
                        fprintf(raw,
                                "{\"i\":%u,\"lda_ms\":%.3f,\"floor_ms\":%.3f,\"floor2_ms\":%.3f,\"fetched_ms\":%.3f,"
                                "\"daemon_ms\":%.3f}\n",
                                i, lda[i - 1], fl[i - 1], fl[i - 1] + ctl[i - 1], fl[i - 1] + fx[i - 1], dm[i - 1]);
                if (i % 25 == 0)
                        fprintf(stderr, "  %u/%u  floor %.1f ms  NewMail %.1f ms\n", i, count, fl[i - 1],
                                dm[i - 1]);
        }
        atomic_store(&stop, true);
        for (unsigned k = 0; k < 3; k++)
                pthread_join(floor_thread[k], NULL);
        pthread_join(bus_thread, NULL);

        {
                struct proc_sample s;

                proc_sample_read(d.pid, &s);
                qsort(fl, count, sizeof(double), cmp_dbl);
                qsort(dm, count, sizeof(double), cmp_dbl);
                qsort(ov, count, sizeof(double), cmp_dbl);
                qsort(lda, count, sizeof(double), cmp_dbl);
                qsort(ctl, count, sizeof(double), cmp_dbl);
                qsort(fx, count, sizeof(double), cmp_dbl);
                bench_json_begin("latency");
                bench_json_str("label", label);
                bench_json_u64("count", count);
                bench_json_u64("hibernate_missed", hib_missed);
                bench_json_dbl("floor_p50_ms", pct(fl, count, 50));
                bench_json_dbl("floor_p95_ms", pct(fl, count, 95));
                bench_json_dbl("floor_p99_ms", pct(fl, count, 99));
                bench_json_dbl("daemon_p50_ms", pct(dm, count, 50));
                bench_json_dbl("daemon_p95_ms", pct(dm, count, 95));
                bench_json_dbl("daemon_p99_ms", pct(dm, count, 99));
                bench_json_dbl("overhead_p50_ms", pct(ov, count, 50));
                bench_json_dbl("overhead_p95_ms", pct(ov, count, 95));
                bench_json_dbl("overhead_p99_ms", pct(ov, count, 99));
                bench_json_dbl("control_p50_ms", pct(ctl, count, 50));
                bench_json_dbl("control_p95_ms", pct(ctl, count, 95));
                bench_json_dbl("control_p99_ms", pct(ctl, count, 99));
                bench_json_dbl("fetch_p50_ms", pct(fx, count, 50));
                bench_json_dbl("fetch_p95_ms", pct(fx, count, 95));
                bench_json_dbl("lda_p50_ms", pct(lda, count, 50));
                bench_json_sample("daemon_", &s);
                bench_json_end();
        }
        if (raw)
                fclose(raw);
        for (unsigned k = 0; k < 3; k++)
                test_client_close(&fc[k].c);
        sd_bus_flush_close_unref(bus);
        daemon_runner_stop(&d, SIGTERM);
        daemon_runner_done(&d);
        return 0;
}
