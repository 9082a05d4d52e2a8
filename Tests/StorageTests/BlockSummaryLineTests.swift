import Foundation
import OTLP
@testable import Storage
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
        func keyValue(_ key: String, _ value: String) -> [UInt8] {
            var any = ProtoWriter()
            any.writeStringField(1, value)
            var kv = ProtoWriter()
            kv.writeStringField(1, key)
            kv.writeBytesField(2, any.bytes)
            return kv.bytes
        }
        var span = ProtoWriter()
        span.writeBytesField(1, [UInt8](repeating: trace, count: 16))
        span.writeBytesField(2, [UInt8](repeating: 7, count: 8))
        span.writeStringField(5, "GET")
        span.writeFixed64Field(7, 1_000)
        span.writeFixed64Field(8, 2_000)
        span.writeBytesField(9, keyValue("http.route", route))
        var resource = ProtoWriter()
        resource.writeBytesField(1, keyValue("service.name", "dogs"))
        resource.writeBytesField(1, keyValue("k8s.pod.name", pod))
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
        for member in ["r:k8s.pod.name=dogs-a", "r:k8s.pod.name=dogs-b", "r:service.name=dogs", "s:http.route=/walks", "n:GET"] {
            #expect(summary.mightContain(member), "\(member)")
        }
    }
}
