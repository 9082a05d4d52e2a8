@testable import OTLP
import Testing

/// The router keys each message by its trace id's hex, written without a `String`: the bytes must be
/// exactly the W3C form (32 lowercase hex characters, zero-padded), here written out by hand.
@Suite struct IdentifierHexTests {
    @Test func traceIDHexBytesAreTheW3CForm() {
        let cases: [(TraceID, String)] = [
            // The W3C trace context specification's example trace id.
            (TraceID(high: 0x4bf9_2f35_77b3_4da6, low: 0xa3ce_929d_0e0e_4736), "4bf92f3577b34da6a3ce929d0e0e4736"),
            // Leading zeros in both halves, every digit 0–f.
            (TraceID(high: 0x0000_0000_0000_0001, low: 0x0123_4567_89ab_cdef), "00000000000000010123456789abcdef"),
            (TraceID(high: .max, low: 0), "ffffffffffffffff0000000000000000"),
        ]
        for (id, expected) in cases {
            let written = id.withHexBytes { String(decoding: $0, as: UTF8.self) }
            #expect(written == expected)
            #expect(written == id.hex)
        }
    }
}
