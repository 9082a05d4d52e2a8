public import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization

/// The HTTP listener: NIO's HTTP/1.1 server with keep-alive, serving ``HTTPRoutes``. Requests are
/// small; bodies over 1 MiB are refused.
public final class HTTPServer: Sendable {
    private let group: MultiThreadedEventLoopGroup
    private let channel: any Channel
    /// The bound address (`host:port`; the port is the real one when 0 was asked for).
    public let boundAddress: String

    /// Binds `address` (`HOST:PORT`).
    public init(address: String, routes: HTTPRoutes, logger: Logger) throws {
        guard let colon = address.lastIndex(of: ":"), let port = Int(address[address.index(after: colon)...]) else {
            throw ConfigurationError("--http: '\(address)' is not HOST:PORT, e.g. 0.0.0.0:3200")
        }
        let host = String(address[..<colon])
        group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    try channel.pipeline.syncOperations.addHandler(RequestHandler(routes: routes))
                }
            }
            .childChannelOption(.socketOption(.so_reuseaddr), value: 1)
        do {
            channel = try bootstrap.bind(host: host.isEmpty ? "0.0.0.0" : host, port: port).wait()
        } catch {
            try? group.syncShutdownGracefully()
            throw ConfigurationError("--http: cannot listen on \(address): \(error)")
        }
        boundAddress = "\(host.isEmpty ? "0.0.0.0" : host):\(channel.localAddress?.port ?? port)"
        logger.info("HTTP listening", metadata: ["address": "\(boundAddress)"])
    }

    /// Stops listening and closes connections.
    public func shutdown() {
        try? channel.close().wait()
        try? group.syncShutdownGracefully()
    }
}

private final class RequestHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    static let maximumBody = 1 << 20
    let routes: HTTPRoutes
    private var head: HTTPRequestHead?
    private var body: [UInt8] = []
    private var tooLarge = false

    init(routes: HTTPRoutes) { self.routes = routes }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let requestHead):
            head = requestHead
            body.removeAll(keepingCapacity: true)
            tooLarge = false
        case .body(var buffer):
            if body.count + buffer.readableBytes > Self.maximumBody {
                tooLarge = true
            } else if let bytes = buffer.readBytes(length: buffer.readableBytes) {
                body += bytes
            }
        case .end:
            guard let head else { return }
            self.head = nil
            let response: HTTPResponse
            if tooLarge {
                response = HTTPResponse(status: 413, body: "request body over 1 MiB\n")
            } else {
                let request = HTTPRequest(
                    method: head.method.rawValue, path: head.uri, headers: head.headers.map { ($0.name, $0.value) }, body: body)
                response = routes.respond(to: request)
            }
            write(response, for: head, context: context)
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
