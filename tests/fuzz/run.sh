#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# Runs the libFuzzer targets (make fuzz, make check-fuzz-smoke, make fuzz-merge).
#
#   tests/fuzz/run.sh run   BUILDDIR SECONDS NAME...
#   tests/fuzz/run.sh merge BUILDDIR 0 NAME...
#
# run: each target BUILDDIR/fuzz/fuzz-NAME for SECONDS, starting from a fresh copy of
# tests/fuzz/corpus/NAME/ in BUILDDIR/fuzz/run/NAME/corpus (new inputs go there, never into
# the checked-in corpus), with the flags in tests/fuzz/NAME.options and the dictionary
# tests/fuzz/NAME.dict if there is one. Prints the executions per target; fails if any target
# crashed, leaked, timed out or ran out of memory (the input is kept in
# BUILDDIR/fuzz/run/NAME/artifacts/). Every target runs even after one failed.
#
# merge: adds the inputs of the last run that cover new code to tests/fuzz/corpus/NAME/
# (libFuzzer -merge=1: minimised, named by content). Review and commit them.
set -uo pipefail

mode=$1 build=$2 seconds=$3
shift 3
src=$(cd "$(dirname "$0")" && pwd)

# GLib before 2.76 keeps freed slices in its own magazines, where LeakSanitizer
# cannot tell them from leaks.
export G_SLICE=always-malloc
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1}

failed=()
summary=()
for name in "$@"; do
        bin=$build/fuzz/fuzz-$name
        work=$build/fuzz/run/$name
        opts=()
        [ -f "$src/$name.options" ] && mapfile -t opts < <(grep -v '^#' "$src/$name.options" | grep .)
        [ -f "$src/$name.dict" ] && opts+=("-dict=$src/$name.dict")

        if [ "$mode" = merge ]; then
                if [ ! -d "$work/corpus" ]; then
                        echo "$name: no run to merge from ($work/corpus)"
                        continue
                fi
                before=$(ls "$src/corpus/$name" | wc -l)
                "$bin" -merge=1 "${opts[@]}" "$src/corpus/$name" "$work/corpus" \
                        >"$build/fuzz/merge-$name.log" 2>&1 || {
                        tail -n 40 "$build/fuzz/merge-$name.log"
                        failed+=("$name")
                        continue
                }
                echo "$name: corpus $before -> $(ls "$src/corpus/$name" | wc -l) inputs"
                continue
        fi

        rm -rf "$work"
        mkdir -p "$work/corpus" "$work/artifacts"
        cp "$src/corpus/$name"/* "$work/corpus/"
        echo "== $name (${seconds} s)"
        "$bin" "${opts[@]}" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
                -print_final_stats=1 -artifact_prefix="$work/artifacts/" "$work/corpus" \
                >"$work/log" 2>&1
        rc=$?
        execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/log")
        if [ $rc -ne 0 ] || [ -n "$(ls -A "$work/artifacts")" ] || [ -z "$execs" ]; then
                tail -n 60 "$work/log"
                echo "$name: FAILED (exit $rc; log $work/log; input in $work/artifacts/)"
                failed+=("$name")
                continue
        fi
        line=$(printf '%-12s %10s executions in %s s, corpus %s -> %s, no crash' "$name" "$execs" \
                "$seconds" "$(ls "$src/corpus/$name" | wc -l)" "$(ls "$work/corpus" | wc -l)")
        echo "$line"
        summary+=("$line")
done

if [ "$mode" = run ] && [ ${#summary[@]} -gt 1 ]; then
        echo "== summary"
        printf '%s\n' "${summary[@]}"
fi
if [ ${#failed[@]} -gt 0 ]; then
        echo "fuzz: failed: ${failed[*]}"
        exit 1
fi
