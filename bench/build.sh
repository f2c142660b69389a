#!/bin/sh
# Compares `vnfs build` with mmdebstrap on the same package list, in the
# same run: cold (empty caches, page cache dropped) and warm (packages
# cached: our cache for vnfs, /var/cache/apt/archives via a setup hook for
# mmdebstrap). Prints wall times, ratios and vnfs's peak RSS.
#
#   bench/build.sh [recipe] (default recipes/debian-bookworm-node.toml)
#   env: VNFS=path/to/vnfs (default target/release/vnfs), RUNS=n (default 1)
set -eu
RECIPE=${1:-recipes/debian-bookworm-node.toml}
VNFS=${VNFS:-target/release/vnfs}
RUNS=${RUNS:-1}
for t in mmdebstrap python3 /usr/bin/time; do
    command -v "$t" >/dev/null || { echo "missing $t" >&2; exit 1; }
done
W=$(mktemp -d /var/tmp/vnfs-bench.XXXXXX)
trap 'rm -rf "$W"' EXIT
# The recipe's suite, variant and packages; the mirror from apt sources.
eval "$(python3 - "$RECIPE" <<'PY'
import sys, tomllib
r = tomllib.load(open(sys.argv[1], "rb"))["source"]["debian"]
print(f"SUITE={r['suite']}")
print(f"VARIANT={r.get('variant', 'minbase')}")
print(f"PKGS={','.join(r.get('packages', []))}")
PY
)"
MIRROR=$(python3 - "$SUITE" <<'PY'
import sys, glob
suite = sys.argv[1]
for f in ["/etc/apt/sources.list"] + sorted(glob.glob("/etc/apt/sources.list.d/*.list")):
    try:
        for l in open(f):
            w = l.split("#")[0].split()
            if len(w) >= 3 and w[0] == "deb":
                if w[1].startswith("["):
                    w = [w[0]] + w[w.index(next(x for x in w if x.endswith("]"))) + 1:]
                if w[2] == suite:
                    print(w[1]); sys.exit()
    except FileNotFoundError:
        pass
for f in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")):
    for para in open(f).read().split("\n\n"):
        d = {}
        for l in para.splitlines():
            if ":" in l and not l.startswith((" ", "#")):
                k, v = l.split(":", 1); d[k.strip()] = v.split()
        if "deb" in d.get("Types", []) and suite in d.get("Suites", []):
            print(d["URIs"][0]); sys.exit()
sys.exit("no apt source for " + suite)
PY
)
drop() { sync; echo 3 > /proc/sys/vm/drop_caches; }
secs() { python3 -c "import time; print(time.monotonic())"; }
run_vnfs() { # $1 home, $2 out
    /usr/bin/time -f "%M" -o "$W/rss" "$VNFS" -q --home "$1" build "$W/r/recipe.toml" --output-dir "$2"
}
run_mm() { # $1 out, extra args
    out=$1; shift
    mmdebstrap -q --variant="$VARIANT" --mode=root ${PKGS:+--include=$PKGS} "$@" "$SUITE" "$out" "deb $MIRROR $SUITE main"
}
mkdir -p "$W/r" "$W/debs"
cp "$RECIPE" "$W/r/recipe.toml"
echo "recipe $RECIPE: suite $SUITE, variant $VARIANT, packages $PKGS"
for i in $(seq "$RUNS"); do
    rm -rf "$W/home" "$W/r/recipe.toml.lock" "$W/o1" "$W/o2"
    drop; t0=$(secs); run_vnfs "$W/home" "$W/o1"; t1=$(secs)
    echo "cold vnfs        $(python3 -c "print(round($t1-$t0,1))") s (peak RSS $(( $(cat "$W/rss") / 1024 )) MiB)"
    VC=$(python3 -c "print($t1-$t0)")
    drop; t0=$(secs); run_mm "$W/o2"; t1=$(secs)
    MC=$(python3 -c "print($t1-$t0)")
    echo "cold mmdebstrap  $(python3 -c "print(round($MC,1))") s"
    # Warm: the same .debs, named as apt names them, for mmdebstrap.
    python3 - "$W/r/recipe.toml.lock" "$W/home/cache/packages" "$W/debs" <<'PY'
import sys, tomllib, os, shutil
lock = tomllib.load(open(sys.argv[1], "rb"))
for p in lock["package"]:
    v = p["version"].replace(":", "%3a")
    src = os.path.join(sys.argv[2], p["sha256"][:2], p["sha256"])
    shutil.copy(src, os.path.join(sys.argv[3], f"{p['name']}_{v}_{p['arch']}.deb"))
PY
    rm -rf "$W/o1" "$W/o2"
    t0=$(secs); run_vnfs "$W/home" "$W/o1"; t1=$(secs)
    VW=$(python3 -c "print($t1-$t0)")
    echo "warm vnfs        $(python3 -c "print(round($VW,1))") s (peak RSS $(( $(cat "$W/rss") / 1024 )) MiB)"
    t0=$(secs)
    run_mm "$W/o2" --skip=essential/unlink --setup-hook="mkdir -p \"\$1/var/cache/apt/archives\" && cp $W/debs/*.deb \"\$1/var/cache/apt/archives/\""
    t1=$(secs)
    MW=$(python3 -c "print($t1-$t0)")
    echo "warm mmdebstrap  $(python3 -c "print(round($MW,1))") s"
    python3 -c "print(f'ratio cold {$VC/$MC:.2f}  warm {$VW/$MW:.2f}  (targets <= 0.6, <= 0.3)')"
    # The floor under any warm build of this image: its own initramfs,
    # which dpkg's configure step runs once on both sides. Timed again on
    # mmdebstrap's tree, in a private mount namespace with /proc, /sys and
    # /dev as the build has them.
    if [ -x "$W/o2/usr/sbin/update-initramfs" ]; then
        t0=$(secs)
        unshare -m sh -c "mount -t proc proc '$W/o2/proc' && mount -t sysfs sys '$W/o2/sys' && mount --rbind /dev '$W/o2/dev' && chroot '$W/o2' update-initramfs -u -k all" >/dev/null 2>&1
        t1=$(secs)
        IR=$(python3 -c "print($t1-$t0)")
        python3 -c "print(f'the image\'s own update-initramfs alone: {$IR:.1f} s = {$IR/$MW:.2f} of mmdebstrap warm')"
    fi
    chroot "$W/o1" dpkg-query -W -f '${Package}\n' | sort > "$W/ours"
    chroot "$W/o2" dpkg-query -W -f '${Package}\n' | sort > "$W/theirs"
    if diff "$W/theirs" "$W/ours" > "$W/setdiff"; then
        echo "installed package sets are equal ($(wc -l < "$W/ours") packages)"
    else
        echo "installed package sets differ (< mmdebstrap, > vnfs):"; cat "$W/setdiff"
    fi
done
