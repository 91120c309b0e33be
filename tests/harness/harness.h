/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The real-server test harness for C tests: a throwaway Dovecot on 127.0.0.1
 * (IMAP with STARTTLS, and implicit-TLS IMAPS, certificates from a CA made at
 * test time) and, on request, a private D-Bus session bus and a real
 * notification server on it (dunst on an Xvfb screen). A thin wrapper: all
 * the work is done by tests/harness/harness.sh, run with fork/execv (no shell
 * between us and the arguments). Its stderr passes through to ours.
 *
 * The script is found at $IMAPIDLED_SRCDIR/tests/harness/harness.sh; without
 * IMAPIDLED_SRCDIR, relative to the parent of the directory holding the
 * running binary (build/test-x -> <repo>), else the current directory. When
 * IMAPIDLED_BUILDDIR is unset and the binary's directory holds free-port, it is
 * passed on as IMAPIDLED_BUILDDIR.
 *
 * harness_start passes its PID as the owner: if the process dies without
 * harness_stop (crash, Check timeout, kill -9), a detached guard stops the
 * servers within about a second and removes the directory. Set
 * IMAPIDLED_HARNESS_KEEP=1 to keep the directory (logs, mail) after
 * harness_stop; it says where on stderr.
 *
 * Users are user1..userN (N = n_users, 4) with password "pass-<user>".
 * Dovecot notices deliveries, flag changes and expunges about half a second
 * after they happen (it batches inotify events), so IDLE tests should wait
 * for seconds, not milliseconds.
 *
 * All functions returning int return >= 0 on success or -errno: -EIO when the
 * script failed (its message is on stderr), -EPROTO when its output made no
 * sense. None of them is thread-safe or async-signal-safe.
 */

#include <limits.h>
#include <stddef.h>
#include <sys/types.h>

struct harness {
        char dir[PATH_MAX];                     /* the temporary directory, removed by harness_stop */
        char host[64];                          /* "localhost" */
        int imap_port, imaps_port;              /* 127.0.0.1: plain/STARTTLS, implicit TLS */
        char ca_file[PATH_MAX];                 /* PEM of the CA that signed the server certificate */
        char dbus_address[PATH_MAX + 32];       /* empty unless HARNESS_DBUS */
        unsigned n_users;
        char listen[64];                        /* the extra address of harness_start_listen, else empty */
        /* HARNESS_NOTIFY only, else empty / 0: */
        char display[16];                       /* the Xvfb screen, e.g. ":93" (for DISPLAY) */
        char xauthority[PATH_MAX + 16];         /* its cookie file (for XAUTHORITY) */
        pid_t notify_pid;                       /* dunst, owner of org.freedesktop.Notifications */
};

enum {
        HARNESS_DBUS = 1 << 0,  /* also start a private session bus (dbus_address) */
        /* HARNESS_DBUS, plus Xvfb (1024x768, a free display :90..:199) and dunst
         * 1.9 owning org.freedesktop.Notifications on the private bus before
         * harness_start returns. dunst is configured for tests: full markup,
         * popups never expire on their own (a notification's expire_timeout > 0
         * still does), ids rise in arrival order, and its context menu is a
         * script that picks an action of the newest notification (see
         * harness_notify_action). Its capabilities: actions, body,
         * body-hyperlinks, body-markup, icon-static, synchronous,
         * private-synchronous, x-canonical-private-synchronous,
         * x-dunst-stack-tag. Adds about 0.2 s to the start. Observe what is
         * said to it with tests/support/notify-monitor.h. */
        HARNESS_NOTIFY = 1 << 1,
};

/* Creates a directory under $TMPDIR (default /tmp), starts the servers in it
 * and fills h. h needs no initialisation; on failure it is left zeroed (so
 * harness_stop is harmless) and nothing is left running or on disk. */
int harness_start(struct harness *h, unsigned flags);

/* harness_start, and Dovecot also listens on listen_addr (both ports; NULL or
 * "" adds nothing), e.g. the root end of a veth pair leading into a test's
 * network namespace. The address must already be configured on an interface
 * and be a private one (127/8, 10/8, 172.16/12, 192.168/16, fc00::/7); the
 * server certificate carries it as an IP subjectAltName, so a client verifies
 * with host = listen_addr. Logins on it need TLS (STARTTLS or IMAPS). */
int harness_start_listen(struct harness *h, unsigned flags, const char *listen_addr);

/* Stops every server, waits for them and removes the directory. Safe to call
 * twice and on a zeroed, never-started or failed harness. */
void harness_stop(struct harness *h);

/* Delivers a generated text/plain UTF-8 message (Date, From, To, Subject,
 * Message-ID, MIME-Version) with dovecot-lda, as an MTA does. from and subject
 * are used verbatim: pass RFC 2047 encoded words for non-ASCII subjects. The
 * mailbox (UTF-8 name) is created when missing. Returns 0. */
int harness_deliver(struct harness *h, const char *user, const char *mailbox, const char *from,
                    const char *subject);

/* harness_deliver with a body (NULL: a default line) and the UID the message
 * got in *ret_uid (0 if Dovecot did not report one). */
int harness_mail(struct harness *h, const char *user, const char *mailbox, const char *from,
                 const char *subject, const char *body, unsigned *ret_uid);

/* Delivers message (a complete RFC 5322 message, LF or CRLF line ends) as is.
 * Returns 0. */
int harness_deliver_raw(struct harness *h, const char *user, const char *mailbox, const char *message);

/* harness_deliver_raw with the UID in *ret_uid (0 if not reported). */
int harness_deliver_raw_uid(struct harness *h, const char *user, const char *mailbox, const char *message,
                            unsigned *ret_uid);

/* Acts as another client (doveadm): expunges the message with that UID.
 * Returns 0, also when no message had that UID. */
int harness_expunge(struct harness *h, const char *user, const char *mailbox, unsigned uid);

/* Acts as another client (doveadm): op is "add", "remove" or "replace",
 * flags a space-separated list such as "\\Seen \\Flagged" or "$Label1". */
int harness_flags(struct harness *h, const char *user, const char *mailbox, unsigned uid, const char *op,
                  const char *flags);

/* Creates a mailbox (UTF-8 name, '/' separated). */
int harness_mkbox(struct harness *h, const char *user, const char *mailbox);

/* Runs doveadm against the harness's Dovecot with the NULL-terminated
 * arguments that follow out_size, e.g.
 *   harness_doveadm(h, out, sizeof(out), "fetch", "-u", "user1", "flags",
 *                   "mailbox", "INBOX", "uid", "1", NULL);
 * Its stdout goes to out (NUL-terminated, truncated to out_size - 1 bytes;
 * out may be NULL if out_size is 0). Returns the length of the output. */
int harness_doveadm(struct harness *h, char *out, size_t out_size, ...) __attribute__((sentinel));

/* Writes "pass-<user>" to buf and returns buf; NULL if it does not fit. */
/* Stops Dovecot alone (the bus and the guard stay) / starts it again on the
 * same ports with the same mail: for reconnect tests. */
int harness_server_stop(struct harness *h);
int harness_server_start(struct harness *h);

const char *harness_password(const struct harness *h, const char *user, char *buf, size_t size);

/* HARNESS_NOTIFY: sends sig to dunst, e.g. SIGSTOP to make the notification
 * server hang (Notify calls then get no reply) and SIGCONT to wake it.
 * harness_stop also ends a stopped dunst. Returns 0, -ENOTCONN without dunst
 * or -errno of kill(). */
int harness_notify_signal(struct harness *h, int sig);

/* HARNESS_NOTIFY: acts as the user on the newest notification on screen (the
 * highest id), through dunst itself, so that dunst emits ActionInvoked:
 *   "default"  a click: with one notification on screen `dunstctl action 0`
 *              (dunst invokes its "default" action, or its only action, or
 *              opens the context menu); with several, dunst's context menu
 *              with the newest's "default" entry chosen (dunst 1.9 can click
 *              no other position than 0, the oldest popup; -EIO if the
 *              newest has no "default" action)
 *   "context"  `dunstctl context`, the context menu, choosing the newest
 *              notification's action labelled "Mark as read"
 * The menu lines dunst 1.9 offers are "#LABEL (SUMMARY) [ID,KEY]", one per
 * action of every notification on screen, and one per URL in a body; the
 * last menu is kept in <dir>/dmenu.in, the choices in <dir>/dmenu.log.
 * dunst 1.9 leaves the notification on screen after an action (no
 * NotificationClosed follows): closing it is up to the client.
 * Returns 0 once dunst has been told (ActionInvoked follows within
 * milliseconds: wait for it with notify_monitor_wait_action), -EIO (message
 * on stderr) with nothing on screen, no matching entry or dunst stopped
 * (after 10 s), -EINVAL for another which. */
int harness_notify_action(struct harness *h, const char *which);

/* HARNESS_NOTIFY: the whole screen as a PNG file (xwd | convert), created or
 * replaced; png_path is used as given (relative to the current directory).
 * About 0.1 s. Returns 0 or -EIO. */
int harness_screenshot(struct harness *h, const char *png_path);
