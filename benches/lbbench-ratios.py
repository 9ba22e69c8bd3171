#!/usr/bin/env python3
"""Per-round ratios between the load balancers of one or more ../shared/bench runs (runs.tsv),
pooled: the median of "A's figure / B's figure in the same round", over every round of every
file given. On a noisy VM one run's 7 rounds move by 10% between runs; pooling the rounds of
runs made the same day is what the README quotes.

    benches/lbbench-ratios.py /tmp/lbbench-*/runs.tsv benches/results/*-runs.tsv

Standard library only.
"""
import csv
import statistics
import sys

PEERS = ["haproxy", "nginx"]


def pairs(names):
    """Each daemon (the LB_NAME of a run: portico, or benches/l4-floor's floor) against each
    peer, then nginx against HAProxy."""
    daemons = sorted(n for n in names if n not in PEERS and n != "direct")
    return [(d, p) for d in daemons for p in PEERS] + [("nginx", "haproxy")]


def load(paths):
    """{(file, round, lb, scenario): row} of the runs that count."""
    runs = {}
    for i, path in enumerate(paths):
        with open(path) as f:
            for r in csv.DictReader(f, delimiter="\t"):
                if r["ok"] == "True" and r.get("discarded") in ("", "False", None):
                    runs[(i, r["round"], r["lb"], r["scenario"])] = r
    return runs


def figures(r):
    cpu = float(r["lb_cpu_s"] or "nan")
    return {
        "per CPU-s": float(r["requests"]) / cpu,
        "req/s": float(r["rps"]),
        "p99": float(r["p99_us"]),
    }


def main():
    paths = sys.argv[1:]
    if not paths:
        sys.exit(__doc__)
    runs = load(paths)
    rounds = sorted({(k[0], k[1]) for k in runs})
    scenarios = sorted({k[3] for k in runs if k[2] != "direct"})
    print(f"{len(paths)} file(s), {len(rounds)} rounds; medians of per-round ratios [min-max]")
    for sc in scenarios:
        for a, b in pairs({k[2] for k in runs}):
            ratios = {"per CPU-s": [], "req/s": [], "p99": []}
            for fr in rounds:
                ra, rb = runs.get((*fr, a, sc)), runs.get((*fr, b, sc))
                if ra and rb:
                    fa, fb = figures(ra), figures(rb)
                    for key in ratios:
                        ratios[key].append(fa[key] / fb[key])
            if not ratios["req/s"]:
                continue
            cells = [
                f"{key} {statistics.median(v):.3f} [{min(v):.2f}-{max(v):.2f}]"
                for key, v in ratios.items()
            ]
            print(f"{sc:6} {a}/{b}: " + ", ".join(cells) + f"  (n={len(ratios['req/s'])})")


if __name__ == "__main__":
    main()
