/* SPDX-License-Identifier: MIT */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"

#define LINE_MAX_BYTES 4096

static int max_level = LOG_INFO;
static bool journal_prefix;
static log_sink_fn sink;
static void *sink_userdata;

void log_open(void) {
        const char *e = getenv("JOURNAL_STREAM");
        unsigned long long dev, ino;
        struct stat st;

        /* $JOURNAL_STREAM is "device:inode" of the stream journald gave us;
         * it only counts if stderr is still that stream. */
        journal_prefix = false;
        if (e && sscanf(e, "%llu:%llu", &dev, &ino) == 2 && fstat(STDERR_FILENO, &st) == 0)
                journal_prefix = (unsigned long long) st.st_dev == dev && (unsigned long long) st.st_ino == ino;
}

void log_set_max_level(int level) {
        max_level = level;
}

int log_get_max_level(void) {
        return max_level;
}

bool log_level_enabled(int level) {
        return level <= max_level;
}

int log_level_from_string(const char *s) {
        static const struct {
                const char *name;
                int level;
        } t[] = {
                { "error", LOG_ERR }, { "warning", LOG_WARNING }, { "notice", LOG_NOTICE },
                { "info", LOG_INFO }, { "debug", LOG_DEBUG },
        };
        for (size_t i = 0; i < ELEMENTSOF(t); i++)
                if (strcasecmp(s, t[i].name) == 0)
                        return t[i].level;
        return -EINVAL;
}

void log_set_sink(log_sink_fn fn, void *userdata) {
        sink = fn;
        sink_userdata = userdata;
}

int log_internalv(int level, int error, const char *prefix, const char *fmt, va_list ap) {
        char line[LINE_MAX_BYTES];
        int saved = errno, n = 0;

        if (error < 0)
                error = -error;
        if (level > max_level)
                return -error;

        if (journal_prefix && !sink)
                n = snprintf(line, sizeof(line), "<%d>", level);
        if (prefix && n >= 0 && (size_t) n < sizeof(line))
                n += snprintf(line + n, sizeof(line) - (size_t) n, "%s", prefix);
        if (n >= 0 && (size_t) n < sizeof(line)) {
                /* %m is the error given, not whatever errno happens to be */
                errno = error ? error : saved;
                vsnprintf(line + n, sizeof(line) - (size_t) n, fmt, ap);
        }
        /* One record per line: embedded newlines would split it in the journal. */
        for (char *p = line; *p; p++)
                if (*p == '\n' || *p == '\r')
                        *p = ' ';

        if (sink)
                sink(level, line, sink_userdata);
        else
                fprintf(stderr, "%s\n", line);
        errno = saved;
        return -error;
}

int log_internal(int level, int error, const char *prefix, const char *fmt, ...) {
        va_list ap;
        int r;

        va_start(ap, fmt);
        r = log_internalv(level, error, prefix, fmt, ap);
        va_end(ap);
        return r;
}
