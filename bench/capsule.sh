#!/usr/bin/env bash
# Capsule and image benchmark on one Debian tree, peers in the same run
# (method: ../shared/BENCHMARKING.md; alternating A B A B, medians, caches
# dropped before every timed step on both sides).
#
#   bench/capsule.sh [RUNS]      (default 3)
#
# Prints, for the node tree v1 (built by bench/lib.sh debian_tree, shared
# with bench/store.sh under $BENCH_DIR, default /var/tmp/vnfs-bench):
#   capsule size          vs  tar -c | zstd -3          target <= 1.10x
#     (default layout; --solid-below 0: every chunk as stored;
#     --solid-below 32K --level 3; --solid-below 1M --level 3: every
#     chunk recompressed)
#   export throughput     (stored bytes / s)            target >= 1 GB/s
#     cold (disk): into a file (fsync included) and into a pipe;
#     warm cache into /dev/null (default, and --solid-below 0, where no
#     chunk is recompressed; each also with --no-verify, where the chunks
#     copied as stored are not checked: by default a pack the export copies
#     at least half of is hashed whole, other chunks decoded); store and capsule on
#     tmpfs
#   import, fully verified, into an empty store          target >= 300 MB/s
#     (capsule bytes / s; raw bytes / s printed too) cold from disk, and
#     with capsule and store on tmpfs; vs the peer: zstd -d -T0 <
#     tree.tar.zst | tar -x, then sync (the packs are fsynced too); the
#     disk's own write speed (dd of the capsule with fdatasync) is printed
#     as well, and `vnfs store fsck` of the source store on tmpfs: decoding
#     and hashing every object, which a verified import cannot skip
#   vnfs image --format squashfs (zstd 3) vs mksquashfs -comp zstd -Xcompression-level 3
#                                                        target <= 1.00x
# Needs root, squashfs-tools, zstd, mmdebstrap (first run only) and bc.
# The machine is shared: the load average is printed before and after.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
RUNS=${1:-3}
B=${BENCH_DIR:-/var/tmp/vnfs-bench}
NODE_PKGS="linux-image-amd64,systemd-sysv,openssh-server,nfs-common,iproute2,isc-dhcp-client,less,vim-tiny,procps,kmod"

cargo build --release --quiet -p vnfs
VNFS=${CARGO_TARGET_DIR:-$PWD/target}/release/vnfs
debian_tree "$B/v1" "$NODE_PKGS"
echo "tree v1: $(du -sh --apparent-size "$B/v1" | cut -f1), $(find "$B/v1" | wc -l) entries" >&2
load_before=$(cut -d' ' -f1-3 /proc/loadavg)

W=$B/work-capsule; rm -rf "$W"; mkdir -p "$W"
# The source store (not timed here: bench/store.sh measures ingest).
VNFS_HOME=$W/a "$VNFS" -q commit "$B/v1" -n node --timestamp 1700000000 >/dev/null
# mksquashfs reads a checkout, as vnfs reads its store: same tree, same bytes.
VNFS_HOME=$W/a "$VNFS" -q checkout node "$W/co"
stored=$(du -sb "$W/a/store/packs" | cut -f1)

declare -a t_tar t_exp t_pipe t_imp t_untar t_vsq t_msq t_dd
for run in $(seq "$RUNS"); do
  rm -rf "$W/b" "$W/x" "$W"/*.vnfs "$W"/*.sqfs "$W"/*.tar.zst "$W/dd"
  drop_caches; timed t sh -c "tar -C '$W/co' -cf - . | zstd -q -3 -T0 > '$W/v1.tar.zst'"; t_tar+=("$t")
  drop_caches; timed t env VNFS_HOME="$W/a" "$VNFS" -q export node "$W/node.vnfs"; t_exp+=("$t")
  drop_caches; timed t sh -c "VNFS_HOME='$W/a' '$VNFS' -q export node - | cat > /dev/null"; t_pipe+=("$t")
  drop_caches; timed t env VNFS_HOME="$W/b" VNFS_UNSIGNED=accept "$VNFS" -q import "$W/node.vnfs" >/dev/null; t_imp+=("$t")
  mkdir -p "$W/x"; drop_caches; timed t sh -c "zstd -q -d -T0 < '$W/v1.tar.zst' | tar -C '$W/x' -xf - && sync"; t_untar+=("$t")
  drop_caches; timed t dd if="$W/node.vnfs" of="$W/dd" bs=4M conv=fdatasync status=none; t_dd+=("$t")
  drop_caches; timed t env VNFS_HOME="$W/a" "$VNFS" -q image node --format squashfs --compression zstd --level 3 -o "$W/vnfs.sqfs"; t_vsq+=("$t")
  drop_caches; timed t mksquashfs "$W/co" "$W/mk.sqfs" -comp zstd -Xcompression-level 3 -quiet -no-progress 2>/dev/null; t_msq+=("$t")
done
rm -f "$W/dd"

# Warm and on tmpfs: the tool's own speed rather than the disk's. Dirty
# data from the cold runs is written back first, so writeback does not
# compete; the store, the capsule and the peer's archive are copied to
# /dev/shm for the tmpfs runs.
sync
S=/dev/shm/vnfs-bench-capsule; rm -rf "$S"; mkdir -p "$S"
# Store, capsule, archive, the exported copy, the imported store and the
# unpacked tree at once: about 2.3 times the tree.
tree_bytes=$(du -sb --apparent-size "$W/co" | cut -f1)
need=$(( tree_bytes * 23 / 10 ))
free=$(( $(stat -f -c '%a * %S' /dev/shm) ))
if [ "$free" -lt "$need" ]; then
  echo "bench/capsule.sh: /dev/shm has $((free>>20)) MiB free, the tmpfs runs need $((need>>20)) MiB" >&2
  exit 1
fi
trap 'rm -rf "$S"' EXIT
cp -a "$W/a" "$S/a"; cp "$W/node.vnfs" "$W/v1.tar.zst" "$S/"
declare -a w_null w_pass w_nv w_pass_nv s_exp s_imp s_untar s_fsck
for run in $(seq "$RUNS"); do
  find "$W/a/store/packs" -type f -exec cat {} + > /dev/null
  timed t sh -c "VNFS_HOME='$W/a' '$VNFS' -q export node - > /dev/null"; w_null+=("$t")
  timed t sh -c "VNFS_HOME='$W/a' '$VNFS' -q export node --solid-below 0 - > /dev/null"; w_pass+=("$t")
  timed t sh -c "VNFS_HOME='$W/a' '$VNFS' -q export node --no-verify - > /dev/null"; w_nv+=("$t")
  timed t sh -c "VNFS_HOME='$W/a' '$VNFS' -q export node --solid-below 0 --no-verify - > /dev/null"; w_pass_nv+=("$t")
  rm -f "$S/out.vnfs"
  timed t env VNFS_HOME="$S/a" "$VNFS" -q export node "$S/out.vnfs"; s_exp+=("$t")
  rm -rf "$S/b"
  timed t env VNFS_HOME="$S/b" VNFS_UNSIGNED=accept "$VNFS" -q import "$S/node.vnfs" >/dev/null; s_imp+=("$t")
  # What verification alone costs on this machine: fsck decodes and
  # hashes every object (and hashes each pack), as import must.
  timed t env VNFS_HOME="$S/a" "$VNFS" -q store fsck >/dev/null; s_fsck+=("$t")
  rm -rf "$S/x"; mkdir -p "$S/x"
  timed t sh -c "zstd -q -d -T0 < '$S/v1.tar.zst' | tar -C '$S/x' -xf -"; s_untar+=("$t")
done
rm -rf "$S"
# The sizes at both ends of the trade-off.
VNFS_HOME=$W/a "$VNFS" -q export node "$W/pass.vnfs" --solid-below 0
pass=$(stat -c %s "$W/pass.vnfs")
VNFS_HOME=$W/a "$VNFS" -q export node "$W/mid.vnfs" --solid-below 32K --level 3
mid=$(stat -c %s "$W/mid.vnfs")
VNFS_HOME=$W/a "$VNFS" -q export node "$W/compact.vnfs" --solid-below 1M --level 3
compact=$(stat -c %s "$W/compact.vnfs")
# The squashfs image, loop-mounted, must equal the checkout (ACLs aside:
# squashfs has no system.* xattrs, mksquashfs drops them too).
mkdir -p "$W/mnt"; mount -t squashfs -o loop,ro "$W/vnfs.sqfs" "$W/mnt"
sq_same=$(rsync -naHX --delete --itemize-changes "$W/co/" "$W/mnt/" | wc -l)
umount "$W/mnt"

# B's checkout must equal A's.
VNFS_HOME=$W/b "$VNFS" -q checkout node "$W/co-b"
same=$(rsync -naHAX --delete --itemize-changes "$W/co/" "$W/co-b/" | wc -l)
capsule=$(stat -c %s "$W/node.vnfs"); tarz=$(stat -c %s "$W/v1.tar.zst")
vsq=$(stat -c %s "$W/vnfs.sqfs"); msq=$(stat -c %s "$W/mk.sqfs")
logical=$(du -sb --apparent-size "$W/co" | cut -f1)
me=$(median "${t_exp[@]}"); mi=$(median "${t_imp[@]}"); mv=$(median "${t_vsq[@]}"); mm=$(median "${t_msq[@]}")
mt=$(median "${t_tar[@]}"); mp=$(median "${t_pipe[@]}"); md=$(median "${t_dd[@]}")
mu=$(median "${t_untar[@]}"); si=$(median "${s_imp[@]}"); su=$(median "${s_untar[@]}")
mbs() { echo "scale=0; $1 / $2 / 1000000" | bc -l; }

printf '\n%-44s %14s %14s %8s %s\n' "measure (median of $RUNS, caches dropped)" "vnfs" "peer" "ratio" "target"
printf '%-44s %11s MB %11s MB %8s %s\n' "capsule size vs tar|zstd -3" "$((capsule/1000000))" "$((tarz/1000000))" "$(ratio "$capsule" "$tarz")" "<= 1.10"
printf '%-44s %11s MB %11s MB %8s %s\n' "  --solid-below 0 (every chunk as stored)" "$((pass/1000000))" "$((tarz/1000000))" "$(ratio "$pass" "$tarz")" ""
printf '%-44s %11s MB %11s MB %8s %s\n' "  --solid-below 32K --level 3" "$((mid/1000000))" "$((tarz/1000000))" "$(ratio "$mid" "$tarz")" ""
printf '%-44s %11s MB %11s MB %8s %s\n' "  --solid-below 1M --level 3 (all recompressed)" "$((compact/1000000))" "$((tarz/1000000))" "$(ratio "$compact" "$tarz")" ""
printf '%-44s %12s s %12s s %8s %s\n' "  (time: export vs tar|zstd -3 -T0)" "$me" "$mt" "$(ratio "$me" "$mt")" ""
printf '%-44s %9s MB/s %14s %8s %s\n' "export to a file, cold (stored $((stored/1000000)) MB)" "$(mbs "$stored" "$me")" "" "" ">= 1000"
printf '%-44s %9s MB/s %14s %8s %s\n' "  export to a pipe, cold" "$(mbs "$stored" "$mp")" "" "" ">= 1000"
printf '%-44s %9s MB/s %14s %8s %s\n' "  export to /dev/null, warm cache" "$(mbs "$stored" "$(median "${w_null[@]}")")" "" "" ">= 1000"
printf '%-44s %9s MB/s %14s %8s %s\n' "    --solid-below 0 (every chunk as stored)" "$(mbs "$stored" "$(median "${w_pass[@]}")")" "" "" ">= 1000"
printf '%-44s %9s MB/s %14s %8s %s\n' "    --no-verify (copied chunks not checked)" "$(mbs "$stored" "$(median "${w_nv[@]}")")" "" "" ">= 1000"
printf '%-44s %9s MB/s %14s %8s %s\n' "    --solid-below 0 --no-verify" "$(mbs "$stored" "$(median "${w_pass_nv[@]}")")" "" "" ">= 1000"
printf '%-44s %9s MB/s %14s %8s %s\n' "  export, store and file on tmpfs" "$(mbs "$stored" "$(median "${s_exp[@]}")")" "" "" ">= 1000"
printf '%-44s %9s MB/s %14s %8s %s\n' "import, verified, empty store, cold" "$(mbs "$capsule" "$mi")" "" "" ">= 300"
printf '%-44s %9s MB/s %14s %8s %s\n' "  import, capsule and store on tmpfs" "$(mbs "$capsule" "$si")" "" "" ">= 300"
printf '%-44s %9s MB/s %14s %8s %s\n' "    the same in raw (logical) bytes" "$(mbs "$logical" "$si")" "" "" ""
printf '%-44s %9s MB/s %14s %8s %s\n' "  store fsck, tmpfs (verification alone)" "$(mbs "$stored" "$(median "${s_fsck[@]}")")" "" "" ""
printf '%-44s %12s s %12s s %8s %s\n' "  (time: import vs zstd -d | tar -x; sync), cold" "$mi" "$mu" "$(ratio "$mi" "$mu")" ""
printf '%-44s %12s s %12s s %8s %s\n' "  (time: the same, on tmpfs, no sync)" "$si" "$su" "$(ratio "$si" "$su")" ""
printf '%-44s %9s MB/s %14s %8s %s\n' "  disk: dd of the capsule, fdatasync (ceiling)" "$(mbs "$capsule" "$md")" "" "" ""
printf '%-44s %12s s %12s s %8s %s\n' "squashfs zstd-3 render vs mksquashfs" "$mv" "$mm" "$(ratio "$mv" "$mm")" "<= 1.00"
printf '%-44s %11s MB %11s MB %8s\n' "  squashfs size" "$((vsq/1000000))" "$((msq/1000000))" "$(ratio "$vsq" "$msq")"
echo "logical tree $((logical/1000000)) MB; all runs: export ${t_exp[*]}; pipe ${t_pipe[*]}; import ${t_imp[*]}; untar ${t_untar[*]}; warm to /dev/null ${w_null[*]}; the same, --solid-below 0 ${w_pass[*]}; --no-verify ${w_nv[*]}; --solid-below 0 --no-verify ${w_pass_nv[*]}; tmpfs export ${s_exp[*]}; tmpfs import ${s_imp[*]}; fsck ${s_fsck[*]}; tmpfs untar ${s_untar[*]}; dd ${t_dd[*]}; vnfs sqfs ${t_vsq[*]}; mksquashfs ${t_msq[*]}"
echo "load average before: $load_before; after: $(cut -d' ' -f1-3 /proc/loadavg) (2 cores)"
echo "vnfs squashfs (loop mount) equals the checkout: $([ "$sq_same" = 0 ] && echo yes || echo "NO ($sq_same differences)")"
echo "site B checkout equals site A's: $([ "$same" = 0 ] && echo yes || echo "NO ($same differences)")"
