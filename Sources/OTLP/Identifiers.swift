/// A W3C / OTLP trace id: 16 bytes, kept as two big-endian halves so that it hashes and compares
/// without touching memory it does not own.
public struct TraceID: Hashable, Sendable, Comparable, CustomStringConvertible {
    /// The first 8 bytes, big-endian.
    public var high: UInt64
    /// The last 8 bytes, big-endian.
    public var low: UInt64

    @inlinable
    public init(high: UInt64, low: UInt64) {
        self.high = high
        self.low = low
    }

    /// A well-mixed 64-bit hash of the id (SplitMix64's finaliser over both halves): real trace ids
    /// are not always random (some SDKs and proxies put timestamps or constants in the high bytes).
    /// Routing to shards and the open-addressing tables use it.
    @inlinable
    public var mixed: UInt64 {
        var z = high ^ (low &* 0x9E37_79B9_7F4A_7C15)
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// The all-zero id, which W3C trace context and OTLP declare invalid.
    public static let zero = TraceID(high: 0, low: 0)

    /// Whether this id may identify a trace (W3C: not all zero).
    @inlinable public var isValid: Bool { high != 0 || low != 0 }

    /// Reads 16 bytes at `offset` as a trace id.
    @inlinable
    public init(bytes: UnsafeRawBufferPointer, at offset: Int) {
        high = UInt64(bigEndian: bytes.loadUnaligned(fromByteOffset: offset, as: UInt64.self))
        low = UInt64(bigEndian: bytes.loadUnaligned(fromByteOffset: offset + 8, as: UInt64.self))
    }

    /// Parses 32 hexadecimal characters (either case); nil for anything else.
    public init?(hex: some StringProtocol) {
        let utf8 = Array(hex.utf8)
        guard utf8.count == 32 else { return nil }
        guard let parsed = utf8.withUnsafeBytes({ TraceID(hexBytes: $0) }) else {
            return nil
        }
        self = parsed
    }

    /// Parses up to 32 hex digits, padding shorter ids with leading zeros as Tempo's API does.
    public init?(paddedHex text: some StringProtocol) {
        guard !text.isEmpty, text.count <= 32 else { return nil }
        self.init(hex: String(repeating: "0", count: 32 - text.count) + text)
    }

    /// Parses 32 hexadecimal ASCII bytes; nil when the length or a character is wrong.
    public init?(hexBytes: UnsafeRawBufferPointer) {
        guard hexBytes.count == 32,
            let high = HexDigits.parseUInt64(hexBytes, from: 0),
            let low = HexDigits.parseUInt64(hexBytes, from: 16)
        else { return nil }
        self.init(high: high, low: low)
    }

    /// The 32 lowercase hex characters the W3C `traceparent` header and OTLP/JSON use.
    public var hex: String { HexDigits.string(high) + HexDigits.string(low) }

    public var description: String { hex }

    /// Calls `body` with the 32 lowercase hex characters of ``hex`` as bytes, without a `String`.
    @inlinable
    public func withHexBytes<R, E: Error>(_ body: (UnsafeRawBufferPointer) throws(E) -> R) throws(E) -> R {
        var digits: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)
        return try withUnsafeMutableBytes(of: &digits) { (buffer) throws(E) -> R in
            HexDigits.write(high, to: buffer, at: 0)
            HexDigits.write(low, to: buffer, at: 16)
            return try body(UnsafeRawBufferPointer(buffer))
        }
    }

    /// Appends the 16 bytes, big-endian, to `buffer` (no intermediate array).
    @inlinable
    public func append(to buffer: inout [UInt8]) {
        withUnsafeBytes(of: high.bigEndian) { buffer.append(contentsOf: $0) }
        withUnsafeBytes(of: low.bigEndian) { buffer.append(contentsOf: $0) }
    }

    /// The 16 bytes, big-endian, as OTLP encodes them.
    public var bytes: [UInt8] {
        var out = [UInt8](repeating: 0, count: 16)
        out.withUnsafeMutableBytes {
            $0.storeBytes(of: high.bigEndian, toByteOffset: 0, as: UInt64.self)
            $0.storeBytes(of: low.bigEndian, toByteOffset: 8, as: UInt64.self)
        }
        return out
    }

    public static func < (lhs: TraceID, rhs: TraceID) -> Bool {
        (lhs.high, lhs.low) < (rhs.high, rhs.low)
    }
}

/// A W3C / OTLP span id: 8 bytes, big-endian in one integer. Zero means "none" (no parent).
public struct SpanID: Hashable, Sendable, CustomStringConvertible {
    /// The 8 bytes, big-endian.
    public var rawValue: UInt64

    @inlinable public init(rawValue: UInt64) { self.rawValue = rawValue }

    /// The absent id (a root span's parent).
    public static let zero = SpanID(rawValue: 0)

    /// Whether this id names a span (not all zero).
    @inlinable public var isValid: Bool { rawValue != 0 }

    @inlinable
    public init(bytes: UnsafeRawBufferPointer, at offset: Int) {
        rawValue = UInt64(bigEndian: bytes.loadUnaligned(fromByteOffset: offset, as: UInt64.self))
    }

    /// Parses 16 hexadecimal characters; nil for anything else.
    public init?(hex: some StringProtocol) {
        let utf8 = Array(hex.utf8)
        guard utf8.count == 16 else { return nil }
        guard let value = utf8.withUnsafeBytes({ HexDigits.parseUInt64($0, from: 0) }) else { return nil }
        rawValue = value
    }

    /// The 16 lowercase hex characters.
    public var hex: String { HexDigits.string(rawValue) }

    public var description: String { hex }

    /// The 8 bytes, big-endian.
    public var bytes: [UInt8] {
        withUnsafeBytes(of: rawValue.bigEndian) { Array($0) }
    }
}

/// Hexadecimal conversion without Foundation and without intermediate strings.
public enum HexDigits {
    /// Value of one ASCII hex digit, or 0xFF.
    @inlinable
    public static func value(of byte: UInt8) -> UInt8 {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return byte &- UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return byte &- UInt8(ascii: "a") &+ 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return byte &- UInt8(ascii: "A") &+ 10
        default: return 0xFF
        }
    }

    /// Parses 16 hex digits starting at `from`.
    @inlinable
    public static func parseUInt64(_ bytes: UnsafeRawBufferPointer, from: Int) -> UInt64? {
        guard from + 16 <= bytes.count else { return nil }
        var result: UInt64 = 0
        for i in from..<(from + 16) {
            let digit = value(of: bytes[i])
            if digit == 0xFF { return nil }
            result = result << 4 | UInt64(digit)
        }
        return result
    }

    static let lower: [UInt8] = Array("0123456789abcdef".utf8)

    /// Writes 16 lowercase hex digits of `value`, zero-padded, at `offset` of `buffer`.
    @inlinable
    public static func write(_ value: UInt64, to buffer: UnsafeMutableRawBufferPointer, at offset: Int) {
        for i in 0..<16 {
            let nibble = UInt8(truncatingIfNeeded: value >> UInt64(60 - 4 * i)) & 0x0F
            buffer[offset + i] = nibble < 10 ? nibble &+ UInt8(ascii: "0") : nibble &+ (UInt8(ascii: "a") &- 10)
        }
    }

    /// 16 lowercase hex digits of `value`, zero-padded.
    public static func string(_ value: UInt64) -> String {
        String(unsafeUninitializedCapacity: 16) { buffer in
            write(value, to: UnsafeMutableRawBufferPointer(buffer), at: 0)
            return 16
        }
    }

    /// Lowercase hex of arbitrary bytes.
    public static func string(_ bytes: some Sequence<UInt8>) -> String {
        var out = ""
        for byte in bytes {
            out.unicodeScalars.append(Unicode.Scalar(lower[Int(byte >> 4)]))
            out.unicodeScalars.append(Unicode.Scalar(lower[Int(byte & 0xF)]))
        }
        return out
    }
}
