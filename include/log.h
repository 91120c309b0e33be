/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Logging in the manner of systemd's log.h: log_info(...), and
 * r = log_error_errno(r, "...: %m") which returns r (made negative), with
 * errno set from r so that %m names it.
 *
 * Lines go to stderr. When stderr is connected to the journal
 * ($JOURNAL_STREAM names it), each line starts with <N> so journald keeps
 * the priority; otherwise lines are plain. Session code passes a prefix
 * ("work/INBOX: ") so every line names its account and mailbox.
 */

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <syslog.h>

#include "macro.h"

/* Reads $JOURNAL_STREAM once; call at start-up (tests may skip it). */
void log_open(void);

void log_set_max_level(int level);             /* LOG_ERR .. LOG_DEBUG */
int log_get_max_level(void);
bool log_level_enabled(int level);

/* Parses "error", "warning", "info", "debug". Returns the level or -EINVAL. */
int log_level_from_string(const char *s);

/* A sink that receives every line instead of stderr (tests use it to assert
 * on what is logged, e.g. that no secret ever is). NULL restores stderr. */
typedef void (*log_sink_fn)(int level, const char *line, void *userdata);
void log_set_sink(log_sink_fn fn, void *userdata);

/* Returns -abs(error) when error != 0, else 0. */
int log_internal(int level, int error, const char *prefix, const char *fmt, ...) _attribute_printf_(4, 5);
int log_internalv(int level, int error, const char *prefix, const char *fmt, va_list ap) _attribute_printf_(4, 0);

#define log_full_errno(level, error, ...) log_internal((level), (error), NULL, __VA_ARGS__)

#define log_error(...)   log_internal(LOG_ERR, 0, NULL, __VA_ARGS__)
#define log_warning(...) log_internal(LOG_WARNING, 0, NULL, __VA_ARGS__)
#define log_notice(...)  log_internal(LOG_NOTICE, 0, NULL, __VA_ARGS__)
#define log_info(...)    log_internal(LOG_INFO, 0, NULL, __VA_ARGS__)
#define log_debug(...)   log_internal(LOG_DEBUG, 0, NULL, __VA_ARGS__)

#define log_error_errno(error, ...)   log_internal(LOG_ERR, (error), NULL, __VA_ARGS__)
#define log_warning_errno(error, ...) log_internal(LOG_WARNING, (error), NULL, __VA_ARGS__)
#define log_info_errno(error, ...)    log_internal(LOG_INFO, (error), NULL, __VA_ARGS__)
#define log_debug_errno(error, ...)   log_internal(LOG_DEBUG, (error), NULL, __VA_ARGS__)

#define log_oom() log_internal(LOG_ERR, ENOMEM, NULL, "out of memory")
