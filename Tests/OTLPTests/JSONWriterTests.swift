import Foundation
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

    /// The official protobuf runtime (Python's `json_format`, with the OpenTelemetry proto classes)
    /// reads the JSON as exactly the request it was written from: an implementation independent of
    /// the writer and of tailgate's decoder (Tests/Fixtures/check_otlp_json.py).
    @Test(.enabled(if: FixtureReproducibilityTests.sdkAvailable || FixtureReproducibilityTests.inCI, "needs python3 with Tests/Fixtures/requirements.txt"))
    func theProtobufRuntimeReadsTheJSONAsTheSameRequest() throws {
        try #require(FixtureReproducibilityTests.sdkAvailable, "CI=true but python3 cannot import the protobuf runtime")
        let requests: [(String, [UInt8])] = [
            ("single_trace", try Fixtures.bytes("single_trace.pb")),
            ("many_traces", try Fixtures.bytes("many_traces.pb")),
            ("escapes and special values", Self.specialValues()),
        ]
        for (name, original) in requests {
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent("tailgate-json-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: directory) }
            let pb = directory.appendingPathComponent("request.pb"), json = directory.appendingPathComponent("request.json")
            try Data(original).write(to: pb)
            try Data(try OTLPJSONWriter.request(original).utf8).write(to: json)
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            process.arguments = ["python3", Fixtures.directory.appendingPathComponent("check_otlp_json.py").path, pb.path, json.path]
            let output = Pipe()
            process.standardOutput = output
            process.standardError = output
            try process.run()
            let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            process.waitUntilExit()
            #expect(process.terminationStatus == 0 && text.hasPrefix("equal "), "\(name): \(text.prefix(2000))")
        }
    }

    /// A request with every value kind OTLP has: escapes, NaN and infinities, bytes, arrays, maps,
    /// negative integers, events, links, status.
    static func specialValues() -> [UInt8] {
        var w = ProtoWriter()
        w.writeNested(1) { rs in
            rs.writeNested(1) { r in
                r.writeNested(1) { kv in
                    kv.writeStringField(1, "service.name")
                    kv.writeNested(2) { $0.writeStringField(1, "dogbook-é-🐕") }
                }
            }
            rs.writeNested(2) { ss in
                ss.writeNested(1) { scope in scope.writeStringField(1, "io.dogbook"); scope.writeStringField(2, "1.0") }
                ss.writeNested(2) { s in
                    s.writeBytesField(1, Array(1...16))
                    s.writeBytesField(2, Array(1...8))
                    s.writeBytesField(4, Array(9...16))
                    s.writeStringField(5, "quote \" backslash \\ newline \n tab \t bell \u{7} slash / del \u{7F}")
                    s.writeVarintField(6, 3)
                    s.writeFixed64Field(7, 1_700_000_000_000_000_000)
                    s.writeFixed64Field(8, 1_700_000_000_123_456_789)
                    for (key, value) in [("nan", Double.nan), ("inf", .infinity), ("-inf", -.infinity), ("pi", 3.141592653589793), ("tiny", Double.leastNonzeroMagnitude)] {
                        s.writeNested(9) { kv in
                            kv.writeStringField(1, key)
                            kv.writeNested(2) { $0.writeDoubleField(4, value) }
                        }
                    }
                    s.writeNested(9) { kv in
                        kv.writeStringField(1, "negative")
                        kv.writeNested(2) { $0.writeVarintField(3, UInt64(bitPattern: -42)) }
                    }
                    s.writeNested(9) { kv in
                        kv.writeStringField(1, "raw")
                        kv.writeNested(2) { $0.writeBytesField(7, [0xDE, 0xAD, 0xBE, 0xEF, 0x01]) }
                    }
                    s.writeNested(9) { kv in
                        kv.writeStringField(1, "http.request.header.accept")
                        kv.writeNested(2) { v in
                            v.writeNested(5) { array in
                                array.writeNested(1) { $0.writeStringField(1, "text/html") }
                                array.writeNested(1) { $0.writeVarintField(2, 1) }
                                array.writeNested(1) { inner in
                                    inner.writeNested(6) { map in
                                        map.writeNested(1) { kv in
                                            kv.writeStringField(1, "depth")
                                            kv.writeNested(2) { $0.writeVarintField(3, 2) }
                                        }
                                    }
                                }
                            }
                        }
                    }
                    s.writeNested(11) { event in
                        event.writeFixed64Field(1, 1_700_000_000_000_000_500)
                        event.writeStringField(2, "exception")
                        event.writeNested(3) { kv in
                            kv.writeStringField(1, "exception.message")
                            kv.writeNested(2) { $0.writeStringField(1, "<script>alert(1)</script>") }
                        }
                    }
                    s.writeNested(13) { link in
                        link.writeBytesField(1, Array(17...32))
                        link.writeBytesField(2, Array(17...24))
                        link.writeStringField(3, "ot=th:8")
                    }
                    s.writeNested(15) { status in
                        status.writeStringField(2, "upstream \"timeout\"")
                        status.writeVarintField(3, 2)
                    }
                }
            }
        }
        return w.bytes
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
