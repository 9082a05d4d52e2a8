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

    /// One `KeyValue`: copied, dropped, or written again with a new value.
    private func rewriteAttribute(
        _ raw: UnsafeRawBufferPointer, _ range: Range<Int>, field: UInt32, into out: inout ProtoWriter, counts: inout Counts
    ) throws(WireFault) {
        var reader = WireReader(base: raw.baseAddress!, range: range)
        var key: Range<Int>?
        var value: Range<Int>?
        while !reader.isAtEnd {
            let (number, wireType) = try reader.readTag()
            if number == 1 && wireType == 2 {
                key = try reader.readLengthDelimited()
            } else if number == 2 && wireType == 2 {
                value = try reader.readLengthDelimited()
            } else {
                try reader.skip(wireType: wireType)
            }
        }
        let keyText = key.map { String(decoding: UnsafeRawBufferPointer(rebasing: raw[$0]), as: UTF8.self) } ?? ""
        var stringValue: String? = try value.flatMap { (range) throws(WireFault) in try Self.stringValue(raw, range) }
        var replaced = false
        for rule in rules where rule.keys.isEmpty || rule.keys.contains(where: { $0.matches(keyText) }) {
            switch rule.action {
            case .delete, .hash:
                if !rule.values.isEmpty {
                    guard let text = stringValue, rule.values.contains(where: { text.contains($0) }) else { continue }
                }
                if rule.action == .delete {
                    counts.deleted += 1
                    return
                }
                let plain: [UInt8] = stringValue.map { Array($0.utf8) }
                    ?? value.map { Array(UnsafeRawBufferPointer(rebasing: raw[$0])) } ?? []
                stringValue = hashed(plain)
                replaced = true
                counts.hashed += 1
            case .mask:
                guard let text = stringValue else { continue }
                var masked = text
                for pattern in rule.values { masked = masked.replacing(pattern, with: rule.replacement) }
                if masked != text {
                    stringValue = masked
                    replaced = true
                    counts.masked += 1
                }
            }
        }
        guard replaced, let newValue = stringValue else {
            out.writeBytesField(field, UnsafeRawBufferPointer(rebasing: raw[range]))
            return
        }
        let marker = out.beginNested(field)
        if let key { out.writeBytesField(OTLPField.KeyValue.key, UnsafeRawBufferPointer(rebasing: raw[key])) }
        out.writeNested(OTLPField.KeyValue.value) { $0.writeStringField(OTLPField.AnyValue.stringValue, newValue) }
        out.endNested(marker)
    }

    /// An `AnyValue`'s `string_value`, if that is what it holds.
    private static func stringValue(_ raw: UnsafeRawBufferPointer, _ range: Range<Int>) throws(WireFault) -> String? {
        var reader = WireReader(base: raw.baseAddress!, range: range)
        var result: String?
        while !reader.isAtEnd {
            let (number, wireType) = try reader.readTag()
            if number == 1 && wireType == 2 {
                let text = try reader.readLengthDelimited()
                result = String(decoding: UnsafeRawBufferPointer(rebasing: raw[text]), as: UTF8.self)
            } else {
                try reader.skip(wireType: wireType)
            }
        }
        return result
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
