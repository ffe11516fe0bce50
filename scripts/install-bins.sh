#!/usr/bin/env bash
# Installs the built binaries under their real names (Cargo cannot name a binary with a dot):
#   mkfs-sixfs -> mkfs.sixfs, fsck-sixfs -> fsck.sixfs, mount-sixfs -> mount.sixfs, sixfs-debug.
# Usage: scripts/install-bins.sh [PROFILE_DIR] [DEST]
#   PROFILE_DIR defaults to target/release; DEST to /usr/local/sbin (root) or ~/.local/bin.
set -euo pipefail
src=${1:-target/release}
if [ -n "${2:-}" ]; then dest=$2
elif [ "$(id -u)" -eq 0 ]; then dest=/usr/local/sbin
else dest=$HOME/.local/bin
fi
mkdir -p "$dest"
install -m 0755 "$src/mkfs-sixfs" "$dest/mkfs.sixfs"
install -m 0755 "$src/fsck-sixfs" "$dest/fsck.sixfs"
install -m 0755 "$src/mount-sixfs" "$dest/mount.sixfs"
install -m 0755 "$src/sixfs-debug" "$dest/sixfs-debug"
echo "installed mkfs.sixfs fsck.sixfs mount.sixfs sixfs-debug into $dest"
