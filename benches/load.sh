#!/usr/bin/env bash
# Load bench: the same upstream reached directly, through nginx proxy_pass
# (which rewrites nothing), and through scrim (which hashes 6 fields of a
# 1 KiB event), in one run. Peak requests per second with wrk, then latency
# at half of scrim's peak (wrk paced with a Lua delay). Medians of 3 rounds
# (ROUNDS=5 for more).
# Without ROUTES or BASELINE, also a GA4 row: a gtag.js hit (GET with 30
# parameters, through `preset: ga4_web`) in the same rounds, against the
# Meta event's; and the token vault's rows: the same Meta event with its 6
# fields through `hmac` on one route and `tokenize` (embedded store, values
# in the cache after the first request) on another, in the same rounds.
# (benches/vault_load.sh adds a new token per request.) And the same event
# through a route with no rules: scrim's HTTP path alone, against nginx's.
# And the forward proxy's row: the same Meta event through CONNECT and TLS
# (an app with HTTPS_PROXY), on kept-alive connections, against the reverse
# proxy's path measured by the same client (examples/connect_load.rs; wrk
# speaks no proxy protocol), in the same rounds.
#
#   benches/load.sh [SECONDS_PER_RUN]      (default 10)
#   ROUNDS=5 benches/load.sh               (medians of 5 rounds, not 3)
#   ROUTES=5000 benches/load.sh            (scrim with that many routes, the
#                                           benched one among them)
#   BASELINE=/path/to/scrim benches/load.sh
#                                          (another build of scrim, e.g. an
#                                           earlier commit's, measured in the
#                                           same rounds with the same config)
#
# Needs: wrk and nginx (installed with apt-get when missing), python3.
set -euo pipefail
if [ -n "${BASELINE:-}" ]; then BASELINE=$(realpath "$BASELINE"); fi
cd "$(dirname "$0")/.."
duration=${1:-10}
connections=32
rounds=${ROUNDS:-3}

. benches/common.sh
need wrk wrk
need nginx nginx-light
cargo build --release --quiet --bin scrim --example bench_upstream --example connect_load
upstream_port=$(free_port); nginx_port=$(free_port); scrim_port=$(free_port); admin_port=$(free_port)
baseline_port=$(free_port); baseline_admin_port=$(free_port)

target/release/examples/bench_upstream "127.0.0.1:$upstream_port" 2>/dev/null & pids+=($!)

start_nginx "$nginx_port" "$upstream_port"

if [ "${ROUTES:-1}" -gt 1 ]; then
  routes_config "$work/scrim.yaml" "$scrim_port" "$admin_port" "$ROUTES"
else
  meta_config "$work/scrim.yaml" "$scrim_port" "$admin_port" "$upstream_port"
  # A build from before ga4_web would refuse the route.
  if [ -z "${BASELINE:-}" ]; then
    ga4_route "$work/scrim.yaml" "$upstream_port"; ga4=1
    vault_routes "$work/scrim.yaml" "$upstream_port" "$work/vault.redb"; vault=1
    plain_route "$work/scrim.yaml" "$upstream_port"; plain=1
    # The meta route claims its upstream's host: a CONNECT to it is
    # intercepted and rewritten by that route.
    forward_port=$(free_port)
    target/release/scrim ca init --out "$work/ca" > /dev/null
    cat >> "$work/scrim.yaml" <<YAML
forward_proxy:
  listen: 127.0.0.1:$forward_port
  ca: {cert: $work/ca/scrim-ca.pem, key: $work/ca/scrim-ca-key.pem}
  ports: [$upstream_port]
YAML
    forward=1
  fi
fi
export SCRIM_BENCH_KEY=a-bench-key-of-at-least-32-bytes!
target/release/scrim run --config "$work/scrim.yaml" 2>/dev/null & pids+=($!)
names="direct nginx scrim"
if [ -n "${BASELINE:-}" ]; then
  sed -e "s/127\.0\.0\.1:$scrim_port\b/127.0.0.1:$baseline_port/" -e "s/127\.0\.0\.1:$admin_port\b/127.0.0.1:$baseline_admin_port/" \
    "$work/scrim.yaml" > "$work/baseline.yaml"
  "$BASELINE" run --config "$work/baseline.yaml" 2>"$work/baseline.log" & pids+=($!)
  names="$names baseline"
fi

meta_event "$work/body.json" "$work/post.lua"
ga4_hit "$work/ga4.lua"
echo "payload: $(wc -c < "$work/body.json") bytes"

sleep 1
port_of() { case $1 in direct) echo $upstream_port;; nginx) echo $nginx_port;; scrim) echo $scrim_port;; baseline) echo $baseline_port;; esac; }
for name in $names; do
  port=$(port_of $name)
  curl -sf -o /dev/null -X POST -H 'content-type: application/json' --data-binary @"$work/body.json" "http://127.0.0.1:$port/v21.0/1/events" \
    || { echo "$name (port $port) does not answer"; [ "$name" = baseline ] && cat "$work/baseline.log"; exit 1; }
done

rps() { wrk -t2 -c$connections -d${duration}s -s "$work/post.lua" "http://127.0.0.1:$1/v21.0/1/events" | awk '/Requests\/sec/ {print $2}'; }
ga4_rps() { wrk -t2 -c$connections -d${duration}s -s "$work/ga4.lua" "http://127.0.0.1:$1" | awk '/Requests\/sec/ {print $2}'; }
if [ -n "${ga4:-}" ]; then
  curl -sf -o /dev/null "http://127.0.0.1:$scrim_port/g/collect?v=2&cid=1.2" || { echo "the ga4 route does not answer"; exit 1; }
fi
vault_rps() { wrk -t2 -c$connections -d${duration}s -s "$work/post.lua" "http://127.0.0.1:$scrim_port/$1/v21.0/1/events" | awk '/Requests\/sec/ {print $2}'; }
if [ -n "${vault:-}" ]; then
  for route in hmac tokenize ${plain:+plain}; do
    curl -sf -o /dev/null -X POST -H 'content-type: application/json' --data-binary @"$work/body.json" "http://127.0.0.1:$scrim_port/$route/v21.0/1/events" \
      || { echo "the $route route does not answer"; exit 1; }
  done
fi
connect_rps() {
  local tunnel=()
  if [ "$1" = forward ]; then tunnel=(--connect "127.0.0.1:$upstream_port" --ca "$work/ca/scrim-ca.pem"); fi
  local address=127.0.0.1:$scrim_port
  if [ "$1" = forward ]; then address=127.0.0.1:$forward_port; fi
  target/release/examples/connect_load "$address" "$duration" $connections "$work/body.json" /v21.0/1/events "${tunnel[@]}"
}
if [ -n "${forward:-}" ]; then
  connect_load_check=$(target/release/examples/connect_load "127.0.0.1:$forward_port" 1 1 "$work/body.json" /v21.0/1/events --connect "127.0.0.1:$upstream_port" --ca "$work/ca/scrim-ca.pem") \
    || { echo "the forward proxy does not answer"; exit 1; }
fi
median() { echo $1 | tr ' ' '\n' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

declare -A results
for round in $(seq 1 $rounds); do
  # The builds take turns going first, so that neither always runs on a
  # machine the other has just warmed.
  order=$names
  if [ $((round % 2)) -eq 0 ] && [ -n "${BASELINE:-}" ]; then order="direct nginx baseline scrim"; fi
  for name in $order; do
    results[$name]+="$(rps $(port_of $name)) "
  done
  if [ -n "${plain:-}" ]; then results[plain]+="$(vault_rps plain) "; fi
  if [ -n "${ga4:-}" ]; then
    results[ga4_nginx]+="$(ga4_rps $nginx_port) "
    results[ga4_scrim]+="$(ga4_rps $scrim_port) "
  fi
  if [ -n "${vault:-}" ]; then
    vault_order="hmac tokenize"
    if [ $((round % 2)) -eq 0 ]; then vault_order="tokenize hmac"; fi
    for route in $vault_order; do results[$route]+="$(vault_rps $route) "; done
  fi
  if [ -n "${forward:-}" ]; then
    forward_order="reverse forward"
    if [ $((round % 2)) -eq 0 ]; then forward_order="forward reverse"; fi
    for path in $forward_order; do results[connect_$path]+="$(connect_rps $path) "; done
  fi
done
direct=$(median "${results[direct]}")
nginx_rps=$(median "${results[nginx]}")
scrim_rps=$(median "${results[scrim]}")
echo "peak requests/s (median of $rounds, $connections connections): direct $direct, nginx $nginx_rps, scrim $scrim_rps"
python3 -c "print('scrim / nginx = %.2f' % ($scrim_rps / $nginx_rps))"
if [ -n "${plain:-}" ]; then
  plain_rps=$(median "${results[plain]}")
  echo "the same event through a route with no rules (scrim's HTTP path alone), same rounds: $plain_rps requests/s; rounds: ${results[plain]}"
  python3 -c "print('scrim without rules / nginx = %.2f; scrim / scrim without rules = %.3f' % ($plain_rps / $nginx_rps, $scrim_rps / $plain_rps))"
fi
if [ -n "${ga4:-}" ]; then
  ga4_nginx=$(median "${results[ga4_nginx]}"); ga4_scrim=$(median "${results[ga4_scrim]}")
  echo "GA4 hit (GET, 30 parameters, preset ga4_web), same rounds: nginx $ga4_nginx, scrim $ga4_scrim requests/s; rounds: scrim ${results[ga4_scrim]}"
  python3 -c "print('scrim GA4 hit / scrim Meta event = %.3f; scrim / nginx on the GA4 hit = %.2f' % ($ga4_scrim / $scrim_rps, $ga4_scrim / $ga4_nginx))"
fi
if [ -n "${vault:-}" ]; then
  hmac_rps=$(median "${results[hmac]}"); tokenize_rps=$(median "${results[tokenize]}")
  echo "vault rows, same rounds (6 fields): hmac $hmac_rps, tokenize (cached) $tokenize_rps requests/s; rounds: hmac ${results[hmac]}, tokenize ${results[tokenize]}"
  python3 -c "print('tokenize (cached) / hmac = %.3f' % ($tokenize_rps / $hmac_rps))"
fi
if [ -n "${forward:-}" ]; then
  reverse_rps=$(median "${results[connect_reverse]}"); forward_rps=$(median "${results[connect_forward]}")
  echo "forward proxy row, same rounds, one client (connect_load, $connections kept-alive connections): reverse proxy (plain HTTP) $reverse_rps, forward proxy (CONNECT + TLS) $forward_rps requests/s; rounds: reverse ${results[connect_reverse]}, forward ${results[connect_forward]}"
  python3 -c "print('forward (CONNECT + TLS) / reverse = %.3f' % ($forward_rps / $reverse_rps))"
fi
if [ -n "${BASELINE:-}" ]; then
  baseline_rps=$(median "${results[baseline]}")
  echo "baseline ($BASELINE): $baseline_rps requests/s; rounds: scrim ${results[scrim]}, baseline ${results[baseline]}"
  python3 -c "print('scrim / baseline = %.3f' % ($scrim_rps / $baseline_rps))"
fi

# Latency at half of scrim's peak: each connection waits PACE_MS between
# requests, so that all together send about half the peak rate.
pace=$(python3 -c "print(max(1, int($connections / ($scrim_rps / 2) * 1000)))")
p99() { PACE_MS=$pace wrk -t2 -c$connections -d${duration}s --latency -s "$work/post.lua" "http://127.0.0.1:$1/v21.0/1/events" > "$work/paced.txt"
  echo "  paced run on port $1: $(awk '/Requests\/sec/ {print $2}' "$work/paced.txt") requests/s" >&2
  awk '/^ +99%/ {v=$2; if (v ~ /us$/) {sub(/us/,"",v); v=v/1000} else if (v ~ /ms$/) {sub(/ms/,"",v)} else if (v ~ /s$/) {sub(/s/,"",v); v=v*1000} print v}' "$work/paced.txt"; }
for round in $(seq 1 $rounds); do
  results[lat_direct]+="$(p99 $upstream_port) "
  results[lat_scrim]+="$(p99 $scrim_port) "
  results[lat_nginx]+="$(p99 $nginx_port) "
  if [ -n "${BASELINE:-}" ]; then results[lat_baseline]+="$(p99 $baseline_port) "; fi
done
lat_direct=$(median "${results[lat_direct]}")
lat_nginx=$(median "${results[lat_nginx]}")
lat_scrim=$(median "${results[lat_scrim]}")
echo "p99 latency at about half of scrim's peak (pace ${pace} ms per connection): direct ${lat_direct} ms, nginx ${lat_nginx} ms, scrim ${lat_scrim} ms"
python3 -c "print('scrim adds %.3f ms at p99 over direct' % ($lat_scrim - $lat_direct))"
if [ -n "${BASELINE:-}" ]; then
  echo "baseline p99 at the same pace: $(median "${results[lat_baseline]}") ms"
fi
