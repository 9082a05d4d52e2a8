import HTTP
import Ingest
import Route
import Sampling
import Sinks
import Engine
import Foundation
import Kafka
import OTLP
import SpanMetrics
import Storage
import Synchronization
import Testing
import TestSupport

/// Captures the requests the sinks would get.
final class CapturedRequests: TraceSink {
    let name = "test"
    let requests = Mutex<[[UInt8]]>([])
    func send(_ trace: StoredTrace, acknowledged: @escaping @Sendable () -> Void) {
        requests.withLock { $0.append(trace.request) }
        acknowledged()
    }
    func flush(timeout: Duration) -> Bool { true }
    func stop(timeout: Duration) {}
    var queuedBytes: Int { 0 }
    var statistics: TraceSinkStatistics { TraceSinkStatistics() }
}

/// OTEP 235 end to end, on a trace made by the OpenTelemetry Python SDK under a head sampler's
/// `ot=th:8;rv:d3f00000000000` (Tests/Fixtures/head_sampled.*): a probabilistic policy's kept spans
/// leave with the raised threshold and everything else as it came; other policies leave the
/// tracestate alone; span metrics weight by the incoming adjusted count when asked.
// Ten minutes, as the other engine suites (see DryRunTests).
@Suite(.timeLimit(.minutes(10))) struct ThresholdEndToEndTests {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures")

    /// The SDK's spans as the official protobuf runtime read them.
    func expected() throws -> [[String: Any]] {
        let data = try Data(contentsOf: Self.fixtures.appendingPathComponent("head_sampled.expected.json"))
        return try JSONSerialization.jsonObject(with: data) as! [[String: Any]]
    }

    func run(rules: String, multiplier: SpanMultiplier = .none) throws -> (requests: [[UInt8]], engine: Engine, summary: RunSummary) {
        let cluster = try KafkaMockCluster(topics: [("spans", 1)], logger: quietLogger)
        let producer = try KafkaProducer(bootstrapServers: cluster.bootstrapServers, logger: quietLogger)
        try producer.send(topic: "spans", key: nil, value: [UInt8](try Data(contentsOf: Self.fixtures.appendingPathComponent("head_sampled.pb"))))
        try producer.flush(timeout: .seconds(10))
        var configuration = EngineConfiguration(brokers: cluster.bootstrapServers)
        configuration.topics = ["spans"]
        configuration.rulesPath = try writeRules(rules)
        configuration.exitOnEOF = true
        configuration.spanMetrics.spanMultiplier = multiplier
        let sink = CapturedRequests()
        let engine = try Engine(configuration: configuration, kept: sink, logger: quietLogger)
        let summary = engine.run()
        return (sink.requests.withLock { $0 }, engine, summary)
    }

    /// Each span's `SampleRate` attribute (nil: none).
    func sampleRates(_ request: [UInt8]) throws -> [Int64?] {
        var batch = SpanBatch(selection: AttributeSelection(keys: ["SampleRate"]))
        _ = try SpanDecoder(encoding: .otlpProto).decode(request, into: &batch)
        return batch.spans.map { span in
            if case .int(let rate) = batch.value(of: AttributeKeyID(rawValue: 0), for: span) { return rate }
            return nil
        }
    }

    func spans(_ request: [UInt8]) throws -> [(name: String, spanID: String, traceState: String)] {
        var batch = SpanBatch()
        _ = try SpanDecoder(encoding: .otlpProto).decode(request, into: &batch)
        return batch.spans.map { (batch.string($0.name), $0.spanID.hex, batch.string($0.traceState)) }
    }

    @Test func aProportionalKeepRaisesTheThresholdOnEverySpan() throws {
        let sdk = try expected()
        #expect(sdk.allSatisfy { $0["traceState"] as? String == "ot=th:8;rv:d3f00000000000,dogbook=tier-gold" }, "the fixture is what the test assumes")
        // 1/2 upstream × 1/2 here = 1/4: th:c (0xc0…); rv 0xd3f… ≥ 0xc0…, so the trace is kept.
        let (requests, _, summary) = try run(rules: "policies: [{name: half, type: probabilistic, probabilistic: {sampling_percentage: 50, mode: proportional}}]")
        #expect(summary.tracesKept == 1)
        let kept = try spans(try #require(requests.first))
        #expect(kept.map(\.spanID) == sdk.map { $0["spanId"] as! String }, "every span, in order")
        #expect(kept.map(\.name) == sdk.map { $0["name"] as! String })
        // Written as the collector's probabilistic sampler writes it: rv, then th.
        #expect(kept.allSatisfy { $0.traceState == "ot=rv:d3f00000000000;th:c,dogbook=tier-gold" }, "\(kept.map(\.traceState))")
        // SampleRate: this stage's 1 in 2 (the th carries the whole 1 in 4).
        #expect(try sampleRates(requests[0]) == [2, 2, 2])
        // Every received byte is still there: each span's SDK bytes are a prefix of what leaves.
        var original = SpanBatch()
        _ = try SpanDecoder(encoding: .otlpProto).decode([UInt8](try Data(contentsOf: Self.fixtures.appendingPathComponent("head_sampled.pb"))), into: &original)
        var sent = SpanBatch()
        _ = try SpanDecoder(encoding: .otlpProto).decode(requests[0], into: &sent)
        for (a, b) in zip(original.spans, sent.spans) {
            let before = original.withBytes(a.encoded) { Array($0) }
            let after = sent.withBytes(b.encoded) { Array($0) }
            #expect(Array(after.prefix(before.count)) == before)
        }
    }

    @Test func aNonProbabilisticKeepLeavesTheTracestateAsItCame() throws {
        let (requests, _, _) = try run(rules: "policies: [{name: all, type: always_sample}]")
        let kept = try spans(try #require(requests.first))
        #expect(kept.count == 3)
        #expect(kept.allSatisfy { $0.traceState == "ot=th:8;rv:d3f00000000000,dogbook=tier-gold" })
    }

    /// A probabilistic policy listed first is credited, but a content policy keeps the trace too: it
    /// was kept with probability 1, so it leaves as it came — not with the proportional keep's th:c,
    /// which would make a backend count it four times.
    @Test func aTraceAContentPolicyAlsoKeepsLeavesAsAMustKeep() throws {
        let (requests, _, summary) = try run(rules: """
            policies:
              - {name: half, type: probabilistic, probabilistic: {sampling_percentage: 50, mode: proportional}}
              - {name: all, type: always_sample}
            """)
        #expect(summary.keptByPolicy == ["half": 1], "credited to the first policy that sampled")
        let kept = try spans(try #require(requests.first))
        #expect(kept.count == 3)
        #expect(kept.allSatisfy { $0.traceState == "ot=th:8;rv:d3f00000000000,dogbook=tier-gold" }, "\(kept.map(\.traceState))")
        #expect(try sampleRates(try #require(requests.first)) == [1, 1, 1], "SampleRate 1, not the 50 % keep's 2")
    }

    @Test func equalizingBelowTheIncomingProbabilityChangesNothing() throws {
        // 75% here (th:4) is less selective than the incoming 50% (th:8): never lowered.
        let (requests, _, summary) = try run(rules: "policies: [{name: most, type: probabilistic, probabilistic: {sampling_percentage: 75, mode: equalizing}}]")
        #expect(summary.tracesKept == 1)
        #expect(try spans(try #require(requests.first)).allSatisfy { $0.traceState == "ot=th:8;rv:d3f00000000000,dogbook=tier-gold" })
    }

    @Test func spanMetricsWeightByTheIncomingAdjustedCount() throws {
        let sdk = try expected()
        let weighted = try run(rules: "policies: [{name: all, type: always_sample}]", multiplier: .tracestate)
        let totals = try #require(weighted.engine.sampling).spanMetrics.totals()
        // th:8 is probability 1/2: each of the SDK's spans stands for 2.
        #expect(totals.weightedCalls.reduce(0, +) == 2 * Double(sdk.count))
        let text = weighted.engine.metricsText(format: .prometheus)
        #expect(text.contains(#"traces_spanmetrics_calls_total{service="feed-service",span_name="dogbook.Feed/GetFeed",span_kind="SPAN_KIND_SERVER",status_code="STATUS_CODE_UNSET"} 2"#), "\(text.split(separator: "\n").filter { $0.hasPrefix("traces_spanmetrics_calls_total") })")
        #expect(text.contains(#"traces_spanmetrics_latency_count{service="feed-service",span_name="dogbook.Feed/GetFeed",span_kind="SPAN_KIND_SERVER",status_code="STATUS_CODE_UNSET"} 2"#))
        // Off (the default): each span counts 1.
        let plain = try run(rules: "policies: [{name: all, type: always_sample}]")
        #expect(try #require(plain.engine.sampling).spanMetrics.totals().calls.reduce(0, +) == UInt64(sdk.count))
        #expect(plain.engine.metricsText(format: .prometheus).contains(#"traces_spanmetrics_calls_total{service="feed-service",span_name="dogbook.Feed/GetFeed",span_kind="SPAN_KIND_SERVER",status_code="STATUS_CODE_UNSET"} 1"#))
    }
}
