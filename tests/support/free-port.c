/*
 * free-port: print N currently free TCP ports on 127.0.0.1, one per line.
 *
 *   free-port [N]        N defaults to 1, at most 64
 *
 * All N sockets are bound (port 0, the kernel picks) before any is closed, so
 * the ports are distinct. They are closed again before the program exits: a
 * caller that binds them later can still lose a race against another process,
 * which is why tests/harness/harness.sh retries with fresh ports when Dovecot
 * fails to bind.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define FREE_PORT_MAX 64

int main(int argc, char **argv) {
        int fds[FREE_PORT_MAX];
        unsigned ports[FREE_PORT_MAX];
        unsigned long n = 1;
        int ret = EXIT_SUCCESS;

        if (argc > 2) {
                fprintf(stderr, "usage: %s [N]\n", argv[0]);
                return EXIT_FAILURE;
        }
        if (argc == 2) {
                char *end;

                errno = 0;
                n = strtoul(argv[1], &end, 10);
                if (errno != 0 || end == argv[1] || *end != '\0' || n < 1 || n > FREE_PORT_MAX) {
                        fprintf(stderr, "free-port: N must be 1..%d, got '%s'\n", FREE_PORT_MAX, argv[1]);
                        return EXIT_FAILURE;
                }
        }

        for (unsigned long i = 0; i < n; i++)
                fds[i] = -1;

        for (unsigned long i = 0; i < n; i++) {
                struct sockaddr_in sin = {
                        .sin_family = AF_INET,
                        .sin_port = 0,
                        .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
                };
                socklen_t len = sizeof(sin);

                fds[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
                if (fds[i] < 0) {
                        perror("free-port: socket");
                        ret = EXIT_FAILURE;
                        goto out;
                }
                if (bind(fds[i], (struct sockaddr *)&sin, sizeof(sin)) < 0) {
                        perror("free-port: bind 127.0.0.1:0");
                        ret = EXIT_FAILURE;
                        goto out;
                }
                if (getsockname(fds[i], (struct sockaddr *)&sin, &len) < 0) {
                        perror("free-port: getsockname");
                        ret = EXIT_FAILURE;
                        goto out;
                }
                ports[i] = ntohs(sin.sin_port);
        }

        for (unsigned long i = 0; i < n; i++)
                printf("%u\n", ports[i]);
        if (fflush(stdout) != 0 || ferror(stdout)) {
                perror("free-port: stdout");
                ret = EXIT_FAILURE;
        }

out:
        for (unsigned long i = 0; i < n; i++)
                if (fds[i] >= 0)
                        close(fds[i]);
        return ret;
}
