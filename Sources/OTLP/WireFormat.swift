/// Protobuf wire types (https://protobuf.dev/programming-guides/encoding/).
@usableFromInline
enum WireType: UInt8 {
    case varint = 0, fixed64 = 1, lengthDelimited = 2, startGroup = 3, endGroup = 4, fixed32 = 5
}

/// A fault found while walking the wire format; turned into an ``OTLPDecodeError`` with a field path
/// by the decoder. Static strings keep the happy path free of allocation.
@usableFromInline
struct WireFault: Error {
    @usableFromInline var reason: RejectReason
    @usableFromInline var offset: Int
    @usableFromInline var what: StaticString
    @usableFromInline var value: Int

    @inlinable
    init(_ reason: RejectReason, at offset: Int, _ what: StaticString, value: Int = -1) {
        self.reason = reason
        self.offset = offset
        self.what = what
        self.value = value
    }

    var detail: String {
        value >= 0 ? "\(what) (\(value))" : "\(what)"
    }
}

/// A forward-only reader over a protobuf message held in memory. Positions are absolute offsets in
/// the buffer so that ranges can be recorded as ``ByteRange``s without arithmetic at each use.
@usableFromInline
struct WireReader {
    @usableFromInline let base: UnsafeRawPointer
    @usableFromInline var position: Int
    @usableFromInline let end: Int

    @inlinable
    init(base: UnsafeRawPointer, range: Range<Int>) {
        self.base = base
        position = range.lowerBound
        end = range.upperBound
    }

    @inlinable var isAtEnd: Bool { position >= end }

    @inlinable
    mutating func readVarint() throws(WireFault) -> UInt64 {
        // Fast path: one byte (tags, small lengths, enums, bools).
        guard position < end else { throw WireFault(.truncated, at: position, "message ends inside a varint") }
        let first = base.load(fromByteOffset: position, as: UInt8.self)
        if first < 0x80 {
            position &+= 1
            return UInt64(first)
        }
        return try readVarintSlow()
    }

    @usableFromInline
    mutating func readVarintSlow() throws(WireFault) -> UInt64 {
        var result: UInt64 = 0
        var shift: UInt64 = 0
        let start = position
        while true {
            guard position < end else { throw WireFault(.truncated, at: start, "message ends inside a varint") }
            let byte = base.load(fromByteOffset: position, as: UInt8.self)
            position &+= 1
            if shift == 63 && byte > 1 {
                throw WireFault(.malformedVarint, at: start, "varint longer than 64 bits")
            }
            result |= UInt64(byte & 0x7F) << shift
            if byte < 0x80 { return result }
            shift += 7
            if shift > 63 { throw WireFault(.malformedVarint, at: start, "varint longer than 10 bytes") }
        }
    }

    /// Reads a tag; returns the field number and wire type.
    @inlinable
    mutating func readTag() throws(WireFault) -> (field: UInt32, wireType: UInt8) {
        let start = position
        let tag = try readVarint()
        let field = tag >> 3
        let wireType = UInt8(truncatingIfNeeded: tag & 7)
        // Field numbers run from 1 to protobuf's 2^29 - 1 (one comparison on the happy path: 0 wraps).
        if field &- 1 >= 0x1FFF_FFFF {
            throw WireFault(.malformedVarint, at: start, field == 0 ? "field number 0" : "field number above 2^29 - 1")
        }
        if wireType > 5 { throw WireFault(.invalidWireType, at: start, "wire type", value: Int(wireType)) }
        return (UInt32(truncatingIfNeeded: field), wireType)
    }

    /// Reads a length prefix and returns the absolute range of the payload, checked against `end`.
    @inlinable
    mutating func readLengthDelimited() throws(WireFault) -> Range<Int> {
        let start = position
        let length = try readVarint()
        guard length <= UInt64(end - position) else {
            throw WireFault(.lengthOutOfBounds, at: start, "length prefix past the end of its message", value: Int(clamping: length))
        }
        let lower = position
        position &+= Int(length)
        return lower..<position
    }

    @inlinable
    mutating func readFixed64() throws(WireFault) -> UInt64 {
        guard end - position >= 8 else { throw WireFault(.truncated, at: position, "message ends inside a fixed64") }
        let value = UInt64(littleEndian: base.loadUnaligned(fromByteOffset: position, as: UInt64.self))
        position &+= 8
        return value
    }

    @inlinable
    mutating func readFixed32() throws(WireFault) -> UInt32 {
        guard end - position >= 4 else { throw WireFault(.truncated, at: position, "message ends inside a fixed32") }
        let value = UInt32(littleEndian: base.loadUnaligned(fromByteOffset: position, as: UInt32.self))
        position &+= 4
        return value
    }

    /// Skips a field of an unknown number (forward compatibility with newer protos).
    @inlinable
    mutating func skip(wireType: UInt8, depth: Int = 0) throws(WireFault) {
        switch wireType {
        case 0: _ = try readVarint()
        case 1: _ = try readFixed64()
        case 2: _ = try readLengthDelimited()
        case 5: _ = try readFixed32()
        case 3:
            // Groups are long deprecated, but skipping one correctly keeps the rest of the message.
            guard depth < maximumNesting else { throw WireFault(.nestingTooDeep, at: position, "groups nested too deep") }
            while true {
                let (_, inner) = try readTag()
                if inner == 4 { return }
                try skip(wireType: inner, depth: depth + 1)
            }
        default:
            throw WireFault(.invalidWireType, at: position, "unexpected end-group tag")
        }
    }

    /// Throws unless `wireType` is `expected`: a known field with the wrong wire type is corruption.
    @inlinable
    func expect(_ wireType: UInt8, _ expected: WireType, field: StaticString, at offset: Int) throws(WireFault) {
        if wireType != expected.rawValue {
            throw WireFault(.invalidWireType, at: offset, field, value: Int(wireType))
        }
    }
}

/// How deep `AnyValue`s (arrays of kvlists of arrays …) may nest before a message is refused.
@usableFromInline let maximumNesting = 64
