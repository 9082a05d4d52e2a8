public import Sampling
public import SpanMetrics
import Synchronization

/// Counters of the windows and decisions; shards add a cycle's counts at once.
public final class SamplingMetrics: Sendable {
    public struct Counts: Sendable, Equatable {
        public var keptByPolicy: [String: Int] = [:]
        /// Encoded span bytes of kept traces, by the policy that kept them (what goes to storage).
        public var keptBytesByPolicy: [String: Int] = [:]
        /// Encoded span bytes of dropped traces.
        public var droppedBytes = 0
        /// Each policy's own decisions (before precedence combines them), by policy name: counts in
        /// ``PolicyTally/Column`` order.
        public var policyDecisions: [String: [Int]] = [:]
        public var dropped = 0
        public var lateKept = 0
        public var lateDropped = 0
        public var decisionsByReason: [DecisionReason: Int] = [:]
        public var spansKept = 0
        /// Kept traces without their root, or with spans naming a parent that never came.
        public var keptIncomplete = 0
        /// Per trace decided this cycle: nanoseconds from its first span's arrival to its decision.
        var decisionLatencies: [UInt64] = []
        public init() {}

        public var kept: Int { keptByPolicy.values.reduce(0, +) }

        mutating func add(_ other: Counts) {
            keptByPolicy.merge(other.keptByPolicy, uniquingKeysWith: +)
            keptBytesByPolicy.merge(other.keptBytesByPolicy, uniquingKeysWith: +)
            droppedBytes += other.droppedBytes
            policyDecisions.merge(other.policyDecisions) { a, b in zip(a, b).map(+) }
            dropped += other.dropped
            lateKept += other.lateKept
            lateDropped += other.lateDropped
            decisionsByReason.merge(other.decisionsByReason, uniquingKeysWith: +)
            spansKept += other.spansKept
            keptIncomplete += other.keptIncomplete
        }
    }

    /// Bounds (seconds) of `tailgate_decision_latency_seconds`: decisions come after `decision_wait`
    /// (10 s by default) or 2 s after the root, so the buckets span 100 ms to a minute.
    static let decisionLatencyBounds: [Double] = [0.1, 0.25, 0.5, 1, 2, 2.5, 5, 10, 15, 20, 30, 60]

    /// Bounds (seconds) of `tailgate_kept_trace_store_seconds`: from a kept trace's decision to its
    /// spans durable in every sink.
    static let storeLatencyBounds: [Double] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30]

    struct LatencyHistogram {
        let bounds: [Double]
        var counts: [UInt64]
        var sum: Double = 0

        init(bounds: [Double]) {
            self.bounds = bounds
            counts = Array(repeating: 0, count: bounds.count + 1)
        }

        mutating func observe(_ seconds: Double) {
            counts[bounds.firstIndex { seconds <= $0 } ?? bounds.count] += 1
            sum += seconds
        }

        /// The `q` quantile, interpolated within its bucket as Prometheus's histogram_quantile does.
        func quantile(_ q: Double) -> Double? {
            let total = counts.reduce(0, +)
            guard total > 0 else { return nil }
            let rank = q * Double(total)
            var cumulative: UInt64 = 0
            for (index, count) in counts.enumerated() {
                if Double(cumulative + count) >= rank {
                    guard index < bounds.count else { return bounds.last }
                    let lower = index == 0 ? 0 : bounds[index - 1]
                    let within = count == 0 ? 0 : (rank - Double(cumulative)) / Double(count)
                    return lower + (bounds[index] - lower) * within
                }
                cumulative += count
            }
            return bounds.last
        }
    }

    private let decisionLatency = Mutex(LatencyHistogram(bounds: SamplingMetrics.decisionLatencyBounds))
    private let storeLatency = Mutex(LatencyHistogram(bounds: SamplingMetrics.storeLatencyBounds))

    /// A kept trace became durable `seconds` after its decision (called from sink threads).
    func recordStored(afterSeconds seconds: Double) { storeLatency.withLock { $0.observe(seconds) } }

    /// The p-quantile of decision → durable for kept traces so far.
    public func keptTraceStoreLatency(quantile: Double) -> Double? { storeLatency.withLock { $0.quantile(quantile) } }

    /// Buffer occupancy, per shard (each shard writes its own slot).
    struct Occupancy: Sendable, Equatable {
        var traces = 0
        var spans = 0
        var bytes = 0
    }

    private let counts = Mutex(Counts())
    private let occupancy: Mutex<[Occupancy]>
    private let reload = Mutex(ReloadState())

    struct ReloadState {
        var failures = 0
        var lastSuccess: Double = 0
        var hash = ""
        var policies = 0
    }

    public init(shards: Int) { occupancy = Mutex(Array(repeating: Occupancy(), count: shards)) }

    func add(_ cycle: Counts) {
        guard cycle != Counts() else { return }
        counts.withLock { $0.add(cycle) }
        guard !cycle.decisionLatencies.isEmpty else { return }
        decisionLatency.withLock { histogram in
            for nanos in cycle.decisionLatencies { histogram.observe(Double(nanos) / 1e9) }
        }
    }

    func record(shard: Int, _ value: Occupancy) { occupancy.withLock { $0[shard] = value } }

    func recordReload(success: Bool, at unixSeconds: Double, hash: String, policies: Int) {
        reload.withLock { state in
            if success {
                state.lastSuccess = unixSeconds
                state.hash = hash
                state.policies = policies
            } else {
                state.failures += 1
            }
        }
    }

    public var snapshot: Counts { counts.withLock { $0 } }

    /// Buffered traces, spans and bytes over all shards.
    public var buffered: (traces: Int, spans: Int, bytes: Int) {
        occupancy.withLock { all in
            all.reduce((0, 0, 0)) { ($0.0 + $1.traces, $0.1 + $1.spans, $0.2 + $1.bytes) }
        }
    }

    public var reloadFailures: Int { reload.withLock { $0.failures } }

    public func prometheusText(bufferLimit: Int) -> String {
        var out = MetricsWriter()
        write(into: &out, bufferLimit: bufferLimit)
        return out.text
    }

    public func write(into out: inout MetricsWriter, bufferLimit: Int) {
        let totals = snapshot
        let buffer = buffered
        let rules = reload.withLock { $0 }
        out.family("tailgate_traces_kept_total", .counter, "Traces kept, by the policy that kept them.")
        for (policy, count) in totals.keptByPolicy.sorted(by: { $0.key < $1.key }) {
            out.sample("tailgate_traces_kept_total", [("policy", policy)], count)
        }
        out.counter("tailgate_traces_dropped_total", "Traces dropped by the rules.", totals.dropped)
        out.family(
            "tailgate_kept_bytes_total", .counter,
            "Encoded span bytes (OTLP protobuf, as received) of kept traces, by the policy that kept them: what goes to storage.")
        for (policy, bytes) in totals.keptBytesByPolicy.sorted(by: { $0.key < $1.key }) {
            out.sample("tailgate_kept_bytes_total", [("policy", policy)], bytes)
        }
        out.counter("tailgate_dropped_bytes_total", "Encoded span bytes of dropped traces.", totals.droppedBytes)
        out.family(
            "tailgate_policy_decisions_total", .counter,
            "Each policy's own decision per trace it evaluated, before precedence combines them (the collector's count_traces_sampled): sampled, not_sampled, dropped (a drop policy matched), inverted_sampled, inverted_not_sampled.")
        for (policy, columns) in totals.policyDecisions.sorted(by: { $0.key < $1.key }) {
            for column in PolicyTally.Column.allCases {
                out.sample("tailgate_policy_decisions_total", [("policy", policy), ("decision", column.label)], columns[column.rawValue])
            }
        }
        out.counter("tailgate_spans_kept_total", "Spans of kept traces (late spans included).", totals.spansKept)
        out.counter(
            "tailgate_traces_kept_incomplete_total",
            "Kept traces that left incomplete: no root span, or spans naming a parent that never came (stamped tailgate.trace.complete=false on the root, or first, span).",
            totals.keptIncomplete)
        out.family("tailgate_late_spans_total", .counter, "Spans that arrived after their trace was decided, by that decision.")
        out.sample("tailgate_late_spans_total", [("decision", "keep")], totals.lateKept)
        out.sample("tailgate_late_spans_total", [("decision", "drop")], totals.lateDropped)
        out.family("tailgate_trace_decisions_total", .counter, "Traces decided, by what triggered the decision.")
        for reason in DecisionReason.allCases {
            out.sample("tailgate_trace_decisions_total", [("reason", reason.rawValue)], totals.decisionsByReason[reason] ?? 0)
        }
        out.gauge("tailgate_buffer_traces", "Traces waiting for a decision.", buffer.traces)
        out.gauge("tailgate_buffer_spans", "Spans waiting for a decision.", buffer.spans)
        out.gauge("tailgate_buffer_bytes", "Bytes held by traces waiting for a decision.", buffer.bytes)
        out.gauge("tailgate_buffer_limit_bytes", "The buffer limit; consumption pauses above it.", bufferLimit)
        out.counter("tailgate_rules_reload_failures_total", "Rule file reloads refused (the previous rules stay).", rules.failures)
        out.family("tailgate_rules_last_reload_success_timestamp_seconds", .gauge, "When the running rules were loaded.")
        out.sample("tailgate_rules_last_reload_success_timestamp_seconds", [], Int(rules.lastSuccess))
        out.family("tailgate_rules_info", .gauge, "The running rules: content hash and policy count.")
        out.sample("tailgate_rules_info", [("hash", rules.hash), ("policies", String(rules.policies))], 1)
        let latency = decisionLatency.withLock { $0 }
        out.family("tailgate_decision_latency_seconds", .histogram, "From a trace's first span to its decision.")
        out.histogram("tailgate_decision_latency_seconds", [], bounds: Self.decisionLatencyBounds, counts: latency.counts, sum: latency.sum)
        let stored = storeLatency.withLock { $0 }
        out.family("tailgate_kept_trace_store_seconds", .histogram, "From a kept trace's decision to its spans durable in every sink.")
        out.histogram("tailgate_kept_trace_store_seconds", [], bounds: Self.storeLatencyBounds, counts: stored.counts, sum: stored.sum)
    }
}
