import Foundation
import Logging
import OTLP
import Sampling
import Storage
import SpanMetrics
import Synchronization

/// Hands each kept trace to every configured sink and reports it stored when all of them have it:
/// the offsets of its spans wait for the slowest sink.
final class SinkFanOut: KeptTraceSink {
    let store: StoreWriter?
    let kafka: KafkaTraceSink?
    let otlp: OTLPHTTPExporter?
    let policyAttribute: Bool
    /// The running rules' redaction (it follows reloads); nil: none.
    let redactor: @Sendable () -> Redactor?
    private let logger: Logger
    private let redactions = Mutex(Redactor.Counts())
    private let redactionFailures = Atomic<Int>(0)

    init(
        store: StoreWriter?, kafka: KafkaTraceSink?, otlp: OTLPHTTPExporter?, policyAttribute: Bool = true,
        redactor: @escaping @Sendable () -> Redactor? = { nil }, logger: Logger
    ) {
        self.store = store
        self.kafka = kafka
        self.otlp = otlp
        self.policyAttribute = policyAttribute
        self.redactor = redactor
        self.logger = logger
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

    private final class Countdown: Sendable {
        let remaining: Atomic<Int>
        let done: @Sendable () -> Void
        init(_ count: Int, _ done: @escaping @Sendable () -> Void) {
            remaining = Atomic(count)
            self.done = done
        }
        func tick() { if remaining.subtract(1, ordering: .acquiringAndReleasing).newValue == 0 { done() } }
    }

    private var sinkCount: Int { (store == nil ? 0 : 1) + (kafka == nil ? 0 : 1) + (otlp == nil ? 0 : 1) }

    /// Bytes of kept traces no sink has acknowledged yet: they count toward the buffer limit (a dead
    /// receiver, a slow disk or an unreachable topic pauses Kafka instead of growing memory).
    var queuedBytes: Int { (otlp?.queuedBytes ?? 0) + (store?.queuedBytes ?? 0) + (kafka?.unacknowledgedBytes ?? 0) }

    private func exportable(_ trace: StoredTrace) -> [UInt8] {
        (try? TraceMerger.merge([trace], policyAttribute: policyAttribute)) ?? trace.request
    }

    func keep(_ trace: TraceData, policy: String, stored: @escaping @Sendable () -> Void) {
        guard sinkCount > 0 else { return stored() }
        guard let request = redacted(trace.exportRequest(), traceID: trace.traceID) else { return stored() }
        let countdown = Countdown(sinkCount, stored)
        let kept = StoredTrace(traceID: trace.traceID, policy: policy, request: request)
        store?.keep(kept, stored: countdown.tick)
        if kafka != nil || otlp != nil {
            // One request (with tailgate.policy) for every remote sink.
            let remote = exportable(kept)
            kafka?.publish(remote, traceID: trace.traceID, stored: countdown.tick)
            otlp?.export(remote, stored: countdown.tick)
        }
    }

    func keepLate(_ span: SpanRecord, from batch: SpanBatch, stored: @escaping @Sendable () -> Void) {
        guard sinkCount > 0 else { return stored() }
        var single = TraceData(traceID: span.traceID)
        single.append(span, from: batch, batchGeneration: 0)
        guard let request = redacted(single.exportRequest(), traceID: span.traceID) else { return stored() }
        let countdown = Countdown(sinkCount, stored)
        store?.keep(StoredTrace(traceID: span.traceID, policy: "", request: request), stored: countdown.tick)
        kafka?.publish(request, traceID: span.traceID, stored: countdown.tick)
        otlp?.export(request, stored: countdown.tick)
    }

    func flush() {
        store?.flush()
        kafka?.flush()
        otlp?.flush()
    }

    /// Per sink: traces delivered, errors, retries, what waits; redactions.
    func write(into out: inout MetricsWriter) {
        let done = redactions.withLock { $0 }
        out.family("tailgate_redactions_total", .counter, "Attributes of kept traces redacted before any sink, by action.")
        out.sample("tailgate_redactions_total", [("action", "delete")], done.deleted)
        out.sample("tailgate_redactions_total", [("action", "hash")], done.hashed)
        out.sample("tailgate_redactions_total", [("action", "mask")], done.masked)
        out.counter(
            "tailgate_redaction_failures_total", "Kept traces not sent because their redaction failed (never sent unredacted).",
            redactionFailures.load(ordering: .relaxed))
        out.family("tailgate_sink_traces_total", .counter, "Kept traces (and late-span pieces) a sink has durably accepted.")
        if let store { out.sample("tailgate_sink_traces_total", [("sink", "store")], store.tracesWritten) }
        if let otlp { out.sample("tailgate_sink_traces_total", [("sink", "otlp")], otlp.counts.tracesSent) }
        if let kafka { out.sample("tailgate_sink_traces_total", [("sink", "kafka")], kafka.delivered) }
        out.family("tailgate_sink_errors_total", .counter, "Sink failures: store writes that failed (retried), traces the OTLP receiver rejected (400).")
        if let store { out.sample("tailgate_sink_errors_total", [("sink", "store")], store.writeFailures) }
        if let otlp { out.sample("tailgate_sink_errors_total", [("sink", "otlp")], otlp.counts.rejectedTraces) }
        if let kafka { out.sample("tailgate_sink_errors_total", [("sink", "kafka")], kafka.failures) }
        out.family("tailgate_sink_retries_total", .counter, "OTLP/HTTP requests sent again (connection errors, 429, 5xx).")
        if let otlp { out.sample("tailgate_sink_retries_total", [("sink", "otlp")], otlp.counts.retries) }
        out.family("tailgate_sink_pending_traces", .gauge, "Kept traces handed to a sink and not yet acknowledged by it.")
        if let kafka { out.sample("tailgate_sink_pending_traces", [("sink", "kafka")], kafka.unacknowledged) }
    }

    func stop() {
        store?.stop()
        kafka?.stop()
        otlp?.stop()
    }
}

/// Lets an observer see each kept trace, then passes it on.
final class ObservedKeptTraces: KeptTraceSink {
    let next: any KeptTraceSink
    let observer: @Sendable (TraceData, String) -> Void

    init(next: any KeptTraceSink, observer: @escaping @Sendable (TraceData, String) -> Void) {
        self.next = next
        self.observer = observer
    }

    func keep(_ trace: TraceData, policy: String, stored: @escaping @Sendable () -> Void) {
        observer(trace, policy)
        next.keep(trace, policy: policy, stored: stored)
    }

    func keepLate(_ span: SpanRecord, from batch: SpanBatch, stored: @escaping @Sendable () -> Void) {
        next.keepLate(span, from: batch, stored: stored)
    }

    func flush() { next.flush() }
    var queuedBytes: Int { next.queuedBytes }
}
