import HTTP
import Ingest
import Route
import Sampling
import Sinks
import Engine
import Foundation
import Kafka
import OTLP
import SpanMetrics
import Storage
import Testing
import TestSupport
import Traffic

/// Tempo's search over the embedded store: DogBook traces stored as the engine stores them, searched
/// as Grafana searches; expected sets from the traffic generator's truth (its error and slow flags,
/// its root services).
@Suite struct SearchTests {
    final class StoreBackend: HTTPBackend, @unchecked Sendable {
        let store: TraceStore
        init(_ store: TraceStore) { self.store = store }
        func metricsText(format: MetricsFormat) -> String { "" }
        func readiness() -> (ready: Bool, reason: String) { (true, "") }
        func reloadRules() -> String? { nil }
        func storedTrace(_ id: TraceID) throws -> [UInt8]? { try store.trace(id) }
        func search(_ request: TraceSearchRequest) throws -> TraceSearchResponse? { try store.search(request) }
        func searchSummaries() throws -> [BlockSummary]? { try store.allSummaries() }
    }

    struct Truth {
        var error: Set<String> = []
        var slow: Set<String> = []
        var health: Set<String> = []
        var all: Set<String> = []
    }

    private func storedTraffic(_ directory: URL, traces: Int) throws -> (TraceStore, Truth) {
        let store = try TraceStore(directory: directory)
        var generator = DogBookTraffic(seed: 33, errorRate: 0.1, slowRate: 0.1)
        var truth = Truth()
        var block: [StoredTrace] = []
        let now = UInt64(Date().timeIntervalSince1970 * 1e9)
        for index in 0..<traces {
            let trace = generator.nextTrace(startUnixNano: now - UInt64(traces - index) * 10_000_000)
            let id = trace.traceID.hex
            truth.all.insert(id)
            if trace.isError { truth.error.insert(id) }
            if trace.isSlow { truth.slow.insert(id) }
            if trace.isHealthCheck { truth.health.insert(id) }
            block.append(StoredTrace(traceID: trace.traceID, policy: "test", request: DogBookTraffic.protobuf([trace])))
            if block.count == 50 {
                try store.write(block)
                block.removeAll()
            }
        }
        if !block.isEmpty { try store.write(block) }
        return (store, truth)
    }

    private func ids(_ body: String) throws -> Set<String> {
        let json = try #require(try JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any])
        let traces = try #require(json["traces"] as? [[String: Any]])
        return Set(traces.compactMap { $0["traceID"] as? String })
    }

    @Test func grafanasQueriesReturnExactlyTheExpectedTraces() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("tailgate-search-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let (store, truth) = try storedTraffic(directory, traces: 400)
        let routes = HTTPRoutes(backend: StoreBackend(store), adminToken: nil)
        let end = UInt64(Date().timeIntervalSince1970) + 60
        let start = end - 15 * 60 - 60
        func search(_ query: String, _ extra: String = "") throws -> (Int, String) {
            let encoded = query.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? query
            let response = routes.respond(to: HTTPRequest(method: "GET", path: "/api/search?q=\(encoded)&start=\(start)&end=\(end)&limit=1000\(extra)"))
            return (response.status, response.text)
        }
        let (status, errors) = try search("{ status = error }")
        #expect(status == 200)
        #expect(try ids(errors) == truth.error, "every error trace, and only those")
        // "slow": DogBook's slow traces take 2.5 s and more, the others well under 1.5 s.
        #expect(try ids(try search("{ traceDuration > 2s }").1) == truth.slow)
        #expect(try ids(try search("{ status = error } && { traceDuration > 2s }").1) == truth.error.intersection(truth.slow))
        #expect(try ids(try search("{ status = error } || { traceDuration > 2s }").1) == truth.error.union(truth.slow))
        // The same through Tempo's minDuration parameter.
        #expect(try ids(try search("{ status = error }", "&minDuration=2s").1) == truth.error.intersection(truth.slow))
        // Health checks are the only traces whose root is the api-gateway's.
        #expect(truth.health.count > 5)
        #expect(try ids(try search(#"{ rootName = "GET /healthz" }"#).1) == truth.health)
        #expect(try ids(try search(#"{ rootServiceName = "frontend" }"#).1) == truth.all.subtracting(truth.health))
        // Tags (logfmt), limit, and the response's shape.
        let tagged = routes.respond(to: HTTPRequest(method: "GET", path: "/api/search?tags=\("service.name=feed-service status.code=2".addingPercentEncoding(withAllowedCharacters: .alphanumerics)!)&limit=5&spss=2"))
        let json = try #require(try JSONSerialization.jsonObject(with: Data(tagged.text.utf8)) as? [String: Any])
        let traces = try #require(json["traces"] as? [[String: Any]])
        #expect(traces.count == 5)
        let first = try #require(traces.first)
        for key in ["traceID", "rootServiceName", "rootTraceName", "startTimeUnixNano", "durationMs", "spanSet", "spanSets"] {
            #expect(first[key] != nil, "\(key) in \(first.keys)")
        }
        let spanSet = try #require((first["spanSets"] as? [[String: Any]])?.first)
        #expect(((spanSet["spans"] as? [[String: Any]])?.count ?? 0) <= 2, "spss")
        #expect((spanSet["matched"] as? Int ?? 0) >= 1)
        let metrics = try #require(json["metrics"] as? [String: Any])
        #expect((metrics["inspectedTraces"] as? Int ?? 0) >= 5)
        let starts = traces.compactMap { ($0["startTimeUnixNano"] as? String).flatMap(UInt64.init) }
        #expect(starts == starts.sorted(by: >), "newest first")

        // The block summaries: a value no trace has skips every block unread; a root only the health
        // checks have skips the blocks without one.
        let absent = try store.search({ var r = TraceSearchRequest(query: try TraceQL.parse(#"{ span.http.route = "/no/such/route" }"#)); r.limit = 1000; return r }())
        #expect(absent.traces.isEmpty)
        #expect(absent.skippedBlocks >= 7 && absent.inspectedBlocks <= 1, "8 blocks, a 1% false positive at most: \(absent.skippedBlocks) skipped")
        let everything = try store.search({ var r = TraceSearchRequest(query: nil); r.limit = 1000; return r }())
        #expect(everything.traces.count == 400 && everything.skippedBlocks == 0)

        // Tags: names per scope, values per tag.
        let tagNames = routes.respond(to: HTTPRequest(method: "GET", path: "/api/search/tags")).text
        #expect(tagNames.contains("\"http.route\"") && tagNames.contains("\"service.name\""))
        let scoped = try #require(try JSONSerialization.jsonObject(with: Data(routes.respond(to: HTTPRequest(method: "GET", path: "/api/v2/search/tags")).text.utf8)) as? [String: Any])
        let scopes = try #require(scoped["scopes"] as? [[String: Any]])
        #expect(scopes.compactMap { $0["name"] as? String } == ["resource", "span", "intrinsic"])
        #expect((scopes[0]["tags"] as? [String])?.contains("service.name") == true)
        #expect((scopes[1]["tags"] as? [String])?.contains("http.route") == true)
        #expect((scopes[1]["tags"] as? [String])?.contains("service.name") == false, "service.name is a resource attribute")
        let services = routes.respond(to: HTTPRequest(method: "GET", path: "/api/search/tag/service.name/values")).text
        #expect(services == #"{"tagValues":["api-gateway","auth-service","feed-service","frontend","photo-service","user-service"]}"#)
        let typed = routes.respond(to: HTTPRequest(method: "GET", path: "/api/v2/search/tag/span.http.response.status_code/values")).text
        #expect(typed.contains(#"{"type":"int","value":"200"}"#))
        let statuses = routes.respond(to: HTTPRequest(method: "GET", path: "/api/v2/search/tag/status/values")).text
        #expect(statuses == #"{"tagValues":[{"type":"keyword","value":"error"},{"type":"keyword","value":"ok"},{"type":"keyword","value":"unset"}]}"#)

        // Bad input: 400 naming the problem.
        let bad = try search("{ status = error } | count() > 1")
        #expect(bad.0 == 400 && bad.1.contains("pipelines"))
        #expect(routes.respond(to: HTTPRequest(method: "GET", path: "/api/search?minDuration=soon")).status == 400)
    }

    /// The rest of what the README's HTTP API table promises for search, against the generator's
    /// truth: `maxDuration`, `=~`/`!~` evaluated (whole-value matches), `scope=`, `partial: true`
    /// when the time budget runs out, `404` without a store, and short trace ids zero-padded.
    @Test func maxDurationRegexesScopesBudgetAndShortIDs() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("tailgate-search-more-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let (store, truth) = try storedTraffic(directory, traces: 400)
        let routes = HTTPRoutes(backend: StoreBackend(store), adminToken: nil)
        let end = UInt64(Date().timeIntervalSince1970) + 60
        let start = end - 15 * 60 - 60
        func search(_ query: String, _ extra: String = "") throws -> Set<String> {
            let encoded = query.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? query
            let response = routes.respond(to: HTTPRequest(method: "GET", path: "/api/search?q=\(encoded)&start=\(start)&end=\(end)&limit=1000\(extra)"))
            try #require(response.status == 200, "\(query): \(response.status) \(response.text)")
            return try ids(response.text)
        }
        // DogBook's slow traces take 2.5 s and more, every other well under 1.5 s.
        #expect(try search("{ }", "&maxDuration=2s") == truth.all.subtracting(truth.slow))
        #expect(try search("{ }", "&minDuration=2s&maxDuration=1h") == truth.slow)
        // Regular expressions match the whole value.
        #expect(try search(#"{ rootName =~ "GET /heal.*" }"#) == truth.health)
        #expect(try search(#"{ rootName =~ "GET /heal" }"#).isEmpty, "a prefix alone is no whole-value match")
        #expect(try search(#"{ rootName !~ "GET /heal.*" }"#) == truth.all.subtracting(truth.health))

        // Tags by scope: only the scope asked for.
        for scope in ["span", "resource", "intrinsic"] {
            let text = routes.respond(to: HTTPRequest(method: "GET", path: "/api/v2/search/tags?scope=\(scope)")).text
            let json = try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
            let scopes = try #require(json["scopes"] as? [[String: Any]])
            #expect(scopes.compactMap { $0["name"] as? String } == [scope], "scope=\(scope): \(text.prefix(200))")
        }

        // The budget: none at all leaves the search partial, and says so.
        var request = TraceSearchRequest(query: nil)
        request.limit = 1000
        request.budget = .zero
        let partial = try store.search(request)
        #expect(partial.partial && partial.traces.count < 400)
        #expect(partial.json.contains(#""partial":true"#))

        // Without a store: 404 for search and tags.
        final class NoStore: HTTPBackend {
            func metricsText(format: MetricsFormat) -> String { "" }
            func readiness() -> (ready: Bool, reason: String) { (true, "") }
            func reloadRules() -> String? { nil }
            func storedTrace(_ id: TraceID) throws -> [UInt8]? { nil }
        }
        let bare = HTTPRoutes(backend: NoStore(), adminToken: nil)
        #expect(bare.respond(to: HTTPRequest(method: "GET", path: "/api/search?q=%7B%7D")).status == 404)
        #expect(bare.respond(to: HTTPRequest(method: "GET", path: "/api/search/tags")).status == 404)

        // A trace id with leading zeros, asked for without them (Tempo pads to 32 hex digits).
        let short = TraceID(high: 0, low: 0xABC_DEF0_1234)
        try store.write([StoredTrace(traceID: short, policy: "p", request: otlpTrace(short, spans: 1...2))])
        let found = routes.respond(to: HTTPRequest(method: "GET", path: "/api/v2/traces/abcdef01234"))
        #expect(found.status == 200, "\(found.status) \(found.text.prefix(200))")
        #expect(routes.respond(to: HTTPRequest(method: "GET", path: "/api/v2/traces/\(short.hex)")).text == found.text)
        #expect(routes.respond(to: HTTPRequest(method: "GET", path: "/api/v2/traces/abcdef01235")).status == 404)
        #expect(routes.respond(to: HTTPRequest(method: "GET", path: "/api/v2/traces/xyz")).status == 400)
    }

    /// End to end: DogBook traffic through the engine into the store, then the query Grafana's search
    /// builder writes for "feed-service, status error, duration > 1s, last 15 minutes". Expected: the
    /// stored traces with such a span, found by decoding each one (not through the query code).
    @Test func grafanasSearchOverWhatTheEngineStored() throws {
        let cluster = try KafkaMockCluster(topics: [("spans", 3)], logger: quietLogger)
        try produceTraffic(to: "spans", on: cluster, traces: 300, errorRate: 0.2, slowRate: 0.2, seed: 21)
        let data = FileManager.default.temporaryDirectory.appendingPathComponent("tailgate-search-e2e-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: data) }
        var configuration = EngineConfiguration(brokers: cluster.bootstrapServers)
        configuration.topics = ["spans"]
        configuration.rulesPath = try writeRules("decision_wait: 300ms\npolicies: [{name: all, type: always_sample}]")
        configuration.dataDirectory = data.path
        configuration.exitOnEOF = true
        let engine = try Engine(configuration: configuration, logger: quietLogger)
        let summary = engine.run()
        #expect(summary.tracesStored == 300)

        let store = try TraceStore(directory: data, readOnly: true)
        var traffic = DogBookTraffic(seed: 21, errorRate: 0.2, slowRate: 0.2)
        var expected = Set<String>()
        for _ in 0..<300 {
            let id = traffic.nextTrace(startUnixNano: 1).traceID
            let request = try #require(try store.trace(id, policyAttribute: false))
            var batch = SpanBatch()
            _ = try SpanDecoder(encoding: .otlpProto).decode(request, into: &batch)
            if batch.spans.contains(where: {
                batch.string(batch.serviceName(of: $0)) == "feed-service" && $0.statusCode == .error && $0.durationNanos > 1_000_000_000
            }) { expected.insert(id.hex) }
        }
        #expect(expected.count >= 3, "the traffic has such traces (\(expected.count))")
        let routes = HTTPRoutes(backend: engine, adminToken: nil)
        let now = UInt64(Date().timeIntervalSince1970)
        let query = #"{ resource.service.name = "feed-service" && status = error && duration > 1s }"#
        let path = "/api/search?q=\(query.addingPercentEncoding(withAllowedCharacters: .alphanumerics)!)&start=\(now - 900)&end=\(now + 60)&limit=1000&spss=3"
        let response = routes.respond(to: HTTPRequest(method: "GET", path: path))
        #expect(response.status == 200)
        #expect(try ids(response.text) == expected)
        print("search end to end: 300 DogBook traces stored by the engine; \(query) over the last 15 minutes: \(expected.count) traces, exactly the expected ones")
    }
}
