#!/usr/bin/env bash
# End-to-end throughput: tailgate against a bare librdkafka consumer, on the same preloaded topic of
# the same dev broker (librdkafka's mock cluster), alternately, RUNS times each.
#
#   Benchmarks/e2e/run.sh                      # 150 000 DogBook traces (~1.9 M spans), 48 partitions, 3 runs
#   TRACES=200000 RUNS=5 Benchmarks/e2e/run.sh
#   TRACES_PER_MESSAGE=30 Benchmarks/e2e/run.sh   # the other shape: unkeyed messages of 30 traces each
#   BASE=/path/to/previous/tailgate Benchmarks/e2e/run.sh   # A/B: the previous build too, alternated in the same run
#
# Shapes: TRACES_PER_MESSAGE=1 (default) is the collector's kafka exporter with partition_traces_by_id
# (one trace per message, keyed by hex trace id); above 1, an exporter without it (many traces per
# message, unkeyed: ~30 × fewer, larger messages).
#
# The mock cluster keeps about 30 MB per partition (older messages are dropped), hence many
# partitions for a long enough run; the harness checks that both consumers read every message.
#
# The bare consumer (bare_consumer.c) only reads: same fetch settings, same batch API, a checksum of
# the payloads. tailgate does the whole job: decode, shard, decide (Benchmarks/e2e/rules.yaml:
# errors, latency, 1% baseline), RED and service-graph metrics, kept traces to the file store with
# fdatasync, offsets committed behind the decisions. Both are timed from their first message to the
# end of the input (tailgate: until everything is decided and stored), so the group join is left out.
set -euo pipefail
cd "$(dirname "$0")/../.."
TRACES=${TRACES:-150000}
PARTITIONS=${PARTITIONS:-48}
RUNS=${RUNS:-3}
TRACES_PER_MESSAGE=${TRACES_PER_MESSAGE:-1}

[[ -n "${SKIP_BUILD:-}" ]] || swift build -c release --product tailgate >/dev/null
cc -O2 -o .build/release/bare_consumer Benchmarks/e2e/bare_consumer.c $(pkg-config --cflags --libs rdkafka)
tailgate=${TAILGATE:-.build/release/tailgate}
BASE=${BASE:-}
source Benchmarks/e2e/dev-broker.sh

start_dev_broker "$tailgate" "$PARTITIONS" --topic otlp_spans

echo "preloading $TRACES DogBook traces into otlp_spans ($PARTITIONS partitions, $TRACES_PER_MESSAGE per message) on $brokers ..."
"$tailgate" loadgen --brokers "$brokers" --traces "$TRACES" --traces-per-message "$TRACES_PER_MESSAGE" --error-rate 0.02 --slow-rate 0.03 \
    --log-level warning >"$work/loaded.json"
read -r spans bytes messages < <(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["spans"], d["bytes"], d["messages"])' "$work/loaded.json")
echo "loaded: $spans spans, $bytes bytes ($(( bytes / spans )) bytes per span on the wire)"
echo
printf '%-4s %-9s %12s %14s %10s %s\n' run consumer seconds spans/s MB/s notes
quick=(--kafka-property session.timeout.ms=6000 --kafka-property heartbeat.interval.ms=500)
ratios=()
for run in $(seq "$RUNS"); do
    bare=$(/usr/bin/time -f '%M %U %S %R' -o "$work/rss-bare-$run" .build/release/bare_consumer "$brokers" otlp_spans "bare-$run")
    read -r bare_seconds bare_messages < <(python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print(d["seconds"], d["messages"])' "$bare")
    [[ "$bare_messages" == "$messages" ]] || { echo "the bare consumer read $bare_messages of $messages messages (broker retention?)"; exit 1; }
    # The bare read's CPU too: what librdkafka alone costs per span here (the floor under tailgate's).
    read -r cpu faults < <(python3 -c "import sys; m, u, s, f = open(sys.argv[1]).read().split(); print((float(u) + float(s)) / $spans * 1e6, int(f) / $spans)" "$work/rss-bare-$run")
    echo "bare $cpu $faults $(python3 -c "print($spans / $bare_seconds)")" >>"$work/figures"
    printf '%-4s %-9s %12.3f %14.0f %10.1f %s\n' "$run" bare "$bare_seconds" \
        "$(python3 -c "print($spans / $bare_seconds)")" "$(python3 -c "print($bytes / $bare_seconds / 1e6)")" \
        "CPU $(python3 -c "print(f'{$cpu:.2f}')") µs/span"

    for build in ${BASE:+base} tailgate; do
        binary=$tailgate
        [[ "$build" == base ]] && binary=$BASE
        /usr/bin/time -f '%M %U %S %R' -o "$work/rss-$build-$run" "$binary" run --brokers "$brokers" --group "engine-$build-$run" --exit-on-eof \
            --rules Benchmarks/e2e/rules.yaml --data "$work/store-$build-$run" --http "" --log-level warning --status-interval 1h \
            "${quick[@]}" >"$work/engine-$build-$run.json"
        read -r engine_seconds engine_spans kept p99 < <(python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
print(d["processingSeconds"], d["spans"], d["tracesKept"], d.get("keptStoreLatencyP99") or 0)' "$work/engine-$build-$run.json")
        [[ "$engine_spans" == "$spans" ]] || { echo "$build read $engine_spans spans of $spans"; exit 1; }
        read -r cpu faults < <(python3 -c "import sys; m, u, s, f = open(sys.argv[1]).read().split(); print((float(u) + float(s)) / $spans * 1e6, int(f) / $spans)" "$work/rss-$build-$run")
        echo "$build $cpu $faults $(python3 -c "print($spans / $engine_seconds)")" >>"$work/figures"
        printf '%-4s %-9s %12.3f %14.0f %10.1f %s\n' "$run" "$build" "$engine_seconds" \
            "$(python3 -c "print($spans / $engine_seconds)")" "$(python3 -c "print($bytes / $engine_seconds / 1e6)")" \
            "kept $kept traces, decision→stored p99 $(python3 -c "print(round($p99 * 1000))") ms, peak RSS $(( $(cut -d' ' -f1 "$work/rss-$build-$run") / 1024 )) MiB, CPU $(python3 -c "import sys; m, u, s, faults = open(sys.argv[1]).read().split(); print(f'{float(u):.2f} user + {float(s):.2f} sys s = {(float(u) + float(s)) / $spans * 1e6:.2f} µs/span, {int(faults)} minor page faults ({int(faults) / $spans:.2f} per span)')" "$work/rss-$build-$run")"
    done
    ratios+=("$(python3 -c "print($bare_seconds / $engine_seconds)")")
done
echo
python3 -c '
import statistics, sys
ratios = [float(r) for r in sys.argv[1:]]
print("tailgate / bare consumer throughput: " + ", ".join(f"{r:.2f}" for r in ratios) + f"; median {statistics.median(ratios):.2f} (target >= 0.8)")' "${ratios[@]}"
python3 -c '
import statistics, sys
rows = [line.split() for line in open(sys.argv[1])]
for build in ("bare", "base", "tailgate"):
    mine = [r for r in rows if r[0] == build]
    if not mine: continue
    med = lambda i: statistics.median(float(r[i]) for r in mine)
    print(f"{build:9} median: {med(1):.2f} µs CPU/span, {med(2):.3f} faults/span, {med(3):,.0f} spans/s")' "$work/figures"
