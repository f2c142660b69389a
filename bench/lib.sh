# Shared helpers for the benchmark scripts (sourced, not run).

# The Debian mirror the machine's apt sources name (deb822 or one-line).
apt_mirror() {
  local uri
  uri=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
  if [ -z "$uri" ]; then
    uri=$(grep -hE '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
      | grep -v security | awk '{for (i=2;i<=NF;i++) if ($i ~ /^[a-z]+:\/\//) {print $i; exit}}' | head -1)
  fi
  [ -n "$uri" ] || { echo "no Debian mirror in the apt sources" >&2; return 1; }
  echo "$uri"
}

drop_caches() { sync; echo 3 > /proc/sys/vm/drop_caches; }

# now_s: wall clock in seconds with nanoseconds.
now_s() { date +%s.%N; }

# timed VAR cmd...: runs cmd, stores elapsed seconds in VAR.
timed() {
  local __var=$1; shift
  local t0 t1
  t0=$(now_s); "$@"; t1=$(now_s)
  printf -v "$__var" '%.2f' "$(echo "$t1 - $t0" | bc -l)"
}

median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
ratio() { echo "scale=2; $1 / $2" | bc -l | sed 's/^\./0./'; }
mib() { echo "scale=1; $1 / 1048576" | bc -l | sed 's/^\./0./'; }

# debian_tree DIR PACKAGES: an mmdebstrap minbase bookworm root (cached).
debian_tree() {
  local dir=$1 pkgs=$2
  if [ -f "$dir/.complete" ]; then return 0; fi
  rm -rf "$dir"; mkdir -p "$(dirname "$dir")"
  mmdebstrap --quiet --variant=minbase --mode=root --include="$pkgs" \
    bookworm "$dir" "deb $(apt_mirror) bookworm main" >&2
  touch "$dir/.complete"
}
