import Foundation
import OTLP
import Storage
import Testing
import TestSupport

/// The README's promises about adaptive samplers, on real processes over the dev broker: the table
/// is saved beside the store while running (every 15 s) and at exit; the throughput goal follows a
/// real rebalance (a member owning half the partitions aims at half); the rate series are capped at
/// the 20 busiest keys; and every stored span carries `SampleRate` = N, and for N > 1 an `ot=th` for
/// 1/N that its trace id's randomness reaches.
@Suite(.serialized, .timeLimit(.minutes(10))) struct AdaptiveSamplerEndToEndTests {
    @Test func tablesAreSavedGoalsFollowTheGroupAndKeptSpansSayTheirRate() throws {
        let processes = Processes()
        let (_, pipe) = try processes.start(["dev-broker", "--partitions", "4"])
        let bootstrap = try #require(processes.firstLine(of: pipe, timeout: .seconds(20)))
        let directories = (0..<2).map {
            FileManager.default.temporaryDirectory.appendingPathComponent("tailgate-adaptive-\($0)-\(UUID().uuidString)")
        }
        defer { for directory in directories { try? FileManager.default.removeItem(at: directory) } }
        // client.address takes hundreds of values in DogBook traffic: far more keys than 20.
        let rulesPath = try writeRules("""
            decision_wait: 300ms
            policies:
              - {name: adaptive, type: ema_throughput, ema_throughput: {key_fields: [client.address], goal_throughput_per_sec: 40, adjustment_interval: 2s}}
            """)
        let ports = try (0..<2).map { _ in try freePort() }
        func member(_ slot: Int) throws -> Process {
            try processes.start([
                "run", "--brokers", bootstrap, "--rules", rulesPath, "--data", directories[slot].path, "--http", "127.0.0.1:\(ports[slot])",
                "--log-level", "error", "--kafka-property", "session.timeout.ms=6000", "--kafka-property", "heartbeat.interval.ms=500",
            ]).0
        }
        func share(_ slot: Int) -> Double? { metric(ports[slot], "tailgate_sampler_goal_share") }
        let tables = directories.map { $0.appendingPathComponent("samplers.json").path }

        let first = try member(0)
        let (loadgen, _) = try processes.start([
            "loadgen", "--brokers", bootstrap, "--traces", "0", "--rate", "150", "--seed", "95", "--log-level", "error"])
        #expect(waitUntil(.seconds(60)) { share(0) == 1 }, "alone, the member aims at the whole goal")
        #expect(waitUntil(.seconds(40)) { FileManager.default.fileExists(atPath: tables[0]) }, "the table is saved while running")

        // The 20 busiest keys have a rate series; the sampler knows more.
        #expect(waitUntil(.seconds(60)) { (metric(ports[0], "tailgate_sampler_keys{policy=\"adaptive\"}") ?? 0) > 20 })
        let scrape = try prometheusGET(port: ports[0], "/metrics")
        let rateSeries = scrape.split(separator: "\n").filter { $0.hasPrefix("tailgate_sampler_rate{policy=\"adaptive\"") }
        #expect(rateSeries.count == 20, "\(rateSeries.count) rate series")

        // A second member: a real rebalance gives each half of the four partitions, half the goal.
        let second = try member(1)
        #expect(waitUntil(.seconds(90)) { share(0) == 0.5 && share(1) == 0.5 }, "shares \(String(describing: share(0))), \(String(describing: share(1)))")

        loadgen.terminate()
        loadgen.waitUntilExit()
        // Saved at exit: the file, removed just before, is there again after SIGTERM.
        try FileManager.default.removeItem(atPath: tables[0])
        for process in [first, second] {
            process.terminate()
            process.waitUntilExit()
            #expect(process.terminationStatus == 0)
        }
        #expect(FileManager.default.fileExists(atPath: tables[0]), "saved at exit")
        let saved = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: tables[0]))) as? [String: Any])
        #expect(saved.keys.contains("adaptive") || "\(saved)".contains("adaptive"), "the policy's table: \(saved.keys)")

        // Every stored span: SampleRate = N ≥ 1 and a th for 1/N that its trace's randomness reaches.
        var spans = 0, sampledAbove1 = 0
        var wrong: [String] = []
        for directory in directories {
            let store = try TraceStore(directory: directory, readOnly: true)
            var everything = TraceSearchRequest(query: nil)
            everything.limit = 300
            let checked = try checkSampleRates(store, traces: try store.search(everything).traces.map(\.traceID))
            spans += checked.spans
            sampledAbove1 += checked.sampledAbove1
            wrong += checked.wrong
        }
        print("adaptive end to end: \(spans) stored spans checked, \(sampledAbove1) at a rate above 1")
        #expect(spans > 100)
        #expect(sampledAbove1 > 0, "the goal made the sampler sample")
        #expect(wrong.isEmpty, "\(wrong.count) spans: \(wrong.prefix(5))")
    }
}
