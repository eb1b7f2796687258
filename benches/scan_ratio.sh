#!/usr/bin/env bash
# What default scanning costs, as issue 12 bounds it, in wall-clock time on
# a shared machine: the rows with and without `scan:` of the rewrite bench
# run in turns, several rounds in one run, and the medians give the ratios.
#
#   benches/scan_ratio.sh [EXE] [ROUNDS]
#
# EXE is what `cargo bench --no-run --bench rewrite` prints (built when not
# given); ROUNDS defaults to 5. Prints each row's median throughput and:
#   hash_normalized_scan / hash_normalized   (bound: at least 0.75), as the
#     ratio of the medians and as the median of each round's ratio
#   prehashed passthrough_scan               (bound: at least 300 MB/s)
set -euo pipefail
cd "$(dirname "$0")/.."
exe=${1:-}
rounds=${2:-5}
if [ -z "$exe" ]; then
  exe=$(cargo bench --locked --bench rewrite --no-run --message-format=json 2>/dev/null \
    | python3 -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "rewrite":
        print(m["executable"])')
fi
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
rows='meta_capi_1mib/stream/hash_normalized|meta_capi_prehashed_1mib/stream/passthrough'
for round in $(seq 1 "$rounds"); do
  "$exe" --bench --warm-up-time 1 --measurement-time 4 --noplot "^($rows)(_scan)?\$" 2>/dev/null \
    | python3 -c '
import re, sys
scale = {"KiB/s": 2**10, "MiB/s": 2**20, "GiB/s": 2**30}
name = None
for line in sys.stdin:
    words = line.split()
    if words and not line.startswith(" ") and "time:" not in line and "thrpt:" not in line:
        name = words[0]
    m = re.search(r"thrpt:\s+\[[\d.]+ \S+ ([\d.]+) (\S+) [\d.]+ \S+\]", line)
    if m and m.group(2) in scale:
        if line.split("thrpt:")[0].strip():
            name = line.split("thrpt:")[0].strip()
        print(name, float(m.group(1)) * scale[m.group(2)] / 1e6)
' >> "$work/results"
  echo "round $round done" >&2
done
python3 - "$work/results" <<'PY'
import statistics, sys
rates = {}
for line in open(sys.argv[1]):
    name, rate = line.split()
    rates.setdefault(name, []).append(float(rate))
median = {name: statistics.median(v) for name, v in rates.items()}
for name, rate in median.items():
    print(f"{name:50} {rate:8.1f} MB/s  (median of {len(rates[name])}: {', '.join(f'{r:.0f}' for r in rates[name])})")
scan, plain = median["meta_capi_1mib/stream/hash_normalized_scan"], median["meta_capi_1mib/stream/hash_normalized"]
# A round runs the two rows seconds apart: the ratio within a round is
# less shaken by what else the machine does than the two medians are.
turns = [s / p for s, p in zip(rates["meta_capi_1mib/stream/hash_normalized_scan"], rates["meta_capi_1mib/stream/hash_normalized"])]
print(f"hash_normalized_scan / hash_normalized: {scan / plain:.3f} of the medians, "
      f"{statistics.median(turns):.3f} the median of the rounds' ratios (bound: at least 0.75)")
pre_scan, pre = median["meta_capi_prehashed_1mib/stream/passthrough_scan"], median["meta_capi_prehashed_1mib/stream/passthrough"]
print(f"prehashed passthrough_scan: {pre_scan:.0f} MB/s (bound: at least 300), {pre_scan / pre:.3f} of passthrough")
PY
