/// Appends protobuf wire format to a byte array. Used by the OTLP/JSON transcoder, the traffic
/// generator and exporters; nested messages are written in place and their length fixed up after.
public struct ProtoWriter {
    /// The encoded bytes so far.
    public var bytes: [UInt8]

    public init(bytes: [UInt8] = []) { self.bytes = bytes }

    /// A nested message whose length prefix is not written yet.
    public struct NestedMessage {
        fileprivate let lengthPosition: Int
    }

    @inline(__always)
    public mutating func writeVarint(_ value: UInt64) {
        var value = value
        while value >= 0x80 {
            bytes.append(UInt8(truncatingIfNeeded: value) | 0x80)
            value >>= 7
        }
        bytes.append(UInt8(truncatingIfNeeded: value))
    }

    @inline(__always)
    public mutating func writeTag(field: UInt32, wireType: UInt8) {
        writeVarint(UInt64(field) << 3 | UInt64(wireType))
    }

    public mutating func writeVarintField(_ field: UInt32, _ value: UInt64) {
        writeTag(field: field, wireType: 0)
        writeVarint(value)
    }

    public mutating func writeFixed64Field(_ field: UInt32, _ value: UInt64) {
        writeTag(field: field, wireType: 1)
        withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) }
    }

    public mutating func writeFixed32Field(_ field: UInt32, _ value: UInt32) {
        writeTag(field: field, wireType: 5)
        withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) }
    }

    public mutating func writeDoubleField(_ field: UInt32, _ value: Double) {
        writeFixed64Field(field, value.bitPattern)
    }

    public mutating func writeBytesField(_ field: UInt32, _ value: UnsafeRawBufferPointer) {
        writeTag(field: field, wireType: 2)
        writeVarint(UInt64(value.count))
        bytes.append(contentsOf: value)
    }

    public mutating func writeBytesField(_ field: UInt32, _ value: [UInt8]) {
        value.withUnsafeBytes { writeBytesField(field, $0) }
    }

    public mutating func writeStringField(_ field: UInt32, _ value: String) {
        var value = value
        value.withUTF8 { writeBytesField(field, UnsafeRawBufferPointer($0)) }
    }

    /// Starts a length-delimited field whose content the caller appends next.
    public mutating func beginNested(_ field: UInt32) -> NestedMessage {
        writeTag(field: field, wireType: 2)
        bytes.append(0)
        return NestedMessage(lengthPosition: bytes.count - 1)
    }

    /// Writes the length of `nested`, moving its content when the length needs more than one byte.
    public mutating func endNested(_ nested: NestedMessage) {
        let length = bytes.count - nested.lengthPosition - 1
        var size = 1
        while length >> (7 * size) != 0 { size += 1 }
        if size > 1 {
            bytes.insert(contentsOf: repeatElement(0, count: size - 1), at: nested.lengthPosition + 1)
        }
        var value = length
        var index = nested.lengthPosition
        while value >= 0x80 {
            bytes[index] = UInt8(truncatingIfNeeded: value) | 0x80
            value >>= 7
            index += 1
        }
        bytes[index] = UInt8(truncatingIfNeeded: value)
    }

    /// Writes a nested message built by `body`.
    public mutating func writeNested(_ field: UInt32, _ body: (inout ProtoWriter) -> Void) {
        let nested = beginNested(field)
        body(&self)
        endNested(nested)
    }
}
