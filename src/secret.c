/* SPDX-License-Identifier: MIT */
/*
 * The secret providers of SPEC §3: password_command, password_file,
 * password_credential, password. Every result arrives through the done
 * callback on the loop.
 *
 * password_command
 *   Started with spawn_shell() (see spawn.h: own process group, clean
 *   signal state, no inherited fds, watched through a pidfd) with stdin
 *   /dev/null and the daemon's environment without the variables systemd
 *   passes to the daemon itself.
 *
 *   stdout and stderr are pipes read by io sources. Of each only the first
 *   line is kept (stdout up to 64 KiB, stderr up to 4 KiB); the rest is
 *   read and dropped, so the child never blocks on a full pipe. The buffers
 *   and the scratch space that saw stdout are wiped.
 *
 *   The request completes when the child has exited: then what is left in
 *   the pipes is read at once (an exited child has written all it will; a
 *   descendant that keeps the pipe open does not hold us up) and an early
 *   EOF on stdout (the child closed it but runs on) just ends the reading.
 *
 *   On timeout or cancel the request is detached from its owner: the
 *   process group gets SIGTERM and SIGCONT (a member stopped by SIGTTIN
 *   would never see the TERM), the pipes are closed, and the loop owns the
 *   rest: the pidfd source and the timer become floating sources with a
 *   destroy callback. The group id is only ever signalled while the leader
 *   is unreaped, so it cannot have been recycled: when the leader exits
 *   during the grace period, it stays a zombie while /proc shows other live
 *   members of its group (checked every 100 ms), and after 2 s whatever is
 *   left gets SIGKILL; then the leader is reaped and the request freed. If
 *   the loop is freed first, the destroy callbacks SIGKILL the group and
 *   reap the child (waiting at most 1 s for a SIGKILLed process), so no
 *   zombie and no fd outlive the loop either.
 *
 * password_file, password_credential, password
 *   Read (a small regular file, at most 64 KiB) from a defer source, so the
 *   caller sees the same callback semantics as for a command.
 *
 * Everything runs on the loop thread, including the once-per-path warning
 * set for readable password files.
 */

#include <assert.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/param.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log.h"
#include "macro.h"
#include "secret.h"
#include "spawn.h"

#define SECRET_LINE_MAX (64U * 1024U)           /* stdout and files: the first line at most */
#define STDERR_KEEP_MAX (4U * 1024U)
#define ERROR_DETAIL_MAX 200U                   /* bytes of stderr in an error message */
#define READ_CHUNK 16384U
#define READS_PER_DISPATCH 16U                  /* let other sources run during a flood */
#define DRAIN_READS_MAX 64U                     /* at exit: 1 MiB, more than any pipe buffer */
#define GROUP_RECHECK_USEC (100U * 1000U)
#define KILL_TIMER_ACCURACY_USEC (10U * 1000U)

#define EXIT_STATUS_LOST "password_command: its exit status is lost (is SIGCHLD ignored?)"

/* The first line of a stream or a file. data is wiped before it is freed or
 * moved. Invariant: alloc > len whenever data != NULL, so the line can be
 * NUL-terminated in place. */
struct line_buffer {
        char *data;
        size_t len, alloc;
        size_t max;             /* bytes kept at most */
        bool line_done;         /* data holds a '\n': the rest is dropped */
        bool overflow;          /* max bytes without a '\n' */
        bool oom;               /* an allocation failed: the rest is dropped */
};

struct secret_request {
        sd_event *event;                /* borrowed; used only before detaching */
        enum secret_source source;
        secret_done_fn done;
        void *userdata;
        char *value;                    /* command, path, name or the secret: wiped */
        bool in_callback;

        /* SECRET_FILE, SECRET_CREDENTIAL, SECRET_PLAIN, and a command that
         * could not be started (spawn_error) */
        sd_event_source *defer;
        char *spawn_error;

        /* SECRET_COMMAND */
        uint64_t timeout_usec;          /* UINT64_MAX: none */
        pid_t pid;                      /* also the process group id; 0 before spawning */
        int pidfd;                      /* owned here, not by child_source */
        sd_event_source *child_source;  /* io on pidfd */
        sd_event_source *out_source;    /* io on the stdout pipe, owns the fd */
        sd_event_source *err_source;    /* io on the stderr pipe, owns the fd */
        sd_event_source *timer;         /* the timeout; once detached, the SIGKILL stage */
        struct line_buffer out, err;

        /* once detached (timed out or cancelled): the loop owns the request
         * through floating child_source and timer */
        bool detached;
        bool leader_exited;
        bool sigkill_sent;
        bool reaped;
        uint64_t kill_deadline;         /* CLOCK_MONOTONIC */
        unsigned n_floating;            /* floating sources not yet destroyed */
};

static const char *const source_names[_SECRET_SOURCE_MAX] = {
        [SECRET_COMMAND] = "password_command",
        [SECRET_FILE] = "password_file",
        [SECRET_CREDENTIAL] = "password_credential",
        [SECRET_PLAIN] = "password",
};

const char *secret_source_to_string(enum secret_source src) {
        if ((unsigned) src >= _SECRET_SOURCE_MAX)
                return NULL;
        return source_names[src];
}

/* ------------------------------------------------------------------------ */
/* small helpers */

/* A malloc'ed message, or NULL on OOM. error (> 0) is what %m names. */
_attribute_printf_(2, 3) static char *errorf(int error, const char *fmt, ...) {
        char *s = NULL;
        va_list ap;
        int r;

        errno = error;
        va_start(ap, fmt);
        r = vasprintf(&s, fmt, ap);
        va_end(ap);
        return r < 0 ? NULL : s;
}

static void string_wipe_free(char *s) {
        if (!s)
                return;
        explicit_bzero(s, strlen(s));
        free(s);
}

static void format_timeout(char *buf, size_t size, uint64_t usec) {
        if (usec % 1000000U == 0)
                snprintf(buf, size, "%" PRIu64 " s", usec / 1000000U);
        else
                snprintf(buf, size, "%" PRIu64 " ms", (usec + 999U) / 1000U);
}

static void line_buffer_wipe(struct line_buffer *b) {
        size_t max = b->max;

        if (b->data) {
                explicit_bzero(b->data, b->alloc);
                free(b->data);
        }
        *b = (struct line_buffer) { .max = max };
}

/* Grows the buffer to hold want bytes (at most max + 1), copying and wiping
 * rather than realloc(), which could leave a copy of the data behind. */
static int line_buffer_reserve(struct line_buffer *b, size_t want) {
        size_t n;
        char *p;

        if (b->alloc >= want)
                return 0;
        n = b->alloc > 0 ? b->alloc : 256;
        while (n < want)
                n *= 2;
        n = MIN(n, b->max + 1);
        p = malloc(n);
        if (!p)
                return -ENOMEM;
        if (b->data) {
                memcpy(p, b->data, b->len);
                explicit_bzero(b->data, b->alloc);
                free(b->data);
        }
        b->data = p;
        b->alloc = n;
        return 0;
}

/* One read(2) from fd: into the buffer until the first '\n' or max bytes,
 * into wiped scratch space after that. Returns the number of bytes read
 * (> 0), 0 at end of file, -EAGAIN or another -errno. */
static ssize_t line_buffer_read(struct line_buffer *b, int fd) {
        char scratch[READ_CHUNK];
        ssize_t n;

        /* room for one more byte and the NUL at least: a password needs
         * the first 256 bytes, a flood grows the buffer by doubling */
        if (!b->line_done && !b->overflow && !b->oom && line_buffer_reserve(b, b->len + 2) < 0)
                b->oom = true;

        for (;;) {
                if (!b->line_done && !b->overflow && !b->oom) {
                        size_t room = MIN(b->alloc - 1, b->max) - b->len;

                        n = read(fd, b->data + b->len, room);
                        if (n > 0) {
                                if (memchr(b->data + b->len, '\n', (size_t) n))
                                        b->line_done = true;
                                b->len += (size_t) n;
                                if (!b->line_done && b->len >= b->max)
                                        b->overflow = true;
                        }
                } else {
                        n = read(fd, scratch, sizeof(scratch));
                        if (n > 0)
                                explicit_bzero(scratch, (size_t) n);
                }
                if (n >= 0)
                        return n;
                if (errno != EINTR)
                        return -errno;
        }
}

/* The first line without "\n" or "\r\n", NUL-terminated in place (owned by
 * b); its length in *ret_len. */
static const char *line_buffer_first_line(struct line_buffer *b, size_t *ret_len) {
        const char *nl;
        size_t n;

        if (!b->data) {
                *ret_len = 0;
                return "";
        }
        nl = memchr(b->data, '\n', b->len);
        n = nl ? (size_t) (nl - b->data) : b->len;
        if (n > 0 && b->data[n - 1] == '\r')
                n--;
        b->data[n] = '\0';
        *ret_len = n;
        return b->data;
}

/* Checks a first line as a secret. Returns NULL if it is one (or empty:
 * each caller words that itself), else what is wrong with it (static text,
 * to follow "<what>: "). */
static const char *line_problem(const struct line_buffer *b, const char *line, size_t len) {
        if (b->oom)
                return "out of memory";
        if (b->overflow)
                return "first line longer than 64 KiB";
        if (memchr(line, '\0', len))
                return "NUL byte in the first line";
        return NULL;
}

/* ------------------------------------------------------------------------ */
/* delivery and freeing */

static void request_deliver(struct secret_request *q, const char *secret, const char *error) {
        assert((secret == NULL) != (error == NULL));
        q->in_callback = true;
        q->done(q, secret, error, q->userdata);
        q->in_callback = false;
}

static struct secret_request *request_free(struct secret_request *q) {
        if (!q)
                return NULL;

        q->defer = sd_event_source_disable_unref(q->defer);
        q->out_source = sd_event_source_disable_unref(q->out_source);
        q->err_source = sd_event_source_disable_unref(q->err_source);
        q->timer = sd_event_source_disable_unref(q->timer);
        q->child_source = sd_event_source_disable_unref(q->child_source);
        if (q->pidfd >= 0)
                close(q->pidfd);
        line_buffer_wipe(&q->out);
        line_buffer_wipe(&q->err);
        string_wipe_free(q->value);
        free(q->spawn_error);
        free(q);
        return NULL;
}

static void request_freep(struct secret_request **q) {
        request_free(*q);
}

/* ------------------------------------------------------------------------ */
/* files and credentials */

static char **warned_paths;             /* paths warned about, for the process lifetime */
static size_t n_warned_paths;

static void warn_readable_once(const char *path, mode_t mode) {
        char **p;

        for (size_t i = 0; i < n_warned_paths; i++)
                if (strcmp(warned_paths[i], path) == 0)
                        return;

        log_warning("password_file %s is readable by %s (mode %04o); chmod 600 it", path,
                    (mode & S_IROTH) ? "others" : "its group", (unsigned) (mode & 07777));

        p = realloc(warned_paths, (n_warned_paths + 1) * sizeof(char *));
        if (!p)
                return;
        warned_paths = p;
        p[n_warned_paths] = strdup(path);
        if (p[n_warned_paths])
                n_warned_paths++;
}

/* Reads the first line of the regular file path into b. Returns it (owned
 * by b) or NULL with a message naming what (e.g. "password_file /x") in
 * *ret_error (malloc'ed; NULL on OOM). */
static const char *file_read_secret(const char *path, const char *what, bool warn_mode, struct line_buffer *b,
                                    char **ret_error) {
        _cleanup_close_ int fd = -EBADF;
        const char *line, *problem;
        struct stat st;
        size_t len;

        /* O_NONBLOCK: a FIFO put there must not block the loop in open() */
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
        if (fd < 0 || fstat(fd, &st) < 0) {
                *ret_error = errorf(errno, "%s: %m", what);
                return NULL;
        }
        if (!S_ISREG(st.st_mode)) {
                *ret_error = errorf(0, "%s: not a regular file", what);
                return NULL;
        }
        if (warn_mode && (st.st_mode & (S_IRGRP | S_IROTH)))
                warn_readable_once(path, st.st_mode);

        while (!b->line_done && !b->overflow && !b->oom) {
                ssize_t n = line_buffer_read(b, fd);

                if (n < 0) {
                        *ret_error = errorf((int) -n, "%s: %m", what);
                        return NULL;
                }
                if (n == 0)
                        break;
        }

        line = line_buffer_first_line(b, &len);
        problem = line_problem(b, line, len);
        if (!problem && len == 0)
                problem = "empty first line";
        if (problem) {
                *ret_error = errorf(0, "%s: %s", what, problem);
                return NULL;
        }
        return line;
}

static bool credential_name_is_valid(const char *name) {
        return name[0] != '\0' && !strchr(name, '/') && strcmp(name, ".") != 0 && strcmp(name, "..") != 0;
}

static const char *credential_read_secret(const char *name, struct line_buffer *b, char **ret_error) {
        _cleanup_free_ char *path = NULL, *what = NULL;
        const char *dir = getenv("CREDENTIALS_DIRECTORY");

        if (!dir || dir[0] == '\0') {
                *ret_error = strdup("password_credential needs $CREDENTIALS_DIRECTORY "
                                    "(set by systemd LoadCredential=/SetCredential=)");
                return NULL;
        }
        if (!credential_name_is_valid(name)) {
                *ret_error = errorf(0, "password_credential \"%s\" is not a credential name (no '/' allowed)", name);
                return NULL;
        }
        if (asprintf(&path, "%s/%s", dir, name) < 0) {
                path = NULL;
                *ret_error = NULL;
                return NULL;
        }
        if (asprintf(&what, "password_credential %s (%s)", name, path) < 0) {
                what = NULL;
                *ret_error = NULL;
                return NULL;
        }
        return file_read_secret(path, what, false, b, ret_error);
}

static int on_defer(sd_event_source *s, void *userdata) {
        struct secret_request *q = userdata;
        struct line_buffer buf = { .max = SECRET_LINE_MAX };
        _cleanup_free_ char *error = NULL;
        const char *secret = NULL;
        _cleanup_free_ char *what = NULL;

        q->defer = sd_event_source_disable_unref(q->defer);

        switch (q->source) {
        case SECRET_COMMAND:
                error = TAKE_PTR(q->spawn_error);
                break;
        case SECRET_FILE:
                what = errorf(0, "password_file %s", q->value);
                if (what)
                        secret = file_read_secret(q->value, what, true, &buf, &error);
                break;
        case SECRET_CREDENTIAL:
                secret = credential_read_secret(q->value, &buf, &error);
                break;
        case SECRET_PLAIN:
                if (q->value[0] == '\0')
                        error = strdup("password is empty");
                else
                        secret = q->value;
                break;
        default:
                assert(false);
        }

        if (!secret && !error)
                log_debug("%s: out of memory", source_names[q->source]);
        request_deliver(q, secret, secret ? NULL : error ? error : "could not read the password: out of memory");
        line_buffer_wipe(&buf);
        request_free(q);
        return 0;
}

/* ------------------------------------------------------------------------ */
/* the command: results */

/* Is a process other than a zombie in process group pgid? 1, 0, or -errno
 * when /proc cannot be read (the caller then assumes yes). */
static int process_group_has_live_members(pid_t pgid) {
        struct dirent *de;
        DIR *d;
        int r = 0;

        d = opendir("/proc");
        if (!d)
                return -errno;
        while (r == 0 && (de = readdir(d))) {
                char path[300], buf[512], state;
                const char *p;
                int ppid, pgrp, fd;
                ssize_t n;

                if (!isdigit((unsigned char) de->d_name[0]))
                        continue;
                snprintf(path, sizeof(path), "%s/stat", de->d_name);
                fd = openat(dirfd(d), path, O_RDONLY | O_CLOEXEC);
                if (fd < 0)
                        continue; /* gone meanwhile */
                n = read(fd, buf, sizeof(buf) - 1);
                close(fd);
                if (n <= 0)
                        continue;
                buf[n] = '\0';
                /* "pid (comm) state ppid pgrp ...", comm may hold anything */
                p = strrchr(buf, ')');
                if (p && sscanf(p + 1, " %c %d %d", &state, &ppid, &pgrp) == 3 && pgrp == pgid && state != 'Z' &&
                    state != 'X')
                        r = 1;
        }
        closedir(d);
        return r;
}

/* The first line of stderr for an error message (see
 * spawn_output_excerpt()), at most ERROR_DETAIL_MAX bytes. NULL if there is
 * none, or if it contains the first line of stdout, which may be the
 * secret. */
static char *command_stderr_excerpt(struct secret_request *q, const char *out_line, size_t out_len) {
        const char *line;
        size_t len;

        line = line_buffer_first_line(&q->err, &len);
        if (len == 0)
                return NULL;
        if (out_len > 0 && memmem(line, len, out_line, out_len))
                return NULL;
        return spawn_output_excerpt(line, len, ERROR_DETAIL_MAX, false);
}

static char *command_failure_message(struct secret_request *q, const siginfo_t *si, const char *out_line,
                                     size_t out_len) {
        _cleanup_free_ char *detail = NULL;
        char status[SPAWN_EXIT_STRING_MAX];

        detail = command_stderr_excerpt(q, out_line, out_len);
        return errorf(0, "password_command failed (%s)%s%s", spawn_exit_to_string(si, status), detail ? ": " : "",
                      detail ?: "");
}

/* Reads what an output pipe still holds and closes it. */
static void pipe_drain(sd_event_source **s, struct line_buffer *b) {
        int fd;

        if (!*s)
                return;
        fd = sd_event_source_get_io_fd(*s);
        for (unsigned i = 0; fd >= 0 && i < DRAIN_READS_MAX; i++)
                if (line_buffer_read(b, fd) <= 0)
                        break;
        *s = sd_event_source_disable_unref(*s);
}

/* The child has exited and is reaped: si is its status, NULL if unknown.
 * Delivers the result and frees the request. */
static void command_finish(struct secret_request *q, const siginfo_t *si) {
        _cleanup_free_ char *error = NULL;
        const char *secret = NULL, *line, *problem;
        size_t len;

        pipe_drain(&q->out_source, &q->out);
        pipe_drain(&q->err_source, &q->err);
        q->timer = sd_event_source_disable_unref(q->timer);
        q->child_source = sd_event_source_disable_unref(q->child_source);

        line = line_buffer_first_line(&q->out, &len);
        if (!si)
                error = strdup(EXIT_STATUS_LOST);
        else if (!spawn_exit_ok(si))
                error = command_failure_message(q, si, line, len);
        else if ((problem = line_problem(&q->out, line, len)))
                error = errorf(0, "password_command output: %s", problem);
        else if (len == 0)
                error = strdup("password_command printed nothing");
        else
                secret = line;

        request_deliver(q, secret, secret ? NULL : error ? error : "password_command failed: out of memory");
        request_free(q);
}

/* ------------------------------------------------------------------------ */
/* the command: after a timeout or cancel */

static void on_floating_destroyed(void *userdata) {
        struct secret_request *q = userdata;

        if (!q->reaped) {
                /* The loop is being freed before the grace period ended. */
                spawn_kill_and_reap(q->pid, q->pidfd);
                q->reaped = true;
        }
        assert(q->n_floating > 0);
        if (--q->n_floating > 0)
                return;
        q->timer = q->child_source = NULL; /* both gone */
        request_free(q);
}

/* Hands a source over to the loop, with q's share in n_floating. */
static void source_make_floating(sd_event_source *s) {
        (void) sd_event_source_set_destroy_callback(s, on_floating_destroyed);
        (void) sd_event_source_set_floating(s, true); /* the loop takes a reference ... */
        sd_event_source_unref(s);                     /* ... and we drop ours */
}

static void source_release_floating(sd_event_source *s) {
        sd_event_source_ref(s);
        (void) sd_event_source_set_floating(s, false);
        sd_event_source_disable_unref(s);
}

/* Reaps the leader and lets the floating sources go; the last destroy
 * callback frees q, so q must not be used afterwards. */
static void command_reap_and_release(struct secret_request *q) {
        sd_event_source *timer = q->timer, *child = q->child_source;

        if (!q->reaped) {
                spawn_reap(q->pid);
                q->reaped = true;
        }
        log_debug("password_command: process group %d stopped", (int) q->pid);
        source_release_floating(timer);
        source_release_floating(child);
}

static void command_kill_now(struct secret_request *q) {
        log_debug("password_command: process group %d still running, sending SIGKILL", (int) q->pid);
        (void) kill(-q->pid, SIGKILL);
        q->sigkill_sent = true;
        (void) sd_event_source_set_enabled(q->child_source, SD_EVENT_ON); /* reap when it is gone */
}

/* The leader has exited but its group has not: look again soon. */
static void command_arm_recheck(struct secret_request *q) {
        uint64_t now;
        int r;

        r = sd_event_now(sd_event_source_get_event(q->timer), CLOCK_MONOTONIC, &now);
        if (r >= 0)
                r = sd_event_source_set_time(q->timer, MIN(now + GROUP_RECHECK_USEC, q->kill_deadline));
        if (r >= 0)
                r = sd_event_source_set_enabled(q->timer, SD_EVENT_ONESHOT);
        if (r < 0)
                command_kill_now(q);
}

/* Takes the running command from its owner: SIGTERM to the group, the
 * pipes closed, the rest owned by the loop. */
static void command_detach(struct secret_request *q) {
        uint64_t now;
        int r;

        assert(!q->detached && q->pid > 0);
        q->detached = true;

        q->out_source = sd_event_source_disable_unref(q->out_source);
        q->err_source = sd_event_source_disable_unref(q->err_source);
        line_buffer_wipe(&q->out);
        line_buffer_wipe(&q->err);

        log_debug("password_command: stopping process group %d", (int) q->pid);
        spawn_terminate_group(q->pid);

        r = sd_event_now(q->event, CLOCK_MONOTONIC, &now);
        if (r >= 0) {
                q->kill_deadline = now + SPAWN_KILL_GRACE_USEC;
                r = sd_event_source_set_time(q->timer, q->kill_deadline);
        }
        if (r >= 0)
                r = sd_event_source_set_time_accuracy(q->timer, KILL_TIMER_ACCURACY_USEC);
        if (r >= 0)
                r = sd_event_source_set_enabled(q->timer, SD_EVENT_ONESHOT);
        if (r < 0)
                command_kill_now(q);

        q->n_floating = 2;
        source_make_floating(q->timer);
        source_make_floating(q->child_source);
        q->event = NULL; /* not needed any more; may go before we do */
}

/* ------------------------------------------------------------------------ */
/* the command: event sources */

static void pipe_read_some(sd_event_source **s, struct line_buffer *b, int fd) {
        for (unsigned i = 0; i < READS_PER_DISPATCH; i++) {
                ssize_t n = line_buffer_read(b, fd);

                if (n > 0)
                        continue;
                if (n == -EAGAIN)
                        return;
                /* EOF or an error: nothing more will come. The child may run
                 * on (it closed stdout): its exit ends the request. */
                *s = sd_event_source_disable_unref(*s);
                return;
        }
}

static int on_stdout(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        struct secret_request *q = userdata;

        pipe_read_some(&q->out_source, &q->out, fd);
        return 0;
}

static int on_stderr(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        struct secret_request *q = userdata;

        pipe_read_some(&q->err_source, &q->err, fd);
        return 0;
}

static int on_child(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        struct secret_request *q = userdata;
        siginfo_t si = {};
        bool known = true;
        int r;

        /* Peek only: in the grace period the exited leader is kept
         * unreaped, so that its group id cannot be recycled. */
        r = spawn_child_exited(q->pid, &si);
        if (r == 0)
                return 0; /* not exited after all */
        if (r < 0) {
                /* ECHILD: reaped by someone else (SIGCHLD set to SIG_IGN,
                 * a waitpid(-1) elsewhere) */
                log_debug_errno(r, "password_command: waitid(%d): %m", (int) q->pid);
                known = false;
                q->reaped = true;
        }

        if (!q->detached) {
                if (known) {
                        spawn_reap(q->pid);
                        q->reaped = true;
                        log_debug("password_command: process %d exited (code %d, status %d)", (int) q->pid,
                                  si.si_code, si.si_status);
                }
                command_finish(q, known ? &si : NULL);
                return 0;
        }

        q->leader_exited = true;
        if (!q->reaped && !q->sigkill_sent && process_group_has_live_members(q->pid) != 0) {
                (void) sd_event_source_set_enabled(s, SD_EVENT_OFF);
                command_arm_recheck(q);
                return 0;
        }
        command_reap_and_release(q);
        return 0;
}

static int on_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        struct secret_request *q = userdata;
        char what[32], error[96];
        uint64_t now;

        if (!q->detached) {
                format_timeout(what, sizeof(what), q->timeout_usec);
                snprintf(error, sizeof(error), "password_command did not finish within %s", what);
                log_debug("password_command: process %d timed out", (int) q->pid);
                command_detach(q);
                /* q stays alive (the loop owns it) while the callback runs */
                request_deliver(q, NULL, error);
                return 0;
        }

        if (q->sigkill_sent)
                return 0;
        if (q->leader_exited && sd_event_now(sd_event_source_get_event(s), CLOCK_MONOTONIC, &now) >= 0 &&
            now < q->kill_deadline) {
                if (process_group_has_live_members(q->pid) == 0)
                        command_reap_and_release(q);
                else
                        command_arm_recheck(q);
                return 0;
        }
        command_kill_now(q);
        return 0;
}

/* Creates the pipes and sources, then spawns. Returns -errno for failures
 * of ours; a command that cannot be started or watched leaves its message in
 * q->spawn_error and returns 0. */
static int command_start(struct secret_request *q) {
        _cleanup_close_ int out_w = -EBADF, err_w = -EBADF;
        _cleanup_free_ char **env = NULL;
        struct spawn_options o;
        int p[2], r;

        r = spawn_pipe(p);
        if (r < 0)
                return r;
        out_w = p[1];
        r = sd_event_add_io(q->event, &q->out_source, p[0], EPOLLIN, on_stdout, q);
        if (r < 0) {
                close(p[0]);
                return r;
        }
        (void) sd_event_source_set_io_fd_own(q->out_source, true);

        r = spawn_pipe(p);
        if (r < 0)
                return r;
        err_w = p[1];
        r = sd_event_add_io(q->event, &q->err_source, p[0], EPOLLIN, on_stderr, q);
        if (r < 0) {
                close(p[0]);
                return r;
        }
        (void) sd_event_source_set_io_fd_own(q->err_source, true);

        r = sd_event_add_time_relative(q->event, &q->timer, CLOCK_MONOTONIC,
                                       q->timeout_usec == UINT64_MAX ? SPAWN_KILL_GRACE_USEC : q->timeout_usec, 0,
                                       on_timer, q);
        if (r < 0)
                return r;
        if (q->timeout_usec == UINT64_MAX)
                (void) sd_event_source_set_enabled(q->timer, SD_EVENT_OFF);

        r = spawn_environment(NULL, 0, NULL, &env);
        if (r >= 0) {
                o = (struct spawn_options) {
                        .command = q->value,
                        .envp = env,
                        .stdin_fd = -1,
                        .stdout_fd = out_w,
                        .stderr_fd = err_w,
                };
                r = spawn_shell(&o, &q->pid, &q->pidfd);
        }
        /* Ours closed, so that EOF comes when the child's are. */
        close(out_w);
        close(err_w);
        out_w = err_w = -EBADF;
        if (r < 0) {
                q->pid = 0;
                q->out_source = sd_event_source_disable_unref(q->out_source);
                q->err_source = sd_event_source_disable_unref(q->err_source);
                q->timer = sd_event_source_disable_unref(q->timer);
                if (r == -ESRCH)
                        q->spawn_error = strdup(EXIT_STATUS_LOST);
                else if (r == -ENOSYS)
                        q->spawn_error = strdup("password_command needs Linux 5.3 or newer (pidfd_open)");
                else
                        q->spawn_error = errorf(-r, "password_command could not be started: %m");
                return q->spawn_error ? 0 : -ENOMEM;
        }

        r = sd_event_add_io(q->event, &q->child_source, q->pidfd, EPOLLIN, on_child, q);
        if (r < 0) {
                spawn_kill_and_reap(q->pid, q->pidfd);
                q->pid = 0;
                return r;
        }

        log_debug("password_command: started process %d", (int) q->pid);
        return 0;
}

/* ------------------------------------------------------------------------ */

int secret_fetch(sd_event *e, enum secret_source src, const char *value, uint64_t timeout_usec, secret_done_fn done,
                 void *userdata, struct secret_request **ret) {
        _cleanup_(request_freep) struct secret_request *q = NULL;
        int r;

        if (!e || (unsigned) src >= _SECRET_SOURCE_MAX || !value || !done || !ret)
                return -EINVAL;

        q = malloc(sizeof(*q));
        if (!q)
                return -ENOMEM;
        *q = (struct secret_request) {
                .event = e,
                .source = src,
                .done = done,
                .userdata = userdata,
                .timeout_usec = timeout_usec == 0 ? SECRET_COMMAND_TIMEOUT_DEFAULT_USEC : timeout_usec,
                .pidfd = -EBADF,
                .out = { .max = SECRET_LINE_MAX },
                .err = { .max = STDERR_KEEP_MAX },
        };
        q->value = strdup(value);
        if (!q->value)
                return -ENOMEM;

        if (src == SECRET_COMMAND) {
                r = command_start(q);
                if (r < 0)
                        return r;
        }
        if (src != SECRET_COMMAND || q->spawn_error) {
                r = sd_event_add_defer(e, &q->defer, on_defer, q);
                if (r < 0)
                        return r;
        }

        *ret = TAKE_PTR(q);
        return 0;
}

struct secret_request *secret_cancel(struct secret_request *q) {
        if (!q)
                return NULL;
        if (q->in_callback)
                return NULL; /* finishing anyway */
        assert(!q->detached); /* its callback has run: q is not the caller's any more */

        if (q->pid > 0) {
                /* Keep the loop alive across the hand-over, even if the
                 * caller dropped its reference too early. */
                sd_event *e = sd_event_ref(q->event);

                command_detach(q);
                sd_event_unref(e);
                return NULL;
        }
        return request_free(q);
}
