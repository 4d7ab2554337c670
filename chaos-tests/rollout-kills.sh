#!/usr/bin/env bash
# Runs the "conductor killed during a rollout" test N times (default 10):
#   chaos-tests/rollout-kills.sh [N]
# Each run kills the conductor with SIGKILL at three points of one rollout.
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:-10}"
cargo build -q -p skr8tr -p skr8tr-chaos-tests
for i in $(seq 1 "$n"); do
  echo "== run $i/$n"
  cargo test -q -p skr8tr-chaos-tests --test chaos -- --exact \
    rollout::a_conductor_killed_at_any_step_of_a_rollout_finishes_it_without_duplicates 2>&1 | tail -2
done
