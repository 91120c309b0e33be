/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * IMAP command writer: tags, argument quoting (atom, quoted string or
 * literal, RFC 9051 §4.3; LITERAL+ / LITERAL- from RFC 7888 when the server
 * offers them), and a trace form in which credentials never appear.
 *
 * Arguments are appended with a sticky error, in the manner of
 * sd_bus_message_append(): check the result of imap_command_end() only.
 *
 *     struct imap_command c;
 *     imap_command_begin(&w, &c, "LOGIN");
 *     imap_command_astring(&w, &c, user, strlen(user));
 *     imap_command_secret(&w, &c, password, strlen(password));
 *     r = imap_command_end(&c);
 *     ... send c.data[0 .. c.len), stopping after each c.sync[i] offset
 *         until the server's "+" continuation arrives ...
 *     imap_command_done(&c);          (wipes the secret bytes)
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct imap_writer {
        uint32_t next_tag;
        bool literal_plus;      /* LITERAL+: every literal non-synchronizing */
        bool literal_minus;     /* LITERAL-: non-synchronizing up to 4096 bytes */
        bool utf8;              /* UTF8=ACCEPT enabled: quoted strings may hold UTF-8 */
};

#define IMAP_COMMAND_MAX_SYNC 8
#define IMAP_COMMAND_MAX_SECRETS 4

struct imap_command {
        char tag[16];
        char *data;             /* wire bytes, owned; NUL-terminated for convenience */
        size_t len, cap;
        /* Offsets just after each synchronizing literal header ("{n}\r\n"):
         * send up to there, then wait for a continuation request. */
        size_t sync[IMAP_COMMAND_MAX_SYNC];
        unsigned n_sync;
        struct {
                size_t off, len;
        } secrets[IMAP_COMMAND_MAX_SECRETS];
        unsigned n_secrets;
        int error;              /* sticky: first failure, 0 if none */
};

/* Sets up a writer with no extensions; tags start at "a1". */
void imap_writer_init(struct imap_writer *w);

/* Starts "TAG VERB"; verb is an atom such as "UID FETCH" (validated: atom
 * characters and single spaces only). */
void imap_command_begin(struct imap_writer *w, struct imap_command *c, const char *verb);

/* Starts a continuation line (SASL response), with no tag and no verb. */
void imap_command_begin_continuation(struct imap_command *c);

/* SP atom; an atom that is not valid sets -EINVAL. */
void imap_command_atom(struct imap_command *c, const char *atom);

/* SP and the value as atom, quoted string or literal, whichever is valid
 * and shortest. s need not be NUL-terminated. NUL bytes set -EINVAL. */
void imap_command_astring(struct imap_writer *w, struct imap_command *c, const char *s, size_t len);

/* Like _astring but always a quoted string or literal (never an atom). */
void imap_command_string(struct imap_writer *w, struct imap_command *c, const char *s, size_t len);

/* A mailbox name given in UTF-8: "INBOX" in any case becomes INBOX, other
 * names are encoded in modified UTF-7 unless UTF8=ACCEPT is on. */
void imap_command_mailbox(struct imap_writer *w, struct imap_command *c, const char *utf8_name);

/* SP and a decimal number. */
void imap_command_number(struct imap_command *c, uint64_t n);

/* SP and text copied as it is: sequence sets, "(UID FLAGS)" and the like.
 * CR, LF and NUL set -EINVAL. */
void imap_command_raw(struct imap_command *c, const char *text);

/* Text appended with no separator, e.g. the ")" closing a list opened with
 * imap_command_raw(c, "("); no separator is written after a "(" either. */
void imap_command_append(struct imap_command *c, const char *text);

/* A credential as an astring: on the wire as usual, "<redacted>" in the
 * trace. For a continuation line (SASL) the text goes without leading SP
 * when it is the first item. */
void imap_command_secret(struct imap_writer *w, struct imap_command *c, const char *s, size_t len);

/* Bytes of a SASL response (already base64), written raw and redacted. */
void imap_command_secret_raw(struct imap_command *c, const char *s, size_t len);

/* Appends CRLF. Returns 0 or the sticky error (-EINVAL, -ENOMEM, -E2BIG). */
int imap_command_end(struct imap_command *c);

/* The command as it may be logged: secrets replaced by "<redacted>",
 * literal contents shown, CRLF removed. *ret malloc'ed, owned by the caller. */
int imap_command_trace(const struct imap_command *c, char **ret);

/* Wipes secret bytes and frees the buffer. Accepts a zeroed command. */
void imap_command_done(struct imap_command *c);

/* base64 (RFC 4648) of len bytes into a malloc'ed NUL-terminated string. */
int imap_base64_encode(const void *data, size_t len, char **ret);
