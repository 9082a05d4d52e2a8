#!/usr/bin/env bash
# Resident memory per buffered span against its OTLP wire size: tailgate consumes a preloaded topic
# with a decision wait of an hour (nothing is decided, everything stays buffered).
#
# Two figures:
# - growth over an idle engine: (RSS holding every span − RSS of an engine on an empty topic) / wire
#   bytes. It includes what does not grow with the spans held: librdkafka's prefetch queue (up to
#   64 MiB by default) and the polls the ingest loop keeps for reuse.
# - per buffered span: one engine measured twice, holding the first half of the traces and then all
#   of them (the second half is produced while it runs): ΔRSS / Δwire bytes — what each further span
#   held costs, the fixed part cancelled.
#
#   Benchmarks/e2e/memory.sh                   # 20 000 DogBook traces (two loads of 10 000)
#   TAILGATE=/path/to/tailgate Benchmarks/e2e/memory.sh   # another build (before/after comparisons)
#   EXTRA="--buffer-limit 1GiB" Benchmarks/e2e/memory.sh  # more flags for the measured engines
set -euo pipefail
cd "$(dirname "$0")/../.."
TRACES=${TRACES:-20000}
HALF=$((TRACES / 2))

if [[ -z "${TAILGATE:-}" ]]; then swift build -c release --product tailgate >/dev/null; fi
tailgate=${TAILGATE:-.build/release/tailgate}
work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

"$tailgate" dev-broker --partitions 6 --topic otlp_spans --topic idle >"$work/broker" 2>/dev/null &
pids+=($!)
for _ in $(seq 100); do [[ -s "$work/broker" ]] && break; sleep 0.1; done
brokers=$(head -1 "$work/broker")
load() {  # traces seed → "spans bytes" of what was produced
    "$tailgate" loadgen --brokers "$brokers" --traces "$1" --seed "$2" --log-level warning >"$work/loaded-$2.json"
    python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["spans"], d["bytes"])' "$work/loaded-$2.json"
}
read -r spans1 bytes1 < <(load "$HALF" 1)

# Nothing is decided while measuring: an hour after the first span and after the root.
printf 'decision_wait: 1h\ndecision_wait_after_root_received: 1h\npolicies: [{name: all, type: always_sample}]\n' >"$work/hold.yaml"

rss() { awk '/^VmRSS/ {print $2 * 1024}' "/proc/$1/status"; }
metric() { python3 -c '
import sys, urllib.request
for line in urllib.request.urlopen(f"http://{sys.argv[1]}/metrics").read().decode().splitlines():
    if line.startswith(sys.argv[2] + " "): print(int(float(line.split()[1])))' "$1" "$2"; }

start() {  # topic port → pid
    "$tailgate" run --brokers "$brokers" --topic "$1" --group "mem-$1" --rules "$work/hold.yaml" --http "127.0.0.1:$2" \
        --log-level warning --status-interval 1h ${EXTRA:-} >/dev/null &
    local pid=$!
    pids+=("$pid")
    echo "$pid"
}
settle() {  # pid port expected-spans → prints "RSS accounted-bytes" once the buffer holds them
    local pid=$1 port=$2 expect=$3
    for _ in $(seq 600); do
        local buffered assigned
        buffered=$(metric "127.0.0.1:$port" tailgate_buffer_spans 2>/dev/null || echo -1)
        assigned=$(metric "127.0.0.1:$port" tailgate_kafka_partitions_assigned 2>/dev/null || echo 0)
        if [[ "$assigned" -gt 0 && "$buffered" -ge "$expect" ]]; then break; fi
        sleep 0.5
    done
    sleep 2
    echo "$(rss "$pid") $(metric "127.0.0.1:$port" tailgate_buffer_bytes)"
}

pid=$(start idle 3291)
read -r idle _ < <(settle "$pid" 3291 0)
kill -KILL "$pid"
pid=$(start otlp_spans 3292)
read -r half accounted1 < <(settle "$pid" 3292 "$spans1")
read -r spans2 bytes2 < <(load $((TRACES - HALF)) 2)
read -r full accounted < <(settle "$pid" 3292 $((spans1 + spans2)))
kill -KILL "$pid"
python3 -c '
import sys
spans1, bytes1, spans2, bytes2, idle, half, full, accounted1, accounted = map(int, sys.argv[1:])
spans, wire = spans1 + spans2, bytes1 + bytes2
grown = full - idle
print(f"{spans} spans buffered, {wire} wire bytes ({wire / spans:.0f} per span)")
print(f"resident set: idle {idle / 2**20:.1f} MiB, holding {spans1} spans {half / 2**20:.1f} MiB, holding every span {full / 2**20:.1f} MiB")
print(f"growth over idle: {grown / spans:.0f} bytes per span = {grown / wire:.2f}x its wire size (fixed parts included)")
print(f"per buffered span (second load): {(full - half) / spans2:.0f} bytes resident = {(full - half) / bytes2:.2f}x its wire size (target <= 1.5); the buffer accounts {(accounted - accounted1) / bytes2:.2f}x")' \
    "$spans1" "$bytes1" "$spans2" "$bytes2" "$idle" "$half" "$full" "$accounted1" "$accounted"
