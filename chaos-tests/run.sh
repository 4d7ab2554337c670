#!/usr/bin/env bash
# Runs the chaos schedule: chaos-tests/run.sh --minutes N --seed S
# (defaults: 2 minutes, seed 1). The seed draws the schedule, so a failing
# run replays with the same seed. Needs root (network namespaces, a tmpfs),
# iproute2 and nftables. Prints the table; exits 1 if an invariant broke.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --quiet -p skr8tr -p skr8tr-chaos-tests --bins
exec target/debug/chaos-schedule "$@"
