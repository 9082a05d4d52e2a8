/// A range of bytes inside a ``SpanBatch``'s storage. Records point into the batch instead of owning
/// copies, so decoding allocates nothing per span or per attribute.
public struct ByteRange: Hashable, Sendable {
    /// Offset from the start of the batch's bytes.
    public var offset: UInt32
    /// Number of bytes.
    public var count: UInt32

    @inlinable public init(offset: UInt32, count: UInt32) {
        self.offset = offset
        self.count = count
    }

    @inlinable public init(offset: Int, count: Int) {
        self.offset = UInt32(truncatingIfNeeded: offset)
        self.count = UInt32(truncatingIfNeeded: count)
    }

    /// The empty range.
    public static let empty = ByteRange(offset: 0 as UInt32, count: 0)

    @inlinable public var isEmpty: Bool { count == 0 }
    @inlinable public var lowerBound: Int { Int(offset) }
    @inlinable public var upperBound: Int { Int(offset) + Int(count) }

    /// Whether `other` (non-empty) lies within this range.
    @inlinable public func contains(_ other: ByteRange) -> Bool {
        other.count > 0 && other.offset >= offset && UInt64(other.offset) + UInt64(other.count) <= UInt64(offset) + UInt64(count)
    }

    /// `inner`, a range inside `source`, moved to where `source`'s bytes were copied (this range,
    /// as long as `source`); nil when `inner` is empty or not inside `source`.
    @inlinable public func relocate(_ inner: ByteRange, from source: ByteRange) -> ByteRange? {
        guard source.contains(inner), count == source.count else { return nil }
        return ByteRange(offset: offset + (inner.offset - source.offset), count: inner.count)
    }
}

/// OTLP `Span.SpanKind`.
public enum SpanKind: UInt8, Sendable, CaseIterable {
    case unspecified = 0, `internal` = 1, server = 2, client = 3, producer = 4, consumer = 5

    /// The proto enum name, as Grafana Tempo's metrics use it (`SPAN_KIND_SERVER`).
    public var protoName: String {
        switch self {
        case .unspecified: "SPAN_KIND_UNSPECIFIED"
        case .internal: "SPAN_KIND_INTERNAL"
        case .server: "SPAN_KIND_SERVER"
        case .client: "SPAN_KIND_CLIENT"
        case .producer: "SPAN_KIND_PRODUCER"
        case .consumer: "SPAN_KIND_CONSUMER"
        }
    }

    /// Maps an enum number from the wire; numbers from a newer proto become `.unspecified`.
    @inlinable public init(wireValue: UInt64) {
        self = SpanKind(rawValue: UInt8(truncatingIfNeeded: min(wireValue, 255))) ?? .unspecified
    }
}

/// OTLP `Status.StatusCode`.
public enum StatusCode: UInt8, Sendable, CaseIterable {
    case unset = 0, ok = 1, error = 2

    /// The proto enum name (`STATUS_CODE_ERROR`).
    public var protoName: String {
        switch self {
        case .unset: "STATUS_CODE_UNSET"
        case .ok: "STATUS_CODE_OK"
        case .error: "STATUS_CODE_ERROR"
        }
    }

    @inlinable public init(wireValue: UInt64) {
        self = StatusCode(rawValue: UInt8(truncatingIfNeeded: min(wireValue, 255))) ?? .unset
    }
}

/// One decoded span: the fields sampling and metrics read, plus where its encoded bytes are.
///
/// Strings and the encoded span are ``ByteRange``s into the owning ``SpanBatch``.
public struct SpanRecord: Sendable {
    public var traceID: TraceID
    public var spanID: SpanID
    /// `.zero` for a root span.
    public var parentSpanID: SpanID
    public var startTimeUnixNano: UInt64
    public var endTimeUnixNano: UInt64
    /// OTLP `Span.flags`: W3C trace flags in bits 0-7, `is_remote` knowledge in bits 8-9.
    public var flags: UInt32
    public var kind: SpanKind
    public var statusCode: StatusCode
    /// Number of selected span attributes in ``SpanBatch/attributes`` starting at `firstAttribute`.
    public var attributeCount: UInt16
    public var name: ByteRange
    public var traceState: ByteRange
    public var statusMessage: ByteRange
    /// The span's complete protobuf encoding (a `Span` message), for re-export byte for byte.
    public var encoded: ByteRange
    /// Index into ``SpanBatch/scopes``: the scope and resource this span was sent under.
    public var scopeIndex: UInt32
    public var firstAttribute: UInt32

    /// Whether this span has no parent within its trace.
    @inlinable public var isRoot: Bool { !parentSpanID.isValid }

    /// End minus start, in nanoseconds; 0 when a broken clock put the end first.
    @inlinable public var durationNanos: UInt64 {
        endTimeUnixNano >= startTimeUnixNano ? endTimeUnixNano - startTimeUnixNano : 0
    }

    /// W3C `sampled` flag.
    @inlinable public var isSampledFlagSet: Bool { flags & 0x01 != 0 }
}

/// A `ResourceSpans`' resource: its encoding, its `service.name` and its selected attributes.
public struct ResourceRecord: Sendable {
    /// The `Resource` message bytes (empty when the sender sent none).
    public var encoded: ByteRange
    /// `ResourceSpans.schema_url`.
    public var schemaURL: ByteRange
    /// The `service.name` string attribute; empty when absent.
    public var serviceName: ByteRange
    public var firstAttribute: UInt32
    public var attributeCount: UInt16
    /// The index of the first resource of the batch with the same bytes (its own when none came
    /// before): repeats are known without comparing bytes again.
    public var canonical: UInt32 = 0
}

/// A `ScopeSpans`' instrumentation scope.
public struct ScopeRecord: Sendable {
    /// The `InstrumentationScope` message bytes (empty when absent).
    public var encoded: ByteRange
    /// `ScopeSpans.schema_url`.
    public var schemaURL: ByteRange
    /// `InstrumentationScope.name`.
    public var name: ByteRange
    /// Index into ``SpanBatch/resources``.
    public var resourceIndex: UInt32
}
