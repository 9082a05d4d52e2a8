import HTTP
import Ingest
import Route
import Sampling
import Sinks
import Engine
import Foundation
import Testing
import TestSupport

let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

/// Runs a program to completion; exit status and everything it printed.
func runTool(_ executable: String, _ arguments: [String]) throws -> (status: Int32, output: String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = [executable] + arguments
    process.currentDirectoryURL = repositoryRoot
    let output = Pipe()
    process.standardOutput = output
    process.standardError = output
    try process.run()
    let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    process.waitUntilExit()
    return (process.terminationStatus, text)
}

/// The deployment kit (ops/) is checked like code: manifests against the Kubernetes schemas, alerts
/// by promtool, and every metric the dashboard and alerts query is one the engine exposes.
@Suite(.timeLimit(.minutes(10))) struct OpsTests {
    @Test func kubernetesManifestsValidateStrictly() throws {
        let result = try runTool("python3", ["ops/kubernetes/validate.py"])
        #expect(result.status == 0, "\(result.output)")
        #expect(result.output.contains("Deployment/tailgate (Kubernetes"))
        #expect(result.output.contains("ScaledObject/tailgate (custom resource schema)"))
    }

    @Test func alertingRulesPassPromtool() throws {
        let result = try runTool("promtool", ["check", "rules", "ops/prometheus/tailgate-alerts.yaml"])
        #expect(result.status == 0, "\(result.output)")
        #expect(result.output.contains("SUCCESS"))
    }

    @Test func dashboardAndAlertsQueryOnlyExposedMetrics() throws {
        // An engine with every sink, so every family is in its exposition (families are listed even
        // before they have series).
        let data = FileManager.default.temporaryDirectory.appendingPathComponent("tailgate-ops-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: data) }
        var configuration = EngineConfiguration(brokers: "127.0.0.1:1")
        configuration.dataDirectory = data.path
        configuration.outputTopic = "kept"
        configuration.otlpEndpoint = "http://127.0.0.1:1"
        let engine = try Engine(configuration: configuration, logger: quietLogger)
        let exposition = engine.prometheusText()
        var exposed = Set<String>()
        for line in exposition.split(separator: "\n") where line.hasPrefix("# TYPE ") {
            let parts = line.split(separator: " ")
            let name = String(parts[2])
            exposed.insert(name)
            if parts[3] == "histogram" { exposed.formUnion([name + "_bucket", name + "_sum", name + "_count"]) }
        }
        #expect(exposed.count > 40)

        let files = ["ops/grafana/tailgate-dashboard.json", "ops/prometheus/tailgate-alerts.yaml"]
        let pattern = try Regex("\\b(?:traces|tailgate)_[a-z0-9_]+")
        var queried = Set<String>()
        for file in files {
            let text = try String(contentsOf: repositoryRoot.appendingPathComponent(file), encoding: .utf8)
            for match in text.matches(of: pattern) { queried.insert(String(text[match.range])) }
        }
        #expect(queried.count > 20)
        let unknown = queried.subtracting(exposed).sorted()
        #expect(unknown.isEmpty, "queried but not exposed: \(unknown)")
        // The panels the team asked for are there.
        let dashboard = try String(contentsOf: repositoryRoot.appendingPathComponent(files[0]), encoding: .utf8)
        for needle in ["traces_spanmetrics_latency_bucket", "tailgate_traces_kept_total", "tailgate_kafka_consumer_lag",
                       "tailgate_buffer_bytes", "tailgate_sink_errors_total", "traces_service_graph_request_total"] {
            #expect(dashboard.contains(needle))
        }
    }
}
