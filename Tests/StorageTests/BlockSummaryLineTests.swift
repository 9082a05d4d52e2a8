import Foundation
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
