#!/bin/bash
# vnfs mount against squashfuse and the kernel's squashfs, same tree, same run.
#
#   bench/mount.sh [TREE] [ROUNDS]
#
# TREE defaults to a ~700 MB copy of the host's /usr (bin, sbin, share and
# part of lib). Each cold run remounts every file system (so no side keeps
# an in-process cache) and drops the page cache. Runs alternate between the
# three, and the table prints medians with ratios against squashfuse.
# Then: time of `vnfs umount` (commit) after editing one file.
# Needs root, squashfs-tools, squashfuse, and a release build of vnfs.
set -euo pipefail

ROUNDS=${2:-3}
VNFS=${VNFS:-$(dirname "$0")/../target/release/vnfs}
[ -x "$VNFS" ] || VNFS=${CARGO_TARGET_DIR:-target}/release/vnfs
[ -x "$VNFS" ] || { echo "build first: cargo build --release -p vnfs" >&2; exit 1; }
for t in mksquashfs squashfuse; do
    command -v $t >/dev/null || { echo "missing $t (apt-get install squashfs-tools squashfuse)" >&2; exit 1; }
done

W=$(mktemp -d /var/tmp/vnfs-bench.XXXXXX)
export VNFS_HOME=$W/home
cleanup() {
    for m in $W/m-vnfs $W/m-sqfuse $W/m-kernel; do
        mountpoint -q $m 2>/dev/null && umount -l $m || true
    done
    "$VNFS" umount --discard bench >/dev/null 2>&1 || true
    rm -rf "$W"
}
trap cleanup EXIT

if [ -n "${1:-}" ]; then
    TREE=$1
else
    TREE=$W/tree
    mkdir -p $TREE/usr/lib/x86_64-linux-gnu $TREE/usr/share
    cp -a /usr/bin /usr/sbin $TREE/usr/
    # Fill with many small files (share) up to ~400 MB, then libraries up
    # to ~700 MB: roughly the shape of a node image.
    fill() { # FROM-DIR TO-DIR LIMIT-KB
        local budget=$(( $3 - $(du -sk $TREE | cut -f1) )) d s
        for d in "$1"/*; do
            [ $budget -gt 0 ] || break
            s=$(du -sk "$d" | cut -f1)
            [ $s -le $budget ] || continue
            cp -a "$d" "$2"/
            budget=$((budget - s))
        done
    }
    fill /usr/share $TREE/usr/share $((400 * 1024))
    fill /usr/lib/x86_64-linux-gnu $TREE/usr/lib/x86_64-linux-gnu $((700 * 1024))
fi
echo "tree: $TREE, $(du -sh $TREE | cut -f1), $(find $TREE | wc -l) entries"

t0=$(date +%s.%N)
"$VNFS" -q commit "$TREE" -n bench >/dev/null
echo "vnfs commit: $(echo "$(date +%s.%N) - $t0" | bc) s, store $(du -sh $VNFS_HOME/store | cut -f1)"
t0=$(date +%s.%N)
mksquashfs "$TREE" $W/x.sqfs -comp zstd -Xcompression-level 3 -quiet -no-progress >/dev/null
echo "mksquashfs zstd: $(echo "$(date +%s.%N) - $t0" | bc) s, $(du -sh $W/x.sqfs | cut -f1)"
mkdir -p $W/m-vnfs $W/m-sqfuse $W/m-kernel

mount_fs() {
    case $1 in
        vnfs) "$VNFS" -q mount --ro bench $W/m-vnfs ;;
        sqfuse) squashfuse $W/x.sqfs $W/m-sqfuse ;;
        kernel) mount -o loop,ro -t squashfs $W/x.sqfs $W/m-kernel ;;
    esac
}
umount_fs() {
    case $1 in
        vnfs) "$VNFS" -q umount bench ;;
        *) umount $W/m-$1 ;;
    esac
}
cold() { sync; echo 3 > /proc/sys/vm/drop_caches; }
timeit() { local t0=$(date +%s.%N); "$@"; echo "$(date +%s.%N) - $t0" | bc; }
read_all() { tar -C "$1" -cf - . | cat > /dev/null; }
walk() { find "$1" -ls > /dev/null; }

declare -A R
for ((i = 1; i <= ROUNDS; i++)); do
    for fs in vnfs sqfuse kernel; do
        mount_fs $fs; cold
        R[$fs-read]+="$(timeit read_all $W/m-$fs) "
        umount_fs $fs
        mount_fs $fs; cold
        R[$fs-find]+="$(timeit walk $W/m-$fs) "
        umount_fs $fs
    done
done

median() { tr ' ' '\n' | grep . | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
printf "\n%-22s %10s %12s %12s %14s %14s\n" "cold, median of $ROUNDS" vnfs squashfuse kernel "sqfuse/vnfs" "kernel/vnfs"
for op in read find; do
    v=$(echo ${R[vnfs-$op]} | median); s=$(echo ${R[sqfuse-$op]} | median); k=$(echo ${R[kernel-$op]} | median)
    name=$([ $op = read ] && echo "full read (tar|cat)" || echo "find -ls")
    printf "%-22s %9.2fs %11.2fs %11.2fs %13.2fx %13.2fx\n" "$name" $v $s $k \
        $(echo "$s / $v" | bc -l) $(echo "$k / $v" | bc -l)
done

# Memory: the nodes the server holds after a walk, and after the kernel
# forgot what it cached (FUSE forget frees them).
"$VNFS" -q mount --ro bench $W/m-vnfs
walk $W/m-vnfs
pid=$("$VNFS" --json mounts | grep -o '"pid": *[0-9]*' | grep -o '[0-9]*$')
nodes() { getfattr --absolute-names --only-values -n trusted.vnfs.inodes $W/m-vnfs; }
rss() { awk '/^VmRSS/ {printf "%.0f MB", $2 / 1024}' /proc/$pid/status; }
echo
echo "server after find -ls: $(nodes) nodes, RSS $(rss)"
sync; echo 2 > /proc/sys/vm/drop_caches; sleep 1
echo "after drop_caches (kernel forgets): $(nodes) nodes, RSS $(rss)"
"$VNFS" -q umount bench

# Commit after editing one file in the image.
"$VNFS" -q mount bench $W/m-vnfs
f=$(cd $W/m-vnfs && find . -type f -size +100k -print -quit)
echo "edited" >> "$W/m-vnfs/$f"
commit_edit() { "$VNFS" -q umount bench -m "bench edit" > /dev/null; }
t=$(timeit commit_edit)
echo
echo "commit after editing one file ($f): ${t}s"

# Metadata-only edits: chmod every file under /usr/lib, then commit. The
# upper layer holds metadata, not content; commit re-chunks nothing.
"$VNFS" -q mount bench $W/m-vnfs
n=$(find $W/m-vnfs/usr/lib -type f | wc -l)
sz=$(du -sh --apparent-size $W/m-vnfs/usr/lib | cut -f1)
t=$(timeit chmod -R o-r $W/m-vnfs/usr/lib)
up=$(du -sh $VNFS_HOME/mounts/bench/upper | cut -f1)
t2=$(timeit commit_edit)
echo "chmod -R of /usr/lib ($n files, $sz): ${t}s, upper layer $up on disk; commit ${t2}s"
