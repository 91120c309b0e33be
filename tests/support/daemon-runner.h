/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Runs build/imapidled for an integration test: a directory with its config,
 * state directory, log file and a NOTIFY_SOCKET the test owns (no systemd
 * runs as PID 1 on the test machines), and waits on what it logs or tells
 * systemd. Free of Check so any test program can use it.
 */

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct daemon_runner {
        char dir[PATH_MAX];
        char config_path[PATH_MAX + 16];
        char state_dir[PATH_MAX + 16];
        char log_path[PATH_MAX + 16];
        char notify_path[PATH_MAX + 16];
        int notify_fd;
        pid_t pid;
        char notify_seen[64 * 1024];
        size_t notify_len;
};

/* Creates parent/NAME and the notify socket. Returns 0 or -errno. */
int daemon_runner_init(struct daemon_runner *r, const char *parent, const char *name);
/* Stops a daemon still running (SIGTERM, so that it runs its exit path; SIGKILL
 * if it is still there 15 s later, scaled by IMAPIDLED_TEST_TIMEOUT_SCALE) and
 * closes the socket. */
void daemon_runner_done(struct daemon_runner *r);

/* Starts the daemon with --config; args and env ("NAME=value") may be NULL.
 * watchdog: WATCHDOG_USEC=200000 for it. $IMAPIDLED_DAEMON_WRAPPER, if set,
 * is split at blanks and goes first (valgrind and its options). Returns 0 or
 * -errno. */
int daemon_runner_start(struct daemon_runner *r, const char *const *args, const char *const *env, bool watchdog);
/* Sends sig and waits; returns the wait status. */
int daemon_runner_stop(struct daemon_runner *r, int sig);

/* The whole log so far. Also drains the notify socket into
 * daemon_runner_notified(), so that waiting on the log never leaves the
 * daemon blocked in sd_notify() on a full socket. */
const char *daemon_runner_log(struct daemon_runner *r);
unsigned daemon_runner_count(struct daemon_runner *r, const char *needle);
/* true once the log holds n copies of needle, false after timeout_ms (this and
 * the next one scaled by IMAPIDLED_TEST_TIMEOUT_SCALE, see test-timeout.h) */
bool daemon_runner_wait_log(struct daemon_runner *r, const char *needle, unsigned n, unsigned timeout_ms);
/* true once a datagram on the notify socket contained needle */
bool daemon_runner_wait_notify(struct daemon_runner *r, const char *needle, unsigned timeout_ms);
const char *daemon_runner_notified(struct daemon_runner *r);   /* every datagram so far */

int write_text_file(const char *path, const char *text);
