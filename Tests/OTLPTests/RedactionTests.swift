import Foundation
@testable import OTLP
import Testing

/// Redaction rewrites attributes of spans, events, links and resources, and nothing else.
@Suite struct RedactionTests {
    /// A request: one resource (with an e-mail), one span with PII in attributes and an event.
    func request() -> [UInt8] {
        func attribute(_ writer: inout ProtoWriter, field: UInt32, _ key: String, _ value: String) {
            writer.writeNested(field) { kv in
                kv.writeStringField(1, key)
                kv.writeNested(2) { $0.writeStringField(1, value) }
            }
        }
        var writer = ProtoWriter()
        writer.writeNested(1) { rs in
            rs.writeNested(1) { resource in
                attribute(&resource, field: 1, "service.name", "checkout")
                attribute(&resource, field: 1, "owner.email", "team@dogbook.example")
            }
            rs.writeNested(2) { ss in
                ss.writeNested(2) { span in
                    span.writeBytesField(1, TraceID(high: 1, low: 2).bytes)
                    span.writeBytesField(2, SpanID(rawValue: 3).bytes)
                    span.writeStringField(5, "POST /checkout")
                    span.writeVarintField(6, 2)
                    span.writeFixed64Field(7, 1)
                    span.writeFixed64Field(8, 2)
                    attribute(&span, field: 9, "user.email", "rex@dogbook.example")
                    attribute(&span, field: 9, "enduser.id", "user-42")
                    attribute(&span, field: 9, "http.request.header.authorization", "Bearer s3cr3t")
                    attribute(&span, field: 9, "payment.note", "card 4111 1111 1111 1111 charged")
                    attribute(&span, field: 9, "http.route", "/checkout")
                    span.writeNested(11) { event in
                        event.writeFixed64Field(1, 1)
                        event.writeStringField(2, "exception")
                        attribute(&event, field: 3, "exception.message", "no card 5500 0000 0000 0004 for rex@dogbook.example")
                    }
                    span.writeNested(15) { $0.writeVarintField(3, 2) }
                }
            }
        }
        return writer.bytes
    }

    let rules = [
        RedactionRule(action: .delete, keys: ["http.request.header.*"]),
        RedactionRule(action: .hash, keys: ["user.email", "enduser.id", "*.email"]),
        RedactionRule(action: .mask, values: ["\\b(?:[0-9][ -]?){12,15}[0-9]\\b"], replacement: "[card]"),
        RedactionRule(action: .mask, keys: ["exception.message"], values: ["[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+"]),
    ]

    @Test func redactsSpanEventAndResourceAttributes() throws {
        let redactor = try Redactor(rules: rules, hashKey: Array("a key of sixteen bytes or more".utf8))
        let (redacted, counts) = try redactor.redact(request: request())
        let json = try OTLPJSONWriter.request(redacted, key: "resourceSpans")
        #expect(!json.contains("s3cr3t") && !json.contains("http.request.header.authorization"))
        #expect(!json.contains("rex@dogbook.example") && !json.contains("team@dogbook.example"))
        #expect(!json.contains("user-42"))
        #expect(!json.contains("4111") && !json.contains("5500"))
        #expect(json.contains("card [card] charged"))
        #expect(json.contains("no card [card] for ****"))
        // Keyed hash: equal inputs hash alike, under this key only.
        let hashed = redactor.hashed(Array("rex@dogbook.example".utf8))
        // HMAC-SHA256 of the value under the key, first 16 bytes (Python: hmac.new(key, value, sha256)).
        #expect(hashed == "hmac:0c2e1a0fdbc8073a3b9c424817799819")
        #expect(json.contains(hashed))
        let other = try Redactor(rules: rules, hashKey: Array("another key, also long enough".utf8))
        #expect(other.hashed(Array("rex@dogbook.example".utf8)) != hashed)
        #expect(counts == { var c = Redactor.Counts(); c.deleted = 1; c.hashed = 3; c.masked = 3; return c }())
        // Everything else is untouched: the same span decodes with the same ids, name, status, route.
        var batch = SpanBatch(selection: AttributeSelection(keys: ["http.route"]))
        _ = try SpanDecoder(encoding: .otlpProto).decode(redacted, into: &batch)
        #expect(batch.spans.count == 1)
        #expect(batch.string(batch.spans[0].name) == "POST /checkout")
        #expect(batch.spans[0].statusCode == .error && batch.spans[0].traceID == TraceID(high: 1, low: 2))
        #expect(batch.string(batch.serviceName(of: batch.spans[0])) == "checkout")
        #expect(json.contains("/checkout"))
    }

    /// Values inside arrays and maps, at any depth, as the semantic conventions record HTTP headers
    /// (`http.request.header.<name>: ["…"]`): masks and hashes reach every string in them, a delete's
    /// value filter looks at every string, and nothing else in the value changes. Hashes computed with
    /// Python's `hmac.new(key, value, sha256)`, first 16 bytes.
    @Test func redactsStringsInsideArraysAndMapsAtAnyDepth() throws {
        func keyValue(_ writer: inout ProtoWriter, field: UInt32, _ key: String, _ value: (inout ProtoWriter) -> Void) {
            writer.writeNested(field) { kv in
                kv.writeStringField(1, key)
                kv.writeNested(2, value)
            }
        }
        func strings(_ values: [String]) -> (inout ProtoWriter) -> Void {
            { any in any.writeNested(5) { array in for value in values { array.writeNested(1) { $0.writeStringField(1, value) } } } }
        }
        var writer = ProtoWriter()
        writer.writeNested(1) { rs in
            rs.writeNested(2) { ss in
                ss.writeNested(2) { span in
                    span.writeBytesField(1, TraceID(high: 1, low: 2).bytes)
                    span.writeBytesField(2, SpanID(rawValue: 3).bytes)
                    span.writeStringField(5, "POST /pay")
                    keyValue(&span, field: 9, "http.request.header.x-card", strings(["4111 1111 1111 1111", "ok"]))
                    keyValue(&span, field: 9, "billing.email", strings(["rex@dogbook.example", "pup@dogbook.example"]))
                    keyValue(&span, field: 9, "http.response.header.set-cookie", strings(["theme=dark", "secret=1"]))
                    keyValue(&span, field: 9, "http.response.header.vary", strings(["accept"]))
                    keyValue(&span, field: 9, "payment.details") { any in
                        any.writeNested(6) { list in
                            list.writeNested(1) { kv in
                                kv.writeStringField(1, "card")
                                kv.writeNested(2) { $0.writeStringField(1, "5500 0000 0000 0004") }
                            }
                            list.writeNested(1) { kv in
                                kv.writeStringField(1, "amount")
                                kv.writeNested(2) { $0.writeVarintField(3, 42) }
                            }
                            list.writeNested(1) { kv in
                                kv.writeStringField(1, "history")
                                kv.writeNested(2, strings(["paid 4111-1111-1111-1111 twice"]))
                            }
                        }
                    }
                }
            }
        }
        let rules = [
            RedactionRule(action: .delete, keys: ["http.response.header.*"], values: ["secret"]),
            RedactionRule(action: .hash, keys: ["*.email"]),
            RedactionRule(action: .mask, values: ["\\b(?:[0-9][ -]?){12,15}[0-9]\\b"], replacement: "[card]"),
        ]
        let redactor = try Redactor(rules: rules, hashKey: Array("a key of sixteen bytes or more".utf8))
        let (redacted, counts) = try redactor.redact(request: writer.bytes)
        let json = try OTLPJSONWriter.request(redacted, key: "resourceSpans")
        for raw in ["4111", "5500", "rex@dogbook.example", "pup@dogbook.example", "secret=1", "theme=dark"] {
            #expect(!json.contains(raw), "\(raw) left in \(json)")
        }
        #expect(!json.contains("set-cookie"), "a string in the array matched the delete's filter: the attribute is gone")
        #expect(json.contains(#"{"stringValue":"[card]"},{"stringValue":"ok"}"#))
        #expect(json.contains(#"{"stringValue":"hmac:0c2e1a0fdbc8073a3b9c424817799819"},{"stringValue":"hmac:c6ce57ba1fd2863c92947dd3ed880d6c"}"#))
        #expect(json.contains(#""key":"card","value":{"stringValue":"[card]"}"#))
        #expect(json.contains(#""key":"amount","value":{"intValue":"42"}"#))
        #expect(json.contains(#"{"stringValue":"paid [card] twice"}"#))
        #expect(json.contains(#""key":"http.response.header.vary","value":{"arrayValue":{"values":[{"stringValue":"accept"}]}}"#))
        #expect(counts == { var c = Redactor.Counts(); c.deleted = 1; c.hashed = 1; c.masked = 2; return c }())
    }

    @Test func noMatchingRuleLeavesTheBytesAsTheyWere() throws {
        let redactor = try Redactor(rules: [RedactionRule(action: .delete, keys: ["nothing.matches"])], hashKey: [])
        let original = request()
        #expect(try redactor.redact(request: original).request == original)
    }

    @Test func hmacSHA256MatchesRFC4231() {
        // RFC 4231 test case 2.
        let mac = HMACSHA256.mac(key: Array("Jefe".utf8), message: Array("what do ya want for nothing?".utf8))
        #expect(HexDigits.string(mac) == "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
        // A key longer than the block is hashed first (test case 6).
        let long = HMACSHA256.mac(
            key: Array(repeating: 0xAA, count: 131), message: Array("Test Using Larger Than Block-Size Key - Hash Key First".utf8))
        #expect(HexDigits.string(long) == "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54")
        #expect(HexDigits.string(HMACSHA256.sha256([])) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    }

    @Test func globs() {
        #expect(Glob("http.request.header.*").matches("http.request.header.authorization"))
        #expect(!Glob("http.request.header.*").matches("http.response.header.x"))
        #expect(Glob("*.email").matches("owner.email") && !Glob("*.email").matches("email.owner"))
        #expect(Glob("user.email").matches("user.email") && !Glob("user.email").matches("user.emails"))
        #expect(Glob("*token*").matches("x.access_token.value") && Glob("*").matches("anything"))
    }
}
