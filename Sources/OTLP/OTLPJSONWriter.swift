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
                guard field == 1, wireType == 2 else { try reader.skip(wireType: wireType); return }
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

    private static func fields(_ reader: inout WireReader, _ body: (UInt64, UInt8, inout WireReader) throws(WireFault) -> Void) throws(WireFault) {
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
            case (1, 2): parts.append("\"resource\":" + (try resource(base, try reader.readLengthDelimited())))
            case (2, 2):
                var scope = ""
                try scopeSpans(base, try reader.readLengthDelimited(), &scope)
                scopes.append(scope)
            case (3, 2): parts.append("\"schemaUrl\":" + string(base, try reader.readLengthDelimited()))
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
            case (1, 2): attributes.append(try keyValue(base, try reader.readLengthDelimited()))
            case (2, 0): dropped = try reader.readVarint()
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
            case (1, 2): parts.append("\"scope\":" + (try scope(base, try reader.readLengthDelimited())))
            case (2, 2): spans.append(try span(base, try reader.readLengthDelimited()))
            case (3, 2): parts.append("\"schemaUrl\":" + string(base, try reader.readLengthDelimited()))
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
            case (1, 2): out.set(1, "name", string(base, try reader.readLengthDelimited()))
            case (2, 2): out.set(2, "version", string(base, try reader.readLengthDelimited()))
            case (3, 2): out.append(3, "attributes", try keyValue(base, try reader.readLengthDelimited()))
            case (4, 0): out.set(4, "droppedAttributesCount", "\(try reader.readVarint())")
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
            case (1, 2): out.set(1, "traceId", hex(base, try reader.readLengthDelimited()))
            case (2, 2): out.set(2, "spanId", hex(base, try reader.readLengthDelimited()))
            case (3, 2): out.set(3, "traceState", string(base, try reader.readLengthDelimited()))
            case (4, 2): out.set(4, "parentSpanId", hex(base, try reader.readLengthDelimited()))
            case (5, 2): out.set(5, "name", string(base, try reader.readLengthDelimited()))
            case (6, 0): out.set(6, "kind", "\(try reader.readVarint())")
            case (7, 1): out.set(7, "startTimeUnixNano", "\"\(try reader.readFixed64())\"")
            case (8, 1): out.set(8, "endTimeUnixNano", "\"\(try reader.readFixed64())\"")
            case (9, 2): out.append(9, "attributes", try keyValue(base, try reader.readLengthDelimited()))
            case (10, 0): out.set(10, "droppedAttributesCount", "\(try reader.readVarint())")
            case (11, 2): out.append(11, "events", try event(base, try reader.readLengthDelimited()))
            case (12, 0): out.set(12, "droppedEventsCount", "\(try reader.readVarint())")
            case (13, 2): out.append(13, "links", try link(base, try reader.readLengthDelimited()))
            case (14, 0): out.set(14, "droppedLinksCount", "\(try reader.readVarint())")
            case (15, 2): out.set(15, "status", try status(base, try reader.readLengthDelimited()))
            case (16, 5): out.set(16, "flags", "\(try reader.readFixed32())")
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
            case (1, 1): out.set(1, "timeUnixNano", "\"\(try reader.readFixed64())\"")
            case (2, 2): out.set(2, "name", string(base, try reader.readLengthDelimited()))
            case (3, 2): out.append(3, "attributes", try keyValue(base, try reader.readLengthDelimited()))
            case (4, 0): out.set(4, "droppedAttributesCount", "\(try reader.readVarint())")
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
            case (1, 2): out.set(1, "traceId", hex(base, try reader.readLengthDelimited()))
            case (2, 2): out.set(2, "spanId", hex(base, try reader.readLengthDelimited()))
            case (3, 2): out.set(3, "traceState", string(base, try reader.readLengthDelimited()))
            case (4, 2): out.append(4, "attributes", try keyValue(base, try reader.readLengthDelimited()))
            case (5, 0): out.set(5, "droppedAttributesCount", "\(try reader.readVarint())")
            case (6, 5): out.set(6, "flags", "\(try reader.readFixed32())")
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
            case (2, 2): out.set(2, "message", string(base, try reader.readLengthDelimited()))
            case (3, 0): out.set(3, "code", "\(try reader.readVarint())")
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
            case (1, 2): key = string(base, try reader.readLengthDelimited())
            case (2, 2): value = try anyValue(base, try reader.readLengthDelimited())
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
            case (1, 2): result = "{\"stringValue\":" + string(base, try reader.readLengthDelimited()) + "}"
            case (2, 0): result = "{\"boolValue\":\(try reader.readVarint() != 0)}"
            case (3, 0): result = "{\"intValue\":\"\(Int64(bitPattern: try reader.readVarint()))\"}"
            case (4, 1):
                let double = Double(bitPattern: try reader.readFixed64())
                result = "{\"doubleValue\":" + (double.isFinite ? "\(double)" : double.isNaN ? "\"NaN\"" : double > 0 ? "\"Infinity\"" : "\"-Infinity\"") + "}"
            case (5, 2):
                var inner = WireReader(base: base, range: try reader.readLengthDelimited())
                var values: [String] = []
                try fields(&inner) { (f, w, r) throws(WireFault) in
                    if f == 1 && w == 2 { values.append(try anyValue(base, try r.readLengthDelimited())) } else { try r.skip(wireType: w) }
                }
                result = "{\"arrayValue\":{\"values\":[" + values.joined(separator: ",") + "]}}"
            case (6, 2):
                var inner = WireReader(base: base, range: try reader.readLengthDelimited())
                var values: [String] = []
                try fields(&inner) { (f, w, r) throws(WireFault) in
                    if f == 1 && w == 2 { values.append(try keyValue(base, try r.readLengthDelimited())) } else { try r.skip(wireType: w) }
                }
                result = "{\"kvlistValue\":{\"values\":[" + values.joined(separator: ",") + "]}}"
            case (7, 2): result = "{\"bytesValue\":\"" + base64(base, try reader.readLengthDelimited()) + "\"}"
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
    private var members: [(field: UInt64, key: String, value: String, repeated: Bool)] = []

    mutating func set(_ field: UInt64, _ key: String, _ value: String) {
        if let index = members.firstIndex(where: { $0.field == field }) {
            members[index].value = value
        } else {
            members.append((field, key, value, false))
        }
    }

    mutating func append(_ field: UInt64, _ key: String, _ value: String) {
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
