import Engine
import Foundation
import Kafka
import OTLP
import Synchronization
import Storage
import Testing
import TestSupport

/// Faults against the whole engine, on the dev broker, bounded in time. (Kill -9 with restart, broker
/// outages and rebalances: StorageEndToEndTests, KafkaTests, SamplingStageTests.)
@Suite(.timeLimit(.minutes(10))) struct FaultTests {
    /// The OTLP receiver is down for 30 s: kept traces queue in front of it and count toward the
    /// buffer limit, so consumption pauses instead of memory growing; when the receiver is back
    /// everything arrives and nothing is lost.
    @Test func otlpReceiverDownPausesConsumptionThenDeliversEverything() throws {
        let probe = try TestReceiver()
        let port = probe.port
        probe.shutdown()
        let cluster = try KafkaMockCluster(topics: [("spans", 2)], logger: quietLogger)
        let sent = try produceTraffic(to: "spans", on: cluster, traces: 6000, seed: 11)

        let limit = 4 << 20
        var configuration = EngineConfiguration(brokers: cluster.bootstrapServers)
        configuration.topics = ["spans"]
        configuration.rulesPath = try writeRules("decision_wait: 200ms\npolicies: [{name: all, type: always_sample}]")
        configuration.otlpEndpoint = "http://127.0.0.1:\(port)"
        configuration.bufferLimit = limit
        configuration.statusInterval = .seconds(60)
        let engine = try Engine(configuration: configuration, logger: quietLogger)
        let done = DispatchSemaphore(value: 0)
        let summary = Mutex<RunSummary?>(nil)
        Thread {
            let result = engine.run()
            summary.withLock { $0 = result }
            done.signal()
        }.start()
        defer {
            engine.requestStop()
            _ = done.wait(timeout: .now() + 60)
        }

        // Paused, well short of the topic's end.
        #expect(waitUntil(.seconds(30)) { engine.prometheusText().contains("\ntailgate_kafka_partitions_paused 2\n") })
        let outageStart = ContinuousClock.now
        var peakHeld = 0
        var received: [Int] = []
        while ContinuousClock.now - outageStart < .seconds(30) {
            let sampling = engine.sampling!
            peakHeld = max(peakHeld, sampling.queuedBytes + sampling.metrics.buffered.bytes)
            received.append(engine.metrics.snapshot.messagesReceived)
            Thread.sleep(forTimeInterval: 0.5)
        }
        #expect(received.last! < 6000, "consumption paused")
        #expect(received.last! == received[received.count / 2], "nothing consumed in the second half of the outage")
        // Bounded: the limit, plus what was in flight when the pause took effect (polls shrink near the
        // limit, so that is a few small polls, not a full one).
        print("fault otlp-down-30s: \(sent.traces) traces / \(sent.spans) spans produced, \(received.last!) messages consumed before the pause, peak held \(peakHeld) bytes against a \(limit)-byte limit")
        #expect(peakHeld < limit + (4 << 20), "peak held \(peakHeld) bytes against a \(limit)-byte limit")
        #expect(engine.prometheusText().contains("tailgate_sink_retries_total{sink=\"otlp\"} "))

        // The receiver comes back: everything arrives (the exporter's backoff is at most 30 s).
        let receiver = try TestReceiver(port: port)
        defer { receiver.shutdown() }
        #expect(waitUntil(.seconds(120)) { receiver.acceptedSpans.load(ordering: .relaxed) >= sent.spans })
        #expect(receiver.acceptedSpans.load(ordering: .relaxed) == sent.spans, "every span once")
        engine.requestStop()
        #expect(done.wait(timeout: .now() + 60) == .success)
        let result = try #require(summary.withLock { $0 })
        #expect(result.messages == 6000 && result.tracesKept == 6000)
    }

    /// One broker of three goes down for 15 s in the middle of consumption: no crash, and every trace
    /// is decided and kept exactly as if nothing had happened.
    @Test func aBrokerOfThreeDownForFifteenSeconds() throws {
        let cluster = try KafkaMockCluster(brokers: 3, topics: [("spans", 6)], logger: quietLogger)
        let sent = try produceTraffic(to: "spans", on: cluster, traces: 3000, seed: 12)
        var configuration = EngineConfiguration(brokers: cluster.bootstrapServers)
        configuration.topics = ["spans"]
        configuration.rulesPath = try writeRules("decision_wait: 200ms\npolicies: [{name: all, type: always_sample}]")
        configuration.statusInterval = .seconds(60)
        configuration.bufferLimit = 4 << 20  // small: consumption is still going on when the broker fails
        let kept = KeptTraces()
        let engine = try Engine(configuration: configuration, kept: kept, logger: quietLogger)
        let done = DispatchSemaphore(value: 0)
        let summary = Mutex<RunSummary?>(nil)
        Thread {
            let result = engine.run()
            summary.withLock { $0 = result }
            done.signal()
        }.start()
        defer {
            engine.requestStop()
            _ = done.wait(timeout: .now() + 60)
        }
        #expect(waitUntil(.seconds(30)) { engine.metrics.snapshot.messagesReceived > 0 })
        try cluster.setBroker(2, down: true)
        let atFailure = engine.metrics.snapshot.messagesReceived
        Thread.sleep(forTimeInterval: 15)
        try cluster.setBroker(2, down: false)
        #expect(waitUntil(.seconds(120)) { kept.snapshot.count == 3000 })
        print("fault broker-down-15s: \(sent.traces) traces / \(sent.spans) spans produced, \(atFailure) messages consumed when broker 2 went down, \(kept.snapshot.count) traces kept")
        engine.requestStop()
        #expect(done.wait(timeout: .now() + 60) == .success)
        let result = try #require(summary.withLock { $0 })
        #expect(result.spans >= sent.spans, "every span read (more only if a partition was read twice)")
        #expect(result.outcome == "stopped")
    }

    /// `kill -9` at five points (seeded, so a failure reproduces) while traffic flows, a restart
    /// after each, then a last run to the end: every trace the rules keep is stored whole.
    @Test func killNineAtFivePointsLosesNoKeptTrace() throws {
        let processes = Processes()
        let (_, pipe) = try processes.start(["dev-broker", "--partitions", "4"])
        let bootstrap = try #require(processes.firstLine(of: pipe, timeout: .seconds(20)))
        let data = FileManager.default.temporaryDirectory.appendingPathComponent("tailgate-kill5-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: data) }
        let rulesPath = try writeRules(deterministicRules)
        let group = ["--kafka-property", "session.timeout.ms=6000", "--kafka-property", "heartbeat.interval.ms=500",
                     "--kafka-property", "max.poll.interval.ms=10000"]
        let run = ["run", "--brokers", bootstrap, "--rules", rulesPath, "--data", data.path, "--http", "127.0.0.1:0", "--log-level", "error"] + group

        let (loadgen, _) = try processes.start(["loadgen", "--brokers", bootstrap, "--traces", "3000", "--rate", "100", "--error-rate", "0.1", "--seed", "78"])
        var state: UInt64 = 5
        var points: [Double] = []
        for _ in 0..<5 {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            let delay = 2.0 + Double(state >> 40) / Double(1 << 24) * 5.0  // 2–7 s after start
            points.append(delay)
            let (victim, _) = try processes.start(run)
            Thread.sleep(forTimeInterval: delay)
            kill(victim.processIdentifier, SIGKILL)
            victim.waitUntilExit()
        }
        loadgen.waitUntilExit()
        #expect(loadgen.terminationStatus == 0)
        let last = try processes.run(run + ["--exit-on-eof"], timeout: .seconds(180))
        #expect(last.status == 0)

        let expected = try expectedKept(count: 3000, seed: 78, errorRate: 0.1, slowRate: 0.03, rules: try RuleLoader.load(rulesPath))
        let store = try TraceStore(directory: data, readOnly: true)
        var missing: [String] = []
        for (id, spans) in expected where try storedSpanCount(store, id) != spans { missing.append(id) }
        print("fault kill-9 x5 at \(points.map { String(format: "%.1fs", $0) }.joined(separator: ", ")): 3000 traces produced, \(expected.count) kept by the rules, \(expected.count - missing.count) stored whole")
        #expect(missing.isEmpty, "\(missing.count) of \(expected.count) kept traces missing or partial after five kill -9")
        #expect(expected.count > 200)
    }
}

