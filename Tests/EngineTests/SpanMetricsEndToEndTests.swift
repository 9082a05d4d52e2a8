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
import SpanMetrics
import Synchronization
import Testing
import TestSupport

let fixturesDirectory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("Fixtures")

/// The SDK-made corpus (100 traces, one per message, as the collector's kafka exporter writes them
/// with partition_traces_by_id) and its oracle, counted by make_fixtures.py from the SDK's span objects.
func produceSDKCorpus(to topic: String, on cluster: KafkaMockCluster) throws -> (calls: [String: Int], edges: [String: Int], spans: Int) {
    let corpus = [UInt8](try Data(contentsOf: fixturesDirectory.appendingPathComponent("dogbook_corpus.pbl")))
    let producer = try KafkaProducer(bootstrapServers: cluster.bootstrapServers, logger: quietLogger)
    var offset = 0
    var spans = 0
    while offset < corpus.count {
        let length = Int(corpus[offset]) << 24 | Int(corpus[offset + 1]) << 16 | Int(corpus[offset + 2]) << 8 | Int(corpus[offset + 3])
        let message = Array(corpus[(offset + 4)..<(offset + 4 + length)])
        var batch = SpanBatch()
        _ = try SpanDecoder(encoding: .otlpProto).decode(message, into: &batch)
        spans += batch.spans.count
        try producer.send(topic: topic, key: Array(batch.spans[0].traceID.hex.utf8), value: message)
        offset += 4 + length
    }
    try producer.flush(timeout: .seconds(10))
    struct Oracle: Decodable { var calls: [String: Int]; var edges: [String: Int] }
    let oracle = try JSONDecoder().decode(Oracle.self, from: Data(contentsOf: fixturesDirectory.appendingPathComponent("dogbook_corpus.red.json")))
    return (oracle.calls, oracle.edges, spans)
}

extension SpanMetricsHub.Totals {
    /// Calls keyed as the oracle keys them (`service|name|kind|status`).
    var callsByKey: [String: Int] {
        Dictionary(callsByLabels.map { ($0.key.joined(separator: "|"), Int($0.value)) }, uniquingKeysWith: +)
    }
}

@Suite(.timeLimit(.minutes(10))) struct SpanMetricsEndToEndTests {
    /// RED counts equal the SDK's spans per (service, span name, kind, status) exactly, and the paired
    /// edges equal the SDK's parent/child client→server pairs — whether the rules keep a few traces or none.
    @Test(arguments: [
        ("errors-only", "decision_wait: 300ms\npolicies: [{name: errors, type: status_code, status_code: {status_codes: [ERROR]}}]"),
        ("keep-none", "decision_wait: 300ms\npolicies: [{name: none, type: probabilistic, probabilistic: {sampling_percentage: 0}}]"),
    ])
    func redCountsEqualTheSDKSpansWhateverTheRulesKeep(name: String, rules: String) throws {
        let cluster = try KafkaMockCluster(topics: [("spans", 3)], logger: quietLogger)
        let oracle = try produceSDKCorpus(to: "spans", on: cluster)
        var configuration = EngineConfiguration(brokers: cluster.bootstrapServers)
        configuration.topics = ["spans"]
        configuration.rulesPath = try writeRules(rules)
        configuration.exitOnEOF = true
        configuration.shards = 2
        let engine = try Engine(configuration: configuration, kept: KeptTraces(), logger: quietLogger)
        let summary = engine.run()
        #expect(summary.spans == oracle.spans)
        #expect(summary.tracesKept + summary.tracesDropped == 100)
        if name == "keep-none" { #expect(summary.tracesKept == 0) } else { #expect(summary.tracesKept > 0 && summary.tracesKept < 100) }

        let totals = engine.sampling!.spanMetrics.totals()
        #expect(totals.callsByKey == oracle.calls)
        #expect(totals.calls.reduce(0, +) == UInt64(oracle.spans))
        let pairedEdges = Dictionary(
            totals.requestsByEdge.filter { ["", "messaging_system"].contains($0.key[2]) }.map { ($0.key.joined(separator: "|"), Int($0.value)) },
            uniquingKeysWith: +)
        #expect(pairedEdges == oracle.edges)
        // Whole traces, each with its root.
        #expect(totals.tracesWithoutRoot == 0)
    }

    /// A real Prometheus scrapes the engine (OpenMetrics, exemplar storage on) and answers the
    /// questions the team asks: rate per service, p99 per service, the service-graph edges — and every
    /// exemplar it stored opens a trace in tailgate's store.
    @Test func prometheusScrapesAndAnswersPromQL() throws {
        let prometheusBinary = ["/usr/bin/prometheus", "/usr/local/bin/prometheus"].first { FileManager.default.isExecutableFile(atPath: $0) }
        try #require(prometheusBinary != nil, "prometheus not installed (apt-get install prometheus)")
        let cluster = try KafkaMockCluster(topics: [("spans", 2)], logger: quietLogger)
        let data = FileManager.default.temporaryDirectory.appendingPathComponent("tailgate-prom-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: data) }

        var configuration = EngineConfiguration(brokers: cluster.bootstrapServers)
        configuration.topics = ["spans"]
        configuration.rulesPath = try writeRules("""
            decision_wait: 500ms
            policies:
              - {name: errors, type: status_code, status_code: {status_codes: [ERROR]}}
              - {name: baseline, type: probabilistic, probabilistic: {sampling_percentage: 20}}
            """)
        configuration.dataDirectory = data.appendingPathComponent("store").path
        configuration.httpAddress = "127.0.0.1:0"
        configuration.statusInterval = .seconds(60)
        let running = RunningEngine(try Engine(configuration: configuration, logger: quietLogger))
        let engine = running.engine
        defer { running.stop(timeout: .seconds(30)) }
        #expect(waitUntil(.seconds(30)) { engine.boundHTTPAddress != nil })
        let enginePort = try #require(engine.boundHTTPAddress?.split(separator: ":").last.flatMap { UInt16($0) })

        // Traffic keeps flowing while Prometheus scrapes, so rates are not zero.
        var options = TrafficProducer.Options()
        options.topic = "spans"
        options.traces = 0
        options.rate = 100
        options.errorRate = 0.1
        let traffic = try BackgroundTraffic(on: cluster, options)
        defer { traffic.stop(timeout: .seconds(10)) }
        let trafficOptions = options

        let prometheusPort = try freePort()
        try FileManager.default.createDirectory(at: data, withIntermediateDirectories: true)
        let config = data.appendingPathComponent("prometheus.yml")
        try """
            global: {scrape_interval: 1s, evaluation_interval: 1s}
            scrape_configs:
              - job_name: tailgate
                static_configs: [{targets: ['127.0.0.1:\(enginePort)']}]
            """.write(to: config, atomically: true, encoding: .utf8)
        let prometheus = Process()
        prometheus.executableURL = URL(fileURLWithPath: prometheusBinary!)
        prometheus.arguments = [
            "--config.file=\(config.path)", "--storage.tsdb.path=\(data.appendingPathComponent("tsdb").path)",
            "--web.listen-address=127.0.0.1:\(prometheusPort)", "--enable-feature=exemplar-storage",
        ]
        prometheus.standardOutput = FileHandle.nullDevice
        prometheus.standardError = FileHandle.nullDevice
        try prometheus.run()
        defer {
            prometheus.terminate()
            prometheus.waitUntilExit()
        }
        func query(_ promql: String) -> [(labels: [String: String], value: Double)] {
            guard let body = try? prometheusGET(port: prometheusPort, "/api/v1/query?query=\(percentEncode(promql))"),
                let json = try? JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any],
                let result = (json["data"] as? [String: Any])?["result"] as? [[String: Any]]
            else { return [] }
            return result.compactMap { item in
                guard let metric = item["metric"] as? [String: String], let value = item["value"] as? [Any],
                    let text = value.last as? String, let number = Double(text)
                else { return nil }
                return (metric, number)
            }
        }

        // The scrape works (an OpenMetrics parse error would make up 0).
        #expect(waitUntil(.seconds(60)) { query("up{job=\"tailgate\"}").first?.value == 1 })
        let rates = Mutex<[(labels: [String: String], value: Double)]>([])
        #expect(waitUntil(.seconds(60)) {
            let result = query("sum by (service) (rate(traces_spanmetrics_calls_total[30s]))")
            rates.withLock { $0 = result }
            return result.count >= 5 && result.allSatisfy { $0.value > 0 }
        }, "rate per service: \(rates.withLock { $0 })")
        let services = Set(rates.withLock { $0 }.compactMap { $0.labels["service"] })
        #expect(services.isSuperset(of: ["frontend", "api-gateway"]))

        let p99 = query("histogram_quantile(0.99, sum by (service, le) (rate(traces_spanmetrics_latency_bucket[30s])))")
        #expect(p99.count >= 5)
        #expect(p99.allSatisfy { $0.value > 0 && $0.value <= 16.384 }, "\(p99)")

        // The edges, against the generator's traces paired by hand (a CLIENT span's SERVER child):
        // every edge its first 300 traces make, and none it never makes (over 20 000).
        func generatedEdges(traces count: Int) throws -> Set<String> {
            var generator = DogBookTraffic(seed: trafficOptions.seed, errorRate: trafficOptions.errorRate, slowRate: trafficOptions.slowRate)
            var edges = Set<String>()
            for _ in 0..<count {
                var batch = SpanBatch()
                _ = try SpanDecoder(encoding: .otlpProto).decode(DogBookTraffic.protobuf([generator.nextTrace(startUnixNano: 1)]), into: &batch)
                var byID: [SpanID: (service: String, kind: SpanKind)] = [:]
                for span in batch.spans { byID[span.spanID] = (batch.string(batch.serviceName(of: span)), span.kind) }
                for span in batch.spans where span.kind == .server {
                    guard let parent = byID[span.parentSpanID], parent.kind == .client else { continue }
                    edges.insert("\(parent.service)→\(batch.string(batch.serviceName(of: span)))")
                }
            }
            return edges
        }
        let early = try generatedEdges(traces: 300), possible = try generatedEdges(traces: 20_000)
        let edges = Set(query("sum by (client, server) (traces_service_graph_request_total{connection_type=\"\"})")
            .map { "\($0.labels["client"] ?? "")→\($0.labels["server"] ?? "")" })
        #expect(edges.isSuperset(of: early), "missing edges: \(early.subtracting(edges))")
        #expect(edges.isSubset(of: possible), "edges the generator never makes: \(edges.subtracting(possible))")
        #expect(early.contains("frontend→api-gateway") && early.count >= 5)

        // The whole exposition (span metrics, self-metrics, sink metrics) passes promtool's checks.
        let exposition = try rawHTTP(port: enginePort, "GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
        let body = String(exposition[exposition.range(of: "\r\n\r\n")!.upperBound...])
        #expect(body.contains("tailgate_sink_traces_total{sink=\"store\"}"))
        #expect(body.contains("tailgate_decision_latency_seconds_count "))
        let lint = try promtoolCheckMetrics(body)
        #expect(lint.status == 0 && lint.report.isEmpty, "promtool: \(lint.report)")

        // Every exemplar Prometheus stored names a trace tailgate kept — and stored.
        let now = Date().timeIntervalSince1970
        let exemplarBody = try prometheusGET(
            port: prometheusPort,
            "/api/v1/query_exemplars?query=\(percentEncode("traces_spanmetrics_latency_bucket"))&start=\(Int(now) - 600)&end=\(Int(now) + 60)")
        let exemplarJSON = try #require(try JSONSerialization.jsonObject(with: Data(exemplarBody.utf8)) as? [String: Any])
        let groups = exemplarJSON["data"] as? [[String: Any]] ?? []
        let traceIDs = Set(groups.flatMap { ($0["exemplars"] as? [[String: Any]]) ?? [] }.compactMap { ($0["labels"] as? [String: String])?["trace_id"] })
        #expect(traceIDs.count > 0, "Prometheus stored no exemplars: \(exemplarBody.prefix(300))")
        for hex in traceIDs {
            let id = try #require(TraceID(hex: hex))
            #expect(waitUntil(.seconds(10)) { (try? engine.store?.trace(id)) != nil }, "exemplar trace \(hex) is not in the store")
        }
    }
}

func freePort() throws -> UInt16 {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = 0
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer -> Bool in
            bind(fd, pointer, length) == 0 && getsockname(fd, pointer, &length) == 0
        }
    }
    guard bound else { throw POSIXError(.EADDRINUSE) }
    return UInt16(bigEndian: address.sin_port)
}

/// GET over HTTP/1.0 (no chunked bodies), returning the body.
func prometheusGET(port: UInt16, _ target: String) throws -> String {
    let response = try rawHTTP(port: port, "GET \(target) HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
    guard let split = response.range(of: "\r\n\r\n") else { return "" }
    return String(response[split.upperBound...])
}

func percentEncode(_ text: String) -> String {
    var allowed = CharacterSet.alphanumerics
    allowed.insert(charactersIn: "-._~")
    return text.addingPercentEncoding(withAllowedCharacters: allowed) ?? text
}

