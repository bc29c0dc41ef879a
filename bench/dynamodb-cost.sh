#!/usr/bin/env bash
# What a transfer costs on DynamoDB: write capacity units and DynamoDB requests per transfer,
# through the real HTTPS API and the real AWS SDK, against moto's DynamoDB server started here on
# 127.0.0.1 (tests/moto.sh, as the tests start it).
#
# moto does not report consumed capacity, so units are computed from the size of every item
# written, by DynamoDB's rules (`transactional_write_units` in ledger/src/store/dynamodb): 2 per
# started KB per item in a transaction. The server logs its totals when it stops ("DynamoDB
# usage"). Setup (accounts) and the books check afterwards also call DynamoDB, so each row is
# the difference between a run of DURATION_S seconds and one of 1 second, divided by the
# difference in transfers: the marginal cost of a transfer under load.
#
# Settings (environment): CLIENTS_LIST ("1 16 64"), ACCOUNTS (100), DURATION_S (10), BATCH (0).
# moto is slow and serves one request at a time: the rates are not DynamoDB's; the counts are.
# It copies the whole table on every transaction, so with 1000 accounts its answers come too late
# for the SDK's attempt timeout; hence 100 by default.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
target_dir=${CARGO_TARGET_DIR:-target}
cargo build --release --quiet -p gateway -p bench >&2

work=$(mktemp -d)
source tests/moto.sh
moto_start
trap 'kill "$MOTO_PID" 2>/dev/null; wait "$MOTO_PID" 2>/dev/null || true; rm -rf "$work"' EXIT

export STRONGROOM_STORE=dynamodb STRONGROOM_DYNAMODB_ENDPOINT=$MOTO_ENDPOINT
bin=$target_dir/release
ACCOUNTS=${ACCOUNTS:-100} BATCH=${BATCH:-0}
duration=${DURATION_S:-10}

# Runs the load once on a new table; prints "transfers requests transactions items units".
run() {  # $1 clients, $2 seconds
  local table=bench-$1-$2-$RANDOM$RANDOM
  STRONGROOM_DYNAMODB_TABLE=$table "$bin/strongroom" dynamodb create-tables >/dev/null
  STRONGROOM_DYNAMODB_TABLE=$table SERVER_LOG=$work/server.log CLIENTS=$1 DURATION_S=$2 \
    ACCOUNTS=$ACCOUNTS BATCH=$BATCH "$bin/ledger-load" >"$work/load.out"
  python3 - "$work/load.out" "$work/server.log" <<'PY'
import json, re, sys
load = open(sys.argv[1]).read()
transfers = int(re.search(r"^acknowledged:\s+(\d+)", load, re.M).group(1))
usage = [json.loads(l) for l in open(sys.argv[2]) if '"DynamoDB usage"' in l][-1]
print(transfers, usage["requests"], usage["transactions"], usage["items_written"], usage["write_units_sized"])
PY
}

printf '%-8s %10s %14s %14s %14s %12s\n' clients transfers requests/xfer txns/xfer items/xfer WCU/xfer
for clients in ${CLIENTS_LIST:-1 16 64}; do
  read -r t1 r1 x1 i1 u1 < <(run "$clients" 1)
  read -r t2 r2 x2 i2 u2 < <(run "$clients" "$duration")
  python3 -c "
t=$t2-$t1
print(f'{$clients:<8} {t:>10} {($r2-$r1)/t:>14.2f} {($x2-$x1)/t:>14.3f} {($i2-$i1)/t:>14.2f} {($u2-$u1)/t:>12.2f}')"
done
