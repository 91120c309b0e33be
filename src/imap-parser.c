/* SPDX-License-Identifier: MIT */
/*
 * Framing and tokenizing half of the IMAP response parser.
 *
 * A response is one or more lines joined by literals:
 *
 *     * 1 FETCH (UID 7 BODY[HEADER.FIELDS (SUBJECT)] {21}CRLF
 *     Subject: hello...CRLFCRLF                   <- 21 literal bytes
 *     )CRLF
 *
 * Bytes are gathered until a whole line (up to LF) is present; that line is
 * then tokenized in the context left by the previous line, so a literal is
 * only recognised where a value may stand (never inside resp-text). A line
 * that ends with a literal header switches to collecting exactly that many
 * bytes, then back to lines. Work is linear in the input however it is split.
 *
 * Grammar references are RFC 9051 §9 (formal syntax); the lenient spots are
 * named where they are, each one a quirk of a real server.
 */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "imap-parser-internal.h"
#include "macro.h"

const struct imap_parser_limits imap_parser_default_limits = {
        .max_line = 64 * 1024,
        .max_literal = 1024 * 1024,
        .max_response = 4 * 1024 * 1024,
        .max_depth = 16,
        /* A full 64 KiB SEARCH line has 32,768 values; each value costs
         * about 60 bytes of tables, so 100,000 stay under 6 MB. */
        .max_elements = 100 * 1000,
};

enum parser_state {
        STATE_LINE,             /* collecting a line */
        STATE_LITERAL,          /* collecting literal bytes */
        STATE_FAILED,
};

/* One open parenthesised list (frame 0 is the response's top level). */
struct frame {
        struct imap_arg *v;
        size_t n, cap;
};

struct imap_parser {
        struct imap_parser_limits lim;
        enum parser_state state;

        char *line;
        size_t line_len, line_cap;

        char *lit;
        size_t lit_len, lit_have;
        bool lit8;

        /* the response in progress */
        bool in_response;       /* head parsed, more lines or literals follow */
        bool need_sep;          /* a value just ended: SP, ')' or end must follow */
        bool returned;          /* a response was handed out: reset before going on */
        size_t resp_bytes;
        size_t n_elements;
        unsigned depth;
        struct frame *frames;   /* lim.max_depth + 1 */
        struct imap_head head;
        struct arena arena;
        struct imap_response resp;

        char err[192];
};

/* ---- arena --------------------------------------------------------------- */

#define ARENA_MIN_CHUNK 1024u

void *arena_alloc(struct arena *a, size_t n) {
        struct arena_chunk *c = a->head;
        size_t need = (n + _Alignof(max_align_t) - 1) & ~(size_t) (_Alignof(max_align_t) - 1);

        if (need < n)
                return NULL;
        if (need == 0)
                need = _Alignof(max_align_t);

        if (!c || c->size - c->used < need) {
                size_t size = need > ARENA_MIN_CHUNK ? need : ARENA_MIN_CHUNK;

                if (c && c->size * 2 > size && c->size < 64 * 1024)
                        size = c->size * 2;
                if (size > SIZE_MAX - sizeof(struct arena_chunk))
                        return NULL;
                c = malloc(sizeof(struct arena_chunk) + size);
                if (!c)
                        return NULL;
                c->used = 0;
                c->size = size;
                c->next = a->head;
                a->head = c;
                a->total += size;
        }

        void *p = (char *) c->data + c->used;
        c->used += need;
        return p;
}

char *arena_strndup(struct arena *a, const char *s, size_t n) {
        char *d;

        if (n == SIZE_MAX)
                return NULL;
        d = arena_alloc(a, n + 1);
        if (!d)
                return NULL;
        memcpy(d, s, n);
        d[n] = '\0';
        return d;
}

void arena_reset(struct arena *a) {
        struct arena_chunk *c = a->head, *keep = NULL;

        /* Keep the oldest chunk if it is small: the common response fits. */
        while (c) {
                struct arena_chunk *next = c->next;

                if (!next && c->size <= ARENA_MIN_CHUNK)
                        keep = c;
                else
                        free(c);
                c = next;
        }
        a->head = keep;
        a->total = keep ? keep->size : 0;
        if (keep) {
                keep->used = 0;
                keep->next = NULL;
        }
}

void arena_free(struct arena *a) {
        arena_reset(a);
        free(a->head);
        a->head = NULL;
        a->total = 0;
}

/* ---- errors -------------------------------------------------------------- */

_attribute_printf_(3, 4)
static int fail(struct imap_parser *p, int r, const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(p->err, sizeof(p->err), fmt, ap);
        va_end(ap);
        p->state = STATE_FAILED;
        return r;
}

/* ---- life cycle ---------------------------------------------------------- */

struct imap_parser *imap_parser_new(const struct imap_parser_limits *limits) {
        struct imap_parser *p;

        p = calloc(1, sizeof(*p));
        if (!p)
                return NULL;
        p->lim = limits ? *limits : imap_parser_default_limits;
        if (p->lim.max_depth == 0)
                p->lim.max_depth = 1;
        if (p->lim.max_line < 16)
                p->lim.max_line = 16;
        p->frames = calloc(p->lim.max_depth + 1, sizeof(struct frame));
        if (!p->frames) {
                free(p);
                return NULL;
        }
        return p;
}

static void frames_free(struct imap_parser *p) {
        for (unsigned i = 0; i <= p->lim.max_depth; i++) {
                free(p->frames[i].v);
                p->frames[i] = (struct frame) {};
        }
}

struct imap_parser *imap_parser_free(struct imap_parser *p) {
        if (!p)
                return NULL;
        frames_free(p);
        free(p->frames);
        free(p->line);
        arena_free(&p->arena);
        free(p);
        return NULL;
}

const char *imap_parser_error(const struct imap_parser *p) {
        return p->state == STATE_FAILED ? p->err : NULL;
}

size_t imap_parser_memory(const struct imap_parser *p) {
        size_t m = sizeof(*p) + p->line_cap + p->arena.total +
                   (p->lim.max_depth + 1) * sizeof(struct frame);

        for (unsigned i = 0; i <= p->lim.max_depth; i++)
                m += p->frames[i].cap * sizeof(struct imap_arg);
        return m;
}

/* Forget the response: the next byte starts a new one. */
static void response_reset(struct imap_parser *p) {
        arena_reset(&p->arena);
        for (unsigned i = 0; i <= p->lim.max_depth; i++)
                p->frames[i].n = 0;
        p->depth = 0;
        p->in_response = false;
        p->need_sep = false;
        p->returned = false;
        p->resp_bytes = 0;
        p->n_elements = 0;
        p->head = (struct imap_head) {};
        p->resp = (struct imap_response) {};
        p->line_len = 0;
}

void imap_parser_trim(struct imap_parser *p) {
        if (p->returned)
                response_reset(p);
        if (p->in_response || p->state == STATE_LITERAL || p->line_len > 0)
                return;
        free(p->line);
        p->line = NULL;
        p->line_cap = 0;
        p->line_len = 0;
        frames_free(p);
        arena_free(&p->arena);
}

/* ---- character classes (RFC 9051 §9) ------------------------------------- */

/* atom-specials = "(" / ")" / "{" / SP / CTL / list-wildcards / quoted-specials / resp-specials.
 * Leniency: list-wildcards ('%', '*'), '\' (flags, \*) and ']' (ASTRING-CHAR)
 * are accepted inside atoms, as is 8-bit (UTF-8 names from UTF8=ACCEPT
 * servers written as atoms). '[' opens a bracketed section. */
static bool is_atom_char(unsigned char c) {
        if (c <= 0x20 || c == 0x7f)
                return false;
        return c != '(' && c != ')' && c != '{' && c != '"' && c != '[';
}

/* tag = 1*<any ASTRING-CHAR except "+"> */
static bool is_tag_char(unsigned char c) {
        return (is_atom_char(c) || c == ']') && c != '+' && c != '\\' && c != '%' && c != '*';
}

/* ---- value frames -------------------------------------------------------- */

static int frame_push_value(struct imap_parser *p, const struct imap_arg *a) {
        struct frame *f = &p->frames[p->depth];

        if (++p->n_elements > p->lim.max_elements)
                return fail(p, -EMSGSIZE, "more than %u values in one response",
                            p->lim.max_elements);
        if (f->n == f->cap) {
                size_t cap = f->cap ? f->cap * 2 : 8;
                struct imap_arg *v;

                if (cap > p->lim.max_elements)
                        cap = p->lim.max_elements;
                v = realloc(f->v, cap * sizeof(*v));
                if (!v)
                        return fail(p, -ENOMEM, "out of memory");
                f->v = v;
                f->cap = cap;
        }
        f->v[f->n++] = *a;
        return 0;
}

/* Copies a frame's values into the arena (exact size). */
static int frame_finish(struct imap_parser *p, unsigned depth, const struct imap_arg **ret, size_t *ret_n) {
        struct frame *f = &p->frames[depth];
        struct imap_arg *v = NULL;

        if (f->n > 0) {
                v = arena_alloc(&p->arena, f->n * sizeof(*v));
                if (!v)
                        return fail(p, -ENOMEM, "out of memory");
                memcpy(v, f->v, f->n * sizeof(*v));
        }
        *ret = v;
        *ret_n = f->n;
        f->n = 0;
        return 0;
}

static int push_string(struct imap_parser *p, enum imap_arg_type type, const char *s, size_t n) {
        struct imap_arg a = { .type = type, .len = n };

        a.str = arena_strndup(&p->arena, s, n);
        if (!a.str)
                return fail(p, -ENOMEM, "out of memory");
        return frame_push_value(p, &a);
}

/* ---- tokenizing a line --------------------------------------------------- */

enum seg_result {
        SEG_COMPLETE,
        SEG_LITERAL,
};

/* Reads a decimal number of at most max, overflow-checked digit by digit. */
static int read_number(const char *s, size_t n, size_t *pos, uint64_t max, uint64_t *ret) {
        uint64_t v = 0;
        size_t i = *pos;

        if (i >= n || s[i] < '0' || s[i] > '9')
                return -EINVAL;
        for (; i < n && s[i] >= '0' && s[i] <= '9'; i++) {
                unsigned d = (unsigned) (s[i] - '0');

                if (v > (max - d) / 10)
                        return -ERANGE;
                v = v * 10 + d;
        }
        *pos = i;
        *ret = v;
        return 0;
}

int imap_parse_number(const char *s, size_t len, uint64_t max, uint64_t *ret) {
        size_t pos = 0;
        uint64_t v;
        int r;

        r = read_number(s, len, &pos, max, &v);
        if (r < 0)
                return r;
        if (pos != len)
                return -EINVAL;
        *ret = v;
        return 0;
}

/* A literal header "{n}", "{n+}" or "~{n}" must end the line. */
static int parse_literal_header(struct imap_parser *p, const char *s, size_t n, size_t *pos) {
        size_t i = *pos;
        uint64_t size;
        bool lit8 = false;
        int r;

        if (s[i] == '~') {
                lit8 = true;
                i++;
                if (i >= n || s[i] != '{')
                        return fail(p, -EPROTO, "'~' not followed by a literal");
        }
        i++;                    /* '{' */
        r = read_number(s, n, &i, p->lim.max_literal, &size);
        if (r == -ERANGE)
                return fail(p, -EMSGSIZE, "literal larger than the %zu byte limit", p->lim.max_literal);
        if (r < 0)
                return fail(p, -EPROTO, "malformed literal size");
        if (i < n && s[i] == '+' && !lit8)     /* LITERAL+ syntax, only sent by clients, tolerated */
                i++;
        if (i >= n || s[i] != '}')
                return fail(p, -EPROTO, "malformed literal header");
        i++;
        if (i != n)
                return fail(p, -EPROTO, "literal header not at the end of the line");
        if (p->resp_bytes + size > p->lim.max_response)
                return fail(p, -EMSGSIZE, "response larger than the %zu byte limit", p->lim.max_response);

        p->lit = arena_alloc(&p->arena, size + 1);
        if (!p->lit)
                return fail(p, -ENOMEM, "out of memory");
        p->lit_len = size;
        p->lit_have = 0;
        p->lit8 = lit8;
        *pos = i;
        return 0;
}

/* quoted = DQUOTE *QUOTED-CHAR DQUOTE; QUOTED-CHAR = <any TEXT-CHAR except
 * quoted-specials> / "\" quoted-specials / UTF8-2..4. Measured first, then
 * unescaped into a copy of exactly that size: sized by the rest of the line
 * instead, a line of 20,000 "" would cost 20,000 times the line. */
static int parse_quoted(struct imap_parser *p, const char *s, size_t n, size_t *pos) {
        size_t start = *pos + 1, i, len = 0;
        char *d;

        for (i = start;; i++) {
                if (i >= n)
                        return fail(p, -EPROTO, "unterminated quoted string");
                if (s[i] == '"')
                        break;
                if (s[i] == '\\') {
                        i++;
                        if (i >= n || (s[i] != '"' && s[i] != '\\'))
                                return fail(p, -EPROTO, "invalid escape in quoted string");
                }
                len++;
        }
        *pos = i + 1;

        d = arena_alloc(&p->arena, len + 1);
        if (!d)
                return fail(p, -ENOMEM, "out of memory");
        len = 0;
        for (i = start; s[i] != '"'; i++) {
                if (s[i] == '\\')
                        i++;
                d[len++] = s[i];
        }
        d[len] = '\0';

        struct imap_arg a = { .type = IMAP_ARG_STRING, .len = len, .str = d };
        return frame_push_value(p, &a);
}

/* An atom; '[' ... ']' inside it (fetch sections like BODY[HEADER.FIELDS
 * (FROM)]) may hold spaces, parentheses and quoted strings. */
static int parse_atom(struct imap_parser *p, const char *s, size_t n, size_t *pos) {
        size_t start = *pos, i = *pos;

        while (i < n) {
                unsigned char c = (unsigned char) s[i];

                if (c == '[') {
                        bool quoted = false;

                        for (i++; i < n; i++) {
                                if (quoted) {
                                        if (s[i] == '\\')
                                                i++;
                                        else if (s[i] == '"')
                                                quoted = false;
                                } else if (s[i] == '"')
                                        quoted = true;
                                else if (s[i] == ']')
                                        break;
                        }
                        if (i >= n)
                                return fail(p, -EPROTO, "unterminated '[' in atom");
                        i++;
                        continue;
                }
                if (!is_atom_char(c))
                        break;
                i++;
        }
        if (i == start) {
                unsigned char c = (unsigned char) s[i];

                if (c < 0x20 || c == 0x7f)
                        return fail(p, -EPROTO, "control character 0x%02x in response", c);
                return fail(p, -EPROTO, "unexpected '%c' in response", c);
        }
        *pos = i;

        if (i - start == 3 && strncasecmp(s + start, "NIL", 3) == 0) {
                struct imap_arg a = { .type = IMAP_ARG_NIL, .len = 3, .str = "NIL" };
                return frame_push_value(p, &a);
        }
        return push_string(p, IMAP_ARG_ATOM, s + start, i - start);
}

/* Tokenizes values from s[*pos] to the end of the line. */
static int parse_values(struct imap_parser *p, const char *s, size_t n, size_t *pos, enum seg_result *ret) {
        size_t i = *pos;
        int r;

        for (;;) {
                /* Leniency: runs of spaces and a trailing space (seen from
                 * several servers after SEARCH and CAPABILITY). */
                bool had_space = false;

                while (i < n && s[i] == ' ') {
                        i++;
                        had_space = true;
                }
                if (i >= n)
                        break;

                if (s[i] == ')') {
                        const struct imap_arg *list = NULL;
                        size_t len = 0;

                        if (p->depth == 0)
                                return fail(p, -EPROTO, "unbalanced ')'");
                        r = frame_finish(p, p->depth, &list, &len);
                        if (r < 0)
                                return r;
                        p->depth--;
                        struct imap_arg a = { .type = IMAP_ARG_LIST, .len = len, .list = list };
                        r = frame_push_value(p, &a);
                        if (r < 0)
                                return r;
                        p->need_sep = true;
                        i++;
                        continue;
                }

                if ((unsigned char) s[i] < 0x20 || s[i] == 0x7f)
                        return fail(p, -EPROTO, "control character 0x%02x in response", (unsigned char) s[i]);
                /* Leniency: "((a)(b))" — RFC 3501's own envelope example
                 * writes address lists without spaces between them. */
                if (p->need_sep && !had_space && s[i] != '(')
                        return fail(p, -EPROTO, "missing space between values");

                switch (s[i]) {
                case '(':
                        if (p->depth >= p->lim.max_depth)
                                return fail(p, -EMSGSIZE, "lists nested deeper than %u", p->lim.max_depth);
                        p->depth++;
                        p->frames[p->depth].n = 0;
                        p->need_sep = false;
                        i++;
                        continue;
                case '"':
                        r = parse_quoted(p, s, n, &i);
                        break;
                case '{':
                case '~':
                        r = parse_literal_header(p, s, n, &i);
                        if (r < 0)
                                return r;
                        *pos = i;
                        *ret = SEG_LITERAL;
                        return 0;
                default:
                        r = parse_atom(p, s, n, &i);
                        break;
                }
                if (r < 0)
                        return r;
                p->need_sep = true;
        }

        if (p->depth > 0)
                return fail(p, -EPROTO, "unbalanced '(': %u list(s) open at end of line", p->depth);
        *pos = i;
        *ret = SEG_COMPLETE;
        return 0;
}

/* Reads a word made of atom characters (tags, keywords). */
static size_t word_len(const char *s, size_t n, size_t pos, bool tag) {
        size_t i = pos;

        while (i < n && (tag ? is_tag_char((unsigned char) s[i]) : is_atom_char((unsigned char) s[i])))
                i++;
        return i - pos;
}

static bool is_status_word(const char *w) {
        return strcasecmp(w, "OK") == 0 || strcasecmp(w, "NO") == 0 || strcasecmp(w, "BAD") == 0 ||
               strcasecmp(w, "PREAUTH") == 0 || strcasecmp(w, "BYE") == 0;
}

/* The start of a response: "+ ...", "* [n] KEYWORD ...", "tag OK|NO|BAD ...".
 * Sets *text_mode when the rest of the line is resp-text. */
static int parse_head(struct imap_parser *p, const char *s, size_t n, size_t *pos, bool *text_mode) {
        struct imap_head *h = &p->head;
        size_t i = 0, l;

        *text_mode = false;

        if (n == 0)
                return fail(p, -EPROTO, "empty line");

        if (s[0] == '+') {
                /* continue-req = "+" SP (resp-text / base64). Leniency: a
                 * bare "+" (no space, no text) is common. */
                h->kind = IMAP_RESP_KIND_CONTINUATION;
                h->keyword = "+";
                i = 1;
                if (i < n && s[i] == ' ')
                        i++;
                *text_mode = true;
                *pos = i;
                return 0;
        }

        if (s[0] == '*') {
                h->kind = IMAP_RESP_KIND_UNTAGGED;
                i = 1;
        } else {
                l = word_len(s, n, 0, true);
                if (l == 0)
                        return fail(p, -EPROTO, "response starts with neither '*', '+' nor a tag");
                h->kind = IMAP_RESP_KIND_TAGGED;
                h->tag = arena_strndup(&p->arena, s, l);
                if (!h->tag)
                        return fail(p, -ENOMEM, "out of memory");
                i = l;
        }

        if (i >= n || s[i] != ' ')
                return fail(p, -EPROTO, "missing space after '%s'", h->tag ? h->tag : "*");
        while (i < n && s[i] == ' ')
                i++;

        if (h->kind == IMAP_RESP_KIND_UNTAGGED && i < n && s[i] >= '0' && s[i] <= '9') {
                uint64_t v;
                int r;

                r = read_number(s, n, &i, UINT32_MAX, &v);
                if (r < 0)
                        return fail(p, -ERANGE, "message number out of range");
                h->has_number = true;
                h->number = (uint32_t) v;
                if (i >= n || s[i] != ' ')
                        return fail(p, -EPROTO, "missing keyword after message number");
                while (i < n && s[i] == ' ')
                        i++;
        }

        l = word_len(s, n, i, false);
        if (l == 0)
                return fail(p, -EPROTO, "missing response keyword");
        h->keyword = arena_strndup(&p->arena, s + i, l);
        if (!h->keyword)
                return fail(p, -ENOMEM, "out of memory");
        i += l;

        if (!h->has_number && is_status_word(h->keyword)) {
                if (h->kind == IMAP_RESP_KIND_TAGGED &&
                    (strcasecmp(h->keyword, "PREAUTH") == 0 || strcasecmp(h->keyword, "BYE") == 0))
                        return fail(p, -EPROTO, "tagged %s response", h->keyword);
                /* Leniency: "a1 OK" with no text at all. */
                if (i < n) {
                        if (s[i] != ' ')
                                return fail(p, -EPROTO, "missing space after %s", h->keyword);
                        i++;
                }
                *text_mode = true;
        } else if (h->kind == IMAP_RESP_KIND_TAGGED)
                return fail(p, -EPROTO, "tagged response with keyword '%s'", h->keyword);
        else if (i < n && s[i] != ' ')
                return fail(p, -EPROTO, "unexpected character after '%s'", h->keyword);

        *pos = i;
        return 0;
}

static int finish_response(struct imap_parser *p) {
        const struct imap_arg *args = NULL;
        size_t n_args = 0;
        int r;

        r = frame_finish(p, 0, &args, &n_args);
        if (r < 0)
                return r;
        r = imap_response_build(&p->arena, &p->head, args, n_args, &p->resp, p->err, sizeof(p->err));
        if (r < 0) {
                p->state = STATE_FAILED;
                return r;
        }
        return 1;
}

/* A whole line (CRLF removed). Returns 1 when the response is complete, 0
 * when a literal follows. */
static int process_line(struct imap_parser *p, const char *s, size_t n) {
        enum seg_result res = SEG_COMPLETE;
        size_t pos = 0;
        int r;

        /* CHAR8 excludes NUL; TEXT-CHAR excludes CR and LF. */
        if (n > 0 && memchr(s, '\0', n))
                return fail(p, -EPROTO, "NUL byte in response line");
        if (n > 0 && memchr(s, '\r', n))
                return fail(p, -EPROTO, "stray CR in response line");

        if (!p->in_response) {
                bool text_mode;

                r = parse_head(p, s, n, &pos, &text_mode);
                if (r < 0)
                        return r;
                p->in_response = true;
                if (text_mode) {
                        p->head.text = s + pos;
                        p->head.text_len = n - pos;
                        return finish_response(p);
                }
        }

        r = parse_values(p, s, n, &pos, &res);
        if (r < 0)
                return r;
        if (res == SEG_LITERAL) {
                p->state = STATE_LITERAL;
                return 0;
        }
        return finish_response(p);
}

static int literal_done(struct imap_parser *p) {
        struct imap_arg a = { .type = IMAP_ARG_LITERAL, .len = p->lit_len, .str = p->lit,
                              .literal8 = p->lit8 };

        p->lit[p->lit_len] = '\0';
        if (!p->lit8 && memchr(p->lit, '\0', p->lit_len))
                return fail(p, -EPROTO, "NUL byte in literal");
        p->lit = NULL;
        p->need_sep = true;
        p->state = STATE_LINE;
        return frame_push_value(p, &a);
}

static int line_append(struct imap_parser *p, const char *s, size_t n) {
        if (n == 0)
                return 0;
        /* max_line excludes CRLF: allow one more byte for the CR. */
        if (p->line_len + n > p->lim.max_line + 1)
                return fail(p, -EMSGSIZE, "line longer than the %zu byte limit", p->lim.max_line);
        if (p->resp_bytes + n > p->lim.max_response)
                return fail(p, -EMSGSIZE, "response larger than the %zu byte limit", p->lim.max_response);
        if (p->line_len + n > p->line_cap) {
                size_t cap = p->line_cap ? p->line_cap : 256;
                char *l;

                while (cap < p->line_len + n)
                        cap *= 2;
                if (cap > p->lim.max_line + 2)
                        cap = p->lim.max_line + 2;
                l = realloc(p->line, cap);
                if (!l)
                        return fail(p, -ENOMEM, "out of memory");
                p->line = l;
                p->line_cap = cap;
        }
        memcpy(p->line + p->line_len, s, n);
        p->line_len += n;
        p->resp_bytes += n;
        return 0;
}

int imap_parser_feed(struct imap_parser *p, const void *data, size_t len,
                     size_t *ret_consumed, const struct imap_response **ret_resp) {
        const char *s = data;
        size_t used = 0;
        int r;

        *ret_consumed = 0;
        if (p->state == STATE_FAILED)
                return -EPROTO;
        if (p->returned)
                response_reset(p);

        while (used < len) {
                if (p->state == STATE_LITERAL) {
                        size_t take = p->lit_len - p->lit_have;

                        if (take > len - used)
                                take = len - used;
                        memcpy(p->lit + p->lit_have, s + used, take);
                        p->lit_have += take;
                        p->resp_bytes += take;
                        used += take;
                        if (p->lit_have == p->lit_len) {
                                r = literal_done(p);
                                if (r < 0)
                                        goto out;
                        }
                        continue;
                }

                const char *lf = memchr(s + used, '\n', len - used);
                size_t chunk = lf ? (size_t) (lf - (s + used)) : len - used;

                r = line_append(p, s + used, chunk);
                if (r < 0)
                        goto out;
                used += chunk;
                if (!lf)
                        break;
                used++;                 /* the LF */
                p->resp_bytes++;

                /* Leniency: a bare LF ends a line as CRLF does. */
                size_t n = p->line_len;
                if (n > 0 && p->line[n - 1] == '\r')
                        n--;
                else if (n > p->lim.max_line) {
                        r = fail(p, -EMSGSIZE, "line longer than the %zu byte limit", p->lim.max_line);
                        goto out;
                }
                p->line_len = 0;

                r = process_line(p, p->line, n);
                if (r < 0)
                        goto out;
                if (r > 0) {
                        p->returned = true;
                        *ret_consumed = used;
                        *ret_resp = &p->resp;
                        return 1;
                }
        }
        *ret_consumed = used;
        return 0;

out:
        *ret_consumed = used;
        return r;
}

/* ---- generic accessors --------------------------------------------------- */

bool imap_arg_is_nil(const struct imap_arg *a) {
        return a && a->type == IMAP_ARG_NIL;
}

bool imap_arg_get_atom(const struct imap_arg *a, const char **ret) {
        if (!a || a->type != IMAP_ARG_ATOM)
                return false;
        *ret = a->str;
        return true;
}

bool imap_arg_get_string(const struct imap_arg *a, const char **ret) {
        if (!a || (a->type != IMAP_ARG_STRING && a->type != IMAP_ARG_LITERAL))
                return false;
        *ret = a->str;
        return true;
}

bool imap_arg_get_astring(const struct imap_arg *a, const char **ret) {
        /* A bare NIL where an astring is expected is the atom "NIL". */
        if (!a || a->type == IMAP_ARG_LIST)
                return false;
        *ret = a->str;
        return true;
}

bool imap_arg_get_nstring(const struct imap_arg *a, const char **ret) {
        if (imap_arg_is_nil(a)) {
                *ret = NULL;
                return true;
        }
        return imap_arg_get_string(a, ret);
}

bool imap_arg_get_number(const struct imap_arg *a, uint64_t max, uint64_t *ret) {
        if (!a || a->type != IMAP_ARG_ATOM)
                return false;
        return imap_parse_number(a->str, a->len, max, ret) >= 0;
}

bool imap_arg_get_list(const struct imap_arg *a, const struct imap_arg **ret_list, size_t *ret_n) {
        if (!a || a->type != IMAP_ARG_LIST)
                return false;
        *ret_list = a->list;
        *ret_n = a->len;
        return true;
}

bool imap_arg_atom_equals(const struct imap_arg *a, const char *s) {
        return a && a->type == IMAP_ARG_ATOM && strcasecmp(a->str, s) == 0;
}
