/* SPDX-License-Identifier: MIT */
/*
 * state-store.c: the per-(account, mailbox) points in the state directory.
 * Each test works in its own directory under $TMPDIR (or /tmp), removed at
 * the end, and runs the loop with sd_event_run() against a deadline.
 *
 * Checked: round trip of odd account and mailbox names, the exact file
 * format and modes, coalescing with done callbacks in save order, damaged
 * files (every truncation, every single-bit flip, wrong version, bad lines,
 * oversize, a directory or FIFO in its place) warned once and treated as
 * absent, an unreadable file, write failures (ENOSPC and a read-only
 * tmpfs as root; a 0500 directory otherwise) reported through done and
 * last_error with recovery afterwards, that no partial state file is ever
 * visible (inotify and a concurrent reader), flush and free with writes
 * pending, forget, the worker thread's signal mask and idle exit, and
 * re-entrant callbacks.
 */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <systemd/sd-event.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "macro.h"
#include "state-store.h"
#include "suites.h"

#define SEC 1000000ULL

/* ---- helpers -------------------------------------------------------------- */

static uint64_t now_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * SEC + (uint64_t) ts.tv_nsec / 1000U;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
        (void) remove(path);
        return 0;
}

static void rm_rf(const char *dir) {
        (void) nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);
}

static char *make_tmpdir(void) {
        const char *t = getenv("TMPDIR");
        char *d;

        ck_assert_int_gt(asprintf(&d, "%s/test-state-store-XXXXXX", t && *t ? t : "/tmp"), 0);
        ck_assert_ptr_nonnull(mkdtemp(d));
        return d;
}

static char *path_in(const char *dir, const char *name) {
        char *p;

        ck_assert_int_gt(asprintf(&p, "%s/%s", dir, name), 0);
        return p;
}

static bool exists(const char *path) {
        struct stat st;

        return lstat(path, &st) == 0;
}

static char *read_file(const char *path, size_t *ret_size) {
        char *buf = NULL;
        size_t size = 0;
        FILE *f = fopen(path, "re");

        ck_assert_msg(f, "cannot open %s: %s", path, strerror(errno));
        for (;;) {
                buf = realloc(buf, size + 4096 + 1);
                ck_assert_ptr_nonnull(buf);
                size_t n = fread(buf + size, 1, 4096, f);
                size += n;
                if (n == 0)
                        break;
        }
        fclose(f);
        buf[size] = 0;
        if (ret_size)
                *ret_size = size;
        return buf;
}

static void write_file(const char *path, const void *data, size_t size) {
        FILE *f = fopen(path, "we");

        ck_assert_msg(f, "cannot create %s: %s", path, strerror(errno));
        ck_assert_uint_eq(fwrite(data, 1, size, f), size);
        ck_assert_int_eq(fclose(f), 0);
}

/* Bit by bit, independent of the store's table version. */
static uint32_t test_crc32(const void *buf, size_t n) {
        const unsigned char *p = buf;
        uint32_t crc = 0xffffffffU;

        for (size_t i = 0; i < n; i++) {
                crc ^= p[i];
                for (int k = 0; k < 8; k++)
                        crc = (crc >> 1) ^ (0xedb88320U & (0U - (crc & 1)));
        }
        return ~crc;
}

/* Appends "end <n> <crc>\n" to body (which has n mailbox lines). */
static char *with_end_line(const char *body, unsigned n) {
        char *s;

        ck_assert_int_gt(asprintf(&s, "%send %u %08" PRIx32 "\n", body, n, test_crc32(body, strlen(body))), 0);
        return s;
}

/* A complete, valid file: every line ends in \n, the last one is a correct
 * end line. The concurrent reader's check. */
static bool file_is_complete(const char *buf, size_t size) {
        const char *end_line;
        unsigned n_lines = 0, n;
        uint32_t crc;

        if (size < 2 || buf[size - 1] != '\n')
                return false;
        for (end_line = buf + size - 1; end_line > buf && end_line[-1] != '\n'; end_line--)
                ;
        for (const char *p = buf; p < end_line; p++)
                n_lines += *p == '\n';
        if (strncmp(buf, "imapidled-state 1\n", 18) != 0)
                return false;
        if (sscanf(end_line, "end %u %" SCNx32, &n, &crc) != 2)
                return false;
        return n == n_lines - 1 && crc == test_crc32(buf, (size_t) (end_line - buf));
}

/* ---- the log ---------------------------------------------------------------- */

struct captured_log {
        unsigned n_warnings;
        char last_warning[4096];
        unsigned n_info;
};

static struct captured_log logged;

static void capture(int level, const char *line, void *userdata) {
        if (level <= LOG_WARNING) {
                logged.n_warnings++;
                snprintf(logged.last_warning, sizeof(logged.last_warning), "%s", line);
        } else
                logged.n_info++;
}

static void capture_start(void) {
        logged = (struct captured_log) {};
        log_set_sink(capture, NULL);
}

static void capture_stop(void) {
        log_set_sink(NULL, NULL);
}

/* ---- done callbacks ------------------------------------------------------- */

#define MAX_CALLS 4096

struct recorder {
        unsigned n;
        int seq[MAX_CALLS];             /* the userdata tags, in call order */
        int r[MAX_CALLS];
        char message[512];              /* of the last failure */
};

struct tag {
        struct recorder *rec;
        int seq;
};

static void on_saved(struct state_store *s, int r, const char *message, void *userdata) {
        struct tag *t = userdata;
        struct recorder *rec = t->rec;

        ck_assert_ptr_nonnull(message);
        ck_assert_uint_lt(rec->n, MAX_CALLS);
        rec->seq[rec->n] = t->seq;
        rec->r[rec->n] = r;
        rec->n++;
        if (r < 0)
                snprintf(rec->message, sizeof(rec->message), "%s", message);
        else
                ck_assert_str_eq(message, "");
}

static void run_until_calls(sd_event *e, const struct recorder *rec, unsigned n, uint64_t timeout_usec) {
        uint64_t deadline = now_usec() + timeout_usec;

        while (rec->n < n && now_usec() < deadline)
                ck_assert_int_ge(sd_event_run(e, 10000), 0);
        ck_assert_msg(rec->n == n, "%u of %u done callbacks ran", rec->n, n);
}

static void run_for(sd_event *e, uint64_t usec) {
        uint64_t deadline = now_usec() + usec;

        while (now_usec() < deadline)
                ck_assert_int_ge(sd_event_run(e, 10000), 0);
}

static struct imap_mailbox_point pt(uint32_t v, uint32_t uid, uint64_t modseq) {
        return (struct imap_mailbox_point) { .uidvalidity = v, .announced_uid = uid, .highestmodseq = modseq };
}

static void assert_point(struct state_store *s, const char *account, const char *mailbox,
                         struct imap_mailbox_point want) {
        struct imap_mailbox_point got = pt(1, 1, 1);
        int r = state_store_get(s, account, mailbox, &got);

        ck_assert_msg(r == 1, "%s/%s: get returned %d", account, mailbox, r);
        ck_assert_uint_eq(got.uidvalidity, want.uidvalidity);
        ck_assert_uint_eq(got.announced_uid, want.announced_uid);
        ck_assert_uint_eq(got.highestmodseq, want.highestmodseq);
}

static void assert_no_point(struct state_store *s, const char *account, const char *mailbox) {
        struct imap_mailbox_point got = pt(7, 7, 7);

        ck_assert_int_eq(state_store_get(s, account, mailbox, &got), 0);
        ck_assert_uint_eq(got.uidvalidity, 7);  /* ret untouched */
}

/* A fresh store on dir, its get for (account, mailbox). */
static int get_fresh(const char *dir, const char *account, const char *mailbox, struct imap_mailbox_point *ret) {
        struct state_store *s = NULL;
        sd_event *e = NULL;
        int r;

        ck_assert_int_ge(sd_event_new(&e), 0);
        ck_assert_int_eq(state_store_new(e, dir, &s), 0);
        r = state_store_get(s, account, mailbox, ret);
        state_store_free(s);
        sd_event_unref(e);
        return r;
}

/* ---- inotify: which names were created, written, renamed -------------------- */

struct dir_events {
        unsigned created_final, written_final, moved_to_final, deleted_final;
        unsigned created_other, moved_to_other;
        unsigned created_tmp, moved_from_tmp;
};

static int watch_dir(const char *dir) {
        int fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);

        ck_assert_int_ge(fd, 0);
        ck_assert_int_ge(inotify_add_watch(fd, dir,
                                           IN_CREATE | IN_MODIFY | IN_CLOSE_WRITE | IN_MOVED_FROM | IN_MOVED_TO |
                                                   IN_DELETE),
                         0);
        return fd;
}

static void collect_events(int fd, const char *final, const char *tmp, struct dir_events *ev) {
        char buf[64 * 1024] __attribute__((aligned(__alignof__(struct inotify_event))));

        for (;;) {
                ssize_t n = read(fd, buf, sizeof(buf));

                if (n < 0) {
                        ck_assert_int_eq(errno, EAGAIN);
                        return;
                }
                for (char *p = buf; p < buf + n;) {
                        const struct inotify_event *ie = (const struct inotify_event *) p;
                        const char *name = ie->len ? ie->name : "";
                        bool is_final = strcmp(name, final) == 0, is_tmp = strcmp(name, tmp) == 0;

                        ck_assert_msg(!(ie->mask & IN_Q_OVERFLOW), "inotify queue overflow");
                        if (is_final) {
                                ev->created_final += !!(ie->mask & IN_CREATE);
                                ev->written_final += !!(ie->mask & (IN_MODIFY | IN_CLOSE_WRITE));
                                ev->moved_to_final += !!(ie->mask & IN_MOVED_TO);
                                ev->deleted_final += !!(ie->mask & IN_DELETE);
                        } else if (is_tmp) {
                                ev->created_tmp += !!(ie->mask & IN_CREATE);
                                ev->moved_from_tmp += !!(ie->mask & IN_MOVED_FROM);
                        } else {
                                ev->created_other += !!(ie->mask & IN_CREATE);
                                ev->moved_to_other += !!(ie->mask & IN_MOVED_TO);
                        }
                        p += sizeof(struct inotify_event) + ie->len;
                }
        }
}

/* ---- tests ------------------------------------------------------------------ */

START_TEST(test_round_trip) {
        static const char *const accounts[] = { "work", "a/b c", ".hidden", "..", "Ünï%cödé\n", "x" };
        static const char *const files[] = {
                "work.state", "a%2Fb%20c.state", "%2Ehidden.state", "%2E..state",
                "%C3%9Cn%C3%AF%25c%C3%B6d%C3%A9%0A.state", "x.state",
        };
        static const char *const mailboxes[] = {
                "INBOX", "Lists/linux", "with space", "Entwürfe", "100%", "new\nline", "\t\r", "%41", "[Gmail]/Sent Mail",
        };
        struct recorder rec = {};
        struct tag tags[ELEMENTSOF(accounts) * ELEMENTSOF(mailboxes)];
        _cleanup_free_ char *dir = make_tmpdir();
        struct state_store *s = NULL;
        sd_event *e = NULL;
        unsigned n = 0;

        ck_assert_int_ge(sd_event_new(&e), 0);
        ck_assert_int_eq(state_store_new(e, dir, &s), 0);

        for (size_t a = 0; a < ELEMENTSOF(accounts); a++) {
                assert_no_point(s, accounts[a], "INBOX");
                for (size_t m = 0; m < ELEMENTSOF(mailboxes); m++) {
                        struct imap_mailbox_point p = pt((uint32_t) (1000 + a), (uint32_t) (m * 7), a * 100 + m);

                        if (a == 0 && m == 0)
                                p = pt(UINT32_MAX, UINT32_MAX, UINT64_MAX);
                        tags[n] = (struct tag) { &rec, (int) n };
                        ck_assert_int_eq(state_store_save(s, accounts[a], mailboxes[m], &p, on_saved, &tags[n]), 0);
                        n++;
                }
        }
        /* visible at once, on disk later */
        assert_point(s, "x", "INBOX", pt(1005, 0, 500));
        ck_assert_uint_eq(rec.n, 0);
        run_until_calls(e, &rec, n, 10 * SEC);
        for (unsigned i = 0; i < n; i++)
                ck_assert_int_eq(rec.r[i], 0);
        ck_assert_str_eq(state_store_last_error(s), "");
        s = state_store_free(s);

        for (size_t a = 0; a < ELEMENTSOF(files); a++) {
                _cleanup_free_ char *p = path_in(dir, files[a]);
                _cleanup_free_ char *text = NULL;
                size_t size;
                unsigned lines = 0;

                ck_assert_msg(exists(p), "%s missing", p);
                text = read_file(p, &size);
                for (size_t i = 0; i < size; i++) {
                        ck_assert_msg(text[i] == '\n' || (text[i] >= ' ' && text[i] < 0x7f), "%s: byte %zu is %#x",
                                      files[a], i, (unsigned char) text[i]);
                        lines += text[i] == '\n';
                }
                ck_assert_uint_eq(lines, ELEMENTSOF(mailboxes) + 2);
                ck_assert(file_is_complete(text, size));
        }

        /* a new store reads them all back */
        ck_assert_int_eq(state_store_new(e, dir, &s), 0);
        for (size_t a = 0; a < ELEMENTSOF(accounts); a++)
                for (size_t m = 0; m < ELEMENTSOF(mailboxes); m++)
                        assert_point(s, accounts[a], mailboxes[m],
                                     a == 0 && m == 0 ? pt(UINT32_MAX, UINT32_MAX, UINT64_MAX)
                                                      : pt((uint32_t) (1000 + a), (uint32_t) (m * 7), a * 100 + m));
        assert_no_point(s, "work", "Trash");
        assert_no_point(s, "nobody", "INBOX");
        assert_no_point(s, "work", "new");      /* "new\nline" is one name */
        s = state_store_free(s);

        sd_event_unref(e);
        rm_rf(dir);
}
END_TEST

START_TEST(test_file_format) {
        _cleanup_free_ char *top = make_tmpdir();
        _cleanup_free_ char *dir = path_in(top, "deeper/state/imapidled");
        _cleanup_free_ char *file = path_in(dir, "me%40example.com.state");
        _cleanup_free_ char *text = NULL, *want = NULL;
        struct state_store *s = NULL;
        struct recorder rec = {};
        struct tag t = { &rec, 0 };
        struct imap_mailbox_point p;
        sd_event *e = NULL;
        struct stat st;

        /* the reference CRC-32 check value */
        ck_assert_uint_eq(test_crc32("123456789", 9), 0xcbf43926U);

        ck_assert_int_ge(sd_event_new(&e), 0);
        /* a trailing slash names the same directory */
        {
                _cleanup_free_ char *slashed = path_in(dir, "");

                ck_assert_int_eq(state_store_new(e, slashed, &s), 0);
        }
        /* nothing is created before the first write */
        assert_no_point(s, "me@example.com", "INBOX");
        ck_assert(!exists(dir));

        p = pt(1700000000, 4711, 90210);
        ck_assert_int_eq(state_store_save(s, "me@example.com", "INBOX", &p, NULL, NULL), 0);
        p = pt(1700000001, 12, 0);
        ck_assert_int_eq(state_store_save(s, "me@example.com", "Lists/linux 100%", &p, on_saved, &t), 0);
        run_until_calls(e, &rec, 1, 10 * SEC);
        ck_assert_int_eq(rec.r[0], 0);

        text = read_file(file, NULL);
        want = with_end_line("imapidled-state 1\n"
                             "INBOX 1700000000 4711 90210\n"
                             "Lists/linux%20100%25 1700000001 12 0\n",
                             2);
        ck_assert_str_eq(text, want);

        /* 0700 for the directory and the ones it created, 0600 for the file */
        ck_assert_int_eq(stat(dir, &st), 0);
        ck_assert_uint_eq(st.st_mode & 07777, 0700);
        {
                _cleanup_free_ char *parent = path_in(top, "deeper");

                ck_assert_int_eq(stat(parent, &st), 0);
                ck_assert_uint_eq(st.st_mode & 0077, 0);
        }
        ck_assert_int_eq(stat(file, &st), 0);
        ck_assert_uint_eq(st.st_mode & 07777, 0600);

        s = state_store_free(s);
        sd_event_unref(e);
        rm_rf(top);
}
END_TEST

START_TEST(test_coalescing) {
        enum { N = 600 };
        static const char *const mailboxes[] = { "INBOX", "Lists/a", "Lists/b" };
        _cleanup_free_ char *dir = make_tmpdir();
        struct recorder *rec = calloc(1, sizeof(*rec)), *rec2 = calloc(1, sizeof(*rec2));
        struct tag *tags = calloc(N, sizeof(struct tag)), *tags2 = calloc(N, sizeof(struct tag));
        struct dir_events ev = {};
        struct state_store *s = NULL;
        sd_event *e = NULL;
        unsigned writes_before;
        int ifd;

        ck_assert_ptr_nonnull(rec);
        ck_assert_ptr_nonnull(rec2);
        ck_assert_ptr_nonnull(tags);
        ck_assert_ptr_nonnull(tags2);
        ck_assert_int_ge(sd_event_new(&e), 0);
        ck_assert_int_eq(state_store_new(e, dir, &s), 0);
        ifd = watch_dir(dir);

        /* a burst in one loop iteration: one write */
        for (int i = 0; i < 200; i++) {
                struct imap_mailbox_point p = pt(1, (uint32_t) i + 1, (uint64_t) i);

                tags[i] = (struct tag) { rec, i };
                ck_assert_int_eq(state_store_save(s, "acct", mailboxes[i % 3], &p, on_saved, &tags[i]), 0);
        }
        run_until_calls(e, rec, 200, 10 * SEC);
        collect_events(ifd, "acct.state", ".acct.state.tmp", &ev);
        ck_assert_uint_eq(ev.moved_to_final, 1);

        /* saves spread over loop iterations while writes run, two accounts
         * interleaved: few writes, callbacks in save order per account */
        writes_before = ev.moved_to_final;
        for (int i = 200; i < N; i++) {
                struct imap_mailbox_point p = pt(1, (uint32_t) i + 1, (uint64_t) i);

                tags[i] = (struct tag) { rec, i };
                tags2[i] = (struct tag) { rec2, i };
                ck_assert_int_eq(state_store_save(s, "acct", mailboxes[i % 3], &p, on_saved, &tags[i]), 0);
                ck_assert_int_eq(state_store_save(s, "other", mailboxes[i % 3], &p, on_saved, &tags2[i]), 0);
                ck_assert_int_ge(sd_event_run(e, 0), 0);
        }
        run_until_calls(e, rec, N, 20 * SEC);
        run_until_calls(e, rec2, N - 200, 20 * SEC);
        for (int i = 0; i < N; i++) {
                ck_assert_int_eq(rec->seq[i], i);
                ck_assert_int_eq(rec->r[i], 0);
        }
        for (int i = 0; i < N - 200; i++)
                ck_assert_int_eq(rec2->seq[i], i + 200);
        collect_events(ifd, "acct.state", ".acct.state.tmp", &ev);
        ck_assert_uint_ge(ev.moved_to_final - writes_before, 1);
        ck_assert_msg(ev.moved_to_final - writes_before < (N - 200) / 2, "%u writes for %d saves",
                      ev.moved_to_final - writes_before, N - 200);

        /* a save that changes nothing is confirmed without a write */
        writes_before = ev.moved_to_final;
        {
                struct imap_mailbox_point p = pt(1, N, N - 1);
                struct tag t = { rec, N };

                ck_assert_int_eq(state_store_save(s, "acct", mailboxes[(N - 1) % 3], &p, on_saved, &t), 0);
                ck_assert_uint_eq(rec->n, N);   /* never from within save */
                run_until_calls(e, rec, N + 1, 10 * SEC);
                ck_assert_int_eq(rec->seq[N], N);
                ck_assert_int_eq(rec->r[N], 0);
        }
        run_for(e, 100000);
        collect_events(ifd, "acct.state", ".acct.state.tmp", &ev);
        ck_assert_uint_eq(ev.moved_to_final, writes_before);

        assert_point(s, "acct", mailboxes[(N - 1) % 3], pt(1, N, N - 1));
        s = state_store_free(s);
        {
                struct imap_mailbox_point got;

                ck_assert_int_eq(get_fresh(dir, "acct", mailboxes[(N - 1) % 3], &got), 1);
                ck_assert_uint_eq(got.announced_uid, N);
                ck_assert_int_eq(get_fresh(dir, "other", mailboxes[(N - 2) % 3], &got), 1);
                ck_assert_uint_eq(got.announced_uid, N - 1);
        }

        close(ifd);
        free(rec);
        free(rec2);
        free(tags);
        free(tags2);
        sd_event_unref(e);
        rm_rf(dir);
}
END_TEST

/* Writes content as acct.state in dir and expects a fresh store to warn
 * once (naming the file and fragment) and to see no point. */
static void expect_damaged(const char *dir, const void *content, size_t size, const char *fragment) {
        _cleanup_free_ char *file = path_in(dir, "acct.state");
        struct state_store *s = NULL;
        sd_event *e = NULL;

        if (content) {
                (void) unlink(file);
                write_file(file, content, size);
        }

        capture_start();
        ck_assert_int_ge(sd_event_new(&e), 0);
        ck_assert_int_eq(state_store_new(e, dir, &s), 0);
        assert_no_point(s, "acct", "INBOX");
        assert_no_point(s, "acct", "Lists");
        assert_no_point(s, "acct", "Other");
        s = state_store_free(s);
        sd_event_unref(e);
        capture_stop();

        ck_assert_msg(logged.n_warnings == 1, "%u warnings for a damaged file (%s)", logged.n_warnings, fragment);
        ck_assert_msg(strstr(logged.last_warning, file), "warning does not name the file: %s", logged.last_warning);
        ck_assert_msg(strstr(logged.last_warning, "is damaged"), "%s", logged.last_warning);
        ck_assert_msg(strstr(logged.last_warning, "counted, not announced"), "%s", logged.last_warning);
        if (fragment)
                ck_assert_msg(strstr(logged.last_warning, fragment), "expected \"%s\" in: %s", fragment,
                              logged.last_warning);
}

START_TEST(test_damaged_files) {
        _cleanup_free_ char *dir = make_tmpdir();
        _cleanup_free_ char *file = path_in(dir, "acct.state");
        _cleanup_free_ char *good = NULL;
        struct state_store *s = NULL;
        struct imap_mailbox_point p;
        sd_event *e = NULL;
        size_t size;

        /* a good file from the store itself */
        ck_assert_int_ge(sd_event_new(&e), 0);
        ck_assert_int_eq(state_store_new(e, dir, &s), 0);
        p = pt(17, 1234, 56789);
        ck_assert_int_eq(state_store_save(s, "acct", "INBOX", &p, NULL, NULL), 0);
        p = pt(18, 99, 0);
        ck_assert_int_eq(state_store_save(s, "acct", "Lists", &p, NULL, NULL), 0);
        ck_assert_int_eq(state_store_flush(s, 10 * SEC), 0);
        s = state_store_free(s);
        good = read_file(file, &size);

        /* a good file: no warning */
        capture_start();
        ck_assert_int_eq(state_store_new(e, dir, &s), 0);
        assert_point(s, "acct", "INBOX", pt(17, 1234, 56789));
        s = state_store_free(s);
        capture_stop();
        ck_assert_uint_eq(logged.n_warnings, 0);

        /* every truncation */
        for (size_t n = 0; n < size; n++)
                expect_damaged(dir, good, n, n == 0 ? "empty file" : "truncated");

        /* every single-bit flip */
        for (size_t i = 0; i < size; i++)
                for (int bit = 0; bit < 8; bit++) {
                        char *c = strdup(good);

                        c[i] ^= (char) (1 << bit);
                        expect_damaged(dir, c, size, NULL);
                        free(c);
                }

        /* faults the checksum cannot hide: a correct end line around bad content */
        {
                static const struct {
                        const char *body;
                        unsigned n;
                        const char *fragment;
                } cases[] = {
                        { "imapidled-state 2\nINBOX 1 2 3\n", 1, "unknown format version 2" },
                        { "imapidled-state x\nINBOX 1 2 3\n", 1, "bad format version" },
                        { "something else 1\nINBOX 1 2 3\n", 1, "not an imapidled state file" },
                        { "imapidled-state 1\nINBOX 1 2x 3\n", 1, "line 2: bad number" },
                        { "imapidled-state 1\nINBOX 1 4294967296 3\n", 1, "line 2: bad number" },
                        { "imapidled-state 1\nINBOX 1 2 18446744073709551616\n", 1, "line 2: bad number" },
                        { "imapidled-state 1\nINBOX 1 -2 3\n", 1, "line 2: bad number" },
                        { "imapidled-state 1\nINBOX 1 2 3\nLists 1  3\n", 2, "line 3: bad number" },
                        { "imapidled-state 1\nINBOX 1 2\n", 1, "line 2: expected 4 fields" },
                        { "imapidled-state 1\nINBOX 1 2 3 4\n", 1, "line 2: expected 4 fields" },
                        { "imapidled-state 1\nINBOX 1 2 3\nINBOX 4 5 6\n", 2, "line 3: duplicate mailbox name" },
                        { "imapidled-state 1\nIN%2 1 2 3\n", 1, "line 2: bad mailbox name" },
                        { "imapidled-state 1\nIN%00X 1 2 3\n", 1, "line 2: bad mailbox name" },
                        { "imapidled-state 1\nIN\tBOX 1 2 3\n", 1, "line 2: bad mailbox name" },
                        { "imapidled-state 1\nINBOX 1 2 3\n", 2, "counts 2 mailboxes, the file has 1" },
                };

                for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                        _cleanup_free_ char *c = with_end_line(cases[i].body, cases[i].n);

                        expect_damaged(dir, c, strlen(c), cases[i].fragment);
                }
        }
        {
                _cleanup_free_ char *c = with_end_line("imapidled-state 1\nINBOX 1 2 3\n", 1);
                _cleanup_free_ char *more = NULL;

                ck_assert_int_gt(asprintf(&more, "%sINBOX 4 5 6\n", c), 0);
                expect_damaged(dir, more, strlen(more), "line 4: data after the end line");
                c[strlen(c) - 3] ^= 0x20;       /* uppercase hex in the checksum */
                expect_damaged(dir, c, strlen(c), NULL);
        }

        /* over 1 MiB, even if it were valid */
        {
                size_t big = 2 * 1024 * 1024;
                char *c = malloc(big);

                ck_assert_ptr_nonnull(c);
                memset(c, 'x', big);
                expect_damaged(dir, c, big, "more than the limit");
                free(c);
        }

        /* a directory or a FIFO where the file should be (the FIFO must not block) */
        ck_assert_int_eq(unlink(file), 0);
        ck_assert_int_eq(mkdir(file, 0700), 0);
        expect_damaged(dir, NULL, 0, "not a regular file");
        ck_assert_int_eq(rmdir(file), 0);
        ck_assert_int_eq(mkfifo(file, 0600), 0);
        expect_damaged(dir, NULL, 0, "not a regular file");
        ck_assert_int_eq(unlink(file), 0);

        /* after damage, the next save writes a good file again */
        write_file(file, "garbage\n", 8);
        capture_start();
        ck_assert_int_eq(state_store_new(e, dir, &s), 0);
        p = pt(5, 6, 7);
        ck_assert_int_eq(state_store_save(s, "acct", "INBOX", &p, NULL, NULL), 0);
        ck_assert_int_eq(state_store_flush(s, 10 * SEC), 0);
        s = state_store_free(s);
        capture_stop();
        ck_assert_uint_eq(logged.n_warnings, 1);
        ck_assert_int_eq(get_fresh(dir, "acct", "INBOX", &p), 1);
        ck_assert_uint_eq(p.announced_uid, 6);

        /* no file at all: no warning */
        ck_assert_int_eq(unlink(file), 0);
        capture_start();
        ck_assert_int_eq(get_fresh(dir, "acct", "INBOX", &p), 0);
        capture_stop();
        ck_assert_uint_eq(logged.n_warnings, 0);

        sd_event_unref(e);
        rm_rf(dir);
}
END_TEST

/* Near the size limit: read quickly, and a duplicate among many is found. */
START_TEST(test_large_file) {
        enum { N = 40000 };
        _cleanup_free_ char *dir = make_tmpdir();
        _cleanup_free_ char *file = path_in(dir, "acct.state");
        struct state_store *s = NULL;
        sd_event *e = NULL;
        size_t cap = 32 + (size_t) N * 32, n;
        char *body = malloc(cap), *c;
        uint64_t t;

        ck_assert_ptr_nonnull(body);
        n = (size_t) sprintf(body, "imapidled-state 1\n");
        for (unsigned i = 0; i < N; i++)
                n += (size_t) sprintf(body + n, "m%05u %u %u %u\n", i, i, i + 1, i + 2);
        c = with_end_line(body, N);
        ck_assert_uint_lt(strlen(c), 1024 * 1024);
        write_file(file, c, strlen(c));
        free(c);

        ck_assert_int_ge(sd_event_new(&e), 0);
        capture_start();
        ck_assert_int_eq(state_store_new(e, dir, &s), 0);
        t = now_usec();
        assert_point(s, "acct", "m31337", pt(31337, 31338, 31339));
        ck_assert_msg(now_usec() - t < 2 * SEC, "reading took %" PRIu64 " ms", (now_usec() - t) / 1000);
        assert_point(s, "acct", "m39999", pt(39999, 40000, 40001));
        s = state_store_free(s);
        capture_stop();
        ck_assert_uint_eq(logged.n_warnings, 0);

        /* the same with line 30002 naming m00007 again */
        memcpy(strstr(body, "m30000 "), "m00007", 6);
        c = with_end_line(body, N);
        t = now_usec();
        expect_damaged(dir, c, strlen(c), "line 30002: duplicate mailbox name");
        ck_assert_msg(now_usec() - t < 2 * SEC, "reading took %" PRIu64 " ms", (now_usec() - t) / 1000);
        free(c);

        free(body);
        sd_event_unref(e);
        rm_rf(dir);
}
END_TEST

START_TEST(test_unreadable_file) {
        _cleanup_free_ char *dir = make_tmpdir();
        _cleanup_free_ char *file = path_in(dir, "acct.state");
        struct state_store *s = NULL;
        struct recorder rec = {};
        struct tag t = { &rec, 0 };
        struct imap_mailbox_point p;
        sd_event *e = NULL;

        /* a symlink loop cannot be opened, even by root */
        ck_assert_int_eq(symlink("acct.state", file), 0);

        capture_start();
        ck_assert_int_ge(sd_event_new(&e), 0);
        ck_assert_int_eq(state_store_new(e, dir, &s), 0);
        ck_assert_int_eq(state_store_get(s, "acct", "INBOX", &p), -ELOOP);
        ck_assert_int_eq(state_store_get(s, "acct", "Lists", &p), -ELOOP);
        ck_assert_uint_eq(logged.n_warnings, 1);
        ck_assert_ptr_nonnull(strstr(logged.last_warning, file));
        ck_assert_ptr_nonnull(strstr(logged.last_warning, "Too many levels of symbolic links"));

        /* a save replaces it (rename replaces the link, not its target) */
        p = pt(1, 2, 3);
        ck_assert_int_eq(state_store_save(s, "acct", "INBOX", &p, on_saved, &t), 0);
        assert_point(s, "acct", "INBOX", p);
        run_until_calls(e, &rec, 1, 10 * SEC);
        ck_assert_int_eq(rec.r[0], 0);
        assert_no_point(s, "acct", "Lists");
        s = state_store_free(s);
        capture_stop();

        ck_assert_int_eq(get_fresh(dir, "acct", "INBOX", &p), 1);
        sd_event_unref(e);
        rm_rf(dir);
}
END_TEST

/* Saves p for acct/INBOX and runs the loop until done; returns r. */
static int save_and_wait(sd_event *e, struct state_store *s, struct imap_mailbox_point p, struct recorder *rec) {
        static struct tag t;
        unsigned n = rec->n;

        t = (struct tag) { rec, (int) n };
        ck_assert_int_eq(state_store_save(s, "acct", "INBOX", &p, on_saved, &t), 0);
        run_until_calls(e, rec, n + 1, 10 * SEC);
        return rec->r[n];
}

static void assert_no_tmp(const char *dir) {
        _cleanup_free_ char *tmp = path_in(dir, ".acct.state.tmp");

        ck_assert_msg(!exists(tmp), "%s left behind", tmp);
}

/* Fills the file system of dir until ENOSPC. */
static void fill_up(const char *dir) {
        _cleanup_free_ char *filler = path_in(dir, "filler");
        _cleanup_close_ int fd = open(filler, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        char block[4096];

        ck_assert_int_ge(fd, 0);
        memset(block, 'f', sizeof(block));
        for (;;) {
                ssize_t n = write(fd, block, sizeof(block));

                if (n < 0) {
                        ck_assert_int_eq(errno, ENOSPC);
                        break;
                }
        }
        /* the last few bytes of a page, too */
        while (write(fd, block, 1) == 1)
                ;
}

START_TEST(test_write_errors) {
        _cleanup_free_ char *top = make_tmpdir();
        _cleanup_free_ char *dir = path_in(top, "mnt");
        _cleanup_free_ char *file = path_in(dir, "acct.state");
        _cleanup_free_ char *filler = path_in(dir, "filler");
        struct state_store *s = NULL;
        struct recorder rec = {};
        struct imap_mailbox_point got;
        sd_event *e = NULL;
        bool mounted = false;

        ck_assert_int_eq(mkdir(dir, 0700), 0);
        if (geteuid() == 0) {
                /* in a mount namespace of our own where possible, so that a
                 * failing test leaves no mount behind (the type is ignored
                 * for a propagation change, but valgrind reads it) */
                if (unshare(CLONE_NEWNS) == 0)
                        ck_assert_int_eq(mount("none", "/", "none", MS_REC | MS_PRIVATE, NULL), 0);
                if (mount("tmpfs", dir, "tmpfs", MS_NOSUID | MS_NODEV, "size=16k,mode=0700") == 0)
                        mounted = true;
                else
                        fprintf(stderr, "test_write_errors: cannot mount a tmpfs (%s): ENOSPC and read-only "
                                        "cases skipped\n", strerror(errno));
        }

        capture_start();
        ck_assert_int_ge(sd_event_new(&e), 0);
        ck_assert_int_eq(state_store_new(e, dir, &s), 0);
        ck_assert_int_eq(save_and_wait(e, s, pt(1, 10, 100), &rec), 0);

        if (mounted) {
                /* disk full: the write fails, the old file stays, no temp file */
                fill_up(dir);
                ck_assert_int_lt(save_and_wait(e, s, pt(1, 11, 101), &rec), 0);
                ck_assert_int_eq(rec.r[1], -ENOSPC);
                ck_assert_msg(strstr(rec.message, dir) && strstr(rec.message, "No space left on device"), "%s",
                              rec.message);
                ck_assert_str_eq(state_store_last_error(s), rec.message);
                ck_assert_uint_eq(logged.n_warnings, 1);
                ck_assert_ptr_nonnull(strstr(logged.last_warning, "No space left on device"));
                assert_no_tmp(dir);
                ck_assert_int_eq(get_fresh(dir, "acct", "INBOX", &got), 1);
                ck_assert_uint_eq(got.announced_uid, 10);
                /* the memory is ahead */
                assert_point(s, "acct", "INBOX", pt(1, 11, 101));

                /* the same failure again is not logged again */
                ck_assert_int_eq(save_and_wait(e, s, pt(1, 12, 102), &rec), -ENOSPC);
                ck_assert_uint_eq(logged.n_warnings, 1);

                /* space again: the next save writes everything */
                ck_assert_int_eq(unlink(filler), 0);
                ck_assert_int_eq(save_and_wait(e, s, pt(1, 13, 103), &rec), 0);
                ck_assert_str_eq(state_store_last_error(s), "");
                ck_assert_int_eq(get_fresh(dir, "acct", "INBOX", &got), 1);
                ck_assert_uint_eq(got.announced_uid, 13);

                /* read-only */
                ck_assert_int_eq(mount("tmpfs", dir, "tmpfs", MS_REMOUNT | MS_RDONLY, NULL), 0);
                ck_assert_int_eq(save_and_wait(e, s, pt(1, 14, 104), &rec), -EROFS);
                ck_assert_msg(strstr(rec.message, dir) && strstr(rec.message, "Read-only file system"), "%s",
                              rec.message);
                ck_assert_str_eq(state_store_last_error(s), rec.message);
                /* a point saved while failing, unchanged, still waits for a real write */
                ck_assert_int_eq(save_and_wait(e, s, pt(1, 14, 104), &rec), -EROFS);
                ck_assert_int_eq(mount("tmpfs", dir, "tmpfs", MS_REMOUNT, "size=16k"), 0);
                ck_assert_int_eq(save_and_wait(e, s, pt(1, 14, 104), &rec), 0);
                ck_assert_str_eq(state_store_last_error(s), "");
                ck_assert_int_eq(get_fresh(dir, "acct", "INBOX", &got), 1);
                ck_assert_uint_eq(got.announced_uid, 14);

                /* a state directory that cannot be created */
                {
                        _cleanup_free_ char *sub = path_in(dir, "sub/dir");
                        struct state_store *s2 = NULL;
                        struct recorder rec2 = {};

                        ck_assert_int_eq(mount("tmpfs", dir, "tmpfs", MS_REMOUNT | MS_RDONLY, NULL), 0);
                        ck_assert_int_eq(state_store_new(e, sub, &s2), 0);
                        ck_assert_int_eq(save_and_wait(e, s2, pt(1, 1, 1), &rec2), -EROFS);
                        ck_assert_msg(strstr(rec2.message, "cannot create state directory") &&
                                              strstr(rec2.message, sub),
                                      "%s", rec2.message);
                        s2 = state_store_free(s2);
                        ck_assert_int_eq(mount("tmpfs", dir, "tmpfs", MS_REMOUNT, "size=16k"), 0);
                }
        } else if (geteuid() != 0) {
                /* without root: permissions */
                ck_assert_int_eq(chmod(dir, 0500), 0);
                ck_assert_int_eq(save_and_wait(e, s, pt(1, 11, 101), &rec), -EACCES);
                ck_assert_msg(strstr(rec.message, dir) && strstr(rec.message, "Permission denied"), "%s",
                              rec.message);
                ck_assert_str_eq(state_store_last_error(s), rec.message);
                ck_assert_int_eq(chmod(dir, 0700), 0);
                ck_assert_int_eq(save_and_wait(e, s, pt(1, 12, 102), &rec), 0);
                ck_assert_str_eq(state_store_last_error(s), "");
        }
        assert_no_tmp(dir);

        s = state_store_free(s);
        capture_stop();
        sd_event_unref(e);
        if (mounted)
                ck_assert_int_eq(umount2(dir, MNT_DETACH), 0);
        rm_rf(top);
}
END_TEST

/* Reads the state file over and over; every version seen must be complete. */
struct reader {
        const char *path;
        atomic_bool stop;
        unsigned reads, missing, bad;
        char bad_content[256];
};

static void *reader_main(void *arg) {
        struct reader *rd = arg;
        char *buf = malloc(65536);

        while (!atomic_load(&rd->stop)) {
                int fd = open(rd->path, O_RDONLY | O_CLOEXEC);
                size_t size = 0;
                ssize_t n;

                if (fd < 0) {
                        rd->missing++;
                        continue;
                }
                while ((n = read(fd, buf + size, 65535 - size)) > 0)
                        size += (size_t) n;
                close(fd);
                buf[size] = 0;
                rd->reads++;
                if (!file_is_complete(buf, size)) {
                        rd->bad++;
                        snprintf(rd->bad_content, sizeof(rd->bad_content), "%.*s", (int) size, buf);
                }
        }
        free(buf);
        return NULL;
}

START_TEST(test_no_partial_file) {
        _cleanup_free_ char *dir = make_tmpdir();
        _cleanup_free_ char *file = path_in(dir, "acct.state");
        struct reader rd = { .path = file };
        struct dir_events ev = {};
        struct state_store *s = NULL;
        struct imap_mailbox_point p;
        pthread_t t;
        sd_event *e = NULL;
        int ifd;

        ck_assert_int_ge(sd_event_new(&e), 0);
        ck_assert_int_eq(state_store_new(e, dir, &s), 0);
        p = pt(1, 1, 1);
        ck_assert_int_eq(state_store_save(s, "acct", "INBOX", &p, NULL, NULL), 0);
        ck_assert_int_eq(state_store_flush(s, 10 * SEC), 0);

        ifd = watch_dir(dir);
        ck_assert_int_eq(pthread_create(&t, NULL, reader_main, &rd), 0);
        for (uint32_t i = 2; i < 300; i++) {
                char name[32];

                /* growing and shrinking files */
                snprintf(name, sizeof(name), "box%u", i % 17);
                p = pt(1, i, i);
                ck_assert_int_eq(state_store_save(s, "acct", name, &p, NULL, NULL), 0);
                if (i % 50 == 0) {
                        const char *keep[] = { "INBOX" };

                        ck_assert_int_ge(state_store_forget(s, "acct", keep, 1), 0);
                }
                ck_assert_int_eq(state_store_flush(s, 10 * SEC), 0);
        }
        atomic_store(&rd.stop, true);
        pthread_join(t, NULL);

        ck_assert_msg(rd.bad == 0, "%u of %u reads saw an incomplete file: %s", rd.bad, rd.reads, rd.bad_content);
        ck_assert_uint_eq(rd.missing, 0);
        ck_assert_uint_gt(rd.reads, 0);

        /* the final name only ever appears by rename */
        collect_events(ifd, "acct.state", ".acct.state.tmp", &ev);
        ck_assert_uint_eq(ev.created_final, 0);
        ck_assert_uint_eq(ev.written_final, 0);
        ck_assert_uint_eq(ev.deleted_final, 0);
        ck_assert_uint_eq(ev.created_other, 0);
        ck_assert_uint_eq(ev.moved_to_other, 0);
        ck_assert_uint_eq(ev.moved_to_final, 298);
        ck_assert_uint_eq(ev.created_tmp, 298);
        ck_assert_uint_eq(ev.moved_from_tmp, 298);
        assert_no_tmp(dir);

        close(ifd);
        s = state_store_free(s);
        sd_event_unref(e);
        rm_rf(dir);
}
END_TEST

START_TEST(test_free_flushes) {
        _cleanup_free_ char *dir = make_tmpdir();
        struct state_store *s = NULL;
        struct recorder rec = {};
        struct tag tags[3] = { { &rec, 0 }, { &rec, 1 }, { &rec, 2 } };
        struct imap_mailbox_point p;
        sd_event *e = NULL;

        ck_assert_int_ge(sd_event_new(&e), 0);

        /* flush runs the writes and the callbacks */
        ck_assert_int_eq(state_store_new(e, dir, &s), 0);
        p = pt(3, 30, 300);
        ck_assert_int_eq(state_store_save(s, "a", "INBOX", &p, on_saved, &tags[0]), 0);
        ck_assert_int_eq(state_store_flush(s, 10 * SEC), 0);
        ck_assert_uint_eq(rec.n, 1);
        ck_assert_int_eq(rec.r[0], 0);

        /* free without running the loop: written, and every callback once */
        p = pt(3, 31, 301);
        ck_assert_int_eq(state_store_save(s, "a", "INBOX", &p, on_saved, &tags[1]), 0);
        p = pt(4, 40, 400);
        ck_assert_int_eq(state_store_save(s, "b", "INBOX", &p, on_saved, &tags[2]), 0);
        s = state_store_free(s);
        ck_assert_uint_eq(rec.n, 3);
        ck_assert_int_eq(rec.seq[1], 1);
        ck_assert_int_eq(rec.r[1], 0);
        ck_assert_int_eq(rec.r[2], 0);
        ck_assert_int_eq(get_fresh(dir, "a", "INBOX", &p), 1);
        ck_assert_uint_eq(p.announced_uid, 31);
        ck_assert_int_eq(get_fresh(dir, "b", "INBOX", &p), 1);
        ck_assert_uint_eq(p.announced_uid, 40);

        /* nothing pending: free is quick and harmless; NULL is fine */
        ck_assert_int_eq(state_store_new(e, dir, &s), 0);
        s = state_store_free(s);
        ck_assert_ptr_null(state_store_free(NULL));

        sd_event_unref(e);
        rm_rf(dir);
}
END_TEST

START_TEST(test_forget) {
        _cleanup_free_ char *dir = make_tmpdir();
        _cleanup_free_ char *file = path_in(dir, "acct.state");
        struct state_store *s = NULL;
        struct imap_mailbox_point p = pt(1, 2, 3);
        const char *keep[] = { "INBOX", "Lists", "Missing" };
        sd_event *e = NULL;

        ck_assert_int_ge(sd_event_new(&e), 0);
        ck_assert_int_eq(state_store_new(e, dir, &s), 0);
        ck_assert_int_eq(state_store_save(s, "acct", "INBOX", &p, NULL, NULL), 0);
        ck_assert_int_eq(state_store_save(s, "acct", "Lists", &p, NULL, NULL), 0);
        ck_assert_int_eq(state_store_save(s, "acct", "Old", &p, NULL, NULL), 0);
        ck_assert_int_eq(state_store_flush(s, 10 * SEC), 0);
        s = state_store_free(s);

        /* after a restart, from the file */
        ck_assert_int_eq(state_store_new(e, dir, &s), 0);
        ck_assert_int_eq(state_store_forget(s, "acct", keep, ELEMENTSOF(keep)), 1);
        ck_assert_int_eq(state_store_forget(s, "acct", keep, ELEMENTSOF(keep)), 0);
        assert_no_point(s, "acct", "Old");
        ck_assert_int_eq(state_store_flush(s, 10 * SEC), 0);
        ck_assert_int_eq(get_fresh(dir, "acct", "Old", &p), 0);
        ck_assert_int_eq(get_fresh(dir, "acct", "Lists", &p), 1);

        /* the whole account: its file goes */
        ck_assert_int_eq(state_store_forget(s, "acct", NULL, 0), 2);
        ck_assert_int_eq(state_store_flush(s, 10 * SEC), 0);
        ck_assert(!exists(file));
        assert_no_point(s, "acct", "INBOX");

        /* an unknown account: nothing is written */
        ck_assert_int_eq(state_store_forget(s, "nobody", NULL, 0), 0);
        ck_assert_int_eq(state_store_flush(s, 10 * SEC), 0);
        {
                _cleanup_free_ char *f = path_in(dir, "nobody.state");

                ck_assert(!exists(f));
        }

        /* forget, then save again before anything was written */
        ck_assert_int_eq(state_store_save(s, "acct", "INBOX", &p, NULL, NULL), 0);
        ck_assert_int_eq(state_store_forget(s, "acct", NULL, 0), 1);
        ck_assert_int_eq(state_store_save(s, "acct", "New", &p, NULL, NULL), 0);
        ck_assert_int_eq(state_store_flush(s, 10 * SEC), 0);
        s = state_store_free(s);
        ck_assert_int_eq(get_fresh(dir, "acct", "INBOX", &p), 0);
        ck_assert_int_eq(get_fresh(dir, "acct", "New", &p), 1);

        sd_event_unref(e);
        rm_rf(dir);
}
END_TEST

/* The thread ids of this process other than the caller. */
static unsigned count_threads(pid_t *ret_other) {
        DIR *d = opendir("/proc/self/task");
        struct dirent *de;
        unsigned n = 0;

        ck_assert_ptr_nonnull(d);
        while ((de = readdir(d)))
                if (de->d_name[0] != '.') {
                        pid_t tid = (pid_t) atoi(de->d_name);

                        n++;
                        if (tid != gettid() && ret_other)
                                *ret_other = tid;
                }
        closedir(d);
        return n;
}

START_TEST(test_worker_thread) {
        _cleanup_free_ char *dir = make_tmpdir();
        struct state_store *s = NULL;
        struct recorder rec = {};
        struct imap_mailbox_point p;
        unsigned base;
        pid_t worker = 0;
        uint64_t deadline;
        sd_event *e = NULL;

        ck_assert_int_ge(sd_event_new(&e), 0);
        ck_assert_int_eq(state_store_new(e, dir, &s), 0);
        base = count_threads(NULL);

        ck_assert_int_eq(save_and_wait(e, s, pt(1, 1, 1), &rec), 0);
        ck_assert_uint_eq(count_threads(&worker), base + 1);

        /* every signal blocked there (the loop takes them through signalfd) */
        {
                char path[64], line[256];
                bool found = false;
                FILE *f;

                snprintf(path, sizeof(path), "/proc/self/task/%d/status", (int) worker);
                f = fopen(path, "re");
                ck_assert_ptr_nonnull(f);
                while (fgets(line, sizeof(line), f))
                        if (strncmp(line, "SigBlk:", 7) == 0) {
                                unsigned long long mask = strtoull(line + 7, NULL, 16);

                                /* all but SIGKILL, SIGSTOP and glibc's two internal ones */
                                ck_assert_msg((mask & 0x7fffffffULL) == (0x7fffffffULL & ~(1ULL << (SIGKILL - 1)) &
                                                                         ~(1ULL << (SIGSTOP - 1))),
                                              "worker SigBlk %llx", mask);
                                found = true;
                        }
                fclose(f);
                ck_assert(found);
        }

        /* it goes away when idle, and a new one comes for the next write */
        deadline = now_usec() + 15 * SEC;
        while (count_threads(NULL) > base && now_usec() < deadline)
                usleep(100000);
        ck_assert_uint_eq(count_threads(NULL), base);
        p = pt(1, 2, 2);
        ck_assert_int_eq(save_and_wait(e, s, p, &rec), 0);
        ck_assert_int_eq(get_fresh(dir, "acct", "INBOX", &p), 1);
        ck_assert_uint_eq(p.announced_uid, 2);

        s = state_store_free(s);
        ck_assert_uint_eq(count_threads(NULL), base);
        sd_event_unref(e);
        rm_rf(dir);
}
END_TEST

struct chain {
        struct state_store *s;
        unsigned left, calls;
        int flush_r;
        int last_r;
};

static void on_chain(struct state_store *s, int r, const char *message, void *userdata) {
        struct chain *c = userdata;
        struct imap_mailbox_point p = pt(1, 100 + c->calls, 0);

        c->calls++;
        c->last_r = r;
        c->flush_r = state_store_flush(s, SEC);
        if (c->left > 0) {
                c->left--;
                ck_assert_int_eq(state_store_save(s, "acct", "INBOX", &p, on_chain, c), 0);
        }
}

START_TEST(test_callback_reentry) {
        _cleanup_free_ char *dir = make_tmpdir();
        struct chain c = { .left = 4 };
        struct imap_mailbox_point p = pt(1, 99, 0);
        uint64_t deadline;
        sd_event *e = NULL;

        ck_assert_int_ge(sd_event_new(&e), 0);
        ck_assert_int_eq(state_store_new(e, dir, &c.s), 0);
        ck_assert_int_eq(state_store_save(c.s, "acct", "INBOX", &p, on_chain, &c), 0);
        deadline = now_usec() + 10 * SEC;
        while (c.calls < 5 && now_usec() < deadline)
                ck_assert_int_ge(sd_event_run(e, 10000), 0);
        ck_assert_uint_eq(c.calls, 5);
        ck_assert_int_eq(c.last_r, 0);
        ck_assert_int_eq(c.flush_r, -EBUSY);
        c.s = state_store_free(c.s);
        ck_assert_int_eq(get_fresh(dir, "acct", "INBOX", &p), 1);
        ck_assert_uint_eq(p.announced_uid, 103);
        sd_event_unref(e);
        rm_rf(dir);
}
END_TEST

START_TEST(test_invalid_arguments) {
        _cleanup_free_ char *dir = make_tmpdir();
        struct state_store *s = NULL;
        struct imap_mailbox_point p = pt(1, 1, 1);
        char long_id[256];
        sd_event *e = NULL;

        ck_assert_int_ge(sd_event_new(&e), 0);
        ck_assert_int_eq(state_store_new(NULL, dir, &s), -EINVAL);
        ck_assert_int_eq(state_store_new(e, "", &s), -EINVAL);
        ck_assert_int_eq(state_store_new(e, dir, &s), 0);
        ck_assert_int_eq(state_store_get(s, "", "INBOX", &p), -EINVAL);
        ck_assert_int_eq(state_store_get(s, "a", "", &p), -EINVAL);
        ck_assert_int_eq(state_store_save(s, "a", "", &p, NULL, NULL), -EINVAL);
        ck_assert_int_eq(state_store_save(s, NULL, "INBOX", &p, NULL, NULL), -EINVAL);
        ck_assert_int_eq(state_store_forget(s, "a", NULL, 2), -EINVAL);

        /* 244 escaped bytes fit, 246 do not */
        memset(long_id, '/', 82);
        long_id[82] = 0;
        ck_assert_int_eq(state_store_save(s, long_id, "INBOX", &p, NULL, NULL), -ENAMETOOLONG);
        ck_assert_int_eq(state_store_get(s, long_id, "INBOX", &p), -ENAMETOOLONG);
        memset(long_id, 'a', 244);
        long_id[244] = 0;
        ck_assert_int_eq(state_store_save(s, long_id, "INBOX", &p, NULL, NULL), 0);
        ck_assert_int_eq(state_store_flush(s, 10 * SEC), 0);
        s = state_store_free(s);
        ck_assert_int_eq(get_fresh(dir, long_id, "INBOX", &p), 1);

        sd_event_unref(e);
        rm_rf(dir);
}
END_TEST

START_TEST(test_default_dir) {
        char *d;

        setenv("XDG_STATE_HOME", "/xdg/state", 1);
        d = state_store_default_dir();
        ck_assert_str_eq(d, "/xdg/state/imapidled");
        free(d);

        setenv("HOME", "/home/someone", 1);
        setenv("XDG_STATE_HOME", "relative/ignored", 1);
        d = state_store_default_dir();
        ck_assert_str_eq(d, "/home/someone/.local/state/imapidled");
        free(d);

        unsetenv("XDG_STATE_HOME");
        d = state_store_default_dir();
        ck_assert_str_eq(d, "/home/someone/.local/state/imapidled");
        free(d);

        /* no $HOME: the password database */
        unsetenv("HOME");
        d = state_store_default_dir();
        if (d) {
                ck_assert(d[0] == '/');
                ck_assert_ptr_nonnull(strstr(d, "/.local/state/imapidled"));
                free(d);
        } else
                ck_assert_int_eq(errno, ENOENT);
}
END_TEST

Suite *state_store_suite(void) {
        Suite *s = suite_create("state-store");
        TCase *tc = tcase_create("state-store");

        tcase_set_timeout(tc, 120);
        tcase_add_test(tc, test_round_trip);
        tcase_add_test(tc, test_file_format);
        tcase_add_test(tc, test_coalescing);
        tcase_add_test(tc, test_damaged_files);
        tcase_add_test(tc, test_large_file);
        tcase_add_test(tc, test_unreadable_file);
        tcase_add_test(tc, test_write_errors);
        tcase_add_test(tc, test_no_partial_file);
        tcase_add_test(tc, test_free_flushes);
        tcase_add_test(tc, test_forget);
        tcase_add_test(tc, test_worker_thread);
        tcase_add_test(tc, test_callback_reentry);
        tcase_add_test(tc, test_invalid_arguments);
        tcase_add_test(tc, test_default_dir);
        suite_add_tcase(s, tc);
        return s;
}
