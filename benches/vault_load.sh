#!/usr/bin/env bash
# Load bench of the token vault, through the running proxy, in one run:
# the Meta event of load.sh with its 6 user_data fields pseudonymized by
# `hmac` on one route and by `tokenize` (embedded store) on another, the
# same values each time (after the first request, every token comes from
# the vault's cache); then `tokenize` with a new address in every request
# (a token made and committed durably per request, 32 requests in flight,
# group commit). Peak requests per second with wrk, medians of 3 rounds,
# the routes taking turns.
#
#   benches/vault_load.sh [SECONDS_PER_RUN]      (default 10)
#
# Needs: wrk (installed with apt-get when missing), python3.
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-10}
connections=32
rounds=3

. benches/common.sh
need wrk wrk
cargo build --release --quiet --bin scrim --example bench_upstream
upstream_port=$(free_port); scrim_port=$(free_port); admin_port=$(free_port)
target/release/examples/bench_upstream "127.0.0.1:$upstream_port" 2>/dev/null & pids+=($!)

fields='em:email ph:phone fn:name ln:name zp:zip external_id:external_id'
rules() {
  for field in $fields; do
    name=${field%%:*}; normalizer=${field##*:}
    extra=""; [ "$normalizer" = phone ] && extra=", default_region: US"
    echo "      - {select: \"\$.data[*].user_data.$name\", action: $1, normalize: $normalizer$extra}"
  done
}
cat > "$work/scrim.yaml" <<YAML
listen: 127.0.0.1:$scrim_port
admin: {listen: 127.0.0.1:$admin_port}
keys:
  pseudonym: \${SCRIM_BENCH_KEY}
  vault: \${SCRIM_BENCH_KEY}
vault:
  path: $work/vault.redb
routes:
  - name: hmac
    match: {path_prefix: /hmac}
    strip_prefix: true
    upstream: http://127.0.0.1:$upstream_port
    rules:
$(rules hmac)
  - name: tokenize
    match: {path_prefix: /tokenize}
    strip_prefix: true
    upstream: http://127.0.0.1:$upstream_port
    rules:
$(rules tokenize)
YAML
export SCRIM_BENCH_KEY=a-bench-key-of-at-least-32-bytes!
target/release/scrim run --config "$work/scrim.yaml" 2>"$work/scrim.log" & pids+=($!)

meta_event "$work/body.json" "$work/post.lua"
# Each request a new address: the event with `em` made unique per request.
cat > "$work/new.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = io.open("$work/body.json", "r"); local body = f:read("*a"); f:close()
local counter = 0
local thread_id = 0
function setup(thread) thread:set("id", thread_id); thread_id = thread_id + 1 end
function init(args) prefix = "t" .. id .. "-" .. tostring(math.random(1, 1e9)) end
function request()
  counter = counter + 1
  local unique = string.gsub(body, "Customer%.42@Example%.com", "c" .. prefix .. "-" .. counter .. "@example.com")
  return wrk.format(nil, nil, nil, unique)
end
LUA
sleep 1
for route in hmac tokenize; do
  curl -sf -o /dev/null -X POST -H 'content-type: application/json' --data-binary @"$work/body.json" "http://127.0.0.1:$scrim_port/$route/v21.0/1/events" \
    || { echo "route $route does not answer"; cat "$work/scrim.log"; exit 1; }
done

rps() { wrk -t2 -c$connections -d${duration}s -s "$2" "http://127.0.0.1:$scrim_port/$1/v21.0/1/events" | awk '/Requests\/sec/ {print $2}'; }
median() { echo $1 | tr ' ' '\n' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
declare -A results
for round in $(seq 1 $rounds); do
  order="hmac tokenize"
  if [ $((round % 2)) -eq 0 ]; then order="tokenize hmac"; fi
  for route in $order; do
    results[$route]+="$(rps $route "$work/post.lua") "
  done
  results[new]+="$(rps tokenize "$work/new.lua") "
done
hmac=$(median "${results[hmac]}"); tokenize=$(median "${results[tokenize]}"); new=$(median "${results[new]}")
echo "peak requests/s (median of $rounds, $connections connections, 6 fields per event):"
echo "  hmac $hmac (rounds ${results[hmac]})"
echo "  tokenize, values in the cache $tokenize (rounds ${results[tokenize]})"
echo "  tokenize, a new address every request $new (rounds ${results[new]})"
python3 -c "print('tokenize (cached) / hmac = %.3f; a new token per request: %.0f tokens/s' % ($tokenize / $hmac, $new))"
issued=$(curl -sf "http://127.0.0.1:$admin_port/metrics" | awk '/^scrim_vault_tokens_issued_total/ {print $2}')
echo "tokens issued in all: $issued"
