#!/bin/sh
# 10,000-node benchmark of the node commands, through the release `vnfs`
# binary (process start included), as an administrator would run them:
#   add from a MAC list, node set over n[00000-09999], node list, node status.
# Each must take < 1 s. Usage: bench/provisioner-10k.sh [N]
set -eu
N=${1:-10000}
cd "$(dirname "$0")/.."
: "${CARGO_TARGET_DIR:=target}"
cargo build --release -q -p vnfs
VNFS="$CARGO_TARGET_DIR/release/vnfs"
home=$(mktemp -d)
trap 'rm -rf "$home"' EXIT
export VNFS_HOME="$home"
"$VNFS" -q init --yes --device eth1 --address 10.0.0.1 \
    --dhcp-start 10.0.128.0 --dhcp-end 10.0.255.254 --node-name 'n#####' --total-nodes 100000
i=0
while [ "$i" -lt "$N" ]; do
    printf '52:54:00:%02x:%02x:%02x\n' $((i / 65536)) $((i / 256 % 256)) $((i % 256))
    i=$((i + 1))
done > "$home/macs.txt"

last=$(printf '%05d' $((N - 1)))
fail=0
# Wall-clock seconds of one command, output discarded.
measure() {
    label=$1
    shift
    start=$(date +%s%N)
    "$@" > /dev/null
    end=$(date +%s%N)
    ms=$(( (end - start) / 1000000 ))
    verdict=ok
    if [ "$ms" -ge 1000 ]; then verdict="TOO SLOW"; fail=1; fi
    printf '%-42s %6d ms  %s\n' "$label" "$ms" "$verdict"
}
echo "vnfs node commands, $N nodes ($(nproc) cores)"
measure "node add --file macs.txt ($N MACs)" "$VNFS" node add --file "$home/macs.txt"
measure "node set vnfs '' n[00000-$last]" "$VNFS" node set vnfs '' "n[00000-$last]"
measure "node set desc rack1 n[00000-$last]" "$VNFS" node set desc rack1 "n[00000-$last]"
measure "node set group compute n0*" "$VNFS" node set group compute 'n0*'
measure "node list" "$VNFS" node list
measure "node status" "$VNFS" node status
measure "node summary" "$VNFS" node summary
measure "node show" "$VNFS" node show
measure "configure dhcp -o -" "$VNFS" configure dhcp -o -
count=$("$VNFS" node list | wc -l)
[ "$count" -eq "$N" ] || { echo "expected $N nodes, found $count"; exit 1; }
exit $fail
