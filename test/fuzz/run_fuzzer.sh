#!/bin/sh
# run_fuzzer.sh FUZZER SEED_CORPUS ARTIFACT_DIR SECONDS
# Fuzzes for SECONDS starting from a scratch copy of SEED_CORPUS, so the repository is never
# written; a crashing input is kept in ARTIFACT_DIR (named after the fuzzer) and fails the test.
set -eu
fuzzer=$1 seeds=$2 artifacts=$3 seconds=$4
name=$(basename "$fuzzer")
work=$(mktemp -d "${TMPDIR:-/tmp}/$name.XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM
cp -R "$seeds/." "$work/"
mkdir -p "$artifacts"
# -rss_limit_mb: ASan's shadow memory counts; 2 GB still catches runaway allocations.
"$fuzzer" -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
  -artifact_prefix="$artifacts/$name-" "$work"
