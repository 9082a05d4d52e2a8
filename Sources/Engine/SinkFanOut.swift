import Foundation
import OTLP
import Sampling
import Storage
import Synchronization

/// Hands each kept trace to every configured sink and reports it stored when all of them have it:
/// the offsets of its spans wait for the slowest sink.
final class SinkFanOut: KeptTraceSink {
    let store: StoreWriter?
    let kafka: KafkaTraceSink?

    init(store: StoreWriter?, kafka: KafkaTraceSink?) {
        self.store = store
        self.kafka = kafka
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

    private var sinkCount: Int { (store == nil ? 0 : 1) + (kafka == nil ? 0 : 1) }

    func keep(_ trace: TraceData, policy: String, stored: @escaping @Sendable () -> Void) {
        guard sinkCount > 0 else { return stored() }
        let countdown = Countdown(sinkCount, stored)
        store?.keep(trace, policy: policy, stored: countdown.tick)
        kafka?.publish(StoredTrace(traceID: trace.traceID, policy: policy, request: trace.exportRequest()), stored: countdown.tick)
    }

    func keepLate(_ span: SpanRecord, from batch: SpanBatch, stored: @escaping @Sendable () -> Void) {
        guard sinkCount > 0 else { return stored() }
        let countdown = Countdown(sinkCount, stored)
        store?.keepLate(span, from: batch, stored: countdown.tick)
        if let kafka {
            var single = TraceData(traceID: span.traceID)
            single.append(span, from: batch, batchGeneration: 0)
            kafka.publish(StoredTrace(traceID: span.traceID, policy: "", request: single.exportRequest()), stored: countdown.tick)
        }
    }

    func flush() {
        store?.flush()
        kafka?.flush()
    }

    func stop() {
        store?.stop()
        kafka?.stop()
    }
}
