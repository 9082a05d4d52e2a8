import Foundation
import Kafka
import OTLP
import Testing
import TestSupport
import Traffic

/// README promises about how `run` and `route` end and what they read from the environment, each
/// tested on the built executable against the dev broker.
@Suite(.serialized, .timeLimit(.minutes(10))) struct ShutdownAndEnvironmentTests {
    let rules = "decision_wait: 200ms\npolicies: [{name: all, type: always_sample}]"

    /// A dev broker of two partitions, and an OTLP receiver that answers 503 until told otherwise.
    func brokerAndRefusingReceiver(_ processes: Processes) throws -> (bootstrap: String, receiver: TestReceiver) {
        let (_, pipe) = try processes.start(["dev-broker", "--partitions", "2"])
        let bootstrap = try #require(processes.firstLine(of: pipe, timeout: .seconds(20)))
        let receiver = try TestReceiver()
        receiver.refusing.store(true, ordering: .relaxed)
        return (bootstrap, receiver)
    }

    /// The span counts of the first `count` traces loadgen sends with `seed` (its defaults otherwise).
    func generated(count: Int, seed: UInt64) -> [TraceID: Int] {
        var traffic = DogBookTraffic(seed: seed)
        var traces: [TraceID: Int] = [:]
        for _ in 0..<count {
            let trace = traffic.nextTrace(startUnixNano: 1)
            traces[trace.traceID] = trace.spanCount
        }
        return traces
    }

    /// `--exit-on-eof` with a sink that never acknowledges: the summary says `end_of_input_unstored`
    /// and the exit code is 1; nothing was committed past it, so a second run with the sink back
    /// delivers every trace whole.
    @Test func exitOnEOFWithASinkDownSaysUnstoredAndExitsOne() throws {
        let processes = Processes()
        let (_, pipe) = try processes.start(["dev-broker", "--partitions", "2"])
        let bootstrap = try #require(processes.firstLine(of: pipe, timeout: .seconds(20)))
        let loadgen = try processes.run(["loadgen", "--brokers", bootstrap, "--traces", "20", "--seed", "81", "--log-level", "error"], timeout: .seconds(60))
        #expect(loadgen.status == 0)
        let receiver = try TestReceiver()
        defer { receiver.shutdown() }
        receiver.refusing.store(true, ordering: .relaxed)
        let run = ["run", "--brokers", bootstrap, "--rules", try writeRules(rules), "--otlp-endpoint", "http://127.0.0.1:\(receiver.port)",
                   "--exit-on-eof", "--shutdown-timeout", "4s", "--http", "127.0.0.1:0", "--log-level", "error",
                   "--kafka-property", "session.timeout.ms=6000", "--kafka-property", "heartbeat.interval.ms=500"]
        let refused = try processes.run(run, timeout: .seconds(120))
        #expect(refused.status == 1, "exit code 1 when what was read is not stored")
        #expect(refused.output.contains(#""outcome":"end_of_input_unstored""#), "\(refused.output)")
        #expect(receiver.requests.load(ordering: .relaxed) > 0, "the sink was tried")

        receiver.refusing.store(false, ordering: .relaxed)
        let again = try processes.run(run, timeout: .seconds(120))
        #expect(again.status == 0)
        #expect(again.output.contains(#""outcome":"end_of_input""#), "\(again.output)")
        let expected = generated(count: 20, seed: 81)
        let arrived = receiver.spansByTrace.withLock { $0.mapValues(\.count) }
        #expect(arrived == expected, "every trace delivered whole by the second run")
    }

    /// A second SIGTERM while the first one's drain waits for a sink exits at once with 130; what
    /// was not committed is read again by the next run (nothing lost).
    @Test func aSecondSignalExitsRunAtOnceWith130() throws {
        let processes = Processes()
        let (bootstrap, receiver) = try brokerAndRefusingReceiver(processes)
        defer { receiver.shutdown() }
        let port = try freePort()
        let rulesPath = try writeRules(rules)
        func run(_ extra: [String]) -> [String] {
            ["run", "--brokers", bootstrap, "--rules", rulesPath, "--otlp-endpoint", "http://127.0.0.1:\(receiver.port)",
             "--kafka-property", "session.timeout.ms=6000", "--kafka-property", "heartbeat.interval.ms=500"] + extra
        }
        let (member, _) = try processes.start(run(["--http", "127.0.0.1:\(port)", "--log-level", "info"]))
        let loadgen = try processes.run(["loadgen", "--brokers", bootstrap, "--traces", "20", "--seed", "82", "--log-level", "error"], timeout: .seconds(60))
        #expect(loadgen.status == 0)
        // Decided and waiting on the refusing sink.
        #expect(waitUntil(.seconds(60)) { metricSum(port, "tailgate_traces_kept_total") == 20 })
        kill(member.processIdentifier, SIGTERM)
        #expect(waitUntil(.seconds(20)) { processes.errorOutput(of: member).contains("a second signal exits at once") },
                "the first signal started the drain")
        #expect(member.isRunning, "the drain waits for the sink (up to 80% of the 30 s shutdown timeout)")
        let second = ContinuousClock.now
        kill(member.processIdentifier, SIGTERM)
        member.waitUntilExit()
        let took = ContinuousClock.now - second
        #expect(member.terminationStatus == 130)
        #expect(took < .seconds(5), "exited \(took) after the second signal")

        receiver.refusing.store(false, ordering: .relaxed)
        let last = try processes.run(run(["--exit-on-eof", "--http", "127.0.0.1:0", "--log-level", "error"]), timeout: .seconds(120))
        #expect(last.status == 0)
        let arrived = receiver.spansByTrace.withLock { $0.mapValues(\.count) }
        #expect(arrived == generated(count: 20, seed: 82), "nothing lost: the next run delivers every trace")
    }

    /// `--shutdown-timeout`: with a sink that never acknowledges, SIGTERM gives the sinks 80% of it,
    /// then commits what is safe and exits 1 (the rest is replayed) — within the timeout, not later.
    @Test func shutdownGivesUpWithinItsTimeoutAndExitsOne() throws {
        let processes = Processes()
        let (bootstrap, receiver) = try brokerAndRefusingReceiver(processes)
        defer { receiver.shutdown() }
        let port = try freePort()
        let (member, _) = try processes.start([
            "run", "--brokers", bootstrap, "--rules", try writeRules(rules), "--otlp-endpoint", "http://127.0.0.1:\(receiver.port)",
            "--shutdown-timeout", "5s", "--http", "127.0.0.1:\(port)", "--log-level", "error",
            "--kafka-property", "session.timeout.ms=6000", "--kafka-property", "heartbeat.interval.ms=500"])
        let loadgen = try processes.run(["loadgen", "--brokers", bootstrap, "--traces", "10", "--seed", "83", "--log-level", "error"], timeout: .seconds(60))
        #expect(loadgen.status == 0)
        #expect(waitUntil(.seconds(60)) { metricSum(port, "tailgate_traces_kept_total") == 10 })
        let signalled = ContinuousClock.now
        member.terminate()
        member.waitUntilExit()
        let took = ContinuousClock.now - signalled
        #expect(member.terminationStatus == 1, "exit 1: not everything was stored")
        #expect(took >= .seconds(4) && took < .seconds(7), "exited \(took) after SIGTERM (timeout 5 s, sinks 4 s)")
    }

    /// `route`: SIGTERM finishes the batch and commits; while that waits (the output does not
    /// acknowledge: every produce request answered "not enough replicas", which the producer retries),
    /// a second SIGTERM exits at once with 130. The refusals start right after the second message is
    /// in; should the router have delivered it in that instant, the finish would have nothing to wait
    /// for: that attempt did not set the scene, and the test sets it again (at most three times).
    /// (Taking the broker down after the second message was read raced the router's delivery, and
    /// lost once in a loaded rehearsal.)
    @Test func aSecondSignalExitsRouteAtOnceWith130() throws {
        var attempts = 0
        while attempts < 3 {
            attempts += 1
            let cluster = try KafkaMockCluster(topics: [("otlp_spans", 1), ("otlp_keyed", 1)], logger: quietLogger)
            let processes = Processes()
            let port = try freePort()
            let (router, _) = try processes.start([
                "route", "--brokers", cluster.bootstrapServers, "--output-topic", "otlp_keyed", "--http", "127.0.0.1:\(port)",
                "--log-level", "info", "--kafka-property", "session.timeout.ms=6000", "--kafka-property", "heartbeat.interval.ms=500"])
            let producer = try KafkaProducer(bootstrapServers: cluster.bootstrapServers, logger: quietLogger)
            try producer.send(topic: "otlp_spans", key: nil, value: otlpTrace(TraceID(high: 0xB0, low: 1), spans: 1...3))
            try producer.flush(timeout: .seconds(10))
            #expect(waitUntil(.seconds(60)) { metric(port, "tailgate_route_traces_out_total") == 1 }, "the router works")
            try producer.send(topic: "otlp_spans", key: nil, value: otlpTrace(TraceID(high: 0xB0, low: 2), spans: 1...3))
            try producer.flush(timeout: .seconds(10))
            cluster.refuseNextProduceRequests(5_000, as: .notEnoughReplicas)
            // Either the batch waits for the output (the router says so when its transaction's commit
            // times out, after 30 s), or it was delivered and committed in the instant before the refusals.
            var pending = false
            #expect(waitUntil(.seconds(90)) {
                pending = processes.errorOutput(of: router).contains("Failed to flush all outstanding messages")
                return pending || committedMessages(bootstrap: cluster.bootstrapServers, group: "tailgate-route", partitions: 1) == 2
            }, "the batch waits for the output, or was delivered")
            guard pending else {
                router.terminate()
                router.waitUntilExit()
                continue
            }
            kill(router.processIdentifier, SIGTERM)
            #expect(waitUntil(.seconds(20)) { processes.errorOutput(of: router).contains("a second signal exits at once") },
                    "the first signal started the finish")
            #expect(router.isRunning, "finishing waits for the output")
            let second = ContinuousClock.now
            kill(router.processIdentifier, SIGTERM)
            router.waitUntilExit()
            #expect(router.terminationStatus == 130)
            #expect(ContinuousClock.now - second < .seconds(5))
            return
        }
        Issue.record("in \(attempts) attempts the router delivered the second message before its output stopped acknowledging: the scene was never set")
    }

    /// `run --exit-on-eof` shows a refreshing progress line when standard error is a terminal (run
    /// here under a pseudo-terminal, Python's `pty`), and writes nothing extra when it is not.
    @Test func exitOnEOFShowsProgressOnATerminalOnly() throws {
        let processes = Processes()
        let (_, pipe) = try processes.start(["dev-broker", "--partitions", "2"])
        let bootstrap = try #require(processes.firstLine(of: pipe, timeout: .seconds(20)))
        let loadgen = try processes.run(["loadgen", "--brokers", bootstrap, "--traces", "3000", "--seed", "84", "--log-level", "error"], timeout: .seconds(120))
        #expect(loadgen.status == 0)
        let run = ["run", "--brokers", bootstrap, "--rules", try writeRules(rules), "--exit-on-eof", "--http", "127.0.0.1:0",
                   "--log-level", "error", "--kafka-property", "session.timeout.ms=6000"]
        let capture = FileManager.default.temporaryDirectory.appendingPathComponent("tailgate-pty-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: capture) }
        let script = """
            import os, pty, sys
            out = open(sys.argv[1], 'wb')
            def read(fd):
                data = os.read(fd, 4096)
                out.write(data)
                return data
            sys.exit(os.waitstatus_to_exitcode(pty.spawn(sys.argv[2:], read)))
            """
        let terminal = Process()
        terminal.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        terminal.arguments = ["python3", "-c", script, capture.path, Processes.executable.path] + run
        terminal.standardInput = FileHandle.nullDevice
        terminal.standardOutput = FileHandle.nullDevice
        try terminal.run()
        terminal.waitUntilExit()
        #expect(terminal.terminationStatus == 0)
        let shown = String(decoding: try Data(contentsOf: capture), as: UTF8.self)
        #expect(shown.contains("\rread ") && shown.contains(" messages") && shown.contains("spans/s") && shown.contains("kept "),
                "\(shown.suffix(600))")
        #expect(shown.contains(#""outcome":"end_of_input""#), "the summary follows")

        // Not a terminal (pipes, as in a job's logs): no progress line. A new group reads it all again.
        let (plain, output) = try processes.start(run + ["--group", "plain"])
        plain.waitUntilExit()
        #expect(plain.terminationStatus == 0)
        #expect(String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self).contains(#""outcome":"end_of_input""#))
        #expect(!processes.errorOutput(of: plain).contains("spans/s"), "\(processes.errorOutput(of: plain))")
    }

    /// `TAILGATE_KAFKA_<PROPERTY>` reaches librdkafka (`_` becomes `.`): shown, secrets redacted, in
    /// the startup line; a value librdkafka refuses is named; `--kafka-property` wins over it.
    /// `TAILGATE_ADMIN_TOKEN` turns `POST /-/reload` on for that token only.
    @Test func theEnvironmentSetsKafkaPropertiesAndTheAdminToken() throws {
        let processes = Processes()
        let (_, pipe) = try processes.start(["dev-broker", "--partitions", "1"])
        let bootstrap = try #require(processes.firstLine(of: pipe, timeout: .seconds(20)))
        let port = try freePort()
        let environment = [
            "TAILGATE_KAFKA_SESSION_TIMEOUT_MS": "7000", "TAILGATE_KAFKA_HEARTBEAT_INTERVAL_MS": "900",
            "TAILGATE_KAFKA_SASL_PASSWORD": "dog-s3cret", "TAILGATE_ADMIN_TOKEN": "t0ken",
        ]
        let data = FileManager.default.temporaryDirectory.appendingPathComponent("tailgate-env-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: data) }
        let (member, _) = try processes.start(
            ["run", "--brokers", bootstrap, "--rules", try writeRules(rules), "--http", "127.0.0.1:\(port)", "--log-level", "info",
             "--kafka-property", "heartbeat.interval.ms=600", "--data", data.path, "--retention", "36h", "--retention-size", "2GiB"],
            environment: environment)
        #expect(waitUntil(.seconds(30)) { processes.errorOutput(of: member).contains("kafka_properties=") })
        let log = processes.errorOutput(of: member, last: 20_000)
        #expect(log.contains("session.timeout.ms=7000"), "the environment's property")
        #expect(log.contains("heartbeat.interval.ms=600") && !log.contains("heartbeat.interval.ms=900"), "the flag wins")
        #expect(log.contains("sasl.password=***") && !log.contains("dog-s3cret"), "a secret is never logged")
        // The store's retention flags reach the store's options (36 h, 2 GiB), shown in the same line.
        #expect(log.contains("retention=129600s") && log.contains("retention_size=2147483648"))

        func reload(_ token: String?) -> String {
            let authorization = token.map { "Authorization: Bearer \($0)\r\n" } ?? ""
            return (try? rawHTTP(port: port, "POST /-/reload HTTP/1.1\r\nHost: x\r\n\(authorization)Content-Length: 0\r\nConnection: close\r\n\r\n")) ?? ""
        }
        #expect(waitUntil(.seconds(30)) { reload("t0ken").hasPrefix("HTTP/1.1 200") }, "the environment's token reloads")
        #expect(!reload("wrong").hasPrefix("HTTP/1.1 200") && !reload(nil).hasPrefix("HTTP/1.1 200"), "any other is refused")
        member.terminate()
        member.waitUntilExit()
        #expect(member.terminationStatus == 0)

        // A value librdkafka refuses, from the environment: refused at startup, naming the property.
        let (bad, _) = try processes.start(
            ["run", "--brokers", bootstrap, "--rules", try writeRules(rules), "--http", "127.0.0.1:0"],
            environment: ["TAILGATE_KAFKA_SESSION_TIMEOUT_MS": "soon"])
        bad.waitUntilExit()
        #expect(bad.terminationStatus != 0)
        #expect(processes.errorOutput(of: bad).contains("session.timeout.ms"), "\(processes.errorOutput(of: bad))")
    }
}
