import Foundation
public import OTLP
public import SpanMetrics

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

/// An HTTP response.
public struct HTTPResponse: Sendable, Equatable {
    public var status: Int
    public var contentType: String
    public var body: [UInt8]

    public init(status: Int, contentType: String = "text/plain; charset=utf-8", body: String) {
        self.status = status
        self.contentType = contentType
        self.body = Array(body.utf8)
    }

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

    /// Whether answering `request` may take time (disk, zstd, rendering every series, a reload):
    /// the listener runs those on worker threads. The probes, echo and build info never wait.
    public static func mayBlock(_ request: HTTPRequest) -> Bool {
        let path = request.path.split(separator: "?", maxSplits: 1).first.map(String.init) ?? request.path
        switch path {
        case "/-/healthy", "/-/ready", "/api/echo", "/api/status/buildinfo": return false
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
