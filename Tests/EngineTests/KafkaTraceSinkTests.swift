import HTTP
import Ingest
import Route
import Sampling
import Sinks
import Foundation
import Kafka
import OTLP
import Storage
import Synchronization
import Testing
import TestSupport

/// The Kafka sink and a trace larger than the producer's `message.max.bytes`: split by span into
/// pieces that fit (each keyed by the trace id), never retried as a whole; a span that alone does not
/// fit is counted and dead-lettered, and its trace still counts as stored.
@Suite struct KafkaTraceSinkTests {
    /// Spans of trace `id` with names of `nameBytes` bytes.
    func trace(_ id: TraceID, spans: ClosedRange<UInt64>, nameBytes: Int) -> [UInt8] {
        otlpTrace(id, spans: spans) { _ in String(repeating: "n", count: nameBytes) }
    }

    /// librdkafka's queue full (the broker away): `send` returns at once — a shard calls it — and
    /// the traces go out once the broker is back (before, each send waited up to 30 s in the shard).
    @Test func aFullQueueNeverHoldsTheCaller() throws {
        let cluster = try KafkaMockCluster(topics: [("kept", 1)], logger: quietLogger)
        var properties = KafkaProperties()
        properties["queue.buffering.max.messages"] = "2"
        let sink = try KafkaTraceSink(topic: "kept", bootstrapServers: cluster.bootstrapServers, properties: properties, logger: quietLogger)
        defer { sink.stop(timeout: .seconds(5)) }
        try cluster.setBroker(1, down: true)
        let acknowledged = Atomic<Int>(0)
        let returned = DispatchSemaphore(value: 0)
        Thread {
            for low in UInt64(1)...6 {
                let id = TraceID(high: 0xF011, low: low)
                sink.send(StoredTrace(traceID: id, policy: "p", request: self.trace(id, spans: 1...2, nameBytes: 10))) {
                    acknowledged.add(1, ordering: .relaxed)
                }
            }
            returned.signal()
        }.start()
        #expect(returned.wait(timeout: .now() + 5) == .success, "six sends into a queue of two returned while the broker was away")
        #expect(acknowledged.load(ordering: .relaxed) == 0)
        try cluster.setBroker(1, down: false)
        #expect(sink.flush(timeout: .seconds(60)), "every trace acknowledged once the broker is back")
        #expect(acknowledged.load(ordering: .relaxed) == 6)
    }

    @Test func anOversizeTraceIsSplitAndAnOversizeSpanDeadLettered() throws {
        let cluster = try KafkaMockCluster(topics: [("kept", 1)], logger: quietLogger)
        var properties = KafkaProperties()
        properties["message.max.bytes"] = "2000"
        let deadLettered = Mutex<[(TraceID, Int)]>([])
        let sink = try KafkaTraceSink(
            topic: "kept", bootstrapServers: cluster.bootstrapServers, properties: properties,
            deadLetter: { id, request, _, copied in
                deadLettered.withLock { $0.append((id, request.count)) }
                copied()
            }, logger: quietLogger)
        defer { sink.stop(timeout: .seconds(5)) }
        // 40 spans of ~300 bytes: ~13 KB, 6× the limit. Then a trace with one 5 000-byte span and one small one.
        let big = TraceID(high: 0xB16, low: 1), mixed = TraceID(high: 0xB16, low: 2)
        let acknowledged = Atomic<Int>(0)
        sink.send(StoredTrace(traceID: big, policy: "p", request: trace(big, spans: 1...40, nameBytes: 280))) {
            acknowledged.add(1, ordering: .relaxed)
        }
        var mixedRequest = trace(mixed, spans: 100...100, nameBytes: 5000)
        mixedRequest += trace(mixed, spans: 101...101, nameBytes: 10)  // concatenated requests merge
        sink.send(StoredTrace(traceID: mixed, policy: "p", request: mixedRequest)) { acknowledged.add(1, ordering: .relaxed) }
        #expect(sink.flush(timeout: .seconds(20)), "both traces acknowledged (neither retried forever)")
        #expect(acknowledged.load(ordering: .relaxed) == 2, "each acknowledged once")
        #expect(sink.oversizeSpans == 1)
        #expect(sink.splits >= 3, "13 KB in pieces under 2 000 bytes takes at least 3 splits")
        #expect(deadLettered.withLock { $0.map(\.0) } == [mixed])
        #expect(deadLettered.withLock { $0.first?.1 ?? 0 } > 5000)

        let reader = try KafkaConsumer(
            configuration: KafkaConsumerConfiguration(bootstrapServers: cluster.bootstrapServers, groupID: "check", topics: ["kept"], statisticsInterval: nil),
            logger: quietLogger)
        defer { reader.close() }
        var spans: [String: Set<SpanID>] = [:]
        var largest = 0
        var wrongKeys = 0
        let complete = waitUntil(.seconds(30)) {
            reader.poll(timeout: .milliseconds(100)) { message in
                let key = String(decoding: message.key ?? UnsafeRawBufferPointer(start: nil, count: 0), as: UTF8.self)
                largest = max(largest, message.payload.count)
                var batch = SpanBatch()
                guard (try? SpanDecoder(encoding: .otlpProto).decode(message.payload, into: &batch)) != nil else { return }
                for span in batch.spans {
                    if span.traceID.hex != key { wrongKeys += 1 }
                    spans[key, default: []].insert(span.spanID)
                }
            }
            return spans[big.hex]?.count == 40 && spans[mixed.hex]?.count == 1
        }
        #expect(complete, "every span of the big trace and the small span of the mixed one arrived")
        #expect(spans[big.hex] == Set((1...40).map { SpanID(rawValue: $0) }))
        #expect(spans[mixed.hex] == [SpanID(rawValue: 101)])
        #expect(largest < 2000, "every piece fits")
        #expect(wrongKeys == 0, "every piece keyed by its trace id")
    }
}
