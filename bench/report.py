#!/usr/bin/python3
"""bench/report.py OUTDIR: OUTDIR/results.jsonl (written by bench/bench.sh) ->
OUTDIR/results.md (printed too), OUTDIR/rss.dat and OUTDIR/rss.png (gnuplot).

Medians over the runs of each figure; the run count is in the table. The
targets are SPEC §8's. Standard library only (Debian's /usr/bin/python3)."""

import json
import os
import re
import statistics
import subprocess
import sys

MIB = 1024.0


def load(path):
    rows = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line.startswith("{"):
                rows.append(json.loads(line))
    return rows


def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt_ms(v):
    if v is None:
        return "n/a"
    return f"{v:.1f} ms" if abs(v) >= 10 else f"{v:.2f} ms"


def verdict(ok):
    return "**pass**" if ok else "**fail**"


# ---- idle: wake-ups by cause from `perf trace` -------------------------------

LINE = re.compile(r"^\s*[\d.?]+\s+\(\s*[\d.]*\s*(?:ms)?\):\s+(\S+)/(\d+)\s+(\w+)\((.*)\)\s+=\s+(-?\d+)")


def wakeups_by_cause(trace_path, fds, main_tid):
    """Each return of the loop's epoll_wait is a wake-up; its cause is the first
    descriptor the loop then reads (timerfd: a timer; a TCP socket: a server;
    the bus socket; an eventfd: another thread). Other threads: each poll()
    return, by whether it timed out."""
    causes = {}
    fd_kind = {}
    for item in fds.split():
        num, _, target = item.partition("=")
        if "timerfd" in target:
            clock = re.search(r"clock (\d+)", target)
            fd_kind[num] = "timer (CLOCK_%s)" % {"1": "MONOTONIC", "7": "BOOTTIME", "0": "REALTIME"}.get(
                clock.group(1) if clock else "", "?")
        elif "eventfd" in target:
            fd_kind[num] = "eventfd (another thread)"
        elif "signalfd" in target:
            fd_kind[num] = "signal"
        elif target.startswith("socket:"):
            fd_kind[num] = "socket"
    pending = False
    try:
        lines = open(trace_path, errors="replace").read().splitlines()
    except OSError:
        return None
    for line in lines:
        m = LINE.match(line)
        if not m:
            if "epoll_wait" in line and "continued" in line and str(main_tid) in line:
                pending = True
            continue
        comm, tid, call, args, ret = m.group(1), int(m.group(2)), m.group(3), m.group(4), int(m.group(5))
        if tid == main_tid:
            if call == "epoll_wait":
                pending = ret > 0
                continue
            if pending and call in ("read", "recvmsg", "recvfrom"):
                fd = re.match(r"fd: (\d+)", args)
                kind = fd_kind.get(fd.group(1), "fd") if fd else "?"
                if kind == "socket":
                    # sd-bus reads with recvmsg, the IMAP sessions with read()
                    kind = "bus socket" if call == "recvmsg" else "IMAP socket (server data)"
                causes[kind] = causes.get(kind, 0) + 1
                pending = False
        elif call in ("poll", "ppoll"):
            key = "%s thread: poll %s" % (comm, "timeout" if ret == 0 else "fd ready")
            causes[key] = causes.get(key, 0) + 1
    return causes


def main():
    out = sys.argv[1]
    rows = load(os.path.join(out, "results.jsonl"))
    by = {}
    for r in rows:
        by.setdefault(r["kind"], []).append(r)

    table = []   # (figure, target, measured, verdict)
    notes = []

    # ---- latency ----
    lat = {r["label"]: r for r in by.get("latency", [])}
    for label, name in (("default", "Dovecot defaults (0.5 s batching)"),
                        ("hibernate", "hibernated sessions (imap_hibernate_timeout = 1s)")):
        r = lat.get(label)
        if not r:
            continue
        ok50 = r["overhead_p50_ms"] <= 1.0
        table.append((f"latency, {name}: NewMail median vs. bare IDLE client ({r['count']} deliveries)",
                      "within 1 ms",
                      f"NewMail {fmt_ms(r['daemon_p50_ms'])}, bare client {fmt_ms(r['floor_p50_ms'])}: "
                      f"overhead {fmt_ms(r['overhead_p50_ms'])} (a 2nd bare client: {fmt_ms(r['control_p50_ms'])})",
                      verdict(ok50)))
        table.append((f"latency, {name}: p99",
                      "< 20 ms",
                      f"NewMail p95 {fmt_ms(r['daemon_p95_ms'])}, p99 {fmt_ms(r['daemon_p99_ms'])} "
                      f"(bare client p99 {fmt_ms(r['floor_p99_ms'])}); overhead p95 {fmt_ms(r['overhead_p95_ms'])}, "
                      f"p99 {fmt_ms(r['overhead_p99_ms'])}",
                      verdict(r["daemon_p99_ms"] < 20) + ("" if r["daemon_p99_ms"] < 20 else
                      (" (server: the bare client's own p99 is %s)" % fmt_ms(r["floor_p99_ms"]))
                      + ("; overhead p99 %s" % ("< 20 ms" if r["overhead_p99_ms"] < 20 else "≥ 20 ms")))))

    base = lat.get("default")
    shm = lat.get("default-tmpfs")
    if base:
        parts = [f"the server's DONE + UID FETCH (a bare client doing the same): {fmt_ms(base['fetch_p50_ms'])}"]
        if shm:
            parts.append(f"overhead with the state files on a tmpfs ({shm['count']} deliveries): "
                         f"{fmt_ms(shm['overhead_p50_ms'])}, so the fsync'd state write costs about "
                         f"{fmt_ms(base['overhead_p50_ms'] - shm['overhead_p50_ms'])}")
            parts.append(f"the rest (the daemon's own work, D-Bus): about "
                         f"{fmt_ms(shm['overhead_p50_ms'] - shm['fetch_p50_ms'])}")
        table.append(("latency: where the median overhead goes (defaults)", "—", "; ".join(parts), "—"))

    # ---- sessions / memory ----
    sess = {}
    for r in by.get("sessions", []):
        sess.setdefault(r["sessions"], []).append(r)
    mem = {}
    for n, rs in sorted(sess.items()):
        mem[n] = {
            "runs": len(rs),
            "rss": med([x["vm_rss_kib"] for x in rs]),
            "pd": med([x["private_dirty_kib"] for x in rs]),
            "pss": med([x["pss_kib"] for x in rs]),
            "shared": med([x["shared_clean_kib"] for x in rs]),
            "rss_after": med([x.get("after_vm_rss_kib") for x in rs]),
            "pd_after": med([x.get("after_private_dirty_kib") for x in rs]),
            "idle_ms": med([x["all_idle_ms"] for x in rs]),
            "first_ms": med([x.get("first_idle_ms") for x in rs]),
            "p50_ms": med([x.get("p50_idle_ms") for x in rs]),
            "cpu_s": med([x["sched_ns"] / 1e9 for x in rs]),
        }
    if 0 in mem:
        m = mem[0]
        table.append((f"memory at start-up, no account ({m['runs']} runs)", "—",
                      f"RSS {m['rss'] / MIB:.1f} MiB, Private_Dirty {m['pd'] / MIB:.2f} MiB "
                      f"(Shared_Clean {m['shared'] / MIB:.1f} MiB)", "—"))
    if 10 in mem:
        m = mem[10]
        ok = m["rss"] <= 12 * MIB and m["pd"] <= 3 * MIB
        table.append((f"memory, 10 accounts idle ({m['runs']} runs)", "RSS ≤ 12 MiB, Private_Dirty ≤ 3 MiB",
                      f"RSS {m['rss'] / MIB:.1f} MiB, Private_Dirty {m['pd'] / MIB:.2f} MiB "
                      f"(Shared_Clean {m['shared'] / MIB:.1f} MiB of library pages)", verdict(ok)))
        if m["rss_after"]:
            ok = m["rss_after"] <= 12 * MIB and m["pd_after"] <= 3 * MIB
            table.append(("memory, 10 accounts after their first new mail (popups shown)",
                          "RSS ≤ 12 MiB, Private_Dirty ≤ 3 MiB",
                          f"RSS {m['rss_after'] / MIB:.1f} MiB, Private_Dirty {m['pd_after'] / MIB:.2f} MiB",
                          verdict(ok)))
    big = [n for n in mem if n >= 100]
    if len(big) >= 2:
        lo, hi = min(big), max(big)
        slope_rss = (mem[hi]["rss"] - mem[lo]["rss"]) / (hi - lo)
        slope_pd = (mem[hi]["pd"] - mem[lo]["pd"]) / (hi - lo)
        table.append((f"memory per additional IDLE session ({lo} → {hi} sessions)", "≤ 48 KiB",
                      f"RSS {slope_rss:.1f} KiB, Private_Dirty {slope_pd:.1f} KiB per session",
                      verdict(slope_rss <= 48)))

    # ---- idle ----
    idle = {r["label"]: r for r in by.get("idle", [])}
    if "plain" in idle:
        r = idle["plain"]
        cpu_ms = r["cpu_sched_ns"] / 1e6
        table.append((f"idle: {r['sessions']} sessions for {r['seconds']} s (1 run)", "< 10 ms CPU",
                      f"{cpu_ms:.2f} ms on-CPU (schedstat; utime+stime {r['cpu_tick_usec'] / 1000:.0f} ms in "
                      f"10 ms ticks), {r['vol_ctxt']} voluntary context switches (= wake-ups)",
                      verdict(cpu_ms < 10)))
    causes = None
    if "traced" in idle:
        r = idle["traced"]
        causes = wakeups_by_cause(r.get("trace", ""), r["fds"], r["pid"])
    if causes is not None:
        timers = sum(v for k, v in causes.items() if k.startswith("timer") or "poll timeout" in k)
        desc = ", ".join(f"{k}: {v}" for k, v in sorted(causes.items())) or "none"
        table.append(("idle: wake-ups by cause (`perf trace`, same 120 s, a second daemon)",
                      "no timer wake-ups except refresh and keepalive",
                      f"{desc}", verdict(timers == 0)))
    if "watchdog" in idle:
        r = idle["watchdog"]
        table.append(("idle, with WatchdogSec=60s as the shipped unit (WATCHDOG=1 every ~30 s)", "—",
                      f"{r['cpu_sched_ns'] / 1e6:.2f} ms on-CPU, {r['vol_ctxt']} voluntary context switches",
                      "—"))

    # ---- burst ----
    bursts = by.get("burst", [])
    if bursts:
        n = len(bursts)
        count = bursts[0]["count"]
        all_sent = all(b["new_mail"] == count and b["missing"] == 0 and b["duplicates"] == 0 for b in bursts)
        ids = [b["notify_ids"] for b in bursts]
        shown = [b["displayed"] for b in bursts]
        cpu = med([b["cpu_tick_usec"] / 1e6 for b in bursts])
        table.append((f"burst: {count} messages ({n} runs): every NewMail", "every NewMail sent",
                      f"{min(b['new_mail'] for b in bursts)}..{max(b['new_mail'] for b in bursts)} of {count}, "
                      f"{sum(b['duplicates'] for b in bursts)} duplicates; last NewMail "
                      f"{med([b['last_new_mail_ms'] for b in bursts]) / 1000:.2f} s after the first file "
                      f"({med([b['last_after_drop_ms'] for b in bursts]):.0f} ms after the last)",
                      verdict(all_sent)))
        table.append(("burst: notifications", "one coalesced notification",
                      f"{'/'.join(str(i) for i in ids)} notification id(s) per run, "
                      f"{med([b['notify_calls'] for b in bursts]):.0f} Notify calls "
                      f"({med([b['notify_replacing'] for b in bursts]):.0f} replacing in place), "
                      f"on screen at the end: {'/'.join(str(int(s)) for s in shown)}; "
                      f"\"{bursts[-1]['last_summary']}\"",
                      verdict(all(i == 1 for i in ids))))
        table.append(("burst: CPU", "< 2 s",
                      f"{cpu:.2f} s (utime+stime); peak RSS (VmHWM) "
                      f"{med([b['vm_hwm_kib'] for b in bursts]) / MIB:.1f} MiB, RSS after "
                      f"{med([b['rss_after_kib'] for b in bursts]) / MIB:.1f} MiB (before "
                      f"{med([b['rss_before_kib'] for b in bursts]) / MIB:.1f} MiB)",
                      verdict(cpu < 2)))

    # ---- scale ----
    scale = [r for r in by.get("sessions", []) if "announce_expected" in r and r["sessions"] >= 1000]
    if scale:
        ok = all(r["announce_received"] == r["announce_expected"] and r["announce_duplicates"] == 0
                 for r in scale)
        m = mem[scale[0]["sessions"]]
        table.append((f"scale: {scale[0]['sessions']} IDLE sessions in one process ({len(scale)} runs)",
                      "all announced, nothing lost",
                      f"all idle after {m['idle_ms'] / 1000:.1f} s; one message to every account at once: "
                      f"{'/'.join(str(r['announce_received']) for r in scale)} NewMail, "
                      f"{sum(r['announce_duplicates'] for r in scale)} duplicates; start-up CPU "
                      f"{m['cpu_s']:.1f} s", verdict(ok)))

    # ---- start-up ----
    if 1 in mem and 100 in mem:
        rs = sess[100]
        t1, t100 = mem[1]["idle_ms"], mem[100]["idle_ms"]
        conn_all = med([r.get("all_connected_ms") for r in rs])
        conn_first = med([r.get("first_connect_ms") for r in rs])
        # parallel: every connection was open before the first session got to idle
        ok = all(r.get("all_connected_ms", -1) >= 0 and r["all_connected_ms"] <= r["first_idle_ms"] for r in rs)
        table.append((f"start-up: 100 accounts, process start to all idle ({mem[100]['runs']} runs; "
                      f"1 account: {mem[1]['runs']} runs)", "in parallel, not one after another",
                      f"{fmt_ms(t100)}; all 100 TCP connections open {fmt_ms(conn_all)} after start (the first at "
                      f"{fmt_ms(conn_first)}), before the first session was idle ({fmt_ms(mem[100]['first_ms'])}); "
                      f"half idle at {fmt_ms(mem[100]['p50_ms'])}. One account alone: {fmt_ms(t1)} "
                      f"(100 one after another: about {t1 * 100 / 1000:.1f} s)", verdict(ok)))

    # ---- plot ----
    pts = [(n, m["rss"] / MIB, m["pd"] / MIB) for n, m in sorted(mem.items()) if n > 0]
    with open(os.path.join(out, "rss.dat"), "w") as f:
        f.write("# sessions RSS_MiB Private_Dirty_MiB (medians)\n")
        for p in pts:
            f.write("%d %.3f %.3f\n" % p)
    base = mem.get(0)
    plot = f"""set terminal pngcairo size 800,500 font "DejaVu Sans,10"
set output "{os.path.join(out, 'rss.png')}"
set title "imapidled memory against IDLE sessions (loopback Dovecot, TLS)"
set xlabel "IDLE sessions (accounts)"
set ylabel "MiB"
set logscale x
set xrange [0.8:1300]
set yrange [0:*]
set grid
set key left top
"""
    if base:
        plot += f'set label 1 "start-up, no account: RSS {base["rss"] / MIB:.1f} MiB, Private\\\\_Dirty {base["pd"] / MIB:.2f} MiB" at graph 0.02, graph 0.78\n'
    if len(big) >= 2:
        lo, hi = min(big), max(big)
        plot += (f'set label 2 "per additional session ({lo} → {hi}): RSS '
                 f'{(mem[hi]["rss"] - mem[lo]["rss"]) / (hi - lo):.0f} KiB, Private\\\\_Dirty '
                 f'{(mem[hi]["pd"] - mem[lo]["pd"]) / (hi - lo):.0f} KiB" at graph 0.02, graph 0.70\n')
    plot += (f'plot "{os.path.join(out, "rss.dat")}" using 1:2 with linespoints lw 2 pt 7 title "RSS", '
             f'"" using 1:3 with linespoints lw 2 pt 5 title "Private\\\\_Dirty (smaps\\\\_rollup)"\n')
    if not pts:
        notes.append("no plot: no memory figures")
    else:
        try:
            subprocess.run(["gnuplot"], input=plot, text=True, check=True)
        except (OSError, subprocess.CalledProcessError) as e:
            notes.append(f"no plot: gnuplot failed ({e})")

    # ---- the page ----
    machines = by.get("machine", [])
    start = next((m for m in machines if m["when"] == "start"), None)
    end = next((m for m in machines if m["when"] == "end"), None)
    lines = ["# imapidled benchmark", ""]
    if start:
        lines.append(f"{start['date']}, commit {start['commit']}, {start['nproc']} cores, kernel "
                     f"{start['kernel']}, Dovecot {start['dovecot']}; load average (1/5/15 min) "
                     f"{start['loadavg']} at the start, {end['loadavg'] if end else '?'} at the end.")
        lines.append("")
    lines += ["| figure | target (SPEC §8) | measured | |", "| --- | --- | --- | --- |"]
    for fig, target, measured, v in table:
        lines.append(f"| {fig} | {target} | {measured} | {v} |")
    lines.append("")
    lines.append("Memory by session count (medians; RSS and Private_Dirty of /proc/PID/smaps_rollup, "
                 "read 3 s after all sessions were idle):")
    lines.append("")
    lines.append("| sessions | runs | RSS | Private_Dirty | Pss | time to all idle | daemon CPU to all idle |")
    lines.append("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for n, m in sorted(mem.items()):
        lines.append(f"| {n} | {m['runs']} | {m['rss'] / MIB:.1f} MiB | {m['pd'] / MIB:.2f} MiB | "
                     f"{m['pss'] / MIB:.1f} MiB | {fmt_ms(m['idle_ms'])} | {m['cpu_s'] * 1000:.0f} ms |")
    if 10 in sess:
        r = sess[10][0]
        if r.get("rss_by_file_kib"):
            lines.append("")
            lines.append("RSS by mapping with 10 accounts, KiB (Rss/Private_Dirty), idle: " + r["rss_by_file_kib"])
        if r.get("after_rss_by_file_kib"):
            lines.append("")
            lines.append("... after the first new mail (libnotify and GDBus at work): " + r["after_rss_by_file_kib"])
    if "plain" in idle:
        lines.append("")
        lines.append("Idle threads (the untraced daemon): " + idle["plain"]["per_thread"])
    for n in notes:
        lines.append("")
        lines.append(n)
    text = "\n".join(lines) + "\n"
    with open(os.path.join(out, "results.md"), "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
