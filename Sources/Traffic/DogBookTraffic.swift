public import OTLP

/// Synthetic traffic shaped like DogBook, the dog lovers' social network: a browser request enters
/// `frontend`, goes through `api-gateway` (HTTP) to `feed-service`, `photo-service`, `user-service` and
/// `auth-service` (gRPC), which call PostgreSQL and Redis. Spans carry OpenTelemetry HTTP, RPC and
/// database semantic-convention attributes; W3C trace context links every service's spans into one trace.
///
/// Deterministic for a seed, so tests and benchmarks can reproduce a run.
public struct DogBookTraffic: Sendable {
    /// Fraction of traces that fail (HTTP 5xx at the edge, gRPC UNAVAILABLE inside).
    public var errorRate: Double
    /// Fraction of traces with a slow database call (seconds instead of milliseconds).
    public var slowRate: Double
    /// Fraction of traces whose root span never arrives (a crashed edge, a sampled-out browser span):
    /// decided at `decision_wait`, later than traces with roots. 0 draws nothing (seeds keep their traffic).
    public var rootlessRate: Double
    private var random: SplitMix64

    public init(seed: UInt64 = 1, errorRate: Double = 0.02, slowRate: Double = 0.03, rootlessRate: Double = 0) {
        self.errorRate = errorRate
        self.slowRate = slowRate
        self.rootlessRate = rootlessRate
        random = SplitMix64(seed: seed)
    }

    /// One generated trace: its id, span count, and the OTLP message carrying it.
    public struct Trace: Sendable {
        public var traceID: TraceID
        public var spanCount: Int
        public var isError: Bool
        public var isSlow: Bool
        /// Sent without its root span.
        public var isRootless = false
        /// A Kubernetes probe: the API gateway's `GET /healthz`, its root span alone.
        public var isHealthCheck = false
        fileprivate var spans: [GeneratedSpan]

        /// What a reader of the trace checks it against: each span's ids, service, name and status.
        public struct SpanSummary: Sendable, Equatable {
            public var spanID: SpanID
            public var parentSpanID: SpanID
            public var service: String
            public var name: String
            public var kind: SpanKind
            public var isError: Bool
        }

        /// The spans as generated (the order they are encoded in).
        public var spanSummaries: [SpanSummary] {
            spans.map { SpanSummary(spanID: $0.spanID, parentSpanID: $0.parentSpanID, service: $0.service.rawValue, name: $0.name, kind: $0.kind, isError: $0.status == .error) }
        }
    }

    /// Generates the next trace, starting at `startUnixNano`.
    public mutating func nextTrace(startUnixNano: UInt64) -> Trace {
        var builder = TraceBuilder(traceID: TraceID(high: random.next() | 1, low: random.next()), random: random)
        var isError = random.unit() < errorRate
        var isSlow = random.unit() < slowRate
        let pick = random.unit()
        let isHealthCheck = pick < 0.05
        switch pick {
        case ..<0.05:
            // Probes neither fail nor stall here: they are what rule files drop.
            builder.healthCheck(at: startUnixNano)
            isError = false
            isSlow = false
        case ..<0.55: builder.feed(at: startUnixNano, error: isError, slow: isSlow)
        case ..<0.75: builder.photoUpload(at: startUnixNano, error: isError, slow: isSlow)
        case ..<0.90: builder.login(at: startUnixNano, error: isError, slow: isSlow)
        default: builder.dogProfile(at: startUnixNano, error: isError, slow: isSlow)
        }
        random = builder.random
        var isRootless = false
        if rootlessRate > 0 && random.unit() < rootlessRate {
            builder.spans.removeAll { $0.parentSpanID == .zero }
            isRootless = true
        }
        return Trace(
            traceID: builder.traceID, spanCount: builder.spans.count, isError: isError, isSlow: isSlow, isRootless: isRootless,
            isHealthCheck: isHealthCheck, spans: builder.spans)
    }

    /// Encodes traces as one OTLP `ExportTraceServiceRequest` (protobuf), grouped by service as an SDK
    /// or collector batch would be.
    /// `services`: only their spans (one node agent's share of the traffic).
    public static func protobuf(_ traces: [Trace], services: [DogBookService] = DogBookService.allCases) -> [UInt8] {
        var writer = ProtoWriter()
        writer.bytes.reserveCapacity(traces.reduce(0) { $0 + $1.spanCount } * 512)
        for service in services {
            let spans = traces.flatMap { $0.spans.filter { $0.service == service } }
            guard !spans.isEmpty else { continue }
            writer.writeNested(1) { resourceSpans in
                resourceSpans.writeNested(1) { resource in
                    for (key, value) in service.resourceAttributes {
                        resource.writeNested(1) { $0.writeKeyValue(key, value) }
                    }
                }
                resourceSpans.writeNested(2) { scopeSpans in
                    scopeSpans.writeNested(1) { scope in
                        scope.writeStringField(1, "dogbook.\(service.rawValue)")
                        scope.writeStringField(2, "1.0.0")
                    }
                    for span in spans {
                        scopeSpans.writeNested(2) { span.encode(into: &$0) }
                    }
                }
                resourceSpans.writeStringField(3, "https://opentelemetry.io/schemas/1.26.0")
            }
        }
        return writer.bytes
    }

    /// Encodes traces as OTLP/JSON (hex ids, lowerCamelCase, integer enums, int64 as strings).
    public static func json(_ traces: [Trace], services: [DogBookService] = DogBookService.allCases) -> [UInt8] {
        var out = #"{"resourceSpans":["#
        var firstResource = true
        for service in services {
            let spans = traces.flatMap { $0.spans.filter { $0.service == service } }
            guard !spans.isEmpty else { continue }
            if !firstResource { out += "," }
            firstResource = false
            out += #"{"resource":{"attributes":["#
            out += service.resourceAttributes.map { jsonKeyValue($0.0, $0.1) }.joined(separator: ",")
            out += #"]},"scopeSpans":[{"scope":{"name":"dogbook.\#(service.rawValue)","version":"1.0.0"},"spans":["#
            out += spans.map { $0.json() }.joined(separator: ",")
            out += #"]}],"schemaUrl":"https://opentelemetry.io/schemas/1.26.0"}"#
        }
        out += "]}"
        return Array(out.utf8)
    }
}

/// DogBook's services.
/// The services of DogBook, each with its resource attributes.
public enum DogBookService: String, CaseIterable, Sendable {
    case frontend, apiGateway = "api-gateway", feed = "feed-service", photo = "photo-service"
    case user = "user-service", auth = "auth-service"

    var resourceAttributes: [(String, GeneratedValue)] {
        [
            ("service.name", .string(rawValue)), ("service.namespace", .string("dogbook")),
            ("service.version", .string("2.4.1")), ("deployment.environment.name", .string("production")),
            ("k8s.namespace.name", .string("dogbook")), ("k8s.pod.name", .string("\(rawValue)-5d8c7b9f4-q7x2m")),
            ("cloud.provider", .string("azure")), ("cloud.platform", .string("azure_aks")),
            ("telemetry.sdk.language", .string(self == .frontend ? "nodejs" : "go")),
            ("telemetry.sdk.name", .string("opentelemetry")),
        ]
    }
}

enum GeneratedValue: Sendable {
    case string(String), int(Int64), double(Double), bool(Bool), strings([String])
}

struct GeneratedSpan: Sendable {
    var service: DogBookService
    var traceID: TraceID
    var spanID: SpanID
    var parentSpanID: SpanID
    var name: String
    var kind: SpanKind
    var start: UInt64
    var end: UInt64
    var attributes: [(String, GeneratedValue)]
    var status: StatusCode = .unset
    var statusMessage: String = ""
    var traceState: String = ""

    func encode(into writer: inout ProtoWriter) {
        writer.writeBytesField(1, traceID.bytes)
        writer.writeBytesField(2, spanID.bytes)
        if !traceState.isEmpty { writer.writeStringField(3, traceState) }
        if parentSpanID.isValid { writer.writeBytesField(4, parentSpanID.bytes) }
        writer.writeStringField(5, name)
        writer.writeVarintField(6, UInt64(kind.rawValue))
        writer.writeFixed64Field(7, start)
        writer.writeFixed64Field(8, end)
        for (key, value) in attributes {
            writer.writeNested(9) { $0.writeKeyValue(key, value) }
        }
        if status != .unset {
            writer.writeNested(15) { statusWriter in
                if !statusMessage.isEmpty { statusWriter.writeStringField(2, statusMessage) }
                statusWriter.writeVarintField(3, UInt64(status.rawValue))
            }
        }
        // W3C sampled flag plus "is_remote known" (bit 8), and is_remote (bit 9) on server spans.
        writer.writeFixed32Field(16, 0x101 | (kind == .server || kind == .consumer ? 0x200 : 0))
    }

    func json() -> String {
        var out = #"{"traceId":"\#(traceID.hex)","spanId":"\#(spanID.hex)""#
        if parentSpanID.isValid { out += #","parentSpanId":"\#(parentSpanID.hex)""# }
        if !traceState.isEmpty { out += #","traceState":"\#(traceState)""# }
        out += #","flags":\#(0x101 | (kind == .server || kind == .consumer ? 0x200 : 0))"#
        out += #","name":\#(jsonString(name)),"kind":\#(kind.rawValue),"startTimeUnixNano":"\#(start)","endTimeUnixNano":"\#(end)""#
        out += #","attributes":["# + attributes.map { jsonKeyValue($0.0, $0.1) }.joined(separator: ",") + "]"
        if status != .unset {
            out += #","status":{"code":\#(status.rawValue)"#
            if !statusMessage.isEmpty { out += #","message":\#(jsonString(statusMessage))"# }
            out += "}"
        }
        return out + "}"
    }
}

extension ProtoWriter {
    mutating func writeKeyValue(_ key: String, _ value: GeneratedValue) {
        writeStringField(1, key)
        writeNested(2) { any in
            switch value {
            case .string(let s): any.writeStringField(1, s)
            case .bool(let b): any.writeVarintField(2, b ? 1 : 0)
            case .int(let i): any.writeVarintField(3, UInt64(bitPattern: i))
            case .double(let d): any.writeDoubleField(4, d)
            case .strings(let list):
                any.writeNested(5) { array in
                    for s in list { array.writeNested(1) { $0.writeStringField(1, s) } }
                }
            }
        }
    }
}

private func jsonString(_ s: String) -> String { JSONText.quoted(s) }

private func jsonKeyValue(_ key: String, _ value: GeneratedValue) -> String {
    let rendered: String
    switch value {
    case .string(let s): rendered = #"{"stringValue":\#(jsonString(s))}"#
    case .bool(let b): rendered = #"{"boolValue":\#(b)}"#
    case .int(let i): rendered = #"{"intValue":"\#(i)"}"#
    case .double(let d): rendered = #"{"doubleValue":\#(d)}"#
    case .strings(let list):
        rendered = #"{"arrayValue":{"values":["# + list.map { #"{"stringValue":\#(jsonString($0))}"# }.joined(separator: ",") + "]}}"
    }
    return #"{"key":\#(jsonString(key)),"value":\#(rendered)}"#
}

/// A fast, seedable generator (Vigna's SplitMix64): reproducible traffic without Foundation.
struct SplitMix64: RandomNumberGenerator, Sendable {
    private var state: UInt64
    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    mutating func unit() -> Double { Double(next() >> 11) * 0x1.0p-53 }
}

private let millisecond: UInt64 = 1_000_000

/// Builds one trace's spans, service by service, with parent links as W3C propagation produces them.
private struct TraceBuilder {
    let traceID: TraceID
    var random: SplitMix64
    var spans: [GeneratedSpan] = []

    init(traceID: TraceID, random: SplitMix64) {
        self.traceID = traceID
        self.random = random
    }

    mutating func newSpanID() -> SpanID { SpanID(rawValue: random.next() | 1) }

    mutating func jitter(_ ms: Double) -> UInt64 { UInt64(ms * (0.7 + 0.6 * random.unit()) * Double(millisecond)) }

    @discardableResult
    mutating func span(
        _ service: DogBookService, _ name: String, _ kind: SpanKind, parent: SpanID, start: UInt64, duration: UInt64,
        _ attributes: [(String, GeneratedValue)], error: String? = nil
    ) -> SpanID {
        let id = newSpanID()
        var span = GeneratedSpan(
            service: service, traceID: traceID, spanID: id, parentSpanID: parent, name: name, kind: kind, start: start,
            end: start + duration, attributes: attributes)
        if let error {
            span.status = .error
            span.statusMessage = error
        }
        spans.append(span)
        return id
    }

    /// An HTTP call from `client` to `server` (CLIENT span + SERVER span) and whatever `body` does inside.
    mutating func http(
        from client: DogBookService, clientParent: SpanID, to server: DogBookService, method: String, route: String,
        start: UInt64, duration: UInt64, status: Int, body: (inout TraceBuilder, SpanID, UInt64) -> Void = { _, _, _ in }
    ) {
        let failed = status >= 500
        let clientID = span(
            client, method, .client, parent: clientParent, start: start, duration: duration,
            [("http.request.method", .string(method)), ("url.full", .string("http://\(server.rawValue):8080\(route)")),
             ("server.address", .string(server.rawValue)), ("server.port", .int(8080)),
             ("http.response.status_code", .int(Int64(status))), ("network.protocol.version", .string("1.1"))],
            error: failed ? "HTTP \(status)" : nil)
        let serverStart = start + millisecond / 2
        let serverID = span(
            server, "\(method) \(route)", .server, parent: clientID, start: serverStart, duration: duration - millisecond,
            [("http.request.method", .string(method)), ("http.route", .string(route)), ("url.path", .string(route)),
             ("url.scheme", .string("http")), ("http.response.status_code", .int(Int64(status))),
             ("server.address", .string(server.rawValue)), ("server.port", .int(8080)),
             ("client.address", .string("10.244.1.\(random.next() % 200 + 2)")),
             ("user_agent.original", .string("DogBook/7.3 (iOS 18.1)"))],
            error: failed ? "HTTP \(status)" : nil)
        body(&self, serverID, serverStart)
    }

    /// A gRPC call (CLIENT + SERVER spans).
    mutating func grpc(
        from client: DogBookService, clientParent: SpanID, to server: DogBookService, service: String, method: String,
        start: UInt64, duration: UInt64, code: Int, body: (inout TraceBuilder, SpanID, UInt64) -> Void = { _, _, _ in }
    ) {
        let failed = code != 0
        let attributes: [(String, GeneratedValue)] = [
            ("rpc.system", .string("grpc")), ("rpc.service", .string(service)), ("rpc.method", .string(method)),
            ("rpc.grpc.status_code", .int(Int64(code))), ("server.address", .string(server.rawValue)),
            ("server.port", .int(50051)), ("network.transport", .string("tcp")),
        ]
        let message = failed ? "\(code) \(code == 14 ? "UNAVAILABLE" : "DEADLINE_EXCEEDED")" : nil
        let clientID = span(
            client, "\(service)/\(method)", .client, parent: clientParent, start: start, duration: duration,
            attributes + [("peer.service", .string(server.rawValue))], error: message)
        let serverStart = start + millisecond / 4
        let serverID = span(
            server, "\(service)/\(method)", .server, parent: clientID, start: serverStart, duration: duration - millisecond / 2,
            attributes + [("client.address", .string("10.244.2.\(random.next() % 200 + 2)"))], error: message)
        body(&self, serverID, serverStart)
    }

    mutating func postgres(_ service: DogBookService, parent: SpanID, start: UInt64, table: String, operation: String = "SELECT", slow: Bool = false) {
        let duration = slow ? jitter(2_500) : jitter(4)
        span(
            service, "\(operation) dogbook.\(table)", .client, parent: parent, start: start, duration: duration,
            [("db.system", .string("postgresql")), ("db.namespace", .string("dogbook")),
             ("db.operation.name", .string(operation)), ("db.collection.name", .string(table)),
             ("db.query.text", .string("\(operation) * FROM \(table) WHERE id = $1")),
             ("server.address", .string("postgres.dogbook.svc")), ("server.port", .int(5432)),
             ("network.peer.address", .string("10.0.4.8"))])
    }

    mutating func redis(_ service: DogBookService, parent: SpanID, start: UInt64, command: String, key: String) {
        span(
            service, command, .client, parent: parent, start: start, duration: jitter(0.6),
            [("db.system", .string("redis")), ("db.operation.name", .string(command)),
             ("db.query.text", .string("\(command) \(key)")), ("server.address", .string("redis.dogbook.svc")),
             ("server.port", .int(6379)), ("db.namespace", .string("0"))])
    }

    mutating func root(_ name: String, method: String, route: String, start: UInt64, duration: UInt64, status: Int) -> SpanID {
        span(
            .frontend, name, .server, parent: .zero, start: start, duration: duration,
            [("http.request.method", .string(method)), ("http.route", .string(route)), ("url.path", .string(route)),
             ("url.scheme", .string("https")), ("http.response.status_code", .int(Int64(status))),
             ("server.address", .string("dogbook.example")), ("server.port", .int(443)),
             ("client.address", .string("203.0.113.\(random.next() % 250 + 1)")),
             ("user_agent.original", .string("Mozilla/5.0 DogBook/7.3")), ("enduser.id", .string("dog-lover-\(random.next() % 100_000)"))],
            error: status >= 500 ? "HTTP \(status)" : nil)
    }

    mutating func authCheck(parent: SpanID, start: UInt64) {
        grpc(from: .apiGateway, clientParent: parent, to: .auth, service: "dogbook.Auth", method: "Verify", start: start, duration: jitter(3), code: 0) { b, server, at in
            b.redis(.auth, parent: server, start: at + millisecond / 4, command: "GET", key: "session:\(b.random.next() % 10_000)")
        }
    }

    mutating func healthCheck(at t: UInt64) {
        span(
            .apiGateway, "GET /healthz", .server, parent: .zero, start: t, duration: jitter(0.3),
            [("http.request.method", .string("GET")), ("http.route", .string("/healthz")), ("url.path", .string("/healthz")),
             ("http.response.status_code", .int(200)), ("user_agent.original", .string("kube-probe/1.30"))])
    }

    mutating func feed(at t: UInt64, error: Bool, slow: Bool) {
        let total = slow ? jitter(2_800) : jitter(140)
        let root = root("GET /feed", method: "GET", route: "/feed", start: t, duration: total + 4 * millisecond, status: error ? 502 : 200)
        http(from: .frontend, clientParent: root, to: .apiGateway, method: "GET", route: "/api/v1/feed", start: t + millisecond, duration: total + 2 * millisecond, status: error ? 502 : 200) { b, gateway, at in
            b.authCheck(parent: gateway, start: at + millisecond / 2)
            b.grpc(from: .apiGateway, clientParent: gateway, to: .feed, service: "dogbook.Feed", method: "GetFeed", start: at + 5 * millisecond, duration: total - 6 * millisecond, code: error ? 14 : 0) { b, feed, at in
                b.redis(.feed, parent: feed, start: at + millisecond, command: "MGET", key: "feed:\(b.random.next() % 10_000)")
                b.postgres(.feed, parent: feed, start: at + 2 * millisecond, table: "posts", slow: slow)
                let after = at + (slow ? 2_600 : 8) * millisecond
                b.grpc(from: .feed, clientParent: feed, to: .user, service: "dogbook.User", method: "GetProfiles", start: after, duration: b.jitter(20), code: 0) { b, user, at in
                    b.postgres(.user, parent: user, start: at + millisecond, table: "users")
                }
                b.grpc(from: .feed, clientParent: feed, to: .photo, service: "dogbook.Photo", method: "GetThumbnails", start: after + millisecond, duration: b.jitter(30), code: error ? 14 : 0) { b, photo, at in
                    b.redis(.photo, parent: photo, start: at + millisecond, command: "MGET", key: "thumb:\(b.random.next() % 10_000)")
                    b.postgres(.photo, parent: photo, start: at + 2 * millisecond, table: "photos")
                }
            }
        }
    }

    mutating func photoUpload(at t: UInt64, error: Bool, slow: Bool) {
        let total = slow ? jitter(3_500) : jitter(400)
        let root = root("POST /photos", method: "POST", route: "/photos", start: t, duration: total + 4 * millisecond, status: error ? 503 : 201)
        http(from: .frontend, clientParent: root, to: .apiGateway, method: "POST", route: "/api/v1/photos", start: t + millisecond, duration: total + 2 * millisecond, status: error ? 503 : 201) { b, gateway, at in
            b.authCheck(parent: gateway, start: at + millisecond / 2)
            b.grpc(from: .apiGateway, clientParent: gateway, to: .photo, service: "dogbook.Photo", method: "Upload", start: at + 5 * millisecond, duration: total - 6 * millisecond, code: error ? 4 : 0) { b, photo, at in
                b.postgres(.photo, parent: photo, start: at + millisecond, table: "photos", operation: "INSERT", slow: slow)
                b.redis(.photo, parent: photo, start: at + 6 * millisecond, command: "DEL", key: "feed:\(b.random.next() % 10_000)")
                b.span(.photo, "thumbnails publish", .producer, parent: photo, start: at + 8 * millisecond, duration: b.jitter(2),
                       [("messaging.system", .string("kafka")), ("messaging.destination.name", .string("thumbnails")),
                        ("messaging.operation.type", .string("publish"))])
            }
        }
    }

    mutating func login(at t: UInt64, error: Bool, slow: Bool) {
        let total = slow ? jitter(2_200) : jitter(60)
        let root = root("POST /login", method: "POST", route: "/login", start: t, duration: total + 4 * millisecond, status: error ? 500 : 200)
        http(from: .frontend, clientParent: root, to: .apiGateway, method: "POST", route: "/api/v1/login", start: t + millisecond, duration: total + 2 * millisecond, status: error ? 500 : 200) { b, gateway, at in
            b.grpc(from: .apiGateway, clientParent: gateway, to: .auth, service: "dogbook.Auth", method: "Login", start: at + millisecond, duration: total - 2 * millisecond, code: error ? 14 : 0) { b, auth, at in
                b.postgres(.auth, parent: auth, start: at + millisecond, table: "credentials", slow: slow)
                b.redis(.auth, parent: auth, start: at + 5 * millisecond, command: "SET", key: "session:\(b.random.next() % 10_000)")
            }
        }
    }

    mutating func dogProfile(at t: UInt64, error: Bool, slow: Bool) {
        let total = slow ? jitter(2_000) : jitter(50)
        let root = root("GET /dogs/{id}", method: "GET", route: "/dogs/{id}", start: t, duration: total + 4 * millisecond, status: error ? 500 : 200)
        http(from: .frontend, clientParent: root, to: .apiGateway, method: "GET", route: "/api/v1/dogs/{id}", start: t + millisecond, duration: total + 2 * millisecond, status: error ? 500 : 200) { b, gateway, at in
            b.authCheck(parent: gateway, start: at + millisecond / 2)
            b.grpc(from: .apiGateway, clientParent: gateway, to: .user, service: "dogbook.User", method: "GetDog", start: at + 5 * millisecond, duration: total - 6 * millisecond, code: error ? 4 : 0) { b, user, at in
                b.redis(.user, parent: user, start: at + millisecond, command: "GET", key: "dog:\(b.random.next() % 10_000)")
                b.postgres(.user, parent: user, start: at + 2 * millisecond, table: "dogs", slow: slow)
            }
        }
    }
}
