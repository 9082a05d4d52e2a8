// Test helpers shared by the Storage and Engine tests.
import Foundation
public import NIOCore
import NIOHTTP1
public import NIOPosix
import NIOSSL
public import OTLP
import Sinks
public import Synchronization

/// A local OTLP/HTTP receiver for tests: answers from a script, records what it accepted.
public final class TestReceiver: @unchecked Sendable {
    public let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    public let channel: any Channel
    public let script: Mutex<[(status: Int, retryAfter: String?)]>
    public let requests = Atomic<Int>(0)
    public let acceptedSpans = Atomic<Int>(0)
    public let gzipped = Atomic<Int>(0)
    /// When each request arrived.
    public let requestTimes = Mutex<[ContinuousClock.Instant]>([])
    /// Requests holding a span of this name are refused for good (400), as a receiver refuses a bad trace.
    public let refuseSpanNamed = Mutex<String?>(nil)
    /// Bodies larger than this (bytes, before gzip) are answered 413; 0: no limit.
    public let maximumBody = Atomic<Int>(0)
    /// While true, every request is answered 503 (an outage), whatever the script says.
    public let refusing = Atomic<Bool>(false)
    /// Distinct span ids accepted, per trace (a span delivered twice counts once).
    public let spansByTrace = Mutex<[TraceID: Set<SpanID>]>([:])

    public init(port: Int = 0, script: [(status: Int, retryAfter: String?)] = [], tls: (cert: String, key: String)? = nil) throws {
        self.script = Mutex(script)
        let box = Box()
        let tlsContext = try tls.map { tls in
            try NIOSSLContext(configuration: .makeServerConfiguration(
                certificateChain: try NIOSSLCertificate.fromPEMFile(tls.cert).map { .certificate($0) },
                privateKey: .privateKey(try NIOSSLPrivateKey(file: tls.key, format: .pem))))
        }
        channel = try ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let tlsContext { try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: tlsContext)) }
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    try channel.pipeline.syncOperations.addHandler(Handler(receiver: box.receiver!))
                }
            }
            .bind(host: "127.0.0.1", port: port).wait()
        box.receiver = self
    }

    final class Box: @unchecked Sendable { var receiver: TestReceiver? }

    public var port: Int { channel.localAddress!.port! }

    public func shutdown() {
        try? channel.close().wait()
        try? group.syncShutdownGracefully()
    }

    final class Handler: ChannelInboundHandler, @unchecked Sendable {
        typealias InboundIn = HTTPServerRequestPart
        typealias OutboundOut = HTTPServerResponsePart
        let receiver: TestReceiver
        var head: HTTPRequestHead?
        var body: [UInt8] = []
        init(receiver: TestReceiver) { self.receiver = receiver }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            switch unwrapInboundIn(data) {
            case .head(let h):
                head = h
                body = []
            case .body(var b):
                body += b.readBytes(length: b.readableBytes) ?? []
            case .end:
                receiver.requests.add(1, ordering: .relaxed)
                receiver.requestTimes.withLock { $0.append(.now) }
                var next = receiver.script.withLock { $0.isEmpty ? (200, nil) : $0.removeFirst() }
                if receiver.refusing.load(ordering: .relaxed) { next = (503, nil) }
                let limit = receiver.maximumBody.load(ordering: .relaxed)
                if next.0 == 200, limit > 0 {
                    let bytes = head?.headers["Content-Encoding"].first == "gzip" ? (Gzip.decompress(body) ?? []) : body
                    if bytes.count > limit { next = (413, nil) }
                }
                if next.0 == 200, let poison = receiver.refuseSpanNamed.withLock({ $0 }) {
                    let bytes = head?.headers["Content-Encoding"].first == "gzip" ? (Gzip.decompress(body) ?? []) : body
                    var batch = SpanBatch()
                    if (try? SpanDecoder(encoding: .otlpProto).decode(bytes, into: &batch)) != nil,
                        batch.spans.contains(where: { span in
                            var trace = TraceData(traceID: span.traceID)
                            trace.append(span, from: batch, batchGeneration: 1)
                            return trace.string(trace.name(of: trace.spans[0])) == poison
                        })
                    {
                        next = (400, nil)
                    }
                }
                if next.0 == 200 {
                    var bytes = body
                    if head?.headers["Content-Encoding"].first == "gzip" {
                        receiver.gzipped.add(1, ordering: .relaxed)
                        bytes = Gzip.decompress(body) ?? []
                    }
                    var batch = SpanBatch()
                    if (try? SpanDecoder(encoding: .otlpProto).decode(bytes, into: &batch)) != nil {
                        receiver.acceptedSpans.add(batch.spans.count, ordering: .relaxed)
                        receiver.spansByTrace.withLock { traces in
                            for span in batch.spans { traces[span.traceID, default: []].insert(span.spanID) }
                        }
                    }
                }
                var headers = HTTPHeaders()
                headers.add(name: "Content-Length", value: "0")
                if let retryAfter = next.1 { headers.add(name: "Retry-After", value: retryAfter) }
                context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: HTTPResponseStatus(statusCode: next.0), headers: headers))), promise: nil)
                context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
            }
        }
    }
}

