#!/usr/bin/env bash
# Resident memory per buffered span against its OTLP wire size: tailgate consumes a preloaded topic
# with a decision wait of an hour (nothing is decided, everything stays buffered), and the growth of
# its resident set over an idle engine's is divided by the spans it holds.
#
#   Benchmarks/e2e/memory.sh                   # 20 000 DogBook traces
#   TAILGATE=/path/to/tailgate Benchmarks/e2e/memory.sh   # another build (before/after comparisons)
set -euo pipefail
cd "$(dirname "$0")/../.."
TRACES=${TRACES:-20000}

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
"$tailgate" loadgen --brokers "$brokers" --traces "$TRACES" --log-level warning >"$work/loaded.json"
read -r spans bytes < <(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["spans"], d["bytes"])' "$work/loaded.json")

# Nothing is decided while measuring: an hour after the first span and after the root.
printf 'decision_wait: 1h\ndecision_wait_after_root_received: 1h\npolicies: [{name: all, type: always_sample}]\n' >"$work/hold.yaml"

rss() { awk '/^VmRSS/ {print $2 * 1024}' "/proc/$1/status"; }
metric() { python3 -c '
import sys, urllib.request
for line in urllib.request.urlopen(f"http://{sys.argv[1]}/metrics").read().decode().splitlines():
    if line.startswith(sys.argv[2] + " "): print(int(float(line.split()[1])))' "$1" "$2"; }

measure() {  # topic port → prints RSS once the buffer holds every span of the topic (or 0 for idle)
    local topic=$1 port=$2 expect=$3
    "$tailgate" run --brokers "$brokers" --topic "$topic" --group "mem-$topic" --rules "$work/hold.yaml" --http "127.0.0.1:$port" \
        --log-level warning --status-interval 1h >/dev/null &
    local pid=$!
    pids+=("$pid")
    for _ in $(seq 600); do
        local buffered
        buffered=$(metric "127.0.0.1:$port" tailgate_buffer_spans 2>/dev/null || echo -1)
        local assigned
        assigned=$(metric "127.0.0.1:$port" tailgate_kafka_partitions_assigned 2>/dev/null || echo 0)
        if [[ "$assigned" -gt 0 && "$buffered" -ge "$expect" ]]; then break; fi
        sleep 0.5
    done
    sleep 2
    echo "$(rss "$pid") $(metric "127.0.0.1:$port" tailgate_buffer_bytes)"
    kill "$pid"
}
read -r idle _ < <(measure idle 3291 0)
read -r full accounted < <(measure otlp_spans 3292 "$spans")
python3 -c '
import sys
spans, wire, idle, full, accounted = map(int, sys.argv[1:])
grown = full - idle
print(f"{spans} spans buffered, {wire} wire bytes ({wire / spans:.0f} per span)")
print(f"resident set: idle {idle / 2**20:.1f} MiB, holding every span {full / 2**20:.1f} MiB")
print(f"per buffered span: {grown / spans:.0f} bytes resident = {grown / wire:.2f}x its wire size (target <= 1.5); the buffer accounts {accounted / wire:.2f}x")' \
    "$spans" "$bytes" "$idle" "$full" "$accounted"
