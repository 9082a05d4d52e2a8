import Foundation
import Testing
import TestSupport

/// Issue 26, item 1, on a real engine: a SIGHUP reload that grows `non_sampled_cache_size` past the
/// dropped-trace table's first size, with traffic before and after. The process trapped
/// (`precondition failure`) once each shard's table filled past its first size; it must keep
/// deciding and leave cleanly. Expected counts are what loadgen sent.
@Suite(.serialized, .timeLimit(.minutes(10))) struct ReloadEndToEndTests {
    @Test func aReloadThatGrowsTheDecisionCacheKeepsDeciding() throws {
        let processes = Processes()
        let (_, pipe) = try processes.start(["dev-broker", "--partitions", "2"])
        let bootstrap = try #require(processes.firstLine(of: pipe, timeout: .seconds(20)))
        let data = FileManager.default.temporaryDirectory.appendingPathComponent("tailgate-reload-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: data) }
        func rules(nonSampled: Int) -> String {
            """
            decision_wait: 200ms
            decision_cache: {sampled_cache_size: 1000, non_sampled_cache_size: \(nonSampled)}
            policies: [{name: none, type: probabilistic, probabilistic: {sampling_percentage: 0}}]
            """
        }
        let rulesPath = try writeRules(rules(nonSampled: 1000))
        let port = try freePort()
        let (member, _) = try processes.start([
            "run", "--brokers", bootstrap, "--rules", rulesPath, "--data", data.path, "--http", "127.0.0.1:\(port)",
            "--shards", "2", "--log-level", "error", "--kafka-property", "session.timeout.ms=6000", "--kafka-property", "heartbeat.interval.ms=500"])
        #expect(waitUntil(.seconds(60)) { (try? rawHTTP(port: port, "GET /-/ready HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"))?.hasPrefix("HTTP/1.1 200") ?? false })

        func send(_ traces: Int, seed: Int) throws {
            let sent = try processes.run(
                ["loadgen", "--brokers", bootstrap, "--traces", "\(traces)", "--seed", "\(seed)", "--log-level", "error"], timeout: .seconds(120))
            #expect(sent.status == 0)
        }
        // 3 000 dropped traces fill each shard's table (500 per shard) to its first size's limit.
        try send(3000, seed: 91)
        #expect(waitUntil(.seconds(120)) { metric(port, "tailgate_traces_dropped_total") == 3000 })
        let loadedAt = metric(port, "tailgate_rules_last_reload_success_timestamp_seconds")
        try rules(nonSampled: 4000).write(toFile: rulesPath, atomically: true, encoding: .utf8)
        kill(member.processIdentifier, SIGHUP)
        #expect(waitUntil(.seconds(60)) { metric(port, "tailgate_rules_last_reload_success_timestamp_seconds").map { $0 > (loadedAt ?? 0) } ?? false },
                "the reload was applied")
        // Past the old size: the table must grow, not trap.
        try send(3000, seed: 92)
        #expect(waitUntil(.seconds(120)) { metric(port, "tailgate_traces_dropped_total") == 6000 || !member.isRunning })
        #expect(member.isRunning, "alive after the reload: \(processes.errorOutput(of: member, last: 600))")
        #expect(metric(port, "tailgate_traces_dropped_total") == 6000)
        member.terminate()
        member.waitUntilExit()
        #expect(member.terminationStatus == 0)
    }

    enum Trigger: String, CaseIterable, Sendable { case sighup, fileChange, adminRoute }

    /// Hot reload keeps state: traces buffered before the reload are neither decided nor lost by it,
    /// and are decided under the new rules — by each of the README's three ways to reload (SIGHUP,
    /// the watcher seeing the file change, `POST /-/reload` with the admin token). The old rules keep
    /// nothing; the new keep everything: every trace sent is kept, by the new policy.
    @Test(arguments: Trigger.allCases) func bufferedTracesSurviveAReload(trigger: Trigger) throws {
        let processes = Processes()
        let (_, pipe) = try processes.start(["dev-broker", "--partitions", "2"])
        let bootstrap = try #require(processes.firstLine(of: pipe, timeout: .seconds(20)))
        func rules(_ policy: String) -> String { "decision_wait: 600s\ndecision_wait_after_root_received: 600s\npolicies: [\(policy)]" }
        let rulesPath = try writeRules(rules("{name: before, type: probabilistic, probabilistic: {sampling_percentage: 0}}"))
        let port = try freePort()
        let (member, output) = try processes.start([
            "run", "--brokers", bootstrap, "--rules", rulesPath, "--http", "127.0.0.1:\(port)", "--admin-token", "t0ken",
            "--log-level", "error", "--kafka-property", "session.timeout.ms=6000", "--kafka-property", "heartbeat.interval.ms=500"])
        let sent = try processes.run(["loadgen", "--brokers", bootstrap, "--traces", "40", "--seed", "93", "--log-level", "error"], timeout: .seconds(60))
        #expect(sent.status == 0)
        #expect(waitUntil(.seconds(60)) { metric(port, "tailgate_buffer_traces") == 40 }, "all 40 buffered")
        let loadedAt = metric(port, "tailgate_rules_last_reload_success_timestamp_seconds") ?? 0

        // The file's modification time moves by at least a second, so the watcher sees the change.
        Thread.sleep(forTimeInterval: 1.1)
        try rules("{name: after, type: always_sample}").write(toFile: rulesPath, atomically: true, encoding: .utf8)
        switch trigger {
        case .sighup: kill(member.processIdentifier, SIGHUP)
        case .fileChange: break  // the watcher polls every second
        case .adminRoute:
            let answer = try rawHTTP(port: port, "POST /-/reload HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer t0ken\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            #expect(answer.hasPrefix("HTTP/1.1 200"), "\(answer.prefix(200))")
        }
        #expect(waitUntil(.seconds(30)) { (metric(port, "tailgate_rules_last_reload_success_timestamp_seconds") ?? 0) > loadedAt },
                "reloaded by \(trigger)")
        #expect(metric(port, "tailgate_buffer_traces") == 40, "the reload kept every buffered trace")
        #expect(metricSum(port, "tailgate_traces_kept_total") == 0 && metric(port, "tailgate_traces_dropped_total") == 0)

        // SIGTERM decides what is buffered: under the new rules.
        member.terminate()
        member.waitUntilExit()
        #expect(member.terminationStatus == 0)
        let summary = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(summary.contains(#""keptByPolicy":{"after":40}"#), "\(summary)")
        #expect(summary.contains(#""tracesDropped":0"#))
    }
}
