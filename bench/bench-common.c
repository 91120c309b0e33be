/* SPDX-License-Identifier: MIT */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench-common.h"

#define DOVECOT_LDA "/usr/lib/dovecot/dovecot-lda"

_Noreturn void bench_die(const char *fmt, ...) {
        va_list ap;

        fflush(stdout);
        fprintf(stderr, "bench: ");
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
        exit(EXIT_FAILURE);
}

uint64_t now_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000 + (uint64_t) ts.tv_nsec / 1000;
}

void sleep_usec(uint64_t usec) {
        struct timespec ts = { .tv_sec = (time_t) (usec / 1000000), .tv_nsec = (long) (usec % 1000000) * 1000 };

        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                ;
}

static void copy_str(char *dst, size_t size, const char *src, const char *key) {
        if (strlen(src) >= size)
                bench_die("harness value %s too long", key);
        memcpy(dst, src, strlen(src) + 1);
}

void bench_harness_load(struct bench_harness *h, const char *path) {
        char line[8192];
        FILE *f = fopen(path, "r");

        memset(h, 0, sizeof(*h));
        if (!f)
                bench_die("%s: %s", path, strerror(errno));
        while (fgets(line, sizeof(line), f)) {
                char *v = strchr(line, '=');

                line[strcspn(line, "\n")] = '\0';
                if (!v)
                        continue;
                *v++ = '\0';
                if (strcmp(line, "DIR") == 0)
                        copy_str(h->dir, sizeof(h->dir), v, line);
                else if (strcmp(line, "HOST") == 0)
                        copy_str(h->host, sizeof(h->host), v, line);
                else if (strcmp(line, "IMAPS_PORT") == 0)
                        h->imaps_port = atoi(v);
                else if (strcmp(line, "CA_FILE") == 0)
                        copy_str(h->ca_file, sizeof(h->ca_file), v, line);
                else if (strcmp(line, "DBUS_SESSION_BUS_ADDRESS") == 0)
                        copy_str(h->dbus_address, sizeof(h->dbus_address), v, line);
                else if (strcmp(line, "USERS") == 0)
                        h->n_users = (unsigned) atoi(v);
        }
        fclose(f);
        if (!h->dir[0] || !h->host[0] || h->imaps_port <= 0 || !h->ca_file[0] || !h->n_users)
                bench_die("%s: incomplete harness settings", path);
}

int bench_write_config(const struct bench_harness *h, const char *path, unsigned first, unsigned n,
                       const char *general) {
        FILE *f = fopen(path, "w");

        if (!f)
                return -errno;
        fprintf(f, "[general]\nlog_level = info\n%s\n", general ? general : "");
        for (unsigned i = first; i < first + n; i++)
                fprintf(f,
                        "[account a%u]\nhost = %s\nport = %d\ntls = implicit\nca_file = %s\n"
                        "user = user%u\npassword_file = %s/pass/user%u\n\n",
                        i, h->host, h->imaps_port, h->ca_file, i, h->dir, i);
        if (fclose(f) != 0)
                return -errno;
        /* password_file rather than password: no warning per account in the
         * log, and the daemon reads it as it would a user's */
        {
                char dir[sizeof(h->dir) + 16];

                snprintf(dir, sizeof(dir), "%s/pass", h->dir);
                if (mkdir(dir, 0700) < 0 && errno != EEXIST)
                        return -errno;
                for (unsigned i = first; i < first + n; i++) {
                        char p[sizeof(dir) + 32], text[64];

                        snprintf(p, sizeof(p), "%s/user%u", dir, i);
                        snprintf(text, sizeof(text), "pass-user%u\n", i);
                        if (access(p, F_OK) == 0)
                                continue;
                        int r = write_text_file(p, text);
                        if (r < 0)
                                return r;
                        chmod(p, 0600);
                }
        }
        return 0;
}

static void notify_watch(int fd);
static void notify_unwatch(void);

int bench_daemon_start(struct daemon_runner *r, const struct bench_harness *h, uint64_t watchdog_usec) {
        static char bus_env[sizeof(h->dbus_address) + 32], wd_usec[64];
        const char *env[4] = { NULL };
        size_t n = 0;
        int ret;

        if (h->dbus_address[0]) {
                snprintf(bus_env, sizeof(bus_env), "DBUS_SESSION_BUS_ADDRESS=%s", h->dbus_address);
                env[n++] = bus_env;
        }
        if (watchdog_usec > 0) {
                snprintf(wd_usec, sizeof(wd_usec), "WATCHDOG_USEC=%" PRIu64, watchdog_usec);
                env[n++] = wd_usec;
        }
        notify_unwatch();
        /* BENCH_TRACE=1: the daemon logs its IMAP exchange (for debugging a run) */
        {
                const char *trace = getenv("BENCH_TRACE");
                static const char *const trace_args[] = { "--trace", NULL };

                ret = daemon_runner_start(r, trace && *trace == '1' ? trace_args : NULL, env, watchdog_usec > 0);
        }
        if (ret >= 0)
                notify_watch(r->notify_fd);
        /* daemon_runner's watchdog flag sets 200 ms; ours overrides it (putenv
         * after setenv in the child) */
        return ret;
}

#define NOTIFY_MAX_IDLE 4096

static struct {
        pthread_t thread;
        bool running;
        int fd;
        atomic_bool stop;
        atomic_uint idle, total;
        _Atomic uint64_t ready, all_idle;
        _Atomic uint64_t reached[NOTIFY_MAX_IDLE + 1];
} nw;

static void *notify_main(void *userdata) {
        while (!atomic_load(&nw.stop)) {
                struct pollfd p = { .fd = nw.fd, .events = POLLIN };
                char buf[4096];
                ssize_t k;

                if (poll(&p, 1, 100) < 0 && errno != EINTR)
                        break;
                while ((k = recv(nw.fd, buf, sizeof(buf) - 1, 0)) > 0) {
                        uint64_t t = now_usec();
                        const char *s;
                        unsigned idle, total;

                        buf[k] = '\0';
                        if (strstr(buf, "READY=1") && !atomic_load(&nw.ready))
                                atomic_store(&nw.ready, t);
                        s = strstr(buf, "STATUS=");
                        if (!s || sscanf(s, "STATUS=%u/%u mailbox", &idle, &total) != 2)
                                continue;
                        for (unsigned i = 1; i <= idle && i <= NOTIFY_MAX_IDLE; i++)
                                if (!atomic_load(&nw.reached[i]))
                                        atomic_store(&nw.reached[i], t);
                        atomic_store(&nw.total, total);
                        atomic_store(&nw.idle, idle);
                        if (idle == total && idle > 0)
                                atomic_store(&nw.all_idle, t);
                }
        }
        return NULL;
}

void bench_notify_reset(void) {
        atomic_store(&nw.ready, 0);
        atomic_store(&nw.all_idle, 0);
        for (unsigned i = 0; i <= NOTIFY_MAX_IDLE; i++)
                atomic_store(&nw.reached[i], 0);
}

/* The previous daemon's reader goes before the next daemon starts: its socket
 * is closed by then and the new one may well have the same descriptor
 * number, whose first datagrams (READY=1) it would swallow. */
static void notify_unwatch(void) {
        if (nw.running) {
                atomic_store(&nw.stop, true);
                pthread_join(nw.thread, NULL);
                nw.running = false;
        }
}

static void notify_watch(int fd) {
        notify_unwatch();
        atomic_store(&nw.stop, false);
        atomic_store(&nw.idle, 0);
        atomic_store(&nw.total, 0);
        bench_notify_reset();
        nw.fd = fd;
        if (pthread_create(&nw.thread, NULL, notify_main, NULL) != 0)
                bench_die("pthread_create");
        nw.running = true;
}

uint64_t bench_wait_all_idle(unsigned n, unsigned timeout_ms) {
        uint64_t deadline = now_usec() + (uint64_t) timeout_ms * 1000;

        while (now_usec() < deadline) {
                if (atomic_load(&nw.idle) == n && atomic_load(&nw.total) == n && atomic_load(&nw.all_idle))
                        return atomic_load(&nw.all_idle);
                sleep_usec(1000);
        }
        return 0;
}

uint64_t bench_idle_reached(unsigned k) {
        return k <= NOTIFY_MAX_IDLE ? atomic_load(&nw.reached[k]) : 0;
}

uint64_t bench_ready_time(void) {
        return atomic_load(&nw.ready);
}

/* ---- /proc ---------------------------------------------------------------- */

static int read_file(const char *path, char *buf, size_t size) {
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        size_t off = 0;

        if (fd < 0)
                return -errno;
        while (off + 1 < size) {
                ssize_t k = read(fd, buf + off, size - 1 - off);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k <= 0)
                        break;
                off += (size_t) k;
        }
        close(fd);
        buf[off] = '\0';
        return (int) off;
}

static uint64_t field_kib(const char *text, const char *key) {
        const char *p = strstr(text, key);

        return p ? strtoull(p + strlen(key), NULL, 10) : 0;
}

int proc_sample_read(pid_t pid, struct proc_sample *s) {
        static char buf[16384];
        char path[128];
        long tck = sysconf(_SC_CLK_TCK);
        DIR *d;
        struct dirent *e;
        char *p;

        memset(s, 0, sizeof(*s));
        snprintf(path, sizeof(path), "/proc/%d/stat", (int) pid);
        if (read_file(path, buf, sizeof(buf)) < 0)
                return -ESRCH;
        p = strrchr(buf, ')');
        if (!p)
                return -EPROTO;
        {
                unsigned long long ut = 0, st = 0;
                /* after ") ": state(3) ... utime is field 14, stime 15 */
                if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
                        return -EPROTO;
                s->utime_usec = ut * 1000000ULL / (unsigned long long) tck;
                s->stime_usec = st * 1000000ULL / (unsigned long long) tck;
        }
        snprintf(path, sizeof(path), "/proc/%d/status", (int) pid);
        if (read_file(path, buf, sizeof(buf)) < 0)
                return -ESRCH;
        s->vm_rss_kib = field_kib(buf, "\nVmRSS:");
        s->vm_hwm_kib = field_kib(buf, "\nVmHWM:");
        s->threads = (unsigned) field_kib(buf, "\nThreads:");
        snprintf(path, sizeof(path), "/proc/%d/smaps_rollup", (int) pid);
        if (read_file(path, buf, sizeof(buf)) >= 0) {
                s->rss_kib = field_kib(buf, "\nRss:");
                s->pss_kib = field_kib(buf, "\nPss:");
                s->shared_clean_kib = field_kib(buf, "\nShared_Clean:");
                s->shared_dirty_kib = field_kib(buf, "\nShared_Dirty:");
                s->private_clean_kib = field_kib(buf, "\nPrivate_Clean:");
                s->private_dirty_kib = field_kib(buf, "\nPrivate_Dirty:");
                s->anonymous_kib = field_kib(buf, "\nAnonymous:");
        }
        snprintf(path, sizeof(path), "/proc/%d/task", (int) pid);
        d = opendir(path);
        if (!d)
                return -ESRCH;
        while ((e = readdir(d))) {
                char tp[300];

                if (e->d_name[0] == '.')
                        continue;
                snprintf(tp, sizeof(tp), "/proc/%d/task/%s/status", (int) pid, e->d_name);
                if (read_file(tp, buf, sizeof(buf)) < 0)
                        continue;
                s->vol_ctxt += field_kib(buf, "\nvoluntary_ctxt_switches:");
                s->nonvol_ctxt += field_kib(buf, "\nnonvoluntary_ctxt_switches:");
                snprintf(tp, sizeof(tp), "/proc/%d/task/%s/schedstat", (int) pid, e->d_name);
                if (read_file(tp, buf, sizeof(buf)) > 0)
                        s->sched_ns += strtoull(buf, NULL, 10);
        }
        closedir(d);
        snprintf(path, sizeof(path), "/proc/%d/fd", (int) pid);
        d = opendir(path);
        if (d) {
                while ((e = readdir(d)))
                        if (e->d_name[0] != '.')
                                s->fds++;
                closedir(d);
        }
        return 0;
}

void bench_rss_by_file(pid_t pid, char *out, size_t size) {
        struct {
                char name[64];
                uint64_t rss, pd;
        } e[128];
        size_t n = 0, cur = SIZE_MAX, off = 0;
        char path[64], line[1024];
        FILE *f;

        out[0] = '\0';
        snprintf(path, sizeof(path), "/proc/%d/smaps", (int) pid);
        f = fopen(path, "r");
        if (!f)
                return;
        while (fgets(line, sizeof(line), f)) {
                unsigned long long v;
                char name[512] = "";

                const char *dash = strchr(line, '-'), *space = strchr(line, ' ');

                /* a mapping's header: "start-end perms offset dev inode [path]" */
                if (dash && space && dash < space) {
                        (void) sscanf(line, "%*x-%*x %*s %*x %*s %*u %511s", name);
                        const char *base = strrchr(name, '/');

                        base = base ? base + 1 : name[0] ? name : "[anon]";
                        cur = SIZE_MAX;
                        for (size_t i = 0; i < n; i++)
                                if (strcmp(e[i].name, base) == 0)
                                        cur = i;
                        if (cur == SIZE_MAX && n < 128) {
                                snprintf(e[n].name, sizeof(e[n].name), "%s", base);
                                e[n].rss = e[n].pd = 0;
                                cur = n++;
                        }
                } else if (cur != SIZE_MAX && sscanf(line, "Rss: %llu kB", &v) == 1)
                        e[cur].rss += v;
                else if (cur != SIZE_MAX && sscanf(line, "Private_Dirty: %llu kB", &v) == 1)
                        e[cur].pd += v;
        }
        fclose(f);
        for (size_t k = 0; k < n && k < 12; k++) {
                size_t best = k;
                int w;

                for (size_t i = k + 1; i < n; i++)
                        if (e[i].rss > e[best].rss)
                                best = i;
                if (best != k) {
                        __typeof__(e[0]) t = e[k];
                        e[k] = e[best];
                        e[best] = t;
                }
                w = snprintf(out + off, size - off, "%s%s %llu/%llu", off ? "; " : "", e[k].name,
                             (unsigned long long) e[k].rss, (unsigned long long) e[k].pd);
                if (w < 0 || (size_t) w >= size - off)
                        break;
                off += (size_t) w;
        }
}

/* ---- delivery ------------------------------------------------------------- */

static int user_entry(const struct bench_harness *h, const char *user, char *home, size_t home_size,
                      uid_t *uid, gid_t *gid) {
        char path[sizeof(h->dir) + 16], line[8192];
        size_t ulen = strlen(user);
        FILE *f;

        snprintf(path, sizeof(path), "%s/passwd", h->dir);
        f = fopen(path, "r");
        if (!f)
                return -errno;
        while (fgets(line, sizeof(line), f)) {
                /* user:password:uid:gid:gecos:home:shell:extra */
                char *fields[8] = { NULL };
                char *save = NULL, *p = line;
                size_t n = 0;

                if (strncmp(line, user, ulen) != 0 || line[ulen] != ':')
                        continue;
                line[strcspn(line, "\n")] = '\0';
                while (n < 8) {
                        fields[n++] = p;
                        p = strchr(p, ':');
                        if (!p)
                                break;
                        *p++ = '\0';
                }
                (void) save;
                fclose(f);
                if (n < 6)
                        return -EPROTO;
                *uid = (uid_t) strtoul(fields[2], NULL, 10);
                *gid = (gid_t) strtoul(fields[3], NULL, 10);
                snprintf(home, home_size, "%s", fields[5]);
                return 0;
        }
        fclose(f);
        return -ENOENT;
}

static int message_text(char *buf, size_t size, const char *user, unsigned n) {
        return snprintf(buf, size,
                        "Date: Mon, 1 Jan 2024 12:00:00 +0000\n"
                        "From: Bench Sender <sender%u@example.org>\n"
                        "To: <%s@localhost>\n"
                        "Subject: bench message %u\n"
                        "Message-ID: <bench.%u.%d.%" PRIu64 "@imapidled-bench.localhost>\n"
                        "MIME-Version: 1.0\n"
                        "Content-Type: text/plain; charset=UTF-8\n"
                        "\n"
                        "Message %u of the benchmark.\n",
                        n % 50, user, n, n, (int) getpid(), now_usec(), n);
}

int bench_deliver_lda(const struct bench_harness *h, const char *user, unsigned n) {
        char msg[1024], conf[PATH_MAX + 16];
        int in[2], status;
        pid_t pid;
        int len = message_text(msg, sizeof(msg), user, n);

        snprintf(conf, sizeof(conf), "%s/dovecot.conf", h->dir);
        if (pipe2(in, O_CLOEXEC) < 0)
                return -errno;
        pid = fork();
        if (pid < 0)
                return -errno;
        if (pid == 0) {
                int null = open("/dev/null", O_WRONLY);

                dup2(in[0], STDIN_FILENO);
                if (null >= 0)
                        dup2(null, STDERR_FILENO);
                execl(DOVECOT_LDA, DOVECOT_LDA, "-c", conf, "-d", user, "-m", "INBOX", (char *) NULL);
                _exit(127);
        }
        close(in[0]);
        if (write(in[1], msg, (size_t) len) != len) {
                close(in[1]);
                waitpid(pid, NULL, 0);
                return -EIO;
        }
        close(in[1]);
        while (waitpid(pid, &status, 0) < 0)
                if (errno != EINTR)
                        return -errno;
        return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -EIO;
}

int bench_maildir_drop(const struct bench_harness *h, const char *user, unsigned n, unsigned serial,
                       uint64_t *ret_t_deliver) {
        char home[PATH_MAX], msg[1024];
        uid_t uid = 0;
        gid_t gid = 0;
        int r;

        r = user_entry(h, user, home, sizeof(home), &uid, &gid);
        if (r < 0)
                return r;
        {
                const char *sub[] = { "Maildir/new", "Maildir/cur", "Maildir/tmp" };

                for (size_t i = 0; i < 3; i++) {
                        char d[PATH_MAX + 32];

                        snprintf(d, sizeof(d), "%s/%s", home, sub[i]);
                        if (mkdir(d, 0700) < 0 && errno != EEXIST)
                                return -errno;
                        (void) chown(d, uid, gid);
                }
        }
        uint64_t nonce = now_usec();

        /* all files first into tmp/ (not delivered yet), then every rename
         * into new/ in one go: the delivery itself is that second loop */
        for (int pass = 0; pass < 2; pass++)
                for (unsigned i = 0; i < n; i++) {
                        char tmp[PATH_MAX + 128], dst[PATH_MAX + 128], name[96];

                        /* unique across calls too: Dovecot takes a name it has seen
                         * (now in cur/) for the same message */
                        snprintf(name, sizeof(name), "%u.M%" PRIu64 "P%dQ%u.bench", 1700000000u + serial + i,
                                 nonce, (int) getpid(), i);
                        snprintf(tmp, sizeof(tmp), "%s/Maildir/tmp/%s", home, name);
                        if (pass == 1 && i == 0 && ret_t_deliver)
                                *ret_t_deliver = now_usec();
                        if (pass == 1) {
                                snprintf(dst, sizeof(dst), "%s/Maildir/new/%s", home, name);
                                if (rename(tmp, dst) < 0)
                                        return -errno;
                                continue;
                        }
                        int len = message_text(msg, sizeof(msg), user, serial + i);
                        int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
                        if (fd < 0)
                                return -errno;
                        if (write(fd, msg, (size_t) len) != len) {
                                close(fd);
                                return -EIO;
                        }
                        if (fchown(fd, uid, gid) < 0 && geteuid() == 0) {
                                close(fd);
                                return -errno;
                        }
                        close(fd);
                }
        return 0;
}

unsigned bench_count_imap_processes(const struct bench_harness *h) {
        char want[sizeof(h->dir) + 32];
        size_t want_len;
        unsigned n = 0;
        DIR *d = opendir("/proc");
        struct dirent *e;

        snprintf(want, sizeof(want), "dovecot-%s/imap", h->dir);
        want_len = strlen(want);
        if (!d)
                return 0;
        while ((e = readdir(d))) {
                char path[300], cmd[sizeof(want) + 64];
                int k;

                if (e->d_name[0] < '0' || e->d_name[0] > '9')
                        continue;
                snprintf(path, sizeof(path), "/proc/%s/cmdline", e->d_name);
                k = read_file(path, cmd, sizeof(cmd));
                if (k <= 0)
                        continue;
                /* "dovecot-DIR/imap" alone or with a title after a space;
                 * not imap-login or imap-hibernate */
                if (strncmp(cmd, want, want_len) == 0 && (cmd[want_len] == '\0' || cmd[want_len] == ' '))
                        n++;
        }
        closedir(d);
        return n;
}

/* ---- JSON lines ------------------------------------------------------------ */

void bench_json_begin(const char *kind) {
        printf("{\"kind\":\"%s\"", kind);
}

void bench_json_str(const char *key, const char *value) {
        printf(",\"%s\":\"", key);
        for (const char *p = value; *p; p++) {
                if (*p == '"' || *p == '\\')
                        printf("\\%c", *p);
                else if ((unsigned char) *p < 0x20)
                        printf("\\u%04x", (unsigned char) *p);
                else
                        putchar(*p);
        }
        putchar('"');
}

void bench_json_u64(const char *key, uint64_t v) {
        printf(",\"%s\":%" PRIu64, key, v);
}

void bench_json_dbl(const char *key, double v) {
        printf(",\"%s\":%.6g", key, v);
}

void bench_json_sample(const char *prefix, const struct proc_sample *s) {
        char k[64];
#define F(name, v)                                                      \
        do {                                                            \
                snprintf(k, sizeof(k), "%s%s", prefix, name);           \
                bench_json_u64(k, v);                                   \
        } while (0)
        F("utime_usec", s->utime_usec);
        F("stime_usec", s->stime_usec);
        F("sched_ns", s->sched_ns);
        F("vol_ctxt", s->vol_ctxt);
        F("nonvol_ctxt", s->nonvol_ctxt);
        F("threads", s->threads);
        F("vm_rss_kib", s->vm_rss_kib);
        F("vm_hwm_kib", s->vm_hwm_kib);
        F("rss_kib", s->rss_kib);
        F("pss_kib", s->pss_kib);
        F("private_dirty_kib", s->private_dirty_kib);
        F("private_clean_kib", s->private_clean_kib);
        F("shared_clean_kib", s->shared_clean_kib);
        F("shared_dirty_kib", s->shared_dirty_kib);
        F("anonymous_kib", s->anonymous_kib);
        F("fds", s->fds);
#undef F
}

void bench_json_end(void) {
        printf("}\n");
        fflush(stdout);
}
