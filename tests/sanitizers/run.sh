#!/bin/sh
# make check-asan and make check-valgrind run the suites through this, from a
# build tree of their own:
#
#   tests/sanitizers/run.sh asan BUILDDIR TEST...
#       the unit suites and every TEST (integration test programs) built with
#       AddressSanitizer + UndefinedBehaviorSanitizer, as they are
#   tests/sanitizers/run.sh valgrind BUILDDIR WHOLE... -- DAEMON...
#       the unit suites (CK_FORK=no) and every WHOLE test program under
#       valgrind memcheck; in every DAEMON test the test program runs as it
#       is and the daemons it starts run under valgrind
#       (IMAPIDLED_DAEMON_WRAPPER, see tests/support/daemon-runner.h)
#
# Every process that reports writes into BUILDDIR/sanitizer-logs/: test
# programs, the daemons they start (whose stderr is a log file the tests
# read) and imapidlectl alike. The run fails if a test fails or if any report
# is there afterwards: an ASan/UBSan/LSan report file, a valgrind log with an
# error or a definite or indirect leak in it, or a note from daemon-runner
# about a daemon that had to be killed (its leaks went unchecked).
#
# Tests wait IMAPIDLED_TEST_TIMEOUT_SCALE times longer (2 under ASan, 5 under
# valgrind), Check's timeouts likewise (CK_TIMEOUT_MULTIPLIER).
set -u

mode=${1:?usage: run.sh asan|valgrind BUILDDIR TEST...}
b=$(cd "${2:?no build directory}" && pwd) || exit 1
shift 2
src=$(cd "$(dirname "$0")/../.." && pwd)
logs=$b/sanitizer-logs
supp=$src/tests/sanitizers

rm -rf "$logs"
mkdir -p "$logs"
export IMAPIDLED_SRCDIR="$src" IMAPIDLED_BUILDDIR="$b" IMAPIDLED_SANITIZER_LOG_DIR="$logs"

whole=""
daemon=""
vg=""
case $mode in
asan)
	scale=2
	# halt and abort on the first error; reports go to files, not to the
	# stderr that a test may be reading or that is the daemon's log
	export ASAN_OPTIONS="detect_leaks=1:halt_on_error=1:abort_on_error=1:log_path=$logs/asan"
	export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:abort_on_error=1:log_path=$logs/ubsan"
	export LSAN_OPTIONS="suppressions=$supp/lsan.supp:print_suppressions=0"
	daemon="$*"
	;;
valgrind)
	scale=5
	while [ $# -gt 0 ] && [ "$1" != "--" ]; do
		whole="$whole $1"
		shift
	done
	[ $# -gt 0 ] && shift
	daemon="$*"
	# the shim stands in for pidfd_open(), which valgrind 3.19 lacks
	vg="env LD_PRELOAD=$b/pidfd-shim.so valgrind -q --error-exitcode=99 --leak-check=full
	    --show-leak-kinds=definite,indirect --errors-for-leak-kinds=definite,indirect
	    --suppressions=$supp/valgrind.supp --log-file=$logs/valgrind.%p"
	vg=$(echo $vg)
	export IMAPIDLED_DAEMON_WRAPPER="$vg"
	;;
*)
	echo "run.sh: unknown mode $mode" >&2
	exit 2
	;;
esac
export IMAPIDLED_TEST_TIMEOUT_SCALE="${IMAPIDLED_TEST_TIMEOUT_SCALE:-$scale}"
export CK_TIMEOUT_MULTIPLIER="${CK_TIMEOUT_MULTIPLIER:-$scale}"

failed=""
start=$(date +%s)

# run NAME CK_DEFAULT_TIMEOUT COMMAND...
run() {
	name=$1
	timeout=$2
	shift 2
	t0=$(date +%s)
	echo "== $mode: $name"
	CK_DEFAULT_TIMEOUT=$timeout "$@"
	rc=$?
	echo "== $mode: $name: exit $rc, $(($(date +%s) - t0)) s"
	[ $rc -eq 0 ] || failed="$failed $name"
}

if [ "$mode" = asan ]; then
	run test-unit 30 "$b/test-unit"
else
	# no fork per test: valgrind would check every forked test process
	# for leaks, and one process is faster
	export CK_FORK=no
	run test-unit 30 $vg "$b/test-unit"
	unset CK_FORK
fi
for t in $whole; do
	run "$t" 120 $vg "$b/$t"
done
for t in $daemon; do
	run "$t" 120 "$b/$t"
done

# Reports: any ASan/UBSan file, any daemon-runner note, any valgrind log with
# an error line in it ("==PID== ..."; -q leaves only errors and the leaks
# that count). Valgrind also makes an empty log for every child that a
# process under it starts (not followed: --trace-children=no).
reports=""
for f in "$logs"/*; do
	[ -s "$f" ] || continue
	case ${f##*/} in
	valgrind.*) grep -q '^==[0-9]*== ' "$f" || continue ;;
	esac
	reports="$reports $f"
done
for f in $reports; do
	echo "---- $f"
	head -n 80 "$f"
done

echo "== $mode: $(($(date +%s) - start)) s"
if [ -n "$failed" ] || [ -n "$reports" ]; then
	[ -z "$failed" ] || echo "== $mode: failed:$failed"
	[ -z "$reports" ] || echo "== $mode: $(echo $reports | wc -w) report(s) in $logs"
	exit 1
fi
echo "== $mode: every test passed, no report"
