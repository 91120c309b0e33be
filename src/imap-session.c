/* SPDX-License-Identifier: MIT */
/*
 * The session state machine: connection, greeting, capabilities, STARTTLS,
 * authentication, and reconnects with backoff. Mailbox sync and IDLE are in
 * imap-sync.c.
 *
 *   STOPPED -> CONNECTING -> GREETING -> CAPABILITY -> [STARTTLS -> CAPABILITY]
 *           -> AUTHENTICATING -> ENABLING -> EXAMINING -> SYNCING -> IDLE
 *   any failure -> BACKOFF (transient) or ERROR (needs the user) -> CONNECTING
 *
 * One command is in flight at a time. Untagged responses are handled in
 * every state (imap-sync.c). The greeting and every command have a timeout,
 * except IDLE after its continuation.
 */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>

#include "imap-session-internal.h"

#define DEFAULT_IDLE_REFRESH_USEC (25ULL * 60 * 1000000)
#define DEFAULT_COMMAND_TIMEOUT_USEC (60ULL * 1000000)
#define DEFAULT_CONNECT_TIMEOUT_USEC (30ULL * 1000000)
#define DEFAULT_BACKOFF_MIN_USEC (1ULL * 1000000)
#define DEFAULT_BACKOFF_MAX_USEC (5ULL * 60 * 1000000)
#define DEFAULT_AUTH_BACKOFF_MIN_USEC (60ULL * 1000000)
#define DEFAULT_STABLE_USEC (60ULL * 1000000)
#define DEFAULT_POLL_INTERVAL_USEC (5ULL * 60 * 1000000)
#define AUTH_BACKOFF_MAX_USEC (30ULL * 60 * 1000000)
#define LOGOUT_TIMEOUT_USEC (2ULL * 1000000)
#define TRACE_LINE_MAX 300

static const char *const state_names[_SESSION_STATE_MAX] = {
        [SESSION_STOPPED] = "stopped",
        [SESSION_CONNECTING] = "connecting",
        [SESSION_GREETING] = "greeting",
        [SESSION_CAPABILITY] = "capability",
        [SESSION_STARTTLS] = "starttls",
        [SESSION_AUTHENTICATING] = "authenticating",
        [SESSION_ENABLING] = "enabling",
        [SESSION_EXAMINING] = "examining",
        [SESSION_SYNCING] = "syncing",
        [SESSION_IDLE] = "idle",
        [SESSION_LOGOUT] = "logout",
        [SESSION_BACKOFF] = "backoff",
        [SESSION_ERROR] = "error",
};

static const char *const state_public[_SESSION_STATE_MAX] = {
        [SESSION_STOPPED] = "offline",
        [SESSION_CONNECTING] = "connecting",
        [SESSION_GREETING] = "connecting",
        [SESSION_CAPABILITY] = "connecting",
        [SESSION_STARTTLS] = "connecting",
        [SESSION_AUTHENTICATING] = "authenticating",
        [SESSION_ENABLING] = "syncing",
        [SESSION_EXAMINING] = "syncing",
        [SESSION_SYNCING] = "syncing",
        [SESSION_IDLE] = "idle",
        [SESSION_LOGOUT] = "offline",
        [SESSION_BACKOFF] = "backoff",
        [SESSION_ERROR] = "error",
};

const char *session_state_to_string(enum session_state s) {
        return (unsigned) s < _SESSION_STATE_MAX ? state_names[s] : NULL;
}

const char *session_state_to_public(enum session_state s) {
        return (unsigned) s < _SESSION_STATE_MAX ? state_public[s] : NULL;
}

static uint64_t now_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000 + (uint64_t) ts.tv_nsec / 1000;
}

static void session_connect(struct imap_session *s);
static void session_really_free(struct imap_session *s);

/* ---- dispatch guard ------------------------------------------------------ */

/* Every entry from the event loop holds the session, so that an owner
 * callback may free it: the memory goes when the outermost entry returns. */
static void session_hold(struct imap_session *s) {
        s->busy++;
}

static bool session_release(struct imap_session *s) {
        if (--s->busy == 0 && s->dead) {
                session_really_free(s);
                return false;
        }
        return !s->dead;
}

/* ---- state --------------------------------------------------------------- */

void session_set_state(struct imap_session *s, enum session_state state) {
        enum session_state old = s->state;

        if (old == state)
                return;
        s->state = state;
        session_log(s, LOG_DEBUG, 0, "%s -> %s", state_names[old], state_names[state]);
        if (s->cb.state_changed && !s->dead)
                s->cb.state_changed(s, old, state, s->userdata);
}

bool session_has_cap(const struct imap_session *s, const char *cap) {
        for (size_t i = 0; i < s->n_caps; i++)
                if (strcasecmp(s->caps[i], cap) == 0)
                        return true;
        return false;
}

static void caps_clear(struct imap_session *s) {
        for (size_t i = 0; i < s->n_caps; i++)
                free(s->caps[i]);
        free(s->caps);
        s->caps = NULL;
        s->n_caps = 0;
        s->have_caps = false;
}

static int caps_set(struct imap_session *s, const struct imap_strv *sv) {
        char **v;

        caps_clear(s);
        v = calloc(sv->n + 1, sizeof(char *));
        if (!v)
                return -ENOMEM;
        for (size_t i = 0; i < sv->n; i++) {
                v[i] = strdup(sv->v[i]);
                if (!v[i]) {
                        for (size_t j = 0; j < i; j++)
                                free(v[j]);
                        free(v);
                        return -ENOMEM;
                }
        }
        s->caps = v;
        s->n_caps = sv->n;
        s->have_caps = true;
        return 0;
}

static void wipe_secret(struct imap_session *s) {
        if (s->secret) {
                explicit_bzero(s->secret, s->secret_len);
                free(s->secret);
        }
        s->secret = NULL;
        s->secret_len = 0;
}

/* Forget everything that belongs to one connection. */
static void disconnect(struct imap_session *s) {
        s->conn = conn_free(s->conn);
        s->parser = imap_parser_free(s->parser);
        s->cmd_timer = sd_event_source_disable_unref(s->cmd_timer);
        s->refresh_timer = sd_event_source_disable_unref(s->refresh_timer);
        imap_command_done(&s->pending);
        s->pending_off = 0;
        s->pending_sync = 0;
        s->on_done = NULL;
        s->tag[0] = '\0';
        s->tls_active = false;
        s->discard_input = false;
        s->idle_sent = s->idling = s->done_sent = false;
        s->secret_requested = false;
        s->auth_challenge_answered = false;
        free(s->bye_text);
        s->bye_text = NULL;
        wipe_secret(s);
        caps_clear(s);
        sync_reset_connection(s);
        s->connected_at = 0;
}

/* The end of imap_session_stop(): STOPPED, then the owner's callback. */
static void finish_stop(struct imap_session *s) {
        void (*done)(struct imap_session *, void *) = s->stop_done;

        s->stop_done = NULL;
        s->stop_timer = sd_event_source_disable_unref(s->stop_timer);
        disconnect(s);
        session_set_state(s, SESSION_STOPPED);
        if (done && !s->dead)
                done(s, s->userdata);
}

/* ---- backoff ------------------------------------------------------------- */

static uint64_t jitter(uint64_t d) {
        uint64_t r = 0;

        /* uniform in [d/2, d]: spreads reconnects of many sessions */
        if (getrandom(&r, sizeof(r), GRND_NONBLOCK) != sizeof(r))
                r = now_usec() * 2654435761u;
        return d / 2 + (d / 2 ? r % (d / 2 + 1) : 0);
}

static int on_backoff_timer(sd_event_source *es, uint64_t usec, void *userdata) {
        struct imap_session *s = userdata;

        session_hold(s);
        s->backoff_timer = sd_event_source_disable_unref(s->backoff_timer);
        session_connect(s);
        session_release(s);
        return 0;
}

static void schedule_reconnect(struct imap_session *s, enum session_state kind) {
        uint64_t base, max, d;
        unsigned *n;
        int r;

        if (kind == SESSION_ERROR) {
                base = s->cfg.auth_backoff_min_usec;
                max = AUTH_BACKOFF_MAX_USEC > base ? AUTH_BACKOFF_MAX_USEC : base;
                n = &s->auth_attempts;
        } else {
                base = s->cfg.backoff_min_usec;
                max = s->cfg.backoff_max_usec;
                n = &s->attempts;
        }
        d = base;
        for (unsigned i = 0; i < *n && d < max; i++)
                d *= 2;
        if (d > max)
                d = max;
        (*n)++;
        s->backoff_usec = jitter(d);

        session_set_state(s, kind);
        s->backoff_timer = sd_event_source_disable_unref(s->backoff_timer);
        r = sd_event_add_time_relative(s->event, &s->backoff_timer, CLOCK_BOOTTIME, s->backoff_usec, 0,
                                       on_backoff_timer, s);
        if (r < 0)
                session_log(s, LOG_ERR, r, "cannot arm the reconnect timer: %m");
        else
                session_log(s, LOG_INFO, 0, "reconnecting in %.1f s", (double) s->backoff_usec / 1e6);
}

/* A failure of this connection. kind is SESSION_BACKOFF (retry soon) or
 * SESSION_ERROR (needs the user: slow retries). Returns r. */
int session_fail(struct imap_session *s, enum session_state kind, int r, const char *fmt, ...) {
        bool stable;
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(s->last_error, sizeof(s->last_error), fmt, ap);
        va_end(ap);

        stable = s->connected_at && now_usec() - s->connected_at >= s->cfg.stable_usec;
        if (stable)
                s->attempts = 0;
        /* a working login clears the slow schedule */
        if (kind == SESSION_BACKOFF && s->state >= SESSION_ENABLING && s->state <= SESSION_IDLE)
                s->auth_attempts = 0;

        disconnect(s);
        if (s->stop_done) {
                finish_stop(s);
                return r;
        }
        session_log(s, kind == SESSION_ERROR ? LOG_ERR : LOG_WARNING, 0, "%s", s->last_error);
        if (s->cfg.store_uid) {
                /* one-shot: report, never retry */
                sync_store_report(s, r < 0 ? r : -EIO, s->last_error);
                finish_stop(s);
                return r;
        }
        schedule_reconnect(s, kind);
        return r;
}

/* ---- commands ------------------------------------------------------------ */

static int on_cmd_timeout(sd_event_source *es, uint64_t usec, void *userdata) {
        struct imap_session *s = userdata;

        session_hold(s);
        s->cmd_timer = sd_event_source_disable_unref(s->cmd_timer);
        if (s->state == SESSION_LOGOUT)
                session_fail(s, SESSION_BACKOFF, -ETIMEDOUT, "LOGOUT not answered");
        else if (s->state == SESSION_GREETING)
                session_fail(s, SESSION_BACKOFF, -ETIMEDOUT,
                             "the server sent no complete greeting within %.1f s; reconnecting",
                             (double) s->cmd_timeout_usec / 1e6);
        else
                session_fail(s, SESSION_BACKOFF, -ETIMEDOUT,
                             "the server did not answer %s within %.1f s; reconnecting",
                             s->cmd_name ? s->cmd_name : "the command", (double) s->cmd_timeout_usec / 1e6);
        session_release(s);
        return 0;
}

int session_arm_command_timer(struct imap_session *s) {
        s->cmd_timer = sd_event_source_disable_unref(s->cmd_timer);
        s->cmd_timeout_usec = s->cfg.command_timeout_usec;
        return sd_event_add_time_relative(s->event, &s->cmd_timer, CLOCK_MONOTONIC, s->cfg.command_timeout_usec,
                                          0, on_cmd_timeout, s);
}

static void trace_out(struct imap_session *s, const struct imap_command *cmd) {
        char *t = NULL;

        if (!s->cfg.trace || imap_command_trace(cmd, &t) < 0)
                return;
        session_log(s, LOG_DEBUG, 0, "C: %s", t);
        free(t);
}

/* Writes the command up to its next synchronizing literal. */
static int send_pending(struct imap_session *s) {
        struct imap_command *c = &s->pending;
        size_t end = s->pending_sync < c->n_sync ? c->sync[s->pending_sync] : c->len;
        int r;

        r = conn_write(s->conn, c->data + s->pending_off, end - s->pending_off);
        if (r < 0)
                return r;
        s->pending_off = end;
        if (s->pending_sync < c->n_sync) {
                s->pending_sync++;
                return 0;
        }
        imap_command_done(c);
        s->pending_off = 0;
        s->pending_sync = 0;
        return 0;
}

/* Sends cmd (taking it over) and expects its tagged completion in done. */
int session_send(struct imap_session *s, struct imap_command *cmd, const char *name, cmd_done_fn done) {
        int r;

        r = imap_command_end(cmd);
        if (r < 0) {
                imap_command_done(cmd);
                return session_fail(s, SESSION_ERROR, r, "cannot build the %s command: %s", name, strerror(-r));
        }
        trace_out(s, cmd);
        memcpy(s->tag, cmd->tag, sizeof(s->tag));
        s->on_done = done;
        s->cmd_name = name;
        imap_command_done(&s->pending);
        s->pending = *cmd;
        *cmd = (struct imap_command) {};
        s->pending_off = 0;
        s->pending_sync = 0;
        r = send_pending(s);
        if (r < 0)
                return session_fail(s, SESSION_BACKOFF, r, "cannot send %s: %s", name, strerror(-r));
        r = session_arm_command_timer(s);
        if (r < 0)
                return session_fail(s, SESSION_BACKOFF, r, "cannot arm the command timer");
        return 0;
}

static int send_simple(struct imap_session *s, const char *verb, cmd_done_fn done) {
        struct imap_command cmd;

        imap_command_begin(&s->writer, &cmd, verb);
        return session_send(s, &cmd, verb, done);
}

/* ---- authentication ------------------------------------------------------ */

static int after_login(struct imap_session *s);

static bool bye_means_token_expired(const char *text) {
        /* Gmail: "* BYE ... AccessTokenExpired"-style; Microsoft: "Session invalidated - AccessTokenExpired" */
        return text && (strcasestr(text, "AccessTokenExpired") || strcasestr(text, "token expired") ||
                        strcasestr(text, "TokenExpired"));
}

static int on_capability_done(struct imap_session *s, const struct imap_response *r);

static int on_auth_done(struct imap_session *s, const struct imap_response *r) {
        if (r->type != IMAP_RESP_OK) {
                const char *text = r->status.text;
                bool expired = s->mech == SASL_XOAUTH2 || s->mech == SASL_OAUTHBEARER;

                /* The secret is asked for again at the next attempt. */
                return session_fail(s, SESSION_ERROR, -EACCES,
                                    "authentication as %s failed (%s): %s; check the %s", s->cfg.user,
                                    sasl_mech_to_string(s->mech), text[0] ? text : "no reason given",
                                    expired ? "OAuth token (password_command)" : "password");
        }
        s->auth_attempts = 0;
        if (r->status.code.type == IMAP_CODE_CAPABILITY) {
                int k = caps_set(s, &r->status.code.atoms);
                if (k < 0)
                        return session_fail(s, SESSION_BACKOFF, k, "out of memory");
                return after_login(s);
        }
        /* capabilities change after login: ask again */
        s->have_caps = false;
        return send_simple(s, "CAPABILITY", on_capability_done);
}

static int send_auth(struct imap_session *s) {
        struct imap_command cmd;
        int r;

        if (s->mech == SASL_LOGIN) {
                imap_command_begin(&s->writer, &cmd, "LOGIN");
                imap_command_astring(&s->writer, &cmd, s->cfg.user, strlen(s->cfg.user));
                imap_command_secret(&s->writer, &cmd, s->secret, s->secret_len);
                wipe_secret(s);
                return session_send(s, &cmd, "LOGIN", on_auth_done);
        }

        _cleanup_free_ char *b64 = NULL;

        r = sasl_build_initial_base64(s->mech, s->cfg.user, s->secret, s->secret_len, s->cfg.host, s->cfg.port,
                                      &b64);
        wipe_secret(s);
        if (r < 0)
                return session_fail(s, SESSION_ERROR, r, "cannot build the %s authentication: %s",
                                    sasl_mech_to_string(s->mech), strerror(-r));

        imap_command_begin(&s->writer, &cmd, "AUTHENTICATE");
        imap_command_atom(&cmd, sasl_mech_to_string(s->mech));
        if (session_has_cap(s, "SASL-IR"))
                imap_command_secret_raw(&cmd, b64[0] ? b64 : "=", b64[0] ? strlen(b64) : 1);
        else {
                /* no SASL-IR: the response goes after the server's "+" */
                s->secret = TAKE_PTR(b64);
                s->secret_len = strlen(s->secret);
        }
        if (b64)
                explicit_bzero(b64, strlen(b64));
        return session_send(s, &cmd, "AUTHENTICATE", on_auth_done);
}

/* A continuation during AUTHENTICATE: the initial response (no SASL-IR),
 * or an error challenge from an OAuth server. */
static int auth_continue(struct imap_session *s, const struct imap_response *r) {
        struct imap_command cmd;

        imap_command_begin_continuation(&cmd);
        if (s->secret) {
                imap_command_secret_raw(&cmd, s->secret, s->secret_len);
                wipe_secret(s);
        } else {
                _cleanup_free_ char *text = NULL;
                char status[16] = "";

                if (s->auth_challenge_answered)
                        return session_fail(s, SESSION_ERROR, -EPROTO, "unexpected second authentication challenge");
                s->auth_challenge_answered = true;
                if (sasl_decode_challenge(r->status.text, &text) >= 0) {
                        sasl_challenge_status(text, status, sizeof(status));
                        session_log(s, LOG_INFO, 0, "the server rejected the %s token (status %s): %s",
                                    sasl_mech_to_string(s->mech), status[0] ? status : "?", text);
                }
                const char *resp = sasl_error_response(s->mech);
                imap_command_raw(&cmd, resp);
        }
        if (imap_command_end(&cmd) < 0) {
                imap_command_done(&cmd);
                return session_fail(s, SESSION_BACKOFF, -ENOMEM, "out of memory");
        }
        trace_out(s, &cmd);
        int k = conn_write(s->conn, cmd.data, cmd.len);
        imap_command_done(&cmd);
        if (k < 0)
                return session_fail(s, SESSION_BACKOFF, k, "write failed");
        return 0;
}

static int start_auth(struct imap_session *s) {
        struct imap_strv caps = { .v = (const char *const *) s->caps, .n = s->n_caps };
        int r;

        if (s->cfg.tls == IMAP_TLS_NONE && !conn_is_loopback(s->conn))
                return session_fail(s, SESSION_ERROR, -EPERM,
                                    "refusing to send credentials without TLS to %s (tls = none is for "
                                    "loopback servers only); set tls = implicit or starttls",
                                    conn_peer(s->conn));

        r = sasl_choose(s->cfg.auth, &caps, s->tls_active, session_has_cap(s, "LOGINDISABLED"), &s->mech);
        if (r == -EPERM)
                return session_fail(s, SESSION_ERROR, r,
                                    "the server refuses LOGIN (LOGINDISABLED) and offers no usable mechanism");
        if (r < 0)
                return session_fail(s, SESSION_ERROR, r, "the server does not offer the configured "
                                    "authentication (auth = %s); its capabilities: %s",
                                    sasl_mech_pref_to_string(s->cfg.auth), imap_session_capabilities(s));

        session_set_state(s, SESSION_AUTHENTICATING);
        if (s->secret)
                return send_auth(s);
        if (!s->secret_requested) {
                s->secret_requested = true;
                if (!s->cb.need_secret)
                        return session_fail(s, SESSION_ERROR, -ENOKEY, "no secret provider");
                s->cb.need_secret(s, s->userdata);
        }
        return 0;
}

void imap_session_set_secret(struct imap_session *s, const char *secret) {
        session_hold(s);
        wipe_secret(s);
        s->secret = strdup(secret);
        if (!s->secret) {
                session_fail(s, SESSION_BACKOFF, -ENOMEM, "out of memory");
                goto out;
        }
        s->secret_len = strlen(secret);
        if (s->state == SESSION_AUTHENTICATING && s->secret_requested && s->conn && !s->tag[0])
                send_auth(s);
        else
                wipe_secret(s);         /* late answer for a connection that is gone */
out:
        session_release(s);
}

void imap_session_secret_failed(struct imap_session *s, const char *message) {
        session_hold(s);
        if (s->state == SESSION_AUTHENTICATING && s->secret_requested)
                session_fail(s, SESSION_ERROR, -ENOKEY, "cannot get the password: %s", message);
        session_release(s);
}

/* ---- greeting, capabilities, STARTTLS ------------------------------------ */

static int after_capability(struct imap_session *s);

static int on_capability_done(struct imap_session *s, const struct imap_response *r) {
        if (r->type != IMAP_RESP_OK)
                return session_fail(s, SESSION_BACKOFF, -EPROTO, "CAPABILITY failed: %s", r->status.text);
        if (!s->have_caps)
                return session_fail(s, SESSION_BACKOFF, -EPROTO, "the server sent no capabilities");
        if (s->state >= SESSION_AUTHENTICATING)
                return after_login(s);
        return after_capability(s);
}

static int on_starttls_done(struct imap_session *s, const struct imap_response *r) {
        int k;

        if (r->type != IMAP_RESP_OK)
                return session_fail(s, SESSION_ERROR, -EPROTO, "STARTTLS refused: %s", r->status.text);
        /* Bytes after the OK arrived before the handshake and may have been
         * injected (RFC 9051 §11.1, CVE-2011-0411 class): drop them, and the
         * capabilities learned before TLS. */
        s->discard_input = true;
        caps_clear(s);
        k = conn_start_tls(s->conn);
        if (k < 0)
                return session_fail(s, SESSION_BACKOFF, k, "cannot start TLS: %s", strerror(-k));
        return 0;
}

static int after_capability(struct imap_session *s) {
        if (!session_has_cap(s, "IMAP4rev1") && !session_has_cap(s, "IMAP4rev2"))
                return session_fail(s, SESSION_ERROR, -EPROTONOSUPPORT,
                                    "the server is not an IMAP4rev1 server (capabilities: %s)",
                                    imap_session_capabilities(s));
        if (s->cfg.tls == IMAP_TLS_STARTTLS && !s->tls_active) {
                if (!session_has_cap(s, "STARTTLS"))
                        return session_fail(s, SESSION_ERROR, -EPROTONOSUPPORT,
                                            "the server does not offer STARTTLS, which is required by "
                                            "tls = starttls; not downgrading. Use tls = implicit (port 993) "
                                            "if the server supports it");
                session_set_state(s, SESSION_STARTTLS);
                return send_simple(s, "STARTTLS", on_starttls_done);
        }
        return start_auth(s);
}

static int after_login(struct imap_session *s) {
        session_set_state(s, SESSION_ENABLING);
        if (s->cfg.store_uid)
                return sync_store_start(s);
        return sync_start(s);
}

static int handle_greeting(struct imap_session *s, const struct imap_response *r) {
        /* no command is in flight yet (the password may take a while) */
        s->cmd_timer = sd_event_source_disable_unref(s->cmd_timer);
        if (r->kind != IMAP_RESP_KIND_UNTAGGED)
                return session_fail(s, SESSION_BACKOFF, -EPROTO, "the server did not greet");
        if (r->type == IMAP_RESP_BYE)
                return session_fail(s, SESSION_BACKOFF, -ECONNREFUSED, "the server refused the connection: %s",
                                    r->status.text);
        if (r->type == IMAP_RESP_PREAUTH) {
                if (s->cfg.tls == IMAP_TLS_STARTTLS && !s->tls_active)
                        return session_fail(s, SESSION_ERROR, -EPROTONOSUPPORT,
                                            "the server pre-authenticated the connection, so STARTTLS is "
                                            "impossible; not continuing without TLS");
                session_set_state(s, SESSION_AUTHENTICATING);
                if (r->status.code.type == IMAP_CODE_CAPABILITY)
                        return after_login(s);
                return send_simple(s, "CAPABILITY", on_capability_done);
        }
        if (r->type != IMAP_RESP_OK)
                return session_fail(s, SESSION_BACKOFF, -EPROTO, "unexpected greeting");
        session_set_state(s, SESSION_CAPABILITY);
        if (s->have_caps)
                return after_capability(s);
        return send_simple(s, "CAPABILITY", on_capability_done);
}

/* ---- responses ----------------------------------------------------------- */

static int handle_response(struct imap_session *s, const struct imap_response *r) {
        const struct imap_strv *caps = NULL;
        int k;

        /* capabilities may come in any OK/PREAUTH code or CAPABILITY response */
        if (r->type == IMAP_RESP_CAPABILITY)
                caps = &r->atoms;
        else if (r->kind != IMAP_RESP_KIND_CONTINUATION && (r->type == IMAP_RESP_OK || r->type == IMAP_RESP_PREAUTH) &&
                 r->status.code.type == IMAP_CODE_CAPABILITY)
                caps = &r->status.code.atoms;
        if (caps) {
                k = caps_set(s, caps);
                if (k < 0)
                        return session_fail(s, SESSION_BACKOFF, k, "out of memory");
        }

        if (s->state == SESSION_GREETING)
                return handle_greeting(s, r);

        if (r->kind == IMAP_RESP_KIND_CONTINUATION) {
                if (s->pending.data)            /* synchronizing literal accepted */
                        return send_pending(s) < 0 ? session_fail(s, SESSION_BACKOFF, -EIO, "write failed") : 0;
                if (s->state == SESSION_AUTHENTICATING && s->tag[0])
                        return auth_continue(s, r);
                if (s->idle_sent && !s->idling)
                        return sync_idle_continue(s);
                return session_fail(s, SESSION_BACKOFF, -EPROTO, "unexpected continuation request from the server");
        }

        if (r->kind == IMAP_RESP_KIND_TAGGED) {
                cmd_done_fn done = s->on_done;

                if (!s->tag[0] || strcmp(r->tag, s->tag) != 0)
                        return session_fail(s, SESSION_BACKOFF, -EPROTO,
                                            "the server answered a command that was not sent (tag %.20s)", r->tag);
                s->tag[0] = '\0';
                s->on_done = NULL;
                s->cmd_timer = sd_event_source_disable_unref(s->cmd_timer);
                imap_command_done(&s->pending);
                if (r->type == IMAP_RESP_BAD)
                        return session_fail(s, SESSION_BACKOFF, -EPROTO, "the server rejected %s: %s",
                                            s->cmd_name ? s->cmd_name : "a command", r->status.text);
                if (s->state == SESSION_LOGOUT) {
                        session_fail(s, SESSION_BACKOFF, 0, "logged out");
                        return 0;
                }
                return done ? done(s, r) : 0;
        }

        if (r->type == IMAP_RESP_BYE) {
                free(s->bye_text);
                s->bye_text = strdup(r->status.text);
                return 0;
        }
        return sync_handle_untagged(s, r);
}

/* ---- connection callbacks ------------------------------------------------ */

static void trace_in(struct imap_session *s, const char *buf, size_t len) {
        while (len > 0) {
                const char *nl = memchr(buf, '\n', len);
                size_t n = nl ? (size_t) (nl - buf) + 1 : len;
                size_t show = n;

                while (show > 0 && (buf[show - 1] == '\n' || buf[show - 1] == '\r'))
                        show--;
                session_log(s, LOG_DEBUG, 0, "S: %.*s%s", (int) (show > TRACE_LINE_MAX ? TRACE_LINE_MAX : show),
                            buf, show > TRACE_LINE_MAX ? "..." : "");
                buf += n;
                len -= n;
        }
}

static void on_conn_data(struct conn *c, const void *data, size_t len, void *userdata) {
        struct imap_session *s = userdata;
        const char *p = data;

        session_hold(s);
        if (s->cfg.trace)
                trace_in(s, p, len);
        while (len > 0 && s->conn == c && !s->discard_input) {
                const struct imap_response *r;
                size_t used;
                int k;

                k = imap_parser_feed(s->parser, p, len, &used, &r);
                p += used;
                len -= used;
                if (k < 0) {
                        session_fail(s, SESSION_BACKOFF, k, "the server sent something unreadable (%s); "
                                     "dropping the connection", imap_parser_error(s->parser));
                        break;
                }
                if (k == 0)
                        break;
                handle_response(s, r);
        }
        session_release(s);
}

static void on_conn_connected(struct conn *c, void *userdata) {
        struct imap_session *s = userdata;
        int r;

        session_hold(s);
        s->tls_active = conn_is_tls(c);
        s->connected_at = now_usec();
        session_log(s, LOG_DEBUG, 0, "connected to %s%s", conn_peer(c), s->tls_active ? " (TLS)" : "");
        session_set_state(s, SESSION_GREETING);
        /* The greeting has the command timeout too: a server that accepts
         * and says nothing, or a byte a second, would hold the session
         * (and its connection) forever. */
        r = session_arm_command_timer(s);
        if (r < 0)
                session_fail(s, SESSION_BACKOFF, r, "cannot arm the command timer");
        session_release(s);
}

static void on_conn_tls_ready(struct conn *c, void *userdata) {
        struct imap_session *s = userdata;

        session_hold(s);
        s->tls_active = true;
        s->discard_input = false;
        /* a fresh parser: nothing from before the handshake survives */
        imap_parser_free(s->parser);
        s->parser = imap_parser_new(NULL);
        if (!s->parser)
                session_fail(s, SESSION_BACKOFF, -ENOMEM, "out of memory");
        else {
                session_set_state(s, SESSION_CAPABILITY);
                send_simple(s, "CAPABILITY", on_capability_done);
        }
        session_release(s);
}

static void on_conn_closed(struct conn *c, enum conn_error error, int r, const char *message, void *userdata) {
        struct imap_session *s = userdata;
        enum session_state kind = SESSION_BACKOFF;

        session_hold(s);
        if (s->state == SESSION_LOGOUT) {
                session_fail(s, SESSION_BACKOFF, 0, "logged out");
                goto out;
        }
        if (error == CONN_ERROR_TLS_VERIFY)
                kind = SESSION_ERROR;
        if (error == CONN_ERROR_EOF && s->bye_text) {
                /* Only a session that had been up for a while: a token the
                 * provider keeps handing out stale must not spin. */
                uint64_t min_up = s->cfg.stable_usec < 10 * 1000000ULL ? s->cfg.stable_usec : 10 * 1000000ULL;

                if (bye_means_token_expired(s->bye_text) && s->connected_at &&
                    now_usec() - s->connected_at >= min_up) {
                        /* a new token is fetched at the next connect: no penalty */
                        s->attempts = 0;
                        session_log(s, LOG_INFO, 0, "the server ended the session because the token expired; "
                                    "authenticating again");
                        disconnect(s);
                        session_connect(s);
                        goto out;
                }
                session_fail(s, kind, r, "the server closed the connection: %s", s->bye_text);
                goto out;
        }
        session_fail(s, kind, r, "%s: %s", conn_error_to_string(error), message);
out:
        session_release(s);
}

static const struct conn_callbacks conn_cb = {
        .connected = on_conn_connected,
        .tls_ready = on_conn_tls_ready,
        .data = on_conn_data,
        .closed = on_conn_closed,
};

static void session_connect(struct imap_session *s) {
        int r;

        /* first: disconnect() may rebuild the log prefix */
        disconnect(s);

        struct conn_config cc = {
                .host = s->cfg.host,
                .port = s->cfg.port,
                .tls = s->cfg.tls == IMAP_TLS_IMPLICIT,
                .ca_file = s->cfg.ca_file,
                .fingerprint = s->cfg.fingerprint,
                .connect_timeout_usec = s->cfg.connect_timeout_usec,
                .log_prefix = s->log_prefix,
        };

        s->backoff_timer = sd_event_source_disable_unref(s->backoff_timer);
        imap_writer_init(&s->writer);
        s->parser = imap_parser_new(NULL);
        if (!s->parser) {
                session_fail(s, SESSION_BACKOFF, -ENOMEM, "out of memory");
                return;
        }
        session_set_state(s, SESSION_CONNECTING);
        s->connects++;
        r = conn_new(s->event, &cc, &conn_cb, s, &s->conn);
        if (r < 0)
                session_fail(s, SESSION_BACKOFF, r, "cannot connect to %s:%u: %s", s->cfg.host, s->cfg.port,
                             strerror(-r));
}

/* ---- public -------------------------------------------------------------- */

static char *strdup_or_null(const char *s, bool *failed) {
        char *d;

        if (!s)
                return NULL;
        d = strdup(s);
        if (!d)
                *failed = true;
        return d;
}

int imap_session_new(sd_event *e, const struct imap_session_config *cfg, const struct imap_session_callbacks *cb,
                     void *userdata, struct imap_session **ret) {
        struct imap_session *s;
        bool failed = false;

        if (!cfg->host || !cfg->user || !cfg->account || !cfg->mailboxes || cfg->n_mailboxes == 0)
                return -EINVAL;
        s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        s->event = sd_event_ref(e);
        s->cfg = *cfg;
        s->cfg.account = strdup_or_null(cfg->account, &failed);
        s->cfg.host = strdup_or_null(cfg->host, &failed);
        s->cfg.ca_file = strdup_or_null(cfg->ca_file, &failed);
        s->cfg.fingerprint = strdup_or_null(cfg->fingerprint, &failed);
        s->cfg.user = strdup_or_null(cfg->user, &failed);
        s->cfg.mailboxes = NULL;
        s->cfg.n_mailboxes = 0;
        s->mb = calloc(cfg->n_mailboxes, sizeof(struct watched));
        if (!s->mb)
                failed = true;
        else {
                s->n_mb = cfg->n_mailboxes;
                for (size_t i = 0; i < s->n_mb; i++) {
                        s->mb[i].name = strdup_or_null(cfg->mailboxes[i], &failed);
                        uidset_init(&s->mb[i].unseen);
                        if (!s->mb[i].name)
                                failed = true;
                }
        }
        if (asprintf(&s->log_prefix, "%s/%s: ", cfg->account, cfg->mailboxes[0]) < 0) {
                s->log_prefix = NULL;
                failed = true;
        }
        if (cb)
                s->cb = *cb;
        s->userdata = userdata;
        if (!s->cfg.poll_interval_usec)
                s->cfg.poll_interval_usec = DEFAULT_POLL_INTERVAL_USEC;
        if (!s->cfg.idle_refresh_usec)
                s->cfg.idle_refresh_usec = DEFAULT_IDLE_REFRESH_USEC;
        if (!s->cfg.command_timeout_usec)
                s->cfg.command_timeout_usec = DEFAULT_COMMAND_TIMEOUT_USEC;
        if (!s->cfg.connect_timeout_usec)
                s->cfg.connect_timeout_usec = DEFAULT_CONNECT_TIMEOUT_USEC;
        if (!s->cfg.backoff_min_usec)
                s->cfg.backoff_min_usec = DEFAULT_BACKOFF_MIN_USEC;
        if (!s->cfg.backoff_max_usec)
                s->cfg.backoff_max_usec = DEFAULT_BACKOFF_MAX_USEC;
        if (!s->cfg.auth_backoff_min_usec)
                s->cfg.auth_backoff_min_usec = DEFAULT_AUTH_BACKOFF_MIN_USEC;
        if (!s->cfg.stable_usec)
                s->cfg.stable_usec = DEFAULT_STABLE_USEC;
        if (!s->cfg.port)
                s->cfg.port = cfg->tls == IMAP_TLS_IMPLICIT ? 993 : 143;
        uidset_init(&s->uids);
        uidset_init(&s->search_result);
        if (failed) {
                session_really_free(s);
                return -ENOMEM;
        }
        *ret = s;
        return 0;
}

static void session_really_free(struct imap_session *s) {
        disconnect(s);
        s->backoff_timer = sd_event_source_disable_unref(s->backoff_timer);
        s->stop_timer = sd_event_source_disable_unref(s->stop_timer);
        uidset_done(&s->uids);
        uidset_done(&s->search_result);
        for (size_t i = 0; i < s->n_mb; i++) {
                free(s->mb[i].name);
                uidset_done(&s->mb[i].unseen);
        }
        free(s->mb);
        free((char *) s->cfg.account);
        free((char *) s->cfg.host);
        free((char *) s->cfg.ca_file);
        free((char *) s->cfg.fingerprint);
        free((char *) s->cfg.user);
        free(s->log_prefix);
        sd_event_unref(s->event);
        free(s);
}

struct imap_session *imap_session_free(struct imap_session *s) {
        if (!s)
                return NULL;
        if (s->busy > 0) {
                /* freed from inside one of its callbacks: finish later */
                s->dead = true;
                disconnect(s);
                s->backoff_timer = sd_event_source_disable_unref(s->backoff_timer);
                s->stop_timer = sd_event_source_disable_unref(s->stop_timer);
                return NULL;
        }
        session_really_free(s);
        return NULL;
}

int imap_session_set_point(struct imap_session *s, const char *mailbox, const struct imap_mailbox_point *p) {
        struct watched *w = sync_find(s, mailbox);

        if (!w)
                return -ENOENT;
        w->point = *p;
        return 0;
}

const struct imap_mailbox_point *imap_session_get_point(const struct imap_session *s, const char *mailbox) {
        const struct watched *w = sync_find(s, mailbox);

        return w ? &w->point : NULL;
}

bool imap_session_uses_notify(const struct imap_session *s) {
        return s->notify_active;
}

int imap_session_start(struct imap_session *s) {
        if (s->state != SESSION_STOPPED)
                return -EBUSY;
        s->stop_done = NULL;
        session_hold(s);
        session_connect(s);
        session_release(s);
        return 0;
}

int imap_session_reconnect(struct imap_session *s) {
        if (s->state == SESSION_STOPPED || s->stop_done)
                return -ESTALE;
        session_hold(s);
        s->attempts = 0;
        session_log(s, LOG_INFO, 0, "reconnecting now");
        session_connect(s);
        session_release(s);
        return 0;
}

int imap_session_check(struct imap_session *s, uint64_t timeout_usec) {
        int r;

        if (s->state != SESSION_IDLE || !s->idling || s->done_sent)
                return 0;
        session_hold(s);
        /* polled mailboxes are checked too, not at the next poll */
        if (s->n_mb > 1 && !s->notify_active)
                s->poll_due = true;
        /* DONE must be answered soon, or the connection is dead */
        r = sync_idle_leave(s);
        if (r >= 0 && s->conn) {
                s->cmd_timer = sd_event_source_disable_unref(s->cmd_timer);
                s->cmd_timeout_usec = timeout_usec;
                r = sd_event_add_time_relative(s->event, &s->cmd_timer, CLOCK_MONOTONIC, timeout_usec, 0,
                                               on_cmd_timeout, s);
        }
        session_release(s);
        return r;
}

int imap_session_network_changed(struct imap_session *s, uint64_t timeout_usec) {
        if (s->state == SESSION_IDLE && s->conn && conn_local_address_gone(s->conn)) {
                session_log(s, LOG_INFO, 0, "the local address of the connection is gone");
                return imap_session_reconnect(s);
        }
        return imap_session_check(s, timeout_usec);
}

static int on_stop_timeout(sd_event_source *es, uint64_t usec, void *userdata) {
        struct imap_session *s = userdata;

        session_hold(s);
        finish_stop(s);
        session_release(s);
        return 0;
}

static void stop_noop(struct imap_session *s, void *userdata) {
}

int imap_session_stop(struct imap_session *s, void (*done)(struct imap_session *s, void *userdata)) {
        struct imap_command cmd;
        bool logged_in = s->conn && s->state >= SESSION_ENABLING && s->state <= SESSION_IDLE;
        int r;

        s->backoff_timer = sd_event_source_disable_unref(s->backoff_timer);
        /* a non-NULL stop_done is also what says "stopping" to the failure path */
        s->stop_done = done ? done : stop_noop;
        if (!logged_in) {
                session_hold(s);
                finish_stop(s);
                session_release(s);
                return 0;
        }

        session_hold(s);
        /* leave IDLE, then LOGOUT; whatever the server says, we are done */
        s->refresh_timer = sd_event_source_disable_unref(s->refresh_timer);
        if (s->idle_sent && !s->done_sent)
                conn_write(s->conn, "DONE\r\n", 6);
        imap_command_begin(&s->writer, &cmd, "LOGOUT");
        session_set_state(s, SESSION_LOGOUT);
        r = imap_command_end(&cmd);
        if (r >= 0) {
                trace_out(s, &cmd);
                r = conn_write(s->conn, cmd.data, cmd.len);
        }
        memcpy(s->tag, cmd.tag, sizeof(s->tag));
        imap_command_done(&cmd);
        s->cmd_timer = sd_event_source_disable_unref(s->cmd_timer);
        if (r >= 0)
                r = sd_event_add_time_relative(s->event, &s->stop_timer, CLOCK_MONOTONIC, LOGOUT_TIMEOUT_USEC, 0,
                                               on_stop_timeout, s);
        if (r < 0)
                finish_stop(s);
        session_release(s);
        return 0;
}

enum session_state imap_session_get_state(const struct imap_session *s) {
        return s->state;
}

const char *imap_session_last_error(const struct imap_session *s) {
        return s->last_error;
}

const char *imap_session_capabilities(const struct imap_session *s) {
        static __thread char buf[1024];
        size_t off = 0;

        buf[0] = '\0';
        for (size_t i = 0; i < s->n_caps && off < sizeof(buf); i++) {
                int n = snprintf(buf + off, sizeof(buf) - off, "%s%s", i ? " " : "", s->caps[i]);
                if (n < 0)
                        break;
                off += (size_t) n;
        }
        return buf;
}

unsigned imap_session_connects(const struct imap_session *s) {
        return s->connects;
}

uint64_t imap_session_backoff_usec(const struct imap_session *s) {
        return s->backoff_usec;
}

size_t imap_session_memory(const struct imap_session *s) {
        size_t m = sizeof(*s) + uidset_memory(&s->uids) + uidset_memory(&s->search_result) +
                   s->n_mb * sizeof(struct watched);

        for (size_t i = 0; i < s->n_mb; i++)
                m += strlen(s->mb[i].name) + 1 + uidset_memory(&s->mb[i].unseen);

        if (s->parser)
                m += imap_parser_memory(s->parser);
        if (s->conn)
                m += conn_memory(s->conn);
        return m;
}
