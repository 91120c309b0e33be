/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The account's secret (password or OAuth token), fetched asynchronously on
 * the sd-event loop from one of the four sources of SPEC §3:
 *
 *   SECRET_COMMAND     password_command: /bin/sh -c VALUE, the first line of
 *                      its stdout. Spawned with posix_spawn() in its own
 *                      process group, stdin /dev/null, no inherited fds,
 *                      default signal mask and dispositions, the daemon's
 *                      environment minus NOTIFY_SOCKET, WATCHDOG_*,
 *                      LISTEN_*. Its output is read through io sources and
 *                      its exit is watched through a pidfd (Linux >= 5.3),
 *                      so nothing here depends on how SIGCHLD is handled.
 *                      On timeout or cancel the whole process group gets
 *                      SIGTERM (+ SIGCONT), then SIGKILL 2 s later, and the
 *                      child is always reaped, also after the request is
 *                      gone.
 *   SECRET_FILE        password_file: the first line of the file VALUE (a
 *                      regular file, at most 64 KiB are read). Warns once
 *                      per path and process if the file is readable by
 *                      group or others.
 *   SECRET_CREDENTIAL  password_credential: the systemd credential VALUE, a
 *                      plain file name in $CREDENTIALS_DIRECTORY.
 *   SECRET_PLAIN       password: VALUE itself.
 *
 * Every source answers through the done callback from the event loop, never
 * from within secret_fetch(). The secret is never logged and never part of
 * an error message; error messages name the config key, not the command.
 */

#include <stdint.h>
#include <systemd/sd-event.h>

enum secret_source {
        SECRET_COMMAND,
        SECRET_FILE,
        SECRET_CREDENTIAL,
        SECRET_PLAIN,
        _SECRET_SOURCE_MAX,
};

/* The config key of each source ("password_command" ...), NULL if out of
 * range. Static strings. */
const char *secret_source_to_string(enum secret_source src);

/* The default timeout of a password command. */
#define SECRET_COMMAND_TIMEOUT_DEFAULT_USEC (30U * 1000000U)

struct secret_request;

/* Called once per request, on the loop. Exactly one of secret and error is
 * non-NULL:
 *   secret  the first line without its "\n" or "\r\n", NUL-terminated,
 *           never empty; owned by the request, valid only during the call
 *           and wiped right after it (copy it if needed, and wipe the copy).
 *   error   text for the user ("password_command failed (exit status 1):
 *           ..."), never containing the secret; owned by the request, valid
 *           during the call.
 * The request is finished when the callback runs: it must not be used
 * afterwards. Calling secret_cancel(q) from within the callback is allowed
 * and does nothing. The callback may free the owner, start new requests,
 * and cancel other requests. */
typedef void (*secret_done_fn)(struct secret_request *q, const char *secret, const char *error, void *userdata);

/* Starts fetching the secret from src. value (copied) is the command, the
 * file path, the credential name or the secret itself. timeout_usec applies
 * to SECRET_COMMAND only: 0 means SECRET_COMMAND_TIMEOUT_DEFAULT_USEC,
 * UINT64_MAX no timeout. e is borrowed and must outlive the request; done and
 * userdata are borrowed.
 *
 * Returns 0 and the request in *ret (owned by the caller until done runs or
 * it is cancelled), or -errno (-EINVAL for bad arguments, -ENOMEM, an error
 * from sd-event), in which case done will never be called. Problems the
 * user must fix (a missing file, a command that cannot be started, ...)
 * are not -errno returns: they arrive through done as error text. */
int secret_fetch(sd_event *e, enum secret_source src, const char *value, uint64_t timeout_usec, secret_done_fn done,
                 void *userdata, struct secret_request **ret);

/* Cancels a request whose callback has not run: done will not be called.
 * A running command's process group gets SIGTERM (+ SIGCONT), and SIGKILL if
 * anything of it is left 2 s later; it is reaped in the background, by
 * sources that the loop owns (if the loop is freed first, they SIGKILL the
 * group and reap the child on the way). Safe at any point, also from within
 * other callbacks of the same loop. Accepts NULL; returns NULL. */
struct secret_request *secret_cancel(struct secret_request *q);

static inline void secret_cancelp(struct secret_request **q) {
        secret_cancel(*q);
}
