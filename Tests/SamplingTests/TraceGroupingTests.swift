import OTLP
import Sampling
import Testing

/// Spans of a poll put trace by trace, against a naive reference: a stable sort of the positions by
/// the order in which each trace first appears.
@Suite struct TraceGroupingTests {
    /// A batch with one span per trace number, in order (span ids: the position + 1).
    func batch(traces: [UInt64]) throws -> SpanBatch {
        var request = ProtoWriter()
        request.writeNested(1) { rs in
            rs.writeNested(1) { resource in writeValue(&resource, "service.name", .string("feed-service")) }
            rs.writeNested(2) { ss in
                for (position, trace) in traces.enumerated() {
                    ss.writeNested(2) { w in
                        w.writeBytesField(1, TraceID(high: 7, low: trace).bytes)
                        w.writeBytesField(2, SpanID(rawValue: UInt64(position + 1)).bytes)
                        w.writeStringField(5, "GET /feed")
                        w.writeFixed64Field(7, 1)
                        w.writeFixed64Field(8, 2)
                    }
                }
            }
        }
        var batch = SpanBatch()
        _ = try SpanDecoder(encoding: .otlpProto).decode(request.bytes, into: &batch)
        return batch
    }

    func reference(_ indices: [Int32], traces: [UInt64]) -> [Int32] {
        var firstSeen: [UInt64: Int] = [:]
        for index in indices where firstSeen[traces[Int(index)]] == nil { firstSeen[traces[Int(index)]] = firstSeen.count }
        return indices.indices.map(Int32.init).sorted { a, b in
            let (ra, rb) = (firstSeen[traces[Int(indices[Int(a)])]]!, firstSeen[traces[Int(indices[Int(b)])]]!)
            return ra != rb ? ra < rb : a < b
        }
    }

    @Test func tracesInPiecesComeOutWhole() throws {
        // Three services' spans of three traces, as an exporter batches them: a, b, c, then a, b, c.
        let traces: [UInt64] = [1, 2, 3, 1, 2, 3, 1, 3]
        let batch = try batch(traces: traces)
        var grouping = TraceGrouping()
        let indices = traces.indices.map(Int32.init)
        let grouped = grouping.group(indices, in: batch)
        #expect(grouped)
        #expect(grouping.order == [0, 3, 6, 1, 4, 2, 5, 7])
    }

    @Test func tracesAlreadyWholeAreLeftAsTheyAre() throws {
        let traces: [UInt64] = [1, 1, 1, 2, 3, 3, 4]
        let batch = try batch(traces: traces)
        var grouping = TraceGrouping()
        let whole = grouping.group(traces.indices.map(Int32.init), in: batch)
        let none = grouping.group([], in: batch)
        let one = grouping.group([4], in: batch)
        #expect(!whole && !none && !one)
    }

    @Test(arguments: 0..<4) func randomPollsAgreeWithTheReference(seed: Int) throws {
        var random = SplitMix(seed: UInt64(seed) &+ 11)
        var grouping = TraceGrouping()
        for round in 0..<60 {
            // Messages of 1–30 traces, each trace's spans spread over up to five services.
            var traces: [UInt64] = []
            var nextTrace = UInt64(round * 10_000)
            for _ in 0..<(1 + random.below(12)) {
                let inMessage = (0..<(1 + random.below(30))).map { _ in nextTrace + UInt64(random.below(1_000)) }
                nextTrace += 1_000
                for _ in 0..<(1 + random.below(5)) {
                    for trace in inMessage where random.chance(70) { traces.append(trace) }
                }
            }
            guard !traces.isEmpty else { continue }
            let batch = try batch(traces: traces)
            // This shard's share: about half the spans, in batch order.
            var indices: [Int32] = []
            for position in traces.indices where traces[position] % 2 == UInt64(round % 2) || random.chance(10) {
                indices.append(Int32(position))
            }
            let expected = reference(indices, traces: traces)
            if grouping.group(indices, in: batch) {
                #expect(grouping.order == expected)
            } else {
                // Left as it is only when it is already grouped.
                #expect(expected == indices.indices.map(Int32.init))
            }
        }
    }
}
