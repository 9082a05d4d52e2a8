public import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import Sampling
import Synchronization

/// The HTTP listener: NIO's HTTP/1.1 server with keep-alive, serving ``HTTPRoutes``. Requests are
/// small, and the listener says so: bodies over 1 MiB get 413; a request line or header field over
/// 8 KiB, headers over 32 KiB in all or more than 100 fields get 431; a connection that sends
/// nothing for 30 s is closed. Past 512 open connections, a new one takes the place of the one that
/// has waited longest without a request in progress (idle, or holding a request line it never
/// finishes): a flood of held connections cannot keep the probes and the scrapers out. Only when
/// every connection is busy with a request is the new one closed at once.
///
/// The event loop only parses and writes. Routes that may take time — reading a stored trace (disk
/// and zstd), rendering `/metrics`, a rule reload — run on a small pool of worker threads, so the
/// probes (`/-/healthy`, `/-/ready`) answer at once even while a large trace is being read.
public final class HTTPServer: Sendable {
    /// The listener's limits (see the type's documentation).
    public struct Limits: Sendable {
        public var maximumBody = 1 << 20
        public var maximumHeaderField = 8 << 10
        public var maximumHeaders = 32 << 10
        public var maximumHeaderCount = 100
        public var idleTimeout: Duration = .seconds(30)
        public var maximumConnections = 512
        /// Worker threads for the routes that may block (trace reads, `/metrics`, reloads).
        public var workerThreads = 2
        public init() {}
    }

    private let group: MultiThreadedEventLoopGroup
    private let workers: NIOThreadPool
    private let channel: any Channel
    private let connections: ConnectionTable
    /// Connections closed to make room for a new one (see the type's documentation).
    public var connectionsEvicted: Int { connections.evicted.load(ordering: .relaxed) }
    /// The bound address (`host:port`; the port is the real one when 0 was asked for).
    public let boundAddress: String

    /// Binds `address` (`HOST:PORT`).
    public init(address: String, routes: HTTPRoutes, limits: Limits = Limits(), logger: Logger) throws {
        guard let colon = address.lastIndex(of: ":"), let port = Int(address[address.index(after: colon)...]) else {
            throw ConfigurationError("--http: '\(address)' is not HOST:PORT, e.g. 0.0.0.0:3200")
        }
        let host = String(address[..<colon])
        group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let workers = NIOThreadPool(numberOfThreads: max(1, limits.workerThreads))
        workers.start()
        self.workers = workers
        var decoderLimits = NIOHTTPDecoderLimitConfiguration()
        decoderLimits.maxHeaderFieldSize = limits.maximumHeaderField
        decoderLimits.maxHeaderListSize = limits.maximumHeaders
        decoderLimits.maxHeaderFieldCount = limits.maximumHeaderCount
        let headerLimits = decoderLimits  // a constant for the channel initializer (runs on the event loop)
        let open = ConnectionTable()
        connections = open
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let sync = channel.pipeline.syncOperations
                    try sync.addHandler(ConnectionLimiter(open: open, maximum: limits.maximumConnections))
                    try sync.addHandler(IdleStateHandler(readTimeout: .nanoseconds(Int64(limits.idleTimeout.timeInterval * 1e9))))
                    try sync.configureHTTPServerPipeline(
                        withErrorHandling: false, withEncoderConfiguration: HTTPResponseEncoder.Configuration(),
                        withDecoderLimitConfiguration: headerLimits)
                    try sync.addHandler(ProtocolErrorHandler())
                    try sync.addHandler(RequestHandler(routes: routes, workers: workers, maximumBody: limits.maximumBody, connections: open))
                }
            }
            .childChannelOption(.socketOption(.so_reuseaddr), value: 1)
        do {
            channel = try bootstrap.bind(host: host.isEmpty ? "0.0.0.0" : host, port: port).wait()
        } catch {
            try? group.syncShutdownGracefully()
            try? workers.syncShutdownGracefully()
            throw ConfigurationError("--http: cannot listen on \(address): \(error)")
        }
        boundAddress = "\(host.isEmpty ? "0.0.0.0" : host):\(channel.localAddress?.port ?? port)"
        logger.info("HTTP listening", metadata: ["address": "\(boundAddress)"])
    }

    /// Stops listening and closes connections.
    public func shutdown() {
        try? channel.close().wait()
        try? group.syncShutdownGracefully()
        try? workers.syncShutdownGracefully()
    }
}

private final class RequestHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    let routes: HTTPRoutes
    let workers: NIOThreadPool
    let maximumBody: Int
    let connections: ConnectionTable
    private var head: HTTPRequestHead?
    private var body: [UInt8] = []
    private var tooLarge = false

    init(routes: HTTPRoutes, workers: NIOThreadPool, maximumBody: Int, connections: ConnectionTable) {
        self.routes = routes
        self.workers = workers
        self.maximumBody = maximumBody
        self.connections = connections
    }

    /// A connection idle past the read timeout is closed.
    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is IdleStateHandler.IdleStateEvent {
            context.close(promise: nil)
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let requestHead):
            head = requestHead
            body.removeAll(keepingCapacity: true)
            tooLarge = false
        case .body(var buffer):
            if body.count + buffer.readableBytes > maximumBody {
                tooLarge = true
            } else if let bytes = buffer.readBytes(length: buffer.readableBytes) {
                body += bytes
            }
        case .end:
            guard let head else { return }
            self.head = nil
            // Busy from a whole request to its answer: a head whose body never comes stays evictable.
            connections.setBusy(context.channel, true)
            if tooLarge {
                write(HTTPResponse(status: 413, body: "request body over \(maximumBody) bytes\n"), for: head, context: context)
                return
            }
            let request = HTTPRequest(
                method: head.method.rawValue, path: head.uri, headers: head.headers.map { ($0.name, $0.value) }, body: body)
            guard HTTPRoutes.mayBlock(request) else {
                write(routes.respond(to: request), for: head, context: context)
                return
            }
            // NIO's pipelining handler holds the connection's next request until this response ends,
            // so answers stay in request order.
            let routes = self.routes
            let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
            workers.runIfActive(eventLoop: context.eventLoop) { routes.respond(to: request) }.whenComplete { result in
                let (handler, context) = bound.value
                switch result {
                case .success(let response): handler.write(response, for: head, context: context)
                case .failure: handler.write(HTTPResponse(status: 503, body: "shutting down\n"), for: head, context: context)
                }
            }
        }
    }

    private func write(_ response: HTTPResponse, for request: HTTPRequestHead, context: ChannelHandlerContext) {
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: response.contentType)
        headers.add(name: "Content-Length", value: String(response.body.count))
        for header in response.headers { headers.add(name: header.name, value: header.value) }
        let keepAlive = request.isKeepAlive
        if !keepAlive { headers.add(name: "Connection", value: "close") }
        let head = HTTPResponseHead(version: request.version, status: HTTPResponseStatus(statusCode: response.status), headers: headers)
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        if request.method != .HEAD {
            var buffer = context.channel.allocator.buffer(capacity: response.body.count)
            buffer.writeBytes(response.body)
            context.write(wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil)
        }
        let done = context.writeAndFlush(wrapOutboundOut(.end(nil)))
        connections.setBusy(context.channel, false)
        if !keepAlive {
            let channel = context.channel
            done.whenComplete { _ in channel.close(promise: nil) }
        }
    }
}

/// The open connections, each with whether a request is in progress on it and since when it has
/// been without one.
final class ConnectionTable: Sendable {
    private struct Entry {
        let channel: any Channel
        /// When (in admissions and finished responses, a logical clock) it last became idle.
        var idleSince: UInt64
        var busy: Bool
    }

    private let state = Mutex<(entries: [ObjectIdentifier: Entry], clock: UInt64)>(([:], 0))
    let evicted = Atomic<Int>(0)

    /// Admits `channel`. Past `maximum`, returns the connection to close for it: the one idle the
    /// longest, or `channel` itself when every other has a request in progress.
    func admit(_ channel: any Channel, maximum: Int) -> (any Channel)? {
        state.withLock { state in
            state.clock += 1
            var victim: (any Channel)?
            if state.entries.count >= maximum {
                let oldest = state.entries.values.filter { !$0.busy }.min { $0.idleSince < $1.idleSince }
                guard let oldest else { return channel }
                state.entries[ObjectIdentifier(oldest.channel)] = nil
                victim = oldest.channel
            }
            state.entries[ObjectIdentifier(channel)] = Entry(channel: channel, idleSince: state.clock, busy: false)
            return victim
        }
    }

    func remove(_ channel: any Channel) {
        _ = state.withLock { $0.entries.removeValue(forKey: ObjectIdentifier(channel)) }
    }

    /// A request arrived (true) or its response was written (false).
    func setBusy(_ channel: any Channel, _ busy: Bool) {
        state.withLock { state in
            let key = ObjectIdentifier(channel)
            guard state.entries[key] != nil else { return }
            state.clock += 1
            state.entries[key]?.busy = busy
            if !busy { state.entries[key]?.idleSince = state.clock }
        }
    }
}

/// Admits each new connection into the table (see ``ConnectionTable/admit(_:maximum:)``).
private final class ConnectionLimiter: ChannelInboundHandler, Sendable {
    typealias InboundIn = NIOAny
    let open: ConnectionTable
    let maximum: Int

    init(open: ConnectionTable, maximum: Int) {
        self.open = open
        self.maximum = maximum
    }

    func channelActive(context: ChannelHandlerContext) {
        let victim = open.admit(context.channel, maximum: maximum)
        if let victim, victim === context.channel {
            context.close(promise: nil)
            return
        }
        if let victim {
            open.evicted.add(1, ordering: .relaxed)
            victim.close(promise: nil)
        }
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        open.remove(context.channel)
        context.fireChannelInactive()
    }
}

/// Answers a request the parser refused — 431 when its headers are over the limits, else 400 — and
/// closes the connection (NIO's own handler says 400 to both).
private final class ProtocolErrorHandler: ChannelDuplexHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    private var responding = false

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard let parserError = error as? HTTPParserError else {
            context.fireErrorCaught(error)
            return
        }
        if !responding {
            let tooLarge = parserError == .headerOverflow
            let text = tooLarge ? "request line or headers over the limits (8 KiB a field, 32 KiB in all, 100 fields)\n" : "malformed HTTP request\n"
            let headers = HTTPHeaders([("Connection", "close"), ("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", String(text.utf8.count))])
            let head = HTTPResponseHead(version: .http1_1, status: tooLarge ? .requestHeaderFieldsTooLarge : .badRequest, headers: headers)
            context.write(wrapOutboundOut(.head(head)), promise: nil)
            var buffer = context.channel.allocator.buffer(capacity: text.utf8.count)
            buffer.writeString(text)
            context.write(wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil)
            let channel = context.channel
            context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in channel.close(promise: nil) }
        } else {
            context.close(promise: nil)
        }
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch unwrapOutboundIn(data) {
        case .head(let head) where head.status.code >= 200: responding = true
        case .end: responding = false
        default: break
        }
        context.write(data, promise: promise)
    }
}
