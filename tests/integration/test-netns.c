/* SPDX-License-Identifier: MIT */
/*
 * Network changes for real (SPEC §4 "Liveness", issue 4 "Suspend, resume,
 * network changes"): build/imapidled runs in a network namespace of its own,
 * joined to the harness's Dovecot by a veth pair:
 *
 *   root namespace                          imapidled-XXXXXXXX
 *   Dovecot on 127.0.0.1 and SERVER  <--->  the daemon, CLIENT, default route
 *   SERVER/29 on imhXXXXXXXX                CLIENT/29 on imnXXXXXXXX
 *
 * SERVER and CLIENT are in a random /29 in 10.213.0.0/16 and never leave the
 * machine. The certificate carries IP:SERVER, so the daemon verifies TLS with
 * host = SERVER as it would anywhere else.
 *
 * Each test creates and destroys its namespace and veth pair. A guard process
 * (its own process group, so Check's kill of the test's group spares it)
 * waits for the test process to go away (its pipe closes, however the test
 * ends: pass, failed assertion, Check timeout, kill -9) and then deletes both.
 *
 * The scenarios: a message arrives while the path is down (a short link flap
 * on the namespace's end; a carrier loss long enough for the session to be
 * given up; a renumbering that kills the old connection for good; every
 * packet silently dropped by blackhole qdiscs, then a route change) and must
 * be announced exactly once, within seconds of the path coming back: the
 * daemon's rtnetlink watcher must notice the change, well before TCP
 * keepalive (60 s idle + 4 x 15 s) or TCP_USER_TIMEOUT (120 s) would. Each
 * prints how long it took from the path's return to the announcement.
 *
 * Needs root, network namespaces, veth and the blackhole qdisc; where the
 * machine lacks them the namespace tests are skipped with a message (set
 * IMAPIDLED_REQUIRE_NETNS=1 to make that a failure). The harness's --listen
 * test needs none of it and always runs.
 */

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "suites.h"
#include "test-client.h"

/* The daemon's bound: 0.5 s settle + 10 s for DONE's answer + a backoff of
 * at most a second + reconnect and resync. Keepalive alone would take 120 s. */
#define RECOVERY_LIMIT_MS 15000
/* A session already given up reconnects at once: 0.5 s settle + connect,
 * TLS, login, resync. */
#define RECONNECT_LIMIT_MS 5000
/* Dovecot batches inotify events for about half a second before it tells an
 * IDLE client; after this long the EXISTS has been sent (and lost). */
#define LOST_IN_TRANSIT_MS 1500
/* How long to watch for a duplicate after the expected announcements. */
#define QUIET_MS 2000

struct net {
        char ns[32];                    /* imapidled-XXXXXXXX */
        char host_if[16], ns_if[16];    /* imhXXXXXXXX (root), imnXXXXXXXX (namespace) */
        char server[16], client[16];    /* dotted quads in the /29 */
        char client2[16];               /* the namespace's address after a renumbering */
        pid_t guard;
        int guard_fd;                   /* write end; the guard cleans up at EOF */
};

static struct net net = { .guard_fd = -1 };
static struct harness h;
static char dir[PATH_MAX + 16];
static char config_path[PATH_MAX + 32], state_dir[PATH_MAX + 32], log_path[PATH_MAX + 32];
static char notify_path[PATH_MAX + 32], no_bus[PATH_MAX + 64];
static int notify_fd = -1;
static pid_t daemon_pid;
static char notify_seen[64 * 1024];
static size_t notify_len;

static uint64_t now_ms(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000 + (uint64_t) ts.tv_nsec / 1000000;
}

static const char *build_dir(void) {
        const char *b = getenv("IMAPIDLED_BUILDDIR");
        return b ? b : "build";
}

/* ---- running ip and tc ---------------------------------------------------- */

/* Runs argv (looked up in PATH) with stdin from /dev/null, stdout into out
 * (NUL-terminated; NULL: discarded) and stderr passed through unless quiet.
 * Returns the exit status, 128 + signal, or -errno. */
static int run_argv(const char *const *argv, char *out, size_t out_size, bool quiet) {
        int p[2] = { -1, -1 }, status;
        size_t len = 0;
        pid_t pid;

        if (out && out_size)
                out[0] = '\0';
        if (out && pipe2(p, O_CLOEXEC) < 0)
                return -errno;
        fflush(stdout);
        fflush(stderr);
        pid = fork();
        if (pid < 0) {
                int r = -errno;

                if (p[0] >= 0) {
                        close(p[0]);
                        close(p[1]);
                }
                return r;
        }
        if (pid == 0) {
                int null = open("/dev/null", O_RDWR | O_CLOEXEC);

                if (null < 0 || dup2(null, STDIN_FILENO) < 0 || dup2(out ? p[1] : null, STDOUT_FILENO) < 0 ||
                    (quiet && dup2(null, STDERR_FILENO) < 0))
                        _exit(127);
                execvp(argv[0], (char *const *) argv);
                _exit(127);
        }
        if (out) {
                close(p[1]);
                for (;;) {
                        char scratch[512];
                        bool room = len + 1 < out_size;
                        ssize_t n = read(p[0], room ? out + len : scratch, room ? out_size - len - 1 : sizeof(scratch));

                        if (n < 0 && errno == EINTR)
                                continue;
                        if (n <= 0)
                                break;
                        if (room)
                                len += (size_t) n;
                }
                out[len] = '\0';
                close(p[0]);
        }
        while (waitpid(pid, &status, 0) < 0)
                if (errno != EINTR)
                        return -errno;
        if (WIFEXITED(status))
                return WEXITSTATUS(status);
        return 128 + WTERMSIG(status);
}

static void argv_string(const char *const *argv, char *buf, size_t size) {
        size_t off = 0;

        buf[0] = '\0';
        for (size_t i = 0; argv[i] && off + 1 < size; i++) {
                int n = snprintf(buf + off, size - off, "%s%s", i ? " " : "", argv[i]);

                if (n < 0)
                        break;
                off += (size_t) n;
        }
}

static void run_ok_argv(const char *const *argv) {
        char cmd[512];
        int r = run_argv(argv, NULL, 0, false);

        argv_string(argv, cmd, sizeof(cmd));
        ck_assert_msg(r == 0, "'%s' failed (%d)", cmd, r);
}

/* RUN("ip", "link", ...): asserts that the command succeeds. */
#define RUN(...) run_ok_argv((const char *const[]) { __VA_ARGS__, NULL })

/* ---- the namespace and the veth pair --------------------------------------- */

/* The guard: waits for EOF on fd (every copy of the write end closed: the
 * test process ended or teardown closed it), then deletes what the test may
 * have created. Never returns. */
static void guard_main(int fd, const struct net *n) {
        long max_fd = sysconf(_SC_OPEN_MAX);
        char c;

        setpgid(0, 0);
        if (max_fd < 0 || max_fd > 65536)
                max_fd = 65536;
        for (long i = STDERR_FILENO + 1; i < max_fd; i++)
                if (i != fd)
                        close((int) i);
        for (;;) {
                ssize_t r = read(fd, &c, 1);

                if (r < 0 && errno == EINTR)
                        continue;
                if (r <= 0)
                        break;
        }
        /* Deleting the root end of the pair deletes both ends at once. */
        (void) run_argv((const char *const[]) { "ip", "link", "del", n->host_if, NULL }, NULL, 0, true);
        (void) run_argv((const char *const[]) { "ip", "netns", "del", n->ns, NULL }, NULL, 0, true);
        _exit(0);
}

static void start_guard(struct net *n) {
        int p[2];
        pid_t pid;

        ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
        fflush(stdout);
        fflush(stderr);
        pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
                close(p[1]);
                guard_main(p[0], n);
        }
        close(p[0]);
        n->guard = pid;
        n->guard_fd = p[1];
}

/* Runs the guard's cleanup now and waits for it. */
static void stop_guard(struct net *n) {
        if (n->guard_fd >= 0)
                close(n->guard_fd);
        n->guard_fd = -1;
        if (n->guard > 0)
                while (waitpid(n->guard, NULL, 0) < 0 && errno == EINTR)
                        ;
        n->guard = 0;
}

/* A random /29 in 10.213.0.0/16 that no interface here uses yet. */
static void pick_subnet(struct net *n) {
        for (int attempt = 0; attempt < 32; attempt++) {
                uint16_t x;
                unsigned a, b;
                char out[1024], prefix[32];

                ck_assert_int_eq(getrandom(&x, sizeof(x), 0), (ssize_t) sizeof(x));
                x &= 0x1fff;    /* 8192 subnets of eight addresses */
                a = x >> 5;
                b = (x & 31) * 8;
                snprintf(prefix, sizeof(prefix), "10.213.%u.%u/29", a, b);
                snprintf(n->server, sizeof(n->server), "10.213.%u.%u", a, b + 1);
                snprintf(n->client, sizeof(n->client), "10.213.%u.%u", a, b + 2);
                snprintf(n->client2, sizeof(n->client2), "10.213.%u.%u", a, b + 3);
                ck_assert_int_eq(run_argv((const char *const[]) { "ip", "-o", "addr", "show", "to", prefix, NULL },
                                          out, sizeof(out), false), 0);
                if (!out[0])
                        return;
        }
        ck_abort_msg("no free /29 in 10.213.0.0/16");
}

static void net_create(struct net *n) {
        uint32_t r;

        memset(n, 0, sizeof(*n));
        n->guard_fd = -1;
        ck_assert_int_eq(getrandom(&r, sizeof(r), 0), (ssize_t) sizeof(r));
        snprintf(n->ns, sizeof(n->ns), "imapidled-%08x", r);
        snprintf(n->host_if, sizeof(n->host_if), "imh%08x", r);
        snprintf(n->ns_if, sizeof(n->ns_if), "imn%08x", r);
        pick_subnet(n);
        /* first the guard, so that whatever happens next is cleaned up */
        start_guard(n);

        RUN("ip", "netns", "add", n->ns);
        RUN("ip", "link", "add", n->host_if, "type", "veth", "peer", "name", n->ns_if, "netns", n->ns);
        /* No IPv6 link-local addresses: their late arrival (DAD) would be
         * network changes of their own in the middle of a scenario. */
        RUN("ip", "link", "set", n->host_if, "addrgenmode", "none");
        RUN("ip", "-n", n->ns, "link", "set", n->ns_if, "addrgenmode", "none");
        {
                char a[24];

                snprintf(a, sizeof(a), "%s/29", n->server);
                RUN("ip", "addr", "add", a, "dev", n->host_if);
                snprintf(a, sizeof(a), "%s/29", n->client);
                RUN("ip", "-n", n->ns, "addr", "add", a, "dev", n->ns_if);
        }
        RUN("ip", "link", "set", n->host_if, "up");
        RUN("ip", "-n", n->ns, "link", "set", "lo", "up");
        RUN("ip", "-n", n->ns, "link", "set", n->ns_if, "up");
        RUN("ip", "-n", n->ns, "route", "add", "default", "via", n->server);
}

/* ---- the daemon in the namespace -------------------------------------------- */

static void write_file(const char *path, const char *text) {
        FILE *f = fopen(path, "w");

        ck_assert_ptr_nonnull(f);
        fputs(text, f);
        ck_assert_int_eq(fclose(f), 0);
}

static void read_notify(void) {
        char buf[4096];
        ssize_t n;

        while ((n = recv(notify_fd, buf, sizeof(buf) - 1, 0)) > 0) {
                buf[n] = '\0';
                if (notify_len + (size_t) n + 2 < sizeof(notify_seen)) {
                        memcpy(notify_seen + notify_len, buf, (size_t) n);
                        notify_len += (size_t) n;
                        notify_seen[notify_len++] = '\n';
                        notify_seen[notify_len] = '\0';
                }
        }
}

static void forget_notify(void) {
        read_notify();
        notify_len = 0;
        notify_seen[0] = '\0';
}

static char *read_log(void) {
        static char buf[1024 * 1024];
        FILE *f = fopen(log_path, "r");
        size_t n = 0;

        buf[0] = '\0';
        if (f) {
                n = fread(buf, 1, sizeof(buf) - 1, f);
                fclose(f);
        }
        buf[n] = '\0';
        return buf;
}

static size_t log_size(void) {
        return strlen(read_log());
}

/* The log written since offset (from log_size()). */
static const char *log_since(size_t offset) {
        const char *l = read_log();
        size_t len = strlen(l);

        return l + (offset < len ? offset : len);
}

static unsigned count(const char *haystack, const char *needle) {
        unsigned n = 0;

        for (const char *p = haystack; (p = strstr(p, needle)); p += strlen(needle))
                n++;
        return n;
}

static void sleep_until(uint64_t when_ms) {
        uint64_t now = now_ms();

        if (when_ms > now)
                usleep((useconds_t) ((when_ms - now) * 1000));
}

/* Waits until the log written since mark holds at least n copies of needle;
 * returns when (ms). */
static uint64_t wait_log_since(size_t mark, const char *needle, unsigned n, unsigned timeout_ms) {
        uint64_t deadline = now_ms() + timeout_ms;

        while (count(log_since(mark), needle) < n) {
                ck_assert_msg(now_ms() < deadline, "timed out waiting for %u x \"%s\"; log:\n%s", n, needle,
                              read_log());
                usleep(10 * 1000);
        }
        return now_ms();
}

static uint64_t wait_log(const char *needle, unsigned n, unsigned timeout_ms) {
        return wait_log_since(0, needle, n, timeout_ms);
}

static void wait_notify(const char *needle, unsigned timeout_ms) {
        uint64_t deadline = now_ms() + timeout_ms;

        for (;;) {
                read_notify();
                if (strstr(notify_seen, needle))
                        return;
                ck_assert_msg(now_ms() < deadline, "timed out waiting for %s on NOTIFY_SOCKET; got:\n%s\nlog:\n%s",
                              needle, notify_seen, read_log());
                usleep(20 * 1000);
        }
}

/* Starts build/imapidled -v in the namespace, its output in log_path. */
static void start_daemon(const char *ns) {
        char exe[PATH_MAX], ns_path[PATH_MAX];
        int ns_fd;
        pid_t pid;

        snprintf(exe, sizeof(exe), "%s/imapidled", build_dir());
        snprintf(ns_path, sizeof(ns_path), "/var/run/netns/%s", ns);
        ns_fd = open(ns_path, O_RDONLY | O_CLOEXEC);
        ck_assert_msg(ns_fd >= 0, "%s: %s", ns_path, strerror(errno));
        fflush(stdout);
        fflush(stderr);
        pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
                const char *argv[] = { exe, "--config", config_path, "--verbose", NULL };
                int fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);

                if (fd < 0 || setns(ns_fd, CLONE_NEWNET) < 0)
                        _exit(127);
                dup2(fd, STDERR_FILENO);
                dup2(fd, STDOUT_FILENO);
                setenv("NOTIFY_SOCKET", notify_path, 1);
                setenv("IMAPIDLED_STATE_DIR", state_dir, 1);
                /* no logind: PrepareForSleep plays no part here */
                setenv("DBUS_SYSTEM_BUS_ADDRESS", no_bus, 1);
                unsetenv("JOURNAL_STREAM");
                unsetenv("WATCHDOG_USEC");
                unsetenv("WATCHDOG_PID");
                execv(exe, (char *const *) argv);
                _exit(127);
        }
        close(ns_fd);
        daemon_pid = pid;
}

static void stop_daemon(void) {
        if (daemon_pid > 0) {
                kill(daemon_pid, SIGKILL);
                while (waitpid(daemon_pid, NULL, 0) < 0 && errno == EINTR)
                        ;
        }
        daemon_pid = 0;
}

static void deliver(const char *subject) {
        ck_assert_int_eq(harness_deliver(&h, "user1", "INBOX", "Sender <s@example.org>", subject), 0);
}

static void setup_paths(void) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };

        snprintf(dir, sizeof(dir), "%s/netns-test", h.dir);
        ck_assert_int_eq(mkdir(dir, 0700), 0);
        snprintf(config_path, sizeof(config_path), "%s/config", dir);
        snprintf(state_dir, sizeof(state_dir), "%s/state", dir);
        snprintf(log_path, sizeof(log_path), "%s/daemon.log", dir);
        snprintf(notify_path, sizeof(notify_path), "%s/notify", dir);
        snprintf(no_bus, sizeof(no_bus), "unix:path=%s/no-system-bus", dir);

        notify_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        ck_assert_int_ge(notify_fd, 0);
        ck_assert_uint_lt(strlen(notify_path), sizeof(sa.sun_path));
        memcpy(sa.sun_path, notify_path, strlen(notify_path) + 1);
        ck_assert_int_eq(bind(notify_fd, (struct sockaddr *) &sa, sizeof(sa)), 0);
        notify_len = 0;
        notify_seen[0] = '\0';
}

static void setup(void) {
        char buf[PATH_MAX * 3];

        daemon_pid = 0;
        net_create(&net);
        ck_assert_int_ge(harness_start_listen(&h, 0, net.server), 0);
        ck_assert_str_eq(h.listen, net.server);
        setup_paths();
        snprintf(buf, sizeof(buf),
                 "[general]\n"
                 "log_level = info\n"
                 "\n"
                 "[account main]\n"
                 "host = %s\n"
                 "port = %d\n"
                 "tls = implicit\n"
                 "ca_file = %s\n"
                 "user = user1\n"
                 "password_command = printf 'pass-user1\\n'\n"
                 "mailboxes = INBOX\n",
                 net.server, h.imaps_port, h.ca_file);
        write_file(config_path, buf);
}

static void teardown(void) {
        stop_daemon();
        if (notify_fd >= 0)
                close(notify_fd);
        notify_fd = -1;
        harness_stop(&h);
        stop_guard(&net);
}

/* The daemon idles in the namespace, and Dovecot sees it come from CLIENT. */
static void daemon_idle(void) {
        char who[4096];

        start_daemon(net.ns);
        wait_notify("STATUS=1/1 mailbox", 15000);
        ck_assert_int_ge(harness_doveadm(&h, who, sizeof(who), "who", "-1", "user1", NULL), 0);
        ck_assert_msg(strstr(who, net.client), "the daemon's session does not come from %s:\n%s", net.client, who);
}

/* The outcome, for the report: the session survived or was replaced. */
static const char *how(const char *log) {
        return strstr(log, "connected to ") ? "new connection" : "same connection";
}

/* ---- scenarios --------------------------------------------------------------- */

static void link_set(bool server_end, const char *updown) {
        if (server_end)
                RUN("ip", "link", "set", net.host_if, updown);
        else
                RUN("ip", "-n", net.ns, "link", "set", net.ns_if, updown);
}

/* After the path came back at `back` (ms) and the log was mark long: waits
 * for n announcements in all, reports, and checks the bound, the network
 * check and that nothing comes twice. */
static void recovered(const char *scenario, size_t mark, uint64_t back, unsigned n, unsigned limit_ms) {
        uint64_t announced = wait_log("new mail in ", n, limit_ms + 5000) - back;

        /* The check may come after the announcement when TCP retransmitted first. */
        wait_log_since(mark, "network configuration changed", 1, 3000);
        fprintf(stderr, "netns: %s: path back -> %u announced in %llu ms (%s)\n", scenario, n,
                (unsigned long long) announced, how(log_since(mark)));
        ck_assert_msg(announced < limit_ms, "%s: recovery took %llu ms (limit %u); log:\n%s", scenario,
                      (unsigned long long) announced, limit_ms, log_since(mark));
        wait_notify("STATUS=1/1 mailbox", 15000);
        usleep(QUIET_MS * 1000);
        ck_assert_uint_eq(count(read_log(), "new mail in "), n);
}

/* The link of the namespace's end goes down for a couple of seconds, a
 * message arrives and its EXISTS is lost, the link comes back: announced
 * once, within seconds. (TCP's retransmission or the daemon's DONE check,
 * whichever comes first, brings it.) */
START_TEST(test_link_flap) {
        uint64_t back;
        size_t mark;

        daemon_idle();
        link_set(false, "down");
        deliver("sent while the link was down");
        usleep(LOST_IN_TRANSIT_MS * 1000);
        ck_assert_msg(count(read_log(), "new mail in ") == 0, "announced while the link was down:\n%s",
                      read_log());

        forget_notify();
        mark = log_size();
        link_set(false, "up");
        back = now_ms();
        recovered("link flap", mark, back, 1, RECOVERY_LIMIT_MS);
        ck_assert_uint_eq(count(read_log(), "sent while the link was down"), 1);
}
END_TEST

/* The server's end goes down (the daemon sees carrier loss) for longer than
 * the DONE check may take: the check gives the session up during the outage
 * and the new connection's SYNs vanish (the server's MAC is pinned, so no ARP
 * failure ends the attempt early). Carrier returns 4.5 s into that attempt,
 * between two of the kernel's SYN retransmissions (1, 3, 7 s after the
 * connect; the namespace's tcp_syn_linear_timeouts, where the kernel has it,
 * is set to 0 for that schedule): the attempt would not get through for
 * another 2.5 s, but the daemon abandons it and reconnects at once
 * ("reconnecting now"), so the message is announced within about a second. */
START_TEST(test_long_carrier_loss) {
        char mac_path[PATH_MAX], mac[64] = "";
        uint64_t back, connect_at;
        size_t mark, mark_connect;
        FILE *f;

        snprintf(mac_path, sizeof(mac_path), "/sys/class/net/%s/address", net.host_if);
        f = fopen(mac_path, "r");
        ck_assert_ptr_nonnull(f);
        ck_assert_ptr_nonnull(fgets(mac, sizeof(mac), f));
        fclose(f);
        mac[strcspn(mac, "\n")] = '\0';
        RUN("ip", "-n", net.ns, "neigh", "replace", net.server, "lladdr", mac, "dev", net.ns_if, "nud", "permanent");
        /* Linux >= 6.16 retransmits the first SYNs every second by default. */
        if (access("/proc/sys/net/ipv4/tcp_syn_linear_timeouts", F_OK) == 0)
                RUN("ip", "netns", "exec", net.ns, "sysctl", "-q", "-w", "net.ipv4.tcp_syn_linear_timeouts=0");

        daemon_idle();
        mark = log_size();
        link_set(true, "down");
        deliver("sent while the carrier was lost");
        /* the DONE check, armed by the carrier loss, gives up after 10 s */
        wait_log_since(mark, "did not answer", 1, 15000);
        mark_connect = log_size();
        connect_at = wait_log_since(mark_connect, "connecting to ", 1, 5000);
        sleep_until(connect_at + 4500);
        ck_assert_msg(count(read_log(), "new mail in ") == 0, "announced while the carrier was lost:\n%s",
                      read_log());
        ck_assert_msg(!strstr(log_since(mark_connect), "failed") && !strstr(log_since(mark_connect), "connected to "),
                      "the connection attempt did not hang:\n%s", log_since(mark));

        forget_notify();
        mark = log_size();
        link_set(true, "up");
        back = now_ms();
        recovered("long carrier loss", mark, back, 1, RECONNECT_LIMIT_MS);
        ck_assert_msg(strstr(log_since(mark), "reconnecting now"), "no immediate reconnect:\n%s", log_since(mark));
        ck_assert_uint_eq(count(read_log(), "sent while the carrier was lost"), 1);
}
END_TEST

/* The namespace is renumbered (a DHCP lease with a new address, a move to
 * another network): the old address goes, a new one and the default route
 * come. The old connection can never work again, TCP retransmissions cannot
 * save it, and without rtnetlink only keepalive (60 s + 4 x 15 s) or
 * TCP_USER_TIMEOUT (120 s) would notice. The daemon sees that the
 * connection's local address is gone and reconnects from the new address at
 * once, without waiting for the DONE check; the message that came meanwhile
 * is announced once. */
START_TEST(test_address_change) {
        char old_a[24], new_a[24], who[4096];
        uint64_t back;
        size_t mark;

        snprintf(old_a, sizeof(old_a), "%s/29", net.client);
        snprintf(new_a, sizeof(new_a), "%s/29", net.client2);
        daemon_idle();
        forget_notify();
        mark = log_size();
        RUN("ip", "-n", net.ns, "addr", "del", old_a, "dev", net.ns_if);
        RUN("ip", "-n", net.ns, "addr", "add", new_a, "dev", net.ns_if);
        RUN("ip", "-n", net.ns, "route", "replace", "default", "via", net.server);
        back = now_ms();
        deliver("sent after the renumbering");
        recovered("address change", mark, back, 1, RECONNECT_LIMIT_MS);
        ck_assert_msg(strstr(log_since(mark), "local address of the connection is gone"),
                      "the old session was not given up at once:\n%s", log_since(mark));
        ck_assert_int_ge(harness_doveadm(&h, who, sizeof(who), "who", "-1", "user1", NULL), 0);
        ck_assert_msg(strstr(who, net.client2), "the new session does not come from %s:\n%s", net.client2, who);
}
END_TEST

/* Every packet is dropped, both ways, without any link or route event (a
 * blackhole qdisc on each end: the kernel says nothing on rtnetlink's link,
 * address and route groups). Two messages arrive meanwhile. The loss ends and
 * the default route is replaced (as a network manager does when the network
 * returns): both are announced, once each, within seconds. */
START_TEST(test_silent_loss_then_route_change) {
        uint64_t back;
        size_t mark;

        daemon_idle();
        mark = log_size();
        RUN("tc", "-n", net.ns, "qdisc", "add", "dev", net.ns_if, "root", "blackhole");
        RUN("tc", "qdisc", "add", "dev", net.host_if, "root", "blackhole");
        deliver("lost one");
        usleep(1000 * 1000);
        deliver("lost two");
        usleep(LOST_IN_TRANSIT_MS * 1000);
        ck_assert_msg(count(read_log(), "new mail in ") == 0, "announced through a dead path:\n%s", read_log());
        /* The daemon had no way to know. */
        ck_assert_msg(!strstr(log_since(mark), "network configuration changed"),
                      "the qdiscs were seen as a network change:\n%s", log_since(mark));

        forget_notify();
        RUN("tc", "qdisc", "del", "dev", net.host_if, "root");
        RUN("tc", "-n", net.ns, "qdisc", "del", "dev", net.ns_if, "root");
        mark = log_size();
        RUN("ip", "-n", net.ns, "route", "del", "default");
        RUN("ip", "-n", net.ns, "route", "add", "default", "via", net.server);
        back = now_ms();
        recovered("silent loss, route re-added", mark, back, 2, RECOVERY_LIMIT_MS);
        ck_assert_uint_eq(count(read_log(), "lost one"), 1);
        ck_assert_uint_eq(count(read_log(), "lost two"), 1);
}
END_TEST

/* ---- harness --listen, no namespace needed ------------------------------------ */

/* 127.0.0.2 is loopback on Linux without configuration: Dovecot listens
 * there too, the certificate verifies for that IP (and not another), and a
 * plaintext login there is refused. */
START_TEST(test_harness_listen) {
        struct harness hl;
        struct test_client c;

        memset(&c, 0, sizeof(c));
        ck_assert_int_eq(harness_start_listen(&hl, 0, "127.0.0.2"), 0);
        ck_assert_str_eq(hl.listen, "127.0.0.2");

        ck_assert_msg(test_client_connect(&c, "127.0.0.2", hl.imaps_port, TEST_TLS_IMPLICIT, hl.ca_file, NULL) == 0,
                      "%s", c.error);
        ck_assert_int_eq(test_client_login(&c, "user1", "pass-user1"), 0);
        test_client_close(&c);

        memset(&c, 0, sizeof(c));
        ck_assert_int_ne(test_client_connect(&c, "127.0.0.2", hl.imaps_port, TEST_TLS_IMPLICIT, hl.ca_file,
                                             "127.0.0.3"), 0);
        test_client_close(&c);

        memset(&c, 0, sizeof(c));
        ck_assert_msg(test_client_connect(&c, "127.0.0.2", hl.imap_port, TEST_TLS_NONE, NULL, NULL) == 0, "%s",
                      c.error);
        ck_assert_ptr_nonnull(strstr(test_client_capabilities(&c), "LOGINDISABLED"));
        test_client_close(&c);

        /* 127.0.0.1 is as before */
        memset(&c, 0, sizeof(c));
        ck_assert_msg(test_client_connect(&c, "127.0.0.1", hl.imap_port, TEST_TLS_NONE, NULL, NULL) == 0, "%s",
                      c.error);
        ck_assert_ptr_null(strstr(test_client_capabilities(&c), "LOGINDISABLED"));
        test_client_close(&c);

        harness_stop(&hl);
}
END_TEST

/* ---- main -------------------------------------------------------------------- */

/* Can this machine run the namespace tests? Tried in a throwaway namespace of
 * a child process: nothing is left behind. NULL if yes, else why not. */
static const char *netns_unavailable(void) {
        int status;
        pid_t pid;

        if (geteuid() != 0)
                return "not root";
        fflush(stdout);
        fflush(stderr);
        pid = fork();
        if (pid < 0)
                return "fork failed";
        if (pid == 0) {
                if (unshare(CLONE_NEWNET) < 0)
                        _exit(10);
                if (run_argv((const char *const[]) { "ip", "link", "add", "imp0", "type", "veth", "peer", "name",
                                                     "imp1", NULL },
                             NULL, 0, true) != 0)
                        _exit(11);
                if (run_argv((const char *const[]) { "tc", "qdisc", "add", "dev", "imp0", "root", "blackhole", NULL },
                             NULL, 0, true) != 0)
                        _exit(12);
                _exit(0);
        }
        if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status))
                return "the probe died";
        switch (WEXITSTATUS(status)) {
        case 0:
                return NULL;
        case 10:
                return "cannot create a network namespace";
        case 11:
                return "cannot create a veth pair (or no ip command)";
        case 12:
                return "no blackhole qdisc (or no tc command)";
        default:
                return "the probe failed";
        }
}

int main(void) {
        Suite *s = suite_create("netns");
        TCase *tc_listen = tcase_create("harness-listen");
        TCase *tc = tcase_create("netns");
        const char *path = getenv("PATH"), *require = getenv("IMAPIDLED_REQUIRE_NETNS");
        const char *why;
        SRunner *sr;
        int failed;

        /* ip and tc live in /usr/sbin */
        {
                char p[8192];

                snprintf(p, sizeof(p), "%s%s/usr/sbin:/sbin", path ? path : "", path && *path ? ":" : "");
                setenv("PATH", p, 1);
        }

        tcase_set_timeout(tc_listen, 60);
        tcase_add_test(tc_listen, test_harness_listen);
        suite_add_tcase(s, tc_listen);

        why = netns_unavailable();
        if (why) {
                fprintf(stderr, "netns: SKIPPING the network namespace tests: %s\n", why);
                if (require && *require && strcmp(require, "0") != 0) {
                        fprintf(stderr, "netns: IMAPIDLED_REQUIRE_NETNS is set: failing\n");
                        return EXIT_FAILURE;
                }
        } else {
                tcase_add_checked_fixture(tc, setup, teardown);
                tcase_set_timeout(tc, 90);
                tcase_add_test(tc, test_link_flap);
                tcase_add_test(tc, test_long_carrier_loss);
                tcase_add_test(tc, test_address_change);
                tcase_add_test(tc, test_silent_loss_then_route_change);
                suite_add_tcase(s, tc);
        }

        sr = srunner_create(s);
        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
