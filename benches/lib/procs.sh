# Process handling shared by the benchmark scripts (benches/peers/run.sh, benches/reload/run.sh):
# every process runs in its own process group and is stopped by group id, never by name.
# Source it after setting OUT_DIR (logs go there) and HOST (what wait_ports connects to).

STARTED=()   # process group ids (= the leader's pid) still to stop

# start NAME CPU CMD...: runs CMD pinned to CPU in a new session (so a new process group whose
# id is its pid), output to $OUT_DIR/NAME.log; sets START_PID.
start() {
    local name=$1 cpu=$2
    shift 2
    # In a non-interactive shell a background job is not a group leader, so setsid(1) calls
    # setsid(2) in place (no fork): $! is the group leader.
    setsid taskset -c "$cpu" "$@" >>"$OUT_DIR/$name.log" 2>&1 &
    START_PID=$!
    STARTED+=("$START_PID")
}

# stop PGID: SIGTERM to the group, SIGKILL after 5 s, then reap the leader.
stop() {
    local pg=$1 i
    kill -TERM -- "-$pg" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
        kill -0 -- "-$pg" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL -- "-$pg" 2>/dev/null || true
    wait "$pg" 2>/dev/null || true
    local left=()
    for i in "${STARTED[@]}"; do [[ $i == "$pg" ]] || left+=("$i"); done
    STARTED=("${left[@]}")
}

cleanup() {
    local pg
    for pg in "${STARTED[@]}"; do stop "$pg"; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port_open() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

# wait_ports PID PORT...: until every port accepts connections (10 s), or PID died.
wait_ports() {
    local pid=$1 port i
    shift
    for port in "$@"; do
        for ((i = 0; i < 100; i++)); do
            port_open "$port" && continue 2
            kill -0 "$pid" 2>/dev/null || return 1
            sleep 0.1
        done
        return 1
    done
}
