#!/usr/bin/env bash
# Store benchmark against casync and tar|zstd on the same Debian trees in
# the same run (see ../shared/BENCHMARKING.md for the method).
#
#   bench/store.sh [RUNS]      (default 2 runs each, alternating A B A B)
#
# Trees: mmdebstrap minbase bookworm + a node package set (v1), and v1 plus
# python3, htop and strace (v2), built once into $BENCH_DIR (default
# /var/tmp/vnfs-bench). Needs root, network to the mirror in the apt
# sources, casync and mmdebstrap (scripts/setup.sh installs them).
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
RUNS=${1:-2}
B=${BENCH_DIR:-/var/tmp/vnfs-bench}
NODE_PKGS="linux-image-amd64,systemd-sysv,openssh-server,nfs-common,iproute2,isc-dhcp-client,less,vim-tiny,procps,kmod"
V2_PKGS="$NODE_PKGS,python3,htop,strace"

cargo build --release --quiet
VNFS=$PWD/target/release/vnfs
debian_tree "$B/v1" "$NODE_PKGS"
debian_tree "$B/v2" "$V2_PKGS"
echo "tree v1: $(du -sh --apparent-size "$B/v1" | cut -f1), $(find "$B/v1" | wc -l) entries" >&2

W=$B/work; rm -rf "$W"; mkdir -p "$W"
declare -a t_vnfs t_casync t_tar t_vco t_cco
for run in $(seq "$RUNS"); do
  rm -rf "$W"/*
  drop_caches; timed t VNFS_HOME=$W/vh "$VNFS" -q commit "$B/v1" -n node --timestamp 1700000000; t_vnfs+=("$t")
  drop_caches; timed t casync make --store="$W/cs" "$W/v1.caidx" "$B/v1"; t_casync+=("$t")
  drop_caches; timed t sh -c "tar -C '$B/v1' -cf - . | zstd -q -3 -T0 > '$W/v1.tar.zst'"; t_tar+=("$t")
  drop_caches; timed t env VNFS_HOME="$W/vh" "$VNFS" -q checkout node "$W/co-vnfs"; t_vco+=("$t")
  drop_caches; timed t casync extract --store="$W/cs" "$W/v1.caidx" "$W/co-casync"; t_cco+=("$t")
done
vnfs_size=$(du -sb "$W/vh/store/packs" | cut -f1)
casync_size=$(du -sb "$W/cs" | cut -f1)
tar_size=$(stat -c %s "$W/v1.tar.zst")

# Second version into the same stores: growth.
VNFS_HOME=$W/vh "$VNFS" -q commit "$B/v2" -n node --timestamp 1700086400 >/dev/null
casync make --store="$W/cs" "$W/v2.caidx" "$B/v2" >/dev/null
vnfs_grow=$(( $(du -sb "$W/vh/store/packs" | cut -f1) - vnfs_size ))
casync_grow=$(( $(du -sb "$W/cs" | cut -f1) - casync_size ))
changed=$(VNFS_HOME=$W/vh "$VNFS" --json diff node@$(VNFS_HOME=$W/vh "$VNFS" --json log node | python3 -c 'import json,sys; print(json.load(sys.stdin)[1]["commit"][:16])') node \
  | python3 -c 'import json,sys; d=json.load(sys.stdin); print(sum(e["size"] for e in d["entries"] if e["change"] in ("added","modified")))')
# The checkout must be exact (content, owners, modes, times, xattrs, hard links).
rsync -naHAX --delete --itemize-changes --exclude=/.complete "$B/v1/" "$W/co-vnfs/" > "$W/rsync.out"
exact=$([ -s "$W/rsync.out" ] && echo "NO ($(wc -l < "$W/rsync.out") differences)" || echo yes)

mv=$(median "${t_vnfs[@]}"); mc=$(median "${t_casync[@]}"); mt=$(median "${t_tar[@]}")
mvc=$(median "${t_vco[@]}"); mcc=$(median "${t_cco[@]}")
cat <<TABLE

| measure (median of $RUNS, cold cache) | vnfs | peer | ratio | target |
| --- | --- | --- | --- | --- |
| commit v1 vs casync make | ${mv} s | ${mc} s | $(ratio "$mv" "$mc") | <= 0.4 |
| commit v1 vs tar -c \| zstd -3 -T0 | ${mv} s | ${mt} s | $(ratio "$mv" "$mt") | <= 1.0 |
| checkout vs casync extract | ${mvc} s | ${mcc} s | $(ratio "$mvc" "$mcc") | <= 0.5 |
| store size vs casync store | $(mib "$vnfs_size") MiB | $(mib "$casync_size") MiB | $(ratio "$vnfs_size" "$casync_size") | <= 1.0 |
| store size vs tar.zst | $(mib "$vnfs_size") MiB | $(mib "$tar_size") MiB | $(ratio "$vnfs_size" "$tar_size") | (context) |
| growth for v2 (+python3 htop strace) | $(mib "$vnfs_grow") MiB | $(mib "$casync_grow") MiB | $(ratio "$vnfs_grow" "$casync_grow") | < 20 MiB |
| raw bytes of added/changed files v1->v2 | $(mib "$changed") MiB | | | |
| checkout identical to source (rsync -naHAX) | $exact | | | |
TABLE
