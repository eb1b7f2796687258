#!/usr/bin/env bash
# Instructions of one iteration of each criterion row, for two builds of the
# rewrite bench, counted by callgrind: deterministic where wall-clock rows
# on a shared machine swing by 10% between runs, so a refactoring can be
# shown to cost nothing (or what it costs) on the rows both builds have.
#
#   benches/row_instructions.sh BASELINE_EXE NEW_EXE [ROW...]
#
# The executables are what `cargo bench --no-run --bench rewrite` prints
# (target/release/deps/rewrite-…), built from the two commits (a `git
# worktree` of the older one). Each row runs once in criterion's test mode,
# under callgrind. Default rows: those timed with `iter` (the `chunks/`
# rows use `iter_batched`, which this does not count).
#
# Needs: valgrind (installed with apt-get when missing), python3.
set -euo pipefail
baseline=$(realpath "$1"); new=$(realpath "$2"); shift 2
cd "$(dirname "$0")/.."
. benches/common.sh
need valgrind valgrind
rows=("$@")
if [ ${#rows[@]} -eq 0 ]; then
  rows=(stream/hash stream/hash_normalized stream/passthrough_untracked stream/passthrough_tracked
        rules/1_descendant rules/200_descendant)
fi

# Instructions of the one iteration of the row that a run of EXE in test
# mode with FILTER times: counted only while criterion's `Bencher::iter`
# runs (the setup is outside it), less glibc's `malloc_consolidate`. That
# merges the heap's free chunks when the process's allocation history makes
# it due, not the row's work: on 2026-12-07 one build paid 10 million
# instructions of it inside `stream/hash`'s iteration, the other inside
# `stream/hash_normalized`'s, for the same rewriting, and the rows read
# 1.239 and 0.821. (Before, this took the largest of the entries callgrind
# split `Bencher::iter` into by source file, which counted it too.)
instructions() {
  valgrind --tool=callgrind --toggle-collect='criterion::bencher::Bencher<M>::iter' \
    --callgrind-out-file="$work/callgrind.out" "$1" "$2" >/dev/null 2>&1
  callgrind_annotate --inclusive=yes --threshold=100 "$work/callgrind.out" 2>/dev/null \
    | python3 -c '
import re, sys
total, consolidate = 0, 0
for line in sys.stdin:
    m = re.match(r"\s*([\d,]+) \(.*?\)\s+(.*)$", line)
    if not m:
        continue
    count, what = int(m.group(1).replace(",", "")), m.group(2)
    if what == "PROGRAM TOTALS":
        total = count
    elif re.search(r":malloc_consolidate( \[.*)?$", what):
        consolidate = max(consolidate, count)
print(total - consolidate)'
}

printf '%-30s %15s %15s %10s\n' row baseline new new/baseline
for row in "${rows[@]}"; do
  b=$(instructions "$baseline" "$row\$")
  n=$(instructions "$new" "$row\$")
  if [ "$b" -le 0 ] || [ "$n" -le 0 ]; then
    printf '%-30s %s\n' "$row" "not in both builds"
    continue
  fi
  python3 -c "print('%-30s %15d %15d %10.3f' % ('$row', $b, $n, $n / $b))"
done
