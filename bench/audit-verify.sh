#!/usr/bin/env bash
# Builds `audit-verify` (release) and measures how many audit records per second
# `audit::verify_export` verifies: it writes an export of realistic ~450-byte records (default
# 1,000,000 over 4 streams, a signed checkpoint every 10,000 records of a stream and at the
# end) into a temporary directory (TMPDIR), then times its verification from the page cache:
# leaf hashes, record parsing, Merkle roots and checkpoint signatures, not the disk.
#
# Arguments go to audit-verify unchanged: `--records N` (1 to 100,000,000), `--streams S` (1 to
# 1000). The export takes about 560 bytes per record on disk while it runs.
# Build output and the export's size go to stderr; the report to stdout, ending with
# `records verified/s: N` and `result: ok`. Exits non-zero when the export does not verify.
# Works from any directory: the repository root is found from this script's path.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
target_dir=${CARGO_TARGET_DIR:-target}
[[ $target_dir == /* ]] || target_dir=$root/$target_dir
cargo build --release --quiet -p bench --bin audit-verify >&2
exec "$target_dir/release/audit-verify" "$@"
