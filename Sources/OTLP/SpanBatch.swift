/// The decoded form of one or more OTLP messages: their bytes, copied once, and compact records
/// that point into them.
///
/// A batch is reused: ``removeAll()`` keeps every buffer's capacity, so a steady stream of messages
/// decodes with no heap allocation per span or per attribute.
public struct SpanBatch: Sendable {
    /// The protobuf bytes every ``ByteRange`` in this batch refers to.
    public internal(set) var bytes: [UInt8]
    public internal(set) var spans: [SpanRecord]
    public internal(set) var scopes: [ScopeRecord]
    public internal(set) var resources: [ResourceRecord]
    /// Selected attributes of spans and resources, in runs that records index.
    public internal(set) var attributes: [SelectedAttribute]
    /// The keys whose values were decoded into ``attributes``.
    public let selection: AttributeSelection

    /// An empty batch that decodes the attributes in `selection`.
    public init(selection: AttributeSelection = .none, reservingBytes: Int = 0, spans: Int = 0) {
        self.selection = selection
        bytes = []
        bytes.reserveCapacity(reservingBytes)
        self.spans = []
        self.spans.reserveCapacity(spans)
        scopes = []
        resources = []
        attributes = []
    }

    /// Empties the batch, keeping capacity.
    public mutating func removeAll() {
        bytes.removeAll(keepingCapacity: true)
        spans.removeAll(keepingCapacity: true)
        scopes.removeAll(keepingCapacity: true)
        resources.removeAll(keepingCapacity: true)
        attributes.removeAll(keepingCapacity: true)
    }

    /// A mark to roll back to when a message turns out malformed half-way through.
    struct Mark {
        var bytes: Int, spans: Int, scopes: Int, resources: Int, attributes: Int
    }

    var mark: Mark {
        Mark(
            bytes: bytes.count, spans: spans.count, scopes: scopes.count, resources: resources.count,
            attributes: attributes.count)
    }

    mutating func rollBack(to mark: Mark) {
        bytes.removeSubrange(mark.bytes...)
        spans.removeSubrange(mark.spans...)
        scopes.removeSubrange(mark.scopes...)
        resources.removeSubrange(mark.resources...)
        attributes.removeSubrange(mark.attributes...)
    }

    // MARK: Reading

    /// Calls `body` with the bytes of `range`.
    public func withBytes<R>(_ range: ByteRange, _ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try bytes.withUnsafeBytes { all in
            try body(UnsafeRawBufferPointer(rebasing: all[range.lowerBound..<range.upperBound]))
        }
    }

    /// The bytes of `range` as a `String` (invalid UTF-8 is repaired). Allocates: not for hot paths.
    public func string(_ range: ByteRange) -> String {
        withBytes(range) { String(decoding: $0, as: UTF8.self) }
    }

    /// Whether the bytes of `range` equal the UTF-8 of `literal`, without allocating.
    public func bytes(_ range: ByteRange, equal literal: StaticString) -> Bool {
        guard Int(range.count) == literal.utf8CodeUnitCount else { return false }
        return withBytes(range) { memcmpEqual($0.baseAddress ?? UnsafeRawPointer(literal.utf8Start), literal.utf8Start, Int(range.count)) }
    }

    /// The selected attributes of `span`.
    public func attributes(of span: SpanRecord) -> ArraySlice<SelectedAttribute> {
        attributes[Int(span.firstAttribute)..<(Int(span.firstAttribute) + Int(span.attributeCount))]
    }

    /// The selected attributes of `resource`.
    public func attributes(of resource: ResourceRecord) -> ArraySlice<SelectedAttribute> {
        attributes[Int(resource.firstAttribute)..<(Int(resource.firstAttribute) + Int(resource.attributeCount))]
    }

    /// The resource a span was sent under.
    public func resource(of span: SpanRecord) -> ResourceRecord {
        resources[Int(scopes[Int(span.scopeIndex)].resourceIndex)]
    }

    /// The span's `service.name` (empty range when the resource had none).
    public func serviceName(of span: SpanRecord) -> ByteRange {
        resource(of: span).serviceName
    }

    /// The value of selected attribute `key` for `span`: the span's own attribute first, then its
    /// resource's, as the collector's attribute policies look in both.
    public func value(of key: AttributeKeyID, for span: SpanRecord) -> AttributeValue? {
        for attribute in attributes(of: span) where attribute.key == key { return attribute.value }
        for attribute in attributes(of: resource(of: span)) where attribute.key == key { return attribute.value }
        return nil
    }
}
