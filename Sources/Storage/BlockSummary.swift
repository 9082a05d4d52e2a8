import Foundation
import OTLP

/// What a search needs to know about a block without reading it: its time range, the longest trace
/// and span in it, whether an error span is there, its root services and names, its span names, the
/// attribute keys with their values (up to a few per key, for the tag lists), and a Bloom filter of
/// every `key=value` (and span name) for the rest. A search skips a block whose summary proves it
/// cannot match; the summaries sit beside each segment (`NNN.tgs.summary`, one JSON line per block,
/// rebuildable from the block when missing or torn).
public struct BlockSummary: Codable, Sendable, Equatable {
    public var offset: UInt32
    public var traces = 0
    public var minStart: UInt64 = .max
    public var maxEnd: UInt64 = 0
    public var maxTraceDuration: UInt64 = 0
    public var maxSpanDuration: UInt64 = 0
    public var hasError = false
    public var rootServices: [String] = []
    public var rootNames: [String] = []
    /// Span names (the first ``namesLimit``; the Bloom filter knows them all).
    public var names: [String] = []
    /// Attribute keys and some of their values, per scope (`span`, `resource`); a key whose values
    /// overflowed keeps the first ones (the Bloom filter still knows them all).
    public var tags: [String: [String: [String]]] = [:]
    public var bloom: [UInt64] = []

    static let valuesPerKey = 32
    static let keysPerScope = 256
    static let namesLimit = 256

    init(offset: UInt32) { self.offset = offset }

    /// Summarises a block's traces (their stored requests). Runs on the store writer for every
    /// block, so it reads each request once, where its bytes lie (``AttributeWalker/forEachSpan(in:skipResource:span:attribute:)``):
    /// strings are made only for the names, keys and values it lists.
    public static func build(offset: UInt32, requests: [[UInt8]]) -> BlockSummary {
        var summary = BlockSummary(offset: offset)
        var members = HashSet64(capacity: 1024)
        var builder = TagBuilder()
        var resources = SeenResources()
        for request in requests {
            var spans = 0
            var start = UInt64.max, end = UInt64(0)
            // The earliest root span (else the earliest span): its service and name are the trace's.
            var root: (start: UInt64, isRoot: Bool, service: UnsafeRawBufferPointer, name: UnsafeRawBufferPointer)?
            let complete = request.withUnsafeBytes { raw -> Bool in
                do {
                    // Traces of a block share a few resources (one per service): their attributes are
                    // summarised once per block.
                    try AttributeWalker.forEachSpan(in: raw, skipResource: { resources.seen($0) }) { span in
                        spans += 1
                        start = min(start, span.startTimeUnixNano)
                        end = max(end, span.endTimeUnixNano)
                        summary.maxSpanDuration = max(summary.maxSpanDuration, span.durationNanos)
                        if span.isError { summary.hasError = true }
                        if members.insert(Hash.member("n:", span.name)), summary.names.count < namesLimit {
                            summary.names.append(String(decoding: span.name, as: UTF8.self))
                        }
                        let better: Bool
                        if let root {
                            better = span.isRoot ? (!root.isRoot || span.startTimeUnixNano < root.start) : (!root.isRoot && span.startTimeUnixNano < root.start)
                        } else {
                            better = true
                        }
                        if better { root = (span.startTimeUnixNano, span.isRoot, span.service, span.name) }
                    } attribute: { scope, key, value in
                        builder.add(scope, key, value, members: &members)
                    }
                } catch {
                    // Never a request the store wrote. Its spans read so far stay summarised: a
                    // summary may only over-state what its block holds, which costs a search a read.
                    return false
                }
                if let root {
                    let service = String(decoding: root.service, as: UTF8.self)
                    let name = String(decoding: root.name, as: UTF8.self)
                    if !summary.rootServices.contains(service), summary.rootServices.count < namesLimit { summary.rootServices.append(service) }
                    if !summary.rootNames.contains(name), summary.rootNames.count < namesLimit { summary.rootNames.append(name) }
                }
                return true
            }
            guard complete, spans > 0 else { continue }
            summary.traces += 1
            summary.minStart = min(summary.minStart, start)
            summary.maxEnd = max(summary.maxEnd, end)
            summary.maxTraceDuration = max(summary.maxTraceDuration, end > start ? end - start : 0)
        }
        summary.tags = builder.tags
        if summary.minStart == .max { summary.minStart = 0 }
        // About ten bits per member: a false positive in ~1% of lookups.
        var bits = 4096
        while bits < members.count * 10 { bits *= 2 }
        summary.bloom = [UInt64](repeating: 0, count: bits / 64)
        members.forEach { summary.insert(hash: $0) }
        return summary
    }

    /// Resource messages already summarised in this block, by their bytes.
    struct SeenResources {
        private var index = HashTable64()
        private var bytes: [[UInt8]] = []

        /// True when these exact bytes were seen before; remembers them otherwise.
        mutating func seen(_ resource: UnsafeRawBufferPointer) -> Bool {
            guard let base = resource.baseAddress, resource.count > 0 else { return false }
            var hash = UInt64(resource.count) &* 0x9E37_79B9_7F4A_7C15
            var offset = 0
            while offset + 8 <= resource.count {
                hash = (hash ^ base.loadUnaligned(fromByteOffset: offset, as: UInt64.self)) &* 0xBF58_476D_1CE4_E5B9
                hash ^= hash >> 29
                offset += 8
            }
            while offset < resource.count {
                hash = (hash ^ UInt64(base.load(fromByteOffset: offset, as: UInt8.self))) &* 0x94D0_49BB_1331_11EB
                offset += 1
            }
            // Linear probing on the hash; equal hashes are told apart by their bytes.
            var probe = hash
            while true {
                let entry = index[probe]
                if entry < 0 {
                    index[probe] = bytes.count
                    bytes.append(Array(resource))
                    return false
                }
                if bytes[entry].count == resource.count, bytes[entry].withUnsafeBytes({ memcmp($0.baseAddress!, base, resource.count) == 0 }) {
                    return true
                }
                probe &+= 1
            }
        }
    }

    /// Keys with up to ``valuesPerKey`` of their values, per scope, found by hash. Flat: one array of
    /// keys and one of listed values for the whole block, so a block allocates per listed string,
    /// not per key.
    struct TagBuilder {
        struct Key {
            var name: String
            var scope: UInt8
            /// FNV of the scope prefix, the key and `=` (see ``index``).
            var hash: UInt64
            var listed = 0
        }
        var keys: [Key] = []
        /// Listed values, with the index of their key.
        var values: [(key: Int32, text: String)] = []
        /// Members already listed (a value listed once per key).
        var listed = HashSet64(capacity: 256)
        var keysPerScope = [0, 0]
        /// Key hash (FNV of the scope prefix, the key and `=`: where every member of the key starts) → key index.
        var index = HashTable64()

        /// Keys met lately (their index + 1), direct-mapped by their scope, length and first and
        /// last bytes and confirmed by their name's bytes: a block's spans repeat a few dozen keys,
        /// each hashed once per block.
        var recentKeys = [Int32](repeating: 0, count: 256)

        @inline(__always)
        static func recentSlot(_ scopeIndex: Int, _ key: UnsafeRawBufferPointer) -> Int {
            let count = key.count
            var word = UInt64(truncatingIfNeeded: count &* 2 &+ scopeIndex)
            if count >= 8, let base = key.baseAddress {
                word ^= base.loadUnaligned(as: UInt64.self) &* 0x9E37_79B9_7F4A_7C15
                word ^= base.loadUnaligned(fromByteOffset: count - 8, as: UInt64.self)
            } else {
                for byte in key { word = word << 8 | UInt64(byte) }
            }
            word = (word ^ (word >> 29)) &* 0xBF58_476D_1CE4_E5B9
            return Int(truncatingIfNeeded: word >> 56)
        }

        /// The key `recentKeys` holds at `slot`, when it is `key` of `scopeIndex`.
        @inline(__always)
        func recent(_ slot: Int, _ scopeIndex: Int, _ key: UnsafeRawBufferPointer) -> Int? {
            let held = Int(recentKeys[slot]) - 1
            guard held >= 0, Int(keys[held].scope) == scopeIndex else { return nil }
            var name = keys[held].name
            let same = name.withUTF8 { utf8 in
                utf8.count == key.count && (key.count == 0 || memcmp(utf8.baseAddress!, key.baseAddress!, key.count) == 0)
            }
            return same ? held : nil
        }

        mutating func add(_ scope: AttributeWalker.Scope, _ key: UnsafeRawBufferPointer, _ value: AttributeWalker.RawValue, members: inout HashSet64) {
            let scopeIndex = scope == .span ? 0 : 1
            let slot = Self.recentSlot(scopeIndex, key)
            let keyHash: UInt64
            let entry: Int
            if let held = recent(slot, scopeIndex, key) {
                keyHash = keys[held].hash
                entry = held
            } else {
                var hash: UInt64 = 0xcbf2_9ce4_8422_2325
                Hash.continued(&hash, scope == .span ? Self.spanPrefix : Self.resourcePrefix)
                Hash.continued(&hash, key)
                Hash.continued(&hash, Self.equals)
                var found = index[hash]
                if found < 0 {
                    guard keysPerScope[scopeIndex] < BlockSummary.keysPerScope else { return }
                    keysPerScope[scopeIndex] += 1
                    found = keys.count
                    keys.append(Key(name: String(decoding: key, as: UTF8.self), scope: UInt8(scopeIndex), hash: hash))
                    index[hash] = found
                }
                keyHash = hash
                entry = found
                recentKeys[slot] = Int32(found + 1)
            }
            func record(_ text: UnsafeRawBufferPointer) {
                var member = keyHash
                Hash.continued(&member, text)
                members.insert(member)
                if keys[entry].listed < valuesPerKey, listed.insert(member) {
                    keys[entry].listed += 1
                    values.append((Int32(entry), String(decoding: text, as: UTF8.self)))
                }
            }
            switch value {
            case .string(let bytes): record(bytes)
            case .int(let int): Self.withDecimal(int) { record($0) }
            case .bool(let bool): record(bool ? Self.trueText : Self.falseText)
            case .double(let double):
                // A whole double is also the integer a query may compare it with (`.x = 500`).
                if double.rounded() == double, abs(double) < 9e18 { Self.withDecimal(Int64(double)) { record($0) } }
            case .other: break
            }
        }

        @inline(__always)
        static func bytes(_ text: StaticString) -> UnsafeRawBufferPointer {
            UnsafeRawBufferPointer(start: text.utf8Start, count: text.utf8CodeUnitCount)
        }
        static var spanPrefix: UnsafeRawBufferPointer { Self.bytes("s:") }
        static var resourcePrefix: UnsafeRawBufferPointer { Self.bytes("r:") }
        static var equals: UnsafeRawBufferPointer { Self.bytes("=") }
        static var trueText: UnsafeRawBufferPointer { Self.bytes("true") }
        static var falseText: UnsafeRawBufferPointer { Self.bytes("false") }

        static func withDecimal(_ value: Int64, _ body: (UnsafeRawBufferPointer) -> Void) {
            withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 24) { buffer in
                var digits = buffer.count
                var magnitude = value.magnitude
                repeat {
                    digits -= 1
                    buffer[digits] = UInt8(ascii: "0") + UInt8(magnitude % 10)
                    magnitude /= 10
                } while magnitude > 0
                if value < 0 {
                    digits -= 1
                    buffer[digits] = UInt8(ascii: "-")
                }
                body(UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(buffer)[digits...]))
            }
        }

        var tags: [String: [String: [String]]] {
            // One exactly sized array per key, sorted in place.
            var byKey = keys.map { key -> [String] in
                var texts: [String] = []
                texts.reserveCapacity(key.listed)
                return texts
            }
            for (key, text) in values { byKey[Int(key)].append(text) }
            var scopes: [[String: [String]]] = [[:], [:]]
            scopes[0].reserveCapacity(keysPerScope[0])
            scopes[1].reserveCapacity(keysPerScope[1])
            for index in keys.indices {
                byKey[index].sort()
                scopes[Int(keys[index].scope)][keys[index].name] = byKey[index]
            }
            var result: [String: [String: [String]]] = [:]
            if !scopes[0].isEmpty { result["span"] = scopes[0] }
            if !scopes[1].isEmpty { result["resource"] = scopes[1] }
            return result
        }
    }

    /// The summary as one line of the sidecar: the JSON its `Codable` form reads, written directly
    /// (Foundation's encoder cost more than the summary it wrote, per block).
    public func jsonLine() -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(256 + bloom.count * 21 + names.count * 24)
        func raw(_ text: StaticString) { out.append(contentsOf: UnsafeBufferPointer(start: text.utf8Start, count: text.utf8CodeUnitCount)) }
        func number<N: BinaryInteger>(_ value: N) {
            // Digits straight into the line (a String per bloom word allocated, once it had 16 digits).
            var magnitude = UInt64(value)
            var divisor: UInt64 = 1
            while magnitude / divisor >= 10 { divisor *= 10 }
            repeat {
                out.append(UInt8(ascii: "0") + UInt8(magnitude / divisor))
                magnitude %= divisor
                divisor /= 10
            } while divisor > 0
        }
        func string(_ text: String) {
            out.append(UInt8(ascii: "\""))
            for byte in text.utf8 {
                switch byte {
                case UInt8(ascii: "\""): raw("\\\"")
                case UInt8(ascii: "\\"): raw("\\\\")
                case 0..<0x20:
                    raw("\\u00")
                    out.append(Self.hexDigits[Int(byte >> 4)])
                    out.append(Self.hexDigits[Int(byte & 0xF)])
                default: out.append(byte)
                }
            }
            out.append(UInt8(ascii: "\""))
        }
        func strings(_ list: [String]) {
            out.append(UInt8(ascii: "["))
            for (index, text) in list.enumerated() {
                if index > 0 { out.append(UInt8(ascii: ",")) }
                string(text)
            }
            out.append(UInt8(ascii: "]"))
        }
        raw("{\"offset\":"); number(offset)
        raw(",\"traces\":"); number(traces)
        raw(",\"minStart\":"); number(minStart)
        raw(",\"maxEnd\":"); number(maxEnd)
        raw(",\"maxTraceDuration\":"); number(maxTraceDuration)
        raw(",\"maxSpanDuration\":"); number(maxSpanDuration)
        raw(",\"hasError\":"); if hasError { raw("true") } else { raw("false") }
        raw(",\"rootServices\":"); strings(rootServices)
        raw(",\"rootNames\":"); strings(rootNames)
        raw(",\"names\":"); strings(names)
        raw(",\"tags\":{")
        for (scopeIndex, (scope, keys)) in tags.sorted(by: { $0.key < $1.key }).enumerated() {
            if scopeIndex > 0 { out.append(UInt8(ascii: ",")) }
            string(scope)
            raw(":{")
            for (keyIndex, (key, values)) in keys.sorted(by: { $0.key < $1.key }).enumerated() {
                if keyIndex > 0 { out.append(UInt8(ascii: ",")) }
                string(key)
                out.append(UInt8(ascii: ":"))
                strings(values)
            }
            out.append(UInt8(ascii: "}"))
        }
        raw("},\"bloom\":[")
        for (index, word) in bloom.enumerated() {
            if index > 0 { out.append(UInt8(ascii: ",")) }
            number(word)
        }
        raw("]}")
        return out
    }

    private static let hexDigits = Array("0123456789abcdef".utf8)

    /// FNV-1a 64 over the member's bytes (`n:name`, `s:key=value`, `r:key=value`).
    enum Hash {
        static func bytes(_ bytes: UnsafeRawBufferPointer, seed: UInt64 = 0) -> UInt64 {
            var hash: UInt64 = 0xcbf2_9ce4_8422_2325 ^ seed
            for byte in bytes {
                hash ^= UInt64(byte)
                hash = hash &* 0x0000_0100_0000_01b3
            }
            return hash
        }

        static func continued(_ hash: inout UInt64, _ bytes: UnsafeRawBufferPointer) {
            for byte in bytes {
                hash ^= UInt64(byte)
                hash = hash &* 0x0000_0100_0000_01b3
            }
        }

        static func member(_ prefix: StaticString, _ name: UnsafeRawBufferPointer) -> UInt64 {
            var hash: UInt64 = 0xcbf2_9ce4_8422_2325
            continued(&hash, UnsafeRawBufferPointer(start: prefix.utf8Start, count: prefix.utf8CodeUnitCount))
            continued(&hash, name)
            return hash
        }

        static func member(_ prefix: StaticString, _ key: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer) -> UInt64 {
            var hash: UInt64 = 0xcbf2_9ce4_8422_2325
            continued(&hash, UnsafeRawBufferPointer(start: prefix.utf8Start, count: prefix.utf8CodeUnitCount))
            continued(&hash, key)
            var equals = UInt8(ascii: "=")
            withUnsafeBytes(of: &equals) { continued(&hash, $0) }
            continued(&hash, value)
            return hash
        }

        /// The same hash of a member written out as text (what a query looks up).
        static func member(_ text: String) -> UInt64 {
            var copy = text
            return copy.withUTF8 { bytes(UnsafeRawBufferPointer($0)) }
        }
    }

    private static func probes(_ hash: UInt64) -> (UInt64, UInt64) {
        var h2 = hash ^ 0x9e37_79b9_7f4a_7c15
        h2 = (h2 ^ (h2 >> 31)) &* 0xbf58_476d_1ce4_e5b9
        return (hash, h2 | 1)
    }

    private mutating func insert(hash member: UInt64) {
        let (h1, h2) = Self.probes(member)
        let bits = UInt64(bloom.count * 64)
        for i in 0..<4 {
            let bit = (h1 &+ UInt64(i) &* h2) % bits
            bloom[Int(bit / 64)] |= 1 << (bit % 64)
        }
    }

    func mightContain(_ member: String) -> Bool {
        guard !bloom.isEmpty else { return true }
        let (h1, h2) = Self.probes(Hash.member(member))
        let bits = UInt64(bloom.count * 64)
        for i in 0..<4 {
            let bit = (h1 &+ UInt64(i) &* h2) % bits
            if bloom[Int(bit / 64)] & (1 << (bit % 64)) == 0 { return false }
        }
        return true
    }

    /// False when no trace of the block can match `request` (its query, durations and window).
    public func mayMatch(_ request: TraceSearchRequest, query: TraceQL?) -> Bool {
        guard traces > 0 else { return false }
        if let min = request.minDuration, maxTraceDuration < min { return false }
        if let start = request.start, maxEnd < start * 1_000_000_000 { return false }
        if let end = request.end, minStart > end * 1_000_000_000 { return false }
        guard let query else { return true }
        return mayMatch(query)
    }

    private func mayMatch(_ query: TraceQL) -> Bool {
        switch query {
        case .spanset(let expression): return expression.map(mayMatch) ?? true
        case .and(let a, let b): return mayMatch(a) && mayMatch(b)
        case .or(let a, let b): return mayMatch(a) || mayMatch(b)
        }
    }

    private func mayMatch(_ expression: TraceQL.Expression) -> Bool {
        switch expression {
        case .and(let a, let b): return mayMatch(a) && mayMatch(b)
        case .or(let a, let b): return mayMatch(a) || mayMatch(b)
        case .comparison(let field, let op, let literal):
            switch (field, op, literal) {
            case (.status, .equal, .enumeration("error")): return hasError
            case (.name, .equal, .string(let name)): return mightContain("n:" + name)
            case (.rootName, .equal, .string(let name)): return rootNames.count >= Self.namesLimit || rootNames.contains(name)
            case (.rootServiceName, .equal, .string(let name)): return rootServices.count >= Self.namesLimit || rootServices.contains(name)
            case (.duration, .greater, _), (.duration, .greaterOrEqual, _):
                return Self.nanos(literal).map { Double(maxSpanDuration) >= $0 } ?? true
            case (.traceDuration, .greater, _), (.traceDuration, .greaterOrEqual, _):
                return Self.nanos(literal).map { Double(maxTraceDuration) >= $0 } ?? true
            case (.span(let key), .equal, _):
                return Self.literalText(literal).map { mightContain("s:\(key)=\($0)") } ?? true
            case (.resource(let key), .equal, _):
                return Self.literalText(literal).map { mightContain("r:\(key)=\($0)") } ?? true
            case (.any(let key), .equal, _):
                return Self.literalText(literal).map { mightContain("s:\(key)=\($0)") || mightContain("r:\(key)=\($0)") } ?? true
            default:
                return true
            }
        }
    }

    static func nanos(_ literal: TraceQL.Literal) -> Double? {
        switch literal {
        case .duration(let value): Double(value)
        case .integer(let value): Double(value)
        case .float(let value): value
        default: nil
        }
    }

    static func literalText(_ literal: TraceQL.Literal) -> String? {
        switch literal {
        case .string(let text): text
        case .integer(let int): String(int)
        case .bool(let bool): bool ? "true" : "false"
        default: nil
        }
    }
}
