/* SPDX-License-Identifier: MIT */

#include <assert.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "imap-writer.h"
#include "macro.h"
#include "sasl.h"
#include "utf8.h"

/* Nothing legitimate comes near: user names, host names and tokens of a few
 * KiB at most (Microsoft's JWTs are the longest, ~3 KiB). */
#define SASL_INPUT_MAX (64 * 1024)

static const char *const mech_names[_SASL_MECH_MAX] = {
        [SASL_PLAIN] = "PLAIN",
        [SASL_LOGIN] = "LOGIN",
        [SASL_XOAUTH2] = "XOAUTH2",
        [SASL_OAUTHBEARER] = "OAUTHBEARER",
};

static const char *const pref_names[_SASL_MECH_PREF_MAX] = {
        [SASL_MECH_PREF_AUTO] = "auto",
        [SASL_MECH_PREF_PLAIN] = "plain",
        [SASL_MECH_PREF_LOGIN] = "login",
        [SASL_MECH_PREF_XOAUTH2] = "xoauth2",
        [SASL_MECH_PREF_OAUTHBEARER] = "oauthbearer",
};

const char *sasl_mech_to_string(enum sasl_mech m) {
        if ((int) m < 0 || m >= _SASL_MECH_MAX)
                return NULL;
        return mech_names[m];
}

enum sasl_mech sasl_mech_from_string(const char *s) {
        if (!s)
                return _SASL_MECH_INVALID;
        for (int i = 0; i < _SASL_MECH_MAX; i++)
                if (strcasecmp(s, mech_names[i]) == 0)
                        return (enum sasl_mech) i;
        return _SASL_MECH_INVALID;
}

const char *sasl_mech_pref_to_string(enum sasl_mech_pref p) {
        if ((int) p < 0 || p >= _SASL_MECH_PREF_MAX)
                return NULL;
        return pref_names[p];
}

enum sasl_mech_pref sasl_mech_pref_from_string(const char *s) {
        if (!s)
                return _SASL_MECH_PREF_INVALID;
        for (int i = 0; i < _SASL_MECH_PREF_MAX; i++)
                if (strcasecmp(s, pref_names[i]) == 0)
                        return (enum sasl_mech_pref) i;
        return _SASL_MECH_PREF_INVALID;
}

/* ---- choosing ------------------------------------------------------------ */

bool sasl_ir_available(const struct imap_strv *caps) {
        assert(caps);
        return imap_strv_contains(caps, "SASL-IR");
}

static bool mech_offered(const struct imap_strv *caps, enum sasl_mech m) {
        char cap[32];

        snprintf(cap, sizeof(cap), "AUTH=%s", mech_names[m]);
        return imap_strv_contains(caps, cap);
}

int sasl_choose(enum sasl_mech_pref pref, const struct imap_strv *caps, bool tls_active, bool login_disabled,
                enum sasl_mech *ret) {
        enum sasl_mech m;

        assert(caps);
        assert(ret);
        if ((int) pref < 0 || pref >= _SASL_MECH_PREF_MAX)
                return -EINVAL;

        /* RFC 9051 §6.2.3: LOGINDISABLED on a connection without TLS
         * says "protect the connection first". Sending a password or token
         * in the clear by another mechanism would defeat that. */
        if (login_disabled && !tls_active)
                return -EPERM;

        switch (pref) {
        case SASL_MECH_PREF_AUTO:
                if (mech_offered(caps, SASL_PLAIN))
                        m = SASL_PLAIN;
                else if (login_disabled)
                        return -EPERM;
                else
                        m = SASL_LOGIN;
                break;
        case SASL_MECH_PREF_LOGIN:
                if (login_disabled)
                        return -EPERM;
                m = SASL_LOGIN;
                break;
        case SASL_MECH_PREF_PLAIN:
                m = SASL_PLAIN;
                break;
        case SASL_MECH_PREF_XOAUTH2:
                m = SASL_XOAUTH2;
                break;
        case SASL_MECH_PREF_OAUTHBEARER:
                m = SASL_OAUTHBEARER;
                break;
        default:
                return -EINVAL;
        }

        if (m != SASL_LOGIN && !mech_offered(caps, m))
                return -EPROTONOSUPPORT;

        *ret = m;
        return 0;
}

/* ---- building initial responses ------------------------------------------ */

void sasl_free_secret(char *p, size_t len) {
        if (!p)
                return;
        explicit_bzero(p, len);
        free(p);
}

static bool has_ctl(const char *s, size_t len) {
        for (size_t i = 0; i < len; i++) {
                unsigned char c = (unsigned char) s[i];

                if (c < 0x20 || c == 0x7f)
                        return true;
        }
        return false;
}

static bool valid_user(const char *user, size_t len) {
        return utf8_is_valid(user, len) && !has_ctl(user, len);
}

/* Printable ASCII, no space: RFC 6750 b64token is a subset, and whatever
 * the provider issues beyond it cannot break the ^A framing. */
static bool valid_token(const char *s, size_t len) {
        if (len == 0)
                return false;
        for (size_t i = 0; i < len; i++)
                if ((unsigned char) s[i] <= 0x20 || (unsigned char) s[i] >= 0x7f)
                        return false;
        return true;
}

/* VCHAR only (RFC 7628 §3.1 "host=" 0*VCHAR): an ASCII name or address. */
static bool valid_host(const char *s, size_t len) {
        return valid_token(s, len);
}

/* A fixed-size output buffer filled once: no realloc, so no stray copy of
 * the secret is left behind in freed memory. */
struct out {
        char *p;
        size_t len, cap;
};

static void out_put(struct out *o, const char *s, size_t n) {
        if (o->len + n > o->cap)
                abort();        /* sizes are computed before; a mismatch is a bug */
        memcpy(o->p + o->len, s, n);
        o->len += n;
}

static void out_puts(struct out *o, const char *s) {
        out_put(o, s, strlen(s));
}

/* RFC 5801 §4: saslname escapes ',' as "=2C" and '=' as "=3D". */
static size_t saslname_len(const char *s, size_t len) {
        size_t n = 0;

        for (size_t i = 0; i < len; i++)
                n += s[i] == ',' || s[i] == '=' ? 3 : 1;
        return n;
}

static void out_saslname(struct out *o, const char *s, size_t len) {
        for (size_t i = 0; i < len; i++) {
                if (s[i] == ',')
                        out_puts(o, "=2C");
                else if (s[i] == '=')
                        out_puts(o, "=3D");
                else
                        out_put(o, &s[i], 1);
        }
}

int sasl_build_initial(enum sasl_mech m, const char *user, const char *secret, size_t secret_len, const char *host,
                       uint16_t port, char **ret, size_t *ret_len) {
        size_t user_len, host_len = 0, need;
        char port_str[8] = "";
        struct out o = {};

        if (!user)
                user = "";
        if (!secret && secret_len > 0)
                return -EINVAL;
        user_len = strlen(user);
        if (user_len > SASL_INPUT_MAX || secret_len > SASL_INPUT_MAX)
                return -E2BIG;
        if (!valid_user(user, user_len))
                return -EINVAL;

        switch (m) {
        case SASL_PLAIN:
                /* RFC 4616 §2: authcid and passwd are 1*SAFE, SAFE excludes NUL. */
                if (user_len == 0 || secret_len == 0 || memchr(secret, '\0', secret_len))
                        return -EINVAL;
                need = 1 + user_len + 1 + secret_len;
                break;
        case SASL_XOAUTH2:
                if (user_len == 0 || !valid_token(secret, secret_len))
                        return -EINVAL;
                need = strlen("user=") + user_len + 1 + strlen("auth=Bearer ") + secret_len + 2;
                break;
        case SASL_OAUTHBEARER:
                if (!valid_token(secret, secret_len))
                        return -EINVAL;
                if (host && host[0]) {
                        host_len = strlen(host);
                        if (host_len > SASL_INPUT_MAX)
                                return -E2BIG;
                        if (!valid_host(host, host_len))
                                return -EINVAL;
                        if (port > 0)
                                snprintf(port_str, sizeof(port_str), "%u", (unsigned) port);
                }
                /* RFC 7628 §3.1: gs2-header, then kvpairs each ended by ^A, then ^A. */
                need = strlen("n,") + (user_len > 0 ? strlen("a=") + saslname_len(user, user_len) : 0) + 1 +
                       1 + (host_len > 0 ? strlen("host=") + host_len + 1 : 0) +
                       (port_str[0] ? strlen("port=") + strlen(port_str) + 1 : 0) +
                       strlen("auth=Bearer ") + secret_len + 1 + 1;
                break;
        default:
                return -EINVAL;
        }

        o.cap = need;
        o.p = malloc(need + 1);
        if (!o.p)
                return -ENOMEM;

        switch (m) {
        case SASL_PLAIN:
                out_put(&o, "\0", 1);
                out_put(&o, user, user_len);
                out_put(&o, "\0", 1);
                out_put(&o, secret, secret_len);
                break;
        case SASL_XOAUTH2:
                out_puts(&o, "user=");
                out_put(&o, user, user_len);
                out_puts(&o, "\001auth=Bearer ");
                out_put(&o, secret, secret_len);
                out_puts(&o, "\001\001");
                break;
        case SASL_OAUTHBEARER:
                out_puts(&o, "n,");
                if (user_len > 0) {
                        out_puts(&o, "a=");
                        out_saslname(&o, user, user_len);
                }
                out_puts(&o, ",\001");
                if (host_len > 0) {
                        out_puts(&o, "host=");
                        out_put(&o, host, host_len);
                        out_puts(&o, "\001");
                }
                if (port_str[0]) {
                        out_puts(&o, "port=");
                        out_puts(&o, port_str);
                        out_puts(&o, "\001");
                }
                out_puts(&o, "auth=Bearer ");
                out_put(&o, secret, secret_len);
                out_puts(&o, "\001\001");
                break;
        default:
                abort();
        }
        if (o.len != need)
                abort();
        o.p[o.len] = '\0';

        *ret = o.p;
        *ret_len = o.len;
        return 0;
}

int sasl_build_initial_base64(enum sasl_mech m, const char *user, const char *secret, size_t secret_len,
                              const char *host, uint16_t port, char **ret) {
        char *raw = NULL, *b64 = NULL;
        size_t raw_len = 0;
        int r;

        r = sasl_build_initial(m, user, secret, secret_len, host, port, &raw, &raw_len);
        if (r < 0)
                return r;
        r = imap_base64_encode(raw, raw_len, &b64);
        sasl_free_secret(raw, raw_len);
        if (r < 0)
                return r;

        *ret = b64;
        return 0;
}

/* ---- challenges ----------------------------------------------------------- */

static int b64_value(unsigned char c) {
        if (c >= 'A' && c <= 'Z')
                return c - 'A';
        if (c >= 'a' && c <= 'z')
                return c - 'a' + 26;
        if (c >= '0' && c <= '9')
                return c - '0' + 52;
        if (c == '+')
                return 62;
        if (c == '/')
                return 63;
        return -1;
}

int imap_base64_decode(const char *s, size_t len, char **ret, size_t *ret_len) {
        size_t pad = 0, out_len;
        char *out, *o;

        if (!s && len > 0)
                return -EINVAL;
        if (len % 4 != 0)
                return -EINVAL;
        if (len > 0 && s[len - 1] == '=')
                pad = len > 1 && s[len - 2] == '=' ? 2 : 1;
        out_len = len / 4 * 3 - pad;

        out = malloc(out_len + 1);
        if (!out)
                return -ENOMEM;
        o = out;
        for (size_t i = 0; i < len; i += 4) {
                size_t npad = i + 4 == len ? pad : 0;   /* '=' only at the end of the last quantum */
                uint32_t w = 0;

                for (size_t k = 0; k < 4; k++) {
                        int v = k < 4 - npad ? b64_value((unsigned char) s[i + k]) : 0;

                        if (v < 0)
                                goto fail;
                        w = w << 6 | (uint32_t) v;
                }
                /* RFC 4648 §3.5: the bits the padding leaves unused must be zero. */
                if ((npad == 1 && (w & 0xff)) || (npad == 2 && (w & 0xffff)))
                        goto fail;

                *o++ = (char) (w >> 16);
                if (npad < 2)
                        *o++ = (char) (w >> 8 & 0xff);
                if (npad < 1)
                        *o++ = (char) (w & 0xff);
        }
        *o = '\0';

        *ret = out;
        *ret_len = out_len;
        return 0;

fail:
        free(out);
        return -EINVAL;
}

int sasl_decode_challenge(const char *b64, char **ret_text) {
        _cleanup_free_ char *raw = NULL;
        char *text;
        size_t raw_len, len, j = 0;
        int r;

        if (!b64)
                return -EINVAL;
        len = strlen(b64);
        if (len > (SASL_CHALLENGE_MAX + 2) / 3 * 4)
                return -E2BIG;
        r = imap_base64_decode(b64, len, &raw, &raw_len);
        if (r == -EINVAL)
                return -EPROTO;
        if (r < 0)
                return r;
        if (raw_len > SASL_CHALLENGE_MAX)
                return -E2BIG;

        r = utf8_sanitize(raw, raw_len, &text);
        if (r < 0)
                return r;

        /* Now valid UTF-8 without NUL: replace controls so that the text can
         * go into a log line or an error message as it is. */
        for (size_t i = 0; text[i]; i++) {
                unsigned char c = (unsigned char) text[i];

                if (c == '\t' || c == '\r' || c == '\n')
                        text[j++] = ' ';
                else if (c < 0x20 || c == 0x7f)
                        text[j++] = '?';
                else if (c == 0xc2 && (unsigned char) text[i + 1] >= 0x80 && (unsigned char) text[i + 1] <= 0x9f) {
                        text[j++] = '?';        /* C1 control U+0080..U+009F */
                        i++;
                } else
                        text[j++] = text[i];
        }
        text[j] = '\0';

        *ret_text = text;
        return 0;
}

const char *sasl_error_response(enum sasl_mech m) {
        switch (m) {
        case SASL_PLAIN:
                return "*";
        case SASL_XOAUTH2:
                return "";
        case SASL_OAUTHBEARER:
                return "AQ==";
        default:
                return NULL;
        }
}

/* ---- a tolerant scanner for the error challenge's JSON --------------------- */

static const char *skip_ws(const char *p) {
        while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
                p++;
        return p;
}

static int hex_value(char c) {
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        if (c >= 'A' && c <= 'F')
                return c - 'A' + 10;
        return -1;
}

/* Reads the string at *pp (at its opening quote). With buf, copies the
 * decoded contents (ASCII only: \u escapes beyond printable ASCII are
 * refused) and sets *ret_len. Moves *pp past the closing quote.
 * Returns 0, -EBADMSG or -ENOBUFS. */
static int scan_string(const char **pp, char *buf, size_t n, size_t *ret_len) {
        const char *p = *pp + 1;
        size_t len = 0;

        for (;;) {
                char c = *p++;

                if (c == '\0')
                        return -EBADMSG;
                if (c == '"')
                        break;
                if (c == '\\') {
                        char e = *p++;

                        switch (e) {
                        case '"': case '\\': case '/':
                                c = e;
                                break;
                        case 'b': c = '\b'; break;
                        case 'f': c = '\f'; break;
                        case 'n': c = '\n'; break;
                        case 'r': c = '\r'; break;
                        case 't': c = '\t'; break;
                        case 'u': {
                                int v = 0;

                                for (int k = 0; k < 4; k++) {
                                        int h = hex_value(p[k]);

                                        if (h < 0)
                                                return -EBADMSG;
                                        v = v * 16 + h;
                                }
                                p += 4;
                                if (buf && (v < 0x20 || v > 0x7e))
                                        return -EBADMSG;
                                c = (char) v;
                                break;
                        }
                        default:
                                return -EBADMSG;
                        }
                }
                if (buf) {
                        if (len + 1 >= n)
                                return -ENOBUFS;
                        buf[len] = c;
                }
                len++;
        }
        if (buf)
                buf[len] = '\0';
        if (ret_len)
                *ret_len = len;
        *pp = p;
        return 0;
}

static bool is_number_char(char c) {
        return (c >= '0' && c <= '9') || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E';
}

/* Skips one value of any kind, nested ones included (iteratively, so depth
 * costs no stack). */
static int skip_value(const char **pp) {
        const char *p = skip_ws(*pp);
        size_t depth = 0;
        int r;

        do {
                p = skip_ws(p);
                if (*p == '"') {
                        r = scan_string(&p, NULL, 0, NULL);
                        if (r < 0)
                                return r;
                } else if (*p == '{' || *p == '[') {
                        depth++;
                        p++;
                } else if (*p == '}' || *p == ']') {
                        if (depth == 0)
                                return -EBADMSG;
                        depth--;
                        p++;
                } else if (*p == ',' || *p == ':') {
                        if (depth == 0)
                                return -EBADMSG;
                        p++;
                } else if (is_number_char(*p) || (*p >= 'a' && *p <= 'z')) {
                        while (is_number_char(*p) || (*p >= 'a' && *p <= 'z'))
                                p++;
                } else
                        return -EBADMSG;
        } while (depth > 0);

        *pp = p;
        return 0;
}

int sasl_challenge_status(const char *json, char *ret_status, size_t n) {
        const char *p;
        int r;

        if (!json)
                return -EINVAL;
        p = skip_ws(json);
        if (*p != '{')
                return -EBADMSG;
        p = skip_ws(p + 1);
        if (*p == '}')
                return -ENOENT;

        for (;;) {
                const char *key;
                size_t key_len;

                p = skip_ws(p);
                if (*p != '"')
                        return -EBADMSG;
                key = p + 1;
                r = scan_string(&p, NULL, 0, &key_len);
                if (r < 0)
                        return r;
                p = skip_ws(p);
                if (*p != ':')
                        return -EBADMSG;
                p = skip_ws(p + 1);

                /* Compared as sent: a key spelt with escapes is not "status". */
                if (strncmp(key, "status\"", 7) == 0) {
                        char buf[256];
                        size_t len = 0;

                        if (*p == '"') {
                                r = scan_string(&p, buf, sizeof(buf), &len);
                                if (r == -ENOBUFS)
                                        return -ENOBUFS;
                                if (r < 0)
                                        return r;
                        } else if (*p == '-' || (*p >= '0' && *p <= '9')) {
                                while (is_number_char(p[len])) {
                                        if (len + 1 >= sizeof(buf))
                                                return -ENOBUFS;
                                        buf[len] = p[len];
                                        len++;
                                }
                                buf[len] = '\0';
                        } else if (strncmp(p, "null", 4) == 0)
                                return -ENOENT;
                        else
                                return -EBADMSG;

                        if (len + 1 > n)
                                return -ENOBUFS;
                        memcpy(ret_status, buf, len + 1);
                        return 0;
                }

                r = skip_value(&p);
                if (r < 0)
                        return r;
                p = skip_ws(p);
                if (*p == '}')
                        return -ENOENT;
                if (*p != ',')
                        return -EBADMSG;
                p++;
        }
}

bool sasl_status_is_token_error(const char *status) {
        return status && (strcmp(status, "401") == 0 || strcmp(status, "invalid_token") == 0);
}
