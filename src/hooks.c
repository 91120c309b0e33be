/* SPDX-License-Identifier: MIT */
/*
 * on_new_mail and on_change (see hooks.h for what a hook sees).
 *
 * One struct hook_slot per account, mailbox and hook kind, made on the first
 * event that concerns a configured hook and kept until the hooks are freed
 * (or, when idle, until a reload removes the hook). A slot collects events,
 * owns the debounce timer and at most one running child.
 *
 * Spawning follows src/secret.c (posix_spawn, own process group, pidfd);
 * the code is not shared because the child's fds differ (no pipes: its
 * output goes to the daemon's stderr) and secret.c keeps its helpers
 * static. The child is watched through a pidfd io source: it works however
 * SIGCHLD is handled, and the leader is reaped only after the exit was
 * seen, so the process group id cannot have been recycled when the group is
 * signalled.
 */

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "hooks.h"
#include "log.h"
#include "macro.h"
#include "utf8.h"

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif

#define KILL_GRACE_USEC (UINT64_C(2) * 1000000)         /* SIGTERM -> SIGKILL */
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
        sd_event_source *timeout;       /* the run timeout, then the SIGKILL stage */
        bool timed_out, sigkill_sent;
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

static struct hook_slot *slot_free(struct hook_slot *s) {
        if (!s)
                return NULL;
        s->debounce = sd_event_source_disable_unref(s->debounce);
        s->child_source = sd_event_source_disable_unref(s->child_source);
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

static bool env_is_dropped(const char *e) {
        static const char *const prefixes[] = {
                "NOTIFY_SOCKET=", "WATCHDOG_PID=", "WATCHDOG_USEC=", "LISTEN_", "IMAPIDLED_",
        };

        for (size_t i = 0; i < ELEMENTSOF(prefixes); i++)
                if (strncmp(e, prefixes[i], strlen(prefixes[i])) == 0)
                        return true;
        return false;
}

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

/* The child's environment: envp is the daemon's environment, filtered, plus
 * vars (malloc'ed, owned here); envp's other strings are environ's. */
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
        size_t n = 0, k = 0;
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
        if (ok) {
                for (char **p = environ; p && *p; p++)
                        n++;
                e->envp = calloc(n + e->n_vars + 1, sizeof(char *));
                ok = e->envp != NULL;
        }
        if (!ok) {
                hook_env_done(e);
                return -ENOMEM;
        }
        for (size_t i = 0; i < e->n_vars; i++)
                e->envp[k++] = e->vars[i];
        for (char **p = environ; p && *p; p++)
                if (!env_is_dropped(*p))
                        e->envp[k++] = *p;
        e->envp[k] = NULL;
        return 0;
}

/* ---- spawning ------------------------------------------------------------ */

/* /bin/sh -c command with envp; see hooks.h for the child's setup. Returns
 * 0 and the pid, or -errno (also when /bin/sh could not be executed). */
static int hook_spawn(const char *command, char **envp, pid_t *ret_pid) {
        char *argv[] = { (char *) "/bin/sh", (char *) "-c", (char *) command, NULL };
        posix_spawn_file_actions_t fa;
        posix_spawnattr_t attr;
        sigset_t none, all;
        pid_t pid;
        int r;

        r = posix_spawnattr_init(&attr);
        if (r != 0)
                return -r;
        r = posix_spawn_file_actions_init(&fa);
        if (r != 0) {
                posix_spawnattr_destroy(&attr);
                return -r;
        }

        sigemptyset(&none);
        /* every signal, also glibc's internal ones: see secret.c */
        memset(&all, 0xff, sizeof(all));
        r = posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
        if (r == 0)
                r = posix_spawnattr_setpgroup(&attr, 0);
        if (r == 0)
                r = posix_spawnattr_setsigmask(&attr, &none);
        if (r == 0)
                r = posix_spawnattr_setsigdefault(&attr, &all);
        if (r == 0)
                r = posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
        if (fcntl(STDERR_FILENO, F_GETFD) >= 0) {
                /* dup2(2, 2) clears FD_CLOEXEC should the daemon's stderr have it */
                if (r == 0)
                        r = posix_spawn_file_actions_adddup2(&fa, STDERR_FILENO, STDERR_FILENO);
                if (r == 0)
                        r = posix_spawn_file_actions_adddup2(&fa, STDERR_FILENO, STDOUT_FILENO);
        } else {
                if (r == 0)
                        r = posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
                if (r == 0)
                        r = posix_spawn_file_actions_addopen(&fa, STDERR_FILENO, "/dev/null", O_WRONLY, 0);
        }
        if (r == 0)
                r = posix_spawn_file_actions_addclosefrom_np(&fa, STDERR_FILENO + 1);
        if (r == 0)
                r = posix_spawn(&pid, argv[0], &fa, &attr, argv, envp);

        posix_spawn_file_actions_destroy(&fa);
        posix_spawnattr_destroy(&attr);
        if (r != 0)
                return -r;
        *ret_pid = pid;
        return 0;
}

/* ---- running ------------------------------------------------------------- */

static void slot_run(struct hook_slot *s);

static void slot_run_ended(struct hook_slot *s) {
        s->child_source = sd_event_source_disable_unref(s->child_source);
        s->timeout = sd_event_source_disable_unref(s->timeout);
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

        if (si->si_code == CLD_EXITED && si->si_status == 0) {
                log_debug("%s%s hook finished", s->prefix, key);
                return;
        }
        if (si->si_code == CLD_EXITED)
                log_internal(LOG_ERR, 0, s->prefix, "%s hook failed (exit status %d)", key, si->si_status);
        else if (si->si_code == CLD_KILLED || si->si_code == CLD_DUMPED) {
                const char *name = sigabbrev_np(si->si_status);
                char num[16];

                snprintf(num, sizeof(num), "%d", si->si_status);
                log_internal(LOG_ERR, 0, s->prefix, "%s hook failed (killed by signal %s%s%s)%s", key,
                             name ? "SIG" : "", name ?: num, si->si_code == CLD_DUMPED ? ", core dumped" : "",
                             s->timed_out ? " after timing out" : "");
        } else
                log_internal(LOG_ERR, 0, s->prefix, "%s hook failed (wait status %d/%d)", key, si->si_code,
                             si->si_status);
}

static int on_child(sd_event_source *es, int fd, uint32_t revents, void *userdata) {
        struct hook_slot *s = userdata;
        siginfo_t si = {};

        /* peek first: while the leader is a zombie its group id is ours */
        if (waitid(P_PID, s->pid, &si, WEXITED | WNOHANG | WNOWAIT) < 0) {
                if (errno == EINTR)
                        return 0;
                log_internal(LOG_ERR, errno, s->prefix, "%s hook: its exit status is lost (%m)", hook_keys[s->kind]);
                slot_run_ended(s);
                return 0;
        }
        if (si.si_pid == 0)
                return 0;
        if (s->timed_out)
                (void) kill(-s->pid, SIGKILL); /* what is left of the group */
        while (waitid(P_PID, s->pid, &si, WEXITED | WNOHANG) < 0 && errno == EINTR)
                ;
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
                (void) kill(-s->pid, SIGTERM);
                (void) kill(-s->pid, SIGCONT);
                if (sd_event_source_set_time_relative(es, KILL_GRACE_USEC) >= 0 &&
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
        struct hook_env env;
        const char *command;
        int r;

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
        r = hook_spawn(command, env.envp, &s->pid);
        hook_env_done(&env);
        slot_clear_collected(s);
        if (r < 0) {
                s->pid = 0;
                log_internal(LOG_ERR, r, s->prefix, "%s hook failed: cannot start /bin/sh: %m", hook_keys[s->kind]);
                return;
        }

        s->pidfd = (int) syscall(SYS_pidfd_open, s->pid, 0);
        if (s->pidfd < 0) {
                r = -errno;
                if (r == -ESRCH) {
                        /* already reaped by someone else (SIGCHLD ignored?):
                         * its pid may be recycled, never signal it */
                        log_internal(LOG_ERR, 0, s->prefix, "%s hook: its exit status is lost (is SIGCHLD ignored?)",
                                     hook_keys[s->kind]);
                        slot_run_ended(s);
                        return;
                }
                goto fail;
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
        (void) kill(-s->pid, SIGKILL);
        while (waitpid(s->pid, NULL, 0) < 0 && errno == EINTR)
                ;
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
