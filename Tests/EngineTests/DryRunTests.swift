import HTTP
import Ingest
import Route
import Sampling
import Sinks
import Engine
import Foundation
import Kafka
import OTLP
import Synchronization
import Testing
import TestSupport
import Traffic

/// Dry run: every trace reaches the sinks, each span tagged with what the rules decided; the
/// decisions (and the metrics) are what a real run would do — checked against the traffic
/// generator's own truth.
// Ten minutes, as the other engine suites: the limit counts while a test waits for the 2-core
// machine's test threads, which the long end-to-end suites hold (five minutes ran out once in CI).
@Suite(.timeLimit(.minutes(10))) struct DryRunTests {
    func run(rules: String, flag: Bool) throws -> (tags: [String: (decision: String, policy: String?)], summary: RunSummary, metrics: String) {
        let cluster = try KafkaMockCluster(topics: [("spans", 2)], logger: quietLogger)
        try produceTraffic(to: "spans", on: cluster, traces: 200, errorRate: 0.1, seed: 11)
        var configuration = EngineConfiguration(brokers: cluster.bootstrapServers)
        configuration.topics = ["spans"]
        configuration.rulesPath = try writeRules(rules)
        configuration.exitOnEOF = true
        configuration.dryRun = flag
        let sink = CapturedRequests()
        let engine = try Engine(configuration: configuration, kept: sink, logger: quietLogger)
        let summary = engine.run()
        var tags: [String: (decision: String, policy: String?)] = [:]
        for request in sink.requests.withLock({ $0 }) {
            var batch = SpanBatch(selection: AttributeSelection(keys: ["tailgate.decision", "tailgate.policy"]))
            _ = try SpanDecoder(encoding: .otlpProto).decode(request, into: &batch)
            for span in batch.spans {
                var decision = "", policy: String?
                if case .string(let range) = batch.value(of: AttributeKeyID(rawValue: 0), for: span) { decision = batch.string(range) }
                if case .string(let range) = batch.value(of: AttributeKeyID(rawValue: 1), for: span) { policy = batch.string(range) }
                let hex = span.traceID.hex
                if let seen = tags[hex], seen.decision != decision || seen.policy != policy { tags[hex] = ("mixed", nil) } else { tags[hex] = (decision, policy) }
            }
        }
        return (tags, summary, engine.metricsText(format: .prometheus))
    }

    @Test(arguments: [false, true])
    func everyTraceArrivesTaggedWithWhatWouldHappen(flag: Bool) throws {
        let rules = flag ? deterministicRules : "dry_run: true\n" + deterministicRules
        let (tags, summary, metrics) = try run(rules: rules, flag: flag)
        let expected = expectedDecisions(count: 200, seed: 11, errorRate: 0.1, slowRate: 0.03)
        #expect(tags.count == 200, "every trace reached the sinks")
        for (hex, tag) in tags {
            if let keep = expected[hex] {
                #expect(tag.decision == "keep" && tag.policy == keep.policy, "\(hex): \(tag)")
            } else {
                #expect(tag.decision == "drop" && tag.policy == nil, "\(hex): \(tag)")
            }
        }
        // The metrics count what would have been kept and dropped.
        #expect(summary.tracesKept == expected.count && summary.tracesDropped == 200 - expected.count)
        #expect(summary.outcome == "end_of_input", "every trace, kept or not, was acknowledged by the sink")
        #expect(metrics.contains("\ntailgate_dry_run 1\n"))
    }

    /// A would-be drop by a `drop` policy names that policy.
    @Test func aDropPolicyNamesItself() throws {
        let (tags, _, _) = try run(rules: "dry_run: true\n" + DefaultRules.text, flag: false)
        let byDropPolicy = tags.values.filter { $0.decision == "drop" && $0.policy == "drop-health-checks" }
        #expect(!byDropPolicy.isEmpty, "DogBook's health checks (5% of traces) are dropped by drop-health-checks")
        #expect(tags.values.allSatisfy { $0.decision != "drop" || $0.policy == nil || $0.policy == "drop-health-checks" })
    }
}
