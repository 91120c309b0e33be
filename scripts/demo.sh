#!/usr/bin/env bash
# make demo: a throwaway Dovecot and session bus with a real notification
# server (dunst under Xvfb), a config for them, the real daemon, three
# deliveries, and what came of them: NewMail signals and the popups' Notify
# calls on the bus, imapidlectl's view, the daemon's log, a screenshot.
# Cleans up after itself (the screenshot stays in the build directory).
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
build=${IMAPIDLED_BUILDDIR:-$top/build}
harness=$top/tests/harness/harness.sh
dir=$(mktemp -d /tmp/imapidled-demo.XXXXXX)
chmod 755 "$dir"
daemon_pid=
watchers=()

cleanup() {
	for p in "${watchers[@]}"; do kill "$p" 2>/dev/null || true; done
	[[ -n $daemon_pid ]] && kill "$daemon_pid" 2>/dev/null && wait "$daemon_pid" 2>/dev/null
	"$harness" stop "$dir/h" --remove >/dev/null 2>&1 || true
	rm -rf "$dir"
}
trap cleanup EXIT

mkdir "$dir/h"
echo "== starting a throwaway Dovecot, session bus and dunst on Xvfb (tests/harness/harness.sh)"
eval "$("$harness" start "$dir/h" --owner $$ --notify)"
export DBUS_SESSION_BUS_ADDRESS
"$harness" mkbox "$dir/h" user1 "Lists/linux" >/dev/null

cat >"$dir/config" <<CONF
[general]
log_level = info

[account demo]
host = $HOST
port = $IMAPS_PORT
tls = implicit
ca_file = $CA_FILE
user = user1
password_command = printf 'pass-user1\n'
mailboxes = INBOX; Lists/linux
CONF
echo "== config ($dir/config):"
sed 's/^/   /' "$dir/config"

echo "== imapidled --check-config"
"$build/imapidled" --config "$dir/config" --check-config | sed 's/^/   /'

echo "== starting imapidled"
IMAPIDLED_STATE_DIR=$dir/state "$build/imapidled" --config "$dir/config" >"$dir/log" 2>&1 &
daemon_pid=$!
for _ in $(seq 100); do grep -q "first sync" "$dir/log" 2>/dev/null && break; sleep 0.1; done
sleep 1
echo "== listening on the bus: dbus-monitor (NewMail, Notify) and imapidlectl watch"
dbus-monitor --address "$DBUS_SESSION_BUS_ADDRESS" \
	"type='signal',interface='org.imapidled.Daemon1.Manager',member='NewMail'" >"$dir/signals" 2>&1 &
watchers+=($!)
dbus-monitor --address "$DBUS_SESSION_BUS_ADDRESS" \
	"type='method_call',interface='org.freedesktop.Notifications',member='Notify'" >"$dir/popups" 2>&1 &
watchers+=($!)
"$build/imapidlectl" watch --format waybar >"$dir/watch" 2>&1 &
watchers+=($!)
sleep 0.5

deliver() {
	"$harness" mail "$dir/h" user1 "$1" "$2" "$3" >/dev/null
}
echo "== delivering three messages with dovecot-lda"
deliver INBOX "Alice Example <alice@example.org>" "Lunch on Friday?"
deliver INBOX "=?UTF-8?Q?J=C3=B6rg_M=C3=BCller?= <joerg@example.de>" "=?UTF-8?B?R3LDvMOfZQ==?= aus Berlin"
deliver Lists/linux "build-bot@example.com" "<b>CI</b> passed & deployed"
for _ in $(seq 100); do [[ $(grep -c "new mail in" "$dir/log") -ge 3 ]] && break; sleep 0.1; done

sleep 0.5
echo "== NewMail signals seen by dbus-monitor"
grep -A5 'member=NewMail' "$dir/signals" | grep -E 'string|uint32' | sed 's/^/   /' | head -20
echo "== Notify calls to the notification server (app, replaces id, icon, summary, body; the body escaped)"
grep -A5 'member=Notify' "$dir/popups" | grep -E '^ +(string|uint32)' | sed 's/^ */   /' | paste -d' ' - - - - - | head -6
"$harness" screenshot "$dir/h" "$build/demo-popups.png" && echo "   screenshot of the popups: $build/demo-popups.png"
echo "== imapidlectl watch --format waybar (one line per change)"
sed 's/^/   /' "$dir/watch" | tail -4
echo "== imapidlectl status"
"$build/imapidlectl" status | sed 's/^/   /'
echo "== the daemon's log"
sed 's/^/   /' "$dir/log"
echo "== stopping (SIGTERM: LOGOUT, state saved)"
kill "$daemon_pid"
wait "$daemon_pid" || true
daemon_pid=
echo "== saved state:"
sed 's/^/   /' "$dir"/state/*.state
