import OTLP
@testable import Sampling
import Testing

/// The adaptive samplers against rate tables worked by hand from Refinery's algorithm (log10 shares
/// of the goal, surplus passed on in sorted key order, EMA with weight 0.5), on an injected clock.
@Suite struct DynamicSamplerTests {
    static let second: UInt64 = 1_000_000_000

    private func table(_ algorithm: DynamicSamplerConfiguration.Algorithm, _ adjust: (inout DynamicSamplerConfiguration) -> Void = { _ in })
        -> DynamicRateTable
    {
        var configuration = DynamicSamplerConfiguration(algorithm: algorithm, keyFields: ["http.route"])
        adjust(&configuration)
        return DynamicRateTable(configuration: configuration)
    }

    /// Goal 1111 / 10 = 111.1 kept spans over log10 shares 3 : 2 : 1 : 0 (ratio 18.52):
    /// a: share 55.55 → rate ⌈1000 / 55.55⌉ = 19, surplus 2.92; b: 37.03 + 0.97 → ⌈100 / 38.01⌉ = 3,
    /// surplus 6.62; c: 18.52 + 3.31 ≥ 10 → 1; d: 1 + the rest → 1.
    @Test func logSharesPassTheirSurplusOnInSortedOrder() {
        let rates = DynamicRateTable.logShareRates(goal: 111.1, counts: ["a": 1000, "b": 100, "c": 10, "d": 1])
        #expect(rates == ["a": 19, "b": 3, "c": 1, "d": 1])
    }

    /// Cold start: the goal rate until the first table; at the interval's end the EMA is half the
    /// counts (500, 50, 5, 0.5: d stays, at the age-out value); the table follows from it.
    @Test func emaDynamicColdStartThenSteadyState() {
        var t = table(.emaDynamic)
        #expect(t.rate(for: "a", spans: 1000, now: 0) == 10, "no table yet: goal_sample_rate")
        _ = t.rate(for: "b", spans: 100, now: 1 * Self.second)
        _ = t.rate(for: "c", spans: 10, now: 2 * Self.second)
        _ = t.rate(for: "d", spans: 1, now: 3 * Self.second)
        #expect(t.currentRate(for: "a") == 10)
        t.advance(to: 15 * Self.second)
        #expect(t.movingAverage == ["a": 500, "b": 50, "c": 5, "d": 0.5])
        // Goal 556 / 10 = 55.6 over log shares 2.70 : 1.70 : 0.70 : 0.
        #expect(t.rates == ["a": 17, "b": 3, "c": 1, "d": 1])
        #expect(t.rate(for: "new", spans: 1, now: 16 * Self.second) == 1, "a key not in the table is kept")
        // The next interval: a, b, c again, d silent: d's EMA 0.25 falls below 0.5 and ages out.
        _ = t.rate(for: "a", spans: 1000, now: 20 * Self.second)
        _ = t.rate(for: "b", spans: 100, now: 20 * Self.second)
        _ = t.rate(for: "c", spans: 10, now: 20 * Self.second)
        t.advance(to: 30 * Self.second)
        #expect(t.movingAverage["d"] == nil)
        #expect(t.movingAverage["a"] == 750 && t.movingAverage["b"] == 75 && t.movingAverage["c"] == 7.5)
        // "new" (1 span × 0.5 = 0.5) joined the average too.
        #expect(t.movingAverage["new"] == 0.5)
    }

    /// An interval without any traffic changes nothing (no decay through an outage).
    @Test func anIdleIntervalKeepsTheTable() {
        var t = table(.emaDynamic)
        _ = t.rate(for: "a", spans: 1000, now: 0)
        t.advance(to: 15 * Self.second)
        let before = t.rates
        t.advance(to: 300 * Self.second)
        #expect(t.rates == before)
        #expect(t.movingAverage == ["a": 500])
    }

    /// After three intervals, twice the average's span total within one interval recomputes the
    /// table at once instead of waiting for the interval's end.
    @Test func aBurstRecomputesAtOnce() {
        var t = table(.emaDynamic)
        var now: UInt64 = 0
        for _ in 0..<4 {
            _ = t.rate(for: "a", spans: 100, now: now)
            now += 15 * Self.second
            t.advance(to: now)
        }
        let average = t.movingAverage["a"]!
        #expect(average > 90 && average < 100)
        // Burst threshold: 2 × the average; one decision with that many spans, mid-interval.
        _ = t.rate(for: "a", spans: Int(2 * average) + 1, now: now + Self.second)
        #expect(t.movingAverage["a"]! > average, "folded in at once")
    }

    /// ema_throughput: initial_sample_rate until the first table, then a goal of
    /// goal_throughput_per_sec × the interval (10/s × 15 s = 150 spans) over the same log shares:
    /// EMA 500, 50, 5, 0.5 (counted as 1) → log10 sum 5.0969, 29.43 spans per unit of log; a's share
    /// 2.699 × 29.43 = 79.43 → ⌈500 / 79.43⌉ = 7, the rest kept whole.
    @Test func emaThroughputAimsAtSpansPerSecond() {
        var t = table(.emaThroughput) { $0.goalThroughputPerSecond = 10; $0.initialSampleRate = 25 }
        #expect(t.rate(for: "a", spans: 1000, now: 0) == 25)
        _ = t.rate(for: "b", spans: 100, now: 0)
        _ = t.rate(for: "c", spans: 10, now: 0)
        _ = t.rate(for: "d", spans: 1, now: 0)
        t.advance(to: 15 * Self.second)
        #expect(t.rates == ["a": 7, "b": 1, "c": 1, "d": 1])
        // A replica owning half the partitions aims at half the goal: 75 spans.
        var half = table(.emaThroughput) { $0.goalThroughputPerSecond = 10 }
        half.goalShare = 0.5
        for (key, spans) in [("a", 1000), ("b", 100), ("c", 10), ("d", 1)] { _ = half.rate(for: key, spans: spans, now: 0) }
        half.advance(to: 15 * Self.second)
        // By hand: 75 / 5.0969 = 14.715 per unit of log. a: 2.699 × 14.715 = 39.71 → ⌈500 / 39.71⌉ = 13,
        // passing on 39.71 − 500/13 = 1.25; b: 25.00 + 1.25/3 = 25.42 → ⌈50 / 25.42⌉ = 2; c (share
        // 10.9 ≥ 5) and d whole.
        #expect(half.rates == ["a": 13, "b": 2, "c": 1, "d": 1])
        #expect(half.rates["a"]! > t.rates["a"]!)
    }

    /// windowed_throughput: 10 spans/s over a 30 s lookback is 300 spans, split evenly over the 3
    /// keys seen (100 each): x (600 spans) → 6, y (60) and z (6) → 1.
    @Test func windowedThroughputSplitsTheGoalOverTheKeys() {
        var t = table(.windowedThroughput) { $0.goalThroughputPerSecond = 10 }
        #expect(t.rate(for: "x", spans: 600, now: 0) == 1, "no table yet")
        _ = t.rate(for: "y", spans: 60, now: 0)
        _ = t.rate(for: "z", spans: 6, now: 0)
        t.advance(to: 1 * Self.second)
        #expect(t.rates == ["x": 6, "y": 1, "z": 1])
        // Past the lookback the counts leave the window.
        t.advance(to: 40 * Self.second)
        #expect(t.rates.isEmpty)
    }

    /// max_keys: new keys beyond it are not counted (they keep rate 1), known keys still are.
    @Test func maxKeysBoundsTheTable() {
        var t = table(.emaDynamic) { $0.maxKeys = 2 }
        for key in ["a", "b", "c"] { _ = t.rate(for: key, spans: 100, now: 0) }
        t.advance(to: 15 * Self.second)
        #expect(Set(t.movingAverage.keys) == ["a", "b"])
    }

    /// The decision is R ≥ T(1/N) on the trace's own randomness (OTEP 235), never a draw: at rate 4,
    /// T = 0.75 × 2^56 = 0xc0000000000000, so a trace id ending in that is kept and one below it is
    /// not — on every replay.
    @Test func decisionsAreConsistentByTraceID() throws {
        let configuration = try RuleFile.parse(
            "policies: [{name: adaptive, type: ema_dynamic, ema_dynamic: {key_fields: [name], goal_sample_rate: 4}}]", file: "t.yaml")
        let rules = RuleSet(configuration: configuration)
        let sampler = try #require(rules.policies[0].dynamicSampler)
        sampler.restore(.init(rates: ["GET /feed": 4], movingAverage: ["GET /feed": 100]))
        func trace(_ low: UInt64) throws -> TraceData {
            try makeTrace([TestSpan(name: "GET /feed")], traceID: TraceID(high: 0x1234, low: low), selection: rules.selection)
        }
        let kept = try trace(0x00c0_0000_0000_0000), dropped = try trace(0x00bf_ffff_ffff_ffff)
        for _ in 0..<3 {
            #expect(rules.decide(kept, now: 0) == .keep(policy: "adaptive"))
            #expect(rules.decide(dropped, now: 0) == .drop)
        }
        let annotation = rules.keptAnnotation(for: kept, keptBy: "adaptive")
        #expect(annotation.sampleRate == 4)
        #expect(annotation.threshold?.encoded == "c", "ot=th:c is probability 1/4")
    }

    /// A trace the sampler kept but another policy decided (an error, named first) leaves no rate
    /// behind in the sampler: only the deciding policy's annotation takes one. Before, every such
    /// trace stayed in the sampler's table of kept rates (up to 100 000, then all dropped at once).
    @Test func ratesOfTracesAnotherPolicyDecidedAreNotKept() throws {
        let configuration = try RuleFile.parse(
            """
            policies:
              - {name: errors, type: status_code, status_code: {status_codes: [ERROR]}}
              - {name: adaptive, type: ema_dynamic, ema_dynamic: {key_fields: [name], goal_sample_rate: 1}}
            """, file: "t.yaml")
        let rules = RuleSet(configuration: configuration)
        let sampler = try #require(rules.policies[1].dynamicSampler)
        // Rate 1 keeps every trace: the sampler keeps all 50, the errors policy is named for each.
        for low in 1...50 {
            let trace = try makeTrace([TestSpan(name: "GET /feed", status: .error)], traceID: TraceID(high: 7, low: UInt64(low)), selection: rules.selection)
            #expect(rules.decide(trace, now: 0) == .keep(policy: "errors"))
        }
        #expect(sampler.pendingKeptRates == 0)
        // One it decides itself keeps its rate until the annotation takes it.
        let own = try makeTrace([TestSpan(name: "GET /feed")], traceID: TraceID(high: 7, low: 99), selection: rules.selection)
        #expect(rules.decide(own, now: 0) == .keep(policy: "adaptive"))
        #expect(sampler.pendingKeptRates == 1)
        #expect(rules.keptAnnotation(for: own, keptBy: "adaptive").sampleRate == 1)
        #expect(sampler.pendingKeptRates == 0)
    }

    /// Late spans of an adaptive keep leave with the trace's threshold and rate: the window remembers
    /// them with the decision (before, they were asked of the sampler again for a one-span trace of
    /// another key, at the rate of the moment).
    @Test func lateSpansOfAnAdaptiveKeepCarryTheTracesAnnotation() throws {
        var window = TraceWindow(limits: WindowLimits(), cache: DecisionCache(keptCapacity: 10, droppedCapacity: 10))
        let id = TraceID(high: 3, low: 0x00c0_0000_0000_0000)
        let annotation = KeptAnnotation(threshold: DynamicSampler.threshold(rate: 4), sampleRate: 4)
        window.remember(id, kept: true, policy: "adaptive", annotation: annotation)
        var request = ProtoWriter()
        request.writeNested(1) { rs in
            rs.writeNested(2) { ss in
                ss.writeNested(2) { span in
                    span.writeBytesField(1, id.bytes)
                    span.writeBytesField(2, SpanID(rawValue: 9).bytes)
                    span.writeStringField(5, "late one")
                }
            }
        }
        var batch = SpanBatch()
        _ = try SpanDecoder(encoding: .otlpProto).decode(request.bytes, into: &batch)
        var ready: [ReadyTrace] = []
        let result = window.insert(batch.spans[0], from: batch, batchGeneration: 1, source: SourcePosition(lane: 0, offset: 1), now: 1, ready: &ready)
        #expect(result == .late(.kept("adaptive", annotation: KeptAnnotation(threshold: SamplingThreshold(probability: 0.25), sampleRate: 4))))
    }

    /// Keys: distinct values across the trace in sorted order, `root.` fields from the root span,
    /// the span count last with use_trace_length.
    @Test func keysJoinDistinctValues() throws {
        let configuration = try RuleFile.parse(
            """
            policies:
              - name: adaptive
                type: ema_throughput
                ema_throughput: {key_fields: [http.method, root.name], use_trace_length: true, goal_throughput_per_sec: 5}
            """, file: "t.yaml")
        let rules = RuleSet(configuration: configuration)
        let sampler = try #require(rules.policies[0].dynamicSampler)
        let trace = try makeTrace(
            [TestSpan(name: "GET /feed", attributes: [("http.method", .string("GET"))]),
             TestSpan(name: "db.query", attributes: [("http.method", .string("POST"))]),
             TestSpan(name: "cache", attributes: [("http.method", .string("GET"))])],
            selection: rules.selection)
        #expect(sampler.peek(trace).key == "GET•POST,GET /feed,3")
    }

    /// A reload that leaves the policy as it was keeps its sampler, and so its table.
    @Test func hotReloadKeepsTheTable() throws {
        let text = "policies: [{name: adaptive, type: ema_dynamic, ema_dynamic: {key_fields: [name]}}]"
        let first = RuleSet(configuration: try RuleFile.parse(text, file: "t.yaml"))
        let second = RuleSet(configuration: try RuleFile.parse(text + "\n# a comment", file: "t.yaml"), previous: first)
        #expect(second.policies[0].dynamicSampler === first.policies[0].dynamicSampler)
        let changed = RuleSet(
            configuration: try RuleFile.parse(text.replacingOccurrences(of: "[name]", with: "[name, http.route]"), file: "t.yaml"),
            previous: first)
        #expect(changed.policies[0].dynamicSampler !== first.policies[0].dynamicSampler)
    }

    @Test func badSettingsAreLocated() {
        func errors(_ yaml: String) -> String {
            do {
                _ = try RuleFile.parse(yaml, file: "r.yaml")
                return ""
            } catch { return error.description }
        }
        #expect(errors("policies: [{name: a, type: ema_throughput, ema_throughput: {key_fields: [name]}}]").contains("needs goal_throughput_per_sec"))
        #expect(errors("policies: [{name: a, type: ema_dynamic, ema_dynamic: {key_fields: []}}]").contains("key_fields must list"))
        #expect(errors("policies: [{name: a, type: ema_dynamic, ema_dynamic: {key_fields: [name], weight: 1.5}}]").contains("weight must be between 0 and 1"))
        #expect(errors("policies: [{name: a, type: ema_dynamic, ema_dynamic: {key_fields: [name], goal_throughput_per_sec: 5}}]").contains("unknown key \"goal_throughput_per_sec\""))
        #expect(errors("policies: [{name: a, type: windowed_throughput, windowed_throughput: {key_fields: [name], goal_throughput_per_sec: 5, lookback: 1s, update_interval: 5s}}]").contains("lookback must be at least update_interval"))
        #expect(errors("policies: [{name: a, type: ema_dynamic, ema_dynamic: {key_fields: [name], adjustment_interval: soon}}]").contains("r.yaml:1:"))
    }
}
