/// Why a message (or one span in it) was refused. The raw value is the `reason` label of
/// `tailgate_messages_rejected_total` / `tailgate_spans_rejected_total`.
public enum RejectReason: String, Sendable, CaseIterable {
    /// The message ends inside a field.
    case truncated
    /// A tag carries wire type 6 or 7, or a known field arrives with a wire type its schema forbids.
    case invalidWireType = "invalid_wire_type"
    /// A length prefix points past the end of its enclosing message.
    case lengthOutOfBounds = "length_out_of_bounds"
    /// A varint longer than 10 bytes, or a field number of 0.
    case malformedVarint = "malformed_varint"
    /// Values nested deeper than the decoder follows (a hostile or broken sender).
    case nestingTooDeep = "nesting_too_deep"
    /// The payload is not JSON at all, or JSON broken mid-way.
    case invalidJSON = "invalid_json"
    /// A JSON field holds the wrong kind of value (a string where an object belongs, …).
    case wrongJSONType = "wrong_json_type"
    /// A field value that cannot be right (bad hex, bad base64, number out of range).
    case invalidFieldValue = "invalid_field_value"
    /// A span whose trace id is all zero or not 16 bytes.
    case invalidTraceID = "invalid_trace_id"
    /// A span whose span id is all zero or not 8 bytes, or whose parent id is neither empty nor 8 bytes.
    case invalidSpanID = "invalid_span_id"
    /// A message larger than a batch can address (4 GiB).
    case tooLarge = "too_large"
}

/// A precise account of bad input: what is wrong and where, for logs and for the user.
public struct OTLPDecodeError: Error, Sendable, CustomStringConvertible {
    public var reason: RejectReason
    /// Byte offset inside the message where the problem was found.
    public var byteOffset: Int
    /// The path of fields leading there, e.g. `resource_spans[0].scope_spans[1].spans[3].span_id`.
    public var path: String
    /// What was found and what was expected.
    public var detail: String

    public init(reason: RejectReason, byteOffset: Int, path: String, detail: String) {
        self.reason = reason
        self.byteOffset = byteOffset
        self.path = path
        self.detail = detail
    }

    public var description: String {
        "\(reason.rawValue) at byte \(byteOffset)\(path.isEmpty ? "" : " in \(path)"): \(detail)"
    }
}
