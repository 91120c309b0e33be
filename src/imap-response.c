/* SPDX-License-Identifier: MIT */
/*
 * Typed half of the IMAP response parser: turns the generic values of one
 * response into the structures of imap-parser.h, checking every number
 * against its range (RFC 9051 §9: number = 32 bit, nz-number > 0,
 * mod-sequence-value = 1..2^63-1, RFC 7162 §7).
 */

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "imap-parser-internal.h"
#include "imap-utf7.h"
#include "macro.h"
#include "utf8.h"

#define MODSEQ_MAX ((uint64_t) INT64_MAX)

static const char *const resp_type_names[_IMAP_RESP_TYPE_MAX] = {
        [IMAP_RESP_OK] = "OK",
        [IMAP_RESP_NO] = "NO",
        [IMAP_RESP_BAD] = "BAD",
        [IMAP_RESP_PREAUTH] = "PREAUTH",
        [IMAP_RESP_BYE] = "BYE",
        [IMAP_RESP_CAPABILITY] = "CAPABILITY",
        [IMAP_RESP_ENABLED] = "ENABLED",
        [IMAP_RESP_FLAGS] = "FLAGS",
        [IMAP_RESP_LIST] = "LIST",
        [IMAP_RESP_LSUB] = "LSUB",
        [IMAP_RESP_STATUS] = "STATUS",
        [IMAP_RESP_SEARCH] = "SEARCH",
        [IMAP_RESP_ESEARCH] = "ESEARCH",
        [IMAP_RESP_EXISTS] = "EXISTS",
        [IMAP_RESP_RECENT] = "RECENT",
        [IMAP_RESP_EXPUNGE] = "EXPUNGE",
        [IMAP_RESP_FETCH] = "FETCH",
        [IMAP_RESP_VANISHED] = "VANISHED",
        [IMAP_RESP_NAMESPACE] = "NAMESPACE",
        [IMAP_RESP_ID] = "ID",
        [IMAP_RESP_CONTINUE] = "+",
        [IMAP_RESP_OTHER] = "OTHER",
};

const char *imap_resp_type_to_string(enum imap_resp_type t) {
        if ((unsigned) t >= _IMAP_RESP_TYPE_MAX)
                return NULL;
        return resp_type_names[t];
}

static const char *const code_names[_IMAP_CODE_MAX] = {
        [IMAP_CODE_ALERT] = "ALERT",
        [IMAP_CODE_ALREADYEXISTS] = "ALREADYEXISTS",
        [IMAP_CODE_APPENDUID] = "APPENDUID",
        [IMAP_CODE_AUTHENTICATIONFAILED] = "AUTHENTICATIONFAILED",
        [IMAP_CODE_AUTHORIZATIONFAILED] = "AUTHORIZATIONFAILED",
        [IMAP_CODE_BADCHARSET] = "BADCHARSET",
        [IMAP_CODE_CANNOT] = "CANNOT",
        [IMAP_CODE_CAPABILITY] = "CAPABILITY",
        [IMAP_CODE_CLIENTBUG] = "CLIENTBUG",
        [IMAP_CODE_CLOSED] = "CLOSED",
        [IMAP_CODE_CONTACTADMIN] = "CONTACTADMIN",
        [IMAP_CODE_COPYUID] = "COPYUID",
        [IMAP_CODE_CORRUPTION] = "CORRUPTION",
        [IMAP_CODE_EXPIRED] = "EXPIRED",
        [IMAP_CODE_EXPUNGEISSUED] = "EXPUNGEISSUED",
        [IMAP_CODE_HASCHILDREN] = "HASCHILDREN",
        [IMAP_CODE_HIGHESTMODSEQ] = "HIGHESTMODSEQ",
        [IMAP_CODE_INUSE] = "INUSE",
        [IMAP_CODE_LIMIT] = "LIMIT",
        [IMAP_CODE_MODIFIED] = "MODIFIED",
        [IMAP_CODE_NOMODSEQ] = "NOMODSEQ",
        [IMAP_CODE_NONEXISTENT] = "NONEXISTENT",
        [IMAP_CODE_NOPERM] = "NOPERM",
        [IMAP_CODE_NOTIFICATIONOVERFLOW] = "NOTIFICATIONOVERFLOW",
        [IMAP_CODE_BADEVENT] = "BADEVENT",
        [IMAP_CODE_OVERQUOTA] = "OVERQUOTA",
        [IMAP_CODE_PARSE] = "PARSE",
        [IMAP_CODE_PERMANENTFLAGS] = "PERMANENTFLAGS",
        [IMAP_CODE_PRIVACYREQUIRED] = "PRIVACYREQUIRED",
        [IMAP_CODE_READ_ONLY] = "READ-ONLY",
        [IMAP_CODE_READ_WRITE] = "READ-WRITE",
        [IMAP_CODE_SERVERBUG] = "SERVERBUG",
        [IMAP_CODE_TRYCREATE] = "TRYCREATE",
        [IMAP_CODE_UIDNEXT] = "UIDNEXT",
        [IMAP_CODE_UIDNOTSTICKY] = "UIDNOTSTICKY",
        [IMAP_CODE_UIDVALIDITY] = "UIDVALIDITY",
        [IMAP_CODE_UNAVAILABLE] = "UNAVAILABLE",
        [IMAP_CODE_UNSEEN] = "UNSEEN",
};

_attribute_printf_(3, 4)
static int bad(char *err, size_t errsz, const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(err, errsz, fmt, ap);
        va_end(ap);
        return -EPROTO;
}

#define OOM(err, errsz) (snprintf(err, errsz, "out of memory"), -ENOMEM)

bool imap_strv_contains(const struct imap_strv *sv, const char *s) {
        for (size_t i = 0; i < sv->n; i++)
                if (strcasecmp(sv->v[i], s) == 0)
                        return true;
        return false;
}

/* ---- sequence sets (RFC 9051: sequence-set, uid-set) ---------------------- */

/* One element: number or '*', optionally ":" number-or-star. */
static int seqset_element(const char **pp, bool allow_star, uint32_t *ret_first, uint32_t *ret_last) {
        const char *p = *pp;
        uint32_t v[2];
        int n = 0;

        for (;;) {
                if (*p == '*') {
                        if (!allow_star)
                                return -EINVAL;
                        v[n] = UINT32_MAX;
                        p++;
                } else {
                        const char *start = p;
                        uint64_t x;

                        while (*p >= '0' && *p <= '9')
                                p++;
                        if (imap_parse_number(start, (size_t) (p - start), UINT32_MAX, &x) < 0 || x == 0)
                                return -EINVAL;
                        v[n] = (uint32_t) x;
                }
                n++;
                if (n == 2 || *p != ':')
                        break;
                p++;
        }
        *pp = p;
        if (n == 1)
                v[1] = v[0];
        /* n:m and m:n are the same set (RFC 9051 §9 seq-range). */
        *ret_first = v[0] < v[1] ? v[0] : v[1];
        *ret_last = v[0] < v[1] ? v[1] : v[0];
        return 0;
}

bool imap_seqset_valid(const char *set, bool allow_star) {
        const char *p = set;
        uint32_t a, b;

        if (!set || !*set)
                return false;
        for (;;) {
                if (seqset_element(&p, allow_star, &a, &b) < 0)
                        return false;
                if (*p == '\0')
                        return true;
                if (*p != ',')
                        return false;
                p++;
        }
}

void imap_seqset_iter_init(struct imap_seqset_iter *it, const char *set) {
        it->p = set;
}

int imap_seqset_next(struct imap_seqset_iter *it, uint32_t *ret_first, uint32_t *ret_last) {
        uint32_t a, b;

        if (!it->p || *it->p == '\0')
                return 0;
        if (seqset_element(&it->p, true, &a, &b) < 0)
                return -EINVAL;
        if (*it->p == ',')
                it->p++;
        else if (*it->p != '\0')
                return -EINVAL;
        *ret_first = a;
        *ret_last = b;
        return 1;
}

/* ---- resp-text ----------------------------------------------------------- */

/* Splits "A B (C D)" into atoms; parentheses are dropped when allowed. */
static int split_atoms(struct arena *a, const char *s, size_t n, bool parens, struct imap_strv *ret) {
        const char **v;
        size_t count = 0, i = 0;

        /* At most one atom per two bytes. */
        v = arena_alloc(a, (n / 2 + 1) * sizeof(char *));
        if (!v)
                return -ENOMEM;
        while (i < n) {
                size_t start;

                while (i < n && (s[i] == ' ' || (parens && (s[i] == '(' || s[i] == ')'))))
                        i++;
                start = i;
                while (i < n && s[i] != ' ' && !(parens && (s[i] == '(' || s[i] == ')')))
                        i++;
                if (i > start) {
                        v[count] = arena_strndup(a, s + start, i - start);
                        if (!v[count])
                                return -ENOMEM;
                        count++;
                }
        }
        ret->v = (const char *const *) v;
        ret->n = count;
        return 0;
}

static enum imap_code_type code_from_name(const char *name) {
        for (unsigned i = IMAP_CODE_ALERT; i < _IMAP_CODE_MAX; i++)
                if (code_names[i] && strcasecmp(code_names[i], name) == 0)
                        return (enum imap_code_type) i;
        return IMAP_CODE_OTHER;
}

int imap_resp_text_parse(struct arena *a, const char *s, size_t n,
                         struct imap_status_data *ret, char *err, size_t errsz) {
        struct imap_code *c = &ret->code;
        const char *close;
        size_t i = 0;
        int r;

        *ret = (struct imap_status_data) {};

        /* Leniency: "[" without "]" is treated as plain text (a broken ALERT
         * must not cost the session). */
        if (n > 0 && s[0] == '[' && (close = memchr(s, ']', n))) {
                size_t inner = (size_t) (close - s) - 1, name_len = 0;
                uint64_t v;

                while (name_len < inner && s[1 + name_len] != ' ')
                        name_len++;
                if (name_len == 0)
                        return bad(err, errsz, "empty response code");
                c->name = arena_strndup(a, s + 1, name_len);
                size_t targ = name_len < inner ? name_len + 1 : name_len;
                c->text = arena_strndup(a, s + 1 + targ, inner - targ);
                if (!c->name || !c->text)
                        return OOM(err, errsz);
                size_t tlen = inner - targ;
                c->type = code_from_name(c->name);

                switch (c->type) {
                case IMAP_CODE_UIDVALIDITY:
                case IMAP_CODE_UIDNEXT:
                case IMAP_CODE_UNSEEN:
                        if (imap_parse_number(c->text, tlen, UINT32_MAX, &v) < 0 || v == 0)
                                return bad(err, errsz, "invalid number in [%s %.*s]", c->name,
                                           (int) (tlen > 32 ? 32 : tlen), c->text);
                        c->number = (uint32_t) v;
                        break;
                case IMAP_CODE_HIGHESTMODSEQ:
                        /* RFC 7162 §3.1.2.1: mod-sequence-value, 1..2^63-1. */
                        if (imap_parse_number(c->text, tlen, MODSEQ_MAX, &v) < 0 || v == 0)
                                return bad(err, errsz, "invalid mod-sequence in [HIGHESTMODSEQ]");
                        c->modseq = v;
                        break;
                case IMAP_CODE_CAPABILITY:
                case IMAP_CODE_PERMANENTFLAGS:
                case IMAP_CODE_BADCHARSET:
                        r = split_atoms(a, c->text, tlen, c->type != IMAP_CODE_CAPABILITY, &c->atoms);
                        if (r < 0)
                                return OOM(err, errsz);
                        break;
                default:
                        break;
                }
                i = (size_t) (close - s) + 1;
                if (i < n && s[i] == ' ')
                        i++;
        }

        ret->text = arena_strndup(a, s + i, n - i);
        if (!ret->text)
                return OOM(err, errsz);
        return 0;
}

/* ---- typed bodies -------------------------------------------------------- */

static int atoms_from_args(struct arena *a, const struct imap_arg *args, size_t n, bool allow_strings,
                           struct imap_strv *ret, const char *what, char *err, size_t errsz) {
        const char **v = NULL;

        if (n > 0) {
                v = arena_alloc(a, n * sizeof(char *));
                if (!v)
                        return OOM(err, errsz);
        }
        for (size_t i = 0; i < n; i++) {
                const char *s;

                if (args[i].type == IMAP_ARG_ATOM || (allow_strings && imap_arg_get_astring(&args[i], &s)))
                        v[i] = args[i].str;
                else
                        return bad(err, errsz, "%s: expected an atom", what);
        }
        ret->v = (const char *const *) v;
        ret->n = n;
        return 0;
}

/* Decodes a mailbox name: modified UTF-7; "INBOX" in any case is INBOX; a
 * server with UTF8=ACCEPT sends UTF-8, which is kept; anything else is made
 * valid UTF-8 with replacement characters. */
static int mailbox_name(struct arena *a, const char *raw, size_t len, const char **ret, bool *ret_valid) {
        _cleanup_free_ char *d = NULL;
        int r;

        *ret_valid = true;
        if (strcasecmp(raw, "INBOX") == 0) {
                *ret = "INBOX";
                return 0;
        }
        r = imap_utf7_to_utf8(raw, len, &d);
        if (r == -ENOMEM)
                return r;
        if (r < 0) {
                *ret_valid = false;
                if (utf8_is_valid(raw, len)) {
                        *ret = raw;
                        return 0;
                }
                r = utf8_sanitize(raw, len, &d);
                if (r < 0)
                        return r;
        }
        *ret = arena_strndup(a, d, strlen(d));
        return *ret ? 0 : -ENOMEM;
}

static int build_list(struct arena *a, const struct imap_arg *args, size_t n, struct imap_list_resp *l,
                      char *err, size_t errsz) {
        const struct imap_arg *attrs;
        const char *delim;
        size_t n_attrs;
        int r;

        if (n < 3 || !imap_arg_get_list(&args[0], &attrs, &n_attrs))
                return bad(err, errsz, "LIST: expected (attributes) delimiter name");
        r = atoms_from_args(a, attrs, n_attrs, false, &l->attributes, "LIST attributes", err, errsz);
        if (r < 0)
                return r;
        if (imap_arg_is_nil(&args[1]))
                l->delimiter = '\0';
        else if (imap_arg_get_string(&args[1], &delim) && args[1].len == 1)
                l->delimiter = delim[0];
        else
                return bad(err, errsz, "LIST: invalid hierarchy delimiter");
        if (!imap_arg_get_astring(&args[2], &l->mailbox_raw))
                return bad(err, errsz, "LIST: invalid mailbox name");
        r = mailbox_name(a, l->mailbox_raw, args[2].len, &l->mailbox, &l->mailbox_utf7_valid);
        if (r < 0)
                return OOM(err, errsz);
        /* args[3] (mbox-list-extended, RFC 5258) is left in resp->args. */
        return 0;
}

static int build_status(struct arena *a, const struct imap_arg *args, size_t n, struct imap_status_resp *s,
                        char *err, size_t errsz) {
        const struct imap_arg *items;
        size_t n_items;
        bool valid;
        int r;

        if (n != 2 || !imap_arg_get_astring(&args[0], &s->mailbox_raw) ||
            !imap_arg_get_list(&args[1], &items, &n_items) || n_items % 2 != 0)
                return bad(err, errsz, "STATUS: expected mailbox (item value ...)");
        r = mailbox_name(a, s->mailbox_raw, args[0].len, &s->mailbox, &valid);
        if (r < 0)
                return OOM(err, errsz);

        static const struct {
                const char *name;
                unsigned bit;
                size_t off32, off64;
        } table[] = {
                { "MESSAGES", IMAP_STATUS_MESSAGES, offsetof(struct imap_status_resp, messages), 0 },
                { "RECENT", IMAP_STATUS_RECENT, offsetof(struct imap_status_resp, recent), 0 },
                { "UIDNEXT", IMAP_STATUS_UIDNEXT, offsetof(struct imap_status_resp, uidnext), 0 },
                { "UIDVALIDITY", IMAP_STATUS_UIDVALIDITY, offsetof(struct imap_status_resp, uidvalidity), 0 },
                { "UNSEEN", IMAP_STATUS_UNSEEN, offsetof(struct imap_status_resp, unseen), 0 },
                { "DELETED", IMAP_STATUS_DELETED, offsetof(struct imap_status_resp, deleted), 0 },
                { "HIGHESTMODSEQ", IMAP_STATUS_HIGHESTMODSEQ, 0, offsetof(struct imap_status_resp, highestmodseq) },
                { "SIZE", IMAP_STATUS_SIZE, 0, offsetof(struct imap_status_resp, size) },
        };

        for (size_t i = 0; i < n_items; i += 2) {
                for (size_t t = 0; t < ELEMENTSOF(table); t++) {
                        uint64_t v;

                        if (!imap_arg_atom_equals(&items[i], table[t].name))
                                continue;
                        if (!imap_arg_get_number(&items[i + 1], table[t].off64 ? MODSEQ_MAX : UINT32_MAX, &v))
                                return bad(err, errsz, "STATUS: invalid value for %s", table[t].name);
                        if (table[t].off64)
                                *(uint64_t *) ((char *) s + table[t].off64) = v;
                        else
                                *(uint32_t *) ((char *) s + table[t].off32) = (uint32_t) v;
                        s->present |= table[t].bit;
                }
        }
        return 0;
}

static int build_search(struct arena *a, const struct imap_arg *args, size_t n, struct imap_search_resp *s,
                        char *err, size_t errsz) {
        uint32_t *v = NULL;
        size_t count = 0;

        if (n > 0) {
                v = arena_alloc(a, n * sizeof(uint32_t));
                if (!v)
                        return OOM(err, errsz);
        }
        for (size_t i = 0; i < n; i++) {
                const struct imap_arg *l;
                size_t ln;
                uint64_t x;

                /* RFC 7162 §3.1.5: "(MODSEQ n)" ends a SEARCH response. */
                if (i == n - 1 && imap_arg_get_list(&args[i], &l, &ln)) {
                        if (ln != 2 || !imap_arg_atom_equals(&l[0], "MODSEQ") ||
                            !imap_arg_get_number(&l[1], MODSEQ_MAX, &x) || x == 0)
                                return bad(err, errsz, "SEARCH: invalid (MODSEQ n)");
                        s->modseq = x;
                        break;
                }
                if (!imap_arg_get_number(&args[i], UINT32_MAX, &x) || x == 0)
                        return bad(err, errsz, "SEARCH: invalid number");
                v[count++] = (uint32_t) x;
        }
        s->numbers = v;
        s->n = count;
        return 0;
}

static int build_esearch(const struct imap_arg *args, size_t n, struct imap_esearch_resp *e,
                         char *err, size_t errsz) {
        const struct imap_arg *l;
        size_t i = 0, ln;

        if (n > 0 && imap_arg_get_list(&args[0], &l, &ln)) {
                if (ln != 2 || !imap_arg_atom_equals(&l[0], "TAG") || !imap_arg_get_string(&l[1], &e->tag))
                        return bad(err, errsz, "ESEARCH: invalid search correlator");
                i++;
        }
        if (i < n && imap_arg_atom_equals(&args[i], "UID")) {
                e->uid = true;
                i++;
        }
        for (; i < n; i += 2) {
                uint64_t v;

                if (args[i].type != IMAP_ARG_ATOM || i + 1 >= n)
                        return bad(err, errsz, "ESEARCH: expected name value pairs");
                if (imap_arg_atom_equals(&args[i], "MIN") || imap_arg_atom_equals(&args[i], "MAX") ||
                    imap_arg_atom_equals(&args[i], "COUNT")) {
                        if (!imap_arg_get_number(&args[i + 1], UINT32_MAX, &v))
                                return bad(err, errsz, "ESEARCH: invalid %s", args[i].str);
                        if (strcasecmp(args[i].str, "MIN") == 0) {
                                e->min = (uint32_t) v;
                                e->present |= IMAP_ESEARCH_MIN;
                        } else if (strcasecmp(args[i].str, "MAX") == 0) {
                                e->max = (uint32_t) v;
                                e->present |= IMAP_ESEARCH_MAX;
                        } else {
                                e->count = (uint32_t) v;
                                e->present |= IMAP_ESEARCH_COUNT;
                        }
                } else if (imap_arg_atom_equals(&args[i], "ALL")) {
                        if (args[i + 1].type != IMAP_ARG_ATOM || !imap_seqset_valid(args[i + 1].str, false))
                                return bad(err, errsz, "ESEARCH: invalid ALL set");
                        e->all = args[i + 1].str;
                        e->present |= IMAP_ESEARCH_ALL;
                } else if (imap_arg_atom_equals(&args[i], "MODSEQ")) {
                        if (!imap_arg_get_number(&args[i + 1], MODSEQ_MAX, &v) || v == 0)
                                return bad(err, errsz, "ESEARCH: invalid MODSEQ");
                        e->modseq = v;
                        e->present |= IMAP_ESEARCH_MODSEQ;
                }
                /* other return data (PARTIAL, RFC 5267 ...) is skipped */
        }
        return 0;
}

static int build_vanished(const struct imap_arg *args, size_t n, struct imap_vanished_resp *v,
                          char *err, size_t errsz) {
        const struct imap_arg *l;
        size_t i = 0, ln;

        if (n > 0 && imap_arg_get_list(&args[0], &l, &ln)) {
                if (ln != 1 || !imap_arg_atom_equals(&l[0], "EARLIER"))
                        return bad(err, errsz, "VANISHED: expected (EARLIER)");
                v->earlier = true;
                i++;
        }
        if (i + 1 != n || args[i].type != IMAP_ARG_ATOM || !imap_seqset_valid(args[i].str, false))
                return bad(err, errsz, "VANISHED: invalid UID set");
        v->uids = args[i].str;
        return 0;
}

/* nstring, leniently also an atom (some servers send bare words). */
static bool get_nstring_lenient(const struct imap_arg *a, const char **ret) {
        if (imap_arg_get_nstring(a, ret))
                return true;
        return imap_arg_get_atom(a, ret);
}

static int build_addresses(struct arena *a, const struct imap_arg *arg, struct imap_address_list *ret,
                           char *err, size_t errsz) {
        const struct imap_arg *l;
        struct imap_address *v;
        size_t n;

        *ret = (struct imap_address_list) {};
        if (imap_arg_is_nil(arg))
                return 0;
        if (!imap_arg_get_list(arg, &l, &n))
                return bad(err, errsz, "ENVELOPE: invalid address list");
        if (n == 0)
                return 0;
        v = arena_alloc(a, n * sizeof(*v));
        if (!v)
                return OOM(err, errsz);
        for (size_t i = 0; i < n; i++) {
                const struct imap_arg *f;
                size_t fn;

                if (!imap_arg_get_list(&l[i], &f, &fn) || fn != 4 ||
                    !get_nstring_lenient(&f[0], &v[i].name) || !get_nstring_lenient(&f[1], &v[i].adl) ||
                    !get_nstring_lenient(&f[2], &v[i].mailbox) || !get_nstring_lenient(&f[3], &v[i].host))
                        return bad(err, errsz, "ENVELOPE: invalid address");
        }
        ret->v = v;
        ret->n = n;
        return 0;
}

static int build_envelope(struct arena *a, const struct imap_arg *arg, struct imap_envelope *e,
                          char *err, size_t errsz) {
        const struct imap_arg *l;
        size_t n;
        int r;

        if (!imap_arg_get_list(arg, &l, &n) || n != 10)
                return bad(err, errsz, "ENVELOPE: expected 10 fields");
        if (!get_nstring_lenient(&l[0], &e->date) || !get_nstring_lenient(&l[1], &e->subject) ||
            !get_nstring_lenient(&l[8], &e->in_reply_to) || !get_nstring_lenient(&l[9], &e->message_id))
                return bad(err, errsz, "ENVELOPE: invalid field");
        struct imap_address_list *lists[] = { &e->from, &e->sender, &e->reply_to, &e->to, &e->cc, &e->bcc };
        for (size_t i = 0; i < ELEMENTSOF(lists); i++) {
                r = build_addresses(a, &l[2 + i], lists[i], err, errsz);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* "BODY[HEADER.FIELDS (FROM)]<0>" -> item "BODY", section, origin. */
static int parse_section(struct arena *a, const char *name, struct imap_fetch_section *s, char *err, size_t errsz) {
        const char *open = strchr(name, '['), *close = strrchr(name, ']');
        uint64_t origin;

        if (!open || !close || close < open)
                return bad(err, errsz, "FETCH: malformed section in %.40s", name);
        s->item = arena_strndup(a, name, (size_t) (open - name));
        s->section = arena_strndup(a, open + 1, (size_t) (close - open - 1));
        if (!s->item || !s->section)
                return OOM(err, errsz);
        if (close[1] == '<') {
                const char *end = strchr(close + 2, '>');

                if (!end || end[1] != '\0' ||
                    imap_parse_number(close + 2, (size_t) (end - close - 2), UINT32_MAX, &origin) < 0)
                        return bad(err, errsz, "FETCH: malformed partial origin in %.40s", name);
                s->has_origin = true;
                s->origin = (uint32_t) origin;
        } else if (close[1] != '\0')
                return bad(err, errsz, "FETCH: junk after section in %.40s", name);
        return 0;
}

static int build_fetch(struct arena *a, const struct imap_arg *args, size_t n, struct imap_fetch_resp *f,
                       char *err, size_t errsz) {
        struct imap_fetch_section *sections = NULL;
        const struct imap_arg *l, *ml;
        size_t ln, mn;
        int r;

        if (n != 1 || !imap_arg_get_list(&args[0], &l, &ln) || ln % 2 != 0)
                return bad(err, errsz, "FETCH: expected (item value ...)");

        for (size_t i = 0; i < ln; i += 2) {
                const struct imap_arg *name = &l[i], *val = &l[i + 1];
                const struct imap_arg *fl;
                size_t fn;
                uint64_t v;

                if (name->type != IMAP_ARG_ATOM)
                        return bad(err, errsz, "FETCH: item name is not an atom");

                if (imap_arg_atom_equals(name, "UID")) {
                        if (!imap_arg_get_number(val, UINT32_MAX, &v) || v == 0)
                                return bad(err, errsz, "FETCH: invalid UID");
                        f->uid = (uint32_t) v;
                        f->present |= IMAP_FETCH_UID;
                } else if (imap_arg_atom_equals(name, "FLAGS")) {
                        if (!imap_arg_get_list(val, &fl, &fn))
                                return bad(err, errsz, "FETCH: FLAGS is not a list");
                        r = atoms_from_args(a, fl, fn, false, &f->flags, "FETCH FLAGS", err, errsz);
                        if (r < 0)
                                return r;
                        f->present |= IMAP_FETCH_FLAGS;
                } else if (imap_arg_atom_equals(name, "MODSEQ")) {
                        /* RFC 7162 §3.1.4.1: MODSEQ (mod-sequence-value) */
                        if (!imap_arg_get_list(val, &ml, &mn) || mn != 1 ||
                            !imap_arg_get_number(&ml[0], MODSEQ_MAX, &v) || v == 0)
                                return bad(err, errsz, "FETCH: invalid MODSEQ");
                        f->modseq = v;
                        f->present |= IMAP_FETCH_MODSEQ;
                } else if (imap_arg_atom_equals(name, "INTERNALDATE")) {
                        if (!imap_arg_get_string(val, &f->internaldate))
                                return bad(err, errsz, "FETCH: invalid INTERNALDATE");
                        f->present |= IMAP_FETCH_INTERNALDATE;
                } else if (imap_arg_atom_equals(name, "RFC822.SIZE")) {
                        if (!imap_arg_get_number(val, MODSEQ_MAX, &v))
                                return bad(err, errsz, "FETCH: invalid RFC822.SIZE");
                        f->rfc822_size = v;
                        f->present |= IMAP_FETCH_RFC822_SIZE;
                } else if (imap_arg_atom_equals(name, "ENVELOPE")) {
                        r = build_envelope(a, val, &f->envelope, err, errsz);
                        if (r < 0)
                                return r;
                        f->present |= IMAP_FETCH_ENVELOPE;
                } else if (strchr(name->str, '[')) {
                        struct imap_fetch_section *s;

                        if (!sections) {
                                /* at most one section per item pair */
                                sections = arena_alloc(a, (ln / 2) * sizeof(*sections));
                                if (!sections)
                                        return OOM(err, errsz);
                        }
                        s = &sections[f->n_sections];
                        *s = (struct imap_fetch_section) {};
                        r = parse_section(a, name->str, s, err, errsz);
                        if (r < 0)
                                return r;
                        if (strncasecmp(s->item, "BINARY.SIZE", 11) == 0)
                                continue;       /* a number, not data */
                        if (!imap_arg_get_nstring(val, &s->data))
                                return bad(err, errsz, "FETCH: invalid %s[] data", s->item);
                        s->len = s->data ? val->len : 0;
                        f->n_sections++;
                }
                /* Other items (BODYSTRUCTURE, X-GM-*, ...) stay in the
                 * generic args; their values are already syntax-checked. */
        }
        f->sections = sections;
        return 0;
}

/* ---- dispatch ------------------------------------------------------------ */

static const struct {
        const char *name;
        enum imap_resp_type type;
} keyword_table[] = {
        { "OK", IMAP_RESP_OK },
        { "NO", IMAP_RESP_NO },
        { "BAD", IMAP_RESP_BAD },
        { "PREAUTH", IMAP_RESP_PREAUTH },
        { "BYE", IMAP_RESP_BYE },
        { "CAPABILITY", IMAP_RESP_CAPABILITY },
        { "ENABLED", IMAP_RESP_ENABLED },
        { "FLAGS", IMAP_RESP_FLAGS },
        { "LIST", IMAP_RESP_LIST },
        { "LSUB", IMAP_RESP_LSUB },
        { "STATUS", IMAP_RESP_STATUS },
        { "SEARCH", IMAP_RESP_SEARCH },
        { "ESEARCH", IMAP_RESP_ESEARCH },
        { "VANISHED", IMAP_RESP_VANISHED },
        { "NAMESPACE", IMAP_RESP_NAMESPACE },
        { "ID", IMAP_RESP_ID },
};

static const struct {
        const char *name;
        enum imap_resp_type type;
} numbered_table[] = {
        { "EXISTS", IMAP_RESP_EXISTS },
        { "RECENT", IMAP_RESP_RECENT },
        { "EXPUNGE", IMAP_RESP_EXPUNGE },
        { "FETCH", IMAP_RESP_FETCH },
};

int imap_response_build(struct arena *a, const struct imap_head *h,
                        const struct imap_arg *args, size_t n_args,
                        struct imap_response *resp, char *err, size_t errsz) {
        *resp = (struct imap_response) {
                .kind = h->kind,
                .type = IMAP_RESP_OTHER,
                .tag = h->tag,
                .number = h->number,
                .keyword = h->keyword,
                .args = args,
                .n_args = n_args,
        };

        if (h->kind == IMAP_RESP_KIND_CONTINUATION) {
                resp->type = IMAP_RESP_CONTINUE;
                resp->status.text = arena_strndup(a, h->text, h->text_len);
                return resp->status.text ? 0 : OOM(err, errsz);
        }

        if (h->has_number) {
                for (size_t i = 0; i < ELEMENTSOF(numbered_table); i++)
                        if (strcasecmp(h->keyword, numbered_table[i].name) == 0)
                                resp->type = numbered_table[i].type;
                /* nz-number for EXPUNGE and FETCH; EXISTS and RECENT may be 0 */
                if ((resp->type == IMAP_RESP_EXPUNGE || resp->type == IMAP_RESP_FETCH) && h->number == 0)
                        return bad(err, errsz, "%s with message number 0", h->keyword);
                if (resp->type == IMAP_RESP_FETCH)
                        return build_fetch(a, args, n_args, &resp->fetch, err, errsz);
                return 0;
        }

        for (size_t i = 0; i < ELEMENTSOF(keyword_table); i++)
                if (strcasecmp(h->keyword, keyword_table[i].name) == 0)
                        resp->type = keyword_table[i].type;

        switch (resp->type) {
        case IMAP_RESP_OK:
        case IMAP_RESP_NO:
        case IMAP_RESP_BAD:
        case IMAP_RESP_PREAUTH:
        case IMAP_RESP_BYE:
                return imap_resp_text_parse(a, h->text, h->text_len, &resp->status, err, errsz);
        case IMAP_RESP_CAPABILITY:
        case IMAP_RESP_ENABLED:
                return atoms_from_args(a, args, n_args, false, &resp->atoms, h->keyword, err, errsz);
        case IMAP_RESP_FLAGS: {
                const struct imap_arg *l;
                size_t ln;

                if (n_args != 1 || !imap_arg_get_list(&args[0], &l, &ln))
                        return bad(err, errsz, "FLAGS: expected a list");
                return atoms_from_args(a, l, ln, false, &resp->atoms, "FLAGS", err, errsz);
        }
        case IMAP_RESP_LIST:
        case IMAP_RESP_LSUB:
                return build_list(a, args, n_args, &resp->list, err, errsz);
        case IMAP_RESP_STATUS:
                return build_status(a, args, n_args, &resp->mbstatus, err, errsz);
        case IMAP_RESP_SEARCH:
                return build_search(a, args, n_args, &resp->search, err, errsz);
        case IMAP_RESP_ESEARCH:
                return build_esearch(args, n_args, &resp->esearch, err, errsz);
        case IMAP_RESP_VANISHED:
                return build_vanished(args, n_args, &resp->vanished, err, errsz);
        default:
                return 0;
        }
}
