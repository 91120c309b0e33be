/* SPDX-License-Identifier: MIT */

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "daemon-runner.h"
#include "test-timeout.h"

/* How long daemon_runner_done() gives a daemon to exit on SIGTERM: it logs
 * out (up to 5 s) and saves its state (up to 3 s) first. */
#define DONE_GRACE_MS 15000

static uint64_t now_ms(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000 + (uint64_t) ts.tv_nsec / 1000000;
}

int write_text_file(const char *path, const char *text) {
        FILE *f = fopen(path, "w");

        if (!f)
                return -errno;
        fputs(text, f);
        return fclose(f) == 0 ? 0 : -errno;
}

int daemon_runner_init(struct daemon_runner *r, const char *parent, const char *name) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };

        memset(r, 0, sizeof(*r));
        r->notify_fd = -1;
        if ((size_t) snprintf(r->dir, sizeof(r->dir), "%s/%s", parent, name) >= sizeof(r->dir))
                return -ENAMETOOLONG;
        if (mkdir(r->dir, 0700) < 0)
                return -errno;
        snprintf(r->config_path, sizeof(r->config_path), "%s/config", r->dir);
        snprintf(r->state_dir, sizeof(r->state_dir), "%s/state", r->dir);
        snprintf(r->log_path, sizeof(r->log_path), "%s/daemon.log", r->dir);
        snprintf(r->notify_path, sizeof(r->notify_path), "%s/notify", r->dir);
        if (strlen(r->notify_path) >= sizeof(sa.sun_path))
                return -ENAMETOOLONG;
        memcpy(sa.sun_path, r->notify_path, strlen(r->notify_path) + 1);
        r->notify_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (r->notify_fd < 0)
                return -errno;
        if (bind(r->notify_fd, (struct sockaddr *) &sa, sizeof(sa)) < 0)
                return -errno;
        return 0;
}

/* Waits up to timeout_ms for pid; true once it is reaped. */
static bool reap(pid_t pid, unsigned timeout_ms) {
        uint64_t deadline = now_ms() + timeout_ms;

        for (;;) {
                pid_t p = waitpid(pid, NULL, WNOHANG);

                if (p == pid || (p < 0 && errno != EINTR))
                        return true;
                if (now_ms() > deadline)
                        return false;
                usleep(20 * 1000);
        }
}

/* A note in $IMAPIDLED_SANITIZER_LOG_DIR, where `make check-asan` and `make
 * check-valgrind` collect reports: any file there fails the run. */
static void sanitizer_note(pid_t pid, const char *what) {
        const char *dir = getenv("IMAPIDLED_SANITIZER_LOG_DIR");
        char path[PATH_MAX];
        FILE *f;

        if (!dir)
                return;
        snprintf(path, sizeof(path), "%s/daemon-runner.%d", dir, (int) pid);
        f = fopen(path, "a");
        if (!f)
                return;
        fprintf(f, "imapidled (pid %d): %s\n", (int) pid, what);
        fclose(f);
}

void daemon_runner_done(struct daemon_runner *r) {
        if (r->pid > 0) {
                /* SIGTERM first: a daemon that exits by itself goes through
                 * its exit path, where ASan and valgrind look for leaks. */
                kill(r->pid, SIGTERM);
                if (!reap(r->pid, test_timeout_ms(DONE_GRACE_MS))) {
                        fprintf(stderr, "daemon-runner: imapidled (pid %d) still running %u ms after SIGTERM, killing it\n",
                                (int) r->pid, test_timeout_ms(DONE_GRACE_MS));
                        sanitizer_note(r->pid, "did not exit on SIGTERM and was killed: leaks unchecked");
                        kill(r->pid, SIGKILL);
                        waitpid(r->pid, NULL, 0);
                }
                r->pid = 0;
        }
        if (r->notify_fd >= 0)
                close(r->notify_fd);
        r->notify_fd = -1;
}

int daemon_runner_start(struct daemon_runner *r, const char *const *args, const char *const *env, bool watchdog) {
        const char *b = getenv("IMAPIDLED_BUILDDIR"), *w = getenv("IMAPIDLED_DAEMON_WRAPPER");
        char exe[PATH_MAX], wrapper[1024] = "";
        pid_t pid, parent;

        snprintf(exe, sizeof(exe), "%s/imapidled", b ? b : "build");
        /* IMAPIDLED_DAEMON_WRAPPER="valgrind --leak-check=full ...": words
         * (no quoting) that go before the daemon's argv */
        if (w && (size_t) snprintf(wrapper, sizeof(wrapper), "%s", w) >= sizeof(wrapper))
                return -E2BIG;
        parent = getpid();
        pid = fork();
        if (pid < 0)
                return -errno;
        if (pid == 0) {
                const char *argv[64];
                size_t n = 0;
                char *save = NULL;
                int fd = open(r->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
                sigset_t none;

                if (fd < 0)
                        _exit(127);
                /* A failed Check assertion ends the test process at once,
                 * without teardown: the daemon must not outlive it. */
                if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent)
                        _exit(127);
                dup2(fd, STDERR_FILENO);
                dup2(fd, STDOUT_FILENO);
                for (char *word = strtok_r(wrapper, " \t", &save); word && n < 32;
                     word = strtok_r(NULL, " \t", &save))
                        argv[n++] = word;
                argv[n++] = exe;
                argv[n++] = "--config";
                argv[n++] = r->config_path;
                for (size_t i = 0; args && args[i] && n < 63; i++)
                        argv[n++] = args[i];
                argv[n] = NULL;
                sigemptyset(&none);
                sigprocmask(SIG_SETMASK, &none, NULL);
                /* never the developer's own session bus: a test that wants
                 * one passes its private bus in env */
                setenv("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent/imapidled-test-bus", 1);
                setenv("NOTIFY_SOCKET", r->notify_path, 1);
                setenv("IMAPIDLED_STATE_DIR", r->state_dir, 1);
                unsetenv("JOURNAL_STREAM");
                if (watchdog) {
                        char pidbuf[32];

                        snprintf(pidbuf, sizeof(pidbuf), "%d", (int) getpid());
                        setenv("WATCHDOG_PID", pidbuf, 1);
                        setenv("WATCHDOG_USEC", "200000", 1);
                }
                for (size_t i = 0; env && env[i]; i++)
                        putenv((char *) env[i]);
                execvp(argv[0], (char *const *) argv);
                _exit(127);
        }
        r->pid = pid;
        return 0;
}

int daemon_runner_stop(struct daemon_runner *r, int sig) {
        int status = -1;

        if (r->pid <= 0)
                return -1;
        kill(r->pid, sig);
        waitpid(r->pid, &status, 0);
        r->pid = 0;
        return status;
}

static void read_notify(struct daemon_runner *r) {
        char buf[4096];
        ssize_t n;

        while ((n = recv(r->notify_fd, buf, sizeof(buf) - 1, 0)) > 0) {
                if (r->notify_len + (size_t) n + 2 >= sizeof(r->notify_seen))
                        continue;
                memcpy(r->notify_seen + r->notify_len, buf, (size_t) n);
                r->notify_len += (size_t) n;
                r->notify_seen[r->notify_len++] = '\n';
                r->notify_seen[r->notify_len] = '\0';
        }
}

const char *daemon_runner_notified(struct daemon_runner *r) {
        read_notify(r);
        return r->notify_seen;
}

const char *daemon_runner_log(struct daemon_runner *r) {
        static char buf[1024 * 1024];
        FILE *f = fopen(r->log_path, "r");
        size_t n = 0;

        /* Keep the notify socket drained while waiting on the log: its
         * queue holds 10 datagrams (net.unix.max_dgram_qlen), and a daemon
         * whose STATUS= changes often would block in sd_notify(). */
        read_notify(r);
        if (f) {
                n = fread(buf, 1, sizeof(buf) - 1, f);
                fclose(f);
        }
        buf[n] = '\0';
        return buf;
}

unsigned daemon_runner_count(struct daemon_runner *r, const char *needle) {
        const char *log = daemon_runner_log(r);
        unsigned n = 0;

        for (const char *p = log; (p = strstr(p, needle)); p += strlen(needle))
                n++;
        return n;
}

bool daemon_runner_wait_log(struct daemon_runner *r, const char *needle, unsigned n, unsigned timeout_ms) {
        uint64_t deadline = now_ms() + test_timeout_ms(timeout_ms);

        while (daemon_runner_count(r, needle) < n) {
                if (now_ms() > deadline)
                        return false;
                usleep(20 * 1000);
        }
        return true;
}

bool daemon_runner_wait_notify(struct daemon_runner *r, const char *needle, unsigned timeout_ms) {
        uint64_t deadline = now_ms() + test_timeout_ms(timeout_ms);

        for (;;) {
                read_notify(r);
                if (strstr(r->notify_seen, needle))
                        return true;
                if (now_ms() > deadline)
                        return false;
                usleep(20 * 1000);
        }
}
