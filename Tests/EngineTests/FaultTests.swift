import Engine
import Foundation
import Kafka
import OTLP
import Synchronization
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
        #expect(peakHeld < limit + (6 << 20), "peak held \(peakHeld) bytes against a \(limit)-byte limit")
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
}

