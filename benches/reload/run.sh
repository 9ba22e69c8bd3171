#!/usr/bin/env bash
# Reload of a 10,000-route config under live traffic: how long a reload takes, what it costs in
# CPU, and what it does to the latency of the requests flowing meanwhile. See README.md.
#
#   benches/reload/run.sh                      # about 2 minutes
#   ROUNDS=3 DURATION=20 benches/reload/run.sh
#
# Knobs: ROUNDS (2: each round runs wrk once without and once with reloads), DURATION (s, 20),
# WARMUP (s, 2), CONNS (64), RELOAD_EVERY (s, 2), IDLE_RELOADS (10), HAPROXY (1: also run
# HAProxy, no reloads, on the same backends, as the noise reference of the minute), LB_CPU (1),
# CLIENT_CPU (0: wrk and the backends), PORTICO_BIN (default target/release/portico, built with
# `cargo build --release` unless SKIP_BUILD=1), OUT_DIR (default /tmp/portico-reload-<time>).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)

ROUNDS=${ROUNDS:-2}
DURATION=${DURATION:-20}
WARMUP=${WARMUP:-2}
CONNS=${CONNS:-64}
RELOAD_EVERY=${RELOAD_EVERY:-2}
IDLE_RELOADS=${IDLE_RELOADS:-10}
HAPROXY=${HAPROXY:-1}
LB_CPU=${LB_CPU:-1}
CLIENT_CPU=${CLIENT_CPU:-0}
PORTICO_BIN=${PORTICO_BIN:-$ROOT/target/release/portico}
OUT_DIR=${OUT_DIR:-/tmp/portico-reload-$(date +%Y%m%d-%H%M%S)}
# Portico reads PORTICO_* variables as config overrides (PORTICO_BIN would be a key `bin`).
export -n PORTICO_BIN

HOST=127.0.0.1
# The measured route: host svc0.example.com, prefix /api/v0/ -> pool-0, whose four servers are
# the four backends (see gen-config.py).
ROUTE_HOST=svc0.example.com
ROUTE_PATH=/api/v0/users/42

log() { echo "[reload] $*" >&2; }
die() { log "error: $*"; exit 1; }

# Processes: own process groups, stopped by group id (start, stop, cleanup, wait_ports).
# shellcheck source=../lib/procs.sh
source "$ROOT/benches/lib/procs.sh"

# utime + stime of one process (threads included), in clock ticks.
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

# Nine consecutive free ports in 20000-29999, picked at random (other people run things too).
pick_ports() {
    local base i
    for ((i = 0; i < 50; i++)); do
        base=$((20000 + RANDOM % 9990))
        local p ok=1
        for ((p = base; p < base + 9; p++)); do port_open "$p" && ok=0; done
        ((ok)) && { echo "$base"; return; }
    done
    die "no free ports found"
}

# --- setup ------------------------------------------------------------------------------------

for tool in wrk nginx python3 taskset; do
    command -v "$tool" >/dev/null || die "$tool is missing (apt-get install wrk nginx python3 util-linux)"
done
[[ $HAPROXY == 1 ]] && { command -v haproxy >/dev/null || die "haproxy is missing (or HAPROXY=0)"; }
mkdir -p "$OUT_DIR/backends/logs" "$OUT_DIR/backends/tmp" "$OUT_DIR/backends/html"
chmod 755 "$OUT_DIR"

if [[ ${SKIP_BUILD:-0} != 1 ]]; then
    log "cargo build --release --bin portico"
    (cd "$ROOT" && cargo build --release --bin portico) >&2
fi
[[ -x $PORTICO_BIN ]] || die "no Portico binary at $PORTICO_BIN"

BASE=$(pick_ports)
LB_PORT=$BASE
ADMIN_PORT=$((BASE + 1))
HAPROXY_PORT=$((BASE + 2))
NODE_PORTS=($((BASE + 3)) $((BASE + 4)) $((BASE + 5)) $((BASE + 6)))
BACKENDS=$(printf "$HOST:%s," "${NODE_PORTS[@]}")
BACKENDS=${BACKENDS%,}

# Two variants of the 1,000-pool / 10,000-route file; reloads alternate between them, so each
# one changes something (a pool's servers, a route's pool, one route more or less).
for v in 0 1; do
    python3 "$HERE/gen-config.py" --out "$OUT_DIR/config-$v.toml" --variant "$v" \
        --listen "$HOST:$LB_PORT" --admin "$HOST:$ADMIN_PORT" --backends "$BACKENDS"
    "$PORTICO_BIN" check --config "$OUT_DIR/config-$v.toml" >/dev/null
done
CONFIG=$OUT_DIR/portico.toml
cp "$OUT_DIR/config-0.toml" "$CONFIG"
VARIANT=0

# Four nginx backends (one worker), each answering any path with a 100-byte body.
{
    echo "worker_processes 1; daemon off; pid logs/nginx.pid; error_log stderr warn;"
    echo "events { worker_connections 4096; }"
    echo "http { access_log off; keepalive_requests 1000000; default_type text/plain;"
    echo "  client_body_temp_path tmp/body; proxy_temp_path tmp/proxy; fastcgi_temp_path tmp/fastcgi;"
    echo "  uwsgi_temp_path tmp/uwsgi; scgi_temp_path tmp/scgi;"
    for i in 1 2 3 4; do
        mkdir -p "$OUT_DIR/backends/html/node$i"
        { printf 'node%d ' "$i"; head -c 93 /dev/zero | tr '\0' 'x'; echo; } \
            >"$OUT_DIR/backends/html/node$i/index.txt"
        echo "  server { listen $HOST:${NODE_PORTS[i - 1]}; root html/node$i;"
        echo "    location / { try_files /index.txt =404; } }"
    done
    echo "}"
} >"$OUT_DIR/backends/backends.conf"
chmod -R a+rX "$OUT_DIR/backends"
start backends "$CLIENT_CPU" nginx -p "$OUT_DIR/backends/" -c backends.conf -e stderr
wait_ports "$START_PID" "${NODE_PORTS[@]}" || die "backends did not start; see $OUT_DIR/backends.log"

{
    echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "machine: $(nproc) CPUs, $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo), Linux $(uname -r)"
    echo "portico: $("$PORTICO_BIN" --version) ($PORTICO_BIN)"
    echo "config: 1,000 pools, 10,000 routes ($(wc -c <"$CONFIG") bytes), runtime.worker_threads = 1"
    echo "load: wrk -t1 -c$CONNS -d${DURATION}s --latency on $ROUTE_HOST$ROUTE_PATH, $ROUNDS rounds"
    echo "reloads: SIGHUP every ${RELOAD_EVERY}s during the reload runs, alternating two variants"
    echo "pinning: LB on cpu $LB_CPU; wrk and the backends on cpu $CLIENT_CPU"
    echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
} | tee "$OUT_DIR/setup.txt" >&2

# --- Portico ----------------------------------------------------------------------------------

start portico "$LB_CPU" env RUST_LOG=info NO_COLOR=1 "$PORTICO_BIN" run --config "$CONFIG"
PORTICO_PG=$START_PID
wait_ports "$PORTICO_PG" "$LB_PORT" || die "portico did not start; see $OUT_DIR/portico.log"
PORTICO_PID=$PORTICO_PG
curl -sf -H "Host: $ROUTE_HOST" "http://$HOST:$LB_PORT$ROUTE_PATH" | grep -q '^node' \
    || die "the route does not reach a backend"

reloads_done() { grep -c "reload applied\|reload failed" "$OUT_DIR/portico.log" || true; }

# reload: switch variants, SIGHUP, return at once.
reload() {
    VARIANT=$((1 - VARIANT))
    cp "$OUT_DIR/config-$VARIANT.toml" "$CONFIG.tmp" && mv "$CONFIG.tmp" "$CONFIG"
    kill -HUP "$PORTICO_PID"
}

# Reloads with no traffic: duration from the log, CPU from /proc (all of it is the reload's).
log "$IDLE_RELOADS reloads without traffic"
sleep 1
IDLE_FIRST=$(($(reloads_done) + 1))
t0=$(ticks "$PORTICO_PID")
for ((i = 0; i < IDLE_RELOADS; i++)); do
    n=$(reloads_done)
    reload
    for ((j = 0; j < 100; j++)); do (($(reloads_done) > n)) && break; sleep 0.05; done
    sleep 0.2
done
t1=$(ticks "$PORTICO_PID")
IDLE_CPU_MS=$(((t1 - t0) * 1000 / $(getconf CLK_TCK) / IDLE_RELOADS))
IDLE_LAST=$(reloads_done)

# run_wrk NAME URL [reloads]: warm-up, then one measured wrk run; with "reloads", a SIGHUP every
# RELOAD_EVERY seconds while it runs.
run_wrk() {
    local name=$1 url=$2 with_reloads=${3:-}
    start "raw/warmup-$name" "$CLIENT_CPU" wrk -t1 -c"$CONNS" -d"${WARMUP}s" --timeout 5s \
        -H "Host: $ROUTE_HOST" "$url"
    wait "$START_PID" || true
    stop "$START_PID"
    start "raw/$name" "$CLIENT_CPU" wrk -t1 -c"$CONNS" -d"${DURATION}s" --timeout 5s --latency \
        -H "Host: $ROUTE_HOST" "$url"
    local wrk_pg=$START_PID
    if [[ -n $with_reloads ]]; then
        local deadline=$((SECONDS + DURATION - 1))
        sleep 1
        while ((SECONDS + RELOAD_EVERY <= deadline)); do
            reload
            sleep "$RELOAD_EVERY"
        done
    fi
    wait "$wrk_pg" || log "wrk failed: $OUT_DIR/raw/$name.log"
    stop "$wrk_pg"
    log "$name: $(awk '/Requests\/sec/ {print $2 " req/s"}' "$OUT_DIR/raw/$name.log")"
}

mkdir -p "$OUT_DIR/raw"
URL="http://$HOST:$LB_PORT$ROUTE_PATH"
: >"$OUT_DIR/runs.txt"
for ((round = 1; round <= ROUNDS; round++)); do
    # Alternate the order, so neither kind always runs first.
    if ((round % 2)); then order=(steady reloads); else order=(reloads steady); fi
    for kind in "${order[@]}"; do
        first=$(($(reloads_done) + 1))
        if [[ $kind == reloads ]]; then
            run_wrk "r$round-portico-reloads" "$URL" reloads
            # Let the last reload finish before counting.
            sleep 1
        else
            run_wrk "r$round-portico-steady" "$URL"
        fi
        echo "r$round-portico-$kind $first $(reloads_done)" >>"$OUT_DIR/runs.txt"
    done
done
stop "$PORTICO_PG"

if [[ $HAPROXY == 1 ]]; then
    {
        echo "global"
        echo "    nbthread 1"
        echo "    maxconn 4096"
        echo "defaults"
        echo "    mode http"
        echo "    timeout connect 5s"
        echo "    timeout client 60s"
        echo "    timeout server 60s"
        echo "frontend l7"
        echo "    bind $HOST:$HAPROXY_PORT"
        echo "    default_backend nodes"
        echo "backend nodes"
        echo "    balance roundrobin"
        for i in 1 2 3 4; do echo "    server node$i $HOST:${NODE_PORTS[i - 1]}"; done
    } >"$OUT_DIR/haproxy.cfg"
    start haproxy "$LB_CPU" haproxy -db -f "$OUT_DIR/haproxy.cfg"
    HAPROXY_PG=$START_PID
    wait_ports "$HAPROXY_PG" "$HAPROXY_PORT" || die "haproxy did not start; see $OUT_DIR/haproxy.log"
    for ((round = 1; round <= ROUNDS; round++)); do
        run_wrk "r$round-haproxy-steady" "http://$HOST:$HAPROXY_PORT$ROUTE_PATH"
        echo "r$round-haproxy-steady 0 0" >>"$OUT_DIR/runs.txt"
    done
    stop "$HAPROXY_PG"
fi

python3 "$HERE/report.py" "$OUT_DIR" "$IDLE_FIRST" "$IDLE_LAST" "$IDLE_CPU_MS" \
    | tee "$OUT_DIR/results.md"
log "results in $OUT_DIR"
