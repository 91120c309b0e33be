/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The D-Bus API (SPEC §5, dbus/org.imapidled.Daemon1.*.xml) on the session
 * bus, as org.imapidled.Daemon1:
 *
 *   /org/imapidled/Daemon1                    Manager + ObjectManager   src/bus-manager.c
 *   /org/imapidled/Daemon1/account/ID         Account (fallback vtable) src/bus-account.c
 *   /org/imapidled/Daemon1/mailbox/ID/NAME    Mailbox (fallback vtable) src/bus-mailbox.c
 *
 * The bus keeps what clients were last told about every object (the
 * properties), compares it with the daemon's accounts once per loop
 * iteration after a change (bus_changed) and announces the differences:
 * PropertiesChanged, AccountStateChanged, InterfacesAdded/Removed. NewMail
 * and MailRemoved go out at once, from the mail sink the bus adds to the
 * daemon.
 *
 * Without a session bus the daemon runs on; the bus reconnects in the
 * background (every 5 s for a minute, then every minute) and takes the name
 * again, which also happens after the bus went away. IMAP is never touched
 * by any of this.
 */

#include <systemd/sd-event.h>

struct bus;
struct daemon;

/*
 * Connects to the session bus ($DBUS_SESSION_BUS_ADDRESS, else
 * $XDG_RUNTIME_DIR/bus), attaches it to e and requests the name
 * synchronously. d is borrowed and must outlive the bus; the bus adds its
 * sink to d.
 *
 * Returns 0 and *ret (owned by the caller, bus_free()) also when there is no
 * session bus (a warning is logged). Returns -EEXIST, after logging "another
 * imapidled is running ...", when the name belongs to someone else; -ENOMEM.
 */
int bus_new(sd_event *e, struct daemon *d, struct bus **ret);

/* Closes the connection (the name goes with it). Accepts NULL; returns NULL. */
struct bus *bus_free(struct bus *b);

/* Something in the daemon changed (an account's state or counts, the set of
 * accounts after a reload, Paused): compare and announce in the next loop
 * iteration. Cheap; accepts NULL. */
void bus_changed(struct bus *b);

/* Do now what bus_changed() scheduled. Accepts NULL. */
void bus_flush(struct bus *b);
