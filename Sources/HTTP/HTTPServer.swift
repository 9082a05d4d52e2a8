public import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import Sampling
import Synchronization

/// The HTTP listener: NIO's HTTP/1.1 server with keep-alive, serving ``HTTPRoutes``. Requests are
/// small, and the listener says so: bodies over 1 MiB get 413; a request line or header field over
/// 8 KiB, headers over 32 KiB in all or more than 100 fields get 431; a connection that sends
/// nothing for 30 s is closed (a slow client cannot hold one open); past 512 open connections new
/// ones are closed at once.
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
        let open = ConnectionCount()
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
                    try sync.addHandler(RequestHandler(routes: routes, workers: workers, maximumBody: limits.maximumBody))
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
    private var head: HTTPRequestHead?
    private var body: [UInt8] = []
    private var tooLarge = false

    init(routes: HTTPRoutes, workers: NIOThreadPool, maximumBody: Int) {
        self.routes = routes
        self.workers = workers
        self.maximumBody = maximumBody
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
        if !keepAlive {
            let channel = context.channel
            done.whenComplete { _ in channel.close(promise: nil) }
        }
    }
}

/// Open connections, across the listener's channels.
private final class ConnectionCount: Sendable {
    let value = Atomic<Int>(0)
}

/// Closes a new connection at once when `maximum` are already open.
private final class ConnectionLimiter: ChannelInboundHandler, Sendable {
    typealias InboundIn = NIOAny
    let open: ConnectionCount
    let maximum: Int

    init(open: ConnectionCount, maximum: Int) {
        self.open = open
        self.maximum = maximum
    }

    func channelActive(context: ChannelHandlerContext) {
        if open.value.add(1, ordering: .relaxed).newValue > maximum {
            context.close(promise: nil)
        } else {
            context.fireChannelActive()
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        open.value.subtract(1, ordering: .relaxed)
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
