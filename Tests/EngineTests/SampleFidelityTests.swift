import Engine
import Foundation
import Kafka
import OTLP
import SpanMetrics
import Testing
import TestSupport
import Traffic

/// How representative the kept traces are, on DogBook traffic with every error and a 5 % baseline:
/// per service, the calls tailgate counts from every span against the estimate from the kept traces
/// alone. Expected values come from the generator's spans, the kept set the sink received and the
/// baseline's probability, computed here by hand.
// Ten minutes, as the other engine suites: the limit counts while a test waits for the 2-core
// machine's test threads (five ran out in a rehearsal of the whole suite).
@Suite(.timeLimit(.minutes(10))) struct SampleFidelityTests {
    @Test func estimatesFromKeptTracesAgainstTheTruthPerService() throws {
        let cluster = try KafkaMockCluster(topics: [("spans", 4)], logger: quietLogger)
        let traces = 700, seed: UInt64 = 71, errorRate = 0.02
        try produceTraffic(to: "spans", on: cluster, traces: traces, errorRate: errorRate, seed: seed)
        var configuration = EngineConfiguration(brokers: cluster.bootstrapServers)
        configuration.topics = ["spans"]
        configuration.rulesPath = try writeRules("""
            decision_wait: 200ms
            policies:
              - {name: errors, type: status_code, status_code: {status_codes: [ERROR]}}
              - {name: baseline, type: probabilistic, probabilistic: {sampling_percentage: 5}}
            """)
        configuration.exitOnEOF = true
        configuration.shards = 2
        let sink = KeptTraces()
        let engine = try Engine(configuration: configuration, kept: sink, logger: quietLogger)
        let summary = engine.run()
        var generator = DogBookTraffic(seed: seed, errorRate: errorRate, slowRate: 0.03)
        let generated = (0..<traces).map { _ in generator.nextTrace(startUnixNano: 1) }
        #expect(summary.spans == generated.reduce(0) { $0 + $1.spanCount })
        let kept = sink.snapshot
        let report = try #require(engine.sampleFidelity()).services
        let byService = Dictionary(uniqueKeysWithValues: report.map { ($0.service, $0) })

        // The truth per service, by hand: calls, error calls, kept traces touching it, the estimate a
        // backend would make from the kept traces (errors weigh 1, the baseline's keeps 1/0.05), and
        // the estimate's standard deviation, σ² = Σ over traces the baseline alone decides of
        // calls² × (1 − p) / p.
        let p = 0.05
        var truth: [String: (calls: Double, errors: Double, keptTraces: Int, estimate: Double, variance: Double)] = [:]
        for trace in generated {
            let spans = trace.spanSummaries
            let isError = spans.contains(where: \.isError)
            let policy = kept[trace.traceID]
            for service in Set(spans.map(\.service)) {
                let calls = Double(spans.filter { $0.service == service }.count)
                var entry = truth[service] ?? (0, 0, 0, 0, 0)
                entry.calls += calls
                entry.errors += Double(spans.filter { $0.service == service && $0.isError }.count)
                if let policy {
                    entry.keptTraces += 1
                    entry.estimate += calls * (policy == "errors" ? 1 : 1 / p)
                }
                if !isError { entry.variance += calls * calls * (1 - p) / p }
                truth[service] = entry
            }
        }
        #expect(Set(byService.keys) == Set(truth.keys), "services \(byService.keys.sorted()) vs \(truth.keys.sorted())")
        var flagged = 0, estimated = 0
        for (service, expected) in truth.sorted(by: { $0.key < $1.key }) {
            let entry = try #require(byService[service])
            let sigma = expected.variance.squareRoot()
            print("fidelity \(service): calls \(Int(entry.calls)), estimated \(Int(entry.estimatedCalls)) (±\(Int(sigma)) σ), errors \(Int(entry.errors))/\(Int(entry.estimatedErrors)), kept traces \(entry.keptTraces)\(entry.tooSmall ? " — too few" : ""), p50 \(entry.p50 ?? -1)/\(entry.estimatedP50 ?? -1), p99 \(entry.p99 ?? -1)/\(entry.estimatedP99 ?? -1)")
            #expect(entry.calls == expected.calls, "\(service): calls counted from every span")
            #expect(entry.errors == expected.errors && entry.estimatedErrors == expected.errors, "\(service): errors estimated exactly (must-keeps weigh 1)")
            // The estimate is what a backend weighting each kept trace by 1/p computes (the threshold
            // of 5 % at four hex digits is 5.0003 %: to 0.01 %).
            #expect(abs(entry.estimatedCalls - expected.estimate) <= 1e-4 * expected.estimate + 1e-9, "\(service): estimate \(entry.estimatedCalls), by hand \(expected.estimate)")
            // And it is near the truth: within four standard deviations.
            #expect(abs(entry.estimatedCalls - expected.calls) <= 4 * sigma + 1e-9, "\(service): \(entry.estimatedCalls) vs \(expected.calls), σ \(sigma)")
            #expect(entry.keptTraces == expected.keptTraces, "\(service): kept traces touching it")
            #expect(entry.tooSmall == (expected.keptTraces < 30))
            if entry.tooSmall { flagged += 1 } else { estimated += 1 }
        }
        #expect(flagged >= 1 && estimated >= 1, "the traffic has services both with and without enough kept traces: \(flagged) flagged, \(estimated) not")

        // The same figures on /metrics.
        let text = engine.prometheusText()
        #expect(text.contains("tailgate_sample_fidelity_calls_ratio{service=\"frontend\"} "))
        #expect(text.contains("tailgate_sample_fidelity_sample_too_small{service="))
    }
}
