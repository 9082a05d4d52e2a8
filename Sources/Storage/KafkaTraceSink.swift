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
public final class KafkaTraceSink: TraceSink, @unchecked Sendable {
    public let name = "kafka"
    public let topic: String
    private let producer: KafkaProducer
    private let logger: Logger
    private let throttle = LogThrottle(interval: .seconds(10))
    private let polling = Atomic<Bool>(true)
    private let pending = Atomic<Int>(0)
    private let pendingBytes = Atomic<Int>(0)
    private let deliveredCount = Atomic<Int>(0)
    private let failureCount = Atomic<Int>(0)

    public init(topic: String, bootstrapServers: String, properties: KafkaProperties, logger: Logger) throws(KafkaError) {
        self.topic = topic
        self.logger = logger
        var effective = properties
        effective["acks"] = "all"
        producer = try KafkaProducer(bootstrapServers: bootstrapServers, properties: effective, logger: logger)
        // Delivery reports (our acknowledgements) are served by polling.
        let thread = Thread { [self] in
            while polling.load(ordering: .relaxed) { producer.poll(timeout: .milliseconds(50)) }
        }
        thread.name = "tailgate-kafka-sink"
        thread.start()
    }

    /// Publishes `trace` as it is (it carries `tailgate.policy` already); `acknowledged` runs once the
    /// broker has it.
    public func send(_ trace: StoredTrace, acknowledged: @escaping @Sendable () -> Void) {
        publish(trace.request, traceID: trace.traceID, stored: acknowledged)
    }

    /// Publishes an `ExportTraceServiceRequest` for `traceID` as it is.
    public func publish(_ request: [UInt8], traceID: TraceID, stored: @escaping @Sendable () -> Void) {
        pending.add(1, ordering: .relaxed)
        pendingBytes.add(request.count, ordering: .relaxed)
        send(request, key: Array(traceID.hex.utf8), attempt: 0, stored: stored)
    }

    private func send(_ payload: [UInt8], key: [UInt8], attempt: Int, stored: @escaping @Sendable () -> Void) {
        let deliver: @Sendable (KafkaError?) -> Void = { [self] error in
            guard let error else {
                // Acknowledged before the count drops, so a flush that returns has every acknowledgement out.
                deliveredCount.add(1, ordering: .relaxed)
                stored()
                pendingBytes.add(-payload.count, ordering: .relaxed)
                pending.add(-1, ordering: .relaxed)
                return
            }
            failureCount.add(1, ordering: .relaxed)
            throttle.log(logger, level: .error, key: "kafka-sink", "publishing a kept trace to \(topic) failed (attempt \(attempt + 1)); retrying: \(error)")
            // Back off a little, off the poll thread, then try again.
            DispatchQueue.global().asyncAfter(deadline: .now() + min(5, 0.2 * Double(1 << min(attempt, 5)))) {
                self.send(payload, key: key, attempt: attempt + 1, stored: stored)
            }
        }
        let failure: KafkaError? = payload.withUnsafeBytes { value in
            key.withUnsafeBytes { keyBytes in
                do throws(KafkaError) {
                    try producer.send(topic: topic, key: keyBytes, value: value, onDelivery: deliver)
                    return nil
                } catch {
                    return error
                }
            }
        }
        if let failure { deliver(failure) }
    }

    /// Waits until every published trace is acknowledged (or `timeout`).
    @discardableResult
    public func flush(timeout: Duration = .seconds(30)) -> Bool {
        waitUntilDrained(timeout: timeout) { pending.load(ordering: .relaxed) == 0 }
    }

    public func stop(timeout: Duration) {
        flush(timeout: timeout)
        polling.store(false, ordering: .relaxed)
    }

    public var statistics: TraceSinkStatistics {
        TraceSinkStatistics(delivered: delivered, errors: failures, pending: unacknowledged)
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
}
