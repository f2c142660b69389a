# Shared helpers for the vnfs serve benchmarks (sourced).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
VNFS="$TARGET/release/vnfs"
NODE="$TARGET/release/vnfs-node"

build() {
    (cd "$ROOT" && cargo build --release -q -p vnfs -p vnfs-node && cargo build --release -q -p vnfs-node --example swarm)
}

# A free loopback port.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Chunk ids of a store, from its pack indexes (format: store/FORMAT.md).
chunk_ids() {
    python3 - "$1" <<'PY'
import sys, glob, struct
for idx in glob.glob(sys.argv[1] + "/packs/*/*.idx"):
    d = open(idx, "rb").read()
    n = struct.unpack_from("<I", d, 8)[0]
    for i in range(n):
        e = d[12 + i * 50: 12 + (i + 1) * 50]
        if e[32] == 1:
            print(e[:32].hex())
PY
}

# Starts vnfs serve for home $1 on port $2 ($SERVE_WORKERS workers, default
# 2); sets SERVE_PID.
start_serve() {
    VNFS_HOME="$1" "$VNFS" serve --listen "127.0.0.1:$2" --workers ${SERVE_WORKERS:-2} --interval 1 2>>"$1/serve.log" &
    SERVE_PID=$!
    for _ in $(seq 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$2") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    echo "vnfs serve did not start" >&2; cat "$1/serve.log" >&2; return 1
}

init_home() {
    VNFS_HOME="$1" "$VNFS" init --yes --device lo --address 127.0.0.1 \
        --dhcp-start 127.0.1.0 --dhcp-end 127.0.1.254 >/dev/null
    sed -i "s/^Vnfs Name.*/Vnfs Name = $2/" "$1/defaults.conf"
}
