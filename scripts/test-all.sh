#!/usr/bin/env bash
# Runs every test tier that belongs in CI, installing what it needs first. Long tiers
# (crash enumeration at 10k states, fuzzing, benchmarks) are documented in docs/testing.md.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh

step() { echo; echo "=== $* ($(date +%T))"; }

step "build (binaries for the end-to-end tests)"
cargo build --locked --workspace --bins

step "unit, property, crash and end-to-end tests (nextest)"
cargo nextest run --locked --workspace --no-fail-fast

step "doc tests"
cargo test --locked --workspace --doc

# Release speed, but with debug assertions on: the primitives' invariants are debug_assert!s,
# and a model run without them checks much less.
step "model checking: loom (SIX, two-state lock, barrier, counters, genradix)"
CARGO_TARGET_DIR=target/loom RUSTFLAGS="--cfg loom -C debug-assertions=on" \
  cargo test --locked -p sixfs --release --lib -- sync:: util::

step "model checking: shuttle (SIX lock, 3 threads, random schedules)"
CARGO_TARGET_DIR=target/shuttle RUSTFLAGS="--cfg shuttle -C debug-assertions=on" \
  cargo test --locked -p sixfs --release --lib -- shuttle_tests

step "layering check"
scripts/check-layers.sh

step "image smoke test: mkfs -> fsck -> show-super"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
target/debug/mkfs-sixfs -q --size 256M -L smoke "$tmp/smoke.img"
target/debug/fsck-sixfs -n "$tmp/smoke.img"
target/debug/sixfs-debug show-super "$tmp/smoke.img" | grep -q "Label: *smoke"

echo; echo "=== all tests passed ($(date +%T))"
