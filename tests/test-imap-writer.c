/* SPDX-License-Identifier: MIT */

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "imap-writer.h"
#include "suites.h"

static char *trace(const struct imap_command *c) {
        char *t = NULL;

        ck_assert_int_eq(imap_command_trace(c, &t), 0);
        return t;
}

START_TEST(test_tags_and_atoms) {
        struct imap_writer w;
        struct imap_command c;

        imap_writer_init(&w);
        imap_command_begin(&w, &c, "CAPABILITY");
        ck_assert_int_eq(imap_command_end(&c), 0);
        ck_assert_str_eq(c.data, "a1 CAPABILITY\r\n");
        ck_assert_str_eq(c.tag, "a1");
        imap_command_done(&c);

        imap_command_begin(&w, &c, "UID FETCH");
        imap_command_raw(&c, "1:*");
        imap_command_raw(&c, "(UID FLAGS)");
        imap_command_number(&c, 18446744073709551615ull);
        ck_assert_int_eq(imap_command_end(&c), 0);
        ck_assert_str_eq(c.data, "a2 UID FETCH 1:* (UID FLAGS) 18446744073709551615\r\n");
        imap_command_done(&c);

        /* lists: no space after "(", ")" appended */
        imap_command_begin(&w, &c, "NOTIFY SET");
        imap_command_raw(&c, "(MAILBOXES (");
        imap_command_astring(&w, &c, "a b", 3);
        imap_command_astring(&w, &c, "c", 1);
        imap_command_append(&c, ")");
        imap_command_raw(&c, "(MessageNew))");
        ck_assert_int_eq(imap_command_end(&c), 0);
        ck_assert_str_eq(c.data, "a3 NOTIFY SET (MAILBOXES (\"a b\" c) (MessageNew))\r\n");
        imap_command_done(&c);

        imap_command_begin(&w, &c, "UID  FETCH");
        ck_assert_int_eq(imap_command_end(&c), -EINVAL);
        imap_command_done(&c);
        imap_command_begin(&w, &c, "X");
        imap_command_atom(&c, "a b");
        ck_assert_int_eq(imap_command_end(&c), -EINVAL);
        imap_command_done(&c);
        imap_command_begin(&w, &c, "X");
        imap_command_raw(&c, "a\r\nb OK");
        ck_assert_int_eq(imap_command_end(&c), -EINVAL);
        imap_command_done(&c);
}
END_TEST

START_TEST(test_astring_choice) {
        struct imap_writer w;
        struct imap_command c;

        imap_writer_init(&w);
        imap_command_begin(&w, &c, "X");
        imap_command_astring(&w, &c, "plain", 5);
        imap_command_astring(&w, &c, "two words", 9);
        imap_command_astring(&w, &c, "q\"b\\s", 5);
        imap_command_astring(&w, &c, "", 0);
        imap_command_astring(&w, &c, "NIL", 3);
        imap_command_astring(&w, &c, "a]b", 3);
        imap_command_astring(&w, &c, "p(x)", 4);
        imap_command_string(&w, &c, "atom", 4);
        ck_assert_int_eq(imap_command_end(&c), 0);
        ck_assert_str_eq(c.data, "a1 X plain \"two words\" \"q\\\"b\\\\s\" \"\" \"NIL\" a]b \"p(x)\" \"atom\"\r\n");
        ck_assert_uint_eq(c.n_sync, 0);
        imap_command_done(&c);

        /* NUL cannot be sent */
        imap_command_begin(&w, &c, "X");
        imap_command_astring(&w, &c, "a\0b", 3);
        ck_assert_int_eq(imap_command_end(&c), -EINVAL);
        imap_command_done(&c);
}
END_TEST

START_TEST(test_literals) {
        struct imap_writer w;
        struct imap_command c;

        /* 8-bit without UTF8=ACCEPT: synchronizing literal */
        imap_writer_init(&w);
        imap_command_begin(&w, &c, "LOGIN");
        imap_command_astring(&w, &c, "j\xc3\xb6rg", 5);
        imap_command_astring(&w, &c, "line\r\nbreak", 11);
        ck_assert_int_eq(imap_command_end(&c), 0);
        ck_assert_str_eq(c.data, "a1 LOGIN {5}\r\nj\xc3\xb6rg {11}\r\nline\r\nbreak\r\n");
        ck_assert_uint_eq(c.n_sync, 2);
        ck_assert_uint_eq(c.sync[0], strlen("a1 LOGIN {5}\r\n"));
        ck_assert_uint_eq(c.sync[1], strlen("a1 LOGIN {5}\r\nj\xc3\xb6rg {11}\r\n"));
        imap_command_done(&c);

        /* LITERAL+: no waiting */
        w.literal_plus = true;
        imap_command_begin(&w, &c, "LOGIN");
        imap_command_astring(&w, &c, "j\xc3\xb6rg", 5);
        ck_assert_int_eq(imap_command_end(&c), 0);
        ck_assert_str_eq(c.data, "a2 LOGIN {5+}\r\nj\xc3\xb6rg\r\n");
        ck_assert_uint_eq(c.n_sync, 0);
        imap_command_done(&c);

        /* LITERAL-: non-synchronizing only up to 4096 bytes */
        w.literal_plus = false;
        w.literal_minus = true;
        char *big = malloc(5000);
        memset(big, 0x80, 5000);
        imap_command_begin(&w, &c, "X");
        imap_command_astring(&w, &c, big, 4096);
        imap_command_astring(&w, &c, big, 4097);
        ck_assert_int_eq(imap_command_end(&c), 0);
        ck_assert(strncmp(c.data, "a3 X {4096+}\r\n", 14) == 0);
        ck_assert_uint_eq(c.n_sync, 1);
        ck_assert(strncmp(c.data + 14 + 4096, " {4097}\r\n", 9) == 0);
        imap_command_done(&c);
        free(big);

        /* UTF8=ACCEPT: quoted UTF-8, but invalid UTF-8 still goes as a literal */
        w.literal_minus = false;
        w.utf8 = true;
        imap_command_begin(&w, &c, "X");
        imap_command_astring(&w, &c, "caf\xc3\xa9", 5);
        imap_command_astring(&w, &c, "bad\xff", 4);
        ck_assert_int_eq(imap_command_end(&c), 0);
        ck_assert_str_eq(c.data, "a4 X \"caf\xc3\xa9\" {4}\r\nbad\xff\r\n");
        imap_command_done(&c);
}
END_TEST

START_TEST(test_mailbox) {
        struct imap_writer w;
        struct imap_command c;

        imap_writer_init(&w);
        imap_command_begin(&w, &c, "EXAMINE");
        imap_command_mailbox(&w, &c, "inbox");
        imap_command_mailbox(&w, &c, "~peter/mail/\xe5\x8f\xb0\xe5\x8c\x97/\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e");
        imap_command_mailbox(&w, &c, "Lists/linux & co");
        ck_assert_int_eq(imap_command_end(&c), 0);
        ck_assert_str_eq(c.data, "a1 EXAMINE INBOX ~peter/mail/&U,BTFw-/&ZeVnLIqe- \"Lists/linux &- co\"\r\n");
        imap_command_done(&c);

        imap_command_begin(&w, &c, "EXAMINE");
        imap_command_mailbox(&w, &c, "bad\xff");
        ck_assert_int_eq(imap_command_end(&c), -EILSEQ);
        imap_command_done(&c);
}
END_TEST

START_TEST(test_trace_redacts) {
        struct imap_writer w;
        struct imap_command c;
        char *t;

        imap_writer_init(&w);
        imap_command_begin(&w, &c, "LOGIN");
        imap_command_astring(&w, &c, "me@example.com", 14);
        imap_command_secret(&w, &c, "hunter2 with space", 18);
        ck_assert_int_eq(imap_command_end(&c), 0);
        ck_assert_str_eq(c.data, "a1 LOGIN me@example.com \"hunter2 with space\"\r\n");
        t = trace(&c);
        ck_assert_str_eq(t, "a1 LOGIN me@example.com <redacted>");
        ck_assert_ptr_null(strstr(t, "hunter2"));
        free(t);
        imap_command_done(&c);
        ck_assert_ptr_null(c.data);

        /* a secret that must go as a literal is redacted with its header */
        imap_command_begin(&w, &c, "LOGIN");
        imap_command_astring(&w, &c, "u", 1);
        imap_command_secret(&w, &c, "p\xc3\xa4ss", 5);
        ck_assert_int_eq(imap_command_end(&c), 0);
        t = trace(&c);
        ck_assert_str_eq(t, "a2 LOGIN u <redacted>");
        free(t);
        imap_command_done(&c);

        /* SASL-IR */
        char *b64;
        ck_assert_int_eq(imap_base64_encode("\0user\0secret", 12, &b64), 0);
        ck_assert_str_eq(b64, "AHVzZXIAc2VjcmV0");
        imap_command_begin(&w, &c, "AUTHENTICATE");
        imap_command_atom(&c, "PLAIN");
        imap_command_secret_raw(&c, b64, strlen(b64));
        ck_assert_int_eq(imap_command_end(&c), 0);
        ck_assert_str_eq(c.data, "a3 AUTHENTICATE PLAIN AHVzZXIAc2VjcmV0\r\n");
        t = trace(&c);
        ck_assert_str_eq(t, "a3 AUTHENTICATE PLAIN <redacted>");
        free(t);
        imap_command_done(&c);

        /* a continuation line carrying a SASL response */
        imap_command_begin_continuation(&c);
        imap_command_secret_raw(&c, b64, strlen(b64));
        ck_assert_int_eq(imap_command_end(&c), 0);
        ck_assert_str_eq(c.data, "AHVzZXIAc2VjcmV0\r\n");
        t = trace(&c);
        ck_assert_str_eq(t, "<redacted>");
        free(t);
        imap_command_done(&c);
        free(b64);
}
END_TEST

START_TEST(test_base64) {
        static const struct {
                const char *in, *out;
        } v[] = {
                { "", "" }, { "f", "Zg==" }, { "fo", "Zm8=" }, { "foo", "Zm9v" },
                { "foob", "Zm9vYg==" }, { "fooba", "Zm9vYmE=" }, { "foobar", "Zm9vYmFy" },
        };
        for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
                char *o;

                ck_assert_int_eq(imap_base64_encode(v[i].in, strlen(v[i].in), &o), 0);
                ck_assert_str_eq(o, v[i].out);
                free(o);
        }
}
END_TEST

Suite *imap_writer_suite(void) {
        Suite *s = suite_create("imap-writer");
        TCase *tc = tcase_create("commands");

        tcase_add_test(tc, test_tags_and_atoms);
        tcase_add_test(tc, test_astring_choice);
        tcase_add_test(tc, test_literals);
        tcase_add_test(tc, test_mailbox);
        tcase_add_test(tc, test_trace_redacts);
        tcase_add_test(tc, test_base64);
        suite_add_tcase(s, tc);
        return s;
}
