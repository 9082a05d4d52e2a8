/// Every attribute of an `ExportTraceServiceRequest`, span and resource, with its scalar value — for
/// the tag lists of Tempo's search API, which name what was stored whatever the rules selected.
public enum AttributeWalker {
    public enum Scope: Sendable, Equatable { case span, resource }

    public enum Value: Sendable, Hashable {
        case string(String), int(Int64), double(Double), bool(Bool)
        /// Arrays, maps, bytes, empty values: their key is listed, their value is not.
        case other
    }

    /// A value as it lies in the message (valid only inside the callback).
    public enum RawValue {
        case string(UnsafeRawBufferPointer), int(Int64), double(Double), bool(Bool), other
    }

    /// Calls `body` for each attribute of `request` (in wire order); throws on a malformed message.
    public static func forEach(in request: [UInt8], _ body: (Scope, String, Value) -> Void) throws(OTLPDecodeError) {
        let result: Result<Void, OTLPDecodeError> = request.withUnsafeBytes { raw in
            do throws(OTLPDecodeError) {
                try forEachRaw(in: raw) { scope, key, value in
                    let text = String(decoding: key, as: UTF8.self)
                    switch value {
                    case .string(let bytes): body(scope, text, .string(String(decoding: bytes, as: UTF8.self)))
                    case .int(let int): body(scope, text, .int(int))
                    case .double(let double): body(scope, text, .double(double))
                    case .bool(let bool): body(scope, text, .bool(bool))
                    case .other: body(scope, text, .other)
                    }
                }
                return .success(())
            } catch {
                return .failure(error)
            }
        }
        try result.get()
    }

    /// The same without allocating: keys and string values point into `request`. `skipResource` is
    /// asked with each `Resource` message's bytes first: true skips its attributes (a caller that has
    /// seen the same resource already).
    public static func forEachRaw(
        in request: UnsafeRawBufferPointer, skipResource: (UnsafeRawBufferPointer) -> Bool = { _ in false },
        _ body: (Scope, UnsafeRawBufferPointer, RawValue) -> Void
    ) throws(OTLPDecodeError) {
        let result: Result<Void, WireFault> = { (raw: UnsafeRawBufferPointer) in
            guard let base = raw.baseAddress else { return .success(()) }
            do throws(WireFault) {
                var top = WireReader(base: base, range: 0..<raw.count)
                while !top.isAtEnd {
                    let (field, wire) = try top.readTag()
                    guard field == OTLPField.ExportTraceServiceRequest.resourceSpans, wire == 2 else {
                        try top.skip(wireType: wire)
                        continue
                    }
                    var resourceSpans = WireReader(base: base, range: try top.readLengthDelimited())
                    while !resourceSpans.isAtEnd {
                        let (field, wire) = try resourceSpans.readTag()
                        if field == OTLPField.ResourceSpans.resource, wire == 2 {
                            let resource = try resourceSpans.readLengthDelimited()
                            if skipResource(bytes(base, resource)) { continue }
                            try attributes(base, resource, field: OTLPField.Resource.attributes, scope: .resource, body)
                        } else if field == OTLPField.ResourceSpans.scopeSpans, wire == 2 {
                            var scopeSpans = WireReader(base: base, range: try resourceSpans.readLengthDelimited())
                            while !scopeSpans.isAtEnd {
                                let (field, wire) = try scopeSpans.readTag()
                                if field == OTLPField.ScopeSpans.spans, wire == 2 {
                                    try attributes(base, try scopeSpans.readLengthDelimited(), field: OTLPField.Span.attributes, scope: .span, body)
                                } else {
                                    try scopeSpans.skip(wireType: wire)
                                }
                            }
                        } else {
                            try resourceSpans.skip(wireType: wire)
                        }
                    }
                }
                return .success(())
            } catch {
                return .failure(error)
            }
        }(request)
        if case .failure(let fault) = result {
            throw OTLPDecodeError(reason: fault.reason, byteOffset: fault.offset, path: "attributes", detail: fault.detail)
        }
    }

    /// The `KeyValue`s in field `field` of the message in `range`.
    private static func attributes(
        _ base: UnsafeRawPointer, _ range: Range<Int>, field wanted: UInt32, scope: Scope, _ body: (Scope, UnsafeRawBufferPointer, RawValue) -> Void
    ) throws(WireFault) {
        var message = WireReader(base: base, range: range)
        while !message.isAtEnd {
            let (field, wire) = try message.readTag()
            guard field == wanted, wire == 2 else {
                try message.skip(wireType: wire)
                continue
            }
            var keyValue = WireReader(base: base, range: try message.readLengthDelimited())
            var key = UnsafeRawBufferPointer(start: base, count: 0)
            var value = RawValue.other
            while !keyValue.isAtEnd {
                let (field, wire) = try keyValue.readTag()
                if field == OTLPField.KeyValue.key, wire == 2 {
                    key = bytes(base, try keyValue.readLengthDelimited())
                } else if field == OTLPField.KeyValue.value, wire == 2 {
                    var any = WireReader(base: base, range: try keyValue.readLengthDelimited())
                    while !any.isAtEnd {
                        let (field, wire) = try any.readTag()
                        switch (field, wire) {
                        case (OTLPField.AnyValue.stringValue, 2): value = .string(bytes(base, try any.readLengthDelimited()))
                        case (OTLPField.AnyValue.boolValue, 0): value = .bool(try any.readVarint() != 0)
                        case (OTLPField.AnyValue.intValue, 0): value = .int(Int64(bitPattern: try any.readVarint()))
                        case (OTLPField.AnyValue.doubleValue, 1): value = .double(Double(bitPattern: try any.readFixed64()))
                        default:
                            try any.skip(wireType: wire)
                            value = .other
                        }
                    }
                } else {
                    try keyValue.skip(wireType: wire)
                }
            }
            if key.count > 0 { body(scope, key, value) }
        }
    }

    private static func bytes(_ base: UnsafeRawPointer, _ range: Range<Int>) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: base + range.lowerBound, count: range.count)
    }
}
