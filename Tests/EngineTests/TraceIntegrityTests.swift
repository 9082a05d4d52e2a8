import Engine
import Foundation
import Kafka
import OTLP
import Storage
import Testing
import TestSupport
import Traffic

/// Every stored trace says whether it is whole: `tailgate.trace.complete` and
/// `tailgate.trace.orphan_spans` on its root span (its first span when rootless); a span that came
/// after its trace was kept says `tailgate.late`. Expected values are computed here from the spans
/// themselves (a set of ids) and from the traffic generator's truth (its rootless flag).
@Suite(.timeLimit(.minutes(10))) struct TraceIntegrityTests {
    /// One request of the given (span id, parent id) pairs, trace `trace`.
    func request(_ trace: TraceID, _ spans: [(UInt64, UInt64)]) -> [UInt8] {
        var writer = ProtoWriter()
        writer.writeNested(1) { rs in
            rs.writeNested(2) { ss in
                for (id, parent) in spans {
                    ss.writeNested(2) { s in
                        s.writeBytesField(1, trace.bytes)
                        s.writeBytesField(2, SpanID(rawValue: id).bytes)
                        if parent != 0 { s.writeBytesField(4, SpanID(rawValue: parent).bytes) }
                        s.writeStringField(5, "op-\(id)")
                    }
                }
            }
        }
        return writer.bytes
    }

    /// The integrity attributes of each span of an exported request, by span id.
    func stamped(_ bytes: [UInt8]) throws -> [UInt64: (complete: Bool?, orphans: Int64?, late: Bool?)] {
        var batch = SpanBatch(selection: AttributeSelection(keys: [TraceIntegrity.completeKey, TraceIntegrity.orphanSpansKey, TraceIntegrity.lateKey]))
        _ = try SpanDecoder(encoding: .otlpProto).decode(bytes, into: &batch)
        var result: [UInt64: (Bool?, Int64?, Bool?)] = [:]
        for span in batch.spans {
            var complete: Bool?, orphans: Int64?, late: Bool?
            if case .bool(let value) = batch.value(of: AttributeKeyID(rawValue: 0), for: span) { complete = value }
            if case .int(let value) = batch.value(of: AttributeKeyID(rawValue: 1), for: span) { orphans = value }
            if case .bool(let value) = batch.value(of: AttributeKeyID(rawValue: 2), for: span) { late = value }
            result[span.spanID.rawValue] = (complete, orphans, late)
        }
        return result
    }

    func trace(_ id: TraceID, _ spans: [(UInt64, UInt64)]) throws -> TraceData {
        var batch = SpanBatch()
        _ = try SpanDecoder(encoding: .otlpProto).decode(request(id, spans), into: &batch)
        var trace = TraceData(traceID: id)
        for span in batch.spans { trace.append(span, from: batch, batchGeneration: 1) }
        return trace
    }

    /// By hand: a root with a child and a grandchild is whole; a span naming parent 9 (absent) is an
    /// orphan; without the root, its children are orphans and the first span carries the verdict.
    @Test func integrityIsStampedOnTheRootAndOnlyThere() throws {
        let id = TraceID(high: 0x1A7E, low: 1)
        let whole = try trace(id, [(2, 1), (1, 0), (3, 2)])
        #expect(whole.integrity == TraceIntegrity(rootSeen: true, orphanSpans: 0))
        let stampedWhole = try stamped(whole.exportRequest(policy: "p", integrity: whole.integrity))
        #expect(stampedWhole[1]?.complete == true && stampedWhole[1]?.orphans == 0, "on the root (span 1), though it came second")
        #expect(stampedWhole[2]?.complete == nil && stampedWhole[3]?.complete == nil, "and nowhere else")

        let orphaned = try trace(id, [(1, 0), (2, 1), (3, 9), (4, 3)])
        #expect(orphaned.integrity == TraceIntegrity(rootSeen: true, orphanSpans: 1))
        #expect(try stamped(orphaned.exportRequest(integrity: orphaned.integrity))[1]?.complete == false)

        let rootless = try trace(id, [(2, 1), (3, 1), (4, 2)])
        #expect(rootless.integrity == TraceIntegrity(rootSeen: false, orphanSpans: 2))
        let stampedRootless = try stamped(rootless.exportRequest(integrity: rootless.integrity))
        #expect(stampedRootless[2]?.complete == false && stampedRootless[2]?.orphans == 2, "on the first span")
        #expect(stampedRootless[3]?.complete == nil)

        let late = try stamped(try trace(id, [(7, 1)]).exportRequest(policy: "p", late: true))
        #expect(late[7]?.late == true && late[7]?.complete == nil)
    }

    /// End to end: DogBook traffic with a third of the traces sent without their root, everything
    /// kept. The store's search for incomplete traces finds exactly the generator's rootless ones,
    /// each stamped with the number of spans whose parent (the root) never came; the metric counts them.
    @Test func storedTracesSayWhetherTheyAreWhole() throws {
        let cluster = try KafkaMockCluster(topics: [("spans", 2)], logger: quietLogger)
        try produceTraffic(to: "spans", on: cluster, traces: 300, seed: 85, rootlessRate: 0.3)
        let data = FileManager.default.temporaryDirectory.appendingPathComponent("tailgate-integrity-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: data) }
        var configuration = EngineConfiguration(brokers: cluster.bootstrapServers)
        configuration.topics = ["spans"]
        configuration.rulesPath = try writeRules("decision_wait: 300ms\npolicies: [{name: all, type: always_sample}]")
        configuration.dataDirectory = data.path
        configuration.exitOnEOF = true
        let engine = try Engine(configuration: configuration, logger: quietLogger)
        let summary = engine.run()
        #expect(summary.outcome == "end_of_input")

        // The truth: rootless traces with spans, and per trace the spans whose parent is not in it.
        var generator = DogBookTraffic(seed: 85, errorRate: 0.02, slowRate: 0.03, rootlessRate: 0.3)
        var expectedOrphans: [String: Int] = [:]
        for _ in 0..<300 {
            let trace = generator.nextTrace(startUnixNano: 1)
            guard trace.isRootless, trace.spanCount > 0 else { continue }
            var batch = SpanBatch()
            _ = try SpanDecoder(encoding: .otlpProto).decode(DogBookTraffic.protobuf([trace]), into: &batch)
            let ids = Set(batch.spans.map(\.spanID))
            expectedOrphans[trace.traceID.hex] = batch.spans.filter { !ids.contains($0.parentSpanID) }.count
        }
        #expect(expectedOrphans.count > 50)

        let store = try TraceStore(directory: data, readOnly: true)
        var request = TraceSearchRequest(query: try TraceQL.parse("{ span.tailgate.trace.complete = false }"))
        request.limit = 1000
        let found = Set(try store.search(request).traces.map(\.traceID.hex))
        #expect(found == Set(expectedOrphans.keys), "\(found.symmetricDifference(expectedOrphans.keys).count) differ")
        var wrong: [String] = []
        for (hex, orphans) in expectedOrphans {
            let stored = try #require(try store.trace(TraceID(hex: hex)!, policyAttribute: false))
            let stamps = try stamped(stored).values.compactMap { $0.orphans }
            if stamps != [Int64(orphans)] { wrong.append("\(hex): \(stamps), expected [\(orphans)]") }
        }
        #expect(wrong.isEmpty, "\(wrong.prefix(3))")
        #expect(engine.prometheusText().contains("\ntailgate_traces_kept_incomplete_total \(expectedOrphans.count)\n"))
    }
}
