#!/usr/bin/env bash
# What the audit log costs the ledger: single-transfer throughput of `ledger-load` with the
# audit log on (the default) and off (`STRONGROOM_AUDIT_LOG=off`, for measurement only), in
# ABBA order (on off off on, ROUNDS times) so that drift of this VM's speed during the runs
# weighs on both sides alike.
#
# Settings (environment): ROUNDS (3), and everything `ledger-load` reads (CLIENTS, ACCOUNTS,
# DURATION_S, BATCH, STRONGROOM_*). Builds `strongroom` and `ledger-load` first (release; build
# output on stderr). Prints one line per run, then the means and
# `audit on/off transfer ratio: R` (target: at least 0.90).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
target_dir=${CARGO_TARGET_DIR:-target}
[[ $target_dir == /* ]] || target_dir=$root/$target_dir
(cd "$root" && cargo build --release --quiet -p gateway -p bench) >&2
rounds=${ROUNDS:-3}
[[ $rounds =~ ^[1-9][0-9]?$ ]] || { echo "ROUNDS must be 1 to 99" >&2; exit 64; }

declare -A sum=([on]=0 [off]=0) runs=([on]=0 [off]=0)
for _ in $(seq "$rounds"); do
  for mode in on off off on; do
    report=$(STRONGROOM_AUDIT_LOG=$mode "$target_dir/release/ledger-load")
    tps=$(sed -n 's/^transfers\/s: \([0-9]*\)$/\1/p' <<<"$report")
    [[ -n $tps ]] || { echo "ledger-load printed no transfers/s line:" >&2; echo "$report" >&2; exit 1; }
    cpu=$(sed -n 's/^server CPU: *//p' <<<"$report")
    echo "audit_log=$mode  transfers/s: $tps  server CPU: $cpu"
    sum[$mode]=$(( ${sum[$mode]} + tps ))
    runs[$mode]=$(( ${runs[$mode]} + 1 ))
  done
done
on=$(( ${sum[on]} / ${runs[on]} ))
off=$(( ${sum[off]} / ${runs[off]} ))
echo "mean transfers/s, audit on:  $on"
echo "mean transfers/s, audit off: $off"
awk -v on="$on" -v off="$off" 'BEGIN { printf "audit on/off transfer ratio: %.3f\n", on / off }'
