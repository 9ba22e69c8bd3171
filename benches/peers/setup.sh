# The fixed setup of benches/peers, shared with benches/instructions (which reuses its config
# files as they are): the addresses those files name, and the backends' files. Source it after
# setting OUT_DIR.

# Fixed by the config files next to this script.
HOST=127.0.0.1
L4_PORT=19080
L7_PORT=19081
ADMIN_PORT=19099
NODE_PORTS=(32001 32002 32003 32004)
BODY_BYTES=100
BIG_KIB=64

# The backends' files: a 100-byte body per node (starting "node<i> ") and a 64 KiB file.
write_backend_files() {
    local dir=$OUT_DIR/backends i
    mkdir -p "$dir/logs" "$dir/tmp"
    for i in 1 2 3 4; do
        mkdir -p "$dir/html/node$i"
        { printf 'node%d ' "$i"; head -c $((BODY_BYTES - 7)) /dev/zero | tr '\0' 'x'; echo; } \
            >"$dir/html/node$i/index.txt"
        head -c $((BIG_KIB * 1024)) /dev/zero | tr '\0' 'b' >"$dir/html/node$i/big.bin"
    done
    # nginx workers run as nobody: they must be able to read the files.
    chmod -R a+rX "$OUT_DIR"
}
