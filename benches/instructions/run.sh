#!/usr/bin/env bash
# User-space instructions per proxied request, for Portico, HAProxy and nginx, counted by
# valgrind's callgrind: two runs of the same binary agree to about 2% on L7 whatever else the
# machine is doing, so a change of a few percent shows where wall-clock and CPU-second figures
# on a shared 2-core VM cannot. It does not count the kernel's TCP work, which is most of a proxied
# request's CPU on loopback (see the README's Performance section). See README.md.
#
#   benches/instructions/run.sh                  # L4 and L7, three proxies, about 10 minutes
#   LBS=portico MODES=l7 benches/instructions/run.sh
#
# Knobs: LBS ("haproxy nginx portico"), MODES ("l4 l7"), REQUESTS (20000: each LB and mode
# is run twice, serving REQUESTS and 2 x REQUESTS, and the difference is counted), CONNS (64),
# PORTICO_BIN (default target/release/portico, built unless SKIP_BUILD=1), OUT_DIR (default
# /tmp/portico-instructions-<time>).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
PEERS=$ROOT/benches/peers

LBS=${LBS:-"haproxy nginx portico"}
MODES=${MODES:-"l4 l7"}
REQUESTS=${REQUESTS:-20000}
CONNS=${CONNS:-64}
PORTICO_BIN=${PORTICO_BIN:-$ROOT/target/release/portico}
# Not exported to Portico: every PORTICO_* variable is a config override for it.
export -n PORTICO_BIN
OUT_DIR=${OUT_DIR:-/tmp/portico-instructions-$(date +%Y%m%d-%H%M%S)}

# The addresses and backends of benches/peers, whose config files are reused as they are.
# shellcheck source=../peers/setup.sh
source "$PEERS/setup.sh"

log() { echo "[instructions] $*" >&2; }
die() { log "error: $*"; exit 1; }

# shellcheck source=../lib/procs.sh
source "$ROOT/benches/lib/procs.sh"

for tool in valgrind callgrind_annotate h2load nginx haproxy curl; do
    command -v "$tool" >/dev/null || die "$tool is missing (apt-get install valgrind" \
        "nghttp2-client nginx libnginx-mod-stream haproxy curl)"
done
mkdir -p "$OUT_DIR/nginx/logs" "$OUT_DIR/nginx/tmp"
if [[ ${SKIP_BUILD:-0} != 1 && $LBS == *portico* ]]; then
    log "cargo build --release --bin portico"
    (cd "$ROOT" && cargo build --release --bin portico) >&2
fi

write_backend_files
# nginx's worker runs as nobody and writes its own callgrind file.
mkdir -p "$OUT_DIR/callgrind"
chmod 1777 "$OUT_DIR/callgrind"
for port in "$L4_PORT" "$L7_PORT" "$ADMIN_PORT" "${NODE_PORTS[@]}"; do
    port_open "$port" && die "port $port is already in use"
done
start backends 0 nginx -p "$OUT_DIR/backends/" -c "$PEERS/backends.conf" -e stderr
wait_ports "$START_PID" "${NODE_PORTS[@]}" ||
    die "backends did not start; see $OUT_DIR/backends.log"

# total NAME MODE N: sets TOTAL to the instructions a whole run of the LB under callgrind
# executes, from start to exit, serving N requests (h2load, CONNS connections; nginx's master
# and worker are both traced and added up). Runs in the main shell (never in `$(...)`), so that
# a failure ends the script and the LB is in STARTED for the EXIT trap.
total() {
    local name=$1 mode=$2 n=$3 port=$L4_PORT cmd files=1
    [[ $mode == l7 ]] && port=$L7_PORT
    case $name in
        haproxy) cmd=(haproxy -db -f "$PEERS/haproxy.cfg") ;;
        nginx)
            cmd=(nginx -p "$OUT_DIR/nginx/" -c "$PEERS/nginx.conf" -e stderr)
            files=2
            ;;
        portico) cmd=("$PORTICO_BIN" run --config "$PEERS/portico.toml") ;;
        *) die "unknown LB $name (LBS: haproxy nginx portico)" ;;
    esac
    local out=$OUT_DIR/callgrind/$name.$mode.$n
    rm -f "$out".*
    start "$name-$mode-$n" 1 valgrind --tool=callgrind --trace-children=yes --dump-instr=no \
        --callgrind-out-file="$out.%p" "${cmd[@]}"
    local pg=$START_PID i
    # Under valgrind a start takes seconds. The readiness probe is one request, the same for
    # both runs of a pair, so it cancels out.
    for ((i = 0; ; i++)); do
        curl -sf --max-time 2 -o /dev/null "http://$HOST:$port/" && break
        kill -0 -- "-$pg" 2>/dev/null || die "$name exited; see $OUT_DIR/$name-$mode-$n.log"
        ((i < 300)) || die "$name did not answer within a minute; see $OUT_DIR/$name-$mode-$n.log"
        sleep 0.2
    done
    local report done
    report=$(h2load --h1 -c"$CONNS" -n"$n" "http://$HOST:$port/")
    done=$(awk '/^requests:/ {print $8}' <<<"$report")
    # SIGTERM, and time to exit under valgrind (callgrind writes its totals at exit).
    kill -TERM -- "-$pg" 2>/dev/null || true
    for ((i = 0; i < 300; i++)); do
        kill -0 -- "-$pg" 2>/dev/null || break
        sleep 0.1
    done
    stop "$pg"
    [[ $done == "$n" ]] || die "$name $mode: ${done:-no} requests of $n succeeded"
    local f count found=0
    TOTAL=0
    for f in "$out".*; do
        [[ -e $f ]] || continue
        count=$(callgrind_annotate "$f" | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
        [[ -n $count ]] || die "$name $mode: no total in $f"
        TOTAL=$((TOTAL + count))
        found=$((found + 1))
    done
    ((found == files)) ||
        die "$name $mode: $found callgrind files, expected $files, in $OUT_DIR/callgrind"
}

# per_request NAME MODE: sets PER_REQUEST to the difference between a run of 2 x REQUESTS and
# one of REQUESTS, divided by REQUESTS: start-up, connection set-up and shutdown cancel out.
per_request() {
    total "$1" "$2" "$REQUESTS"
    local one=$TOTAL
    total "$1" "$2" $((2 * REQUESTS))
    PER_REQUEST=$(((TOTAL - one) / REQUESTS))
}

{
    echo "### User-space instructions per request ($(date -u +%F), callgrind," \
        "h2load --h1 -c$CONNS, runs of $((2 * REQUESTS)) minus runs of $REQUESTS requests)"
    echo
    echo "| proxy | $(for m in $MODES; do printf '%s | ' "$m"; done)"
    echo "|---|$(for _ in $MODES; do printf -- '---:|'; done)"
} | tee "$OUT_DIR/results.md"
for name in $LBS; do
    row="| $name |"
    for mode in $MODES; do
        log "$name $mode"
        per_request "$name" "$mode"
        row="$row $PER_REQUEST |"
    done
    echo "$row" | tee -a "$OUT_DIR/results.md"
done
log "results in $OUT_DIR"
