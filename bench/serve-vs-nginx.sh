#!/bin/bash
# Chunk serving: `vnfs serve` against nginx serving the very same stored
# objects as static files at the same paths, 64 concurrent keep-alive
# clients (wrk -t2 -c64, a Lua script walking ~2,000 chunk paths). Runs
# A B A B and prints medians and the ratio (target: vnfs >= 0.8x nginx).
# Data: the host's /usr/bin (real executables), first 2,000 chunks.
# Needs: nginx (nginx-light), wrk, curl, python3. Run as root.
source "$(dirname "$0")/lib-serve.sh"
DUR="${DUR:-10}"
build
W="$(mktemp -d /tmp/vnfs-bench-serve.XXXXXX)"
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
sed "s|^|/v1/object/chunk/|" "$W/ids" > "$W/paths"
cat > "$W/paths.lua" <<LUA
local paths = {}
for l in io.lines("$W/paths") do paths[#paths + 1] = l end
local i = 0
init = function(args) i = math.random(#paths) end
request = function() i = i % #paths + 1; return wrk.format("GET", paths[i]) end
LUA
run() { wrk -t2 -c64 -d"${DUR}s" -s "$W/paths.lua" "$1" | awk '/Requests\/sec/ {print $2}'; }
declare -a A B
for r in 1 2; do
    A+=("$(run "http://127.0.0.1:$PORT")")
    B+=("$(run "http://127.0.0.1:$NPORT")")
done
med() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (a[int((NR+1)/2)] + a[int(NR/2)+1]) / 2}'; }
VA=$(med "${A[@]}"); VB=$(med "${B[@]}")
AVG=$((BYTES / N))
echo
echo "chunk serving, $N chunks (avg $AVG bytes stored), wrk -t2 -c64, ${DUR}s x2 each, alternating"
printf '%-12s %14s %12s\n' server req/s MB/s
printf '%-12s %14.0f %12.0f\n' "vnfs serve" "$VA" "$(echo "$VA*$AVG/1000000" | bc -l)"
printf '%-12s %14.0f %12.0f\n' "nginx" "$VB" "$(echo "$VB*$AVG/1000000" | bc -l)"
printf 'ratio vnfs/nginx: %.2f (target >= 0.80)\n' "$(echo "$VA/$VB" | bc -l)"
echo "runs: vnfs ${A[*]} ; nginx ${B[*]}"
