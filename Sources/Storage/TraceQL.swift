import OTLP

/// The TraceQL subset Grafana's search builder writes: spanset filters `{ … }` joined by `&&` / `||`
/// (and parentheses), each a boolean expression of comparisons between a field and a literal.
/// Anything else — pipelines, aggregates, structural operators — is refused with the construct
/// named, as Tempo answers an unsupported query; a malformed one with the position of the error.
public indirect enum TraceQL: Sendable, Equatable {
    /// `{ expression }`: the trace has spans for which the expression holds (nil: every span).
    case spanset(Expression?)
    case and(TraceQL, TraceQL)
    case or(TraceQL, TraceQL)

    public indirect enum Expression: Sendable, Equatable {
        case comparison(Field, Operator, Literal)
        case and(Expression, Expression)
        case or(Expression, Expression)
    }

    public enum Field: Sendable, Equatable, Hashable {
        case name, status, statusMessage, kind, duration, rootName, rootServiceName, traceDuration
        /// `span.x`: a span attribute.
        case span(String)
        /// `resource.x`: a resource attribute.
        case resource(String)
        /// `.x`: a span attribute, else the resource's.
        case any(String)

        /// The attribute key it reads, if any.
        public var attributeKey: String? {
            switch self {
            case .span(let key), .resource(let key), .any(let key): key
            default: nil
            }
        }
    }

    public enum Operator: String, Sendable, Equatable {
        case equal = "=", notEqual = "!=", greater = ">", greaterOrEqual = ">=", less = "<", lessOrEqual = "<="
        case matches = "=~", notMatches = "!~"
    }

    public enum Literal: Sendable, Equatable {
        case string(String)
        case integer(Int64)
        case float(Double)
        case bool(Bool)
        /// Nanoseconds.
        case duration(UInt64)
        /// `error`, `ok`, `unset`, `server`, `client`, …
        case enumeration(String)
    }

    /// Attribute keys the query reads (what the decoder must select).
    public var attributeKeys: [String] {
        var keys: [String] = []
        func visit(_ expression: Expression) {
            switch expression {
            case .comparison(let field, _, _): if let key = field.attributeKey, !keys.contains(key) { keys.append(key) }
            case .and(let a, let b), .or(let a, let b):
                visit(a)
                visit(b)
            }
        }
        func visit(_ query: TraceQL) {
            switch query {
            case .spanset(let expression): if let expression { visit(expression) }
            case .and(let a, let b), .or(let a, let b):
                visit(a)
                visit(b)
            }
        }
        visit(self)
        return keys
    }
}

/// A query Tempo's language allows but this subset does not, or one that does not parse.
public struct TraceQLError: Error, Sendable, Equatable, CustomStringConvertible {
    /// 1-based character position in the query.
    public var position: Int
    public var message: String
    public var description: String { "parse error at position \(position): \(message)" }
}

extension TraceQL {
    public static func parse(_ text: String) throws(TraceQLError) -> TraceQL {
        var parser = TraceQLParser(text)
        let query = try parser.query()
        try parser.expectEnd()
        return query
    }
}

struct TraceQLParser {
    enum Token: Equatable {
        case open, close, lparen, rparen, and, or, pipe, op(TraceQL.Operator), word(String), string(String), number(String)
        case unsupported(String), end
    }

    let scalars: [Character]
    var index = 0
    var token: Token = .end
    var tokenStart = 0

    init(_ text: String) {
        scalars = Array(text)
    }

    mutating func error(_ message: String, at position: Int? = nil) -> TraceQLError {
        TraceQLError(position: (position ?? tokenStart) + 1, message: message)
    }

    mutating func next() throws(TraceQLError) {
        while index < scalars.count, scalars[index].isWhitespace { index += 1 }
        tokenStart = index
        guard index < scalars.count else {
            token = .end
            return
        }
        let c = scalars[index]
        func peek(_ offset: Int = 1) -> Character? { index + offset < scalars.count ? scalars[index + offset] : nil }
        switch c {
        case "{": index += 1; token = .open
        case "}": index += 1; token = .close
        case "(": index += 1; token = .lparen
        case ")": index += 1; token = .rparen
        case "&" where peek() == "&": index += 2; token = .and
        case "|" where peek() == "|": index += 2; token = .or
        case "|": index += 1; token = .pipe
        case "=" where peek() == "~": index += 2; token = .op(.matches)
        case "=": index += 1; token = .op(.equal)
        case "!" where peek() == "=": index += 2; token = .op(.notEqual)
        case "!" where peek() == "~": index += 2; token = .op(.notMatches)
        case ">" where peek() == ">": index += 2; token = .unsupported(">>")
        case "<" where peek() == "<": index += 2; token = .unsupported("<<")
        case ">" where peek() == "=": index += 2; token = .op(.greaterOrEqual)
        case "<" where peek() == "=": index += 2; token = .op(.lessOrEqual)
        case ">": index += 1; token = .op(.greater)
        case "<": index += 1; token = .op(.less)
        case "~": index += 1; token = .unsupported("~ (the sibling operator)")
        case "\"", "`":
            let quote = c
            index += 1
            var value = ""
            while index < scalars.count, scalars[index] != quote {
                if scalars[index] == "\\", quote == "\"", index + 1 < scalars.count {
                    index += 1
                    switch scalars[index] {
                    case "n": value.append("\n")
                    case "t": value.append("\t")
                    default: value.append(scalars[index])
                    }
                } else {
                    value.append(scalars[index])
                }
                index += 1
            }
            guard index < scalars.count else { throw error("unterminated string") }
            index += 1
            token = .string(value)
        case _ where c.isNumber || (c == "-" && (peek()?.isNumber ?? false)):
            var text = String(c)
            index += 1
            while index < scalars.count, scalars[index].isNumber || scalars[index] == "." || scalars[index].isLetter {
                text.append(scalars[index])
                index += 1
            }
            token = .number(text)
        case _ where c.isLetter || c == "." || c == "_":
            var text = ""
            while index < scalars.count,
                scalars[index].isLetter || scalars[index].isNumber || "._-:/".contains(scalars[index])
            {
                text.append(scalars[index])
                index += 1
            }
            token = .word(text)
        default:
            throw error("unexpected character \"\(c)\"")
        }
    }

    mutating func query() throws(TraceQLError) -> TraceQL {
        try next()
        return try spansetOr()
    }

    mutating func expectEnd() throws(TraceQLError) {
        switch token {
        case .end: return
        case .pipe: throw error("pipelines (| count(), | select(), | by(), …) are not supported by tailgate's search; use spanset filters { … } joined by && or ||")
        case .unsupported(let what): throw error("the structural operator \(what) is not supported by tailgate's search")
        default: throw error("unexpected \(describe(token)) after the query")
        }
    }

    mutating func spansetOr() throws(TraceQLError) -> TraceQL {
        var left = try spansetAnd()
        while token == .or {
            try next()
            left = .or(left, try spansetAnd())
        }
        return left
    }

    mutating func spansetAnd() throws(TraceQLError) -> TraceQL {
        var left = try spansetTerm()
        while token == .and {
            try next()
            left = .and(left, try spansetTerm())
        }
        if case .unsupported(let what) = token { throw error("the structural operator \(what) is not supported by tailgate's search") }
        return left
    }

    mutating func spansetTerm() throws(TraceQLError) -> TraceQL {
        switch token {
        case .lparen:
            try next()
            let inner = try spansetOr()
            guard token == .rparen else { throw error("expected ) to close (") }
            try next()
            return inner
        case .open:
            try next()
            if token == .close {
                try next()
                return .spanset(nil)
            }
            let expression = try expressionOr()
            guard token == .close else { throw error("expected } to close the spanset filter, found \(describe(token))") }
            try next()
            return .spanset(expression)
        case .word(let word) where ["count", "avg", "min", "max", "sum", "select", "by", "coalesce", "rate", "quantile_over_time"].contains(word):
            throw error("\(word)() is not supported by tailgate's search")
        default:
            throw error("expected a spanset filter { … }, found \(describe(token))")
        }
    }

    mutating func expressionOr() throws(TraceQLError) -> TraceQL.Expression {
        var left = try expressionAnd()
        while token == .or {
            try next()
            left = .or(left, try expressionAnd())
        }
        return left
    }

    mutating func expressionAnd() throws(TraceQLError) -> TraceQL.Expression {
        var left = try expressionTerm()
        while token == .and {
            try next()
            left = .and(left, try expressionTerm())
        }
        return left
    }

    mutating func expressionTerm() throws(TraceQLError) -> TraceQL.Expression {
        if token == .lparen {
            try next()
            let inner = try expressionOr()
            guard token == .rparen else { throw error("expected ) to close (") }
            try next()
            return inner
        }
        guard case .word(let word) = token else { throw error("expected a field (name, status, duration, span.x, resource.x, .x, …), found \(describe(token))") }
        let fieldStart = tokenStart
        let field = try self.field(word, at: fieldStart)
        try next()
        guard case .op(let op) = token else { throw error("expected an operator (= != > >= < <= =~ !~) after \(word), found \(describe(token))") }
        try next()
        let literal = try self.literal()
        try check(field, op, literal, at: fieldStart)
        try next()
        return .comparison(field, op, literal)
    }

    mutating func field(_ word: String, at position: Int) throws(TraceQLError) -> TraceQL.Field {
        switch word {
        case "name": return .name
        case "status": return .status
        case "statusMessage": return .statusMessage
        case "kind": return .kind
        case "duration": return .duration
        case "rootName": return .rootName
        case "rootServiceName": return .rootServiceName
        case "traceDuration": return .traceDuration
        default: break
        }
        if word.hasPrefix("span."), word.count > 5 { return .span(String(word.dropFirst(5))) }
        if word.hasPrefix("resource."), word.count > 9 { return .resource(String(word.dropFirst(9))) }
        if word.hasPrefix("."), word.count > 1 { return .any(String(word.dropFirst())) }
        if ["parent", "event", "link", "instrumentation", "trace", "nestedSetLeft", "nestedSetRight", "nestedSetParent"].contains(where: { word.hasPrefix($0 + ".") || word == $0 || word.hasPrefix($0 + ":") }) || word.contains(":") {
            throw error("\(word) is not supported by tailgate's search (intrinsics: name, status, statusMessage, kind, duration, rootName, rootServiceName, traceDuration; attributes: span.x, resource.x, .x)", at: position)
        }
        throw error("unknown field \(word); write span.\(word), resource.\(word) or .\(word) for an attribute", at: position)
    }

    mutating func literal() throws(TraceQLError) -> TraceQL.Literal {
        switch token {
        case .string(let value): return .string(value)
        case .number(let text):
            if let value = Int64(text) { return .integer(value) }
            if let value = Double(text) { return .float(value) }
            if let nanos = Self.duration(text) { return .duration(nanos) }
            throw error("\(text) is not a number or a duration (250ms, 1.5s, 2m)")
        case .word("true"): return .bool(true)
        case .word("false"): return .bool(false)
        case .word(let word) where ["error", "ok", "unset", "server", "client", "producer", "consumer", "internal", "unspecified"].contains(word):
            return .enumeration(word)
        case .word("nil"):
            throw error("nil comparisons are not supported by tailgate's search")
        default:
            throw error("expected a value (a \"string\", a number, a duration, true/false, or error/ok/unset, server/client/…), found \(describe(token))")
        }
    }

    /// Comparisons that make sense: checked at parse time so a query never silently matches nothing.
    mutating func check(_ field: TraceQL.Field, _ op: TraceQL.Operator, _ literal: TraceQL.Literal, at position: Int) throws(TraceQLError) {
        func refuse(_ message: String) -> TraceQLError { error(message, at: position) }
        switch field {
        case .status:
            guard case .enumeration(let value) = literal, ["error", "ok", "unset"].contains(value), op == .equal || op == .notEqual else {
                throw refuse("status compares with = or != to error, ok or unset")
            }
        case .kind:
            guard case .enumeration(let value) = literal, ["server", "client", "producer", "consumer", "internal", "unspecified"].contains(value),
                op == .equal || op == .notEqual
            else { throw refuse("kind compares with = or != to server, client, producer, consumer, internal or unspecified") }
        case .duration, .traceDuration:
            switch literal {
            case .duration, .integer, .float: break
            default: throw refuse("\(field == .duration ? "duration" : "traceDuration") compares with a duration, e.g. > 1s")
            }
            if op == .matches || op == .notMatches { throw refuse("=~ and !~ compare strings") }
        case .name, .statusMessage, .rootName, .rootServiceName:
            guard case .string = literal else { throw refuse("this field is a string: compare it with a \"quoted\" value") }
        case .span, .resource, .any:
            if case .enumeration(let value) = literal { throw refuse("\(value) is not a value here; quote strings: \"\(value)\"") }
        }
        if op == .matches || op == .notMatches {
            guard case .string(let pattern) = literal else { throw refuse("=~ and !~ compare with a \"regular expression\"") }
            do { _ = try Regex(pattern) } catch { throw refuse("invalid regular expression \"\(pattern)\"") }
        }
    }

    static func duration(_ text: String) -> UInt64? {
        let units: [(String, Double)] = [("ns", 1), ("us", 1e3), ("µs", 1e3), ("ms", 1e6), ("s", 1e9), ("m", 60e9), ("h", 3600e9)]
        for (unit, scale) in units where text.hasSuffix(unit) {
            let number = text.dropLast(unit.count)
            guard let value = Double(number), value >= 0 else { continue }
            return UInt64(value * scale)
        }
        return nil
    }

    func describe(_ token: Token) -> String {
        switch token {
        case .open: "{"
        case .close: "}"
        case .lparen: "("
        case .rparen: ")"
        case .and: "&&"
        case .or: "||"
        case .pipe: "|"
        case .op(let op): op.rawValue
        case .word(let word): word
        case .string(let value): "\"\(value)\""
        case .number(let text): text
        case .unsupported(let what): what
        case .end: "the end of the query"
        }
    }
}
