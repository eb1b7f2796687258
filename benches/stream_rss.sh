#!/usr/bin/env bash
# Peak memory of `scrim run` while a 1 GiB NDJSON body streams through it,
# rewritten, to an upstream that discards it. Needs curl and python3.
#
#   benches/stream_rss.sh [SIZE_MIB] [SCRIM_BINARY]
#                         (defaults: 1024, target/release/scrim)
set -euo pipefail
cd "$(dirname "$0")/.."
size_mib=${1:-1024}
scrim_binary=${2:-target/release/scrim}
. benches/common.sh

cargo build --release --quiet --bin scrim --example bench_upstream
python3 benches/make_ndjson.py "$size_mib" "$work/body.ndjson"
upstream_port=$(free_port); scrim_port=$(free_port); admin_port=$(free_port)
target/release/examples/bench_upstream "127.0.0.1:$upstream_port" 2>/dev/null & pids+=($!)
cat > "$work/scrim.yaml" <<YAML
listen: 127.0.0.1:$scrim_port
admin: {listen: 127.0.0.1:$admin_port}
keys: {pseudonym: "\${SCRIM_PSEUDONYM_KEY}"}
limits: {max_body_bytes: 4000000000}
timeouts: {response: 600s}
routes:
  - name: events
    match: {path_prefix: /}
    upstream: http://127.0.0.1:$upstream_port
    rules:
      - {select: \$.user_data.em, action: hash, normalize: email}
      - {select: \$.user_data.ph, action: hmac, normalize: phone}
      - {select: \$.user_data.client_ip_address, action: truncate_ip}
YAML
SCRIM_LOG=warn SCRIM_PSEUDONYM_KEY=benchmark-key-of-at-least-16-bytes \
  "$scrim_binary" run --config "$work/scrim.yaml" 2>/dev/null & scrim=$!; pids+=($scrim)
sleep 1
echo "body: $(du -h "$work/body.ndjson" | cut -f1)"
start=$(date +%s.%N)
curl -sS -o /dev/null -w "status %{http_code}, uploaded %{size_upload} bytes\n" \
  -H "content-type: application/x-ndjson" -H "transfer-encoding: chunked" \
  -T "$work/body.ndjson" "http://127.0.0.1:$scrim_port/events"
end=$(date +%s.%N)
echo "seconds: $(python3 -c "print(round($end - $start, 1))")"
grep -E "VmHWM" "/proc/$scrim/status"
