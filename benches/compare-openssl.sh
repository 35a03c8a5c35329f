#!/usr/bin/env bash
# Compares the emulator's client-assertion signing rate with `openssl speed` on this machine.
#
#   benches/compare-openssl.sh [extra criterion args...]
#
# 1. `openssl speed -seconds 3 -multi 1 rsa2048`: OpenSSL's RSA-2048 sign/s on one core.
# 2. `cargo bench -p m365-benches --bench token_paths` for `assertion/sign/RS256` (a whole
#    client assertion: claims, JSON, base64url, RS256 signature) and
#    `reference/openssl-like/rsa2048-sign-raw` (one bare RS256 signature over 32 bytes).
# 3. Prints both rates and their ratios to OpenSSL's, from criterion's estimates.json. It uses
#    the median, which shrugs off the outliers that other processes on the machine cause.
#
# Extra arguments go to criterion, e.g. `--warm-up-time 1 --measurement-time 3`.
# Needs openssl, cargo and jq (or python3).
set -euo pipefail

cd "$(dirname "$0")/.."

for tool in openssl cargo; do
    command -v "$tool" >/dev/null || { echo "error: $tool not found" >&2; exit 1; }
done

echo "== openssl speed -seconds 3 -multi 1 rsa2048" >&2
openssl_out=$(openssl speed -seconds 3 -multi 1 rsa2048 2>&1)
# The summary row: "rsa 2048 bits 0.000593s 0.000031s   1685.0  32236.0" (sign/s is column 6).
openssl_sign=$(awk '/^rsa 2048 bits/ { v = $6 } END { print v }' <<<"$openssl_out")
if [[ -z "$openssl_sign" ]]; then
    echo "error: no 'rsa 2048 bits' row in openssl speed output:" >&2
    echo "$openssl_out" >&2
    exit 1
fi

echo "== cargo bench -p m365-benches --bench token_paths" >&2
cargo bench -p m365-benches --bench token_paths -- \
    '^(assertion/sign/RS256|reference/openssl-like/rsa2048-sign-raw)$' --noplot "$@" >&2

# Criterion writes target/criterion/<group>/<function>/, with '/' inside a function name
# replaced by '_': assertion/sign/RS256 -> assertion/sign_RS256.
target_dir=${CARGO_TARGET_DIR:-$(cargo metadata --format-version 1 --no-deps 2>/dev/null |
    sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')}
criterion_dir=${CRITERION_HOME:-${target_dir:-target}/criterion}

median_ns() {
    local file="$criterion_dir/$1/new/estimates.json"
    [[ -f "$file" ]] || { echo "error: $file not found" >&2; exit 1; }
    if command -v jq >/dev/null; then
        jq -r '.median.point_estimate' "$file"
    else
        python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["median"]["point_estimate"])' "$file"
    fi
}

ours_ns=$(median_ns assertion/sign_RS256)
raw_ns=$(median_ns reference/openssl-like_rsa2048-sign-raw)

awk -v o="$openssl_sign" -v ours="$ours_ns" -v raw="$raw_ns" 'BEGIN {
    ours_s = 1e9 / ours; raw_s = 1e9 / raw
    printf "openssl speed rsa2048 (1 core)         %10.1f sign/s\n", o
    printf "reference/openssl-like/rsa2048-sign-raw %10.1f sign/s  (%.3f x openssl)\n", raw_s, raw_s / o
    printf "assertion/sign/RS256                   %10.1f sign/s  (%.3f x openssl)\n", ours_s, ours_s / o
}'
