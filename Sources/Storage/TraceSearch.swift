import Foundation
public import OTLP

/// What Tempo's `GET /api/search` asks: a TraceQL query (or logfmt `tags`), a duration range, a time
/// window, how many traces and how many spans per spanset.
public struct TraceSearchRequest: Sendable {
    public var query: TraceQL?
    /// Logfmt `key=value` pairs (Tempo's older tag search): every pair must match some span.
    public var tags: [(key: String, value: String)] = []
    /// Trace duration bounds, nanoseconds.
    public var minDuration: UInt64?
    public var maxDuration: UInt64?
    /// Unix seconds: traces overlapping [start, end].
    public var start: UInt64?
    public var end: UInt64?
    public var limit = 20
    public var spansPerSpanSet = 3
    /// Work bound: the search stops (and says so) past this.
    public var budget: Duration = .seconds(5)

    public init(query: TraceQL? = nil) { self.query = query }

    /// The query as one TraceQL condition set: `q`, and the tags as spanset filters.
    var effectiveQuery: TraceQL? {
        var result = query
        for (key, value) in tags {
            let field: TraceQL.Field
            let literal: TraceQL.Literal
            switch key {
            case "name": (field, literal) = (.name, .string(value))
            case "status.code", "status": (field, literal) = (.status, .enumeration(value == "2" ? "error" : value == "1" ? "ok" : value == "0" ? "unset" : value))
            default:
                field = .any(key)
                if let int = Int64(value) { literal = .integer(int) } else if value == "true" || value == "false" { literal = .bool(value == "true") } else { literal = .string(value) }
            }
            let filter = TraceQL.spanset(.comparison(field, .equal, literal))
            result = result.map { .and($0, filter) } ?? filter
        }
        return result
    }
}

/// One matching trace, in Tempo's search response terms.
public struct TraceSearchHit: Sendable, Equatable {
    public struct Span: Sendable, Equatable {
        public var spanID: String
        public var name: String
        public var startTimeUnixNano: UInt64
        public var durationNanos: UInt64
        /// The attributes the query named, as they were sent.
        public var attributes: [(key: String, value: AttributeJSON)]

        public static func == (a: Span, b: Span) -> Bool {
            a.spanID == b.spanID && a.startTimeUnixNano == b.startTimeUnixNano && a.durationNanos == b.durationNanos
                && a.attributes.map(\.key) == b.attributes.map(\.key) && a.attributes.map(\.value) == b.attributes.map(\.value)
        }
    }

    public struct SpanSet: Sendable, Equatable {
        public var spans: [Span]
        public var matched: Int
    }

    public var traceID: TraceID
    public var rootServiceName: String
    public var rootTraceName: String
    public var startTimeUnixNano: UInt64
    public var durationMs: UInt64
    public var spanSets: [SpanSet]
}

/// An attribute value as Tempo's JSON writes it (`{"stringValue": …}`, `{"intValue": "…"}`, …).
public enum AttributeJSON: Sendable, Equatable {
    case string(String), int(Int64), double(Double), bool(Bool)

    var json: String {
        switch self {
        case .string(let value): "{\"stringValue\":\(JSONText.quoted(value))}"
        case .int(let value): "{\"intValue\":\"\(value)\"}"
        case .double(let value): "{\"doubleValue\":\(value)}"
        case .bool(let value): "{\"boolValue\":\(value)}"
        }
    }
}

/// The answer: hits newest first, and what was inspected.
public struct TraceSearchResponse: Sendable {
    public var traces: [TraceSearchHit] = []
    public var inspectedTraces = 0
    public var inspectedBytes = 0
    public var inspectedBlocks = 0
    public var skippedBlocks = 0
    /// The budget ran out before every block was looked at: the results are partial.
    public var partial = false

    public init() {}

    /// Tempo's `SearchResponse` JSON.
    public var json: String {
        var out = "{\"traces\":["
        for (index, hit) in traces.enumerated() {
            if index > 0 { out += "," }
            let sets = hit.spanSets.map(SearchJSON.spanSet)
            out += "{\"traceID\":\"\(hit.traceID.hex)\",\"rootServiceName\":\(JSONText.quoted(hit.rootServiceName)),"
            out += "\"rootTraceName\":\(JSONText.quoted(hit.rootTraceName)),\"startTimeUnixNano\":\"\(hit.startTimeUnixNano)\","
            out += "\"durationMs\":\(hit.durationMs)"
            if let first = sets.first { out += ",\"spanSet\":\(first)" }
            out += ",\"spanSets\":[\(sets.joined(separator: ","))]}"
        }
        out += "],\"metrics\":{\"inspectedTraces\":\(inspectedTraces),\"inspectedBytes\":\"\(inspectedBytes)\","
        out += "\"totalBlocks\":\(inspectedBlocks + skippedBlocks),\"inspectedBlocks\":\(inspectedBlocks),\"skippedBlocks\":\(skippedBlocks),"
        out += "\"completedJobs\":1,\"totalJobs\":1"
        if partial { out += ",\"partial\":true" }
        return out + "}}"
    }
}

enum SearchJSON {

    static func spanSet(_ set: TraceSearchHit.SpanSet) -> String {
        let spans = set.spans.map { span in
            var out = "{\"spanID\":\"\(span.spanID)\",\"name\":\(JSONText.quoted(span.name)),\"startTimeUnixNano\":\"\(span.startTimeUnixNano)\",\"durationNanos\":\"\(span.durationNanos)\""
            if !span.attributes.isEmpty {
                out += ",\"attributes\":[" + span.attributes.map { "{\"key\":\(JSONText.quoted($0.key)),\"value\":\($0.value.json)}" }.joined(separator: ",") + "]"
            }
            return out + "}"
        }
        return "{\"spans\":[\(spans.joined(separator: ","))],\"matched\":\(set.matched)}"
    }
}

/// Evaluates a TraceQL query against one decoded trace (pure).
public struct TraceQLMatcher {
    public let query: TraceQL?
    public let selection: AttributeSelection
    private let regexes: [String: Regex<AnyRegexOutput>]

    public init(query: TraceQL?) {
        self.query = query
        selection = AttributeSelection(keys: query?.attributeKeys ?? [])
        var regexes: [String: Regex<AnyRegexOutput>] = [:]
        func collect(_ expression: TraceQL.Expression) {
            switch expression {
            case .comparison(_, let op, .string(let pattern)) where op == .matches || op == .notMatches:
                regexes[pattern] = try? Regex(pattern)
            case .and(let a, let b), .or(let a, let b):
                collect(a)
                collect(b)
            default: break
            }
        }
        func visit(_ query: TraceQL) {
            switch query {
            case .spanset(let expression): if let expression { collect(expression) }
            case .and(let a, let b), .or(let a, let b):
                visit(a)
                visit(b)
            }
        }
        if let query { visit(query) }
        self.regexes = regexes
    }

    /// The trace's facts that trace-level intrinsics read.
    struct TraceFacts {
        var rootName = ""
        var rootService = ""
        var start: UInt64 = .max
        var end: UInt64 = 0
        var duration: UInt64 { end > start ? end - start : 0 }
    }

    static func facts(_ batch: SpanBatch) -> TraceFacts {
        var facts = TraceFacts()
        var root: SpanRecord?
        for span in batch.spans {
            facts.start = min(facts.start, span.startTimeUnixNano)
            facts.end = max(facts.end, span.endTimeUnixNano)
            if !span.parentSpanID.isValid, root == nil || span.startTimeUnixNano < root!.startTimeUnixNano { root = span }
        }
        // No root span stored (its service never sent it): the earliest span stands in, as Tempo does.
        if root == nil { root = batch.spans.min { $0.startTimeUnixNano < $1.startTimeUnixNano } }
        if let root {
            facts.rootName = batch.string(root.name)
            facts.rootService = batch.string(batch.serviceName(of: root))
        }
        if facts.start == .max { facts.start = 0 }
        return facts
    }

    /// The spansets that make `batch` (one trace) match, each as the indices of its spans; nil when
    /// it does not match.
    func spanSets(_ batch: SpanBatch, facts: TraceFacts) -> [[Int]]? {
        guard let query else { return [Array(batch.spans.indices)] }
        return evaluate(query, batch, facts)
    }

    private func evaluate(_ query: TraceQL, _ batch: SpanBatch, _ facts: TraceFacts) -> [[Int]]? {
        switch query {
        case .spanset(let expression):
            let spans = batch.spans.indices.filter { index in expression.map { holds($0, batch.spans[index], batch, facts) } ?? true }
            return spans.isEmpty ? nil : [spans]
        case .and(let a, let b):
            guard let left = evaluate(a, batch, facts), let right = evaluate(b, batch, facts) else { return nil }
            return left + right
        case .or(let a, let b):
            let left = evaluate(a, batch, facts), right = evaluate(b, batch, facts)
            if left == nil && right == nil { return nil }
            return (left ?? []) + (right ?? [])
        }
    }

    private func holds(_ expression: TraceQL.Expression, _ span: SpanRecord, _ batch: SpanBatch, _ facts: TraceFacts) -> Bool {
        switch expression {
        case .and(let a, let b): return holds(a, span, batch, facts) && holds(b, span, batch, facts)
        case .or(let a, let b): return holds(a, span, batch, facts) || holds(b, span, batch, facts)
        case .comparison(let field, let op, let literal):
            switch field {
            case .name: return compare(batch.string(span.name), op, literal)
            case .statusMessage: return compare(batch.string(span.statusMessage), op, literal)
            case .rootName: return compare(facts.rootName, op, literal)
            case .rootServiceName: return compare(facts.rootService, op, literal)
            case .status:
                guard case .enumeration(let value) = literal else { return false }
                let actual = span.statusCode == .error ? "error" : span.statusCode == .ok ? "ok" : "unset"
                return op == .equal ? actual == value : actual != value
            case .kind:
                guard case .enumeration(let value) = literal else { return false }
                let actual: String
                switch span.kind {
                case .server: actual = "server"
                case .client: actual = "client"
                case .producer: actual = "producer"
                case .consumer: actual = "consumer"
                case .internal: actual = "internal"
                default: actual = "unspecified"
                }
                return op == .equal ? actual == value : actual != value
            case .duration: return compareNanos(span.durationNanos, op, literal)
            case .traceDuration: return compareNanos(facts.duration, op, literal)
            case .span(let key), .resource(let key), .any(let key):
                guard let id = selection.id(of: key) else { return false }
                if case .resource = field {} else {
                    for attribute in batch.attributes(of: span) where attribute.key == id { return compare(attribute.value, batch, op, literal) }
                    if case .span = field { return false }
                }
                for attribute in batch.attributes(of: batch.resource(of: span)) where attribute.key == id {
                    return compare(attribute.value, batch, op, literal)
                }
                return false
            }
        }
    }

    private func compare(_ value: AttributeValue, _ batch: SpanBatch, _ op: TraceQL.Operator, _ literal: TraceQL.Literal) -> Bool {
        switch value {
        case .string(let range): return compare(batch.string(range), op, literal)
        case .int(let int):
            switch literal {
            case .integer(let other): return order(Double(int), Double(other), op)
            case .float(let other): return order(Double(int), other, op)
            default: return false
            }
        case .double(let double):
            switch literal {
            case .integer(let other): return order(double, Double(other), op)
            case .float(let other): return order(double, other, op)
            default: return false
            }
        case .bool(let bool):
            guard case .bool(let other) = literal else { return false }
            switch op {
            case .equal: return bool == other
            case .notEqual: return bool != other
            default: return false
            }
        default: return false
        }
    }

    private func compare(_ text: String, _ op: TraceQL.Operator, _ literal: TraceQL.Literal) -> Bool {
        guard case .string(let other) = literal else { return false }
        switch op {
        case .equal: return text == other
        case .notEqual: return text != other
        case .greater: return text > other
        case .greaterOrEqual: return text >= other
        case .less: return text < other
        case .lessOrEqual: return text <= other
        case .matches:
            // Tempo anchors regular expressions: the whole value must match.
            guard let regex = regexes[other] else { return false }
            return (try? regex.wholeMatch(in: text)) != nil
        case .notMatches:
            guard let regex = regexes[other] else { return false }
            return (try? regex.wholeMatch(in: text)) == nil
        }
    }

    private func compareNanos(_ value: UInt64, _ op: TraceQL.Operator, _ literal: TraceQL.Literal) -> Bool {
        let other: Double
        switch literal {
        case .duration(let nanos): other = Double(nanos)
        case .integer(let int): other = Double(int)
        case .float(let double): other = double
        default: return false
        }
        return order(Double(value), other, op)
    }

    private func order(_ a: Double, _ b: Double, _ op: TraceQL.Operator) -> Bool {
        switch op {
        case .equal: a == b
        case .notEqual: a != b
        case .greater: a > b
        case .greaterOrEqual: a >= b
        case .less: a < b
        case .lessOrEqual: a <= b
        case .matches, .notMatches: false
        }
    }

    /// `request` (one stored trace, merged) as a hit, when it matches.
    public func hit(_ request: [UInt8], traceID: TraceID, search: TraceSearchRequest) -> TraceSearchHit? {
        var batch = SpanBatch(selection: selection)
        guard (try? SpanDecoder(encoding: .otlpProto).decode(request, into: &batch)) != nil, !batch.spans.isEmpty else { return nil }
        let facts = Self.facts(batch)
        if let min = search.minDuration, facts.duration < min { return nil }
        if let max = search.maxDuration, facts.duration > max { return nil }
        if let start = search.start, facts.end < start * 1_000_000_000 { return nil }
        if let end = search.end, facts.start > end * 1_000_000_000 { return nil }
        guard let sets = spanSets(batch, facts: facts) else { return nil }
        let keys = query?.attributeKeys ?? []
        let spanSets = sets.map { indices in
            TraceSearchHit.SpanSet(
                spans: indices.prefix(search.spansPerSpanSet).map { index in
                    let span = batch.spans[index]
                    var attributes: [(key: String, value: AttributeJSON)] = []
                    for key in keys {
                        guard let id = selection.id(of: key) else { continue }
                        let found = batch.attributes(of: span).first { $0.key == id }
                            ?? batch.attributes(of: batch.resource(of: span)).first { $0.key == id }
                        guard let found else { continue }
                        switch found.value {
                        case .string(let range): attributes.append((key, .string(batch.string(range))))
                        case .int(let int): attributes.append((key, .int(int)))
                        case .double(let double): attributes.append((key, .double(double)))
                        case .bool(let bool): attributes.append((key, .bool(bool)))
                        default: break
                        }
                    }
                    return TraceSearchHit.Span(
                        spanID: span.spanID.hex, name: batch.string(span.name), startTimeUnixNano: span.startTimeUnixNano,
                        durationNanos: span.durationNanos, attributes: attributes)
                },
                matched: indices.count)
        }
        return TraceSearchHit(
            traceID: traceID, rootServiceName: facts.rootService, rootTraceName: facts.rootName, startTimeUnixNano: facts.start,
            durationMs: facts.duration / 1_000_000, spanSets: spanSets)
    }
}
