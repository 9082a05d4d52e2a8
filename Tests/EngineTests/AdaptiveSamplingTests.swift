import HTTP
import Ingest
import Route
import Sinks
import Foundation
import OTLP
import Sampling
import Testing
import Traffic

/// The adaptive samplers on DogBook traffic (the generator's traces, encoded and decoded as the
/// engine does), decided on a simulated clock: 200 traces per second for 30 seconds.
@Suite struct AdaptiveSamplingTests {
    static let second: UInt64 = 1_000_000_000

    struct Arrival {
        var at: UInt64
        var trace: TraceData
        var route: String
    }

    /// The traffic, with each trace's arrival time and root route (from the generator's spans).
    private func traffic(selection: AttributeSelection, seconds: Int, perSecond: Int) throws -> [Arrival] {
        var generator = DogBookTraffic(seed: 7)
        var arrivals: [Arrival] = []
        let routeKey = try #require(selection.id(of: "http.route"))
        for index in 0..<(seconds * perSecond) {
            let generated = generator.nextTrace(startUnixNano: 1_764_000_000_000_000_000)
            var batch = SpanBatch(selection: selection)
            _ = try SpanDecoder(encoding: .otlpProto).decode(DogBookTraffic.protobuf([generated]), into: &batch)
            var trace = TraceData(traceID: generated.traceID)
            for span in batch.spans { trace.append(span, from: batch, batchGeneration: UInt64(index)) }
            let root = try #require(trace.spans.first { !$0.parentSpanID.isValid })
            var route = ""
            for attribute in trace.attributes(of: root) where attribute.key == routeKey {
                if case .string(let range) = attribute.value { route = trace.string(range) }
            }
            arrivals.append(Arrival(at: UInt64(index) * Self.second / UInt64(perSecond), trace: trace, route: route))
        }
        return arrivals
    }

    private let rulesText = """
        policies:
          - name: adaptive
            type: ema_throughput
            ema_throughput: {key_fields: [root.http.route], goal_throughput_per_sec: 300, adjustment_interval: 1s}
        """

    /// Kept spans per second settle within 10% of goal_throughput_per_sec once two intervals have
    /// passed; the rare key (/healthz, 5% of traces, one span each) is kept whole; and a restart
    /// from the saved table decides the rest of the traffic exactly as the running sampler did.
    @Test func throughputGoalRareKeysAndReplay() throws {
        let rules = RuleSet(configuration: try RuleFile.parse(rulesText, file: "adaptive.yaml"))
        let sampler = try #require(rules.policies[0].dynamicSampler)
        let arrivals = try traffic(selection: rules.selection, seconds: 30, perSecond: 200)
        let restartAt = 15 * Self.second
        var keptSpans = [Int](repeating: 0, count: 30)
        var decisions: [Bool] = []
        var snapshot: Data?
        var healthz = (seen: 0, kept: 0)
        for arrival in arrivals {
            if snapshot == nil && arrival.at >= restartAt {
                sampler.advance(to: restartAt)
                snapshot = try DynamicSamplerSnapshots(of: rules).encoded()
            }
            let kept = rules.decide(arrival.trace, now: arrival.at) == .keep(policy: "adaptive")
            decisions.append(kept)
            if kept { keptSpans[Int(arrival.at / Self.second)] += arrival.trace.spans.count }
            if arrival.route == "/healthz" && arrival.at >= 2 * Self.second {
                healthz.seen += 1
                if kept { healthz.kept += 1 }
            }
        }
        let settled = keptSpans[2...]
        let mean = Double(settled.reduce(0, +)) / Double(settled.count)
        print("adaptive ema_throughput on DogBook traffic (200 traces/s, goal 300 spans/s, 1 s intervals): kept spans per second \(keptSpans); mean from the third second \(String(format: "%.1f", mean)); /healthz \(healthz.kept) of \(healthz.seen) kept; \(sampler.summary(limit: 10).top)")
        #expect(abs(mean - 300) <= 30, "mean kept spans per second \(mean) within 10% of 300")
        // One second holds ~25 kept traces, so single seconds scatter (consistent sampling keeps a
        // fixed share of trace ids, not a quota); five-second windows stay within a quarter.
        for window in stride(from: 5, to: 30, by: 5) {
            let spans = Double(keptSpans[window..<(window + 5)].reduce(0, +)) / 5
            #expect(abs(spans - 300) <= 75, "seconds \(window)–\(window + 4): \(spans) kept spans per second")
        }
        let rates = Dictionary(uniqueKeysWithValues: sampler.summary(limit: 10).top.map { ($0.key, $0.rate) })
        #expect((rates["/feed"] ?? 0) > 10, "the busiest key is sampled hard (2 400 spans/s in, 300 out)")
        #expect(healthz.seen > 100 && healthz.kept == healthz.seen, "the rare key is kept at rate 1")

        // A restart from the saved table: the same decisions for everything after it.
        let restarted = RuleSet(configuration: try RuleFile.parse(rulesText, file: "adaptive.yaml"))
        let restored = try DynamicSamplerSnapshots.decode(try #require(snapshot)).restore(into: restarted)
        #expect(restored == ["adaptive"])
        var differing = 0
        for (index, arrival) in arrivals.enumerated() where arrival.at >= restartAt {
            let kept = restarted.decide(arrival.trace, now: arrival.at) == .keep(policy: "adaptive")
            if kept != decisions[index] { differing += 1 }
        }
        #expect(differing == 0, "\(differing) decisions differ after the restart")

        // And from cold (no table) the first interval decides differently: the snapshot matters.
        let cold = RuleSet(configuration: try RuleFile.parse(rulesText, file: "adaptive.yaml"))
        var coldDiffering = 0
        for (index, arrival) in arrivals.enumerated() where arrival.at >= restartAt && arrival.at < restartAt + Self.second {
            if (cold.decide(arrival.trace, now: arrival.at) == .keep(policy: "adaptive")) != decisions[index] { coldDiffering += 1 }
        }
        #expect(coldDiffering > 0)
    }
}
