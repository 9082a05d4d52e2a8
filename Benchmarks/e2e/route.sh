#!/usr/bin/env bash
# `tailgate route` against a bare librdkafka consumer on the same preloaded topic of the dev broker:
# unkeyed messages of TRACES_PER_MESSAGE DogBook traces (the shape of an exporter without
# partition_traces_by_id), re-keyed into one message per trace on a second topic.
#
#   Benchmarks/e2e/route.sh                        # 60 000 traces, 30 per message, 64 partitions, 1 run per mode
#   RUNS=3 Benchmarks/e2e/route.sh
#
# The mock cluster keeps ~5 MB per partition and drops older message sets: every run checks that the
# bare consumer and the router read every message.
#
# The write floor: after the runs, the at-least-once output (the router's own messages) is read back
# and written to a fresh topic by a bare librdkafka producer (bare_producer.c) that does nothing else,
# with the router's producer settings (LZ4), with larger batches (linger.ms=50, 4 MB), uncompressed
# (linger.ms=0), and with the other codecs (snappy, zstd). No router can write that output faster than the quickest of them, whatever it does
# before: the floor divided into the bare read's time bounds the router's ratio to the bare read.
# A router also reads while it writes, on the same two cores as the broker: the last floor runs a bare
# read of the input (a fresh group) and the bare producer side by side, the producer starting at the
# read's first message, timed from there until both are done. Nothing a router does beyond reading
# and writing is in it, so no router can be quicker than that pair.
#
# Both delivery modes are measured: transactional (one Kafka transaction per batch; note that the
# mock cluster does transactions' round trips but commits no offsets with them) and at-least-once
# (each batch flushed with acks=all, then its offsets committed). The router is timed from its first
# message to the end of the input with every message acknowledged; CPU is the whole process's.
set -euo pipefail
cd "$(dirname "$0")/../.."
TRACES=${TRACES:-60000}
PARTITIONS=${PARTITIONS:-64}
RUNS=${RUNS:-1}
TRACES_PER_MESSAGE=${TRACES_PER_MESSAGE:-30}

swift build -c release --product tailgate >/dev/null
cc -O2 -o .build/release/bare_consumer Benchmarks/e2e/bare_consumer.c $(pkg-config --cflags --libs rdkafka)
cc -O2 -o .build/release/bare_producer Benchmarks/e2e/bare_producer.c $(pkg-config --cflags --libs rdkafka)
tailgate=.build/release/tailgate
source Benchmarks/e2e/dev-broker.sh

topics=(--topic otlp_spans)
for run in $(seq "$RUNS"); do topics+=(--topic "keyed-transactional-$run" --topic "keyed-at-least-once-$run"); done
topics+=(--topic floor-router --topic floor-batched --topic floor-uncompressed --topic floor-snappy --topic floor-zstd --topic floor-side-by-side)
start_dev_broker "$tailgate" "$PARTITIONS" "${topics[@]}"

echo "preloading $TRACES DogBook traces into otlp_spans ($PARTITIONS partitions, $TRACES_PER_MESSAGE per message, unkeyed) on $brokers ..."
"$tailgate" loadgen --brokers "$brokers" --traces "$TRACES" --traces-per-message "$TRACES_PER_MESSAGE" --log-level warning >"$work/loaded.json"
read -r spans bytes messages < <(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["spans"], d["bytes"], d["messages"])' "$work/loaded.json")
echo "loaded: $messages messages, $spans spans, $bytes bytes"
echo
printf '%-4s %-22s %9s %12s %12s %s\n' run consumer seconds messages/s spans/s notes
bare_reads=()
for run in $(seq "$RUNS"); do
    bare=$(.build/release/bare_consumer "$brokers" otlp_spans "bare-$run")
    read -r bare_seconds bare_messages < <(python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print(d["seconds"], d["messages"])' "$bare")
    [[ "$bare_messages" == "$messages" ]] || { echo "the bare consumer read $bare_messages of $messages messages (broker retention?)"; exit 1; }
    bare_reads+=("$bare_seconds")
    printf '%-4s %-22s %9.3f %12.0f %12.0f\n' "$run" bare "$bare_seconds" "$(python3 -c "print($messages / $bare_seconds)")" "$(python3 -c "print($spans / $bare_seconds)")"
    for mode in transactional at-least-once; do
        /usr/bin/time -f '%M %U %S' -o "$work/time-$mode-$run" "$tailgate" route --brokers "$brokers" --output-topic "keyed-$mode-$run" \
            --group "route-$mode-$run" --delivery "$mode" --transactional-id "bench-$mode-$run" --exit-on-eof --http "" \
            --log-level warning --status-interval 1h \
            --kafka-property session.timeout.ms=6000 --kafka-property heartbeat.interval.ms=500 >"$work/route-$mode-$run.json"
        read -r seconds routed_spans traces_out < <(python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
print(d["processingSeconds"], d["spans"], d["tracesOut"])' "$work/route-$mode-$run.json")
        [[ "$routed_spans" == "$spans" ]] || { echo "route read $routed_spans spans of $spans"; exit 1; }
        [[ "$traces_out" == "$TRACES" ]] || { echo "route produced $traces_out traces of $TRACES"; exit 1; }
        printf '%-4s %-22s %9.3f %12.0f %12.0f %s\n' "$run" "route $mode" "$seconds" \
            "$(python3 -c "print($messages / $seconds)")" "$(python3 -c "print($spans / $seconds)")" \
            "$(python3 -c "import sys; m, u, s = open(sys.argv[1]).read().split(); print(f'{$TRACES / $seconds:.0f} traces/s out, {$bare_seconds / $seconds:.2f} x bare, peak RSS {int(m) // 1024} MiB, CPU {float(u):.2f} user + {float(s):.2f} sys s = {(float(u) + float(s)) / $spans * 1e6:.2f} µs/span')" "$work/time-$mode-$run")"
    done
done

# The write floor (see the top): the last at-least-once run's output, written again by a bare producer.
# Each floor against the median of the bare reads above.
bare_seconds=$(python3 -c 'import statistics, sys; print(statistics.median(float(x) for x in sys.argv[1:]))' "${bare_reads[@]}")
output_messages=$(.build/release/bare_consumer "$brokers" "keyed-at-least-once-$RUNS" dump "$work/output.bin" | python3 -c 'import json,sys; print(json.load(sys.stdin)["messages"])')
echo
echo "write floor: the router's output ($output_messages messages) written again by a bare producer that does nothing else"
for settings in router batched uncompressed snappy zstd; do
    extra=()
    [[ "$settings" == batched ]] && extra=(linger.ms=50 batch.size=4000000)
    [[ "$settings" == uncompressed ]] && extra=(compression.codec=none linger.ms=0)
    [[ "$settings" == snappy || "$settings" == zstd ]] && extra=(compression.codec=$settings)
    floor=$(.build/release/bare_producer "$brokers" "floor-$settings" "$work/output.bin" "${extra[@]}")
    python3 -c '
import json, sys
d = json.loads(sys.argv[1])
seconds, messages, megabytes = d["seconds"], d["messages"], d["bytes"] / 1e6
print(f"  {sys.argv[2]:12} {seconds:.3f} s ({messages} messages, {megabytes:.0f} MB); a router at this floor would be {float(sys.argv[3]) / seconds:.2f} x the median bare read")' "$floor" "$settings" "$bare_seconds"
done
# Side by side: the bare read and the bare producer (the router's settings) at once, three times; the
# quickest pair is the floor.
for pair in 1 2 3; do
    rm -f "$work/first-message"
    FIRST_MESSAGE_FILE="$work/first-message" .build/release/bare_consumer "$brokers" otlp_spans "side-by-side-$pair" >"$work/side-read-$pair.json" &
    side_reader=$!
    START_AFTER_FILE="$work/first-message" .build/release/bare_producer "$brokers" floor-side-by-side "$work/output.bin" >"$work/side-write-$pair.json"
    wait "$side_reader"
done
python3 -c '
import json, sys
work, messages, bare = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
pairs = []
for pair in (1, 2, 3):
    read = json.load(open(f"{work}/side-read-{pair}.json"))
    write = json.load(open(f"{work}/side-write-{pair}.json"))
    assert read["messages"] == messages, ("a side-by-side read missed messages", read["messages"])
    pairs.append((max(read["last"], write["last"]) - read["first"], read["seconds"], write["seconds"]))
seconds, alone, written = min(pairs)
listed = ", ".join(f"{p[0]:.3f}" for p in pairs)
print(f"  side by side {seconds:.3f} s, the quickest of {listed} (in it the read {alone:.3f} s, the write {written:.3f} s); "
      f"a router at this floor would be {bare / seconds:.2f} x the median bare read")' "$work" "$messages" "$bare_seconds"
