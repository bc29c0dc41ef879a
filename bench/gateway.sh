#!/usr/bin/env bash
# Runs Strongroom's gateway alone (`strongroom serve --upstream`) in the foreground, configured
# from the variables ../shared/bench/gateway-vs-haproxy.sh sets:
#   BENCH_DIR (tls.crt, tls.key, jwks.json), LISTEN_ADDR, UPSTREAM_URL, JWT_ISSUER, JWT_AUDIENCE.
#
#   cargo build --release -p gateway
#   ../shared/bench/gateway-vs-haproxy.sh -- "$PWD/bench/gateway.sh"   (it runs from its own folder)
#
# The gateway does what HAProxy does in that script, and more: TLS with the given ECDSA
# certificate, the token verified against the JWKS (signature, iss, aud, exp, nbf, iat, tenant),
# the route policy checked, a rate limit per tenant (10,000,000/s, far above the load, as
# HAProxy's per-subject limit is), a request id, and the request forwarded over pooled
# keep-alive connections with the internal assertion, `traceparent` and `X-Forwarded-For`. Like HAProxy there, it writes
# no per-request log line (`log = warn`); everything else is the production configuration.
# STRONGROOM_BIN overrides the program (default: target/release/strongroom). Extra STRONGROOM_*
# variables reach the gateway unchanged.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
target_dir=${CARGO_TARGET_DIR:-target}
[[ $target_dir == /* ]] || target_dir=$root/$target_dir
bin=${STRONGROOM_BIN:-$target_dir/release/strongroom}
[[ -x $bin ]] || { echo "gateway.sh: build first: cargo build --release -p gateway" >&2; exit 1; }
: "${BENCH_DIR:?}" "${LISTEN_ADDR:?}" "${UPSTREAM_URL:?}" "${JWT_ISSUER:?}" "${JWT_AUDIENCE:?}"

# The key the gateway signs its internal assertions with (a ledger behind it would share it).
key=$BENCH_DIR/internal.key
if [[ ! -f $key ]]; then
  (umask 077 && openssl rand -hex 32 >"$key")
fi

export STRONGROOM_MODE=production
export STRONGROOM_DATA_DIR=$BENCH_DIR/strongroom-data
export STRONGROOM_LISTEN=$LISTEN_ADDR
export STRONGROOM_UPSTREAM=$UPSTREAM_URL
# The script's upstream is nginx over plain HTTP on loopback; production mode wants it said.
export STRONGROOM_UPSTREAM_PLAINTEXT_OK=true
export STRONGROOM_INTERNAL_KEY_FILE=$key
export STRONGROOM_TLS_CERT=$BENCH_DIR/tls.crt
export STRONGROOM_TLS_KEY=$BENCH_DIR/tls.key
export STRONGROOM_JWKS_FILE=$BENCH_DIR/jwks.json
export STRONGROOM_JWT_ISSUER=$JWT_ISSUER
export STRONGROOM_JWT_AUDIENCE=$JWT_AUDIENCE
export STRONGROOM_RATE_TENANT=${STRONGROOM_RATE_TENANT:-10000000/1s}
export STRONGROOM_LOG=${STRONGROOM_LOG:-warn}
exec "$bin" serve
