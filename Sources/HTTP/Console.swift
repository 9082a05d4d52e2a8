import Foundation
import SpanMetrics

/// What the console shows beside the metrics: the rule file, the adaptive samplers' tables, the
/// sinks, whether there is a store. The backend fills it when asked (a browser polling); nothing on
/// the ingest path keeps it.
public struct ConsoleState: Sendable, Encodable, Equatable {
    public struct Rules: Sendable, Encodable, Equatable {
        /// The rule file (nil: the built-in keep-everything rules).
        public var path: String?
        /// `tailgate_rules_info{hash}`.
        public var hash: String
        /// The rule file's text as loaded (untrusted by the page like every other value).
        public var source: String
        /// The last reload's errors while they stand (nil: the file loaded).
        public var lastError: String?
        /// Policy names in the file's order.
        public var policies: [String]

        public init(path: String?, hash: String, source: String, lastError: String?, policies: [String]) {
            self.path = path
            self.hash = hash
            self.source = source
            self.lastError = lastError
            self.policies = policies
        }
    }

    /// An adaptive sampler's current table (its busiest keys).
    public struct Sampler: Sendable, Encodable, Equatable {
        public struct Rate: Sendable, Encodable, Equatable {
            public var key: String
            public var rate: Int
            public init(key: String, rate: Int) {
                self.key = key
                self.rate = rate
            }
        }
        public var policy: String
        /// Keys the table holds (the list below is the busiest `rates.count`).
        public var keys: Int
        public var rates: [Rate]

        public init(policy: String, keys: Int, rates: [Rate]) {
            self.policy = policy
            self.keys = keys
            self.rates = rates
        }
    }

    public struct Sink: Sendable, Encodable, Equatable {
        /// `store`, `otlp`, `kafka`.
        public var name: String
        /// Why its latest attempt failed, while it has not succeeded since.
        public var failing: String?

        public init(name: String, failing: String?) {
            self.name = name
            self.failing = failing
        }
    }

    /// `run` or `route`.
    public var role: String
    /// Kept traces go to the embedded store (`--data`): the trace pages can search.
    public var store: Bool
    public var dryRun: Bool
    public var rules: Rules?
    public var samplers: [Sampler]
    public var sinks: [Sink]

    public init(role: String = "run", store: Bool = false, dryRun: Bool = false, rules: Rules? = nil, samplers: [Sampler] = [], sinks: [Sink] = []) {
        self.role = role
        self.store = store
        self.dryRun = dryRun
        self.rules = rules
        self.samplers = samplers
        self.sinks = sinks
    }
}

/// The built-in console: a read-only page at `/` whose script polls `/api/console/state` (the
/// metrics the listener already serves, parsed, plus ``ConsoleState``) and reads Tempo's search and
/// trace-by-id API for the trace pages. Its assets are compiled in; they are served with a strict
/// Content-Security-Policy (no inline script or style, nothing from another origin), and the page
/// puts every value into the document as text, never as markup.
public enum Console {
    /// What the browser is told about every console response.
    static let securityHeaders = [
        HTTPHeader(
            "Content-Security-Policy",
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"),
        HTTPHeader("X-Content-Type-Options", "nosniff"),
        HTTPHeader("Referrer-Policy", "no-referrer"),
        HTTPHeader("X-Frame-Options", "DENY"),
        HTTPHeader("Cache-Control", "no-cache"),
    ]

    private static let assets: [String: (contentType: String, body: String)] = [
        "/": ("text/html; charset=utf-8", ConsoleAssets.html),
        "/index.html": ("text/html; charset=utf-8", ConsoleAssets.html),
        "/console/app.js": ("text/javascript; charset=utf-8", ConsoleAssets.script),
        "/console/app.css": ("text/css; charset=utf-8", ConsoleAssets.style),
        "/console/icon.svg": ("image/svg+xml", ConsoleAssets.icon),
        "/favicon.ico": ("image/svg+xml", ConsoleAssets.icon),
    ]

    public static func isAsset(_ path: String) -> Bool { assets[path] != nil }

    static func asset(_ path: String) -> HTTPResponse {
        guard let asset = assets[path] else { return HTTPResponse(status: 404, body: "not found\n") }
        return HTTPResponse(status: 200, contentType: asset.contentType, body: asset.body, headers: securityHeaders)
    }

    /// One metric sample as the page reads it.
    struct Sample: Encodable, Equatable {
        var name: String
        var labels: [String: String]
        var value: Double
    }

    /// A RED exemplar: a kept trace, with the span that made it an exemplar.
    struct Exemplar: Encodable, Equatable {
        var traceID: String
        var service: String
        var spanName: String
        var statusCode: String
        var seconds: Double
        /// Unix seconds when the span was measured.
        var time: Double
    }

    private struct Snapshot: Encodable {
        var version: String
        var time: Double
        var state: ConsoleState
        var samples: [Sample]
        var exemplars: [Exemplar]
    }

    /// The metric families the page reads: the self-metrics (not histogram buckets) and the service
    /// graph's request counters (bounded by the edge limit). Span metrics' series stay out: their
    /// count follows the traffic's cardinality, and the page needs only their exemplars.
    static func wanted(_ name: String) -> Bool {
        if name.hasPrefix("tailgate_") { return !name.hasSuffix("_bucket") }
        return name == "traces_service_graph_request_total" || name == "traces_service_graph_request_failed_total"
    }

    /// How many recent kept traces the overview lists.
    static let exemplarLimit = 20

    static func state(_ backend: any HTTPBackend, now: Date = Date()) -> HTTPResponse {
        let (samples, exemplars) = parse(backend.metricsText(format: .openMetrics))
        let snapshot = Snapshot(
            version: HTTPRoutes.version, time: now.timeIntervalSince1970, state: backend.consoleState(), samples: samples, exemplars: exemplars)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        guard let data = try? encoder.encode(snapshot) else {
            return HTTPResponse(status: 500, body: "the console's state does not encode\n")
        }
        return HTTPResponse(status: 200, contentType: "application/json", bytes: Array(data), headers: [HTTPHeader("Cache-Control", "no-store")])
    }

    /// The samples ``wanted(_:)`` keeps and the latest exemplar of each trace, newest first, from
    /// an OpenMetrics exposition. Non-finite values are left out (JSON has no NaN).
    static func parse(_ exposition: String) -> (samples: [Sample], exemplars: [Exemplar]) {
        var samples: [Sample] = []
        var exemplars: [String: Exemplar] = [:]
        for line in exposition.split(separator: "\n", omittingEmptySubsequences: true) {
            guard let first = line.utf8.first, first != UInt8(ascii: "#") else { continue }
            let isBucket = line.hasPrefix("traces_spanmetrics_latency_bucket{")
            guard isBucket || wanted(metricName(line)) else { continue }
            guard let parsed = parseSample(line) else { continue }
            if isBucket {
                guard let exemplar = parsed.exemplar, let traceID = exemplar.labels["trace_id"] else { continue }
                let candidate = Exemplar(
                    traceID: traceID, service: parsed.labels["service"] ?? "", spanName: parsed.labels["span_name"] ?? "",
                    statusCode: parsed.labels["status_code"] ?? "", seconds: exemplar.value, time: exemplar.time)
                if let known = exemplars[traceID], known.time >= candidate.time { continue }
                exemplars[traceID] = candidate
            } else if parsed.value.isFinite {
                samples.append(Sample(name: parsed.name, labels: parsed.labels, value: parsed.value))
            }
        }
        let recent = exemplars.values.filter { $0.seconds.isFinite && $0.time.isFinite }
            .sorted { ($0.time, $0.traceID) > ($1.time, $1.traceID) }
        return (samples, Array(recent.prefix(exemplarLimit)))
    }

    private static func metricName(_ line: Substring) -> String {
        let end = line.firstIndex { $0 == "{" || $0 == " " } ?? line.endIndex
        return String(line[..<end])
    }

    struct ParsedSample {
        var name: String
        var labels: [String: String]
        var value: Double
        var exemplar: (labels: [String: String], value: Double, time: Double)?
    }

    /// One exposition line: `name{label="value",…} value [# {label="value",…} value timestamp]`.
    static func parseSample(_ line: Substring) -> ParsedSample? {
        var scanner = LineScanner(Array(line.utf8))
        let name = scanner.token()
        guard !name.isEmpty else { return nil }
        var labels: [String: String] = [:]
        if scanner.peek == UInt8(ascii: "{") {
            guard let read = scanner.labels() else { return nil }
            labels = read
        }
        scanner.skipSpaces()
        guard let value = scanner.number() else { return nil }
        var exemplar: (labels: [String: String], value: Double, time: Double)?
        scanner.skipSpaces()
        if scanner.peek == UInt8(ascii: "#") {
            scanner.advance()
            scanner.skipSpaces()
            if let exemplarLabels = scanner.labels() {
                scanner.skipSpaces()
                if let exemplarValue = scanner.number() {
                    scanner.skipSpaces()
                    exemplar = (exemplarLabels, exemplarValue, scanner.number() ?? .nan)
                }
            }
        }
        return ParsedSample(name: name, labels: labels, value: value, exemplar: exemplar)
    }

    private struct LineScanner {
        let bytes: [UInt8]
        var index = 0

        init(_ bytes: [UInt8]) { self.bytes = bytes }

        var peek: UInt8? { index < bytes.count ? bytes[index] : nil }
        mutating func advance() { index += 1 }
        mutating func skipSpaces() { while peek == UInt8(ascii: " ") { index += 1 } }

        mutating func token() -> String {
            let start = index
            while let byte = peek, byte != UInt8(ascii: "{"), byte != UInt8(ascii: " ") { index += 1 }
            return String(decoding: bytes[start..<index], as: UTF8.self)
        }

        mutating func number() -> Double? {
            let start = index
            while let byte = peek, byte != UInt8(ascii: " ") { index += 1 }
            let text = String(decoding: bytes[start..<index], as: UTF8.self)
            switch text {
            case "+Inf": return .infinity
            case "-Inf": return -.infinity
            case "NaN": return .nan
            default: return Double(text)
            }
        }

        /// `{a="x",b="y\"z"}` with the exposition's escapes (`\\`, `\"`, `\n`).
        mutating func labels() -> [String: String]? {
            guard peek == UInt8(ascii: "{") else { return nil }
            advance()
            var labels: [String: String] = [:]
            while let byte = peek, byte != UInt8(ascii: "}") {
                if byte == UInt8(ascii: ",") || byte == UInt8(ascii: " ") {
                    advance()
                    continue
                }
                let start = index
                while let byte = peek, byte != UInt8(ascii: "=") { index += 1 }
                let key = String(decoding: bytes[start..<index], as: UTF8.self)
                advance()
                guard peek == UInt8(ascii: "\"") else { return nil }
                advance()
                var value: [UInt8] = []
                while true {
                    guard let byte = peek else { return nil }
                    advance()
                    if byte == UInt8(ascii: "\"") { break }
                    if byte == UInt8(ascii: "\\"), let escaped = peek {
                        advance()
                        value.append(escaped == UInt8(ascii: "n") ? UInt8(ascii: "\n") : escaped)
                    } else {
                        value.append(byte)
                    }
                }
                labels[key] = String(decoding: value, as: UTF8.self)
            }
            guard peek == UInt8(ascii: "}") else { return nil }
            advance()
            return labels
        }
    }
}
