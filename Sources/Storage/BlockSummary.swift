import Foundation
public import OTLP

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

    /// Summarises a block's traces (their stored requests).
    public static func build(offset: UInt32, requests: [[UInt8]]) -> BlockSummary {
        var summary = BlockSummary(offset: offset)
        var members = Set<String>()
        var values: [String: [String: Set<String>]] = [:]
        for request in requests {
            var batch = SpanBatch()
            guard (try? SpanDecoder(encoding: .otlpProto).decode(request, into: &batch)) != nil, !batch.spans.isEmpty else { continue }
            summary.traces += 1
            var start = UInt64.max, end = UInt64(0)
            var root: SpanRecord?
            for span in batch.spans {
                start = min(start, span.startTimeUnixNano)
                end = max(end, span.endTimeUnixNano)
                summary.maxSpanDuration = max(summary.maxSpanDuration, span.durationNanos)
                if span.statusCode == .error { summary.hasError = true }
                let spanName = batch.string(span.name)
                if members.insert("n:" + spanName).inserted, summary.names.count < namesLimit { summary.names.append(spanName) }
                if !span.parentSpanID.isValid, root == nil || span.startTimeUnixNano < root!.startTimeUnixNano { root = span }
            }
            if root == nil { root = batch.spans.min { $0.startTimeUnixNano < $1.startTimeUnixNano } }
            if let root {
                let service = batch.string(batch.serviceName(of: root))
                let name = batch.string(root.name)
                if !summary.rootServices.contains(service), summary.rootServices.count < namesLimit { summary.rootServices.append(service) }
                if !summary.rootNames.contains(name), summary.rootNames.count < namesLimit { summary.rootNames.append(name) }
            }
            summary.minStart = min(summary.minStart, start)
            summary.maxEnd = max(summary.maxEnd, end)
            summary.maxTraceDuration = max(summary.maxTraceDuration, end > start ? end - start : 0)
            try? AttributeWalker.forEach(in: request) { scope, key, value in
                let prefix = scope == .span ? "span" : "resource"
                guard let text = Self.text(value) else {
                    if values[prefix]?[key] == nil, (values[prefix]?.count ?? 0) < keysPerScope { values[prefix, default: [:]][key] = [] }
                    return
                }
                members.insert((scope == .span ? "s:" : "r:") + key + "=" + text)
                if values[prefix]?[key] != nil || (values[prefix]?.count ?? 0) < keysPerScope {
                    if (values[prefix]?[key]?.count ?? 0) < valuesPerKey { values[prefix, default: [:]][key, default: []].insert(text) }
                }
            }
        }
        summary.tags = values.mapValues { keys in keys.mapValues { $0.sorted() } }
        if summary.minStart == .max { summary.minStart = 0 }
        // About ten bits per member: a false positive in ~1% of lookups.
        var bits = 4096
        while bits < members.count * 10 { bits *= 2 }
        summary.bloom = [UInt64](repeating: 0, count: bits / 64)
        for member in members { summary.insert(member) }
        return summary
    }

    static func text(_ value: AttributeWalker.Value) -> String? {
        switch value {
        case .string(let text): text
        case .int(let int): String(int)
        case .bool(let bool): bool ? "true" : "false"
        // A whole double is also the integer a query may compare it with (`.x = 500`).
        case .double(let double): double.rounded() == double && abs(double) < 9e18 ? String(Int64(double)) : nil
        case .other: nil
        }
    }

    private static func hashes(_ member: String) -> (UInt64, UInt64) {
        var h1: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in member.utf8 {
            h1 ^= UInt64(byte)
            h1 = h1 &* 0x0000_0100_0000_01b3
        }
        var h2 = h1 ^ 0x9e37_79b9_7f4a_7c15
        h2 = (h2 ^ (h2 >> 31)) &* 0xbf58_476d_1ce4_e5b9
        return (h1, h2 | 1)
    }

    private mutating func insert(_ member: String) {
        let (h1, h2) = Self.hashes(member)
        let bits = UInt64(bloom.count * 64)
        for i in 0..<4 {
            let bit = (h1 &+ UInt64(i) &* h2) % bits
            bloom[Int(bit / 64)] |= 1 << (bit % 64)
        }
    }

    func mightContain(_ member: String) -> Bool {
        guard !bloom.isEmpty else { return true }
        let (h1, h2) = Self.hashes(member)
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
