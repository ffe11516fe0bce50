#!/usr/bin/env bash
# The main job on a fresh machine: install what is needed, build, install the binaries,
# format an image, show its superblock and check it.
# Usage: scripts/main-job.sh [IMAGE]   (default: a 1 GiB sparse image in a temp dir)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cargo build --release --locked --bins
dest=$(mktemp -d)/bin
scripts/install-bins.sh target/release "$dest"
export PATH="$dest:$PATH"

img=${1:-$(mktemp -d)/sixfs-demo.img}
echo "== mkfs.sixfs --size 1G $img"
mkfs.sixfs --size 1G -L demo "$img"
echo "== sixfs-debug show-super $img"
sixfs-debug show-super "$img"
echo "== fsck.sixfs -n $img"
fsck.sixfs -n -v "$img"
echo "== done: $img is a clean sixfs image"
