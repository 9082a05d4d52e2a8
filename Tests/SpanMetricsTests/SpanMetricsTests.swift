import Foundation
import OTLP
import SpanMetrics
import Testing
import TestSupport

/// A span for these tests: ids are small numbers, parent 0 means root.
struct Span {
    enum Value { case string(String), int(Int64), bool(Bool) }
    var id: UInt64
    var parent: UInt64 = 0
    var service: String
    var name: String
    var kind: SpanKind = .internal
    var status: StatusCode = .unset
    var durationMs: UInt64 = 10
    var attributes: [(String, Value)] = []
}

func write(_ writer: inout ProtoWriter, field: UInt32, _ key: String, _ value: Span.Value) {
    writer.writeNested(field) { kv in
        kv.writeStringField(1, key)
        kv.writeNested(2) { any in
            switch value {
            case .string(let s): any.writeStringField(1, s)
            case .bool(let b): any.writeVarintField(2, b ? 1 : 0)
            case .int(let i): any.writeVarintField(3, UInt64(bitPattern: i))
            }
        }
    }
}

/// Writes `span` as one `ResourceSpans` of `request` (its own resource, its service).
func writeResourceSpans(_ request: inout ProtoWriter, _ span: Span, traceID: TraceID) {
    let base: UInt64 = 1_764_000_000_000_000_000
    request.writeNested(1) { rs in
        rs.writeNested(1) { resource in write(&resource, field: 1, "service.name", .string(span.service)) }
        rs.writeNested(2) { ss in
            ss.writeNested(2) { s in
                s.writeBytesField(1, traceID.bytes)
                s.writeBytesField(2, SpanID(rawValue: span.id).bytes)
                if span.parent != 0 { s.writeBytesField(4, SpanID(rawValue: span.parent).bytes) }
                s.writeStringField(5, span.name)
                s.writeVarintField(6, UInt64(span.kind.rawValue))
                s.writeFixed64Field(7, base)
                s.writeFixed64Field(8, base + span.durationMs * 1_000_000)
                for (key, value) in span.attributes { write(&s, field: 9, key, value) }
                if span.status != .unset { s.writeNested(15) { $0.writeVarintField(3, UInt64(span.status.rawValue)) } }
            }
        }
    }
}

/// Encodes `spans` as OTLP (one message and one resource per span), decodes them as the engine
/// does and buffers them as the window does.
func trace(_ spans: [Span], id: TraceID = TraceID(high: 0xAB, low: 0xCD), selection: AttributeSelection) throws -> TraceData {
    var trace = TraceData(traceID: id)
    for (index, span) in spans.enumerated() {
        var request = ProtoWriter()
        writeResourceSpans(&request, span, traceID: id)
        var batch = SpanBatch(selection: selection)
        _ = try SpanDecoder(encoding: .otlpProto).decode(request.bytes, into: &batch)
        for record in batch.spans { trace.append(record, from: batch, batchGeneration: UInt64(index)) }
    }
    return trace
}

struct Fixture {
    var configuration: SpanMetricsConfiguration
    let selection: AttributeSelection
    let hub: SpanMetricsHub

    init(_ configuration: SpanMetricsConfiguration = SpanMetricsConfiguration(), shards: Int = 1) {
        self.configuration = configuration
        selection = AttributeSelection(keys: configuration.attributeKeys)
        hub = SpanMetricsHub(configuration: configuration, selection: selection, shards: shards)
    }

    func record(_ spans: [Span], id: TraceID = TraceID(high: 0xAB, low: 0xCD), kept: Bool = false, shard: Int = 0) throws {
        let data = try trace(spans, id: id, selection: selection)
        hub.withShard(shard) { $0.record(data, kept: kept, wallClockMillis: 1_764_000_000_123) }
    }

    func text(_ format: MetricsFormat = .prometheus) -> String {
        var out = MetricsWriter(format: format)
        hub.write(into: &out)
        out.finish()
        return out.text
    }
}

/// The DogBook feed request: browser → frontend → api-gateway (HTTP) → postgres, and a thumbnail job over Kafka.
let feed: [Span] = [
    Span(id: 1, service: "frontend", name: "GET /feed", kind: .server, durationMs: 180),
    Span(id: 2, parent: 1, service: "frontend", name: "GET", kind: .client, durationMs: 170,
         attributes: [("server.address", .string("api-gateway")), ("peer.service", .string("api-gateway"))]),
    Span(id: 3, parent: 2, service: "api-gateway", name: "GET /api/v1/feed", kind: .server, durationMs: 165),
    Span(id: 4, parent: 3, service: "api-gateway", name: "SELECT posts", kind: .client, status: .error, durationMs: 3,
         attributes: [("db.system", .string("postgresql")), ("server.address", .string("postgres.dogbook.svc"))]),
    Span(id: 5, parent: 3, service: "api-gateway", name: "thumbnails publish", kind: .producer, durationMs: 1),
    Span(id: 6, parent: 5, service: "thumbnailer", name: "thumbnails process", kind: .consumer, durationMs: 40),
    Span(id: 7, parent: 3, service: "api-gateway", name: "POST", kind: .client, durationMs: 30,
         attributes: [("peer.service", .string("payments-provider"))]),
]

@Suite struct SpanMetricsTests {
    @Test func redCountsEverySpanWithTempoLabelValues() throws {
        let fixture = Fixture()
        try fixture.record(feed)
        try fixture.record(feed, id: TraceID(high: 1, low: 2))
        let totals = fixture.hub.totals()
        #expect(totals.callsByLabels == [
            ["frontend", "GET /feed", "SPAN_KIND_SERVER", "STATUS_CODE_UNSET"]: 2,
            ["frontend", "GET", "SPAN_KIND_CLIENT", "STATUS_CODE_UNSET"]: 2,
            ["api-gateway", "GET /api/v1/feed", "SPAN_KIND_SERVER", "STATUS_CODE_UNSET"]: 2,
            ["api-gateway", "SELECT posts", "SPAN_KIND_CLIENT", "STATUS_CODE_ERROR"]: 2,
            ["api-gateway", "thumbnails publish", "SPAN_KIND_PRODUCER", "STATUS_CODE_UNSET"]: 2,
            ["thumbnailer", "thumbnails process", "SPAN_KIND_CONSUMER", "STATUS_CODE_UNSET"]: 2,
            ["api-gateway", "POST", "SPAN_KIND_CLIENT", "STATUS_CODE_UNSET"]: 2,
        ])
        let text = fixture.text()
        // 180 ms lands in le=0.256 (0.002 × 2^7), not in le=0.128.
        #expect(text.contains(#"traces_spanmetrics_latency_bucket{service="frontend",span_name="GET /feed",span_kind="SPAN_KIND_SERVER",status_code="STATUS_CODE_UNSET",le="0.128"} 0"#))
        #expect(text.contains(#"traces_spanmetrics_latency_bucket{service="frontend",span_name="GET /feed",span_kind="SPAN_KIND_SERVER",status_code="STATUS_CODE_UNSET",le="0.256"} 2"#))
        #expect(text.contains(#"traces_spanmetrics_latency_bucket{service="frontend",span_name="GET /feed",span_kind="SPAN_KIND_SERVER",status_code="STATUS_CODE_UNSET",le="+Inf"} 2"#))
        #expect(text.contains(#"traces_spanmetrics_latency_sum{service="frontend",span_name="GET /feed",span_kind="SPAN_KIND_SERVER",status_code="STATUS_CODE_UNSET"} 0.36"#))
        #expect(text.contains(#"traces_spanmetrics_latency_count{service="frontend",span_name="GET /feed",span_kind="SPAN_KIND_SERVER",status_code="STATUS_CODE_UNSET"} 2"#))
        // Size: the encoded span bytes, summed. The root span, by hand: trace id 1+1+16, span id
        // 1+1+8, name "GET /feed" 1+1+9, kind 1+1, start and end 1+8 each = 59 bytes; twice.
        let frontendRootBytes = 59 * 2
        #expect(text.contains(#"traces_spanmetrics_size_total{service="frontend",span_name="GET /feed",span_kind="SPAN_KIND_SERVER",status_code="STATUS_CODE_UNSET"} \#(frontendRootBytes)"#))
        // Default buckets are Tempo's: 14 bounds from 2 ms to 16.384 s, then +Inf.
        #expect(SpanMetricsConfiguration.defaultLatencyBuckets.count == 14)
        #expect(SpanMetricsConfiguration.defaultLatencyBuckets.last == 16.384)
    }

    @Test func serviceGraphPairsWithinTheTraceAndNamesVirtualAndDatabaseNodes() throws {
        let fixture = Fixture()
        try fixture.record(feed)
        let edges = fixture.hub.totals().requestsByEdge
        #expect(edges == [
            ["user", "frontend", "virtual_node"]: 1,
            ["frontend", "api-gateway", ""]: 1,
            ["api-gateway", "postgres.dogbook.svc", "database"]: 1,
            ["api-gateway", "thumbnailer", "messaging_system"]: 1,
            ["api-gateway", "payments-provider", "virtual_node"]: 1,
        ])
        let text = fixture.text()
        #expect(text.contains(#"traces_service_graph_request_failed_total{client="api-gateway",server="postgres.dogbook.svc",connection_type="database"} 1"#))
        #expect(text.contains(#"traces_service_graph_request_failed_total{client="frontend",server="api-gateway",connection_type=""} 0"#))
        // Both sides' durations: client 170 ms, server 165 ms.
        #expect(text.contains(#"traces_service_graph_request_client_seconds_sum{client="frontend",server="api-gateway",connection_type=""} 0.17"#))
        #expect(text.contains(#"traces_service_graph_request_server_seconds_sum{client="frontend",server="api-gateway",connection_type=""} 0.165"#))
        // A database edge has only a client side.
        #expect(text.contains(#"traces_service_graph_request_server_seconds_count{client="api-gateway",server="postgres.dogbook.svc",connection_type="database"} 0"#))
        #expect(text.contains(#"traces_service_graph_request_client_seconds_count{client="api-gateway",server="postgres.dogbook.svc",connection_type="database"} 1"#))
        // A whole trace, root present, nothing orphaned, and no broken propagation.
        #expect(text.contains("tailgate_traces_incomplete_total{reason=\"no_root\"} 0\n"))
        #expect(text.contains("tailgate_traces_incomplete_total{reason=\"orphan_spans\"} 0\n"))
        #expect(!text.contains("tailgate_broken_propagation_total{"))
    }

    /// Parents are found by scanning a small trace and through a table in a large one (more than 32
    /// spans): both pair the same calls. A fan-out of n calls from the frontend to the feed service
    /// (root, then a client and a server span per call) is n direct edges, and an orphan (a parent
    /// not in the trace) is no edge.
    @Test(arguments: [5, 40])
    func fanOutPairsEveryCallAtAnySize(calls: Int) throws {
        let fixture = Fixture()
        var spans = [Span(id: 1, service: "frontend", name: "GET /feed", kind: .server)]
        for call in 0..<calls {
            let client = UInt64(100 + 2 * call)
            spans.append(Span(id: client, parent: 1, service: "frontend", name: "GET", kind: .client))
            spans.append(Span(id: client + 1, parent: client, service: "feed-service", name: "GET /api/feed", kind: .server))
        }
        spans.append(Span(id: 9_999, parent: 8_888, service: "feed-service", name: "GET /api/feed", kind: .server))
        try fixture.record(spans)
        #expect(fixture.hub.totals().requestsByEdge == [
            ["user", "frontend", "virtual_node"]: 1,
            ["frontend", "feed-service", ""]: UInt64(calls),
        ])
        #expect(fixture.hub.totals().tracesWithOrphans == 1)
    }

    @Test func brokenPropagationAndIncompleteTraces() throws {
        let fixture = Fixture()
        try fixture.record(feed)  // api-gateway is now a known service
        // frontend calls api-gateway but the gateway did not continue the trace: its spans start a new one.
        try fixture.record([
            Span(id: 1, service: "frontend", name: "GET /profile", kind: .server),
            Span(id: 2, parent: 1, service: "frontend", name: "GET", kind: .client, attributes: [("server.address", .string("api-gateway"))]),
        ], id: TraceID(high: 2, low: 2))
        try fixture.record([Span(id: 9, service: "api-gateway", name: "GET /api/v1/profile", kind: .server)], id: TraceID(high: 3, low: 3))
        // A trace whose root never arrived, and one with a root and an orphan.
        try fixture.record([Span(id: 5, parent: 4, service: "api-gateway", name: "x")], id: TraceID(high: 4, low: 4))
        try fixture.record([
            Span(id: 1, service: "frontend", name: "GET /a", kind: .server), Span(id: 5, parent: 77, service: "frontend", name: "y"),
        ], id: TraceID(high: 5, low: 5))
        let text = fixture.text()
        #expect(text.contains("tailgate_broken_propagation_total{client=\"frontend\",server=\"api-gateway\"} 1\n"))
        #expect(text.contains("tailgate_traces_incomplete_total{reason=\"no_root\"} 1\n"))
        #expect(text.contains("tailgate_traces_incomplete_total{reason=\"orphan_spans\"} 1\n"))
        // An external peer (never seen as a service) is a virtual node, not a break.
        #expect(!text.contains("server=\"payments-provider\"} 1\n"))
    }

    @Test func exemplarsComeOnlyFromKeptTraces() throws {
        let fixture = Fixture()
        let dropped = TraceID(high: 0xD, low: 0xD)
        let kept = TraceID(high: 0x4B, low: 0x4B)
        try fixture.record(feed, id: dropped, kept: false)
        var text = fixture.text(.openMetrics)
        #expect(!text.contains("trace_id="))
        try fixture.record(feed, id: kept, kept: true)
        try fixture.record(feed, id: dropped, kept: false)
        text = fixture.text(.openMetrics)
        #expect(text.contains(#"traces_spanmetrics_latency_bucket{service="frontend",span_name="GET /feed",span_kind="SPAN_KIND_SERVER",status_code="STATUS_CODE_UNSET",le="0.256"} 3 # {trace_id="\#(kept.hex)",span_id="0000000000000001"} 0.18 1764000000.123"#))
        #expect(!text.contains(dropped.hex))
        #expect(text.contains(#"traces_service_graph_request_server_seconds_bucket{client="frontend",server="api-gateway",connection_type="",le="0.256"} 3 # {trace_id="\#(kept.hex)""#))
        // OpenMetrics: counter families without _total, samples with it, and # EOF at the end.
        #expect(text.contains("# TYPE traces_spanmetrics_calls counter\n"))
        #expect(text.contains("traces_spanmetrics_calls_total{"))
        #expect(text.hasSuffix("# EOF\n"))
        // Prometheus text never carries exemplars.
        #expect(!fixture.text(.prometheus).contains("trace_id"))
    }

    @Test func seriesLimitFoldsIntoOverflowAcrossShards() throws {
        let fixture = Fixture(SpanMetricsConfiguration(maxSeriesPerMetric: 3), shards: 2)
        for (index, name) in ["a", "b", "c", "d", "e"].enumerated() {
            try fixture.record([Span(id: 1, service: "svc", name: name)], id: TraceID(high: 9, low: UInt64(index)), shard: index % 2)
        }
        let totals = fixture.hub.totals()
        let calls = totals.callsByLabels
        #expect(calls.count == 4)
        #expect(calls[Array(repeating: "__overflow__", count: 4)] == 2)
        #expect(calls.values.reduce(0, +) == 5)  // nothing lost, only folded
        let text = fixture.text()
        #expect(text.contains("tailgate_metrics_series{metric=\"traces_spanmetrics\"} 4\n"))
        #expect(text.contains("tailgate_metrics_series_overflow_total{metric=\"traces_spanmetrics\"} 2\n"))
    }

    @Test func spanNameRewritesAndDimensions() throws {
        var configuration = SpanMetricsConfiguration(
            dimensions: ["http.response.status_code", "deployment.environment"],
            spanNameRewrites: [try SpanNameRewrite(parsing: "/users/[0-9]+=>/users/{id}")])
        configuration.latencyBuckets = [0.05, 0.5]
        try configuration.validate()
        let fixture = Fixture(configuration)
        for user in [17, 4242] {
            try fixture.record([
                Span(id: 1, service: "profile", name: "GET /users/\(user)", kind: .server,
                     attributes: [("http.response.status_code", .int(200)), ("deployment.environment", .string("prod"))]),
            ], id: TraceID(high: 7, low: UInt64(user)))
        }
        let text = fixture.text()
        #expect(text.contains(#"traces_spanmetrics_calls_total{service="profile",span_name="GET /users/{id}",span_kind="SPAN_KIND_SERVER",status_code="STATUS_CODE_UNSET",http_response_status_code="200",deployment_environment="prod"} 2"#))
        #expect(text.contains(#"deployment_environment="prod",le="0.05"} 2"#))
        #expect(!text.contains("/users/17"))
    }

    @Test func lateSpansCountOnArrival() throws {
        let fixture = Fixture()
        var request = ProtoWriter()
        request.writeNested(1) { rs in
            rs.writeNested(1) { write(&$0, field: 1, "service.name", .string("api-gateway")) }
            rs.writeNested(2) { ss in
                ss.writeNested(2) { s in
                    s.writeBytesField(1, TraceID(high: 1, low: 1).bytes)
                    s.writeBytesField(2, SpanID(rawValue: 8).bytes)
                    s.writeBytesField(4, SpanID(rawValue: 3).bytes)
                    s.writeStringField(5, "cache get")
                    s.writeVarintField(6, 3)
                    s.writeFixed64Field(7, 1_000_000_000)
                    s.writeFixed64Field(8, 1_004_000_000)
                }
            }
        }
        var batch = SpanBatch(selection: fixture.selection)
        _ = try SpanDecoder(encoding: .otlpProto).decode(request.bytes, into: &batch)
        fixture.hub.withShard(0) { $0.recordLate(batch.spans[0], from: batch, kept: true, wallClockMillis: 5) }
        #expect(fixture.hub.totals().callsByLabels == [["api-gateway", "cache get", "SPAN_KIND_CLIENT", "STATUS_CODE_UNSET"]: 1])
    }

    @Test func configurationErrorsNameTheSetting() {
        #expect(throws: SpanMetricsConfigurationError.self) { try SpanMetricsConfiguration(latencyBuckets: [0.1, 0.05]).validate() }
        #expect(throws: SpanMetricsConfigurationError.self) { try SpanMetricsConfiguration(latencyBuckets: []).validate() }
        #expect(throws: SpanMetricsConfigurationError.self) { try SpanMetricsConfiguration(dimensions: ["span.name", "span_name"]).validate() }
        #expect(throws: SpanMetricsConfigurationError.self) { try SpanMetricsConfiguration(dimensions: ["service"]).validate() }
        #expect(throws: SpanMetricsConfigurationError.self) { try SpanNameRewrite(parsing: "no-arrow") }
        #expect(throws: SpanMetricsConfigurationError.self) {
            try SpanMetricsConfiguration(spanNameRewrites: [SpanNameRewrite(pattern: "([", replacement: "")]).validate()
        }
        #expect(SpanMetricsConfiguration.labelName(forAttribute: "http.route") == "http_route")
        #expect(SpanMetricsConfiguration.labelName(forAttribute: "9lives") == "_9lives")
    }

    /// The exposition is valid for Prometheus's own checker (Debian's `prometheus` package; CI installs it).
    @Test func promtoolAcceptsTheExposition() throws {
        let fixture = Fixture(SpanMetricsConfiguration(dimensions: ["peer.service"]))
        try fixture.record(feed, kept: true)
        try fixture.record([Span(id: 1, service: "we\"ird\\svc", name: "line\nbreak")], id: TraceID(high: 3, low: 3))
        let (status, report) = try promtoolCheckMetrics(fixture.text())
        #expect(status == 0, "\(report)")
        #expect(report.isEmpty, "promtool lint: \(report)")
    }
}
