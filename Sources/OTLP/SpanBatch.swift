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
    /// Resources decoded so far in this batch, by a digest of their bytes (index + 1; 0: empty): a
    /// resource that repeats byte for byte — every message of one service process sends the same —
    /// is taken from the first copy instead of parsed again.
    private var resourceMemo: [UInt32]
    static let resourceMemoSlots = 256

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
        resourceMemo = Array(repeating: 0, count: Self.resourceMemoSlots)
    }

    /// How much a batch holds: what a batch about to decode a poll like the last ones reserves.
    public struct Shape: Sendable, Equatable {
        public var bytes = 0, spans = 0, scopes = 0, resources = 0, attributes = 0
        public init() {}

        /// Each count the larger of the two.
        public func union(_ other: Shape) -> Shape {
            var shape = Shape()
            shape.bytes = max(bytes, other.bytes)
            shape.spans = max(spans, other.spans)
            shape.scopes = max(scopes, other.scopes)
            shape.resources = max(resources, other.resources)
            shape.attributes = max(attributes, other.attributes)
            return shape
        }

        /// Each count less a sixty-fourth: a peak fades over a few hundred polls.
        public var faded: Shape {
            var shape = self
            shape.bytes -= bytes / 64
            shape.spans -= spans / 64
            shape.scopes -= scopes / 64
            shape.resources -= resources / 64
            shape.attributes -= attributes / 64
            return shape
        }
    }

    /// What this batch holds now.
    public var shape: Shape {
        var shape = Shape()
        shape.bytes = bytes.count
        shape.spans = spans.count
        shape.scopes = scopes.count
        shape.resources = resources.count
        shape.attributes = attributes.count
        return shape
    }

    /// Makes room for `shape` at once, so decoding a poll does not grow (and copy) its buffers by
    /// doubling. Capacity is address space until written: room reserved and not used costs no page.
    public mutating func reserve(_ shape: Shape) {
        if bytes.capacity < shape.bytes { bytes.reserveCapacity(shape.bytes) }
        if spans.capacity < shape.spans { spans.reserveCapacity(shape.spans) }
        if scopes.capacity < shape.scopes { scopes.reserveCapacity(shape.scopes) }
        if resources.capacity < shape.resources { resources.reserveCapacity(shape.resources) }
        if attributes.capacity < shape.attributes { attributes.reserveCapacity(shape.attributes) }
    }

    /// Empties the batch, keeping capacity.
    public mutating func removeAll() {
        bytes.removeAll(keepingCapacity: true)
        spans.removeAll(keepingCapacity: true)
        scopes.removeAll(keepingCapacity: true)
        resources.removeAll(keepingCapacity: true)
        attributes.removeAll(keepingCapacity: true)
        forgetResources()
    }

    private mutating func forgetResources() {
        resourceMemo.withUnsafeMutableBufferPointer { $0.update(repeating: 0) }
    }

    /// The memo slot of the resource bytes at `range` of `base`: a digest of all of them, thirty-two
    /// bytes at a time. (Four words sampled from it were cheaper and put three of DogBook's six
    /// services in one slot — resources of one deployment share their shape and differ in a few
    /// bytes — so those evicted each other all poll long and were parsed again at every message.)
    @inline(__always)
    static func resourceSlot(base: UnsafeRawPointer, range: Range<Int>) -> Int {
        let count = range.count
        var a = UInt64(truncatingIfNeeded: count) &* 0x9E37_79B9_7F4A_7C15
        var b = a ^ 0xC2B2_AE3D_27D4_EB4F
        var c = a ^ 0x1656_67B1_9E37_79F9
        var d = a ^ 0x27D4_EB2F_1656_67C5
        var offset = range.lowerBound
        let end = range.upperBound
        while offset &+ 32 <= end {
            a = (a ^ base.loadUnaligned(fromByteOffset: offset, as: UInt64.self)) &* 0xBF58_476D_1CE4_E5B9
            b = (b ^ base.loadUnaligned(fromByteOffset: offset &+ 8, as: UInt64.self)) &* 0x94D0_49BB_1331_11EB
            c = (c ^ base.loadUnaligned(fromByteOffset: offset &+ 16, as: UInt64.self)) &* 0xBF58_476D_1CE4_E5B9
            d = (d ^ base.loadUnaligned(fromByteOffset: offset &+ 24, as: UInt64.self)) &* 0x94D0_49BB_1331_11EB
            offset &+= 32
        }
        while offset &+ 8 <= end {
            a = (a ^ base.loadUnaligned(fromByteOffset: offset, as: UInt64.self)) &* 0xBF58_476D_1CE4_E5B9
            offset &+= 8
        }
        a ^= (c ^ (c >> 27)) &+ (d ^ (d >> 33))
        if count >= 8 {
            a = (a ^ base.loadUnaligned(fromByteOffset: end &- 8, as: UInt64.self)) &* 0xBF58_476D_1CE4_E5B9
        } else {
            while offset < end {
                a = (a ^ UInt64(base.load(fromByteOffset: offset, as: UInt8.self))) &* 0xBF58_476D_1CE4_E5B9
                offset &+= 1
            }
        }
        let digest = ((a ^ (a >> 31)) &+ (b ^ (b >> 29))) &* 0x9E37_79B9_7F4A_7C15
        return Int(truncatingIfNeeded: digest >> 56)
    }

    /// A resource decoded earlier in this batch whose bytes equal those at `range` of `base`.
    @inline(__always)
    func memoizedResource(base: UnsafeRawPointer, range: Range<Int>, slot: Int) -> ResourceRecord? {
        // Two ways: the slot, then its neighbour.
        var way = slot
        while true {
            let entry = resourceMemo[way]
            guard entry != 0 else { return nil }
            let candidate = resources[Int(entry) - 1]
            if Int(candidate.encoded.count) == range.count, candidate.encoded.lowerBound != range.lowerBound,
                memcmpEqual(base + Int(candidate.encoded.offset), base + range.lowerBound, range.count)
            {
                return candidate
            }
            guard way == slot else { return nil }
            way = slot ^ 1
        }
    }

    mutating func memoizeResource(_ index: Int, slot: Int) {
        let way = resourceMemo[slot] == 0 || resourceMemo[slot ^ 1] != 0 ? slot : slot ^ 1
        resourceMemo[way] = UInt32(truncatingIfNeeded: index + 1)
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
        forgetResources()
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
