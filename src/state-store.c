/* SPDX-License-Identifier: MIT */
/*
 * The state directory: one small text file per account, read synchronously
 * and cached, written atomically by a worker thread.
 *
 * Loop side. Every account that was asked about has a struct account_state
 * holding its mailboxes' points (the cache, authoritative once read). A save
 * updates the cache, marks the account dirty and write_requested, queues its
 * callback on the account's pending list and arms a defer source; the defer
 * handler (dispatch) turns every account's requests into at most one write
 * job: the account's whole file, serialised on the loop thread. While that
 * job is queued and not yet started, later saves replace its bytes and join
 * its callbacks (coalescing); while it runs they wait on the pending list
 * for the next job. Saves that change nothing join the outstanding job, or
 * are confirmed on the next dispatch if there is none. Since an account has
 * at most one job and the worker takes jobs in order, callbacks of one
 * account run in save order.
 *
 * Worker side. struct store_worker is shared under its lock: the FIFO of
 * queued jobs, the running one, and the list of finished jobs the loop has
 * not seen. One thread (started when a job is queued and none runs, all
 * signals blocked) takes jobs one by one and signals the eventfd; it exits
 * after WORKER_LINGER_USEC without work and is joined by the loop thread
 * before the next one starts, or at free. A job's path and bytes are its
 * own, so the worker never touches the store or an account. If free gives
 * up on a hung disk, it marks the worker abandoned and detaches the thread,
 * which then frees the running job and the worker struct itself.
 */

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <time.h>

#include "log.h"
#include "macro.h"
#include "state-store.h"

#define STATE_MAGIC "imapidled-state"
#define STATE_VERSION 1
#define STATE_FILE_MAX (1024 * 1024)
#define STATE_SUFFIX ".state"
#define STATE_TMP_SUFFIX ".state.tmp"
/* '.' + name + ".state.tmp" within NAME_MAX */
#define ACCOUNT_ESCAPED_MAX (NAME_MAX - 1 - (sizeof(STATE_TMP_SUFFIX) - 1))

#define USEC_PER_SEC 1000000ULL
#define WORKER_LINGER_USEC (5 * USEC_PER_SEC)
#define FREE_FLUSH_TIMEOUT_USEC (5 * USEC_PER_SEC)

#define DAMAGED_CONSEQUENCE "treating its mailboxes as new: their existing mail will be counted, not announced; " \
        "the file is written anew at the next change (if this happens again, check the disk)"

struct saved_callback {
        state_saved_fn fn;
        void *userdata;
        struct saved_callback *next;
};

/* FIFO of callbacks; moving one list onto another allocates nothing. */
struct callback_list {
        struct saved_callback *head, *tail;
};

enum job_state {
        JOB_QUEUED,
        JOB_RUNNING,
        JOB_DONE,
};

/* Where a write failed, for the message. */
enum job_step {
        STEP_NONE,
        STEP_SPAWN,
        STEP_MKDIR,
        STEP_OPEN,
        STEP_WRITE,
        STEP_FSYNC,
        STEP_CLOSE,
        STEP_RENAME,
        STEP_UNLINK,
        STEP_SYNC_DIR,
};

struct account_state;

struct write_job {
        /* loop thread only */
        struct account_state *account;
        struct callback_list callbacks;

        /* fixed when queued; read by the worker */
        char *path;
        char *tmp_path;
        /* the file's bytes, NULL: remove the file. The loop thread replaces
         * them only while QUEUED, under the lock. */
        char *data;
        size_t size;

        /* under the worker's lock */
        enum job_state state;
        struct write_job *next;
        int error;                      /* 0 or -errno, set before DONE */
        enum job_step failed_step;
};

struct store_worker {
        pthread_mutex_t lock;
        pthread_cond_t wake;            /* for the thread: a job, or stop */
        pthread_cond_t progress;        /* for flush: a job finished */

        /* under lock */
        struct write_job *queue_head, *queue_tail;
        struct write_job *running;
        struct write_job *done_head, *done_tail;
        bool active;                    /* a thread runs worker_main() */
        bool stop;                      /* exit once the queue is empty */
        bool abandoned;                 /* the store is gone: the thread frees this */

        /* fixed */
        int efd;                        /* owned by the store's io source */
        char *dir;
        char *scratch;                  /* strlen(dir) + 1 bytes, for mkdir -p */

        /* loop thread only */
        pthread_t thread;
        bool joinable;
};

struct mailbox_entry {
        char *name;
        struct imap_mailbox_point point;
};

struct account_state {
        struct account_state *next;
        char *id;
        char *path;
        char *tmp_path;

        struct mailbox_entry *mailboxes;
        size_t n_mailboxes, n_allocated;

        bool file_exists;               /* some file (maybe damaged) is on disk */
        bool dirty;                     /* the cache differs from the disk */
        bool write_requested;           /* a save or forget since the last dispatch */
        int load_error;                 /* reading failed (not ENOENT): get returns it */

        struct write_job *job;          /* the one write queued or running */
        struct callback_list pending;   /* saves not attached to a job yet */

        int write_error;                /* of the last finished write */
        char *write_message;
        uint64_t write_error_seq;
};

struct state_store {
        sd_event *event;
        char *dir;
        struct account_state *accounts, *accounts_tail;

        sd_event_source *dispatch_source;       /* defer, ONESHOT when armed */
        sd_event_source *completion_source;     /* the worker's eventfd */
        struct store_worker *worker;

        uint64_t error_seq;
        unsigned in_callback;
        bool freeing;
};

/* ---- small helpers -------------------------------------------------------- */

static uint64_t now_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * USEC_PER_SEC + (uint64_t) ts.tv_nsec / 1000U;
}

static struct timespec timespec_from_usec(uint64_t usec) {
        return (struct timespec) {
                .tv_sec = (time_t) (usec / USEC_PER_SEC),
                .tv_nsec = (long) (usec % USEC_PER_SEC) * 1000L,
        };
}

/* CRC-32 (IEEE 802.3, reflected, as zlib's crc32()), four bits at a time. */
static uint32_t crc32_buf(const void *buf, size_t n) {
        static const uint32_t t[16] = {
                0x00000000, 0x1db71064, 0x3b6e20c8, 0x26d930ac, 0x76dc4190, 0x6b6b51f4, 0x4db26158, 0x5005713c,
                0xedb88320, 0xf00f9344, 0xd6d6a3e8, 0xcb61b38c, 0x9b64c2b0, 0x86d3d2d4, 0xa00ae278, 0xbdbdf21c,
        };
        const unsigned char *p = buf;
        uint32_t crc = 0xffffffffU;

        for (size_t i = 0; i < n; i++) {
                crc ^= p[i];
                crc = (crc >> 4) ^ t[crc & 15];
                crc = (crc >> 4) ^ t[crc & 15];
        }
        return ~crc;
}

static bool account_byte_plain(unsigned char c, size_t i) {
        if (c == '.')
                return i > 0;
        return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
               c == '-';
}

static bool mailbox_byte_plain(unsigned char c, size_t i) {
        return c > ' ' && c < 0x7f && c != '%';
}

/* Percent-encodes the bytes of s that plain() rejects. Returns a new string
 * or NULL (ENOMEM). */
static char *escape(const char *s, bool (*plain)(unsigned char c, size_t i)) {
        static const char hex[] = "0123456789ABCDEF";
        size_t n = strlen(s);
        char *buf, *q;

        buf = malloc(n * 3 + 1);
        if (!buf)
                return NULL;
        q = buf;
        for (size_t i = 0; i < n; i++) {
                unsigned char c = (unsigned char) s[i];

                if (plain(c, i))
                        *q++ = (char) c;
                else {
                        *q++ = '%';
                        *q++ = hex[c >> 4];
                        *q++ = hex[c & 15];
                }
        }
        *q = 0;
        return buf;
}

static int hex_value(char c) {
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'A' && c <= 'F')
                return c - 'A' + 10;
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        return -1;
}

/* Decodes a mailbox token of len bytes. Returns a new string, or NULL with
 * *ret_bad set (bad escape, NUL or raw byte) or unset (ENOMEM). */
static char *unescape_mailbox(const char *s, size_t len, bool *ret_bad) {
        char *buf, *q;

        buf = malloc(len + 1);
        if (!buf)
                return NULL;
        q = buf;
        for (size_t i = 0; i < len; i++) {
                unsigned char c = (unsigned char) s[i];
                int hi, lo;

                if (c != '%') {
                        if (c <= ' ' || c >= 0x7f)
                                goto bad;
                        *q++ = (char) c;
                        continue;
                }
                if (len - i < 3)
                        goto bad;
                hi = hex_value(s[i + 1]);
                lo = hex_value(s[i + 2]);
                if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
                        goto bad;
                *q++ = (char) (hi << 4 | lo);
                i += 2;
        }
        *q = 0;
        return buf;

bad:
        free(buf);
        *ret_bad = true;
        return NULL;
}

/* A decimal number of 1-20 digits, no sign, at most max. */
static bool parse_number(const char *s, size_t len, uint64_t max, uint64_t *ret) {
        uint64_t v = 0;

        if (len == 0 || len > 20)
                return false;
        for (size_t i = 0; i < len; i++) {
                unsigned d;

                if (s[i] < '0' || s[i] > '9')
                        return false;
                d = (unsigned) (s[i] - '0');
                if (v > (max - d) / 10)
                        return false;
                v = v * 10 + d;
        }
        *ret = v;
        return true;
}

static char *path_join3(const char *a, const char *b, const char *c) {
        char *p;

        if (asprintf(&p, "%s%s%s", a, b, c) < 0)
                return NULL;
        return p;
}

char *state_store_default_dir(void) {
        const char *e = getenv("XDG_STATE_HOME"), *home;
        char *p;

        /* XDG: a relative value is invalid and is ignored. */
        if (e && e[0] == '/')
                p = path_join3(e, "/", "imapidled");
        else {
                home = getenv("HOME");
                if (!home || home[0] != '/') {
                        struct passwd pw, *result = NULL;
                        char buf[4096];

                        if (getpwuid_r(getuid(), &pw, buf, sizeof(buf), &result) != 0 || !result ||
                            !pw.pw_dir || pw.pw_dir[0] != '/') {
                                errno = ENOENT;
                                return NULL;
                        }
                        return path_join3(pw.pw_dir, "/", ".local/state/imapidled");
                }
                p = path_join3(home, "/", ".local/state/imapidled");
        }
        if (!p)
                errno = ENOMEM;
        return p;
}

/* ---- callbacks ------------------------------------------------------------ */

static void callback_list_append(struct callback_list *l, struct saved_callback *c) {
        c->next = NULL;
        if (l->tail)
                l->tail->next = c;
        else
                l->head = c;
        l->tail = c;
}

/* Moves all of from to the end of to. */
static void callback_list_move(struct callback_list *to, struct callback_list *from) {
        if (!from->head)
                return;
        if (to->tail)
                to->tail->next = from->head;
        else
                to->head = from->head;
        to->tail = from->tail;
        *from = (struct callback_list) {};
}

/* Calls and frees every callback of l, in order. */
static void callback_list_run(struct state_store *s, struct callback_list *l, int r, const char *message) {
        struct callback_list taken = *l;

        *l = (struct callback_list) {};
        for (struct saved_callback *c = taken.head, *next; c; c = next) {
                next = c->next;
                s->in_callback++;
                c->fn(s, r, message ?: "", c->userdata);
                s->in_callback--;
                free(c);
        }
}

static void callback_list_clear(struct callback_list *l) {
        for (struct saved_callback *c = l->head, *next; c; c = next) {
                next = c->next;
                free(c);
        }
        *l = (struct callback_list) {};
}

/* ---- jobs and the worker thread ------------------------------------------- */

static void job_free(struct write_job *j) {
        if (!j)
                return;
        callback_list_clear(&j->callbacks);
        free(j->path);
        free(j->tmp_path);
        free(j->data);
        free(j);
}

static void worker_free(struct store_worker *w) {
        if (!w)
                return;
        pthread_mutex_destroy(&w->lock);
        pthread_cond_destroy(&w->wake);
        pthread_cond_destroy(&w->progress);
        free(w->dir);
        free(w->scratch);
        free(w);
}

static int worker_new(const char *dir, int efd, struct store_worker **ret) {
        struct store_worker *w;
        pthread_condattr_t ca;
        int r;

        w = calloc(1, sizeof(*w));
        if (!w)
                return -ENOMEM;
        w->efd = efd;
        w->dir = strdup(dir);
        w->scratch = malloc(strlen(dir) + 1);
        if (!w->dir || !w->scratch) {
                free(w->dir);
                free(w->scratch);
                free(w);
                return -ENOMEM;
        }

        r = pthread_condattr_init(&ca);
        if (r == 0) {
                (void) pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
                r = pthread_cond_init(&w->wake, &ca);
                if (r == 0) {
                        r = pthread_cond_init(&w->progress, &ca);
                        if (r != 0)
                                pthread_cond_destroy(&w->wake);
                }
                pthread_condattr_destroy(&ca);
        }
        if (r == 0) {
                r = pthread_mutex_init(&w->lock, NULL);
                if (r != 0) {
                        pthread_cond_destroy(&w->wake);
                        pthread_cond_destroy(&w->progress);
                }
        }
        if (r != 0) {
                free(w->dir);
                free(w->scratch);
                free(w);
                return -r;
        }
        *ret = w;
        return 0;
}

/* mkdir -p with mode 0700 for every directory it creates. Worker thread:
 * uses the preallocated scratch buffer. Returns 0, or -errno of the first
 * directory that neither exists nor can be made. */
static int mkdir_p(struct store_worker *w) {
        char *p = w->scratch;

        strcpy(p, w->dir);
        for (char *q = p + 1;; q++)
                if (*q == '/' || *q == 0) {
                        char c = *q;

                        *q = 0;
                        if (mkdir(p, 0700) < 0 && errno != EEXIST)
                                return -errno;
                        *q = c;
                        if (c == 0)
                                return 0;
                }
}

static int sync_dir(const char *dir) {
        _cleanup_close_ int fd = -1;

        fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        /* some file systems cannot sync a directory; the rename stands */
        if (fsync(fd) < 0 && errno != EINVAL)
                return -errno;
        return 0;
}

/* The write itself, in the worker thread: no allocation, no logging. */
static int job_run_write(struct store_worker *w, struct write_job *j, enum job_step *ret_step) {
        int fd, r;

        /* a temp file left by a crash, or by another writer that gave up */
        (void) unlink(j->tmp_path);
        fd = open(j->tmp_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0 && errno == ENOENT) {
                r = mkdir_p(w);
                if (r < 0) {
                        *ret_step = STEP_MKDIR;
                        return r;
                }
                fd = open(j->tmp_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
        }
        if (fd < 0) {
                *ret_step = STEP_OPEN;
                return -errno;
        }

        for (size_t done = 0; done < j->size;) {
                ssize_t n = write(fd, j->data + done, j->size - done);

                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        *ret_step = STEP_WRITE;
                        r = -errno;
                        goto fail;
                }
                if (n == 0) {
                        *ret_step = STEP_WRITE;
                        r = -EIO;
                        goto fail;
                }
                done += (size_t) n;
        }
        if (fsync(fd) < 0) {
                *ret_step = STEP_FSYNC;
                r = -errno;
                goto fail;
        }
        r = close(fd);
        fd = -1;
        if (r < 0 && errno != EINTR) {
                *ret_step = STEP_CLOSE;
                r = -errno;
                goto fail;
        }
        if (rename(j->tmp_path, j->path) < 0) {
                *ret_step = STEP_RENAME;
                r = -errno;
                goto fail;
        }
        r = sync_dir(w->dir);
        if (r < 0) {
                *ret_step = STEP_SYNC_DIR;
                return r;
        }
        return 0;

fail:
        if (fd >= 0)
                close(fd);
        /* never leave a partial file behind */
        (void) unlink(j->tmp_path);
        return r;
}

static int job_run_remove(struct store_worker *w, struct write_job *j, enum job_step *ret_step) {
        int r;

        if (unlink(j->path) < 0 && errno != ENOENT) {
                *ret_step = STEP_UNLINK;
                return -errno;
        }
        (void) unlink(j->tmp_path);
        r = sync_dir(w->dir);
        if (r < 0 && r != -ENOENT) {
                *ret_step = STEP_SYNC_DIR;
                return r;
        }
        return 0;
}

static void *worker_main(void *arg) {
        struct store_worker *w = arg;
        bool idle_expired = false, abandoned;

        pthread_mutex_lock(&w->lock);
        for (;;) {
                struct write_job *j = w->queue_head;
                struct timespec deadline;

                if (j) {
                        enum job_step step = STEP_NONE;
                        int r;

                        w->queue_head = j->next;
                        if (!w->queue_head)
                                w->queue_tail = NULL;
                        j->next = NULL;
                        j->state = JOB_RUNNING;
                        w->running = j;
                        pthread_mutex_unlock(&w->lock);

                        r = j->data ? job_run_write(w, j, &step) : job_run_remove(w, j, &step);

                        pthread_mutex_lock(&w->lock);
                        w->running = NULL;
                        if (w->abandoned)
                                job_free(j);
                        else {
                                j->error = r;
                                j->failed_step = r < 0 ? step : STEP_NONE;
                                j->state = JOB_DONE;
                                if (w->done_tail)
                                        w->done_tail->next = j;
                                else
                                        w->done_head = j;
                                w->done_tail = j;
                                /* under the lock: free cannot close it meanwhile */
                                (void) eventfd_write(w->efd, 1);
                        }
                        pthread_cond_broadcast(&w->progress);
                        idle_expired = false;
                        continue;
                }
                if (w->stop || w->abandoned || idle_expired)
                        break;

                deadline = timespec_from_usec(now_usec() + WORKER_LINGER_USEC);
                while (!w->queue_head && !w->stop && !w->abandoned)
                        if (pthread_cond_timedwait(&w->wake, &w->lock, &deadline) == ETIMEDOUT) {
                                idle_expired = true;
                                break;
                        }
        }
        w->active = false;
        abandoned = w->abandoned;
        pthread_mutex_unlock(&w->lock);

        /* The store let go of us: nobody else touches w any more. */
        if (abandoned)
                worker_free(w);
        return NULL;
}

/* Queues j and makes sure a thread runs. Returns 0 or -errno (nothing
 * queued). */
static int worker_enqueue(struct store_worker *w, struct write_job *j) {
        int r = 0;

        pthread_mutex_lock(&w->lock);
        j->state = JOB_QUEUED;
        j->next = NULL;

        if (!w->active) {
                sigset_t all, old;

                /* A thread that ended its loop only has to return: joining it
                 * under the lock is safe. */
                if (w->joinable) {
                        pthread_join(w->thread, NULL);
                        w->joinable = false;
                }

                /* the thread inherits the mask: signals stay with the loop */
                sigfillset(&all);
                pthread_sigmask(SIG_SETMASK, &all, &old);
                r = pthread_create(&w->thread, NULL, worker_main, w);
                pthread_sigmask(SIG_SETMASK, &old, NULL);
                if (r != 0) {
                        pthread_mutex_unlock(&w->lock);
                        return -r;
                }
                w->joinable = true;
                w->active = true;
        }

        if (w->queue_tail)
                w->queue_tail->next = j;
        else
                w->queue_head = j;
        w->queue_tail = j;
        pthread_cond_signal(&w->wake);
        pthread_mutex_unlock(&w->lock);
        return 0;
}

/* ---- accounts: cache, parsing, serialisation ------------------------------ */

static void account_clear_mailboxes(struct account_state *a) {
        for (size_t i = 0; i < a->n_mailboxes; i++)
                free(a->mailboxes[i].name);
        free(a->mailboxes);
        a->mailboxes = NULL;
        a->n_mailboxes = a->n_allocated = 0;
}

static void account_free(struct account_state *a) {
        if (!a)
                return;
        assert(!a->job);
        callback_list_clear(&a->pending);
        account_clear_mailboxes(a);
        free(a->id);
        free(a->path);
        free(a->tmp_path);
        free(a->write_message);
        free(a);
}

static struct mailbox_entry *account_find_mailbox(struct account_state *a, const char *mailbox) {
        for (size_t i = 0; i < a->n_mailboxes; i++)
                if (strcmp(a->mailboxes[i].name, mailbox) == 0)
                        return &a->mailboxes[i];
        return NULL;
}

/* Adds mailbox (name taken over by the account) with point p. */
static int account_add_mailbox(struct account_state *a, char *name, const struct imap_mailbox_point *p) {
        if (a->n_mailboxes == a->n_allocated) {
                size_t n = a->n_allocated ? a->n_allocated * 2 : 4;
                struct mailbox_entry *m;

                m = reallocarray(a->mailboxes, n, sizeof(*m));
                if (!m)
                        return -ENOMEM;
                a->mailboxes = m;
                a->n_allocated = n;
        }
        a->mailboxes[a->n_mailboxes++] = (struct mailbox_entry) { .name = name, .point = *p };
        return 0;
}

static int compare_mailbox_index(const void *x, const void *y, void *userdata) {
        const struct account_state *a = userdata;

        return strcmp(a->mailboxes[*(const size_t *) x].name, a->mailboxes[*(const size_t *) y].name);
}

/* Parses a whole file into a (whose mailbox list is empty). Returns 0, or
 * -EBADMSG with a description of the fault in err, or -ENOMEM. On failure a
 * keeps no mailbox. */
static int account_parse(struct account_state *a, const char *buf, size_t size, char *err, size_t errlen) {
        const char *p = buf, *end = buf + size;
        unsigned line = 0;
        size_t n_lines = 0;
        bool ended = false;
        int r = -EBADMSG;

#define BAD(...)                                        \
        do {                                            \
                snprintf(err, errlen, __VA_ARGS__);     \
                goto fail;                              \
        } while (0)

        if (size == 0)
                BAD("empty file");

        while (p < end) {
                const char *nl = memchr(p, '\n', (size_t) (end - p)), *f[5], *le;
                size_t len, nf = 0;

                line++;
                if (!nl)
                        BAD("truncated: line %u is incomplete", line);
                if (ended)
                        BAD("line %u: data after the end line", line);
                len = (size_t) (nl - p);
                le = nl;

                if (line == 1) {
                        static const char magic[] = STATE_MAGIC " ";
                        uint64_t version;

                        if (len < sizeof(magic) - 1 || memcmp(p, magic, sizeof(magic) - 1) != 0)
                                BAD("line 1: not an imapidled state file");
                        if (!parse_number(p + sizeof(magic) - 1, len - (sizeof(magic) - 1), UINT32_MAX, &version))
                                BAD("line 1: bad format version");
                        if (version != STATE_VERSION)
                                BAD("unknown format version %" PRIu64 ", this is version %d", version, STATE_VERSION);
                        p = nl + 1;
                        continue;
                }

                /* fields separated by single spaces */
                f[nf++] = p;
                for (const char *q = p; q < le; q++)
                        if (*q == ' ') {
                                if (nf == ELEMENTSOF(f))
                                        BAD("line %u: too many fields", line);
                                f[nf++] = q + 1;
                        }

                if (len >= 4 && memcmp(p, "end ", 4) == 0) {
                        uint64_t count, crc;

                        if (nf != 3)
                                BAD("line %u: bad end line", line);
                        if (!parse_number(f[1], (size_t) (f[2] - f[1] - 1), SIZE_MAX, &count))
                                BAD("line %u: bad number", line);
                        if (le - f[2] != 8)
                                BAD("line %u: bad checksum field", line);
                        crc = 0;
                        for (int i = 0; i < 8; i++) {
                                /* lowercase only: every altered byte must show */
                                int v = f[2][i] >= 'A' && f[2][i] <= 'F' ? -1 : hex_value(f[2][i]);

                                if (v < 0)
                                        BAD("line %u: bad checksum field", line);
                                crc = crc << 4 | (unsigned) v;
                        }
                        if (count != n_lines)
                                BAD("line %u: end line counts %" PRIu64 " mailboxes, the file has %zu", line, count,
                                    n_lines);
                        if (crc32_buf(buf, (size_t) (p - buf)) != crc)
                                BAD("checksum mismatch");
                        ended = true;
                        p = nl + 1;
                        continue;
                }

                {
                        struct imap_mailbox_point pt;
                        uint64_t v[3];
                        bool bad = false;
                        char *name;

                        if (nf != 4)
                                BAD("line %u: expected 4 fields, found %zu", line, nf);
                        for (size_t i = 0; i < 3; i++) {
                                const char *fe = i < 2 ? f[i + 2] - 1 : le;

                                if (!parse_number(f[i + 1], (size_t) (fe - f[i + 1]), i < 2 ? UINT32_MAX : UINT64_MAX,
                                                  &v[i]))
                                        BAD("line %u: bad number", line);
                        }
                        name = unescape_mailbox(f[0], (size_t) (f[1] - f[0] - 1), &bad);
                        if (!name) {
                                if (!bad) {
                                        r = -ENOMEM;
                                        goto fail;
                                }
                                BAD("line %u: bad mailbox name", line);
                        }
                        if (name[0] == 0) {
                                free(name);
                                BAD("line %u: empty mailbox name", line);
                        }
                        pt = (struct imap_mailbox_point) {
                                .uidvalidity = (uint32_t) v[0],
                                .announced_uid = (uint32_t) v[1],
                                .highestmodseq = v[2],
                        };
                        if (account_add_mailbox(a, name, &pt) < 0) {
                                free(name);
                                r = -ENOMEM;
                                goto fail;
                        }
                        n_lines++;
                }
                p = nl + 1;
        }
        if (!ended)
                BAD("truncated after line %u: no end line", line);

        /* duplicates by sorting, not by a quadratic search: a 1 MiB file
         * can hold 100,000 lines */
        if (a->n_mailboxes > 1) {
                _cleanup_free_ size_t *idx = reallocarray(NULL, a->n_mailboxes, sizeof(size_t));

                if (!idx) {
                        r = -ENOMEM;
                        goto fail;
                }
                for (size_t i = 0; i < a->n_mailboxes; i++)
                        idx[i] = i;
                qsort_r(idx, a->n_mailboxes, sizeof(size_t), compare_mailbox_index, a);
                for (size_t i = 1; i < a->n_mailboxes; i++)
                        if (strcmp(a->mailboxes[idx[i - 1]].name, a->mailboxes[idx[i]].name) == 0)
                                /* line 1 is the header */
                                BAD("line %zu: duplicate mailbox name",
                                    (idx[i - 1] > idx[i] ? idx[i - 1] : idx[i]) + 2);
        }
        return 0;

#undef BAD
fail:
        account_clear_mailboxes(a);
        return r;
}

/* Reads the account's file into the cache. Missing: nothing. Damaged:
 * warned, nothing. Unreadable: warned, load_error. Returns 0, or -ENOMEM. */
static int account_load(struct account_state *a) {
        _cleanup_close_ int fd = -1;
        _cleanup_free_ char *buf = NULL;
        char err[160];
        struct stat st;
        size_t size = 0, allocated;
        int r;

        /* O_NONBLOCK: a FIFO in its place must not hang the loop */
        fd = open(a->path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
        if (fd < 0) {
                if (errno == ENOENT)
                        return 0;
                goto io_error;
        }
        if (fstat(fd, &st) < 0)
                goto io_error;
        a->file_exists = true;
        if (!S_ISREG(st.st_mode)) {
                snprintf(err, sizeof(err), "not a regular file");
                goto damaged;
        }
        if (st.st_size > STATE_FILE_MAX) {
                snprintf(err, sizeof(err), "%jd bytes, more than the limit of %d", (intmax_t) st.st_size,
                         STATE_FILE_MAX);
                goto damaged;
        }

        /* room for one byte more than stat said, to see a file that grew
         * meanwhile; never more than one byte over the limit */
        allocated = (size_t) st.st_size + 1;
        buf = malloc(allocated);
        if (!buf)
                return -ENOMEM;
        for (;;) {
                ssize_t n;

                if (size == allocated) {
                        size_t more = allocated * 2 > (size_t) STATE_FILE_MAX + 1 ? (size_t) STATE_FILE_MAX + 1
                                                                                  : allocated * 2;
                        char *b = realloc(buf, more);

                        if (!b)
                                return -ENOMEM;
                        buf = b;
                        allocated = more;
                }
                n = read(fd, buf + size, allocated - size);

                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        goto io_error;
                }
                if (n == 0)
                        break;
                size += (size_t) n;
                if (size > STATE_FILE_MAX) {
                        snprintf(err, sizeof(err), "more than the limit of %d bytes", STATE_FILE_MAX);
                        goto damaged;
                }
        }

        r = account_parse(a, buf, size, err, sizeof(err));
        if (r == -ENOMEM)
                return r;
        if (r < 0)
                goto damaged;
        return 0;

damaged:
        log_warning("State file %s is damaged (%s); " DAMAGED_CONSEQUENCE, a->path, err);
        return 0;

io_error:
        a->load_error = -errno;
        log_warning_errno(a->load_error, "Cannot read state file %s: %m; " DAMAGED_CONSEQUENCE, a->path);
        return 0;
}

/* The file's bytes for the cache, or NULL data for "remove the file".
 * Returns 0 or -ENOMEM. */
static int account_serialize(const struct account_state *a, char **ret, size_t *ret_size) {
        _cleanup_free_ char *buf = NULL;
        size_t max = 64, n;
        int k;

        if (a->n_mailboxes == 0) {
                *ret = NULL;
                *ret_size = 0;
                return 0;
        }

        /* name escaped (3 bytes per byte), three numbers, spaces, newline */
        for (size_t i = 0; i < a->n_mailboxes; i++)
                max += strlen(a->mailboxes[i].name) * 3 + 10 + 10 + 20 + 4;
        buf = malloc(max);
        if (!buf)
                return -ENOMEM;

        n = (size_t) snprintf(buf, max, "%s %d\n", STATE_MAGIC, STATE_VERSION);
        for (size_t i = 0; i < a->n_mailboxes; i++) {
                const struct mailbox_entry *m = &a->mailboxes[i];
                _cleanup_free_ char *name = escape(m->name, mailbox_byte_plain);

                if (!name)
                        return -ENOMEM;
                k = snprintf(buf + n, max - n, "%s %" PRIu32 " %" PRIu32 " %" PRIu64 "\n", name,
                             m->point.uidvalidity, m->point.announced_uid, m->point.highestmodseq);
                assert(k > 0 && (size_t) k < max - n);
                n += (size_t) k;
        }
        k = snprintf(buf + n, max - n, "end %zu %08" PRIx32 "\n", a->n_mailboxes, crc32_buf(buf, n));
        assert(k > 0 && (size_t) k < max - n);
        n += (size_t) k;

        *ret_size = n;
        *ret = TAKE_PTR(buf);
        return 0;
}

/* Finds the account or creates it, reading its file. Returns 0 or -errno. */
static int store_account(struct state_store *s, const char *id, struct account_state **ret) {
        _cleanup_free_ char *escaped = NULL;
        struct account_state *a;
        int r;

        if (!id || !*id)
                return -EINVAL;
        for (a = s->accounts; a; a = a->next)
                if (strcmp(a->id, id) == 0) {
                        *ret = a;
                        return 0;
                }

        escaped = escape(id, account_byte_plain);
        if (!escaped)
                return -ENOMEM;
        if (strlen(escaped) > ACCOUNT_ESCAPED_MAX)
                return -ENAMETOOLONG;

        a = calloc(1, sizeof(*a));
        if (!a)
                return -ENOMEM;
        a->id = strdup(id);
        if (asprintf(&a->path, "%s/%s" STATE_SUFFIX, s->dir, escaped) < 0)
                a->path = NULL;
        if (asprintf(&a->tmp_path, "%s/.%s" STATE_TMP_SUFFIX, s->dir, escaped) < 0)
                a->tmp_path = NULL;
        if (!a->id || !a->path || !a->tmp_path) {
                account_free(a);
                return -ENOMEM;
        }

        r = account_load(a);
        if (r < 0) {
                account_free(a);
                return r;
        }

        if (s->accounts_tail)
                s->accounts_tail->next = a;
        else
                s->accounts = a;
        s->accounts_tail = a;
        *ret = a;
        return 0;
}

/* ---- dispatch and completion (loop thread) -------------------------------- */

static void store_arm(struct state_store *s) {
        (void) sd_event_source_set_enabled(s->dispatch_source, SD_EVENT_ONESHOT);
}

static char *job_message(const struct state_store *s, const struct write_job *j) {
        char *m = NULL;
        int r;

        errno = -j->error;
        switch (j->failed_step) {
        case STEP_SPAWN:
                r = asprintf(&m, "cannot start the thread that writes %s: %m", j->path);
                break;
        case STEP_MKDIR:
                r = asprintf(&m, "cannot create state directory %s: %m", s->dir);
                break;
        case STEP_OPEN:
                r = asprintf(&m, "cannot create %s: %m", j->tmp_path);
                break;
        case STEP_WRITE:
        case STEP_CLOSE:
                r = asprintf(&m, "cannot write %s: %m", j->tmp_path);
                break;
        case STEP_FSYNC:
                r = asprintf(&m, "cannot sync %s: %m", j->tmp_path);
                break;
        case STEP_RENAME:
                r = asprintf(&m, "cannot rename %s to %s: %m", j->tmp_path, j->path);
                break;
        case STEP_UNLINK:
                r = asprintf(&m, "cannot remove %s: %m", j->path);
                break;
        case STEP_SYNC_DIR:
                r = asprintf(&m, "cannot sync state directory %s: %m", s->dir);
                break;
        case STEP_NONE:
        default:
                r = asprintf(&m, "cannot write %s: %m", j->path);
                break;
        }
        return r < 0 ? NULL : m;
}

/* What the user can do about a failed write to dir. */
static const char *save_advice(int error, const char *dir, char *buf, size_t size) {
        switch (-error) {
        case EROFS:
        case EACCES:
        case EPERM:
                snprintf(buf, size, "make %s writable (or set $XDG_STATE_HOME to a writable place)", dir);
                break;
        case ENOSPC:
        case EDQUOT:
                snprintf(buf, size, "free some space on the file system of %s", dir);
                break;
        default:
                snprintf(buf, size, "check the disk that holds %s", dir);
                break;
        }
        return buf;
}

/* Records the outcome of j for its account and runs j's callbacks. */
static void job_complete(struct state_store *s, struct write_job *j) {
        struct account_state *a = j->account;
        _cleanup_free_ char *message = NULL;
        char advice[PATH_MAX + 96];

        assert(a->job == j);
        a->job = NULL;

        if (j->error < 0) {
                message = job_message(s, j);
                /* the cache is still ahead of the disk: the next save writes it */
                a->dirty = true;
                if (a->write_error >= 0 || !a->write_message || !message ||
                    strcmp(a->write_message, message) != 0)
                        log_warning("Cannot save mailbox state: %s; keeping it in memory, will retry at the next "
                                    "change; %s", message ?: "out of memory",
                                    save_advice(j->error, s->dir, advice, sizeof(advice)));
                a->write_error = j->error;
                free(a->write_message);
                a->write_message = message ? strdup(message) : NULL;
                a->write_error_seq = ++s->error_seq;
        } else {
                if (a->write_error < 0)
                        log_info("State file %s written again", a->path);
                a->write_error = 0;
                free(a->write_message);
                a->write_message = NULL;
                a->file_exists = j->data != NULL;
                a->load_error = 0;
        }

        callback_list_run(s, &j->callbacks, j->error, j->error < 0 ? (message ?: "out of memory") : "");
        job_free(j);

        if (a->write_requested || a->pending.head)
                store_arm(s);
}

/* Fails the account's pending saves (out of memory while preparing a
 * write); the cache stays dirty for the next save. */
static void account_fail_pending(struct state_store *s, struct account_state *a, int r) {
        a->write_requested = false;
        callback_list_run(s, &a->pending, r, "out of memory while preparing the state file");
}

/* Puts the cache into a's job if the worker has not taken it yet. Returns 1
 * if so, 0 if the job has started, -ENOMEM. */
static int job_update(struct state_store *s, struct account_state *a) {
        struct store_worker *w = s->worker;
        struct write_job *j = a->job;
        char *data = NULL, *old = NULL;
        size_t size = 0;
        bool queued;
        int r;

        pthread_mutex_lock(&w->lock);
        queued = j->state == JOB_QUEUED;
        pthread_mutex_unlock(&w->lock);
        if (!queued)
                return 0;

        r = account_serialize(a, &data, &size);
        if (r < 0)
                return r;

        pthread_mutex_lock(&w->lock);
        queued = j->state == JOB_QUEUED;
        if (queued) {
                old = j->data;
                j->data = TAKE_PTR(data);
                j->size = size;
        }
        pthread_mutex_unlock(&w->lock);
        free(old);
        free(data);
        return queued;
}

/* Turns the account's requests into a write, or confirms saves that are on
 * disk already. */
static void account_dispatch(struct state_store *s, struct account_state *a) {
        struct write_job *j;
        int r;

        if (a->job) {
                if (a->dirty && a->write_requested) {
                        r = job_update(s, a);
                        if (r < 0) {
                                account_fail_pending(s, a, r);
                                return;
                        }
                        if (r == 0)
                                return;         /* running: the next job takes them */
                        a->dirty = false;
                }
                if (!a->dirty) {
                        /* the job writes the cache as it is now */
                        callback_list_move(&a->job->callbacks, &a->pending);
                        a->write_requested = false;
                }
                return;
        }

        if (!a->dirty) {
                /* nothing to write: what they saved is on disk */
                a->write_requested = false;
                callback_list_run(s, &a->pending, 0, "");
                return;
        }
        if (!a->write_requested)
                return;                         /* a failed write waits for the next save */

        j = calloc(1, sizeof(*j));
        if (!j) {
                account_fail_pending(s, a, -ENOMEM);
                return;
        }
        j->account = a;
        j->path = strdup(a->path);
        j->tmp_path = strdup(a->tmp_path);
        if (!j->path || !j->tmp_path || account_serialize(a, &j->data, &j->size) < 0) {
                job_free(j);
                account_fail_pending(s, a, -ENOMEM);
                return;
        }
        callback_list_move(&j->callbacks, &a->pending);
        a->job = j;
        a->dirty = false;
        a->write_requested = false;

        r = worker_enqueue(s->worker, j);
        if (r < 0) {
                j->error = r;
                j->failed_step = STEP_SPAWN;
                job_complete(s, j);
        }
}

static void store_dispatch(struct state_store *s) {
        for (struct account_state *a = s->accounts; a; a = a->next)
                account_dispatch(s, a);
}

static int on_dispatch(sd_event_source *source, void *userdata) {
        store_dispatch(userdata);
        return 0;
}

static void store_process_completions(struct state_store *s) {
        struct store_worker *w = s->worker;
        struct write_job *list;

        pthread_mutex_lock(&w->lock);
        list = w->done_head;
        w->done_head = w->done_tail = NULL;
        pthread_mutex_unlock(&w->lock);

        while (list) {
                struct write_job *j = list;

                list = j->next;
                j->next = NULL;
                job_complete(s, j);
        }
}

static int on_completion(sd_event_source *source, int fd, uint32_t revents, void *userdata) {
        eventfd_t v;

        (void) eventfd_read(fd, &v);
        store_process_completions(userdata);
        return 0;
}

static bool store_busy(const struct state_store *s) {
        for (const struct account_state *a = s->accounts; a; a = a->next)
                if (a->job || a->pending.head || (a->dirty && a->write_requested))
                        return true;
        return false;
}

static int store_flush(struct state_store *s, uint64_t timeout_usec) {
        struct store_worker *w = s->worker;
        uint64_t now = now_usec(), deadline;

        deadline = timeout_usec > UINT64_MAX - now ? UINT64_MAX : now + timeout_usec;

        /* a write that failed before gets one more chance */
        for (struct account_state *a = s->accounts; a; a = a->next)
                if (a->dirty && !a->job)
                        a->write_requested = true;

        for (;;) {
                store_dispatch(s);
                store_process_completions(s);
                if (!store_busy(s))
                        break;
                if (now_usec() >= deadline)
                        return -ETIMEDOUT;

                pthread_mutex_lock(&w->lock);
                while (!w->done_head && (w->queue_head || w->running)) {
                        struct timespec ts = timespec_from_usec(deadline);

                        if (pthread_cond_timedwait(&w->progress, &w->lock, &ts) == ETIMEDOUT) {
                                pthread_mutex_unlock(&w->lock);
                                store_process_completions(s);
                                return -ETIMEDOUT;
                        }
                }
                pthread_mutex_unlock(&w->lock);
        }

        for (struct account_state *a = s->accounts; a; a = a->next)
                if (a->dirty && a->write_error < 0)
                        return a->write_error;
        return 0;
}

/* ---- public API ----------------------------------------------------------- */

int state_store_new(sd_event *e, const char *dir, struct state_store **ret) {
        struct state_store *s;
        size_t n;
        int efd, r;

        if (!e || !dir || !*dir || !ret)
                return -EINVAL;

        s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        s->event = sd_event_ref(e);
        s->dir = strdup(dir);
        if (!s->dir) {
                r = -ENOMEM;
                goto fail;
        }
        /* "a/b/" and "a/b" name the same files; messages use the short form */
        n = strlen(s->dir);
        while (n > 1 && s->dir[n - 1] == '/')
                s->dir[--n] = 0;

        efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (efd < 0) {
                r = -errno;
                goto fail;
        }
        r = sd_event_add_io(e, &s->completion_source, efd, EPOLLIN, on_completion, s);
        if (r < 0) {
                close(efd);
                goto fail;
        }
        r = sd_event_source_set_io_fd_own(s->completion_source, true);
        if (r < 0) {
                close(efd);
                goto fail;
        }
        (void) sd_event_source_set_description(s->completion_source, "state-store-completion");
        (void) sd_event_source_set_priority(s->completion_source, SD_EVENT_PRIORITY_IMPORTANT - 1);

        r = sd_event_add_defer(e, &s->dispatch_source, on_dispatch, s);
        if (r < 0)
                goto fail;
        r = sd_event_source_set_enabled(s->dispatch_source, SD_EVENT_OFF);
        if (r < 0)
                goto fail;
        (void) sd_event_source_set_description(s->dispatch_source, "state-store-dispatch");
        /* A new message is announced only once its state is on disk: the write
         * is on the path from the server's EXISTS to NewMail, so it starts
         * before the bus updates and the systemd status of the same loop
         * iteration (make bench: latency). */
        (void) sd_event_source_set_priority(s->dispatch_source, SD_EVENT_PRIORITY_IMPORTANT - 1);

        r = worker_new(s->dir, efd, &s->worker);
        if (r < 0)
                goto fail;

        *ret = s;
        return 0;

fail:
        state_store_free(s);
        return r;
}

struct state_store *state_store_free(struct state_store *s) {
        struct write_job *queued = NULL, *done = NULL, *running_job = NULL;
        struct callback_list running_callbacks = {};
        struct store_worker *w;
        const char *gave_up = "gave up waiting for the state directory to be written";
        pthread_t thread;
        bool joinable = false;
        int r;

        if (!s)
                return NULL;
        assert(s->in_callback == 0);
        s->freeing = true;
        w = s->worker;

        if (w) {
                r = store_flush(s, FREE_FLUSH_TIMEOUT_USEC);
                if (r == -ETIMEDOUT)
                        log_warning("Gave up waiting for state files in %s to be written: the disk did not "
                                    "answer within %llu s", s->dir, FREE_FLUSH_TIMEOUT_USEC / USEC_PER_SEC);

                pthread_mutex_lock(&w->lock);
                w->stop = true;
                queued = w->queue_head;
                w->queue_head = w->queue_tail = NULL;
                done = w->done_head;
                w->done_head = w->done_tail = NULL;
                if (w->running) {
                        /* a hung write: leave it, and w, to the thread */
                        running_job = w->running;
                        callback_list_move(&running_callbacks, &running_job->callbacks);
                        w->abandoned = true;
                }
                thread = w->thread;
                joinable = w->joinable;
                pthread_cond_broadcast(&w->wake);
                pthread_mutex_unlock(&w->lock);

                if (running_job) {
                        if (joinable)
                                pthread_detach(thread);
                } else {
                        if (joinable)
                                pthread_join(thread, NULL);
                        worker_free(w);
                }
                s->worker = NULL;
                w = NULL;

                /* callbacks in save order per account: finished, running, queued, pending */
                while (done) {
                        struct write_job *j = done;

                        done = j->next;
                        j->next = NULL;
                        job_complete(s, j);
                }
                if (running_job) {
                        /* only the pointer: the thread owns the job now */
                        for (struct account_state *a = s->accounts; a; a = a->next)
                                if (a->job == running_job)
                                        a->job = NULL;
                        callback_list_run(s, &running_callbacks, -ETIMEDOUT, gave_up);
                }
                while (queued) {
                        struct write_job *j = queued;

                        queued = j->next;
                        j->account->job = NULL;
                        callback_list_run(s, &j->callbacks, -ETIMEDOUT, gave_up);
                        job_free(j);
                }
        }

        while (s->accounts) {
                struct account_state *a = s->accounts;

                callback_list_run(s, &a->pending, -ETIMEDOUT, gave_up);
                s->accounts = a->next;
                account_free(a);
        }
        s->accounts_tail = NULL;

        s->dispatch_source = sd_event_source_disable_unref(s->dispatch_source);
        s->completion_source = sd_event_source_disable_unref(s->completion_source);    /* closes the eventfd */
        sd_event_unref(s->event);
        free(s->dir);
        free(s);
        return NULL;
}

int state_store_get(struct state_store *s, const char *account, const char *mailbox, struct imap_mailbox_point *ret) {
        struct account_state *a;
        struct mailbox_entry *m;
        int r;

        if (!s || !account || !mailbox || !*mailbox || !ret)
                return -EINVAL;
        r = store_account(s, account, &a);
        if (r < 0)
                return r;
        m = account_find_mailbox(a, mailbox);
        if (!m)
                return a->load_error;
        *ret = m->point;
        return 1;
}

int state_store_save(struct state_store *s, const char *account, const char *mailbox,
                     const struct imap_mailbox_point *p, state_saved_fn done, void *userdata) {
        _cleanup_free_ struct saved_callback *c = NULL;
        struct account_state *a;
        struct mailbox_entry *m;
        int r;

        if (!s || !account || !mailbox || !*mailbox || !p)
                return -EINVAL;
        if (s->freeing)
                return -ESHUTDOWN;
        r = store_account(s, account, &a);
        if (r < 0)
                return r;

        if (done) {
                c = malloc(sizeof(*c));
                if (!c)
                        return -ENOMEM;
                *c = (struct saved_callback) { .fn = done, .userdata = userdata };
        }

        m = account_find_mailbox(a, mailbox);
        if (!m) {
                char *name = strdup(mailbox);

                if (!name)
                        return -ENOMEM;
                r = account_add_mailbox(a, name, p);
                if (r < 0) {
                        free(name);
                        return r;
                }
                a->dirty = true;
        } else if (m->point.uidvalidity != p->uidvalidity || m->point.announced_uid != p->announced_uid ||
                   m->point.highestmodseq != p->highestmodseq) {
                m->point = *p;
                a->dirty = true;
        }

        if (c)
                callback_list_append(&a->pending, TAKE_PTR(c));
        a->write_requested = true;
        store_arm(s);
        return 0;
}

int state_store_forget(struct state_store *s, const char *account, const char *const *keep, size_t n_keep) {
        struct account_state *a;
        size_t kept = 0, dropped = 0;
        int r;

        if (!s || !account || (n_keep > 0 && !keep))
                return -EINVAL;
        if (s->freeing)
                return -ESHUTDOWN;
        r = store_account(s, account, &a);
        if (r < 0)
                return r;

        for (size_t i = 0; i < a->n_mailboxes; i++) {
                bool k = false;

                for (size_t x = 0; x < n_keep && !k; x++)
                        k = keep[x] && strcmp(keep[x], a->mailboxes[i].name) == 0;
                if (k)
                        a->mailboxes[kept++] = a->mailboxes[i];
                else {
                        free(a->mailboxes[i].name);
                        dropped++;
                }
        }
        a->n_mailboxes = kept;

        /* a damaged file of a dropped account goes as well */
        if (dropped > 0 || (kept == 0 && a->file_exists)) {
                a->dirty = true;
                a->write_requested = true;
                store_arm(s);
        }
        return dropped > INT_MAX ? INT_MAX : (int) dropped;
}

int state_store_flush(struct state_store *s, uint64_t timeout_usec) {
        if (!s)
                return -EINVAL;
        if (s->in_callback > 0)
                return -EBUSY;
        return store_flush(s, timeout_usec);
}

const char *state_store_last_error(const struct state_store *s) {
        const struct account_state *best = NULL;

        if (!s)
                return "";
        for (const struct account_state *a = s->accounts; a; a = a->next)
                if (a->write_error < 0 && (!best || a->write_error_seq > best->write_error_seq))
                        best = a;
        if (!best)
                return "";
        return best->write_message ?: "cannot write the state file (out of memory)";
}
