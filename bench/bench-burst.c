/* SPDX-License-Identifier: MIT */
/*
 * Burst: COUNT messages arrive at once in one watched INBOX.
 *
 *   bench-burst --harness FILE --user userN [--count 10000] [--label NAME]
 *
 * The harness must run a notification server (--notify: dunst). The daemon
 * watches userN's INBOX (one account, default notification settings:
 * notify_max_individual = 3). Delivery is the fastest honest way there is:
 * COUNT files written into the Maildir's tmp/ and renamed into new/ by this
 * process, as an MTA with Maildir delivery does (about 50 us each); Dovecot's
 * IDLE session notices them through inotify and syncs them in (possibly in
 * more than one step), the daemon fetches and announces them.
 *
 * Measured: the time from the first file to the last NewMail (and from the
 * last file), every UID 1..COUNT announced exactly once, the daemon's CPU time
 * over the burst (from before the first file until the notifications are
 * settled: no Notify call for 2 s), the Notify calls made to the server (a
 * bus monitor: tests/support/notify-monitor.c), how many distinct
 * notifications they were (ids), how many replaced one in place
 * (replaces_id), CloseNotification calls, and what dunst has on screen at
 * the end (dunstctl count displayed); VmHWM (peak RSS since start), RSS
 * right after and 3 s later.
 *
 * One JSON line.
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
#include "notify-monitor.h"

#define MAX_COUNT 100000

static atomic_uchar seen[MAX_COUNT + 1];
static atomic_uint n_new_mail, n_dup, n_bad;
static _Atomic uint64_t t_first_new_mail, t_last_new_mail;
static atomic_bool stop;

static int on_new_mail(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        uint64_t t = now_usec();
        const char *account, *mailbox;
        uint32_t uid;

        if (sd_bus_message_read(m, "ssu", &account, &mailbox, &uid) < 0 || uid < 1 || uid > MAX_COUNT) {
                atomic_fetch_add(&n_bad, 1);
                return 0;
        }
        if (atomic_exchange(&seen[uid], 1))
                atomic_fetch_add(&n_dup, 1);
        uint64_t zero = 0;
        atomic_compare_exchange_strong(&t_first_new_mail, &zero, t);
        atomic_store(&t_last_new_mail, t);
        atomic_fetch_add(&n_new_mail, 1);
        return 0;
}

static void *bus_main(void *userdata) {
        sd_bus *bus = userdata;

        while (!atomic_load(&stop)) {
                int r = sd_bus_process(bus, NULL);

                if (r < 0) {
                        fprintf(stderr, "bench-burst: bus: %s\n", strerror(-r));
                        return NULL;
                }
                if (r == 0)
                        (void) sd_bus_wait(bus, 100 * 1000);
        }
        return NULL;
}

static void dunst_close_all(const struct bench_harness *h) {
        char cmd[sizeof(h->dbus_address) + 128];

        snprintf(cmd, sizeof(cmd), "DBUS_SESSION_BUS_ADDRESS='%s' timeout 10 dunstctl close-all >/dev/null 2>&1",
                 h->dbus_address);
        if (system(cmd) != 0)
                fprintf(stderr, "bench-burst: dunstctl close-all failed\n");
}

static int dunst_displayed(const struct bench_harness *h) {
        char cmd[sizeof(h->dbus_address) + 128];
        FILE *p;
        int n = -1;

        snprintf(cmd, sizeof(cmd), "DBUS_SESSION_BUS_ADDRESS='%s' timeout 10 dunstctl count displayed 2>/dev/null",
                 h->dbus_address);
        p = popen(cmd, "r");
        if (!p)
                return -1;
        if (fscanf(p, "%d", &n) != 1)
                n = -1;
        pclose(p);
        return n;
}

int main(int argc, char **argv) {
        const char *harness_file = NULL, *label = "burst", *user = NULL;
        unsigned count = 10000;
        struct bench_harness h;
        struct daemon_runner d;
        struct notify_monitor *mon = NULL;
        struct proc_sample s0, s1, s2;
        sd_bus *bus = NULL;
        pthread_t bus_thread;
        uint64_t t0 = 0, t_dropped, deadline, t_settled;
        size_t n_notify, last_n;
        char name[64];
        int r;

        for (int i = 1; i < argc; i++) {
                if (strcmp(argv[i], "--harness") == 0 && i + 1 < argc)
                        harness_file = argv[++i];
                else if (strcmp(argv[i], "--user") == 0 && i + 1 < argc)
                        user = argv[++i];
                else if (strcmp(argv[i], "--count") == 0 && i + 1 < argc)
                        count = (unsigned) atoi(argv[++i]);
                else if (strcmp(argv[i], "--label") == 0 && i + 1 < argc)
                        label = argv[++i];
                else
                        bench_die("usage: bench-burst --harness FILE --user USER [--count N] [--label NAME]");
        }
        if (!harness_file || !user || count < 1 || count > MAX_COUNT)
                bench_die("--harness FILE and --user USER required, --count 1..%d", MAX_COUNT);
        signal(SIGPIPE, SIG_IGN);
        bench_harness_load(&h, harness_file);

        snprintf(name, sizeof(name), "burst-%s-%d", label, (int) getpid());
        r = daemon_runner_init(&d, h.dir, name);
        if (r < 0)
                bench_die("daemon_runner_init: %s", strerror(-r));
        r = bench_write_config(&h, d.config_path, (unsigned) atoi(user + 4), 1, NULL);
        if (r < 0)
                bench_die("config: %s", strerror(-r));
        r = notify_monitor_new(h.dbus_address, &mon);
        if (r < 0)
                bench_die("notify monitor: %s", strerror(-r));
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
        if (pthread_create(&bus_thread, NULL, bus_main, bus) != 0)
                bench_die("pthread_create");

        r = bench_daemon_start(&d, &h, 0);
        if (r < 0)
                bench_die("daemon start: %s", strerror(-r));
        if (!bench_wait_all_idle(1, 30000))
                bench_die("not idle within 30 s; log:\n%s", daemon_runner_log(&d));
        sleep_usec(2 * 1000000);

        /* the screen holds this burst's popups only */
        dunst_close_all(&h);
        sleep_usec(500 * 1000);
        fprintf(stderr, "bench-burst %s: %u messages into %s's INBOX\n", label, count, user);
        proc_sample_read(d.pid, &s0);
        r = bench_maildir_drop(&h, user, count, 1, &t0);
        t_dropped = now_usec();
        if (r < 0)
                bench_die("maildir drop: %s", strerror(-r));

        deadline = now_usec() + 180 * 1000000ULL;
        while (atomic_load(&n_new_mail) < count && now_usec() < deadline)
                sleep_usec(10 * 1000);

        /* settled: no new Notify call for 2 s (at most 30 s) */
        last_n = notify_monitor_n_notify(mon);
        t_settled = now_usec();
        deadline = t_settled + 30 * 1000000ULL;
        while (now_usec() < deadline) {
                sleep_usec(200 * 1000);
                n_notify = notify_monitor_n_notify(mon);
                if (n_notify != last_n) {
                        last_n = n_notify;
                        t_settled = now_usec();
                } else if (now_usec() - t_settled >= 2 * 1000000ULL)
                        break;
        }
        if (proc_sample_read(d.pid, &s1) < 0)
                bench_die("the daemon is gone; log:\n%s", daemon_runner_log(&d));
        sleep_usec(3 * 1000000);
        proc_sample_read(d.pid, &s2);

        {
                size_t n = notify_monitor_n_notify(mon), replacing = 0, errors = 0, distinct = 0;
                uint32_t *ids = calloc(n + 1, sizeof(uint32_t));
                unsigned missing = 0;
                char last_summary[256] = "", last_body[256] = "";

                for (size_t i = 0; i < n; i++) {
                        const struct notify_call *c = notify_monitor_get(mon, i);
                        bool known = false;

                        if (!c)
                                continue;
                        if (c->replaces_id)
                                replacing++;
                        if (c->id == UINT32_MAX || c->error[0])
                                errors++;
                        for (size_t k = 0; k < distinct && ids; k++)
                                known = known || ids[k] == c->id;
                        if (!known && ids && c->id && c->id != UINT32_MAX)
                                ids[distinct++] = c->id;
                        snprintf(last_summary, sizeof(last_summary), "%s", c->summary ? c->summary : "");
                        snprintf(last_body, sizeof(last_body), "%s", c->body ? c->body : "");
                }
                free(ids);
                for (unsigned u = 1; u <= count; u++)
                        if (!atomic_load(&seen[u]))
                                missing++;

                bench_json_begin("burst");
                bench_json_str("label", label);
                bench_json_u64("count", count);
                bench_json_dbl("drop_ms", (double) (t_dropped - t0) / 1000.0);
                bench_json_dbl("first_new_mail_ms",
                               atomic_load(&t_first_new_mail) ? (double) (atomic_load(&t_first_new_mail) - t0) / 1000.0
                                                               : -1);
                bench_json_dbl("last_new_mail_ms",
                               atomic_load(&t_last_new_mail) ? (double) (atomic_load(&t_last_new_mail) - t0) / 1000.0
                                                              : -1);
                bench_json_dbl("last_after_drop_ms",
                               atomic_load(&t_last_new_mail)
                                       ? (double) (atomic_load(&t_last_new_mail) - t_dropped) / 1000.0
                                       : -1);
                bench_json_u64("new_mail", atomic_load(&n_new_mail));
                bench_json_u64("missing", missing);
                bench_json_u64("duplicates", atomic_load(&n_dup));
                bench_json_u64("unexpected", atomic_load(&n_bad));
                bench_json_u64("cpu_tick_usec", (s1.utime_usec + s1.stime_usec) - (s0.utime_usec + s0.stime_usec));
                bench_json_u64("cpu_sched_ns", s1.sched_ns - s0.sched_ns);
                bench_json_u64("notify_calls", n);
                bench_json_u64("notify_ids", distinct);
                bench_json_u64("notify_replacing", replacing);
                bench_json_u64("notify_errors", errors);
                bench_json_u64("close_calls", notify_monitor_n_close_calls(mon));
                bench_json_dbl("displayed", dunst_displayed(&h));
                bench_json_str("last_summary", last_summary);
                bench_json_str("last_body", last_body);
                bench_json_u64("vm_hwm_kib", s1.vm_hwm_kib);
                bench_json_u64("rss_settled_kib", s1.vm_rss_kib);
                bench_json_u64("rss_after_kib", s2.vm_rss_kib);
                bench_json_u64("private_dirty_after_kib", s2.private_dirty_kib);
                bench_json_u64("rss_before_kib", s0.vm_rss_kib);
                bench_json_end();
        }

        atomic_store(&stop, true);
        pthread_join(bus_thread, NULL);
        sd_bus_flush_close_unref(bus);
        daemon_runner_stop(&d, SIGTERM);
        daemon_runner_done(&d);
        notify_monitor_free(mon);
        return 0;
}
