#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The attribute keys the rules and metrics ask for. Only these are decoded into typed values; all
/// others are skipped (they still travel in the span's encoded bytes).
///
/// Keys are matched on raw UTF-8 bytes, so the decoder never builds a `String` for a key.
public struct AttributeSelection: Sendable, Equatable {
    /// The selected keys, in the order their ids are assigned.
    public let keys: [String]
    /// The keys' bytes, one after another (`keyStarts[i]..<keyStarts[i + 1]` is key `i`).
    let keyStore: [UInt8]
    let keyStarts: [Int]
    /// Bit set of selected key lengths (lengths ≥ 64 share bit 63), a cheap first filter.
    let lengthMask: UInt64
    /// Open-addressing table of key ids + 1 (0: empty), indexed by ``slot(of:count:)``: one probe and
    /// one comparison for a key whose length is selected, instead of a scan over every key.
    let table: [UInt16]
    let tableShift: UInt64

    /// Selects `keys` (duplicates are kept once, first occurrence wins).
    public init(keys: [String]) {
        var seen = Set<String>()
        let unique = keys.filter { seen.insert($0).inserted }
        self.keys = unique
        var store: [UInt8] = []
        var starts: [Int] = [0]
        for key in unique {
            store.append(contentsOf: key.utf8)
            starts.append(store.count)
        }
        store.append(0)  // never empty, so its base address exists even when only "" is selected
        keyStore = store
        keyStarts = starts
        lengthMask = unique.reduce(0) { $0 | (1 << UInt64(min($1.utf8.count, 63))) }
        // At most a quarter full: a key not selected usually meets an empty slot at once.
        var bits: UInt64 = 4
        while (1 << bits) < unique.count * 4 { bits += 1 }
        tableShift = 64 - bits
        var table = [UInt16](repeating: 0, count: 1 << Int(bits))
        store.withUnsafeBytes { bytes in
            for index in unique.indices {
                let count = starts[index + 1] - starts[index]
                var slot = Self.slot(of: bytes.baseAddress.map { $0 + starts[index] }, count: count, shift: 64 - bits)
                while table[slot] != 0 { slot = (slot + 1) & (table.count - 1) }
                table[slot] = UInt16(index + 1)
            }
        }
        self.table = table
    }

    /// Selects nothing: the decoder only extracts `service.name`.
    public static let none = AttributeSelection(keys: [])

    /// The id of `key`, or nil when it is not selected.
    public func id(of key: String) -> AttributeKeyID? {
        keys.firstIndex(of: key).map { AttributeKeyID(rawValue: UInt16($0)) }
    }

    /// Whether a key of `count` bytes might be selected (no key of that length is, when false).
    @inline(__always)
    func mayMatch(count: Int) -> Bool {
        lengthMask & (1 << UInt64(min(count, 63))) != 0
    }

    /// A key's home slot: its length and its first and last four bytes (or its first, middle and
    /// last byte when shorter), multiplied and shifted to the table's size.
    @inline(__always)
    static func slot(of key: UnsafeRawPointer?, count: Int, shift: UInt64) -> Int {
        var word = UInt64(truncatingIfNeeded: count)
        if let key {
            if count >= 4 {
                word ^= UInt64(key.loadUnaligned(as: UInt32.self)) << 8
                word ^= UInt64(key.loadUnaligned(fromByteOffset: count &- 4, as: UInt32.self)) << 32
            } else if count > 0 {
                word ^= UInt64(key.load(as: UInt8.self)) << 8
                word ^= UInt64(key.load(fromByteOffset: count >> 1, as: UInt8.self)) << 16
                word ^= UInt64(key.load(fromByteOffset: count &- 1, as: UInt8.self)) << 24
            }
        }
        return Int(truncatingIfNeeded: (word &* 0x9E37_79B9_7F4A_7C15) >> shift)
    }

    @inline(__always)
    func match(_ bytes: UnsafeRawBufferPointer, _ range: Range<Int>) -> AttributeKeyID? {
        let count = range.count
        guard mayMatch(count: count) else { return nil }
        let key = bytes.baseAddress! + range.lowerBound
        return table.withUnsafeBufferPointer { table in
            keyStore.withUnsafeBytes { store in
                keyStarts.withUnsafeBufferPointer { starts in
                    let mask = table.count &- 1
                    var slot = Self.slot(of: key, count: count, shift: tableShift)
                    while true {
                        let entry = Int(table[slot])
                        if entry == 0 { return nil }
                        let start = starts[entry &- 1]
                        if starts[entry] &- start == count, memcmpEqual(store.baseAddress! + start, key, count) {
                            return AttributeKeyID(rawValue: UInt16(truncatingIfNeeded: entry &- 1))
                        }
                        slot = (slot &+ 1) & mask
                    }
                }
            }
        }
    }
}

/// Whether `count` bytes at `a` and `b` are equal: words, the last one overlapping, and libc's
/// compare for long runs (the house's one byte comparison; span metrics' tables use it too).
@inline(__always)
public func memcmpEqual(_ a: UnsafeRawPointer, _ b: UnsafeRawPointer, _ count: Int) -> Bool {
    // Long runs (resources, scopes: hundreds of bytes) go to libc's vectorised compare, 32 bytes a step.
    if count >= 64 { return memcmp(a, b, count) == 0 }
    if count >= 8 {
        // Whole words, then the last word again, overlapping (keys are mostly 9 to 30 bytes).
        var i = 0
        while i &+ 8 <= count {
            if a.loadUnaligned(fromByteOffset: i, as: UInt64.self) != b.loadUnaligned(fromByteOffset: i, as: UInt64.self) {
                return false
            }
            i &+= 8
        }
        return a.loadUnaligned(fromByteOffset: count &- 8, as: UInt64.self) == b.loadUnaligned(fromByteOffset: count &- 8, as: UInt64.self)
    }
    if count >= 4 {
        return a.loadUnaligned(as: UInt32.self) == b.loadUnaligned(as: UInt32.self)
            && a.loadUnaligned(fromByteOffset: count &- 4, as: UInt32.self) == b.loadUnaligned(fromByteOffset: count &- 4, as: UInt32.self)
    }
    var i = 0
    while i < count {
        if a.load(fromByteOffset: i, as: UInt8.self) != b.load(fromByteOffset: i, as: UInt8.self) { return false }
        i &+= 1
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
