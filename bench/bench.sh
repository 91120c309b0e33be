#!/usr/bin/env bash
# bench/bench.sh OUTDIR — what `make bench` runs: the figures of SPEC §8 on
# throwaway Dovecots (tests/harness/harness.sh), written to OUTDIR/results.md
# (also printed), OUTDIR/rss.png, the raw JSON lines in OUTDIR/results.jsonl and
# every program's stderr in OUTDIR/log.
#
#   1. harnesses: "def" (Dovecot's defaults, dunst), "hib" (imap_hibernate_timeout
#      = 1s, dunst), "idle-a/-b/-c" (a private bus each, 10 users), "big" (1,003
#      users, each its own uid; high-performance login, limits for 2,500 sessions;
#      dunst; no hibernation, see README "Performance")
#   2. idle cost: three daemons with 10 sessions, 120 s, in the background:
#      a (the figure: no tracer), b (the same under `perf trace`, for the causes
#      of wake-ups), c (WATCHDOG_USEC=60 s as the shipped unit has). Their window
#      overlaps the latency runs: an idle process's CPU time and wake-ups are its
#      own, whatever else runs.
#   3. latency: 200 deliveries each on "def" and "hib", against the bare IDLE
#      clients of the same run; 50 more on "def" with the daemon's state files on
#      a tmpfs (what the fsync'd state write costs)
#   4. sessions: 0, 1, 10, 100, 1,000 accounts (runs: 3, 5, 3, 5, 2; each a fresh
#      daemon and a first start), memory at each; start-up times from the 1 and
#      100 runs; the 10 and 1,000 runs also deliver one message to every
#      account at once and count the NewMail signals (and read memory again:
#      after the first popups)
#   5. burst: 10,000 messages, three times (users 1001..1003)
#   6. bench/report.py: medians, the table, the plot
#
# Environment: IMAPIDLED_BUILDDIR (the build with imapidled, free-port and
# bench/), BENCH_LATENCY_COUNT (200), BENCH_IDLE_SECONDS (120), BENCH_QUICK=1
# (a few seconds of everything: to check the pipeline, not to measure).
set -euo pipefail

OUT=${1:?usage: bench/bench.sh OUTDIR}
SELF=$(readlink -f -- "${BASH_SOURCE[0]}")
REPO=$(dirname -- "$(dirname -- "$SELF")")
BUILD=${IMAPIDLED_BUILDDIR:-$REPO/build}
export IMAPIDLED_BUILDDIR=$BUILD
HARNESS=$REPO/tests/harness/harness.sh
BIN=$BUILD/bench

LAT_COUNT=${BENCH_LATENCY_COUNT:-200}
IDLE_SECONDS=${BENCH_IDLE_SECONDS:-120}
BURST_RUNS=3
BURST_COUNT=10000
SESSION_RUNS=("0:3" "1:5" "10:3" "100:5" "1000:2")
BIG_USERS=1003
if [[ ${BENCH_QUICK:-} == 1 ]]; then
	LAT_COUNT=5 IDLE_SECONDS=5 BURST_RUNS=1 BURST_COUNT=500
	SESSION_RUNS=("0:1" "1:1" "10:1" "100:1")
	BIG_USERS=103
fi

mkdir -p "$OUT"
rm -f "$OUT"/results.jsonl "$OUT"/log "$OUT"/*.env "$OUT"/latency-*.jsonl "$OUT"/idle-*.trace \
	"$OUT"/results.md "$OUT"/rss.png "$OUT"/rss.dat
: >"$OUT/log"
START=$(date +%s)

log() {
	printf '== %s (%ds)\n' "$*" $(($(date +%s) - START)) | tee -a "$OUT/log" >&2
}

loadavg() {
	cut -d' ' -f1-3 /proc/loadavg
}

# The machine, once at the start and once at the end.
machine() {
	local when=$1
	printf '{"kind":"machine","when":"%s","date":"%s","loadavg":"%s","nproc":%s,"kernel":"%s","dovecot":"%s","commit":"%s"}\n' \
		"$when" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$(loadavg)" "$(nproc)" "$(uname -r)" \
		"$(dovecot --version 2>/dev/null | cut -d' ' -f1)" \
		"$(git -C "$REPO" describe --always --dirty 2>/dev/null || echo unknown)" >>"$OUT/results.jsonl"
}

# start_harness NAME OPTIONS...: a harness in /tmp (Dovecot's uids must reach
# it), stopped when this script exits however it exits.
HARNESS_DIRS=()
start_harness() {
	local name=$1 dir
	shift
	dir=$(mktemp -d /tmp/imapidled-bench.XXXXXX)
	HARNESS_DIRS+=("$dir")
	"$HARNESS" start "$dir" --owner $$ --remove-on-owner-exit "$@" >"$OUT/$name.env" 2>>"$OUT/log" ||
		{ tail -n 20 "$OUT/log" >&2; echo "bench: harness $name failed to start" >&2; exit 1; }
}

BG_PIDS=()
cleanup() {
	local p d
	for p in "${BG_PIDS[@]}"; do
		kill "$p" 2>/dev/null || true
	done
	for d in "${HARNESS_DIRS[@]}"; do
		"$HARNESS" stop "$d" --remove 2>>"$OUT/log" || true
	done
}
trap cleanup EXIT

# run PROGRAM ARGS...: its JSON lines into results.jsonl, its stderr into log.
run() {
	"$BIN/$1" "${@:2}" >>"$OUT/results.jsonl" 2>>"$OUT/log"
}

for p in bench-latency bench-sessions bench-idle bench-burst; do
	[[ -x $BIN/$p ]] || { echo "bench: $BIN/$p missing (make bench-build)" >&2; exit 1; }
done
PERF_OK=0
if perf stat -e syscalls:sys_enter_read true >/dev/null 2>&1; then
	PERF_OK=1
fi

machine start
log "harnesses (load average $(loadavg))"
start_harness def --notify
start_harness hib --notify --hibernate 1
start_harness idle-a --dbus --users 10
start_harness idle-b --dbus --users 10
start_harness idle-c --dbus --users 10
start_harness big --notify --users "$BIG_USERS" --scale

log "idle: 3 daemons x 10 sessions for ${IDLE_SECONDS}s, in the background"
"$BIN/bench-idle" --harness "$OUT/idle-a.env" --label plain --seconds "$IDLE_SECONDS" \
	>"$OUT/idle-a.jsonl" 2>>"$OUT/log" &
BG_PIDS+=($!)
if ((PERF_OK)); then
	"$BIN/bench-idle" --harness "$OUT/idle-b.env" --label traced --seconds "$IDLE_SECONDS" \
		--trace "$OUT/idle-b.trace" >"$OUT/idle-b.jsonl" 2>>"$OUT/log" &
	BG_PIDS+=($!)
fi
"$BIN/bench-idle" --harness "$OUT/idle-c.env" --label watchdog --seconds "$IDLE_SECONDS" \
	--watchdog-usec 60000000 >"$OUT/idle-c.jsonl" 2>>"$OUT/log" &
BG_PIDS+=($!)

log "latency: $LAT_COUNT deliveries, Dovecot defaults"
run bench-latency --harness "$OUT/def.env" --label default --user user1 --count "$LAT_COUNT" \
	--raw "$OUT/latency-default.jsonl"
# What persisting before announcing costs: the same with the state files on a tmpfs.
if [[ -d /dev/shm && -w /dev/shm ]]; then
	log "latency: $((LAT_COUNT / 4)) deliveries, Dovecot defaults, the daemon's state on a tmpfs"
	SHM_STATE=$(mktemp -d /dev/shm/imapidled-bench.XXXXXX)
	run bench-latency --harness "$OUT/def.env" --label default-tmpfs --user user2 --count $((LAT_COUNT / 4)) \
		--state-dir "$SHM_STATE" --raw "$OUT/latency-default-tmpfs.jsonl"
	rm -rf "$SHM_STATE"
fi
log "latency: $LAT_COUNT deliveries to hibernated sessions (imap_hibernate_timeout = 1s)"
run bench-latency --harness "$OUT/hib.env" --label hibernate --user user1 --count "$LAT_COUNT" --hibernate \
	--raw "$OUT/latency-hibernate.jsonl"

log "idle: waiting for the window to end"
for p in "${BG_PIDS[@]}"; do
	wait "$p" || { echo "bench: an idle run failed (see $OUT/log)" >&2; exit 1; }
done
BG_PIDS=()
cat "$OUT"/idle-*.jsonl >>"$OUT/results.jsonl"

for spec in "${SESSION_RUNS[@]}"; do
	n=${spec%%:*} runs=${spec##*:} extra=()
	((n == 10 || n >= 1000)) && extra=(--announce)
	log "sessions: $n, $runs run(s)"
	run bench-sessions --harness "$OUT/big.env" --sessions "$n" --runs "$runs" "${extra[@]}"
done

for ((i = 1; i <= BURST_RUNS; i++)); do
	log "burst: $BURST_COUNT messages, run $i/$BURST_RUNS"
	run bench-burst --harness "$OUT/big.env" --user "user$((BIG_USERS - BURST_RUNS + i))" \
		--count "$BURST_COUNT" --label "run$i"
done

machine end
log "report"
python3 "$REPO/bench/report.py" "$OUT"
log "done in $(($(date +%s) - START))s"
