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
need() { command -v "$1" >/dev/null || { echo "installing $2"; apt-get install -y "$2" >/dev/null || sudo apt-get install -y "$2" >/dev/null; }; }
need valgrind valgrind
need wrk wrk

cargo build --release --quiet --bin scrim --example bench_upstream
scrim=${1:-target/release/scrim}
work=$(mktemp -d)
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
upstream_port=$(free_port); scrim_port=$(free_port); admin_port=$(free_port)

target/release/examples/bench_upstream "127.0.0.1:$upstream_port" 2>/dev/null & pids+=($!)
cat > "$work/scrim.yaml" <<YAML
listen: 127.0.0.1:$scrim_port
admin: {listen: 127.0.0.1:$admin_port}
routes:
  - name: meta
    match: {path_prefix: /}
    upstream: http://127.0.0.1:$upstream_port
    rules:
      - {select: "\$.data[*].user_data.em", action: hash, normalize: email}
      - {select: "\$.data[*].user_data.ph", action: hash, normalize: phone, default_region: US, phone_format: digits}
      - {select: "\$.data[*].user_data.fn", action: hash, normalize: name}
      - {select: "\$.data[*].user_data.ln", action: hash, normalize: name}
      - {select: "\$.data[*].user_data.zp", action: hash, normalize: zip}
      - {select: "\$.data[*].user_data.external_id", action: hash, normalize: external_id}
YAML
python3 - "$work/body.json" <<'PY'
import json, sys
event = {"event_name": "Purchase", "event_time": 1764400000, "action_source": "website",
         "event_source_url": "https://bakery.example/checkout?step=3",
         "user_data": {"em": "Customer.42@Example.com", "ph": "(650) 555-1212", "fn": "Zoë", "ln": "O'Brien",
                       "zp": "94025-1234", "external_id": "cust-00042",
                       "client_ip_address": "203.0.113.77", "client_user_agent": "Mozilla/5.0 (X11; Linux x86_64)"},
         "custom_data": {"currency": "usd", "value": 12.5, "contents": []}}
body = {"data": [event]}
while len(json.dumps(body)) < 1000:
    event["custom_data"]["contents"].append({"id": "sku-%05d" % len(event["custom_data"]["contents"]), "quantity": 1})
open(sys.argv[1], "w").write(json.dumps(body))
PY
cat > "$work/post.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = io.open("$work/body.json", "r"); wrk.body = f:read("*a"); f:close()
LUA

valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$work/callgrind.out.%p" \
  "$scrim" run --config "$work/scrim.yaml" 2>/dev/null & pids+=($!)
for _ in $(seq 1 50); do curl -sf -o /dev/null "http://127.0.0.1:$admin_port/healthz" && break; sleep 0.2; done
wrk -t1 -c8 -d2s -s "$work/post.lua" "http://127.0.0.1:$scrim_port/v21.0/1/events" >/dev/null   # warm up
callgrind_control -i on >/dev/null 2>&1
out=$(wrk -t1 -c8 -d4s -s "$work/post.lua" "http://127.0.0.1:$scrim_port/v21.0/1/events")
callgrind_control -i off >/dev/null 2>&1
callgrind_control -d >/dev/null 2>&1
sleep 1
requests=$(echo "$out" | awk '/requests in/ {print $1}')
instructions=$(grep -h '^totals:' "$work"/callgrind.out.* | awk '{s+=$2} END {print s}')
python3 -c "print('%d requests, %.0f instructions per request' % ($requests, $instructions / $requests))"
