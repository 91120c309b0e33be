/* SPDX-License-Identifier: MIT */

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "imap-writer.h"
#include "macro.h"
#include "sasl.h"
#include "suites.h"

/* Builds m's initial response and checks it byte for byte, raw and base64. */
static void check_initial(enum sasl_mech m, const char *user, const char *secret, const char *host, uint16_t port,
                          const char *want, size_t want_len, const char *want_b64) {
        char *raw = NULL, *b64 = NULL;
        size_t len = 0;

        ck_assert_int_eq(sasl_build_initial(m, user, secret, strlen(secret), host, port, &raw, &len), 0);
        ck_assert_uint_eq(len, want_len);
        ck_assert_mem_eq(raw, want, want_len);
        ck_assert_int_eq(raw[len], '\0');
        sasl_free_secret(raw, len);

        ck_assert_int_eq(sasl_build_initial_base64(m, user, secret, strlen(secret), host, port, &b64), 0);
        if (want_b64)
                ck_assert_str_eq(b64, want_b64);
        else {
                char *enc = NULL;

                ck_assert_int_eq(imap_base64_encode(want, want_len, &enc), 0);
                ck_assert_str_eq(b64, enc);
                free(enc);
        }
        sasl_free_secret(b64, strlen(b64));
}

#define CHECK_INITIAL(m, user, secret, host, port, lit, b64) \
        check_initial(m, user, secret, host, port, lit, sizeof(lit) - 1, b64)

static int build(enum sasl_mech m, const char *user, const char *secret, size_t secret_len, const char *host,
                 uint16_t port) {
        char *raw = (char *) 0x1;
        size_t len = 12345;
        int r;

        r = sasl_build_initial(m, user, secret, secret_len, host, port, &raw, &len);
        if (r >= 0)
                sasl_free_secret(raw, len);
        else {
                /* ret_ parameters are written only on success */
                ck_assert_ptr_eq(raw, (char *) 0x1);
                ck_assert_uint_eq(len, 12345);
        }
        return r;
}

START_TEST(test_names) {
        ck_assert_str_eq(sasl_mech_to_string(SASL_PLAIN), "PLAIN");
        ck_assert_str_eq(sasl_mech_to_string(SASL_LOGIN), "LOGIN");
        ck_assert_str_eq(sasl_mech_to_string(SASL_XOAUTH2), "XOAUTH2");
        ck_assert_str_eq(sasl_mech_to_string(SASL_OAUTHBEARER), "OAUTHBEARER");
        ck_assert_ptr_null(sasl_mech_to_string(_SASL_MECH_MAX));
        ck_assert_ptr_null(sasl_mech_to_string(_SASL_MECH_INVALID));

        ck_assert_int_eq(sasl_mech_from_string("plain"), SASL_PLAIN);
        ck_assert_int_eq(sasl_mech_from_string("LOGIN"), SASL_LOGIN);
        ck_assert_int_eq(sasl_mech_from_string("XOauth2"), SASL_XOAUTH2);
        ck_assert_int_eq(sasl_mech_from_string("oauthbearer"), SASL_OAUTHBEARER);
        ck_assert_int_eq(sasl_mech_from_string("auto"), -EINVAL);
        ck_assert_int_eq(sasl_mech_from_string(""), -EINVAL);
        ck_assert_int_eq(sasl_mech_from_string("plain "), -EINVAL);
        ck_assert_int_eq(sasl_mech_from_string(NULL), -EINVAL);

        for (int i = 0; i < _SASL_MECH_MAX; i++)
                ck_assert_int_eq(sasl_mech_from_string(sasl_mech_to_string(i)), i);

        ck_assert_str_eq(sasl_mech_pref_to_string(SASL_MECH_PREF_AUTO), "auto");
        ck_assert_str_eq(sasl_mech_pref_to_string(SASL_MECH_PREF_OAUTHBEARER), "oauthbearer");
        ck_assert_ptr_null(sasl_mech_pref_to_string(_SASL_MECH_PREF_MAX));
        ck_assert_int_eq(sasl_mech_pref_from_string("Auto"), SASL_MECH_PREF_AUTO);
        ck_assert_int_eq(sasl_mech_pref_from_string("plain"), SASL_MECH_PREF_PLAIN);
        ck_assert_int_eq(sasl_mech_pref_from_string("login"), SASL_MECH_PREF_LOGIN);
        ck_assert_int_eq(sasl_mech_pref_from_string("XOAUTH2"), SASL_MECH_PREF_XOAUTH2);
        ck_assert_int_eq(sasl_mech_pref_from_string("oauthbearer"), SASL_MECH_PREF_OAUTHBEARER);
        ck_assert_int_eq(sasl_mech_pref_from_string("cram-md5"), -EINVAL);
        ck_assert_int_eq(sasl_mech_pref_from_string(NULL), -EINVAL);
        for (int i = 0; i < _SASL_MECH_PREF_MAX; i++)
                ck_assert_int_eq(sasl_mech_pref_from_string(sasl_mech_pref_to_string(i)), i);
}
END_TEST

START_TEST(test_plain) {
        /* RFC 4616 §4 example, without authzid */
        CHECK_INITIAL(SASL_PLAIN, "tim", "tanstaaftanstaaf", NULL, 0, "\0tim\0tanstaaftanstaaf",
                      "AHRpbQB0YW5zdGFhZnRhbnN0YWFm");
        /* UTF-8 and spaces pass through unchanged; host and port are ignored */
        CHECK_INITIAL(SASL_PLAIN, "j\xc3\xbcrgen@example.org", "p w=,\x01\xff", "imap.example.org", 993,
                      "\0j\xc3\xbcrgen@example.org\0p w=,\x01\xff", NULL);

        /* NUL inside the password, empty fields, bad user names */
        ck_assert_int_eq(build(SASL_PLAIN, "tim", "tan\0staaf", 9, NULL, 0), -EINVAL);
        ck_assert_int_eq(build(SASL_PLAIN, "tim", "", 0, NULL, 0), -EINVAL);
        ck_assert_int_eq(build(SASL_PLAIN, "", "secret", 6, NULL, 0), -EINVAL);
        ck_assert_int_eq(build(SASL_PLAIN, NULL, "secret", 6, NULL, 0), -EINVAL);
        ck_assert_int_eq(build(SASL_PLAIN, "ti\xffm", "secret", 6, NULL, 0), -EINVAL);
        ck_assert_int_eq(build(SASL_PLAIN, "ti\rm", "secret", 6, NULL, 0), -EINVAL);
        ck_assert_int_eq(build(SASL_PLAIN, "tim", NULL, 6, NULL, 0), -EINVAL);
        /* only the given length counts */
        ck_assert_int_eq(build(SASL_PLAIN, "tim", "secret\0", 6, NULL, 0), 0);

        /* LOGIN is a command, not a mechanism built here */
        ck_assert_int_eq(build(SASL_LOGIN, "tim", "secret", 6, NULL, 0), -EINVAL);
        ck_assert_int_eq(build(_SASL_MECH_MAX, "tim", "secret", 6, NULL, 0), -EINVAL);
        ck_assert_int_eq(build(_SASL_MECH_INVALID, "tim", "secret", 6, NULL, 0), -EINVAL);
}
END_TEST

START_TEST(test_xoauth2) {
        /* https://developers.google.com/gmail/imap/xoauth2-protocol */
        static const char want[] = "user=someuser@example.com\001auth=Bearer "
                                   "ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg\001\001";

        CHECK_INITIAL(SASL_XOAUTH2, "someuser@example.com", "ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg", NULL,
                      0, want,
                      "dXNlcj1zb21ldXNlckBleGFtcGxlLmNvbQFhdXRoPUJlYXJlciB5YTI5LnZGOWRmdDRxbVRjMk52YjNSbGNrQmhk"
                      "SFJoZG1semRHRXVZMjl0Q2cBAQ==");
        /* no escaping in XOAUTH2: ',' and '=' go as they are */
        CHECK_INITIAL(SASL_XOAUTH2, "a,b=c", "t-._~+/==", "h", 1,
                      "user=a,b=c\001auth=Bearer t-._~+/==\001\001", NULL);

        ck_assert_int_eq(build(SASL_XOAUTH2, "", "tok", 3, NULL, 0), -EINVAL);
        ck_assert_int_eq(build(SASL_XOAUTH2, "u\001ser", "tok", 3, NULL, 0), -EINVAL);
        ck_assert_int_eq(build(SASL_XOAUTH2, "user", "", 0, NULL, 0), -EINVAL);
        ck_assert_int_eq(build(SASL_XOAUTH2, "user", "to\001k", 4, NULL, 0), -EINVAL);
        ck_assert_int_eq(build(SASL_XOAUTH2, "user", "tok\r", 4, NULL, 0), -EINVAL);
        ck_assert_int_eq(build(SASL_XOAUTH2, "user", "tok\n", 4, NULL, 0), -EINVAL);
        ck_assert_int_eq(build(SASL_XOAUTH2, "user", "Bearer tok", 10, NULL, 0), -EINVAL);
        ck_assert_int_eq(build(SASL_XOAUTH2, "user", "t\0k", 3, NULL, 0), -EINVAL);
        ck_assert_int_eq(build(SASL_XOAUTH2, "user", "t\xc3\xbck", 4, NULL, 0), -EINVAL);
}
END_TEST

START_TEST(test_oauthbearer) {
        /* RFC 7628 §4.1 */
        static const char rfc[] = "n,a=user@example.com,\001host=server.example.com\001port=143\001"
                                  "auth=Bearer vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==\001\001";

        CHECK_INITIAL(SASL_OAUTHBEARER, "user@example.com", "vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==",
                      "server.example.com", 143, rfc,
                      "bixhPXVzZXJAZXhhbXBsZS5jb20sAWhvc3Q9c2VydmVyLmV4YW1wbGUuY29tAXBvcnQ9MTQzAWF1dGg9QmVhcmVy"
                      "IHZGOWRmdDRxbVRjMk52YjNSbGNrQmhiSFJoZG1semRHRXVZMjl0Q2c9PQEB");

        /* saslname escaping (RFC 5801 §4): ',' -> =2C, '=' -> =3D */
        CHECK_INITIAL(SASL_OAUTHBEARER, "a,b=c@x", "T", "imap.example.com", 993,
                      "n,a=a=2Cb=3Dc@x,\001host=imap.example.com\001port=993\001auth=Bearer T\001\001", NULL);
        CHECK_INITIAL(SASL_OAUTHBEARER, ",=,", "T", "h", 65535,
                      "n,a==2C=3D=2C,\001host=h\001port=65535\001auth=Bearer T\001\001", NULL);
        CHECK_INITIAL(SASL_OAUTHBEARER, "=2C", "T", "h", 1,
                      "n,a==3D2C,\001host=h\001port=1\001auth=Bearer T\001\001", NULL);
        /* UTF-8 user names are kept */
        CHECK_INITIAL(SASL_OAUTHBEARER, "\xc3\xa9t\xc3\xa9@x", "T", "h", 1,
                      "n,a=\xc3\xa9t\xc3\xa9@x,\001host=h\001port=1\001auth=Bearer T\001\001", NULL);

        /* empty authzid; no host (and then no port); no port */
        CHECK_INITIAL(SASL_OAUTHBEARER, "", "T", "h", 143, "n,,\001host=h\001port=143\001auth=Bearer T\001\001",
                      NULL);
        CHECK_INITIAL(SASL_OAUTHBEARER, NULL, "T", NULL, 143, "n,,\001auth=Bearer T\001\001", NULL);
        CHECK_INITIAL(SASL_OAUTHBEARER, "u", "T", "", 143, "n,a=u,\001auth=Bearer T\001\001", NULL);
        CHECK_INITIAL(SASL_OAUTHBEARER, "u", "T", "h", 0, "n,a=u,\001host=h\001auth=Bearer T\001\001", NULL);
        /* an IPv6 literal is VCHAR */
        CHECK_INITIAL(SASL_OAUTHBEARER, "u", "T", "::1", 993,
                      "n,a=u,\001host=::1\001port=993\001auth=Bearer T\001\001", NULL);

        ck_assert_int_eq(build(SASL_OAUTHBEARER, "u", "", 0, "h", 1), -EINVAL);
        ck_assert_int_eq(build(SASL_OAUTHBEARER, "u", "a b", 3, "h", 1), -EINVAL);
        ck_assert_int_eq(build(SASL_OAUTHBEARER, "u", "ab\001", 3, "h", 1), -EINVAL);
        ck_assert_int_eq(build(SASL_OAUTHBEARER, "u\001", "ab", 2, "h", 1), -EINVAL);
        ck_assert_int_eq(build(SASL_OAUTHBEARER, "u\xc3", "ab", 2, "h", 1), -EINVAL);
        ck_assert_int_eq(build(SASL_OAUTHBEARER, "u", "ab", 2, "h\001x", 1), -EINVAL);
        ck_assert_int_eq(build(SASL_OAUTHBEARER, "u", "ab", 2, "h x", 1), -EINVAL);
        ck_assert_int_eq(build(SASL_OAUTHBEARER, "u", "ab", 2, "h\xc3\xa9", 1), -EINVAL);
}
END_TEST

START_TEST(test_input_limits) {
        size_t big = 64 * 1024 + 1;
        char *s = malloc(big + 1);

        ck_assert_ptr_nonnull(s);
        memset(s, 'a', big);
        s[big] = '\0';
        ck_assert_int_eq(build(SASL_PLAIN, "u", s, big, NULL, 0), -E2BIG);
        ck_assert_int_eq(build(SASL_PLAIN, s, "p", 1, NULL, 0), -E2BIG);
        ck_assert_int_eq(build(SASL_OAUTHBEARER, "u", "t", 1, s, 1), -E2BIG);
        ck_assert_int_eq(build(SASL_XOAUTH2, "u", s, big - 1, NULL, 0), 0);
        free(s);
}
END_TEST

START_TEST(test_base64_decode) {
        static const struct {
                const char *in, *out;
                size_t out_len;
        } good[] = {
                { "", "", 0 },
                { "Zg==", "f", 1 },
                { "Zm8=", "fo", 2 },
                { "Zm9v", "foo", 3 },
                { "Zm9vYg==", "foob", 4 },
                { "Zm9vYmE=", "fooba", 5 },
                { "Zm9vYmFy", "foobar", 6 },
                { "AHRpbQB0YW5zdGFhZnRhbnN0YWFm", "\0tim\0tanstaaftanstaaf", 21 },
                { "+/+/", "\xfb\xff\xbf", 3 },
                { "AQ==", "\001", 1 },
        };
        static const char *const bad[] = {
                "Zg",           /* padding required */
                "Zg=",
                "Zm9vYg",
                "Zg===",
                "====",
                "Z===",
                "=Zg=",
                "Zg==Zg==",     /* padding only at the very end */
                "Zm=v",
                "Zh==",         /* unused bits set: not canonical */
                "Zm9=",
                "Zm 9v",        /* no whitespace */
                "Zm9v\r\n",
                " Zm9v",
                "Zm9v\t",
                "Zm-v",         /* base64url alphabet is not base64 */
                "Zm_v",
                "Zm9\x80",
                "A",
        };

        for (size_t i = 0; i < ELEMENTSOF(good); i++) {
                char *out = NULL;
                size_t len = 99;

                ck_assert_msg(imap_base64_decode(good[i].in, strlen(good[i].in), &out, &len) == 0, "%s",
                              good[i].in);
                ck_assert_uint_eq(len, good[i].out_len);
                ck_assert_mem_eq(out, good[i].out, len);
                ck_assert_int_eq(out[len], '\0');
                free(out);
        }
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                char *out = (char *) 0x1;
                size_t len = 99;

                ck_assert_msg(imap_base64_decode(bad[i], strlen(bad[i]), &out, &len) == -EINVAL, "%s", bad[i]);
                ck_assert_ptr_eq(out, (char *) 0x1);
                ck_assert_uint_eq(len, 99);
        }
        /* an embedded NUL within the given length */
        {
                char *out = NULL;
                size_t len;

                ck_assert_int_eq(imap_base64_decode("Zm\0v", 4, &out, &len), -EINVAL);
        }

        /* round trip of every byte value */
        {
                char all[256], *enc = NULL, *dec = NULL;
                size_t len;

                for (int i = 0; i < 256; i++)
                        all[i] = (char) i;
                for (size_t n = 0; n <= sizeof(all); n += 37) {
                        ck_assert_int_eq(imap_base64_encode(all + (256 - n), n, &enc), 0);
                        ck_assert_int_eq(imap_base64_decode(enc, strlen(enc), &dec, &len), 0);
                        ck_assert_uint_eq(len, n);
                        ck_assert_mem_eq(dec, all + (256 - n), n);
                        free(enc);
                        free(dec);
                }
        }
}
END_TEST

START_TEST(test_decode_challenge) {
        char *t = NULL;

        /* Google's documented XOAUTH2 failure (ends in a newline) */
        ck_assert_int_eq(sasl_decode_challenge("eyJzdGF0dXMiOiI0MDEiLCJzY2hlbWVzIjoiYmVhcmVyIG1hYyIsInNjb3BlIjoiaHR0"
                                               "cHM6Ly9tYWlsLmdvb2dsZS5jb20vIn0K",
                                               &t),
                         0);
        ck_assert_str_eq(t, "{\"status\":\"401\",\"schemes\":\"bearer mac\",\"scope\":\"https://mail.google.com/\"} ");
        free(t);

        /* RFC 7628 §4.3 */
        ck_assert_int_eq(sasl_decode_challenge("eyJzdGF0dXMiOiJpbnZhbGlkX3Rva2VuIiwic2NvcGUiOiJleGFtcGxlX3Njb3BlIiwi"
                                               "b3BlbmlkLWNvbmZpZ3VyYXRpb24iOiJodHRwczovL2V4YW1wbGUuY29tLy53ZWxsLWtu"
                                               "b3duL29wZW5pZC1jb25maWd1cmF0aW9uIn0=",
                                               &t),
                         0);
        ck_assert_str_eq(t, "{\"status\":\"invalid_token\",\"scope\":\"example_scope\",\"openid-configuration\":"
                            "\"https://example.com/.well-known/openid-configuration\"}");
        free(t);

        /* the empty challenge of a server without SASL-IR */
        ck_assert_int_eq(sasl_decode_challenge("", &t), 0);
        ck_assert_str_eq(t, "");
        free(t);

        /* "a\0b\x1b[2J\tc\xff\xc2\x85d\x7fe\r\n": NUL and ill-formed UTF-8 -> U+FFFD, ESC and
         * DEL -> ?, TAB CR LF -> space, NEL (a C1 control) -> ? */
        ck_assert_int_eq(sasl_decode_challenge("YQBiG1sySglj/8KFZH9lDQo=", &t), 0);
        ck_assert_str_eq(t, "a\xef\xbf\xbd" "b?[2J c\xef\xbf\xbd?d?e  ");
        free(t);

        /* not base64, or not strict base64 */
        t = (char *) 0x1;
        ck_assert_int_eq(sasl_decode_challenge("eyJzdGF0dXMiOiI0MDEifQ", &t), -EPROTO);
        ck_assert_int_eq(sasl_decode_challenge("eyJzdGF0dXMi OiI0MDEifQ==", &t), -EPROTO);
        ck_assert_int_eq(sasl_decode_challenge("not base64!", &t), -EPROTO);
        ck_assert_ptr_eq(t, (char *) 0x1);

        /* size bound: 4096 decoded bytes pass, 4097 do not */
        {
                char raw[SASL_CHALLENGE_MAX + 1], *enc = NULL;

                memset(raw, 'j', sizeof(raw));
                ck_assert_int_eq(imap_base64_encode(raw, SASL_CHALLENGE_MAX, &enc), 0);
                ck_assert_int_eq(sasl_decode_challenge(enc, &t), 0);
                ck_assert_uint_eq(strlen(t), SASL_CHALLENGE_MAX);
                free(t);
                free(enc);
                ck_assert_int_eq(imap_base64_encode(raw, SASL_CHALLENGE_MAX + 1, &enc), 0);
                t = (char *) 0x1;
                ck_assert_int_eq(sasl_decode_challenge(enc, &t), -E2BIG);
                ck_assert_ptr_eq(t, (char *) 0x1);
                free(enc);
        }
}
END_TEST

START_TEST(test_error_response) {
        ck_assert_str_eq(sasl_error_response(SASL_XOAUTH2), "");
        ck_assert_str_eq(sasl_error_response(SASL_OAUTHBEARER), "AQ==");
        ck_assert_str_eq(sasl_error_response(SASL_PLAIN), "*");
        ck_assert_ptr_null(sasl_error_response(SASL_LOGIN));
        ck_assert_ptr_null(sasl_error_response(_SASL_MECH_MAX));

        /* RFC 7628 §3.2.3: the dummy response is a single ^A */
        {
                char *out = NULL;
                size_t len;

                ck_assert_int_eq(imap_base64_decode("AQ==", 4, &out, &len), 0);
                ck_assert_uint_eq(len, 1);
                ck_assert_int_eq(out[0], '\001');
                free(out);
        }
}
END_TEST

START_TEST(test_challenge_status) {
        static const struct {
                const char *json, *status;
        } good[] = {
                { "{\"status\":\"401\",\"schemes\":\"bearer mac\",\"scope\":\"https://mail.google.com/\"}", "401" },
                { "{\"status\":\"401\",\"schemes\":\"bearer mac\",\"scope\":\"https://mail.google.com/\"}\n", "401" },
                { "  {  \"status\" :  \"401\" , \"scope\" : \"x\" }  ", "401" },
                { "{\n\t\"status\"\r\n:\n\"400\"\n}", "400" },
                /* other key order, nested values skipped */
                { "{\"schemes\":\"bearer\",\"scope\":\"https://mail.google.com/\",\"status\":\"401\"}", "401" },
                { "{\"scope\":[\"a\",\"b\",{\"status\":\"nested\"}],\"x\":{\"status\":\"no\",\"y\":[[1,2],{}]},"
                  "\"status\":\"invalid_token\"}",
                  "invalid_token" },
                { "{\"a\":true,\"b\":false,\"c\":null,\"d\":-1.5e3,\"status\":\"401\"}", "401" },
                /* a value that looks like the key does not count */
                { "{\"error\":\"status\",\"status\":\"403\"}", "403" },
                { "{\"xstatus\":\"1\",\"statusx\":\"2\",\"status\":\"3\"}", "3" },
                /* escapes in other strings and in the value */
                { "{\"msg\":\"say \\\"status\\\": \\\\\\\"no\\\"\",\"status\":\"4\\u0030\\/1\"}", "40/1" },
                /* status as a number */
                { "{\"status\":401}", "401" },
                { "{\"status\": 401 ,\"scope\":\"x\"}", "401" },
                { "{\"status\":-1}", "-1" },
                /* first occurrence wins; nothing after it is read */
                { "{\"status\":\"401\",\"status\":\"200\"}", "401" },
                { "{\"status\":\"401\", garbage", "401" },
                { "{\"status\":\"\"}", "" },
        };
        static const struct {
                const char *json;
                int r;
        } bad[] = {
                { "{}", -ENOENT },
                { " { } ", -ENOENT },
                { "{\"schemes\":\"bearer\",\"scope\":\"x\"}", -ENOENT },
                { "{\"x\":{\"status\":\"401\"}}", -ENOENT },
                { "{\"status\":null}", -ENOENT },
                { "{\"st\\u0061tus\":\"401\"}", -ENOENT },
                { "", -EBADMSG },
                { "401", -EBADMSG },
                { "[\"status\",\"401\"]", -EBADMSG },
                { "{\"status\"}", -EBADMSG },
                { "{\"status\":}", -EBADMSG },
                { "{\"status\":\"401", -EBADMSG },
                { "{\"status\":true}", -EBADMSG },
                { "{\"status\":{\"code\":401}}", -EBADMSG },
                { "{\"status\":\"\\u0000\"}", -EBADMSG },
                { "{\"status\":\"\\x41\"}", -EBADMSG },
                { "{\"a\":\"b\" \"status\":\"401\"}", -EBADMSG },
                { "{\"a\":{\"b\":1,\"status\":\"401\"}", -EBADMSG },
                { "{\"a\":\"unterminated", -EBADMSG },
                { "{\"a\":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[", -EBADMSG },
                { "{status:\"401\"}", -EBADMSG },
        };
        char buf[32];

        for (size_t i = 0; i < ELEMENTSOF(good); i++) {
                memset(buf, 'Z', sizeof(buf));
                ck_assert_msg(sasl_challenge_status(good[i].json, buf, sizeof(buf)) == 0, "%s", good[i].json);
                ck_assert_str_eq(buf, good[i].status);
        }
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                strcpy(buf, "untouched");
                ck_assert_msg(sasl_challenge_status(bad[i].json, buf, sizeof(buf)) == bad[i].r, "%s -> %d",
                              bad[i].json, sasl_challenge_status(bad[i].json, buf, sizeof(buf)));
                ck_assert_str_eq(buf, "untouched");
        }

        /* buffer sizes */
        ck_assert_int_eq(sasl_challenge_status("{\"status\":\"401\"}", buf, 4), 0);
        ck_assert_str_eq(buf, "401");
        strcpy(buf, "untouched");
        ck_assert_int_eq(sasl_challenge_status("{\"status\":\"401\"}", buf, 3), -ENOBUFS);
        ck_assert_int_eq(sasl_challenge_status("{\"status\":40100}", buf, 5), -ENOBUFS);
        ck_assert_str_eq(buf, "untouched");
        {
                char json[600];

                strcpy(json, "{\"status\":\"");
                memset(json + strlen(json), '7', 400);
                strcpy(json + 11 + 400, "\"}");
                ck_assert_int_eq(sasl_challenge_status(json, buf, sizeof(buf)), -ENOBUFS);
        }

        ck_assert(sasl_status_is_token_error("401"));
        ck_assert(sasl_status_is_token_error("invalid_token"));
        ck_assert(!sasl_status_is_token_error("400"));
        ck_assert(!sasl_status_is_token_error("4011"));
        ck_assert(!sasl_status_is_token_error(""));
        ck_assert(!sasl_status_is_token_error(NULL));
}
END_TEST

/* ---- sasl_choose ---------------------------------------------------------- */

#define CAPS(...)                                                                                       \
        (&(struct imap_strv) {                                                                           \
                .v = (const char *const[]) { __VA_ARGS__ },                                              \
                .n = sizeof((const char *const[]) { __VA_ARGS__ }) / sizeof(const char *),              \
        })

static int choose(enum sasl_mech_pref pref, const struct imap_strv *caps, bool tls, bool login_disabled) {
        enum sasl_mech m = (enum sasl_mech) 77;
        int r;

        r = sasl_choose(pref, caps, tls, login_disabled, &m);
        if (r < 0) {
                ck_assert_int_eq(m, 77);
                return r;
        }
        ck_assert_int_eq(r, 0);
        return (int) m;
}

START_TEST(test_choose) {
        const struct imap_strv *none = &(struct imap_strv) {};
        const struct imap_strv *plain = CAPS("IMAP4rev1", "SASL-IR", "auth=plain");
        const struct imap_strv *oauth = CAPS("IMAP4rev1", "AUTH=XOAUTH2", "AUTH=OAUTHBEARER");
        const struct imap_strv *all = CAPS("IMAP4rev1", "AUTH=PLAIN", "AUTH=XOAUTH2", "AUTH=OAUTHBEARER");
        const struct imap_strv *ld = CAPS("IMAP4rev1", "STARTTLS", "LOGINDISABLED");
        const struct imap_strv *ld_plain = CAPS("IMAP4rev1", "LOGINDISABLED", "AUTH=PLAIN", "AUTH=XOAUTH2");
        /* AUTH=PLAINX is not AUTH=PLAIN */
        const struct imap_strv *lookalike = CAPS("AUTH=PLAINX", "AUTH=XOAUTH", "XAUTH=PLAIN", "AUTH=OAUTHBEARER2");

        for (int tls = 0; tls <= 1; tls++) {
                /* auto */
                ck_assert_int_eq(choose(SASL_MECH_PREF_AUTO, plain, tls, false), SASL_PLAIN);
                ck_assert_int_eq(choose(SASL_MECH_PREF_AUTO, all, tls, false), SASL_PLAIN);
                ck_assert_int_eq(choose(SASL_MECH_PREF_AUTO, none, tls, false), SASL_LOGIN);
                ck_assert_int_eq(choose(SASL_MECH_PREF_AUTO, oauth, tls, false), SASL_LOGIN);
                ck_assert_int_eq(choose(SASL_MECH_PREF_AUTO, lookalike, tls, false), SASL_LOGIN);
                ck_assert_int_eq(choose(SASL_MECH_PREF_AUTO, ld, tls, true), -EPERM);
                ck_assert_int_eq(choose(SASL_MECH_PREF_AUTO, ld_plain, tls, true), tls ? SASL_PLAIN : -EPERM);

                /* login */
                ck_assert_int_eq(choose(SASL_MECH_PREF_LOGIN, none, tls, false), SASL_LOGIN);
                ck_assert_int_eq(choose(SASL_MECH_PREF_LOGIN, all, tls, false), SASL_LOGIN);
                ck_assert_int_eq(choose(SASL_MECH_PREF_LOGIN, ld, tls, true), -EPERM);
                ck_assert_int_eq(choose(SASL_MECH_PREF_LOGIN, ld_plain, tls, true), -EPERM);

                /* explicit SASL mechanisms */
                ck_assert_int_eq(choose(SASL_MECH_PREF_PLAIN, plain, tls, false), SASL_PLAIN);
                ck_assert_int_eq(choose(SASL_MECH_PREF_PLAIN, none, tls, false), -EPROTONOSUPPORT);
                ck_assert_int_eq(choose(SASL_MECH_PREF_PLAIN, oauth, tls, false), -EPROTONOSUPPORT);
                ck_assert_int_eq(choose(SASL_MECH_PREF_PLAIN, lookalike, tls, false), -EPROTONOSUPPORT);
                ck_assert_int_eq(choose(SASL_MECH_PREF_PLAIN, ld_plain, tls, true), tls ? SASL_PLAIN : -EPERM);

                ck_assert_int_eq(choose(SASL_MECH_PREF_XOAUTH2, oauth, tls, false), SASL_XOAUTH2);
                ck_assert_int_eq(choose(SASL_MECH_PREF_XOAUTH2, all, tls, false), SASL_XOAUTH2);
                ck_assert_int_eq(choose(SASL_MECH_PREF_XOAUTH2, plain, tls, false), -EPROTONOSUPPORT);
                ck_assert_int_eq(choose(SASL_MECH_PREF_XOAUTH2, none, tls, false), -EPROTONOSUPPORT);
                ck_assert_int_eq(choose(SASL_MECH_PREF_XOAUTH2, lookalike, tls, false), -EPROTONOSUPPORT);
                ck_assert_int_eq(choose(SASL_MECH_PREF_XOAUTH2, ld_plain, tls, true), tls ? SASL_XOAUTH2 : -EPERM);

                ck_assert_int_eq(choose(SASL_MECH_PREF_OAUTHBEARER, oauth, tls, false), SASL_OAUTHBEARER);
                ck_assert_int_eq(choose(SASL_MECH_PREF_OAUTHBEARER, all, tls, false), SASL_OAUTHBEARER);
                ck_assert_int_eq(choose(SASL_MECH_PREF_OAUTHBEARER, plain, tls, false), -EPROTONOSUPPORT);
                ck_assert_int_eq(choose(SASL_MECH_PREF_OAUTHBEARER, lookalike, tls, false), -EPROTONOSUPPORT);
                ck_assert_int_eq(choose(SASL_MECH_PREF_OAUTHBEARER, ld_plain, tls, true),
                                 tls ? -EPROTONOSUPPORT : -EPERM);

                /* LOGINDISABLED without TLS: no credential at all */
                for (int p = 0; p < _SASL_MECH_PREF_MAX; p++)
                        ck_assert_int_eq(choose(p, all, false, true), -EPERM);
        }

        ck_assert_int_eq(choose(_SASL_MECH_PREF_MAX, all, true, false), -EINVAL);
        ck_assert_int_eq(choose(_SASL_MECH_PREF_INVALID, all, true, false), -EINVAL);

        ck_assert(sasl_ir_available(plain));
        ck_assert(sasl_ir_available(CAPS("sasl-ir")));
        ck_assert(!sasl_ir_available(all));
        ck_assert(!sasl_ir_available(none));
        ck_assert(!sasl_ir_available(CAPS("SASL-IRX", "X-SASL-IR")));
}
END_TEST

Suite *sasl_suite(void) {
        Suite *s = suite_create("sasl");
        TCase *tc = tcase_create("mechanisms");

        tcase_add_test(tc, test_names);
        tcase_add_test(tc, test_plain);
        tcase_add_test(tc, test_xoauth2);
        tcase_add_test(tc, test_oauthbearer);
        tcase_add_test(tc, test_input_limits);
        suite_add_tcase(s, tc);

        tc = tcase_create("challenges");
        tcase_add_test(tc, test_base64_decode);
        tcase_add_test(tc, test_decode_challenge);
        tcase_add_test(tc, test_error_response);
        tcase_add_test(tc, test_challenge_status);
        suite_add_tcase(s, tc);

        tc = tcase_create("choose");
        tcase_add_test(tc, test_choose);
        suite_add_tcase(s, tc);
        return s;
}
