import OTLP
@testable import SpanMetrics
import Testing

/// Span metrics find a span's series by a 32-bit hash of its name (with its service, kind and
/// status), confirmed against the name's bytes: two names that share the hash are two series.
@Suite struct SpanNameHashTests {
    /// Two route names whose hashes agree in the 32 bits the lookup packs, found by search.
    static func collidingNames() -> (String, String) {
        var seen: [UInt32: String] = [:]
        var index = 0
        while true {
            let name = "GET /dogs/\(index)"
            let hash = UInt32(truncatingIfNeeded: Array(name.utf8).withUnsafeBytes { hashBytes($0) })
            if let other = seen[hash] { return (other, name) }
            seen[hash] = name
            index += 1
        }
    }

    @Test func namesSharingTheHashCountApart() throws {
        let (first, second) = Self.collidingNames()
        let fixture = Fixture()
        // First seen: `first`, three times; then `second`, twice, which finds `first`'s entry.
        try fixture.record([
            Span(id: 1, service: "api-gateway", name: first, kind: .server),
            Span(id: 2, parent: 1, service: "api-gateway", name: first, kind: .server),
        ])
        try fixture.record([
            Span(id: 1, service: "api-gateway", name: second, kind: .server),
            Span(id: 2, parent: 1, service: "api-gateway", name: first, kind: .server),
            Span(id: 3, parent: 1, service: "api-gateway", name: second, kind: .server),
        ], id: TraceID(high: 1, low: 2))
        #expect(fixture.hub.totals().callsByLabels == [
            ["api-gateway", first, "SPAN_KIND_SERVER", "STATUS_CODE_UNSET"]: 3,
            ["api-gateway", second, "SPAN_KIND_SERVER", "STATUS_CODE_UNSET"]: 2,
        ])
    }

    /// One name under other services, kinds and statuses is other series (each is in the packed key).
    @Test func serviceKindAndStatusStillTellSeriesApart() throws {
        let fixture = Fixture()
        try fixture.record([
            Span(id: 1, service: "frontend", name: "GET /feed", kind: .server),
            Span(id: 2, parent: 1, service: "feed-service", name: "GET /feed", kind: .server),
            Span(id: 3, parent: 1, service: "frontend", name: "GET /feed", kind: .client),
            Span(id: 4, parent: 1, service: "frontend", name: "GET /feed", kind: .server, status: .error),
            Span(id: 5, parent: 1, service: "frontend", name: "GET /feed", kind: .server),
            Span(id: 6, parent: 1, service: "frontend", name: "", kind: .internal),
            Span(id: 7, parent: 1, service: "frontend", name: "", kind: .internal),
        ])
        #expect(fixture.hub.totals().callsByLabels == [
            ["frontend", "GET /feed", "SPAN_KIND_SERVER", "STATUS_CODE_UNSET"]: 2,
            ["feed-service", "GET /feed", "SPAN_KIND_SERVER", "STATUS_CODE_UNSET"]: 1,
            ["frontend", "GET /feed", "SPAN_KIND_CLIENT", "STATUS_CODE_UNSET"]: 1,
            ["frontend", "GET /feed", "SPAN_KIND_SERVER", "STATUS_CODE_ERROR"]: 1,
            ["frontend", "", "SPAN_KIND_INTERNAL", "STATUS_CODE_UNSET"]: 2,
        ])
    }
}

/// A span's series found on arrival (from the batch, kept with the buffered span) must be the one
/// the decision would find from the trace.
@Suite struct SeriesOnArrivalTests {
    /// Encodes `spans` in one message, one resource per span, in order.
    static func message(_ spans: [Span], traceID: TraceID) -> [UInt8] {
        var request = ProtoWriter()
        for span in spans { writeResourceSpans(&request, span, traceID: traceID) }
        return request.bytes
    }

    /// Buffers one message's spans as the shard does: each span's series found on arrival first.
    static func recordOnArrival(_ fixture: Fixture, _ spans: [Span], traceID: TraceID, generation: UInt64) throws -> [Int32] {
        var batch = SpanBatch(selection: fixture.selection)
        _ = try SpanDecoder(encoding: .otlpProto).decode(message(spans, traceID: traceID), into: &batch)
        var trace = TraceData(traceID: traceID)
        var shared = SharedEnvelopes()
        var found: [Int32] = []
        fixture.hub.withShard(0) { metrics in
            for record in batch.spans {
                let series = metrics.seriesOnArrival(record, from: batch, batchGeneration: generation)
                found.append(series)
                trace.append(record, from: batch, batchGeneration: generation, sharing: &shared, series: series)
            }
            metrics.record(trace, kept: false, wallClockMillis: 1_764_000_000_123)
        }
        return found
    }

    @Test func theFeedCountsAsAtTheDecision() throws {
        let fixture = Fixture()
        let found = try Self.recordOnArrival(fixture, feed, traceID: TraceID(high: 7, low: 7), generation: 1)
        #expect(found.allSatisfy { $0 >= 0 })
        // Each of the feed's spans once, under its own labels (the feed has no two alike).
        let expected = Dictionary(uniqueKeysWithValues: feed.map { ([$0.service, $0.name, $0.kind.protoName, $0.status.protoName], UInt64(1)) })
        #expect(fixture.hub.totals().callsByLabels == expected)
    }

    /// Sixty-five services in one message: the first and the sixty-fifth resource share a slot of
    /// the arrival memo (64 slots), and each span must still count under its own service.
    @Test func manyServicesInOneMessageKeepTheirOwnNames() throws {
        let fixture = Fixture()
        func spans(_ prefix: String) -> [Span] {
            (0..<65).map { Span(id: UInt64($0 + 1), service: "\(prefix)-\($0)", name: "GET /dogs", kind: .server) }
        }
        _ = try Self.recordOnArrival(fixture, spans("service"), traceID: TraceID(high: 8, low: 8), generation: 1)
        // Other services as the next poll: each memo slot holds a service of the poll before under
        // the same first-copy index.
        _ = try Self.recordOnArrival(fixture, spans("other"), traceID: TraceID(high: 9, low: 9), generation: 2)
        var expected: [[String]: UInt64] = [:]
        for prefix in ["service", "other"] {
            for index in 0..<65 { expected[["\(prefix)-\(index)", "GET /dogs", "SPAN_KIND_SERVER", "STATUS_CODE_UNSET"]] = 1 }
        }
        #expect(fixture.hub.totals().callsByLabels == expected)
    }

    /// A burst of new names before any decision (ids in span names) keeps the caches of label
    /// combinations within their bound (4 × the series limit + 1 024), and the series found before a
    /// cache was emptied still count right: the first 100 names get their own, the rest fold into the
    /// overflow series.
    @Test func aBurstOfNewNamesBeforeAnyDecisionStaysBounded() throws {
        let fixture = Fixture(SpanMetricsConfiguration(maxSeriesPerMetric: 100))
        let bound = 100 * 4 + 1_024
        let spans = (0..<3_000).map { Span(id: UInt64($0 + 1), service: "feed-service", name: "GET /dogs/\($0)", kind: .server) }
        let traceID = TraceID(high: 4, low: 4)
        var batch = SpanBatch(selection: fixture.selection)
        _ = try SpanDecoder(encoding: .otlpProto).decode(Self.message(spans, traceID: traceID), into: &batch)
        var trace = TraceData(traceID: traceID)
        var shared = SharedEnvelopes()
        var largest = 0
        fixture.hub.withShard(0) { metrics in
            for record in batch.spans {
                let series = metrics.seriesOnArrival(record, from: batch, batchGeneration: 1)
                largest = max(largest, metrics.cachedCombinations)
                trace.append(record, from: batch, batchGeneration: 1, sharing: &shared, series: series)
            }
            metrics.record(trace, kept: false, wallClockMillis: 1_764_000_000_123)
        }
        #expect(largest <= bound)
        var expected: [[String]: UInt64] = [Array(repeating: "__overflow__", count: 4): 2_900]
        for index in 0..<100 { expected[["feed-service", "GET /dogs/\(index)", "SPAN_KIND_SERVER", "STATUS_CODE_UNSET"]] = 1 }
        #expect(fixture.hub.totals().callsByLabels == expected)
    }

    /// With dimensions a series needs the trace's attributes: none is found on arrival, and the
    /// decision finds them (the span attribute and the resource attribute as labels).
    @Test func withDimensionsTheDecisionFindsTheSeries() throws {
        let fixture = Fixture(SpanMetricsConfiguration(dimensions: ["http.route"]))
        let found = try Self.recordOnArrival(
            fixture, [Span(id: 1, service: "frontend", name: "GET /feed", kind: .server)], traceID: TraceID(high: 3, low: 3), generation: 1)
        #expect(found == [-1])
        #expect(fixture.hub.totals().callsByLabels == [["frontend", "GET /feed", "SPAN_KIND_SERVER", "STATUS_CODE_UNSET", ""]: 1])
    }
}
