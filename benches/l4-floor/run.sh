#!/usr/bin/env bash
# The ceiling of "L4 requests per LB CPU-second" on this machine: ../shared/bench (lbbench)
# with floor.c, the least work a proxy can do with its own sockets, in the daemon slot, on
# the L4 100-byte scenario only, next to HAProxy and nginx in the same rounds. See README.md.
#
#   benches/l4-floor/run.sh                    # about 5 minutes (7 rounds)
#   ROUNDS=3 benches/l4-floor/run.sh
#   LBBENCH=/path/to/shared/bench benches/l4-floor/run.sh
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
LBBENCH=${LBBENCH:-$ROOT/../shared/bench}
OUT_DIR=${OUT_DIR:-/tmp/l4-floor-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT_DIR"

[[ -x $LBBENCH/run.sh ]] || { echo "lbbench not found at $LBBENCH (set LBBENCH)" >&2; exit 1; }
command -v cc >/dev/null || { echo "needs a C compiler (cc)" >&2; exit 1; }
cc -O2 -Wall -Wextra -o "$OUT_DIR/floor" "$HERE/floor.c"

# The same knobs as any lbbench run; only the daemon slot and the scenarios differ. BIG=0: the
# 64 KiB scenario would compare floor's 16 KiB buffer copy with splice, which is not the point.
OUT_DIR=$OUT_DIR/lbbench LB_NAME=floor LB_CMD="$OUT_DIR/floor {l4} {backends}" LB_MODES=l4 \
    BIG=0 ROUNDS=${ROUNDS:-7} "$LBBENCH/run.sh"

"$ROOT/benches/lbbench-ratios.py" "$OUT_DIR/lbbench/runs.tsv"
echo "[l4-floor] results in $OUT_DIR/lbbench"
