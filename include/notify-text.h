/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The text of desktop notifications: pure functions, no I/O, no GLib.
 *
 * Server text (senders, subjects) is hostile. Before it reaches a popup it
 * is cleaned (notify_text_clean) and, when the notification server renders
 * the body as markup, escaped (notify_text_escape_markup). The summary is
 * plain text by the Desktop Notifications Specification and is never
 * escaped: a server that renders it as markup anyway is the server's bug,
 * and escaping it would show "&amp;" on every conforming server.
 */

#include <stdbool.h>
#include <stddef.h>

#define NOTIFY_TEXT_SUMMARY_MAX 200u    /* bytes of a summary, "…" included */
#define NOTIFY_TEXT_BODY_MAX 600u       /* bytes of a body before escaping */
#define NOTIFY_TEXT_BURST_SENDERS 3u    /* senders named in a burst's body */

/* Copies s (UTF-8; NULL counts as "") without what must not reach a popup:
 * C0 and C1 control characters and DEL (tab, CR and LF become a space),
 * bidirectional embedding, override and isolate controls (U+202A..U+202E,
 * U+2066..U+2069, U+200E, U+200F, U+061C: they can make a subject display
 * as something else), U+FFFE/U+FFFF, and ill-formed UTF-8 (as U+FFFD). Runs
 * of white space become one space and the ends are trimmed. If the result
 * is longer than max_bytes (>= 4), it is cut at a character boundary and
 * ends with "…" (U+2026), max_bytes in all. Returns a new string owned by
 * the caller (free()), or NULL on allocation failure. */
char *notify_text_clean(const char *s, size_t max_bytes);

/* Copies s with '&', '<' and '>' replaced by "&amp;", "&lt;" and "&gt;":
 * the escaping the Desktop Notifications body markup needs (quotes matter
 * only inside attributes, which escaped text cannot open). Returns a new
 * string owned by the caller, or NULL on allocation failure. */
char *notify_text_escape_markup(const char *s);

/* The body of a burst's summary notification: "From A", "From A and B",
 * "From A, B and C", and with more_senders "From A, B, C and others".
 * senders (n_senders strings, already cleaned, borrowed) are the first
 * distinct senders of the burst in arrival order; only the first
 * NOTIFY_TEXT_BURST_SENDERS are named (more count as "others"). Returns a
 * new string owned by the caller ("" if n_senders is 0), or NULL on
 * allocation failure. The result is cut like notify_text_clean() at
 * NOTIFY_TEXT_BODY_MAX. */
char *notify_text_burst_body(const char *const *senders, size_t n_senders, bool more_senders);
