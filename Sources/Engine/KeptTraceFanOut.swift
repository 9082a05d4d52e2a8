import Foundation
public import Logging
public import OTLP
import Sampling
import SpanMetrics
public import Sinks
import Storage
import Synchronization

/// Encodes each kept trace once — its spans byte for byte, `tailgate.policy` on each, the rule file's
/// redaction applied — and hands the same bytes to every sink. Each sink's acknowledgement is reported
/// separately: the delivery ledger alone counts them, and a trace is stored when every sink has it.
public final class KeptTraceFanOut: Sendable {
    /// The sinks, in the order their acknowledgements are numbered.
    public let sinks: [any TraceSink]
    /// The running rules' redaction (it follows reloads); nil: none.
    private let redactor: @Sendable () -> Redactor?
    /// Spans whose tracestate could not carry the threshold (malformed `ot`, no room): sent as they came.
    private let tracestateInvalid = Atomic<Int>(0)
    private let observer: (@Sendable (TraceData, String) -> Void)?
    private let logger: Logger
    private let redactions = Mutex(Redactor.Counts())
    private let redactionFailures = Atomic<Int>(0)

    /// - Parameters:
    ///   - sinks: none: kept traces are counted and acknowledged at once.
    ///   - observer: sees every kept trace (on a shard thread) before the sinks do.
    public init(
        sinks: [any TraceSink], redactor: @escaping @Sendable () -> Redactor? = { nil },
        observer: (@Sendable (TraceData, String) -> Void)? = nil, logger: Logger
    ) {
        self.sinks = sinks
        self.redactor = redactor
        self.observer = observer
        self.logger = logger
    }

    /// How many acknowledgements a kept trace needs (with no sink, one: given at once).
    public var acknowledgementsNeeded: Int { max(1, sinks.count) }

    /// Bytes of kept traces no sink has acknowledged yet: they count toward the buffer limit (a dead
    /// receiver, a slow disk or an unreachable topic pauses Kafka instead of growing memory).
    public var queuedBytes: Int { sinks.reduce(0) { $0 + $1.queuedBytes } }

    /// Hands a kept trace to every sink. `acknowledged(sink)` runs once per sink (any thread).
    /// `dryRun`: the rules' decision (`keep`/`drop`), tagged on every span as `tailgate.decision`;
    /// a dry run writes no sampling threshold (nothing was sampled).
    /// `annotation`: the `ot=th` (OTEP 235) and `SampleRate` the keeping policy gave it (empty: none).
    /// `integrity`: stamped on the trace's root span (``TraceData/integrity``).
    func keep(
        _ trace: TraceData, policy: String, annotation: KeptAnnotation = KeptAnnotation(), integrity: TraceIntegrity? = nil,
        dryRun: DryRunDecision? = nil, acknowledged: @escaping @Sendable (Int) -> Void
    ) {
        if dryRun != .drop { observer?(trace, policy) }
        send(trace, policy: policy, annotation: annotation, integrity: integrity, late: false, dryRun: dryRun, acknowledged: acknowledged)
    }

    /// Hands a span that arrived after its trace was kept to every sink, with the same policy,
    /// threshold and rate as the trace (remembered with the decision), marked `tailgate.late`.
    func keepLate(
        _ span: SpanRecord, from batch: SpanBatch, policy: String, annotation: KeptAnnotation = KeptAnnotation(),
        dryRun: DryRunDecision? = nil, acknowledged: @escaping @Sendable (Int) -> Void
    ) {
        var single = TraceData(traceID: span.traceID)
        single.append(span, from: batch, batchGeneration: 0)
        send(single, policy: policy, annotation: annotation, integrity: nil, late: true, dryRun: dryRun, acknowledged: acknowledged)
    }

    private func send(
        _ trace: TraceData, policy: String, annotation: KeptAnnotation, integrity: TraceIntegrity?, late: Bool, dryRun: DryRunDecision?,
        acknowledged: @escaping @Sendable (Int) -> Void
    ) {
        guard !sinks.isEmpty else {
            acknowledged(0)
            return
        }
        guard let request = redacted(encode(trace, policy: policy, annotation: annotation, integrity: integrity, late: late, dryRun: dryRun), traceID: trace.traceID) else {
            // Never sent unredacted; acknowledged so that it does not hold its partition forever.
            for index in sinks.indices { acknowledged(index) }
            return
        }
        let encoded = StoredTrace(traceID: trace.traceID, policy: policy, request: request)
        for (index, sink) in sinks.enumerated() {
            sink.send(encoded) { acknowledged(index) }
        }
    }

    /// The trace's request: spans byte for byte with `tailgate.policy`, and — when a probabilistic
    /// policy kept it — each span's tracestate raised to the policy's `ot=th` (never lowered).
    private func encode(
        _ trace: TraceData, policy: String, annotation: KeptAnnotation, integrity: TraceIntegrity?, late: Bool, dryRun: DryRunDecision?
    ) -> [UInt8] {
        if let dryRun { return trace.exportRequest(policy: policy, decision: dryRun.rawValue, integrity: integrity, late: late) }
        guard let threshold = annotation.threshold else {
            return trace.exportRequest(policy: policy, sampleRate: annotation.sampleRate, integrity: integrity, late: late)
        }
        let randomness = trace.samplingRandomness
        return trace.exportRequest(policy: policy, sampleRate: annotation.sampleRate, integrity: integrity, late: late) { [self] index in
            let current = trace.withBytes(trace.spans[index].traceState) { Substring(decoding: $0, as: UTF8.self) }
            switch TraceStateThreshold.raise(current, to: threshold, randomness: randomness) {
            case .changed(let raised): return raised
            case .unchanged: return nil
            case .invalid:
                tracestateInvalid.add(1, ordering: .relaxed)
                return nil
            }
        }
    }

    /// The trace's request with the redaction rules applied — before any sink sees it. On the
    /// (theoretical: it decoded once already) failure to rewrite, nothing is sent rather than
    /// unredacted data.
    private func redacted(_ request: [UInt8], traceID: TraceID) -> [UInt8]? {
        guard let redactor = redactor() else { return request }
        do {
            let (rewritten, counts) = try redactor.redact(request: request)
            if counts.total > 0 {
                redactions.withLock {
                    $0.deleted += counts.deleted
                    $0.hashed += counts.hashed
                    $0.masked += counts.masked
                }
            }
            return rewritten
        } catch {
            redactionFailures.add(1, ordering: .relaxed)
            logger.error("redaction failed for trace \(traceID.hex); not sending it: \(error)")
            return nil
        }
    }

    /// Waits until every sink has acknowledged what it was given, at most `timeout` in all.
    @discardableResult
    public func flush(timeout: Duration) -> Bool {
        let deadline = ContinuousClock.now + timeout
        var complete = true
        for sink in sinks {
            let left = deadline - ContinuousClock.now
            if !sink.flush(timeout: max(left, .zero)) { complete = false }
        }
        return complete
    }

    /// Stops every sink, after flushing each for at most `timeout`.
    public func stop(timeout: Duration) {
        for sink in sinks { sink.stop(timeout: timeout) }
    }

    /// Per sink: traces delivered, errors, retries, what waits; redactions.
    func write(into out: inout MetricsWriter) {
        let done = redactions.withLock { $0 }
        out.family("tailgate_redactions_total", .counter, "Attributes of kept traces redacted before any sink, by action.")
        out.sample("tailgate_redactions_total", [("action", "delete")], done.deleted)
        out.sample("tailgate_redactions_total", [("action", "hash")], done.hashed)
        out.sample("tailgate_redactions_total", [("action", "mask")], done.masked)
        out.counter(
            "tailgate_tracestate_invalid_total",
            "Kept spans whose tracestate could not carry the sampling threshold (malformed ot entry, or 32 entries already): sent as they came.",
            tracestateInvalid.load(ordering: .relaxed))
        out.counter(
            "tailgate_redaction_failures_total", "Kept traces not sent because their redaction failed (never sent unredacted).",
            redactionFailures.load(ordering: .relaxed))
        guard !sinks.isEmpty else { return }
        let statistics = sinks.map { ($0.name, $0.statistics) }
        out.family("tailgate_sink_traces_total", .counter, "Kept traces (and late-span pieces) a sink has durably accepted.")
        for (name, counts) in statistics { out.sample("tailgate_sink_traces_total", [("sink", name)], counts.delivered) }
        out.family(
            "tailgate_sink_errors_total", .counter,
            "Sink failures: store writes that failed (retried), traces the OTLP receiver rejected (400), Kafka delivery failures (retried).")
        for (name, counts) in statistics { out.sample("tailgate_sink_errors_total", [("sink", name)], counts.errors) }
        out.family("tailgate_sink_retries_total", .counter, "OTLP/HTTP requests sent again (connection errors, 429, 5xx).")
        for (name, counts) in statistics { out.sample("tailgate_sink_retries_total", [("sink", name)], counts.retries) }
        out.family("tailgate_sink_pending_traces", .gauge, "Kept traces handed to a sink and not yet acknowledged by it.")
        for (name, counts) in statistics { out.sample("tailgate_sink_pending_traces", [("sink", name)], counts.pending) }
        out.family("tailgate_sink_splits_total", .counter, "Traces (or pieces) split in two by span because the receiver found them too large.")
        for (name, counts) in statistics { out.sample("tailgate_sink_splits_total", [("sink", name)], counts.splits) }
        out.family(
            "tailgate_sink_oversize_spans_total", .counter,
            "Spans too large for the receiver even alone: not delivered (Kafka: copied to the dead-letter topic when set).")
        for (name, counts) in statistics { out.sample("tailgate_sink_oversize_spans_total", [("sink", name)], counts.oversizeSpans) }
        out.family("tailgate_sink_failing", .gauge, "1 while a sink's latest attempt failed (retrying), else 0.")
        for (name, counts) in statistics { out.sample("tailgate_sink_failing", [("sink", name)], counts.failing == nil ? 0 : 1) }
    }
}

/// Under dry run every trace goes to the sinks, each span tagged `tailgate.decision` with what the
/// rules decided.
public enum DryRunDecision: String, Sendable {
    case keep
    case drop
}
