/// Writes OTLP protobuf as OTLP/JSON (hex trace and span ids, lowerCamelCase keys, enums as numbers,
/// 64-bit integers as strings, bytes as base64), for `tailgate query` and Tempo's JSON API.
/// Schema-directed: fields it does not know are left out, as protobuf's JSON mapping does.
public enum OTLPJSONWriter {
    /// `{"resourceSpans":[...]}` for an `ExportTraceServiceRequest` (or tempopb `Trace`, same field 1).
    public static func request(_ bytes: [UInt8], key: String = "resourceSpans") throws(OTLPDecodeError) -> String {
        var out = "{\"\(key)\":["
        try walk(bytes) { (reader, base) throws(WireFault) in
            var first = true
            try fields(&reader) { (field, wireType, reader) throws(WireFault) in
                guard field == OTLPField.ExportTraceServiceRequest.resourceSpans, wireType == 2 else { try reader.skip(wireType: wireType); return }
                if !first { out += "," }
                first = false
                try resourceSpans(base, try reader.readLengthDelimited(), &out)
            }
        }
        return out + "]}"
    }

    /// The JSON of one `ResourceSpans` message.
    public static func resourceSpans(_ bytes: [UInt8]) throws(OTLPDecodeError) -> String {
        var out = ""
        try walk(bytes) { (reader, base) throws(WireFault) in try resourceSpans(base, 0..<bytes.count, &out) }
        return out
    }

    private static func walk(_ bytes: [UInt8], _ body: (inout WireReader, UnsafeRawPointer) throws(WireFault) -> Void) throws(OTLPDecodeError) {
        let result: Result<Void, WireFault> = bytes.withUnsafeBytes { raw in
            guard let base = raw.baseAddress else { return .success(()) }
            var reader = WireReader(base: base, range: 0..<raw.count)
            do throws(WireFault) {
                try body(&reader, base)
                return .success(())
            } catch {
                return .failure(error)
            }
        }
        if case .failure(let fault) = result {
            throw OTLPDecodeError(reason: fault.reason, byteOffset: fault.offset, path: "", detail: fault.detail)
        }
    }

    private static func fields(_ reader: inout WireReader, _ body: (UInt32, UInt8, inout WireReader) throws(WireFault) -> Void) throws(WireFault) {
        while !reader.isAtEnd {
            let (field, wireType) = try reader.readTag()
            try body(field, wireType, &reader)
        }
    }

    private static func resourceSpans(_ base: UnsafeRawPointer, _ range: Range<Int>, _ out: inout String) throws(WireFault) {
        var reader = WireReader(base: base, range: range)
        var parts: [String] = []
        var scopes: [String] = []
        try fields(&reader) { (field, wireType, reader) throws(WireFault) in
            switch (field, wireType) {
            case (OTLPField.ResourceSpans.resource, 2): parts.append("\"resource\":" + (try resource(base, try reader.readLengthDelimited())))
            case (OTLPField.ResourceSpans.scopeSpans, 2):
                var scope = ""
                try scopeSpans(base, try reader.readLengthDelimited(), &scope)
                scopes.append(scope)
            case (OTLPField.ResourceSpans.schemaURL, 2): parts.append("\"schemaUrl\":" + string(base, try reader.readLengthDelimited()))
            default: try reader.skip(wireType: wireType)
            }
        }
        parts.insert("\"scopeSpans\":[" + scopes.joined(separator: ",") + "]", at: min(1, parts.count))
        out += "{" + parts.joined(separator: ",") + "}"
    }

    private static func resource(_ base: UnsafeRawPointer, _ range: Range<Int>) throws(WireFault) -> String {
        var reader = WireReader(base: base, range: range)
        var attributes: [String] = []
        var dropped: UInt64 = 0
        try fields(&reader) { (field, wireType, reader) throws(WireFault) in
            switch (field, wireType) {
            case (OTLPField.Resource.attributes, 2): attributes.append(try keyValue(base, try reader.readLengthDelimited()))
            case (OTLPField.Resource.droppedAttributesCount, 0): dropped = try reader.readVarint()
            default: try reader.skip(wireType: wireType)
            }
        }
        var parts = ["\"attributes\":[" + attributes.joined(separator: ",") + "]"]
        if dropped > 0 { parts.append("\"droppedAttributesCount\":\(dropped)") }
        return "{" + parts.joined(separator: ",") + "}"
    }

    private static func scopeSpans(_ base: UnsafeRawPointer, _ range: Range<Int>, _ out: inout String) throws(WireFault) {
        var reader = WireReader(base: base, range: range)
        var parts: [String] = []
        var spans: [String] = []
        try fields(&reader) { (field, wireType, reader) throws(WireFault) in
            switch (field, wireType) {
            case (OTLPField.ScopeSpans.scope, 2): parts.append("\"scope\":" + (try scope(base, try reader.readLengthDelimited())))
            case (OTLPField.ScopeSpans.spans, 2): spans.append(try span(base, try reader.readLengthDelimited()))
            case (OTLPField.ScopeSpans.schemaURL, 2): parts.append("\"schemaUrl\":" + string(base, try reader.readLengthDelimited()))
            default: try reader.skip(wireType: wireType)
            }
        }
        parts.insert("\"spans\":[" + spans.joined(separator: ",") + "]", at: min(1, parts.count))
        out += "{" + parts.joined(separator: ",") + "}"
    }

    private static func scope(_ base: UnsafeRawPointer, _ range: Range<Int>) throws(WireFault) -> String {
        var reader = WireReader(base: base, range: range)
        var out = JSONFields()
        try fields(&reader) { (field, wireType, reader) throws(WireFault) in
            switch (field, wireType) {
            case (OTLPField.InstrumentationScope.name, 2): out.set(OTLPField.InstrumentationScope.name, "name", string(base, try reader.readLengthDelimited()))
            case (OTLPField.InstrumentationScope.version, 2): out.set(OTLPField.InstrumentationScope.version, "version", string(base, try reader.readLengthDelimited()))
            case (OTLPField.InstrumentationScope.attributes, 2): out.append(OTLPField.InstrumentationScope.attributes, "attributes", try keyValue(base, try reader.readLengthDelimited()))
            case (OTLPField.InstrumentationScope.droppedAttributesCount, 0): out.set(OTLPField.InstrumentationScope.droppedAttributesCount, "droppedAttributesCount", "\(try reader.readVarint())")
            default: try reader.skip(wireType: wireType)
            }
        }
        return out.rendered
    }

    private static func span(_ base: UnsafeRawPointer, _ range: Range<Int>) throws(WireFault) -> String {
        var reader = WireReader(base: base, range: range)
        var out = JSONFields()
        try fields(&reader) { (field, wireType, reader) throws(WireFault) in
            switch (field, wireType) {
            case (OTLPField.Span.traceID, 2): out.set(OTLPField.Span.traceID, "traceId", hex(base, try reader.readLengthDelimited()))
            case (OTLPField.Span.spanID, 2): out.set(OTLPField.Span.spanID, "spanId", hex(base, try reader.readLengthDelimited()))
            case (OTLPField.Span.traceState, 2): out.set(OTLPField.Span.traceState, "traceState", string(base, try reader.readLengthDelimited()))
            case (OTLPField.Span.parentSpanID, 2): out.set(OTLPField.Span.parentSpanID, "parentSpanId", hex(base, try reader.readLengthDelimited()))
            case (OTLPField.Span.name, 2): out.set(OTLPField.Span.name, "name", string(base, try reader.readLengthDelimited()))
            case (OTLPField.Span.kind, 0): out.set(OTLPField.Span.kind, "kind", "\(try reader.readVarint())")
            case (OTLPField.Span.startTimeUnixNano, 1): out.set(OTLPField.Span.startTimeUnixNano, "startTimeUnixNano", "\"\(try reader.readFixed64())\"")
            case (OTLPField.Span.endTimeUnixNano, 1): out.set(OTLPField.Span.endTimeUnixNano, "endTimeUnixNano", "\"\(try reader.readFixed64())\"")
            case (OTLPField.Span.attributes, 2): out.append(OTLPField.Span.attributes, "attributes", try keyValue(base, try reader.readLengthDelimited()))
            case (OTLPField.Span.droppedAttributesCount, 0): out.set(OTLPField.Span.droppedAttributesCount, "droppedAttributesCount", "\(try reader.readVarint())")
            case (OTLPField.Span.events, 2): out.append(OTLPField.Span.events, "events", try event(base, try reader.readLengthDelimited()))
            case (OTLPField.Span.droppedEventsCount, 0): out.set(OTLPField.Span.droppedEventsCount, "droppedEventsCount", "\(try reader.readVarint())")
            case (OTLPField.Span.links, 2): out.append(OTLPField.Span.links, "links", try link(base, try reader.readLengthDelimited()))
            case (OTLPField.Span.droppedLinksCount, 0): out.set(OTLPField.Span.droppedLinksCount, "droppedLinksCount", "\(try reader.readVarint())")
            case (OTLPField.Span.status, 2): out.set(OTLPField.Span.status, "status", try status(base, try reader.readLengthDelimited()))
            case (OTLPField.Span.flags, 5): out.set(OTLPField.Span.flags, "flags", "\(try reader.readFixed32())")
            default: try reader.skip(wireType: wireType)
            }
        }
        return out.rendered
    }

    private static func event(_ base: UnsafeRawPointer, _ range: Range<Int>) throws(WireFault) -> String {
        var reader = WireReader(base: base, range: range)
        var out = JSONFields()
        try fields(&reader) { (field, wireType, reader) throws(WireFault) in
            switch (field, wireType) {
            case (OTLPField.Event.timeUnixNano, 1): out.set(OTLPField.Event.timeUnixNano, "timeUnixNano", "\"\(try reader.readFixed64())\"")
            case (OTLPField.Event.name, 2): out.set(OTLPField.Event.name, "name", string(base, try reader.readLengthDelimited()))
            case (OTLPField.Event.attributes, 2): out.append(OTLPField.Event.attributes, "attributes", try keyValue(base, try reader.readLengthDelimited()))
            case (OTLPField.Event.droppedAttributesCount, 0): out.set(OTLPField.Event.droppedAttributesCount, "droppedAttributesCount", "\(try reader.readVarint())")
            default: try reader.skip(wireType: wireType)
            }
        }
        return out.rendered
    }

    private static func link(_ base: UnsafeRawPointer, _ range: Range<Int>) throws(WireFault) -> String {
        var reader = WireReader(base: base, range: range)
        var out = JSONFields()
        try fields(&reader) { (field, wireType, reader) throws(WireFault) in
            switch (field, wireType) {
            case (OTLPField.Link.traceID, 2): out.set(OTLPField.Link.traceID, "traceId", hex(base, try reader.readLengthDelimited()))
            case (OTLPField.Link.spanID, 2): out.set(OTLPField.Link.spanID, "spanId", hex(base, try reader.readLengthDelimited()))
            case (OTLPField.Link.traceState, 2): out.set(OTLPField.Link.traceState, "traceState", string(base, try reader.readLengthDelimited()))
            case (OTLPField.Link.attributes, 2): out.append(OTLPField.Link.attributes, "attributes", try keyValue(base, try reader.readLengthDelimited()))
            case (OTLPField.Link.droppedAttributesCount, 0): out.set(OTLPField.Link.droppedAttributesCount, "droppedAttributesCount", "\(try reader.readVarint())")
            case (OTLPField.Link.flags, 5): out.set(OTLPField.Link.flags, "flags", "\(try reader.readFixed32())")
            default: try reader.skip(wireType: wireType)
            }
        }
        return out.rendered
    }

    private static func status(_ base: UnsafeRawPointer, _ range: Range<Int>) throws(WireFault) -> String {
        var reader = WireReader(base: base, range: range)
        var out = JSONFields()
        try fields(&reader) { (field, wireType, reader) throws(WireFault) in
            switch (field, wireType) {
            case (OTLPField.Status.message, 2): out.set(OTLPField.Status.message, "message", string(base, try reader.readLengthDelimited()))
            case (OTLPField.Status.code, 0): out.set(OTLPField.Status.code, "code", "\(try reader.readVarint())")
            default: try reader.skip(wireType: wireType)
            }
        }
        return out.rendered
    }

    private static func keyValue(_ base: UnsafeRawPointer, _ range: Range<Int>) throws(WireFault) -> String {
        var reader = WireReader(base: base, range: range)
        var key = "\"\""
        var value = "{}"
        try fields(&reader) { (field, wireType, reader) throws(WireFault) in
            switch (field, wireType) {
            case (OTLPField.KeyValue.key, 2): key = string(base, try reader.readLengthDelimited())
            case (OTLPField.KeyValue.value, 2): value = try anyValue(base, try reader.readLengthDelimited())
            default: try reader.skip(wireType: wireType)
            }
        }
        return "{\"key\":\(key),\"value\":\(value)}"
    }

    private static func anyValue(_ base: UnsafeRawPointer, _ range: Range<Int>) throws(WireFault) -> String {
        var reader = WireReader(base: base, range: range)
        var result = "{}"
        try fields(&reader) { (field, wireType, reader) throws(WireFault) in
            switch (field, wireType) {
            case (OTLPField.AnyValue.stringValue, 2): result = "{\"stringValue\":" + string(base, try reader.readLengthDelimited()) + "}"
            case (OTLPField.AnyValue.boolValue, 0): result = "{\"boolValue\":\(try reader.readVarint() != 0)}"
            case (OTLPField.AnyValue.intValue, 0): result = "{\"intValue\":\"\(Int64(bitPattern: try reader.readVarint()))\"}"
            case (OTLPField.AnyValue.doubleValue, 1):
                let double = Double(bitPattern: try reader.readFixed64())
                result = "{\"doubleValue\":" + (double.isFinite ? "\(double)" : double.isNaN ? "\"NaN\"" : double > 0 ? "\"Infinity\"" : "\"-Infinity\"") + "}"
            case (OTLPField.AnyValue.arrayValue, 2):
                var inner = WireReader(base: base, range: try reader.readLengthDelimited())
                var values: [String] = []
                try fields(&inner) { (f, w, r) throws(WireFault) in
                    if f == OTLPField.ArrayValue.values && w == 2 { values.append(try anyValue(base, try r.readLengthDelimited())) } else { try r.skip(wireType: w) }
                }
                result = "{\"arrayValue\":{\"values\":[" + values.joined(separator: ",") + "]}}"
            case (OTLPField.AnyValue.kvlistValue, 2):
                var inner = WireReader(base: base, range: try reader.readLengthDelimited())
                var values: [String] = []
                try fields(&inner) { (f, w, r) throws(WireFault) in
                    if f == OTLPField.KeyValueList.values && w == 2 { values.append(try keyValue(base, try r.readLengthDelimited())) } else { try r.skip(wireType: w) }
                }
                result = "{\"kvlistValue\":{\"values\":[" + values.joined(separator: ",") + "]}}"
            case (OTLPField.AnyValue.bytesValue, 2): result = "{\"bytesValue\":\"" + base64(base, try reader.readLengthDelimited()) + "\"}"
            default: try reader.skip(wireType: wireType)
            }
        }
        return result
    }

    static func hex(_ base: UnsafeRawPointer, _ range: Range<Int>) -> String {
        "\"" + HexDigits.string(UnsafeRawBufferPointer(start: base + range.lowerBound, count: range.count)) + "\""
    }

    static func string(_ base: UnsafeRawPointer, _ range: Range<Int>) -> String {
        JSONText.quoted(String(decoding: UnsafeRawBufferPointer(start: base + range.lowerBound, count: range.count), as: UTF8.self))
    }

    static func base64(_ base: UnsafeRawPointer, _ range: Range<Int>) -> String {
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)
        let bytes = UnsafeRawBufferPointer(start: base + range.lowerBound, count: range.count)
        var out = [UInt8]()
        var i = 0
        while i + 3 <= bytes.count {
            let n = UInt32(bytes[i]) << 16 | UInt32(bytes[i + 1]) << 8 | UInt32(bytes[i + 2])
            out += [alphabet[Int(n >> 18)], alphabet[Int(n >> 12 & 63)], alphabet[Int(n >> 6 & 63)], alphabet[Int(n & 63)]]
            i += 3
        }
        let rest = bytes.count - i
        if rest > 0 {
            let n = UInt32(bytes[i]) << 16 | (rest == 2 ? UInt32(bytes[i + 1]) << 8 : 0)
            out += [alphabet[Int(n >> 18)], alphabet[Int(n >> 12 & 63)]]
            out += rest == 2 ? [alphabet[Int(n >> 6 & 63)], UInt8(ascii: "=")] : [UInt8(ascii: "="), UInt8(ascii: "=")]
        }
        return String(decoding: out, as: UTF8.self)
    }
}

/// JSON members kept in protobuf field-number order (as protobuf's JSON mapping writes them), so
/// that JSON read back encodes to the same protobuf bytes. Repeated fields become arrays.
struct JSONFields {
    private var members: [(field: UInt32, key: String, value: String, repeated: Bool)] = []

    mutating func set(_ field: UInt32, _ key: String, _ value: String) {
        if let index = members.firstIndex(where: { $0.field == field }) {
            members[index].value = value
        } else {
            members.append((field, key, value, false))
        }
    }

    mutating func append(_ field: UInt32, _ key: String, _ value: String) {
        if let index = members.firstIndex(where: { $0.field == field }) {
            members[index].value += "," + value
        } else {
            members.append((field, key, value, true))
        }
    }

    var rendered: String {
        "{" + members.sorted { $0.field < $1.field }.map { member in
            "\"\(member.key)\":" + (member.repeated ? "[\(member.value)]" : member.value)
        }.joined(separator: ",") + "}"
    }
}
