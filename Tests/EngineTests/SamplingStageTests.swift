import HTTP
import Ingest
import Route
import Sinks
import Engine
import Traffic
import Foundation
import Kafka
import Logging
import OTLP
import Sampling
import Storage
import Synchronization
import Testing
import TestSupport

/// Captures kept trace ids with their policy (and late-span pieces) for assertions; acknowledges at once.
final class KeptTraces: TraceSink {
    let name = "test"
    let ids = Mutex<[TraceID: String]>([:])
    let late = Atomic<Int>(0)
    func send(_ trace: StoredTrace, acknowledged: @escaping @Sendable () -> Void) {
        let isLate = ids.withLock { ids in
            if ids[trace.traceID] != nil { return true }
            ids[trace.traceID] = trace.policy
            return false
        }
        if isLate { late.add(1, ordering: .relaxed) }
        acknowledged()
    }
    func flush(timeout: Duration) -> Bool { true }
    func stop(timeout: Duration) {}
    var queuedBytes: Int { 0 }
    var statistics: TraceSinkStatistics { TraceSinkStatistics(delivered: ids.withLock { $0.count }) }
    var snapshot: [TraceID: String] { ids.withLock { $0 } }
}

/// Kept traces by hex id, as "policy: N spans" (N decoded from what the sink was handed).
final class KeptSpanCounts: TraceSink {
    let name = "test"
    private let kept = Mutex<[String: String]>([:])
    func send(_ trace: StoredTrace, acknowledged: @escaping @Sendable () -> Void) {
        var batch = SpanBatch()
        let spans = (try? SpanDecoder(encoding: .otlpProto).decode(trace.request, into: &batch)).map { _ in batch.spans.count } ?? -1
        kept.withLock { $0[trace.traceID.hex, default: ""] += "\(trace.policy): \(spans) spans" }
        acknowledged()
    }
    func flush(timeout: Duration) -> Bool { true }
    func stop(timeout: Duration) {}
    var queuedBytes: Int { 0 }
    var statistics: TraceSinkStatistics { TraceSinkStatistics(delivered: kept.withLock { $0.count }) }
    var snapshot: [String: String] { kept.withLock { $0 } }
}

func writeRules(_ yaml: String) throws -> String {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("tailgate-rules-\(UUID().uuidString).yaml").path
    try yaml.write(toFile: path, atomically: true, encoding: .utf8)
    return path
}

let errorsAndSlow = """
    decision_wait: 300ms
    policies:
      - {name: errors, type: status_code, status_code: {status_codes: [ERROR]}}
      - {name: slow, type: latency, latency: {threshold_ms: 1500}}
      - {name: baseline, type: probabilistic, probabilistic: {sampling_percentage: 10}}
    """

@Suite(.timeLimit(.minutes(10))) struct SamplingStageTests {
    /// The engine over Kafka keeps exactly what the traffic generator says it should: every trace
    /// decided once, whole, by the policy its nature calls for.
    @Test func engineDecisionsEqualTheGeneratorsTruth() throws {
        let cluster = try KafkaMockCluster(topics: [("spans", 4)], logger: quietLogger)
        let sent = try produceTraffic(to: "spans", on: cluster, traces: 600, errorRate: 0.1, slowRate: 0.1, seed: 42)

        let rulesPath = try writeRules(errorsAndSlow)
        var configuration = EngineConfiguration(brokers: cluster.bootstrapServers)
        configuration.topics = ["spans"]
        configuration.rulesPath = rulesPath
        configuration.exitOnEOF = true
        configuration.shards = 3
        let kept = KeptTraces()
        let summary = try Engine(configuration: configuration, kept: kept, logger: quietLogger).run()
        #expect(summary.spans == sent.spans)
        #expect(summary.tracesKept + summary.tracesDropped == 600, "every trace decided exactly once")

        // What the generator knows it sent: every error trace by `errors`, every slow one by `slow`,
        // the 10% baseline by the collector's hash (computed independently of tailgate).
        let expected = expectedDecisions(count: 600, seed: 42, errorRate: 0.1, slowRate: 0.1).mapValues(\.policy)
        let actual = Dictionary(uniqueKeysWithValues: kept.snapshot.map { ($0.key.hex, $0.value) })
        #expect(actual == expected)
        #expect(summary.keptByPolicy["errors"] ?? 0 > 30)
    }

    /// Many traces per unkeyed message, as an exporter without `partition_traces_by_id` batches them:
    /// each trace's spans come in pieces, one per service, and a shard takes them trace by trace
    /// (``TraceGrouping``). Every trace is decided once, by the policy the generator says, and each
    /// kept one is stored with every span it was sent with.
    @Test func tracesInPiecesAreDecidedWhole() throws {
        let cluster = try KafkaMockCluster(topics: [("spans", 4)], logger: quietLogger)
        let sent = try produceTraffic(to: "spans", on: cluster, traces: 600, errorRate: 0.1, slowRate: 0.1, seed: 43, tracesPerMessage: 20)
        #expect(sent.messages == 30)

        var configuration = EngineConfiguration(brokers: cluster.bootstrapServers)
        configuration.topics = ["spans"]
        configuration.rulesPath = try writeRules(errorsAndSlow)
        configuration.exitOnEOF = true
        configuration.shards = 3
        let kept = KeptSpanCounts()
        let engine = try Engine(configuration: configuration, kept: kept, logger: quietLogger)
        let summary = engine.run()
        #expect(summary.spans == sent.spans)
        #expect(summary.tracesKept + summary.tracesDropped == 600, "every trace decided exactly once")
        let expected = expectedDecisions(count: 600, seed: 43, errorRate: 0.1, slowRate: 0.1).mapValues { "\($0.policy): \($0.spans) spans" }
        #expect(kept.snapshot == expected)
        // Every span went through a window to its decision, dropped traces' too: RED counts each once.
        let calls = engine.metricsText(format: .prometheus).split(separator: "\n")
            .filter { $0.hasPrefix("traces_spanmetrics_calls_total{") }
            .compactMap { $0.split(separator: " ").last.flatMap { Int($0) } }
        #expect(calls.reduce(0, +) == sent.spans)
    }

    /// Offsets are committed only behind decided traces: with a decision wait far away, nothing
    /// consumed is committable; after a stop (which decides everything), all of it is.
    @Test func offsetsWaitForDecisions() throws {
        let cluster = try KafkaMockCluster(topics: [("spans", 1)], logger: quietLogger)
        let sent = try produceTraffic(to: "spans", on: cluster, traces: 50)

        var configuration = EngineConfiguration(brokers: cluster.bootstrapServers)
        configuration.topics = ["spans"]
        configuration.rulesPath = try writeRules("decision_wait: 1h\npolicies: [{name: all, type: always_sample}]")
        configuration.statusInterval = .seconds(60)
        configuration.kafkaProperties = KafkaProperties(["session.timeout.ms": "6000", "heartbeat.interval.ms": "250"])
        configuration.httpAddress = "127.0.0.1:0"
        let kept = KeptTraces()
        let running = RunningEngine(try Engine(configuration: configuration, kept: kept, logger: quietLogger))
        let engine = running.engine
        #expect(waitUntil(.seconds(30)) { engine.metrics.snapshot.messagesReceived == 50 })
        #expect(waitUntil(.seconds(5)) { engine.sampling!.metrics.buffered.traces == 50 })
        #expect(waitUntil(.seconds(5)) { engine.sampling!.lastCommittableOffsets[TopicPartition("spans", 0)] != nil })
        let held = engine.sampling!.lastCommittableOffsets
        #expect(held[TopicPartition("spans", 0)] == 0, "the first message's trace is undecided: nothing committable")
        // One trace per message: each of the 50 holds its message's offset, nothing else is pending.
        #expect(waitUntil(.seconds(5)) { engine.sampling!.ledgerSize == DeliveryLedger.Size(heldOffsets: 50) })
        #expect(kept.snapshot.isEmpty)

        // The same state over the HTTP listener.
        let port = UInt16(try #require(engine.boundHTTPAddress).split(separator: ":").last!)!
        let metrics = try rawHTTP(port: port, "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        #expect(metrics.contains("\ntailgate_buffer_traces 50\n"))
        #expect(metrics.contains("\ntailgate_spans_received_total \(sent.spans)\n"), "what the generator sent")
        #expect(try rawHTTP(port: port, "GET /-/ready HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").hasPrefix("HTTP/1.1 200"))

        let summary = running.stop(timeout: .seconds(30))
        #expect(summary != nil, "run() returns after a stop")
        #expect(summary?.tracesKept == 50, "stopping decides what is buffered")
        #expect(kept.snapshot.count == 50)

        // Committed: the same group has nothing left to read.
        var again = configuration
        again.exitOnEOF = true
        let rerun = try Engine(configuration: again, kept: KeptTraces(), logger: quietLogger).run()
        #expect(rerun.messages == 0)
    }

    /// The buffer limit pauses Kafka instead of dropping; after the stop every trace is decided.
    @Test func bufferLimitPausesConsumptionAndLosesNothing() throws {
        let cluster = try KafkaMockCluster(topics: [("spans", 2)], logger: quietLogger)
        let sent = try produceTraffic(to: "spans", on: cluster, traces: 2000)

        var configuration = EngineConfiguration(brokers: cluster.bootstrapServers)
        configuration.topics = ["spans"]
        configuration.rulesPath = try writeRules("decision_wait: 1h\npolicies: [{name: all, type: always_sample}]")
        configuration.bufferLimit = 256 * 1024
        configuration.statusInterval = .seconds(60)
        configuration.kafkaProperties = KafkaProperties([
            "session.timeout.ms": "6000", "heartbeat.interval.ms": "250",
            // Small fetches so the pause bites before everything is in memory.
            "max.partition.fetch.bytes": "32768", "queued.max.messages.kbytes": "64", "queued.min.messages": "10",
        ])
        let kept = KeptTraces()
        let running = RunningEngine(try Engine(configuration: configuration, kept: kept, logger: quietLogger))
        let engine = running.engine
        #expect(waitUntil(.seconds(30)) { engine.prometheusText().contains("tailgate_kafka_partitions_paused 2\n") })
        let received = engine.metrics.snapshot.messagesReceived
        #expect(received < 2000, "consumption paused before the whole topic was read (\(received))")
        // Fetches in flight can overshoot for a moment; past 1.25× the limit the heaviest traces are
        // decided early, which brings the buffer back near it.
        #expect(waitUntil(.seconds(15)) { engine.sampling!.metrics.buffered.bytes < 2 * 256 * 1024 }, "memory returns near the limit")
        // Far above the limit the heaviest traces are decided early, which lets consumption go on.
        #expect(running.stop(timeout: .seconds(30)) != nil, "run() returned")
        // Nothing lost, against what the generator sent: what the stop decided (and committed) plus
        // what a second run reads from there to the end is every one of the 2 000 traces, once.
        var again = configuration
        again.exitOnEOF = true
        let rest = KeptTraces()
        _ = try Engine(configuration: again, kept: rest, logger: quietLogger).run()
        let first = Set(kept.snapshot.keys), second = Set(rest.snapshot.keys)
        #expect(sent.traces == 2000)
        #expect(first.isDisjoint(with: second), "\(first.intersection(second).count) traces decided by both runs")
        #expect(first.union(second).count == sent.traces, "\(first.count) + \(second.count) of \(sent.traces) traces kept")
        #expect(!second.isEmpty, "the paused run left some for the second")
    }
}

/// Hot reload: file edits, Kubernetes ConfigMap symlink swaps, invalid files.
@Suite struct RuleReloadTests {
    let good = "policies: [{name: errors, type: status_code, status_code: {status_codes: [ERROR]}}]"
    let other = "policies: [{name: all, type: always_sample}]"

    /// The layout kubelet makes: `rules.yaml -> ..data/rules.yaml`, `..data -> ..2026_11_25_01`,
    /// updated by creating a new timestamped directory and renaming a new `..data` link over the old.
    @Test func configMapSymlinkSwapIsNoticed() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("tailgate-cm-\(UUID().uuidString)")
        let fm = FileManager.default
        try fm.createDirectory(at: root.appendingPathComponent("..v1"), withIntermediateDirectories: true)
        try good.write(to: root.appendingPathComponent("..v1/rules.yaml"), atomically: true, encoding: .utf8)
        try fm.createSymbolicLink(atPath: root.appendingPathComponent("..data").path, withDestinationPath: "..v1")
        try fm.createSymbolicLink(atPath: root.appendingPathComponent("rules.yaml").path, withDestinationPath: "..data/rules.yaml")
        defer { try? fm.removeItem(at: root) }

        let engine = try RuleHarness(path: root.appendingPathComponent("rules.yaml").path)
        #expect(engine.store.rules.policies.map(\.spec.name) == ["errors"])
        engine.store.checkForChange()
        #expect(engine.store.rules.policies.map(\.spec.name) == ["errors"], "no change, no reload")

        // Same size, same second: only the symlink target differs.
        try fm.createDirectory(at: root.appendingPathComponent("..v2"), withIntermediateDirectories: true)
        try other.padding(toLength: good.count, withPad: " ", startingAt: 0)
            .write(to: root.appendingPathComponent("..v2/rules.yaml"), atomically: true, encoding: .utf8)
        try fm.createSymbolicLink(atPath: root.appendingPathComponent("..data_tmp").path, withDestinationPath: "..v2")
        #expect(rename(root.appendingPathComponent("..data_tmp").path, root.appendingPathComponent("..data").path) == 0)
        engine.store.checkForChange()
        #expect(engine.store.rules.policies.map(\.spec.name) == ["all"])
        #expect(engine.metrics.reloadFailures == 0)
    }

    @Test func invalidFileNeverReplacesTheRunningRules() throws {
        let path = try writeRules(good)
        let engine = try RuleHarness(path: path)
        try "policies: [{name: broken, type: nope}]".write(toFile: path, atomically: true, encoding: .utf8)
        engine.store.checkForChange()
        #expect(engine.store.rules.policies.map(\.spec.name) == ["errors"])
        #expect(engine.metrics.reloadFailures == 1)
        engine.store.checkForChange()
        #expect(engine.metrics.reloadFailures == 1, "a refused file is not retried until it changes again")
        #expect(engine.metrics.prometheusText(bufferLimit: 0).contains("tailgate_rules_reload_failures_total 1\n"))
        try other.write(toFile: path, atomically: true, encoding: .utf8)
        engine.store.checkForChange()
        #expect(engine.store.rules.policies.map(\.spec.name) == ["all"])
        #expect(engine.metrics.prometheusText(bufferLimit: 0).contains("tailgate_rules_info{hash=\"\(engine.store.rules.hash)\",policies=\"1\"} 1\n"))
    }
}

/// Reloads from SIGHUP, `POST /-/reload` and the watcher can overlap: the newest file content wins.
@Suite struct RuleReloadOrderTests {
    @Test func concurrentReloadsEndWithTheNewestFile() throws {
        // Large enough that parses overlap (a few milliseconds each).
        func rules(_ version: Int) -> String {
            "policies:\n" + (0..<150).map { "  - {name: v\(version)-\($0), type: always_sample}\n" }.joined()
        }
        let path = try writeRules(rules(0))
        let harness = try RuleHarness(path: path)
        let threads = 6
        let done = DispatchSemaphore(value: 0)
        let spans = Mutex<[(start: ContinuousClock.Instant, end: ContinuousClock.Instant)]>([])
        for version in 1...30 {
            try rules(version).write(toFile: path, atomically: true, encoding: .utf8)
            for _ in 0..<threads {
                Thread {
                    let start = ContinuousClock.now
                    harness.store.reload(reason: "test")
                    let end = ContinuousClock.now
                    spans.withLock { $0.append((start, end)) }
                    done.signal()
                }.start()
            }
        }
        for _ in 0..<(30 * threads) { done.wait() }
        // The race happened: reloads were under way at the same time (one asked while another ran).
        let sorted = spans.withLock { $0 }.sorted { $0.start < $1.start }
        let overlapping = zip(sorted, sorted.dropFirst()).filter { $1.start < $0.end }.count
        #expect(overlapping > 10, "reloads overlapped \(overlapping) times of \(sorted.count)")
        // Every reload has returned; the last ones to run read version 30, and none that read an older
        // version may have finished after them.
        #expect(harness.store.rules.policies.first?.spec.name == "v30-0")
    }
}

/// A rule store with its metrics, outside an engine.
struct RuleHarness {
    let metrics: SamplingMetrics
    let store: RuleStore

    init(path: String) throws {
        metrics = SamplingMetrics(shards: 1)
        store = try RuleStore(path: path, metrics: metrics, logger: quietLogger, fallback: Engine.keepEverything)
    }
}
