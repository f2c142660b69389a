#!/usr/bin/env bash
# Sets up the machine and runs every test of the workspace, as root.
# Tests needing root, FUSE, network or QEMU fail loudly when those are
# missing; none is skipped silently.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
for d in "$HOME/.cargo/bin" /usr/local/cargo/bin; do
  [ -d "$d" ] && export PATH="$d:$PATH"
done
cargo test --workspace --locked --no-fail-fast
