import OTLP
import Testing

/// Each kind of bad input is refused with a reason and a place, and nothing else is lost.
@Suite struct BadInputTests {
    let traceA: [UInt8] = Array(1...16)
    let spanA: [UInt8] = Array(1...8)

    func decode(_ bytes: [UInt8], _ encoding: OTLPEncoding = .otlpProto, into batch: inout SpanBatch) throws(OTLPDecodeError) -> DecodeOutcome {
        try SpanDecoder(encoding: encoding).decode(bytes, into: &batch)
    }

    func reason(_ bytes: [UInt8], _ encoding: OTLPEncoding = .otlpProto) -> OTLPDecodeError? {
        var batch = SpanBatch()
        do {
            _ = try decode(bytes, encoding, into: &batch)
            return nil
        } catch {
            #expect(batch.spans.isEmpty && batch.bytes.isEmpty && batch.resources.isEmpty, "a refused message leaves the batch as it was")
            return error
        }
    }

    @Test func truncatedAnywhereIsRefusedOrEndsOnAResourceBoundary() throws {
        let message = try Fixtures.bytes("single_trace.pb")
        var full = SpanBatch()
        let total = try decode(message, into: &full).spans.count
        var refused = 0
        var cuts = 0
        for cut in stride(from: 1, to: message.count, by: 3) {
            cuts += 1
            if let error = reason(Array(message[..<cut])) {
                refused += 1
                #expect([.truncated, .lengthOutOfBounds].contains(error.reason), "cut at \(cut): \(error)")
            } else {
                // Only a cut exactly between two top-level resource_spans parses, and it has fewer spans.
                var batch = SpanBatch()
                #expect(try decode(Array(message[..<cut]), into: &batch).spans.count < total)
            }
        }
        #expect(refused >= cuts - 6, "the message has 6 resource_spans, so at most 5 clean boundaries")
    }

    @Test func truncatedVarint() {
        let error = reason([0x0A, 0x80])
        #expect(error?.reason == .truncated)
    }

    @Test func invalidWireType() {
        // Field 1 with wire type 7 (does not exist).
        let error = reason([0x0F, 0x00])
        #expect(error?.reason == .invalidWireType)
        // A known field with the wrong wire type: resource_spans as a varint.
        #expect(reason([0x08, 0x01])?.reason == .invalidWireType)
    }

    /// Field numbers stop at 2^29 - 1 (protobuf's limit): a tag above it is not skipped as an unknown
    /// field but refused where it stands. The tag below is field 2^29, varint wire type, built by hand:
    /// (2^29 << 3) = 2^32, LEB128 80 80 80 80 10.
    @Test func fieldNumberAboveTheLimit() {
        let error = reason([0x80, 0x80, 0x80, 0x80, 0x10, 0x00])
        #expect(error?.reason == .malformedVarint)
        #expect(error?.byteOffset == 0)
        #expect(error.map { "\($0)" }?.contains("field number above 2^29 - 1") == true)
        // The largest legal one, (2^29 - 1) << 3 = FF FF FF FF 0F, is an unknown field: skipped.
        #expect(reason([0xF8, 0xFF, 0xFF, 0xFF, 0x0F, 0x00]) == nil)
    }

    @Test func lengthPastTheEnd() {
        let error = reason([0x0A, 0x05, 0x01])
        #expect(error?.reason == .lengthOutOfBounds)
        #expect(error?.byteOffset == 1)
    }

    @Test func overlongVarint() {
        #expect(reason([0x0A] + [UInt8](repeating: 0xFF, count: 11) + [0x01])?.reason == .malformedVarint)
    }

    @Test func errorNamesTheFieldPath() throws {
        // A span whose `kind` is sent length-delimited: the path says which span and field.
        var badSpan = ProtoWriter()
        badSpan.writeBytesField(1, traceA)
        badSpan.writeBytesField(6, [1, 2])
        let good = MessageBuilder.span(traceID: traceA, spanID: spanA)
        let error = try #require(reason(MessageBuilder.request(spans: [good, badSpan.bytes])))
        #expect(error.reason == .invalidWireType)
        #expect(error.path == "resource_spans[0].scope_spans[0].spans[1].kind")
        #expect(error.description.contains("spans[1].kind"))
    }

    @Test func deeplyNestedValuesAreRefused() {
        var value = ProtoWriter()
        value.writeStringField(1, "leaf")
        for _ in 0..<100 {
            var array = ProtoWriter()
            array.writeNested(5) { $0.writeBytesField(1, value.bytes) }
            value = array
        }
        var span = ProtoWriter(bytes: MessageBuilder.span(traceID: traceA, spanID: spanA))
        span.writeNested(9) { kv in
            kv.writeStringField(1, "deep")
            kv.writeBytesField(2, value.bytes)
        }
        #expect(reason(MessageBuilder.request(spans: [span.bytes]))?.reason == .nestingTooDeep)
    }

    @Test func zeroAndShortTraceIDsAreRefusedAloneOthersKept() throws {
        let good = MessageBuilder.span(traceID: traceA, spanID: spanA)
        let zero = MessageBuilder.span(traceID: [UInt8](repeating: 0, count: 16), spanID: spanA)
        let short = MessageBuilder.span(traceID: Array(1...15), spanID: spanA)
        let zeroSpan = MessageBuilder.span(traceID: traceA, spanID: [UInt8](repeating: 0, count: 8))
        let badParent = MessageBuilder.span(traceID: traceA, spanID: spanA, parent: [1, 2, 3])
        var batch = SpanBatch()
        let outcome = try decode(MessageBuilder.request(spans: [zero, good, short, zeroSpan, badParent]), into: &batch)
        #expect(outcome.rejectedSpans == 4)
        #expect(outcome.spans == 0..<1)
        #expect(batch.spans.count == 1)
        #expect(batch.spans[0].traceID == TraceID(hex: "0102030405060708090a0b0c0d0e0f10"))
        #expect(outcome.firstSpanRejection?.reason == .invalidTraceID)
        #expect(outcome.firstSpanRejection?.path == "resource_spans[0].scope_spans[0].spans[0]")
        #expect(outcome.firstSpanRejection?.detail.contains("all zero") == true)
    }

    @Test func spanIDReasons() throws {
        var batch = SpanBatch()
        let outcome = try decode(
            MessageBuilder.request(spans: [MessageBuilder.span(traceID: traceA, spanID: [1, 2, 3])]), into: &batch)
        #expect(outcome.firstSpanRejection?.reason == .invalidSpanID)
        #expect(outcome.firstSpanRejection?.detail.contains("(3)") == true)
    }

    @Test func goodSpansInTheSameBatchAreNotLost() throws {
        var batch = SpanBatch()
        let first = try Fixtures.bytes("single_trace.pb")
        let second = try Fixtures.bytes("many_traces.pb")
        _ = try decode(first, into: &batch)
        let spansAfterFirst = batch.spans.count
        let bytesAfterFirst = batch.bytes.count
        #expect(throws: OTLPDecodeError.self) { try decode(Array(second[..<(second.count / 2)]), into: &batch) }
        #expect(batch.spans.count == spansAfterFirst)
        #expect(batch.bytes.count == bytesAfterFirst)
        #expect(throws: OTLPDecodeError.self) { try decode(Array("{\"resourceSpans\": [".utf8), .otlpJSON, into: &batch) }
        _ = try decode(second, into: &batch)
        #expect(batch.spans.count == spansAfterFirst + 39)
        // The first message's records still point at its bytes.
        #expect(batch.string(batch.spans[0].name) == "GET /feed")
        #expect(batch.string(batch.serviceName(of: batch.spans.last!)) == "photo-service")
    }

    // MARK: JSON

    @Test func notJSON() {
        #expect(reason(Array("hello".utf8), .otlpJSON)?.reason == .invalidJSON)
        #expect(reason([], .otlpJSON)?.reason == .invalidJSON)
        #expect(reason(Array("{\"resourceSpans\":[]} trailing".utf8), .otlpJSON)?.reason == .invalidJSON)
        // Protobuf bytes sent to a JSON topic.
        #expect(reason((try? Fixtures.bytes("single_trace.pb")) ?? [], .otlpJSON)?.reason == .invalidJSON)
    }

    @Test func wrongJSONTypeForAField() throws {
        let error = try #require(reason(Array(#"{"resourceSpans":{"scopeSpans":[]}}"#.utf8), .otlpJSON))
        #expect(error.reason == .wrongJSONType)
        #expect(error.byteOffset == 17)
        let spans = try #require(reason(Array(#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"name":42}]}]}]}"#.utf8), .otlpJSON))
        #expect(spans.reason == .wrongJSONType)
        #expect(spans.path == "resource_spans[0].scope_spans[0].spans[0].name")
    }

    @Test func base64IDsAreRefusedWithAHint() throws {
        let json = #"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"S/kvNXezTaajzpKdDg5HNg==","spanId":"APBnqgupArc="}]}]}]}"#
        let error = try #require(reason(Array(json.utf8), .otlpJSON))
        #expect(error.reason == .invalidFieldValue)
        #expect(error.detail.contains("hex"))
        #expect(error.path.hasSuffix("spans[0].traceId"))
    }

    @Test func jsonZeroTraceIDIsRefusedAlone() throws {
        let json = """
            {"resourceSpans":[{"scopeSpans":[{"spans":[
              {"traceId":"00000000000000000000000000000000","spanId":"0102030405060708","name":"bad"},
              {"traceId":"","spanId":"0102030405060708","name":"empty"},
              {"traceId":"0102030405060708090a0b0c0d0e0f10","spanId":"0102030405060708","name":"good"}]}]}]}
            """
        var batch = SpanBatch()
        let outcome = try decode(Array(json.utf8), .otlpJSON, into: &batch)
        #expect(outcome.rejectedSpans == 2)
        #expect(batch.spans.map { batch.string($0.name) } == ["good"])
    }
}

/// OTLP/JSON as real senders write it: numbers or strings for 64-bit integers, enum names or
/// numbers, snake_case from older SDKs, unknown fields, escapes.
@Suite struct JSONVariantsTests {
    @Test func int64AsNumbersOrStringsEnumsAsNamesOrNumbers() throws {
        let json = """
            {"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"feed-service"}}]},
             "scopeSpans":[{"scope":{"name":"dogbook"},"spans":[
              {"traceId":"4BF92F3577B34DA6A3CE929D0E0E4736","spanId":"00f067aa0ba902b7","name":"a","kind":"SPAN_KIND_CLIENT",
               "startTimeUnixNano":1764000000000000000,"endTimeUnixNano":"1764000000250000000","flags":257,
               "status":{"code":"STATUS_CODE_ERROR","message":"boom"},
               "attributes":[{"key":"http.response.status_code","value":{"intValue":503}},
                             {"key":"retries","value":{"intValue":"-3"}},
                             {"key":"ratio","value":{"doubleValue":"NaN"}},
                             {"key":"payload","value":{"bytesValue":"3q2+7w=="}},
                             {"key":"note","value":{"stringValue":"caf\\u00e9 \\ud83d\\udc15 \\"q\\""}}],
               "unknownField":{"nested":[1,2,{"x":null}]}},
              {"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","span_id":"00f067aa0ba902b8","parent_span_id":"00f067aa0ba902b7",
               "name":"b","kind":2,"start_time_unix_nano":"5","end_time_unix_nano":7,"status":{"code":1}}]}]}]}
            """
        let selection = AttributeSelection(keys: ["http.response.status_code", "retries", "ratio", "payload", "note"])
        var batch = SpanBatch(selection: selection)
        let outcome = try SpanDecoder(encoding: .otlpJSON).decode(Array(json.utf8), into: &batch)
        #expect(outcome.rejectedSpans == 0)
        try #require(batch.spans.count == 2)
        let a = batch.spans[0]
        #expect(a.traceID.hex == "4bf92f3577b34da6a3ce929d0e0e4736")
        #expect(a.kind == .client)
        #expect(a.startTimeUnixNano == 1_764_000_000_000_000_000)
        #expect(a.endTimeUnixNano == 1_764_000_000_250_000_000)
        #expect(a.flags == 257)
        #expect(a.statusCode == .error)
        #expect(batch.string(a.statusMessage) == "boom")
        #expect(batch.string(batch.serviceName(of: a)) == "feed-service")
        let values = batch.attributes(of: a).map(\.value)
        #expect(values[0] == .int(503))
        #expect(values[1] == .int(-3))
        if case .double(let ratio) = values[2] { #expect(ratio.isNaN) } else { Issue.record("ratio not a double") }
        if case .bytes(let range) = values[3] {
            #expect(batch.withBytes(range) { Array($0) } == [0xDE, 0xAD, 0xBE, 0xEF])
        } else {
            Issue.record("bytes value decoded as \(values[3])")
        }
        if case .string(let range) = values[4] {
            #expect(batch.string(range) == "café 🐕 \"q\"")
        } else {
            Issue.record("string value decoded as \(values[4])")
        }
        let b = batch.spans[1]
        #expect(b.parentSpanID.hex == "00f067aa0ba902b7")
        #expect(b.kind == .server)
        #expect(b.startTimeUnixNano == 5 && b.endTimeUnixNano == 7)
        #expect(b.statusCode == .ok)
    }

    @Test func emptyRequestHasNoSpans() throws {
        var batch = SpanBatch()
        let outcome = try SpanDecoder(encoding: .otlpJSON).decode(Array(#"{}"#.utf8), into: &batch)
        #expect(outcome.spans.isEmpty)
        let proto = try SpanDecoder(encoding: .otlpProto).decode([], into: &batch)
        #expect(proto.spans.isEmpty)
    }
}

@Suite struct IdentifierTests {
    @Test func hexRoundTrip() {
        let id = TraceID(hex: "4bf92f3577b34da6a3ce929d0e0e4736")!
        #expect(id.hex == "4bf92f3577b34da6a3ce929d0e0e4736")
        #expect(id.bytes.count == 16 && id.bytes[0] == 0x4B && id.bytes[15] == 0x36)
        #expect(TraceID(hex: "4bf92f3577b34da6a3ce929d0e0e473") == nil)
        #expect(TraceID(hex: "zbf92f3577b34da6a3ce929d0e0e4736") == nil)
        #expect(SpanID(hex: "00f067aa0ba902b7")?.rawValue == 0x00F0_67AA_0BA9_02B7)
        #expect(!TraceID.zero.isValid)
    }
}
