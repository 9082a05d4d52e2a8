import HTTP
import OTLP
import Ingest
import Route
import Sampling
import Sinks
import Foundation
import Synchronization
import Testing
import TestSupport

/// The executables as users run them: `dev-broker`, `loadgen`, `run --exit-on-eof`, exit codes.
@Suite(.timeLimit(.minutes(10))) struct CommandLineTests {
    struct RunSummary: Decodable {
        var outcome: String
        var messages: Int
        var spans: Int
        var messagesRejected: [String: Int]
    }

    struct Totals: Decodable {
        var traces: Int
        var spans: Int
        var messages: Int
    }

    @Test func devBrokerLoadgenAndRunEndToEnd() throws {
        let processes = Processes()
        let (broker, pipe) = try processes.start(["dev-broker", "--partitions", "3", "--topic", "otlp_spans"])
        let bootstrap = try #require(processes.firstLine(of: pipe, timeout: .seconds(20)))
        #expect(bootstrap.contains("127.0.0.1:"))

        let generated = try processes.run(["loadgen", "--brokers", bootstrap, "--traces", "400", "--error-rate", "0.1"], timeout: .seconds(60))
        #expect(generated.status == 0)
        let totals = try JSONDecoder().decode(Totals.self, from: Data(generated.output.utf8))
        #expect(totals.traces == 400 && totals.messages == 400)

        // The mock coordinator holds a group's next generation open for the session timeout of the
        // members that left: keep it short so the second run below joins quickly.
        let quickGroup = ["--kafka-property", "session.timeout.ms=6000", "--kafka-property", "heartbeat.interval.ms=500"]
        let consumed = try processes.run(
            ["run", "--brokers", bootstrap, "--exit-on-eof", "--log-level", "warning", "--http", "127.0.0.1:0"] + quickGroup, timeout: .seconds(60))
        #expect(consumed.status == 0)
        let summary = try JSONDecoder().decode(RunSummary.self, from: Data(consumed.output.utf8))
        #expect(summary.outcome == "end_of_input")
        #expect(summary.messages == 400)
        #expect(summary.spans == totals.spans)
        #expect(summary.messagesRejected.isEmpty)

        // The group committed: a second run of the same group has nothing left. This one takes its
        // settings from a --config file (the wrong brokers in it lose to the flag).
        let config = FileManager.default.temporaryDirectory.appendingPathComponent("tailgate-config-\(UUID().uuidString).yaml")
        defer { try? FileManager.default.removeItem(at: config) }
        try """
            brokers: nowhere.invalid:9092
            topic: [otlp_spans]
            exit-on-eof: true
            log-level: warning
            http: 127.0.0.1:0
            kafka-property:
              session.timeout.ms: 6000
              heartbeat.interval.ms: 500
            """.write(to: config, atomically: true, encoding: .utf8)
        let again = try processes.run(["run", "--config", config.path, "--brokers", bootstrap], timeout: .seconds(60))
        #expect(try JSONDecoder().decode(RunSummary.self, from: Data(again.output.utf8)).messages == 0)

        broker.terminate()
        broker.waitUntilExit()
        #expect(broker.terminationStatus == 0, "SIGTERM stops the dev broker cleanly")
    }

    @Test func badUsageExitsTwoWithAMessage() throws {
        let processes = Processes()
        #expect(try processes.run(["run"], timeout: .seconds(20)).status == 2)
        #expect(try processes.run(["run", "--brokers", "x:1", "--no-such-flag"], timeout: .seconds(20)).status == 2)
        #expect(try processes.run(["run", "--brokers", "x:1", "--kafka-property", "nonsense"], timeout: .seconds(20)).status == 2)
        #expect(try processes.run(["run", "--brokers", "x:1", "--kafka-property", "no.such.property=1"], timeout: .seconds(20)).status == 2)
        #expect(try processes.run(["dev-broker", "--partitions", "0"], timeout: .seconds(20)).status == 2)
        let config = FileManager.default.temporaryDirectory.appendingPathComponent("tailgate-bad-config-\(UUID().uuidString).yaml")
        defer { try? FileManager.default.removeItem(at: config) }
        try "brokers: x:1\nbrokerz: y:2\n".write(to: config, atomically: true, encoding: .utf8)
        #expect(try processes.run(["run", "--config", config.path], timeout: .seconds(20)).status == 2)
        #expect(try processes.run(["run", "--config", "/no/such/file.yaml"], timeout: .seconds(20)).status == 2)
        #expect(try processes.run(["--help"], timeout: .seconds(20)).status == 0)
        // Limits under which consumption would pause and never resume.
        let tiny = try processes.run(["run", "--brokers", "x:1", "--buffer-limit", "9"], timeout: .seconds(20))
        #expect(tiny.status == 2)
        let rules = FileManager.default.temporaryDirectory.appendingPathComponent("tailgate-tiny-\(UUID().uuidString).yaml")
        defer { try? FileManager.default.removeItem(at: rules) }
        try "num_traces: 5\npolicies: [{name: all, type: always_sample}]\n".write(to: rules, atomically: true, encoding: .utf8)
        #expect(try processes.run(["run", "--brokers", "x:1", "--rules", rules.path], timeout: .seconds(20)).status == 2)
        #expect(try processes.run(["check", "--rules", rules.path], timeout: .seconds(20)).status == 2)
        // route: the output topic is required, must not be an input, and the delivery mode is one of three.
        #expect(try processes.run(["route", "--brokers", "x:1"], timeout: .seconds(20)).status == 2)
        #expect(try processes.run(["route", "--brokers", "x:1", "--output-topic", "otlp_spans"], timeout: .seconds(20)).status == 2)
        #expect(try processes.run(["route", "--brokers", "x:1", "--output-topic", "keyed", "--delivery", "maybe"], timeout: .seconds(20)).status == 2)
        #expect(try processes.run(["route", "--brokers", "x:1", "--output-topic", "keyed", "--max-message-bytes", "10"], timeout: .seconds(20)).status == 2)
        #expect(try processes.run(["run", "--brokers", "x:1", "--on-revoke", "later"], timeout: .seconds(20)).status == 2)
        try "brokers: x:1\noutput-topic: keyed\noutput-topik: y\n".write(to: config, atomically: true, encoding: .utf8)
        #expect(try processes.run(["route", "--config", config.path], timeout: .seconds(20)).status == 2, "a misspelt key in a route config")
    }

    /// Output of a running process, collected as it comes.
    final class Transcript: Sendable {
        private let text = Mutex("")
        init(_ pipe: Pipe) {
            Thread { [self] in
                while true {
                    let chunk = pipe.fileHandleForReading.availableData
                    if chunk.isEmpty { break }
                    text.withLock { $0 += String(decoding: chunk, as: UTF8.self) }
                }
            }.start()
        }
        var value: String { text.withLock { $0 } }
        func waitFor(_ timeout: Duration, _ condition: (String) -> Bool) -> Bool { waitUntil(timeout) { condition(value) } }
    }

    /// The store's directory removed while the demo runs: the status says the store fails, Ctrl-C
    /// ends it promptly (not retrying forever), and the summary says what was not stored (exit 1).
    @Test func demoWithAVanishedStoreSaysSoAndStopsOnCtrlC() throws {
        let data = FileManager.default.temporaryDirectory.appendingPathComponent("tailgate-demo-gone-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: data) }
        let processes = Processes()
        let (process, pipe) = try processes.start(["demo", "--duration", "120s", "--rate", "150", "--http", "127.0.0.1:0", "--data", data.path])
        let output = Transcript(pipe)
        #expect(output.waitFor(.seconds(60)) { $0.contains("kept 1") || $0.contains("kept 2") || $0.contains("kept 3") }, "traces kept")
        let ready = { () -> String in
            // "open      http://127.0.0.1:PORT/metrics …"
            guard let open = output.value.split(separator: "\n").first(where: { $0.hasPrefix("open ") }),
                let port = open.split(separator: ":").dropFirst(2).first?.split(separator: "/").first.flatMap({ UInt16($0) })
            else { return "" }
            return (try? rawHTTP(port: port, "GET /-/ready HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")) ?? ""
        }
        #expect(ready().hasPrefix("HTTP/1.1 200"), "ready while the store works")
        // "console   http://127.0.0.1:PORT/   (…)": the status block names the console, and it answers.
        let consoleLine = output.value.split(separator: "\n").first(where: { $0.hasPrefix("console ") }).map(String.init) ?? ""
        let consolePort = consoleLine.split(separator: ":").dropFirst(2).first?.split(separator: "/").first.flatMap { UInt16($0) }
        #expect(consolePort != nil, "the status block names the console: \(consoleLine)")
        if let consolePort {
            let page = try rawHTTP(port: consolePort, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            #expect(page.hasPrefix("HTTP/1.1 200") && page.contains("<script src=\"/console/app.js\" defer></script>"), "\(page.prefix(300))")
        }
        // Moved away in one step (a recursive delete races the store's writes: a file created between
        // listing and unlinking fails the delete); the directory is gone from where the store writes.
        let gone = data.appendingPathExtension("gone")
        defer { try? FileManager.default.removeItem(at: gone) }
        try FileManager.default.moveItem(at: data, to: gone)
        #expect(output.waitFor(.seconds(30)) { $0.contains("FAILING store failing") }, "the status line names the failing store")
        let notReady = ready()
        #expect(notReady.hasPrefix("HTTP/1.1 503") && notReady.contains("not ready: store failing: "), "\(notReady)")
        let stopped = ContinuousClock.now
        kill(process.processIdentifier, SIGINT)
        #expect(waitUntil(.seconds(40)) { !process.isRunning }, "stopped within the demo's drain bound")
        #expect(ContinuousClock.now - stopped < .seconds(40))
        process.waitUntilExit()
        #expect(process.terminationStatus == 1)
        #expect(output.waitFor(.seconds(5)) { $0.contains("kept traces were not stored (store failing:") }, "\(output.value.suffix(600))")
    }

    /// A second Ctrl-C exits at once, without waiting for the drain.
    @Test func aSecondCtrlCExitsTheDemoAtOnce() throws {
        let processes = Processes()
        let (process, pipe) = try processes.start(["demo", "--duration", "120s", "--rate", "100", "--http", ""])
        let output = Transcript(pipe)
        #expect(output.waitFor(.seconds(60)) { $0.contains("s in ") }, "a status line")
        kill(process.processIdentifier, SIGINT)
        #expect(output.waitFor(.seconds(10)) { $0.contains("Ctrl-C again") })
        kill(process.processIdentifier, SIGINT)
        #expect(waitUntil(.seconds(5)) { !process.isRunning }, "exited at the second signal")
        process.waitUntilExit()
        #expect(process.terminationStatus == 130)
    }

    /// The README's first command, shortened: 20 s of the demo, as a person would run it.
    @Test func demoRunsAndKeepsEveryErrorTrace() throws {
        let data = FileManager.default.temporaryDirectory.appendingPathComponent("tailgate-demo-test-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: data) }
        let result = try Processes().run(
            ["demo", "--duration", "20s", "--rate", "150", "--http", "127.0.0.1:0", "--data", data.path], timeout: .seconds(120))
        #expect(result.status == 0)
        func line(_ label: String) throws -> [Int] {
            let found = try #require(result.output.split(separator: "\n").first { $0.hasPrefix("  \(label) ") }, "no \(label) line in:\n\(result.output)")
            return found.split(whereSeparator: { $0 == " " || $0 == "(" || $0 == "," }).compactMap { Int($0) }
        }
        // "  received  N spans in T traces, R messages rejected"
        let received = try line("received")
        #expect(received.count == 3 && received[0] > 1000 && received[2] == 0, "\(received)")
        // "  kept      K traces (…), dropped D"
        let kept = try line("kept")
        #expect(kept.first ?? 0 > 0)
        // "  errors    N of N error traces kept"
        let errors = try line("errors")
        #expect(errors.count == 2 && errors[0] == errors[1] && errors[0] > 0, "\(errors)")
        // "  metrics   S RED series, E service-graph edges, …"
        let metrics = try line("metrics")
        #expect(metrics.count >= 2 && metrics[0] > 0 && metrics[1] > 0, "\(metrics)")
        #expect(result.output.contains("% less to store"))
        // Not a terminal: plain status lines, no escape sequences; the URLs to open.
        #expect(!result.output.contains("\u{1B}["))
        #expect(result.output.contains("/metrics"))
        // The kept error trace it names is in the store.
        let open = try #require(result.output.split(separator: "\n").first { $0.hasPrefix("  open one ") })
        let id = String(open.split(separator: " ").last!)
        let query = try Processes().run(["query", "--data", data.path, id], timeout: .seconds(30))
        #expect(query.status == 0 && query.output.contains("\"resourceSpans\""))
    }

    @Test func checkAndEvalFromTheCommandLine() throws {
        let processes = Processes()
        let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Fixtures")
        let pipelines = fixtures.deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("pipelines/default.yaml")
        let ok = try processes.run(["check", "--rules", pipelines.path], timeout: .seconds(20))
        #expect(ok.status == 0)
        #expect(ok.output.contains("ok, 4 policies"))
        let bad = FileManager.default.temporaryDirectory.appendingPathComponent("bad-\(UUID().uuidString).yaml")
        try "policies:\n  - {name: x, type: latancy}\n".write(to: bad, atomically: true, encoding: .utf8)
        #expect(try processes.run(["check", "--rules", bad.path], timeout: .seconds(20)).status == 2)

        let eval = try processes.run(
            ["eval", "--rules", pipelines.path, fixtures.appendingPathComponent("many_traces.pb").path,
             fixtures.appendingPathComponent("single_trace.json").path], timeout: .seconds(20))
        #expect(eval.status == 0)
        let lines = eval.output.split(separator: "\n")
        #expect(lines.count == 4, "3 traces in many_traces.pb, 1 in single_trace.json")
        #expect(lines.last == #"{"traceId":"d95bafc8f2a4d27bdcf4bb99f4bea973","decision":"keep","policy":"errors","spans":18}"#)
        #expect(lines.allSatisfy { $0.hasPrefix(#"{"traceId":""#) && ($0.contains(#""decision":"keep""#) || $0.contains(#""decision":"drop","policy":null"#)) })

        // --explain: the same fields first, then every policy's own decision and the rule.
        let explained = try processes.run(
            ["eval", "--explain", "--rules", pipelines.path, fixtures.appendingPathComponent("single_trace.json").path], timeout: .seconds(20))
        #expect(explained.status == 0)
        #expect(explained.output == #"{"traceId":"d95bafc8f2a4d27bdcf4bb99f4bea973","decision":"keep","policy":"errors","spans":18,"policies":[{"name":"errors","decision":"Sampled"},{"name":"slow","decision":"NotSampled"},{"name":"baseline","decision":"NotSampled"},{"name":"drop-health-checks","decision":"NotSampled"}],"rule":"Sampled keeps"}"# + "\n")
    }

    /// eval says on stderr, per input, what it skipped (spans without a valid trace id, requests
    /// without spans); the decisions on stdout are unchanged; exit 1 only when nothing at all could
    /// be decided.
    @Test func evalNamesWhatItSkipped() throws {
        let processes = Processes()
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("tailgate-eval-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let rules = try writeRules("policies: [{name: all, type: always_sample}]")
        // Protobuf: one good trace of 3 spans, and 2 spans whose trace id is all zero.
        let mixed = directory.appendingPathComponent("mixed.pb")
        try Data(otlpTrace(TraceID(high: 0xE, low: 1), spans: 1...3) + otlpTrace(TraceID(high: 0, low: 0), spans: 4...5)).write(to: mixed)
        // JSON lines: an empty request on line 1, a good trace on line 2.
        let lines = directory.appendingPathComponent("lines.json")
        try Data(("{\"resourceSpans\":[]}\n" + (try OTLPJSONWriter.request(otlpTrace(TraceID(high: 0xE, low: 2), spans: 1...2))) + "\n").utf8).write(to: lines)
        // Nothing decidable at all.
        let none = directory.appendingPathComponent("none.pb")
        try Data(otlpTrace(TraceID(high: 0, low: 0), spans: 1...2)).write(to: none)

        func eval(_ files: [URL]) throws -> (status: Int32, stdout: String, stderr: String) {
            let (process, pipe) = try processes.start(["eval", "--rules", rules] + files.map(\.path))
            let stdout = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            process.waitUntilExit()
            return (process.terminationStatus, stdout, processes.errorOutput(of: process))
        }
        let both = try eval([mixed, lines])
        #expect(both.status == 0)
        #expect(both.stdout.split(separator: "\n").count == 2, "the two good traces are decided: \(both.stdout)")
        #expect(both.stderr.contains("eval: \(mixed.path): skipped 2 of 5 span(s) without a valid trace or span id"), "\(both.stderr)")
        #expect(both.stderr.contains("eval: \(lines.path): 1 of 2 requests (line 1) held no spans"), "\(both.stderr)")
        let nothing = try eval([none])
        #expect(nothing.status == 1)
        #expect(nothing.stdout.isEmpty)
        #expect(nothing.stderr.contains("skipped 2 of 2 span(s)") && nothing.stderr.contains("nothing to decide"), "\(nothing.stderr)")
    }

    @Test func helpListsEveryContractCommand() throws {
        let help = try Processes().run(["--help"], timeout: .seconds(20)).output
        for command in ["run", "route", "demo", "eval", "check", "query", "dev-broker", "loadgen"] {
            #expect(help.contains("  \(command) "), "\(command) missing from --help")
        }
    }
}
