/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * What the benchmark programs share: the settings of a harness started by
 * bench/bench.sh (the KEY=VALUE lines of `harness.sh start`, saved to a file),
 * the daemon's configuration for N accounts, readings from /proc, delivery
 * with dovecot-lda or straight into a Maildir, and one JSON line per result.
 *
 * Every program runs one scenario against the harness it is given, starts its
 * own build/imapidled through tests/support/daemon-runner.c (NOTIFY_SOCKET of
 * its own, state directory, log) and prints its results as JSON objects, one
 * per line, on stdout; progress goes to stderr. Times are CLOCK_MONOTONIC.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "daemon-runner.h"

struct bench_harness {
        char dir[4096];
        char host[64];
        int imaps_port;
        char ca_file[4096];
        char dbus_address[4200];
        unsigned n_users;
};

/* Reads the KEY=VALUE file; exits with a message on failure. */
void bench_harness_load(struct bench_harness *h, const char *path);

uint64_t now_usec(void);
void sleep_usec(uint64_t usec);

/* A configuration with one account per user first..first+n-1 (ids a<user
 * number>, INBOX only, implicit TLS to the harness), [general] extra lines
 * from general (may be NULL). Returns 0 or -errno. */
int bench_write_config(const struct bench_harness *h, const char *path, unsigned first, unsigned n,
                       const char *general);

/* The daemon under daemon_runner with the harness's bus; watchdog_usec > 0
 * sets WATCHDOG_USEC as systemd would (0: none). Starts reading its notify
 * socket (see below); one daemon per program at a time. */
int bench_daemon_start(struct daemon_runner *r, const struct bench_harness *h, uint64_t watchdog_usec);

/* The daemon's NOTIFY_SOCKET must be read all the time: sd_notify() blocks
 * once the socket's queue (net.unix.max_dgram_qlen, 10 datagrams) is full,
 * and STATUS= changes at every new mail (idle -> syncing -> idle). A thread
 * reads it from bench_daemon_start on, keeping the idle count and, for each
 * k, when k mailboxes were idle for the first time (since start or
 * bench_notify_reset). */
void bench_notify_reset(void);

/* Waits until STATUS says "n/n mailbox(es) idle". Returns the arrival time of
 * that datagram (CLOCK_MONOTONIC usec), or 0 after timeout_ms. */
uint64_t bench_wait_all_idle(unsigned n, unsigned timeout_ms);

/* When k mailboxes were first idle (1 <= k <= n of the last wait), 0 if never. */
uint64_t bench_idle_reached(unsigned k);

/* Whether READY=1 arrived, and when. */
uint64_t bench_ready_time(void);

struct proc_sample {
        uint64_t utime_usec, stime_usec;        /* /proc/PID/stat, all threads */
        uint64_t sched_ns;                      /* on-CPU time of the live threads, /proc/PID/task/ * /schedstat */
        uint64_t vol_ctxt, nonvol_ctxt;         /* summed over /proc/PID/task/ * /status */
        unsigned threads;
        uint64_t vm_rss_kib, vm_hwm_kib;        /* /proc/PID/status */
        uint64_t rss_kib, pss_kib, private_dirty_kib, private_clean_kib, shared_dirty_kib, shared_clean_kib,
                anonymous_kib;                  /* /proc/PID/smaps_rollup */
        unsigned fds;
};

/* Returns 0 or -errno (the process is gone). */
int proc_sample_read(pid_t pid, struct proc_sample *s);

/* Where the RSS is: /proc/PID/smaps summed by mapped file ("[heap]", "[anon]"
 * for the rest), the biggest first, as "name rss/private_dirty KiB; ...". */
void bench_rss_by_file(pid_t pid, char *out, size_t size);

/* One message for user (text/plain, unique Message-ID and subject "bench N")
 * through dovecot-lda, as an MTA delivers. Returns 0 or -EIO. */
int bench_deliver_lda(const struct bench_harness *h, const char *user, unsigned n);

/* Writes n messages (owned by the user's uid) into user's INBOX Maildir the
 * way an MTA with Maildir delivery does: all into tmp/ first, then all renamed
 * into new/, which is the delivery; Dovecot finds them through inotify.
 * *ret_t_deliver (may be NULL): when the renames began. Returns 0 or -errno. */
int bench_maildir_drop(const struct bench_harness *h, const char *user, unsigned n, unsigned serial,
                       uint64_t *ret_t_deliver);

/* The number of imap (mail) processes of the harness's Dovecot: 0 once every
 * IDLE session has been moved to imap-hibernate. */
unsigned bench_count_imap_processes(const struct bench_harness *h);

/* JSON output helpers: bench_json_begin("latency") prints {"kind":"latency"
 * and the rest append ,"key":value; bench_json_end closes the line. */
void bench_json_begin(const char *kind);
void bench_json_str(const char *key, const char *value);
void bench_json_u64(const char *key, uint64_t v);
void bench_json_dbl(const char *key, double v);
void bench_json_sample(const char *prefix, const struct proc_sample *s);
void bench_json_end(void);

_Noreturn void bench_die(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
