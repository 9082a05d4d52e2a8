public import Storage
import Foundation
public import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import Synchronization

/// Where and how to send: `http[s]://host[:port][/path]` (the path defaults to `/v1/traces`, the
/// port to 4318 for http and 443 for https).
public struct OTLPEndpoint: Sendable, Equatable {
    public var host: String
    public var port: Int
    public var path: String
    public var tls: Bool

    /// Parses an endpoint URL; the error says what to write instead.
    public init(_ text: String) throws(StorageError) {
        guard let url = URL(string: text), let scheme = url.scheme?.lowercased(), let host = url.host, !host.isEmpty else {
            throw StorageError(message: "--otlp-endpoint: '\(text)' is not a URL; write e.g. http://tempo-distributor:4318")
        }
        guard scheme == "http" || scheme == "https" else {
            throw StorageError(message: "--otlp-endpoint: \(scheme):// is not an OTLP/HTTP scheme; use http:// or https://")
        }
        self.host = host
        tls = scheme == "https"
        port = url.port ?? (tls ? 443 : 4318)
        path = url.path.isEmpty || url.path == "/" ? "/v1/traces" : url.path
    }
}

/// Sends kept traces to any OTLP/HTTP receiver (Grafana Tempo, a collector, Jaeger): batched
/// protobuf POSTs, gzip, configured headers (e.g. `Authorization: Basic …` for Grafana Cloud through
/// a gateway), retries with exponential backoff and jitter on connection errors, 429 and 5xx —
/// honouring `Retry-After`. A trace is reported stored only when the receiver accepted it; while
/// the receiver is down nothing is acknowledged, offsets stay, and the queue's bytes count toward
/// the buffer limit so Kafka consumption pauses. Nothing is dropped for a transient failure.
public final class OTLPHTTPExporter: TraceSink, @unchecked Sendable {
    public let name = "otlp"
    public struct Options: Sendable {
        public var headers: [(String, String)] = []
        public var gzip = true
        public var batchBytes = 2 << 20
        public var flushInterval: Duration = .milliseconds(200)
        public var timeout: Duration = .seconds(10)
        public var maxBackoff: Duration = .seconds(30)
        /// PEM file of CA certificates to trust instead of the system's (https endpoints).
        public var caFile: String?
        public init() {}
    }

    /// How a POST ended.
    enum Outcome: Equatable {
        case accepted
        case retry(after: Double?, reason: String)
        case tooLarge
        case rejected(status: Int, body: String)
    }

    public let endpoint: OTLPEndpoint
    private let options: Options
    private let logger: Logger
    private let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    private let queue = Mutex<(items: [(bytes: [UInt8], stored: @Sendable () -> Void)], bytes: Int)>(([], 0))
    private let wake = DispatchSemaphore(value: 0)
    private let running = Atomic<Bool>(true)
    private let finished = DispatchSemaphore(value: 0)
    private let busy = Atomic<Int>(0)
    private let counters = Mutex(Counters())
    private let throttle = Mutex<ContinuousClock.Instant?>(nil)

    public struct Counters: Sendable, Equatable {
        public var batchesSent = 0
        public var tracesSent = 0
        public var retries = 0
        public var rejectedTraces = 0
        /// Single traces split by span because the receiver found them too large (413).
        public var splits = 0
        /// Spans the receiver found too large even alone.
        public var oversizeSpans = 0
        /// Why the latest attempt failed, until one succeeds.
        public var failing: String?
    }

    private let tlsContext: NIOSSLContext?

    /// Throws when the TLS settings are unusable (an unreadable CA file).
    public init(endpoint: OTLPEndpoint, options: Options = Options(), logger: Logger) throws(StorageError) {
        self.endpoint = endpoint
        self.options = options
        self.logger = logger
        if endpoint.tls {
            var configuration = TLSConfiguration.makeClientConfiguration()
            if let caFile = options.caFile {
                do {
                    configuration.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(caFile))
                } catch {
                    throw StorageError(message: "--otlp-ca-file \(caFile): \(error)")
                }
            }
            do {
                tlsContext = try NIOSSLContext(configuration: configuration)
            } catch {
                throw StorageError(message: "TLS setup for \(endpoint.host): \(error)")
            }
        } else {
            tlsContext = nil
        }
        let thread = Thread { [self] in run() }
        thread.name = "tailgate-otlp-exporter"
        thread.start()
    }

    /// Queues one trace (an `ExportTraceServiceRequest`); `stored` runs once the receiver accepted it.
    public func export(_ request: [UInt8], stored: @escaping @Sendable () -> Void) {
        let size = queue.withLock { state -> Int in
            state.items.append((request, stored))
            state.bytes += request.count
            return state.bytes
        }
        if size >= options.batchBytes { wake.signal() }
    }

    public func send(_ trace: StoredTrace, acknowledged: @escaping @Sendable () -> Void) {
        export(trace.request, stored: acknowledged)
    }

    public var statistics: TraceSinkStatistics {
        let counts = counts
        return TraceSinkStatistics(
            delivered: counts.tracesSent, errors: counts.rejectedTraces, retries: counts.retries,
            pending: queue.withLock { $0.items.count } + busy.load(ordering: .relaxed), splits: counts.splits,
            oversizeSpans: counts.oversizeSpans, failing: counts.failing)
    }

    /// Bytes waiting to be sent (they count toward the buffer limit).
    public var queuedBytes: Int { queue.withLock { $0.bytes } }
    public var counts: Counters { counters.withLock { $0 } }

    /// Waits until the queue is empty and nothing is in flight, or `timeout`.
    @discardableResult
    public func flush(timeout: Duration = .seconds(30)) -> Bool {
        wake.signal()
        return waitUntilDrained(timeout: timeout) { queue.withLock({ $0.items.isEmpty }) && busy.load(ordering: .relaxed) == 0 }
    }

    public func stop(timeout: Duration) {
        flush(timeout: timeout)
        stop(flushFirst: false)
    }

    /// Stops the exporter; with `flushFirst`, after sending what is queued (bounded by `flush`).
    public func stop(flushFirst: Bool = true) {
        if flushFirst { flush() }
        running.store(false, ordering: .relaxed)
        wake.signal()
        // The worker may be mid-POST: let it finish with the event loop before that shuts down.
        _ = finished.wait(timeout: .now() + options.timeout.seconds + options.maxBackoff.seconds + 1)
        try? group.syncShutdownGracefully()
    }

    private func run() {
        defer { finished.signal() }
        while running.load(ordering: .relaxed) {
            _ = wake.wait(timeout: .now() + options.flushInterval.seconds)
            while true {
                busy.store(1, ordering: .relaxed)
                let batch = takeBatch()
                if batch.isEmpty {
                    busy.store(0, ordering: .relaxed)
                    break
                }
                deliver(batch)
                busy.store(0, ordering: .relaxed)
            }
        }
    }

    private func takeBatch() -> [(bytes: [UInt8], stored: @Sendable () -> Void)] {
        queue.withLock { state in
            var taken = 0
            var bytes = 0
            while taken < state.items.count && (taken == 0 || bytes + state.items[taken].bytes.count <= options.batchBytes) {
                bytes += state.items[taken].bytes.count
                taken += 1
            }
            let batch = Array(state.items[0..<taken])
            state.items.removeFirst(taken)
            state.bytes -= bytes
            return batch
        }
    }

    /// Sends a batch until it is accepted (or, for a payload the receiver refuses, given up on).
    private func deliver(_ batch: [(bytes: [UInt8], stored: @Sendable () -> Void)]) {
        // Concatenated ExportTraceServiceRequests are one request (protobuf merges repeated fields).
        let body = batch.reduce(into: [UInt8]()) { $0 += $1.bytes }
        var attempt = 0
        while true {
            let outcome = post(body)
            switch outcome {
            case .accepted:
                counters.withLock { counters in
                    counters.batchesSent += 1
                    counters.tracesSent += batch.count
                    counters.failing = nil
                }
                for item in batch { item.stored() }
                return
            case .tooLarge where batch.count > 1, .rejected where batch.count > 1:
                // Too large, or refused for good (400): halve until the refused trace is alone, so one
                // bad trace does not take the rest of its batch with it.
                deliver(Array(batch[0..<(batch.count / 2)]))
                deliver(Array(batch[(batch.count / 2)...]))
                return
            case .tooLarge:
                // One trace over the receiver's size limit: its halves (by span) go instead.
                if let halves = try? TraceMerger.halves(batch[0].bytes) {
                    counters.withLock { $0.splits += 1 }
                    let remaining = Atomic<Int>(2)
                    let stored = batch[0].stored
                    let both: @Sendable () -> Void = { if remaining.subtract(1, ordering: .acquiringAndReleasing).newValue == 0 { stored() } }
                    deliver([(halves.first, both)])
                    deliver([(halves.second, both)])
                    return
                }
                counters.withLock {
                    $0.oversizeSpans += 1
                    $0.rejectedTraces += 1
                }
                logger.error("OTLP receiver \(endpoint.host):\(endpoint.port) refused a single span of \(batch[0].bytes.count) bytes as too large (413); it is not retried")
                for item in batch { item.stored() }
                return
            case .rejected:
                // The receiver will never take this payload: retrying would stall every partition
                // behind it. Count it, say why, and let it go.
                let reason: String
                if case .rejected(let status, let text) = outcome { reason = "HTTP \(status): \(text.prefix(300))" } else { reason = "refused" }
                counters.withLock { $0.rejectedTraces += batch.count }
                logger.error("OTLP receiver \(endpoint.host):\(endpoint.port) refused \(batch.count) trace(s) for good (\(reason)); they are not retried")
                for item in batch { item.stored() }
                return
            case .retry(let after, let reason):
                attempt += 1
                counters.withLock {
                    $0.retries += 1
                    $0.failing = reason
                }
                // Exponential backoff with ±20% jitter, capped; Retry-After wins when the server gives it.
                let base = min(options.maxBackoff.seconds, 0.25 * pow(2, Double(min(attempt - 1, 10))))
                let wait = after.map { min($0, options.maxBackoff.seconds) } ?? base * Double.random(in: 0.8...1.2)
                logThrottled("OTLP export to \(endpoint.host):\(endpoint.port)\(endpoint.path) failed (\(reason)); retry \(attempt) in \(String(format: "%.1f", wait)) s; kept traces wait, offsets stay")
                Thread.sleep(forTimeInterval: wait)
                if !running.load(ordering: .relaxed) { return }
            }
        }
    }

    private func logThrottled(_ message: String) {
        let now = ContinuousClock.now
        let emit = throttle.withLock { last -> Bool in
            if let last, now - last < .seconds(10) { return false }
            last = now
            return true
        }
        if emit { logger.warning("\(message)") }
    }

    /// One POST on a fresh connection (a few per second at most; no pool needed).
    func post(_ body: [UInt8]) -> Outcome {
        let payload = options.gzip ? Gzip.compress(body) : body
        var headers = HTTPHeaders()
        headers.add(name: "Host", value: "\(endpoint.host):\(endpoint.port)")
        headers.add(name: "Content-Type", value: "application/x-protobuf")
        headers.add(name: "Content-Length", value: String(payload.count))
        headers.add(name: "Connection", value: "close")
        headers.add(name: "User-Agent", value: "tailgate/0.1.0")
        if options.gzip { headers.add(name: "Content-Encoding", value: "gzip") }
        for (name, value) in options.headers { headers.add(name: name, value: value) }
        let promise = OncePromise(group.next().makePromise(of: (HTTPResponseHead, [UInt8]).self))
        let tlsContext = self.tlsContext
        let serverName = endpoint.host
        let bootstrap = ClientBootstrap(group: group)
            .connectTimeout(.seconds(Int64(max(1, options.timeout.seconds))))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let tlsContext {
                        // Certificates are verified against the host name (SNI for IP addresses is omitted).
                        let isAddress = serverName.allSatisfy { $0.isNumber || $0 == "." || $0 == ":" }
                        try channel.pipeline.syncOperations.addHandler(
                            try NIOSSLClientHandler(context: tlsContext, serverHostname: isAddress ? nil : serverName))
                    }
                    try channel.pipeline.syncOperations.addHTTPClientHandlers()
                    try channel.pipeline.syncOperations.addHandler(ResponseCollector(promise: promise))
                }
            }
        let connection = bootstrap.connect(host: endpoint.host, port: endpoint.port)
        let channel: any Channel
        do {
            channel = try connection.wait()
        } catch {
            promise.fail(error)
            return .retry(after: nil, reason: "connection: \(error)")
        }
        let head = HTTPRequestHead(version: .http1_1, method: .POST, uri: endpoint.path, headers: headers)
        channel.write(HTTPClientRequestPart.head(head), promise: nil)
        var buffer = channel.allocator.buffer(capacity: payload.count)
        buffer.writeBytes(payload)
        channel.write(HTTPClientRequestPart.body(.byteBuffer(buffer)), promise: nil)
        channel.writeAndFlush(HTTPClientRequestPart.end(nil), promise: nil)
        let seconds = options.timeout.seconds
        let timeout = channel.eventLoop.scheduleTask(in: .nanoseconds(Int64(seconds * 1e9))) {
            promise.fail(ChannelError.connectTimeout(.seconds(Int64(seconds))))
        }
        defer {
            timeout.cancel()
            channel.close(promise: nil)
        }
        do {
            let (response, text) = try promise.promise.futureResult.wait()
            let status = Int(response.status.code)
            switch status {
            case 200..<300:
                return .accepted
            case 413:
                return .tooLarge
            case 400, 422:
                // The data itself is refused: halved until the refused trace is alone, then counted.
                return .rejected(status: status, body: String(decoding: text, as: UTF8.self))
            case 408, 429:
                return .retry(after: retryAfter(response.headers["Retry-After"].first), reason: "HTTP \(status)")
            case 400..<500:
                // 401, 403, 404, 405, 415, …: the endpoint, its credentials or the encoding is wrong, not
                // the data. An operator fixes that; until then nothing is dropped: held and retried, the
                // sink reported failing with the status and what the receiver said.
                let said = String(decoding: text.prefix(200), as: UTF8.self)
                return .retry(
                    after: retryAfter(response.headers["Retry-After"].first),
                    reason: "HTTP \(status), a configuration error (endpoint, credentials or encoding)\(said.isEmpty ? "" : ": \(said)")")
            default:
                return .retry(after: retryAfter(response.headers["Retry-After"].first), reason: "HTTP \(status)")
            }
        } catch {
            return .retry(after: nil, reason: "\(error)")
        }
    }

    /// `Retry-After` as seconds or an HTTP date.
    func retryAfter(_ value: String?) -> Double? {
        guard let value else { return nil }
        if let seconds = Double(value.trimmingCharacters(in: .whitespaces)) { return max(0, seconds) }
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss zzz"
        return formatter.date(from: value).map { max(0, $0.timeIntervalSinceNow) }
    }
}

/// A promise completed at most once, from whichever of response, error, close or timeout comes first.
final class OncePromise: Sendable {
    let promise: EventLoopPromise<(HTTPResponseHead, [UInt8])>
    private let done = Atomic<Bool>(false)

    init(_ promise: EventLoopPromise<(HTTPResponseHead, [UInt8])>) { self.promise = promise }

    func succeed(_ value: (HTTPResponseHead, [UInt8])) {
        if !done.exchange(true, ordering: .acquiringAndReleasing) { promise.succeed(value) }
    }

    func fail(_ error: any Error) {
        if !done.exchange(true, ordering: .acquiringAndReleasing) { promise.fail(error) }
    }
}

private final class ResponseCollector: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = HTTPClientResponsePart
    let promise: OncePromise
    private var head: HTTPResponseHead?
    private var body: [UInt8] = []

    init(promise: OncePromise) { self.promise = promise }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let response): head = response
        case .body(var buffer): if body.count < 64 * 1024, let bytes = buffer.readBytes(length: buffer.readableBytes) { body += bytes }
        case .end:
            if let head { promise.succeed((head, body)) }
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        promise.fail(error)
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        promise.fail(ChannelError.ioOnClosedChannel)
    }
}

extension Duration {
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}
