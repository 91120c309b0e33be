/* SPDX-License-Identifier: MIT */
/*
 * LD_PRELOAD shim for `make check-valgrind` only: valgrind 3.19 (Debian 12)
 * does not know the pidfd_open system call (434) and fails it with ENOSYS,
 * so under valgrind the daemon could start no password_command, hook or
 * open_command (spawn.c watches every child through a pidfd).
 *
 * Where the real pidfd_open() fails with ENOSYS this stands in for it with
 * one end of a socket pair: a thread waits for the child with
 * waitid(WEXITED | WNOWAIT) (it leaves the zombie to the caller) and closes
 * the other end, so the fd becomes readable (EOF) when the child exits, as a
 * pidfd does. (A pipe would do as well but for SIGPIPE: the caller may close
 * its end first.) It works for the caller's own children only, which
 * is all spawn.c asks of it. Every other system call goes to the real
 * syscall().
 */

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif

typedef long syscall_fn(long n, ...);

struct watch {
        pid_t pid;
        int fd;
};

static void *watch_child(void *userdata) {
        struct watch *w = userdata;
        siginfo_t si;

        while (waitid(P_PID, w->pid, &si, WEXITED | WNOWAIT) < 0 && errno == EINTR)
                ;
        close(w->fd);
        free(w);
        return NULL;
}

static long emulate_pidfd_open(pid_t pid, unsigned flags) {
        struct watch *w;
        pthread_attr_t attr;
        pthread_t t;
        int fds[2], r;

        if (flags != 0 || pid <= 0) {
                errno = EINVAL;
                return -1;
        }
        if (kill(pid, 0) < 0)
                return -1;      /* ESRCH, as pidfd_open() */
        w = malloc(sizeof(*w));
        if (!w) {
                errno = ENOMEM;
                return -1;
        }
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) < 0) {
                free(w);
                return -1;
        }
        w->pid = pid;
        w->fd = fds[1];
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        r = pthread_create(&t, &attr, watch_child, w);
        pthread_attr_destroy(&attr);
        if (r != 0) {
                close(fds[0]);
                close(fds[1]);
                free(w);
                errno = r;
                return -1;
        }
        return fds[0];
}

long syscall(long n, ...) {
        static syscall_fn *real;
        static int no_pidfd;    /* once ENOSYS, valgrind needs not warn again */
        long a[6];
        va_list ap;

        va_start(ap, n);
        for (int i = 0; i < 6; i++)
                a[i] = va_arg(ap, long);
        va_end(ap);

        if (!real)
                real = (syscall_fn *) dlsym(RTLD_NEXT, "syscall");
        if (n == SYS_pidfd_open) {
                if (!__atomic_load_n(&no_pidfd, __ATOMIC_RELAXED)) {
                        long r = real(n, a[0], a[1]);

                        if (r >= 0 || errno != ENOSYS)
                                return r;
                        __atomic_store_n(&no_pidfd, 1, __ATOMIC_RELAXED);
                }
                return emulate_pidfd_open((pid_t) a[0], (unsigned) a[1]);
        }
        return real(n, a[0], a[1], a[2], a[3], a[4], a[5]);
}
