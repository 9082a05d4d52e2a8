import HTTP
import Ingest
import Route
import Sampling
import Sinks
import Engine
import Traffic
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
        let running = RunningEngine(try Engine(configuration: configuration, logger: quietLogger))
        let engine = running.engine
        defer { running.stop() }

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
        let result = try #require(running.stop(), "run() returns after a stop")
        #expect(result.messages == 6000 && result.tracesKept == 6000)
    }

    /// Issue 26, item 7, through the engine: the OTLP receiver answers 415 (it expects another
    /// encoding: a configuration fault, not bad data) to its first 6 requests while traffic flows,
    /// then 200. The sink is marked failing meanwhile and holds what it was given; once the receiver
    /// accepts, every span of every kept trace arrives (before, a 415 was acknowledged and dropped:
    /// 509 of 1 001 traces never arrived in the issue's run).
    @Test func aReceiverAnswering415HoldsEverythingUntilItAccepts() throws {
        // Six: the exporter backs off exponentially (0.25 s doubling), about 8 s in all.
        let receiver = try TestReceiver(script: Array(repeating: (status: 415, retryAfter: nil), count: 6))
        defer { receiver.shutdown() }
        let cluster = try KafkaMockCluster(topics: [("spans", 2)], logger: quietLogger)
        let sent = try produceTraffic(to: "spans", on: cluster, traces: 600, seed: 26)
        var configuration = EngineConfiguration(brokers: cluster.bootstrapServers)
        configuration.topics = ["spans"]
        configuration.rulesPath = try writeRules("decision_wait: 200ms\npolicies: [{name: all, type: always_sample}]")
        configuration.otlpEndpoint = "http://127.0.0.1:\(receiver.port)"
        configuration.statusInterval = .seconds(60)
        let running = RunningEngine(try Engine(configuration: configuration, logger: quietLogger))
        defer { running.stop() }
        let engine = running.engine
        #expect(waitUntil(.seconds(60)) { engine.prometheusText().contains("tailgate_sink_failing{sink=\"otlp\"} 1") }, "the sink says it is failing")
        #expect(waitUntil(.seconds(180)) { receiver.acceptedSpans.load(ordering: .relaxed) >= sent.spans })
        let traces = receiver.spansByTrace.withLock { $0 }
        #expect(traces.count == sent.traces, "every kept trace arrived: \(traces.count) of \(sent.traces)")
        #expect(traces.values.reduce(0) { $0 + $1.count } == sent.spans, "every span")
        #expect(receiver.requests.load(ordering: .relaxed) > 6, "the 415s were retried")
        #expect(waitUntil(.seconds(30)) { engine.prometheusText().contains("tailgate_sink_failing{sink=\"otlp\"} 0") }, "and the sink recovered")
    }

    /// The field report behind the delivery ledger: every trace kept and sent to an OTLP receiver;
    /// rootless traces are decided at `decision_wait` (3 s), after hundreds of later traces with roots
    /// (300 ms); the receiver refuses (503) meanwhile, `kill -9` lands during the refusal, and tailgate
    /// starts again once the receiver is back. Every trace arrives whole. Staged so that the old
    /// heuristic (the lowest of the first 64 unacknowledged traces, in decision order) had to fail:
    /// (A) traces with roots, all delivered; then the outage; (B) 30 rootless traces; (C) traces with
    /// roots, whose decisions queue in front of B's. The old code committed past B and lost it.
    @Test func killNineDuringAReceiverOutageLosesNoRootlessTrace() throws {
        let processes = Processes()
        let (_, pipe) = try processes.start(["dev-broker", "--partitions", "1"])
        let bootstrap = try #require(processes.firstLine(of: pipe, timeout: .seconds(20)))
        let receiver = try TestReceiver()
        defer { receiver.shutdown() }
        let rulesPath = try writeRules(
            "decision_wait: 3s\ndecision_wait_after_root_received: 300ms\npolicies: [{name: all, type: always_sample}]")
        let port = try freePort()
        let run = ["run", "--brokers", bootstrap, "--rules", rulesPath, "--otlp-endpoint", "http://127.0.0.1:\(receiver.port)",
                   "--http", "127.0.0.1:\(port)", "--log-level", "error", "--kafka-property", "session.timeout.ms=6000",
                   "--kafka-property", "heartbeat.interval.ms=500"]
        // (traces, rootless rate, seed) of each stage.
        let stages: [(traces: Int, rootless: Double, seed: UInt64)] = [(300, 0, 31), (30, 1, 32), (900, 0, 33)]
        func loadgen(_ stage: Int) throws -> Process {
            let (process, _) = try processes.start([
                "loadgen", "--brokers", bootstrap, "--traces", "\(stages[stage].traces)", "--rate", "150",
                "--rootless-rate", "\(stages[stage].rootless)", "--seed", "\(stages[stage].seed)", "--log-level", "error"])
            return process
        }
        var expected: [TraceID: Int] = [:]
        var perStage: [[TraceID]] = []
        for stage in stages {
            var traffic = DogBookTraffic(seed: stage.seed, errorRate: 0.02, slowRate: 0.03, rootlessRate: stage.rootless)
            var ids: [TraceID] = []
            for _ in 0..<stage.traces {
                let trace = traffic.nextTrace(startUnixNano: 1)
                guard trace.spanCount > 0 else { continue }  // a health check is its root alone: nothing sent
                expected[trace.traceID] = trace.spanCount
                ids.append(trace.traceID)
            }
            perStage.append(ids)
        }
        func arrivedWhole(_ ids: [TraceID]) -> Bool {
            receiver.spansByTrace.withLock { arrived in ids.allSatisfy { arrived[$0]?.count == expected[$0] } }
        }

        let (victim, _) = try processes.start(run)
        let a = try loadgen(0)
        a.waitUntilExit()
        #expect(waitUntil(.seconds(60)) { arrivedWhole(perStage[0]) }, "stage A delivered before the outage")
        receiver.refusing.store(true, ordering: .relaxed)
        let b = try loadgen(1)
        b.waitUntilExit()
        let c = try loadgen(2)
        c.waitUntilExit()
        // B is decided 3 s after it arrived, C's traces 300 ms after theirs: B's decisions come
        // behind hundreds of C's. Seen when every trace is decided (the receiver still refusing)...
        #expect(waitUntil(.seconds(60)) { metricSum(port, "tailgate_traces_kept_total") == Double(expected.count) },
                "every trace decided before the kill")
        // ...and a commit (every second) after it stays at B's first message: A's 300 messages.
        Thread.sleep(forTimeInterval: 1.5)
        let committedAtKill = committedMessages(bootstrap: bootstrap, partitions: 1)
        #expect(committedAtKill == Int64(stages[0].traces), "committed up to the first undelivered trace, B's first")
        kill(victim.processIdentifier, SIGKILL)
        victim.waitUntilExit()
        receiver.refusing.store(false, ordering: .relaxed)
        #expect([a, b, c].allSatisfy { $0.terminationStatus == 0 })
        let last = try processes.run(run + ["--exit-on-eof"], timeout: .seconds(120))
        #expect(last.status == 0)

        let arrived = receiver.spansByTrace.withLock { $0 }
        let missing = expected.filter { arrived[$0.key]?.count != $0.value }
        let rootlessLost = perStage[1].filter { missing[$0] != nil }.count
        print("fault kill-9 during a 503 outage: \(expected.count) traces (\(perStage[1].count) without root, decided behind \(perStage[2].count) later ones) produced, all decided and \(committedAtKill) messages committed at the kill, \(expected.count - missing.count) arrived whole, \(receiver.requests.load(ordering: .relaxed)) requests")
        #expect(missing.isEmpty, "\(missing.count) of \(expected.count) traces missing or partial, \(rootlessLost) of them rootless")
    }

    /// Unkeyed messages, one per service, so a trace's spans spread over partitions; a second member
    /// joins a cooperative-sticky group while traffic flows, so the first loses half its partitions and
    /// keeps the others while it holds traces of both. Every span is kept (always_sample) and must
    /// reach some member's store. Two faults meet here: the old revoke forgot such traces whole (their
    /// spans on the kept partitions then committed unread: 147 of 3 000 traces lost spans), and
    /// librdkafka 2.0 skips a few messages of the kept partitions in the rebalance (the ledger sees the
    /// gap in the offsets, holds it and sends the consumer back for it).
    @Test func revokesWithTracesSpreadOverPartitionsLoseNoSpan() throws {
        let processes = Processes()
        let (_, pipe) = try processes.start(["dev-broker", "--partitions", "6"])
        let bootstrap = try #require(processes.firstLine(of: pipe, timeout: .seconds(20)))
        let directories = (0..<3).map {
            FileManager.default.temporaryDirectory.appendingPathComponent("tailgate-spread-\($0)-\(UUID().uuidString)")
        }
        defer { for directory in directories { try? FileManager.default.removeItem(at: directory) } }
        let rulesPath = try writeRules(
            "decision_wait: 2s\ndecision_wait_after_root_received: 1s\npolicies: [{name: all, type: always_sample}]")
        let ports = try (0..<2).map { _ in try freePort() }
        func member(_ slot: Int, _ extra: [String] = []) -> [String] {
            // Cooperative: a revoke takes some partitions and leaves the others, which is when a trace
            // can hold both (every member here gets an assignment, so librdkafka 2.0's #4312 abort
            // on destroying a member that never had one does not apply).
            ["run", "--brokers", bootstrap, "--rules", rulesPath, "--data", directories[slot].path,
             "--http", slot < 2 ? "127.0.0.1:\(ports[slot])" : "127.0.0.1:0",
             "--log-level", "error", "--kafka-property", "session.timeout.ms=6000", "--kafka-property", "heartbeat.interval.ms=500",
             "--kafka-property", "partition.assignment.strategy=cooperative-sticky"] + extra
        }
        func ready(_ slot: Int) -> Bool {
            (try? rawHTTP(port: ports[slot], "GET /-/ready HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"))?.hasPrefix("HTTP/1.1 200") ?? false
        }
        // The first member owns every partition and is consuming before the second joins, so the join
        // revokes half of its partitions while it keeps the other half. Traffic flows until 3 s after
        // the join, however long the join takes on a loaded machine (once 20 s in a full CI run):
        // loadgen runs until SIGTERM, then sends what it holds as whole traces and prints its count.
        let (first, _) = try processes.start(member(0))
        #expect(waitUntil(.seconds(30)) { ready(0) })
        let (loadgen, loadgenOutput) = try processes.start([
            "loadgen", "--brokers", bootstrap, "--traces", "0", "--rate", "150", "--traces-per-message", "5",
            "--split-by-service", "--seed", "57", "--log-level", "error", "--kafka-property", "sticky.partitioning.linger.ms=0"])
        Thread.sleep(forTimeInterval: 2)
        let joining = ContinuousClock.now
        let (second, _) = try processes.start(member(1))
        #expect(waitUntil(.seconds(90)) { ready(1) })
        let joined = ContinuousClock.now - joining
        Thread.sleep(forTimeInterval: 3)
        #expect(loadgen.isRunning)
        loadgen.terminate()
        loadgen.waitUntilExit()
        #expect(loadgen.terminationStatus == 0)
        let sent = try JSONDecoder().decode(TrafficProducer.Totals.self, from: loadgenOutput.fileHandleForReading.readDataToEndOfFile())
        let traces = sent.traces
        #expect(traces > 300, "traffic before, during and after the join")
        Thread.sleep(forTimeInterval: 3)
        for process in [first, second] {
            process.terminate()
            process.waitUntilExit()
            #expect(process.terminationStatus == 0, "members leave cleanly")
        }
        let last = try processes.run(member(2, ["--exit-on-eof"]), timeout: .seconds(120))
        #expect(last.status == 0)

        var traffic = DogBookTraffic(seed: 57, errorRate: 0.02, slowRate: 0.03)
        var expected: [TraceID: Int] = [:]
        for _ in 0..<traces {
            let trace = traffic.nextTrace(startUnixNano: 1)
            expected[trace.traceID] = trace.spanCount
        }
        let stores = try directories.map { try TraceStore(directory: $0, readOnly: true) }
        var missing = 0, storedByTwo = 0
        var examples: [String] = []
        for (id, spans) in expected {
            var found = Set<SpanID>()
            var holders = 0
            for store in stores {
                guard let request = try store.trace(id, policyAttribute: false) else { continue }
                holders += 1
                var batch = SpanBatch()
                _ = try SpanDecoder(encoding: .otlpProto).decode(request, into: &batch)
                found.formUnion(batch.spans.map(\.spanID))
            }
            if found.count != spans {
                missing += 1
                if examples.count < 5 { examples.append("\(id.hex): \(found.count) of \(spans) spans in \(holders) store(s)") }
            }
            if holders > 1 { storedByTwo += 1 }
        }
        print("fault revokes with traces spread over partitions: \(traces) traces, every span kept, second member assigned \(joined) after it started; \(traces - missing) complete across the members' stores, \(storedByTwo) in more than one store")
        #expect(missing == 0, "\(missing) of \(traces) traces lost spans: \(examples)")
        #expect(storedByTwo > 0, "traces did spread over members")
    }

    /// A lost assignment is not a hand-over. A member holding every trace in its buffer is frozen
    /// (SIGSTOP) past its session timeout; a second member takes all the partitions and reads them
    /// from the committed offset. When the first resumes, librdkafka reports its assignment lost: it
    /// must forget those traces undecided (another member owns them now), not decide and store them
    /// as a revoke would (`--on-revoke decide`: the old code stored every one of them, and the new
    /// owner stored them again). Every kept trace still reaches a store whole (the second member, and
    /// a last one that reads to the end of the topic).
    @Test func aLostAssignmentIsForgottenNotDecided() throws {
        let processes = Processes()
        let (_, pipe) = try processes.start(["dev-broker", "--partitions", "6"])
        let bootstrap = try #require(processes.firstLine(of: pipe, timeout: .seconds(20)))
        let directories = (0..<3).map {
            FileManager.default.temporaryDirectory.appendingPathComponent("tailgate-lost-\($0)-\(UUID().uuidString)")
        }
        defer { for directory in directories { try? FileManager.default.removeItem(at: directory) } }
        // Nothing is decided by the clock in this test: only the lost assignment, a drain or the end
        // of the topic decide. (With waits shorter than the freeze, a frozen member's shards wake
        // with the decisions already due and may make them before librdkafka reports the loss: a
        // zombie's duplicates, which the README admits; first seen here with the default wait after
        // the root, 141 of 300 decided that way.)
        let rulesPath = try writeRules(
            "decision_wait: 600s\ndecision_wait_after_root_received: 600s\npolicies: [{name: all, type: always_sample}]")
        let ports = try (0..<2).map { _ in try freePort() }
        func member(_ slot: Int, _ extra: [String] = []) -> [String] {
            ["run", "--brokers", bootstrap, "--rules", rulesPath, "--data", directories[slot].path,
             "--http", slot < 2 ? "127.0.0.1:\(ports[slot])" : "127.0.0.1:0", "--on-revoke", "decide",
             "--log-level", "error", "--kafka-property", "session.timeout.ms=6000", "--kafka-property", "heartbeat.interval.ms=500",
             "--kafka-property", "partition.assignment.strategy=cooperative-sticky"] + extra
        }
        let (first, _) = try processes.start(member(0))
        #expect(waitUntil(.seconds(60)) { metric(ports[0], "tailgate_kafka_partitions_assigned") == 6 })
        let produced = try processes.run(
            ["loadgen", "--brokers", bootstrap, "--traces", "300", "--rate", "1000", "--seed", "71", "--log-level", "error"],
            timeout: .seconds(60))
        #expect(produced.status == 0)
        let sent = try JSONDecoder().decode(TrafficProducer.Totals.self, from: Data(produced.output.utf8))
        #expect(waitUntil(.seconds(60)) { metric(ports[0], "tailgate_messages_received_total") == Double(sent.messages) })
        #expect(metricSum(ports[0], "tailgate_traces_kept_total") == 0, "every trace waits in the buffer")

        // Frozen past its session: the group gives the second member every partition.
        kill(first.processIdentifier, SIGSTOP)
        let (second, _) = try processes.start(member(1))
        let handedOver = waitUntil(.seconds(90)) { metric(ports[1], "tailgate_kafka_partitions_assigned") == 6 }
        kill(first.processIdentifier, SIGCONT)
        #expect(handedOver, "the group gave the frozen member's partitions away")
        #expect(waitUntil(.seconds(60)) { (metric(ports[0], "tailgate_kafka_partitions_lost_total") ?? 0) >= 6 },
                "the first member learns it lost all six partitions")
        let keptByFirst = metricSum(ports[0], "tailgate_traces_kept_total")
        // Killed, not stopped: a drain would decide whatever it reads again after rejoining.
        kill(first.processIdentifier, SIGKILL)
        first.waitUntilExit()
        #expect(keptByFirst == 0, "nothing decided on partitions another member owns")

        #expect(waitUntil(.seconds(60)) { (metric(ports[1], "tailgate_messages_received_total") ?? 0) >= Double(sent.messages) })
        second.terminate()
        second.waitUntilExit()
        #expect(second.terminationStatus == 0)
        let last = try processes.run(member(2, ["--exit-on-eof"]), timeout: .seconds(120))
        #expect(last.status == 0)

        var traffic = DogBookTraffic(seed: 71, errorRate: 0.02, slowRate: 0.03)
        var expected: [TraceID: Int] = [:]
        for _ in 0..<sent.traces {
            let trace = traffic.nextTrace(startUnixNano: 1)
            expected[trace.traceID] = trace.spanCount
        }
        let stores = try directories.map { try TraceStore(directory: $0, readOnly: true) }
        var whole = 0
        var storedByFirst = 0
        for (id, spans) in expected {
            var found = Set<SpanID>()
            for (slot, store) in stores.enumerated() {
                guard let request = try store.trace(id, policyAttribute: false) else { continue }
                if slot == 0 { storedByFirst += 1 }
                var batch = SpanBatch()
                _ = try SpanDecoder(encoding: .otlpProto).decode(request, into: &batch)
                found.formUnion(batch.spans.map(\.spanID))
            }
            if found.count == spans { whole += 1 }
        }
        print("fault lost assignment: \(sent.traces) traces buffered by a member frozen past its session; after it resumed it had kept \(keptByFirst.map { Int($0) } ?? -1) and stored \(storedByFirst); \(whole) stored whole by the others")
        #expect(storedByFirst == 0)
        #expect(whole == sent.traces, "every trace stored whole")
        #expect(sent.traces == 300)
    }

    /// `--on-revoke replay`: at a revoke the member forgets the buffered traces of the partitions it
    /// hands over — it decides none of them (with `decide` it would keep them all here) — and their
    /// new owner reads them from the committed offset. Between the two members every trace is buffered
    /// once, then stored whole once.
    @Test func onRevokeReplayForgetsWhatItHandsOver() throws {
        let processes = Processes()
        let (_, pipe) = try processes.start(["dev-broker", "--partitions", "4"])
        let bootstrap = try #require(processes.firstLine(of: pipe, timeout: .seconds(20)))
        let directories = (0..<2).map {
            FileManager.default.temporaryDirectory.appendingPathComponent("tailgate-replay-\($0)-\(UUID().uuidString)")
        }
        defer { for directory in directories { try? FileManager.default.removeItem(at: directory) } }
        let rulesPath = try writeRules(
            "decision_wait: 600s\ndecision_wait_after_root_received: 600s\npolicies: [{name: all, type: always_sample}]")
        let ports = try (0..<2).map { _ in try freePort() }
        func member(_ slot: Int) throws -> Process {
            try processes.start([
                "run", "--brokers", bootstrap, "--rules", rulesPath, "--data", directories[slot].path, "--http", "127.0.0.1:\(ports[slot])",
                "--on-revoke", "replay", "--log-level", "error", "--kafka-property", "session.timeout.ms=6000",
                "--kafka-property", "heartbeat.interval.ms=500", "--kafka-property", "partition.assignment.strategy=cooperative-sticky",
            ]).0
        }
        func value(_ slot: Int, _ name: String) -> Double { metricSum(ports[slot], name) ?? -1 }
        let first = try member(0)
        #expect(waitUntil(.seconds(60)) { value(0, "tailgate_kafka_partitions_assigned") == 4 })
        let sent = try processes.run(["loadgen", "--brokers", bootstrap, "--traces", "200", "--seed", "72", "--log-level", "error"], timeout: .seconds(60))
        #expect(sent.status == 0)
        #expect(waitUntil(.seconds(60)) { value(0, "tailgate_buffer_traces") == 200 }, "all 200 buffered by the first member")

        let second = try member(1)
        #expect(waitUntil(.seconds(90)) {
            value(0, "tailgate_kafka_partitions_assigned") == 2 && value(1, "tailgate_kafka_partitions_assigned") == 2
                && value(0, "tailgate_buffer_traces") + value(1, "tailgate_buffer_traces") == 200
        }, "the second member reads again what the first forgot: \(value(0, "tailgate_buffer_traces")) + \(value(1, "tailgate_buffer_traces"))")
        let firstBuffered = value(0, "tailgate_buffer_traces")
        #expect(firstBuffered > 0 && firstBuffered < 200, "the first kept the traces of its remaining partitions")
        #expect(value(0, "tailgate_traces_kept_total") == 0 && value(0, "tailgate_traces_dropped_total") == 0,
                "nothing decided at the revoke")

        for process in [first, second] {
            process.terminate()
            process.waitUntilExit()
            #expect(process.terminationStatus == 0)
        }
        var traffic = DogBookTraffic(seed: 72)
        let stores = try directories.map { try TraceStore(directory: $0, readOnly: true) }
        var notOnce: [String] = []
        for _ in 0..<200 {
            let trace = traffic.nextTrace(startUnixNano: 1)
            let found = try stores.compactMap { try storedSpanCount($0, trace.traceID.hex) }
            if found != [trace.spanCount] { notOnce.append("\(trace.traceID.hex): \(found) of \(trace.spanCount)") }
        }
        print("fault on-revoke replay: 200 traces buffered, \(Int(firstBuffered)) stayed with the first member, the rest replayed by the second")
        #expect(notOnce.isEmpty, "\(notOnce.count) traces not stored whole exactly once: \(notOnce.prefix(5))")
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
        let running = RunningEngine(try Engine(configuration: configuration, kept: kept, logger: quietLogger))
        let engine = running.engine
        defer { running.stop() }
        #expect(waitUntil(.seconds(30)) { engine.metrics.snapshot.messagesReceived > 0 })
        try cluster.setBroker(2, down: true)
        let atFailure = engine.metrics.snapshot.messagesReceived
        Thread.sleep(forTimeInterval: 15)
        try cluster.setBroker(2, down: false)
        #expect(waitUntil(.seconds(120)) { kept.snapshot.count == 3000 })
        print("fault broker-down-15s: \(sent.traces) traces / \(sent.spans) spans produced, \(atFailure) messages consumed when broker 2 went down, \(kept.snapshot.count) traces kept")
        let result = try #require(running.stop(), "run() returns after a stop")
        // A broker outage is no rebalance: each partition resumes where it was, nothing read twice.
        #expect(result.spans == sent.spans, "every span read once (\(result.spans) read, \(result.spansReread) again, \(sent.spans) sent)")
        #expect(kept.late.load(ordering: .relaxed) == 0, "no trace kept twice")
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

        // Traffic flows until the fifth kill, however long the victims take to join on a loaded
        // machine (loadgen runs until SIGTERM, then prints what it sent).
        let (loadgen, loadgenOutput) = try processes.start(
            ["loadgen", "--brokers", bootstrap, "--traces", "0", "--rate", "100", "--error-rate", "0.1", "--seed", "78"])
        var state: UInt64 = 5
        var points: [Double] = []
        // Offsets committed by the group after each victim's work: each one must have resumed from
        // its predecessor's commit and committed further before it is killed (a victim killed while
        // still joining would test nothing).
        var committed: [Int64] = [0]
        for victimIndex in 0..<5 {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            let delay = 0.5 + Double(state >> 40) / Double(1 << 24) * 2.0  // 0.5–2.5 s after its first commit
            points.append(delay)
            let (victim, _) = try processes.start(run)
            let before = committed.last!
            #expect(waitUntil(.seconds(60)) { committedMessages(bootstrap: bootstrap, partitions: 4) > before },
                    "victim \(victimIndex) committed past its predecessor before the kill")
            Thread.sleep(forTimeInterval: delay)
            committed.append(committedMessages(bootstrap: bootstrap, partitions: 4))
            #expect(loadgen.isRunning, "victim \(victimIndex) is killed while traffic flows")
            kill(victim.processIdentifier, SIGKILL)
            victim.waitUntilExit()
        }
        loadgen.terminate()
        loadgen.waitUntilExit()
        #expect(loadgen.terminationStatus == 0)
        let traces = try JSONDecoder().decode(TrafficProducer.Totals.self, from: loadgenOutput.fileHandleForReading.readDataToEndOfFile()).traces
        let last = try processes.run(run + ["--exit-on-eof"], timeout: .seconds(180))
        #expect(last.status == 0)

        let expected = expectedKept(count: traces, seed: 78, errorRate: 0.1, slowRate: 0.03)
        let store = try TraceStore(directory: data, readOnly: true)
        var missing: [String] = []
        for (id, spans) in expected where try storedSpanCount(store, id) != spans { missing.append(id) }
        print("fault kill-9 x5, each \(points.map { String(format: "%.1fs", $0) }.joined(separator: ", ")) after its first commit (messages committed at each kill: \(committed.dropFirst().map(String.init).joined(separator: ", ")) of \(traces)): \(traces) traces produced, \(expected.count) kept by the rules, \(expected.count - missing.count) stored whole; last run's peak resident \(peakResidentMiB(last.output))")
        #expect(missing.isEmpty, "\(missing.count) of \(expected.count) kept traces missing or partial after five kill -9")
        #expect(expected.count > 200)
    }

    /// A rebalance storm: members join, leave (SIGTERM) and crash (kill -9) every 2.5 s while traffic
    /// flows, so rebalances overlap one another; a last member finishes the topic. Every trace the
    /// rules keep is stored whole by some member (a trace may be stored twice: at least once is the
    /// guarantee, and the test counts how often). Under the default (eager) assignors only:
    /// cooperative-sticky aborts in librdkafka before 2.3 when a member that never got an assignment
    /// is destroyed (confluentinc/librdkafka#4312), which a storm makes likely.
    @Test func aRebalanceStormLosesNoKeptTrace() throws {
        let strategy = "range,roundrobin"
        let processes = Processes()
        let (_, pipe) = try processes.start(["dev-broker", "--partitions", "8"])
        let bootstrap = try #require(processes.firstLine(of: pipe, timeout: .seconds(20)))
        let directories = (0..<3).map {
            FileManager.default.temporaryDirectory.appendingPathComponent("tailgate-storm-\($0)-\(UUID().uuidString)")
        }
        defer { for directory in directories { try? FileManager.default.removeItem(at: directory) } }
        let rulesPath = try writeRules(deterministicRules)
        func member(_ slot: Int, _ extra: [String] = []) -> [String] {
            ["run", "--brokers", bootstrap, "--rules", rulesPath, "--data", directories[slot].path, "--http", "127.0.0.1:0",
             "--log-level", "error", "--kafka-property", "session.timeout.ms=6000", "--kafka-property", "heartbeat.interval.ms=500",
             "--kafka-property", "max.poll.interval.ms=10000", "--kafka-property", "partition.assignment.strategy=\(strategy)"] + extra
        }
        let (loadgen, _) = try processes.start(["loadgen", "--brokers", bootstrap, "--traces", "4000", "--rate", "200", "--error-rate", "0.1", "--seed", "93"])

        // slot → running member; each step 2.5 s after the last, faster than a rebalance settles.
        var running: [Int: Process] = [:]
        var graceful = 0, crashed = 0, joined = 0
        enum Step { case join(Int), leave(Int), crash(Int) }
        let storm: [Step] = [.join(0), .join(1), .join(2), .leave(0), .crash(1), .join(0), .leave(2), .join(1), .leave(0), .join(2), .crash(1)]
        for step in storm {
            switch step {
            case .join(let slot):
                running[slot] = try processes.start(member(slot)).0
                joined += 1
            case .leave(let slot):
                let removed = running.removeValue(forKey: slot)
                let process = try #require(removed)
                #expect(process.isRunning, "member \(slot) still up when asked to leave")
                process.terminate()
                process.waitUntilExit()
                #expect(process.terminationStatus == 0, "member \(slot) left cleanly; its standard error ends: \(processes.errorOutput(of: process))")
                graceful += 1
            case .crash(let slot):
                let removed = running.removeValue(forKey: slot)
                let process = try #require(removed)
                #expect(process.isRunning, "member \(slot) still up when killed")
                kill(process.processIdentifier, SIGKILL)
                process.waitUntilExit()
                crashed += 1
            }
            Thread.sleep(forTimeInterval: 2.5)
        }
        loadgen.waitUntilExit()
        #expect(loadgen.terminationStatus == 0)
        for (_, process) in running {
            #expect(process.isRunning, "no member crashed by itself")
            process.terminate()
            process.waitUntilExit()
            #expect(process.terminationStatus == 0)
        }
        let last = try processes.run(member(0, ["--exit-on-eof"]), timeout: .seconds(180))
        #expect(last.status == 0)

        let expected = expectedKept(count: 4000, seed: 93, errorRate: 0.1, slowRate: 0.03)
        let stores = try directories.map { try TraceStore(directory: $0, readOnly: true) }
        var missing = 0, storedTwice = 0
        for (id, spans) in expected {
            let found = try stores.compactMap { try storedSpanCount($0, id) }
            if found.max() != spans { missing += 1 }
            if found.count > 1 { storedTwice += 1 }
        }
        print("fault rebalance-storm (\(strategy)): 4000 traces produced, \(joined) joins, \(graceful) graceful leaves, \(crashed) kill -9 in \(storm.count) steps 2.5 s apart; \(expected.count) kept by the rules, \(expected.count - missing) stored whole, \(storedTwice) stored by two members; last member's peak resident \(peakResidentMiB(last.output))")
        #expect(missing == 0, "\(missing) of \(expected.count) kept traces missing or partial after the storm")
        #expect(expected.count > 300)
    }

    /// A burst of ten times the buffer limit's worth of spans arrives at once while the engine runs,
    /// with a decision wait that would need far more memory to hold it all: consumption pauses
    /// instead, resident memory stays within the limit plus a stated margin over the idle process,
    /// and every trace is kept and stored.
    @Test func aTenfoldBurstStaysWithinTheBufferLimit() throws {
        let processes = Processes()
        let (_, pipe) = try processes.start(["dev-broker", "--partitions", "12", "--topic", "otlp_spans", "--topic", "idle"])
        let bootstrap = try #require(processes.firstLine(of: pipe, timeout: .seconds(20)))
        let data = FileManager.default.temporaryDirectory.appendingPathComponent("tailgate-burst-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: data) }
        let rulesPath = try writeRules("decision_wait: 3s\npolicies: [{name: all, type: always_sample}]")
        let limit = 16 << 20

        // The burst: 10× the limit in OTLP bytes waiting in Kafka when the engine starts (as after an
        // outage upstream) — all of it there at once, however fast the producer is on this machine.
        let load = try processes.run(
            ["loadgen", "--brokers", bootstrap, "--traces", "28500", "--error-rate", "0.1", "--seed", "91", "--log-level", "warning"],
            timeout: .seconds(180))
        #expect(load.status == 0)
        let sent = try JSONDecoder().decode(Sent.self, from: Data(load.output.utf8))
        #expect(sent.bytes >= 10 * limit, "a 10× burst: \(sent.bytes) bytes against a \(limit)-byte limit")

        func start(topic: String) throws -> (Process, UInt16) {
            let port = try freePort()
            let (process, _) = try processes.start(
                ["run", "--brokers", bootstrap, "--topic", topic, "--group", "burst-\(topic)", "--rules", rulesPath, "--data",
                 data.appendingPathComponent(topic).path, "--buffer-limit", "16MiB", "--http", "127.0.0.1:\(port)",
                 "--log-level", "error", "--status-interval", "1h"])
            return (process, port)
        }
        // The idle process: same binary and flags, an empty topic.
        let (idleEngine, idlePort) = try start(topic: "idle")
        #expect(waitUntil(.seconds(60)) { metric(idlePort, "tailgate_kafka_partitions_assigned") == 12 })
        Thread.sleep(forTimeInterval: 1)
        let idle = try #require(residentBytes(idleEngine.processIdentifier, "VmRSS"))
        idleEngine.terminate()
        idleEngine.waitUntilExit()

        let burstStart = ContinuousClock.now
        let (engine, port) = try start(topic: "otlp_spans")
        // Backpressure shows as polls shrinking near the limit and, past it, paused partitions.
        var paused = false
        var peakHeld = 0.0
        let done = waitUntil(.seconds(300)) {
            paused = paused || (metric(port, "tailgate_kafka_partitions_paused") ?? 0) > 0
            peakHeld = max(peakHeld, (metric(port, "tailgate_buffer_bytes") ?? 0) + (metric(port, "tailgate_sink_queued_bytes") ?? 0))
            return (metric(port, "tailgate_sink_traces_total{sink=\"store\"}") ?? 0) >= Double(sent.traces)
        }
        #expect(done, "every trace kept and stored")
        let burstTook = ContinuousClock.now - burstStart
        let peak = try #require(residentBytes(engine.processIdentifier, "VmHWM"))
        engine.terminate()
        engine.waitUntilExit()
        #expect(engine.terminationStatus == 0)

        let margin = 48 << 20
        print("fault burst-10x: \(sent.traces) traces / \(sent.spans) spans / \(sent.bytes) bytes waiting at once against a \(limit)-byte limit; resident \(idle >> 20) MiB idle, peak \(peak >> 20) MiB (\((peak - idle) >> 20) MiB over idle); held at most \(Int(peakHeld) >> 20) MiB (sampled), partitions seen paused: \(paused); all stored after \(burstTook)")
        #expect(peakHeld >= Double(limit / 2), "the burst pressed on the limit (held \(Int(peakHeld)) bytes)")
        #expect(peak - idle <= limit + margin, "peak resident \(peak >> 20) MiB, idle \(idle >> 20) MiB: over the limit plus \(margin >> 20) MiB")
        let store = try TraceStore(directory: data.appendingPathComponent("otlp_spans"), readOnly: true)
        #expect(store.traceCount == sent.traces, "nothing dropped: \(store.traceCount) of \(sent.traces) traces stored")
    }
}


/// What `tailgate loadgen` reports.
private struct Sent: Decodable {
    var traces: Int
    var spans: Int
    var bytes: Int
}

/// A `/proc/PID/status` figure in bytes (`VmRSS`: resident now; `VmHWM`: the peak so far).
func residentBytes(_ pid: Int32, _ field: String) -> Int? {
    guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return nil }
    for line in status.split(separator: "\n") where line.hasPrefix(field + ":") {
        return line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first.flatMap { Int($0) }.map { $0 * 1024 }
    }
    return nil
}

/// `peakResidentBytes` from a run's JSON summary, in MiB, for the fault reports.
func peakResidentMiB(_ summary: String) -> String {
    struct Summary: Decodable { var peakResidentBytes: Int? }
    let line = summary.split(separator: "\n").last { $0.hasPrefix("{") }.map(String.init) ?? ""
    guard let bytes = (try? JSONDecoder().decode(Summary.self, from: Data(line.utf8)))?.peakResidentBytes else { return "unknown" }
    return "\(bytes >> 20) MiB"
}
