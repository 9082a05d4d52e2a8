import Foundation
@testable import HTTP
import OTLP
import SpanMetrics
import Storage
import Testing

/// The console's routes without a browser: its assets and their security headers, and the state
/// endpoint's reading of an OpenMetrics exposition written by hand.
@Suite struct ConsoleTests {
    struct Backend: HTTPBackend {
        var exposition: String
        var state = ConsoleState(role: "run", store: true)
        func metricsText(format: MetricsFormat) -> String { exposition }
        func readiness() -> (ready: Bool, reason: String) { (true, "") }
        func reloadRules() -> String? { nil }
        func storedTrace(_ id: TraceID) throws -> [UInt8]? { nil }
        func consoleState() -> ConsoleState { state }
    }

    static let exposition = #"""
        # HELP tailgate_spans_received_total Spans decoded from Kafka messages, before sampling.
        # TYPE tailgate_spans_received_total counter
        tailgate_spans_received_total 1234
        # TYPE tailgate_traces_kept_total counter
        tailgate_traces_kept_total{policy="errors"} 7
        tailgate_traces_kept_total{policy="we \"quote\", \\ and\nbreak"} 2
        # TYPE tailgate_decision_latency_seconds histogram
        tailgate_decision_latency_seconds_bucket{le="0.5"} 3
        tailgate_decision_latency_seconds_sum 1.5
        tailgate_buffer_bytes NaN
        traces_service_graph_request_total{client="frontend",server="api-gateway",connection_type=""} 40
        traces_spanmetrics_calls_total{service="frontend",span_name="GET /feed"} 99
        traces_spanmetrics_latency_bucket{service="frontend",span_name="GET /feed",span_kind="SPAN_KIND_SERVER",status_code="STATUS_CODE_ERROR",le="0.1"} 5 # {trace_id="00000000000000000000000000000abc",span_id="0000000000000001"} 0.042 1700000000.250
        traces_spanmetrics_latency_bucket{service="frontend",span_name="GET /feed",span_kind="SPAN_KIND_SERVER",status_code="STATUS_CODE_ERROR",le="0.5"} 6 # {trace_id="00000000000000000000000000000def",span_id="0000000000000002"} 0.3 1700000001.000
        traces_spanmetrics_latency_bucket{service="frontend",span_name="GET /feed",span_kind="SPAN_KIND_SERVER",status_code="STATUS_CODE_ERROR",le="+Inf"} 6 # {trace_id="00000000000000000000000000000abc",span_id="0000000000000003"} 0.040 1699999999.000
        # EOF
        """#

    @Test func theStateReadsTheSelfMetricsAndTheLatestExemplarOfEachTrace() throws {
        let parsed = Console.parse(Self.exposition)
        let samples = Dictionary(uniqueKeysWithValues: parsed.samples.map { ("\($0.name)\($0.labels.sorted { $0.key < $1.key })", $0.value) })
        #expect(parsed.samples.count == 5, "\(parsed.samples.map(\.name))")
        #expect(samples["tailgate_spans_received_total[]"] == 1234)
        #expect(parsed.samples.contains { $0.labels["policy"] == "we \"quote\", \\ and\nbreak" && $0.value == 2 }, "escapes undone")
        #expect(parsed.samples.contains { $0.name == "tailgate_decision_latency_seconds_sum" })
        #expect(!parsed.samples.contains { $0.name.hasSuffix("_bucket") || $0.name == "tailgate_buffer_bytes" || $0.name.hasPrefix("traces_spanmetrics") })
        #expect(parsed.samples.contains { $0.name == "traces_service_graph_request_total" && $0.labels["server"] == "api-gateway" && $0.value == 40 })
        // Two traces; abc's latest exemplar is the 0.1 bucket's (1700000000.25), and def is newer.
        #expect(parsed.exemplars.map(\.traceID) == ["00000000000000000000000000000def", "00000000000000000000000000000abc"])
        #expect(parsed.exemplars[1].seconds == 0.042 && parsed.exemplars[1].time == 1_700_000_000.25)
        #expect(parsed.exemplars[1].service == "frontend" && parsed.exemplars[1].spanName == "GET /feed" && parsed.exemplars[1].statusCode == "STATUS_CODE_ERROR")
    }

    @Test func theStateEndpointAnswersJSON() throws {
        var backend = Backend(exposition: Self.exposition)
        backend.state.rules = .init(path: "/etc/tailgate/rules.yaml", hash: "abc123", source: "policies: []\n", lastError: nil, policies: ["errors"])
        backend.state.sinks = [.init(name: "otlp", failing: "HTTP 503")]
        let routes = HTTPRoutes(backend: backend, adminToken: nil)
        let response = routes.respond(to: HTTPRequest(method: "GET", path: "/api/console/state"))
        #expect(response.status == 200 && response.contentType == "application/json")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(response.body)) as? [String: Any])
        let state = try #require(json["state"] as? [String: Any])
        #expect(state["store"] as? Bool == true && state["role"] as? String == "run")
        #expect((state["rules"] as? [String: Any])?["source"] as? String == "policies: []\n")
        #expect((state["sinks"] as? [[String: Any]])?.first?["failing"] as? String == "HTTP 503")
        #expect((json["samples"] as? [Any])?.count == 5)
        #expect((json["exemplars"] as? [Any])?.count == 2)
    }

    @Test func assetsComeWithAStrictContentSecurityPolicy() throws {
        let routes = HTTPRoutes(backend: Backend(exposition: ""), adminToken: nil)
        for (path, type) in [
            ("/", "text/html"), ("/index.html", "text/html"), ("/console/app.js", "text/javascript"), ("/console/app.css", "text/css"),
            ("/console/icon.svg", "image/svg+xml"), ("/favicon.ico", "image/svg+xml"),
        ] {
            let response = routes.respond(to: HTTPRequest(method: "GET", path: path))
            #expect(response.status == 200 && response.contentType.hasPrefix(type), "\(path): \(response.status) \(response.contentType)")
            let policy = try #require(response.header("Content-Security-Policy"), "\(path)")
            #expect(policy.contains("default-src 'none'") && policy.contains("script-src 'self'") && !policy.contains("unsafe"), "\(policy)")
            #expect(response.header("X-Content-Type-Options") == "nosniff")
            #expect(response.header("X-Frame-Options") == "DENY")
        }
        // The page loads its script and style from this origin; nothing inline, nothing elsewhere.
        let page = routes.respond(to: HTTPRequest(method: "GET", path: "/")).text
        #expect(page.contains("<script src=\"/console/app.js\" defer></script>"))
        #expect(!page.contains("<script>") && !page.contains("style=") && !page.contains("http://") && !page.contains("https://"))
        // The script never hands text to the HTML parser.
        let script = routes.respond(to: HTTPRequest(method: "GET", path: "/console/app.js")).text
        for sink in ["innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"] {
            #expect(!script.contains(sink), "app.js uses \(sink)")
        }
        #expect(routes.respond(to: HTTPRequest(method: "POST", path: "/")).status != 200, "read-only")
    }
}
