import OTLP
import TestSupport
import Testing

/// The decoder's attribute paths (the one-load fast path for the common shape, the general walk for
/// the rest, and the key table that picks selected keys) against attributes written here by hand:
/// the expected values are what the generator wrote, never what a decoder read.
@Suite struct AttributeDecodingTests {
    enum Written: Equatable {
        case string(String), int(Int64), bool(Bool), double(Double), array
    }

    /// A minimal protobuf writer of this test's own (the project's ProtoWriter is not the reference).
    struct Wire {
        var bytes: [UInt8] = []
        mutating func varint(_ value: UInt64) {
            var value = value
            while value >= 0x80 {
                bytes.append(UInt8(value & 0x7F) | 0x80)
                value >>= 7
            }
            bytes.append(UInt8(value))
        }
        mutating func tag(_ field: UInt64, _ wireType: UInt64) { varint(field << 3 | wireType) }
        mutating func delimited(_ field: UInt64, _ content: [UInt8]) {
            tag(field, 2)
            varint(UInt64(content.count))
            bytes += content
        }
        mutating func fixed64(_ field: UInt64, _ value: UInt64) {
            tag(field, 1)
            for shift in stride(from: 0, to: 64, by: 8) { bytes.append(UInt8(truncatingIfNeeded: value >> UInt64(shift))) }
        }
    }

    static func keyValue(_ key: String, _ value: Written, valueFirst: Bool) -> [UInt8] {
        var any = Wire()
        switch value {
        case .string(let text): any.delimited(1, Array(text.utf8))
        case .bool(let flag): any.tag(2, 0); any.varint(flag ? 1 : 0)
        case .int(let number): any.tag(3, 0); any.varint(UInt64(bitPattern: number))
        case .double(let number): any.fixed64(4, number.bitPattern)
        case .array:
            var inner = Wire()
            inner.delimited(1, [0x0A, 0x01, 0x78])  // ["x"]
            any.delimited(5, inner.bytes)
        }
        var kv = Wire()
        if valueFirst {
            kv.delimited(2, any.bytes)
            kv.delimited(1, Array(key.utf8))
        } else {
            kv.delimited(1, Array(key.utf8))
            kv.delimited(2, any.bytes)
        }
        return kv.bytes
    }

    static func request(attributes: [[UInt8]], resourceAttributes: [[UInt8]]) -> [UInt8] {
        var span = Wire()
        span.delimited(1, [UInt8](repeating: 0xAB, count: 16))
        span.delimited(2, [UInt8](repeating: 0xCD, count: 8))
        span.delimited(5, Array("GET /dogs".utf8))
        for attribute in attributes { span.delimited(9, attribute) }
        var resource = Wire()
        for attribute in resourceAttributes { resource.delimited(1, attribute) }
        var scopeSpans = Wire()
        scopeSpans.delimited(1, Array([0x0A, 0x03] + Array("lib".utf8)))
        scopeSpans.delimited(2, span.bytes)
        var resourceSpans = Wire()
        resourceSpans.delimited(1, resource.bytes)
        resourceSpans.delimited(2, scopeSpans.bytes)
        var request = Wire()
        request.delimited(1, resourceSpans.bytes)
        return request.bytes
    }

    /// Keys that share a length and their first eight bytes, short keys, long keys (≥ 64 and ≥ 128
    /// bytes: two-byte lengths), and keys never selected.
    static let keyPool: [String] = [
        "a", "ab", "abc", "http.method", "http.methoe", "http.route", "http.status_code", "http.status_text",
        "service.name", "peer.service", "db.system", "k8s.pod.name", "k8s.pod.uid1",
        String(repeating: "x", count: 63), String(repeating: "x", count: 64) + "y", String(repeating: "x", count: 64) + "z",
        String(repeating: "long.key.", count: 16),
    ]

    static func value(_ random: inout SplitMix64) -> Written {
        switch random.next() % 9 {
        case 0: .string("")
        case 1: .string("GET")
        case 2: .string(String(repeating: "v", count: 127))
        case 3: .string(String(repeating: "w", count: 128 + Int(random.next() % 300)))  // two-byte lengths
        case 4: .int(Int64(random.next() % 1000))
        case 5: .int(-Int64(random.next() % 1000) - 1)  // ten-byte varint
        case 6: .int(Int64(bitPattern: random.next() >> 1))
        case 7: .bool(random.next() % 2 == 0)
        default: random.next() % 4 == 0 ? .array : .double(Double(Int64(random.next() % 10_000)) / 8)
        }
    }

    @Test func selectedAttributesDecodeAsWrittenInEveryShape() throws {
        var random = SplitMix64(seed: 25)
        for round in 0..<300 {
            let selected = Self.keyPool.filter { _ in random.next() % 2 == 0 }
            let selection = AttributeSelection(keys: selected)
            var written: [(String, Written)] = []
            var encoded: [[UInt8]] = []
            for _ in 0..<Int(random.next() % 12) {
                let key = Self.keyPool[Int(random.next() % UInt64(Self.keyPool.count))]
                let value = Self.value(&random)
                written.append((key, value))
                encoded.append(Self.keyValue(key, value, valueFirst: random.next() % 5 == 0))
            }
            let request = Self.request(attributes: encoded, resourceAttributes: [Self.keyValue("service.name", .string("dogs"), valueFirst: false)])
            var batch = SpanBatch(selection: selection)
            _ = try SpanDecoder(encoding: .otlpProto).decode(request, into: &batch)
            let span = try #require(batch.spans.first, "round \(round)")
            let expected = written.filter { selected.contains($0.0) }
            let decoded = Array(batch.attributes(of: span))
            #expect(decoded.count == expected.count, "round \(round)")
            for (attribute, (key, value)) in zip(decoded, expected) {
                #expect(selection.keys[Int(attribute.key.rawValue)] == key, "round \(round)")
                switch (attribute.value, value) {
                case (.string(let range), .string(let text)): #expect(batch.string(range) == text, "round \(round) \(key)")
                case (.int(let number), .int(let want)): #expect(number == want, "round \(round) \(key)")
                case (.bool(let flag), .bool(let want)): #expect(flag == want, "round \(round) \(key)")
                case (.double(let number), .double(let want)): #expect(number == want, "round \(round) \(key)")
                case (.array, .array): break
                default: Issue.record("round \(round) \(key): decoded \(attribute.value), wrote \(value)")
                }
            }
            #expect(batch.string(batch.serviceName(of: span)) == "dogs")
        }
    }

    /// The selection finds a key by one table probe and one comparison: keys that share their length,
    /// their first four and their last four bytes land on the same slot, so every one of them must
    /// still be found past the others, and a lookalike that is not selected must not be.
    @Test func keysThatShareTheirHomeSlotAreEachFound() throws {
        let lookalikes = (0..<60).map { "abcd-\(String(1000 + $0).dropFirst())-wxyz" }  // abcd-000-wxyz …
        let short = ["", "q", "qr", "qrs", "qrst"]
        var random = SplitMix64(seed: 235)
        for round in 0..<40 {
            let pool = lookalikes + short
            let selected = pool.filter { _ in random.next() % 2 == 0 }
            let selection = AttributeSelection(keys: selected)
            let written = pool.shuffled(using: &random)
            let request = Self.request(
                attributes: written.map { Self.keyValue($0, .string("v-" + $0), valueFirst: false) },
                resourceAttributes: [Self.keyValue("service.name", .string("dogs"), valueFirst: false)])
            var batch = SpanBatch(selection: selection)
            _ = try SpanDecoder(encoding: .otlpProto).decode(request, into: &batch)
            let span = try #require(batch.spans.first)
            let decoded = batch.attributes(of: span).map { attribute -> String in
                guard case .string(let range) = attribute.value else { return "?" }
                #expect(batch.string(range) == "v-" + selection.keys[Int(attribute.key.rawValue)], "round \(round)")
                return selection.keys[Int(attribute.key.rawValue)]
            }
            #expect(decoded == written.filter { selected.contains($0) }, "round \(round)")
        }
    }

    /// A span attribute whose key no selected key could match is checked without a call: it must be
    /// accepted or refused exactly as when its key is selected (the general walk validates it then).
    /// Each round damages one byte inside an attribute and decodes the message both ways.
    @Test func skippedAttributesAreValidatedLikeSelectedOnes() throws {
        var random = SplitMix64(seed: 2025)
        var refused = 0
        for round in 0..<3_000 {
            let key = Self.keyPool[Int(random.next() % UInt64(Self.keyPool.count))]
            let attribute = Self.keyValue(key, Self.value(&random), valueFirst: random.next() % 8 == 0)
            var damaged = attribute
            if random.next() % 4 != 0 {
                damaged[Int(random.next() % UInt64(damaged.count))] = UInt8(truncatingIfNeeded: random.next())
            }
            let request = Self.request(
                attributes: [Self.keyValue("http.route", .string("/dogs"), valueFirst: false), damaged],
                resourceAttributes: [Self.keyValue("service.name", .string("dogs"), valueFirst: false)])
            func outcome(_ selection: AttributeSelection) -> String {
                var batch = SpanBatch(selection: selection)
                do {
                    let decoded = try SpanDecoder(encoding: .otlpProto).decode(request, into: &batch)
                    return "accepted \(decoded.spans.count) spans, \(decoded.rejectedSpans) refused"
                } catch {
                    return "refused: \(error)"
                }
            }
            let selected = outcome(AttributeSelection(keys: [key]))
            #expect(outcome(.none) == selected, "round \(round): key \(key), bytes \(damaged)")
            if selected.hasPrefix("refused") { refused += 1 }
        }
        #expect(refused > 300, "the damage reaches the validation (\(refused) of 3 000 refused)")
    }

    /// Selected string attributes of a buffered trace point into its copy of the span (or resource):
    /// the payload holds each received byte once, and the values still read back as written.
    @Test func bufferedTracesCopyEachByteOnce() throws {
        let selection = AttributeSelection(keys: ["http.route", "k8s.pod.name"])
        let request = Self.request(
            attributes: [Self.keyValue("http.route", .string("/dogs/{id}"), valueFirst: false)],
            resourceAttributes: [
                Self.keyValue("service.name", .string("dogs"), valueFirst: false),
                Self.keyValue("k8s.pod.name", .string("dogs-7f9c"), valueFirst: false),
            ])
        var batch = SpanBatch(selection: selection)
        _ = try SpanDecoder(encoding: .otlpProto).decode(request, into: &batch)
        let span = try #require(batch.spans.first)
        var trace = TraceData(traceID: span.traceID)
        trace.append(span, from: batch, batchGeneration: 1)
        let resource = batch.resource(of: span)
        let scope = batch.scopes[Int(span.scopeIndex)]
        #expect(trace.payload.count == Int(span.encoded.count + resource.encoded.count + scope.encoded.count))
        let values = trace.attributes.compactMap { attribute -> String? in
            if case .string(let range) = attribute.value { return trace.string(range) }
            return nil
        }
        #expect(values == ["/dogs/{id}", "dogs-7f9c"])
        #expect(trace.string(trace.service(of: trace.spans[0])) == "dogs")
    }

    /// Resources repeat byte for byte across the messages of one poll (one process sends the same
    /// one every time): the decoder takes a repeat from its first copy. Every span must still read its
    /// own resource as written — also when another resource has the same length and the same last
    /// bytes — with the resource and its selected values inside the span's own message.
    @Test func repeatedResourcesDecodeAsWritten() throws {
        let selection = AttributeSelection(keys: ["k8s.pod.name", "http.status_code"])
        let variants: [(service: String, pod: String, code: Int64?)] = [
            ("dogs", "dogs-7f9c", nil),
            ("cats", "dogs-7f9c", nil),  // same length and tail as the first
            ("dogs", "dogs-7f9d", nil),  // same length, another tail
            ("dogs", "dogs-7f9c", 200),
            ("dogs", "dogs-7f9c", 201),  // same length and tail as the one before; another number
        ]
        func resourceAttributes(_ variant: (service: String, pod: String, code: Int64?)) -> [[UInt8]] {
            var attributes = [Self.keyValue("service.name", .string(variant.service), valueFirst: false)]
            if let code = variant.code { attributes.append(Self.keyValue("http.status_code", .int(code), valueFirst: false)) }
            return attributes + [Self.keyValue("k8s.pod.name", .string(variant.pod), valueFirst: false)]
        }
        var random = SplitMix64(seed: 2503)
        var batch = SpanBatch(selection: selection)
        var written: [(variant: Int, message: Range<Int>)] = []
        for _ in 0..<200 {
            let variant = Int(random.next() % UInt64(variants.count))
            let request = Self.request(attributes: [], resourceAttributes: resourceAttributes(variants[variant]))
            let start = batch.bytes.count
            _ = try SpanDecoder(encoding: .otlpProto).decode(request, into: &batch)
            written.append((variant, start..<batch.bytes.count))
        }
        #expect(batch.spans.count == written.count)
        for (span, (variant, message)) in zip(batch.spans, written) {
            let want = variants[variant]
            let resource = batch.resource(of: span)
            #expect(message.contains(resource.encoded.lowerBound) && resource.encoded.upperBound <= message.upperBound)
            #expect(batch.string(resource.serviceName) == want.service)
            let values = batch.attributes(of: resource).map { attribute -> String in
                switch attribute.value {
                case .string(let range):
                    #expect(message.contains(range.lowerBound))
                    return "\(selection.keys[Int(attribute.key.rawValue)])=\(batch.string(range))"
                case .int(let number): return "\(selection.keys[Int(attribute.key.rawValue)])=\(number)"
                default: return "?"
                }
            }
            #expect(values == (want.code.map { ["http.status_code=\($0)"] } ?? []) + ["k8s.pod.name=\(want.pod)"])
            var trace = TraceData(traceID: span.traceID)
            trace.append(span, from: batch, batchGeneration: 1)
            #expect(trace.payload.count == Int(span.encoded.count + resource.encoded.count + batch.scopes[Int(span.scopeIndex)].encoded.count))
            #expect(trace.string(trace.service(of: trace.spans[0])) == want.service)
        }
    }
}
