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
    private static func layout(_ message: Message) -> (nested: [UInt64: Message], attributes: UInt64?) {
        switch message {
        case .request: ([1: .resourceSpans], nil)
        case .resourceSpans: ([1: .resource, 2: .scopeSpans], nil)
        case .resource: ([:], 1)
        case .scopeSpans: ([2: .span], nil)
        case .span: ([11: .event, 13: .link], 9)
        case .event: ([:], 3)
        case .link: ([:], 4)
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
                    try rewriteAttribute(raw, value, field: UInt32(field), into: &out, counts: &counts)
                } else {
                    let marker = out.beginNested(UInt32(field))
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
        if let key { out.writeBytesField(1, UnsafeRawBufferPointer(rebasing: raw[key])) }
        out.writeNested(2) { $0.writeStringField(1, newValue) }
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

/// SHA-256 (FIPS 180-4) and HMAC (RFC 2104), for keyed hashing of redacted values: a few dozen lines
/// rather than a cryptography package in the build for one function off the hot path. Checked against
/// the standard test vectors (RFC 4231) in the tests.
enum HMACSHA256 {
    static func mac(key: [UInt8], message: [UInt8]) -> [UInt8] {
        var block = key.count > 64 ? sha256(key) : key
        block += Array(repeating: 0, count: 64 - block.count)
        let inner = sha256(block.map { $0 ^ 0x36 } + message)
        return sha256(block.map { $0 ^ 0x5C } + inner)
    }

    private static let k: [UInt32] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
        0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
        0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
        0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
        0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
        0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
        0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
    ]

    static func sha256(_ message: [UInt8]) -> [UInt8] {
        var h: [UInt32] = [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19]
        var data = message
        data.append(0x80)
        while data.count % 64 != 56 { data.append(0) }
        let bits = UInt64(message.count) * 8
        for shift in stride(from: 56, through: 0, by: -8) { data.append(UInt8(truncatingIfNeeded: bits >> UInt64(shift))) }
        var w = [UInt32](repeating: 0, count: 64)
        for chunk in stride(from: 0, to: data.count, by: 64) {
            for i in 0..<16 {
                let j = chunk + i * 4
                w[i] = UInt32(data[j]) << 24 | UInt32(data[j + 1]) << 16 | UInt32(data[j + 2]) << 8 | UInt32(data[j + 3])
            }
            for i in 16..<64 {
                let s0 = w[i - 15].rotatedRight(7) ^ w[i - 15].rotatedRight(18) ^ (w[i - 15] >> 3)
                let s1 = w[i - 2].rotatedRight(17) ^ w[i - 2].rotatedRight(19) ^ (w[i - 2] >> 10)
                w[i] = w[i - 16] &+ s0 &+ w[i - 7] &+ s1
            }
            var (a, b, c, d, e, f, g, hh) = (h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7])
            for i in 0..<64 {
                let s1 = e.rotatedRight(6) ^ e.rotatedRight(11) ^ e.rotatedRight(25)
                let choice = (e & f) ^ (~e & g)
                let t1 = hh &+ s1 &+ choice &+ k[i] &+ w[i]
                let s0 = a.rotatedRight(2) ^ a.rotatedRight(13) ^ a.rotatedRight(22)
                let majority = (a & b) ^ (a & c) ^ (b & c)
                let t2 = s0 &+ majority
                (hh, g, f, e, d, c, b, a) = (g, f, e, d &+ t1, c, b, a, t1 &+ t2)
            }
            h[0] &+= a; h[1] &+= b; h[2] &+= c; h[3] &+= d; h[4] &+= e; h[5] &+= f; h[6] &+= g; h[7] &+= hh
        }
        return h.flatMap { word in [UInt8(word >> 24), UInt8(truncatingIfNeeded: word >> 16), UInt8(truncatingIfNeeded: word >> 8), UInt8(truncatingIfNeeded: word)] }
    }
}

extension UInt32 {
    fileprivate func rotatedRight(_ count: UInt32) -> UInt32 { (self >> count) | (self << (32 - count)) }
}
