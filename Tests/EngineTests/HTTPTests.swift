import Engine
import OTLP
import SpanMetrics
import Foundation
import Synchronization
import Testing

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

/// Sends `request` to 127.0.0.1:`port` and reads until the server closes.
func rawHTTP(port: UInt16, _ request: String) throws -> String {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw POSIXError(.EIO) }
    defer { close(fd) }
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
