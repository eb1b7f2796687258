#!/usr/bin/env bash
# Two builds of a criterion bench, measured in turns in one run: each round
# runs the baseline's bench executable, then this one's (the order swapped
# every other round), and the median of the rounds' point estimates is
# compared per bench.
#
#   benches/side_by_side.sh BASELINE_EXE NEW_EXE [FILTER] [ROUNDS]
#
# The executables are what `cargo bench --no-run --bench rewrite` prints
# (target/release/deps/rewrite-…), built from the two commits (a `git
# worktree` of the older one, with its own target directory).
set -euo pipefail
baseline=$(realpath "$1"); new=$(realpath "$2"); filter=${3:-stream/}; rounds=${4:-3}
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT

# Prints "ID NANOSECONDS" for each bench of one run.
run() {
  "$1" --bench --warm-up-time 2 --measurement-time 5 --noplot "$filter" 2>/dev/null \
    | python3 -c '
import re, sys
unit = {"ns": 1, "µs": 1e3, "us": 1e3, "ms": 1e6, "s": 1e9}
name = None
for line in sys.stdin:
    words = line.split()
    if words and not line.startswith(" ") and "time:" not in line:
        name = words[0]
    m = re.search(r"time:\s+\[[\d.]+ \S+ ([\d.]+) (\S+) [\d.]+ \S+\]", line)
    if m:
        if line.split("time:")[0].strip():
            name = line.split("time:")[0].strip()
        print(name, float(m.group(1)) * unit[m.group(2)])
'
}

for round in $(seq 1 "$rounds"); do
  if [ $((round % 2)) -eq 1 ]; then order="baseline new"; else order="new baseline"; fi
  for which in $order; do
    exe=$baseline; [ "$which" = new ] && exe=$new
    run "$exe" | sed "s/^/$which /" >> "$work/results"
    echo "round $round: $which done" >&2
  done
done

python3 - "$work/results" "$rounds" <<'PY'
import statistics, sys
results = {}
for line in open(sys.argv[1]):
    which, name, ns = line.split()
    results.setdefault(name, {}).setdefault(which, []).append(float(ns))
print(f"{'bench':45} {'baseline':>12} {'new':>12} {'new/baseline':>12}   (median of {sys.argv[2]} rounds, time per iteration)")
for name, runs in results.items():
    if "baseline" not in runs or "new" not in runs:
        print(f"{name:45} only in {'new' if 'new' in runs else 'baseline'}")
        continue
    b, n = statistics.median(runs["baseline"]), statistics.median(runs["new"])
    print(f"{name:45} {b/1e6:10.3f}ms {n/1e6:10.3f}ms {n/b:12.3f}")
PY
