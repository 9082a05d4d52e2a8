import Foundation
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import OTLP
import Sinks
import Storage
import Synchronization
import Testing
import TestSupport

/// `spans` spans named `name` of trace (1, `trace`).
func request(spans: Int, trace: UInt64, name: String = "op") -> [UInt8] {
    otlpTrace(TraceID(high: 1, low: trace), spans: 1...UInt64(spans), service: nil) { _ in name }
}

@Suite(.timeLimit(.minutes(10))) struct OTLPHTTPExporterTests {
    @Test func retriesOn503And429HonouringRetryAfterThenDelivers() throws {
        let receiver = try TestReceiver(script: [(503, "0"), (429, "0"), (502, nil)])
        defer { receiver.shutdown() }
        var options = OTLPHTTPExporter.Options()
        options.flushInterval = .milliseconds(20)
        let exporter = try OTLPHTTPExporter(endpoint: try OTLPEndpoint("http://127.0.0.1:\(receiver.port)"), options: options, logger: quietLogger)
        defer { exporter.stop() }
        let stored = Atomic<Int>(0)
        for trace in 1...10 { exporter.export(request(spans: 3, trace: UInt64(trace))) { stored.add(1, ordering: .relaxed) } }
        #expect(waitUntil(.seconds(20)) { stored.load(ordering: .relaxed) == 10 })
        #expect(receiver.requests.load(ordering: .relaxed) >= 4, "three refusals, then the accepted post")
        #expect(receiver.acceptedSpans.load(ordering: .relaxed) == 30)
        #expect(receiver.gzipped.load(ordering: .relaxed) >= 1)
        #expect(exporter.counts.retries == 3)
    }

    /// `Retry-After: 1` waits a second, where the exporter's own first backoff is 0.2–0.3 s.
    @Test func retryAfterIsHonoured() throws {
        let receiver = try TestReceiver(script: [(503, "1")])
        defer { receiver.shutdown() }
        var options = OTLPHTTPExporter.Options()
        options.flushInterval = .milliseconds(20)
        let exporter = try OTLPHTTPExporter(endpoint: try OTLPEndpoint("http://127.0.0.1:\(receiver.port)"), options: options, logger: quietLogger)
        defer { exporter.stop() }
        let stored = Atomic<Int>(0)
        exporter.export(request(spans: 1, trace: 1)) { stored.add(1, ordering: .relaxed) }
        #expect(waitUntil(.seconds(20)) { stored.load(ordering: .relaxed) == 1 })
        let times = receiver.requestTimes.withLock { $0 }
        try #require(times.count == 2)
        let waited = times[1] - times[0]
        #expect(waited >= .milliseconds(950), "retried after \(waited)")
    }

    @Test func deadEndpointHoldsEverythingUntilItComesBack() throws {
        // Find a free port, then leave it closed.
        let probe = try TestReceiver()
        let port = probe.port
        probe.shutdown()
        var options = OTLPHTTPExporter.Options()
        options.flushInterval = .milliseconds(20)
        options.maxBackoff = .milliseconds(300)
        let exporter = try OTLPHTTPExporter(endpoint: try OTLPEndpoint("http://127.0.0.1:\(port)/v1/traces"), options: options, logger: quietLogger)
        defer { exporter.stop() }
        let stored = Atomic<Int>(0)
        for trace in 1...5 { exporter.export(request(spans: 2, trace: UInt64(trace))) { stored.add(1, ordering: .relaxed) } }
        // Tried and failed twice (a positive signal), and still nothing acknowledged.
        #expect(waitUntil(.seconds(20)) { exporter.counts.retries >= 2 })
        #expect(stored.load(ordering: .relaxed) == 0, "nothing is acknowledged while the receiver is down")
        let receiver = try TestReceiver(port: port)
        defer { receiver.shutdown() }
        #expect(waitUntil(.seconds(10)) { stored.load(ordering: .relaxed) == 5 })
        #expect(receiver.acceptedSpans.load(ordering: .relaxed) == 10)
    }

    /// 415 (the receiver wants another encoding) and 405 say the configuration is wrong, not the data:
    /// nothing is acknowledged-and-dropped; the sink holds, says it is failing (with the status), and
    /// delivers everything once the receiver takes it. (Before: acknowledged and dropped.)
    @Test func aMisconfiguredEndpointHoldsEverythingUntilFixed() throws {
        let receiver = try TestReceiver(script: [(415, nil), (415, nil), (405, nil)])
        defer { receiver.shutdown() }
        var options = OTLPHTTPExporter.Options()
        options.flushInterval = .milliseconds(20)
        let exporter = try OTLPHTTPExporter(endpoint: try OTLPEndpoint("http://127.0.0.1:\(receiver.port)"), options: options, logger: quietLogger)
        defer { exporter.stop() }
        let stored = Atomic<Int>(0)
        for trace in 1...5 { exporter.export(request(spans: 2, trace: UInt64(trace))) { stored.add(1, ordering: .relaxed) } }
        #expect(waitUntil(.seconds(10)) { exporter.statistics.failing?.contains("HTTP 415") ?? false }, "failing, with the status")
        #expect(stored.load(ordering: .relaxed) == 0, "nothing acknowledged while the receiver refuses the encoding")
        #expect(waitUntil(.seconds(20)) { stored.load(ordering: .relaxed) == 5 })
        #expect(receiver.acceptedSpans.load(ordering: .relaxed) == 10, "every span delivered once it is accepted")
        #expect(exporter.counts.rejectedTraces == 0)
        #expect(exporter.counts.retries == 3)
        #expect(exporter.statistics.failing == nil)
    }

    @Test func aPayloadRefusedForGoodIsCountedNotRetried() throws {
        let receiver = try TestReceiver(script: [(400, nil)])
        defer { receiver.shutdown() }
        var options = OTLPHTTPExporter.Options()
        options.flushInterval = .milliseconds(20)
        let exporter = try OTLPHTTPExporter(endpoint: try OTLPEndpoint("http://127.0.0.1:\(receiver.port)"), options: options, logger: quietLogger)
        defer { exporter.stop() }
        let stored = Atomic<Int>(0)
        exporter.export(request(spans: 1, trace: 1)) { stored.add(1, ordering: .relaxed) }
        #expect(waitUntil(.seconds(10)) { stored.load(ordering: .relaxed) == 1 })
        #expect(exporter.counts.rejectedTraces == 1)
        #expect(receiver.requests.load(ordering: .relaxed) == 1)
    }

    /// A receiver refuses one bad trace for good (400): the rest of its batch is delivered, the bad one
    /// counted — the batch is halved until the refused trace is alone.
    @Test func oneRefusedTraceDoesNotTakeItsBatchWithIt() throws {
        let receiver = try TestReceiver()
        receiver.refuseSpanNamed.withLock { $0 = "poison" }
        defer { receiver.shutdown() }
        var options = OTLPHTTPExporter.Options()
        options.flushInterval = .milliseconds(200)  // the ten traces go out in one batch
        let exporter = try OTLPHTTPExporter(endpoint: try OTLPEndpoint("http://127.0.0.1:\(receiver.port)"), options: options, logger: quietLogger)
        defer { exporter.stop() }
        let stored = Atomic<Int>(0)
        for trace in 1...10 {
            exporter.export(request(spans: 3, trace: UInt64(trace), name: trace == 7 ? "poison" : "op")) { stored.add(1, ordering: .relaxed) }
        }
        #expect(waitUntil(.seconds(20)) { stored.load(ordering: .relaxed) == 10 }, "every trace acknowledged: nine delivered, one refused")
        #expect(receiver.acceptedSpans.load(ordering: .relaxed) == 27)
        #expect(exporter.counts.rejectedTraces == 1)
    }

    /// One trace over the receiver's body limit (413) goes in halves by span until the pieces fit;
    /// a span over the limit alone is counted and let go, never retried.
    @Test func aTraceTooLargeForTheReceiverIsSplitBySpan() throws {
        let receiver = try TestReceiver()
        receiver.maximumBody.store(3000, ordering: .relaxed)
        defer { receiver.shutdown() }
        let exporter = try OTLPHTTPExporter(endpoint: try OTLPEndpoint("http://127.0.0.1:\(receiver.port)"), logger: quietLogger)
        defer { exporter.stop() }
        let stored = Atomic<Int>(0)
        // 30 spans with 250-byte names: ~9 KB, three times the limit.
        exporter.export(request(spans: 30, trace: 77, name: String(repeating: "x", count: 250))) { stored.add(1, ordering: .relaxed) }
        #expect(waitUntil(.seconds(20)) { stored.load(ordering: .relaxed) == 1 }, "acknowledged once, when every piece is in")
        #expect(receiver.acceptedSpans.load(ordering: .relaxed) == 30, "every span delivered")
        #expect(exporter.statistics.splits >= 3)
        #expect(exporter.counts.rejectedTraces == 0)
        // One span alone over the limit.
        exporter.export(request(spans: 1, trace: 78, name: String(repeating: "y", count: 4000))) { stored.add(1, ordering: .relaxed) }
        #expect(waitUntil(.seconds(20)) { stored.load(ordering: .relaxed) == 2 })
        #expect(exporter.statistics.oversizeSpans == 1)
        #expect(receiver.acceptedSpans.load(ordering: .relaxed) == 30)
    }

    /// Endpoints parse as the collector's otlphttp exporter reads them (default port 4318, or 443 for
    /// https; `/v1/traces` unless a path is given); other schemes and bare host:port are refused clearly.
    @Test func endpointsParseAndOtherSchemesAreRefusedClearly() throws {
        #expect(try OTLPEndpoint("http://tempo:4318").path == "/v1/traces")
        #expect(try OTLPEndpoint("http://tempo:4318/otlp/v1/traces").path == "/otlp/v1/traces")
        #expect(try OTLPEndpoint("http://tempo").port == 4318)
        #expect(try OTLPEndpoint("https://otlp-gateway-prod-eu-west-2.grafana.net/otlp/v1/traces").port == 443)
        #expect(try OTLPEndpoint("https://tempo").tls)
        #expect { try OTLPEndpoint("ftp://tempo:21") } throws: { "\($0)".contains("not an OTLP/HTTP scheme") }
        #expect { try OTLPEndpoint("tempo:4318") } throws: { "\($0)".contains("is not a URL") || "\($0)".contains("scheme") }
    }

    /// https with a CA given by file (a self-signed certificate made with openssl here); without it,
    /// the system's roots refuse the certificate and nothing is acknowledged.
    @Test func tlsEndpointWithAPrivateCA() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("tailgate-tls-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let cert = directory.appendingPathComponent("cert.pem").path
        let key = directory.appendingPathComponent("key.pem").path
        let openssl = Process()
        openssl.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        openssl.arguments = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert, "-days", "1",
                             "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"]
        openssl.standardOutput = FileHandle.nullDevice
        openssl.standardError = FileHandle.nullDevice
        try openssl.run()
        openssl.waitUntilExit()
        try #require(openssl.terminationStatus == 0)

        let receiver = try TestReceiver(tls: (cert, key))
        defer { receiver.shutdown() }
        var options = OTLPHTTPExporter.Options()
        options.flushInterval = .milliseconds(20)
        options.maxBackoff = .milliseconds(200)
        let untrusted = try OTLPHTTPExporter(endpoint: try OTLPEndpoint("https://localhost:\(receiver.port)"), options: options, logger: quietLogger)
        let refused = Atomic<Int>(0)
        untrusted.export(request(spans: 1, trace: 1)) { refused.add(1, ordering: .relaxed) }
        #expect(waitUntil(.seconds(20)) { untrusted.counts.retries >= 1 }, "the handshake failed and was retried")
        #expect(refused.load(ordering: .relaxed) == 0, "an unknown CA is not trusted")
        untrusted.stop(flushFirst: false)

        options.caFile = cert
        let exporter = try OTLPHTTPExporter(endpoint: try OTLPEndpoint("https://localhost:\(receiver.port)"), options: options, logger: quietLogger)
        defer { exporter.stop() }
        let stored = Atomic<Int>(0)
        exporter.export(request(spans: 4, trace: 2)) { stored.add(1, ordering: .relaxed) }
        #expect(waitUntil(.seconds(10)) { stored.load(ordering: .relaxed) == 1 })
        #expect(receiver.acceptedSpans.load(ordering: .relaxed) == 4)
        #expect { try OTLPHTTPExporter(endpoint: try OTLPEndpoint("https://x"), options: { var o = options; o.caFile = "/nonexistent.pem"; return o }(), logger: quietLogger) } throws: {
            "\($0)".contains("/nonexistent.pem")
        }
    }

    @Test func gzipRoundTrip() {
        let data = Array(String(repeating: "dogbook ", count: 1000).utf8)
        let packed = Gzip.compress(data)
        #expect(packed.count < data.count / 10)
        #expect(packed.prefix(2) == [0x1F, 0x8B])
        #expect(Gzip.decompress(packed) == data)
    }
}

/// gzip against an implementation that is not ours: Python's `gzip` module (zlib) reads what
/// `Gzip.compress` writes, and `Gzip.decompress` reads what Python writes, multi-member included.
@Suite struct GzipInteropTests {
    /// Runs `python3 -c code` with `input` on stdin; its stdout.
    private func python(_ code: String, input: [UInt8]) throws -> (status: Int32, output: [UInt8]) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", "-c", code]
        let stdin = Pipe(), stdout = Pipe()
        process.standardInput = stdin
        process.standardOutput = stdout
        try process.run()
        let writer = Thread {
            stdin.fileHandleForWriting.write(Data(input))
            try? stdin.fileHandleForWriting.close()
        }
        writer.start()
        let output = [UInt8](stdout.fileHandleForReading.readDataToEndOfFile())
        process.waitUntilExit()
        return (process.terminationStatus, output)
    }

    @Test func pythonsGzipReadsOursAndWeReadPythons() throws {
        // Span-like text, and bytes that do not compress.
        var state: UInt64 = 42
        let noise = (0..<50_000).map { _ -> UInt8 in
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return UInt8(truncatingIfNeeded: state >> 56)
        }
        let text = Array(String(repeating: #"{"service.name":"feed-service","http.route":"/api/v1/feed"} "#, count: 2_000).utf8)
        for data in [text, noise, [UInt8]()] {
            let ours = Gzip.compress(data)
            let read = try python("import gzip,sys; sys.stdout.buffer.write(gzip.decompress(sys.stdin.buffer.read()))", input: ours)
            let readBack = read.status == 0 && read.output == data
            #expect(readBack, "Python could not read our gzip of \(data.count) bytes")
            let theirs = try python("import gzip,sys; sys.stdout.buffer.write(gzip.compress(sys.stdin.buffer.read(), 9))", input: data)
            #expect(theirs.status == 0)
            let ok = Gzip.decompress(theirs.output) == data
            #expect(ok, "we could not read Python's gzip of \(data.count) bytes")
        }
        // Two gzip members back to back (what `cat a.gz b.gz` makes) are one stream (RFC 1952 2.2).
        let twoMembers = try python(
            "import gzip,sys; d=sys.stdin.buffer.read(); sys.stdout.buffer.write(gzip.compress(d[:100])+gzip.compress(d[100:]))",
            input: text)
        let concatenated = Gzip.decompress(twoMembers.output) == text
        #expect(concatenated, "two members read as one stream")
    }
}
