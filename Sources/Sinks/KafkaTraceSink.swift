public import Storage
import Foundation
public import Kafka
public import Logging
public import OTLP
import Synchronization

/// Re-publishes kept traces to a Kafka topic as `otlp_proto`, one trace per message keyed by its hex
/// trace id (what the collector's kafka exporter writes with `partition_traces_by_id`), so another
/// pipeline — a Tempo distributor's Kafka receiver, a collector, a second tailgate — can read them.
/// A trace counts as stored when the broker acknowledged it; a message that still fails after
/// librdkafka's own retries is sent again, never dropped.
///
/// A trace too large for the producer's `message.max.bytes` (or the topic's `max.message.bytes`) is
/// a permanent error, never retried: it is split in halves by span (each span under its resource and
/// scope, bytes unchanged, every piece keyed by the trace id) until the pieces fit. A single span
/// that alone does not fit is counted (`oversizeSpans`), logged, and handed to `deadLetter` (the
/// dead-letter topic, when one is set); its trace then counts as stored once the copy is
/// acknowledged (at once without a dead-letter topic), so its offsets move on.
public final class KafkaTraceSink: TraceSink, @unchecked Sendable {
    public let name = "kafka"
    public let topic: String
    private let producer: KafkaProducer
    private let logger: Logger
    private let throttle = LogThrottle(interval: .seconds(10))
    /// Whether the poll thread goes on. An object of its own, so the thread holds it and the
    /// producer, never the sink: a sink nobody holds any more (an engine built and never run) is
    /// released and stops polling, instead of living as long as the process.
    private final class Poller: Sendable { let running = Atomic<Bool>(true) }
    private let poller = Poller()
    private let pending = Atomic<Int>(0)
    private let pendingBytes = Atomic<Int>(0)
    private let deliveredCount = Atomic<Int>(0)
    private let failureCount = Atomic<Int>(0)
    private let oversizeCount = Atomic<Int>(0)
    private let splitCount = Atomic<Int>(0)
    private let lastFailure = Mutex<String?>(nil)
    /// Where a span too large to publish alone goes (trace id, its one-span request, why).
    /// Copies the span's request to the dead-letter topic and calls `copied` once the topic has it:
    /// only then does the trace count as delivered (its offsets may be committed).
    public typealias DeadLetter = @Sendable (_ traceID: TraceID, _ request: [UInt8], _ reason: String, _ copied: @escaping @Sendable () -> Void) -> Void
    private let deadLetter: DeadLetter?

    public init(
        topic: String, bootstrapServers: String, properties: KafkaProperties, deadLetter: DeadLetter? = nil, logger: Logger
    ) throws(KafkaError) {
        self.topic = topic
        self.logger = logger
        self.deadLetter = deadLetter
        var effective = properties
        effective["acks"] = "all"
        producer = try KafkaProducer(bootstrapServers: bootstrapServers, properties: effective, logger: logger)
        // Delivery reports (our acknowledgements) are served by polling.
        let producer = self.producer, poller = self.poller
        let thread = Thread {
            while poller.running.load(ordering: .relaxed) { producer.poll(timeout: .milliseconds(50)) }
        }
        thread.name = "tailgate-kafka-sink"
        thread.start()
    }

    deinit { poller.running.store(false, ordering: .relaxed) }

    /// Publishes `trace` as it is (it carries `tailgate.policy` already); `acknowledged` runs once the
    /// broker has it.
    public func send(_ trace: StoredTrace, acknowledged: @escaping @Sendable () -> Void) {
        publish(trace.request, traceID: trace.traceID, stored: acknowledged)
    }

    /// Publishes an `ExportTraceServiceRequest` for `traceID` as it is (in pieces if it is too large).
    public func publish(_ request: [UInt8], traceID: TraceID, stored: @escaping @Sendable () -> Void) {
        pending.add(1, ordering: .relaxed)
        pendingBytes.add(request.count, ordering: .relaxed)
        let size = request.count
        send(request, traceID: traceID, key: Array(traceID.hex.utf8), attempt: 0) { [self] in
            // Acknowledged before the count drops, so a flush that returns has every acknowledgement out.
            deliveredCount.add(1, ordering: .relaxed)
            stored()
            pendingBytes.add(-size, ordering: .relaxed)
            pending.add(-1, ordering: .relaxed)
        }
    }

    /// Sends one piece; `done` runs once it (or every piece it was split into) is acknowledged.
    private func send(_ payload: [UInt8], traceID: TraceID, key: [UInt8], attempt: Int, done: @escaping @Sendable () -> Void) {
        let deliver: @Sendable (KafkaError?) -> Void = { [self] error in
            guard let error else {
                lastFailure.withLock { $0 = nil }
                return done()
            }
            if error.isMessageTooLarge {
                return tooLarge(payload, traceID: traceID, key: key, error: error, done: done)
            }
            if error.isQueueFull {
                // librdkafka's queue is full (the cluster is slow or away): try again shortly, off the
                // caller's thread — a shard must not wait here. The bytes stay counted as queued, so
                // the engine pauses consumption instead of piling more up.
                DispatchQueue.global().asyncAfter(deadline: .now() + 0.1) {
                    self.send(payload, traceID: traceID, key: key, attempt: attempt, done: done)
                }
                return
            }
            failureCount.add(1, ordering: .relaxed)
            lastFailure.withLock { $0 = error.description }
            throttle.log(logger, level: .error, key: "kafka-sink", "publishing a kept trace to \(topic) failed (attempt \(attempt + 1)); retrying: \(error)")
            // Back off a little, off the poll thread, then try again.
            DispatchQueue.global().asyncAfter(deadline: .now() + min(5, 0.2 * Double(1 << min(attempt, 5)))) {
                self.send(payload, traceID: traceID, key: key, attempt: attempt + 1, done: done)
            }
        }
        let failure: KafkaError? = payload.withUnsafeBytes { value in
            key.withUnsafeBytes { keyBytes in
                do throws(KafkaError) {
                    try producer.send(topic: topic, key: keyBytes, value: value, queueFullWait: .zero, onDelivery: deliver)
                    return nil
                } catch {
                    return error
                }
            }
        }
        if let failure { deliver(failure) }
    }

    /// A piece over the size limit: its two halves go instead; a single span is dead-lettered.
    private func tooLarge(_ payload: [UInt8], traceID: TraceID, key: [UInt8], error: KafkaError, done: @escaping @Sendable () -> Void) {
        let halves: (first: [UInt8], second: [UInt8])?
        do { halves = try TraceMerger.halves(payload) } catch {
            halves = nil
        }
        guard let halves else {
            oversizeCount.add(1, ordering: .relaxed)
            logger.error(
                "a span of kept trace \(traceID.hex) is \(payload.count) bytes, over the size \(topic) accepts; not published\(deadLetter == nil ? " (set a dead-letter topic to keep a copy)" : ", copied to the dead-letter topic"): \(error)")
            guard let deadLetter else { return done() }
            return deadLetter(traceID, payload, error.description, done)
        }
        splitCount.add(1, ordering: .relaxed)
        let remaining = Atomic<Int>(2)
        let both: @Sendable () -> Void = { if remaining.subtract(1, ordering: .acquiringAndReleasing).newValue == 0 { done() } }
        send(halves.first, traceID: traceID, key: key, attempt: 0, done: both)
        send(halves.second, traceID: traceID, key: key, attempt: 0, done: both)
    }

    /// Waits until every published trace is acknowledged (or `timeout`).
    @discardableResult
    public func flush(timeout: Duration = .seconds(30)) -> Bool {
        waitUntilDrained(timeout: timeout) { pending.load(ordering: .relaxed) == 0 }
    }

    public func stop(timeout: Duration) {
        flush(timeout: timeout)
        poller.running.store(false, ordering: .relaxed)
    }

    public var statistics: TraceSinkStatistics {
        TraceSinkStatistics(
            delivered: delivered, errors: failures, pending: unacknowledged, splits: splits, oversizeSpans: oversizeSpans,
            failing: lastFailure.withLock { $0 })
    }

    public var queuedBytes: Int { unacknowledgedBytes }

    public var unacknowledged: Int { pending.load(ordering: .relaxed) }
    /// Bytes of kept traces handed to the producer and not yet acknowledged (they count toward the
    /// buffer limit: a slow or unreachable topic pauses consumption).
    public var unacknowledgedBytes: Int { pendingBytes.load(ordering: .relaxed) }
    /// Traces the broker acknowledged.
    public var delivered: Int { deliveredCount.load(ordering: .relaxed) }
    /// Failed attempts (each retried).
    public var failures: Int { failureCount.load(ordering: .relaxed) }
    /// Spans too large to publish even alone (dead-lettered when a dead-letter topic is set).
    public var oversizeSpans: Int { oversizeCount.load(ordering: .relaxed) }
    /// Pieces split in two because they were over the size limit.
    public var splits: Int { splitCount.load(ordering: .relaxed) }
}
