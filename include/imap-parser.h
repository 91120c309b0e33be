/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Incremental IMAP response parser (RFC 9051, RFC 3501 and the extensions a
 * push client meets: CONDSTORE/QRESYNC (RFC 7162), ESEARCH (RFC 4731),
 * LITERAL+/- (RFC 7888), BINARY (RFC 3516), ENABLE (RFC 5161), NOTIFY
 * (RFC 5465), LIST-STATUS (RFC 5819)).
 *
 * Pure: no I/O, no clock, no global state. Feed it any split of the byte
 * stream a server sends; it hands back one complete, typed response at a
 * time, or says it needs more bytes. Every size is bounded by the limits the
 * parser was created with, and any violation is a clean error after which
 * the parser refuses further input (the caller drops the session).
 *
 * Server text is returned as received: envelope fields are still RFC 2047
 * encoded and may hold any 8-bit bytes. Only mailbox names are decoded
 * (modified UTF-7 to UTF-8), because the encoding is IMAP's own.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct imap_parser;

struct imap_parser_limits {
        size_t max_line;        /* bytes of one line (between literals), CRLF excluded */
        size_t max_literal;     /* bytes of one literal */
        size_t max_response;    /* bytes of one response, all lines and literals together */
        unsigned max_depth;     /* nesting of parenthesised lists */
        unsigned max_elements;  /* values (atoms, strings, lists...) in one response */
};

/* Defaults: 64 KiB lines, 1 MiB literals, 4 MiB responses, depth 16, 100,000
 * values. A notifier fetches headers and flags, never whole messages. One
 * response costs its bytes plus about 60 bytes of tables per value. */
extern const struct imap_parser_limits imap_parser_default_limits;

/* ---- generic values ------------------------------------------------------ */

enum imap_arg_type {
        IMAP_ARG_NIL,
        IMAP_ARG_ATOM,          /* atoms, numbers, flags (\Seen), fetch items (BODY[...]<0>) */
        IMAP_ARG_STRING,        /* quoted string, escapes removed */
        IMAP_ARG_LITERAL,       /* {n}, {n+} or ~{n} (literal8) */
        IMAP_ARG_LIST,
};

struct imap_arg {
        enum imap_arg_type type;
        bool literal8;          /* ~{n}: may contain NUL bytes */
        size_t len;             /* bytes of str, or elements of list */
        union {
                const char *str;                /* NUL-terminated (len excludes it) */
                const struct imap_arg *list;
        };
};

/* ---- typed responses ----------------------------------------------------- */

enum imap_resp_kind {
        IMAP_RESP_KIND_TAGGED,
        IMAP_RESP_KIND_UNTAGGED,
        IMAP_RESP_KIND_CONTINUATION,
};

enum imap_resp_type {
        IMAP_RESP_OK,
        IMAP_RESP_NO,
        IMAP_RESP_BAD,
        IMAP_RESP_PREAUTH,
        IMAP_RESP_BYE,
        IMAP_RESP_CAPABILITY,
        IMAP_RESP_ENABLED,
        IMAP_RESP_FLAGS,
        IMAP_RESP_LIST,
        IMAP_RESP_LSUB,
        IMAP_RESP_STATUS,
        IMAP_RESP_SEARCH,
        IMAP_RESP_ESEARCH,
        IMAP_RESP_EXISTS,
        IMAP_RESP_RECENT,
        IMAP_RESP_EXPUNGE,
        IMAP_RESP_FETCH,
        IMAP_RESP_VANISHED,
        IMAP_RESP_NAMESPACE,
        IMAP_RESP_ID,
        IMAP_RESP_CONTINUE,     /* "+ ..." */
        IMAP_RESP_OTHER,        /* an untagged response this parser has no type for */
        _IMAP_RESP_TYPE_MAX,
};

const char *imap_resp_type_to_string(enum imap_resp_type t);

enum imap_code_type {
        IMAP_CODE_NONE,                 /* no [code] */
        IMAP_CODE_OTHER,                /* unknown code: see name and text */
        IMAP_CODE_ALERT,
        IMAP_CODE_ALREADYEXISTS,
        IMAP_CODE_APPENDUID,
        IMAP_CODE_AUTHENTICATIONFAILED,
        IMAP_CODE_AUTHORIZATIONFAILED,
        IMAP_CODE_BADCHARSET,
        IMAP_CODE_CANNOT,
        IMAP_CODE_CAPABILITY,
        IMAP_CODE_CLIENTBUG,
        IMAP_CODE_CLOSED,
        IMAP_CODE_CONTACTADMIN,
        IMAP_CODE_COPYUID,
        IMAP_CODE_CORRUPTION,
        IMAP_CODE_EXPIRED,
        IMAP_CODE_EXPUNGEISSUED,
        IMAP_CODE_HASCHILDREN,
        IMAP_CODE_HIGHESTMODSEQ,
        IMAP_CODE_INUSE,
        IMAP_CODE_LIMIT,
        IMAP_CODE_MODIFIED,
        IMAP_CODE_NOMODSEQ,
        IMAP_CODE_NONEXISTENT,
        IMAP_CODE_NOPERM,
        IMAP_CODE_NOTIFICATIONOVERFLOW,
        IMAP_CODE_BADEVENT,
        IMAP_CODE_OVERQUOTA,
        IMAP_CODE_PARSE,
        IMAP_CODE_PERMANENTFLAGS,
        IMAP_CODE_PRIVACYREQUIRED,
        IMAP_CODE_READ_ONLY,
        IMAP_CODE_READ_WRITE,
        IMAP_CODE_SERVERBUG,
        IMAP_CODE_TRYCREATE,
        IMAP_CODE_UIDNEXT,
        IMAP_CODE_UIDNOTSTICKY,
        IMAP_CODE_UIDVALIDITY,
        IMAP_CODE_UNAVAILABLE,
        IMAP_CODE_UNSEEN,
        _IMAP_CODE_MAX,
};

/* A list of atoms or strings: capabilities, flags, charsets. */
struct imap_strv {
        const char *const *v;
        size_t n;
};

bool imap_strv_contains(const struct imap_strv *sv, const char *s);    /* ASCII case-insensitive */

struct imap_code {
        enum imap_code_type type;
        const char *name;       /* as sent, e.g. "UIDVALIDITY"; NULL when type is NONE */
        const char *text;       /* everything after the name up to ']', "" if nothing */
        union {
                uint32_t number;                /* UIDVALIDITY, UIDNEXT, UNSEEN */
                uint64_t modseq;                /* HIGHESTMODSEQ */
                struct imap_strv atoms;         /* CAPABILITY, PERMANENTFLAGS, BADCHARSET */
        };
};

/* OK, NO, BAD, PREAUTH, BYE; also the text of a continuation request. */
struct imap_status_data {
        struct imap_code code;
        const char *text;       /* human-readable text after the code, "" if none */
};

enum imap_status_item {
        IMAP_STATUS_MESSAGES      = 1 << 0,
        IMAP_STATUS_RECENT        = 1 << 1,
        IMAP_STATUS_UIDNEXT       = 1 << 2,
        IMAP_STATUS_UIDVALIDITY   = 1 << 3,
        IMAP_STATUS_UNSEEN        = 1 << 4,
        IMAP_STATUS_HIGHESTMODSEQ = 1 << 5,
        IMAP_STATUS_SIZE          = 1 << 6,
        IMAP_STATUS_DELETED       = 1 << 7,
};

struct imap_status_resp {
        const char *mailbox;            /* UTF-8 (decoded from modified UTF-7 when valid) */
        const char *mailbox_raw;        /* as sent */
        unsigned present;               /* enum imap_status_item bits */
        uint32_t messages, recent, uidnext, uidvalidity, unseen, deleted;
        uint64_t highestmodseq, size;
};

struct imap_list_resp {
        struct imap_strv attributes;    /* \HasNoChildren, \Noselect ... */
        char delimiter;                 /* '\0' for NIL */
        const char *mailbox;            /* UTF-8 (decoded from modified UTF-7 when valid) */
        const char *mailbox_raw;        /* as sent */
        bool mailbox_utf7_valid;        /* false: the raw name was not valid modified UTF-7 */
};

struct imap_search_resp {
        const uint32_t *numbers;        /* UIDs or sequence numbers */
        size_t n;
        uint64_t modseq;                /* CONDSTORE "(MODSEQ n)", 0 if absent */
};

enum imap_esearch_item {
        IMAP_ESEARCH_MIN   = 1 << 0,
        IMAP_ESEARCH_MAX   = 1 << 1,
        IMAP_ESEARCH_COUNT = 1 << 2,
        IMAP_ESEARCH_ALL   = 1 << 3,
        IMAP_ESEARCH_MODSEQ = 1 << 4,
};

struct imap_esearch_resp {
        const char *tag;                /* the (TAG "x") correlator, NULL if absent */
        bool uid;
        unsigned present;               /* enum imap_esearch_item bits */
        uint32_t min, max, count;
        const char *all;                /* sequence set, validated */
        uint64_t modseq;
};

struct imap_vanished_resp {
        bool earlier;
        const char *uids;               /* UID set, validated (see imap_seqset_*) */
};

struct imap_address {
        const char *name;               /* display name, raw (RFC 2047 words undecoded); NULL for NIL */
        const char *adl;
        const char *mailbox;            /* NULL host + non-NULL mailbox: group start (RFC 3501) */
        const char *host;
};

struct imap_address_list {
        const struct imap_address *v;
        size_t n;
};

struct imap_envelope {
        const char *date, *subject;     /* raw; NULL for NIL */
        struct imap_address_list from, sender, reply_to, to, cc, bcc;
        const char *in_reply_to, *message_id;
};

struct imap_fetch_section {
        const char *item;               /* "BODY" or "BINARY" (BODY.PEEK never comes back) */
        const char *section;            /* text between the brackets, e.g. "HEADER.FIELDS (FROM)" */
        bool has_origin;
        uint32_t origin;                /* <n> partial origin */
        const char *data;               /* NULL for NIL */
        size_t len;
};

enum imap_fetch_item {
        IMAP_FETCH_UID          = 1 << 0,
        IMAP_FETCH_FLAGS        = 1 << 1,
        IMAP_FETCH_MODSEQ       = 1 << 2,
        IMAP_FETCH_INTERNALDATE = 1 << 3,
        IMAP_FETCH_RFC822_SIZE  = 1 << 4,
        IMAP_FETCH_ENVELOPE     = 1 << 5,
};

struct imap_fetch_resp {
        unsigned present;               /* enum imap_fetch_item bits */
        uint32_t uid;
        struct imap_strv flags;
        uint64_t modseq;
        const char *internaldate;
        uint64_t rfc822_size;
        struct imap_envelope envelope;
        const struct imap_fetch_section *sections;
        size_t n_sections;
};

struct imap_response {
        enum imap_resp_kind kind;
        enum imap_resp_type type;
        const char *tag;                /* tagged only, else NULL */
        uint32_t number;                /* "* n EXISTS|RECENT|EXPUNGE|FETCH" */
        const char *keyword;            /* the response word as sent (e.g. "XLIST") */

        union {
                struct imap_status_data status;         /* OK NO BAD PREAUTH BYE, CONTINUE */
                struct imap_strv atoms;                 /* CAPABILITY ENABLED FLAGS */
                struct imap_list_resp list;             /* LIST LSUB */
                struct imap_status_resp mbstatus;       /* STATUS */
                struct imap_search_resp search;
                struct imap_esearch_resp esearch;
                struct imap_vanished_resp vanished;
                struct imap_fetch_resp fetch;
        };

        /* Everything after the keyword as generic values (empty for status and
         * continuation responses), e.g. for NAMESPACE, ID and OTHER. */
        const struct imap_arg *args;
        size_t n_args;
};

/* ---- the parser ---------------------------------------------------------- */

/* limits: NULL for the defaults. Returns NULL on OOM. */
struct imap_parser *imap_parser_new(const struct imap_parser_limits *limits);
/* Accepts NULL; returns NULL. */
struct imap_parser *imap_parser_free(struct imap_parser *p);

/*
 * Feed len bytes. *ret_consumed is how many were used (always written).
 * Returns
 *   1  a complete response is in *ret_resp; it and everything it points to
 *      stay valid until the next call to imap_parser_feed() or _free();
 *      call again with the bytes after *ret_consumed;
 *   0  every byte was used and the response is not complete yet;
 *  <0  the stream is broken and the parser stays failed: -EPROTO (syntax),
 *      -EMSGSIZE (a limit was exceeded), -ERANGE (number out of range),
 *      -ENOMEM. imap_parser_error() says what and where.
 */
int imap_parser_feed(struct imap_parser *p, const void *data, size_t len,
                     size_t *ret_consumed, const struct imap_response **ret_resp);

/* Human-readable reason of the last failure, or NULL. Owned by the parser. */
const char *imap_parser_error(const struct imap_parser *p);

/* Bytes currently held (buffers and arena), for memory accounting. */
size_t imap_parser_memory(const struct imap_parser *p);

/* Releases buffers kept between responses (e.g. before a long IDLE). */
void imap_parser_trim(struct imap_parser *p);

/* ---- helpers ------------------------------------------------------------- */

/* Parses an unsigned decimal that must fit in max (no sign, no leading '+',
 * at least one digit). Returns 0 or -ERANGE / -EINVAL. */
int imap_parse_number(const char *s, size_t len, uint64_t max, uint64_t *ret);

/* Iterates a validated sequence set ("1:3,7,9:*"); '*' yields UINT32_MAX.
 * Returns 1 with a range, 0 at the end, -EINVAL on a malformed set. */
struct imap_seqset_iter {
        const char *p;
};
void imap_seqset_iter_init(struct imap_seqset_iter *it, const char *set);
int imap_seqset_next(struct imap_seqset_iter *it, uint32_t *ret_first, uint32_t *ret_last);

/* Validates a sequence set; allow_star: '*' permitted. */
bool imap_seqset_valid(const char *set, bool allow_star);

/* Argument accessors: true when arg is of the kind and converts. */
bool imap_arg_is_nil(const struct imap_arg *a);
bool imap_arg_get_atom(const struct imap_arg *a, const char **ret);
bool imap_arg_get_string(const struct imap_arg *a, const char **ret);     /* quoted or literal */
bool imap_arg_get_astring(const struct imap_arg *a, const char **ret);    /* atom, quoted or literal */
bool imap_arg_get_nstring(const struct imap_arg *a, const char **ret);    /* string or NIL (-> NULL) */
bool imap_arg_get_number(const struct imap_arg *a, uint64_t max, uint64_t *ret);
bool imap_arg_get_list(const struct imap_arg *a, const struct imap_arg **ret_list, size_t *ret_n);
bool imap_arg_atom_equals(const struct imap_arg *a, const char *s);       /* case-insensitive */
