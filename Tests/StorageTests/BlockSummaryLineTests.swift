import Foundation
import OTLP
@testable import Storage
import TestSupport
import Testing

/// The sidecar line is written by hand; Foundation's JSONDecoder (the reader the store uses, and an
/// outside reference for the JSON) must read back exactly the summary that was written, whatever
/// the span fields held.
@Suite struct BlockSummaryLineTests {
    @Test func readsBackExactlyThroughFoundation() throws {
        let awkward = [
            "", "plain", "quote \" and backslash \\", "new\nline\ttab\r", "\u{01}\u{1F}control", "émoji 🐕 ünïcode",
            "</script><b>markup</b>", String(repeating: "long", count: 300),
        ]
        var summary = BlockSummary(offset: 4_294_967_295)
        summary.traces = 17
        summary.minStart = 1_700_000_000_000_000_000
        summary.maxEnd = UInt64.max
        summary.maxTraceDuration = 12_345
        summary.maxSpanDuration = 0
        summary.hasError = true
        summary.rootServices = awkward
        summary.rootNames = ["GET /dogs"]
        summary.names = awkward.reversed()
        summary.tags = ["span": ["http.method": ["GET", "POST"], "we\"ird": awkward], "resource": ["service.name": ["dogs"]]]
        summary.bloom = [0, 1, UInt64.max, 0x8000_0000_0000_0000]
        let line = summary.jsonLine()
        let decoded = try JSONDecoder().decode(BlockSummary.self, from: Data(line))
        #expect(decoded == summary)
        #expect(!line.contains(UInt8(ascii: "\n")), "one line per block")

        let empty = BlockSummary(offset: 0)
        #expect(try JSONDecoder().decode(BlockSummary.self, from: Data(empty.jsonLine())) == empty)
    }
}

/// Resources shared by the traces of a block are summarised once: what the block lists and what its
/// Bloom filter knows must still cover every distinct resource, named from the input written here.
@Suite struct BlockSummaryResourceTests {
    static func request(trace: UInt8, pod: String, route: String) -> [UInt8] {
        var span = ProtoWriter()
        span.writeBytesField(1, [UInt8](repeating: trace, count: 16))
        span.writeBytesField(2, [UInt8](repeating: 7, count: 8))
        span.writeStringField(5, "GET")
        span.writeFixed64Field(7, 1_000)
        span.writeFixed64Field(8, 2_000)
        span.writeBytesField(9, otlpKeyValue("http.route", route))
        var resource = ProtoWriter()
        resource.writeBytesField(1, otlpKeyValue("service.name", "dogs"))
        resource.writeBytesField(1, otlpKeyValue("k8s.pod.name", pod))
        var scopeSpans = ProtoWriter()
        scopeSpans.writeBytesField(2, span.bytes)
        var resourceSpans = ProtoWriter()
        resourceSpans.writeBytesField(1, resource.bytes)
        resourceSpans.writeBytesField(2, scopeSpans.bytes)
        var request = ProtoWriter()
        request.writeBytesField(1, resourceSpans.bytes)
        return request.bytes
    }

    @Test func everyDistinctResourceIsSummarised() {
        let requests = [
            Self.request(trace: 1, pod: "dogs-a", route: "/dogs"),
            Self.request(trace: 2, pod: "dogs-a", route: "/dogs/{id}"),
            Self.request(trace: 3, pod: "dogs-b", route: "/dogs"),
            Self.request(trace: 4, pod: "dogs-a", route: "/walks"),
        ]
        let summary = BlockSummary.build(offset: 0, requests: requests)
        #expect(summary.traces == 4)
        #expect(summary.tags["resource"]?["k8s.pod.name"] == ["dogs-a", "dogs-b"])
        #expect(summary.tags["resource"]?["service.name"] == ["dogs"])
        #expect(summary.tags["span"]?["http.route"] == ["/dogs", "/dogs/{id}", "/walks"])
        // Resources seen before are not summarised again, but still name their spans' service.
        #expect(summary.rootServices == ["dogs"])
        #expect(summary.rootNames == ["GET"])
        for member in ["r:k8s.pod.name=dogs-a", "r:k8s.pod.name=dogs-b", "r:service.name=dogs", "s:http.route=/walks", "n:GET"] {
            #expect(summary.mightContain(member), "\(member)")
        }
    }
}

/// A block summary of SDK-made spans, checked against what the official protobuf runtime read from
/// the same bytes (Tests/Fixtures/many_traces.expected.json, written by make_fixtures.py): span
/// names, times, the root, errors, and every attribute in the tag lists and the Bloom filter.
@Suite struct BlockSummarySDKFixtureTests {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures")

    /// An expected value as the summary lists it (ints in decimal, whole doubles as integers).
    static func text(_ value: [String: Any]) -> String? {
        if let string = value["string"] as? String { return string }
        if let int = value["int"] as? String { return int }
        if let bool = value["bool"] as? Bool { return bool ? "true" : "false" }
        if let double = value["double"] as? Double, double.rounded() == double, abs(double) < 9e18 { return String(Int64(double)) }
        return nil
    }

    @Test func summarisesWhatTheSDKWrote() throws {
        let request = [UInt8](try Data(contentsOf: Self.fixtures.appendingPathComponent("many_traces.pb")))
        let spans = try JSONSerialization.jsonObject(with: Data(contentsOf: Self.fixtures.appendingPathComponent("many_traces.expected.json"))) as! [[String: Any]]
        try #require(spans.count > 30)
        let summary = BlockSummary.build(offset: 0, requests: [request])

        let starts = spans.map { UInt64($0["startTimeUnixNano"] as! String)! }
        let ends = spans.map { UInt64($0["endTimeUnixNano"] as! String)! }
        #expect(summary.traces == 1, "one stored request")
        #expect(summary.minStart == starts.min())
        #expect(summary.maxEnd == ends.max())
        #expect(summary.maxSpanDuration == zip(starts, ends).map { $1 - $0 }.max())
        #expect(summary.hasError == spans.contains { $0["statusCode"] as! Int == 2 })
        let names = spans.map { $0["name"] as! String }
        #expect(Set(summary.names) == Set(names))
        #expect(summary.names.count == Set(names).count)
        // The earliest span without a parent (ties: the first in wire order).
        let roots = spans.indices.filter { (spans[$0]["parentSpanId"] as! String).isEmpty }
        let root = try #require(roots.min { starts[$0] < starts[$1] })
        #expect(summary.rootNames == [names[root]])
        #expect(summary.rootServices == [spans[root]["serviceName"] as! String])

        for (scope, field, prefix) in [("span", "attributes", "s:"), ("resource", "resourceAttributes", "r:")] {
            var values: [String: Set<String>] = [:]
            for span in spans {
                for (key, value) in span[field] as! [String: [String: Any]] {
                    values[key, default: []].formUnion(Self.text(value).map { [$0] } ?? [])
                }
            }
            #expect(Set(summary.tags[scope]?.keys.map { $0 } ?? []) == Set(values.keys), "\(scope) keys")
            for (key, texts) in values {
                #expect(summary.tags[scope]?[key] == texts.sorted(), "\(scope) \(key)")
                for text in texts { #expect(summary.mightContain("\(prefix)\(key)=\(text)"), "\(prefix)\(key)=\(text)") }
            }
        }
        for name in names { #expect(summary.mightContain("n:\(name)")) }
    }
}
