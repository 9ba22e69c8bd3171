#!/usr/bin/env bash
# Portico next to HAProxy and nginx on this machine: same four backends, same client, same
# ports, same cores, one proxy at a time, interleaved rounds. See README.md.
#
#   benches/peers/run.sh                        # 3 rounds x 5 s per run (about 4 minutes)
#   ROUNDS=5 DURATION=10 benches/peers/run.sh
#
# Knobs: ROUNDS (3), DURATION (s, 5), WARMUP (s, 1), CONNS (64), LBS ("haproxy nginx portico"),
# DIRECT (1: also measure wrk straight at one node, the ceiling), LB_CPU (1), CLIENT_CPU (0:
# wrk and the backends), PORTICO_BIN (default target/release/portico, built with
# `cargo build --release` unless SKIP_BUILD=1), OUT_DIR (default /tmp/portico-peers-<time>).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
WARMUP=${WARMUP:-1}
CONNS=${CONNS:-64}
LBS=${LBS:-"haproxy nginx portico"}
DIRECT=${DIRECT:-1}
LB_CPU=${LB_CPU:-1}
CLIENT_CPU=${CLIENT_CPU:-0}
PORTICO_BIN=${PORTICO_BIN:-$ROOT/target/release/portico}
# Not exported to Portico: every PORTICO_* variable is a config override for it.
export -n PORTICO_BIN
OUT_DIR=${OUT_DIR:-/tmp/portico-peers-$(date +%Y%m%d-%H%M%S)}

# Addresses (fixed by the config files next to this script) and write_backend_files.
# shellcheck source=setup.sh
source "$HERE/setup.sh"

log() { echo "[peers] $*" >&2; }
die() { log "error: $*"; exit 1; }

# Processes: own process groups, stopped by group id (start, stop, cleanup, wait_ports).
# shellcheck source=../lib/procs.sh
source "$ROOT/benches/lib/procs.sh"

# CPU of a process group, in clock ticks: "user system", the sums of utime and stime (fields 14
# and 15 of /proc/PID/stat) of every process whose process group (field 5) is PGID; threads are
# included. The split shows how much of a proxy's CPU is its own code and how much the kernel's.
group_ticks() {
    local pg=$1 user=0 system=0 f line fields
    for f in /proc/[0-9]*/stat; do
        read -r line 2>/dev/null <"$f" || continue
        read -r -a fields <<<"${line##*) }"   # fields[0] is field 3 (state)
        if [[ ${fields[2]} == "$pg" ]]; then
            user=$((user + fields[11]))
            system=$((system + fields[12]))
        fi
    done
    echo "$user $system"
}

# Busy ticks (user + nice + system) of one CPU, from /proc/stat: with the LB alone on its CPU,
# busy - LB is what something else ran there.
cpu_busy_ticks() {
    awk -v c="cpu$1" '$1 == c { print $2 + $3 + $4 }' /proc/stat
}

# --- setup ----------------------------------------------------------------------------------

install_tools() {
    local pkgs=(haproxy nginx libnginx-mod-stream wrk curl) missing=() p
    for p in "${pkgs[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    ((${#missing[@]})) || return 0
    [[ $(id -u) == 0 ]] || die "missing ${missing[*]}: run 'sudo apt-get install ${missing[*]}' first"
    log "installing ${missing[*]} (apt)"
    # Debian starts a package's service on install, and the stock nginx site listens on
    # 0.0.0.0:80. A policy-rc.d that exits 101 forbids it; ours is removed afterwards.
    local policy=/usr/sbin/policy-rc.d ours=0
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\n# benches/peers/run.sh: no service starts during the install\nexit 101\n' >"$policy"
        chmod 755 "$policy"
        ours=1
    fi
    local rc=0
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -q --no-install-recommends "${missing[@]}"; } >&2 || rc=$?
    ((ours)) && rm -f "$policy"
    ((rc == 0)) || die "apt-get install failed"
}

build_portico() {
    [[ " $LBS " == *" portico "* ]] || return 0
    if [[ ${SKIP_BUILD:-0} != 1 ]]; then
        log "cargo build --release --bin portico"
        (cd "$ROOT" && cargo build --release --bin portico) >&2
    fi
    [[ -x $PORTICO_BIN ]] || die "no Portico binary at $PORTICO_BIN"
    "$PORTICO_BIN" check --config "$HERE/portico.toml" >/dev/null
}

# --- one LB ---------------------------------------------------------------------------------

# start_lb NAME: starts the LB fresh on LB_CPU and waits until both ports answer; sets LB_PG.
start_lb() {
    local name=$1
    case $name in
        haproxy) start "$name" "$LB_CPU" haproxy -db -f "$HERE/haproxy.cfg" ;;
        nginx)
            mkdir -p "$OUT_DIR/nginx/logs" "$OUT_DIR/nginx/tmp"
            start "$name" "$LB_CPU" nginx -p "$OUT_DIR/nginx/" -c "$HERE/nginx.conf" -e stderr
            ;;
        portico) start "$name" "$LB_CPU" "$PORTICO_BIN" run --config "$HERE/portico.toml" ;;
        *) die "unknown LB $name (LBS: haproxy nginx portico)" ;;
    esac
    LB_PG=$START_PID
    wait_ports "$LB_PG" "$L4_PORT" "$L7_PORT" || die "$name did not start; see $OUT_DIR/$name.log"
}

# The nodes answering 8 fresh connections through PORT: a round-robin LB gives all four.
rr_nodes() {
    local port=$1 i
    for ((i = 0; i < 8; i++)); do
        curl -s --max-time 2 "http://$HOST:$port/" | cut -c1-5
    done | sort -u | tr '\n' ' '
}

# measure UNIT SCENARIO URL PGID: warm-up, then one wrk run, recording its output and the CPU
# the LB's process group (PGID; "-" for none) used during it.
measure() {
    local unit=$1 scenario=$2 url=$3 pg=$4
    local name="raw/r$ROUND-$unit-$scenario"
    start raw/warmup "$CLIENT_CPU" wrk -t1 -c"$CONNS" -d"${WARMUP}s" --timeout 5s "$url"
    wait "$START_PID" || true
    stop "$START_PID"

    local user0=0 sys0=0 user1=0 sys1=0 busy0 busy1 t0 t1
    [[ $pg == - ]] || read -r user0 sys0 < <(group_ticks "$pg")
    busy0=$(cpu_busy_ticks "$LB_CPU")
    t0=$(date +%s.%N)
    start "$name" "$CLIENT_CPU" wrk -t1 -c"$CONNS" -d"${DURATION}s" --timeout 5s --latency "$url"
    wait "$START_PID" || log "wrk failed: $OUT_DIR/$name.log"
    t1=$(date +%s.%N)
    busy1=$(cpu_busy_ticks "$LB_CPU")
    [[ $pg == - ]] || read -r user1 sys1 < <(group_ticks "$pg")
    stop "$START_PID"

    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$ROUND" "$unit" "$scenario" \
        "$((user1 + sys1 - user0 - sys0))" "$((busy1 - busy0))" \
        "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')" "$name.log" \
        "$((user1 - user0))" >>"$OUT_DIR/runs.tsv"
    log "round $ROUND $unit $scenario: $(awk '/Requests\/sec/ {print $2 " req/s"}' "$OUT_DIR/$name.log")"
}

run_unit() {
    local unit=$1
    if [[ $unit == direct ]]; then
        measure direct l4 "http://$HOST:${NODE_PORTS[0]}/" -
        measure direct l4big "http://$HOST:${NODE_PORTS[0]}/big" -
        return
    fi
    start_lb "$unit"
    local pg=$LB_PG
    local l4_nodes l7_nodes
    l4_nodes=$(rr_nodes "$L4_PORT")
    l7_nodes=$(rr_nodes "$L7_PORT")
    log "round $ROUND $unit: nodes via L4: $l4_nodes| via L7: $l7_nodes"
    if [[ $l4_nodes != "node1 node2 node3 node4 " || $l7_nodes != "$l4_nodes" ]]; then
        log "WARNING: $unit did not spread 8 connections over the four nodes"
        echo "WARNING: round $ROUND: $unit did not reach all four nodes (L4: $l4_nodes, L7: $l7_nodes)" \
            >>"$OUT_DIR/setup.txt"
    fi
    measure "$unit" l4 "http://$HOST:$L4_PORT/" "$pg"
    measure "$unit" l4big "http://$HOST:$L4_PORT/big" "$pg"
    measure "$unit" l7 "http://$HOST:$L7_PORT/" "$pg"
    stop "$pg"
}

# --- main -----------------------------------------------------------------------------------

mkdir -p "$OUT_DIR/raw"
chmod 755 "$OUT_DIR"
install_tools
build_portico
for port in "$L4_PORT" "$L7_PORT" "$ADMIN_PORT" "${NODE_PORTS[@]}"; do
    port_open "$port" && die "port $HOST:$port is already in use (by something else); stop it first"
done

write_backend_files
start backends "$CLIENT_CPU" nginx -p "$OUT_DIR/backends/" -c "$HERE/backends.conf" -e stderr
BACKENDS_PG=$START_PID
wait_ports "$BACKENDS_PG" "${NODE_PORTS[@]}" || die "backends did not start; see $OUT_DIR/backends.log"

{
    echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "machine: $(nproc) CPUs, $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo), Linux $(uname -r)"
    echo "haproxy: $(haproxy -v 2>/dev/null | awk 'NR == 1 {print $3}')"
    echo "nginx: $(nginx -v 2>&1 | awk -F/ '{print $2}')"
    [[ " $LBS " == *" portico "* ]] && echo "portico: $("$PORTICO_BIN" --version)"
    echo "load: wrk -t1 -c$CONNS -d${DURATION}s --latency (after ${WARMUP}s warm-up), $ROUNDS rounds"
    echo "pinning: LB on cpu $LB_CPU; wrk and the backends on cpu $CLIENT_CPU"
    echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
} >"$OUT_DIR/setup.txt"

UNITS=($LBS)
[[ $DIRECT == 1 ]] && UNITS=(direct "${UNITS[@]}")
printf 'round\tunit\tscenario\tlb_ticks\tlbcpu_busy_ticks\tseconds\traw\tlb_user_ticks\n' \
    >"$OUT_DIR/runs.tsv"
for ((ROUND = 1; ROUND <= ROUNDS; ROUND++)); do
    # Rotate the order every round, so no LB always runs first or last.
    shift_by=$(((ROUND - 1) % ${#UNITS[@]}))
    order=("${UNITS[@]:shift_by}" "${UNITS[@]:0:shift_by}")
    for unit in "${order[@]}"; do run_unit "$unit"; done
done

python3 "$HERE/table.py" "$OUT_DIR" | tee "$OUT_DIR/results.md"
log "results in $OUT_DIR"
