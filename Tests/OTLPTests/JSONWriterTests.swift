import OTLP
import Testing

/// protobuf → OTLP/JSON → protobuf gives the same spans byte for byte (and the JSON is what the
/// decoder, written independently from the spec, reads).
@Suite struct JSONWriterTests {
    @Test(arguments: ["single_trace.pb", "many_traces.pb"])
    func roundTripsThroughJSON(file: String) throws {
        let original = try Fixtures.bytes(file)
        let json = try OTLPJSONWriter.request(original)
        #expect(json.hasPrefix("{\"resourceSpans\":[{\"resource\":{\"attributes\":["))
        var fromProto = SpanBatch()
        var fromJSON = SpanBatch()
        _ = try SpanDecoder(encoding: .otlpProto).decode(original, into: &fromProto)
        _ = try SpanDecoder(encoding: .otlpJSON).decode(Array(json.utf8), into: &fromJSON)
        try #require(fromProto.spans.count == fromJSON.spans.count)
        for (a, b) in zip(fromProto.spans, fromJSON.spans) {
            #expect(fromProto.withBytes(a.encoded) { Array($0) } == fromJSON.withBytes(b.encoded) { Array($0) })
        }
        for (a, b) in zip(fromProto.resources, fromJSON.resources) {
            #expect(fromProto.withBytes(a.encoded) { Array($0) } == fromJSON.withBytes(b.encoded) { Array($0) })
        }
    }

    @Test func escapesAndSpecialValues() throws {
        var w = ProtoWriter()
        w.writeNested(1) { rs in
            rs.writeNested(2) { ss in
                ss.writeNested(2) { s in
                    s.writeBytesField(1, Array(1...16))
                    s.writeBytesField(2, Array(1...8))
                    s.writeStringField(5, "quote \" backslash \\ newline \n tab \t bell \u{7}")
                    s.writeNested(9) { kv in
                        kv.writeStringField(1, "nan")
                        kv.writeNested(2) { $0.writeDoubleField(4, .nan) }
                    }
                    s.writeNested(9) { kv in
                        kv.writeStringField(1, "raw")
                        kv.writeNested(2) { $0.writeBytesField(7, [0xDE, 0xAD, 0xBE, 0xEF, 0x01]) }
                    }
                }
            }
        }
        let json = try OTLPJSONWriter.request(w.bytes)
        #expect(json.contains(#""name":"quote \" backslash \\ newline \n tab \t bell \u0007""#))
        #expect(json.contains(#"{"doubleValue":"NaN"}"#))
        #expect(json.contains(#"{"bytesValue":"3q2+7wE="}"#))
        #expect(json.contains(#""traceId":"0102030405060708090a0b0c0d0e0f10""#))
    }
}
