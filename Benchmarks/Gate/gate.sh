#!/usr/bin/env bash
# The CI gate on an exact count: heap allocations per iteration of the core pipeline benchmark
# (Benchmarks/Pipeline: decode → window → decide → RED → store kept, 1 800 spans). The count does not
# depend on the machine's speed or load, so it is checked on every CI run against the committed
# Benchmarks/Gate/baseline.json: a regression like the block summaries' (97 → 1 210 allocations per
# iteration) fails the day it is made. Time is measured elsewhere (Benchmarks/e2e), never gated.
#
#   Benchmarks/Gate/gate.sh            # check
#   UPDATE=1 Benchmarks/Gate/gate.sh   # after an intended change: write the measured figure as the baseline
set -euo pipefail
cd "$(dirname "$0")/../.."
measured=$(mktemp -d)
trap 'rm -rf "$measured"' EXIT
# The benchmark package's own threshold writer records the run's p90 per metric as JSON.
TAILGATE_BENCHMARKS=1 swift package --scratch-path .build-bench --allow-writing-to-package-directory \
    --allow-writing-to-directory "$measured" benchmark thresholds update --target PipelineBenchmark --path "$measured" --no-progress \
    >"$measured/log" 2>&1 || { cat "$measured/log"; echo "gate: the pipeline benchmark did not run"; exit 1; }
python3 - "$measured" Benchmarks/Gate/baseline.json "${UPDATE:-}" <<'PY'
import glob, json, sys
measured_dir, baseline_path, update = sys.argv[1:4]
files = glob.glob(f"{measured_dir}/PipelineBenchmark.*.p90.json")
if len(files) != 1:
    sys.exit(f"gate: expected one PipelineBenchmark result, found {files}")
value = json.load(open(files[0]))["mallocCountTotal"]
gate = json.load(open(baseline_path))
if update:
    gate["baseline"] = value
    json.dump(gate, open(baseline_path, "w"), indent=2)
    open(baseline_path, "a").write("\n")
    print(f"gate: baseline set to {value} allocations per iteration")
    sys.exit(0)
limit = gate["baseline"] * (1 + gate["tolerance_percent"] / 100)
verdict = "ok" if value <= limit else "REGRESSION"
print(f"gate: {value} allocations per iteration ({value / 1800:.3f} per span); baseline {gate['baseline']}, "
      f"limit {limit:.0f} (+{gate['tolerance_percent']}%): {verdict}")
if value > limit:
    sys.exit("gate: the core pipeline allocates more than its committed baseline. Find the new allocation with\n"
             "  TAILGATE_BENCHMARKS=1 swift package --scratch-path .build-bench benchmark --target PipelineBenchmark --allocation-stacks\n"
             "and remove it, or, if it is intended, run UPDATE=1 Benchmarks/Gate/gate.sh and say why in the commit.")
if value < gate["baseline"] * 0.9:
    print("gate: well under the baseline: lower it with UPDATE=1 Benchmarks/Gate/gate.sh so the next regression shows")
PY
