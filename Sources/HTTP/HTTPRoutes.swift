import Foundation
import Sampling
import Synchronization
public import OTLP
public import SpanMetrics
public import Storage

/// An HTTP request as the routes see it (no sockets: routes are tested directly).
public struct HTTPRequest: Sendable {
    public var method: String
    public var path: String
    public var headers: [(String, String)]
    public var body: [UInt8]

    public init(method: String, path: String, headers: [(String, String)] = [], body: [UInt8] = []) {
        self.method = method
        self.path = path
        self.headers = headers
        self.body = body
    }

    public func header(_ name: String) -> String? {
        headers.first { $0.0.lowercased() == name.lowercased() }?.1
    }
}

/// One response header beyond `Content-Type` and `Content-Length`.
public struct HTTPHeader: Sendable, Equatable {
    public var name: String
    public var value: String

    public init(_ name: String, _ value: String) {
        self.name = name
        self.value = value
    }
}

/// An HTTP response.
public struct HTTPResponse: Sendable, Equatable {
    public var status: Int
    public var contentType: String
    public var body: [UInt8]
    /// Further headers (the console's Content-Security-Policy and friends).
    public var headers: [HTTPHeader] = []

    public init(status: Int, contentType: String = "text/plain; charset=utf-8", body: String, headers: [HTTPHeader] = []) {
        self.status = status
        self.contentType = contentType
        self.body = Array(body.utf8)
        self.headers = headers
    }

    public init(status: Int, contentType: String, bytes: [UInt8], headers: [HTTPHeader] = []) {
        self.status = status
        self.contentType = contentType
        body = bytes
        self.headers = headers
    }

    public func header(_ name: String) -> String? { headers.first { $0.name.lowercased() == name.lowercased() }?.value }

    public var text: String { String(decoding: body, as: UTF8.self) }
}

/// What the HTTP listener asks of the engine.
public protocol HTTPBackend: Sendable {
    /// Every metric, in `format` (Prometheus text, or OpenMetrics with exemplars).
    func metricsText(format: MetricsFormat) -> String
    /// Ready = partitions assigned and rules loaded; a reason when not.
    func readiness() -> (ready: Bool, reason: String)
    /// Reloads the rules; nil on success, else the errors.
    func reloadRules() -> String?
    /// A stored trace as an OTLP `ExportTraceServiceRequest`; nil when unknown.
    func storedTrace(_ id: TraceID) throws -> [UInt8]?
    /// What the console shows beside the metrics: rules, samplers' tables, sinks, whether there is a store.
    func consoleState() -> ConsoleState
    /// Tempo's search over the stored traces; nil when there is no store (`--data`).
    func search(_ request: TraceSearchRequest) throws -> TraceSearchResponse?
    /// The stored blocks' search summaries (the tag lists); nil when there is no store.
    func searchSummaries() throws -> [BlockSummary]?
}

extension HTTPBackend {
    public func consoleState() -> ConsoleState { ConsoleState() }
    public func search(_ request: TraceSearchRequest) throws -> TraceSearchResponse? { nil }
    public func searchSummaries() throws -> [BlockSummary]? { nil }
}

/// The routes of the one listener (`--http`, default 0.0.0.0:3200 — Tempo's port, since the same
/// listener serves Tempo's API): `/metrics`, `/-/healthy`, `/-/ready`, `POST /-/reload`, `/api/echo`,
/// `/api/status/buildinfo`.
public struct HTTPRoutes: Sendable {
    public let backend: any HTTPBackend
    /// Bearer token that admin routes (`/-/reload`) require; nil or empty disables them (an empty
    /// token would let any `Authorization: Bearer ` through).
    public let adminToken: String?

    public init(backend: any HTTPBackend, adminToken: String?) {
        self.backend = backend
        self.adminToken = adminToken.flatMap { $0.isEmpty ? nil : $0 }
    }

    /// Compares in time independent of where the first difference is (no timing oracle for the token).
    public static func constantTimeEquals(_ a: String, _ b: String) -> Bool {
        let x = Array(a.utf8), y = Array(b.utf8)
        var difference = UInt8(truncatingIfNeeded: x.count ^ y.count)
        for i in 0..<max(x.count, y.count) {
            difference |= (i < x.count ? x[i] : 0) ^ (i < y.count ? y[i] : 0)
        }
        return difference == 0 && x.count == y.count
    }

    public static let version = "0.1.0"

    /// Tempo's trace-by-id: v1 answers a `Trace` (`{"batches":[…]}` in JSON), v2 a
    /// `TraceByIDResponse` (`{"trace":{"resourceSpans":[…]}}`); protobuf when the client accepts
    /// `application/protobuf`. Ids may be shorter than 32 hex digits (Tempo pads them with zeros).
    func traceByID(path: String, request: HTTPRequest) -> HTTPResponse {
        let v2 = path.hasPrefix("/api/v2/")
        let text = String(path.split(separator: "/").last ?? "")
        guard let id = TraceID(paddedHex: text) else {
            return HTTPResponse(status: 400, body: "invalid trace id \"\(text)\": expected up to 32 hex digits\n")
        }
        let stored: [UInt8]?
        do {
            stored = try backend.storedTrace(id)
        } catch {
            return HTTPResponse(status: 500, body: "reading trace \(id.hex): \(error)\n")
        }
        guard let stored else { return HTTPResponse(status: 404, body: "trace not found\n") }
        let accept = request.header("Accept") ?? ""
        if accept.contains("application/protobuf") || accept.contains("application/x-protobuf") {
            // tempopb.Trace has the ExportTraceServiceRequest's shape (field 1: resource spans).
            var body = stored
            if v2 {
                var writer = ProtoWriter()
                writer.writeBytesField(1, stored)
                body = writer.bytes
            }
            var response = HTTPResponse(status: 200, contentType: "application/protobuf", body: "")
            response.body = body
            return response
        }
        do {
            let json = try OTLPJSONWriter.request(stored, key: v2 ? "resourceSpans" : "batches")
            return HTTPResponse(status: 200, contentType: "application/json", body: v2 ? "{\"trace\":\(json)}" : json)
        } catch {
            return HTTPResponse(status: 500, body: "stored trace \(id.hex) does not decode: \(error)\n")
        }
    }

    /// Tempo's `GET /api/search`: `q` (TraceQL), `tags` (logfmt), `minDuration`, `maxDuration`,
    /// `limit` (default 20), `start`/`end` (unix seconds), `spss` (spans per spanset, default 3).
    func search(_ request: HTTPRequest) -> HTTPResponse {
        let parameters = Self.queryParameters(request.path)
        var search = TraceSearchRequest()
        if let q = parameters["q"], !q.trimmingCharacters(in: .whitespaces).isEmpty {
            do {
                search.query = try TraceQL.parse(q)
            } catch {
                return HTTPResponse(status: 400, body: "invalid TraceQL query: \(error)\n")
            }
        }
        if let tags = parameters["tags"] {
            guard let pairs = Self.logfmt(tags) else { return HTTPResponse(status: 400, body: "invalid tags \"\(tags)\": expected logfmt key=value pairs\n") }
            search.tags = pairs
        }
        func duration(_ name: String) -> (UInt64?, HTTPResponse?) {
            guard let text = parameters[name], !text.isEmpty else { return (nil, nil) }
            guard let parsed = GoDuration.parse(text) else { return (nil, HTTPResponse(status: 400, body: "invalid \(name) \"\(text)\": expected a duration like 100ms or 2s\n")) }
            return (UInt64(parsed.components.seconds) * 1_000_000_000 + UInt64(parsed.components.attoseconds / 1_000_000_000), nil)
        }
        func integer(_ name: String) -> (UInt64?, HTTPResponse?) {
            guard let text = parameters[name], !text.isEmpty else { return (nil, nil) }
            guard let value = UInt64(text) else { return (nil, HTTPResponse(status: 400, body: "invalid \(name) \"\(text)\": expected a whole number\n")) }
            return (value, nil)
        }
        let (minimum, badMinimum) = duration("minDuration"), (maximum, badMaximum) = duration("maxDuration")
        let (start, badStart) = integer("start"), (end, badEnd) = integer("end")
        let (limit, badLimit) = integer("limit"), (spss, badSpss) = integer("spss")
        if let bad = badMinimum ?? badMaximum ?? badStart ?? badEnd ?? badLimit ?? badSpss { return bad }
        search.minDuration = minimum
        search.maxDuration = maximum
        search.start = start
        search.end = end
        if let limit { search.limit = Int(min(max(limit, 1), 1_000)) }
        if let spss { search.spansPerSpanSet = Int(min(max(spss, 1), 100)) }
        do {
            guard let response = try backend.search(search) else {
                return HTTPResponse(status: 404, body: "search needs the embedded store: start tailgate with --data DIR\n")
            }
            return HTTPResponse(status: 200, contentType: "application/json", body: response.json)
        } catch let busy as SearchesBusy {
            return HTTPResponse(status: 429, body: "\(busy)\n")
        } catch {
            return HTTPResponse(status: 500, body: "search failed: \(error)\n")
        }
    }

    /// The intrinsics Tempo lists in the `intrinsic` scope.
    static let intrinsics = ["duration", "kind", "name", "rootName", "rootServiceName", "status", "statusMessage", "traceDuration"]

    private enum Summaries {
        case success([BlockSummary])
        case failure(HTTPResponse)
    }

    private func summaries() -> Summaries {
        do {
            guard let summaries = try backend.searchSummaries() else {
                return .failure(HTTPResponse(status: 404, body: "search needs the embedded store: start tailgate with --data DIR\n"))
            }
            return .success(summaries)
        } catch let busy as SearchesBusy {
            return .failure(HTTPResponse(status: 429, body: "\(busy)\n"))
        } catch {
            return .failure(HTTPResponse(status: 500, body: "reading the store: \(error)\n"))
        }
    }

    /// `/api/search/tags` (`{"tagNames": […]}`) and `/api/v2/search/tags` (`{"scopes": [{"name", "tags"}]}`,
    /// `scope=span|resource|intrinsic` to pick one).
    func tags(v2: Bool, request: HTTPRequest) -> HTTPResponse {
        let summaries: [BlockSummary]
        switch self.summaries() {
        case .success(let found): summaries = found
        case .failure(let response): return response
        }
        var keys: [String: Set<String>] = ["span": [], "resource": []]
        for summary in summaries {
            for (scope, tags) in summary.tags { keys[scope, default: []].formUnion(tags.keys) }
        }
        func list(_ names: [String]) -> String { "[" + names.map(JSONText.quoted).joined(separator: ",") + "]" }
        guard v2 else {
            return HTTPResponse(status: 200, contentType: "application/json", body: "{\"tagNames\":\(list(keys.values.reduce(into: Set<String>()) { $0.formUnion($1) }.sorted()))}")
        }
        let wanted = Self.queryParameters(request.path)["scope"].flatMap { ["span", "resource", "intrinsic"].contains($0) ? $0 : nil }
        var scopes: [String] = []
        for scope in ["resource", "span"] where wanted == nil || wanted == scope {
            scopes.append("{\"name\":\"\(scope)\",\"tags\":\(list(keys[scope, default: []].sorted()))}")
        }
        if wanted == nil || wanted == "intrinsic" { scopes.append("{\"name\":\"intrinsic\",\"tags\":\(list(Self.intrinsics))}") }
        return HTTPResponse(status: 200, contentType: "application/json", body: "{\"scopes\":[\(scopes.joined(separator: ","))]}")
    }

    /// `/api/search/tag/{name}/values` (`{"tagValues": ["…"]}`) and `/api/v2/search/tag/{scoped name}/values`
    /// (`{"tagValues": [{"type", "value"}]}`; `resource.x`, `span.x`, `.x` or an intrinsic).
    func tagValues(path: String) -> HTTPResponse {
        let v2 = path.hasPrefix("/api/v2/")
        let prefix = v2 ? "/api/v2/search/tag/" : "/api/search/tag/"
        let raw = String(path.dropFirst(prefix.count).dropLast("/values".count))
        let name = raw.removingPercentEncoding ?? raw
        guard !name.isEmpty else { return HTTPResponse(status: 400, body: "missing tag name\n") }
        let summaries: [BlockSummary]
        switch self.summaries() {
        case .success(let found): summaries = found
        case .failure(let response): return response
        }
        var values = Set<String>()
        var typed: String? = nil
        switch name {
        case "status": values = ["error", "ok", "unset"]; typed = "keyword"
        case "kind": values = ["server", "client", "producer", "consumer", "internal", "unspecified"]; typed = "keyword"
        case "name": for summary in summaries { values.formUnion(summary.names) }
        case "rootName": for summary in summaries { values.formUnion(summary.rootNames) }
        case "rootServiceName": for summary in summaries { values.formUnion(summary.rootServices) }
        default:
            var scopes = ["span", "resource"]
            var key = name
            if v2 {
                if name.hasPrefix("span.") { scopes = ["span"]; key = String(name.dropFirst(5)) }
                else if name.hasPrefix("resource.") { scopes = ["resource"]; key = String(name.dropFirst(9)) }
                else if name.hasPrefix(".") { key = String(name.dropFirst()) }
            }
            for summary in summaries {
                for scope in scopes { values.formUnion(summary.tags[scope]?[key] ?? []) }
            }
        }
        let sorted = values.sorted()
        guard v2 else {
            return HTTPResponse(status: 200, contentType: "application/json", body: "{\"tagValues\":[\(sorted.map(JSONText.quoted).joined(separator: ","))]}")
        }
        let items = sorted.map { value -> String in
            let type = typed ?? (Int64(value) != nil ? "int" : value == "true" || value == "false" ? "bool" : "string")
            return "{\"type\":\"\(type)\",\"value\":\(JSONText.quoted(value))}"
        }
        return HTTPResponse(status: 200, contentType: "application/json", body: "{\"tagValues\":[\(items.joined(separator: ","))]}")
    }

    /// The decoded `?a=b&c=d` of a request path (percent-decoding and `+` as space).
    static func queryParameters(_ path: String) -> [String: String] {
        guard let question = path.firstIndex(of: "?") else { return [:] }
        var result: [String: String] = [:]
        for pair in path[path.index(after: question)...].split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1)
            guard let key = parts.first.flatMap({ String($0).replacingOccurrences(of: "+", with: " ").removingPercentEncoding }) else { continue }
            let value = parts.count > 1 ? String(parts[1]).replacingOccurrences(of: "+", with: " ").removingPercentEncoding ?? "" : ""
            result[key] = value
        }
        return result
    }

    /// `key=value key2="quoted value"` pairs; nil when malformed.
    static func logfmt(_ text: String) -> [(key: String, value: String)]? {
        var pairs: [(key: String, value: String)] = []
        var characters = Array(text)[...]
        while true {
            while let first = characters.first, first == " " { characters = characters.dropFirst() }
            guard !characters.isEmpty else { return pairs }
            guard let equals = characters.firstIndex(of: "="), equals > characters.startIndex else { return nil }
            let key = String(characters[characters.startIndex..<equals])
            characters = characters[(equals + 1)...]
            var value = ""
            if characters.first == "\"" {
                characters = characters.dropFirst()
                guard let close = characters.firstIndex(of: "\"") else { return nil }
                value = String(characters[characters.startIndex..<close])
                characters = characters[(close + 1)...]
            } else {
                let stop = characters.firstIndex(of: " ") ?? characters.endIndex
                value = String(characters[characters.startIndex..<stop])
                characters = characters[stop...]
            }
            pairs.append((key, value))
        }
    }

    /// Whether answering `request` may take time (disk, zstd, rendering every series, a reload):
    /// the listener runs those on worker threads. The probes, echo and build info never wait.
    public static func mayBlock(_ request: HTTPRequest) -> Bool {
        let path = request.path.split(separator: "?", maxSplits: 1).first.map(String.init) ?? request.path
        switch path {
        case "/-/healthy", "/-/ready", "/api/echo", "/api/status/buildinfo": return false
        case _ where Console.isAsset(path): return false
        default: return true
        }
    }

    public func respond(to request: HTTPRequest) -> HTTPResponse {
        let path = request.path.split(separator: "?", maxSplits: 1).first.map(String.init) ?? request.path
        switch (request.method, path) {
        case ("GET", "/metrics"), ("HEAD", "/metrics"):
            let format = MetricsFormat(accept: request.header("Accept"))
            return HTTPResponse(status: 200, contentType: format.contentType, body: backend.metricsText(format: format))
        case ("GET", "/-/healthy"), ("HEAD", "/-/healthy"):
            return HTTPResponse(status: 200, body: "OK\n")
        case ("GET", "/-/ready"), ("HEAD", "/-/ready"):
            let (ready, reason) = backend.readiness()
            return HTTPResponse(status: ready ? 200 : 503, body: ready ? "ready\n" : "not ready: \(reason)\n")
        case ("POST", "/-/reload"), ("PUT", "/-/reload"):
            guard let adminToken else {
                return HTTPResponse(status: 403, body: "reload over HTTP is disabled; start tailgate with --admin-token (or send SIGHUP)\n")
            }
            guard let presented = request.header("Authorization"), Self.constantTimeEquals(presented, "Bearer \(adminToken)") else {
                return HTTPResponse(status: 401, body: "missing or wrong bearer token\n")
            }
            if let errors = backend.reloadRules() {
                return HTTPResponse(status: 400, body: "rule file refused; the previous rules stay in force\n\(errors)\n")
            }
            return HTTPResponse(status: 200, body: "reloaded\n")
        case ("GET", _) where path.hasPrefix("/api/traces/") || path.hasPrefix("/api/v2/traces/"):
            return traceByID(path: path, request: request)
        case ("GET", "/api/search"):
            return search(request)
        case ("GET", "/api/search/tags"), ("GET", "/api/v2/search/tags"):
            return tags(v2: path.hasPrefix("/api/v2/"), request: request)
        case ("GET", _) where (path.hasPrefix("/api/search/tag/") || path.hasPrefix("/api/v2/search/tag/")) && path.hasSuffix("/values"):
            return tagValues(path: path)
        case ("GET", _) where Console.isAsset(path), ("HEAD", _) where Console.isAsset(path):
            return Console.asset(path)
        case ("GET", "/api/console/state"):
            return Console.state(backend)
        case ("GET", "/api/echo"):
            return HTTPResponse(status: 200, body: "echo")
        case ("GET", "/api/status/buildinfo"):
            return HTTPResponse(
                status: 200, contentType: "application/json",
                body: #"{"version":"\#(Self.version)","revision":"","branch":"","buildUser":"","buildDate":"","goVersion":""}"#)
        case (_, "/metrics"), (_, "/-/healthy"), (_, "/-/ready"), (_, "/-/reload"), (_, "/api/echo"):
            return HTTPResponse(status: 405, body: "method \(request.method) not allowed on \(path)\n")
        default:
            return HTTPResponse(status: 404, body: "not found: \(path)\n")
        }
    }
}

/// Searches at most `limit` at a time: the listener's two worker threads also serve `/metrics`, trace
/// reads and reloads, which a burst of searches must not starve. One more is answered 429, as Tempo
/// answers a query it has no room for.
public final class SearchGate: Sendable {
    private let running = Mutex(0)
    public let limit: Int

    public init(limit: Int = 1) { self.limit = limit }

    public func run<T>(_ body: () throws(StorageError) -> T) throws -> T {
        let admitted = running.withLock { count -> Bool in
            guard count < limit else { return false }
            count += 1
            return true
        }
        guard admitted else { throw SearchesBusy(limit: limit) }
        defer { running.withLock { $0 -= 1 } }
        return try body()
    }
}

public struct SearchesBusy: Error, CustomStringConvertible {
    public var limit: Int
    public var description: String { "too many searches at once (\(limit) at a time); try again" }
}
