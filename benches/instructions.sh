#!/usr/bin/env bash
# Instructions per proxied request, counted by callgrind: deterministic
# where wall-clock figures on a shared machine are not, so that a change to
# the request path can be compared before and after. Same scenario as
# load.sh (a 1 KiB Meta event, 6 hashed fields, access log on).
#
#   benches/instructions.sh [SCRIM_BINARY]     (default target/release/scrim)
#
# Needs: valgrind and wrk (installed with apt-get when missing), python3.
# Under valgrind SHA-256 runs without the CPU's SHA extensions, so hashing
# weighs more here than on the real machine.
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/common.sh
need valgrind valgrind
need wrk wrk

cargo build --release --quiet --bin scrim --example bench_upstream
scrim=${1:-target/release/scrim}
upstream_port=$(free_port); scrim_port=$(free_port); admin_port=$(free_port)

target/release/examples/bench_upstream "127.0.0.1:$upstream_port" 2>/dev/null & pids+=($!)
meta_config "$work/scrim.yaml" "$scrim_port" "$admin_port" "$upstream_port"
meta_event "$work/body.json" "$work/post.lua"

valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$work/callgrind.out.%p" \
  "$scrim" run --config "$work/scrim.yaml" 2>"${SCRIM_STDERR:-/dev/null}" & pids+=($!)
for _ in $(seq 1 50); do curl -sf -o /dev/null "http://127.0.0.1:$admin_port/healthz" && break; sleep 0.2; done
wrk -t1 -c8 -d2s -s "$work/post.lua" "http://127.0.0.1:$scrim_port/v21.0/1/events" >/dev/null   # warm up
callgrind_control -i on >/dev/null 2>&1
out=$(wrk -t1 -c8 -d4s -s "$work/post.lua" "http://127.0.0.1:$scrim_port/v21.0/1/events")
callgrind_control -i off >/dev/null 2>&1
callgrind_control -d >/dev/null 2>&1
sleep 1
requests=$(echo "$out" | awk '/requests in/ {print $1}')
instructions=$(grep -h '^totals:' "$work"/callgrind.out.* | awk '{s+=$2} END {print s}')
[ -n "${KEEP_CALLGRIND:-}" ] && cp "$work"/callgrind.out.* "$KEEP_CALLGRIND"/
python3 -c "print('%d requests, %.0f instructions per request' % ($requests, $instructions / $requests))"
