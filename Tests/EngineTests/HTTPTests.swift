import HTTP
import Ingest
import Route
import Sampling
import Sinks
import Engine
import OTLP
import SpanMetrics
import Foundation
import Storage
import Synchronization
import Testing
import TestSupport

final class FakeBackend: HTTPBackend {
    let reloads = Atomic<Int>(0)
    let ready: Bool
    let reloadError: String?
    init(ready: Bool = true, reloadError: String? = nil) {
        self.ready = ready
        self.reloadError = reloadError
    }
    func metricsText(format: MetricsFormat) -> String {
        "# TYPE tailgate_up gauge\ntailgate_up 1\n" + (format == .openMetrics ? "# EOF\n" : "")
    }
    func readiness() -> (ready: Bool, reason: String) { (ready, ready ? "" : "no partitions assigned yet") }
    func reloadRules() -> String? {
        reloads.add(1, ordering: .relaxed)
        return reloadError
    }
    func storedTrace(_ id: TraceID) throws -> [UInt8]? { nil }
}

/// Routes without sockets: exact status, type and text.
@Suite struct HTTPRoutesTests {
    @Test func metricsHealthEchoBuildinfo() {
        let routes = HTTPRoutes(backend: FakeBackend(), adminToken: nil)
        let metrics = routes.respond(to: HTTPRequest(method: "GET", path: "/metrics"))
        #expect(metrics.status == 200)
        #expect(metrics.contentType == "text/plain; version=0.0.4; charset=utf-8")
        #expect(metrics.text == "# TYPE tailgate_up gauge\ntailgate_up 1\n")
        // OpenMetrics when the scraper lists it (Prometheus does with exemplar storage on); not when refused with q=0.
        let openMetrics = routes.respond(to: HTTPRequest(
            method: "GET", path: "/metrics",
            headers: [("Accept", "application/openmetrics-text;version=1.0.0;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1")]))
        #expect(openMetrics.contentType == "application/openmetrics-text; version=1.0.0; charset=utf-8")
        #expect(openMetrics.text.hasSuffix("# EOF\n"))
        let refused = routes.respond(to: HTTPRequest(method: "GET", path: "/metrics", headers: [("Accept", "application/openmetrics-text; q=0, text/plain")]))
        #expect(refused.contentType == "text/plain; version=0.0.4; charset=utf-8")
        #expect(routes.respond(to: HTTPRequest(method: "GET", path: "/-/healthy")).text == "OK\n")
        #expect(routes.respond(to: HTTPRequest(method: "GET", path: "/api/echo")).text == "echo")
        #expect(routes.respond(to: HTTPRequest(method: "GET", path: "/api/status/buildinfo")).text.contains("\"version\":\"0.1.0\""))
        #expect(routes.respond(to: HTTPRequest(method: "GET", path: "/nope")).status == 404)
        #expect(routes.respond(to: HTTPRequest(method: "DELETE", path: "/metrics")).status == 405)
    }

    @Test func readiness() {
        #expect(HTTPRoutes(backend: FakeBackend(ready: true), adminToken: nil).respond(to: HTTPRequest(method: "GET", path: "/-/ready")).status == 200)
        let notReady = HTTPRoutes(backend: FakeBackend(ready: false), adminToken: nil).respond(to: HTTPRequest(method: "GET", path: "/-/ready"))
        #expect(notReady.status == 503)
        #expect(notReady.text == "not ready: no partitions assigned yet\n")
    }

    @Test func reloadIsOffWithoutATokenAndNeedsTheRightOne() {
        let backend = FakeBackend()
        #expect(HTTPRoutes(backend: backend, adminToken: nil).respond(to: HTTPRequest(method: "POST", path: "/-/reload")).status == 403)
        let routes = HTTPRoutes(backend: backend, adminToken: "s3cret")
        #expect(routes.respond(to: HTTPRequest(method: "POST", path: "/-/reload", headers: [("Authorization", "Bearer nope")])).status == 401)
        #expect(backend.reloads.load(ordering: .relaxed) == 0)
        let ok = routes.respond(to: HTTPRequest(method: "POST", path: "/-/reload", headers: [("authorization", "Bearer s3cret")]))
        #expect(ok.status == 200 && ok.text == "reloaded\n")
        #expect(backend.reloads.load(ordering: .relaxed) == 1)
        let refused = HTTPRoutes(backend: FakeBackend(reloadError: "rules.yaml:3:9: bad"), adminToken: "t")
            .respond(to: HTTPRequest(method: "POST", path: "/-/reload", headers: [("Authorization", "Bearer t")]))
        #expect(refused.status == 400)
        #expect(refused.text.contains("rules.yaml:3:9: bad"))
    }

    /// An empty token is no token: `Authorization: Bearer ` must not reload.
    @Test func anEmptyAdminTokenTurnsReloadOff() {
        let backend = FakeBackend()
        let routes = HTTPRoutes(backend: backend, adminToken: "")
        #expect(routes.respond(to: HTTPRequest(method: "POST", path: "/-/reload", headers: [("Authorization", "Bearer ")])).status == 403)
        #expect(routes.respond(to: HTTPRequest(method: "POST", path: "/-/reload")).status == 403)
        #expect(backend.reloads.load(ordering: .relaxed) == 0)
        #expect(HTTPRoutes.constantTimeEquals("Bearer abc", "Bearer abc"))
        #expect(!HTTPRoutes.constantTimeEquals("Bearer abc", "Bearer abd"))
        #expect(!HTTPRoutes.constantTimeEquals("Bearer abc", "Bearer ab"))
        #expect(!HTTPRoutes.constantTimeEquals("", "Bearer "))
    }
}

/// The listener over a real socket (keep-alive off, one request).
@Suite struct HTTPServerTests {
    @Test func servesOverTCP() throws {
        let server = try HTTPServer(address: "127.0.0.1:0", routes: HTTPRoutes(backend: FakeBackend(), adminToken: nil), logger: quietLogger)
        defer { server.shutdown() }
        let port = UInt16(server.boundAddress.split(separator: ":").last!)!
        let response = try rawHTTP(port: port, "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        #expect(response.hasPrefix("HTTP/1.1 200 OK\r\n"))
        #expect(response.contains("Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"))
        #expect(response.hasSuffix("\r\n\r\n# TYPE tailgate_up gauge\ntailgate_up 1\n"))
        let big = "POST /-/reload HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 2000000\r\n\r\n" + String(repeating: "x", count: 2_000_000)
        #expect(try rawHTTP(port: port, big).hasPrefix("HTTP/1.1 413"))
    }
}

/// A backend whose trace read blocks until released, like a large trace on a slow disk.
final class SlowTraceBackend: HTTPBackend, Sendable {
    let entered = DispatchSemaphore(value: 0)
    let release = DispatchSemaphore(value: 0)
    func metricsText(format: MetricsFormat) -> String { "" }
    func readiness() -> (ready: Bool, reason: String) { (true, "") }
    func reloadRules() -> String? { nil }
    func storedTrace(_ id: TraceID) throws -> [UInt8]? {
        entered.signal()
        _ = release.wait(timeout: .now() + 30)
        return nil
    }
}

/// A backend whose search blocks until released (through the same gate as the engine's), like a
/// broad search over a large store; its metrics answer at once.
final class SlowSearchBackend: HTTPBackend, Sendable {
    let entered = DispatchSemaphore(value: 0)
    let release = DispatchSemaphore(value: 0)
    let gate = SearchGate(limit: 1)
    func metricsText(format: MetricsFormat) -> String { "tailgate_up 1\n" }
    func readiness() -> (ready: Bool, reason: String) { (true, "") }
    func reloadRules() -> String? { nil }
    func storedTrace(_ id: TraceID) throws -> [UInt8]? { nil }
    func search(_ request: TraceSearchRequest) throws -> TraceSearchResponse? {
        try gate.run { () throws(StorageError) in
            entered.signal()
            _ = release.wait(timeout: .now() + 30)
            return TraceSearchResponse()
        }
    }
}

/// A search in progress leaves the probes, `/metrics` and trace reads answering, and a second search
/// is told to come back (429) instead of taking the last worker thread.
@Suite struct SearchLoadTests {
    @Test func aSearchNeverBlocksMetricsOrProbes() throws {
        let backend = SlowSearchBackend()
        let server = try HTTPServer(address: "127.0.0.1:0", routes: HTTPRoutes(backend: backend, adminToken: nil), logger: quietLogger)
        defer { server.shutdown() }
        let port = UInt16(server.boundAddress.split(separator: ":").last!)!
        let answer = Mutex("")
        Thread {
            let text = (try? rawHTTP(port: port, "GET /api/search?q=%7B%7D HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")) ?? ""
            answer.withLock { $0 = text }
        }.start()
        #expect(backend.entered.wait(timeout: .now() + 10) == .success, "the search started")
        let metrics = try rawHTTP(port: port, "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        #expect(metrics.hasPrefix("HTTP/1.1 200") && metrics.hasSuffix("tailgate_up 1\n"))
        #expect(try rawHTTP(port: port, "GET /-/ready HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").hasPrefix("HTTP/1.1 200"))
        let second = try rawHTTP(port: port, "GET /api/search?q=%7B%7D HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        #expect(second.hasPrefix("HTTP/1.1 429"), "\(second)")
        #expect(answer.withLock { $0 }.isEmpty, "the first search is still running")
        backend.release.signal()
        #expect(waitUntil(.seconds(10)) { answer.withLock { $0 }.hasPrefix("HTTP/1.1 200") })
    }
}

/// Disk work runs off the event loop: the probes answer while a trace read is stuck, and the answers
/// on one keep-alive connection keep their request order.
@Suite struct HTTPWorkerTests {
    @Test func probesAnswerWhileATraceIsRead() throws {
        let backend = SlowTraceBackend()
        let server = try HTTPServer(address: "127.0.0.1:0", routes: HTTPRoutes(backend: backend, adminToken: nil), logger: quietLogger)
        defer { server.shutdown() }
        let port = UInt16(server.boundAddress.split(separator: ":").last!)!
        let traceAnswer = Mutex("")
        let reader = Thread {
            let text = (try? rawHTTP(port: port, "GET /api/traces/0af7651916cd43dd8448eb211c80319c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")) ?? ""
            traceAnswer.withLock { $0 = text }
        }
        reader.start()
        #expect(backend.entered.wait(timeout: .now() + 10) == .success, "the trace read started")
        // Before the fix the event loop was inside storedTrace: this waited 10 s and got nothing.
        let healthy = try rawHTTP(port: port, "GET /-/healthy HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        #expect(healthy.hasPrefix("HTTP/1.1 200 OK\r\n") && healthy.hasSuffix("OK\n"))
        let ready = try rawHTTP(port: port, "GET /-/ready HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        #expect(ready.hasPrefix("HTTP/1.1 200 OK\r\n"))
        #expect(traceAnswer.withLock { $0 }.isEmpty, "the trace read is still waiting")
        backend.release.signal()
        #expect(waitUntil(.seconds(10)) { !traceAnswer.withLock { $0 }.isEmpty }, "the trace answer came")
        #expect(traceAnswer.withLock { $0 }.hasPrefix("HTTP/1.1 404"))
    }

    @Test func pipelinedAnswersKeepTheirOrder() throws {
        let backend = SlowTraceBackend()
        let server = try HTTPServer(address: "127.0.0.1:0", routes: HTTPRoutes(backend: backend, adminToken: nil), logger: quietLogger)
        defer { server.shutdown() }
        let port = UInt16(server.boundAddress.split(separator: ":").last!)!
        let released = Thread {
            _ = backend.entered.wait(timeout: .now() + 10)
            backend.release.signal()
        }
        released.start()
        let text = try rawHTTP(
            port: port,
            "GET /api/traces/01 HTTP/1.1\r\nHost: x\r\n\r\nGET /api/echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        let notFound = try #require(text.range(of: "HTTP/1.1 404"))
        let echo = try #require(text.range(of: "HTTP/1.1 200"))
        #expect(notFound.lowerBound < echo.lowerBound, "the slow answer comes first: \(text)")
        #expect(text.hasSuffix("echo"))
    }
}

/// The listener's limits, each shown to bite: oversized headers, too many fields, idle and surplus
/// connections.
@Suite struct HTTPLimitsTests {
    func server(_ limits: HTTPServer.Limits = HTTPServer.Limits()) throws -> (HTTPServer, UInt16) {
        let server = try HTTPServer(
            address: "127.0.0.1:0", routes: HTTPRoutes(backend: FakeBackend(), adminToken: nil), limits: limits, logger: quietLogger)
        return (server, UInt16(server.boundAddress.split(separator: ":").last!)!)
    }

    @Test func oversizedHeadersGet431AndTheListenerServesOn() throws {
        let (server, port) = try server()
        defer { server.shutdown() }
        let longField = "GET /metrics HTTP/1.1\r\nHost: x\r\nCookie: \(String(repeating: "a", count: 9000))\r\n\r\n"
        let field = try rawHTTP(port: port, longField)
        #expect(field.hasPrefix("HTTP/1.1 431 Request Header Fields Too Large\r\n"), "\(field.prefix(80))")
        #expect(field.contains("over the limits"))
        let manyFields = "GET /metrics HTTP/1.1\r\nHost: x\r\n" + (0..<150).map { "X-F\($0): v\r\n" }.joined() + "\r\n"
        #expect(try rawHTTP(port: port, manyFields).hasPrefix("HTTP/1.1 431"))
        let allHeaders = "GET /metrics HTTP/1.1\r\nHost: x\r\n" + (0..<6).map { "X-F\($0): \(String(repeating: "b", count: 6000))\r\n" }.joined() + "\r\n"
        #expect(try rawHTTP(port: port, allHeaders).hasPrefix("HTTP/1.1 431"))
        let longURL = "GET /api/traces/\(String(repeating: "0", count: 9000)) HTTP/1.1\r\nHost: x\r\n\r\n"
        #expect(try rawHTTP(port: port, longURL).hasPrefix("HTTP/1.1 431"))
        #expect(try rawHTTP(port: port, "NOT HTTP AT ALL\r\n\r\n").hasPrefix("HTTP/1.1 400"))
        // Within the limits (a 6 KiB header, 90 fields) all is well.
        let fine = "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\nCookie: \(String(repeating: "c", count: 6000))\r\n"
            + (0..<90).map { "X-F\($0): v\r\n" }.joined() + "\r\n"
        #expect(try rawHTTP(port: port, fine).hasPrefix("HTTP/1.1 200 OK\r\n"))
    }

    @Test func idleConnectionsAreClosed() throws {
        var limits = HTTPServer.Limits()
        limits.idleTimeout = .milliseconds(200)
        let (server, port) = try server(limits)
        defer { server.shutdown() }
        let socket = try TestSocket(port: port)
        // Nothing sent: the server closes it (recv sees the end, not our 10 s receive timeout).
        #expect(socket.readUntilClosed() == .closed)
    }

    /// Past the maximum, a new connection takes the place of the one idle longest; when every other
    /// has a request in progress, the new one is closed at once.
    @Test func pastTheMaximumTheConnectionIdleLongestMakesRoom() throws {
        var limits = HTTPServer.Limits()
        limits.maximumConnections = 2
        let (server, port) = try server(limits)
        defer { server.shutdown() }
        let first = try TestSocket(port: port)
        let second = try TestSocket(port: port)
        // Each answers a request, the second before the first: the second has been idle longer. (A
        // connect returns before the server accepted; an answer proves it did, and orders the two.)
        #expect(second.request("GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n").hasPrefix("HTTP/1.1 200"))
        #expect(first.request("GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n").hasPrefix("HTTP/1.1 200"))
        let third = try TestSocket(port: port)
        #expect(second.readUntilClosed() == .closed, "the connection idle longest made room")
        #expect(third.request("GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n").hasPrefix("HTTP/1.1 200"))
        #expect(first.request("GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n").hasPrefix("HTTP/1.1 200"))
        #expect(server.connectionsEvicted == 1)
    }

    @Test func aNewConnectionIsClosedWhenEveryOtherIsBusy() throws {
        var limits = HTTPServer.Limits()
        limits.maximumConnections = 1
        let backend = SlowTraceBackend()
        let server = try HTTPServer(address: "127.0.0.1:0", routes: HTTPRoutes(backend: backend, adminToken: nil), limits: limits, logger: quietLogger)
        defer { server.shutdown() }
        let port = UInt16(server.boundAddress.split(separator: ":").last!)!
        let reading = try TestSocket(port: port)
        reading.send("GET /api/traces/0af7651916cd43dd8448eb211c80319c HTTP/1.1\r\nHost: x\r\n\r\n")
        #expect(backend.entered.wait(timeout: .now() + 10) == .success, "the trace read started")
        let newcomer = try TestSocket(port: port)
        #expect(newcomer.readUntilClosed() == .closed, "no room: the only connection is busy")
        backend.release.signal()
        #expect(reading.readUntilClosed() == .data, "the busy one was left to answer")
        #expect(server.connectionsEvicted == 0)
    }

    /// Issue 26's flood: 2 000 connections that send part of a request line and wait. The probes and
    /// the scrape still answer within a second, and the flood holds at most the maximum.
    @Test func probesAndScrapesAnswerThroughAFloodOfHeldConnections() throws {
        let (server, port) = try server()
        defer { server.shutdown() }
        var flood: [TestSocket] = []
        for _ in 0..<2_000 {
            let socket = try TestSocket(port: port)
            socket.send("GET /metr")
            flood.append(socket)
        }
        for request in ["GET /-/ready HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                        "GET /-/healthy HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"] {
            let started = ContinuousClock.now
            let answer = try rawHTTP(port: port, request)
            let took = ContinuousClock.now - started
            #expect(answer.hasPrefix("HTTP/1.1 200 OK\r\n"), "\(request.prefix(14)): \(answer.prefix(40))")
            #expect(took < .seconds(1), "\(request.prefix(14)) answered in \(took)")
        }
        let held = { flood.filter { $0.isOpenAtPeer }.count }
        #expect(waitUntil(.seconds(10)) { held() <= 512 }, "the flood holds at most the maximum (\(held()) open)")
        #expect(server.connectionsEvicted >= 2_000 - 512)
    }
}

/// A client socket held open across requests.
final class TestSocket {
    let fd: Int32
    init(port: UInt16) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw POSIXError(.EIO) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else { throw POSIXError(.ECONNREFUSED) }
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    enum End: Equatable { case closed, timedOut, data }

    /// Reads until the peer closes (`.closed`), data arrives (`.data`) or 10 s pass (`.timedOut`).
    func readUntilClosed() -> End {
        var buffer = [UInt8](repeating: 0, count: 4096)
        let n = recv(fd, &buffer, buffer.count, 0)
        if n == 0 || (n < 0 && errno == ECONNRESET) { return .closed }
        return n > 0 ? .data : .timedOut
    }

    /// Sends one request and reads one response (up to its headers and a small body).
    func request(_ text: String) -> String {
        send(text)
        var buffer = [UInt8](repeating: 0, count: 65536)
        let n = recv(fd, &buffer, buffer.count, 0)
        return n > 0 ? String(decoding: buffer[0..<n], as: UTF8.self) : ""
    }

    /// Sends without reading (part of a request, say).
    func send(_ text: String) {
        let bytes = Array(text.utf8)
        _ = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    }

    /// Whether the server still has it open (a non-blocking read finds no end of stream).
    var isOpenAtPeer: Bool {
        var byte: UInt8 = 0
        let n = recv(fd, &byte, 1, Int32(MSG_DONTWAIT | MSG_PEEK))
        if n == 0 { return false }
        return n > 0 || errno == EAGAIN || errno == EWOULDBLOCK
    }

    private var isOpen = true
    func close() {
        if isOpen { Glibc.close(fd) }
        isOpen = false
    }
    deinit { close() }
}

/// Sends `request` to 127.0.0.1:`port` and reads until the server closes.
func rawHTTP(port: UInt16, _ request: String) throws -> String {
    let socket = try TestSocket(port: port)
    let fd = socket.fd
    let bytes = Array(request.utf8)
    var sent = 0
    while sent < bytes.count {
        let n = bytes[sent...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        if n <= 0 { break }  // the server may answer 413 and close before reading everything
        sent += n
    }
    var response = [UInt8]()
    var buffer = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = recv(fd, &buffer, buffer.count, 0)
        if n <= 0 { break }
        response += buffer[0..<n]
    }
    return String(decoding: response, as: UTF8.self)
}

/// `--otlp-header` flags replace `TAILGATE_OTLP_HEADERS` entries of the same name (case-insensitive):
/// `Authorization` goes out once.
@Suite struct OTLPHeaderMergeTests {
    @Test func flagsWinPerHeaderName() throws {
        let merged = try EngineConfiguration.otlpHeaders(
            environment: "Authorization=Basic env,X-Scope-OrgID=team-a", commandLine: ["authorization=Bearer flag", "X-Extra=1"])
        #expect(merged.map { "\($0.0)=\($0.1)" } == ["X-Scope-OrgID=team-a", "authorization=Bearer flag", "X-Extra=1"])
        #expect(try EngineConfiguration.otlpHeaders(environment: nil, commandLine: []).isEmpty)
        #expect(throws: ConfigurationError.self) { try EngineConfiguration.otlpHeaders(environment: "=x", commandLine: []) }
    }
}
