#!/usr/bin/env bash
# Builds `strongroom` and `vault-load` (release) and runs the card-vault load.
#
# Settings (environment): CLIENTS (16), DURATION_S (10, each of the tokenize and reveal phases),
# KEY_SERVICE (local: the keyring file, the default; kms: AWS KMS as moto's server speaks it,
# started here from tests/moto.sh on 127.0.0.1 with a new symmetric key made by the moto
# virtualenv's boto3). Other STRONGROOM_* variables reach the server unchanged.
# Build output goes to stderr; the report to stdout, ending with `tokenizations/s: N`,
# `reveals/s: N` and `key-service requests per 10000 tokenizations: N`.
# Works from any directory: the repository root is found from this script's path.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
target_dir=${CARGO_TARGET_DIR:-target}
[[ $target_dir == /* ]] || target_dir=$root/$target_dir
cargo build --release --quiet -p gateway -p bench >&2

export STRONGROOM_METRICS_LISTEN=127.0.0.1:0
export STRONGROOM_RATE_REVEAL=${STRONGROOM_RATE_REVEAL:-1000000000/1s}
case ${KEY_SERVICE:-local} in
  local) ;;
  kms)
    source tests/moto.sh
    moto_start >&2
    key_id=$(target/test-venv/bin/python -c '
import sys, boto3
kms = boto3.client("kms", endpoint_url=sys.argv[1], region_name="us-east-1")
print(kms.create_key()["KeyMetadata"]["Arn"])' "$MOTO_ENDPOINT")
    export STRONGROOM_KEY_SERVICE=kms STRONGROOM_KMS_KEY_ID=$key_id \
      STRONGROOM_KMS_ENDPOINT=$MOTO_ENDPOINT STRONGROOM_KMS_REGION=us-east-1
    ;;
  *) echo "vault-load.sh: KEY_SERVICE must be local or kms" >&2; exit 64 ;;
esac
# Not exec: moto's EXIT trap stops it when the load is done.
"$target_dir/release/vault-load"
