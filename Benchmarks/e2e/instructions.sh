#!/usr/bin/env bash
# Exact instruction counts of the whole process (callgrind) on the end-to-end run: what the CPU per
# span measures with this VM's noise taken out. The same preloaded topic and dev broker as run.sh
# (one trace per message, keyed), each build once under valgrind, then its instructions per span and
# where they go (the ingest thread's decode, the shards, the store writer, librdkafka).
#
#   Benchmarks/e2e/instructions.sh                          # 50 000 traces (640 k spans), 64 partitions
#   BASE=/path/to/previous/tailgate Benchmarks/e2e/instructions.sh   # and the previous build, same topic
#
# Needs valgrind. Each run takes about a minute per 640 k spans. Valgrind 3.19 cannot read the
# toolchain's DWARF 5 in places, so the binaries are copied without debug info first.
#
# Valgrind runs the process one thread at a time, so librdkafka's fetcher keeps further ahead and
# polls are smaller than in a real run (a few hundred messages against ~700): per-poll costs weigh
# more here than they do for real, per-span costs the same. Runs of one build differ by ~0.5 %.
# librdkafka's statistics are off here: they come every five seconds of wall clock, and the process
# runs ~30 times longer under valgrind, so their parsing (17.5 M instructions each with 64
# partitions, 12 times) made 3.4 % of the count (327 per span) where a real run of this topic parses
# one or none.
# The session timeout is long for the same reason: valgrind's slowness must not cost the member its
# partitions (a topic read twice counts twice).
set -euo pipefail
cd "$(dirname "$0")/../.."
TRACES=${TRACES:-50000}
PARTITIONS=${PARTITIONS:-64}
command -v valgrind >/dev/null || { echo "needs valgrind (apt-get install valgrind)"; exit 1; }

[[ -n "${SKIP_BUILD:-}" ]] || swift build -c release --product tailgate >/dev/null
tailgate=${TAILGATE:-.build/release/tailgate}
BASE=${BASE:-}
source Benchmarks/e2e/dev-broker.sh

start_dev_broker "$tailgate" "$PARTITIONS" --topic otlp_spans
"$tailgate" loadgen --brokers "$brokers" --traces "$TRACES" --error-rate 0.02 --slow-rate 0.03 --log-level warning >"$work/loaded.json"
spans=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["spans"])' "$work/loaded.json")
echo "preloaded $TRACES traces, $spans spans, $PARTITIONS partitions on $brokers"

for build in ${BASE:+base} tailgate; do
    binary=$tailgate
    [[ "$build" == base ]] && binary=$BASE
    objcopy --strip-debug "$binary" "$work/$build"
    valgrind --tool=callgrind --callgrind-out-file="$work/cg.$build" "$work/$build" run --brokers "$brokers" \
        --group "instructions-$build" --exit-on-eof --rules Benchmarks/e2e/rules.yaml --data "$work/store-$build" \
        --http "" --log-level warning --status-interval 1h \
        --kafka-property session.timeout.ms=30000 --kafka-property heartbeat.interval.ms=500 \
        --kafka-property statistics.interval.ms=0 \
        >"$work/out.$build.json" 2>"$work/valgrind.$build"
    read -r read_spans kept < <(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["spans"], d["tracesKept"])' "$work/out.$build.json")
    [[ "$read_spans" == "$spans" ]] || { echo "$build read $read_spans of $spans spans"; exit 1; }
    callgrind_annotate --inclusive=yes "$work/cg.$build" 2>/dev/null | python3 -c '
import re, sys
build, spans, kept = sys.argv[1], int(sys.argv[2]), sys.argv[3]
parts = {
    "decode (ingest thread)": r"ProtobufSpanDecoderV6decode_4into.*Tf4nnd_n \[",
    "ingest poll, all of it": r"IngestLoopC8pollOnce7timeoutys8DurationV_tF \[",
    "shards": r"Engine5ShardC3run33_\w+LLyyF \[",
    "store writer": r"StoreWriterC3run33_\w+LLyyF \[",
    "  block summaries": r"BlockSummaryV5build6offset8requests\w* \[",
    "  zstd": r"ZSTD_compress2 \[",
    "LZ4 (librdkafka)": r"LZ4F_decompress \[",
}
total, found = None, {}
for line in sys.stdin:
    m = re.match(r"\s*([\d,]+) ", line)
    if not m: continue
    count = int(m.group(1).replace(",", ""))
    if "PROGRAM TOTALS" in line: total = count
    for name, pattern in parts.items():
        if name not in found and re.search(pattern, line): found[name] = count
print(f"{build}: {total / 1e6:,.0f} M instructions, {total / spans:,.0f} per span ({kept} traces kept)")
for name in parts:
    if name in found: print(f"  {name:24} {found[name] / 1e6:8,.0f} M  {found[name] / spans:7,.0f} per span")
' "$build" "$spans" "$kept"
done
