import HTTP
import Ingest
import Route
import Sampling
import Sinks
import Engine
import Foundation
import Kafka
import OTLP
import Storage
import TestSupport
import Testing
import Traffic

/// `tailgate route` end to end on the dev broker: unkeyed multi-trace input, re-keyed by trace id,
/// consumed by several `run` members of one group. Expected values come from the traffic generator's
/// truth (`expectedKept`: its error and slow flags and the collector's documented baseline hash).
/// Serialized: each test runs a broker, a router, loadgen and up to three members (debug builds), and
/// the exact counts of the first need its members' group sessions undisturbed by a starved machine.
@Suite(.serialized, .timeLimit(.minutes(10))) struct RouteEndToEndTests {
    struct Member {
        let process: Process
        let output: Pipe
        let port: UInt16
        let data: URL
    }

    /// The run summary a member prints when it exits.
    private func summary(_ member: Member) throws -> [String: Any] {
        let data = member.output.fileHandleForReading.readDataToEndOfFile()
        let line = try #require(String(decoding: data, as: UTF8.self).split(separator: "\n").last)
        return try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
    }

    private func ready(_ port: UInt16) -> Bool {
        (try? rawHTTP(port: port, "GET /-/ready HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"))?.hasPrefix("HTTP/1.1 200") ?? false
    }

    private func stop(_ process: Process) {
        process.terminate()
        process.waitUntilExit()
    }

    /// Unkeyed messages of 20 traces → `route` → keyed topic → two members in one group; a third
    /// joins and one leaves (SIGTERM) mid-stream. Every kept trace is stored whole by exactly one
    /// member; every span is read by exactly one member (the members' span counts add up to what was
    /// sent: nothing replayed, so RED counts each span once); and every trace is decided exactly once
    /// (the members' decisions add up to the traces sent: none was decided on a partial span set).
    ///
    /// The join comes between two bursts, once the members' offsets are committed: the mock cluster's
    /// coordinator refuses offset commits while a join is in progress (real Kafka accepts them from
    /// the current generation while the group prepares its rebalance), so a revoke during a join
    /// could not commit what it decided there, and the next owner would replay it. The leave comes in
    /// the middle of the second burst, with traces buffered; the members use the cooperative protocol,
    /// so the ones that stay keep their partitions and only the leaver hands over (eager, they would
    /// all revoke in the middle of the rebalance, which the mock refuses to let them commit).
    @Test func twoMembersBehindTheRouterStoreEveryKeptTraceWholeOnce() throws {
        let processes = Processes()
        let (_, pipe) = try processes.start(["dev-broker", "--partitions", "6", "--topic", "otlp_spans", "--topic", "otlp_keyed"])
        let bootstrap = try #require(processes.firstLine(of: pipe, timeout: .seconds(20)))
        let rulesPath = try writeRules(deterministicRules)
        let directories = (0..<3).map {
            FileManager.default.temporaryDirectory.appendingPathComponent("tailgate-route-member-\($0)-\(UUID().uuidString)")
        }
        defer { for directory in directories { try? FileManager.default.removeItem(at: directory) } }
        let group = ["--kafka-property", "session.timeout.ms=6000", "--kafka-property", "heartbeat.interval.ms=500"]
        // Cooperative: a member that stays keeps its partitions (and what it decided on them) when
        // another leaves, so only the leaver hands over, committing before it leaves the group.
        let cooperative = ["--kafka-property", "partition.assignment.strategy=cooperative-sticky"]

        let routePort = try freePort()
        let (router, routerOutput) = try processes.start(
            ["route", "--brokers", bootstrap, "--output-topic", "otlp_keyed", "--batch-messages", "20",
             "--http", "127.0.0.1:\(routePort)", "--log-level", "error"] + group)
        func member(_ slot: Int) throws -> Member {
            let port = try freePort()
            let (process, output) = try processes.start(
                ["run", "--brokers", bootstrap, "--topic", "otlp_keyed", "--group", "members", "--rules", rulesPath,
                 "--data", directories[slot].path, "--http", "127.0.0.1:\(port)", "--log-level", "warning"] + group + cooperative)
            return Member(process: process, output: output, port: port, data: directories[slot])
        }
        let first = try member(0), second = try member(1)
        #expect(waitUntil(.seconds(30)) { ready(routePort) && ready(first.port) && ready(second.port) })

        let perBurst = 1000
        /// `traces` 0: until SIGTERM, after which loadgen sends what it holds and prints its count.
        func burst(seed: Int, traces: Int = perBurst) throws -> (Process, Pipe) {
            try processes.start([
                "loadgen", "--brokers", bootstrap, "--traces", "\(traces)", "--rate", "250", "--traces-per-message", "20",
                "--error-rate", "0.1", "--seed", "\(seed)", "--log-level", "error"])
        }
        func read(_ members: [Member]) -> Double {
            members.map { metric($0.port, "tailgate_messages_received_total") ?? 0 }.reduce(0, +)
        }
        let (firstBurst, _) = try burst(seed: 61)
        firstBurst.waitUntilExit()
        #expect(firstBurst.terminationStatus == 0)
        #expect(waitUntil(.seconds(60)) { metric(routePort, "tailgate_route_traces_out_total") == Double(perBurst) })
        #expect(waitUntil(.seconds(60)) { read([first, second]) == Double(perBurst) })
        // Decided (300 ms) and committed (every second) before the join: the group's committed
        // offsets reach the end of the first burst's 1 000 keyed messages.
        #expect(waitUntil(.seconds(60)) {
            committedMessages(bootstrap: bootstrap, group: "members", topic: "otlp_keyed", partitions: 6) == Int64(perBurst)
        }, "the first burst is committed before the join")
        let third = try member(2)
        // A cooperative join on the mock cluster: seconds alone, but once over 30 s while the whole
        // suite loaded both cores (the rest of this test then passed); a positive signal, so a wide bound.
        #expect(waitUntil(.seconds(90)) { ready(third.port) })
        // Ready answers before the join's rebalance is over (cooperative: two rounds). The second
        // burst starts only once the third member owns partitions and the three own all six, so no
        // revoke of the join falls inside the burst (on the mock cluster its commit would be refused
        // and the partition's new owner would read again what was decided there: once seen in CI).
        func assigned(_ member: Member) -> Double { metric(member.port, "tailgate_kafka_partitions_assigned") ?? 0 }
        #expect(waitUntil(.seconds(90)) {
            assigned(third) > 0 && assigned(first) + assigned(second) + assigned(third) == 6
        }, "the join's rebalance completes")

        // The second burst flows until 2 s after the first member has left, however long the leave
        // takes on a loaded machine.
        let (secondBurst, secondBurstOutput) = try burst(seed: 62, traces: 0)
        #expect(waitUntil(.seconds(30)) { read([first, second, third]) > Double(perBurst) + 10 })
        stop(first.process)
        #expect(first.process.terminationStatus == 0, "the first member leaves cleanly")
        Thread.sleep(forTimeInterval: 2)
        #expect(secondBurst.isRunning)
        secondBurst.terminate()
        secondBurst.waitUntilExit()
        #expect(secondBurst.terminationStatus == 0)
        let secondSent = try JSONDecoder().decode(
            TrafficProducer.Totals.self, from: secondBurstOutput.fileHandleForReading.readDataToEndOfFile()).traces
        #expect(secondSent > 200, "traffic before, during and after the leave")
        let traces = perBurst + secondSent

        // Everything routed, then everything read by the two members left.
        let messages = Double(perBurst / 20 + (secondSent + 19) / 20)
        #expect(waitUntil(.seconds(60)) { metric(routePort, "tailgate_route_traces_out_total") == Double(traces) })
        let routed = try #require(metric(routePort, "tailgate_route_traces_out_total"))
        let firstSummary = try summary(first)
        let readByFirst = firstSummary["messages"] as? Int ?? 0
        #expect(waitUntil(.seconds(60)) {
            Double(readByFirst) + (metric(second.port, "tailgate_messages_received_total") ?? 0)
                + (metric(third.port, "tailgate_messages_received_total") ?? 0) >= routed
        })
        stop(router)
        #expect(router.terminationStatus == 0)
        let routeSummary = String(decoding: routerOutput.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        for process in [second.process, third.process] {
            stop(process)
            #expect(process.terminationStatus == 0)
        }
        let summaries = [firstSummary, try summary(second), try summary(third)]

        var spansSent = 0
        for (seed, count): (UInt64, Int) in [(61, perBurst), (62, secondSent)] {
            var traffic = DogBookTraffic(seed: seed, errorRate: 0.1, slowRate: 0.03)
            for _ in 0..<count { spansSent += traffic.nextTrace(startUnixNano: 1).spanCount }
        }
        // Spans received, less those read again after going back for an offset gap (skipped).
        let spansRead = summaries.map { ($0["spans"] as? Int ?? 0) - ($0["spansReread"] as? Int ?? 0) }.reduce(0, +)
        let decided = summaries.map { ($0["tracesKept"] as? Int ?? 0) + ($0["tracesDropped"] as? Int ?? 0) }.reduce(0, +)
        // The one order the mock cluster breaks: its coordinator refuses an offset commit while the
        // group rebalances (real Kafka accepts it from the current generation), so a hand-over commit
        // can be refused and the next owner reads again what was decided (twice seen in full runs).
        // Exactly once is asserted unless a member logged such a refused commit; then at least once:
        // every kept trace stored whole, duplicates allowed.
        let refusedCommits = [first.process, second.process, third.process].flatMap { process in
            processes.errorOutput(of: process, last: 200_000).split(separator: "\n")
                .filter { $0.contains("commit on revoke failed") || $0.contains("COMMITFAIL") }.map(String.init)
        }
        let exactlyOnce = refusedCommits.isEmpty
        #expect(routed == Double(traces), "one keyed message per trace (whole traces per input message)")
        if exactlyOnce {
            #expect(spansRead == spansSent, "every span read by exactly one member (\(spansRead) of \(spansSent))")
            #expect(decided == traces, "every trace decided exactly once (\(decided) decisions for \(traces) traces)")
        } else {
            #expect(spansRead >= spansSent && decided >= traces, "at least once: \(spansRead) of \(spansSent) spans, \(decided) of \(traces) decisions")
        }

        let expected = expectedKept(count: perBurst, seed: 61, errorRate: 0.1, slowRate: 0.03)
            .merging(expectedKept(count: secondSent, seed: 62, errorRate: 0.1, slowRate: 0.03)) { $1 }
        let stores = try directories.map { try TraceStore(directory: $0, readOnly: true) }
        var notWhole: [String] = [], storedTwice = 0
        var perMember = [0, 0, 0]
        for (id, spans) in expected {
            let found = try stores.map { try storedSpanCount($0, id) }
            for (index, count) in found.enumerated() where count != nil { perMember[index] += 1 }
            let holders = found.compactMap { $0 }
            let whole = !holders.isEmpty && holders.allSatisfy { $0 == spans }
            if !whole || (exactlyOnce && holders.count != 1) { notWhole.append("\(id): \(holders) of \(spans)") }
            if holders.count > 1 { storedTwice += 1 }
        }
        print("route two members: \(traces) traces in \(Int(messages)) unkeyed messages routed to \(Int(routed)) keyed messages (\(routeSummary.trimmingCharacters(in: .whitespacesAndNewlines))); members read \(spansRead) spans, made \(decided) decisions; \(expected.count) kept by the rules, stored per member \(perMember), \(storedTwice) stored twice; commits the mock refused: \(refusedCommits.count) \(refusedCommits.prefix(3))")
        #expect(notWhole.isEmpty, "\(notWhole.count) kept traces not stored whole\(exactlyOnce ? " exactly once" : ""): \(notWhole.prefix(5))")
        #expect(perMember.allSatisfy { $0 > 0 }, "every member stored some")
        #expect(expected.count > 300)
    }

    /// `kill -9` of the router in the middle of the stream, then a restart with the same
    /// transactional id: every trace reaches the keyed topic and is stored whole. At least once, a
    /// crash sends again at most the batch in flight (5 messages of 20 traces here): each batch's
    /// offsets are committed once its messages are acknowledged. Transactional delivery cannot show
    /// its exactly-once on the dev broker: librdkafka's mock cluster accepts transactions but neither
    /// commits the offsets sent with them nor aborts anything, so the restart reads from the start
    /// (the duplicates are printed, not asserted); on Kafka the offsets commit with the messages.
    @Test(.serialized, arguments: ["transactional", "at-least-once"])
    func aRouterKilledMidStreamLosesNothing(delivery: String) throws {
        let processes = Processes()
        let (_, pipe) = try processes.start(["dev-broker", "--partitions", "4", "--topic", "otlp_spans", "--topic", "otlp_keyed"])
        let bootstrap = try #require(processes.firstLine(of: pipe, timeout: .seconds(20)))
        let data = FileManager.default.temporaryDirectory.appendingPathComponent("tailgate-route-crash-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: data) }
        let traces = 1500
        let (loadgen, _) = try processes.start([
            "loadgen", "--brokers", bootstrap, "--traces", "\(traces)", "--rate", "250", "--traces-per-message", "20",
            "--seed", "71", "--log-level", "error"])
        let port = try freePort()
        let route = ["route", "--brokers", bootstrap, "--output-topic", "otlp_keyed", "--delivery", delivery,
                     "--transactional-id", "route-crash-test", "--batch-messages", "5", "--log-level", "error",
                     "--kafka-property", "session.timeout.ms=6000", "--kafka-property", "heartbeat.interval.ms=500"]
        let (victim, _) = try processes.start(route + ["--http", "127.0.0.1:\(port)"])
        #expect(waitUntil(.seconds(60)) { (metric(port, "tailgate_route_messages_in_total") ?? 0) >= 20 })
        #expect(loadgen.isRunning, "killed mid-stream")
        kill(victim.processIdentifier, SIGKILL)
        victim.waitUntilExit()
        loadgen.waitUntilExit()
        #expect(loadgen.terminationStatus == 0)
        let restarted = try processes.run(route + ["--http", "", "--exit-on-eof"], timeout: .seconds(120))
        #expect(restarted.status == 0)

        let rules = try writeRules("decision_wait: 300ms\npolicies: [{name: all, type: always_sample}]")
        let member = try processes.run(
            ["run", "--brokers", bootstrap, "--topic", "otlp_keyed", "--rules", rules, "--data", data.path, "--http", "",
             "--exit-on-eof", "--log-level", "error"], timeout: .seconds(120))
        #expect(member.status == 0)
        let summary = try #require(try JSONSerialization.jsonObject(with: Data(member.output.utf8)) as? [String: Any])
        let keyedMessages = summary["messages"] as? Int ?? 0

        var traffic = DogBookTraffic(seed: 71, errorRate: 0.02, slowRate: 0.03)
        let store = try TraceStore(directory: data, readOnly: true)
        var notWhole: [String] = []
        for _ in 0..<traces {
            let trace = traffic.nextTrace(startUnixNano: 1)
            let stored = try storedSpanCount(store, trace.traceID.hex)
            if stored != trace.spanCount { notWhole.append("\(trace.traceID.hex): \(stored.map(String.init) ?? "none") of \(trace.spanCount)") }
        }
        print("route kill -9 (\(delivery)): \(traces) traces in \(traces / 20) unkeyed messages; after the restart the keyed topic held \(keyedMessages) messages (\(keyedMessages - traces) sent twice); restarted router: \(restarted.output.trimmingCharacters(in: .whitespacesAndNewlines))")
        #expect(notWhole.isEmpty, "\(notWhole.count) traces not stored whole: \(notWhole.prefix(5))")
        #expect(keyedMessages >= traces)
        if delivery == "at-least-once" {
            #expect(keyedMessages - traces <= 5 * 20, "at most the batch in flight is sent twice")
        }
    }

    /// Bad input through the router, as through `run`: whole messages refused (counted by reason,
    /// copied byte for byte to the dead-letter topic), a span with a zero trace id refused alone, and
    /// every good trace still re-keyed, one message each, its key its hex trace id. OTLP/JSON in.
    @Test func badInputIsRefusedCountedAndDeadLetteredAsByRun() throws {
        let cluster = try KafkaMockCluster(topics: [("raw", 1), ("keyed", 2), ("raw.dlq", 1)], logger: quietLogger)
        let producer = try KafkaProducer(bootstrapServers: cluster.bootstrapServers, logger: quietLogger)
        var traffic = DogBookTraffic(seed: 17)
        var good: [TraceID: Int] = [:]
        for _ in 0..<3 {
            let traces = (0..<4).map { _ in traffic.nextTrace(startUnixNano: 1_764_000_000_000_000_000) }
            for trace in traces { good[trace.traceID] = trace.spanCount }
            try producer.send(topic: "raw", key: nil, value: DogBookTraffic.json(traces))
        }
        let bad: [[UInt8]] = [Array("{\"resourceSpans\": [".utf8), Array("not json".utf8)]
        for payload in bad { try producer.send(topic: "raw", key: nil, value: payload) }
        let zero = #"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"00000000000000000000000000000000","spanId":"0102030405060708","name":"x"}]}]}]}"#
        try producer.send(topic: "raw", key: nil, value: Array(zero.utf8))
        try producer.flush(timeout: .seconds(10))

        var configuration = RouterConfiguration(brokers: cluster.bootstrapServers, outputTopic: "keyed")
        configuration.topics = ["raw"]
        configuration.encoding = .otlpJSON
        configuration.delivery = .atLeastOnce
        configuration.deadLetterTopic = "raw.dlq"
        configuration.exitOnEOF = true
        let summary = try Router(configuration: configuration, logger: quietLogger).run()
        #expect(summary.outcome == "end_of_input")
        #expect(summary.messagesIn == 6)
        #expect(summary.messagesRejected.values.reduce(0, +) == 2, "\(summary.messagesRejected)")
        #expect(summary.spansRejected["invalid_trace_id"] == 1)
        #expect(summary.deadLettered == 2)
        #expect(summary.tracesOut == good.count)

        func read(_ topic: String, _ count: Int) -> [(key: String, payload: [UInt8])] {
            guard let consumer = try? KafkaConsumer(
                configuration: KafkaConsumerConfiguration(bootstrapServers: cluster.bootstrapServers, groupID: "inspect-\(topic)", topics: [topic], statisticsInterval: nil),
                logger: quietLogger)
            else { return [] }
            defer { consumer.close() }
            var messages: [(key: String, payload: [UInt8])] = []
            _ = waitUntil(.seconds(30)) {
                consumer.poll(timeout: .milliseconds(100)) { message in
                    let key = String(decoding: message.key ?? UnsafeRawBufferPointer(start: nil, count: 0), as: UTF8.self)
                    messages.append((key, Array(message.payload)))
                }
                return messages.count >= count
            }
            return messages
        }
        #expect(read("raw.dlq", 2).map(\.payload) == bad, "refused messages byte for byte, in order")
        let keyed = read("keyed", good.count)
        #expect(keyed.count == good.count)
        for message in keyed {
            var batch = SpanBatch()
            _ = try SpanDecoder(encoding: .otlpProto).decode(message.payload, into: &batch)
            let ids = Set(batch.spans.map(\.traceID))
            #expect(ids.count == 1 && ids.first?.hex == message.key, "one trace per message, keyed by its id")
            if let id = ids.first { #expect(good[id] == batch.spans.count, "whole") }
        }
    }
}
