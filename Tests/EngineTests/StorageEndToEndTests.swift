import HTTP
import Ingest
import Route
import Sinks
import Engine
import Traffic
import Foundation
import Kafka
import OTLP
import Sampling
import Storage
import Testing
import TestSupport

/// Rules without rate limits decide deterministically: the offline evaluation of the same traffic is
/// the oracle for what must be stored.
let deterministicRules = """
    decision_wait: 300ms
    policies:
      - {name: errors, type: status_code, status_code: {status_codes: [ERROR]}}
      - {name: slow, type: latency, latency: {threshold_ms: 1500}}
      - {name: baseline, type: probabilistic, probabilistic: {sampling_percentage: 10}}
    """

/// What `deterministicRules` keep among the first `count` traces of the generator, and by which
/// policy, from the generator's own truth — its error and slow flags (slow traces take 2.5 s and more,
/// the others well under 1.5 s) — and the collector's documented baseline hash (FNV-1a 64 over
/// "default-hash-seed" then the 16 id bytes, kept at or under 10% of 2^64), computed here without
/// tailgate's code.
func expectedDecisions(count: Int, seed: UInt64, errorRate: Double, slowRate: Double) -> [String: (spans: Int, policy: String)] {
    var traffic = DogBookTraffic(seed: seed, errorRate: errorRate, slowRate: slowRate)
    var kept: [String: (spans: Int, policy: String)] = [:]
    for _ in 0..<count {
        let trace = traffic.nextTrace(startUnixNano: 1)
        let policy = trace.isError ? "errors" : trace.isSlow ? "slow" : baselineKeeps(trace.traceID) ? "baseline" : nil
        if let policy { kept[trace.traceID.hex] = (trace.spanCount, policy) }
    }
    return kept
}

/// The traces `deterministicRules` keep, with their span counts (see ``expectedDecisions``).
func expectedKept(count: Int, seed: UInt64, errorRate: Double, slowRate: Double) -> [String: Int] {
    expectedDecisions(count: count, seed: seed, errorRate: errorRate, slowRate: slowRate).mapValues(\.spans)
}

/// The collector's probabilistic policy at `percent`% (10 by default) with the default salt,
/// written out from its README.
func baselineKeeps(_ id: TraceID, percent: Double = 10) -> Bool {
    var hash: UInt64 = 0xcbf2_9ce4_8422_2325
    let bytes = Array("default-hash-seed".utf8) + id.bytes
    for byte in bytes {
        hash ^= UInt64(byte)
        hash = hash &* 0x0000_0100_0000_01b3
    }
    return hash <= UInt64(Double(UInt64.max) * percent / 100)
}

func storedSpanCount(_ store: TraceStore, _ hex: String) throws -> Int? {
    guard let request = try store.trace(TraceID(hex: hex)!, policyAttribute: false) else { return nil }
    var batch = SpanBatch()
    _ = try SpanDecoder(encoding: .otlpProto).decode(request, into: &batch)
    return batch.spans.count
}

@Suite(.timeLimit(.minutes(10))) struct StorageEndToEndTests {
    /// The engine stores every kept trace whole, and Tempo's API serves it.
    @Test func keptTracesAreStoredWholeAndServedAsTempo() throws {
        let cluster = try KafkaMockCluster(topics: [("spans", 3)], logger: quietLogger)
        try produceTraffic(to: "spans", on: cluster, traces: 300, errorRate: 0.1, seed: 9)

        let data = FileManager.default.temporaryDirectory.appendingPathComponent("tailgate-data-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: data) }
        let rulesPath = try writeRules(deterministicRules)
        var configuration = EngineConfiguration(brokers: cluster.bootstrapServers)
        configuration.topics = ["spans"]
        configuration.rulesPath = rulesPath
        configuration.dataDirectory = data.path
        configuration.exitOnEOF = true
        configuration.httpAddress = "127.0.0.1:0"
        let engine = try Engine(configuration: configuration, logger: quietLogger)
        let summary = engine.run()

        let expected = expectedKept(count: 300, seed: 9, errorRate: 0.1, slowRate: 0.03)
        #expect(summary.tracesKept == expected.count)
        let store = try TraceStore(directory: data, readOnly: true)
        for (id, spans) in expected {
            #expect(try storedSpanCount(store, id) == spans, "trace \(id)")
        }

        // Tempo's trace-by-id, served from the same store (through the routes; the listener is closed).
        let routes = HTTPRoutes(backend: engine, adminToken: nil)
        let id = try #require(expected.keys.sorted().first)
        let v2 = routes.respond(to: HTTPRequest(method: "GET", path: "/api/v2/traces/\(id)"))
        #expect(v2.status == 200 && v2.contentType == "application/json")
        #expect(v2.text.hasPrefix("{\"trace\":{\"resourceSpans\":[{\"resource\":"))
        #expect(v2.text.contains("\"traceId\":\"\(id)\""))
        #expect(v2.text.contains("\"key\":\"tailgate.policy\""))
        let v1 = routes.respond(to: HTTPRequest(method: "GET", path: "/api/traces/\(id)"))
        #expect(v1.text.hasPrefix("{\"batches\":["))
        let proto = routes.respond(to: HTTPRequest(method: "GET", path: "/api/v2/traces/\(id)", headers: [("Accept", "application/protobuf")]))
        #expect(proto.contentType == "application/protobuf")
        #expect(proto.body.first == 0x0A, "TraceByIDResponse.trace, field 1")
        #expect(routes.respond(to: HTTPRequest(method: "GET", path: "/api/v2/traces/00000000000000000000000000000bad")).status == 404)
        #expect(routes.respond(to: HTTPRequest(method: "GET", path: "/api/v2/traces/not-hex")).status == 400)
    }

    /// `--output-topic`: kept traces re-published one per message, keyed by hex trace id, with
    /// tailgate.policy, both sinks at once.
    @Test func keptTracesToAKafkaTopicAndTheStoreAtOnce() throws {
        let cluster = try KafkaMockCluster(topics: [("spans", 2), ("kept", 2)], logger: quietLogger)
        try produceTraffic(to: "spans", on: cluster, traces: 200, errorRate: 0.1, seed: 5)
        let data = FileManager.default.temporaryDirectory.appendingPathComponent("tailgate-fan-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: data) }
        let rulesPath = try writeRules(deterministicRules)
        var configuration = EngineConfiguration(brokers: cluster.bootstrapServers)
        configuration.topics = ["spans"]
        configuration.rulesPath = rulesPath
        configuration.outputTopic = "kept"
        configuration.dataDirectory = data.path
        configuration.exitOnEOF = true
        let summary = try Engine(configuration: configuration, logger: quietLogger).run()
        let expected = expectedKept(count: 200, seed: 5, errorRate: 0.1, slowRate: 0.03)
        #expect(summary.tracesKept == expected.count)

        let reader = try KafkaConsumer(
            configuration: KafkaConsumerConfiguration(bootstrapServers: cluster.bootstrapServers, groupID: "check", topics: ["kept"], statisticsInterval: nil),
            logger: quietLogger)
        var published: [String: Int] = [:]
        var policies = Set<String>()
        var wrongKeys = 0
        let complete = waitUntil(.seconds(30)) {
            reader.poll(timeout: .milliseconds(100)) { message in
                let key = String(decoding: message.key ?? UnsafeRawBufferPointer(start: nil, count: 0), as: UTF8.self)
                var batch = SpanBatch(selection: AttributeSelection(keys: ["tailgate.policy"]))
                guard (try? SpanDecoder(encoding: .otlpProto).decode(message.payload, into: &batch)) != nil else { return }
                if !batch.spans.allSatisfy({ $0.traceID.hex == key }) { wrongKeys += 1 }
                published[key, default: 0] += batch.spans.count
                for span in batch.spans {
                    if case .string(let range) = batch.value(of: AttributeKeyID(rawValue: 0), for: span) { policies.insert(batch.string(range)) }
                }
            }
            return published.count >= expected.count
        }
        #expect(complete)
        #expect(wrongKeys == 0, "every message is keyed by its hex trace id")
        reader.close()
        #expect(published == expected)
        #expect(policies.isSubset(of: ["errors", "slow", "baseline"]) && !policies.isEmpty)
        let store = try TraceStore(directory: data, readOnly: true)
        #expect(store.traceCount == expected.count)
    }

    /// kill -9 of `tailgate run` mid-stream, then a restart: every kept trace is stored whole.
    @Test func killNineLosesNoKeptTrace() throws {
        let processes = Processes()
        let (_, pipe) = try processes.start(["dev-broker", "--partitions", "4"])
        let bootstrap = try #require(processes.firstLine(of: pipe, timeout: .seconds(20)))
        let data = FileManager.default.temporaryDirectory.appendingPathComponent("tailgate-kill-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: data) }
        let rulesPath = try writeRules(deterministicRules)
        let group = ["--kafka-property", "session.timeout.ms=6000", "--kafka-property", "heartbeat.interval.ms=500",
                     "--kafka-property", "max.poll.interval.ms=10000"]

        // Traffic keeps flowing while the engine is killed.
        let (loadgen, _) = try processes.start(["loadgen", "--brokers", bootstrap, "--traces", "1500", "--rate", "100", "--error-rate", "0.1", "--seed", "77"])
        let (victim, _) = try processes.start(
            ["run", "--brokers", bootstrap, "--rules", rulesPath, "--data", data.path, "--http", "127.0.0.1:0", "--log-level", "warning"] + group)
        // The victim has worked: it stored kept traces and committed offsets past them, and traffic is
        // still flowing (the kill falls mid-stream, with traces buffered and deliveries in flight).
        #expect(waitUntil(.seconds(60)) { storeHasData(data) && committedMessages(bootstrap: bootstrap, partitions: 4) > 0 },
                "the victim stored and committed before the kill")
        let committedBeforeKill = committedMessages(bootstrap: bootstrap, partitions: 4)
        #expect(loadgen.isRunning, "the kill falls while traffic flows")
        kill(victim.processIdentifier, SIGKILL)
        victim.waitUntilExit()
        loadgen.waitUntilExit()
        #expect(loadgen.terminationStatus == 0)

        let restart = try processes.run(
            ["run", "--brokers", bootstrap, "--rules", rulesPath, "--data", data.path, "--exit-on-eof", "--http", "127.0.0.1:0",
             "--log-level", "warning"] + group, timeout: .seconds(120))
        #expect(restart.status == 0)

        let expected = expectedKept(count: 1500, seed: 77, errorRate: 0.1, slowRate: 0.03)
        let store = try TraceStore(directory: data, readOnly: true)
        var missing: [String] = []
        for (id, spans) in expected where try storedSpanCount(store, id) != spans { missing.append(id) }
        #expect(missing.isEmpty, "\(missing.count) of \(expected.count) kept traces missing or partial after kill -9")
        #expect(expected.count > 100)
        #expect(committedBeforeKill > 0 && committedBeforeKill < 1500, "killed mid-stream: \(committedBeforeKill) of 1500 messages committed")
    }

    /// Two `tailgate run` processes in one group; the second joins mid-stream (a rebalance), the
    /// first leaves before the end (another). Every kept trace ends up whole in one of the stores.
    @Test func rebalanceBetweenTwoProcessesLosesNoKeptTrace() throws {
        let processes = Processes()
        let (_, pipe) = try processes.start(["dev-broker", "--partitions", "6"])
        let bootstrap = try #require(processes.firstLine(of: pipe, timeout: .seconds(20)))
        let dataA = FileManager.default.temporaryDirectory.appendingPathComponent("tailgate-a-\(UUID().uuidString)")
        let dataB = FileManager.default.temporaryDirectory.appendingPathComponent("tailgate-b-\(UUID().uuidString)")
        defer {
            try? FileManager.default.removeItem(at: dataA)
            try? FileManager.default.removeItem(at: dataB)
        }
        let rulesPath = try writeRules(deterministicRules)
        let group = ["--kafka-property", "session.timeout.ms=6000", "--kafka-property", "heartbeat.interval.ms=500",
                     "--kafka-property", "max.poll.interval.ms=10000", "--http", "127.0.0.1:0", "--log-level", "warning",
                     "--rules", rulesPath]
        let (loadgen, _) = try processes.start(["loadgen", "--brokers", bootstrap, "--traces", "3000", "--rate", "250", "--error-rate", "0.1", "--seed", "31"])
        let (first, _) = try processes.start(["run", "--brokers", bootstrap, "--data", dataA.path] + group)
        // Each step waits for the previous one to show (a member storing traces), not for a fixed time.
        #expect(waitUntil(.seconds(60)) { storeHasData(dataA) }, "the first member stores kept traces")
        let (second, _) = try processes.start(["run", "--brokers", bootstrap, "--data", dataB.path] + group)
        #expect(waitUntil(.seconds(60)) { storeHasData(dataB) }, "after the rebalance the second member stores too")
        // The first member leaves gracefully (SIGTERM: decide, store, commit, leave).
        first.terminate()
        first.waitUntilExit()
        #expect(first.terminationStatus == 0)
        loadgen.waitUntilExit()
        #expect(loadgen.terminationStatus == 0)
        // The second finishes the topic.
        second.terminate()
        second.waitUntilExit()
        #expect(second.terminationStatus == 0, "the second member leaves cleanly too")
        let tail = try processes.run(["run", "--brokers", bootstrap, "--data", dataB.path, "--exit-on-eof"] + group, timeout: .seconds(120))
        #expect(tail.status == 0)

        let expected = expectedKept(count: 3000, seed: 31, errorRate: 0.1, slowRate: 0.03)
        let stores = [try TraceStore(directory: dataA, readOnly: true), try TraceStore(directory: dataB, readOnly: true)]
        var missing = 0
        for (id, spans) in expected {
            let found = try stores.compactMap { try storedSpanCount($0, id) }.max()
            if found != spans { missing += 1 }
        }
        #expect(missing == 0, "\(missing) of \(expected.count) kept traces missing or partial across the rebalances")
        #expect(stores[0].traceCount > 0 && stores[1].traceCount > 0, "both members kept traces")
    }
}

/// Whether a store directory has a non-empty segment.
func storeHasData(_ directory: URL) -> Bool {
    let names = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
    return names.contains { name in
        name.hasSuffix(".tgs") && ((try? FileManager.default.attributesOfItem(atPath: directory.appendingPathComponent(name).path)[.size] as? Int) ?? 0) > 0
    }
}
