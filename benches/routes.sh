#!/usr/bin/env bash
# Route lookup at scale: the same load bench (the 1 KiB Meta event, 6 fields
# hashed, benches/common.sh) through scrim with 3 routes and with 5,000
# routes, the benched route in the middle of the list, run alternately in
# one session; plus unrouted requests (404) on each, and what a reload of
# each configuration costs (CPU time and peak RSS of the running process).
#
#   benches/routes.sh [SECONDS_PER_RUN] [ROUTES]      (defaults 10, 5000)
#
# Needs: wrk (installed with apt-get when missing), python3.
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-10}
many=${2:-5000}
connections=32
rounds=3

. benches/common.sh
need wrk wrk
cargo build --release --quiet --bin scrim --example bench_upstream
upstream_port=$(free_port)
target/release/examples/bench_upstream "127.0.0.1:$upstream_port" 2>/dev/null & pids+=($!)
meta_event "$work/body.json" "$work/post.lua"

declare -A port admin pid
for setup in few many; do
  count=3; [ $setup = many ] && count=$many
  port[$setup]=$(free_port); admin[$setup]=$(free_port)
  routes_config "$work/$setup.yaml" "${port[$setup]}" "${admin[$setup]}" "$count"
  target/release/scrim run --config "$work/$setup.yaml" 2>/dev/null & pid[$setup]=$!; pids+=($!)
done
sleep 2
for setup in few many; do
  curl -sf -o /dev/null -X POST -H 'content-type: application/json' --data-binary @"$work/body.json" \
    "http://127.0.0.1:${port[$setup]}/v21.0/1/events" || { echo "$setup does not answer"; exit 1; }
done
echo "routes: 3 and $many; payload $(wc -c < "$work/body.json") bytes"

rps() { wrk -t2 -c$connections -d${duration}s $2 "http://127.0.0.1:$1$3" | awk '/Requests\/sec/ {print $2}'; }
median() { echo $1 | tr ' ' '\n' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
declare -A results
for round in $(seq 1 $rounds); do
  for setup in few many; do
    results[fwd_$setup]+="$(rps ${port[$setup]} "-s $work/post.lua" /v21.0/1/events) "
    results[nf_$setup]+="$(rps ${port[$setup]} "" /nothing/here) "
  done
done
for kind in fwd nf; do
  few=$(median "${results[${kind}_few]}"); lots=$(median "${results[${kind}_many]}")
  label="forwarded"; [ $kind = nf ] && label="unrouted (404)"
  echo "$label requests/s (median of $rounds, $connections connections): 3 routes $few, $many routes $lots"
  python3 -c "print('  $many routes / 3 routes = %.2f' % ($lots / $few))"
done

# A reload: CPU time (user + system) of the process across POST /reload,
# and its peak RSS after it.
cpu() { awk '{print $14 + $15}' /proc/$1/stat; }
for setup in few many; do
  before=$(cpu ${pid[$setup]})
  curl -sf -o /dev/null -X POST -H "authorization: Bearer $SCRIM_BENCH_ADMIN" "http://127.0.0.1:${admin[$setup]}/reload"
  after=$(cpu ${pid[$setup]})
  hwm=$(awk '/VmHWM/ {print $2}' /proc/${pid[$setup]}/status)
  ticks=$(getconf CLK_TCK)
  python3 -c "print('reload with $setup routes: %.2f s of CPU; peak RSS %d MiB' % (($after - $before) / $ticks, $hwm / 1024))"
done
