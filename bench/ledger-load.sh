#!/usr/bin/env bash
# Builds `strongroom` and `ledger-load` (release) and runs the load with this environment.
#
# Settings come from the environment, as ../shared/bench/ledger-vs-postgres.sh sets them:
#   CLIENTS (16), ACCOUNTS (1000), DURATION_S (15), BATCH (0: single transfers; N: atomic
#   batches of N, at most 1000), STRONGROOM_BIN (default: target/release/strongroom).
# Other STRONGROOM_* variables reach the server unchanged.
# Build output goes to stderr; the load's report goes to stdout, last line `transfers/s: N`.
# Works from any directory: the repository root is found from this script's path.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
target_dir=${CARGO_TARGET_DIR:-target}
[[ $target_dir == /* ]] || target_dir=$root/$target_dir   # cargo reads it relative to $root
(cd "$root" && cargo build --release --quiet -p gateway -p bench) >&2
exec "$target_dir/release/ledger-load"
