#!/usr/bin/env bash
# harness.sh — a throwaway, loopback-only Dovecot (and optionally a private D-Bus
# session bus) for imapidled's integration tests. This script is the single
# implementation of the harness; tests/harness/harness.c only runs it.
#
#   harness.sh start DIR [--owner PID] [--remove-on-owner-exit] [--dbus] [--notify]
#                        [--users N] [--listen ADDR]... [--hibernate SECONDS] [--scale]
#   harness.sh stop DIR [--remove]
#   harness.sh deliver DIR USER MAILBOX            < message
#   harness.sh mail DIR USER MAILBOX FROM SUBJECT [BODY]
#   harness.sh expunge DIR USER MAILBOX UID
#   harness.sh flags DIR USER MAILBOX UID add|remove|replace FLAGS
#   harness.sh mkbox DIR USER MAILBOX
#   harness.sh doveadm DIR ARGS...
#   harness.sh capability DIR [--pre-login] [USER]
#   harness.sh server-stop DIR      (Dovecot only; same ports and mail on server-start)
#   harness.sh server-start DIR
#   harness.sh notify-action DIR default|context    (--notify only)
#   harness.sh screenshot DIR PNG                   (--notify only)
#
# start prints KEY=VALUE lines on stdout (HOST, IMAP_PORT, IMAPS_PORT, CA_FILE,
# USERS, with --dbus also DBUS_SESSION_BUS_ADDRESS and DBUS_SERVICE_DIR for
# activation files, with --notify also DISPLAY, XAUTHORITY and NOTIFY_PID, one
# LISTEN per --listen, DIR); readers ignore keys they do not know. Everything lives under DIR, so harnesses run in parallel do not
# collide; ports come from build/free-port, never fixed ones.
#
# Users are user1..userN (N 1..2000, default 4) with password pass-userI. As root
# each user has its own uid (Dovecot refuses root mail processes, and inotify
# allows only 128 instances per uid: an IDLE session beyond that silently falls
# back to polling every 30 s); otherwise Dovecot runs rootless and every user is
# the caller.
#
# --hibernate SECONDS: imap_hibernate_timeout. An IDLE session with nothing to
# say for that long moves to the imap-hibernate process (its imap process
# exits) and is woken without Dovecot's ~0.5 s notification batching. Off by
# default, as in Dovecot.
#
# --scale: room for thousands of concurrent IDLE sessions (make bench): login
# processes in high-performance mode (service_count = 0, each proxying many
# TLS connections), process and client limits above 2,000 sessions. The
# defaults give every login its own imap-login process, as Dovecot does.
#
# --listen ADDR: Dovecot also listens on ADDR (both ports), e.g. the root end of
# a veth pair whose other end is in a test's network namespace; the server
# certificate carries IP:ADDR too. ADDR must already be configured on an
# interface and must be private (127/8, 10/8, 172.16/12, 192.168/16, fc00::/7):
# the harness has test passwords. On ADDR, logins need TLS (STARTTLS or IMAPS).
#
# --notify (implies --dbus): a real notification server on the private bus.
# Xvfb runs a 1024x768 screen on a free display :90..:199 (the lock file
# /tmp/.XN-lock is taken the way X servers take it; cookie in DIR/Xauthority)
# and dunst, configured by DIR/dunstrc, owns org.freedesktop.Notifications
# before start returns. Popups never expire on their own (timeout 0; a
# notification's own expire_timeout > 0 still counts), markup is full, and
# dunst's context menu runs DIR/dmenu.sh instead of dmenu: it picks an action
# of the newest notification (highest id), by default the one labelled
# "Mark as read". notify-action DIR default invokes the default action of the
# newest notification (dunstctl action 0 when it is the only one on screen,
# else the context menu picks its "default" entry: dunst 1.9 accepts no other
# position than 0, which is the oldest); notify-action DIR context opens the
# context menu so that dmenu.sh chooses "Mark as read". Both return once dunst
# has been told, i.e. just before it emits ActionInvoked. screenshot writes
# the screen as PNG (xwd | convert). stop also ends Xvfb and dunst (a stopped
# dunst too) and removes the display's socket and lock file.
#
# Environment: IMAPIDLED_BUILDDIR (default <repo>/build) locates free-port.
set -euo pipefail

PATH=$PATH:/usr/sbin:/sbin
SELF=$(readlink -f -- "${BASH_SOURCE[0]}")
REPO=$(dirname -- "$(dirname -- "$(dirname -- "$SELF")")")
BUILDDIR=${IMAPIDLED_BUILDDIR:-$REPO/build}
FREE_PORT=$BUILDDIR/free-port
DOVECOT_LDA=/usr/lib/dovecot/dovecot-lda
# Set in the environment of dbus-daemon, and so of the services it activates:
# `stop` finds them by it. (Dovecot overwrites its environment block with its
# process titles, so its processes are found by command line instead.)
MARKER=IMAPIDLED_HARNESS_DIR
# The file that says "a harness lives here"; stop --remove deletes nothing else.
STAMP=.imapidled-harness
READY_TIMEOUT=10
STOP_TIMEOUT=5

die() {
	printf 'harness: %s\n' "$*" >&2
	exit 1
}

# usage [STATUS]: the synopsis, on stdout for --help, else on stderr.
usage() {
	local status=${1-2}
	if ((status == 0)); then
		sed -n '/^#   harness.sh start/,/^#   harness.sh screenshot/s/^#//p' "$SELF"
	else
		sed -n '/^#   harness.sh start/,/^#   harness.sh screenshot/s/^#//p' "$SELF" >&2
	fi
	exit "$status"
}

now_ms() {
	local t=${EPOCHREALTIME/[.,]/}
	echo $((t / 1000))
}

# The absolute, symlink-free path of an existing directory. Dovecot settings
# are written unquoted and '%' starts a Dovecot variable, so only a plain path
# is accepted.
resolve_dir() {
	local d
	[[ -d $1 ]] || die "$1: no such directory"
	d=$(cd -- "$1" && pwd -P) || die "$1: cannot enter"
	[[ $d =~ ^/[A-Za-z0-9/._+-]*$ ]] ||
		die "$d: only letters, digits and / . _ + - are allowed in the harness path"
	printf '%s\n' "$d"
}

# "STATE STARTTIME" of a process, from /proc/PID/stat; fails if there is none.
proc_stat() {
	local s
	s=$(<"/proc/$1/stat") 2>/dev/null || return 1
	s=${s##*) }
	local -a f
	read -r -a f <<<"$s"
	printf '%s %s\n' "${f[0]}" "${f[19]}"
}

# A process is alive when it exists and is not a zombie (PID 1 of a container
# may never reap what it inherits).
proc_alive() {
	local st
	[[ $1 =~ ^[0-9]+$ ]] || return 1
	st=$(proc_stat "$1") || return 1
	[[ ${st%% *} != Z ]]
}

# Close every inherited descriptor above 2: a daemon that kept the caller's
# stdout pipe open would make a reader of start's output wait forever.
close_fds() {
	local fd
	for fd in /proc/"$BASHPID"/fd/*; do
		fd=${fd##*/}
		if ((fd > 2 && fd != 255)); then
			eval "exec $fd>&-" 2>/dev/null || true
		fi
	done
}

require_harness() {
	[[ -f $1/$STAMP && -f $1/dovecot.conf ]] || die "$1: not a harness directory (run start first)"
}

# ---------------------------------------------------------------------------
# start

gen_tls() {
	local t=$1/tls san='DNS:localhost, IP:127.0.0.1' a
	for a in "${LISTEN[@]}"; do
		san+=", IP:$a"
	done
	mkdir -p "$t"
	cat >"$t/openssl.cnf" <<-EOF
	[req]
	distinguished_name = dn
	prompt = no
	[dn]
	CN = imapidled harness CA
	[v3_ca]
	basicConstraints = critical, CA:TRUE
	keyUsage = critical, keyCertSign, cRLSign
	subjectKeyIdentifier = hash
	[v3_server]
	basicConstraints = critical, CA:FALSE
	keyUsage = critical, digitalSignature
	extendedKeyUsage = serverAuth
	subjectAltName = $san
	subjectKeyIdentifier = hash
	authorityKeyIdentifier = keyid
	EOF
	{
		openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$t/ca.key" &&
		openssl req -config "$t/openssl.cnf" -x509 -new -key "$t/ca.key" -sha256 -days 7 \
			-subj "/CN=imapidled harness CA" -extensions v3_ca -out "$t/ca.pem" &&
		openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$t/server.key" &&
		openssl req -config "$t/openssl.cnf" -new -key "$t/server.key" -subj "/CN=localhost" \
			-out "$t/server.csr" &&
		openssl x509 -req -in "$t/server.csr" -CA "$t/ca.pem" -CAkey "$t/ca.key" \
			-set_serial "0x$(openssl rand -hex 8)" -days 7 -sha256 \
			-extfile "$t/openssl.cnf" -extensions v3_server -out "$t/server.pem" &&
		openssl genpkey -genparam -algorithm DH -pkeyopt dh_param:ffdhe2048 -out "$t/dh.pem"
	} >"$t/openssl.log" 2>&1 || { cat "$t/openssl.log" >&2; die "generating TLS material failed"; }
	# The master reads the key as root (or as the rootless caller).
	chmod 0600 "$t/ca.key" "$t/server.key"
}

# Fills USER_UID_BASE; writes DIR/passwd and the mail homes.
gen_users() {
	local dir=$1 n=$2 i uid gid home crc
	: >"$dir/passwd"
	if ((EUID == 0)); then
		# Each harness gets its own block of uids in 20000..59999 (inside the
		# 65536 ids a container's user namespace usually maps), picked by a hash
		# of its path, so parallel harnesses rarely share inotify instances.
		local block=$((((n + 99) / 100) * 100))
		crc=$(printf '%s' "$dir" | cksum)
		crc=${crc%% *}
		USER_UID_BASE=$((20000 + (crc % (40000 / block)) * block))
	else
		USER_UID_BASE=$(id -u)
	fi
	mkdir -p "$dir/mail"
	for ((i = 1; i <= n; i++)); do
		home=$dir/mail/user$i
		if ((EUID == 0)); then
			uid=$((USER_UID_BASE + i))
			gid=$uid
		else
			uid=$(id -u)
			gid=$(id -g)
		fi
		mkdir -p "$home/Maildir"
		if ((EUID == 0)); then
			chown -R "$uid:$gid" "$home" || die "cannot give $home to uid $uid (user namespace?)"
		fi
		chmod 0700 "$home"
		# user:password:uid:gid:(gecos):home:(shell):extra
		printf 'user%d:{PLAIN}pass-user%d:%d:%d::%s::\n' "$i" "$i" "$uid" "$gid" "$home" >>"$dir/passwd"
	done
	chmod 0644 "$dir/passwd"
}

write_dovecot_conf() {
	local dir=$1 imap_port=$2 imaps_port=$3 identity first_uid addrs=127.0.0.1 a extra=''
	local login_extra='' imap_limit=1000 imap_extra='' limits=''
	for a in "${LISTEN[@]}"; do
		addrs+=", $a"
		# Not loopback: no credentials without TLS, as the daemon insists.
		extra+="
local $a {
  disable_plaintext_auth = yes
}"
	done
	if ((EUID == 0)); then
		first_uid=$((USER_UID_BASE + 1))
		identity="default_internal_user = dovecot
default_internal_group = dovecot
default_login_user = dovenull"
	else
		first_uid=$(id -u)
		# Rootless Dovecot: every process is the caller, nothing can chroot.
		identity="default_internal_user = $(id -un)
default_internal_group = $(id -gn)
default_login_user = $(id -un)
service anvil {
  chroot =
}
service imap-login {
  chroot =
}
service aggregator {
  chroot =
}"
	fi
	if ((SCALE)); then
		login_extra="
  # High-performance mode: long-lived login processes, each proxying the TLS
  # of many sessions, instead of one process per connection.
  service_count = 0
  process_min_avail = 2
  client_limit = 2500
  vsz_limit = 1G"
		imap_limit=2500
		# imap-hibernate holds every hibernated session in one process.
		limits="
default_client_limit = 5000"
	fi
	if ((HIBERNATE)); then
		# The imap-hibernate process hands sessions back through imap-master
		# (as the internal user); imap processes reach it through the group.
		imap_extra="
  unix_listener imap-master {
    user = \$default_internal_user
  }
  extra_groups = \$default_internal_group"
		extra+="
imap_hibernate_timeout = ${HIBERNATE}s
service imap-hibernate {
  unix_listener imap-hibernate {
    mode = 0660
    group = \$default_internal_group
  }
}"
	fi
	cat >"$dir/dovecot.conf" <<EOF
# Generated by tests/harness/harness.sh for one test run; nothing is read from
# /etc/dovecot. Started with: dovecot -c $dir/dovecot.conf
base_dir = $dir/run
state_dir = $dir/state
# The instance name shows in every process title ("dovecot-$dir/imap"): that
# is how stop and the tests find this harness's processes.
instance_name = $dir
log_path = $dir/dovecot.log
info_log_path = $dir/dovecot.log
$identity
first_valid_uid = $first_uid
last_valid_uid = 0

protocols = imap
listen = $addrs
login_greeting = imapidled harness ready.

service imap-login {
  inet_listener imap {
    address = $addrs
    port = $imap_port
  }
  inet_listener imaps {
    address = $addrs
    port = $imaps_port
    ssl = yes
  }
  process_limit = 1000$login_extra
}
service imap {
  process_limit = $imap_limit$imap_extra
}$limits
# Room for every login process above (Dovecot warns otherwise).
service auth {
  client_limit = 2200
}
service anvil {
  client_limit = 2200
  # No auth penalty: after a failed login, every login from 127.0.0.1 would
  # be held back for seconds (login_trusted_networks does not lift it in
  # 2.3.19). An unusable socket makes the auth process switch penalties off.
  unix_listener anvil-auth-penalty {
    mode = 0
  }
}

# TLS: implicit on the imaps listener, STARTTLS offered on the imap listener.
# ssl = yes (not required) and disable_plaintext_auth = no let tests also log
# in with tls = none; acceptable only because both listeners are loopback-only
# (--listen addresses are private ones and get disable_plaintext_auth = yes).
ssl = yes
ssl_cert = <$dir/tls/server.pem
ssl_key = <$dir/tls/server.key
ssl_dh = <$dir/tls/dh.pem
ssl_min_protocol = TLSv1.2
disable_plaintext_auth = no
auth_mechanisms = plain login
# Tests that try a wrong password should not wait the default 2 s (Dovecot
# still answers a failure only on its next 0.5 s tick).
auth_failure_delay = 0
auth_verbose = yes

passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%u $dir/passwd
}
userdb {
  driver = passwd-file
  args = username_format=%u $dir/passwd
}

# LAYOUT=fs: one maildir per mailbox below ~/Maildir (INBOX is ~/Maildir), so
# names may contain '.', unlike the default Maildir++ layout.
mail_location = maildir:~/Maildir:LAYOUT=fs
namespace inbox {
  inbox = yes
  separator = /
  mailbox Drafts {
    special_use = \\Drafts
  }
  mailbox Junk {
    special_use = \\Junk
  }
  mailbox Sent {
    special_use = \\Sent
  }
  mailbox Trash {
    special_use = \\Trash
  }
}
# Many IDLE sessions per user from 127.0.0.1 (default 10).
mail_max_userip_connections = 1000
# Throwaway mail: speed over durability.
mail_fsync = never
# IDLE, NOTIFY, CONDSTORE, QRESYNC ... come with the default imap_capability.

protocol lda {
  postmaster_address = postmaster@localhost
  lda_mailbox_autocreate = yes
  lda_mailbox_autosubscribe = yes
  # Report the UID of each delivered message on dovecot-lda's stderr.
  mail_plugins = \$mail_plugins notify mail_log
  log_path = /dev/stderr
  info_log_path = /dev/stderr
}
plugin {
  mail_log_events = save
  mail_log_fields = uid box msgid
}$extra
EOF
}

# Starts the master; returns 2 when a port was taken (the caller retries).
launch_dovecot() {
	local dir=$1 rc=0
	: >"$dir/dovecot.start.log"
	(
		close_fds
		exec setsid dovecot -c "$dir/dovecot.conf"
	) </dev/null >>"$dir/dovecot.start.log" 2>&1 || rc=$?
	if ((rc == 0)); then
		return 0
	fi
	if grep -qs 'Address already in use' "$dir/dovecot.start.log" "$dir/dovecot.log"; then
		return 2
	fi
	if grep -qs 'Cannot assign requested address' "$dir/dovecot.start.log" "$dir/dovecot.log"; then
		tail -n 5 "$dir/dovecot.log" >&2 2>/dev/null || true
		die "dovecot cannot bind a --listen address (${LISTEN[*]}): is it configured on an interface?"
	fi
	cat "$dir/dovecot.start.log" >&2
	tail -n 20 "$dir/dovecot.log" >&2 2>/dev/null || true
	die "dovecot failed to start (exit $rc)"
}

write_dbus_conf() {
	local dir=$1
	mkdir -p "$dir/dbus-services"
	cat >"$dir/dbus.conf" <<EOF
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<!-- Generated by tests/harness/harness.sh: a private session bus for one test run. -->
<busconfig>
  <type>session</type>
  <keep_umask/>
  <listen>unix:path=$dir/bus</listen>
  <pidfile>$dir/dbus.pid</pidfile>
  <auth>EXTERNAL</auth>
  <servicedir>$dir/dbus-services</servicedir>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
EOF
}

launch_dbus() {
	local dir=$1 deadline pid
	write_dbus_conf "$dir"
	: >"$dir/dbus.address"
	(
		close_fds
		export "$MARKER=$dir"
		exec setsid dbus-daemon --config-file="$dir/dbus.conf" --nofork --nosyslog \
			--print-address=3 3>"$dir/dbus.address"
	) </dev/null >>"$dir/dbus.log" 2>&1 &
	pid=$!
	deadline=$(($(now_ms) + READY_TIMEOUT * 1000))
	until [[ -s $dir/dbus.address && -s $dir/dbus.pid ]]; do
		if ! proc_alive "$pid"; then
			cat "$dir/dbus.log" >&2 || true
			die "dbus-daemon exited while starting"
		fi
		if (($(now_ms) > deadline)); then
			cat "$dir/dbus.log" >&2 || true
			die "dbus-daemon did not come up within ${READY_TIMEOUT}s"
		fi
		sleep 0.02
	done
	DBUS_ADDRESS=$(head -n 1 "$dir/dbus.address")
}

# ---------------------------------------------------------------------------
# --notify: Xvfb and dunst

X_FIRST=90
X_LAST=199
X_SCREEN=1024x768x24
NOTIFY_NAME=org.freedesktop.Notifications

# A display number is taken when its lock file or a socket for it (a file in
# /tmp/.X11-unix or Linux's abstract one) exists.
x_display_taken() {
	local n=$1
	[[ -e /tmp/.X$n-lock || -e /tmp/.X11-unix/X$n ]] && return 0
	grep -qs "@/tmp/.X11-unix/X$n\$" /proc/net/unix
}

# Writes PID into display N's lock file in the X server format; with
# --create only if there is none (O_EXCL, as X servers take it). DIR/xvfb.lock
# remembers what we wrote, so that stop removes only a lock of ours.
x_lock() {
	local dir=$1 n=$2 pid=$3 create=${4-} lock=/tmp/.X$2-lock
	if [[ $create == --create ]]; then
		(set -o noclobber && printf '%10d\n' "$pid" >"$lock") 2>/dev/null || return 1
	else
		{ printf '%10d\n' "$pid" >"$lock.$$" && mv -f -- "$lock.$$" "$lock"; } || return 1
	fi
	chmod 0444 "$lock" 2>/dev/null || true
	printf '%s %s\n' "$n" "$pid" >"$dir/xvfb.lock"
}

# Removes the lock file and the socket of the display DIR's Xvfb had, if the
# lock is still ours (a later X server may have taken over a stale one).
x_release() {
	local dir=$1 n='' pid='' lock
	[[ -f $dir/xvfb.lock ]] || return 0
	read -r n pid <"$dir/xvfb.lock" || true
	if [[ $n =~ ^[0-9]+$ && $pid =~ ^[0-9]+$ ]]; then
		lock=$(cat "/tmp/.X$n-lock" 2>/dev/null) || lock=
		if [[ ${lock// /} == "$pid" ]]; then
			rm -f "/tmp/.X11-unix/X$n" "/tmp/.X$n-lock"
		fi
	fi
	rm -f "$dir/xvfb.lock"
}

# Sets XDISPLAY (":N").
launch_xvfb() {
	local dir=$1 span=$((X_LAST - X_FIRST + 1)) first i n pid deadline
	command -v Xvfb >/dev/null || die "--notify needs Xvfb (scripts/deps.sh installs it)"
	command -v xauth >/dev/null || die "--notify needs xauth (scripts/deps.sh installs it)"
	if [[ ! -d /tmp/.X11-unix ]]; then
		if mkdir -p /tmp/.X11-unix 2>/dev/null; then
			chmod 1777 /tmp/.X11-unix 2>/dev/null || true
		fi
	fi
	: >"$dir/Xauthority"
	chmod 0600 "$dir/Xauthority"
	# A random first candidate, so that parallel harnesses rarely meet.
	first=$((RANDOM % span))
	for ((i = 0; i < span; i++)); do
		n=$((X_FIRST + (first + i) % span))
		x_display_taken "$n" && continue
		x_lock "$dir" "$n" "$$" --create || continue
		xauth -q -f "$dir/Xauthority" add ":$n" . "$(openssl rand -hex 16)" ||
			die "xauth could not write $dir/Xauthority"
		: >"$dir/xvfb.ready"
		# -displayfd: Xvfb writes N there once it accepts connections. It
		# also makes Xvfb skip its own lock file: ours stands in for it.
		(
			close_fds
			export "$MARKER=$dir"
			exec setsid Xvfb ":$n" -screen 0 "$X_SCREEN" -nolisten tcp -noreset \
				-auth "$dir/Xauthority" -displayfd 3 3>"$dir/xvfb.ready"
		) </dev/null >>"$dir/xvfb.log" 2>&1 &
		pid=$!
		deadline=$(($(now_ms) + READY_TIMEOUT * 1000))
		while [[ ! -s $dir/xvfb.ready ]] && proc_alive "$pid"; do
			if (($(now_ms) > deadline)); then
				tail -n 20 "$dir/xvfb.log" >&2 || true
				die "Xvfb :$n did not come up within ${READY_TIMEOUT}s"
			fi
			sleep 0.01
		done
		if [[ -s $dir/xvfb.ready ]]; then
			x_lock "$dir" "$n" "$pid" || die "cannot write /tmp/.X$n-lock"
			XDISPLAY=:$n
			return 0
		fi
		# Another server (one without a lock file) got there first.
		if ! grep -qs 'server already running\|Cannot establish any listening sockets' "$dir/xvfb.log"; then
			tail -n 20 "$dir/xvfb.log" >&2 || true
			die "Xvfb :$n exited while starting"
		fi
		echo "harness: X display :$n is in use, trying another" >&2
		x_release "$dir"
		xauth -q -f "$dir/Xauthority" remove ":$n" 2>/dev/null || true
		mv -f "$dir/xvfb.log" "$dir/xvfb.log.$n" 2>/dev/null || true
	done
	die "no free X display in :$X_FIRST..:$X_LAST"
}

# The context menu program of DIR's dunst (dunstrc: dmenu). dunst 1.9 writes
# one line per action of every notification on screen, "#LABEL (SUMMARY)
# [ID,KEY]", and one per URL; the line printed back is the user's choice.
# DIR/dmenu.want says which to choose: "label:TEXT" (the default is
# "label:Mark as read") or "key:KEY"; of the matching lines, the one of the
# newest notification (highest ID) wins. Each run appends its choice, or "-"
# for none, to DIR/dmenu.log; DIR/dmenu.in keeps the last menu.
write_dmenu() {
	local dir=$1
	{
		echo '#!/bin/bash'
		echo '# Generated by tests/harness/harness.sh: dunst'"'"'s context menu, choosing by rule.'
		printf 'dir=%s\n' "$dir"
		cat <<-'SCRIPT'
		want=$(cat "$dir/dmenu.want" 2>/dev/null) || want=
		[[ -n $want ]] || want='label:Mark as read'
		menu=$(cat)
		printf '%s\n' "$menu" >"$dir/dmenu.in"
		best='' best_id=-1
		while IFS= read -r line; do
			[[ $line =~ ^#.*\ \[([0-9]+),(.*)\]$ ]] || continue
			id=${BASH_REMATCH[1]} key=${BASH_REMATCH[2]}
			case $want in
			key:*) [[ $key == "${want#key:}" ]] || continue ;;
			label:*) [[ $line == "#${want#label:} ("* ]] || continue ;;
			*) continue ;;
			esac
			if ((id > best_id)); then
				best=$line best_id=$id
			fi
		done <<<"$menu"
		printf '%s\n' "${best:--}" >>"$dir/dmenu.log"
		[[ -z $best ]] || printf '%s\n' "$best"
		SCRIPT
	} >"$dir/dmenu.sh"
	chmod 0755 "$dir/dmenu.sh"
}

write_dunstrc() {
	local dir=$1 font='DejaVu Sans 10'
	fc-list 2>/dev/null | grep -qs 'DejaVu Sans' || font='Sans 10'
	cat >"$dir/dunstrc" <<EOF
# Generated by tests/harness/harness.sh: dunst 1.9 on a 1024x768 Xvfb screen for
# notification tests. Popups stay until closed (timeout 0) so that screenshots
# catch them; ids rise in arrival order and popups stack oldest on top.
[global]
    monitor = 0
    follow = none
    width = 420
    height = 300
    origin = top-right
    offset = 10x10
    notification_limit = 0
    indicate_hidden = yes
    sort = no
    stack_duplicates = false
    hide_duplicate_count = false
    idle_threshold = 0
    show_age_threshold = -1
    markup = full
    format = "<b>%s</b>\n%b"
    font = $font
    alignment = left
    ellipsize = middle
    ignore_newline = no
    show_indicators = yes
    separator_height = 2
    padding = 8
    horizontal_padding = 8
    frame_width = 2
    frame_color = "#aaaaaa"
    separator_color = frame
    icon_position = left
    icon_theme = Adwaita
    enable_recursive_icon_lookup = true
    min_icon_size = 32
    max_icon_size = 48
    history_length = 20
    dmenu = $dir/dmenu.sh
    browser = /bin/true
    title = Dunst
    class = Dunst
    mouse_left_click = do_action
    mouse_middle_click = close_current
    mouse_right_click = context
    ignore_dbusclose = false

[urgency_low]
    background = "#222222"
    foreground = "#bbbbbb"
    timeout = 0

[urgency_normal]
    background = "#285577"
    foreground = "#ffffff"
    timeout = 0

[urgency_critical]
    background = "#900000"
    foreground = "#ffffff"
    frame_color = "#ff0000"
    timeout = 0
EOF
}

# The PID of the owner of NAME on the bus at ADDRESS; fails if it has none.
bus_name_pid() {
	local out
	out=$(dbus-send --bus="$1" --print-reply=literal --reply-timeout=2000 --dest=org.freedesktop.DBus \
		/org/freedesktop/DBus org.freedesktop.DBus.GetConnectionUnixProcessID "string:$2" 2>/dev/null) ||
		return 1
	out=${out##* }
	[[ $out =~ ^[0-9]+$ ]] || return 1
	echo "$out"
}

# Sets NOTIFY_PID; returns once that dunst owns the name on the private bus.
launch_dunst() {
	local dir=$1 pid owner='' deadline
	command -v dunst >/dev/null || die "--notify needs dunst (scripts/deps.sh installs it)"
	write_dmenu "$dir"
	write_dunstrc "$dir"
	# No drop-ins or rules from the user's configuration.
	mkdir -p "$dir/xdg"
	(
		close_fds
		# shellcheck disable=SC2030 # meant for dunst alone
		export "$MARKER=$dir" DISPLAY="$XDISPLAY" XAUTHORITY="$dir/Xauthority" \
			DBUS_SESSION_BUS_ADDRESS="$DBUS_ADDRESS" XDG_CONFIG_HOME="$dir/xdg" XDG_CONFIG_DIRS="$dir/xdg"
		exec setsid dunst -config "$dir/dunstrc"
	) </dev/null >>"$dir/dunst.log" 2>&1 &
	pid=$!
	deadline=$(($(now_ms) + READY_TIMEOUT * 1000))
	until owner=$(bus_name_pid "$DBUS_ADDRESS" "$NOTIFY_NAME") && [[ $owner == "$pid" ]]; do
		if ! proc_alive "$pid"; then
			tail -n 20 "$dir/dunst.log" >&2 || true
			die "dunst exited while starting"
		fi
		if (($(now_ms) > deadline)); then
			tail -n 20 "$dir/dunst.log" >&2 || true
			die "dunst did not own $NOTIFY_NAME within ${READY_TIMEOUT}s (owner: ${owner:-none})"
		fi
		sleep 0.02
	done
	echo "$pid" >"$dir/dunst.pid"
	NOTIFY_PID=$pid
}

# The IMAP greeting on a plain connection.
probe_plain() {
	local fd line=
	exec {fd}<>"/dev/tcp/127.0.0.1/$1" || return 1
	IFS= read -r -t 2 line <&"$fd" || true
	{ printf 'a LOGOUT\r\n' >&"$fd"; } 2>/dev/null || true
	exec {fd}>&-
	[[ $line == "* OK"* ]]
}

# s_client over implicit TLS, verifying the certificate chain and the host name.
# Commands come from stdin; output is the server's side of the conversation.
tls_session() {
	local dir=$1 port=$2
	timeout 10 openssl s_client -connect "127.0.0.1:$port" -servername localhost \
		-verify_hostname localhost -CAfile "$dir/tls/ca.pem" -verify_return_error \
		-quiet -crlf 2>"$dir/tmp/s_client.$BASHPID.err"
}

probe_tls() {
	local out
	out=$(printf 'a LOGOUT\n' | tls_session "$1" "$2") || true
	[[ $out == "* OK"* ]]
}

wait_ready() {
	local dir=$1 imap_port=$2 imaps_port=$3 deadline plain_ok=0 tls_ok=0
	deadline=$(($(now_ms) + READY_TIMEOUT * 1000))
	while :; do
		if ((!plain_ok)) && probe_plain "$imap_port" 2>/dev/null; then
			plain_ok=1
		fi
		if ((plain_ok && !tls_ok)) && probe_tls "$dir" "$imaps_port"; then
			tls_ok=1
		fi
		((plain_ok && tls_ok)) && break
		if (($(now_ms) > deadline)); then
			{
				echo "harness: Dovecot did not greet on 127.0.0.1:$imap_port (ok=$plain_ok)" \
					"and 127.0.0.1:$imaps_port (ok=$tls_ok) within ${READY_TIMEOUT}s;" \
					"last s_client error and dovecot.log:"
				cat "$dir"/tmp/s_client.*.err 2>/dev/null | tail -n 5
				tail -n 30 "$dir/dovecot.log" 2>/dev/null
			} >&2
			exit 1
		fi
		sleep 0.05
	done
	rm -f "$dir"/tmp/s_client.*.err
}

# Runs detached; stops the harness once the owner is gone (or replaced: the
# start time in /proc/PID/stat must stay the same).
cmd_guard() {
	local dir=$1 owner=$2 started=$3 remove=$4 st
	while st=$(proc_stat "$owner") && [[ ${st%% *} != Z && ${st#* } == "$started" ]]; do
		sleep 1
	done
	echo "harness: owner $owner is gone, stopping $dir"
	if [[ $remove == 1 ]]; then
		exec "$SELF" stop "$dir" --remove
	fi
	exec "$SELF" stop "$dir"
}

launch_guard() {
	local dir=$1 owner=$2 remove=$3 st
	st=$(proc_stat "$owner") || die "--owner $owner: no such process"
	(
		close_fds
		exec setsid bash "$SELF" _guard "$dir" "$owner" "${st#* }" "$remove"
	) </dev/null >>"$dir/guard.log" 2>&1 &
	# setsid execs in place (the subshell is no group leader), so $! is the guard.
	echo "$!" >"$dir/guard.pid"
}

START_DIR=
START_DONE=0
start_cleanup() {
	if ((!START_DONE)) && [[ -n $START_DIR ]]; then
		echo "harness: start failed, stopping what was started in $START_DIR" >&2
		"$SELF" stop "$START_DIR" >&2 || true
	fi
}

# --listen ADDR: a private IPv4 or IPv6 address, canonical as Dovecot and
# OpenSSL want it (no brackets, no prefix length); 127.0.0.1 is always there.
LISTEN=()
add_listen() {
	local a=$1 o1 o2 o3 o4 x
	if [[ $a =~ ^([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})$ ]]; then
		o1=$((10#${BASH_REMATCH[1]})) o2=$((10#${BASH_REMATCH[2]}))
		o3=$((10#${BASH_REMATCH[3]})) o4=$((10#${BASH_REMATCH[4]}))
		((o1 <= 255 && o2 <= 255 && o3 <= 255 && o4 <= 255)) || die "--listen $a: not an IPv4 address"
		a=$o1.$o2.$o3.$o4
		((o1 == 127 || o1 == 10 || (o1 == 172 && (o2 & 0xf0) == 16) || (o1 == 192 && o2 == 168))) ||
			die "--listen $a: only private addresses (127/8, 10/8, 172.16/12, 192.168/16)"
	elif [[ $a =~ ^[0-9A-Fa-f:]+$ && $a == *:*:* ]]; then
		a=${a,,}
		x=${a%%:*}
		[[ $a == ::1 || ($x =~ ^f[cd][0-9a-f]{2}$) ]] ||
			die "--listen $a: only private IPv6 addresses (fc00::/7, ::1)"
	else
		die "--listen '$a': expected an IPv4 or IPv6 address"
	fi
	[[ $a != 127.0.0.1 ]] || return 0
	for x in "${LISTEN[@]}"; do
		[[ $x != "$a" ]] || return 0
	done
	LISTEN+=("$a")
}

cmd_start() {
	local dir='' owner='' dbus=0 notify=0 users=4 remove=0 attempt rc ports imap_port imaps_port a
	HIBERNATE=0 SCALE=0
	while (($#)); do
		case $1 in
		--owner) owner=${2-}; shift 2 || usage ;;
		--owner=*) owner=${1#*=}; shift ;;
		--remove-on-owner-exit) remove=1; shift ;;
		--dbus) dbus=1; shift ;;
		--notify) dbus=1 notify=1; shift ;;
		--users) users=${2-}; shift 2 || usage ;;
		--users=*) users=${1#*=}; shift ;;
		--listen) add_listen "${2-}"; shift 2 || usage ;;
		--listen=*) add_listen "${1#*=}"; shift ;;
		--hibernate) HIBERNATE=${2-}; shift 2 || usage ;;
		--hibernate=*) HIBERNATE=${1#*=}; shift ;;
		--scale) SCALE=1; shift ;;
		-*) die "start: unknown option $1" ;;
		*) [[ -z $dir ]] || usage; dir=$1; shift ;;
		esac
	done
	[[ -n $dir ]] || usage
	if ! [[ $users =~ ^[0-9]+$ ]] || ((users < 1 || users > 2000)); then
		die "--users must be 1..2000"
	fi
	if ! [[ $HIBERNATE =~ ^[0-9]+$ ]] || ((HIBERNATE > 3600)); then
		die "--hibernate must be 0..3600 (seconds; 0: off)"
	fi
	[[ -z $owner || $owner =~ ^[0-9]+$ ]] || die "--owner needs a PID"
	[[ -x $FREE_PORT ]] || die "$FREE_PORT missing: run 'make build/free-port' (or set IMAPIDLED_BUILDDIR)"

	if [[ ! -e $dir ]]; then
		(umask 022 && mkdir -p -- "$dir") || die "$dir: cannot create"
	fi
	dir=$(resolve_dir "$dir")
	[[ -z $(ls -A -- "$dir") ]] || die "$dir: not empty"
	# Unix socket paths (DIR/run/login/imap-urlauth ...) must fit in 108 bytes.
	((${#dir} <= 72)) || die "$dir: longer than 72 characters, too long for Dovecot's sockets (use a shorter TMPDIR)"
	# mktemp -d makes 0700; the mail uids and Dovecot's own users must get in.
	chmod 0755 "$dir"
	if ((EUID == 0)); then
		local p=$dir
		while p=$(dirname -- "$p") && [[ $p != / ]]; do
			(($(stat -c '0%a' -- "$p") & 1)) ||
				die "$p is not searchable by other users; Dovecot's mail uids cannot reach $dir (use TMPDIR=/tmp)"
		done
	fi
	touch "$dir/$STAMP"
	mkdir -p "$dir/run" "$dir/state" "$dir/tmp"
	START_DIR=$dir
	trap start_cleanup EXIT

	# The guard comes first: if the owner dies while we are starting, it cleans up.
	if [[ -n $owner ]]; then
		launch_guard "$dir" "$owner" "$remove"
	fi

	gen_tls "$dir"
	gen_users "$dir" "$users"

	# Another process may grab a port between free-port and Dovecot's bind():
	# the first attempt and up to three retries with fresh ports.
	for attempt in 1 2 3 4; do
		ports=$("$FREE_PORT" 2) || die "free-port failed"
		imap_port=${ports%%$'\n'*}
		imaps_port=${ports##*$'\n'}
		write_dovecot_conf "$dir" "$imap_port" "$imaps_port"
		rc=0
		launch_dovecot "$dir" || rc=$?
		((rc == 0)) && break
		echo "harness: port $imap_port or $imaps_port was taken (attempt $attempt of 4)" >&2
		"$SELF" stop "$dir" --keep-guard >&2 || true
		mv -f "$dir/dovecot.log" "$dir/dovecot.log.$attempt" 2>/dev/null || true
		((attempt < 4)) || die "could not bind free ports in 4 attempts"
	done

	if ((dbus)); then
		launch_dbus "$dir"
	fi
	if ((notify)); then
		launch_xvfb "$dir"
		launch_dunst "$dir"
	fi
	wait_ready "$dir" "$imap_port" "$imaps_port"

	START_DONE=1
	echo "HOST=localhost"
	echo "IMAP_PORT=$imap_port"
	echo "IMAPS_PORT=$imaps_port"
	echo "CA_FILE=$dir/tls/ca.pem"
	echo "USERS=$users"
	for a in "${LISTEN[@]}"; do
		echo "LISTEN=$a"
	done
	if ((dbus)); then
		echo "DBUS_SESSION_BUS_ADDRESS=$DBUS_ADDRESS"
		echo "DBUS_SERVICE_DIR=$dir/dbus-services"
	fi
	if ((notify)); then
		echo "DISPLAY=$XDISPLAY"
		echo "XAUTHORITY=$dir/Xauthority"
		echo "NOTIFY_PID=$NOTIFY_PID"
	fi
	echo "DIR=$dir"
}

# ---------------------------------------------------------------------------
# stop

# The running processes of the harness in DIR, one "PID KIND" a line, KIND being
# master, log (Dovecot's log process), child (any other Dovecot process),
# dbus, xvfb, dunst, guard or marked (started by the private bus or dunst). Dovecot's processes are
# recognised by their titles, which carry the instance name, i.e. DIR; the
# caller itself is never listed.
harness_procs() {
	local dir=$1 f pid kind
	local -a argv
	for f in /proc/[0-9]*/cmdline; do
		pid=${f#/proc/}
		pid=${pid%/cmdline}
		[[ $pid == "$$" || $pid == "$BASHPID" ]] && continue
		{ mapfile -d "" -t argv <"$f"; } 2>/dev/null || continue
		((${#argv[@]})) || continue # kernel threads and zombies have none
		case ${argv[0]} in
		"dovecot-$dir/log") kind=log ;;
		"dovecot-$dir/"*) kind=child ;;
		dovecot | */dovecot)
			[[ ${argv[1]-} == -c && ${argv[2]-} == "$dir/dovecot.conf" ]] || continue
			kind=master
			;;
		dbus-daemon | */dbus-daemon)
			[[ ${argv[1]-} == "--config-file=$dir/dbus.conf" ]] || continue
			kind=dbus
			;;
		bash | */bash)
			[[ ${argv[1]-} == "$SELF" && ${argv[2]-} == _guard && ${argv[3]-} == "$dir" ]] || continue
			kind=guard
			;;
		Xvfb | */Xvfb)
			[[ " ${argv[*]} " == *" -auth $dir/Xauthority "* ]] || continue
			kind=xvfb
			;;
		dunst | */dunst)
			[[ ${argv[1]-} == -config && ${argv[2]-} == "$dir/dunstrc" ]] || continue
			kind=dunst
			;;
		*)
			grep -qzxF -- "$MARKER=$dir" "/proc/$pid/environ" 2>/dev/null || continue
			kind=marked
			;;
		esac
		proc_alive "$pid" && echo "$pid $kind"
	done
	return 0
}

cmd_stop() {
	local dir='' remove=0 keep_guard=0 deadline procs pid kind killed=0
	local -a all
	local -A sent=()
	while (($#)); do
		case $1 in
		--remove) remove=1; shift ;;
		--keep-guard) keep_guard=1; shift ;; # start's retry: the guard stays
		-*) die "stop: unknown option $1" ;;
		*) [[ -z $dir ]] || usage; dir=$1; shift ;;
		esac
	done
	[[ -n $dir ]] || usage
	[[ -d $dir ]] || return 0
	dir=$(resolve_dir "$dir")
	deadline=$(($(now_ms) + STOP_TIMEOUT * 1000))

	# Everything gets SIGTERM at once: the master alone would end its children
	# but then wait a fixed second for its log process and IDLE sessions. The
	# guard leads its own process group (its sleep goes too). A guard running
	# us exec'd us (same PID: never listed); start's retry keeps the guard.
	while :; do
		procs=$(harness_procs "$dir")
		all=()
		while read -r pid kind; do
			[[ -n $pid ]] || continue
			[[ $kind == guard ]] && { [[ $pid == "$PPID" ]] || ((keep_guard)); } && continue
			all+=("$pid")
			[[ -n ${sent[$pid]-} ]] && continue
			if [[ $kind == guard ]]; then
				kill -TERM -- "-$pid" 2>/dev/null || true
			fi
			kill -TERM "$pid" 2>/dev/null || true
			# A test may have stopped dunst (harness_notify_signal).
			kill -CONT "$pid" 2>/dev/null || true
			sent[$pid]=1
		done <<<"$procs"
		((${#all[@]})) || break
		# A master whose processes are all gone only sits out a fixed one-second
		# sleep before it exits; it has nothing left to clean up.
		if [[ $(cut -d' ' -f2 <<<"$procs" | sort -u) == master ]]; then
			kill -KILL "${all[@]}" 2>/dev/null || true
		fi
		if (($(now_ms) > deadline)); then
			if ((killed)); then
				die "processes survived SIGKILL: ${all[*]}"
			fi
			echo "harness: still running after ${STOP_TIMEOUT}s, killing: ${all[*]}" >&2
			kill -KILL "${all[@]}" 2>/dev/null || true
			killed=1
			deadline=$(($(now_ms) + 1000))
		fi
		sleep 0.02
	done
	rm -f "$dir/guard.pid" "$dir/dbus.pid" "$dir/dunst.pid"
	x_release "$dir"

	if ((remove)); then
		[[ -f $dir/$STAMP ]] || die "$dir: no $STAMP, refusing to remove it"
		rm -rf -- "$dir"
	fi
}

# server-stop / server-start: Dovecot alone goes down and comes back on the
# same ports with the same mail (tests of reconnects and catch-up). The guard
# and the private bus stay.
cmd_server_stop() {
	local dir pid kind deadline
	local -a left
	[[ $# == 1 ]] || usage
	dir=$(resolve_dir "$1")
	deadline=$(($(now_ms) + STOP_TIMEOUT * 1000))
	while :; do
		left=()
		while read -r pid kind; do
			case $kind in
			master | log | child) left+=("$pid") ;;
			esac
		done <<<"$(harness_procs "$dir")"
		((${#left[@]})) || break
		kill -TERM "${left[@]}" 2>/dev/null || true
		if (($(now_ms) > deadline)); then
			kill -KILL "${left[@]}" 2>/dev/null || true
		fi
		sleep 0.02
	done
}

cmd_server_start() {
	local dir imap_port imaps_port
	[[ $# == 1 ]] || usage
	dir=$(resolve_dir "$1")
	imap_port=$(sed -n '/inet_listener imap /,/}/s/^ *port = \([0-9]*\)$/\1/p' "$dir/dovecot.conf")
	imaps_port=$(sed -n '/inet_listener imaps/,/}/s/^ *port = \([0-9]*\)$/\1/p' "$dir/dovecot.conf")
	[[ -n $imap_port && -n $imaps_port ]] || die "$dir/dovecot.conf: no listener ports"
	launch_dovecot "$dir" || die "dovecot could not bind its ports again"
	wait_ready "$dir" "$imap_port" "$imaps_port"
}

# ---------------------------------------------------------------------------
# acting on the mail store

doveadm_in() {
	local dir=$1
	shift
	doveadm -c "$dir/dovecot.conf" "$@"
}

maildir_drop() {
	local dir=$1 user=$2 mailbox=$3 msg=$4 home owner box tmpf name
	home=$(awk -F: -v u="$user" '$1 == u { print $6 }' "$dir/passwd")
	[[ -n $home ]] || die "unknown user $user"
	owner=$(stat -c %u:%g "$home")
	box=$home/Maildir
	if [[ ${mailbox^^} == INBOX ]]; then
		mkdir -p "$box/new" "$box/cur" "$box/tmp"
		chown "$owner" "$box/new" "$box/cur" "$box/tmp" 2>/dev/null || true
	else
		box=$home/Maildir/$mailbox
	fi
	[[ -d $box/new ]] || die "$user/$mailbox: no Maildir at $box (create it with mkbox while Dovecot runs)"
	name=$(date +%s).M$(date +%N)P$$R$RANDOM.harness
	tmpf=$box/tmp/$name
	cp -- "$msg" "$tmpf"
	chown "$owner" "$tmpf" 2>/dev/null || true
	mv -- "$tmpf" "$box/new/$name"
}

cmd_deliver() {
	(($# == 3)) || usage
	local dir user=$2 mailbox=$3 msg err rc=0 uid box
	dir=$(resolve_dir "$1")
	require_harness "$dir"
	msg=$(mktemp "$dir/tmp/deliver.XXXXXX")
	err=$msg.err
	cat >"$msg"
	# With Dovecot stopped (server-stop) lda has no userdb to ask: write into
	# the Maildir as an MTA with Maildir delivery does; Dovecot finds the file
	# in new/ when it runs again.
	if ! grep -q ' master$' <<<"$(harness_procs "$dir")"; then
		maildir_drop "$dir" "$user" "$mailbox" "$msg"
		rm -f "$msg"
		return 0
	fi
	# As root dovecot-lda looks the user up through auth-userdb and switches to
	# the user's uid itself, the way an MTA runs it.
	"$DOVECOT_LDA" -c "$dir/dovecot.conf" -d "$user" -m "$mailbox" <"$msg" 2>"$err" || rc=$?
	if ((rc != 0)); then
		cat "$err" >&2
		rm -f "$msg" "$err"
		case $rc in
		67) die "dovecot-lda: unknown user $user" ;;
		75) die "dovecot-lda: temporary failure delivering to $user/$mailbox" ;;
		*) die "dovecot-lda exited with $rc delivering to $user/$mailbox" ;;
		esac
	fi
	# mail_log: "lda(user1)<...>: Info: save: box=INBOX, uid=3, msgid=<...>"
	box=$(sed -n 's/.*: save: box=\(.*\), uid=[0-9]*, msgid=.*/\1/p' "$err" | tail -n 1)
	uid=$(sed -n 's/.*: save: box=.*, uid=\([0-9][0-9]*\), msgid=.*/\1/p' "$err" | tail -n 1)
	# The rest of lda's log goes where the server's goes; trouble also to stderr.
	grep -v ': save: ' "$err" >>"$dir/dovecot.log" || true
	grep -E ': (Warning|Error|Fatal|Panic): ' "$err" >&2 || true
	# Like an MTA's delivery, lda falls back to INBOX when it cannot store into
	# the mailbox asked for; a test wants to hear about that.
	if [[ -n $box && $box != "$mailbox" ]] && ! [[ ${box^^} == INBOX && ${mailbox^^} == INBOX ]]; then
		grep -F 'save failed' "$err" >&2 || true
		rm -f "$msg" "$err"
		die "dovecot-lda stored the message in $box (UID $uid), not in $mailbox"
	fi
	rm -f "$msg" "$err"
	[[ -z $uid ]] || echo "$uid"
}

cmd_mail() {
	(($# == 5 || $# == 6)) || usage
	local dir=$1 user=$2 mailbox=$3 from=$4 subject=$5 body=${6-This is a test message.}
	local msgid
	[[ $from$subject != *[$'\r\n']* ]] || die "mail: FROM and SUBJECT must be one line (fold or encode them)"
	msgid="<$(date +%s%N).$$.$RANDOM@imapidled-harness.localhost>"
	printf '%s\n' \
		"Date: $(LC_ALL=C date -R)" \
		"From: $from" \
		"To: <$user@localhost>" \
		"Subject: $subject" \
		"Message-ID: $msgid" \
		"MIME-Version: 1.0" \
		"Content-Type: text/plain; charset=UTF-8" \
		"Content-Transfer-Encoding: 8bit" \
		"" \
		"$body" | cmd_deliver "$dir" "$user" "$mailbox"
}

cmd_expunge() {
	(($# == 4)) || usage
	local dir
	dir=$(resolve_dir "$1")
	require_harness "$dir"
	[[ $4 =~ ^[0-9]+$ ]] || die "expunge: UID must be a number"
	doveadm_in "$dir" expunge -u "$2" mailbox "$3" uid "$4"
}

cmd_flags() {
	(($# == 6)) || usage
	local dir
	dir=$(resolve_dir "$1")
	require_harness "$dir"
	[[ $4 =~ ^[0-9]+$ ]] || die "flags: UID must be a number"
	case $5 in
	add | remove | replace) ;;
	*) die "flags: operation must be add, remove or replace" ;;
	esac
	doveadm_in "$dir" flags "$5" -u "$2" "$6" mailbox "$3" uid "$4"
}

cmd_mkbox() {
	(($# == 3)) || usage
	local dir
	dir=$(resolve_dir "$1")
	require_harness "$dir"
	doveadm_in "$dir" mailbox create -u "$2" "$3"
}

cmd_doveadm() {
	(($# >= 1)) || usage
	local dir
	dir=$(resolve_dir "$1")
	require_harness "$dir"
	shift
	doveadm_in "$dir" "$@"
}

cmd_capability() {
	local dir='' user=user1 pre=0 port out line
	while (($#)); do
		case $1 in
		--pre-login) pre=1; shift ;;
		-*) die "capability: unknown option $1" ;;
		*)
			if [[ -z $dir ]]; then dir=$1; else user=$1; fi
			shift
			;;
		esac
	done
	[[ -n $dir ]] || usage
	dir=$(resolve_dir "$dir")
	require_harness "$dir"
	port=$(sed -n '/inet_listener imaps/,/}/s/^ *port = \([0-9]*\)$/\1/p' "$dir/dovecot.conf")
	if ((pre)); then
		out=$(printf 'a CAPABILITY\nb LOGOUT\n' | tls_session "$dir" "$port") || true
	else
		out=$(printf 'a LOGIN %s pass-%s\nb CAPABILITY\nc LOGOUT\n' "$user" "$user" |
			tls_session "$dir" "$port") || true
	fi
	rm -f "$dir"/tmp/s_client.*.err
	while IFS= read -r line; do
		line=${line%$'\r'}
		if [[ $line == "* CAPABILITY "* ]]; then
			printf '%s\n' "$line"
			return 0
		fi
	done <<<"$out"
	printf '%s\n' "$out" >&2
	die "no CAPABILITY response from 127.0.0.1:$port"
}

# ---------------------------------------------------------------------------
# --notify: the user in front of the screen

require_notify() {
	require_harness "$1"
	[[ -f $1/dunstrc && -f $1/xvfb.lock && -s $1/dbus.address ]] ||
		die "$1: no notification server (start it with --notify)"
}

# Exports the private bus and the X display of the harness in DIR.
notify_env() {
	local dir=$1 n='' rest
	read -r n rest <"$dir/xvfb.lock" || true
	[[ $n =~ ^[0-9]+$ ]] || die "$dir/xvfb.lock: no display number"
	DBUS_SESSION_BUS_ADDRESS=$(head -n 1 "$dir/dbus.address")
	# shellcheck disable=SC2031 # launch_dunst's subshell is another story
	export DBUS_SESSION_BUS_ADDRESS DISPLAY=":$n" XAUTHORITY="$dir/Xauthority"
}

dmenu_runs() {
	local n=0
	[[ ! -f $1/dmenu.log ]] || n=$(wc -l <"$1/dmenu.log")
	echo $((n))
}

cmd_notify_action() {
	(($# == 2)) || usage
	local dir which=$2 shown before deadline
	dir=$(resolve_dir "$1")
	require_notify "$dir"
	notify_env "$dir"
	case $which in
	default) echo 'key:default' >"$dir/dmenu.want" ;;
	context) echo 'label:Mark as read' >"$dir/dmenu.want" ;;
	*) die "notify-action: expected default or context, not '$which'" ;;
	esac
	shown=$(timeout 10 dunstctl count displayed) || die "dunstctl count failed (is dunst stopped?)"
	[[ $shown =~ ^[0-9]+$ ]] || die "dunstctl count displayed said '$shown'"
	((shown > 0)) || die "notify-action: no notification on screen"
	# A click: dunst invokes the "default" action (or the only one, or opens
	# the context menu). dunst 1.9 takes no other position than 0, the oldest
	# popup; with more on screen the context menu picks the newest's instead.
	if [[ $which == default ]] && ((shown == 1)); then
		timeout 10 dunstctl action 0 || die "dunstctl action 0 failed"
		return 0
	fi
	before=$(dmenu_runs "$dir")
	timeout 10 dunstctl context || die "dunstctl context failed"
	deadline=$(($(now_ms) + 5000))
	until (($(dmenu_runs "$dir") > before)); do
		(($(now_ms) < deadline)) || die "dunst ran no context menu within 5s (no actions on screen?)"
		sleep 0.01
	done
	if [[ $(tail -n 1 "$dir/dmenu.log") == - ]]; then
		cat "$dir/dmenu.in" >&2 || true
		die "the context menu (above) had no entry for $(<"$dir/dmenu.want")"
	fi
}

cmd_screenshot() {
	(($# == 2)) || usage
	local dir png=$2 convert='' c
	dir=$(resolve_dir "$1")
	require_notify "$dir"
	notify_env "$dir"
	command -v xwd >/dev/null || die "screenshot needs xwd (x11-apps)"
	# Debian's ImageMagick first: a convert earlier in PATH may be a stand-in.
	for c in /usr/bin/convert-im6.q16 /usr/bin/convert "$(command -v convert || true)"; do
		if [[ -n $c && -x $c ]]; then
			convert=$c
			break
		fi
	done
	[[ -n $convert ]] || die "screenshot needs ImageMagick's convert (imagemagick)"
	# Seen once under heavy load: X_GetImage on the root failing with
	# BadMatch while a popup was being mapped. It is transient: try again.
	local attempt
	for attempt in 1 2 3; do
		if xwd -root -silent -out "$png.xwd" && "$convert" "xwd:$png.xwd" "png:$png"; then
			rm -f "$png.xwd"
			return 0
		fi
		echo "harness: screenshot attempt $attempt of $DISPLAY failed" >&2
		sleep 0.3
	done
	rm -f "$png.xwd"
	die "screenshot of $DISPLAY into $png failed"
}

# ---------------------------------------------------------------------------

(($# >= 1)) || usage
cmd=$1
shift
case $cmd in
start) cmd_start "$@" ;;
stop) cmd_stop "$@" ;;
deliver) cmd_deliver "$@" ;;
mail) cmd_mail "$@" ;;
expunge) cmd_expunge "$@" ;;
flags) cmd_flags "$@" ;;
mkbox) cmd_mkbox "$@" ;;
doveadm) cmd_doveadm "$@" ;;
capability) cmd_capability "$@" ;;
server-stop) cmd_server_stop "$@" ;;
server-start) cmd_server_start "$@" ;;
notify-action) cmd_notify_action "$@" ;;
screenshot) cmd_screenshot "$@" ;;
_guard) cmd_guard "$@" ;;
-h | --help | help) usage 0 ;;
*) die "unknown command '$cmd' (try --help)" ;;
esac
