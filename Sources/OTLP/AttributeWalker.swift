/// Every attribute of an `ExportTraceServiceRequest`, span and resource, with its scalar value, and
/// what a block summary needs of each span — for the tag lists of Tempo's search API, which name
/// what was stored whatever the rules selected.
public enum AttributeWalker {
    public enum Scope: Sendable, Equatable { case span, resource }

    /// A value as it lies in the message (valid only inside the callback).
    public enum RawValue {
        case string(UnsafeRawBufferPointer), int(Int64), double(Double), bool(Bool), other
    }

    /// What a block summary reads of a span (its byte fields valid only inside the callback).
    public struct SpanSketch {
        public var name: UnsafeRawBufferPointer
        public var startTimeUnixNano: UInt64 = 0
        public var endTimeUnixNano: UInt64 = 0
        public var isError = false
        /// No parent span id, or an all-zero one.
        public var isRoot = true
        /// The `service.name` of the resource it came under (empty when none).
        public var service: UnsafeRawBufferPointer

        public var durationNanos: UInt64 { endTimeUnixNano >= startTimeUnixNano ? endTimeUnixNano - startTimeUnixNano : 0 }
    }

    /// One pass over `request` for a block summary: every attribute with its scalar value (a
    /// resource's first, then each span's, in wire order), and after each span's attributes
    /// its sketch — only for spans the decoder would keep (a 16-byte non-zero trace id, an 8-byte
    /// non-zero span id, a parent id empty or of 8 bytes). Resources `skipResource` says were seen
    /// still give their spans their service name.
    public static func forEachSpan(
        in request: UnsafeRawBufferPointer, skipResource: (UnsafeRawBufferPointer) -> Bool,
        span spanBody: (SpanSketch) -> Void, attribute body: (Scope, UnsafeRawBufferPointer, RawValue) -> Void
    ) throws(OTLPDecodeError) {
        guard let base = request.baseAddress else { return }
        do throws(WireFault) {
            var top = WireReader(base: base, range: 0..<request.count)
            while !top.isAtEnd {
                let (field, wire) = try top.readTag()
                guard field == OTLPField.ExportTraceServiceRequest.resourceSpans, wire == 2 else {
                    try top.skip(wireType: wire)
                    continue
                }
                let resourceSpans = try top.readLengthDelimited()
                // The resource first, wherever it lies: its service name is every span's.
                var service = UnsafeRawBufferPointer(start: base, count: 0)
                var reader = WireReader(base: base, range: resourceSpans)
                while !reader.isAtEnd {
                    let (field, wire) = try reader.readTag()
                    guard field == OTLPField.ResourceSpans.resource, wire == 2 else {
                        try reader.skip(wireType: wire)
                        continue
                    }
                    let resource = try reader.readLengthDelimited()
                    let skip = skipResource(bytes(base, resource))
                    try attributes(base, resource, field: OTLPField.Resource.attributes, scope: .resource) { scope, key, value in
                        if key.count == 12, memcmpEqual(key.baseAddress!, serviceNameKey.utf8Start, 12), case .string(let name) = value {
                            service = name
                        }
                        if !skip { body(scope, key, value) }
                    }
                }
                reader = WireReader(base: base, range: resourceSpans)
                while !reader.isAtEnd {
                    let (field, wire) = try reader.readTag()
                    guard field == OTLPField.ResourceSpans.scopeSpans, wire == 2 else {
                        try reader.skip(wireType: wire)
                        continue
                    }
                    var scopeSpans = WireReader(base: base, range: try reader.readLengthDelimited())
                    while !scopeSpans.isAtEnd {
                        let (field, wire) = try scopeSpans.readTag()
                        if field == OTLPField.ScopeSpans.spans, wire == 2 {
                            try sketch(base, try scopeSpans.readLengthDelimited(), service: service, spanBody, body)
                        } else {
                            try scopeSpans.skip(wireType: wire)
                        }
                    }
                }
            }
        } catch {
            throw OTLPDecodeError(reason: error.reason, byteOffset: error.offset, path: "spans", detail: error.detail)
        }
    }

    private static let serviceNameKey: StaticString = "service.name"

    /// One span of ``forEachSpan(in:skipResource:span:attribute:)``.
    private static func sketch(
        _ base: UnsafeRawPointer, _ range: Range<Int>, service: UnsafeRawBufferPointer,
        _ spanBody: (SpanSketch) -> Void, _ body: (Scope, UnsafeRawBufferPointer, RawValue) -> Void
    ) throws(WireFault) {
        var span = SpanSketch(name: UnsafeRawBufferPointer(start: base, count: 0), service: service)
        var valid = (trace: false, span: false, parent: true)
        var reader = WireReader(base: base, range: range)
        while !reader.isAtEnd {
            let (field, wire) = try reader.readTag()
            switch (field, wire) {
            case (OTLPField.Span.attributes, 2):
                let keyValue = try reader.readLengthDelimited()
                try attribute(base, keyValue, scope: .span, body)
            case (OTLPField.Span.traceID, 2):
                let id = try reader.readLengthDelimited()
                valid.trace = id.count == 16
                    && (base.loadUnaligned(fromByteOffset: id.lowerBound, as: UInt64.self) | base.loadUnaligned(fromByteOffset: id.lowerBound + 8, as: UInt64.self)) != 0
            case (OTLPField.Span.spanID, 2):
                let id = try reader.readLengthDelimited()
                valid.span = id.count == 8 && base.loadUnaligned(fromByteOffset: id.lowerBound, as: UInt64.self) != 0
            case (OTLPField.Span.parentSpanID, 2):
                let id = try reader.readLengthDelimited()
                valid.parent = id.count == 0 || id.count == 8
                span.isRoot = id.count != 8 || base.loadUnaligned(fromByteOffset: id.lowerBound, as: UInt64.self) == 0
            case (OTLPField.Span.name, 2):
                span.name = bytes(base, try reader.readLengthDelimited())
            case (OTLPField.Span.startTimeUnixNano, 1):
                span.startTimeUnixNano = try reader.readFixed64()
            case (OTLPField.Span.endTimeUnixNano, 1):
                span.endTimeUnixNano = try reader.readFixed64()
            case (OTLPField.Span.status, 2):
                var status = WireReader(base: base, range: try reader.readLengthDelimited())
                while !status.isAtEnd {
                    let (field, wire) = try status.readTag()
                    if field == OTLPField.Status.code, wire == 0 {
                        span.isError = try status.readVarint() == 2
                    } else {
                        try status.skip(wireType: wire)
                    }
                }
            default:
                try reader.skip(wireType: wire)
            }
        }
        if valid.trace, valid.span, valid.parent { spanBody(span) }
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
            try attribute(base, try message.readLengthDelimited(), scope: scope, body)
        }
    }

    /// One `KeyValue` (in `range`) to `body`, when it has a key. The shape every SDK writes — key
    /// then value, one-byte lengths, a scalar filling the value — is read without the general walk.
    @inline(__always)
    private static func attribute(
        _ base: UnsafeRawPointer, _ range: Range<Int>, scope: Scope, _ body: (Scope, UnsafeRawBufferPointer, RawValue) -> Void
    ) throws(WireFault) {
        let keyLength = RequestParser.plainKeyLength(base: base, start: range.lowerBound, end: range.upperBound)
        if keyLength > 0 {
            let key = UnsafeRawBufferPointer(start: base + range.lowerBound + 2, count: keyLength)
            let value: RawValue
            switch RequestParser.plainValue(base: base, range: range, keyLength: keyLength) {
            case .string(let text): value = .string(bytes(base, text.lowerBound..<text.upperBound))
            case .int(let int): value = .int(int)
            case .bool(let bool): value = .bool(bool)
            case .double(let double): value = .double(double)
            default: value = .other
            }
            body(scope, key, value)
            return
        }
        do {
            var keyValue = WireReader(base: base, range: range)
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
