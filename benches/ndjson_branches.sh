#!/usr/bin/env bash
# Instructions and mispredicted branches per event of rows of
# benches/ndjson.rs, for one or more builds of it, counted by callgrind
# with its branch simulation: deterministic where the timed rows swing by
# 20% on a shared machine, and the branches are what a per-token state
# machine loses most of its time to (a misprediction costs about what 15
# to 20 instructions do).
#
#   benches/ndjson_branches.sh ROW EXE...
#
# ROW is a row's name (scrim/hash, scrim/passthrough, serde_tree/hash,
# floor/hash_only); each EXE is what `cargo bench --no-run --bench ndjson`
# prints (target/release/deps/ndjson-…), e.g. a copy of it from an older
# commit. EVENTS (default 2000) and ROUNDS (default 5) set the work; only
# the rewriter's own calls are counted (`--toggle-collect`), so the rows
# of the rewriter and nothing of the input's generation.
#
# Needs: valgrind (installed with apt-get when missing), python3.
set -euo pipefail
row=$1; shift
cd "$(dirname "$0")/.."
. benches/common.sh
need valgrind valgrind
events=${EVENTS:-2000}; rounds=${ROUNDS:-5}
for exe in "$@"; do
  EVENTS=$events ROUNDS=$rounds PROFILE=$row valgrind --tool=callgrind --branch-sim=yes \
    --callgrind-out-file="$work/callgrind.out" --toggle-collect='scrim::rewrite::body::Inner*' \
    "$exe" --bench >/dev/null 2>&1
  python3 - "$work/callgrind.out" $((events * rounds)) "$row $(basename "$exe")" <<'PY'
import sys
path, n, label = sys.argv[1], int(sys.argv[2]), sys.argv[3]
names = totals = None
for line in open(path):
    if line.startswith("events:"):
        names = line.split()[1:]
    elif line.startswith(("summary:", "totals:")) and totals is None:
        totals = [int(v) for v in line.split()[1:]]
d = dict(zip(names, totals))
missed = d.get("Bcm", 0) + d.get("Bim", 0)
print(f"{label}: {d['Ir'] // n} instructions, {missed / n:.1f} mispredicted branches "
      f"({d.get('Bcm', 0) / n:.1f} conditional, {d.get('Bim', 0) / n:.1f} indirect) an event")
PY
done
