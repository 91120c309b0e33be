/* SPDX-License-Identifier: MIT */
/*
 * Idle cost: N IDLE sessions and nothing happening.
 *
 *   bench-idle --harness FILE [--sessions 10] [--seconds 120] [--label NAME]
 *              [--watchdog-usec USEC] [--trace FILE]
 *
 * Starts the daemon with N accounts, waits until all are idle and a further
 * settle time (the state writer's thread lingers 5 s after the first-sync
 * writes), then reads /proc before and after the window: CPU time
 * (utime+stime of /proc/PID/stat, 10 ms ticks; and the live threads'
 * schedstat, in ns), voluntary and involuntary context switches of every
 * thread. Each voluntary switch of an idle thread is one sleep, so one
 * wake-up. With --trace, `perf trace -p PID` records the window's system
 * calls (fd names included) for bench/report.py to attribute each wake-up of
 * the loop to its cause: the timerfd (a timer), an IMAP socket (the server
 * said something), the bus socket, an eventfd. --watchdog-usec runs the
 * daemon the way the shipped unit does (WatchdogSec=60s: 60000000).
 *
 * One JSON line.
 */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench-common.h"

#define MAX_THREADS 64

struct thread_sample {
        int tid;
        char comm[32];
        uint64_t vol, nonvol, sched_ns;
};

static size_t read_threads(pid_t pid, struct thread_sample *t, size_t max) {
        char path[128], buf[8192];
        size_t n = 0;
        DIR *d;
        struct dirent *e;

        snprintf(path, sizeof(path), "/proc/%d/task", (int) pid);
        d = opendir(path);
        if (!d)
                return 0;
        while ((e = readdir(d)) && n < max) {
                char p[300];
                FILE *f;
                size_t k;

                if (e->d_name[0] == '.')
                        continue;
                memset(&t[n], 0, sizeof(t[n]));
                t[n].tid = atoi(e->d_name);
                snprintf(p, sizeof(p), "/proc/%d/task/%s/comm", (int) pid, e->d_name);
                if ((f = fopen(p, "r"))) {
                        if (fgets(t[n].comm, sizeof(t[n].comm), f))
                                t[n].comm[strcspn(t[n].comm, "\n")] = '\0';
                        fclose(f);
                }
                snprintf(p, sizeof(p), "/proc/%d/task/%s/status", (int) pid, e->d_name);
                if ((f = fopen(p, "r"))) {
                        k = fread(buf, 1, sizeof(buf) - 1, f);
                        buf[k] = '\0';
                        fclose(f);
                        char *v = strstr(buf, "\nvoluntary_ctxt_switches:");
                        if (v)
                                t[n].vol = strtoull(v + 25, NULL, 10);
                        v = strstr(buf, "\nnonvoluntary_ctxt_switches:");
                        if (v)
                                t[n].nonvol = strtoull(v + 28, NULL, 10);
                }
                snprintf(p, sizeof(p), "/proc/%d/task/%s/schedstat", (int) pid, e->d_name);
                if ((f = fopen(p, "r"))) {
                        unsigned long long ns = 0;
                        if (fscanf(f, "%llu", &ns) == 1)
                                t[n].sched_ns = ns;
                        fclose(f);
                }
                n++;
        }
        closedir(d);
        return n;
}

/* "3=anon_inode:[eventpoll] 4=anon_inode:[eventfd] ..." with timerfd clocks */
static void fd_map(pid_t pid, char *out, size_t size) {
        char path[128];
        size_t off = 0;
        DIR *d;
        struct dirent *e;

        out[0] = '\0';
        snprintf(path, sizeof(path), "/proc/%d/fd", (int) pid);
        d = opendir(path);
        if (!d)
                return;
        while ((e = readdir(d))) {
                char p[300], target[256] = "", extra[64] = "";
                ssize_t k;
                int w;

                if (e->d_name[0] == '.')
                        continue;
                snprintf(p, sizeof(p), "/proc/%d/fd/%s", (int) pid, e->d_name);
                k = readlink(p, target, sizeof(target) - 1);
                if (k < 0)
                        continue;
                target[k] = '\0';
                if (strstr(target, "timerfd")) {
                        char info[1024];
                        FILE *f;

                        snprintf(p, sizeof(p), "/proc/%d/fdinfo/%s", (int) pid, e->d_name);
                        if ((f = fopen(p, "r"))) {
                                size_t m = fread(info, 1, sizeof(info) - 1, f);
                                info[m] = '\0';
                                fclose(f);
                                char *c = strstr(info, "clockid:");
                                if (c)
                                        snprintf(extra, sizeof(extra), "(clock %d)", atoi(c + 8));
                        }
                }
                w = snprintf(out + off, size - off, "%s%s=%s%s", off ? " " : "", e->d_name, target, extra);
                if (w < 0 || (size_t) w >= size - off)
                        break;
                off += (size_t) w;
        }
        closedir(d);
}

int main(int argc, char **argv) {
        const char *harness_file = NULL, *label = "idle", *trace = NULL;
        unsigned n = 10, seconds = 120;
        uint64_t watchdog_usec = 0;
        struct bench_harness h;
        struct daemon_runner d;
        struct proc_sample s0, s1;
        struct thread_sample t0[MAX_THREADS], t1[MAX_THREADS];
        size_t n0, n1;
        static char fds[8192], threads[4096];
        char name[64];
        pid_t tracer = 0;
        int r;

        for (int i = 1; i < argc; i++) {
                if (strcmp(argv[i], "--harness") == 0 && i + 1 < argc)
                        harness_file = argv[++i];
                else if (strcmp(argv[i], "--sessions") == 0 && i + 1 < argc)
                        n = (unsigned) atoi(argv[++i]);
                else if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc)
                        seconds = (unsigned) atoi(argv[++i]);
                else if (strcmp(argv[i], "--label") == 0 && i + 1 < argc)
                        label = argv[++i];
                else if (strcmp(argv[i], "--watchdog-usec") == 0 && i + 1 < argc)
                        watchdog_usec = strtoull(argv[++i], NULL, 10);
                else if (strcmp(argv[i], "--trace") == 0 && i + 1 < argc)
                        trace = argv[++i];
                else
                        bench_die("usage: bench-idle --harness FILE [--sessions N] [--seconds S] [--label NAME] "
                                  "[--watchdog-usec USEC] [--trace FILE]");
        }
        if (!harness_file || n < 1)
                bench_die("--harness FILE required");
        signal(SIGPIPE, SIG_IGN);
        bench_harness_load(&h, harness_file);
        if (n > h.n_users)
                bench_die("the harness has %u users", h.n_users);

        snprintf(name, sizeof(name), "idle-%s-%d", label, (int) getpid());
        r = daemon_runner_init(&d, h.dir, name);
        if (r < 0)
                bench_die("daemon_runner_init: %s", strerror(-r));
        r = bench_write_config(&h, d.config_path, 1, n, NULL);
        if (r < 0)
                bench_die("config: %s", strerror(-r));
        r = bench_daemon_start(&d, &h, watchdog_usec);
        if (r < 0)
                bench_die("daemon start: %s", strerror(-r));
        if (!bench_wait_all_idle(n, 60000))
                bench_die("not all idle within 60 s; log:\n%s", daemon_runner_log(&d));
        /* the state writer's thread lingers 5 s after the first sync's writes */
        sleep_usec(7 * 1000000);

        if (trace) {
                char pid_s[32];

                snprintf(pid_s, sizeof(pid_s), "%d", (int) d.pid);
                tracer = fork();
                if (tracer == 0) {
                        int null = open("/dev/null", O_RDWR);

                        if (null >= 0) {
                                dup2(null, STDIN_FILENO);
                                dup2(null, STDOUT_FILENO);
                        }
                        execlp("perf", "perf", "trace", "-p", pid_s, "-o", trace, (char *) NULL);
                        _exit(127);
                }
                /* attaching interrupts every thread once: let that pass */
                sleep_usec(2 * 1000000);
        }

        fprintf(stderr, "bench-idle %s: %u sessions idle for %u s\n", label, n, seconds);
        proc_sample_read(d.pid, &s0);
        n0 = read_threads(d.pid, t0, MAX_THREADS);
        sleep_usec((uint64_t) seconds * 1000000);
        if (proc_sample_read(d.pid, &s1) < 0)
                bench_die("the daemon is gone; log:\n%s", daemon_runner_log(&d));
        n1 = read_threads(d.pid, t1, MAX_THREADS);
        fd_map(d.pid, fds, sizeof(fds));

        if (tracer > 0) {
                kill(tracer, SIGINT);
                waitpid(tracer, NULL, 0);
        }

        {
                size_t off = 0;

                threads[0] = '\0';
                for (size_t i = 0; i < n1; i++) {
                        uint64_t v0 = 0, nv0 = 0, ns0 = 0;
                        bool old = false;
                        int w;

                        for (size_t j = 0; j < n0; j++)
                                if (t0[j].tid == t1[i].tid) {
                                        v0 = t0[j].vol, nv0 = t0[j].nonvol, ns0 = t0[j].sched_ns;
                                        old = true;
                                }
                        w = snprintf(threads + off, sizeof(threads) - off,
                                     "%s%d %s%s: %llu voluntary, %llu involuntary, %.3f ms", off ? "; " : "",
                                     t1[i].tid, t1[i].comm, old ? "" : " (new)",
                                     (unsigned long long) (t1[i].vol - v0), (unsigned long long) (t1[i].nonvol - nv0),
                                     (double) (t1[i].sched_ns - ns0) / 1e6);
                        if (w < 0 || (size_t) w >= sizeof(threads) - off)
                                break;
                        off += (size_t) w;
                }
        }

        bench_json_begin("idle");
        bench_json_str("label", label);
        bench_json_u64("sessions", n);
        bench_json_u64("seconds", seconds);
        bench_json_u64("watchdog_usec", watchdog_usec);
        bench_json_u64("pid", (uint64_t) d.pid);
        bench_json_u64("cpu_tick_usec", (s1.utime_usec + s1.stime_usec) - (s0.utime_usec + s0.stime_usec));
        bench_json_u64("cpu_sched_ns", s1.sched_ns - s0.sched_ns);
        bench_json_u64("vol_ctxt", s1.vol_ctxt - s0.vol_ctxt);
        bench_json_u64("nonvol_ctxt", s1.nonvol_ctxt - s0.nonvol_ctxt);
        bench_json_u64("threads_before", s0.threads);
        bench_json_u64("threads_after", s1.threads);
        bench_json_str("per_thread", threads);
        bench_json_str("fds", fds);
        if (trace)
                bench_json_str("trace", trace);
        bench_json_sample("after_", &s1);
        bench_json_end();

        daemon_runner_stop(&d, SIGTERM);
        daemon_runner_done(&d);
        return 0;
}
