# Sourced by the end-to-end harnesses: a scratch directory and a dev broker (librdkafka's mock
# cluster) on loopback, both removed on exit.
#
#   source Benchmarks/e2e/dev-broker.sh
#   start_dev_broker "$tailgate" "$PARTITIONS" --topic otlp_spans ...   # sets $brokers
work=$(mktemp -d)
broker_pid=""
cleanup() {
    [[ -n "$broker_pid" ]] && kill "$broker_pid" 2>/dev/null && wait "$broker_pid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

start_dev_broker() {  # tailgate partitions topic flags...
    local binary=$1 partitions=$2
    shift 2
    "$binary" dev-broker --partitions "$partitions" "$@" >"$work/broker" 2>/dev/null &
    broker_pid=$!
    for _ in $(seq 100); do [[ -s "$work/broker" ]] && break; sleep 0.1; done
    brokers=$(head -1 "$work/broker")
}
