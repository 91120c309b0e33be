/* SPDX-License-Identifier: MIT */
/*
 * Start-up, memory and scale: the daemon with N accounts (one IDLE session
 * each, users 1..N of the harness).
 *
 *   bench-sessions --harness FILE --sessions N [--runs R] [--settle-ms MS] [--announce]
 *
 * Each run starts a fresh daemon (fresh state directory: a first start) and
 * takes the time from fork() to the STATUS= datagram that says "N/N mailboxes
 * idle" on the NOTIFY_SOCKET the benchmark owns, and when the k-th mailbox
 * became idle (the spread shows whether connections are made in parallel).
 * After settle-ms it reads RSS, VmHWM and smaps_rollup (Private_Dirty ...).
 * --announce then drops one message into every user's INBOX at once and
 * counts the NewMail signals: each UID 1 of each account exactly once
 * ("1,000 concurrent IDLE sessions, all announced, nothing lost"). With N = 0
 * the daemon runs with no account (the start-up figure) and is read once its
 * READY=1 arrived and settle-ms passed.
 *
 * One JSON line per run.
 */

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <systemd/sd-bus.h>

#include "bench-common.h"

#define MAX_SESSIONS 2000

static atomic_uint n_new_mail, n_dup, n_bad;
static atomic_uchar seen[MAX_SESSIONS + 1];
static _Atomic uint64_t t_last_new_mail;
static atomic_bool stop;

/* Connections: how many TCP connections to the server's port are open
 * (ESTABLISHED or SYN_SENT in /proc/net/tcp, the client's side: remote port
 * = IMAPS), sampled every 2 ms from fork() until all are idle. When the k-th
 * one was first seen shows whether the daemon connects in parallel. */
#define MAX_CONN 4096
static _Atomic uint64_t t_conn[MAX_CONN + 1];
static atomic_bool sampling;
static int server_port;

static unsigned count_connections(void) {
        char line[512];
        unsigned n = 0;
        FILE *f = fopen("/proc/net/tcp", "r");

        if (!f)
                return 0;
        while (fgets(line, sizeof(line), f)) {
                unsigned rport, st;

                /* "  sl  local_address rem_address   st ..." : "0: 0100007F:A1B2 0100007F:0FB7 01" */
                if (sscanf(line, " %*u: %*x:%*x %*x:%x %x", &rport, &st) == 2 && (int) rport == server_port &&
                    (st == 1 || st == 2))
                        n++;
        }
        fclose(f);
        return n;
}

static void *conn_main(void *userdata) {
        while (atomic_load(&sampling)) {
                unsigned n = count_connections();
                uint64_t t = now_usec();

                for (unsigned k = 1; k <= n && k <= MAX_CONN; k++)
                        if (!atomic_load(&t_conn[k]))
                                atomic_store(&t_conn[k], t);
                sleep_usec(2000);
        }
        return NULL;
}

static int on_new_mail(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        const char *account, *mailbox;
        uint32_t uid;
        unsigned n;

        atomic_store(&t_last_new_mail, now_usec());
        if (sd_bus_message_read(m, "ssu", &account, &mailbox, &uid) < 0 || account[0] != 'a') {
                atomic_fetch_add(&n_bad, 1);
                return 0;
        }
        n = (unsigned) atoi(account + 1);
        if (n < 1 || n > MAX_SESSIONS) {
                atomic_fetch_add(&n_bad, 1);
                return 0;
        }
        if (atomic_exchange(&seen[n], 1))
                atomic_fetch_add(&n_dup, 1);
        atomic_fetch_add(&n_new_mail, 1);
        return 0;
}

static void *bus_main(void *userdata) {
        sd_bus *bus = userdata;

        while (!atomic_load(&stop)) {
                int r = sd_bus_process(bus, NULL);

                if (r < 0)
                        return NULL;
                if (r == 0)
                        (void) sd_bus_wait(bus, 100 * 1000);
        }
        return NULL;
}

int main(int argc, char **argv) {
        const char *harness_file = NULL;
        unsigned n = 0, runs = 1, settle_ms = 3000;
        bool announce = false;
        struct bench_harness h;

        for (int i = 1; i < argc; i++) {
                if (strcmp(argv[i], "--harness") == 0 && i + 1 < argc)
                        harness_file = argv[++i];
                else if (strcmp(argv[i], "--sessions") == 0 && i + 1 < argc)
                        n = (unsigned) atoi(argv[++i]);
                else if (strcmp(argv[i], "--runs") == 0 && i + 1 < argc)
                        runs = (unsigned) atoi(argv[++i]);
                else if (strcmp(argv[i], "--settle-ms") == 0 && i + 1 < argc)
                        settle_ms = (unsigned) atoi(argv[++i]);
                else if (strcmp(argv[i], "--announce") == 0)
                        announce = true;
                else
                        bench_die("usage: bench-sessions --harness FILE --sessions N [--runs R] [--settle-ms MS] "
                                  "[--announce]");
        }
        if (!harness_file || n > MAX_SESSIONS || runs < 1)
                bench_die("--harness FILE required, --sessions 0..%d", MAX_SESSIONS);
        signal(SIGPIPE, SIG_IGN);
        bench_harness_load(&h, harness_file);
        if (n > h.n_users)
                bench_die("the harness has %u users, %u sessions asked for", h.n_users, n);

        for (unsigned run = 1; run <= runs; run++) {
                struct daemon_runner d;
                struct proc_sample s;
                char name[64];
                uint64_t t0, t_all, t_ready;
                sd_bus *bus = NULL;
                pthread_t bus_thread;
                int r;

                snprintf(name, sizeof(name), "sessions-%u-run%u-%d", n, run, (int) getpid());
                r = daemon_runner_init(&d, h.dir, name);
                if (r < 0)
                        bench_die("daemon_runner_init: %s", strerror(-r));
                r = bench_write_config(&h, d.config_path, 1, n, NULL);
                if (r < 0)
                        bench_die("config: %s", strerror(-r));

                fprintf(stderr, "bench-sessions: %u session%s, run %u/%u\n", n, n == 1 ? "" : "s", run, runs);
                pthread_t conn_thread;
                for (unsigned k = 0; k <= MAX_CONN; k++)
                        atomic_store(&t_conn[k], 0);
                server_port = h.imaps_port;
                atomic_store(&sampling, true);
                if (pthread_create(&conn_thread, NULL, conn_main, NULL) != 0)
                        bench_die("pthread_create");
                t0 = now_usec();
                r = bench_daemon_start(&d, &h, 0);
                if (r < 0)
                        bench_die("daemon start: %s", strerror(-r));
                if (n > 0) {
                        t_all = bench_wait_all_idle(n, 120000);
                        if (!t_all)
                                bench_die("%u sessions: not all idle within 120 s; log tail:\n%s", n,
                                          daemon_runner_log(&d));
                } else {
                        uint64_t deadline = now_usec() + 30 * 1000000;

                        while (!bench_ready_time() && now_usec() < deadline)
                                sleep_usec(1000);
                        t_all = bench_ready_time();
                        if (!t_all)
                                bench_die("no READY=1 within 30 s; log:\n%s", daemon_runner_log(&d));
                }
                t_ready = bench_ready_time();
                atomic_store(&sampling, false);
                pthread_join(conn_thread, NULL);
                sleep_usec((uint64_t) settle_ms * 1000);
                r = proc_sample_read(d.pid, &s);
                if (r < 0)
                        bench_die("the daemon is gone; log:\n%s", daemon_runner_log(&d));

                bench_json_begin("sessions");
                bench_json_u64("sessions", n);
                bench_json_u64("run", run);
                bench_json_dbl("ready_ms", t_ready ? (double) (t_ready - t0) / 1000.0 : -1);
                bench_json_dbl("all_idle_ms", (double) (t_all - t0) / 1000.0);
                if (n > 0) {
                        /* when 10%, 50%, 90% and the first of the sessions were idle */
                        unsigned k10 = n / 10 ? n / 10 : 1, k50 = n / 2 ? n / 2 : 1, k90 = n * 9 / 10 ? n * 9 / 10 : 1;
                        bench_json_dbl("first_idle_ms", (double) (bench_idle_reached(1) - t0) / 1000.0);
                        bench_json_dbl("p10_idle_ms", (double) (bench_idle_reached(k10) - t0) / 1000.0);
                        bench_json_dbl("p50_idle_ms", (double) (bench_idle_reached(k50) - t0) / 1000.0);
                        bench_json_dbl("p90_idle_ms", (double) (bench_idle_reached(k90) - t0) / 1000.0);
                        /* -1: never seen (the 2 ms sampling can miss nothing that stays open) */
                        bench_json_dbl("first_connect_ms",
                                       t_conn[1] ? (double) (atomic_load(&t_conn[1]) - t0) / 1000.0 : -1);
                        bench_json_dbl("all_connected_ms",
                                       n <= MAX_CONN && atomic_load(&t_conn[n])
                                               ? (double) (atomic_load(&t_conn[n]) - t0) / 1000.0
                                               : -1);
                }
                bench_json_sample("", &s);
                if (n <= 10) {
                        char by_file[2048];

                        bench_rss_by_file(d.pid, by_file, sizeof(by_file));
                        bench_json_str("rss_by_file_kib", by_file);
                }

                if (announce && n > 0) {
                        uint64_t t_drop, deadline;
                        unsigned got;

                        memset(seen, 0, sizeof(seen));
                        atomic_store(&n_new_mail, 0);
                        atomic_store(&n_dup, 0);
                        atomic_store(&n_bad, 0);
                        atomic_store(&stop, false);
                        r = sd_bus_new(&bus);
                        if (r >= 0)
                                r = sd_bus_set_address(bus, h.dbus_address);
                        if (r >= 0)
                                r = sd_bus_set_bus_client(bus, true);
                        if (r >= 0)
                                r = sd_bus_start(bus);
                        if (r >= 0)
                                r = sd_bus_match_signal(bus, NULL, "org.imapidled.Daemon1", "/org/imapidled/Daemon1",
                                                        "org.imapidled.Daemon1.Manager", "NewMail", on_new_mail,
                                                        NULL);
                        if (r < 0)
                                bench_die("D-Bus client: %s", strerror(-r));
                        if (pthread_create(&bus_thread, NULL, bus_main, bus) != 0)
                                bench_die("pthread_create");

                        /* every account's INBOX gets one message, as fast as files can be written */
                        t_drop = now_usec();
                        for (unsigned i = 1; i <= n; i++) {
                                char user[32];

                                snprintf(user, sizeof(user), "user%u", i);
                                r = bench_maildir_drop(&h, user, 1, 1, NULL);
                                if (r < 0)
                                        bench_die("maildir drop for %s: %s", user, strerror(-r));
                        }
                        deadline = now_usec() + 30 * 1000000;
                        while (atomic_load(&n_new_mail) < n && now_usec() < deadline)
                                sleep_usec(10 * 1000);
                        /* anything more (a duplicate) would come now */
                        sleep_usec(1000 * 1000);
                        got = atomic_load(&n_new_mail);
                        atomic_store(&stop, true);
                        pthread_join(bus_thread, NULL);
                        bus = sd_bus_flush_close_unref(bus);

                        bench_json_u64("announce_expected", n);
                        bench_json_u64("announce_received", got);
                        bench_json_u64("announce_duplicates", atomic_load(&n_dup));
                        bench_json_u64("announce_unexpected", atomic_load(&n_bad));
                        {
                                char missing[512];
                                size_t off = 0;

                                missing[0] = '\0';
                                for (unsigned i = 1; i <= n && off < sizeof(missing) - 16; i++)
                                        if (!atomic_load(&seen[i]))
                                                off += (size_t) snprintf(missing + off, sizeof(missing) - off, "%sa%u",
                                                                         off ? " " : "", i);
                                bench_json_str("announce_missing", missing);
                        }
                        bench_json_dbl("announce_last_ms",
                                       atomic_load(&t_last_new_mail) > t_drop
                                               ? (double) (atomic_load(&t_last_new_mail) - t_drop) / 1000.0
                                               : -1);
                        r = proc_sample_read(d.pid, &s);
                        if (r >= 0)
                                bench_json_sample("after_", &s);
                        if (n <= 10) {
                                char by_file[2048];

                                bench_rss_by_file(d.pid, by_file, sizeof(by_file));
                                bench_json_str("after_rss_by_file_kib", by_file);
                        }
                }
                bench_json_end();

                daemon_runner_stop(&d, SIGTERM);
                daemon_runner_done(&d);
                /* the server closes the sessions; let Dovecot settle before the next run */
                sleep_usec(n >= 100 ? 2000 * 1000 : 300 * 1000);
        }
        return 0;
}
