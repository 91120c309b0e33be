/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The persistent resync point of every watched mailbox (SPEC §4): per
 * (account, mailbox) the UIDVALIDITY, the highest UID announced or counted
 * and the HIGHESTMODSEQ, kept in the state directory so that each message is
 * announced exactly once across daemon restarts.
 *
 * Files: one per account, <dir>/<account>.state, where <account> is the id
 * with every byte outside [A-Za-z0-9._-] (and a leading '.') written as %XX,
 * so any id is one safe file name. Text, line based:
 *
 *     imapidled-state 1
 *     INBOX 1700000000 4711 90210
 *     Lists/linux 1700000001 12 0
 *     Entw%C3%BCrfe 1700000002 3 17
 *     end 3 84bbb9e9
 *
 * A mailbox line is the name (UTF-8, every byte outside '!'..'~' and '%'
 * itself written as %XX), UIDVALIDITY, announced UID and HIGHESTMODSEQ in
 * decimal, separated by one space. The last line gives the number of
 * mailbox lines and the CRC-32 (IEEE, lowercase hex) of every byte before
 * it, so a truncated or altered file is recognised. Files are written to
 * <dir>/.<account>.state.tmp, fsync()ed, renamed over the old file, and the
 * directory is fsync()ed; a file with no mailbox left is removed. The
 * directory (and its missing parents) is created with mode 0700 at the
 * first write, the files with 0600.
 *
 * Reading is tolerant: a missing file means no points (a first start). A
 * damaged file (truncated, checksum mismatch, unknown version, bad line,
 * over 1 MiB) is logged once as a warning naming the file and the fault,
 * and its mailboxes are treated as new: their mail is counted, not
 * announced. Nothing in a file can make the reader crash or allocate more
 * than the size limit.
 *
 * Threads: everything here runs on the loop thread. Writes run in one
 * worker thread, started on demand with every signal blocked and ending
 * after a few idle seconds, so a slow disk never blocks the loop; results
 * come back through an eventfd watched by the loop. The worker neither
 * logs nor calls back.
 *
 * Not for several processes on one directory: the daemon is single
 * instance (its bus name).
 */

#include <stddef.h>
#include <stdint.h>
#include <systemd/sd-event.h>

#include "imap-session.h"

struct state_store;

/* Called on the loop thread once the file holding the saved point is on
 * disk (r == 0, message "") or its write failed (r < 0, message names the
 * path and the error, e.g. "cannot write /…/.work.state.tmp: No space left
 * on device"). message is valid during the call only. The callback may save,
 * get and forget, but must not free the store. */
typedef void (*state_saved_fn)(struct state_store *s, int r, const char *message, void *userdata);

/* The default state directory: $XDG_STATE_HOME/imapidled when that is an
 * absolute path, else ~/.local/state/imapidled ($HOME, or the password
 * database). Returns a string owned by the caller, or NULL with errno set
 * (ENOMEM, or ENOENT when there is no home directory). */
char *state_store_default_dir(void);

/* Creates a store on directory dir (copied; need not exist yet). Takes a
 * reference on e, which must be the loop of the calling thread. Nothing is
 * read until the first get, save or forget. Returns 0 and the store (owned
 * by the caller), or -errno. */
int state_store_new(sd_event *e, const char *dir, struct state_store **ret);

/* Writes what is pending (waiting at most 5 s for the disk), calls every
 * outstanding done callback (r == 0 if its point reached the disk,
 * -ETIMEDOUT or the write error if not), stops the worker and frees the
 * store. Not from a done callback. Accepts NULL; returns NULL. */
struct state_store *state_store_free(struct state_store *s);

/* The point saved for (account, mailbox). The account's file is read
 * synchronously the first time one of its mailboxes is asked for (small
 * files; at start-up) and cached; later saves are visible at once.
 * Returns 1 and fills ret, 0 when there is none (first start, or the file
 * is damaged: warned once), or -errno when the file exists but cannot be
 * read (warned once; every later call for that account's unsaved mailboxes
 * returns the same error until a write succeeds), -EINVAL for a bad
 * argument, -ENAMETOOLONG for an account id too long for a file name
 * (more than 244 bytes once escaped). ret is written only when 1 is
 * returned. */
int state_store_get(struct state_store *s, const char *account, const char *mailbox, struct imap_mailbox_point *ret);

/* Records p for (account, mailbox) (both copied; mailbox non-empty) and
 * schedules a durable write of the account's file on the worker. Saves made
 * before that write starts share it. When 0 is returned and done is not
 * NULL, done is called exactly once, never from within this call: after the
 * write that contains p (or a later state of it) ended, or — when p was
 * already on disk — on the next loop iteration. For one account, done
 * callbacks run in save order. After a failed write the points stay in
 * memory and the next save (or flush) writes them again. Reads the
 * account's file first if get has not. Returns 0, or -errno (-EINVAL,
 * -ENAMETOOLONG, -ENOMEM, -ESHUTDOWN while the store is being freed); done
 * is not called then. */
int state_store_save(struct state_store *s, const char *account, const char *mailbox,
                     const struct imap_mailbox_point *p, state_saved_fn done, void *userdata);

/* Drops the points of account's mailboxes not named in keep (n_keep
 * strings, borrowed), e.g. after a reload; keep NULL or n_keep 0 drops the
 * account, and its file is removed. The change is written like a save (no
 * callback). Returns the number of mailboxes dropped, or -errno. */
int state_store_forget(struct state_store *s, const char *account, const char *const *keep, size_t n_keep);

/* Blocks the calling (loop) thread until every pending write has ended, at
 * most timeout_usec, and runs the done callbacks of the writes that ended;
 * writes that failed before are tried once more. For shutdown. Returns 0
 * when everything is on disk, -ETIMEDOUT, the error of a failed write, or
 * -EBUSY from a done callback. */
int state_store_flush(struct state_store *s, uint64_t timeout_usec);

/* "" when every account's last write succeeded, else the message of the
 * most recent write that failed and was not followed by a successful one
 * for its account (for status and D-Bus LastError). Owned by the store,
 * valid until the next call into it. */
const char *state_store_last_error(const struct state_store *s);
