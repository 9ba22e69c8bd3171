#!/usr/bin/env python3
"""The table of benches/reload/run.sh: reload durations (from Portico's "reload applied ...
took_ms=N" lines) and wrk's throughput and latency percentiles per run.

    report.py OUT_DIR IDLE_FIRST IDLE_LAST IDLE_CPU_MS
"""
import re
import statistics
import sys
from pathlib import Path

UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def ms(text):
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    return float(m.group(1)) * UNITS[m.group(2)] if m else float("nan")


def reload_outcomes(log):
    """Every reload outcome in log order: took_ms (None when the line has none: a Portico
    older than the took_ms field), or "failed"."""
    out = []
    for line in log.read_text().splitlines():
        if "reload applied" in line:
            m = re.search(r"took_ms=(\d+)", line)
            out.append(int(m.group(1)) if m else None)
        elif "reload failed" in line:
            out.append("failed")
    return out


def wrk(path):
    text = path.read_text()
    r = {"rps": float("nan"), "errors": 0}
    for line in text.splitlines():
        f = line.split()
        if f[:1] == ["Requests/sec:"]:
            r["rps"] = float(f[1])
        elif f[:1] == ["Latency"] and len(f) >= 4:
            r["max"] = ms(f[3])
        elif len(f) == 2 and f[0] in ("50%", "90%", "99%"):
            r[f[0]] = ms(f[1])
        elif line.strip().startswith("Socket errors:"):
            r["errors"] += sum(int(n) for n in re.findall(r"\d+", line))
        elif line.strip().startswith("Non-2xx or 3xx responses:"):
            r["errors"] += int(line.split(":")[1])
    return r


def durations(took):
    ok = [t for t in took if isinstance(t, int)]
    failed = took.count("failed")
    untimed = took.count(None)
    parts = []
    if ok:
        parts.append(
            f"{len(ok)} reloads: min {min(ok)} ms, median {statistics.median(ok):g} ms, "
            f"max {max(ok)} ms"
        )
    if untimed:
        parts.append(f"{untimed} applied (no took_ms in the log)")
    if failed:
        parts.append(f"{failed} FAILED")
    return "; ".join(parts) or "none"


def main():
    out = Path(sys.argv[1])
    idle_first, idle_last, idle_cpu = int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    outcomes = reload_outcomes(out / "portico.log")
    print((out / "setup.txt").read_text().rstrip())
    print()
    idle = outcomes[idle_first - 1 : idle_last]
    print(f"Reloads without traffic: {durations(idle)}; {idle_cpu} ms of CPU per reload")
    rows = []
    for line in (out / "runs.txt").read_text().splitlines():
        name, first, last = line.split()
        r = wrk(out / "raw" / f"{name}.log")
        took = outcomes[int(first) - 1 : int(last)] if "reloads" in name else []
        rows.append((name, r, took))
    print()
    print("| run | req/s | p50 ms | p90 ms | p99 ms | max ms | errors | reloads during the run |")
    print("|---|---|---|---|---|---|---|---|")
    for name, r, took in rows:
        during = durations(took) if "reloads" in name else "-"
        print(
            f"| {name} | {r['rps']:.0f} | {r.get('50%', float('nan')):.2f} | "
            f"{r.get('90%', float('nan')):.2f} | {r.get('99%', float('nan')):.2f} | "
            f"{r.get('max', float('nan')):.1f} | {r['errors']} | {during} |"
        )


if __name__ == "__main__":
    main()
