
/// A typed attribute value copied out of a decoded batch; strings live in the trace's payload.
public enum TraceAttributeValue: Sendable, Equatable {
    case string(ByteRange)
    case int(Int64)
    case double(Double)
    case bool(Bool)
    /// Arrays, maps, bytes and empty values: present, but not compared by any policy.
    case other
}

/// A selected attribute of a buffered span or of its resource.
public struct TraceAttribute: Sendable, Equatable {
    // Declared value first: Swift lays fields out in order, and this order packs into 16 bytes
    // (value 9, key 2, flag 1) where key-first took 24 — per selected attribute of every buffered span.
    public var value: TraceAttributeValue
    public var key: AttributeKeyID
    /// Whether it came from the resource (vs the span itself).
    public var fromResource: Bool

    public init(key: AttributeKeyID, value: TraceAttributeValue, fromResource: Bool) {
        self.value = value
        self.key = key
        self.fromResource = fromResource
    }
}

/// The resource and instrumentation scope a group of spans was sent under, for re-export.
public struct SpanEnvelope: Sendable, Equatable {
    /// The four ranges lie in the trace's payload, or in `shared`'s bytes when it is set.
    public var resource: ByteRange
    public var resourceSchemaURL: ByteRange
    public var scope: ByteRange
    public var scopeSchemaURL: ByteRange
    /// The resource's `service.name`, in the trace's payload (empty when absent).
    public var service: ByteRange = .empty
    /// The bytes shared with the window's other traces of the same resource and scope.
    public var shared: SharedEnvelope?

    public static func == (a: SpanEnvelope, b: SpanEnvelope) -> Bool {
        a.resource == b.resource && a.resourceSchemaURL == b.resourceSchemaURL && a.scope == b.scope
            && a.scopeSchemaURL == b.scopeSchemaURL && a.service == b.service && a.shared === b.shared
    }
}

/// One buffered span: what policies read, and where its encoded bytes are.
public struct BufferedSpan: Sendable {
    public var spanID: SpanID
    public var parentSpanID: SpanID
    public var startTimeUnixNano: UInt64
    public var endTimeUnixNano: UInt64
    public var flags: UInt32
    public var kind: SpanKind
    public var statusCode: StatusCode
    // (Declared here, after the two bytes above, to fill what would be padding: a buffered span is
    // 72 bytes.)
    public var attributeCount: UInt16
    public var traceState: ByteRange
    public var encoded: ByteRange
    public var envelope: UInt32
    public var firstAttribute: UInt32
    /// Where the span's name lies in `encoded`: its offset from the start and its length, so that
    /// reading the name walks no field. ``nameUnknown`` in `nameLength` when the name or what
    /// precedes it is 64 KiB or more; the name is then found by walking the fields.
    public var nameOffset: UInt16
    public var nameLength: UInt16
    /// The span-metrics series the span was found to belong to on arrival, while its bytes were at
    /// hand (an index the owner of the trace's span metrics gave; -1: none, found at the decision).
    public var series: Int32

    /// `nameLength` of a span whose name's place did not fit in 16 bits.
    public static let nameUnknown: UInt16 = .max

    /// End minus start, in nanoseconds; 0 when a broken clock put the end first.
    @inlinable public var durationNanos: UInt64 {
        endTimeUnixNano >= startTimeUnixNano ? endTimeUnixNano - startTimeUnixNano : 0
    }
}

/// A trace as it is buffered and as policies see it: its spans' records, the selected attributes and
/// every byte needed to re-export the spans exactly as they came.
///
/// All variable-length data sits in one growing `payload`, so a trace costs a handful of allocations
/// however many spans it has.
public struct TraceData: Sendable {
    public private(set) var traceID: TraceID
    public private(set) var spans: [BufferedSpan] = []
    public private(set) var attributes: [TraceAttribute] = []
    public private(set) var envelopes: [SpanEnvelope] = []
    public private(set) var payload: [UInt8] = []
    /// Sum of the spans' encoded sizes (what `bytes_limiting` counts).
    public private(set) var encodedBytes = 0
    /// The batch scope the last span came from, to share envelopes between spans of one message.
    private var lastEnvelopeSource: (batch: UInt64, scope: UInt32)?
    /// With a shared envelope: the first span's selected resource attributes (their strings copied
    /// to the payload), which the envelope's next spans repeat.
    private var envelopeResourceAttributes: Range<Int> = 0..<0

    public init(traceID: TraceID) { self.traceID = traceID }

    /// Empties this trace for reuse under another id, keeping its buffers' capacity.
    public mutating func reset(traceID: TraceID) {
        self.traceID = traceID
        spans.removeAll(keepingCapacity: true)
        attributes.removeAll(keepingCapacity: true)
        envelopes.removeAll(keepingCapacity: true)
        payload.removeAll(keepingCapacity: true)
        encodedBytes = 0
        lastEnvelopeSource = nil
        envelopeResourceAttributes = 0..<0
    }

    /// Moves this trace out, leaving an empty one of the same id (no copy of its buffers: taking a
    /// trace out of a longer-lived value by copy retained and released each of them).
    public mutating func take() -> TraceData {
        var taken = TraceData(traceID: traceID)
        swap(&self, &taken)
        return taken
    }

    /// Bytes this trace holds in memory (payload plus records), for the buffer limit.
    public var residentBytes: Int {
        payload.capacity + spans.capacity * MemoryLayout<BufferedSpan>.stride
            + attributes.capacity * MemoryLayout<TraceAttribute>.stride
            + envelopes.capacity * MemoryLayout<SpanEnvelope>.stride + 160
    }

    /// Whether a root span (no parent) has arrived.
    public var hasRoot: Bool { spans.contains { !$0.parentSpanID.isValid } }

    /// Makes room, exactly, for `spans` more spans holding `attributes` selected attributes and
    /// `payloadBytes` bytes (see ``appendCost(of:from:newEnvelope:)``): a trace whose spans arrive together (one
    /// message of a keyed topic) is sized once, with no geometric regrowth, copy or slack; `envelopes`
    /// is the resource and scope pairs they bring.
    public mutating func reserve(spans extraSpans: Int, attributes extraAttributes: Int, payloadBytes: Int, envelopes extraEnvelopes: Int = 1) {
        if payload.capacity < payload.count + payloadBytes { payload.reserveCapacity(payload.count + payloadBytes) }
        if spans.capacity < spans.count + extraSpans { spans.reserveCapacity(spans.count + extraSpans) }
        if attributes.capacity < attributes.count + extraAttributes { attributes.reserveCapacity(attributes.count + extraAttributes) }
        // Exactly, like the rest: a trace of six services grew 1 → 2 → 4 → 8 envelopes, three
        // allocations and copies per trace.
        if envelopes.capacity < envelopes.count + extraEnvelopes { envelopes.reserveCapacity(envelopes.count + extraEnvelopes) }
    }

    /// What appending `span` adds at most: payload bytes (the span, its trace state, and its
    /// resource and scope when they come first) and selected attributes. For ``reserve(spans:attributes:payloadBytes:)``.
    /// `sharingEnvelopes`: the cost under ``append(_:from:batchGeneration:sharing:)``, where a new
    /// envelope adds only its service name and its selected resource strings to the payload.
    public static func appendCost(
        of span: SpanRecord, from batch: SpanBatch, newEnvelope: Bool, sharingEnvelopes: Bool = false
    ) -> (attributes: Int, payloadBytes: Int) {
        var bytes = Int(span.encoded.count) + Int(span.traceState.count)
        let scope = batch.scopes[Int(span.scopeIndex)]
        let resource = batch.resources[Int(scope.resourceIndex)]
        if newEnvelope && sharingEnvelopes {
            bytes += Int(resource.serviceName.count)
            batch.attributes.withUnsafeBufferPointer { selected in
                for index in Int(resource.firstAttribute)..<(Int(resource.firstAttribute) + Int(resource.attributeCount)) {
                    if case .string(let range) = selected[index].value { bytes += Int(range.count) }
                }
            }
        } else if newEnvelope {
            bytes += Int(resource.encoded.count) + Int(resource.schemaURL.count) + Int(scope.encoded.count) + Int(scope.schemaURL.count)
            if resource.serviceName.count > 0 && !resource.encoded.contains(resource.serviceName) { bytes += Int(resource.serviceName.count) }
        }
        return (Int(span.attributeCount) + Int(resource.attributeCount), bytes)
    }

    /// Copies `span` (and, once per message scope, its resource and scope) out of `batch`. Selected
    /// string attributes point into the copied span or resource bytes, where they lie: each byte is
    /// copied once.
    public mutating func append(_ span: SpanRecord, from batch: SpanBatch, batchGeneration: UInt64) {
        append(span, from: batch, batchGeneration: batchGeneration, shared: nil, series: -1)
    }

    /// ``append(_:from:batchGeneration:)``, with the resource and scope held once in `table` for
    /// every trace that came under the same bytes (see ``SharedEnvelope``); returns how many bytes
    /// the table's account grew (negative when a sweep forgot more than it added).
    /// `series`: the span's span-metrics series when known on arrival (see ``BufferedSpan/series``).
    @discardableResult
    public mutating func append(
        _ span: SpanRecord, from batch: SpanBatch, batchGeneration: UInt64, sharing table: inout SharedEnvelopes, series: Int32 = -1
    ) -> Int {
        guard startsEnvelope(span, batchGeneration: batchGeneration) else {
            append(span, from: batch, batchGeneration: batchGeneration, shared: nil, series: series)
            return 0
        }
        let (shared, grown) = table.envelope(of: span.scopeIndex, in: batch, batchGeneration: batchGeneration)
        append(span, from: batch, batchGeneration: batchGeneration, shared: shared, series: series)
        return grown
    }

    private func startsEnvelope(_ span: SpanRecord, batchGeneration: UInt64) -> Bool {
        lastEnvelopeSource.map({ $0.batch != batchGeneration || $0.scope != span.scopeIndex }) ?? true
    }

    private mutating func append(_ span: SpanRecord, from batch: SpanBatch, batchGeneration: UInt64, shared: SharedEnvelope?, series: Int32) {
        let scope = batch.scopes[Int(span.scopeIndex)]
        let resource = batch.resources[Int(scope.resourceIndex)]
        var firstOfSharedEnvelope = false
        if let shared {
            envelopes.append(
                SpanEnvelope(
                    resource: shared.resource, resourceSchemaURL: shared.resourceSchemaURL, scope: shared.scope,
                    scopeSchemaURL: shared.scopeSchemaURL, service: copy(resource.serviceName, from: batch), shared: shared))
            lastEnvelopeSource = (batchGeneration, span.scopeIndex)
            firstOfSharedEnvelope = true
        } else if startsEnvelope(span, batchGeneration: batchGeneration) {
            let resourceCopy = copy(resource.encoded, from: batch)
            // `service.name` lies inside the resource's bytes: point into the copy instead of copying twice.
            let service = resourceCopy.relocate(resource.serviceName, from: resource.encoded) ?? copy(resource.serviceName, from: batch)
            envelopes.append(
                SpanEnvelope(
                    resource: resourceCopy, resourceSchemaURL: copy(resource.schemaURL, from: batch),
                    scope: copy(scope.encoded, from: batch), scopeSchemaURL: copy(scope.schemaURL, from: batch), service: service))
            lastEnvelopeSource = (batchGeneration, span.scopeIndex)
        }
        let envelope = envelopes.count - 1
        let isShared = envelopes[envelope].shared != nil
        // Unshared, the resource's selected strings point into its copy in the payload; shared, the
        // envelope's first span copies them to the payload (`.empty`: nothing to point into) and
        // the envelope's next spans repeat those attributes.
        let resourceCopy = isShared ? ByteRange.empty : envelopes[envelope].resource
        let encoded = copy(span.encoded, from: batch)
        let (nameOffset, nameLength) = Self.place(of: span.name, within: span.encoded)
        let first = attributes.count
        // Through the buffer, not `batch.attributes(of:)`: each slice retained and released the
        // batch's attribute array, per span.
        batch.attributes.withUnsafeBufferPointer { selected in
            for index in Int(span.firstAttribute)..<(Int(span.firstAttribute) + Int(span.attributeCount)) {
                let attribute = selected[index]
                attributes.append(
                    TraceAttribute(
                        key: attribute.key, value: convert(attribute.value, from: batch, within: span.encoded, copiedTo: encoded),
                        fromResource: false))
            }
            if isShared && !firstOfSharedEnvelope {
                for index in envelopeResourceAttributes { attributes.append(attributes[index]) }
                return
            }
            let resourceStart = attributes.count
            for index in Int(resource.firstAttribute)..<(Int(resource.firstAttribute) + Int(resource.attributeCount)) {
                let attribute = selected[index]
                attributes.append(
                    TraceAttribute(
                        key: attribute.key, value: convert(attribute.value, from: batch, within: resource.encoded, copiedTo: resourceCopy),
                        fromResource: true))
            }
            if isShared { envelopeResourceAttributes = resourceStart..<attributes.count }
        }
        spans.append(
            BufferedSpan(
                spanID: span.spanID, parentSpanID: span.parentSpanID, startTimeUnixNano: span.startTimeUnixNano,
                endTimeUnixNano: span.endTimeUnixNano, flags: span.flags, kind: span.kind, statusCode: span.statusCode,
                attributeCount: UInt16(clamping: attributes.count - first),
                traceState: encoded.relocate(span.traceState, from: span.encoded) ?? copy(span.traceState, from: batch), encoded: encoded,
                envelope: UInt32(envelope), firstAttribute: UInt32(first), nameOffset: nameOffset, nameLength: nameLength, series: series))
        encodedBytes += Int(span.encoded.count)
    }

    private mutating func copy(_ range: ByteRange, from batch: SpanBatch) -> ByteRange {
        guard range.count > 0 else { return .empty }
        let offset = payload.count
        batch.bytes.withUnsafeBufferPointer { all in
            // As a buffer, not a slice of one: the slice's generic path cost ~100 instructions a call.
            payload.append(contentsOf: UnsafeBufferPointer(rebasing: all[range.lowerBound..<range.upperBound]))
        }
        return ByteRange(offset: offset, count: Int(range.count))
    }

    private mutating func convert(
        _ value: AttributeValue, from batch: SpanBatch, within source: ByteRange, copiedTo copy: ByteRange
    ) -> TraceAttributeValue {
        switch value {
        case .string(let range): .string(copy.relocate(range, from: source) ?? self.copy(range, from: batch))
        case .int(let int): .int(int)
        case .double(let double): .double(double)
        case .bool(let bool): .bool(bool)
        case .bytes, .array, .keyValueList, .empty: .other
        }
    }

    /// The attributes of `span` (its own, then its resource's).
    public func attributes(of span: BufferedSpan) -> ArraySlice<TraceAttribute> {
        attributes[Int(span.firstAttribute)..<(Int(span.firstAttribute) + Int(span.attributeCount))]
    }

    /// Calls `body` with the bytes of `range`.
    public func withBytes<R>(_ range: ByteRange, _ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try payload.withUnsafeBytes { all in
            try body(UnsafeRawBufferPointer(rebasing: all[range.lowerBound..<range.upperBound]))
        }
    }

    /// Calls `body` with the bytes of `range`, one of `envelope`'s resource and scope ranges (in the
    /// payload, or in the shared envelope's bytes).
    public func withBytes<R>(_ range: ByteRange, of envelope: SpanEnvelope, _ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        if let shared = envelope.shared { return try shared.withBytes(range, body) }
        return try withBytes(range, body)
    }

    /// The bytes of `range` as a string (allocates).
    public func string(_ range: ByteRange) -> String { withBytes(range) { String(decoding: $0, as: UTF8.self) } }

    /// The `service.name` of the resource `span` was sent under (empty range when none).
    @inlinable public func service(of span: BufferedSpan) -> ByteRange { envelopes[Int(span.envelope)].service }

    /// The span's name: where the buffered span records it in its encoded bytes (in the record's
    /// padding), else found by walking the span's fields (a name past 64 KiB).
    public func name(of span: BufferedSpan) -> ByteRange {
        payload.withUnsafeBytes { Self.spanName(of: span, in: $0) }
    }

    /// The name of `span` in `payload`: where the span records it, else found in its fields.
    @inline(__always)
    public static func spanName(of span: BufferedSpan, in payload: UnsafeRawBufferPointer) -> ByteRange {
        guard span.nameLength != BufferedSpan.nameUnknown else { return spanName(in: payload, encoded: span.encoded) }
        return ByteRange(offset: span.encoded.offset + UInt32(span.nameOffset), count: UInt32(span.nameLength))
    }

    /// `name`'s offset within `encoded` and its length, each in 16 bits (``BufferedSpan/nameUnknown``
    /// as the length when they do not fit, or when the name does not lie within the span's bytes).
    static func place(of name: ByteRange, within encoded: ByteRange) -> (offset: UInt16, length: UInt16) {
        guard name.count > 0 else { return (0, 0) }
        guard name.offset >= encoded.offset, name.upperBound <= encoded.upperBound,
            name.offset - encoded.offset < UInt32(BufferedSpan.nameUnknown), name.count < UInt32(BufferedSpan.nameUnknown)
        else { return (0, BufferedSpan.nameUnknown) }
        return (UInt16(name.offset - encoded.offset), UInt16(name.count))
    }

    /// ``name(of:)`` over the payload's bytes, for callers that hold them already.
    public static func spanName(in payload: UnsafeRawBufferPointer, encoded: ByteRange) -> ByteRange {
        guard let base = payload.baseAddress, encoded.upperBound <= payload.count else { return .empty }
        // Fast path: one-byte tags and one-byte lengths, as every SDK writes the fields before the name.
        var position = encoded.lowerBound
        let end = encoded.upperBound
        while position + 2 <= end {
            let tag = base.load(fromByteOffset: position, as: UInt8.self)
            let length = Int(base.load(fromByteOffset: position + 1, as: UInt8.self))
            guard tag & 0x07 == 2, length < 0x80 else { break }
            if tag == 0x2A {
                guard position + 2 + length <= end else { return .empty }
                return ByteRange(offset: position + 2, count: length)
            }
            position += 2 + length
        }
        var reader = WireReader(base: base, range: position..<end)
        do {
            while !reader.isAtEnd {
                let (field, wireType) = try reader.readTag()
                if field == OTLPField.Span.name && wireType == 2 {
                    let range = try reader.readLengthDelimited()
                    return ByteRange(offset: range.lowerBound, count: range.count)
                }
                try reader.skip(wireType: wireType)
            }
        } catch {}
        return .empty
    }

    /// Trace duration as the collector measures it: latest end minus earliest start.
    public var durationNanos: UInt64 {
        guard let first = spans.first else { return 0 }
        var earliest = first.startTimeUnixNano
        var latest = first.endTimeUnixNano
        for span in spans.dropFirst() {
            earliest = min(earliest, span.startTimeUnixNano)
            latest = max(latest, span.endTimeUnixNano)
        }
        return latest > earliest ? latest - earliest : 0
    }

    /// Merges another piece of the same trace (spans that reached another buffer).
    public mutating func append(contentsOf other: TraceData) {
        let payloadBase = UInt32(payload.count)
        let envelopeBase = UInt32(envelopes.count)
        let attributeBase = UInt32(attributes.count)
        payload.append(contentsOf: other.payload)
        func shift(_ range: ByteRange) -> ByteRange {
            range.count == 0 ? range : ByteRange(offset: range.offset + payloadBase, count: range.count)
        }
        for envelope in other.envelopes {
            if envelope.shared != nil {
                var moved = envelope
                moved.service = shift(envelope.service)
                envelopes.append(moved)
                continue
            }
            envelopes.append(
                SpanEnvelope(
                    resource: shift(envelope.resource), resourceSchemaURL: shift(envelope.resourceSchemaURL),
                    scope: shift(envelope.scope), scopeSchemaURL: shift(envelope.scopeSchemaURL), service: shift(envelope.service)))
        }
        for attribute in other.attributes {
            var moved = attribute
            if case .string(let range) = attribute.value { moved.value = .string(shift(range)) }
            attributes.append(moved)
        }
        for span in other.spans {
            var moved = span
            moved.traceState = shift(span.traceState)
            moved.encoded = shift(span.encoded)
            moved.envelope = span.envelope + envelopeBase
            moved.firstAttribute = span.firstAttribute + attributeBase
            spans.append(moved)
        }
        encodedBytes += other.encodedBytes
        lastEnvelopeSource = nil
        envelopeResourceAttributes = 0..<0
    }
}

/// Whether a trace arrived whole, as far as its own spans can tell: its root came, and no span
/// names a parent that never came.
public struct TraceIntegrity: Sendable, Equatable {
    public var rootSeen: Bool
    /// Spans whose parent id is set but is no span of the trace.
    public var orphanSpans: Int
    public var complete: Bool { rootSeen && orphanSpans == 0 }

    public init(rootSeen: Bool, orphanSpans: Int) {
        self.rootSeen = rootSeen
        self.orphanSpans = orphanSpans
    }

    /// The attributes stamped on the trace's root span (its first span when rootless).
    public static let completeKey = "tailgate.trace.complete"
    public static let orphanSpansKey = "tailgate.trace.orphan_spans"
    /// The attribute on a span that arrived after its trace was decided (and kept).
    public static let lateKey = "tailgate.late"
}

extension TraceData {
    /// The trace's integrity: the span ids sorted in a temporary buffer (on the stack for usual
    /// traces) and a binary search per parent — no hashing, no allocation on the decision path.
    public var integrity: TraceIntegrity {
        withUnsafeTemporaryAllocation(of: UInt64.self, capacity: spans.count) { buffer in
            var ids = buffer
            for index in spans.indices { ids[index] = spans[index].spanID.rawValue }
            ids.sort()
            var rootSeen = false
            var orphans = 0
            for span in spans {
                guard span.parentSpanID.isValid else {
                    rootSeen = true
                    continue
                }
                let parent = span.parentSpanID.rawValue
                var low = 0, high = ids.count
                while low < high {
                    let middle = (low + high) / 2
                    if ids[middle] < parent { low = middle + 1 } else { high = middle }
                }
                if low == ids.count || ids[low] != parent { orphans += 1 }
            }
            return TraceIntegrity(rootSeen: rootSeen, orphanSpans: orphans)
        }
    }

    /// The span the integrity is stamped on: the root, else the first span.
    public var integritySpanIndex: Int { spans.firstIndex { !$0.parentSpanID.isValid } ?? 0 }
}

extension TraceData {
    /// The trace's spans as one OTLP `ExportTraceServiceRequest`, each span byte for byte under the
    /// resource and scope it was sent with; with `policy`, each span also carries the attribute
    /// `tailgate.policy` (appended after its received bytes: a repeated field may come anywhere).
    /// `traceState`: a replacement W3C tracestate per span index (nil: the span keeps its own),
    /// appended as a second `trace_state` field, which protobuf readers take over the first (the last
    /// occurrence of a singular field wins), so every received byte of the span stays as it was.
    /// `decision`: a dry run's `tailgate.decision` (`keep`/`drop`) appended to every span too.
    /// `integrity`: `tailgate.trace.complete` and `tailgate.trace.orphan_spans` on the root span (the
    /// first when rootless); `late`: `tailgate.late` = true on every span (it came after the decision).
    public func exportRequest(
        policy: String? = nil, decision: String? = nil, sampleRate: Int? = nil, integrity: TraceIntegrity? = nil, late: Bool = false,
        traceState: ((Int) -> String?)? = nil
    ) -> [UInt8] {
        var attribute: [UInt8] = []
        if let policy, !policy.isEmpty { attribute = Self.policyAttribute(policy) }
        if let decision { attribute += Self.stringAttribute(Self.decisionAttributeKey, decision) }
        if let sampleRate { attribute += Self.intAttribute(Self.sampleRateAttributeKey, Int64(sampleRate)) }
        if late { attribute += Self.boolAttribute(TraceIntegrity.lateKey, true) }
        let integritySpan = integrity == nil ? -1 : integritySpanIndex
        let integrityAttributes = integrity.map {
            Self.boolAttribute(TraceIntegrity.completeKey, $0.complete) + Self.intAttribute(TraceIntegrity.orphanSpansKey, Int64($0.orphanSpans))
        } ?? []
        var writer = ProtoWriter()
        // Shared envelopes' bytes are not in the payload (its copies of service names and resource
        // strings are not written, so this is an upper bound either way).
        var sharedBytes = 0
        for envelope in envelopes where envelope.shared != nil {
            sharedBytes += Int(envelope.resource.count) + Int(envelope.resourceSchemaURL.count) + Int(envelope.scope.count)
                + Int(envelope.scopeSchemaURL.count)
        }
        writer.bytes.reserveCapacity(payload.count + sharedBytes + spans.count * (8 + attribute.count) + envelopes.count * 16 + 64)
        var index = 0
        while index < spans.count {
            let envelope = envelopes[Int(spans[index].envelope)]
            let resourceSpans = writer.beginNested(OTLPField.ExportTraceServiceRequest.resourceSpans)
            withBytes(envelope.resource, of: envelope) { writer.writeBytesField(OTLPField.ResourceSpans.resource, $0) }
            let scopeSpans = writer.beginNested(OTLPField.ResourceSpans.scopeSpans)
            if envelope.scope.count > 0 { withBytes(envelope.scope, of: envelope) { writer.writeBytesField(OTLPField.ScopeSpans.scope, $0) } }
            let current = spans[index].envelope
            while index < spans.count && spans[index].envelope == current {
                var suffix = attribute
                if index == integritySpan { suffix += integrityAttributes }
                if let replacement = traceState?(index) {
                    var field = ProtoWriter()
                    field.writeStringField(OTLPField.Span.traceState, replacement)
                    suffix += field.bytes
                }
                if suffix.isEmpty {
                    withBytes(spans[index].encoded) { writer.writeBytesField(OTLPField.ScopeSpans.spans, $0) }
                } else {
                    writer.writeTag(field: OTLPField.ScopeSpans.spans, wireType: 2)
                    writer.writeVarint(UInt64(spans[index].encoded.count) + UInt64(suffix.count))
                    withBytes(spans[index].encoded) { writer.bytes.append(contentsOf: $0) }
                    writer.bytes.append(contentsOf: suffix)
                }
                index += 1
            }
            if envelope.scopeSchemaURL.count > 0 { withBytes(envelope.scopeSchemaURL, of: envelope) { writer.writeBytesField(OTLPField.ScopeSpans.schemaURL, $0) } }
            writer.endNested(scopeSpans)
            if envelope.resourceSchemaURL.count > 0 { withBytes(envelope.resourceSchemaURL, of: envelope) { writer.writeBytesField(OTLPField.ResourceSpans.schemaURL, $0) } }
            writer.endNested(resourceSpans)
        }
        return writer.bytes
    }

    /// Span field 9 (attributes) holding `tailgate.policy` = `policy`, encoded.
    public static func policyAttribute(_ policy: String) -> [UInt8] {
        var writer = ProtoWriter()
        writer.bytes.reserveCapacity(policy.utf8.count + policyAttributeKey.utf8.count + 16)
        writer.writeNested(OTLPField.Span.attributes) { kv in
            kv.writeStringField(OTLPField.KeyValue.key, policyAttributeKey)
            kv.writeNested(OTLPField.KeyValue.value) { $0.writeStringField(OTLPField.AnyValue.stringValue, policy) }
        }
        return writer.bytes
    }

    /// Span field 9 (attributes) holding `key` = `value` (a string), encoded.
    public static func stringAttribute(_ key: String, _ value: String) -> [UInt8] {
        var writer = ProtoWriter()
        writer.writeNested(OTLPField.Span.attributes) { kv in
            kv.writeStringField(OTLPField.KeyValue.key, key)
            kv.writeNested(OTLPField.KeyValue.value) { $0.writeStringField(OTLPField.AnyValue.stringValue, value) }
        }
        return writer.bytes
    }

    /// Span field 9 (attributes) holding `key` = `value` (a bool), encoded.
    public static func boolAttribute(_ key: String, _ value: Bool) -> [UInt8] {
        var writer = ProtoWriter()
        writer.writeNested(OTLPField.Span.attributes) { kv in
            kv.writeStringField(OTLPField.KeyValue.key, key)
            kv.writeNested(OTLPField.KeyValue.value) { $0.writeVarintField(OTLPField.AnyValue.boolValue, value ? 1 : 0) }
        }
        return writer.bytes
    }

    /// Span field 9 (attributes) holding `key` = `value` (an int), encoded.
    public static func intAttribute(_ key: String, _ value: Int64) -> [UInt8] {
        var writer = ProtoWriter()
        writer.writeNested(OTLPField.Span.attributes) { kv in
            kv.writeStringField(OTLPField.KeyValue.key, key)
            kv.writeNested(OTLPField.KeyValue.value) { $0.writeVarintField(OTLPField.AnyValue.intValue, UInt64(bitPattern: value)) }
        }
        return writer.bytes
    }

    /// Refinery's attribute for the number of traces a kept trace stands for (an adaptive sampler's rate).
    public static let sampleRateAttributeKey = "SampleRate"

    /// The attribute a dry run tags every span with: what the rules decided (`keep`/`drop`).
    public static let decisionAttributeKey = "tailgate.decision"

    /// The attribute naming the policy that kept a trace.
    public static let policyAttributeKey = "tailgate.policy"
}
