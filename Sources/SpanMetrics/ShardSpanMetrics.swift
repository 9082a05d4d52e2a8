public import OTLP

/// One shard's RED and service-graph aggregation, fed with whole traces as they are decided (every
/// trace is decided, kept or dropped, so every span is counted once, before sampling).
///
/// Counting at decision time rather than on arrival buys three things: service-graph edges pair
/// exactly (the whole trace is at hand — no edge store that expires half-pairs), exemplars can be
/// restricted to traces that were kept, and a partition revoked mid-window is not counted twice (its
/// undecided traces are replayed and counted by the next owner). Spans that arrive after their trace
/// was decided are counted on arrival (``recordLate(_:from:kept:wallClockMillis:)``).
///
/// Single-threaded: the owning shard holds it under a lock once per cycle, not per span. A span
/// costs a key build (label bytes, ~50 B), a hash and a table probe; series seen before allocate
/// nothing.
public struct ShardSpanMetrics: Sendable {
    struct Keys: Sendable {
        var peerService, serverAddress, networkPeerAddress, networkPeerPort, dbName, dbNamespace, dbSystem: AttributeKeyID?
    }

    let registry: SeriesRegistry
    let boundsNanos: [UInt64]
    let bucketCount: Int
    let dimensionKeys: [AttributeKeyID?]
    let keys: Keys
    let localCacheLimit: Int

    // Span metrics, by global series index.
    private var redCache = ByteKeyTable()
    var calls: [UInt64] = []
    var sizes: [UInt64] = []
    var latencyCounts: [UInt64] = []
    var latencySums: [Double] = []
    var latencyExemplars: [Exemplar?] = []

    // Service graph, by global edge index.
    private var edgeCache = ByteKeyTable()
    var requests: [UInt64] = []
    var failed: [UInt64] = []
    var clientCounts: [UInt64] = []
    var clientSums: [Double] = []
    var clientExemplars: [Exemplar?] = []
    var serverCounts: [UInt64] = []
    var serverSums: [Double] = []
    var serverExemplars: [Exemplar?] = []

    // Propagation health.
    private var brokenCache = ByteKeyTable()
    var broken: [UInt64] = []
    private var knownServices = ByteKeyTable()
    var tracesWithoutRoot: UInt64 = 0
    var tracesWithOrphans: UInt64 = 0
    var overflowSamples = Array(repeating: UInt64(0), count: SeriesFamily.allCases.count)

    // Scratch, reused.
    private var key: [UInt8] = []
    private var spanIndex = SpanIndexTable()
    private var paired: [Bool] = []
    private var lateTrace = TraceData(traceID: .zero)

    /// - Parameter selection: the decoder's attribute selection (it must contain
    ///   ``SpanMetricsConfiguration/attributeKeys``; ids of keys it lacks read as absent).
    public init(configuration: SpanMetricsConfiguration, registry: SeriesRegistry, selection: AttributeSelection) {
        self.registry = registry
        boundsNanos = configuration.latencyBuckets.map { UInt64(($0 * 1e9).rounded()) }
        bucketCount = configuration.latencyBuckets.count + 1
        dimensionKeys = configuration.dimensions.map { selection.id(of: $0) }
        keys = Keys(
            peerService: selection.id(of: "peer.service"), serverAddress: selection.id(of: "server.address"),
            networkPeerAddress: selection.id(of: "network.peer.address"), networkPeerPort: selection.id(of: "network.peer.port"),
            dbName: selection.id(of: "db.name"), dbNamespace: selection.id(of: "db.namespace"), dbSystem: selection.id(of: "db.system"))
        localCacheLimit = configuration.maxSeriesPerMetric * 4 + 1024
        key.reserveCapacity(512)
    }

    // MARK: Recording

    /// Counts every span of a decided trace and pairs its service-graph edges. `kept` traces lend
    /// their id to exemplars.
    public mutating func record(_ trace: TraceData, kept: Bool, wallClockMillis: Int64) {
        let count = trace.spans.count
        guard count > 0 else { return }
        trace.payload.withUnsafeBytes { payload in
            for index in 0..<count {
                recordSpan(trace, index, payload: payload, kept: kept, wallClockMillis: wallClockMillis)
            }
            recordGraph(trace, payload: payload, kept: kept, wallClockMillis: wallClockMillis)
        }
    }

    /// Counts a span that arrived after its trace was decided (span metrics only: its trace's edges
    /// were paired at the decision).
    public mutating func recordLate(_ span: SpanRecord, from batch: SpanBatch, kept: Bool, wallClockMillis: Int64) {
        lateTrace.reset(traceID: span.traceID)
        lateTrace.append(span, from: batch, batchGeneration: 0)
        let trace = lateTrace
        trace.payload.withUnsafeBytes { payload in
            recordSpan(trace, 0, payload: payload, kept: kept, wallClockMillis: wallClockMillis)
        }
    }

    private mutating func recordSpan(
        _ trace: TraceData, _ index: Int, payload: UnsafeRawBufferPointer, kept: Bool, wallClockMillis: Int64
    ) {
        let span = trace.spans[index]
        key.removeAll(keepingCapacity: true)
        appendField(payload, trace.service(of: span))
        appendField(payload, trace.name(of: span))
        appendByteField(span.kind.rawValue)
        appendByteField(span.statusCode.rawValue)
        for dimension in dimensionKeys {
            appendAttributeField(trace, span, dimension, payload: payload)
        }
        let series = key.withUnsafeBytes { key in
            let hash = hashBytes(key)
            return redCache.find(key, hash: hash) ?? resolveSpanSeries(key, hash: hash)
        }
        let duration = span.durationNanos
        let bucket = bucketIndex(duration)
        let base = Int(series) * bucketCount
        calls[Int(series)] &+= 1
        sizes[Int(series)] &+= UInt64(span.encoded.count)
        latencyCounts[base + bucket] &+= 1
        latencySums[Int(series)] += Double(duration) / 1e9
        if kept {
            latencyExemplars[base + bucket] = Exemplar(
                traceID: trace.traceID, spanID: span.spanID, value: Double(duration) / 1e9, timestampMillis: wallClockMillis)
        }
    }

    private mutating func recordGraph(_ trace: TraceData, payload: UnsafeRawBufferPointer, kept: Bool, wallClockMillis: Int64) {
        let spans = trace.spans
        spanIndex.reset(expecting: spans.count)
        for index in spans.indices { spanIndex.insert(spans[index].spanID.rawValue, Int32(index)) }
        paired.removeAll(keepingCapacity: true)
        paired.append(contentsOf: repeatElement(false, count: spans.count))
        var hasRoot = false
        var hasOrphan = false
        let exemplarTrace: TraceID? = kept ? trace.traceID : nil
        for index in spans.indices {
            let span = spans[index]
            guard span.parentSpanID.isValid else {
                hasRoot = true
                // A server root: its caller is not instrumented (a browser, curl): Tempo's "user" node.
                if span.kind == .server {
                    recordEdge(
                        client: .literal("user"), server: .range(trace.service(of: span)), type: "virtual_node", payload: payload,
                        client: nil, server: span, failed: span.statusCode == .error, trace: exemplarTrace, wallClockMillis: wallClockMillis)
                }
                continue
            }
            guard let parentIndex = spanIndex.find(span.parentSpanID.rawValue) else {
                hasOrphan = true
                continue
            }
            let parent = spans[Int(parentIndex)]
            let direct = span.kind == .server && parent.kind == .client
            let messaging = span.kind == .consumer && parent.kind == .producer
            guard direct || messaging else { continue }
            paired[Int(parentIndex)] = true
            recordEdge(
                client: .range(trace.service(of: parent)), server: .range(trace.service(of: span)),
                type: messaging ? "messaging_system" : "", payload: payload, client: parent, server: span,
                failed: parent.statusCode == .error || span.statusCode == .error, trace: exemplarTrace, wallClockMillis: wallClockMillis)
        }
        for index in spans.indices where spans[index].kind == .client && !paired[index] {
            let span = spans[index]
            let isDatabase = attribute(trace, span, keys.dbSystem) != nil || attribute(trace, span, keys.dbName) != nil
            if isDatabase {
                // Tempo's database node name: peer.service, server.address, network.peer.address:port, db.name.
                let node: Node? = stringNode(trace, span, keys.peerService) ?? stringNode(trace, span, keys.serverAddress)
                    ?? peerAddressNode(trace, span) ?? stringNode(trace, span, keys.dbName) ?? stringNode(trace, span, keys.dbNamespace)
                    ?? stringNode(trace, span, keys.dbSystem)
                if let node {
                    recordEdge(
                        client: .range(trace.service(of: span)), server: node, type: "database", payload: payload, client: span,
                        server: nil, failed: span.statusCode == .error, trace: exemplarTrace, wallClockMillis: wallClockMillis)
                }
            } else if let peer = stringNode(trace, span, keys.peerService) ?? stringNode(trace, span, keys.serverAddress) {
                // A call whose server side never joined this trace: an uninstrumented peer (a virtual
                // node) — or, when that peer is a service tailgate sees, a context that was not propagated.
                recordEdge(
                    client: .range(trace.service(of: span)), server: peer, type: "virtual_node", payload: payload, client: span,
                    server: nil, failed: span.statusCode == .error, trace: exemplarTrace, wallClockMillis: wallClockMillis)
                if case .range(let range) = peer, isKnownService(payload, range) {
                    recordBroken(client: trace.service(of: span), server: range, payload: payload)
                }
            }
        }
        if !hasRoot {
            tracesWithoutRoot += 1
        } else if hasOrphan {
            tracesWithOrphans += 1
        }
    }

    enum Node {
        case range(ByteRange)
        case literal(StaticString)
        case peerAddress(ByteRange, port: Int64?)
    }

    private mutating func recordEdge(
        client clientNode: Node, server serverNode: Node, type: StaticString, payload: UnsafeRawBufferPointer,
        client: BufferedSpan?, server: BufferedSpan?, failed isFailed: Bool, trace: TraceID?, wallClockMillis: Int64
    ) {
        key.removeAll(keepingCapacity: true)
        appendNode(clientNode, payload)
        appendNode(serverNode, payload)
        appendLiteralField(type)
        let edge = key.withUnsafeBytes { key in
            let hash = hashBytes(key)
            return edgeCache.find(key, hash: hash) ?? resolve(.serviceGraph, key, hash: hash, into: \.edgeCache)
        }
        let index = Int(edge)
        requests[index] &+= 1
        if isFailed { failed[index] &+= 1 }
        if let client {
            let bucket = bucketIndex(client.durationNanos)
            let seconds = Double(client.durationNanos) / 1e9
            clientCounts[index * bucketCount + bucket] &+= 1
            clientSums[index] += seconds
            if let trace {
                clientExemplars[index * bucketCount + bucket] = Exemplar(
                    traceID: trace, spanID: client.spanID, value: seconds, timestampMillis: wallClockMillis)
            }
        }
        if let server {
            let bucket = bucketIndex(server.durationNanos)
            let seconds = Double(server.durationNanos) / 1e9
            serverCounts[index * bucketCount + bucket] &+= 1
            serverSums[index] += seconds
            if let trace {
                serverExemplars[index * bucketCount + bucket] = Exemplar(
                    traceID: trace, spanID: server.spanID, value: seconds, timestampMillis: wallClockMillis)
            }
        }
    }

    private mutating func recordBroken(client: ByteRange, server: ByteRange, payload: UnsafeRawBufferPointer) {
        key.removeAll(keepingCapacity: true)
        appendField(payload, client)
        appendField(payload, server)
        let index = key.withUnsafeBytes { key in
            let hash = hashBytes(key)
            return brokenCache.find(key, hash: hash) ?? resolve(.brokenPropagation, key, hash: hash, into: \.brokenCache)
        }
        broken[Int(index)] &+= 1
    }

    // MARK: Series resolution (first sight of a label combination in this shard)

    private mutating func resolveSpanSeries(_ key: UnsafeRawBufferPointer, hash: UInt64) -> Int32 {
        let series = resolve(.spanMetrics, key, hash: hash, into: \.redCache)
        // The service is now known: a client call naming it as its peer without a server span
        // joining the trace is a propagation break.
        let fields = Self.fields(of: key)
        if let service = fields.first, !service.isEmpty {
            service.withUnsafeBytes { bytes in
                let hash = hashBytes(bytes)
                if knownServices.find(bytes, hash: hash) == nil && knownServices.count < localCacheLimit {
                    knownServices.insert(bytes, hash: hash, value: 0)
                }
            }
        }
        return series
    }

    private mutating func resolve(
        _ family: SeriesFamily, _ key: UnsafeRawBufferPointer, hash: UInt64, into cache: WritableKeyPath<ShardSpanMetrics, ByteKeyTable>
    ) -> Int32 {
        let fields = Self.fields(of: key)
        var labels: [String]
        var rewriteIndex: Int?
        switch family {
        case .spanMetrics:
            labels = [
                String(decoding: fields[0], as: UTF8.self), String(decoding: fields[1], as: UTF8.self),
                (SpanKind(rawValue: fields[2].first ?? 0) ?? .unspecified).protoName,
                (StatusCode(rawValue: fields[3].first ?? 0) ?? .unset).protoName,
            ]
            labels += fields.dropFirst(4).map { String(decoding: $0, as: UTF8.self) }
            rewriteIndex = 1
        case .serviceGraph, .brokenPropagation:
            labels = fields.map { String(decoding: $0, as: UTF8.self) }
        }
        let (index, overflow) = registry.resolve(family, labels: labels, rewriteIndex: rewriteIndex)
        if self[keyPath: cache].count >= localCacheLimit { self[keyPath: cache].removeAll() }
        self[keyPath: cache].insert(key, hash: hash, value: index)
        grow(family, toInclude: Int(index))
        if overflow { overflowSamples[family.rawValue] &+= 1 }
        return index
    }

    private mutating func grow(_ family: SeriesFamily, toInclude index: Int) {
        switch family {
        case .spanMetrics:
            while calls.count <= index {
                calls.append(0)
                sizes.append(0)
                latencySums.append(0)
                latencyCounts.append(contentsOf: repeatElement(0, count: bucketCount))
                latencyExemplars.append(contentsOf: repeatElement(nil, count: bucketCount))
            }
        case .serviceGraph:
            while requests.count <= index {
                requests.append(0)
                failed.append(0)
                clientSums.append(0)
                serverSums.append(0)
                clientCounts.append(contentsOf: repeatElement(0, count: bucketCount))
                serverCounts.append(contentsOf: repeatElement(0, count: bucketCount))
                clientExemplars.append(contentsOf: repeatElement(nil, count: bucketCount))
                serverExemplars.append(contentsOf: repeatElement(nil, count: bucketCount))
            }
        case .brokenPropagation:
            while broken.count <= index { broken.append(0) }
        }
    }

    /// Splits a key into its length-prefixed fields.
    static func fields(of key: UnsafeRawBufferPointer) -> [[UInt8]] {
        var fields: [[UInt8]] = []
        var position = 0
        while position + 2 <= key.count {
            let length = Int(key[position]) | Int(key[position + 1]) << 8
            position += 2
            fields.append(Array(key[position..<min(key.count, position + length)]))
            position += length
        }
        return fields
    }

    // MARK: Key building

    @inline(__always)
    private mutating func appendField(_ payload: UnsafeRawBufferPointer, _ range: ByteRange) {
        let length = min(Int(range.count), 0xFFFF)
        key.append(UInt8(truncatingIfNeeded: length))
        key.append(UInt8(truncatingIfNeeded: length >> 8))
        if length > 0 {
            key.append(contentsOf: UnsafeRawBufferPointer(rebasing: payload[range.lowerBound..<(range.lowerBound + length)]))
        }
    }

    @inline(__always)
    private mutating func appendByteField(_ byte: UInt8) {
        key.append(1)
        key.append(0)
        key.append(byte)
    }

    private mutating func appendLiteralField(_ literal: StaticString) {
        let length = literal.utf8CodeUnitCount
        key.append(UInt8(truncatingIfNeeded: length))
        key.append(UInt8(truncatingIfNeeded: length >> 8))
        key.append(contentsOf: UnsafeRawBufferPointer(start: literal.utf8Start, count: length))
    }

    private mutating func appendNode(_ node: Node, _ payload: UnsafeRawBufferPointer) {
        switch node {
        case .range(let range): appendField(payload, range)
        case .literal(let literal): appendLiteralField(literal)
        case .peerAddress(let range, let port):
            let start = key.count
            key.append(0)
            key.append(0)
            key.append(contentsOf: UnsafeRawBufferPointer(rebasing: payload[range.lowerBound..<range.upperBound]))
            if let port {
                key.append(UInt8(ascii: ":"))
                appendDecimal(port)
            }
            patchLength(from: start)
        }
    }

    private mutating func appendAttributeField(_ trace: TraceData, _ span: BufferedSpan, _ id: AttributeKeyID?, payload: UnsafeRawBufferPointer) {
        switch attribute(trace, span, id) {
        case .string(let range)?: appendField(payload, range)
        case .int(let value)?:
            let start = key.count
            key.append(0)
            key.append(0)
            appendDecimal(value)
            patchLength(from: start)
        case .bool(let value)?: appendLiteralField(value ? "true" : "false")
        case .double(let value)?:
            let start = key.count
            key.append(0)
            key.append(0)
            key.append(contentsOf: "\(value)".utf8)
            patchLength(from: start)
        case .other?, nil: appendLiteralField("")
        }
    }

    private mutating func patchLength(from start: Int) {
        let length = min(key.count - start - 2, 0xFFFF)
        key[start] = UInt8(truncatingIfNeeded: length)
        key[start + 1] = UInt8(truncatingIfNeeded: length >> 8)
    }

    private mutating func appendDecimal(_ value: Int64) {
        if value < 0 { key.append(UInt8(ascii: "-")) }
        var magnitude = value.magnitude
        let start = key.count
        repeat {
            key.append(UInt8(ascii: "0") + UInt8(magnitude % 10))
            magnitude /= 10
        } while magnitude > 0
        key[start...].reverse()
    }

    // MARK: Reading spans

    @inline(__always)
    private func bucketIndex(_ nanos: UInt64) -> Int {
        var bucket = 0
        while bucket < boundsNanos.count && nanos > boundsNanos[bucket] { bucket += 1 }
        return bucket
    }

    /// The span's own value of `id`, else its resource's.
    private func attribute(_ trace: TraceData, _ span: BufferedSpan, _ id: AttributeKeyID?) -> TraceAttributeValue? {
        guard let id else { return nil }
        for attribute in trace.attributes(of: span) where attribute.key == id { return attribute.value }
        return nil
    }

    private func stringNode(_ trace: TraceData, _ span: BufferedSpan, _ id: AttributeKeyID?) -> Node? {
        if case .string(let range)? = attribute(trace, span, id), range.count > 0 { return .range(range) }
        return nil
    }

    private func peerAddressNode(_ trace: TraceData, _ span: BufferedSpan) -> Node? {
        guard case .string(let range)? = attribute(trace, span, keys.networkPeerAddress), range.count > 0 else { return nil }
        if case .int(let port)? = attribute(trace, span, keys.networkPeerPort) { return .peerAddress(range, port: port) }
        return .peerAddress(range, port: nil)
    }

    private func isKnownService(_ payload: UnsafeRawBufferPointer, _ range: ByteRange) -> Bool {
        let bytes = UnsafeRawBufferPointer(rebasing: payload[range.lowerBound..<range.upperBound])
        return knownServices.find(bytes, hash: hashBytes(bytes)) != nil
    }
}

/// Span id → index in the trace, open addressing; reset touches only the slots it used.
struct SpanIndexTable: Sendable {
    private var keys: [UInt64] = Array(repeating: 0, count: 64)
    private var values: [Int32] = Array(repeating: 0, count: 64)
    private var used: [Int32] = []

    mutating func reset(expecting count: Int) {
        for slot in used { keys[Int(slot)] = 0 }
        used.removeAll(keepingCapacity: true)
        if count * 2 > keys.count {
            var capacity = keys.count
            while capacity < count * 2 { capacity *= 2 }
            keys = Array(repeating: 0, count: capacity)
            values = Array(repeating: 0, count: capacity)
        }
    }

    @inline(__always)
    private func slot(of id: UInt64) -> Int {
        Int(truncatingIfNeeded: (id &* 0x9E37_79B9_7F4A_7C15) >> 32) & (keys.count - 1)
    }

    mutating func insert(_ id: UInt64, _ value: Int32) {
        guard id != 0 else { return }
        let mask = keys.count - 1
        var slot = slot(of: id)
        while keys[slot] != 0 && keys[slot] != id { slot = (slot + 1) & mask }
        if keys[slot] == 0 { used.append(Int32(slot)) }
        keys[slot] = id
        values[slot] = value
    }

    func find(_ id: UInt64) -> Int32? {
        guard id != 0 else { return nil }
        let mask = keys.count - 1
        var slot = slot(of: id)
        while keys[slot] != 0 {
            if keys[slot] == id { return values[slot] }
            slot = (slot + 1) & mask
        }
        return nil
    }
}
