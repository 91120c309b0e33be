/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The client side of the SASL mechanisms an IMAP client uses (RFC 9051
 * §6.2.2 AUTHENTICATE, RFC 4959 SASL-IR), and the choice between them and
 * the LOGIN command. Pure code: no I/O, no global state.
 *
 *   PLAIN        RFC 4616: "\0" user "\0" password (authzid empty)
 *   XOAUTH2      Google / Microsoft: "user=" user ^A "auth=Bearer " token ^A ^A
 *   OAUTHBEARER  RFC 7628: "n,a=" saslname "," ^A "host=" host ^A "port=" port
 *                ^A "auth=Bearer " token ^A ^A
 *
 * A session authenticates like this:
 *
 *     r = sasl_choose(pref, &caps, tls_active, login_disabled, &mech);
 *     SASL_LOGIN:  LOGIN user password, the password through
 *                  imap_command_secret() (not SASL, nothing here to build)
 *     otherwise:   r = sasl_build_initial_base64(mech, user, secret, len, host, port, &b64);
 *                  sasl_ir_available(&caps) ?
 *                          "AUTHENTICATE " sasl_mech_to_string(mech) " " b64 :
 *                          "AUTHENTICATE " sasl_mech_to_string(mech), then b64
 *                          after the server's empty "+ " continuation;
 *                  b64 through imap_command_secret_raw(), then
 *                  sasl_free_secret(b64, strlen(b64)).
 *     A non-empty "+ <base64>" continuation after the response was sent is an
 *     error challenge: sasl_decode_challenge() it for the error message,
 *     sasl_challenge_status() to recognise an expired token, and answer with
 *     sasl_error_response(mech); the server then replies NO.
 *
 * Secrets: every buffer built here that holds a password or token is
 * returned with its length and must be released with sasl_free_secret(),
 * which wipes it. Intermediate copies are wiped before they are freed.
 */

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "imap-parser.h"

enum sasl_mech {
        SASL_PLAIN,             /* AUTHENTICATE PLAIN */
        SASL_LOGIN,             /* the LOGIN command (RFC 9051 §6.2.3), not AUTHENTICATE LOGIN */
        SASL_XOAUTH2,           /* AUTHENTICATE XOAUTH2 */
        SASL_OAUTHBEARER,       /* AUTHENTICATE OAUTHBEARER */
        _SASL_MECH_MAX,
        _SASL_MECH_INVALID = -EINVAL,
};

/* The configuration key "auth" (SPEC §3). */
enum sasl_mech_pref {
        SASL_MECH_PREF_AUTO,
        SASL_MECH_PREF_PLAIN,
        SASL_MECH_PREF_LOGIN,
        SASL_MECH_PREF_XOAUTH2,
        SASL_MECH_PREF_OAUTHBEARER,
        _SASL_MECH_PREF_MAX,
        _SASL_MECH_PREF_INVALID = -EINVAL,
};

/* Largest decoded challenge accepted by sasl_decode_challenge(), in bytes. */
#define SASL_CHALLENGE_MAX 4096

/* The mechanism name as sent after AUTHENTICATE: "PLAIN", "LOGIN",
 * "XOAUTH2", "OAUTHBEARER". NULL for values out of range. Static string. */
const char *sasl_mech_to_string(enum sasl_mech m);

/* "plain", "login", "xoauth2", "oauthbearer" in any ASCII case.
 * Returns the mechanism or _SASL_MECH_INVALID (-EINVAL); s may be NULL. */
enum sasl_mech sasl_mech_from_string(const char *s);

/* The configuration names: "auto", "plain", "login", "xoauth2",
 * "oauthbearer". to_string: static string, NULL out of range; from_string:
 * any ASCII case, _SASL_MECH_PREF_INVALID (-EINVAL) otherwise. */
const char *sasl_mech_pref_to_string(enum sasl_mech_pref p);
enum sasl_mech_pref sasl_mech_pref_from_string(const char *s);

/* true if the server offers SASL-IR (RFC 4959): the initial response may go
 * on the AUTHENTICATE line. caps is borrowed. */
bool sasl_ir_available(const struct imap_strv *caps);

/*
 * Picks how to authenticate, from the configured preference and the
 * server's capabilities (borrowed; the caller passes login_disabled ==
 * imap_strv_contains(caps, "LOGINDISABLED") or what it learnt otherwise).
 *
 *   auto         AUTHENTICATE PLAIN when AUTH=PLAIN is offered, else LOGIN
 *   plain, xoauth2, oauthbearer
 *                that mechanism when AUTH=<mech> is offered
 *   login        the LOGIN command
 *
 * Returns 0 and *ret, or:
 *   -EPERM            LOGINDISABLED without TLS: the server wants TLS before
 *                     any credential, so none is sent, whatever the mechanism
 *                     (RFC 9051 §6.2.3); or LOGIN is the only
 *                     candidate (login requested, or auto without AUTH=PLAIN)
 *                     and LOGINDISABLED is advertised
 *   -EPROTONOSUPPORT  the requested SASL mechanism is not advertised
 *   -EINVAL           pref out of range
 */
int sasl_choose(enum sasl_mech_pref pref, const struct imap_strv *caps, bool tls_active, bool login_disabled,
                enum sasl_mech *ret);

/*
 * Builds the initial client response of mechanism m (PLAIN, XOAUTH2 or
 * OAUTHBEARER), unencoded. user is the authentication identity (UTF-8);
 * secret[0 .. secret_len) the password (PLAIN) or access token (the OAuth
 * mechanisms); host and port go into OAUTHBEARER only (host NULL or "":
 * neither host nor port is sent; port 0: no port).
 *
 * Rejected with -EINVAL: SASL_LOGIN or an unknown m; user empty (except for
 * OAUTHBEARER, where an empty user gives an empty authzid "n,,"), not valid
 * UTF-8, or holding control characters; a secret that is empty or holds NUL
 * (PLAIN) or anything but printable ASCII without space (a bearer token,
 * RFC 6750 b64token is a subset: this catches a stray CR, a newline or a
 * "Bearer " prefix); a host that is not printable ASCII.
 *
 * On success *ret is a malloc'ed buffer of *ret_len bytes (NUL-terminated
 * for convenience, not counted; PLAIN contains NUL bytes), owned by the
 * caller, to be released with sasl_free_secret(*ret, *ret_len).
 * Returns 0, -EINVAL, -ENOMEM or -E2BIG.
 */
int sasl_build_initial(enum sasl_mech m, const char *user, const char *secret, size_t secret_len, const char *host,
                       uint16_t port, char **ret, size_t *ret_len);

/* Same, base64-encoded (RFC 4648) into a NUL-terminated string ready for the
 * wire; release with sasl_free_secret(*ret, strlen(*ret)). */
int sasl_build_initial_base64(enum sasl_mech m, const char *user, const char *secret, size_t secret_len,
                              const char *host, uint16_t port, char **ret);

/* Wipes len bytes at p (explicit_bzero) and frees p. Accepts NULL. */
void sasl_free_secret(char *p, size_t len);

/*
 * Strict base64 (RFC 4648 §4) decoding of s[0 .. len): the standard
 * alphabet, length a multiple of 4, '=' padding required and only at the
 * end, unused bits zero (canonical form), no whitespace or other bytes.
 * "" decodes to nothing. On success *ret is malloc'ed, owned by the caller,
 * holds *ret_len bytes and a NUL after them. Returns 0, -EINVAL or -ENOMEM.
 */
int imap_base64_decode(const char *s, size_t len, char **ret, size_t *ret_len);

/*
 * Decodes the base64 text of a server challenge ("+ <text>" continuation)
 * for use in an error message. At most SASL_CHALLENGE_MAX decoded bytes.
 * The result is made printable: ill-formed UTF-8 and NUL become U+FFFD, TAB,
 * CR and LF become spaces, other C0 controls, DEL and C1 controls become '?'.
 * On success *ret_text is a malloc'ed NUL-terminated string owned by the
 * caller. Returns 0, -EPROTO (not strict base64), -E2BIG or -ENOMEM.
 */
int sasl_decode_challenge(const char *b64, char **ret_text);

/* What the client sends after an error challenge, already base64 (a static
 * string): "" (an empty line) for XOAUTH2, "AQ==" (^A, RFC 7628 §3.2.3) for
 * OAUTHBEARER, "*" (cancel, RFC 9051 §6.2.2) for PLAIN, which has no
 * challenges; NULL for LOGIN and out-of-range values. */
const char *sasl_error_response(enum sasl_mech m);

/*
 * Finds the top-level "status" member of the JSON object in an error
 * challenge (decoded) and copies its value into ret_status (n bytes,
 * NUL-terminated): a string's contents (simple escapes and \u00XX for
 * printable ASCII decoded) or a number's text. A tolerant scanner, no JSON
 * library: whitespace anywhere between tokens, any member order, nested
 * values skipped, nothing after the status member is looked at.
 * Returns 0; -ENOENT when there is no status (or it is null); -EBADMSG when
 * the text is not a JSON object as far as it was read, or the status is
 * neither a string nor a number; -ENOBUFS when n is too small.
 * ret_status is written only on success.
 */
int sasl_challenge_status(const char *json, char *ret_status, size_t n);

/* true for the status values that mean the token was rejected and a fresh
 * one may help: "401" (Google, Microsoft XOAUTH2) and "invalid_token"
 * (RFC 7628 §3.2.2, RFC 6750 §3.1). */
bool sasl_status_is_token_error(const char *status);
