/* SPDX-License-Identifier: MIT */
/*
 * C wrapper around tests/harness/harness.sh (see harness.h). Everything here
 * is process plumbing: find the script, run it with fork/execve, feed stdin,
 * collect stdout, parse start's KEY=VALUE lines.
 */

#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1 /* pipe2 */
#endif

#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define HARNESS_SCRIPT "tests/harness/harness.sh"
#define HARNESS_BASH "/bin/bash"
#define HARNESS_MAX_ARGS 40

extern char **environ;

static bool env_set(const char *name) {
        const char *v = getenv(name);

        return v && *v;
}

static int path_join(char *buf, size_t size, const char *dir, const char *name) {
        int n = snprintf(buf, size, "%s/%s", dir, name);

        if (n < 0 || (size_t) n >= size)
                return -ENAMETOOLONG;
        return 0;
}

/* The directory that holds the running binary. */
static int exe_dir(char *buf, size_t size) {
        ssize_t n;
        char *slash;

        n = readlink("/proc/self/exe", buf, size - 1);
        if (n < 0)
                return -errno;
        if ((size_t) n >= size - 1)
                return -ENAMETOOLONG;
        buf[n] = '\0';
        slash = strrchr(buf, '/');
        if (!slash)
                return -ENOENT;
        if (slash == buf)
                slash[1] = '\0';
        else
                *slash = '\0';
        return 0;
}

/* $IMAPIDLED_SRCDIR/tests/harness/harness.sh, else the first ancestor of the
 * binary's directory that has it, else ./tests/harness/harness.sh. */
static int find_script(char *buf, size_t size) {
        char dir[PATH_MAX];

        if (env_set("IMAPIDLED_SRCDIR"))
                return path_join(buf, size, getenv("IMAPIDLED_SRCDIR"), HARNESS_SCRIPT);

        if (exe_dir(dir, sizeof(dir)) >= 0) {
                for (;;) {
                        char *slash;

                        if (path_join(buf, size, dir, HARNESS_SCRIPT) >= 0 && access(buf, R_OK) == 0)
                                return 0;
                        slash = strrchr(dir, '/');
                        if (!slash || slash == dir)
                                break;
                        *slash = '\0';
                }
        }
        return path_join(buf, size, ".", HARNESS_SCRIPT);
}

/* The environment for the script: ours, plus IMAPIDLED_BUILDDIR pointing at
 * the binary's directory when that is unset and free-port lives there.
 * Returns a malloc'ed array (the strings are borrowed, *extra is malloc'ed
 * when used); NULL on OOM. */
static char **script_env(char **extra) {
        char dir[PATH_MAX], fp[PATH_MAX + 16];
        size_t n = 0;
        char **env;

        *extra = NULL;
        if (!env_set("IMAPIDLED_BUILDDIR") && exe_dir(dir, sizeof(dir)) >= 0 &&
            path_join(fp, sizeof(fp), dir, "free-port") >= 0 && access(fp, X_OK) == 0) {
                size_t len = strlen("IMAPIDLED_BUILDDIR=") + strlen(dir) + 1;

                *extra = malloc(len);
                if (!*extra)
                        return NULL;
                snprintf(*extra, len, "IMAPIDLED_BUILDDIR=%s", dir);
        }

        while (environ && environ[n])
                n++;
        env = calloc(n + 2, sizeof(*env));
        if (!env) {
                free(*extra);
                *extra = NULL;
                return NULL;
        }
        for (size_t i = 0; i < n; i++)
                env[i] = environ[i];
        if (*extra)
                env[n++] = *extra;
        env[n] = NULL;
        return env;
}

static void child_exec(const char *const *argv, char **envp, int in_fd, int out_fd) {
        sigset_t none;
        long max_fd;

        /* Ignored signals stay ignored across exec: give the script defaults. */
        signal(SIGPIPE, SIG_DFL);
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);

        if (in_fd < 0)
                in_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (in_fd < 0 || dup2(in_fd, STDIN_FILENO) < 0 || dup2(out_fd, STDOUT_FILENO) < 0)
                _exit(127);
        /* Nothing else of the test process (Check's pipes, sockets) may leak
         * into the servers the script leaves running. */
        max_fd = sysconf(_SC_OPEN_MAX);
        if (max_fd < 0 || max_fd > 65536)
                max_fd = 65536;
        for (long fd = STDERR_FILENO + 1; fd < max_fd; fd++)
                close((int) fd);

        execve(HARNESS_BASH, (char *const *) argv, envp);
        fprintf(stderr, "harness: cannot run %s: %s\n", HARNESS_BASH, strerror(errno));
        _exit(127);
}

/* Runs harness.sh with args (NULL-terminated), input on its stdin (NULL: no
 * input) and its stdout in out (NUL-terminated, truncated; out may be NULL
 * when out_size is 0). Returns the output length, or -EIO if the script
 * failed, or -errno. */
static int run_script(const char *const *args, const char *input, char *out, size_t out_size) {
        const char *argv[HARNESS_MAX_ARGS + 3];
        char script[PATH_MAX];
        char **envp = NULL, *extra = NULL;
        int out_pipe[2] = { -1, -1 }, in_pipe[2] = { -1, -1 };
        struct sigaction ign = { .sa_handler = SIG_IGN }, old_pipe;
        size_t argc = 0, out_len = 0, in_len = input ? strlen(input) : 0, in_off = 0;
        bool out_open = true;
        int status, r;
        pid_t pid;

        if (out && out_size > 0)
                out[0] = '\0';
        r = find_script(script, sizeof(script));
        if (r < 0)
                return r;

        argv[argc++] = "bash";
        argv[argc++] = script;
        for (size_t i = 0; args[i]; i++) {
                if (argc >= HARNESS_MAX_ARGS + 2)
                        return -E2BIG;
                argv[argc++] = args[i];
        }
        argv[argc] = NULL;

        envp = script_env(&extra);
        if (!envp)
                return -ENOMEM;
        if (pipe2(out_pipe, O_CLOEXEC) < 0 || (input && pipe2(in_pipe, O_CLOEXEC) < 0)) {
                r = -errno;
                goto out;
        }

        fflush(stdout);
        fflush(stderr);
        pid = fork();
        if (pid < 0) {
                r = -errno;
                goto out;
        }
        if (pid == 0)
                child_exec(argv, envp, in_pipe[0], out_pipe[1]);

        close(out_pipe[1]);
        out_pipe[1] = -1;
        if (in_pipe[0] >= 0) {
                close(in_pipe[0]);
                in_pipe[0] = -1;
        }
        if (in_pipe[1] >= 0 && in_len == 0) {
                close(in_pipe[1]);
                in_pipe[1] = -1;
        }
        /* Never block on stdin while the script waits for us to read stdout. */
        if (in_pipe[1] >= 0)
                (void) fcntl(in_pipe[1], F_SETFL, O_NONBLOCK);

        /* A script that exits without reading its input must not kill us. */
        sigaction(SIGPIPE, &ign, &old_pipe);
        while (out_open) {
                struct pollfd p[2] = {
                        { .fd = out_pipe[0], .events = POLLIN },
                        { .fd = in_pipe[1], .events = POLLOUT },
                };

                if (poll(p, in_pipe[1] >= 0 ? 2 : 1, -1) < 0) {
                        if (errno == EINTR)
                                continue;
                        break;
                }
                if (in_pipe[1] >= 0 && (p[1].revents & (POLLOUT | POLLERR | POLLHUP))) {
                        ssize_t n = write(in_pipe[1], input + in_off, in_len - in_off);

                        if (n > 0)
                                in_off += (size_t) n;
                        if ((n < 0 && errno != EINTR && errno != EAGAIN) || in_off == in_len) {
                                close(in_pipe[1]);
                                in_pipe[1] = -1;
                        }
                }
                if (p[0].revents & (POLLIN | POLLERR | POLLHUP)) {
                        char scratch[4096];
                        char *dst = scratch;
                        size_t room = sizeof(scratch);
                        ssize_t n;

                        /* Keep one byte for the NUL; once out is full, drain. */
                        if (out && out_len + 1 < out_size) {
                                dst = out + out_len;
                                room = out_size - out_len - 1;
                        }
                        n = read(out_pipe[0], dst, room);
                        if (n > 0 && dst != scratch)
                                out_len += (size_t) n;
                        else if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN))
                                out_open = false;
                }
        }
        sigaction(SIGPIPE, &old_pipe, NULL);
        if (out && out_size > 0)
                out[out_len] = '\0';

        while (waitpid(pid, &status, 0) < 0)
                if (errno != EINTR) {
                        r = -errno;
                        goto out;
                }
        if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
                r = out_len > INT_MAX ? INT_MAX : (int) out_len;
        else
                r = -EIO;

out:
        for (int i = 0; i < 2; i++) {
                if (out_pipe[i] >= 0)
                        close(out_pipe[i]);
                if (in_pipe[i] >= 0)
                        close(in_pipe[i]);
        }
        free(envp);
        free(extra);
        return r;
}

static int rm_one(const char *path, const struct stat *st, int type, struct FTW *ftw) {
        (void) st;
        (void) type;
        (void) ftw;
        if (remove(path) < 0 && errno != ENOENT)
                fprintf(stderr, "harness: cannot remove %s: %s\n", path, strerror(errno));
        return 0;
}

static void rm_rf(const char *dir) {
        struct stat st;

        if (lstat(dir, &st) < 0)
                return;
        nftw(dir, rm_one, 32, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);
}

static int copy_value(char *dst, size_t size, const char *value) {
        size_t len = strlen(value);

        if (len == 0 || len >= size)
                return -EPROTO;
        memcpy(dst, value, len + 1);
        return 0;
}

static int parse_port(int *port, const char *value) {
        char *end;
        long v;

        errno = 0;
        v = strtol(value, &end, 10);
        if (errno != 0 || end == value || *end != '\0' || v < 1 || v > 65535)
                return -EPROTO;
        *port = (int) v;
        return 0;
}

/* Fills h from start's KEY=VALUE lines; unknown keys are ignored. */
static int parse_start(struct harness *h, char *out, bool want_dbus, bool want_notify, bool want_listen) {
        char *save = NULL;

        for (char *line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
                char *value = strchr(line, '=');
                int r = 0;

                if (!value)
                        continue;
                *value++ = '\0';
                if (strcmp(line, "HOST") == 0)
                        r = copy_value(h->host, sizeof(h->host), value);
                else if (strcmp(line, "IMAP_PORT") == 0)
                        r = parse_port(&h->imap_port, value);
                else if (strcmp(line, "IMAPS_PORT") == 0)
                        r = parse_port(&h->imaps_port, value);
                else if (strcmp(line, "CA_FILE") == 0)
                        r = copy_value(h->ca_file, sizeof(h->ca_file), value);
                else if (strcmp(line, "DBUS_SESSION_BUS_ADDRESS") == 0)
                        r = copy_value(h->dbus_address, sizeof(h->dbus_address), value);
                else if (strcmp(line, "LISTEN") == 0 && !h->listen[0])
                        r = copy_value(h->listen, sizeof(h->listen), value);
                else if (strcmp(line, "DIR") == 0)
                        r = copy_value(h->dir, sizeof(h->dir), value);
                else if (strcmp(line, "DISPLAY") == 0)
                        r = value[0] == ':' ? copy_value(h->display, sizeof(h->display), value) : -EPROTO;
                else if (strcmp(line, "XAUTHORITY") == 0)
                        r = copy_value(h->xauthority, sizeof(h->xauthority), value);
                else if (strcmp(line, "NOTIFY_PID") == 0) {
                        char *end;
                        long v;

                        errno = 0;
                        v = strtol(value, &end, 10);
                        if (errno != 0 || end == value || *end != '\0' || v < 2 || v > INT_MAX)
                                r = -EPROTO;
                        else
                                h->notify_pid = (pid_t) v;
                }
                else if (strcmp(line, "USERS") == 0) {
                        char *end;
                        unsigned long n;

                        errno = 0;
                        n = strtoul(value, &end, 10);
                        if (errno != 0 || end == value || *end != '\0' || n < 1 || n > 1000)
                                r = -EPROTO;
                        else
                                h->n_users = (unsigned) n;
                }
                if (r < 0) {
                        fprintf(stderr, "harness: bad %s=%s from harness.sh start\n", line, value);
                        return r;
                }
        }
        if (!h->host[0] || !h->imap_port || !h->imaps_port || !h->ca_file[0] || !h->n_users || !h->dir[0] ||
            (want_dbus && !h->dbus_address[0]) || (want_listen && !h->listen[0]) ||
            (want_notify && (!h->display[0] || !h->xauthority[0] || !h->notify_pid))) {
                fprintf(stderr, "harness: harness.sh start printed incomplete settings\n");
                return -EPROTO;
        }
        return 0;
}

int harness_start(struct harness *h, unsigned flags) {
        return harness_start_listen(h, flags, NULL);
}

int harness_start_listen(struct harness *h, unsigned flags, const char *listen_addr) {
        char dir[PATH_MAX], pid[32], out[8192];
        const char *tmp = getenv("TMPDIR");
        const char *args[12];
        bool want_listen = listen_addr && *listen_addr;
        size_t n = 0;
        int r;

        memset(h, 0, sizeof(*h));
        if (!tmp || !*tmp)
                tmp = "/tmp";
        r = path_join(dir, sizeof(dir), tmp, "imapidled-harness.XXXXXX");
        if (r < 0)
                return r;
        if (!mkdtemp(dir))
                return -errno;
        snprintf(pid, sizeof(pid), "%ld", (long) getpid());

        args[n++] = "start";
        args[n++] = dir;
        args[n++] = "--owner";
        args[n++] = pid;
        if (!env_set("IMAPIDLED_HARNESS_KEEP"))
                args[n++] = "--remove-on-owner-exit";
        if (flags & HARNESS_NOTIFY)
                args[n++] = "--notify";
        else if (flags & HARNESS_DBUS)
                args[n++] = "--dbus";
        if (want_listen) {
                args[n++] = "--listen";
                args[n++] = listen_addr;
        }
        args[n] = NULL;

        r = run_script(args, NULL, out, sizeof(out));
        if (r >= 0)
                r = parse_start(h, out, flags & (HARNESS_DBUS | HARNESS_NOTIFY), flags & HARNESS_NOTIFY,
                                want_listen);
        if (r < 0) {
                const char *stop[] = { "stop", dir, NULL };

                (void) run_script(stop, NULL, NULL, 0);
                rm_rf(dir);
                memset(h, 0, sizeof(*h));
                return r;
        }
        return 0;
}

void harness_stop(struct harness *h) {
        const char *keep = getenv("IMAPIDLED_HARNESS_KEEP");

        if (!h || !h->dir[0])
                return;
        {
                const char *args[] = { "stop", h->dir, NULL };

                if (run_script(args, NULL, NULL, 0) < 0)
                        fprintf(stderr, "harness: stopping %s failed\n", h->dir);
        }
        if (keep && *keep && strcmp(keep, "0") != 0)
                fprintf(stderr, "harness: IMAPIDLED_HARNESS_KEEP set, keeping %s\n", h->dir);
        else
                rm_rf(h->dir);
        memset(h, 0, sizeof(*h));
}

static int parse_uid(const char *out, unsigned *ret_uid) {
        char *end;
        unsigned long v;

        if (!ret_uid)
                return 0;
        if (!*out) {
                *ret_uid = 0;
                return 0;
        }
        errno = 0;
        v = strtoul(out, &end, 10);
        if (errno != 0 || end == out || (*end != '\0' && *end != '\n') || v == 0 || v > 0xffffffffUL)
                return -EPROTO;
        *ret_uid = (unsigned) v;
        return 0;
}

int harness_mail(struct harness *h, const char *user, const char *mailbox, const char *from,
                 const char *subject, const char *body, unsigned *ret_uid) {
        const char *args[] = { "mail", h->dir, user, mailbox, from, subject, body, NULL };
        char out[64];
        int r;

        if (!h->dir[0])
                return -ENOTCONN;
        if (!user || !mailbox || !from || !subject)
                return -EINVAL;
        r = run_script(args, NULL, out, sizeof(out));
        if (r < 0)
                return r;
        return parse_uid(out, ret_uid);
}

int harness_deliver(struct harness *h, const char *user, const char *mailbox, const char *from,
                    const char *subject) {
        return harness_mail(h, user, mailbox, from, subject, NULL, NULL);
}

int harness_deliver_raw_uid(struct harness *h, const char *user, const char *mailbox, const char *message,
                            unsigned *ret_uid) {
        const char *args[] = { "deliver", h->dir, user, mailbox, NULL };
        char out[64];
        int r;

        if (!h->dir[0])
                return -ENOTCONN;
        if (!user || !mailbox || !message)
                return -EINVAL;
        r = run_script(args, message, out, sizeof(out));
        if (r < 0)
                return r;
        return parse_uid(out, ret_uid);
}

int harness_deliver_raw(struct harness *h, const char *user, const char *mailbox, const char *message) {
        return harness_deliver_raw_uid(h, user, mailbox, message, NULL);
}

int harness_expunge(struct harness *h, const char *user, const char *mailbox, unsigned uid) {
        char uid_s[16];
        const char *args[] = { "expunge", h->dir, user, mailbox, uid_s, NULL };
        int r;

        if (!h->dir[0])
                return -ENOTCONN;
        if (!user || !mailbox || uid == 0)
                return -EINVAL;
        snprintf(uid_s, sizeof(uid_s), "%u", uid);
        r = run_script(args, NULL, NULL, 0);
        return r < 0 ? r : 0;
}

int harness_flags(struct harness *h, const char *user, const char *mailbox, unsigned uid, const char *op,
                  const char *flags) {
        char uid_s[16];
        const char *args[] = { "flags", h->dir, user, mailbox, uid_s, op, flags, NULL };
        int r;

        if (!h->dir[0])
                return -ENOTCONN;
        if (!user || !mailbox || uid == 0 || !op || !flags)
                return -EINVAL;
        if (strcmp(op, "add") != 0 && strcmp(op, "remove") != 0 && strcmp(op, "replace") != 0)
                return -EINVAL;
        snprintf(uid_s, sizeof(uid_s), "%u", uid);
        r = run_script(args, NULL, NULL, 0);
        return r < 0 ? r : 0;
}

int harness_mkbox(struct harness *h, const char *user, const char *mailbox) {
        const char *args[] = { "mkbox", h->dir, user, mailbox, NULL };
        int r;

        if (!h->dir[0])
                return -ENOTCONN;
        if (!user || !mailbox)
                return -EINVAL;
        r = run_script(args, NULL, NULL, 0);
        return r < 0 ? r : 0;
}

static int run_dir_command(struct harness *h, const char *verb) {
        const char *args[] = { verb, h->dir, NULL };
        int r;

        if (!h->dir[0])
                return -ENOTCONN;
        r = run_script(args, NULL, NULL, 0);
        return r < 0 ? r : 0;
}

int harness_server_stop(struct harness *h) {
        return run_dir_command(h, "server-stop");
}

int harness_server_start(struct harness *h) {
        return run_dir_command(h, "server-start");
}

int harness_doveadm(struct harness *h, char *out, size_t out_size, ...) {
        const char *args[HARNESS_MAX_ARGS + 1];
        size_t n = 0;
        const char *a;
        va_list ap;

        if (!h->dir[0])
                return -ENOTCONN;
        args[n++] = "doveadm";
        args[n++] = h->dir;
        va_start(ap, out_size);
        while ((a = va_arg(ap, const char *))) {
                if (n >= HARNESS_MAX_ARGS) {
                        va_end(ap);
                        return -E2BIG;
                }
                args[n++] = a;
        }
        va_end(ap);
        args[n] = NULL;
        return run_script(args, NULL, out, out_size);
}

const char *harness_password(const struct harness *h, const char *user, char *buf, size_t size) {
        int n;

        (void) h;
        if (!user || !buf || size == 0)
                return NULL;
        n = snprintf(buf, size, "pass-%s", user);
        if (n < 0 || (size_t) n >= size)
                return NULL;
        return buf;
}

int harness_notify_signal(struct harness *h, int sig) {
        if (!h->dir[0] || h->notify_pid <= 0)
                return -ENOTCONN;
        if (kill(h->notify_pid, sig) < 0)
                return -errno;
        return 0;
}

int harness_notify_action(struct harness *h, const char *which) {
        const char *args[] = { "notify-action", h->dir, which, NULL };
        int r;

        if (!h->dir[0] || h->notify_pid <= 0)
                return -ENOTCONN;
        if (!which || (strcmp(which, "default") != 0 && strcmp(which, "context") != 0))
                return -EINVAL;
        r = run_script(args, NULL, NULL, 0);
        return r < 0 ? r : 0;
}

int harness_screenshot(struct harness *h, const char *png_path) {
        const char *args[] = { "screenshot", h->dir, png_path, NULL };
        int r;

        if (!h->dir[0] || h->notify_pid <= 0)
                return -ENOTCONN;
        if (!png_path || !*png_path)
                return -EINVAL;
        r = run_script(args, NULL, NULL, 0);
        return r < 0 ? r : 0;
}
