/// The attribute keys the rules and metrics ask for. Only these are decoded into typed values; all
/// others are skipped (they still travel in the span's encoded bytes).
///
/// Keys are matched on raw UTF-8 bytes, so the decoder never builds a `String` for a key.
public struct AttributeSelection: Sendable, Equatable {
    /// The selected keys, in the order their ids are assigned.
    public let keys: [String]
    let keyBytes: [[UInt8]]
    /// Bit set of selected key lengths (lengths ≥ 64 share bit 63), a cheap first filter.
    let lengthMask: UInt64

    /// Selects `keys` (duplicates are kept once, first occurrence wins).
    public init(keys: [String]) {
        var seen = Set<String>()
        let unique = keys.filter { seen.insert($0).inserted }
        self.keys = unique
        keyBytes = unique.map { Array($0.utf8) }
        lengthMask = keyBytes.reduce(0) { $0 | (1 << UInt64(min($1.count, 63))) }
    }

    /// Selects nothing: the decoder only extracts `service.name`.
    public static let none = AttributeSelection(keys: [])

    /// The id of `key`, or nil when it is not selected.
    public func id(of key: String) -> AttributeKeyID? {
        keys.firstIndex(of: key).map { AttributeKeyID(rawValue: UInt16($0)) }
    }

    @inline(__always)
    func match(_ bytes: UnsafeRawBufferPointer, _ range: Range<Int>) -> AttributeKeyID? {
        let count = range.count
        guard lengthMask & (1 << UInt64(min(count, 63))) != 0 else { return nil }
        for index in keyBytes.indices {
            let candidate = keyBytes[index]
            guard candidate.count == count else { continue }
            let equal = candidate.withUnsafeBytes { key in
                memcmpEqual(key.baseAddress!, bytes.baseAddress! + range.lowerBound, count)
            }
            if equal { return AttributeKeyID(rawValue: UInt16(index)) }
        }
        return nil
    }
}

@inline(__always)
func memcmpEqual(_ a: UnsafeRawPointer, _ b: UnsafeRawPointer, _ count: Int) -> Bool {
    var i = 0
    while i + 8 <= count {
        if a.loadUnaligned(fromByteOffset: i, as: UInt64.self) != b.loadUnaligned(fromByteOffset: i, as: UInt64.self) {
            return false
        }
        i += 8
    }
    while i < count {
        if a.load(fromByteOffset: i, as: UInt8.self) != b.load(fromByteOffset: i, as: UInt8.self) { return false }
        i += 1
    }
    return true
}

/// Index of a key in an ``AttributeSelection``.
public struct AttributeKeyID: Hashable, Sendable {
    public var rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }
}

/// A typed OTLP `AnyValue`; strings, bytes and nested values are ranges into the batch.
public enum AttributeValue: Sendable, Equatable {
    case string(ByteRange)
    case bool(Bool)
    case int(Int64)
    case double(Double)
    case bytes(ByteRange)
    /// An `ArrayValue` message, still encoded.
    case array(ByteRange)
    /// A `KeyValueList` message, still encoded.
    case keyValueList(ByteRange)
    /// An `AnyValue` with no value set.
    case empty
}

/// One selected attribute of a span or resource.
public struct SelectedAttribute: Sendable, Equatable {
    public var key: AttributeKeyID
    public var value: AttributeValue
}
