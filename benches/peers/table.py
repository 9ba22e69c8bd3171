#!/usr/bin/env python3
"""Prints run.sh's results as markdown: OUT_DIR/runs.tsv + the raw wrk outputs -> tables.

Per LB and scenario: medians over rounds; "÷ HAProxy" is the median over rounds of the ratio
to HAProxy's run of the same scenario in the same round. Standard library only.
"""

import csv
import os
import re
import statistics
import sys
from collections import defaultdict

CLK_TCK = os.sysconf("SC_CLK_TCK")
MIB = 1024 * 1024
# wrk prints sizes with binary multiples (KB = 1024 B) and latencies in us, ms or s.
SIZE = {"B": 1, "KB": 1024, "MB": MIB, "GB": 1024 * MIB, "TB": 1024 * 1024 * MIB}
TIME_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}
UNITS = ["direct", "haproxy", "nginx", "portico"]
SCENARIOS = [
    ("l4", "L4 tcp, 100 B responses"),
    ("l4big", "L4 tcp, 64 KiB responses"),
    ("l7", "L7 http, 100 B responses"),
]


def parse_wrk(text):
    """requests, seconds, bytes read, p50/p99 (ms), errors of one wrk --latency output."""
    m = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m), ([\d.]+)([KMGT]?B) read", text)
    if not m:
        return None
    run = {
        "requests": int(m.group(1)),
        "seconds": float(m.group(2)) * TIME_MS[m.group(3)] / 1e3,
        "bytes": float(m.group(4)) * SIZE[m.group(5)],
        "errors": 0,
    }
    for pct in ("50", "99"):
        p = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s|m)\s*$", text, re.M)
        run[f"p{pct}"] = float(p.group(1)) * TIME_MS[p.group(2)] if p else float("nan")
    s = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if s:
        run["errors"] += sum(int(x) for x in s.groups())
    n = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if n:
        run["errors"] += int(n.group(1))
    return run


def load(out_dir):
    """{(unit, scenario): {round: run}} with the derived figures."""
    runs = defaultdict(dict)
    with open(os.path.join(out_dir, "runs.tsv")) as f:
        for row in csv.DictReader(f, delimiter="\t"):
            with open(os.path.join(out_dir, row["raw"])) as raw:
                run = parse_wrk(raw.read())
            if run is None:
                print(f"warning: no wrk result in {row['raw']}", file=sys.stderr)
                continue
            lb_ticks = int(row["lb_ticks"])
            lb_s = lb_ticks / CLK_TCK
            # Older runs.tsv files have no user/system split.
            user = row.get("lb_user_ticks")
            user_pct = 100 * int(user) / lb_ticks if user and lb_ticks > 0 else None
            window = float(row["seconds"])
            other = int(row["lbcpu_busy_ticks"]) / CLK_TCK - lb_s
            run.update(
                rps=run["requests"] / run["seconds"],
                mibps=run["bytes"] / MIB / run["seconds"],
                lb_cpu_s=lb_s,
                req_per_cpu=run["requests"] / lb_s if lb_s > 0 else None,
                mib_per_cpu=run["bytes"] / MIB / lb_s if lb_s > 0 else None,
                other_pct=max(0.0, 100 * other / window),
                user_pct=user_pct,
            )
            runs[(row["unit"], row["scenario"])][int(row["round"])] = run
    return runs


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def ratio_to_haproxy(runs, unit, scenario, key):
    """Median over rounds of unit's key / HAProxy's key in the same round."""
    mine, ref = runs.get((unit, scenario), {}), runs.get(("haproxy", scenario), {})
    ratios = [
        mine[r][key] / ref[r][key]
        for r in mine
        if r in ref and mine[r][key] and ref[r][key]
    ]
    return median(ratios)


def fmt(x, digits=0):
    if x is None:
        return "–"
    return f"{x:,.{digits}f}"


def table(runs, scenario, title):
    big = scenario == "l4big"
    rate, rate_name = ("mibps", "MiB/s") if big else ("rps", "req/s")
    eff, eff_name = ("mib_per_cpu", "MiB per LB CPU-s") if big else ("req_per_cpu", "req per LB CPU-s")
    lines = [
        f"### {title}",
        "",
        f"| | {rate_name} (min–max) | ÷ HAProxy | p50 ms | p99 ms | p99 ÷ HAProxy "
        f"| LB CPU-s | {eff_name} | ÷ HAProxy | LB user % | errors | LB-core other % (max) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for unit in UNITS:
        rounds = runs.get((unit, scenario))
        if not rounds:
            continue
        rs = list(rounds.values())
        rates = [r[rate] for r in rs]
        is_lb = unit != "direct"
        vs = lambda key: fmt(ratio_to_haproxy(runs, unit, scenario, key), 2) if is_lb else "–"
        lines.append(
            "| {} | {} ({}–{}) | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |".format(
                unit if is_lb else "direct (no LB)",
                fmt(median(rates), 1 if big else 0),
                fmt(min(rates), 0),
                fmt(max(rates), 0),
                vs(rate),
                fmt(median([r["p50"] for r in rs]), 2),
                fmt(median([r["p99"] for r in rs]), 2),
                vs("p99"),
                fmt(median([r["lb_cpu_s"] for r in rs]), 2) if is_lb else "–",
                fmt(median([r[eff] for r in rs]), 0) if is_lb else "–",
                vs(eff),
                fmt(median([r["user_pct"] for r in rs]), 1) if is_lb else "–",
                sum(r["errors"] for r in rs),
                fmt(max(r["other_pct"] for r in rs), 0),
            )
        )
    return "\n".join(lines)


def main():
    out_dir = sys.argv[1]
    runs = load(out_dir)
    with open(os.path.join(out_dir, "setup.txt")) as f:
        setup = f.read().strip().splitlines()
    print("## Portico vs HAProxy vs nginx (benches/peers/run.sh)\n")
    print("\n".join(f"- {line}" for line in setup))
    print("\nMedians over rounds; ÷ HAProxy = median of per-round ratios (p99: lower is better,")
    print("the rest: higher is better). LB-core other % = CPU something else used on the LB's")
    print("core during a run (approximate; high values mean the numbers shared the machine).")
    print("LB user % = the share of the LB's CPU spent in user space (utime: its code, libc, the")
    print("allocator), the rest is the kernel's (stime): socket calls, TCP on loopback, epoll.\n")
    for scenario, title in SCENARIOS:
        if any(s == scenario for (_, s) in runs):
            print(table(runs, scenario, title))
            print()


if __name__ == "__main__":
    main()
