#!/usr/bin/env bash
# Two builds of the NDJSON bench (`benches/ndjson.rs`), timed in turns in
# one run: RUNS alternating runs of each executable in `TURNS=3` mode, and
# for each row the median over the runs of its time divided by the same
# run's tree program (or floor) time. On a shared machine whose speed
# swings within minutes, a change of 2% shows only this way: each row is
# compared with rows timed seconds apart in the same process, not with a
# row timed a minute before.
#
#   benches/ndjson_side_by_side.sh BASELINE_EXE NEW_EXE [RUNS]   (default 20)
#
# The executables are what `cargo bench --no-run --bench ndjson` prints
# (target/release/deps/ndjson-…): copy the baseline's aside before building
# the new one. The tree program's code is the same in both builds; the
# floor's too unless the change gives it a shortcut scrim also takes.
set -euo pipefail
baseline=$(realpath "$1"); new=$(realpath "$2"); runs=${3:-20}
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT

for run in $(seq "$runs"); do
  for build in baseline new; do
    exe=$baseline; [ $build = new ] && exe=$new
    # "scrim/hash: median 52.3 ms over 3 turns" → "new 7 scrim/hash 52.3"
    TURNS=3 "$exe" --bench 2>/dev/null \
      | awk -v build=$build -v run="$run" '/: median / {sub(":", "", $1); print build, run, $1, $3}' >> "$work/times"
  done
done

python3 - "$work/times" <<'PY'
import collections, statistics, sys
times = collections.defaultdict(dict)
for line in open(sys.argv[1]):
    build, run, row, ms = line.split()
    times[(build, run)][row] = float(ms)
runs = sorted({run for (_, run) in times})
tree, hashed, passthrough, hash_only = 'serde_tree/hash', 'scrim/hash', 'scrim/passthrough', 'floor/hash_only'
floor = lambda t: t[passthrough] + t[hash_only]
median = statistics.median
print(f"{'row':18} {'baseline ms':>11} {'new ms':>8} {'new/baseline, each run':>24} {'by tree':>8} {'by floor':>9}")
for row in (hashed, passthrough, hash_only, tree):
    base = [times[('baseline', r)] for r in runs]
    new = [times[('new', r)] for r in runs]
    raw = median(n[row] / b[row] for b, n in zip(base, new))
    by_tree = median((n[row] / n[tree]) / (b[row] / b[tree]) for b, n in zip(base, new))
    by_floor = median((n[row] / floor(n)) / (b[row] / floor(b)) for b, n in zip(base, new))
    print(f"{row:18} {median(t[row] for t in base):11.2f} {median(t[row] for t in new):8.2f} {raw:24.3f} {by_tree:8.3f} {by_floor:9.3f}")
for build in ('baseline', 'new'):
    all_runs = [times[(build, r)] for r in runs]
    print(f"{build}: tree / scrim {median(t[tree] / t[hashed] for t in all_runs):.2f}, "
          f"scrim / floor {median(t[hashed] / floor(t) for t in all_runs):.3f} "
          f"(medians of {len(runs)} runs)")
PY
