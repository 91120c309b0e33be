/* SPDX-License-Identifier: MIT */
/*
 * Starting, watching and stopping user commands (see spawn.h). The
 * lifecycle policies (timeouts, grace periods, what is read from the
 * child) belong to the callers: secret.c, hooks.c, the notifications.
 */

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log.h"
#include "macro.h"
#include "spawn.h"
#include "utf8.h"

#if defined(__GLIBC__)
#if !__GLIBC_PREREQ(2, 34)
#error "spawn.c needs glibc >= 2.34 (posix_spawn_file_actions_addclosefrom_np)"
#endif
#else
#error "spawn.c needs glibc (posix_spawn_file_actions_addclosefrom_np)"
#endif

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif

#define TEARDOWN_WAIT_MSEC 1000

/* ---- starting ------------------------------------------------------------ */

/* Returns a close-on-exec duplicate of fd above 0..2 (closing fd), fd itself
 * if it is above already, or -errno (fd left open). */
static int fd_move_above_stdio(int fd) {
        int copy;

        if (fd > STDERR_FILENO)
                return fd;
        copy = fcntl(fd, F_DUPFD_CLOEXEC, STDERR_FILENO + 1);
        if (copy < 0)
                return -errno;
        close(fd);
        return copy;
}

int spawn_pipe(int ret[2]) {
        int p[2], flags, r = 0;

        if (pipe2(p, O_CLOEXEC) < 0)
                return -errno;
        for (size_t i = 0; i < 2 && r >= 0; i++) {
                r = fd_move_above_stdio(p[i]);
                if (r >= 0)
                        p[i] = r;
        }
        if (r >= 0) {
                flags = fcntl(p[0], F_GETFL);
                if (flags < 0 || fcntl(p[0], F_SETFL, flags | O_NONBLOCK) < 0)
                        r = -errno;
        }
        if (r < 0) {
                close(p[0]);
                close(p[1]);
                return r;
        }
        ret[0] = p[0];
        ret[1] = p[1];
        return 0;
}

static bool env_is_dropped(const char *e, const char *drop_prefix) {
        static const char *const prefixes[] = {
                "NOTIFY_SOCKET=", "WATCHDOG_PID=", "WATCHDOG_USEC=", "LISTEN_",
        };

        for (size_t i = 0; i < ELEMENTSOF(prefixes); i++)
                if (strncmp(e, prefixes[i], strlen(prefixes[i])) == 0)
                        return true;
        return drop_prefix && strncmp(e, drop_prefix, strlen(drop_prefix)) == 0;
}

int spawn_environment(char *const *extra, size_t n_extra, const char *drop_prefix, char ***ret) {
        size_t n = 0, k = 0;
        char **env;

        assert(ret);
        for (char **e = environ; e && *e; e++)
                n++;
        env = calloc(n + n_extra + 1, sizeof(char *));
        if (!env)
                return -ENOMEM;
        for (size_t i = 0; i < n_extra; i++)
                env[k++] = extra[i];
        for (char **e = environ; e && *e; e++)
                if (!env_is_dropped(*e, drop_prefix))
                        env[k++] = *e;
        env[k] = NULL;
        *ret = env;
        return 0;
}

/* Puts fd onto target in the child: -1 opens /dev/null; an fd in 0..2 other
 * than target goes through a close-on-exec copy above them (*copy, for the
 * caller to close), so that the dup2()s cannot clobber one another; fd ==
 * target is dup2()ed onto itself, which clears its FD_CLOEXEC. Returns 0 or
 * a positive errno, like the posix_spawn functions. */
static int add_child_fd(posix_spawn_file_actions_t *fa, int fd, int target, int *copy) {
        if (fd < 0)
                return posix_spawn_file_actions_addopen(fa, target, "/dev/null",
                                                        target == STDIN_FILENO ? O_RDONLY : O_WRONLY, 0);
        if (fd <= STDERR_FILENO && fd != target) {
                *copy = fcntl(fd, F_DUPFD_CLOEXEC, STDERR_FILENO + 1);
                if (*copy < 0)
                        return errno;
                fd = *copy;
        }
        return posix_spawn_file_actions_adddup2(fa, fd, target);
}

int spawn_shell(const struct spawn_options *o, pid_t *ret_pid, int *ret_pidfd) {
        char *argv[] = { (char *) "/bin/sh", (char *) "-c", NULL, NULL };
        int copies[3] = { -EBADF, -EBADF, -EBADF };
        posix_spawn_file_actions_t fa;
        posix_spawnattr_t attr;
        sigset_t none, all;
        pid_t pid;
        int r, pidfd;

        if (!o || !o->command || !ret_pid || !ret_pidfd)
                return -EINVAL;
        argv[2] = (char *) o->command;

        r = posix_spawnattr_init(&attr);
        if (r != 0)
                return -r;
        r = posix_spawn_file_actions_init(&fa);
        if (r != 0) {
                posix_spawnattr_destroy(&attr);
                return -r;
        }

        sigemptyset(&none);
        /* Not sigfillset(): it leaves out glibc's internal signals (32, 33),
         * which posix_spawn() then sets to SIG_IGN in the child, and ignored
         * signals stay ignored across exec. The child has every signal
         * blocked until just before execve() and nobody sends it those two,
         * so SIG_DFL for them is safe. */
        memset(&all, 0xff, sizeof(all));
        r = posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
        if (r == 0)
                r = posix_spawnattr_setpgroup(&attr, 0);
        if (r == 0)
                r = posix_spawnattr_setsigmask(&attr, &none);
        if (r == 0)
                r = posix_spawnattr_setsigdefault(&attr, &all);
        if (r == 0)
                r = add_child_fd(&fa, o->stdin_fd, STDIN_FILENO, &copies[0]);
        if (r == 0)
                r = add_child_fd(&fa, o->stdout_fd, STDOUT_FILENO, &copies[1]);
        if (r == 0)
                r = add_child_fd(&fa, o->stderr_fd, STDERR_FILENO, &copies[2]);
        if (r == 0)
                r = posix_spawn_file_actions_addclosefrom_np(&fa, STDERR_FILENO + 1);
        if (r == 0)
                r = posix_spawn(&pid, argv[0], &fa, &attr, argv, o->envp ?: environ);

        posix_spawn_file_actions_destroy(&fa);
        posix_spawnattr_destroy(&attr);
        for (size_t i = 0; i < ELEMENTSOF(copies); i++)
                if (copies[i] >= 0)
                        close(copies[i]);
        if (r != 0)
                return -r;

        pidfd = (int) syscall(SYS_pidfd_open, pid, 0);
        if (pidfd < 0) {
                r = -errno;
                /* ESRCH: already exited and reaped by someone else: its pid
                 * may be recycled, never signal it. Otherwise it is our
                 * unreaped child, which must not run unwatched. */
                if (r != -ESRCH) {
                        log_debug_errno(r, "pidfd_open() for process %d failed (%m), killing it", (int) pid);
                        spawn_kill_and_reap(pid, -EBADF);
                }
                return r;
        }
        *ret_pid = pid;
        *ret_pidfd = pidfd;
        return 0;
}

/* ---- watching and stopping ----------------------------------------------- */

int spawn_child_exited(pid_t pid, siginfo_t *ret_si) {
        siginfo_t si = {};

        while (waitid(P_PID, pid, &si, WEXITED | WNOHANG | WNOWAIT) < 0)
                if (errno != EINTR)
                        return -errno;
        if (si.si_pid == 0)
                return 0;
        *ret_si = si;
        return 1;
}

void spawn_reap(pid_t pid) {
        siginfo_t si = {};

        while (waitid(P_PID, pid, &si, WEXITED | WNOHANG) < 0 && errno == EINTR)
                ;
}

void spawn_terminate_group(pid_t pgid) {
        assert(pgid > 0);
        (void) kill(-pgid, SIGTERM);
        (void) kill(-pgid, SIGCONT);
}

void spawn_kill_and_reap(pid_t pid, int pidfd) {
        siginfo_t si = {};

        assert(pid > 0);
        (void) kill(-pid, SIGKILL);
        if (pidfd >= 0) {
                struct pollfd p = { .fd = pidfd, .events = POLLIN };

                (void) poll(&p, 1, TEARDOWN_WAIT_MSEC);
        }
        while (waitid(P_PID, pid, &si, WEXITED | (pidfd >= 0 ? WNOHANG : 0)) < 0 && errno == EINTR)
                ;
}

bool spawn_exit_ok(const siginfo_t *si) {
        return si->si_code == CLD_EXITED && si->si_status == 0;
}

const char *spawn_exit_to_string(const siginfo_t *si, char *buf) {
        if (si->si_code == CLD_EXITED)
                snprintf(buf, SPAWN_EXIT_STRING_MAX, "exit status %d", si->si_status);
        else if (si->si_code == CLD_KILLED || si->si_code == CLD_DUMPED) {
                const char *name = sigabbrev_np(si->si_status);
                const char *dumped = si->si_code == CLD_DUMPED ? ", core dumped" : "";

                if (name)
                        snprintf(buf, SPAWN_EXIT_STRING_MAX, "killed by signal %s%s", name, dumped);
                else
                        snprintf(buf, SPAWN_EXIT_STRING_MAX, "killed by signal %d%s", si->si_status, dumped);
        } else
                snprintf(buf, SPAWN_EXIT_STRING_MAX, "wait status %d/%d", si->si_code, si->si_status);
        return buf;
}

/* ---- what a child wrote -------------------------------------------------- */

static bool is_control(uint32_t cp) {
        return cp < 0x20 || (cp >= 0x7f && cp < 0xa0);
}

char *spawn_output_excerpt(const char *data, size_t len, size_t max, bool keep_end) {
        _cleanup_free_ char *clean = NULL, *out = NULL;
        bool line_break = false;
        size_t n, k = 0, start;
        char *s;

        if (utf8_sanitize(data, len, &clean) < 0)
                return NULL;
        n = strlen(clean);
        if (n > (SIZE_MAX - 1) / 3)
                return NULL;
        out = malloc(3 * n + 1); /* every byte a line break at worst */
        if (!out)
                return NULL;

        for (size_t i = 0; i < n;) {
                uint32_t cp;
                int m = utf8_decode_char(clean + i, n - i, &cp);

                if (m <= 0) /* cannot happen after utf8_sanitize() */
                        break;
                i += (size_t) m;
                if (cp == '\n') {
                        line_break = true;
                        continue;
                }
                if (is_control(cp))
                        continue;
                if (line_break) {
                        if (cp == ' ')
                                continue; /* blanks that start the next line */
                        while (k > 0 && out[k - 1] == ' ')
                                k--;
                        if (k > 0) {
                                memcpy(out + k, " / ", 3);
                                k += 3;
                        }
                        line_break = false;
                }
                memcpy(out + k, clean + i - (size_t) m, (size_t) m);
                k += (size_t) m;
        }
        while (k > 0 && out[k - 1] == ' ')
                k--;

        if (!keep_end || k <= max || max < 4) {
                k = utf8_truncate(out, k, max);
                if (k == 0)
                        return NULL;
                out[k] = '\0';
                return TAKE_PTR(out);
        }

        /* the last max - 3 bytes at most, from a character boundary on */
        start = k - (max - 3);
        while (start < k && ((unsigned char) out[start] & 0xc0) == 0x80)
                start++;
        s = malloc(3 + k - start + 1);
        if (!s)
                return NULL;
        memcpy(s, "...", 3);
        memcpy(s + 3, out + start, k - start);
        s[3 + k - start] = '\0';
        return s;
}

/* ---- fire and forget ----------------------------------------------------- */

struct detached {
        pid_t pid;
        char *prefix;
        bool reaped;
};

/* When the source goes: after the exit, or with the loop. */
static void detached_destroy(void *userdata) {
        struct detached *d = userdata;
        siginfo_t si;

        if (!d->reaped) {
                if (spawn_child_exited(d->pid, &si) > 0)
                        spawn_reap(d->pid);
                else
                        log_debug("%sprocess %d left running", d->prefix ?: "", (int) d->pid);
        }
        free(d->prefix);
        free(d);
}

static int on_detached_exit(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        struct detached *d = userdata;
        char status[SPAWN_EXIT_STRING_MAX];
        siginfo_t si;
        int r;

        r = spawn_child_exited(d->pid, &si);
        if (r == 0)
                return 0;
        if (r < 0)
                log_internal(LOG_DEBUG, r, d->prefix, "exit status of process %d lost: %m", (int) d->pid);
        else {
                spawn_reap(d->pid);
                if (spawn_exit_ok(&si))
                        log_internal(LOG_DEBUG, 0, d->prefix, "process %d finished", (int) d->pid);
                else
                        log_internal(LOG_ERR, 0, d->prefix, "failed (%s)", spawn_exit_to_string(&si, status));
        }
        d->reaped = true;

        /* Take the source back from the loop and let it go; its destroy
         * callback frees d. */
        sd_event_source_ref(s);
        (void) sd_event_source_set_floating(s, false);
        sd_event_source_disable_unref(s);
        return 0;
}

int spawn_detached(sd_event *e, const char *command, char **envp, const char *log_prefix) {
        int out = fcntl(STDERR_FILENO, F_GETFD) >= 0 ? STDERR_FILENO : -1;
        struct spawn_options o = {
                .command = command,
                .envp = envp,
                .stdin_fd = -1,
                .stdout_fd = out,
                .stderr_fd = out,
        };
        _cleanup_close_ int pidfd = -EBADF;
        sd_event_source *s = NULL;
        struct detached *d;
        pid_t pid;
        int r;

        if (!e || !command)
                return -EINVAL;
        d = calloc(1, sizeof(*d));
        if (!d)
                return -ENOMEM;
        if (log_prefix) {
                d->prefix = strdup(log_prefix);
                if (!d->prefix) {
                        free(d);
                        return -ENOMEM;
                }
        }

        r = spawn_shell(&o, &pid, &pidfd);
        if (r == -ESRCH) {
                log_internal(LOG_DEBUG, 0, d->prefix, "started, but its exit status is lost (is SIGCHLD ignored?)");
                free(d->prefix);
                free(d);
                return 0;
        }
        if (r < 0) {
                free(d->prefix);
                free(d);
                return r;
        }
        d->pid = pid;

        r = sd_event_add_io(e, &s, pidfd, EPOLLIN, on_detached_exit, d);
        if (r >= 0)
                r = sd_event_source_set_floating(s, true); /* the loop takes a reference */
        if (r < 0) {
                spawn_kill_and_reap(pid, pidfd);
                sd_event_source_unref(s);
                free(d->prefix);
                free(d);
                return r;
        }
        (void) sd_event_source_set_io_fd_own(s, true);
        pidfd = -EBADF; /* the source's now */
        (void) sd_event_source_set_description(s, "spawn-detached");
        (void) sd_event_source_set_destroy_callback(s, detached_destroy);
        log_internal(LOG_DEBUG, 0, d->prefix, "started process %d", (int) pid);
        sd_event_source_unref(s); /* ours; d is the loop's from now on */
        return 0;
}
