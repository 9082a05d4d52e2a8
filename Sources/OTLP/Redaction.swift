/// What to do with an attribute that matches a redaction rule.
public enum RedactionAction: String, Sendable, Equatable, CaseIterable {
    /// Remove the attribute.
    case delete
    /// Replace its value with a keyed hash (HMAC-SHA-256, first 16 bytes, hex, `hmac:` prefix): equal
    /// values still correlate across spans and traces, and nobody without the key can test guesses.
    case hash
    /// Replace every match of the rule's value patterns in string values with the replacement.
    case mask
}

/// One rule of a rule file's `redaction:` section.
public struct RedactionRule: Sendable, Equatable {
    public var action: RedactionAction
    /// Attribute-key globs (`*` matches any run of characters, e.g. `http.request.header.*`); empty:
    /// every key (then `values` must select).
    public var keys: [String]
    /// Regular expressions over string values: for `mask`, what is replaced; for `delete` and `hash`,
    /// a filter (the attribute is acted on when its value matches one). Empty: any value.
    public var values: [String]
    /// For `mask`: what replaces each match.
    public var replacement: String

    public init(action: RedactionAction, keys: [String] = [], values: [String] = [], replacement: String = "****") {
        self.action = action
        self.keys = keys
        self.values = values
        self.replacement = replacement
    }
}

/// Rewrites the attributes of spans, span events, span links and resources in an OTLP
/// `ExportTraceServiceRequest` (what every sink receives) by the redaction rules, before any sink
/// sees them. Everything else is copied byte for byte. Rules apply in order; a deleted attribute is
/// gone for the rules after it.
///
/// Shared by the shard threads (read-only after init; patterns are compiled in init).
/// Not a hot-path component: it runs on kept traces only (a few percent of spans), and builds a
/// `String` per string value it has to test against a pattern.
public struct Redactor: @unchecked Sendable {
    struct Compiled {
        var action: RedactionAction
        var keys: [Glob]
        var values: [Regex<AnyRegexOutput>]
        var replacement: String
    }

    private let rules: [Compiled]
    private let hashKey: [UInt8]

    /// Counts of what was done, by action (for `tailgate_redactions_total`).
    public struct Counts: Sendable, Equatable {
        public var deleted = 0
        public var hashed = 0
        public var masked = 0
        public init() {}
        public var total: Int { deleted + hashed + masked }
    }

    /// - Throws: the first pattern that does not compile (the rule-file parser reports them located).
    public init(rules: [RedactionRule], hashKey: [UInt8]) throws {
        self.rules = try rules.map { rule in
            Compiled(
                action: rule.action, keys: rule.keys.map(Glob.init), values: try rule.values.map { try Regex($0) },
                replacement: rule.replacement)
        }
        self.hashKey = hashKey
        // Compile each pattern now, on this thread: shards share the redactor, and a regex compiles
        // lazily on first use.
        for rule in self.rules { for pattern in rule.values { _ = "".contains(pattern) } }
    }

    /// The request with its attributes redacted, and what was done.
    public func redact(request bytes: [UInt8]) throws(OTLPDecodeError) -> (request: [UInt8], counts: Counts) {
        var counts = Counts()
        var out = ProtoWriter()
        out.bytes.reserveCapacity(bytes.count)
        let fault: WireFault? = bytes.withUnsafeBytes { raw in
            do throws(WireFault) {
                guard raw.count > 0 else { return nil }
                try rewrite(raw, 0..<raw.count, as: .request, into: &out, counts: &counts)
                return nil
            } catch {
                return error
            }
        }
        if let fault {
            throw OTLPDecodeError(reason: fault.reason, byteOffset: fault.offset, path: "redaction", detail: fault.detail)
        }
        return (out.bytes, counts)
    }

    /// The keyed hash of a value, as written in place of a `hash`ed attribute.
    public func hashed(_ value: some Collection<UInt8>) -> String {
        "hmac:" + HexDigits.string(HMACSHA256.mac(key: hashKey, message: Array(value)).prefix(16))
    }

    // MARK: Walking the messages

    enum Message { case request, resourceSpans, resource, scopeSpans, span, event, link }

    /// Per message kind: which field numbers are nested messages to walk, and which one holds
    /// `KeyValue` attributes.
    private static func layout(_ message: Message) -> (nested: [UInt32: Message], attributes: UInt32?) {
        switch message {
        case .request: ([OTLPField.ExportTraceServiceRequest.resourceSpans: .resourceSpans], nil)
        case .resourceSpans: ([OTLPField.ResourceSpans.resource: .resource, OTLPField.ResourceSpans.scopeSpans: .scopeSpans], nil)
        case .resource: ([:], OTLPField.Resource.attributes)
        case .scopeSpans: ([OTLPField.ScopeSpans.spans: .span], nil)
        case .span: ([OTLPField.Span.events: .event, OTLPField.Span.links: .link], OTLPField.Span.attributes)
        case .event: ([:], OTLPField.Event.attributes)
        case .link: ([:], OTLPField.Link.attributes)
        }
    }

    private func rewrite(
        _ raw: UnsafeRawBufferPointer, _ range: Range<Int>, as message: Message, into out: inout ProtoWriter, counts: inout Counts
    ) throws(WireFault) {
        let (nested, attributesField) = Self.layout(message)
        var reader = WireReader(base: raw.baseAddress!, range: range)
        while !reader.isAtEnd {
            let start = reader.position
            let (field, wireType) = try reader.readTag()
            if wireType == 2 && (field == attributesField || nested[field] != nil) {
                let value = try reader.readLengthDelimited()
                if field == attributesField {
                    try rewriteAttribute(raw, value, field: field, into: &out, counts: &counts)
                } else {
                    let marker = out.beginNested(field)
                    try rewrite(raw, value, as: nested[field]!, into: &out, counts: &counts)
                    out.endNested(marker)
                }
            } else {
                try reader.skip(wireType: wireType)
                out.bytes.append(contentsOf: UnsafeRawBufferPointer(rebasing: raw[start..<reader.position]))
            }
        }
    }

    /// One `KeyValue`: copied, dropped, or written again with a new value. A rule whose key matches
    /// applies to the value's strings wherever they are: the string itself, or every string inside an
    /// array or a map, at any depth (the semantic conventions record HTTP headers as string arrays).
    private func rewriteAttribute(
        _ raw: UnsafeRawBufferPointer, _ range: Range<Int>, field: UInt32, into out: inout ProtoWriter, counts: inout Counts
    ) throws(WireFault) {
        var reader = WireReader(base: raw.baseAddress!, range: range)
        var key: Range<Int>?
        var valueRange: Range<Int>?
        while !reader.isAtEnd {
            let (number, wireType) = try reader.readTag()
            if number == OTLPField.KeyValue.key && wireType == 2 {
                key = try reader.readLengthDelimited()
            } else if number == OTLPField.KeyValue.value && wireType == 2 {
                valueRange = try reader.readLengthDelimited()
            } else {
                try reader.skip(wireType: wireType)
            }
        }
        let keyText = key.map { String(decoding: UnsafeRawBufferPointer(rebasing: raw[$0]), as: UTF8.self) } ?? ""
        // The value as it stands after the rules so far (nil: unchanged, still at `valueRange`).
        var value: Value? = nil
        for rule in rules where rule.keys.isEmpty || rule.keys.contains(where: { $0.matches(keyText) }) {
            if value == nil { value = try valueRange.map { (range) throws(WireFault) in try Value(raw, range) } ?? .other([]) }
            let matches = { (text: String) in rule.values.contains(where: { text.contains($0) }) }
            switch rule.action {
            case .delete:
                if !rule.values.isEmpty && !value!.anyString(matches) { continue }
                counts.deleted += 1
                return
            case .hash:
                if case .other(let bytes) = value!, rule.values.isEmpty {
                    // A scalar that is not a string (an int, a double): its encoding, hashed.
                    value = .string(hashed(bytes), rewritten: true)
                    counts.hashed += 1
                    continue
                }
                let changed = value!.rewriteStrings { text in rule.values.isEmpty || matches(text) ? hashed(Array(text.utf8)) : nil }
                if changed { counts.hashed += 1 }
            case .mask:
                let changed = value!.rewriteStrings { text in
                    var masked = text
                    for pattern in rule.values { masked = masked.replacing(pattern, with: rule.replacement) }
                    return masked == text ? nil : masked
                }
                if changed { counts.masked += 1 }
            }
        }
        guard let value, value.isRewritten else {
            out.writeBytesField(field, UnsafeRawBufferPointer(rebasing: raw[range]))
            return
        }
        let marker = out.beginNested(field)
        if let key { out.writeBytesField(OTLPField.KeyValue.key, UnsafeRawBufferPointer(rebasing: raw[key])) }
        out.writeNested(OTLPField.KeyValue.value) { value.encode(into: &$0) }
        out.endNested(marker)
    }

    /// An attribute's `AnyValue` while the rules work on it: strings, arrays and maps opened up (to any
    /// depth), everything else kept as its encoded bytes.
    indirect enum Value {
        case string(String, rewritten: Bool = false)
        case array([Value])
        case map([(key: [UInt8], value: Value?)])
        /// Any other value (int, double, bool, bytes, empty): its `AnyValue` bytes.
        case other([UInt8])

        init(_ raw: UnsafeRawBufferPointer, _ range: Range<Int>) throws(WireFault) {
            var reader = WireReader(base: raw.baseAddress!, range: range)
            var result = Value.other(Array(UnsafeRawBufferPointer(rebasing: raw[range])))
            while !reader.isAtEnd {
                let (number, wireType) = try reader.readTag()
                switch (number, wireType) {
                case (OTLPField.AnyValue.stringValue, 2):
                    let text = try reader.readLengthDelimited()
                    result = .string(String(decoding: UnsafeRawBufferPointer(rebasing: raw[text]), as: UTF8.self))
                case (OTLPField.AnyValue.arrayValue, 2):
                    var elements: [Value] = []
                    var array = WireReader(base: raw.baseAddress!, range: try reader.readLengthDelimited())
                    while !array.isAtEnd {
                        let (element, type) = try array.readTag()
                        if element == OTLPField.ArrayValue.values && type == 2 {
                            elements.append(try Value(raw, try array.readLengthDelimited()))
                        } else {
                            try array.skip(wireType: type)
                        }
                    }
                    result = .array(elements)
                case (OTLPField.AnyValue.kvlistValue, 2):
                    var entries: [(key: [UInt8], value: Value?)] = []
                    var list = WireReader(base: raw.baseAddress!, range: try reader.readLengthDelimited())
                    while !list.isAtEnd {
                        let (entry, type) = try list.readTag()
                        guard entry == OTLPField.KeyValueList.values && type == 2 else {
                            try list.skip(wireType: type)
                            continue
                        }
                        var keyValue = WireReader(base: raw.baseAddress!, range: try list.readLengthDelimited())
                        var key: [UInt8] = []
                        var value: Value?
                        while !keyValue.isAtEnd {
                            let (part, partType) = try keyValue.readTag()
                            if part == OTLPField.KeyValue.key && partType == 2 {
                                key = Array(UnsafeRawBufferPointer(rebasing: raw[try keyValue.readLengthDelimited()]))
                            } else if part == OTLPField.KeyValue.value && partType == 2 {
                                value = try Value(raw, try keyValue.readLengthDelimited())
                            } else {
                                try keyValue.skip(wireType: partType)
                            }
                        }
                        entries.append((key, value))
                    }
                    result = .map(entries)
                default:
                    try reader.skip(wireType: wireType)
                }
            }
            self = result
        }

        /// Whether any string in it satisfies `test`.
        func anyString(_ test: (String) -> Bool) -> Bool {
            switch self {
            case .string(let text, _): test(text)
            case .array(let elements): elements.contains { $0.anyString(test) }
            case .map(let entries): entries.contains { $0.value?.anyString(test) ?? false }
            case .other: false
            }
        }

        /// Replaces every string for which `transform` returns a new text; whether any changed.
        mutating func rewriteStrings(_ transform: (String) -> String?) -> Bool {
            switch self {
            case .string(let text, let rewritten):
                guard let replacement = transform(text) else { return false }
                self = .string(replacement, rewritten: rewritten || replacement != text)
                return true
            case .array(var elements):
                var changed = false
                for index in elements.indices where elements[index].rewriteStrings(transform) { changed = true }
                self = .array(elements)
                return changed
            case .map(var entries):
                var changed = false
                for index in entries.indices where entries[index].value?.rewriteStrings(transform) ?? false { changed = true }
                self = .map(entries)
                return changed
            case .other:
                return false
            }
        }

        /// Whether anything in it was replaced (else the original bytes are copied).
        var isRewritten: Bool {
            switch self {
            case .string(_, let rewritten): rewritten
            case .array(let elements): elements.contains(where: \.isRewritten)
            case .map(let entries): entries.contains { $0.value?.isRewritten ?? false }
            case .other: false
            }
        }

        /// The `AnyValue` encoding (the body of the field that holds it).
        func encode(into writer: inout ProtoWriter) {
            switch self {
            case .string(let text, _):
                writer.writeStringField(OTLPField.AnyValue.stringValue, text)
            case .array(let elements):
                writer.writeNested(OTLPField.AnyValue.arrayValue) { array in
                    for element in elements { array.writeNested(OTLPField.ArrayValue.values) { element.encode(into: &$0) } }
                }
            case .map(let entries):
                writer.writeNested(OTLPField.AnyValue.kvlistValue) { list in
                    for entry in entries {
                        list.writeNested(OTLPField.KeyValueList.values) { keyValue in
                            keyValue.writeBytesField(OTLPField.KeyValue.key, entry.key)
                            if let value = entry.value { keyValue.writeNested(OTLPField.KeyValue.value) { value.encode(into: &$0) } }
                        }
                    }
                }
            case .other(let bytes):
                writer.bytes.append(contentsOf: bytes)
            }
        }
    }
}

/// An attribute-key glob: `*` matches any run of characters (dots included), everything else itself.
struct Glob: Sendable {
    let parts: [Substring]
    let anchoredStart: Bool
    let anchoredEnd: Bool

    init(_ pattern: String) {
        parts = pattern.split(separator: "*", omittingEmptySubsequences: true)
        anchoredStart = !pattern.hasPrefix("*")
        anchoredEnd = !pattern.hasSuffix("*")
    }

    func matches(_ text: String) -> Bool {
        if parts.isEmpty { return !anchoredStart || text.isEmpty }
        var rest = Substring(text)
        for (index, part) in parts.enumerated() {
            if index == 0 && anchoredStart {
                guard rest.hasPrefix(part) else { return false }
                rest = rest.dropFirst(part.count)
            } else if index == parts.count - 1 && anchoredEnd {
                return rest.count >= part.count && rest.hasSuffix(part)
            } else {
                guard let found = rest.firstRange(of: part) else { return false }
                rest = rest[found.upperBound...]
            }
        }
        return !anchoredEnd || rest.isEmpty
    }
}
