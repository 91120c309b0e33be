/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Running user commands (password_command, the hooks, open_command): one
 * way to start a child and the small pieces around watching and stopping
 * it, shared by secret.c, hooks.c and the notification code.
 *
 * A child is /bin/sh -c COMMAND started with posix_spawn() (glibc's is
 * vfork-like: no page-table copy of the daemon, and an exec failure comes
 * back as its return value) in a process group of its own, with an empty
 * signal mask and every signal at its default disposition (the daemon
 * blocks signals for sd-event and may ignore SIGPIPE), stdin, stdout and
 * stderr as the caller says and every other fd closed (close_range()).
 *
 * Its exit is watched through a pidfd (pidfd_open(), Linux >= 5.3) as an
 * sd-event io source, never with sd_event_add_child(): that needs SIGCHLD
 * blocked in every thread and reaps with a blocking waitid() when its
 * source goes. A pidfd works however the process handles SIGCHLD and lets
 * the caller look at the exit (WNOWAIT) without reaping: while the leader
 * is an unreaped zombie, its pid and so its process group id cannot be
 * recycled, which is when signalling the group (kill(-pid, ...)) is safe.
 *
 * Everything here runs on the loop thread and never blocks, except where a
 * function says so.
 *
 * This header shares its name with the system's <spawn.h>, which -Iinclude
 * would hide: it pulls that in too, so posix_spawn() and friends stay
 * available under either spelling.
 */

#include_next <spawn.h>

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <systemd/sd-event.h>

/* SIGTERM (+ SIGCONT) to SIGKILL, for callers that stop a group. */
#define SPAWN_KILL_GRACE_USEC (UINT64_C(2) * 1000000)

/* Room for spawn_exit_to_string(). */
#define SPAWN_EXIT_STRING_MAX 64

struct spawn_options {
        const char *command;    /* run as /bin/sh -c command; borrowed */
        char **envp;            /* the child's whole environment; borrowed; NULL: environ as is */
        int stdin_fd;           /* dup2()ed onto 0, 1, 2 in the child; -1: /dev/null. */
        int stdout_fd;          /* Borrowed: the caller closes its copies after */
        int stderr_fd;          /* spawn_shell() returns. Any fd, also 0..2. */
};

/* Starts /bin/sh -c o->command as described above. On success *ret_pid is
 * the child (also its process group id) and *ret_pidfd a pidfd for it
 * (O_CLOEXEC, owned by the caller, who must reap the child: it is not
 * reaped here). Returns 0 or -errno:
 *   -ESRCH   the child was started but somebody else reaped it before we
 *            could watch it (SIGCHLD set to SIG_IGN, a waitpid(-1)
 *            elsewhere): its exit status is lost; nothing to reap or
 *            signal.
 *   -ENOSYS  no pidfd_open() (Linux < 5.3); the child was killed and
 *            reaped.
 *   other    posix_spawn() failed (/bin/sh missing, -ENOMEM, -EAGAIN ...),
 *            or pidfd_open() did and the child was killed and reaped.
 * Nothing is written to the ret_ parameters on failure. */
int spawn_shell(const struct spawn_options *o, pid_t *ret_pid, int *ret_pidfd);

/* The daemon's environment for a child: environ without what systemd meant
 * for the daemon alone (NOTIFY_SOCKET, WATCHDOG_PID, WATCHDOG_USEC,
 * LISTEN_*) and, if drop_prefix is not NULL, without every variable whose
 * name starts with it; the n_extra strings of extra ("NAME=value") come
 * first. *ret is a malloc'ed, NULL-terminated array owned by the caller
 * (free() it, not its strings): the strings are borrowed from extra and
 * environ, so it is valid until either changes. Returns 0 or -ENOMEM. */
int spawn_environment(char *const *extra, size_t n_extra, const char *drop_prefix, char ***ret);

/* A pipe for one of a child's outputs: ret[0] the read end for us,
 * non-blocking; ret[1] the write end for the child, blocking. Both
 * close-on-exec and above 0..2 (so the daemon running with stdio closed
 * cannot confuse the child's fds), owned by the caller. Returns 0 or
 * -errno. */
int spawn_pipe(int ret[2]);

/* Has child pid exited? Looks without reaping (WNOWAIT). Returns 1 with
 * its status in *ret_si, 0 if it is still running, -errno otherwise
 * (-ECHILD: not our child any more, reaped by somebody else). */
int spawn_child_exited(pid_t pid, siginfo_t *ret_si);

/* Reaps child pid, which has exited (spawn_child_exited() said so), without
 * blocking. */
void spawn_reap(pid_t pid);

/* SIGTERM and SIGCONT (a member stopped by SIGTTIN would never see the
 * TERM) to process group pgid, whose leader must be unreaped. */
void spawn_terminate_group(pid_t pgid);

/* SIGKILLs process group pid and reaps its leader now. With a pidfd (or
 * -1), waits at most 1 s for the leader to die; without one waitid()
 * blocks, so only for a child that could not be watched at all. */
void spawn_kill_and_reap(pid_t pid, int pidfd);

/* True for exit status 0. */
bool spawn_exit_ok(const siginfo_t *si);

/* How a child ended, for a message: "exit status 3", "killed by signal
 * TERM", "killed by signal SEGV, core dumped" ("signal 40" without a
 * name), "wait status C/S" for anything else. Written to buf (at least
 * SPAWN_EXIT_STRING_MAX bytes), which is returned. */
const char *spawn_exit_to_string(const siginfo_t *si, char *buf);

/* What a child wrote (data, len bytes: any bytes), made fit for a single
 * log line or error message: valid UTF-8 (ill-formed bytes and NUL become
 * U+FFFD), each run of line breaks ("\n", "\r\n") folded into " / ", none
 * at either end, every other control character (C0, DEL, C1; also tab and
 * a lone "\r") dropped, blanks at the end dropped; then at most max bytes,
 * cut at a character boundary, keeping the start, or with keep_end the end
 * (then led by "..." when something was cut). Returns a malloc'ed string
 * owned by the caller, or NULL if nothing is left or out of memory. */
char *spawn_output_excerpt(const char *data, size_t len, size_t max, bool keep_end);

/* Fire and forget: starts /bin/sh -c command (borrowed) with envp
 * (borrowed; NULL: environ as is; see spawn_environment()), stdin
 * /dev/null, stdout and stderr on the daemon's stderr (/dev/null if that
 * is closed), so what it prints lands in the journal. There is no timeout:
 * it may run as long as it likes (a mail client), and it is never
 * signalled. Its exit is watched on e by a floating pidfd source that the
 * loop owns; when it ends it is reaped, and an exit other than status 0 is
 * logged as an error: "<log_prefix>failed (exit status 3)". log_prefix
 * (copied; may be NULL) should name what runs and end in a space, e.g.
 * "work: open_command ". If the loop is freed first, the source goes with
 * it, the child is reaped if it has exited and otherwise left to run
 * (unreaped until the daemon exits); nothing else is left behind.
 * Returns 0 (also when the exit status is lost, see spawn_shell()) or
 * -errno when it cannot be started or watched (then nothing runs). */
int spawn_detached(sd_event *e, const char *command, char **envp, const char *log_prefix);
