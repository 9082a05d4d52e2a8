import Foundation
import OTLP
import Testing

/// Decoding bytes made by the official OpenTelemetry Python SDK; every extracted field is checked
/// against the official protobuf runtime's reading of the same bytes.
@Suite struct SDKFixtureDecodingTests {
    static let cases: [(file: String, encoding: OTLPEncoding, expected: String)] = [
        ("single_trace.pb", .otlpProto, "single_trace.expected.json"),
        ("single_trace.json", .otlpJSON, "single_trace.expected.json"),
        ("many_traces.pb", .otlpProto, "many_traces.expected.json"),
        ("many_traces.json", .otlpJSON, "many_traces.expected.json"),
    ]

    @Test(arguments: 0..<4)
    func everyFieldMatchesTheSDK(caseIndex: Int) throws {
        let (file, encoding, expectedFile) = Self.cases[caseIndex]
        let expected = try Fixtures.expected(expectedFile)
        let selection = AttributeSelection(keys: Fixtures.allKeys(expected))
        var batch = SpanBatch(selection: selection)
        let outcome = try SpanDecoder(encoding: encoding).decode(try Fixtures.bytes(file), into: &batch)

        #expect(outcome.rejectedSpans == 0)
        #expect(batch.spans.count == expected.count)
        for (span, want) in zip(batch.spans, expected) {
            #expect(span.traceID.hex == want["traceId"] as! String)
            #expect(span.spanID.hex == want["spanId"] as! String)
            let parent = want["parentSpanId"] as! String
            #expect(span.parentSpanID == (parent.isEmpty ? .zero : SpanID(hex: parent)!))
            #expect(span.isRoot == parent.isEmpty)
            #expect(batch.string(span.traceState) == want["traceState"] as! String)
            #expect(span.flags == UInt32(want["flags"] as! Int))
            #expect(batch.string(span.name) == want["name"] as! String)
            #expect(span.kind.rawValue == UInt8(want["kind"] as! Int))
            #expect(span.startTimeUnixNano == UInt64(want["startTimeUnixNano"] as! String)!)
            #expect(span.endTimeUnixNano == UInt64(want["endTimeUnixNano"] as! String)!)
            #expect(span.statusCode.rawValue == UInt8(want["statusCode"] as! Int))
            #expect(batch.string(span.statusMessage) == want["statusMessage"] as! String)
            #expect(batch.string(batch.serviceName(of: span)) == want["serviceName"] as! String)
            #expect(batch.string(batch.scopes[Int(span.scopeIndex)].name) == want["scopeName"] as! String)
            #expect(batch.string(batch.scopes[Int(span.scopeIndex)].schemaURL) == want["scopeSchemaUrl"] as! String)
            #expect(batch.string(batch.resource(of: span).schemaURL) == want["resourceSchemaUrl"] as! String)
            #expect(Int(span.encoded.count) == want["encodedSize"] as! Int)

            try checkAttributes(batch.attributes(of: span), want["attributes"] as! [String: Any], batch)
            try checkAttributes(batch.attributes(of: batch.resource(of: span)), want["resourceAttributes"] as! [String: Any], batch)
        }
    }

    func checkAttributes(_ got: ArraySlice<SelectedAttribute>, _ want: [String: Any], _ batch: SpanBatch) throws {
        #expect(got.count == want.count)
        for attribute in got {
            let key = batch.selection.keys[Int(attribute.key.rawValue)]
            let expected = try #require(want[key] as? [String: Any], "unexpected attribute \(key)")
            switch attribute.value {
            case .array(let range):
                // The decoder keeps a list as the bytes of its ArrayValue message: exactly the SDK's.
                #expect(expected["array"] is [Any], "\(key) is a list")
                #expect(HexDigits.string(batch.withBytes(range) { Array($0) }) == expected["encoded"] as? String, "\(key)")
            case .keyValueList(let range):
                #expect(expected["kvlist"] is [String: Any], "\(key) is a map")
                #expect(HexDigits.string(batch.withBytes(range) { Array($0) }) == expected["encoded"] as? String, "\(key)")
            case .empty:
                #expect(expected["empty"] as? Bool == true, "\(key) is an empty value")
            case .bytes(let range):
                #expect(HexDigits.string(batch.withBytes(range) { Array($0) }) == expected["bytes"] as? String, "\(key)")
            case .double(let value):
                #expect(value == expected["double"] as? Double, "\(key)")
            case .bool(let value):
                #expect(value == expected["bool"] as? Bool, "\(key)")
            case .int(let value):
                #expect(expected["int"] as? String == String(value), "\(key)")
            case .string(let range):
                #expect(expected["string"] as? String == batch.string(range), "\(key)")
            }
        }
    }

    /// The fixtures hold every kind of value, so the checks above see each one.
    @Test func theFixturesHoldEveryKindOfValue() throws {
        var kinds = Set<String>()
        func collect(_ value: [String: Any]) {
            kinds.formUnion(value.keys.filter { $0 != "encoded" })
            if let list = value["array"] as? [[String: Any]] { list.forEach(collect) }
            if let map = value["kvlist"] as? [String: [String: Any]] { map.values.forEach(collect) }
        }
        for span in try Fixtures.expected("many_traces.expected.json") {
            for value in (span["attributes"] as! [String: Any]).values { collect(value as! [String: Any]) }
        }
        #expect(kinds == ["string", "bool", "int", "double", "bytes", "array", "kvlist", "empty"])
    }

    /// OTLP/JSON is transcoded to protobuf; the SDK's own protobuf for the same spans must come out,
    /// byte for byte, so re-export of JSON input is faithful.
    @Test(arguments: ["single_trace", "many_traces"])
    func jsonTranscodesToTheSDKsProtobuf(name: String) throws {
        var fromProto = SpanBatch()
        var fromJSON = SpanBatch()
        _ = try SpanDecoder(encoding: .otlpProto).decode(try Fixtures.bytes("\(name).pb"), into: &fromProto)
        _ = try SpanDecoder(encoding: .otlpJSON).decode(try Fixtures.bytes("\(name).json"), into: &fromJSON)
        try #require(fromProto.spans.count == fromJSON.spans.count)
        for (a, b) in zip(fromProto.spans, fromJSON.spans) {
            let protoBytes = fromProto.withBytes(a.encoded) { Array($0) }
            let jsonBytes = fromJSON.withBytes(b.encoded) { Array($0) }
            #expect(protoBytes == jsonBytes)
        }
        for (a, b) in zip(fromProto.resources, fromJSON.resources) {
            #expect(fromProto.withBytes(a.encoded) { Array($0) } == fromJSON.withBytes(b.encoded) { Array($0) })
        }
    }

    /// Re-export needs each span's exact bytes: they must re-parse to the same record.
    @Test func encodedSpanBytesRoundTrip() throws {
        var batch = SpanBatch()
        _ = try SpanDecoder(encoding: .otlpProto).decode(try Fixtures.bytes("many_traces.pb"), into: &batch)
        for span in batch.spans {
            let spanBytes = batch.withBytes(span.encoded) { Array($0) }
            let request = MessageBuilder.request(spans: [spanBytes])
            var again = SpanBatch()
            _ = try SpanDecoder(encoding: .otlpProto).decode(request, into: &again)
            try #require(again.spans.count == 1)
            #expect(again.spans[0].traceID == span.traceID)
            #expect(again.spans[0].spanID == span.spanID)
            #expect(again.spans[0].endTimeUnixNano == span.endTimeUnixNano)
        }
    }

    /// A one-trace message (partition_traces_by_id) has one trace id; a many-trace message several.
    @Test func oneTraceAndManyTracesPerMessage() throws {
        var single = SpanBatch()
        _ = try SpanDecoder(encoding: .otlpProto).decode(try Fixtures.bytes("single_trace.pb"), into: &single)
        #expect(Set(single.spans.map(\.traceID)).count == 1)
        var many = SpanBatch()
        _ = try SpanDecoder(encoding: .otlpProto).decode(try Fixtures.bytes("many_traces.pb"), into: &many)
        #expect(Set(many.spans.map(\.traceID)).count == 3)
    }

    /// The benchmark corpus decodes completely (it is what the decode benchmark measures).
    @Test func benchmarkCorpusDecodes() throws {
        let corpus = try Fixtures.bytes("dogbook_corpus.pbl")
        var batch = SpanBatch(selection: AttributeSelection(keys: ["http.response.status_code", "rpc.grpc.status_code"]))
        var offset = 0
        var messages = 0
        while offset < corpus.count {
            let length = Int(corpus[offset]) << 24 | Int(corpus[offset + 1]) << 16 | Int(corpus[offset + 2]) << 8 | Int(corpus[offset + 3])
            _ = try SpanDecoder(encoding: .otlpProto).decode(Array(corpus[(offset + 4)..<(offset + 4 + length)]), into: &batch)
            offset += 4 + length
            messages += 1
        }
        #expect(messages == 100)
        #expect(Set(batch.spans.map(\.traceID)).count == 100)
        #expect(batch.spans.count >= 100 * 18)
    }
}
