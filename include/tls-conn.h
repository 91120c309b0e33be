/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * One outgoing TCP connection, optionally TLS, on sd-event. Opaque I/O in
 * the manner of OpenSMTPD's ioev: the owner writes bytes and gets bytes,
 * "connected", "TLS ready" and one final "closed" through callbacks.
 *
 * - The host name is resolved off the event loop (resolve.h) and every
 *   address is tried in turn, each with the connect timeout.
 * - TLS through OpenSSL on the non-blocking socket: peer verified against the
 *   system store or ca_file, host name checked (an IP address literal is
 *   checked against the certificate's IP addresses and sent without SNI),
 *   SNI sent, TLS 1.2 minimum, optional pin "sha256:<hex>" of the leaf
 *   certificate (DER). The io source's mask follows SSL_ERROR_WANT_READ /
 *   WANT_WRITE; one function maps every SSL_get_error() result.
 * - Pin semantics (as isync and fetchmail): a mismatching pin always fails,
 *   even when the chain verifies; a matching pin is sufficient on its own,
 *   i.e. chain and host name failures are tolerated, which makes self-signed
 *   servers usable. Without a pin the chain and the name must verify.
 * - TCP keepalive and TCP_USER_TIMEOUT on every socket, so the kernel finds a
 *   dead peer without waking the process.
 * - Idle connections are small: SSL_MODE_RELEASE_BUFFERS, the read buffer is
 *   on the stack, the write buffer exists only while data is queued.
 *
 * Callbacks may call conn_free() on their connection; nothing touches it
 * after the callback returns.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <systemd/sd-event.h>

struct conn;

enum conn_error {
        CONN_ERROR_NONE,
        CONN_ERROR_RESOLVE,     /* host name not found / resolver failure */
        CONN_ERROR_CONNECT,     /* every address failed, not all by timing out */
        CONN_ERROR_TLS_VERIFY,  /* certificate, host name or pin rejected */
        CONN_ERROR_TLS,         /* other TLS failure (handshake, protocol) */
        CONN_ERROR_IO,          /* read/write error, reset */
        CONN_ERROR_EOF,         /* the peer closed the connection */
        CONN_ERROR_TIMEOUT,     /* every address timed out, or the handshake did */
        CONN_ERROR_OVERFLOW,    /* the output queue limit was exceeded */
        _CONN_ERROR_MAX,
};

const char *conn_error_to_string(enum conn_error e);

struct conn_config {
        const char *host;               /* name or address; copied */
        uint16_t port;
        bool tls;                       /* implicit TLS: handshake right after connect */
        const char *ca_file;            /* NULL: the system trust store; copied */
        const char *fingerprint;        /* NULL or "sha256:<64 hex>" (colons allowed); copied */
        const char *verify_name;        /* NULL: host; copied */
        uint64_t connect_timeout_usec;  /* per address, and for the TLS handshake; 0: 30 s */
        unsigned keepalive_idle_sec;    /* 0: 60 */
        unsigned keepalive_interval_sec;/* 0: 15 */
        unsigned keepalive_count;       /* 0: 4 */
        unsigned user_timeout_msec;     /* TCP_USER_TIMEOUT, 0: 120000 */
        size_t max_output;              /* queued bytes before CONN_ERROR_OVERFLOW, 0: 1 MiB */
        const char *log_prefix;         /* "work/INBOX: " for log lines; copied */
};

struct conn_callbacks {
        /* TCP is up and, with cfg->tls, the handshake is done and verified. */
        void (*connected)(struct conn *c, void *userdata);
        /* conn_start_tls() finished and the peer is verified. */
        void (*tls_ready)(struct conn *c, void *userdata);
        /* Bytes from the peer (plaintext). buf is valid during the call. */
        void (*data)(struct conn *c, const void *buf, size_t len, void *userdata);
        /* The connection is over (never called after conn_free()). message
         * is human-readable: OpenSSL's reason for TLS failures, the errno
         * text otherwise. The owner frees the connection. */
        void (*closed)(struct conn *c, enum conn_error error, int r, const char *message, void *userdata);
};

/* Starts resolving and connecting. cfg strings are copied. Returns 0 and
 * the connection, or -errno. */
int conn_new(sd_event *e, const struct conn_config *cfg, const struct conn_callbacks *cb, void *userdata,
             struct conn **ret);

/* Accepts NULL; returns NULL. Closes the socket without a TLS close_notify
 * wait and cancels a pending resolution. */
struct conn *conn_free(struct conn *c);

/* Queues bytes for sending. -ENOTCONN before "connected", -ENOBUFS past
 * max_output (the connection is then closed with CONN_ERROR_OVERFLOW). */
int conn_write(struct conn *c, const void *data, size_t len);

/* STARTTLS: begin the TLS handshake on the plain connection. Plaintext the
 * peer sent and that was not yet delivered is discarded; no data callback
 * is made until tls_ready. */
int conn_start_tls(struct conn *c);

bool conn_is_tls(const struct conn *c);
bool conn_is_loopback(const struct conn *c);   /* the connected peer is 127.0.0.0/8 or ::1 */
const char *conn_peer(const struct conn *c);    /* "127.0.0.1:993", "" before connect */

/* After a network change: true if the connection's local address is no
 * longer configured on any interface (the host was renumbered), so it can
 * never work again. False while connecting, for loopback, or when it cannot
 * tell. Asks the kernel (getifaddrs(), a local netlink dump). */
bool conn_local_address_gone(const struct conn *c);

/* Bytes the connection holds (TLS state, queues), for memory accounting. */
size_t conn_memory(const struct conn *c);

/* For tests and diagnostics: the socket, -1 when there is none. Do not read,
 * write or close it. */
int conn_fd(const struct conn *c);
