#!/usr/bin/env bash
# CPU time per request, user and system apart, of the proxy and of the
# upstream behind it: nginx `proxy_pass` (which rewrites nothing), scrim on
# the Meta event of load.sh (6 fields hashed), and scrim on a route with no
# rules (its HTTP path alone). Read from /proc/PID/stat before and after each
# wrk run, divided by the requests wrk made. On a machine that wrk, the
# upstream and the proxy share, requests per second follow the CPU each
# request costs them all; this says whose it is.
#
#   benches/cpu_per_request.sh [SECONDS_PER_RUN]    (default 5)
#   ROUNDS=9 benches/cpu_per_request.sh             (medians of 9, not 6)
#   BASELINE=/path/to/scrim ROUNDS=8 benches/cpu_per_request.sh
#                                   (another build, on the Meta event, in
#                                    the same rounds; 4 rows, so 8 rounds
#                                    give each the first turn twice)
#
# Needs: wrk and nginx (installed with apt-get when missing), python3.
set -euo pipefail
if [ -n "${BASELINE:-}" ]; then BASELINE=$(realpath "$BASELINE"); fi
cd "$(dirname "$0")/.."
duration=${1:-5}
rounds=${ROUNDS:-6}

. benches/common.sh
need wrk wrk
need nginx nginx-light
cargo build --release --quiet --bin scrim --example bench_upstream
upstream_port=$(free_port)
target/release/examples/bench_upstream "127.0.0.1:$upstream_port" 2>/dev/null & upstream_pid=$!; pids+=($upstream_pid)

nginx_port=$(free_port)
start_nginx "$nginx_port" "$upstream_port"

export SCRIM_BENCH_KEY=a-bench-key-of-at-least-32-bytes!
declare -A port pid_of path
start_scrim() { # NAME BINARY [plain: with plain_route's route too]
  port[$1]=$(free_port); path[$1]=/v21.0/1/events
  meta_config "$work/$1.yaml" "${port[$1]}" "$(free_port)" "$upstream_port"
  if [ "${3:-}" = plain ]; then plain_route "$work/$1.yaml" "$upstream_port"; fi
  "$2" run --config "$work/$1.yaml" 2>/dev/null & pid_of[$1]=$!; pids+=(${pid_of[$1]})
}
start_scrim scrim target/release/scrim plain
# The route with no rules is the same process's, timed in a run of its own.
port[no_rules]=${port[scrim]}; pid_of[no_rules]=${pid_of[scrim]}; path[no_rules]=/plain/v21.0/1/events
names="nginx scrim no_rules"
if [ -n "${BASELINE:-}" ]; then start_scrim baseline "$BASELINE"; names="$names baseline"; fi
port[nginx]=$nginx_port; path[nginx]=/v21.0/1/events

meta_event "$work/body.json" "$work/post.lua"
sleep 1
for name in $names; do
  curl -sf -o /dev/null -X POST -H 'content-type: application/json' --data-binary @"$work/body.json" \
    "http://127.0.0.1:${port[$name]}${path[$name]}" || { echo "$name does not answer"; exit 1; }
done
pid_of[nginx]=$(pgrep -P "$nginx_pid" | tr '\n' ' ')

# Clock ticks, user and system, of every process given (fields 14 and 15
# of its stat, counted after the command name, which may hold spaces).
ticks() {
  local user=0 system=0 stat fields
  for p in "$@"; do
    stat=$(< "/proc/$p/stat"); read -ra fields <<< "${stat##*) }"
    user=$((user + fields[11])); system=$((system + fields[12]))
  done
  echo "$user $system"
}
hz=$(getconf CLK_TCK)
declare -A results
for round in $(seq 1 "$rounds"); do
  # The row that goes first rotates (with as many rounds as rows, or a
  # multiple, each goes first as often): a drift of the machine's speed
  # within the run falls on every row alike.
  order=$(echo $names | tr ' ' '\n' | awk -v r="$round" -v n="$(echo $names | wc -w)" '{a[NR]=$0} END {for (i = 0; i < n; i++) print a[(i + r - 1) % n + 1]}')
  for name in $order; do
    read -r proxy_user0 proxy_system0 < <(ticks ${pid_of[$name]})
    read -r up_user0 up_system0 < <(ticks "$upstream_pid")
    out=$(wrk -t2 -c32 -d"${duration}s" -s "$work/post.lua" "http://127.0.0.1:${port[$name]}${path[$name]}")
    read -r proxy_user1 proxy_system1 < <(ticks ${pid_of[$name]})
    read -r up_user1 up_system1 < <(ticks "$upstream_pid")
    requests=$(echo "$out" | awk '/requests in/ {print $1}')
    rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
    row=$(python3 -c "
r = $requests / 1e6 * $hz
print('$rps,%.2f,%.2f,%.2f,%.2f' % (($proxy_user1 - $proxy_user0) / r, ($proxy_system1 - $proxy_system0) / r,
                                    ($up_user1 - $up_user0) / r, ($up_system1 - $up_system0) / r))")
    results[$name]+="$row "
  done
done

python3 - "$rounds" "$duration" <<PY
import statistics, sys
rows = {name: [list(map(float, run.split(","))) for run in runs.split()] for name, runs in [
$(for name in $names; do echo "    (\"$name\", \"${results[$name]}\"),"; done)
]}
print(f"medians of {sys.argv[1]} rounds of {sys.argv[2]} s, 32 connections; CPU in µs per request")
print(f"{'':10} {'requests/s':>11} {'proxy user':>11} {'proxy sys':>10} {'upstream user':>14} {'upstream sys':>13}")
medians = {name: [statistics.median(run[i] for run in runs) for i in range(5)] for name, runs in rows.items()}
for name, m in medians.items():
    print(f"{name:10} {m[0]:11.0f} {m[1]:11.2f} {m[2]:10.2f} {m[3]:14.2f} {m[4]:13.2f}")
n = medians["nginx"]
for name in rows:
    if name != "nginx":
        m = medians[name]
        print(f"{name} / nginx: requests/s {m[0] / n[0]:.2f}, proxy CPU {(m[1] + m[2]) / (n[1] + n[2]):.2f}x")
if "baseline" in medians:
    s, b = medians["scrim"], medians["baseline"]
    print(f"scrim / baseline: requests/s {s[0] / b[0]:.3f}, proxy CPU {(s[1] + s[2]) / (b[1] + b[2]):.3f}")
PY
