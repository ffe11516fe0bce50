#!/usr/bin/env bash
# Installs what building and testing sixfs needs, idempotently: Debian packages (only the
# missing ones) and cargo tools (only when absent). Safe to run again and again.
set -euo pipefail

APT_PACKAGES=(e2fsprogs util-linux fuse3 btrfs-progs xfsprogs dosfstools)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "install-deps: installing ${missing[*]}"
  $SUDO apt-get update -qq
  # dpkg on these machines sometimes fails once with "cannot access archive"; retry.
  for attempt in 1 2 3; do
    if $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"; then
      break
    fi
    [ "$attempt" -eq 3 ] && { echo "install-deps: apt-get install failed" >&2; exit 1; }
    sleep 2
  done
fi

# .ci/run runs cargo fmt and cargo clippy: a minimal rustup profile lacks them.
if command -v rustup >/dev/null 2>&1; then
  components=()
  cargo fmt --version >/dev/null 2>&1 || components+=(rustfmt)
  cargo clippy --version >/dev/null 2>&1 || components+=(clippy)
  if ((${#components[@]})); then
    echo "install-deps: adding rustup components ${components[*]}"
    rustup component add "${components[@]}"
  fi
elif ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
  echo "install-deps: cargo fmt or cargo clippy is missing and rustup is not available; install rustfmt and clippy" >&2
  exit 1
fi

if ! cargo nextest --version >/dev/null 2>&1; then
  echo "install-deps: installing cargo-nextest"
  cargo install --locked cargo-nextest
fi
