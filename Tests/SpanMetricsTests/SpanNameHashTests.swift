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
