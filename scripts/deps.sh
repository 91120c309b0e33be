#!/bin/sh
# Install the Debian packages that building, testing and the demo need, but only
# the ones that are missing: on a machine that has them all this is one dpkg-query.
#
#   scripts/deps.sh            build + test + demo packages
#   scripts/deps.sh --bench    those and what `make bench` needs (plots, profilers)
#   scripts/deps.sh --print    list what would be installed, install nothing
set -eu

PACKAGES="
build-essential
pkg-config
libssl-dev
openssl
libsystemd-dev
libdbus-1-dev
libnotify-dev
libglib2.0-dev
libgmime-3.0-dev
check
clang
libclang-rt-14-dev
dovecot-core
dovecot-imapd
dbus-daemon
procps
python3-dbusmock
python3-dbus
python3-gi
libglib2.0-bin
iproute2
systemd
python3
dunst
xvfb
x11-apps
imagemagick
xauth
libnotify-bin
fonts-dejavu-core
valgrind
"

# make bench: gnuplot draws the memory plot; perf counts wake-ups by cause and,
# with valgrind and strace, profiles a figure that misses its target.
BENCH_PACKAGES="
gnuplot-nox
linux-perf
valgrind
strace
"

print=""
for arg in "$@"; do
	case "$arg" in
	--bench) PACKAGES="$PACKAGES $BENCH_PACKAGES" ;;
	--print) print=1 ;;
	*) echo "usage: scripts/deps.sh [--bench] [--print]" >&2; exit 2 ;;
	esac
done

missing=""
for p in $PACKAGES; do
	status=$(dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null || true)
	case "$status" in
	ii*) ;;
	*) missing="$missing $p" ;;
	esac
done

if [ -z "$missing" ]; then
	exit 0
fi

if [ -n "$print" ]; then
	echo "$missing"
	exit 0
fi

echo "deps: installing missing Debian packages:$missing" >&2
if [ "$(id -u)" = 0 ]; then
	SUDO=""
elif command -v sudo >/dev/null 2>&1; then
	SUDO="sudo"
else
	echo "deps: not root and no sudo; install as root: apt-get install$missing" >&2
	exit 1
fi

export DEBIAN_FRONTEND=noninteractive
# Packaged services (dovecot) must not start system-wide: the tests run their own.
# policy-rc.d is the Debian way to say so for this install only.
policy=/usr/sbin/policy-rc.d
made_policy=""
if [ ! -e "$policy" ]; then
	printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
	$SUDO chmod 755 "$policy"
	made_policy=1
fi
cleanup() { [ -n "$made_policy" ] && $SUDO rm -f "$policy"; true; }
trap cleanup EXIT

$SUDO apt-get update -q >/dev/null || $SUDO apt-get update
# shellcheck disable=SC2086
$SUDO apt-get install -y -q --no-install-recommends $missing
