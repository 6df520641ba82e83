#!/usr/bin/env bash
# A long Jepsen-style campaign (CI runs a short one with every change):
# in-process and process-level clusters under crashes, partitions, pauses, leader
# transfers and full restarts, histories checked for per-key linearizability; then
# the lock campaign (tests/lock_campaign.rs: fences checked under kills and pauses).
#   scripts/jepsen.sh                 # 10 runs x 60 s each campaign
#   RUNS=3 SECS=30 scripts/jepsen.sh  # shorter
#   JEPSEN_SEED=1234 scripts/jepsen.sh  # replay: runs use seeds 1234, 1235, ...
# A violation fails the run and saves the history as JSON (path printed).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export JEPSEN_RUNS="${RUNS:-10}" JEPSEN_SECS="${SECS:-60}" LOCK_CAMPAIGN_SECS="${SECS:-60}"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --test jepsen --test lock_campaign --no-capture --test-threads 1
else
  cargo test --test jepsen --test lock_campaign -- --nocapture --test-threads 1
fi
