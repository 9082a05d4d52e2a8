/// Decodes OTLP/JSON (https://opentelemetry.io/docs/specs/otlp/#json-protobuf-encoding): the protobuf
/// JSON mapping with lowerCamelCase keys (original snake_case accepted too), trace and span ids as hex,
/// enums as integers (names accepted), 64-bit integers as strings or numbers, unknown keys ignored.
///
/// The JSON is transcoded to the protobuf `ExportTraceServiceRequest` inside the batch and decoded from
/// there, so every later stage sees one format and re-exports protobuf.
public struct JSONSpanDecoder: Sendable {
    public init() {}

    public func decode(_ message: UnsafeRawBufferPointer, into batch: inout SpanBatch) throws(OTLPDecodeError) -> DecodeOutcome {
        let mark = batch.mark
        var writer = ProtoWriter()
        swap(&writer.bytes, &batch.bytes)
        let start = writer.bytes.count
        var transcoder = JSONTranscoder(input: message)
        do throws(WireFault) {
            try transcoder.transcodeRequest(into: &writer)
        } catch {
            swap(&writer.bytes, &batch.bytes)
            batch.rollBack(to: mark)
            throw OTLPDecodeError(
                reason: error.reason, byteOffset: error.offset, path: transcoder.position.rendered(),
                detail: error.detail)
        }
        swap(&writer.bytes, &batch.bytes)
        guard batch.bytes.count < Int(UInt32.max) else {
            batch.rollBack(to: mark)
            throw OTLPDecodeError(reason: .tooLarge, byteOffset: 0, path: "", detail: "message exceeds what one batch addresses (4 GiB)")
        }
        return try ProtobufSpanDecoder().decodeInPlace(range: start..<batch.bytes.count, of: &batch, rollBackTo: mark)
    }
}

private let quote = UInt8(ascii: "\"")
private let backslash = UInt8(ascii: "\\")

/// A schema-directed, single-pass JSON reader that writes protobuf as it goes.
struct JSONTranscoder {
    let input: UnsafeRawBufferPointer
    var index = 0
    var position = ParsePosition()
    var depth = 0

    init(input: UnsafeRawBufferPointer) { self.input = input }

    // MARK: Lexing

    @inline(__always)
    mutating func skipWhitespace() {
        while index < input.count {
            switch input[index] {
            case 0x20, 0x09, 0x0A, 0x0D: index += 1
            default: return
            }
        }
    }

    mutating func peek() throws(WireFault) -> UInt8 {
        skipWhitespace()
        guard index < input.count else { throw WireFault(.invalidJSON, at: index, "unexpected end of JSON") }
        return input[index]
    }

    mutating func expect(_ byte: UInt8, _ what: StaticString) throws(WireFault) {
        guard try peek() == byte else {
            throw WireFault(input.isEmpty || index == 0 ? .invalidJSON : .invalidJSON, at: index, what)
        }
        index += 1
    }

    /// Consumes `byte` when it comes next.
    mutating func consume(_ byte: UInt8) throws(WireFault) -> Bool {
        if try peek() == byte {
            index += 1
            return true
        }
        return false
    }

    /// Reads a string without escapes as a range of the input, or nil when it has escapes (the caller
    /// then unescapes). `index` ends after the closing quote only when a range is returned.
    mutating func rawString() throws(WireFault) -> Range<Int>? {
        guard try peek() == quote else { throw WireFault(.wrongJSONType, at: index, "expected a string") }
        var i = index + 1
        while i < input.count {
            let byte = input[i]
            if byte == quote {
                let range = (index + 1)..<i
                index = i + 1
                return range
            }
            if byte == backslash { return nil }
            if byte < 0x20 { throw WireFault(.invalidJSON, at: i, "control character inside a string") }
            i += 1
        }
        throw WireFault(.invalidJSON, at: index, "unterminated string")
    }

    /// Reads a string, unescaping into `out`.
    mutating func string(appendingTo out: inout [UInt8]) throws(WireFault) {
        if let range = try rawString() {
            out.append(contentsOf: UnsafeRawBufferPointer(rebasing: input[range]))
            return
        }
        index += 1  // opening quote
        while index < input.count {
            let byte = input[index]
            if byte == quote {
                index += 1
                return
            }
            if byte < 0x20 { throw WireFault(.invalidJSON, at: index, "control character inside a string") }
            if byte != backslash {
                out.append(byte)
                index += 1
                continue
            }
            guard index + 1 < input.count else { break }
            let escaped = input[index + 1]
            index += 2
            switch escaped {
            case quote: out.append(quote)
            case backslash: out.append(backslash)
            case UInt8(ascii: "/"): out.append(UInt8(ascii: "/"))
            case UInt8(ascii: "b"): out.append(0x08)
            case UInt8(ascii: "f"): out.append(0x0C)
            case UInt8(ascii: "n"): out.append(0x0A)
            case UInt8(ascii: "r"): out.append(0x0D)
            case UInt8(ascii: "t"): out.append(0x09)
            case UInt8(ascii: "u"):
                var scalar = try hex4()
                if (0xD800..<0xDC00).contains(scalar) {
                    // A high surrogate must be followed by an escaped low surrogate.
                    guard index + 1 < input.count, input[index] == backslash, input[index + 1] == UInt8(ascii: "u") else {
                        throw WireFault(.invalidJSON, at: index, "lone high surrogate in \\u escape")
                    }
                    index += 2
                    let low = try hex4()
                    guard (0xDC00..<0xE000).contains(low) else {
                        throw WireFault(.invalidJSON, at: index, "invalid low surrogate in \\u escape")
                    }
                    scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                }
                guard let unicode = Unicode.Scalar(scalar) else {
                    throw WireFault(.invalidJSON, at: index, "invalid \\u escape")
                }
                out.append(contentsOf: UTF8.encode(unicode)!)
            default:
                throw WireFault(.invalidJSON, at: index - 1, "invalid escape character")
            }
        }
        throw WireFault(.invalidJSON, at: index, "unterminated string")
    }

    mutating func hex4() throws(WireFault) -> UInt32 {
        guard index + 4 <= input.count else { throw WireFault(.invalidJSON, at: index, "truncated \\u escape") }
        var value: UInt32 = 0
        for _ in 0..<4 {
            let digit = HexDigits.value(of: input[index])
            guard digit != 0xFF else { throw WireFault(.invalidJSON, at: index, "invalid hex digit in \\u escape") }
            value = value << 4 | UInt32(digit)
            index += 1
        }
        return value
    }

    /// Reads an object key and the colon after it; compares keys on raw bytes.
    mutating func key() throws(WireFault) -> JSONKey {
        guard let range = try rawString() else {
            // Keys with escapes are never OTLP field names; unescape only to skip correctly.
            var scratch: [UInt8] = []
            try string(appendingTo: &scratch)
            try expect(UInt8(ascii: ":"), "expected ':' after an object key")
            return JSONKey(input: input, range: 0..<0)
        }
        try expect(UInt8(ascii: ":"), "expected ':' after an object key")
        return JSONKey(input: input, range: range)
    }

    /// Iterates the members of an object; `body` must consume each value.
    mutating func object(_ body: (inout JSONTranscoder, JSONKey) throws(WireFault) -> Void) throws(WireFault) {
        guard try peek() == UInt8(ascii: "{") else { throw WireFault(.wrongJSONType, at: index, "expected an object") }
        depth += 1
        guard depth <= maximumNesting else { throw WireFault(.nestingTooDeep, at: index, "JSON nested deeper than 64 levels") }
        index += 1
        if try consume(UInt8(ascii: "}")) {
            depth -= 1
            return
        }
        while true {
            let key = try key()
            try body(&self, key)
            if try consume(UInt8(ascii: ",")) { continue }
            try expect(UInt8(ascii: "}"), "expected ',' or '}' in an object")
            depth -= 1
            return
        }
    }

    /// Iterates the elements of an array (`null` counts as empty); `body` must consume each element.
    mutating func array(_ body: (inout JSONTranscoder) throws(WireFault) -> Void) throws(WireFault) {
        if try consumeNull() { return }
        guard try peek() == UInt8(ascii: "[") else { throw WireFault(.wrongJSONType, at: index, "expected an array") }
        depth += 1
        guard depth <= maximumNesting else { throw WireFault(.nestingTooDeep, at: index, "JSON nested deeper than 64 levels") }
        index += 1
        if try consume(UInt8(ascii: "]")) {
            depth -= 1
            return
        }
        while true {
            try body(&self)
            if try consume(UInt8(ascii: ",")) { continue }
            try expect(UInt8(ascii: "]"), "expected ',' or ']' in an array")
            depth -= 1
            return
        }
    }

    mutating func consumeLiteral(_ literal: StaticString) -> Bool {
        let count = literal.utf8CodeUnitCount
        guard index + count <= input.count else { return false }
        for i in 0..<count where input[index + i] != literal.utf8Start[i] { return false }
        index += count
        return true
    }

    mutating func consumeNull() throws(WireFault) -> Bool {
        _ = try peek()
        return consumeLiteral("null")
    }

    /// Skips any JSON value (unknown fields).
    mutating func skipValue() throws(WireFault) {
        switch try peek() {
        case UInt8(ascii: "{"):
            try object { (this, _) throws(WireFault) in try this.skipValue() }
        case UInt8(ascii: "["):
            try array { (this) throws(WireFault) in try this.skipValue() }
        case quote:
            if try rawString() == nil {
                var scratch: [UInt8] = []
                try string(appendingTo: &scratch)
            }
        case UInt8(ascii: "t"):
            guard consumeLiteral("true") else { throw WireFault(.invalidJSON, at: index, "invalid literal") }
        case UInt8(ascii: "f"):
            guard consumeLiteral("false") else { throw WireFault(.invalidJSON, at: index, "invalid literal") }
        case UInt8(ascii: "n"):
            guard consumeLiteral("null") else { throw WireFault(.invalidJSON, at: index, "invalid literal") }
        default:
            _ = try numberText()
        }
    }

    /// The text of a JSON number literal.
    mutating func numberText() throws(WireFault) -> Range<Int> {
        _ = try peek()
        let start = index
        while index < input.count {
            switch input[index] {
            case UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "+"), UInt8(ascii: "."),
                UInt8(ascii: "e"), UInt8(ascii: "E"):
                index += 1
            default:
                if index == start { throw WireFault(.invalidJSON, at: start, "expected a JSON value") }
                return start..<index
            }
        }
        if index == start { throw WireFault(.invalidJSON, at: start, "expected a JSON value") }
        return start..<index
    }

    // MARK: Typed values

    /// An unsigned 64-bit integer from a number or a string of digits (proto JSON int64/fixed64).
    mutating func uint64() throws(WireFault) -> UInt64 {
        let start = index
        let text: Range<Int>
        if try peek() == quote {
            guard let raw = try rawString() else { throw WireFault(.invalidFieldValue, at: start, "expected an unsigned integer") }
            text = raw
        } else {
            guard input[index] != UInt8(ascii: "n") || !consumeLiteral("null") else { return 0 }
            text = try numberText()
        }
        if let value = parseUInt64(text) { return value }
        // Exponent or fraction forms ("1e3", "5.0") are legal JSON for an integral value.
        if let double = parseDouble(text), double >= 0, double < 18_446_744_073_709_551_616.0, double.rounded() == double {
            return UInt64(double)
        }
        throw WireFault(.invalidFieldValue, at: start, "expected an unsigned 64-bit integer")
    }

    /// A signed 64-bit integer from a number or a string.
    mutating func int64() throws(WireFault) -> Int64 {
        let start = index
        let text: Range<Int>
        if try peek() == quote {
            guard let raw = try rawString() else { throw WireFault(.invalidFieldValue, at: start, "expected an integer") }
            text = raw
        } else {
            text = try numberText()
        }
        var digits = text
        var negative = false
        if !digits.isEmpty, input[digits.lowerBound] == UInt8(ascii: "-") {
            negative = true
            digits = (digits.lowerBound + 1)..<digits.upperBound
        }
        if let magnitude = parseUInt64(digits) {
            if negative, magnitude <= UInt64(Int64.max) + 1 { return magnitude == UInt64(Int64.max) + 1 ? .min : -Int64(magnitude) }
            if !negative, magnitude <= UInt64(Int64.max) { return Int64(magnitude) }
        } else if let double = parseDouble(text), double.rounded() == double, double >= -9.2e18, double <= 9.2e18 {
            return Int64(double)
        }
        throw WireFault(.invalidFieldValue, at: start, "expected a signed 64-bit integer")
    }

    func parseUInt64(_ range: Range<Int>) -> UInt64? {
        guard !range.isEmpty, range.count <= 20 else { return nil }
        var value: UInt64 = 0
        for i in range {
            let byte = input[i]
            guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else { return nil }
            let (times10, o1) = value.multipliedReportingOverflow(by: 10)
            let (sum, o2) = times10.addingReportingOverflow(UInt64(byte - UInt8(ascii: "0")))
            if o1 || o2 { return nil }
            value = sum
        }
        return value
    }

    func parseDouble(_ range: Range<Int>) -> Double? {
        Double(String(decoding: UnsafeRawBufferPointer(rebasing: input[range]), as: UTF8.self))
    }

    mutating func double() throws(WireFault) -> Double {
        let start = index
        if try peek() == quote {
            guard let raw = try rawString() else { throw WireFault(.invalidFieldValue, at: start, "expected a number") }
            let text = String(decoding: UnsafeRawBufferPointer(rebasing: input[raw]), as: UTF8.self)
            switch text {
            case "NaN": return .nan
            case "Infinity": return .infinity
            case "-Infinity": return -.infinity
            default:
                if let value = Double(text) { return value }
                throw WireFault(.invalidFieldValue, at: start, "expected a number")
            }
        }
        let text = try numberText()
        guard let value = parseDouble(text) else { throw WireFault(.invalidFieldValue, at: start, "expected a number") }
        return value
    }

    mutating func bool() throws(WireFault) -> Bool {
        let start = index
        switch try peek() {
        case UInt8(ascii: "t") where consumeLiteral("true"): return true
        case UInt8(ascii: "f") where consumeLiteral("false"): return false
        default: throw WireFault(.wrongJSONType, at: start, "expected true or false")
        }
    }

    /// An enum given as its number or its proto name.
    mutating func enumValue(names: [StaticString]) throws(WireFault) -> UInt64 {
        let start = index
        if try peek() == quote {
            guard let raw = try rawString() else { throw WireFault(.invalidFieldValue, at: start, "unknown enum name") }
            let key = JSONKey(input: input, range: raw)
            for (number, name) in names.enumerated() where key == name { return UInt64(number) }
            throw WireFault(.invalidFieldValue, at: start, "unknown enum name")
        }
        let value = try int64()
        guard value >= 0 else { throw WireFault(.invalidFieldValue, at: start, "negative enum number") }
        return UInt64(value)
    }

    // MARK: Fields written to protobuf

    mutating func stringField(_ field: UInt32, _ out: inout ProtoWriter, keepEmpty: Bool = false) throws(WireFault) {
        if try consumeNull() { return }
        if let range = try rawString() {
            guard keepEmpty || !range.isEmpty else { return }
            out.writeBytesField(field, UnsafeRawBufferPointer(rebasing: input[range]))
            return
        }
        let nested = out.beginNested(field)
        try string(appendingTo: &out.bytes)
        out.endNested(nested)
    }

    /// A hex id (`traceId`, `spanId`, `parentSpanId`); empty strings are written as empty fields so the
    /// span is refused alone with the right reason.
    mutating func hexIDField(_ field: UInt32, _ out: inout ProtoWriter) throws(WireFault) {
        let start = index
        if try consumeNull() { return }
        guard let range = try rawString() else { throw WireFault(.invalidFieldValue, at: start, "id is not hex") }
        guard range.count % 2 == 0 else { throw WireFault(.invalidFieldValue, at: start, "id has an odd number of hex digits", value: range.count) }
        let nested = out.beginNested(field)
        var i = range.lowerBound
        while i < range.upperBound {
            let high = HexDigits.value(of: input[i])
            let low = HexDigits.value(of: input[i + 1])
            guard high != 0xFF, low != 0xFF else { throw WireFault(.invalidFieldValue, at: i, "id is not hex (OTLP/JSON ids are hex, not base64)") }
            out.bytes.append(high << 4 | low)
            i += 2
        }
        out.endNested(nested)
    }

    mutating func base64Field(_ field: UInt32, _ out: inout ProtoWriter) throws(WireFault) {
        let start = index
        if try consumeNull() { return }
        var text: [UInt8] = []
        try string(appendingTo: &text)
        let nested = out.beginNested(field)
        guard Base64.decode(text, appendingTo: &out.bytes) else {
            throw WireFault(.invalidFieldValue, at: start, "bytesValue is not base64")
        }
        out.endNested(nested)
    }

    mutating func uint64Field(_ field: UInt32, _ out: inout ProtoWriter, fixed: Bool) throws(WireFault) {
        let value = try uint64()
        guard value != 0 else { return }
        if fixed { out.writeFixed64Field(field, value) } else { out.writeVarintField(field, value) }
    }

    mutating func uint32Field(_ field: UInt32, _ out: inout ProtoWriter, fixed: Bool) throws(WireFault) {
        let start = index
        let value = try uint64()
        guard value <= UInt64(UInt32.max) else { throw WireFault(.invalidFieldValue, at: start, "value does not fit 32 bits") }
        guard value != 0 else { return }
        if fixed { out.writeFixed32Field(field, UInt32(value)) } else { out.writeVarintField(field, value) }
    }

    mutating func repeatedMessage(
        _ field: UInt32, _ out: inout ProtoWriter, _ body: (inout JSONTranscoder, inout ProtoWriter) throws(WireFault) -> Void
    ) throws(WireFault) {
        try array { (this) throws(WireFault) in
            let nested = out.beginNested(field)
            try body(&this, &out)
            out.endNested(nested)
        }
    }

    mutating func message(
        _ field: UInt32, _ out: inout ProtoWriter, _ body: (inout JSONTranscoder, inout ProtoWriter) throws(WireFault) -> Void
    ) throws(WireFault) {
        if try consumeNull() { return }
        let nested = out.beginNested(field)
        try body(&self, &out)
        out.endNested(nested)
    }

    // MARK: OTLP messages

    mutating func transcodeRequest(into out: inout ProtoWriter) throws(WireFault) {
        guard input.count > 0 else { throw WireFault(.invalidJSON, at: 0, "empty message") }
        guard try peek() == UInt8(ascii: "{") else { throw WireFault(.invalidJSON, at: index, "not JSON: expected '{'") }
        var resourceOrdinal = 0
        try object { (this, key) throws(WireFault) in
            if key == "resourceSpans" || key == "resource_spans" {
                try this.repeatedMessage(OTLPField.ExportTraceServiceRequest.resourceSpans, &out) { (this, out) throws(WireFault) in
                    this.position = ParsePosition(resourceSpans: resourceOrdinal)
                    try this.resourceSpans(&out)
                    resourceOrdinal += 1
                }
                this.position = ParsePosition()
            } else {
                try this.skipValue()
            }
        }
        skipWhitespace()
        guard index == input.count else { throw WireFault(.invalidJSON, at: index, "trailing characters after the JSON object") }
    }

    mutating func resourceSpans(_ out: inout ProtoWriter) throws(WireFault) {
        var scopeOrdinal = 0
        try object { (this, key) throws(WireFault) in
            if key == "resource" {
                this.position.field = "resource"
                try this.message(OTLPField.ResourceSpans.resource, &out) { (this, out) throws(WireFault) in try this.resource(&out) }
                this.position.field = ""
            } else if key == "scopeSpans" || key == "scope_spans" {
                try this.repeatedMessage(OTLPField.ResourceSpans.scopeSpans, &out) { (this, out) throws(WireFault) in
                    this.position.scopeSpans = scopeOrdinal
                    try this.scopeSpans(&out)
                    scopeOrdinal += 1
                    this.position.scopeSpans = -1
                    this.position.span = -1
                }
            } else if key == "schemaUrl" || key == "schema_url" {
                try this.stringField(OTLPField.ResourceSpans.schemaURL, &out)
            } else {
                try this.skipValue()
            }
        }
    }

    mutating func resource(_ out: inout ProtoWriter) throws(WireFault) {
        try object { (this, key) throws(WireFault) in
            if key == "attributes" {
                try this.repeatedMessage(OTLPField.Resource.attributes, &out) { (this, out) throws(WireFault) in try this.keyValue(&out) }
            } else if key == "droppedAttributesCount" || key == "dropped_attributes_count" {
                try this.uint32Field(OTLPField.Resource.droppedAttributesCount, &out, fixed: false)
            } else {
                try this.skipValue()
            }
        }
    }

    mutating func scopeSpans(_ out: inout ProtoWriter) throws(WireFault) {
        var spanOrdinal = 0
        try object { (this, key) throws(WireFault) in
            if key == "scope" {
                this.position.field = "scope"
                try this.message(OTLPField.ScopeSpans.scope, &out) { (this, out) throws(WireFault) in try this.scope(&out) }
                this.position.field = ""
            } else if key == "spans" {
                try this.repeatedMessage(OTLPField.ScopeSpans.spans, &out) { (this, out) throws(WireFault) in
                    this.position.span = spanOrdinal
                    try this.span(&out)
                    spanOrdinal += 1
                    this.position.span = -1
                    this.position.field = ""
                }
            } else if key == "schemaUrl" || key == "schema_url" {
                try this.stringField(OTLPField.ScopeSpans.schemaURL, &out)
            } else {
                try this.skipValue()
            }
        }
    }

    mutating func scope(_ out: inout ProtoWriter) throws(WireFault) {
        try object { (this, key) throws(WireFault) in
            if key == "name" {
                try this.stringField(OTLPField.InstrumentationScope.name, &out)
            } else if key == "version" {
                try this.stringField(OTLPField.InstrumentationScope.version, &out)
            } else if key == "attributes" {
                try this.repeatedMessage(OTLPField.InstrumentationScope.attributes, &out) { (this, out) throws(WireFault) in try this.keyValue(&out) }
            } else if key == "droppedAttributesCount" || key == "dropped_attributes_count" {
                try this.uint32Field(OTLPField.InstrumentationScope.droppedAttributesCount, &out, fixed: false)
            } else {
                try this.skipValue()
            }
        }
    }

    mutating func span(_ out: inout ProtoWriter) throws(WireFault) {
        try object { (this, key) throws(WireFault) in
            switch key {
            case "traceId", "trace_id":
                this.position.field = "traceId"
                try this.hexIDField(OTLPField.Span.traceID, &out)
            case "spanId", "span_id":
                this.position.field = "spanId"
                try this.hexIDField(OTLPField.Span.spanID, &out)
            case "traceState", "trace_state":
                this.position.field = "traceState"
                try this.stringField(OTLPField.Span.traceState, &out)
            case "parentSpanId", "parent_span_id":
                this.position.field = "parentSpanId"
                let start = this.index
                if try this.peek() == quote, let raw = try this.rawString(), raw.isEmpty { return }  // root span
                this.index = start
                try this.hexIDField(OTLPField.Span.parentSpanID, &out)
            case "flags":
                this.position.field = "flags"
                try this.uint32Field(OTLPField.Span.flags, &out, fixed: true)
            case "name":
                this.position.field = "name"
                try this.stringField(OTLPField.Span.name, &out)
            case "kind":
                this.position.field = "kind"
                let kind = try this.enumValue(names: spanKindNames)
                if kind != 0 { out.writeVarintField(OTLPField.Span.kind, kind) }
            case "startTimeUnixNano", "start_time_unix_nano":
                this.position.field = "startTimeUnixNano"
                try this.uint64Field(OTLPField.Span.startTimeUnixNano, &out, fixed: true)
            case "endTimeUnixNano", "end_time_unix_nano":
                this.position.field = "endTimeUnixNano"
                try this.uint64Field(OTLPField.Span.endTimeUnixNano, &out, fixed: true)
            case "attributes":
                this.position.field = "attributes"
                try this.repeatedMessage(OTLPField.Span.attributes, &out) { (this, out) throws(WireFault) in try this.keyValue(&out) }
            case "droppedAttributesCount", "dropped_attributes_count":
                try this.uint32Field(OTLPField.Span.droppedAttributesCount, &out, fixed: false)
            case "events":
                this.position.field = "events"
                try this.repeatedMessage(OTLPField.Span.events, &out) { (this, out) throws(WireFault) in try this.event(&out) }
            case "droppedEventsCount", "dropped_events_count":
                try this.uint32Field(OTLPField.Span.droppedEventsCount, &out, fixed: false)
            case "links":
                this.position.field = "links"
                try this.repeatedMessage(OTLPField.Span.links, &out) { (this, out) throws(WireFault) in try this.link(&out) }
            case "droppedLinksCount", "dropped_links_count":
                try this.uint32Field(OTLPField.Span.droppedLinksCount, &out, fixed: false)
            case "status":
                this.position.field = "status"
                try this.message(OTLPField.Span.status, &out) { (this, out) throws(WireFault) in try this.status(&out) }
            default:
                try this.skipValue()
            }
        }
    }

    mutating func event(_ out: inout ProtoWriter) throws(WireFault) {
        try object { (this, key) throws(WireFault) in
            switch key {
            case "timeUnixNano", "time_unix_nano": try this.uint64Field(OTLPField.Event.timeUnixNano, &out, fixed: true)
            case "name": try this.stringField(OTLPField.Event.name, &out)
            case "attributes":
                try this.repeatedMessage(OTLPField.Event.attributes, &out) { (this, out) throws(WireFault) in try this.keyValue(&out) }
            case "droppedAttributesCount", "dropped_attributes_count": try this.uint32Field(OTLPField.Event.droppedAttributesCount, &out, fixed: false)
            default: try this.skipValue()
            }
        }
    }

    mutating func link(_ out: inout ProtoWriter) throws(WireFault) {
        try object { (this, key) throws(WireFault) in
            switch key {
            case "traceId", "trace_id": try this.hexIDField(OTLPField.Link.traceID, &out)
            case "spanId", "span_id": try this.hexIDField(OTLPField.Link.spanID, &out)
            case "traceState", "trace_state": try this.stringField(OTLPField.Link.traceState, &out)
            case "attributes":
                try this.repeatedMessage(OTLPField.Link.attributes, &out) { (this, out) throws(WireFault) in try this.keyValue(&out) }
            case "droppedAttributesCount", "dropped_attributes_count": try this.uint32Field(OTLPField.Link.droppedAttributesCount, &out, fixed: false)
            case "flags": try this.uint32Field(OTLPField.Link.flags, &out, fixed: true)
            default: try this.skipValue()
            }
        }
    }

    mutating func status(_ out: inout ProtoWriter) throws(WireFault) {
        try object { (this, key) throws(WireFault) in
            switch key {
            case "message": try this.stringField(OTLPField.Status.message, &out)
            case "code":
                let code = try this.enumValue(names: statusCodeNames)
                if code != 0 { out.writeVarintField(OTLPField.Status.code, code) }
            default: try this.skipValue()
            }
        }
    }

    mutating func keyValue(_ out: inout ProtoWriter) throws(WireFault) {
        try object { (this, key) throws(WireFault) in
            if key == "key" {
                try this.stringField(OTLPField.KeyValue.key, &out)
            } else if key == "value" {
                try this.message(OTLPField.KeyValue.value, &out) { (this, out) throws(WireFault) in try this.anyValue(&out) }
            } else {
                try this.skipValue()
            }
        }
    }

    mutating func anyValue(_ out: inout ProtoWriter) throws(WireFault) {
        try object { (this, key) throws(WireFault) in
            switch key {
            case "stringValue", "string_value": try this.stringField(OTLPField.AnyValue.stringValue, &out, keepEmpty: true)
            case "boolValue", "bool_value": out.writeVarintField(OTLPField.AnyValue.boolValue, try this.bool() ? 1 : 0)
            case "intValue", "int_value": out.writeVarintField(OTLPField.AnyValue.intValue, UInt64(bitPattern: try this.int64()))
            case "doubleValue", "double_value": out.writeDoubleField(OTLPField.AnyValue.doubleValue, try this.double())
            case "arrayValue", "array_value":
                try this.message(OTLPField.AnyValue.arrayValue, &out) { (this, out) throws(WireFault) in
                    try this.object { (this, key) throws(WireFault) in
                        if key == "values" {
                            try this.repeatedMessage(OTLPField.ArrayValue.values, &out) { (this, out) throws(WireFault) in try this.anyValue(&out) }
                        } else {
                            try this.skipValue()
                        }
                    }
                }
            case "kvlistValue", "kvlist_value":
                try this.message(OTLPField.AnyValue.kvlistValue, &out) { (this, out) throws(WireFault) in
                    try this.object { (this, key) throws(WireFault) in
                        if key == "values" {
                            try this.repeatedMessage(OTLPField.KeyValueList.values, &out) { (this, out) throws(WireFault) in try this.keyValue(&out) }
                        } else {
                            try this.skipValue()
                        }
                    }
                }
            case "bytesValue", "bytes_value": try this.base64Field(OTLPField.AnyValue.bytesValue, &out)
            default: try this.skipValue()
            }
        }
    }
}

private let spanKindNames: [StaticString] = [
    "SPAN_KIND_UNSPECIFIED", "SPAN_KIND_INTERNAL", "SPAN_KIND_SERVER", "SPAN_KIND_CLIENT", "SPAN_KIND_PRODUCER",
    "SPAN_KIND_CONSUMER",
]
private let statusCodeNames: [StaticString] = ["STATUS_CODE_UNSET", "STATUS_CODE_OK", "STATUS_CODE_ERROR"]

/// An object key as raw bytes of the input, comparable to string literals without allocating.
struct JSONKey {
    let input: UnsafeRawBufferPointer
    let range: Range<Int>

    static func == (key: JSONKey, literal: StaticString) -> Bool {
        guard key.range.count == literal.utf8CodeUnitCount else { return false }
        guard let base = key.input.baseAddress else { return key.range.isEmpty }
        return memcmpEqual(base + key.range.lowerBound, literal.utf8Start, key.range.count)
    }

    static func ~= (literal: StaticString, key: JSONKey) -> Bool { key == literal }
}

/// RFC 4648 base64, standard and URL-safe alphabets, padding optional (proto JSON accepts both).
enum Base64 {
    static func value(_ byte: UInt8) -> UInt8 {
        switch byte {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"): byte - UInt8(ascii: "A")
        case UInt8(ascii: "a")...UInt8(ascii: "z"): byte - UInt8(ascii: "a") + 26
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0") + 52
        case UInt8(ascii: "+"), UInt8(ascii: "-"): 62
        case UInt8(ascii: "/"), UInt8(ascii: "_"): 63
        default: 0xFF
        }
    }

    static func decode(_ text: [UInt8], appendingTo out: inout [UInt8]) -> Bool {
        var accumulator: UInt32 = 0
        var bits = 0
        var padding = 0
        for byte in text {
            if byte == UInt8(ascii: "=") {
                padding += 1
                continue
            }
            guard padding == 0 else { return false }
            let digit = value(byte)
            guard digit != 0xFF else { return false }
            accumulator = accumulator << 6 | UInt32(digit)
            bits += 6
            if bits >= 8 {
                bits -= 8
                out.append(UInt8(truncatingIfNeeded: accumulator >> UInt32(bits)))
            }
        }
        return padding <= 2
    }
}
