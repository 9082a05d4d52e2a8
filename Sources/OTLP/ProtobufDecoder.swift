/// What decoding one message produced.
public struct DecodeOutcome: Sendable {
    /// Spans appended to the batch (indices into ``SpanBatch/spans``).
    public var spans: Range<Int>
    /// Spans refused one by one (bad ids); the rest of the message was kept.
    public var rejectedSpans: Int
    /// The first of those refusals, for the log.
    public var firstSpanRejection: OTLPDecodeError?
}

/// Decodes OTLP `ExportTraceServiceRequest` protobuf messages into a ``SpanBatch``.
///
/// Written from the opentelemetry-proto field numbers. Every byte of the message is walked (events,
/// links and unselected attributes structurally), so a message that is accepted re-encodes cleanly
/// downstream; a malformed one is refused whole and leaves the batch as it was.
public struct ProtobufSpanDecoder: Sendable {
    public init() {}

    /// Copies `message` into `batch` and decodes it there.
    public func decode(_ message: UnsafeRawBufferPointer, into batch: inout SpanBatch) throws(OTLPDecodeError) -> DecodeOutcome {
        let mark = batch.mark
        guard batch.bytes.count + message.count < Int(UInt32.max) else {
            throw OTLPDecodeError(reason: .tooLarge, byteOffset: 0, path: "", detail: "message of \(message.count) bytes exceeds what one batch addresses (4 GiB)")
        }
        let start = batch.bytes.count
        batch.bytes.append(contentsOf: message)
        return try decodeInPlace(range: start..<batch.bytes.count, of: &batch, rollBackTo: mark)
    }

    /// Decodes a message that already sits in `batch.bytes[range]` (the JSON transcoder writes there).
    func decodeInPlace(range: Range<Int>, of batch: inout SpanBatch, rollBackTo mark: SpanBatch.Mark) throws(OTLPDecodeError) -> DecodeOutcome {
        var bytes: [UInt8] = []
        swap(&bytes, &batch.bytes)
        defer { swap(&bytes, &batch.bytes) }
        let firstSpan = batch.spans.count
        var parser = RequestParser(selection: batch.selection, messageStart: range.lowerBound)
        let result: Result<Void, WireFault> = bytes.withUnsafeBytes { raw in
            do throws(WireFault) {
                try parser.parseRequest(base: raw.baseAddress!, range: range, batch: &batch)
                return .success(())
            } catch {
                return .failure(error)
            }
        }
        if case .failure(let fault) = result {
            swap(&bytes, &batch.bytes)
            batch.rollBack(to: mark)
            swap(&bytes, &batch.bytes)
            throw parser.error(from: fault)
        }
        return DecodeOutcome(
            spans: firstSpan..<batch.spans.count, rejectedSpans: parser.rejectedSpans,
            firstSpanRejection: parser.firstSpanRejection)
    }
}

/// Where in the message the parser is, kept as integers so the happy path never builds a string.
struct ParsePosition {
    var resourceSpans = -1
    var scopeSpans = -1
    var span = -1
    var field: StaticString = ""

    func rendered() -> String {
        var path = ""
        if resourceSpans >= 0 { path += "resource_spans[\(resourceSpans)]" }
        if scopeSpans >= 0 { path += ".scope_spans[\(scopeSpans)]" }
        if span >= 0 { path += ".spans[\(span)]" }
        let fieldName = "\(field)"
        if !fieldName.isEmpty { path += path.isEmpty ? fieldName : ".\(fieldName)" }
        return path
    }
}

struct RequestParser {
    let selection: AttributeSelection
    let messageStart: Int
    var position = ParsePosition()
    var rejectedSpans = 0
    var firstSpanRejection: OTLPDecodeError?

    init(selection: AttributeSelection, messageStart: Int) {
        self.selection = selection
        self.messageStart = messageStart
    }

    func error(from fault: WireFault) -> OTLPDecodeError {
        OTLPDecodeError(
            reason: fault.reason, byteOffset: fault.offset - messageStart, path: position.rendered(),
            detail: fault.detail)
    }

    // MARK: ExportTraceServiceRequest

    mutating func parseRequest(base: UnsafeRawPointer, range: Range<Int>, batch: inout SpanBatch) throws(WireFault) {
        var reader = WireReader(base: base, range: range)
        var resourceOrdinal = 0
        while !reader.isAtEnd {
            let tagOffset = reader.position
            let (field, wireType) = try reader.readTag()
            if field == OTLPField.ExportTraceServiceRequest.resourceSpans {
                position = ParsePosition(resourceSpans: resourceOrdinal, field: "")
                try reader.expect(wireType, .lengthDelimited, field: "resource_spans: wrong wire type", at: tagOffset)
                let inner = try reader.readLengthDelimited()
                try parseResourceSpans(base: base, range: inner, batch: &batch)
                resourceOrdinal += 1
            } else {
                try reader.skip(wireType: wireType)
            }
        }
        position = ParsePosition()
    }

    // MARK: ResourceSpans

    mutating func parseResourceSpans(base: UnsafeRawPointer, range: Range<Int>, batch: inout SpanBatch) throws(WireFault) {
        let resourceIndex = batch.resources.count
        batch.resources.append(
            ResourceRecord(
                encoded: .empty, schemaURL: .empty, serviceName: .empty,
                firstAttribute: UInt32(batch.attributes.count), attributeCount: 0, canonical: UInt32(resourceIndex)))
        var reader = WireReader(base: base, range: range)
        var scopeOrdinal = 0
        while !reader.isAtEnd {
            let tagOffset = reader.position
            let (field, wireType) = try reader.readTag()
            switch field {
            case OTLPField.ResourceSpans.resource:
                position.field = "resource"
                try reader.expect(wireType, .lengthDelimited, field: "resource: wrong wire type", at: tagOffset)
                let inner = try reader.readLengthDelimited()
                try parseResource(base: base, range: inner, into: resourceIndex, batch: &batch)
                position.field = ""
            case OTLPField.ResourceSpans.scopeSpans:
                position.scopeSpans = scopeOrdinal
                position.field = ""
                try reader.expect(wireType, .lengthDelimited, field: "scope_spans: wrong wire type", at: tagOffset)
                let inner = try reader.readLengthDelimited()
                try parseScopeSpans(base: base, range: inner, resourceIndex: resourceIndex, batch: &batch)
                scopeOrdinal += 1
                position.scopeSpans = -1
                position.span = -1
            case OTLPField.ResourceSpans.schemaURL:
                position.field = "schema_url"
                try reader.expect(wireType, .lengthDelimited, field: "schema_url: wrong wire type", at: tagOffset)
                batch.resources[resourceIndex].schemaURL = ByteRange(range: try reader.readLengthDelimited())
                position.field = ""
            default:
                try reader.skip(wireType: wireType)
            }
        }
    }

    mutating func parseResource(base: UnsafeRawPointer, range: Range<Int>, into resourceIndex: Int, batch: inout SpanBatch) throws(WireFault) {
        let firstAttribute = batch.attributes.count
        // The same bytes as a resource decoded before in this batch: the same record and selected
        // attributes, moved to these bytes (valid, since those were).
        let slot = SpanBatch.resourceSlot(base: base, range: range)
        if let earlier = batch.memoizedResource(base: base, range: range, slot: slot) {
            let shift = Int64(range.lowerBound) - Int64(earlier.encoded.offset)
            func moved(_ inner: ByteRange) -> ByteRange {
                inner.isEmpty ? inner : ByteRange(offset: UInt32(truncatingIfNeeded: Int64(inner.offset) + shift), count: inner.count)
            }
            let earlierAttributes = Int(earlier.firstAttribute)..<(Int(earlier.firstAttribute) + Int(earlier.attributeCount))
            for index in earlierAttributes {
                var attribute = batch.attributes[index]
                switch attribute.value {
                case .string(let inner): attribute.value = .string(moved(inner))
                case .bytes(let inner): attribute.value = .bytes(moved(inner))
                case .array(let inner): attribute.value = .array(moved(inner))
                case .keyValueList(let inner): attribute.value = .keyValueList(moved(inner))
                case .bool, .int, .double, .empty: break
                }
                batch.attributes.append(attribute)
            }
            batch.resources[resourceIndex].encoded = ByteRange(range: range)
            batch.resources[resourceIndex].serviceName = moved(earlier.serviceName)
            batch.resources[resourceIndex].firstAttribute = UInt32(firstAttribute)
            batch.resources[resourceIndex].attributeCount = earlier.attributeCount
            batch.resources[resourceIndex].canonical = earlier.canonical
            return
        }
        var serviceName = ByteRange.empty
        var reader = WireReader(base: base, range: range)
        while !reader.isAtEnd {
            let tagOffset = reader.position
            let (field, wireType) = try reader.readTag()
            switch field {
            case OTLPField.Resource.attributes:
                try reader.expect(wireType, .lengthDelimited, field: "resource.attributes: wrong wire type", at: tagOffset)
                let inner = try reader.readLengthDelimited()
                try parseKeyValue(base: base, range: inner, batch: &batch, serviceName: &serviceName)
            case OTLPField.Resource.droppedAttributesCount:
                try reader.expect(wireType, .varint, field: "resource.dropped_attributes_count: wrong wire type", at: tagOffset)
                _ = try reader.readVarint()
            default:
                try reader.skip(wireType: wireType)
            }
        }
        batch.resources[resourceIndex].encoded = ByteRange(range: range)
        batch.resources[resourceIndex].serviceName = serviceName
        batch.resources[resourceIndex].firstAttribute = UInt32(firstAttribute)
        batch.resources[resourceIndex].attributeCount = UInt16(clamping: batch.attributes.count - firstAttribute)
        batch.memoizeResource(resourceIndex, slot: slot)
    }

    // MARK: ScopeSpans

    mutating func parseScopeSpans(base: UnsafeRawPointer, range: Range<Int>, resourceIndex: Int, batch: inout SpanBatch) throws(WireFault) {
        let scopeIndex = batch.scopes.count
        batch.scopes.append(
            ScopeRecord(encoded: .empty, schemaURL: .empty, name: .empty, resourceIndex: UInt32(resourceIndex)))
        var reader = WireReader(base: base, range: range)
        var spanOrdinal = 0
        while !reader.isAtEnd {
            let tagOffset = reader.position
            let (field, wireType) = try reader.readTag()
            switch field {
            case OTLPField.ScopeSpans.scope:
                position.field = "scope"
                try reader.expect(wireType, .lengthDelimited, field: "scope: wrong wire type", at: tagOffset)
                let inner = try reader.readLengthDelimited()
                batch.scopes[scopeIndex].encoded = ByteRange(range: inner)
                batch.scopes[scopeIndex].name = try parseScope(base: base, range: inner)
                position.field = ""
            case OTLPField.ScopeSpans.spans:
                position.span = spanOrdinal
                try reader.expect(wireType, .lengthDelimited, field: "spans: wrong wire type", at: tagOffset)
                let inner = try reader.readLengthDelimited()
                try parseSpan(base: base, range: inner, scopeIndex: scopeIndex, batch: &batch)
                spanOrdinal += 1
                position.span = -1
                position.field = ""
            case OTLPField.ScopeSpans.schemaURL:
                position.field = "schema_url"
                try reader.expect(wireType, .lengthDelimited, field: "schema_url: wrong wire type", at: tagOffset)
                batch.scopes[scopeIndex].schemaURL = ByteRange(range: try reader.readLengthDelimited())
                position.field = ""
            default:
                try reader.skip(wireType: wireType)
            }
        }
    }

    /// Validates an `InstrumentationScope` and returns its name.
    mutating func parseScope(base: UnsafeRawPointer, range: Range<Int>) throws(WireFault) -> ByteRange {
        var name = ByteRange.empty
        var reader = WireReader(base: base, range: range)
        while !reader.isAtEnd {
            let tagOffset = reader.position
            let (field, wireType) = try reader.readTag()
            switch field {
            case OTLPField.InstrumentationScope.name:
                try reader.expect(wireType, .lengthDelimited, field: "scope.name: wrong wire type", at: tagOffset)
                name = ByteRange(range: try reader.readLengthDelimited())
            case OTLPField.InstrumentationScope.version:
                try reader.expect(wireType, .lengthDelimited, field: "scope.version: wrong wire type", at: tagOffset)
                _ = try reader.readLengthDelimited()
            case OTLPField.InstrumentationScope.attributes:
                try reader.expect(wireType, .lengthDelimited, field: "scope.attributes: wrong wire type", at: tagOffset)
                try validateKeyValue(base: base, range: try reader.readLengthDelimited(), depth: 0)
            case OTLPField.InstrumentationScope.droppedAttributesCount:
                try reader.expect(wireType, .varint, field: "scope.dropped_attributes_count: wrong wire type", at: tagOffset)
                _ = try reader.readVarint()
            default:
                try reader.skip(wireType: wireType)
            }
        }
        return name
    }

    // MARK: Span

    mutating func parseSpan(base: UnsafeRawPointer, range: Range<Int>, scopeIndex: Int, batch: inout SpanBatch) throws(WireFault) {
        let firstAttribute = batch.attributes.count
        var record = SpanRecord(
            traceID: .zero, spanID: .zero, parentSpanID: .zero, startTimeUnixNano: 0, endTimeUnixNano: 0,
            flags: 0, kind: .unspecified, statusCode: .unset, attributeCount: 0, name: .empty,
            traceState: .empty, statusMessage: .empty, encoded: ByteRange(range: range),
            scopeIndex: UInt32(scopeIndex), firstAttribute: UInt32(firstAttribute))
        var traceIDLength = 0
        var spanIDLength = 0
        var parentIDLength = 0
        var unusedServiceName = ByteRange.empty
        var reader = WireReader(base: base, range: range)
        // The field being read, named only if the message is refused (no store per field).
        var named: UInt32 = 0
        do throws(WireFault) {
            while !reader.isAtEnd {
                let tagOffset = reader.position
                // Span attributes (field 9, length-delimited: tag byte 0x4A) are most of a span's
                // fields and come one after another; those of the plain shape with a one-byte length
                // are taken here, before the tag is read as a varint and switched on (an indirect
                // jump per field). Anything else falls through to the general reading below.
                if tagOffset &+ 2 <= reader.end, base.load(fromByteOffset: tagOffset, as: UInt8.self) == 0x4A {
                    let length = Int(base.load(fromByteOffset: tagOffset &+ 1, as: UInt8.self))
                    let start = tagOffset &+ 2
                    if length < 0x80, start &+ length <= reader.end {
                        let keyLength = Self.plainKeyLength(base: base, start: start, end: start &+ length)
                        if keyLength >= 0 {
                            reader.position = start &+ length
                            if selection.mayMatch(count: keyLength) {
                                appendPlainAttribute(base: base, range: start..<(start &+ length), keyLength: keyLength, batch: &batch)
                            }
                            continue
                        }
                    }
                }
                let (field, wireType) = try reader.readTag()
                switch field {
                case OTLPField.Span.traceID:
                    named = OTLPField.Span.traceID
                    try reader.expect(wireType, .lengthDelimited, field: "trace_id: wrong wire type", at: tagOffset)
                    let id = try reader.readLengthDelimited()
                    traceIDLength = id.count
                    if id.count == 16 {
                        record.traceID = TraceID(bytes: UnsafeRawBufferPointer(start: base + id.lowerBound, count: 16), at: 0)
                    }
                case OTLPField.Span.spanID:
                    named = OTLPField.Span.spanID
                    try reader.expect(wireType, .lengthDelimited, field: "span_id: wrong wire type", at: tagOffset)
                    let id = try reader.readLengthDelimited()
                    spanIDLength = id.count
                    if id.count == 8 {
                        record.spanID = SpanID(rawValue: UInt64(bigEndian: base.loadUnaligned(fromByteOffset: id.lowerBound, as: UInt64.self)))
                    }
                case OTLPField.Span.traceState:
                    named = OTLPField.Span.traceState
                    try reader.expect(wireType, .lengthDelimited, field: "trace_state: wrong wire type", at: tagOffset)
                    record.traceState = ByteRange(range: try reader.readLengthDelimited())
                case OTLPField.Span.parentSpanID:
                    named = OTLPField.Span.parentSpanID
                    try reader.expect(wireType, .lengthDelimited, field: "parent_span_id: wrong wire type", at: tagOffset)
                    let id = try reader.readLengthDelimited()
                    parentIDLength = id.count
                    if id.count == 8 {
                        record.parentSpanID = SpanID(rawValue: UInt64(bigEndian: base.loadUnaligned(fromByteOffset: id.lowerBound, as: UInt64.self)))
                    }
                case OTLPField.Span.name:
                    named = OTLPField.Span.name
                    try reader.expect(wireType, .lengthDelimited, field: "name: wrong wire type", at: tagOffset)
                    record.name = ByteRange(range: try reader.readLengthDelimited())
                case OTLPField.Span.kind:
                    named = OTLPField.Span.kind
                    try reader.expect(wireType, .varint, field: "kind: wrong wire type", at: tagOffset)
                    record.kind = SpanKind(wireValue: try reader.readVarint())
                case OTLPField.Span.startTimeUnixNano:
                    named = OTLPField.Span.startTimeUnixNano
                    try reader.expect(wireType, .fixed64, field: "start_time_unix_nano: wrong wire type", at: tagOffset)
                    record.startTimeUnixNano = try reader.readFixed64()
                case OTLPField.Span.endTimeUnixNano:
                    named = OTLPField.Span.endTimeUnixNano
                    try reader.expect(wireType, .fixed64, field: "end_time_unix_nano: wrong wire type", at: tagOffset)
                    record.endTimeUnixNano = try reader.readFixed64()
                case OTLPField.Span.attributes:
                    named = OTLPField.Span.attributes
                    try reader.expect(wireType, .lengthDelimited, field: "attributes: wrong wire type", at: tagOffset)
                    let inner = try reader.readLengthDelimited()
                    // Most span attributes are of the plain shape: checked and, when selected, read here
                    // without a call (a span's `service.name` is not wanted); the rest take the general walk.
                    let keyLength = Self.plainKeyLength(base: base, start: inner.lowerBound, end: inner.upperBound)
                    if keyLength >= 0 {
                        if selection.mayMatch(count: keyLength) {
                            appendPlainAttribute(base: base, range: inner, keyLength: keyLength, batch: &batch)
                        }
                        continue
                    }
                    try parseKeyValue(base: base, range: inner, batch: &batch, serviceName: &unusedServiceName)
                case OTLPField.Span.droppedAttributesCount, OTLPField.Span.droppedEventsCount, OTLPField.Span.droppedLinksCount:
                    named = field
                    try reader.expect(wireType, .varint, field: "dropped count: wrong wire type", at: tagOffset)
                    _ = try reader.readVarint()
                case OTLPField.Span.events:
                    named = OTLPField.Span.events
                    try reader.expect(wireType, .lengthDelimited, field: "events: wrong wire type", at: tagOffset)
                    try validateEvent(base: base, range: try reader.readLengthDelimited())
                case OTLPField.Span.links:
                    named = OTLPField.Span.links
                    try reader.expect(wireType, .lengthDelimited, field: "links: wrong wire type", at: tagOffset)
                    try validateLink(base: base, range: try reader.readLengthDelimited())
                case OTLPField.Span.status:
                    named = OTLPField.Span.status
                    try reader.expect(wireType, .lengthDelimited, field: "status: wrong wire type", at: tagOffset)
                    try parseStatus(base: base, range: try reader.readLengthDelimited(), into: &record)
                case OTLPField.Span.flags:
                    named = OTLPField.Span.flags
                    try reader.expect(wireType, .fixed32, field: "flags: wrong wire type", at: tagOffset)
                    record.flags = try reader.readFixed32()
                default:
                    try reader.skip(wireType: wireType)
                }
            }
        } catch {
            position.field = Self.spanFieldName(named)
            throw error
        }

        // A span that cannot belong to a trace is refused alone; its siblings are kept.
        var rejection: (RejectReason, StaticString, Int)?
        if traceIDLength != 16 {
            rejection = (.invalidTraceID, "trace_id must be 16 bytes", traceIDLength)
        } else if !record.traceID.isValid {
            rejection = (.invalidTraceID, "trace_id is all zero", -1)
        } else if spanIDLength != 8 {
            rejection = (.invalidSpanID, "span_id must be 8 bytes", spanIDLength)
        } else if !record.spanID.isValid {
            rejection = (.invalidSpanID, "span_id is all zero", -1)
        } else if parentIDLength != 0 && parentIDLength != 8 {
            rejection = (.invalidSpanID, "parent_span_id must be empty or 8 bytes", parentIDLength)
        }
        if let (reason, what, value) = rejection {
            batch.attributes.removeSubrange(firstAttribute...)
            rejectedSpans += 1
            if firstSpanRejection == nil {
                firstSpanRejection = error(from: WireFault(reason, at: range.lowerBound, what, value: value))
            }
            return
        }
        record.attributeCount = UInt16(clamping: batch.attributes.count - firstAttribute)
        batch.spans.append(record)
    }

    /// Appends a plain-shaped span attribute (see ``plainKeyLength(base:start:end:)``) when its key is
    /// selected. Out of line: inlined, it made the span loop too large for its own readers to be inlined.
    @inline(never)
    mutating func appendPlainAttribute(base: UnsafeRawPointer, range: Range<Int>, keyLength: Int, batch: inout SpanBatch) {
        let key = (range.lowerBound &+ 2)..<(range.lowerBound &+ 2 &+ keyLength)
        if let id = selection.match(UnsafeRawBufferPointer(start: base, count: range.upperBound), key) {
            batch.attributes.append(SelectedAttribute(key: id, value: Self.plainValue(base: base, range: range, keyLength: keyLength)))
        }
    }

    /// The name a refused span's path gives the field `number` (the last known field read).
    static func spanFieldName(_ number: UInt32) -> StaticString {
        switch number {
        case OTLPField.Span.traceID: "trace_id"
        case OTLPField.Span.spanID: "span_id"
        case OTLPField.Span.traceState: "trace_state"
        case OTLPField.Span.parentSpanID: "parent_span_id"
        case OTLPField.Span.name: "name"
        case OTLPField.Span.kind: "kind"
        case OTLPField.Span.startTimeUnixNano: "start_time_unix_nano"
        case OTLPField.Span.endTimeUnixNano: "end_time_unix_nano"
        case OTLPField.Span.attributes: "attributes"
        case OTLPField.Span.droppedAttributesCount, OTLPField.Span.droppedEventsCount, OTLPField.Span.droppedLinksCount: "dropped_count"
        case OTLPField.Span.events: "events"
        case OTLPField.Span.links: "links"
        case OTLPField.Span.status: "status"
        case OTLPField.Span.flags: "flags"
        default: ""
        }
    }

    mutating func parseStatus(base: UnsafeRawPointer, range: Range<Int>, into record: inout SpanRecord) throws(WireFault) {
        var reader = WireReader(base: base, range: range)
        while !reader.isAtEnd {
            let tagOffset = reader.position
            let (field, wireType) = try reader.readTag()
            switch field {
            case OTLPField.Status.message:
                try reader.expect(wireType, .lengthDelimited, field: "status.message: wrong wire type", at: tagOffset)
                record.statusMessage = ByteRange(range: try reader.readLengthDelimited())
            case OTLPField.Status.code:
                try reader.expect(wireType, .varint, field: "status.code: wrong wire type", at: tagOffset)
                record.statusCode = StatusCode(wireValue: try reader.readVarint())
            default:
                try reader.skip(wireType: wireType)
            }
        }
    }

    // MARK: Attributes

    /// Parses a `KeyValue`; appends it to the batch when its key is selected; captures `service.name`.
    @inline(__always)
    mutating func parseKeyValue(base: UnsafeRawPointer, range: Range<Int>, batch: inout SpanBatch, serviceName: inout ByteRange) throws(WireFault) {
        // Fast path, the shape every SDK writes: key (field 1) then value (field 2), one-byte
        // lengths, the value a string, int, bool or double that fills it exactly. Anything else takes
        // the general walk below, which validates it the same way.
        if let (key, typed) = Self.plainKeyValue(base: base, range: range) {
            if key.count == 12, isServiceNameKey(base + key.lowerBound), case .string(let name) = typed {
                serviceName = name
            }
            if let id = selection.match(UnsafeRawBufferPointer(start: base, count: range.upperBound), key) {
                batch.attributes.append(SelectedAttribute(key: id, value: typed))
            }
            return
        }
        var key = 0..<0
        var value = 0..<0
        var hasValue = false
        var reader = WireReader(base: base, range: range)
        while !reader.isAtEnd {
            let tagOffset = reader.position
            let (field, wireType) = try reader.readTag()
            switch field {
            case OTLPField.KeyValue.key:
                try reader.expect(wireType, .lengthDelimited, field: "key: wrong wire type", at: tagOffset)
                key = try reader.readLengthDelimited()
            case OTLPField.KeyValue.value:
                try reader.expect(wireType, .lengthDelimited, field: "value: wrong wire type", at: tagOffset)
                value = try reader.readLengthDelimited()
                hasValue = true
            default:
                try reader.skip(wireType: wireType)
            }
        }
        let raw = UnsafeRawBufferPointer(start: base, count: range.upperBound)
        let typed = hasValue ? try parseAnyValue(base: base, range: value, depth: 0) : .empty
        if key.count == 12, isServiceNameKey(base + key.lowerBound), case .string(let name) = typed {
            serviceName = name
        }
        if let id = selection.match(raw, key) {
            batch.attributes.append(SelectedAttribute(key: id, value: typed))
        }
    }

    /// A `KeyValue` of the common shape (see ``parseKeyValue(base:range:batch:serviceName:)``), read
    /// with a handful of byte loads; nil for any other shape.
    @inline(__always)
    static func plainKeyValue(base: UnsafeRawPointer, range: Range<Int>) -> (key: Range<Int>, value: AttributeValue)? {
        let keyLength = plainKeyLength(base: base, start: range.lowerBound, end: range.upperBound)
        guard keyLength >= 0 else { return nil }
        return ((range.lowerBound &+ 2)..<(range.lowerBound &+ 2 &+ keyLength), plainValue(base: base, range: range, keyLength: keyLength))
    }

    /// The value of a `KeyValue` that ``plainKeyLength(base:start:end:)`` accepted with `keyLength`
    /// (its checks are not repeated here).
    @inline(__always)
    static func plainValue(base: UnsafeRawPointer, range: Range<Int>, keyLength: Int) -> AttributeValue {
        // key tag, key length, key, value tag, value length, then the AnyValue's tag.
        let valueStart = range.lowerBound &+ 4 &+ keyLength
        let value = base + valueStart
        switch value.load(as: UInt8.self) {
        case 0x0A:  // string_value
            return .string(ByteRange(offset: valueStart &+ 2, count: range.upperBound &- valueStart &- 2))
        case 0x18:  // int_value
            var result: UInt64 = 0
            var shift: UInt64 = 0
            var offset = 1
            while valueStart &+ offset < range.upperBound {
                result |= UInt64(value.load(fromByteOffset: offset, as: UInt8.self) & 0x7F) << shift
                shift &+= 7
                offset &+= 1
            }
            return .int(Int64(bitPattern: result))
        case 0x10:  // bool_value
            return .bool(value.load(fromByteOffset: 1, as: UInt8.self) != 0)
        default:  // 0x21, double_value
            return .double(Double(bitPattern: UInt64(littleEndian: value.loadUnaligned(fromByteOffset: 1, as: UInt64.self))))
        }
    }

    /// The key length of a `KeyValue` of the shape ``plainKeyValue(base:range:)`` accepts, or -1:
    /// the same checks, without building the value (for attributes that are skipped).
    @inline(__always)
    static func plainKeyLength(base: UnsafeRawPointer, start: Int, end: Int) -> Int {
        guard end &- start >= 4 else { return -1 }
        let key = base + start
        let keyLength = Int(key.load(fromByteOffset: 1, as: UInt8.self))
        guard key.load(as: UInt8.self) == 0x0A, keyLength < 0x80 else { return -1 }
        let valueTag = start &+ 2 &+ keyLength
        guard valueTag &+ 2 <= end else { return -1 }
        let value = base + valueTag
        let valueLength = Int(value.load(fromByteOffset: 1, as: UInt8.self))
        guard value.load(as: UInt8.self) == 0x12, valueLength < 0x80, valueLength >= 2, valueTag &+ 2 &+ valueLength == end else { return -1 }
        let second = Int(value.load(fromByteOffset: 3, as: UInt8.self))
        switch value.load(fromByteOffset: 2, as: UInt8.self) {
        case 0x0A:  // string_value filling the value
            return second == valueLength &- 2 ? keyLength : -1
        case 0x10:  // bool_value
            return valueLength == 2 && second < 0x80 ? keyLength : -1
        case 0x21:  // double_value
            return valueLength == 9 ? keyLength : -1
        case 0x18:  // int_value: a varint of at most 9 bytes ending exactly at the end
            guard valueLength <= 10, value.load(fromByteOffset: valueLength &+ 1, as: UInt8.self) < 0x80 else { return -1 }
            var offset = 3
            while offset <= valueLength {
                if value.load(fromByteOffset: offset, as: UInt8.self) < 0x80 { return -1 }
                offset &+= 1
            }
            return keyLength
        default:
            return -1
        }
    }

    /// Decodes an `AnyValue` (nested arrays and lists are validated, kept encoded).
    func parseAnyValue(base: UnsafeRawPointer, range: Range<Int>, depth: Int) throws(WireFault) -> AttributeValue {
        var result = AttributeValue.empty
        var reader = WireReader(base: base, range: range)
        while !reader.isAtEnd {
            let tagOffset = reader.position
            let (field, wireType) = try reader.readTag()
            switch field {
            case OTLPField.AnyValue.stringValue:
                try reader.expect(wireType, .lengthDelimited, field: "string_value: wrong wire type", at: tagOffset)
                result = .string(ByteRange(range: try reader.readLengthDelimited()))
            case OTLPField.AnyValue.boolValue:
                try reader.expect(wireType, .varint, field: "bool_value: wrong wire type", at: tagOffset)
                result = .bool(try reader.readVarint() != 0)
            case OTLPField.AnyValue.intValue:
                try reader.expect(wireType, .varint, field: "int_value: wrong wire type", at: tagOffset)
                result = .int(Int64(bitPattern: try reader.readVarint()))
            case OTLPField.AnyValue.doubleValue:
                try reader.expect(wireType, .fixed64, field: "double_value: wrong wire type", at: tagOffset)
                result = .double(Double(bitPattern: try reader.readFixed64()))
            case OTLPField.AnyValue.arrayValue:
                try reader.expect(wireType, .lengthDelimited, field: "array_value: wrong wire type", at: tagOffset)
                let inner = try reader.readLengthDelimited()
                try validateValues(base: base, range: inner, depth: depth + 1, keyValues: false)
                result = .array(ByteRange(range: inner))
            case OTLPField.AnyValue.kvlistValue:
                try reader.expect(wireType, .lengthDelimited, field: "kvlist_value: wrong wire type", at: tagOffset)
                let inner = try reader.readLengthDelimited()
                try validateValues(base: base, range: inner, depth: depth + 1, keyValues: true)
                result = .keyValueList(ByteRange(range: inner))
            case OTLPField.AnyValue.bytesValue:
                try reader.expect(wireType, .lengthDelimited, field: "bytes_value: wrong wire type", at: tagOffset)
                result = .bytes(ByteRange(range: try reader.readLengthDelimited()))
            default:
                try reader.skip(wireType: wireType)
            }
        }
        return result
    }

    /// Validates an `ArrayValue` (repeated AnyValue) or `KeyValueList` (repeated KeyValue).
    func validateValues(base: UnsafeRawPointer, range: Range<Int>, depth: Int, keyValues: Bool) throws(WireFault) {
        guard depth < maximumNesting else {
            throw WireFault(.nestingTooDeep, at: range.lowerBound, "attribute values nested deeper than 64 levels")
        }
        var reader = WireReader(base: base, range: range)
        while !reader.isAtEnd {
            let tagOffset = reader.position
            let (field, wireType) = try reader.readTag()
            if field == OTLPField.ArrayValue.values {
                try reader.expect(wireType, .lengthDelimited, field: "values: wrong wire type", at: tagOffset)
                let inner = try reader.readLengthDelimited()
                if keyValues {
                    try validateKeyValue(base: base, range: inner, depth: depth)
                } else {
                    _ = try parseAnyValue(base: base, range: inner, depth: depth)
                }
            } else {
                try reader.skip(wireType: wireType)
            }
        }
    }

    func validateKeyValue(base: UnsafeRawPointer, range: Range<Int>, depth: Int) throws(WireFault) {
        var reader = WireReader(base: base, range: range)
        while !reader.isAtEnd {
            let tagOffset = reader.position
            let (field, wireType) = try reader.readTag()
            switch field {
            case OTLPField.KeyValue.key:
                try reader.expect(wireType, .lengthDelimited, field: "key: wrong wire type", at: tagOffset)
                _ = try reader.readLengthDelimited()
            case OTLPField.KeyValue.value:
                try reader.expect(wireType, .lengthDelimited, field: "value: wrong wire type", at: tagOffset)
                _ = try parseAnyValue(base: base, range: try reader.readLengthDelimited(), depth: depth)
            default:
                try reader.skip(wireType: wireType)
            }
        }
    }

    mutating func validateEvent(base: UnsafeRawPointer, range: Range<Int>) throws(WireFault) {
        var reader = WireReader(base: base, range: range)
        while !reader.isAtEnd {
            let tagOffset = reader.position
            let (field, wireType) = try reader.readTag()
            switch field {
            case OTLPField.Event.timeUnixNano:
                try reader.expect(wireType, .fixed64, field: "event.time_unix_nano: wrong wire type", at: tagOffset)
                _ = try reader.readFixed64()
            case OTLPField.Event.name:
                try reader.expect(wireType, .lengthDelimited, field: "event.name: wrong wire type", at: tagOffset)
                _ = try reader.readLengthDelimited()
            case OTLPField.Event.attributes:
                try reader.expect(wireType, .lengthDelimited, field: "event.attributes: wrong wire type", at: tagOffset)
                try validateKeyValue(base: base, range: try reader.readLengthDelimited(), depth: 0)
            case OTLPField.Event.droppedAttributesCount:
                try reader.expect(wireType, .varint, field: "event.dropped_attributes_count: wrong wire type", at: tagOffset)
                _ = try reader.readVarint()
            default:
                try reader.skip(wireType: wireType)
            }
        }
    }

    mutating func validateLink(base: UnsafeRawPointer, range: Range<Int>) throws(WireFault) {
        var reader = WireReader(base: base, range: range)
        while !reader.isAtEnd {
            let tagOffset = reader.position
            let (field, wireType) = try reader.readTag()
            switch field {
            case OTLPField.Link.traceID, OTLPField.Link.spanID, OTLPField.Link.traceState:
                try reader.expect(wireType, .lengthDelimited, field: "link id or trace_state: wrong wire type", at: tagOffset)
                _ = try reader.readLengthDelimited()
            case OTLPField.Link.attributes:
                try reader.expect(wireType, .lengthDelimited, field: "link.attributes: wrong wire type", at: tagOffset)
                try validateKeyValue(base: base, range: try reader.readLengthDelimited(), depth: 0)
            case OTLPField.Link.droppedAttributesCount:
                try reader.expect(wireType, .varint, field: "link.dropped_attributes_count: wrong wire type", at: tagOffset)
                _ = try reader.readVarint()
            case OTLPField.Link.flags:
                try reader.expect(wireType, .fixed32, field: "link.flags: wrong wire type", at: tagOffset)
                _ = try reader.readFixed32()
            default:
                try reader.skip(wireType: wireType)
            }
        }
    }
}

/// Whether the 12 bytes at `pointer` spell `service.name`, in two loads instead of a loop.
@inline(__always)
private func isServiceNameKey(_ pointer: UnsafeRawPointer) -> Bool {
    // "service." and "name" as little-endian integers.
    pointer.loadUnaligned(as: UInt64.self) == UInt64(littleEndian: 0x2E65_6369_7672_6573)
        && pointer.loadUnaligned(fromByteOffset: 8, as: UInt32.self) == UInt32(littleEndian: 0x656D_616E)
}

extension ByteRange {
    @inline(__always) init(range: Range<Int>) {
        self.init(offset: UInt32(truncatingIfNeeded: range.lowerBound), count: UInt32(truncatingIfNeeded: range.count))
    }
}
