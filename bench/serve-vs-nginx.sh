#!/bin/bash
# Chunk serving: `vnfs serve` against nginx serving the very same stored
# objects as static files at the same paths, 64 concurrent keep-alive
# clients (wrk -t2 -c64, a Lua script walking ~2,000 chunk paths). Runs
# A B A B A B and prints medians and the ratio (target: vnfs >= 0.8x nginx),
# and each server's CPU time per request (user + system, from /proc), which
# the load of other processes on the machine does not skew.
# Data: the host's /usr/bin (real executables), first 2,000 chunks.
# Needs: nginx (nginx-light), wrk, curl, python3. Run as root.
source "$(dirname "$0")/lib-serve.sh"
DUR="${DUR:-10}"
build
W="$(mktemp -d /tmp/vnfs-bench-serve.XXXXXX)"
# nginx's workers run as an unprivileged user: they must be able to read
# the static tree (mktemp makes the directory 0700).
chmod 755 "$W"
trap 'kill ${SERVE_PID:-} ${NGINX_PID:-} 2>/dev/null || true; rm -rf "$W"' EXIT
init_home "$W/home" img
VNFS_HOME="$W/home" "$VNFS" commit -q -n img /usr/bin >/dev/null
chunk_ids "$W/home/store" > "$W/all-ids"; head -2000 "$W/all-ids" > "$W/ids"
PORT=$(free_port); NPORT=$(free_port)
start_serve "$W/home" "$PORT"
# The static tree: each object's bytes exactly as vnfs serve sends them.
mkdir -p "$W/www/v1/object/chunk"
while read -r id; do echo "url = \"http://127.0.0.1:$PORT/v1/object/chunk/$id\""; echo "output = \"$W/www/v1/object/chunk/$id\""; done < "$W/ids" > "$W/curl.cfg"
curl -s --fail-early -K "$W/curl.cfg"
N=$(wc -l < "$W/ids")
BYTES=$(du -sb "$W/www" | cut -f1)
cat > "$W/nginx.conf" <<NG
worker_processes 2;
pid $W/nginx.pid;
error_log $W/nginx.err;
events { worker_connections 1024; }
http {
    access_log off;
    sendfile on; tcp_nopush on; keepalive_requests 1000000;
    server { listen 127.0.0.1:$NPORT; root $W/www; }
}
NG
nginx -c "$W/nginx.conf" -g 'daemon off;' & NGINX_PID=$!
sleep 0.5
# Both servers must send the very same bytes, or the comparison means nothing.
for id in $(sed -n '1p;1000p;$p' "$W/ids"); do
    for p in "$PORT" "$NPORT"; do
        curl -sf "http://127.0.0.1:$p/v1/object/chunk/$id" | cmp -s - "$W/www/v1/object/chunk/$id" \
            || { echo "port $p does not serve chunk $id as stored" >&2; exit 1; }
    done
done
sed "s|^|/v1/object/chunk/|" "$W/ids" > "$W/paths"
cat > "$W/paths.lua" <<LUA
local paths = {}
for l in io.lines("$W/paths") do paths[#paths + 1] = l end
local i = 0
init = function(args) i = math.random(#paths) end
request = function() i = i % #paths + 1; return wrk.format("GET", paths[i]) end
LUA
# CPU ticks (user + system) of processes: the server's cost per request,
# which the load of other processes on the machine does not change.
ticks() { local t=0 p; for p in "$@"; do read -r -a a < "/proc/$p/stat"; t=$((t + a[13] + a[14])); done; echo "$t"; }
HZ=$(getconf CLK_TCK)
NGINX_WORKERS=$(pgrep -P "$NGINX_PID" | tr '\n' ' ')
# Prints "req/s cpu-us-per-request".
run() {
    local url=$1; shift
    local c0 c1 out
    c0=$(ticks "$@")
    out=$(wrk -t2 -c64 -d"${DUR}s" -s "$W/paths.lua" "$url")
    if grep -qE 'Non-2xx|Socket errors' <<<"$out"; then
        echo "wrk against $url saw failures:" >&2; echo "$out" >&2; exit 1
    fi
    c1=$(ticks "$@")
    echo "$out" | awk -v c="$((c1 - c0))" -v hz="$HZ" '/requests in/ {n=$1} /Requests\/sec/ {r=$2} END {printf "%s %.1f\n", r, c * 1e6 / hz / n}'
}
declare -a A B CA CB
for r in 1 2 3; do
    read -r rps cpu < <(run "http://127.0.0.1:$PORT" "$SERVE_PID"); A+=("$rps"); CA+=("$cpu")
    # shellcheck disable=SC2086
    read -r rps cpu < <(run "http://127.0.0.1:$NPORT" $NGINX_WORKERS); B+=("$rps"); CB+=("$cpu")
done
med() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (a[int((NR+1)/2)] + a[int(NR/2)+1]) / 2}'; }
VA=$(med "${A[@]}"); VB=$(med "${B[@]}"); UA=$(med "${CA[@]}"); UB=$(med "${CB[@]}")
AVG=$((BYTES / N))
echo
echo "chunk serving, $N chunks (avg $AVG bytes stored), wrk -t2 -c64, ${DUR}s x3 each, alternating; load: $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-12s %14s %12s %16s\n' server req/s MB/s "CPU us/request"
printf '%-12s %14.0f %12.0f %16.1f\n' "vnfs serve" "$VA" "$(echo "$VA*$AVG/1000000" | bc -l)" "$UA"
printf '%-12s %14.0f %12.0f %16.1f\n' "nginx" "$VB" "$(echo "$VB*$AVG/1000000" | bc -l)" "$UB"
printf 'ratio vnfs/nginx: %.2f req/s (target >= 0.80); %.2f by CPU per request\n' "$(echo "$VA/$VB" | bc -l)" "$(echo "$UB/$UA" | bc -l)"
echo "runs: vnfs ${A[*]} ; nginx ${B[*]}"
