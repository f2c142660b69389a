#!/usr/bin/env bash
# Installs what vnfs needs to build, run and test on Debian (as root).
# Idempotent: a second run installs nothing new.
set -euo pipefail

packages=(
  # build
  build-essential pkg-config libclang-dev libsquashfs-dev
  # runtime: images, mounts, chroots, boot
  debian-archive-keyring fuse3 dpkg-dev squashfs-tools cpio zstd xz-utils
  acl attr util-linux iproute2 dnsmasq ipxe qemu-system-x86 createrepo-c
  rpm sqlite3  # the rpm database of RPM images: written, settled for reproducibility
  dnf  # the reference the modular filtering test (module streams) compares with
  gnupg  # the RPM signature tests: throwaway keys for rpmsign (gpg, gpg-agent)
  # peers the benchmarks and equivalence tests compare against
  casync squashfuse rsync mmdebstrap nginx-light wrk fio stress-ng hyperfine
)

if [ "$(id -u)" -ne 0 ]; then
  echo "scripts/setup.sh: run as root (it installs Debian packages)" >&2
  exit 1
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# The Rust toolchain comes from rustup on these machines; Debian's cargo is
# too old for edition 2024, so say so instead of installing it.
if ! command -v cargo >/dev/null 2>&1; then
  for d in "$HOME/.cargo/bin" /usr/local/cargo/bin; do
    [ -x "$d/cargo" ] && export PATH="$d:$PATH"
  done
fi
if ! command -v cargo >/dev/null 2>&1; then
  echo "scripts/setup.sh: cargo not found; install Rust >= 1.95 with rustup" >&2
  exit 1
fi
cargo --version
