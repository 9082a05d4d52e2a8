import Foundation
import OTLP
import Testing

/// `tailgate route`'s core: OTLP input of any shape out as one request per trace, spans byte for byte.
@Suite struct TraceSplitterTests {
    /// What the official protobuf runtime read from the SDK fixture, per trace: span ids in wire
    /// order with service, scope and schema URLs.
    private func expectedByTrace(_ name: String) throws -> [String: [[String: Any]]] {
        Dictionary(grouping: try Fixtures.expected(name)) { $0["traceId"] as! String }
    }

    private func split(_ messages: [([UInt8], OTLPEncoding)], maxBytes: Int = .max) throws -> [(TraceID, [UInt8])] {
        var splitter = TraceSplitter()
        for (message, encoding) in messages { _ = try splitter.add(message, encoding: encoding) }
        var out: [(TraceID, [UInt8])] = []
        splitter.forEachTrace(maxBytes: maxBytes) { out.append(($0, $1)) }
        return out
    }

    @Test(arguments: [("many_traces.pb", OTLPEncoding.otlpProto), ("many_traces.json", .otlpJSON)])
    func oneRequestPerTraceWithEverySpanUnderItsResourceAndScope(fixture: String, encoding: OTLPEncoding) throws {
        let expected = try expectedByTrace("many_traces.expected.json")
        let out = try split([(try Fixtures.bytes(fixture), encoding)])
        #expect(out.count == expected.count, "one request per trace (\(expected.count) traces in the fixture)")
        #expect(Set(out.map(\.0.hex)) == Set(expected.keys))
        for (id, request) in out {
            var batch = SpanBatch()
            _ = try SpanDecoder(encoding: .otlpProto).decode(request, into: &batch)
            let spans = try #require(expected[id.hex])
            #expect(Set(batch.spans.map(\.traceID)) == [id], "only its own spans")
            #expect(batch.spans.map(\.spanID.hex) == spans.map { $0["spanId"] as! String }, "in wire order")
            for (record, want) in zip(batch.spans, spans) {
                #expect(batch.string(batch.serviceName(of: record)) == want["serviceName"] as! String)
                let scope = batch.scopes[Int(record.scopeIndex)]
                #expect(batch.string(scope.name) == want["scopeName"] as! String)
                #expect(batch.string(scope.schemaURL) == want["scopeSchemaUrl"] as! String)
                #expect(batch.string(batch.resource(of: record).schemaURL) == want["resourceSchemaUrl"] as! String)
                #expect(batch.string(record.name) == want["name"] as! String)
            }
        }
    }

    /// The input's span bytes, unchanged: every field the decoder does not read (events, links,
    /// attributes) leaves as it came.
    @Test func spansLeaveByteForByte() throws {
        let input = try Fixtures.bytes("many_traces.pb")
        var original = SpanBatch()
        _ = try SpanDecoder(encoding: .otlpProto).decode(input, into: &original)
        var want: [SpanID: [UInt8]] = [:]
        for span in original.spans { want[span.spanID] = original.withBytes(span.encoded) { Array($0) } }
        var seen = 0
        for (_, request) in try split([(input, .otlpProto)]) {
            var batch = SpanBatch()
            _ = try SpanDecoder(encoding: .otlpProto).decode(request, into: &batch)
            for span in batch.spans {
                #expect(batch.withBytes(span.encoded) { Array($0) } == want[span.spanID])
                seen += 1
            }
        }
        #expect(seen == 39, "the fixture's 39 spans, each once")
    }

    /// A trace spread over two messages (two services' exporters) leaves as one request.
    @Test func aTraceFromTwoMessagesLeavesTogether() throws {
        let trace = [UInt8](repeating: 0xAB, count: 16)
        let other = [UInt8](repeating: 0xCD, count: 16)
        let first = MessageBuilder.request(service: "frontend", spans: [
            MessageBuilder.span(traceID: trace, spanID: [1, 1, 1, 1, 1, 1, 1, 1]),
            MessageBuilder.span(traceID: other, spanID: [2, 2, 2, 2, 2, 2, 2, 2]),
        ])
        let second = MessageBuilder.request(service: "feed", spans: [
            MessageBuilder.span(traceID: trace, spanID: [3, 3, 3, 3, 3, 3, 3, 3], parent: [1, 1, 1, 1, 1, 1, 1, 1]),
        ])
        let out = try split([(first, .otlpProto), (second, .otlpProto)])
        #expect(out.map(\.0.hex) == [HexDigits.string(trace), HexDigits.string(other)], "in order of first span")
        var batch = SpanBatch()
        _ = try SpanDecoder(encoding: .otlpProto).decode(out[0].1, into: &batch)
        #expect(batch.spans.map(\.spanID.hex) == ["0101010101010101", "0303030303030303"])
        #expect(batch.spans.map { batch.string(batch.serviceName(of: $0)) } == ["frontend", "feed"], "each under its own resource")
        #expect(batch.resources.count == 2)
    }

    /// Above `maxBytes` a trace leaves in parts, split by span; together they hold every span once.
    @Test func anOversizeTraceLeavesInParts() throws {
        let expected = try expectedByTrace("many_traces.expected.json")
        let out = try split([(try Fixtures.bytes("many_traces.pb"), .otlpProto)], maxBytes: 2_000)
        #expect(out.count > expected.count)
        var spansPerTrace: [String: [String]] = [:]
        for (id, request) in out {
            var batch = SpanBatch()
            _ = try SpanDecoder(encoding: .otlpProto).decode(request, into: &batch)
            if batch.spans.count > 1 { #expect(request.count <= 2_000) }
            spansPerTrace[id.hex, default: []] += batch.spans.map(\.spanID.hex)
        }
        for (id, spans) in expected {
            #expect(spansPerTrace[id] == spans.map { $0["spanId"] as! String })
        }
    }

    /// A malformed message is refused whole; what was added before stays and leaves as usual.
    @Test func aMalformedMessageAddsNothing() throws {
        var splitter = TraceSplitter()
        _ = try splitter.add(try Fixtures.bytes("many_traces.pb"), encoding: .otlpProto)
        #expect(throws: OTLPDecodeError.self) { _ = try splitter.add([0x0A, 0xFF, 0x01], encoding: .otlpProto) }
        #expect(splitter.spanCount == 39)
        #expect(splitter.traceCount == 3)
        splitter.removeAll()
        #expect(splitter.traceCount == 0)
        var calls = 0
        splitter.forEachTrace { _, _ in calls += 1 }
        #expect(calls == 0)
    }
}
