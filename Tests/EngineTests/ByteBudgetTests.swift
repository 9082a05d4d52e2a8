import Foundation
import OTLP
import Sampling
import Testing
import Traffic
import Engine
import Kafka
import Storage
import Synchronization
import TestSupport

/// The `byte_budget` sampler on DogBook traffic, decided on a simulated clock. Expected figures come
/// from the generator's truth (which traces fail, each trace's encoded span bytes) and the goal.
@Suite struct ByteBudgetTests {
    static let second: UInt64 = 1_000_000_000

    struct Arrival {
        var at: UInt64
        var trace: TraceData
        var isError: Bool
        /// Encoded span bytes, summed here from the generator's request (resource spans → scope
        /// spans → span lengths), not from the trace the engine assembled.
        var bytes: Int
    }

    /// `perSecond` traces a second: `phases` of (seconds, error rate), each from its own generator.
    static func traffic(selection: AttributeSelection, perSecond: Int, phases: [(seconds: Int, errorRate: Double)]) throws -> [Arrival] {
        var arrivals: [Arrival] = []
        var index = 0
        for (phase, (seconds, errorRate)) in phases.enumerated() {
            var generator = DogBookTraffic(seed: 40 + UInt64(phase), errorRate: errorRate, slowRate: 0.03)
            for _ in 0..<(seconds * perSecond) {
                let generated = generator.nextTrace(startUnixNano: 1_764_000_000_000_000_000)
                let request = DogBookTraffic.protobuf([generated])
                var batch = SpanBatch(selection: selection)
                _ = try SpanDecoder(encoding: .otlpProto).decode(request, into: &batch)
                var trace = TraceData(traceID: generated.traceID)
                for span in batch.spans { trace.append(span, from: batch, batchGeneration: UInt64(index)) }
                arrivals.append(Arrival(
                    at: UInt64(index) * second / UInt64(perSecond), trace: trace,
                    isError: generated.spanSummaries.contains(where: \.isError), bytes: ConsoleBrowserTests.spanMessageBytes(request)))
                index += 1
            }
        }
        return arrivals
    }

    static func rules(goalBytesPerSecond: Int) -> String {
        """
        policies:
          - {name: errors, type: status_code, status_code: {status_codes: [ERROR]}}
          - name: budget
            type: byte_budget
            byte_budget: {key_fields: [root.http.route], goal_bytes_per_sec: \(goalBytesPerSecond), adjustment_interval: 2s}
        """
    }

    /// Errors jump from 2 % to 15 % of the traces half way: every interval after the first two keeps
    /// within 10 % of the budget (the jump's included), every error trace is kept, and the sampler's
    /// own keeps shrink by what the errors now take — each phase's own bytes near the goal minus that
    /// phase's error bytes, both from the truth.
    @Test func keptBytesStayWithinTheBudgetWhileErrorsSurge() throws {
        let perSecond = 200, half = 40
        let probe = try Self.traffic(selection: AttributeSelection(keys: []), perSecond: perSecond, phases: [(4, 0.02)])
        let bytesPerSecond = probe.reduce(0) { $0 + $1.bytes } / 4
        // A quarter of what comes in: errors take ~3 % of it before the jump, ~17 % after.
        let goal = bytesPerSecond / 4
        let rules = RuleSet(configuration: try RuleFile.parse(Self.rules(goalBytesPerSecond: goal), file: "budget.yaml"))
        let arrivals = try Self.traffic(selection: rules.selection, perSecond: perSecond, phases: [(half, 0.02), (half, 0.15)])
        let intervals = 2 * half / 2
        var kept = [Int](repeating: 0, count: intervals), own = kept, errors = kept
        var missedErrors = 0
        for arrival in arrivals {
            let decision = rules.decide(arrival.trace, now: arrival.at)
            let interval = Int(arrival.at / (2 * Self.second))
            if arrival.isError {
                errors[interval] += arrival.bytes
                if decision != .keep(policy: "errors") { missedErrors += 1 }
            }
            if case .keep(let policy) = decision {
                kept[interval] += arrival.bytes
                if policy == "budget" { own[interval] += arrival.bytes }
            }
        }
        let budget = Double(goal * 2)
        print("byte_budget: \(bytesPerSecond) bytes/s in, goal \(goal) bytes/s; kept per 2 s interval (÷ budget): \(kept.map { String(format: "%.2f", Double($0) / budget) }.joined(separator: " "))")
        #expect(missedErrors == 0, "every error trace kept")
        for interval in 2..<intervals {
            #expect(abs(Double(kept[interval]) - budget) <= 0.1 * budget, "interval \(interval): kept \(kept[interval]) bytes, budget \(Int(budget))")
        }
        // The sampler gets what the errors leave: goal − error bytes, phase by phase (settled halves).
        for (name, range) in [("2 % errors", 2..<(intervals / 2)), ("15 % errors", (intervals / 2 + 1)..<intervals)] {
            let ownMean = Double(range.map { own[$0] }.reduce(0, +)) / Double(range.count)
            let errorMean = Double(range.map { errors[$0] }.reduce(0, +)) / Double(range.count)
            #expect(abs(ownMean - (budget - errorMean)) <= 0.1 * budget, "\(name): the sampler kept \(Int(ownMean)) bytes an interval; goal − errors = \(Int(budget - errorMean))")
        }
        let before = Double(own[2..<(intervals / 2)].reduce(0, +)), after = Double(own[(intervals / 2 + 1)...].reduce(0, +))
        #expect(after < 0.75 * before, "the sampler's own keeps shrink while errors surge: \(Int(before)) → \(Int(after))")
        let figures = try #require(rules.policies[1].dynamicSampler?.budget)
        #expect(figures.budget.exceeded == 0, "the errors alone stay within the goal")
    }

    /// When what must be kept is more than the budget, the sampler keeps nothing extra and says by
    /// how much the budget is exceeded: the errors' bytes minus the goal, from the truth.
    @Test func mustKeepsOverTheBudgetLeaveTheSamplerNothing() throws {
        let perSecond = 200
        let probe = try Self.traffic(selection: AttributeSelection(keys: []), perSecond: perSecond, phases: [(4, 0.3)])
        let bytesPerSecond = probe.reduce(0) { $0 + $1.bytes } / 4
        let goal = bytesPerSecond / 20  // 5 % of the traffic; errors alone take ~30 %
        let rules = RuleSet(configuration: try RuleFile.parse(Self.rules(goalBytesPerSecond: goal), file: "budget.yaml"))
        let arrivals = try Self.traffic(selection: rules.selection, perSecond: perSecond, phases: [(20, 0.3)])
        var ownAfterWarmUp = 0
        var errorBytes = [Int](repeating: 0, count: 10)
        for arrival in arrivals {
            let decision = rules.decide(arrival.trace, now: arrival.at)
            let interval = Int(arrival.at / (2 * Self.second))
            if arrival.isError { errorBytes[interval] += arrival.bytes }
            if decision == .keep(policy: "budget") && interval >= 1 { ownAfterWarmUp += arrival.bytes }
            if arrival.isError { #expect(decision == .keep(policy: "errors")) }
        }
        let sampler = try #require(rules.policies[1].dynamicSampler)
        sampler.advance(to: 20 * Self.second)
        let figures = try #require(sampler.budget)
        #expect(ownAfterWarmUp == 0, "the sampler kept \(ownAfterWarmUp) bytes beyond the must-keeps")
        let over = Double(errorBytes[9]) - Double(goal * 2)
        #expect(figures.budget.exceeded == over, "exceeded by the last interval's error bytes minus the goal: \(figures.budget.exceeded) vs \(over)")
        #expect(figures.budget.samplerShare == 0)
    }

    /// Fleet-wide: a member owning a quarter of the partitions aims at a quarter of the goal (and of
    /// the floor), as the throughput goals do.
    @Test func eachMemberAimsAtItsPartitionShare() throws {
        let rules = RuleSet(configuration: try RuleFile.parse("""
            policies:
              - {name: budget, type: byte_budget, byte_budget: {key_fields: [service.name], goal_bytes_per_sec: 1000, floor_bytes_per_sec: 100, adjustment_interval: 2s}}
            """, file: "budget.yaml"))
        let sampler = try #require(rules.policies[0].dynamicSampler)
        #expect(sampler.budget?.goalPerInterval == 2_000)
        sampler.setGoalShare(0.25)
        #expect(sampler.budget?.goalPerInterval == 500)
        // Must-keeps of 900 bytes in an interval leave the floor: 100 × 2 s × 0.25.
        sampler.account(keptBytes: 900, mustKeep: true, now: 0)
        sampler.advance(to: 2 * Self.second)
        #expect(sampler.budget?.budget.samplerShare == 50)
        #expect(sampler.budget?.budget.exceeded == 400)
    }

    @Test func ruleFileKeysAndTheirErrors() throws {
        let perDay = try RuleFile.parse("""
            policies:
              - {name: b, type: byte_budget, byte_budget: {key_fields: [service.name], goal_bytes_per_day: 50GB, floor_bytes_per_sec: 10KB}}
            """, file: "r.yaml")
        guard case .dynamic(let configuration) = perDay.policies[0].kind else { Issue.record("not a dynamic policy"); return }
        #expect(configuration.algorithm == .byteBudget)
        #expect(configuration.goalBytesPerSecond == 50e9 / 86_400)
        #expect(configuration.floorBytesPerSecond == 10_000)
        // What is wrong, and where.
        for (yaml, message) in [
            ("{key_fields: [service.name]}", "byte_budget needs goal_bytes_per_day"),
            ("{key_fields: [service.name], goal_bytes_per_sec: 1MB, goal_bytes_per_day: 1GB}", "not both"),
            ("{key_fields: [service.name], goal_bytes_per_sec: lots}", "is not a size"),
            ("{key_fields: [service.name], goal_bytes_per_sec: 1KB, floor_bytes_per_sec: 2KB}", "must not exceed the goal"),
            ("{key_fields: [service.name], goal_bytes_per_sec: 1KB, burst_multiple: 2}", "unknown key \"burst_multiple\""),
        ] {
            #expect {
                try RuleFile.parse("policies:\n  - {name: b, type: byte_budget, byte_budget: \(yaml)}\n", file: "r.yaml")
            } throws: { error in
                "\(error)".contains(message) && "\(error)".contains("r.yaml:2")
            }
        }
    }
}

/// The byte budget on a real engine over the dev broker: traffic well above the budget, kept bytes
/// per second in steady state within a quarter of it, every error trace kept, and every stored span
/// of the sampler's keeps saying its `SampleRate` with a `th` its trace id reaches.
@Suite(.serialized, .timeLimit(.minutes(10))) struct ByteBudgetEndToEndTests {
    @Test func aRealEngineKeepsToItsBudget() throws {
        let cluster = try KafkaMockCluster(topics: [("spans", 4)], logger: quietLogger)
        let data = FileManager.default.temporaryDirectory.appendingPathComponent("tailgate-budget-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: data) }
        let perSecond = 200.0, seed: UInt64 = 61, errorRate = 0.02
        // What comes in, from the generator: its first traces' span bytes.
        var probe = DogBookTraffic(seed: seed, errorRate: errorRate, slowRate: 0.03)
        let probeBytes = (0..<1_000).reduce(0) { sum, _ in sum + ConsoleBrowserTests.spanMessageBytes(DogBookTraffic.protobuf([probe.nextTrace(startUnixNano: 1)])) }
        let incoming = Double(probeBytes) / 1_000 * perSecond
        let goal = Int(incoming / 5)
        var configuration = EngineConfiguration(brokers: cluster.bootstrapServers)
        configuration.topics = ["spans"]
        configuration.rulesPath = try writeRules("""
            decision_wait: 500ms
            policies:
              - {name: errors, type: status_code, status_code: {status_codes: [ERROR]}}
              - {name: budget, type: byte_budget, byte_budget: {key_fields: [root.http.route], goal_bytes_per_sec: \(goal), adjustment_interval: 2s}}
            """)
        configuration.dataDirectory = data.path
        configuration.statusInterval = .seconds(60)
        let running = RunningEngine(try Engine(configuration: configuration, logger: quietLogger))
        let engine = running.engine
        defer { running.stop(timeout: .seconds(30)) }

        var options = TrafficProducer.Options()
        options.topic = "spans"
        options.traces = 0
        options.rate = perSecond
        options.errorRate = errorRate
        options.seed = seed
        let traffic = try BackgroundTraffic(on: cluster, options)

        func keptBytes() -> Double {
            let text = engine.prometheusText()
            return ["errors", "budget"].reduce(0) { $0 + (ConsoleBrowserTests.sample(text, "tailgate_kept_bytes_total{policy=\"\($1)\"}") ?? 0) }
        }
        // Steady state: once three intervals have ended, kept bytes over a twelve-second window of
        // wall-clock time (the quantity measured is a rate in real time).
        #expect(waitUntil(.seconds(60)) { (engine.budgets.first?.figures.intervals ?? 0) >= 3 }, "three budget intervals ended")
        let (startBytes, startAt) = (keptBytes(), ContinuousClock.now)
        Thread.sleep(forTimeInterval: 12)
        let keptPerSecond = (keptBytes() - startBytes) / (ContinuousClock.now - startAt).timeInterval
        let totals = try #require(traffic.stop(), "the traffic producer failed")
        print("byte_budget end to end: \(Int(incoming)) bytes/s in, goal \(goal) bytes/s, kept \(Int(keptPerSecond)) bytes/s")
        #expect(abs(keptPerSecond - Double(goal)) <= 0.25 * Double(goal), "kept \(Int(keptPerSecond)) bytes/s against a budget of \(goal)")

        // Everything decided; every error trace kept by the errors policy (the generator's truth).
        #expect(waitUntil(.seconds(60)) {
            let text = engine.prometheusText()
            return ConsoleBrowserTests.sample(text, "tailgate_spans_received_total") == Double(totals.spans)
                && ConsoleBrowserTests.sample(text, "tailgate_buffer_traces") == 0
                && ConsoleBrowserTests.sample(text, "tailgate_sink_pending_traces{sink=\"store\"}") == 0
        })
        var generator = DogBookTraffic(seed: seed, errorRate: errorRate, slowRate: 0.03)
        let errorTraces = (0..<totals.traces).map { _ in generator.nextTrace(startUnixNano: 1) }.filter { $0.spanSummaries.contains(where: \.isError) }
        let text = engine.prometheusText()
        #expect(ConsoleBrowserTests.sample(text, "tailgate_traces_kept_total{policy=\"errors\"}") == Double(errorTraces.count))
        let store = try #require(engine.store)
        for trace in errorTraces.prefix(50) { #expect(try store.trace(trace.traceID) != nil, "error trace \(trace.traceID.hex) stored") }
        #expect((ConsoleBrowserTests.sample(text, "tailgate_budget_goal_bytes_per_second{policy=\"budget\"}") ?? 0) == Double(goal))

        // The sampler's keeps: SampleRate and a th their trace ids reach.
        let query = try TraceQL.parse("{ span.tailgate.policy = \"budget\" }")
        var request = TraceSearchRequest(query: query)
        request.limit = 200
        let keptByBudget = try store.search(request).traces.map(\.traceID)
        let checked = try checkSampleRates(store, traces: keptByBudget)
        #expect(keptByBudget.count > 20 && checked.sampledAbove1 > 0, "\(keptByBudget.count) traces, \(checked.sampledAbove1) spans above rate 1")
        #expect(checked.wrong.isEmpty, "\(checked.wrong.count) spans: \(checked.wrong.prefix(5))")
    }
}
