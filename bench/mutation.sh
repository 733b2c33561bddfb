#!/usr/bin/env bash
# Mutation testing of the decision core (controller/policies/, guardrails.py, autoscaling.py,
# observation.py, load.py) with mutmut; configuration in pyproject.toml ([tool.mutmut]): which
# files are mutated and which fast tests run per mutant.
#
#   bash bench/mutation.sh            # from the repository root, after `bash scripts/setup --dev`
#   JOBS=4 bash bench/mutation.sh     # more parallel children (default 2)
#
# Writes out/mutation/{run.log,results.txt,summary.txt}; the score and the reviewed survivors are
# recorded in bench/results/mutation.md. A fresh run each time (the mutants/ cache is removed).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p out/mutation
rm -rf mutants
start=$(date +%s)
.venv/bin/mutmut run --max-children "${JOBS:-2}" > out/mutation/run.log 2>&1 || true
end=$(date +%s)
.venv/bin/mutmut results --all true > out/mutation/results.txt 2>&1 || true
.venv/bin/python - "$((end - start))" <<'PY'
import collections, re, sys
counts = collections.Counter()
for line in open("out/mutation/results.txt"):
    m = re.match(r"\s*(\S+): (\w[\w ]*)$", line.rstrip())
    if m:
        counts[m.group(2)] += 1
killed = counts["killed"]
total = sum(counts.values())
covered = total - counts["no tests"]
lines = [f"mutants: {total} ({', '.join(f'{k} {v}' for k, v in sorted(counts.items()))})",
         f"killed: {killed} of {total} ({100 * killed / max(total, 1):.1f}%); of those with a test: {100 * killed / max(covered, 1):.1f}%",
         f"wall time: {sys.argv[1]} s"]
open("out/mutation/summary.txt", "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
PY
