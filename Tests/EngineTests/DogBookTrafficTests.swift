import HTTP
import Ingest
import Route
import Sinks
import Foundation
import Engine
import Traffic
import OTLP
import Sampling
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
        #expect(try String(contentsOf: path, encoding: .utf8) == DefaultRules.text)
    }
}

/// pipelines/dogbook.yaml on DogBook traffic does what its comments promise.
@Suite struct DogBookRulesTests {
    @Test func dogbookRulesKeepUploadAndLoginErrorsAndDropHealthChecks() throws {
        let path = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("pipelines/dogbook.yaml").path
        let rules = try RuleLoader.load(path)
        var traffic = DogBookTraffic(seed: 7, errorRate: 0.05, slowRate: 0.05)
        var assembler = TraceAssembler()
        var generated: [String: DogBookTraffic.Trace] = [:]
        for _ in 0..<3000 {
            let trace = traffic.nextTrace(startUnixNano: 1)
            generated[trace.traceID.hex] = trace
            var batch = SpanBatch(selection: rules.selection)
            _ = try SpanDecoder(encoding: .otlpProto).decode(DogBookTraffic.protobuf([trace]), into: &batch)
            assembler.add(batch)
        }
        let decided = rules.evaluate(assembler.traces)
        #expect(decided.count == 3000)
        // Roots by route, from the spans themselves.
        var rootRoute: [String: String] = [:]
        for trace in assembler.traces {
            if let root = trace.spans.first(where: { !$0.parentSpanID.isValid }) { rootRoute[trace.traceID.hex] = trace.string(trace.name(of: root)) }
        }
        var uploadLoginErrors = 0
        for line in decided {
            let trace = try #require(generated[line.traceId])
            let route = rootRoute[line.traceId] ?? ""
            if trace.isError && (route == "POST /photos" || route == "POST /login") {
                uploadLoginErrors += 1
                #expect(line.policy == "upload-and-login-errors", "\(route) error trace kept by \(line.policy ?? "nothing")")
            }
            if route.hasSuffix("/healthz") { #expect(line.decision == "drop") }
        }
        #expect(uploadLoginErrors > 10)
        // What the file must keep, from the generator's truth: the policies without a budget keep
        // every slow trace (≥ 2.5 s, over slow-anything's 1.5 s) and the 2% baseline (the collector's
        // hash), never a health check. What it may keep beyond that: errors (up to their span budget)
        // and traces that touch auth-service (up to its budget) — nothing else.
        var touchesAuth = Set<String>()
        for trace in assembler.traces where trace.spans.contains(where: { trace.string(trace.service(of: $0)) == "auth-service" }) {
            touchesAuth.insert(trace.traceID.hex)
        }
        let kept = Set(decided.filter { $0.decision == "keep" }.map(\.traceId))
        var mustKeep = Set<String>(), mayKeep = Set<String>()
        for (id, trace) in generated where !trace.isHealthCheck {
            if trace.isSlow || baselineKeeps(trace.traceID, percent: 2) { mustKeep.insert(id) }
            if trace.isError || touchesAuth.contains(id) { mayKeep.insert(id) }
        }
        #expect(mustKeep.count > 100)
        #expect(kept.isSuperset(of: mustKeep), "\(mustKeep.subtracting(kept).count) slow or baseline traces not kept")
        #expect(kept.isSubset(of: mustKeep.union(mayKeep)), "\(kept.subtracting(mustKeep.union(mayKeep)).count) kept for no reason")
        #expect(kept.allSatisfy { generated[$0]?.isHealthCheck == false })
    }
}
