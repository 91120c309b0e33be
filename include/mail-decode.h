/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Display text from raw IMAP envelope fields: RFC 2047 words and charsets
 * decoded with GMime, invalid bytes replaced, control characters removed,
 * long text cut at a character boundary. GLib and GMime types stay inside.
 */

#include <stddef.h>
#include <stdint.h>

#include "imap-parser.h"

#define MAIL_TEXT_MAX 1024      /* bytes of a decoded subject or name we keep */

/* Decodes header text (a Subject, a display name) into a malloc'ed UTF-8
 * string of at most max_bytes. Never fails except on OOM (-ENOMEM). */
int mail_decode_text(const char *raw, size_t max_bytes, char **ret);

/* The sender to show (decoded display name, else mailbox@host) and the
 * address, from the envelope's From (or Sender). Both malloc'ed. */
int mail_decode_from(const struct imap_envelope *e, char **ret_from, char **ret_address);

/* RFC 5322 date (envelope date) to Unix seconds; 0 when unparsable. */
int64_t mail_decode_date(const char *raw);
