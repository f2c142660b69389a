#!/bin/bash
# Daemon memory with 512 concurrent simulated nodes: each a thread with its
# own MAC and keep-alive connection, checking in (new nodes are added to the
# database) and fetching the commit and batches of chunks for 20 s. Prints
# the daemon's peak RSS (VmHWM) before and after (target < 64 MB).
source "$(dirname "$0")/lib-serve.sh"
NODES="${NODES:-512}"; SECS="${SECS:-20}"
build
W="$(mktemp -d /tmp/vnfs-bench-rss.XXXXXX)"
trap 'kill ${SERVE_PID:-} 2>/dev/null || true; rm -rf "$W"' EXIT
init_home "$W/home" img
VNFS_HOME="$W/home" "$VNFS" commit -q -n img /usr/lib/python3.11 >/dev/null
chunk_ids "$W/home/store" > "$W/ids"
PORT=$(free_port); start_serve "$W/home" "$PORT"
idle=$(awk '/VmHWM/ {print $2}' "/proc/$SERVE_PID/status")
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
SW=$("$TARGET/release/examples/swarm" "http://127.0.0.1:$PORT" "$NODES" "$SECS" "$W/ids")
peak=$(awk '/VmHWM/ {print $2}' "/proc/$SERVE_PID/status")
threads=$(awk '/Threads/ {print $2}' "/proc/$SERVE_PID/status")
echo
echo "vnfs serve with $NODES concurrent simulated nodes for ${SECS}s: $SW"
printf '%-22s %10s\n' measure value
printf '%-22s %8d kB\n' "RSS peak, idle" "$idle"
printf '%-22s %8d kB\n' "RSS peak, under load" "$peak"
printf '%-22s %10d\n' "daemon threads" "$threads"
printf 'target < 65536 kB: %s\n' "$([ "$peak" -lt 65536 ] && echo met || echo MISSED)"
