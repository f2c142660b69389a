#!/usr/bin/env bash
# Sets up the machine and builds an image from a recipe into the default
# store (/var/lib/vnfs as root), as root:
#   bash scripts/run.sh [RECIPE] [vnfs build options...]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
for d in "$HOME/.cargo/bin" /usr/local/cargo/bin; do
  [ -d "$d" ] && export PATH="$d:$PATH"
done
cargo build --release --locked
recipe=${1:-recipes/debian-bookworm-minimal.toml}
shift || true
exec ./target/release/vnfs build "$recipe" "$@"
