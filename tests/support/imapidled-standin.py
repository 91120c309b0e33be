#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""A stand-in for imapidled on a session bus, for tests of imapidlectl.

Owns org.imapidled.Daemon1 and serves the contract of
dbus/org.imapidled.Daemon1.{Manager,Account,Mailbox}.xml on fixed data: the
Manager with its properties (Paused writable) and methods, an ObjectManager,
one object per account and per mailbox, every change announced with
PropertiesChanged and the Manager's signals, errors under their contract names.

A test drives it through org.imapidled.Test on /org/imapidled/Daemon1:
  SetUnseen(s account, s mailbox, u n)       a mailbox's Unseen (and the sums)
  Deliver(s account, s mailbox, u uid)       NewMail + one more unseen and exists
  DeliverMany(s account, s mailbox, u uid, u n)  n of them at once (uid, uid + 1 ...)
  SetAccountState(s account, s state, s msg) AccountStateChanged + properties
  FailReload(s message)                      the next Reloads fail ("" : succeed)
  Calls() -> as                              the calls received, one line each
  Quit()                                     release the name and exit

Usage: imapidled-standin.py [--address ADDRESS]  (default: the session bus)
Prints "READY" on stdout once it owns the name. Exits on SIGTERM or Quit.
"""

import signal
import sys

import dbus
import dbus.mainloop.glib
import dbus.service
from gi.repository import GLib

NAME = 'org.imapidled.Daemon1'
ROOT = '/org/imapidled/Daemon1'
MANAGER = NAME + '.Manager'
ACCOUNT = NAME + '.Account'
MAILBOX = NAME + '.Mailbox'
ERROR = NAME + '.Error.'
TEST = 'org.imapidled.Test'
PROPS = 'org.freedesktop.DBus.Properties'
OM = 'org.freedesktop.DBus.ObjectManager'

# a mailbox name that needs every kind of escaping, and non-ASCII ones
WEIRD = 'Quote"d \\ back\tslash \x01 <b>&amp; \u00fc'
ACCOUNTS = [
    ('work', 'imap.example.com', 'alice'),
    ('home', 'mail.example.org', 'bob'),
]
MAILBOXES = [
    ('work', 'INBOX', 2, 10, 'idle'),
    ('work', 'Lists/linux', 0, 5, 'polling'),
    ('work', WEIRD, 0, 1, 'idle'),
    ('home', 'Entw\u00fcrfe', 1, 3, 'idle'),
]


def path_encode(s):
    """sd_bus_path_encode(3) for one element."""
    if not s:
        return '_'
    return ''.join(chr(b) if chr(b).isascii() and chr(b).isalnum() else '_%02x' % b
                   for b in s.encode('utf-8'))


def bus_error(name, message):
    return dbus.exceptions.DBusException(message, name=name)


class PropertyObject(dbus.service.Object):
    """An object with one interface whose properties live in self.props."""
    iface = None
    writable = ()

    def __init__(self, conn, path, props):
        super().__init__(conn, path)
        self.path = path
        self.props = props

    def set_props(self, **changes):
        changed = {k: v for k, v in changes.items() if self.props[k] != v}
        self.props.update(changed)
        if changed:
            self.PropertiesChanged(self.iface, dbus.Dictionary(changed, signature='sv'),
                                   dbus.Array([], signature='s'))

    def on_set(self, name, value):
        pass

    @dbus.service.method(PROPS, in_signature='ss', out_signature='v')
    def Get(self, iface, name):
        if iface != self.iface or name not in self.props:
            raise bus_error('org.freedesktop.DBus.Error.UnknownProperty', 'no property ' + name)
        return self.props[name]

    @dbus.service.method(PROPS, in_signature='s', out_signature='a{sv}')
    def GetAll(self, iface):
        if iface != self.iface:
            return dbus.Dictionary({}, signature='sv')
        return dbus.Dictionary(self.props, signature='sv')

    @dbus.service.method(PROPS, in_signature='ssv', out_signature='')
    def Set(self, iface, name, value):
        if iface != self.iface or name not in self.props:
            raise bus_error('org.freedesktop.DBus.Error.UnknownProperty', 'no property ' + name)
        if name not in self.writable:
            raise bus_error('org.freedesktop.DBus.Error.PropertyReadOnly', name + ' is read-only')
        self.on_set(name, value)

    @dbus.service.signal(PROPS, signature='sa{sv}as')
    def PropertiesChanged(self, iface, changed, invalidated):
        pass


class Account(PropertyObject):
    iface = ACCOUNT


class Mailbox(PropertyObject):
    iface = MAILBOX


class Manager(PropertyObject):
    iface = MANAGER
    writable = ('Paused',)

    def __init__(self, conn, loop):
        super().__init__(conn, ROOT, {
            'Version': dbus.String('0.1.0-standin'),
            'Paused': dbus.Boolean(False),
            'UnseenTotal': dbus.UInt32(0),
            'State': dbus.String('ok'),
        })
        self.loop = loop
        self.calls = []
        self.reload_error = ''
        self.accounts = {}
        for name, host, user in ACCOUNTS:
            self.accounts[name] = Account(conn, ROOT + '/account/' + path_encode(name), {
                'Name': dbus.String(name), 'Host': dbus.String(host), 'User': dbus.String(user),
                'State': dbus.String('idle'), 'LastError': dbus.String(''), 'Unseen': dbus.UInt32(0),
            })
        self.mailboxes = []
        for account, name, unseen, exists, state in MAILBOXES:
            path = ROOT + '/mailbox/' + path_encode(account) + '/' + path_encode(name)
            self.mailboxes.append(Mailbox(conn, path, {
                'Account': dbus.String(account), 'Name': dbus.String(name), 'State': dbus.String(state),
                'Unseen': dbus.UInt32(unseen), 'Exists': dbus.UInt32(exists),
                'UidValidity': dbus.UInt32(1700000000), 'UidNext': dbus.UInt32(exists + 1),
                'LastError': dbus.String(''),
            }))
        self.update_sums()

    def mailbox(self, account, name):
        if account not in self.accounts:
            raise bus_error(ERROR + 'NoSuchAccount', "no account '%s' is configured" % account)
        for m in self.mailboxes:
            if m.props['Account'] == account and m.props['Name'] == name:
                return m
        raise bus_error(ERROR + 'NoSuchMailbox', "account '%s' does not watch '%s'" % (account, name))

    def update_sums(self):
        for name, a in self.accounts.items():
            a.set_props(Unseen=dbus.UInt32(sum(m.props['Unseen'] for m in self.mailboxes
                                                   if m.props['Account'] == name)))
        idle = [a.props['State'] == 'idle' for a in self.accounts.values()]
        self.set_props(UnseenTotal=dbus.UInt32(sum(m.props['Unseen'] for m in self.mailboxes)),
                       State=dbus.String('ok' if all(idle) else 'degraded' if any(idle) else 'offline'))

    def on_set(self, name, value):
        self.calls.append('Set %s %s' % (name, 'true' if value else 'false'))
        self.set_props(Paused=dbus.Boolean(bool(value)))

    # ---- org.imapidled.Daemon1.Manager

    @dbus.service.method(MANAGER, in_signature='', out_signature='a(ssouus)')
    def ListMailboxes(self):
        self.calls.append('ListMailboxes')
        return dbus.Array([dbus.Struct((m.props['Account'], m.props['Name'], dbus.ObjectPath(m.path),
                                        m.props['Unseen'], m.props['Exists'], m.props['State']),
                                       signature='ssouus') for m in self.mailboxes], signature='(ssouus)')

    @dbus.service.method(MANAGER, in_signature='', out_signature='')
    def CheckNow(self):
        self.calls.append('CheckNow')

    @dbus.service.method(MANAGER, in_signature='', out_signature='')
    def Reload(self):
        self.calls.append('Reload')
        if self.reload_error:
            raise bus_error(ERROR + 'Failed', self.reload_error)

    @dbus.service.method(MANAGER, in_signature='ssu', out_signature='')
    def MarkSeen(self, account, mailbox, uid):
        self.calls.append('MarkSeen %s %s %d' % (account, mailbox, uid))
        if uid == 0:
            raise bus_error('org.freedesktop.DBus.Error.InvalidArgs', 'UID 0 is not a UID')
        m = self.mailbox(account, mailbox)
        if uid > m.props['Exists']:
            raise bus_error(ERROR + 'NoSuchMessage', 'no message with UID %d' % uid)
        if m.props['Unseen'] > 0:
            m.set_props(Unseen=dbus.UInt32(m.props['Unseen'] - 1))
            self.update_sums()

    @dbus.service.signal(MANAGER, signature='ssussa{sv}')
    def NewMail(self, account, mailbox, uid, sender, subject, details):
        pass

    @dbus.service.signal(MANAGER, signature='ssau')
    def MailRemoved(self, account, mailbox, uids):
        pass

    @dbus.service.signal(MANAGER, signature='sss')
    def AccountStateChanged(self, account, state, message):
        pass

    # ---- org.freedesktop.DBus.ObjectManager

    @dbus.service.method(OM, in_signature='', out_signature='a{oa{sa{sv}}}')
    def GetManagedObjects(self):
        self.calls.append('GetManagedObjects')
        objects = list(self.accounts.values()) + self.mailboxes
        return dbus.Dictionary({dbus.ObjectPath(o.path): dbus.Dictionary(
            {o.iface: dbus.Dictionary(o.props, signature='sv')}, signature='sa{sv}') for o in objects},
            signature='oa{sa{sv}}')

    @dbus.service.signal(OM, signature='oa{sa{sv}}')
    def InterfacesAdded(self, path, interfaces):
        pass

    # ---- the test's controls

    @dbus.service.method(TEST, in_signature='ssu', out_signature='')
    def SetUnseen(self, account, mailbox, n):
        self.mailbox(account, mailbox).set_props(Unseen=dbus.UInt32(n))
        self.update_sums()

    @dbus.service.method(TEST, in_signature='ssuu', out_signature='')
    def DeliverMany(self, account, mailbox, uid, n):
        for i in range(n):
            self.Deliver(account, mailbox, uid + i)

    @dbus.service.method(TEST, in_signature='ssu', out_signature='')
    def Deliver(self, account, mailbox, uid):
        m = self.mailbox(account, mailbox)
        self.NewMail(account, mailbox, dbus.UInt32(uid), 'Jörg', 'Grüße', dbus.Dictionary({
            'from_address': dbus.String('joerg@example.org'), 'date': dbus.Int64(1700000000),
            'message_id': dbus.String('<1@example.org>'), 'uidvalidity': dbus.UInt32(1700000000),
            'size': dbus.UInt64(1234), 'mailbox_path': dbus.ObjectPath(m.path)}, signature='sv'))
        m.set_props(Unseen=dbus.UInt32(m.props['Unseen'] + 1), Exists=dbus.UInt32(m.props['Exists'] + 1),
                    UidNext=dbus.UInt32(max(m.props['UidNext'], uid + 1)))
        self.update_sums()

    @dbus.service.method(TEST, in_signature='sss', out_signature='')
    def SetAccountState(self, account, state, message):
        if account not in self.accounts:
            raise bus_error(ERROR + 'NoSuchAccount', account)
        self.accounts[account].set_props(State=dbus.String(state), LastError=dbus.String(message))
        for m in self.mailboxes:
            if m.props['Account'] == account:
                m.set_props(State=dbus.String(state))
        self.AccountStateChanged(account, state, message)
        self.update_sums()

    @dbus.service.method(TEST, in_signature='s', out_signature='')
    def FailReload(self, message):
        self.reload_error = message

    @dbus.service.method(TEST, in_signature='', out_signature='as')
    def Calls(self):
        return dbus.Array(self.calls, signature='s')

    @dbus.service.method(TEST, in_signature='', out_signature='')
    def Quit(self):
        GLib.idle_add(self.loop.quit)


def main():
    address = None
    args = sys.argv[1:]
    if len(args) == 2 and args[0] == '--address':
        address = args[1]
    elif args:
        sys.exit(__doc__)
    dbus.mainloop.glib.DBusGMainLoop(set_as_default=True)
    conn = dbus.bus.BusConnection(address) if address else dbus.SessionBus(private=True)
    loop = GLib.MainLoop()
    manager = Manager(conn, loop)
    name = dbus.service.BusName(NAME, conn, do_not_queue=True)
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGTERM, loop.quit)
    print('READY', flush=True)
    loop.run()
    del name, manager
    conn.flush()
    conn.close()


if __name__ == '__main__':
    main()
