#!/bin/bash
# Livesync bytes on the wire for a package-update pair, against
# `rsync -a --delete --no-whole-file` (what Perceus's livesync ran).
# Pair: a base tree (the host's /usr/lib/python3.11 and /usr/share/perl5)
# plus Debian bookworm's libssl3, openssl and python3.11 packages at their
# release version (v1), then at their security-update version (v2), with
# dpkg's status file updated as apt would. Packages come from the
# machine's apt sources (apt-get download).
# vnfs: one node provisioned with v1 (its cache holds v1), `vnfs livesync`
# to v2 (changed files' new chunks come as zstd deltas against their old
# versions, see provisioner/agent/src/delta.rs); the node root is then
# checked against v2; bytes are what the agent sent and received over HTTP (bodies and
# headers). rsync: "Total bytes sent" from --stats.
source "$(dirname "$0")/lib-serve.sh"
build
W="$(mktemp -d /tmp/vnfs-bench-ls.XXXXXX)"
trap 'kill ${SERVE_PID:-} ${AGENT_PID:-} 2>/dev/null || true; rm -rf "$W"' EXIT
PKGS="libssl3 openssl python3.11 python3.11-minimal libpython3.11-minimal libpython3.11-stdlib"
ver() { apt-cache madison "$1" | awk -v s="$2" '$0 ~ s {print $3; exit}'; }
mkdir -p "$W/debs" && cd "$W/debs"
for p in $PKGS; do
    old=$(ver "$p" " bookworm/main"); new=$(ver "$p" "bookworm-security")
    [ -n "$old" ] && [ -n "$new" ] || { echo "no version pair for $p" >&2; exit 1; }
    apt-get download -q "$p=$old" "$p=$new" >/dev/null
done
cd - >/dev/null
make_tree() { # $1 dir, $2 version selector (old|new)
    mkdir -p "$1/usr/lib" "$1/usr/share" "$1/var/lib/dpkg" "$1/etc"
    cp -a /usr/lib/python3.11 "$1/usr/lib/"; cp -a /usr/share/perl5 "$1/usr/share/"
    echo node > "$1/etc/hostname"
    : > "$1/var/lib/dpkg/status"
    for p in $PKGS; do
        f=$(ls "$W"/debs/${p}_*.deb | sort -V | { if [ "$2" = old ]; then head -1; else tail -1; fi; })
        dpkg-deb -x "$f" "$1"
        dpkg-deb -f "$f" >> "$1/var/lib/dpkg/status"; echo >> "$1/var/lib/dpkg/status"
    done
}
make_tree "$W/v1" old; make_tree "$W/v2" new
H="$W/home"; init_home "$H" img
VNFS_HOME="$H" "$VNFS" commit -q -n img "$W/v1" >/dev/null
PORT=$(free_port); start_serve "$H" "$PORT"
"$NODE" provision --master "http://127.0.0.1:$PORT" --root "$W/node" --cache "$W/cache" --mac 52:54:00:00:00:01 >/dev/null
"$NODE" daemon --master "http://127.0.0.1:$PORT" --cache "$W/cache" --interval 0.2 --no-scripts & AGENT_PID=$!
VNFS_HOME="$H" "$VNFS" commit -q -n img "$W/v2" >/dev/null
OUT=$(VNFS_HOME="$H" "$VNFS" --json livesync img --timeout 120)
VB=$(echo "$OUT" | python3 -c 'import json,sys; r=json.load(sys.stdin)[0]; print(json.loads(r["report"])["bytes"])')
# The node must now hold v2 exactly (contents, links, modes).
if ! diff -r --no-dereference "$W/v2" "$W/node" >/dev/null; then
    echo "livesync left the node different from v2:" >&2
    diff -r --no-dereference "$W/v2" "$W/node" | head >&2; exit 1
fi
cp -a "$W/v1" "$W/rsync-dst"
RS=$(rsync -a --delete --no-whole-file --stats "$W/v2/" "$W/rsync-dst/" | awk '/Total bytes sent/ {gsub(",","",$4); print $4}')
echo
echo "livesync of a package update (libssl3/openssl/python3.11: bookworm -> bookworm-security)"
printf '%-28s %14s\n' tool "bytes on wire"
printf '%-28s %14d\n' "vnfs livesync" "$VB"
printf '%-28s %14d\n' "rsync -a --delete (sent)" "$RS"
printf 'ratio vnfs/rsync: %.3f (target <= 0.5)\n' "$(echo "$VB/$RS" | bc -l)"
