#!/usr/bin/env bash
# Peak memory of `scrim rewrite` on a 1 GiB NDJSON body: memory must not grow
# with body size. Needs GNU time (`apt-get install time`) and python3.
#
#   benches/ndjson_rss.sh [SIZE_MIB]     (default 1024)
set -euo pipefail
cd "$(dirname "$0")/.."
size_mib=${1:-1024}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

python3 benches/make_ndjson.py "$size_mib" "$work/body.ndjson"

cat > "$work/scrim.yaml" <<'YAML'
keys:
  pseudonym: ${SCRIM_PSEUDONYM_KEY}
routes:
  - name: events
    match: {path_prefix: /events}
    upstream: https://example.com
    rules:
      - {select: $.user_data.em, action: hash, normalize: email}
      - {select: $.user_data.ph, action: hmac, normalize: phone}
      - {select: $.user_data.fn, action: hash, normalize: name}
      - {select: $.user_data.ln, action: hash, normalize: name}
      - {select: $.user_data.client_ip_address, action: truncate_ip}
YAML

cargo build --release --quiet
echo "body: $(du -h "$work/body.ndjson" | cut -f1)"
SCRIM_PSEUDONYM_KEY=benchmark-key-of-at-least-16-bytes \
  /usr/bin/time -v target/release/scrim rewrite --config "$work/scrim.yaml" --route events \
  --content-type application/x-ndjson "$work/body.ndjson" 2> "$work/time.txt" > /dev/null
grep -E "Maximum resident set size|Elapsed \(wall clock\)|Exit status" "$work/time.txt"
