/* SPDX-License-Identifier: MIT */
/*
 * imapidled [--config FILE] [--check-config] [--verbose|-v] [--trace] [--version] [--help]
 */

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "daemon.h"
#include "log.h"

static void help(void) {
        printf("Usage: imapidled [OPTIONS]\n"
               "\n"
               "IMAP push-mail notifier: watches mailboxes with IDLE/NOTIFY and reports new mail\n"
               "as desktop notifications, D-Bus signals and hook commands.\n"
               "\n"
               "  -c, --config FILE   configuration file (default: $XDG_CONFIG_HOME/imapidled/config)\n"
               "      --check-config  validate the configuration and exit (0 valid, 1 invalid)\n"
               "  -v, --verbose       log debug messages\n"
               "      --trace         also log the IMAP exchange (credentials redacted)\n"
               "      --version       print the version and exit\n"
               "  -h, --help          print this help and exit\n"
               "\n"
               "Runs in the foreground; under systemd use the imapidled.service user unit.\n"
               "See imapidled(1) and imapidled.conf(5).\n");
}

static int check_config(const char *path) {
        struct config_diag diag = {};
        struct config *c = NULL;
        char *def = NULL;
        int r;

        if (!path)
                path = def = config_default_path();
        if (!path)
                return log_oom();
        r = config_load(path, &c, &diag);
        for (size_t i = 0; i < diag.n; i++)
                fprintf(stderr, "%s: %s: %s\n", path, diag.items[i].severity == CONFIG_DIAG_ERROR ? "error" : "warning",
                        diag.items[i].message);
        config_diag_done(&diag);
        if (r >= 0)
                printf("%s: valid, %zu account%s\n", path, c->n_accounts, c->n_accounts == 1 ? "" : "s");
        config_free(c);
        free(def);
        return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}

int main(int argc, char *argv[]) {
        enum { ARG_CHECK_CONFIG = 0x100, ARG_TRACE, ARG_VERSION };
        static const struct option options[] = {
                { "config", required_argument, NULL, 'c' },
                { "check-config", no_argument, NULL, ARG_CHECK_CONFIG },
                { "verbose", no_argument, NULL, 'v' },
                { "trace", no_argument, NULL, ARG_TRACE },
                { "version", no_argument, NULL, ARG_VERSION },
                { "help", no_argument, NULL, 'h' },
                {}
        };
        struct daemon_options o = {};
        bool check = false;
        struct daemon *d = NULL;
        sigset_t mask;
        int c, r;

        while ((c = getopt_long(argc, argv, "c:vh", options, NULL)) >= 0)
                switch (c) {
                case 'c':
                        o.config_path = optarg;
                        break;
                case ARG_CHECK_CONFIG:
                        check = true;
                        break;
                case 'v':
                        o.verbose = true;
                        break;
                case ARG_TRACE:
                        o.trace = true;
                        break;
                case ARG_VERSION:
                        printf("imapidled %s\n", IMAPIDLED_VERSION);
                        return EXIT_SUCCESS;
                case 'h':
                        help();
                        return EXIT_SUCCESS;
                default:
                        fprintf(stderr, "Try 'imapidled --help'.\n");
                        return EXIT_FAILURE;
                }
        if (optind < argc) {
                fprintf(stderr, "imapidled: unexpected argument '%s'. Try 'imapidled --help'.\n", argv[optind]);
                return EXIT_FAILURE;
        }

        log_open();
        if (check)
                return check_config(o.config_path);
        if (o.verbose || o.trace)
                log_set_max_level(LOG_DEBUG);
        o.state_dir = getenv("IMAPIDLED_STATE_DIR");    /* tests */

        /* Signals are handled by sd-event, and children are reaped through
         * it: block them before any thread exists, so every thread inherits
         * the mask. A write to a closed socket must not kill the daemon. */
        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGHUP);
        sigaddset(&mask, SIGCHLD);
        sigprocmask(SIG_BLOCK, &mask, NULL);
        signal(SIGPIPE, SIG_IGN);

        r = daemon_new(&o, &d);
        if (r < 0)
                return EXIT_FAILURE;
        r = daemon_run(d);
        daemon_free(d);
        return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
