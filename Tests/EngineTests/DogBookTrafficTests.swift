import Foundation
import Engine
import OTLP
import Testing

@Suite struct DogBookTrafficTests {
    @Test func tracesAreWholeTreesWithOneRootAcrossServices() throws {
        var traffic = DogBookTraffic(seed: 3, errorRate: 0.5, slowRate: 0.5)
        var services = Set<String>()
        var errors = 0
        for i in 0..<200 {
            let trace = traffic.nextTrace(startUnixNano: 1_764_000_000_000_000_000 + UInt64(i))
            var batch = SpanBatch()
            let outcome = try SpanDecoder(encoding: .otlpProto).decode(DogBookTraffic.protobuf([trace]), into: &batch)
            #expect(outcome.rejectedSpans == 0)
            #expect(batch.spans.count == trace.spanCount)
            #expect(Set(batch.spans.map(\.traceID)) == [trace.traceID])
            let ids = Set(batch.spans.map(\.spanID))
            #expect(batch.spans.filter(\.isRoot).count == 1, "W3C propagation: one root per trace")
            #expect(batch.spans.allSatisfy { $0.isRoot || ids.contains($0.parentSpanID) }, "every parent is in the trace")
            #expect(batch.spans.allSatisfy { $0.endTimeUnixNano >= $0.startTimeUnixNano })
            for span in batch.spans { services.insert(batch.string(batch.serviceName(of: span))) }
            if batch.spans.contains(where: { $0.statusCode == .error }) { errors += 1 }
        }
        #expect(services == ["frontend", "api-gateway", "feed-service", "photo-service", "user-service", "auth-service"])
        #expect(errors > 50 && errors < 150, "about half the traces fail at error rate 0.5")
    }

    @Test func sameSeedSameTrafficAndJSONMatchesProtobuf() throws {
        var a = DogBookTraffic(seed: 11)
        var b = DogBookTraffic(seed: 11)
        let traces = (0..<5).map { a.nextTrace(startUnixNano: 1_764_000_000_000_000_000 + UInt64($0)) }
        let again = (0..<5).map { b.nextTrace(startUnixNano: 1_764_000_000_000_000_000 + UInt64($0)) }
        #expect(DogBookTraffic.protobuf(traces) == DogBookTraffic.protobuf(again))

        var fromProto = SpanBatch()
        var fromJSON = SpanBatch()
        _ = try SpanDecoder(encoding: .otlpProto).decode(DogBookTraffic.protobuf(traces), into: &fromProto)
        _ = try SpanDecoder(encoding: .otlpJSON).decode(DogBookTraffic.json(traces), into: &fromJSON)
        #expect(fromProto.spans.count == fromJSON.spans.count)
        for (p, j) in zip(fromProto.spans, fromJSON.spans) {
            #expect(p.traceID == j.traceID && p.spanID == j.spanID && p.parentSpanID == j.parentSpanID)
            #expect(fromProto.string(p.name) == fromJSON.string(j.name))
            #expect(p.kind == j.kind && p.flags == j.flags && p.statusCode == j.statusCode)
            #expect(p.startTimeUnixNano == j.startTimeUnixNano && p.endTimeUnixNano == j.endTimeUnixNano)
            // Same fields, possibly in another order: the same encoded size.
            #expect(p.encoded.count == j.encoded.count)
        }
    }
}

@Suite struct DemoRulesTests {
    @Test func builtInDemoRulesArePipelinesDefault() throws {
        let path = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("pipelines/default.yaml")
        #expect(try String(contentsOf: path, encoding: .utf8) == DemoSession.defaultRulesText)
    }
}
