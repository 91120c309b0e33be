/* SPDX-License-Identifier: MIT */
/*
 * on_new_mail and on_change (see hooks.h for what a hook sees).
 *
 * One struct hook_slot per account, mailbox and hook kind, made on the first
 * event that concerns a configured hook and kept until the hooks are freed
 * (or, when idle, until a reload removes the hook). A slot collects events,
 * owns the debounce timer and at most one running child.
 *
 * A run is started with spawn_shell() (spawn.h) and watched through a
 * pidfd io source: it works however SIGCHLD is handled, and the leader is
 * reaped only after the exit was seen, so the process group id cannot have
 * been recycled when the group is signalled. Its stderr is a pipe read by an
 * io source into a fixed tail buffer of the slot (the last
 * HOOKS_STDERR_KEEP bytes); at the exit what the pipe still holds is read at
 * once and the tail reported. A pipe that is still open then (a background
 * process of the hook holds it) becomes a floating source that reads and
 * drops until EOF, so that process neither blocks nor gets SIGPIPE; the
 * same happens to the pipe of a run still going when the hooks are freed.
 */

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "hooks.h"
#include "log.h"
#include "macro.h"
#include "spawn.h"
#include "utf8.h"

#define STDERR_DETAIL_MAX 1024U                        /* bytes of stderr in the failure line */
#define READ_CHUNK 16384U
#define READS_PER_DISPATCH 16U                          /* let other sources run during a flood */
#define DRAIN_READS_MAX 64U                             /* at exit: 1 MiB, more than any pipe buffer */
#define DEBOUNCE_ACCURACY_USEC (UINT64_C(10) * 1000)
#define TIMEOUT_ACCURACY_USEC (UINT64_C(100) * 1000)

enum hook_kind {
        HOOK_NEW_MAIL,
        HOOK_CHANGE,
        _HOOK_KIND_MAX,
};

static const char *const hook_keys[_HOOK_KIND_MAX] = {
        [HOOK_NEW_MAIL] = "on_new_mail",
        [HOOK_CHANGE] = "on_change",
};

static const char *const hook_events[_HOOK_KIND_MAX] = {
        [HOOK_NEW_MAIL] = "new_mail",
        [HOOK_CHANGE] = "change",
};

struct hook_slot {
        struct hooks *hooks;
        struct hook_slot *next;
        enum hook_kind kind;
        char *account, *mailbox;
        char *prefix;                   /* "account/mailbox: " for the log */

        /* collected since the last run started */
        bool pending;
        unsigned count;                 /* new messages */
        uint32_t *uids;                 /* the first HOOKS_UIDS_MAX of them */
        size_t n_uids;
        char *from, *subject;           /* of the first one */

        /* on_change: the last counts seen */
        bool have_counts;
        uint32_t unseen, exists, uidvalidity;

        sd_event_source *debounce;      /* armed from the first event of a burst */
        bool due;                       /* the debounce fired during a run */

        /* the run */
        pid_t pid;                      /* also its process group; 0: none */
        int pidfd;
        sd_event_source *child_source;  /* io on pidfd */
        sd_event_source *err_source;    /* io on the stderr pipe, owns the fd */
        sd_event_source *timeout;       /* the run timeout, then the SIGKILL stage */
        bool timed_out, sigkill_sent;
        char err_tail[HOOKS_STDERR_KEEP]; /* the last bytes of stderr */
        size_t err_len;
        uint64_t err_total;             /* bytes of stderr read */
};

struct hooks {
        sd_event *event;
        const struct config *config;
        uint64_t timeout_usec;
        struct mail_sink sink;
        struct hook_slot *slots;
};

/* ---- slots --------------------------------------------------------------- */

static void slot_clear_collected(struct hook_slot *s) {
        s->pending = false;
        s->count = 0;
        s->n_uids = 0;
        free(s->from);
        free(s->subject);
        s->from = s->subject = NULL;
}

static void slot_stderr_let_go(struct hook_slot *s);

static struct hook_slot *slot_free(struct hook_slot *s) {
        if (!s)
                return NULL;
        s->debounce = sd_event_source_disable_unref(s->debounce);
        s->child_source = sd_event_source_disable_unref(s->child_source);
        slot_stderr_let_go(s);
        s->timeout = sd_event_source_disable_unref(s->timeout);
        if (s->pid > 0)
                log_debug("%s%s hook (process %d) left running", s->prefix, hook_keys[s->kind], (int) s->pid);
        if (s->pidfd >= 0)
                close(s->pidfd);
        slot_clear_collected(s);
        free(s->uids);
        free(s->account);
        free(s->mailbox);
        free(s->prefix);
        free(s);
        return NULL;
}

static const struct config_account *hooks_account(struct hooks *h, const char *account) {
        return config_find_account(h->config, account);
}

/* The command of that hook for the account, NULL if none. Borrowed from the
 * config. */
static const char *hook_command(struct hooks *h, const char *account, enum hook_kind kind) {
        const struct config_account *a = hooks_account(h, account);
        const char *c;

        if (!a)
                return NULL;
        c = kind == HOOK_NEW_MAIL ? a->notify.on_new_mail : a->notify.on_change;
        return c && *c ? c : NULL;
}

/* The slot for account/mailbox/kind if that hook is configured, made if
 * needed; NULL if not configured or out of memory (logged). */
static struct hook_slot *slot_get(struct hooks *h, const char *account, const char *mailbox, enum hook_kind kind) {
        struct hook_slot *s;

        if (!hook_command(h, account, kind))
                return NULL;
        for (s = h->slots; s; s = s->next)
                if (s->kind == kind && strcmp(s->account, account) == 0 && strcmp(s->mailbox, mailbox) == 0)
                        return s;

        s = calloc(1, sizeof(*s));
        if (!s) {
                log_oom();
                return NULL;
        }
        s->hooks = h;
        s->kind = kind;
        s->pidfd = -EBADF;
        s->account = strdup(account);
        s->mailbox = strdup(mailbox);
        if (!s->account || !s->mailbox || asprintf(&s->prefix, "%s/%s: ", account, mailbox) < 0) {
                s->prefix = NULL;
                slot_free(s);
                log_oom();
                return NULL;
        }
        s->next = h->slots;
        h->slots = s;
        return s;
}

/* ---- the environment ----------------------------------------------------- */

/* "NAME=" + text as valid UTF-8 without control characters, at most max
 * bytes of it. Returns a malloc'ed string or NULL (OOM). */
static char *env_text(const char *name, const char *text, size_t max) {
        _cleanup_free_ char *clean = NULL;
        size_t len, k = 0;
        char *e;

        if (utf8_sanitize(text ?: "", strlen(text ?: ""), &clean) < 0)
                return NULL;
        len = strlen(clean);
        for (size_t i = 0; i < len;) {
                uint32_t cp;
                int n = utf8_decode_char(clean + i, len - i, &cp);

                if (n <= 0) /* cannot happen after utf8_sanitize() */
                        break;
                if (!(cp < 0x20 || (cp >= 0x7f && cp < 0xa0))) {
                        memmove(clean + k, clean + i, (size_t) n);
                        k += (size_t) n;
                }
                i += (size_t) n;
        }
        k = utf8_truncate(clean, k, max);
        clean[k] = '\0';
        if (asprintf(&e, "%s=%s", name, clean) < 0)
                return NULL;
        return e;
}

static char *env_uids(const struct hook_slot *s) {
        /* "IMAPIDLED_UIDS=" + up to 10 digits and a space per UID */
        size_t size = strlen("IMAPIDLED_UIDS=") + s->n_uids * 11 + 1, off;
        char *e = malloc(size);

        if (!e)
                return NULL;
        off = (size_t) snprintf(e, size, "IMAPIDLED_UIDS=");
        for (size_t i = 0; i < s->n_uids; i++)
                off += (size_t) snprintf(e + off, size - off, "%s%" PRIu32, i ? " " : "", s->uids[i]);
        return e;
}

#define N_HOOK_VARS 7

/* The child's environment: envp is the daemon's environment without
 * IMAPIDLED_* (spawn_environment()) after vars (malloc'ed, owned here);
 * envp's other strings are environ's. */
struct hook_env {
        char *vars[N_HOOK_VARS];
        size_t n_vars;
        char **envp;
};

static void hook_env_done(struct hook_env *e) {
        for (size_t i = 0; i < e->n_vars; i++)
                free(e->vars[i]);
        free(e->envp);
        *e = (struct hook_env) {};
}

/* Takes v (may be NULL: OOM). */
static bool hook_env_push(struct hook_env *e, char *v) {
        assert(e->n_vars < N_HOOK_VARS);
        if (!v)
                return false;
        e->vars[e->n_vars++] = v;
        return true;
}

/* Returns 0 or -ENOMEM; on failure e is left empty. */
static int hook_env_build(const struct hook_slot *s, struct hook_env *e) {
        char *count = NULL;
        bool ok;

        *e = (struct hook_env) {};
        if (asprintf(&count, "IMAPIDLED_COUNT=%u", s->count) < 0)
                count = NULL;
        ok = hook_env_push(e, count) && hook_env_push(e, env_text("IMAPIDLED_EVENT", hook_events[s->kind], 32)) &&
             hook_env_push(e, env_text("IMAPIDLED_ACCOUNT", s->account, HOOKS_TEXT_MAX)) &&
             hook_env_push(e, env_text("IMAPIDLED_MAILBOX", s->mailbox, HOOKS_TEXT_MAX)) &&
             hook_env_push(e, env_uids(s));
        if (ok && s->count == 1 && s->from && s->subject)
                ok = hook_env_push(e, env_text("IMAPIDLED_FROM", s->from, HOOKS_TEXT_MAX)) &&
                     hook_env_push(e, env_text("IMAPIDLED_SUBJECT", s->subject, HOOKS_TEXT_MAX));
        if (ok)
                ok = spawn_environment(e->vars, e->n_vars, "IMAPIDLED_", &e->envp) >= 0;
        if (!ok) {
                hook_env_done(e);
                return -ENOMEM;
        }
        return 0;
}

/* ---- stderr ---------------------------------------------------------------- */

/* Keeps the last HOOKS_STDERR_KEEP bytes. */
static void slot_stderr_append(struct hook_slot *s, const char *p, size_t n) {
        const size_t keep = sizeof(s->err_tail);

        s->err_total += n;
        if (n >= keep) {
                memcpy(s->err_tail, p + n - keep, keep);
                s->err_len = keep;
                return;
        }
        if (s->err_len + n > keep) {
                size_t drop = s->err_len + n - keep;

                memmove(s->err_tail, s->err_tail + drop, s->err_len - drop);
                s->err_len -= drop;
        }
        memcpy(s->err_tail + s->err_len, p, n);
        s->err_len += n;
}

/* At most reads_max read(2)s from the non-blocking fd, into the tail if s is
 * not NULL, else dropped. Returns true at EOF (or an error): nothing more
 * will come. */
static bool stderr_read(struct hook_slot *s, int fd, unsigned reads_max) {
        char buf[READ_CHUNK];

        for (unsigned i = 0; i < reads_max; i++) {
                ssize_t n = read(fd, buf, sizeof(buf));

                if (n > 0) {
                        if (s)
                                slot_stderr_append(s, buf, (size_t) n);
                        continue;
                }
                if (n < 0 && errno == EINTR)
                        continue;
                return !(n < 0 && errno == EAGAIN);
        }
        return false;
}

/* userdata: the slot, or NULL once the run has ended and the loop owns the
 * (floating) source. */
static int on_stderr(sd_event_source *es, int fd, uint32_t revents, void *userdata) {
        struct hook_slot *s = userdata;

        if (!stderr_read(s, fd, READS_PER_DISPATCH))
                return 0;
        if (s) {
                s->err_source = sd_event_source_disable_unref(s->err_source);
                return 0;
        }
        /* take the floating source back from the loop and let it go */
        sd_event_source_ref(es);
        (void) sd_event_source_set_floating(es, false);
        sd_event_source_disable_unref(es);
        return 0;
}

/* The run has ended or the slot goes: a pipe not at EOF yet is held by
 * something the hook left behind; the loop reads it from now on and drops
 * what comes. */
static void slot_stderr_let_go(struct hook_slot *s) {
        sd_event_source *es = TAKE_PTR(s->err_source);

        if (!es)
                return;
        (void) sd_event_source_set_userdata(es, NULL);
        if (sd_event_source_set_floating(es, true) < 0)
                sd_event_source_disable_unref(es); /* closes it: the writer gets SIGPIPE */
        else
                sd_event_source_unref(es); /* the loop's now */
}

/* Reads what the pipe still holds after the exit. */
static void slot_stderr_drain(struct hook_slot *s) {
        if (s->err_source && stderr_read(s, sd_event_source_get_io_fd(s->err_source), DRAIN_READS_MAX))
                s->err_source = sd_event_source_disable_unref(s->err_source);
}

/* The start of the tail, past a character cut by dropping what came
 * before; *ret_cut tells whether something was dropped. */
static const char *slot_stderr_tail(const struct hook_slot *s, size_t *ret_len, bool *ret_cut) {
        size_t off = 0;

        *ret_cut = s->err_total > s->err_len;
        if (*ret_cut)
                while (off < s->err_len && ((unsigned char) s->err_tail[off] & 0xc0) == 0x80)
                        off++;
        *ret_len = s->err_len - off;
        return s->err_tail + off;
}

/* For the failure line: the tail as one line (spawn_output_excerpt()), "..."
 * in front when something was dropped. Malloc'ed; NULL if empty or OOM. */
static char *slot_stderr_excerpt(const struct hook_slot *s) {
        _cleanup_free_ char *text = NULL;
        const char *tail;
        size_t len;
        bool cut;
        char *t;

        tail = slot_stderr_tail(s, &len, &cut);
        text = spawn_output_excerpt(tail, len, STDERR_DETAIL_MAX - (cut ? 3 : 0), true);
        if (!text || !cut || strncmp(text, "...", 3) == 0)
                return TAKE_PTR(text);
        if (asprintf(&t, "...%s", text) < 0)
                return TAKE_PTR(text);
        return t;
}

/* After a successful run: each line of the tail at info level. */
static void slot_stderr_log_lines(const struct hook_slot *s) {
        const char *tail, *p, *end;
        size_t len;
        bool cut;

        tail = slot_stderr_tail(s, &len, &cut);
        for (p = tail, end = tail + len; p < end;) {
                const char *nl = memchr(p, '\n', (size_t) (end - p));
                size_t n = nl ? (size_t) (nl - p) : (size_t) (end - p);
                _cleanup_free_ char *line = spawn_output_excerpt(p, n, STDERR_DETAIL_MAX, false);

                if (line)
                        log_internal(LOG_INFO, 0, s->prefix, "%s hook: %s%s", hook_keys[s->kind],
                                     p == tail && cut ? "..." : "", line);
                p += n + (nl ? 1 : 0);
        }
}

/* ---- running ------------------------------------------------------------- */

static void slot_run(struct hook_slot *s);

static void slot_run_ended(struct hook_slot *s) {
        s->child_source = sd_event_source_disable_unref(s->child_source);
        s->timeout = sd_event_source_disable_unref(s->timeout);
        slot_stderr_let_go(s);
        s->err_len = 0;
        s->err_total = 0;
        if (s->pidfd >= 0)
                close(s->pidfd);
        s->pidfd = -EBADF;
        s->pid = 0;
        s->timed_out = s->sigkill_sent = false;
        if (s->due) {
                s->due = false;
                if (s->pending)
                        slot_run(s);
        }
}

static void log_exit(struct hook_slot *s, const siginfo_t *si) {
        const char *key = hook_keys[s->kind];
        _cleanup_free_ char *detail = NULL;
        char status[SPAWN_EXIT_STRING_MAX];

        if (spawn_exit_ok(si)) {
                slot_stderr_log_lines(s);
                log_debug("%s%s hook finished", s->prefix, key);
                return;
        }
        detail = slot_stderr_excerpt(s);
        log_internal(LOG_ERR, 0, s->prefix, "%s hook failed (%s)%s%s%s", key, spawn_exit_to_string(si, status),
                     s->timed_out ? " after timing out" : "", detail ? ": " : "", detail ?: "");
}

static int on_child(sd_event_source *es, int fd, uint32_t revents, void *userdata) {
        struct hook_slot *s = userdata;
        siginfo_t si;
        int r;

        /* peek first: while the leader is a zombie its group id is ours */
        r = spawn_child_exited(s->pid, &si);
        if (r == 0)
                return 0;
        if (r < 0) {
                log_internal(LOG_ERR, r, s->prefix, "%s hook: its exit status is lost (%m)", hook_keys[s->kind]);
                slot_run_ended(s);
                return 0;
        }
        if (s->timed_out)
                (void) kill(-s->pid, SIGKILL); /* what is left of the group */
        spawn_reap(s->pid);
        slot_stderr_drain(s);
        log_exit(s, &si);
        slot_run_ended(s);
        return 0;
}

static int on_timeout(sd_event_source *es, uint64_t usec, void *userdata) {
        struct hook_slot *s = userdata;

        if (!s->timed_out) {
                log_internal(LOG_WARNING, 0, s->prefix,
                             "%s hook still running after %" PRIu64 " ms, stopping its process group",
                             hook_keys[s->kind], s->hooks->timeout_usec / 1000);
                s->timed_out = true;
                spawn_terminate_group(s->pid);
                if (sd_event_source_set_time_relative(es, SPAWN_KILL_GRACE_USEC) >= 0 &&
                    sd_event_source_set_enabled(es, SD_EVENT_ONESHOT) >= 0)
                        return 0;
        }
        if (!s->sigkill_sent) {
                log_internal(LOG_WARNING, 0, s->prefix, "%s hook: process group %d still running, sending SIGKILL",
                             hook_keys[s->kind], (int) s->pid);
                (void) kill(-s->pid, SIGKILL);
                s->sigkill_sent = true;
        }
        return 0;
}

/* Starts the hook with what is collected; the collection starts afresh. */
static void slot_run(struct hook_slot *s) {
        struct hooks *h = s->hooks;
        struct spawn_options o;
        struct hook_env env;
        const char *command;
        int p[2], r;

        assert(s->pid == 0);
        command = hook_command(h, s->account, s->kind);
        if (!command) {
                slot_clear_collected(s); /* removed by a reload */
                return;
        }
        r = hook_env_build(s, &env);
        if (r < 0) {
                slot_clear_collected(s);
                log_internal(LOG_ERR, r, s->prefix, "%s hook not run: out of memory", hook_keys[s->kind]);
                return;
        }
        log_debug("%srunning %s hook (%u new): %s", s->prefix, hook_keys[s->kind], s->count, command);

        s->err_len = 0;
        s->err_total = 0;
        r = spawn_pipe(p);
        if (r >= 0) {
                r = sd_event_add_io(h->event, &s->err_source, p[0], EPOLLIN, on_stderr, s);
                if (r < 0) {
                        close(p[0]);
                        close(p[1]);
                }
        }
        if (r >= 0) {
                (void) sd_event_source_set_io_fd_own(s->err_source, true);
                (void) sd_event_source_set_description(s->err_source, "hook-stderr");
                o = (struct spawn_options) {
                        .command = command,
                        .envp = env.envp,
                        .stdin_fd = -1,
                        .stdout_fd = fcntl(STDERR_FILENO, F_GETFD) >= 0 ? STDERR_FILENO : -1,
                        .stderr_fd = p[1],
                };
                r = spawn_shell(&o, &s->pid, &s->pidfd);
                close(p[1]); /* ours, so that EOF comes when the child's is closed */
        }
        hook_env_done(&env);
        slot_clear_collected(s);
        if (r == -ESRCH) {
                /* already reaped by someone else (SIGCHLD ignored?): its
                 * pid may be recycled, never signal it */
                log_internal(LOG_ERR, 0, s->prefix, "%s hook: its exit status is lost (is SIGCHLD ignored?)",
                             hook_keys[s->kind]);
                slot_run_ended(s);
                return;
        }
        if (r < 0) {
                s->err_source = sd_event_source_disable_unref(s->err_source);
                log_internal(LOG_ERR, r, s->prefix, "%s hook failed: cannot start /bin/sh: %m", hook_keys[s->kind]);
                return;
        }

        r = sd_event_add_io(h->event, &s->child_source, s->pidfd, EPOLLIN, on_child, s);
        if (r < 0)
                goto fail;
        (void) sd_event_source_set_description(s->child_source, "hook-child");
        r = sd_event_add_time_relative(h->event, &s->timeout, CLOCK_MONOTONIC, h->timeout_usec,
                                       TIMEOUT_ACCURACY_USEC, on_timeout, s);
        if (r < 0)
                goto fail;
        (void) sd_event_source_set_description(s->timeout, "hook-timeout");
        return;

fail:
        /* not watchable: do not leave it running unwatched */
        log_internal(LOG_ERR, r, s->prefix, "%s hook: cannot watch process %d (%m), killing it", hook_keys[s->kind],
                     (int) s->pid);
        spawn_kill_and_reap(s->pid, s->pidfd);
        s->due = false;
        slot_run_ended(s);
}

static int on_debounce(sd_event_source *es, uint64_t usec, void *userdata) {
        struct hook_slot *s = userdata;

        s->debounce = sd_event_source_disable_unref(s->debounce);
        if (!s->pending)
                return 0;
        if (s->pid > 0) {
                s->due = true; /* after the current run */
                return 0;
        }
        slot_run(s);
        return 0;
}

/* Something to report happened: start the burst's timer if it is the first
 * event. */
static void slot_touch(struct hook_slot *s) {
        const struct config_account *a;
        uint64_t delay;
        int r;

        s->pending = true;
        if (s->debounce || s->due)
                return;
        a = hooks_account(s->hooks, s->account);
        delay = a ? a->notify.hook_debounce_usec : CONFIG_HOOK_DEBOUNCE_DEFAULT;
        r = sd_event_add_time_relative(s->hooks->event, &s->debounce, CLOCK_MONOTONIC, delay,
                                       DEBOUNCE_ACCURACY_USEC, on_debounce, s);
        if (r < 0) {
                log_internal(LOG_WARNING, r, s->prefix, "%s hook: cannot set up its timer (%m), running it now",
                             hook_keys[s->kind]);
                if (s->pid > 0)
                        s->due = true;
                else
                        slot_run(s);
                return;
        }
        (void) sd_event_source_set_description(s->debounce, "hook-debounce");
}

/* ---- the sink ------------------------------------------------------------ */

static void slot_add_message(struct hook_slot *s, const struct mail_message *m) {
        if (s->count == 0) {
                free(s->from);
                free(s->subject);
                s->from = strdup(m->from ?: "");
                s->subject = strdup(m->subject ?: "");
                /* without them the run goes on with the rest */
        }
        s->count++;
        if (s->n_uids < HOOKS_UIDS_MAX) {
                if (!s->uids) {
                        s->uids = malloc(HOOKS_UIDS_MAX * sizeof(uint32_t));
                        if (!s->uids)
                                log_oom();
                }
                if (s->uids)
                        s->uids[s->n_uids++] = m->uid;
        }
        slot_touch(s);
}

static void sink_new_mail(const struct mail_message *m, void *userdata) {
        struct hooks *h = userdata;

        for (enum hook_kind k = 0; k < _HOOK_KIND_MAX; k++) {
                struct hook_slot *s = slot_get(h, m->account, m->mailbox, k);

                if (s)
                        slot_add_message(s, m);
        }
}

static void sink_removed(const char *account, const char *mailbox, const uint32_t *uids, size_t n, void *userdata) {
        struct hook_slot *s = slot_get(userdata, account, mailbox, HOOK_CHANGE);

        if (s && n > 0)
                slot_touch(s);
}

static void sink_flags_changed(const char *account, const char *mailbox, uint32_t uid, bool seen, void *userdata) {
        struct hook_slot *s = slot_get(userdata, account, mailbox, HOOK_CHANGE);

        if (s)
                slot_touch(s);
}

static void sink_mailbox_changed(const struct mail_mailbox_info *info, void *userdata) {
        struct hook_slot *s = slot_get(userdata, info->account, info->mailbox, HOOK_CHANGE);
        bool changed;

        if (!s || info->uidvalidity == 0)
                return; /* no counts from the server yet */
        /* a state change (idle, syncing ...) or uidnext alone is not a change
         * of the mailbox; new mail comes through new_mail */
        changed = s->have_counts && (s->unseen != info->unseen || s->exists != info->exists ||
                                     s->uidvalidity != info->uidvalidity);
        s->have_counts = true;
        s->unseen = info->unseen;
        s->exists = info->exists;
        s->uidvalidity = info->uidvalidity;
        if (changed)
                slot_touch(s);
}

/* ---- life cycle ---------------------------------------------------------- */

int hooks_new(sd_event *e, const struct config *config, struct hooks **ret) {
        struct hooks *h;
        const char *t;

        if (!e || !ret)
                return -EINVAL;
        h = calloc(1, sizeof(*h));
        if (!h)
                return -ENOMEM;
        h->event = e;
        h->config = config;
        h->timeout_usec = HOOKS_TIMEOUT_USEC;
        /* $IMAPIDLED_HOOK_TIMEOUT_MS: for tests of a hanging hook */
        t = getenv("IMAPIDLED_HOOK_TIMEOUT_MS");
        if (t && *t) {
                char *end;
                unsigned long long ms;

                errno = 0;
                ms = strtoull(t, &end, 10);
                if (errno == 0 && !*end && ms > 0 && ms < UINT64_MAX / 1000)
                        h->timeout_usec = (uint64_t) ms * 1000;
        }
        h->sink = (struct mail_sink) {
                .new_mail = sink_new_mail,
                .removed = sink_removed,
                .flags_changed = sink_flags_changed,
                .mailbox_changed = sink_mailbox_changed,
                .userdata = h,
        };
        *ret = h;
        return 0;
}

void hooks_set_config(struct hooks *h, const struct config *config) {
        struct hook_slot **p;

        if (!h)
                return;
        h->config = config;
        for (p = &h->slots; *p;) {
                struct hook_slot *s = *p;

                if (hook_command(h, s->account, s->kind)) {
                        p = &s->next;
                        continue;
                }
                /* no longer configured */
                s->debounce = sd_event_source_disable_unref(s->debounce);
                s->due = false;
                slot_clear_collected(s);
                if (s->pid > 0) {
                        p = &s->next; /* runs to its end, then stays idle */
                        continue;
                }
                *p = s->next;
                slot_free(s);
        }
}

const struct mail_sink *hooks_sink(struct hooks *h) {
        return &h->sink;
}

struct hooks *hooks_free(struct hooks *h) {
        if (!h)
                return NULL;
        while (h->slots) {
                struct hook_slot *s = h->slots;

                h->slots = s->next;
                slot_free(s);
        }
        free(h);
        return NULL;
}
